/* gemm_f32_4x16_generic.c - the portable GEMM path: a 4x16 micro-kernel in plain C (fixed
 * trip counts, so gcc -O2 vectorizes its inner loop with the baseline SIMD), the panel
 * packing and the epilogue with the scalar formulas of src/ir/ops/fused_act.c. */
#include <math.h>
#include <string.h>

#include "backends/cpu/gemm/gemm_impl.h"

#define MR 4
#define NR 16

/* Panels are zero past the last row / column, so the full tile is computed and only the
 * mr x nr corner is stored. a * b and the add round separately: ISO C forbids contracting
 * them, and a libm fmaf would be slow without hardware FMA. Unrolled completely (2.5x faster
 * than gcc -O2's rolled loops, which keep the accumulators in memory); other compilers
 * ignore the pragma. */
static void ukernel_4x16(size_t mr, size_t nr, size_t kc, const float *a, const float *b,
                         size_t b_stride, float *c, size_t ldc, bool accumulate,
                         const gemm_post *post)
{
    float acc[MR][NR];
    for (size_t i = 0; i < MR; i++)
        for (size_t j = 0; j < NR; j++)
            acc[i][j] = accumulate && i < mr && j < nr ? c[i * ldc + j] : 0.0f;
    for (size_t k = 0; k < kc; k++) {
        const float *bk = b + k * b_stride;
#pragma GCC unroll 4
        for (size_t i = 0; i < MR; i++) {
            const float ai = a[k * MR + i];
#pragma GCC unroll 16
            for (size_t j = 0; j < NR; j++) acc[i][j] += ai * bk[j];
        }
    }
    for (size_t i = 0; i < mr; i++) {
        float *y = c + i * ldc;
        for (size_t j = 0; j < nr; j++) y[j] = acc[i][j];
        if (!post) continue;
        if (post->bias_col)
            for (size_t j = 0; j < nr; j++) y[j] += post->bias_col[j];
        else if (post->bias_row)
            for (size_t j = 0; j < nr; j++) y[j] += post->bias_row[i];
        if (post->res)
            for (size_t j = 0; j < nr; j++) y[j] += post->res[i * post->ldr + j];
        if (post->act != GEMM_ACT_NONE)
            for (size_t j = 0; j < nr; j++)
                y[j] = gemm_act_scalar(y[j], post->act, post->alpha, post->beta);
    }
}

void gemm_pack_generic(float *dst, const float *src, size_t s_k, size_t s_w, size_t kc, size_t wc,
                       size_t w)
{
    if (s_w == 1) {
        /* lines of the panels are contiguous in the source: copies, source line by source
         * line (k outer), so the reads are sequential and each touches its page once */
        for (size_t k = 0; k < kc; k++)
            for (size_t q = 0; q * w < wc; q++) {
                const size_t n = wc - q * w < w ? wc - q * w : w;
                float *d = dst + q * kc * w + k * w;
                memcpy(d, src + k * s_k + q * w, n * sizeof(float));
                for (size_t t = n; t < w; t++) d[t] = 0.0f;
            }
        return;
    }
    for (size_t q = 0; q * w < wc; q++, dst += kc * w) {
        const size_t n = wc - q * w < w ? wc - q * w : w;
        const float *s = src + q * w * s_w;
        /* a transpose: read each source line along k, write with stride w */
        for (size_t t = 0; t < n; t++)
            for (size_t k = 0; k < kc; k++) dst[k * w + t] = s[t * s_w + k * s_k];
        for (size_t k = 0; k < kc; k++)
            for (size_t t = n; t < w; t++) dst[k * w + t] = 0.0f;
    }
}

#define K_SQRT1_2        0.70710678118654752440f
#define K_SQRT_2_OVER_PI 0.79788456080286535588f

/* The formulas of fused_act.c, term for term, so this path gives the bits of the
 * unfused layers. */
static inline float sigmoid_f(float x)
{
    if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

static inline float clamp01(float v) { return v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v); }

float gemm_act_scalar(float x, gemm_act act, float alpha, float beta)
{
    switch (act) {
    case GEMM_ACT_NONE: return x;
    case GEMM_ACT_RELU: return x < 0.0f ? 0.0f : x;
    case GEMM_ACT_LEAKY_RELU: return x < 0.0f ? alpha * x : x;
    case GEMM_ACT_CLIP: {
        float v = x < alpha ? alpha : x;
        return v > beta ? beta : v;
    }
    case GEMM_ACT_SIGMOID: return sigmoid_f(x);
    case GEMM_ACT_HARD_SWISH: return x * clamp01((x / 6.0f) + 0.5f);
    case GEMM_ACT_HARD_SIGMOID: return clamp01((alpha * x) + beta);
    case GEMM_ACT_SILU: return x * sigmoid_f(x);
    case GEMM_ACT_GELU: return 0.5f * x * erfcf(-x * K_SQRT1_2);
    case GEMM_ACT_GELU_TANH:
        return x * sigmoid_f(2.0f * K_SQRT_2_OVER_PI * (x + 0.044715f * x * x * x));
    case GEMM_ACT_TANH: return tanhf(x);
    case GEMM_ACT_ELU: return x < 0.0f ? alpha * expm1f(x) : x;
    }
    return x;
}

/* One loop per activation, so the cheap ones vectorize. */
#define ACT_LOOP(EXPR)                                                                             \
    do {                                                                                           \
        for (size_t j = 0; j < n; j++) {                                                           \
            const float x = y[j];                                                                  \
            y[j] = (EXPR);                                                                         \
        }                                                                                          \
    } while (0)

void gemm_epilogue_generic(float *c, size_t ldc, size_t m, size_t n, size_t row0, size_t col0,
                           const gemm_epilogue *ep)
{
    const float alpha = ep->alpha, beta = ep->beta;
    for (size_t i = 0; i < m; i++) {
        float *y = c + i * ldc;
        if (ep->bias_kind == GEMM_BIAS_COL) {
            const float *bias = ep->bias + col0;
            for (size_t j = 0; j < n; j++) y[j] += bias[j];
        } else if (ep->bias_kind == GEMM_BIAS_ROW) {
            const float bias = ep->bias[row0 + i];
            for (size_t j = 0; j < n; j++) y[j] += bias;
        }
        if (ep->residual) {
            const float *z = ep->residual + (row0 + i) * (size_t)ep->ldr + col0;
            for (size_t j = 0; j < n; j++) y[j] += z[j];
        }
        switch (ep->act) {
        case GEMM_ACT_NONE: break;
        case GEMM_ACT_RELU: ACT_LOOP(x < 0.0f ? 0.0f : x); break;
        case GEMM_ACT_LEAKY_RELU: ACT_LOOP(x < 0.0f ? alpha * x : x); break;
        case GEMM_ACT_CLIP: ACT_LOOP(gemm_act_scalar(x, GEMM_ACT_CLIP, alpha, beta)); break;
        case GEMM_ACT_HARD_SWISH: ACT_LOOP(x * clamp01((x / 6.0f) + 0.5f)); break;
        case GEMM_ACT_HARD_SIGMOID: ACT_LOOP(clamp01((alpha * x) + beta)); break;
        default: ACT_LOOP(gemm_act_scalar(x, ep->act, alpha, beta)); break;
        }
    }
}

const gemm_kernel gemm_f32_4x16_generic = {
    .isa = GEMM_ISA_GENERIC,
    .mr = MR,
    .nr = NR,
    .mc = 128,
    .kc = 256,
    .nc = 1024,
    .ukernel = ukernel_4x16,
    .nkernel = NULL,
    .epilogue = gemm_epilogue_generic,
    .pack = NULL,
};
