/* dwpool.h - private to the depthwise-convolution and pooling kernels: the description of
 * one layer that the driver (dwconv_pool.c) hands its ISA paths (dwpool_generic.c,
 * dwpool_avx2.c, dwpool_avx512.c), and what each path computes. */
#ifndef KILN_DWPOOL_H
#define KILN_DWPOOL_H

#include <stdbool.h>
#include <stdint.h>

/* What a windowed layer computes at each output: a depthwise convolution (bias, the taps'
 * products, then the residual and the activation), the largest tap, or the taps' mean. */
typedef enum dwp_op { DWP_CONV = 0, DWP_MAX = 1, DWP_AVG = 2 } dwp_op;

/* Largest kernel side the paths take: they keep per-tap rows and column ranges on the stack. */
#define DWP_MAX_K 64

/* Room for a vector path's per-layer tables (dwpool_simd.h's dwp_prep). */
#define DWP_PREP_BYTES 16384

/* One 2-D windowed layer over NCHW f32 tensors, as ir_window_of resolves its window. Output
 * plane p (of planes = batch * c_out) is channel p % c_out of image p / c_out and reads input
 * channel (p % c_out) / mult of the same image (pools: mult 1, c_in = c_out). */
typedef struct dwp_args {
    dwp_op op;
    int64_t planes, c_in, c_out, mult;
    int64_t ih, iw, oh, ow;
    int64_t kh, kw, sh, sw, dh, dw;
    int64_t ph, pw;     /* pads at the beginning */
    int64_t pe_h, pe_w; /* pads at the end (AveragePool's count_include_pad) */
    bool include_pad;   /* AveragePool */
    const float *x;     /* [batch, c_in, ih, iw] */
    const float *w;     /* conv: [c_out, 1, kh, kw] as the layer has them */
    const float *bias;  /* conv: [c_out] or NULL */
    const float *z;     /* conv: the residual, the output's shape, or NULL */
    float *y;           /* [batch, c_out, oh, ow] */
    int32_t act;        /* conv: ir_fused_act_code's value (gemm_act's order) */
    float alpha, beta;  /* the activation's parameters */
    /* What a vector path works out once per layer and run (dwp_prepare_*): lane masks of
     * the chunks of a row, the taps of small planes; in its own layout. */
    _Alignas(64) unsigned char prep[DWP_PREP_BYTES];
} dwp_args;

/* Global pools: `planes` planes of `size` floats each, one output per plane. */
typedef struct dwp_global {
    bool is_max;
    int64_t planes, size;
    const float *x;
    float *y;
} dwp_global;

/* Output rows [oy0, oy1) of output plane p. Every output is computed the same way whatever
 * the split, so callers may divide planes and rows among threads freely. */
void dwp_rows_generic(const dwp_args *a, int64_t p, int64_t oy0, int64_t oy1);
/* Planes [p0, p1). */
void dwp_global_generic(const dwp_global *g, int64_t p0, int64_t p1);

#if defined(__x86_64__)
/* Fills a->prep for the path; once per layer and run, before any dwp_rows_* of it. */
void dwp_prepare_avx2(dwp_args *a);
void dwp_prepare_avx512(dwp_args *a);
void dwp_rows_avx2(const dwp_args *a, int64_t p, int64_t oy0, int64_t oy1);
void dwp_global_avx2(const dwp_global *g, int64_t p0, int64_t p1);
void dwp_rows_avx512(const dwp_args *a, int64_t p, int64_t oy0, int64_t oy1);
void dwp_global_avx512(const dwp_global *g, int64_t p0, int64_t p1);
#endif

/* The geometry both the portable and the vector paths share. */

static inline int64_t dwp_floor_div(int64_t a, int64_t b)
{
    if (b == 1) return a; /* strides and dilations mostly: no division */
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

static inline int64_t dwp_ceil_div(int64_t a, int64_t b) { return -dwp_floor_div(-a, b); }

/* The taps [*lo, *hi) of a window starting at input position `start` (stride already
 * applied) that fall inside [0, in), for a kernel of k taps `dil` apart. */
static inline void dwp_taps(int64_t start, int64_t in, int64_t k, int64_t dil, int64_t *lo,
                            int64_t *hi)
{
    int64_t l = start < 0 ? dwp_ceil_div(-start, dil) : 0;
    int64_t h = dwp_floor_div(in - 1 - start, dil) + 1;
    if (h > k) h = k;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

/* AveragePool's divisor along one dim: the taps inside the input, or with count_include_pad
 * those inside the padded input [-pad_begin, in + pad_end), as pool.c counts them. */
static inline int64_t dwp_avg_taps(int64_t start, int64_t in, int64_t pad_end, int64_t k,
                                   int64_t dil, bool include_pad)
{
    int64_t lo, hi;
    if (!include_pad) {
        dwp_taps(start, in, k, dil, &lo, &hi);
        return hi - lo;
    }
    int64_t t = dwp_floor_div(in + pad_end - 1 - start, dil) + 1;
    if (t > k) t = k;
    return t > 0 ? t : 0;
}

/* The output columns [*lo, *hi) whose tap kx reads inside the input row. */
static inline void dwp_cols(const dwp_args *a, int64_t kx, int64_t *lo, int64_t *hi)
{
    int64_t off = kx * a->dw - a->pw; /* output ox reads ox * sw + off */
    int64_t l = off < 0 ? dwp_ceil_div(-off, a->sw) : 0;
    int64_t h = dwp_floor_div(a->iw - 1 - off, a->sw) + 1;
    if (h > a->ow) h = a->ow;
    if (h < 0) h = 0;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

#endif /* KILN_DWPOOL_H */
