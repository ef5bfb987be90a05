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

#endif
