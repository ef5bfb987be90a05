/* dwpool_avx2.c - the AVX2 + FMA path of the depthwise convolution and pooling kernels: the
 * template of dwpool_simd.h on ymm vectors (8 lanes; lane masks are vectors, for maskload,
 * maskstore, gathers and blends). Built with AVX2/FMA flags (CMake, this file only) and
 * called only when the CPU has both. */
#include <immintrin.h>
#include <math.h>

#include "backends/cpu/dwpool/dwpool.h"
#include "backends/cpu/gemm/gemm.h"

/* ---- the vector math of gemm_vact.h on ymm ---- */
#include "backends/cpu/vec_avx2.h"
#define VF_RCP(a) _mm256_rcp_ps(a)
#include "backends/cpu/gemm/gemm_vact.h"

/* ---- what dwpool_simd.h needs ---- */
#define VL                     8
#define LM                     __m256i
#define LM_ALL                 _mm256_set1_epi32(-1)
#define LM_RANGE(lo, hi)       lm_range(lo, hi)
#define LM_ANY(m)              (!_mm256_testz_si256(m, m))
#define LM_OR(a, b)            _mm256_or_si256(a, b)
#define LM_NAN(v, m)           _mm256_and_si256(m, _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)))
#define VF_LOAD(p)             _mm256_loadu_ps(p)
#define VF_STORE(p, v)         _mm256_storeu_ps(p, v)
#define VF_LOADM(p, m)         _mm256_maskload_ps(p, m)
#define VF_STOREM(p, m, v)     _mm256_maskstore_ps(p, m, v)
#define LM_BITS(b)             lm_bits(b)
#define VF_LOAD_S2(p)          load_s2(p)
#define VF_LOAD_S2M(p, ma, mb) load_s2m(p, ma, mb)
#define VF_GATHERM(p, s, m)    gather(p, s, m)
/* A blend per masked tap would cost more than the tap itself: masked lanes of v are +0.0,
 * and w * 0 + acc is acc for a finite w (DWP_ZERO_TAPS: planes with other weights go the
 * portable way). */
#define VF_FMAM(acc, w, v, m) _mm256_fmadd_ps(w, v, acc)
#define DWP_ZERO_TAPS         1
#define VF_MAXM(b, v, m)      _mm256_blendv_ps(b, _mm256_max_ps(v, b), _mm256_castsi256_ps(m))
#define VD                    __m256d
#define VD_ZERO               _mm256_setzero_pd()
#define VD_ADD(a, b)          _mm256_add_pd(a, b)
#define VD_LO(v)              _mm256_cvtps_pd(_mm256_castps256_ps128(v))
#define VD_HI(v)              _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1))
#define VD_SUM(d)             sum_pd(d)
#define NAME(x)               x##_avx2

static inline __m256i lm_range(int64_t lo, int64_t hi)
{
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_and_si256(_mm256_cmpgt_epi32(iota, _mm256_set1_epi32((int)lo - 1)),
                            _mm256_cmpgt_epi32(_mm256_set1_epi32((int)hi), iota));
}

/* p[0], p[2], ..., p[14]: p[0..7] and p[7..14] (nothing past p[14]); the shuffle takes lanes
 * 0, 2 of the first and 1, 3 of the second in each half: p0 p2 p8 p10 | p4 p6 p12 p14. */
static inline __m256 load_s2(const float *p)
{
    const __m256 t =
        _mm256_shuffle_ps(_mm256_loadu_ps(p), _mm256_loadu_ps(p + 7), _MM_SHUFFLE(3, 1, 2, 0));
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(t), _MM_SHUFFLE(3, 1, 2, 0)));
}

static inline __m256i lm_bits(uint32_t b)
{
    const __m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    return _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32((int)b), bit), bit);
}

static inline __m256 load_s2m(const float *p, __m256i ma, __m256i mb)
{
    const __m256 t = _mm256_shuffle_ps(_mm256_maskload_ps(p, ma), _mm256_maskload_ps(p + 7, mb),
                                       _MM_SHUFFLE(3, 1, 2, 0));
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(t), _MM_SHUFFLE(3, 1, 2, 0)));
}

static inline __m256 gather(const float *p, int64_t s, __m256i m)
{
    const __m256i idx =
        _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32((int)s));
    return _mm256_mask_i32gather_ps(_mm256_setzero_ps(), p, idx, _mm256_castsi256_ps(m), 4);
}

static inline double sum_pd(__m256d d)
{
    double l[4];
    _mm256_storeu_pd(l, d);
    return (l[0] + l[1]) + (l[2] + l[3]);
}

#include "backends/cpu/dwpool/dwpool_simd.h"
