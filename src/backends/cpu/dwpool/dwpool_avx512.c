/* dwpool_avx512.c - the AVX-512 path of the depthwise convolution and pooling kernels: the
 * template of dwpool_simd.h on zmm vectors with mask registers (16 lanes, masked loads for
 * the borders and tails). Built with AVX-512 flags (CMake, this file only) and called only
 * when the CPU has AVX-512 F. */
#include <immintrin.h>
#include <math.h>

#include "backends/cpu/dwpool/dwpool.h"
#include "backends/cpu/gemm/gemm.h"

/* ---- the vector math of gemm_vact.h on zmm ---- */
#include "backends/cpu/vec_avx512.h"
#define VF_RCP(a)       _mm512_rcp14_ps(a)
#define VF_SCALEF(a, n) _mm512_scalef_ps(a, n)
#include "backends/cpu/gemm/gemm_vact.h"

/* ---- what dwpool_simd.h needs ---- */
#define VL                          16
#define LM                          __mmask16
#define LM_ALL                      ((__mmask16)0xFFFF)
#define LM_RANGE(lo, hi)            lm_range(lo, hi)
#define LM_ANY(m)                   ((m) != 0)
#define LM_OR(a, b)                 ((__mmask16)((a) | (b)))
#define LM_NAN(v, m)                _mm512_mask_cmp_ps_mask(m, v, v, _CMP_UNORD_Q)
#define VF_LOAD(p)                  _mm512_loadu_ps(p)
#define VF_STORE(p, v)              _mm512_storeu_ps(p, v)
#define VF_LOADM(p, m)              _mm512_maskz_loadu_ps(m, p)
#define VF_STOREM(p, m, v)          _mm512_mask_storeu_ps(p, m, v)
#define LM_BITS(b)                  ((__mmask16)(b))
#define VF_LOAD_S2(p)               load_s2(p)
#define VF_LOAD_S2M(p, ma, mb)      load_s2m(p, ma, mb)
#define VF_DEINTERLEAVE(a, b, e, o) deinterleave(a, b, &(e), &(o))
#define DWP_FLAT                    1
#define VF_GATHERM(p, s, m)         gather(p, s, m)
#define VF_FMAM(acc, w, v, m)       _mm512_mask3_fmadd_ps(w, v, acc, m)
#define VF_MAXM(b, v, m)            _mm512_mask_max_ps(b, m, v, b)
#define VD                          __m512d
#define VD_ZERO                     _mm512_setzero_pd()
#define VD_ADD(a, b)                _mm512_add_pd(a, b)
#define VD_LO(v)                    _mm512_cvtps_pd(_mm512_castps512_ps256(v))
#define VD_HI(v)                    _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)))
#define VD_SUM(d)                   _mm512_reduce_add_pd(d)
#define NAME(x)                     x##_avx512

static inline __mmask16 lm_range(int64_t lo, int64_t hi)
{
    return (__mmask16)(((1u << hi) - 1u) & ~((1u << lo) - 1u));
}

/* p[0], p[2], ..., p[30]: p[0..15] and p[15..30] (nothing past p[30]), deinterleaved. */
static inline __m512 load_s2(const float *p)
{
    const __m512i idx =
        _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 17, 19, 21, 23, 25, 27, 29, 31);
    return _mm512_permutex2var_ps(_mm512_loadu_ps(p), idx, _mm512_loadu_ps(p + 15));
}

static inline __m512 load_s2m(const float *p, __mmask16 ma, __mmask16 mb)
{
    const __m512i idx =
        _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 17, 19, 21, 23, 25, 27, 29, 31);
    return _mm512_permutex2var_ps(_mm512_maskz_loadu_ps(ma, p), idx,
                                  _mm512_maskz_loadu_ps(mb, p + 15));
}

/* The even and the odd elements of the 32 floats a, b. */
static inline void deinterleave(__m512 a, __m512 b, __m512 *even, __m512 *odd)
{
    const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i io = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    *even = _mm512_permutex2var_ps(a, ie, b);
    *odd = _mm512_permutex2var_ps(a, io, b);
}

static inline __m512 gather(const float *p, int64_t s, __mmask16 m)
{
    const __m512i idx =
        _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                           _mm512_set1_epi32((int)s));
    return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, p, 4);
}

#include "backends/cpu/dwpool/dwpool_simd.h"
