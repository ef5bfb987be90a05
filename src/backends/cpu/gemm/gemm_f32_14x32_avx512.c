/* gemm_f32_14x32_avx512.c - the AVX-512 GEMM path: a 14x32 micro-kernel (28 zmm
 * accumulators; per k two loads of B and 14 broadcasts of A), the narrow-N kernel, a packing
 * routine that transposes 16x16 blocks in registers, and the vector epilogue. Built with
 * AVX-512 flags (CMake, this file only) and called only when the CPU has AVX-512 F. */
#include <immintrin.h>
#include <math.h>

#include "backends/cpu/gemm/gemm_impl.h"

#define MR 14
#define NR 32

#define GEMM_INLINE static inline __attribute__((always_inline))

/* ---- the vector math of gemm_vact.h on zmm ---- */
#include "backends/cpu/vec_avx512.h"
/* written in the operations above */
#include "backends/cpu/gemm/gemm_vact.h"

/* The lanes below n (n <= 16: that many, more: all). */
static inline __mmask16 lanes(size_t n) { return n >= 16 ? 0xFFFF : (__mmask16)((1u << n) - 1u); }

/* ---- the micro-kernel ---- */

/* The post-processing in registers of one row: v0, v1 = columns 0-15, 16-31. */
GEMM_INLINE void post_row(const int NV, const gemm_post *post, size_t i, __mmask16 m0, __mmask16 m1,
                          __m512 *v0, __m512 *v1)
{
    if (post->bias_col) {
        *v0 = _mm512_add_ps(*v0, _mm512_maskz_loadu_ps(m0, post->bias_col));
        if (NV == 2) *v1 = _mm512_add_ps(*v1, _mm512_maskz_loadu_ps(m1, post->bias_col + 16));
    } else if (post->bias_row) {
        const __m512 b = _mm512_set1_ps(post->bias_row[i]);
        *v0 = _mm512_add_ps(*v0, b);
        if (NV == 2) *v1 = _mm512_add_ps(*v1, b);
    }
    if (post->res) {
        const float *z = post->res + i * post->ldr;
        *v0 = _mm512_add_ps(*v0, _mm512_maskz_loadu_ps(m0, z));
        if (NV == 2) *v1 = _mm512_add_ps(*v1, _mm512_maskz_loadu_ps(m1, z + 16));
    }
    if (post->act != GEMM_ACT_NONE) {
        const __m512 alpha = _mm512_set1_ps(post->alpha), beta = _mm512_set1_ps(post->beta);
        *v0 = vact_cheap(*v0, post->act, alpha, beta);
        if (NV == 2) *v1 = vact_cheap(*v1, post->act, alpha, beta);
    }
}

/* M rows (1..14) by NV vectors (1: nr <= 16, 2: nr <= 32), both constants after inlining,
 * so the accumulators live in registers. */
GEMM_INLINE void tile(const int M, const int NV, size_t nr, size_t kc, const float *restrict a,
                      const float *restrict b, size_t b_stride, float *restrict c, size_t ldc,
                      bool accumulate, const gemm_post *post)
{
    __m512 acc[MR][2];
    const __mmask16 m0 = lanes(nr), m1 = lanes(nr > 16 ? nr - 16 : 0);
#pragma GCC unroll 14
    for (int i = 0; i < M; i++) {
        acc[i][0] = accumulate ? _mm512_maskz_loadu_ps(m0, c + i * ldc) : _mm512_setzero_ps();
        acc[i][1] = accumulate && NV == 2 ? _mm512_maskz_loadu_ps(m1, c + i * ldc + 16)
                                          : _mm512_setzero_ps();
    }
    for (size_t k = 0; k < kc; k++) {
        const __m512 b0 = _mm512_loadu_ps(b);
        const __m512 b1 = NV == 2 ? _mm512_loadu_ps(b + 16) : b0;
#pragma GCC unroll 14
        for (int i = 0; i < M; i++) {
            const __m512 ai = _mm512_set1_ps(a[i]);
            acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
            if (NV == 2) acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
        }
        a += MR;
        b += b_stride;
    }
    /* unrolled too: a run-time row index would keep acc in memory, and gcc then stores the
     * accumulators on every k step */
#pragma GCC unroll 14
    for (int i = 0; i < M; i++) {
        __m512 v0 = acc[i][0], v1 = acc[i][1];
        if (post) post_row(NV, post, (size_t)i, m0, m1, &v0, &v1);
        _mm512_mask_storeu_ps(c + i * ldc, m0, v0);
        if (NV == 2) _mm512_mask_storeu_ps(c + i * ldc + 16, m1, v1);
    }
}

#define TILE_ROWS(M)                                                                               \
    case M:                                                                                        \
        if (nr > 16)                                                                               \
            tile(M, 2, nr, kc, a, b, b_stride, c, ldc, accumulate, post);                          \
        else                                                                                       \
            tile(M, 1, nr, kc, a, b, b_stride, c, ldc, accumulate, post);                          \
        break;

static void ukernel_14x32(size_t mr, size_t nr, size_t kc, const float *a, const float *b,
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
        TILE_ROWS(7)
        TILE_ROWS(8)
        TILE_ROWS(9)
        TILE_ROWS(10)
        TILE_ROWS(11)
        TILE_ROWS(12)
        TILE_ROWS(13)
        TILE_ROWS(14)
    default: break;
    }
}

/* ---- the narrow-N kernel: vectors run down A's panels (14 of 16 lanes) ---- */

GEMM_INLINE void ntile(const int P, const int NC, size_t mr_last, size_t kc,
                       const float *restrict a, size_t aps, const float *restrict b, size_t b_ks,
                       size_t b_js, float *restrict c, size_t ldc, bool accumulate)
{
    __m512 acc[4][4];
    float buf[16] = {0};
#pragma GCC unroll 4
    for (int p = 0; p < P; p++) {
        const size_t rows = p == P - 1 ? mr_last : MR;
#pragma GCC unroll 4
        for (int j = 0; j < NC; j++) {
            if (!accumulate) {
                acc[p][j] = _mm512_setzero_ps();
                continue;
            }
            for (size_t i = 0; i < rows; i++) buf[i] = c[(p * MR + i) * ldc + j];
            acc[p][j] = _mm512_maskz_loadu_ps(lanes(rows), buf);
        }
    }
    for (size_t k = 0; k < kc; k++) {
        __m512 av[4];
#pragma GCC unroll 4
        for (int p = 0; p < P; p++) av[p] = _mm512_maskz_loadu_ps(0x3FFF, a + p * aps + k * MR);
#pragma GCC unroll 4
        for (int j = 0; j < NC; j++) {
            const __m512 bj = _mm512_set1_ps(b[k * b_ks + j * b_js]);
#pragma GCC unroll 4
            for (int p = 0; p < P; p++) acc[p][j] = _mm512_fmadd_ps(av[p], bj, acc[p][j]);
        }
    }
#pragma GCC unroll 4
    for (int p = 0; p < P; p++) {
        const size_t rows = p == P - 1 ? mr_last : MR;
#pragma GCC unroll 4
        for (int j = 0; j < NC; j++) {
            _mm512_storeu_ps(buf, acc[p][j]);
            for (size_t i = 0; i < rows; i++) c[(p * MR + i) * ldc + j] = buf[i];
        }
    }
}

#define NTILE_COLS(P, NC)                                                                          \
    case NC:                                                                                       \
        ntile(P, NC, mr_last, kc, a, aps, b, b_ks, b_js, c, ldc, accumulate);                      \
        break;
#define NTILE_PANELS(P)                                                                            \
    case P:                                                                                        \
        switch (nc) {                                                                              \
            NTILE_COLS(P, 1)                                                                       \
            NTILE_COLS(P, 2)                                                                       \
            NTILE_COLS(P, 3)                                                                       \
            NTILE_COLS(P, 4)                                                                       \
        default: break;                                                                            \
        }                                                                                          \
        break;

static void nkernel_14(size_t panels, size_t mr_last, size_t nc, size_t kc, const float *a,
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

/* ---- packing ---- */

/* Source lines contiguous along the panel (A transposed, B row-major): masked vector copies.
 * Lines contiguous along k (A row-major, B transposed): a transpose, 16 lines by 16 steps at
 * a time through registers. Otherwise the portable loop. */
static void pack_avx512(float *dst, const float *src, size_t s_k, size_t s_w, size_t kc, size_t wc,
                        size_t w)
{
    if (s_w == 1) {
        /* a copy, zero-filled past wc; source line by source line (k outer), so the reads
         * are sequential and each touches its page once */
        for (size_t k = 0; k < kc; k++) {
            const float *s = src + k * s_k;
            for (size_t q = 0; q * w < wc; q++) {
                const size_t n = wc - q * w < w ? wc - q * w : w;
                float *d = dst + q * kc * w + k * w;
                for (size_t g = 0; g < w; g += 16) {
                    const __m512 v = _mm512_maskz_loadu_ps(lanes(n > g ? n - g : 0), s + q * w + g);
                    _mm512_mask_storeu_ps(d + g, lanes(w - g), v);
                }
            }
        }
        return;
    }
    if (s_k != 1) {
        gemm_pack_generic(dst, src, s_k, s_w, kc, wc, w);
        return;
    }
    for (size_t q = 0; q * w < wc; q++, dst += kc * w) {
        const size_t n = wc - q * w < w ? wc - q * w : w;
        const float *s = src + q * w * s_w;
        for (size_t g = 0; g < w; g += 16) {
            const size_t valid = n > g ? (n - g < 16 ? n - g : 16) : 0;
            const __mmask16 store = lanes(w - g);
            for (size_t k0 = 0; k0 < kc; k0 += 16) {
                const size_t kk = kc - k0 < 16 ? kc - k0 : 16;
                __m512 r[16];
                for (size_t t = 0; t < 16; t++)
                    r[t] = t < valid ? _mm512_maskz_loadu_ps(lanes(kk), s + (g + t) * s_w + k0)
                                     : _mm512_setzero_ps();
                transpose16(r);
                for (size_t l = 0; l < kk; l++)
                    _mm512_mask_storeu_ps(dst + (k0 + l) * w + g, store, r[l]);
            }
        }
    }
}

/* ---- the epilogue ---- */

static void epilogue_avx512(float *c, size_t ldc, size_t m, size_t n, size_t row0, size_t col0,
                            const gemm_epilogue *ep)
{
    const __m512 alpha = _mm512_set1_ps(ep->alpha), beta = _mm512_set1_ps(ep->beta);
    const gemm_act act = ep->act;
    for (size_t i = 0; i < m; i++) {
        float *y = c + i * ldc;
        const float *bias = ep->bias_kind == GEMM_BIAS_COL ? ep->bias + col0 : NULL;
        const __m512 brow =
            _mm512_set1_ps(ep->bias_kind == GEMM_BIAS_ROW ? ep->bias[row0 + i] : 0.0f);
        const float *z = ep->residual ? ep->residual + (row0 + i) * (size_t)ep->ldr + col0 : NULL;
        for (size_t j = 0; j < n; j += 16) {
            const __mmask16 mk = lanes(n - j);
            __m512 v = _mm512_maskz_loadu_ps(mk, y + j);
            if (bias)
                v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mk, bias + j));
            else if (ep->bias_kind == GEMM_BIAS_ROW)
                v = _mm512_add_ps(v, brow);
            if (z) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mk, z + j));
            v = vact_apply(v, act, alpha, beta);
            _mm512_mask_storeu_ps(y + j, mk, v);
        }
    }
}

/* Blocking for an L1 of 32-48 KiB and an L2 of 1-2 MiB per core: the A block (mc x kc, 336
 * KiB) stays in L2 while a B panel (kc x 32, 64 KiB) streams through it; see ARCHITECTURE. */
const gemm_kernel gemm_f32_14x32_avx512 = {
    .isa = GEMM_ISA_AVX512,
    .mr = MR,
    .nr = NR,
    .mc = 168,
    .kc = 512,
    .nc = 1024,
    .ukernel = ukernel_14x32,
    .nkernel = nkernel_14,
    .nkernel_cols = 4,
    .epilogue = epilogue_avx512,
    .pack = pack_avx512,
};
