/* extra_grid.c - GridSample over 1 to 6 spatial dims (4-D images, 5-D volumes, ...):
 * nearest, N-linear and N-cubic sampling with zeros, border and reflection padding,
 * following ONNX's reference (itself PyTorch's rules for 4-D and 5-D inputs). */
#include <math.h>
#include <string.h>

#include "ir/ops/extra_impl.h"

#define GS_MAX_SPATIAL (KILN_MAX_RANK - 2)
/* The cubic convolution kernel's parameter (Keys, 1981) that ONNX's spec and PyTorch
 * use for GridSample. */
#define GS_CUBIC_A (-0.75)

typedef enum gs_interp { GS_NEAREST, GS_LINEAR, GS_CUBIC } gs_interp;
typedef enum gs_pad { GS_ZEROS, GS_BORDER, GS_REFLECTION } gs_pad;

typedef struct gs_mode {
    gs_interp interp;
    gs_pad pad;
    bool align;
} gs_mode;

static kiln_status gs_read(const ir_node *n, gs_mode *m)
{
    const char *mode = ir_attr_string(n, "mode"), *pad = ir_attr_string(n, "padding_mode");
    int64_t align = ir_attr_int(n, "align_corners");
    /* opset 16 spelled the modes bilinear and bicubic */
    if (strcmp(mode, "linear") == 0 || strcmp(mode, "bilinear") == 0)
        m->interp = GS_LINEAR;
    else if (strcmp(mode, "nearest") == 0)
        m->interp = GS_NEAREST;
    else if (strcmp(mode, "cubic") == 0 || strcmp(mode, "bicubic") == 0)
        m->interp = GS_CUBIC;
    else
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                             "mode is \"%s\", expected \"linear\", \"nearest\" or \"cubic\"", mode);
    if (strcmp(pad, "zeros") == 0)
        m->pad = GS_ZEROS;
    else if (strcmp(pad, "border") == 0)
        m->pad = GS_BORDER;
    else if (strcmp(pad, "reflection") == 0)
        m->pad = GS_REFLECTION;
    else
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                             "padding_mode is \"%s\", expected \"zeros\", \"border\" or "
                             "\"reflection\"",
                             pad);
    if (align != 0 && align != 1)
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH, "align_corners is %lld, expected 0 or 1",
                             (long long)align);
    m->align = align == 1;
    return KILN_OK;
}

kiln_status ex_infer_grid_sample(ir_infer *c)
{
    gs_mode m;
    char a[KILN_DIMS_STR_MAX], b[KILN_DIMS_STR_MAX];
    const ir_tensor *x = &c->in[0], *g = &c->in[1];
    KILN_TRY(gs_read(c->node, &m));
    if (x->dtype != KILN_DTYPE_F32 || g->dtype != KILN_DTYPE_F32)
        return ir_node_error(c->node, KILN_ERR_UNSUPPORTED,
                             "X and grid have dtypes %s and %s, expected f32",
                             kiln_dtype_name(x->dtype), kiln_dtype_name(g->dtype));
    const int32_t rank = x->shape.rank, r = rank - 2;
    if (rank < 3)
        return ir_node_error(c->node, KILN_ERR_SHAPE,
                             "X has shape %s, expected N x C x D1 x ... x Dr (rank 3 or more)",
                             kiln_dims_str(&x->shape, a, sizeof a));
    const int64_t last = g->shape.rank == rank ? g->shape.d[rank - 1] : 0;
    if (g->shape.rank != rank || (last != r && last >= 0) ||
        (g->shape.d[0] != x->shape.d[0] && x->shape.d[0] >= 0 && g->shape.d[0] >= 0))
        return ir_node_error(c->node, KILN_ERR_SHAPE,
                             "grid has shape %s, expected N x D1_out x ... x D%d_out x %d with N "
                             "of X %s",
                             kiln_dims_str(&g->shape, b, sizeof b), (int)r, (int)r,
                             kiln_dims_str(&x->shape, a, sizeof a));
    for (int32_t d = 2; d < rank; d++)
        if (x->shape.d[d] == 0)
            return ir_node_error(c->node, KILN_ERR_SHAPE, "X %s has an empty spatial dim",
                                 kiln_dims_str(&x->shape, a, sizeof a));
    /* N x C x D1_out x ... x Dr_out */
    kiln_dims o = x->shape;
    for (int32_t d = 1; d <= r; d++) o.d[d + 1] = g->shape.d[d];
    c->out[0].dtype = KILN_DTYPE_F32;
    c->out[0].shape = o;
    return KILN_OK;
}

/* Reflects v into [lo, hi] by folding at the borders; fmod on twice the range keeps
 * the parity of the fold count without converting to an integer. */
static double gs_reflect(double v, double lo, double hi)
{
    double rng = hi - lo;
    if (rng <= 0.0 || !isfinite(v)) return lo;
    if (v < lo) {
        double t = fmod(lo - v, 2.0 * rng);
        return t < rng ? lo + t : hi - (t - rng);
    }
    if (v > hi) {
        double t = fmod(v - hi, 2.0 * rng);
        return t < rng ? hi - t : lo + (t - rng);
    }
    return v;
}

/* One dim: size, the borders of its valid region, the padding. */
typedef struct gs_axis {
    int64_t size;
    double lo, hi;
} gs_axis;

/* The grid coordinate in pixels, with border and reflection applied where it lies
 * outside [lo, hi], then bounded so that floor and rounding stay in int64 range (a
 * bounded value is as far outside as the original for zeros padding). */
static double gs_coord(double g, const gs_axis *ax, const gs_mode *m)
{
    double v = m->align ? (g + 1.0) / 2.0 * (double)(ax->size - 1)
                        : ((g + 1.0) * (double)ax->size - 1.0) / 2.0;
    if (m->interp == GS_NEAREST) v = nearbyint(v);
    if (v < ax->lo || v > ax->hi) {
        if (m->pad == GS_BORDER)
            v = v < 0.0 ? 0.0 : (double)(ax->size - 1);
        else if (m->pad == GS_REFLECTION)
            v = gs_reflect(v, ax->lo, ax->hi);
    }
    double far = (double)ax->size + 2.0;
    return v < -far ? -far : (v > far ? far : v);
}

/* The index a tap reads, or -1 for a zero (zeros padding outside the input). */
static int64_t gs_index(int64_t i, const gs_axis *ax, gs_pad pad)
{
    if (i >= 0 && i < ax->size) return i;
    if (pad == GS_ZEROS) return -1;
    if (pad == GS_REFLECTION) i = (int64_t)gs_reflect((double)i, ax->lo, ax->hi);
    return i < 0 ? 0 : (i >= ax->size ? ax->size - 1 : i);
}

/* Keys' cubic convolution weight of a tap at distance d >= 0 from the point. */
static double gs_cubic(double d)
{
    const double a = GS_CUBIC_A;
    if (d <= 1.0) return ((a + 2.0) * d - (a + 3.0)) * d * d + 1.0;
    if (d < 2.0) return ((a * d - 5.0 * a) * d + 8.0 * a) * d - 4.0 * a;
    return 0.0;
}

/* The taps of one dim: element offsets into a plane of X (-1 reads a zero) and their
 * weights. */
typedef struct gs_taps {
    int32_t n;
    int64_t off[4];
    double w[4];
} gs_taps;

static void gs_taps_make(double v, const gs_axis *ax, int64_t stride, const gs_mode *m, gs_taps *t)
{
    double f = floor(v), frac = v - f;
    int64_t i0 = (int64_t)f, first;
    if (m->interp == GS_NEAREST) { /* v is already rounded */
        t->n = 1;
        first = i0;
        t->w[0] = 1.0;
    } else if (m->interp == GS_LINEAR) {
        t->n = 2;
        first = i0;
        t->w[0] = 1.0 - frac;
        t->w[1] = frac;
    } else {
        t->n = 4;
        first = i0 - 1;
        for (int k = 0; k < 4; k++) t->w[k] = gs_cubic(fabs(frac - (double)(k - 1)));
    }
    for (int32_t k = 0; k < t->n; k++) {
        int64_t i = gs_index(first + k, ax, m->pad);
        t->off[k] = i < 0 ? -1 : i * stride;
    }
}

/* The weighted sum over every combination of one tap per dim. */
static double gs_sum(const float *plane, const gs_taps *t, int32_t r)
{
    int32_t k[GS_MAX_SPATIAL] = {0};
    double sum = 0.0;
    for (;;) {
        double w = 1.0;
        int64_t off = 0;
        bool zero = false;
        for (int32_t d = 0; d < r; d++) {
            w *= t[d].w[k[d]];
            off += t[d].off[k[d]];
            zero |= t[d].off[k[d]] < 0;
        }
        if (!zero) sum += w * plane[off];
        int32_t d = r - 1;
        while (d >= 0 && ++k[d] == t[d].n) k[d--] = 0;
        if (d < 0) return sum;
    }
}

kiln_status ex_eval_grid_sample(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                                int32_t n_out)
{
    gs_mode m;
    KILN_TRY(gs_read(n, &m));
    const kiln_dims *xs = &in[0].shape, *gsh = &in[1].shape;
    const int32_t r = xs->rank - 2;
    /* shapes can change after inference (dynamic inputs): re-check what indexing needs */
    bool ok = r >= 1 && gsh->rank == xs->rank && gsh->d[0] == xs->d[0] && gsh->d[r + 1] == r;
    for (int32_t d = 0; ok && d < r; d++) ok = xs->d[2 + d] >= 1;
    if (!ok) return ir_node_error(n, KILN_ERR_SHAPE, "X and grid shapes do not agree when running");
    const int64_t N = xs->d[0], C = xs->d[1];
    int64_t pts = 1, plane = 1, stride[GS_MAX_SPATIAL];
    gs_axis ax[GS_MAX_SPATIAL];
    for (int32_t d = r - 1; d >= 0; d--) {
        pts *= gsh->d[1 + d];
        ax[d].size = xs->d[2 + d];
        ax[d].lo = m.align ? 0.0 : -0.5;
        ax[d].hi = m.align ? (double)(ax[d].size - 1) : (double)ax[d].size - 0.5;
        stride[d] = plane;
        plane *= ax[d].size;
    }
    const float *x = in[0].data, *grid = in[1].data;
    float *y = out[0].data;
    gs_taps taps[GS_MAX_SPATIAL];
    for (int64_t b = 0; b < N; b++) {
        for (int64_t p = 0; p < pts; p++) {
            /* a grid point lists its coordinates innermost dim first: (x, y, z) */
            const float *gp = grid + (b * pts + p) * r;
            bool nan = false;
            for (int32_t d = 0; d < r; d++) nan |= isnan(gp[d]);
            for (int32_t d = 0; d < r && !nan; d++)
                gs_taps_make(gs_coord(gp[r - 1 - d], &ax[d], &m), &ax[d], stride[d], &m, &taps[d]);
            for (int64_t ch = 0; ch < C; ch++)
                y[(b * C + ch) * pts + p] =
                    nan ? NAN : (float)gs_sum(x + (b * C + ch) * plane, taps, r);
        }
    }
    return KILN_OK;
}
