/* vec_avx512.h - the vector operations that gemm_vact.h and eltwise_vec.h are written in,
 * on zmm registers (AVX512). Included only by files built with those flags. */
#ifndef KILN_VEC_AVX512_H
#define KILN_VEC_AVX512_H

#include <immintrin.h>

#define VF              __m512
#define VI              __m512i
#define VM              __mmask16
#define VF_SET1(x)      _mm512_set1_ps(x)
#define VF_ADD(a, b)    _mm512_add_ps(a, b)
#define VF_SUB(a, b)    _mm512_sub_ps(a, b)
#define VF_MUL(a, b)    _mm512_mul_ps(a, b)
#define VF_DIV(a, b)    _mm512_div_ps(a, b)
#define VF_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VF_ABS(a)       _mm512_abs_ps(a)
#define VF_ROUND(a)     _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define VF_MAX(a, b)    _mm512_max_ps(a, b)
#define VF_MIN(a, b)    _mm512_min_ps(a, b)
#define VF_LT(a, b)     _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ)
#define VF_GE(a, b)     _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ)
#define VF_SEL(m, t, f) _mm512_mask_blend_ps(m, f, t)
#define VF_TO_VI(a)     _mm512_cvtps_epi32(a)
#define VI_SET1(x)      _mm512_set1_epi32(x)
#define VI_ADD(a, b)    _mm512_add_epi32(a, b)
#define VI_SUB(a, b)    _mm512_sub_epi32(a, b)
#define VI_SRAI(a, n)   _mm512_srai_epi32(a, n)
#define VI_SLLI(a, n)   _mm512_slli_epi32(a, n)
#define VI_AS_VF(a)     _mm512_castsi512_ps(a)

/* Transposes 16 rows of 16 floats in registers: lane t of r[l] becomes lane l of r[t]. */
static inline void transpose16(__m512 r[16])
{
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        const __m512d t0 = _mm512_castps_pd(t[i]), t1 = _mm512_castps_pd(t[i + 1]);
        const __m512d t2 = _mm512_castps_pd(t[i + 2]), t3 = _mm512_castps_pd(t[i + 3]);
        r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
        r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
        r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
        r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
    }
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xdd);
        t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xdd);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 4] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
        r[i + 12] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0xdd);
    }
}

#endif
