/* eltwise_generic.c - the portable path of the eltwise engine: the reference kernels'
 * formulas (elementwise_scalar.h) and order of operations, in loops the compiler may
 * vectorize, so this path gives the reference's bits; and the scalar steps the vector paths
 * fall back on. */
#include <math.h>
#include <string.h>

#include "backends/cpu/eltwise/eltwise.h"
#include "ir/ops/elementwise_scalar.h"
#include "ir/ops/fused_chain.h"

/* ---- chains ---- */

/* dst[i] = EXPR(x) with x = src[i]. */
#define UNARY(EXPR)                                                                                \
    for (int64_t i = 0; i < m; i++) {                                                              \
        const float x = src[i];                                                                    \
        dst[i] = (EXPR);                                                                           \
    }                                                                                              \
    break

/* dst[i] = F(src[i], b[i]) (side 0) or F(b[i], src[i]) (side 1); b is one value when bs is
 * 0. */
#define BINARY(F)                                                                                  \
    if (bs == 0) {                                                                                 \
        const float c = b[0];                                                                      \
        if (right)                                                                                 \
            for (int64_t i = 0; i < m; i++) dst[i] = F(c, src[i]);                                 \
        else                                                                                       \
            for (int64_t i = 0; i < m; i++) dst[i] = F(src[i], c);                                 \
    } else if (right) {                                                                            \
        for (int64_t i = 0; i < m; i++) dst[i] = F(b[i], src[i]);                                  \
    } else {                                                                                       \
        for (int64_t i = 0; i < m; i++) dst[i] = F(src[i], b[i]);                                  \
    }                                                                                              \
    break

void ew_step_scalar(const ew_prog *p, int32_t s, const float *src, float *dst, int64_t m,
                    const float *const *opd, const int64_t *os)
{
    const float a = p->alpha[s], be = p->beta[s];
    const int64_t k = p->operand[s] < 0 ? 0 : p->operand[s];
    const float *b = opd[k];
    const int64_t bs = os[k];
    const bool right = p->side[s] != 0;
    switch ((fused_ew_op)p->ops[s]) {
    case FUSED_EW_ADD: BINARY(ew_add);
    case FUSED_EW_SUB: BINARY(ew_sub);
    case FUSED_EW_MUL: BINARY(ew_mul);
    case FUSED_EW_DIV: BINARY(ew_div);
    case FUSED_EW_POW: BINARY(ew_pow);
    case FUSED_EW_MAX: BINARY(ew_max);
    case FUSED_EW_MIN: BINARY(ew_min);
    case FUSED_EW_PRELU: BINARY(ew_prelu);
    case FUSED_EW_RELU: UNARY(ew_relu(x));
    case FUSED_EW_LEAKY_RELU: UNARY(ew_leaky_relu(x, a));
    case FUSED_EW_SIGMOID: UNARY(ew_sigmoid(x));
    case FUSED_EW_TANH: UNARY(ew_tanh(x));
    case FUSED_EW_EXP: UNARY(ew_exp(x));
    case FUSED_EW_LOG: UNARY(ew_log(x));
    case FUSED_EW_SQRT: UNARY(ew_sqrt(x));
    case FUSED_EW_NEG: UNARY(ew_neg(x));
    case FUSED_EW_ABS: UNARY(ew_abs(x));
    case FUSED_EW_RECIPROCAL: UNARY(ew_reciprocal(x));
    case FUSED_EW_ERF: UNARY(ew_erf(x));
    case FUSED_EW_CLIP: UNARY(ew_clip(x, a, be));
    case FUSED_EW_HARD_SIGMOID: UNARY(ew_hard_sigmoid(x, a, be));
    case FUSED_EW_HARD_SWISH: UNARY(ew_hard_swish(x));
    case FUSED_EW_ELU: UNARY(ew_elu(x, a));
    case FUSED_EW_CELU: UNARY(ew_celu(x, a));
    case FUSED_EW_SELU: UNARY(ew_selu(x, a, be));
    case FUSED_EW_SOFTPLUS: UNARY(ew_softplus(x));
    case FUSED_EW_SOFTSIGN: UNARY(ew_softsign(x));
    case FUSED_EW_MISH: UNARY(ew_mish(x));
    case FUSED_EW_THRESHOLDED_RELU: UNARY(ew_thresholded_relu(x, a));
    case FUSED_EW_FLOOR: UNARY(ew_floor(x));
    case FUSED_EW_CEIL: UNARY(ew_ceil(x));
    case FUSED_EW_ROUND: UNARY(ew_round(x));
    case FUSED_EW_SIGN: UNARY(ew_sign(x));
    case FUSED_EW_SIN: UNARY(ew_sin(x));
    case FUSED_EW_COS: UNARY(ew_cos(x));
    case FUSED_EW_GELU: UNARY(ew_gelu_erf(x));
    case FUSED_EW_GELU_TANH: UNARY(ew_gelu_tanh(x));
    case FUSED_EW_COUNT: break;
    }
}

bool ew_step_is_scalar(int64_t code)
{
    return code == FUSED_EW_POW || code == FUSED_EW_SIN || code == FUSED_EW_COS;
}

/* As the vector paths: the first step reads x where it lies (or a block of its one value),
 * the last writes y, the ones between go through v. */
static void chain_generic(const ew_prog *p, float *y, int64_t m, const float *const *opd,
                          const int64_t *os)
{
    float v[EW_BLOCK];
    const float *o[EW_MAX_IN];
    int64_t nk = 1;
    for (int32_t s = 0; s < p->n; s++)
        if (p->operand[s] + 1 > nk) nk = p->operand[s] + 1;
    if (p->n == 1 && os[0]) {
        ew_step_scalar(p, 0, opd[0], y, m, opd, os);
        return;
    }
    for (int64_t j = 0; j < m; j += EW_BLOCK) {
        const int64_t mb = m - j < EW_BLOCK ? m - j : EW_BLOCK;
        for (int64_t k = 0; k < nk; k++) o[k] = opd[k] + j * os[k];
        const float *src = o[0];
        if (!os[0]) {
            for (int64_t i = 0; i < mb; i++) v[i] = o[0][0];
            src = v;
        }
        if (p->n == 0) {
            memmove(y + j, src, sizeof(float) * (size_t)mb);
            continue;
        }
        for (int32_t s = 0; s < p->n; s++) {
            ew_step_scalar(p, s, src, s == p->n - 1 ? y + j : v, mb, o, os);
            src = v;
        }
    }
}

/* ---- softmax: softmax.c's formulas (max first, exp, sum in double, one multiply) ---- */

static void softmax_cols_generic(bool log_mode, const float *x, float *y, int64_t n, int64_t inner,
                                 int64_t m)
{
    float mx[EW_COLS];
    double sum[EW_COLS];
    for (int64_t j = 0; j < m; j++) {
        mx[j] = -INFINITY;
        sum[j] = 0.0;
    }
    for (int64_t k = 0; k < n; k++) {
        const float *xr = x + k * inner;
        for (int64_t j = 0; j < m; j++) {
            float v = xr[j];
            if (v > mx[j] || (isnan(v) && !isnan(mx[j])) || k == 0) mx[j] = v;
        }
    }
    for (int64_t k = 0; k < n; k++) {
        const float *xr = x + k * inner;
        float *yr = y + k * inner;
        for (int64_t j = 0; j < m; j++) {
            float e = expf(xr[j] - mx[j]);
            if (!log_mode) yr[j] = e;
            sum[j] += e;
        }
    }
    if (!log_mode) {
        for (int64_t j = 0; j < m; j++) sum[j] = 1.0 / sum[j];
        for (int64_t k = 0; k < n; k++)
            for (int64_t j = 0; j < m; j++) y[k * inner + j] = (float)(y[k * inner + j] * sum[j]);
    } else {
        float lse[EW_COLS];
        for (int64_t j = 0; j < m; j++) lse[j] = (float)log(sum[j]);
        for (int64_t k = 0; k < n; k++)
            for (int64_t j = 0; j < m; j++) y[k * inner + j] = (x[k * inner + j] - mx[j]) - lse[j];
    }
}

static void softmax_rows_generic(bool log_mode, const float *x, float *y, int64_t rows, int64_t len)
{
    for (int64_t r = 0; r < rows; r++)
        softmax_cols_generic(log_mode, x + r * len, y + r * len, len, 1, 1);
}

/* ---- LayerNormalization: softmax.c's lin_eval_layernorm, row by row ---- */

static void layernorm_rows_generic(const float *x, float *y, int64_t rows, int64_t d,
                                   const float *scale, const float *bias, float eps,
                                   float *mean_out, float *inv_out)
{
    for (int64_t o = 0; o < rows; o++) {
        const float *xr = x + o * d;
        float *yr = y + o * d;
        double s = 0.0, v = 0.0;
        for (int64_t j = 0; j < d; j++) s += xr[j];
        double mean = d > 0 ? s / (double)d : NAN;
        for (int64_t j = 0; j < d; j++) {
            double dev = xr[j] - mean;
            v += dev * dev;
        }
        double var = d > 0 ? v / (double)d : NAN;
        float meanf = (float)mean, inv = (float)(1.0 / sqrt(var + (double)eps));
        if (mean_out) mean_out[o] = meanf;
        if (inv_out) inv_out[o] = inv;
        for (int64_t j = 0; j < d; j++) {
            float t = (xr[j] - meanf) * inv * scale[j];
            yr[j] = bias ? t + bias[j] : t;
        }
    }
}

/* ---- row sums: reduce.c's red_row and red_finish ---- */

static void sum_rows_generic(const float *x, float *y, int64_t rows, int64_t len, bool mean)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * len;
        double acc = 0.0;
        for (int64_t i = 0; i < len; i++) acc += xr[i];
        y[r] = mean ? (len > 0 ? (float)(acc / (double)len) : NAN) : (float)acc;
    }
}

const ew_isa ew_isa_generic = {
    .name = "generic",
    .chain = chain_generic,
    .softmax_rows = softmax_rows_generic,
    .softmax_cols = softmax_cols_generic,
    .layernorm_rows = layernorm_rows_generic,
    .sum_rows = sum_rows_generic,
};
