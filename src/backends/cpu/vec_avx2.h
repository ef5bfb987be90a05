/* vec_avx2.h - the vector operations that gemm_vact.h and eltwise_vec.h are written in,
 * on ymm registers (AVX2 + FMA). Included only by files built with those flags. */
#ifndef KILN_VEC_AVX2_H
#define KILN_VEC_AVX2_H

#include <immintrin.h>

#define VF              __m256
#define VI              __m256i
#define VM              __m256
#define VF_SET1(x)      _mm256_set1_ps(x)
#define VF_ADD(a, b)    _mm256_add_ps(a, b)
#define VF_SUB(a, b)    _mm256_sub_ps(a, b)
#define VF_MUL(a, b)    _mm256_mul_ps(a, b)
#define VF_DIV(a, b)    _mm256_div_ps(a, b)
#define VF_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VF_ABS(a)       _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a)
#define VF_ROUND(a)     _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define VF_MAX(a, b)    _mm256_max_ps(a, b)
#define VF_MIN(a, b)    _mm256_min_ps(a, b)
#define VF_LT(a, b)     _mm256_cmp_ps(a, b, _CMP_LT_OQ)
#define VF_GE(a, b)     _mm256_cmp_ps(a, b, _CMP_GE_OQ)
#define VF_SEL(m, t, f) _mm256_blendv_ps(f, t, m)
#define VF_TO_VI(a)     _mm256_cvtps_epi32(a)
#define VI_SET1(x)      _mm256_set1_epi32(x)
#define VI_ADD(a, b)    _mm256_add_epi32(a, b)
#define VI_SUB(a, b)    _mm256_sub_epi32(a, b)
#define VI_SRAI(a, n)   _mm256_srai_epi32(a, n)
#define VI_SLLI(a, n)   _mm256_slli_epi32(a, n)
#define VI_AS_VF(a)     _mm256_castsi256_ps(a)

#endif
