/* gemm_f32_6x16_avx2.c - the AVX2 + FMA GEMM path: a 6x16 micro-kernel (12 ymm accumulators;
 * per k two loads of B and 6 broadcasts of A), the narrow-N kernel and the vector epilogue.
 * Built with AVX2/FMA flags (CMake, this file only) and called only when the CPU has both. */
#include <immintrin.h>
#include <math.h>

#include "backends/cpu/gemm/gemm_impl.h"

#define MR 6
#define NR 16

#define GEMM_INLINE static inline __attribute__((always_inline))

/* ---- the vector math of gemm_vact.h on ymm ---- */
#include "backends/cpu/vec_avx2.h"
/* written in the operations above */
#include "backends/cpu/gemm/gemm_vact.h"

/* All-ones in the lanes below n (n >= 8: all), for maskload / maskstore. */
static inline __m256i lanes(size_t n)
{
    const int v = n >= 8 ? 8 : (int)n;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(v), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* ---- the micro-kernel ---- */

/* The post-processing in registers of one row: v0, v1 = columns 0-7, 8-15. */
GEMM_INLINE void post_row(const int NV, const gemm_post *post, size_t i, __m256i m0, __m256i m1,
                          __m256 *v0, __m256 *v1)
{
    if (post->bias_col) {
        *v0 = _mm256_add_ps(*v0, _mm256_maskload_ps(post->bias_col, m0));
        if (NV == 2) *v1 = _mm256_add_ps(*v1, _mm256_maskload_ps(post->bias_col + 8, m1));
    } else if (post->bias_row) {
        const __m256 b = _mm256_set1_ps(post->bias_row[i]);
        *v0 = _mm256_add_ps(*v0, b);
        if (NV == 2) *v1 = _mm256_add_ps(*v1, b);
    }
    if (post->res) {
        const float *z = post->res + i * post->ldr;
        *v0 = _mm256_add_ps(*v0, _mm256_maskload_ps(z, m0));
        if (NV == 2) *v1 = _mm256_add_ps(*v1, _mm256_maskload_ps(z + 8, m1));
    }
    if (post->act != GEMM_ACT_NONE) {
        const __m256 alpha = _mm256_set1_ps(post->alpha), beta = _mm256_set1_ps(post->beta);
        *v0 = vact_cheap(*v0, post->act, alpha, beta);
        if (NV == 2) *v1 = vact_cheap(*v1, post->act, alpha, beta);
    }
}

GEMM_INLINE void tile(const int M, const int NV, size_t nr, size_t kc, const float *restrict a,
                      const float *restrict b, size_t b_stride, float *restrict c, size_t ldc,
                      bool accumulate, const gemm_post *post)
{
    __m256 acc[MR][2];
    const __m256i m0 = lanes(nr), m1 = lanes(nr > 8 ? nr - 8 : 0);
#pragma GCC unroll 6
    for (int i = 0; i < M; i++) {
        acc[i][0] = accumulate ? _mm256_maskload_ps(c + i * ldc, m0) : _mm256_setzero_ps();
        acc[i][1] =
            accumulate && NV == 2 ? _mm256_maskload_ps(c + i * ldc + 8, m1) : _mm256_setzero_ps();
    }
    for (size_t k = 0; k < kc; k++) {
        const __m256 b0 = _mm256_loadu_ps(b);
        const __m256 b1 = NV == 2 ? _mm256_loadu_ps(b + 8) : b0;
#pragma GCC unroll 6
        for (int i = 0; i < M; i++) {
            const __m256 ai = _mm256_broadcast_ss(a + i);
            acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
            if (NV == 2) acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
        }
        a += MR;
        b += b_stride;
    }
    /* unrolled too: a run-time row index would keep acc in memory, and gcc then stores the
     * accumulators on every k step */
#pragma GCC unroll 6
    for (int i = 0; i < M; i++) {
        __m256 v0 = acc[i][0], v1 = acc[i][1];
        if (post) post_row(NV, post, (size_t)i, m0, m1, &v0, &v1);
        _mm256_maskstore_ps(c + i * ldc, m0, v0);
        if (NV == 2) _mm256_maskstore_ps(c + i * ldc + 8, m1, v1);
    }
}

#define TILE_ROWS(M)                                                                               \
    case M:                                                                                        \
        if (nr > 8)                                                                                \
            tile(M, 2, nr, kc, a, b, b_stride, c, ldc, accumulate, post);                          \
        else                                                                                       \
            tile(M, 1, nr, kc, a, b, b_stride, c, ldc, accumulate, post);                          \
        break;

static void ukernel_6x16(size_t mr, size_t nr, size_t kc, const float *a, const float *b,
                         size_t b_stride, float *c, size_t ldc, bool accumulate,
                         const gemm_post *post)
{
    switch (mr) {
        TILE_ROWS(1)
        TILE_ROWS(2)
        TILE_ROWS(3)
        TILE_ROWS(4)
        TILE_ROWS(5)
        TILE_ROWS(6)
    default: break;
    }
}

/* ---- the narrow-N kernel: vectors run down A's panels (6 of 8 lanes); at most 2 columns
 * per call, so that 4 panels x 2 columns of accumulators fit the 16 registers ---- */

GEMM_INLINE void ntile(const int P, const int NC, size_t mr_last, size_t kc,
                       const float *restrict a, size_t aps, const float *restrict b, size_t b_ks,
                       size_t b_js, float *restrict c, size_t ldc, bool accumulate)
{
    __m256 acc[4][2];
    float buf[8] = {0};
    const __m256i six = lanes(MR);
#pragma GCC unroll 4
    for (int p = 0; p < P; p++) {
        const size_t rows = p == P - 1 ? mr_last : MR;
#pragma GCC unroll 2
        for (int j = 0; j < NC; j++) {
            if (!accumulate) {
                acc[p][j] = _mm256_setzero_ps();
                continue;
            }
            for (size_t i = 0; i < rows; i++) buf[i] = c[(p * MR + i) * ldc + j];
            acc[p][j] = _mm256_maskload_ps(buf, lanes(rows));
        }
    }
    for (size_t k = 0; k < kc; k++) {
        __m256 av[4];
#pragma GCC unroll 4
        for (int p = 0; p < P; p++) av[p] = _mm256_maskload_ps(a + p * aps + k * MR, six);
#pragma GCC unroll 2
        for (int j = 0; j < NC; j++) {
            const __m256 bj = _mm256_broadcast_ss(b + k * b_ks + j * b_js);
#pragma GCC unroll 4
            for (int p = 0; p < P; p++) acc[p][j] = _mm256_fmadd_ps(av[p], bj, acc[p][j]);
        }
    }
#pragma GCC unroll 4
    for (int p = 0; p < P; p++) {
        const size_t rows = p == P - 1 ? mr_last : MR;
#pragma GCC unroll 2
        for (int j = 0; j < NC; j++) {
            _mm256_storeu_ps(buf, acc[p][j]);
            for (size_t i = 0; i < rows; i++) c[(p * MR + i) * ldc + j] = buf[i];
        }
    }
}

#define NTILE_PANELS(P)                                                                            \
    case P:                                                                                        \
        if (nc == 1)                                                                               \
            ntile(P, 1, mr_last, kc, a, aps, b, b_ks, b_js, c, ldc, accumulate);                   \
        else                                                                                       \
            ntile(P, 2, mr_last, kc, a, aps, b, b_ks, b_js, c, ldc, accumulate);                   \
        break;

static void nkernel_6(size_t panels, size_t mr_last, size_t nc, size_t kc, const float *a,
                      size_t aps, const float *b, size_t b_ks, size_t b_js, float *c, size_t ldc,
                      bool accumulate)
{
    switch (panels) {
        NTILE_PANELS(1)
        NTILE_PANELS(2)
        NTILE_PANELS(3)
        NTILE_PANELS(4)
    default: break;
    }
}

/* ---- the epilogue ---- */

static void epilogue_avx2(float *c, size_t ldc, size_t m, size_t n, size_t row0, size_t col0,
                          const gemm_epilogue *ep)
{
    const __m256 alpha = _mm256_set1_ps(ep->alpha), beta = _mm256_set1_ps(ep->beta);
    const gemm_act act = ep->act;
    for (size_t i = 0; i < m; i++) {
        float *y = c + i * ldc;
        const float *bias = ep->bias_kind == GEMM_BIAS_COL ? ep->bias + col0 : NULL;
        const __m256 brow =
            _mm256_set1_ps(ep->bias_kind == GEMM_BIAS_ROW ? ep->bias[row0 + i] : 0.0f);
        const float *z = ep->residual ? ep->residual + (row0 + i) * (size_t)ep->ldr + col0 : NULL;
        for (size_t j = 0; j < n; j += 8) {
            const __m256i mk = lanes(n - j);
            __m256 v = _mm256_maskload_ps(y + j, mk);
            if (bias)
                v = _mm256_add_ps(v, _mm256_maskload_ps(bias + j, mk));
            else if (ep->bias_kind == GEMM_BIAS_ROW)
                v = _mm256_add_ps(v, brow);
            if (z) v = _mm256_add_ps(v, _mm256_maskload_ps(z + j, mk));
            v = vact_apply(v, act, alpha, beta);
            _mm256_maskstore_ps(y + j, mk, v);
        }
    }
}

/* The A block (mc x kc, 192 KiB) stays in L2 while a B panel (kc x 16, 16 KiB) sits in L1. */
const gemm_kernel gemm_f32_6x16_avx2 = {
    .isa = GEMM_ISA_AVX2,
    .mr = MR,
    .nr = NR,
    .mc = 192,
    .kc = 256,
    .nc = 1024,
    .ukernel = ukernel_6x16,
    .nkernel = nkernel_6,
    .nkernel_cols = 2,
    .epilogue = epilogue_avx2,
    .pack = NULL,
};
