/* eltwise_avx2.c - the AVX2 + FMA path of the eltwise engine: eltwise_vec.h on ymm (8 lanes,
 * tails through maskload / maskstore). Built with AVX2/FMA flags (CMake, this file only) and
 * run only when the CPU has both. */
#include <immintrin.h>
#include <math.h>

#include "backends/cpu/eltwise/eltwise.h"

#define W 8

/* ---- eltwise_vec.h's macros ---- */
#include "backends/cpu/vec_avx2.h"

/* All-ones in the lanes below n, for maskload / maskstore. */
static inline __m256i lanes(int64_t n)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
static inline double hsum_pd(__m256d a)
{
    const __m128d s = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}
#define VF_LOADU(p)            _mm256_loadu_ps(p)
#define VF_STOREU(p, v)        _mm256_storeu_ps(p, v)
#define VF_LOAD_TAIL(p, n)     _mm256_maskload_ps(p, lanes(n))
#define VF_STORE_TAIL(p, v, n) _mm256_maskstore_ps(p, lanes(n), v)
#define VF_GT(a, b)            _mm256_cmp_ps(a, b, _CMP_GT_OQ)
#define VF_EQ(a, b)            _mm256_cmp_ps(a, b, _CMP_EQ_OQ)
#define VF_ISNAN(a)            _mm256_cmp_ps(a, a, _CMP_UNORD_Q)
#define VM_OR(a, b)            _mm256_or_ps(a, b)
#define VM_ANY_BUT(m, n)       (_mm256_movemask_ps(_mm256_andnot_ps(n, m)) != 0)
#define VF_NEG(a)              _mm256_xor_ps(a, _mm256_set1_ps(-0.0f))
#define VF_SQRT(a)             _mm256_sqrt_ps(a)
#define VF_FLOOR(a)            _mm256_round_ps(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC)
#define VF_CEIL(a)             _mm256_round_ps(a, _MM_FROUND_TO_POS_INF | _MM_FROUND_NO_EXC)
#define VF_AS_VI(a)            _mm256_castps_si256(a)
#define VI_AND(a, b)           _mm256_and_si256(a, b)
#define VI_OR(a, b)            _mm256_or_si256(a, b)
#define VI_SRLI(a, n)          _mm256_srli_epi32(a, n)
#define VI_TO_VF(a)            _mm256_cvtepi32_ps(a)
#define VD                     __m256d
#define VD_ZERO()              _mm256_setzero_pd()
#define VD_SET1(x)             _mm256_set1_pd(x)
#define VD_ADD(a, b)           _mm256_add_pd(a, b)
#define VD_SUB(a, b)           _mm256_sub_pd(a, b)
#define VD_MUL(a, b)           _mm256_mul_pd(a, b)
#define VD_LO(a)               _mm256_cvtps_pd(_mm256_castps256_ps128(a))
#define VD_HI(a)               _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1))
#define VD_HSUM(a)             hsum_pd(a)

#include "backends/cpu/eltwise/eltwise_vec.h"

const ew_isa ew_isa_avx2 = {
    .name = "avx2",
    .chain = ev_chain,
    .softmax_rows = ev_softmax_rows,
    .softmax_cols = ev_softmax_cols,
    .layernorm_rows = ev_layernorm_rows,
    .sum_rows = ev_sum_rows,
};
