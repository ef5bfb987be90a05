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

void ew_step_scalar(const ew_prog *p, int32_t s, const float *src, float *dst, int64_t m,
                    const float *const *opd, const int64_t *os)
{
    const int64_t k = p->operand[s] < 0 ? 0 : p->operand[s];
    fused_ew_run_step(p->ops[s], p->side[s] != 0, p->alpha[s], p->beta[s], src, dst, m, opd[k],
                      os[k]);
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
