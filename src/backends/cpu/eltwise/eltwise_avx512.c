/* eltwise_avx512.c - the AVX-512 path of the eltwise engine: eltwise_vec.h on zmm (16 lanes,
 * tails through masked loads and stores). Built with AVX-512 flags (CMake, this file only)
 * and run only when the CPU has AVX-512 F. */
#include <immintrin.h>
#include <math.h>

#include "backends/cpu/eltwise/eltwise.h"

#define W 16

/* ---- eltwise_vec.h's macros ---- */
#include "backends/cpu/vec_avx512.h"

static inline __mmask16 lanes(int64_t n) { return (__mmask16)((1u << n) - 1u); }
#define VF_LOADU(p)            _mm512_loadu_ps(p)
#define VF_STOREU(p, v)        _mm512_storeu_ps(p, v)
#define VF_LOAD_TAIL(p, n)     _mm512_maskz_loadu_ps(lanes(n), p)
#define VF_STORE_TAIL(p, v, n) _mm512_mask_storeu_ps(p, lanes(n), v)
#define VF_GT(a, b)            _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ)
#define VF_EQ(a, b)            _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ)
#define VF_ISNAN(a)            _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q)
#define VM_OR(a, b)            ((__mmask16)((a) | (b)))
#define VM_ANY_BUT(m, n)       (((m) & ~(n)) != 0)
#define VF_NEG(a)                                                                                  \
    _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(a), _mm512_set1_epi32(INT32_MIN)))
#define VF_SQRT(a)    _mm512_sqrt_ps(a)
#define VF_FLOOR(a)   _mm512_roundscale_ps(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC)
#define VF_CEIL(a)    _mm512_roundscale_ps(a, _MM_FROUND_TO_POS_INF | _MM_FROUND_NO_EXC)
#define VF_AS_VI(a)   _mm512_castps_si512(a)
#define VI_AND(a, b)  _mm512_and_si512(a, b)
#define VI_OR(a, b)   _mm512_or_si512(a, b)
#define VI_SRLI(a, n) _mm512_srli_epi32(a, n)
#define VI_TO_VF(a)   _mm512_cvtepi32_ps(a)
#define VD            __m512d
#define VD_ZERO()     _mm512_setzero_pd()
#define VD_SET1(x)    _mm512_set1_pd(x)
#define VD_ADD(a, b)  _mm512_add_pd(a, b)
#define VD_SUB(a, b)  _mm512_sub_pd(a, b)
#define VD_MUL(a, b)  _mm512_mul_pd(a, b)
#define VD_LO(a)      _mm512_cvtps_pd(_mm512_castps512_ps256(a))
#define VD_HI(a)      _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)))
#define VD_HSUM(a)    _mm512_reduce_add_pd(a)

#include "backends/cpu/eltwise/eltwise_vec.h"

const ew_isa ew_isa_avx512 = {
    .name = "avx512",
    .chain = ev_chain,
    .softmax_rows = ev_softmax_rows,
    .softmax_cols = ev_softmax_cols,
    .layernorm_rows = ev_layernorm_rows,
    .sum_rows = ev_sum_rows,
};
