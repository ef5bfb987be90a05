/* dwpool_generic.c - the portable path of the depthwise convolution and pooling kernels: an
 * output row at a time, each tap over the columns it covers (y[ox] += w * x[ox * s + off]:
 * loops that gcc vectorizes with the baseline SIMD), the row staying in L1. Each output sees
 * its taps in the reference kernels' order with the same roundings (ISO C contracts no
 * a * b + c), and the activations are the scalar formulas, so this path gives the bits of
 * the reference kernels of src/ir. */
#include <math.h>

#include "backends/cpu/dwpool/dwpool.h"
#include "backends/cpu/gemm/gemm_impl.h"

/* y[i] += w * x[i * s] over n columns (a tap of a convolution). */
static void axpy(float *restrict y, const float *restrict x, int64_t n, int64_t s, float w)
{
    if (s == 1)
        for (int64_t i = 0; i < n; i++) y[i] += w * x[i];
    else
        for (int64_t i = 0; i < n; i++) y[i] += w * x[i * s];
}

/* y[i] += x[i * s] (a tap of an average pool). */
static void add_tap(float *restrict y, const float *restrict x, int64_t n, int64_t s)
{
    if (s == 1)
        for (int64_t i = 0; i < n; i++) y[i] += x[i];
    else
        for (int64_t i = 0; i < n; i++) y[i] += x[i * s];
}

/* The reference's max rule, applied tap by tap: a larger value or a first NaN wins. */
static void max_tap(float *restrict y, const float *restrict x, int64_t n, int64_t s)
{
    for (int64_t i = 0; i < n; i++) {
        const float v = x[i * s], b = y[i];
        y[i] = (v > b || (v != v && b == b)) ? v : b;
    }
}

/* Outputs of a block of rows a convolution sums tap by tap (16 KiB, within L1). */
#define DWP_GEN_BLOCK 4096

void dwp_rows_generic(const dwp_args *a, int64_t p, int64_t oy0, int64_t oy1)
{
    const int64_t oc = p % a->c_out, img = p / a->c_out, ow = a->ow;
    const float *xp = a->x + (img * a->c_in + oc / a->mult) * a->ih * a->iw;
    const float *wp = a->w ? a->w + oc * a->kh * a->kw : NULL;
    const float *zp = a->z ? a->z + p * a->oh * ow : NULL;
    float *yp = a->y + p * a->oh * ow;
    const float init = a->op == DWP_CONV  ? (a->bias ? a->bias[oc] : 0.0f)
                       : a->op == DWP_MAX ? -INFINITY
                                          : 0.0f;
    int64_t col_lo[DWP_MAX_K], col_hi[DWP_MAX_K];
    for (int64_t kx = 0; kx < a->kw; kx++) dwp_cols(a, kx, &col_lo[kx], &col_hi[kx]);
    /* A convolution goes tap by tap over blocks of rows that stay in L1 (the reference's
     * order, without its setup per tap and row): the bias, then each tap's rows that read
     * inside the input. */
    const int64_t block = ow < DWP_GEN_BLOCK ? DWP_GEN_BLOCK / ow : 1;
    for (int64_t b0 = oy0; a->op == DWP_CONV && b0 < oy1; b0 += block) {
        const int64_t b1 = b0 + block < oy1 ? b0 + block : oy1;
        for (int64_t i = b0 * ow; i < b1 * ow; i++) yp[i] = init;
        for (int64_t ky = 0; ky < a->kh; ky++) {
            const int64_t off = ky * a->dh - a->ph; /* output row oy reads oy * sh + off */
            int64_t r_lo = off < 0 ? dwp_ceil_div(-off, a->sh) : 0;
            int64_t r_hi = dwp_floor_div(a->ih - 1 - off, a->sh) + 1;
            r_lo = r_lo > b0 ? r_lo : b0;
            r_hi = r_hi < b1 ? r_hi : b1;
            for (int64_t kx = 0; kx < a->kw; kx++) {
                const int64_t lo = col_lo[kx], n = col_hi[kx] - lo;
                const float w = wp[ky * a->kw + kx];
                if (n <= 0) continue;
                for (int64_t oy = r_lo; oy < r_hi; oy++)
                    axpy(yp + oy * ow + lo,
                         xp + (oy * a->sh + off) * a->iw + lo * a->sw + kx * a->dw - a->pw, n,
                         a->sw, w);
            }
        }
    }
    for (int64_t oy = oy0; oy < oy1 && a->op != DWP_CONV; oy++) {
        float *y = yp + oy * ow;
        const int64_t iy0 = oy * a->sh - a->ph;
        int64_t ky_lo, ky_hi;
        dwp_taps(iy0, a->ih, a->kh, a->dh, &ky_lo, &ky_hi);
        for (int64_t ox = 0; ox < ow; ox++) y[ox] = init;
        for (int64_t ky = ky_lo; ky < ky_hi; ky++) {
            const float *xr = xp + (iy0 + ky * a->dh) * a->iw;
            for (int64_t kx = 0; kx < a->kw; kx++) {
                const int64_t lo = col_lo[kx], n = col_hi[kx] - lo;
                if (n <= 0) continue;
                const float *xs = xr + lo * a->sw + kx * a->dw - a->pw;
                if (a->op == DWP_MAX)
                    max_tap(y + lo, xs, n, a->sw);
                else
                    add_tap(y + lo, xs, n, a->sw);
            }
        }
        if (a->op == DWP_AVG) {
            /* columns whose taps are all inside count kw in both modes */
            const int64_t cy = dwp_avg_taps(iy0, a->ih, a->pe_h, a->kh, a->dh, a->include_pad);
            const int64_t in_lo = col_lo[0], in_hi = col_hi[a->kw - 1];
            for (int64_t ox = 0; ox < ow; ox++) {
                const int64_t cx = ox >= in_lo && ox < in_hi
                                       ? a->kw
                                       : dwp_avg_taps(ox * a->sw - a->pw, a->iw, a->pe_w, a->kw,
                                                      a->dw, a->include_pad);
                y[ox] = cy * cx > 0 ? y[ox] / (float)(cy * cx) : NAN;
            }
        }
    }
    /* the residual and the activation over the rows done: the GEMM's portable epilogue, one
     * loop per activation with the reference's formulas */
    if (a->op == DWP_CONV && (zp || a->act)) {
        const int64_t n = (oy1 - oy0) * ow; /* the rows are contiguous: one long row */
        gemm_epilogue ep = {.residual = zp ? zp + oy0 * ow : NULL,
                            .ldr = n,
                            .act = (gemm_act)a->act,
                            .alpha = a->alpha,
                            .beta = a->beta};
        gemm_epilogue_generic(yp + oy0 * ow, (size_t)n, 1, (size_t)n, 0, 0, &ep);
    }
}

/* The reference's loops: a double sum in order; the first maximum (or NaN) wins. */
void dwp_global_generic(const dwp_global *g, int64_t p0, int64_t p1)
{
    for (int64_t p = p0; p < p1; p++) {
        const float *x = g->x + p * g->size;
        if (g->is_max) {
            float best = x[0];
            for (int64_t i = 1; i < g->size; i++)
                if (x[i] > best || (x[i] != x[i] && best == best)) best = x[i];
            g->y[p] = best;
        } else {
            double sum = 0.0;
            for (int64_t i = 0; i < g->size; i++) sum += x[i];
            g->y[p] = (float)(sum / (double)g->size);
        }
    }
}
