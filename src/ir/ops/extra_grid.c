/* extra_grid.c - GridSample on 4-D inputs: linear and nearest sampling with zeros,
 * border and reflection padding, following ONNX's reference (itself PyTorch's rules). */
#include <math.h>
#include <string.h>

#include "ir/ops/extra_impl.h"

typedef enum gs_pad { GS_ZEROS, GS_BORDER, GS_REFLECTION } gs_pad;

typedef struct gs_mode {
    bool nearest;
    gs_pad pad;
    bool align;
} gs_mode;

static kiln_status gs_read(const ir_node *n, gs_mode *m)
{
    const char *mode = ir_attr_string(n, "mode"), *pad = ir_attr_string(n, "padding_mode");
    int64_t align = ir_attr_int(n, "align_corners");
    /* opset 16 spelled the modes bilinear and bicubic */
    if (strcmp(mode, "linear") == 0 || strcmp(mode, "bilinear") == 0)
        m->nearest = false;
    else if (strcmp(mode, "nearest") == 0)
        m->nearest = true;
    else if (strcmp(mode, "cubic") == 0 || strcmp(mode, "bicubic") == 0)
        return ir_node_error(n, KILN_ERR_UNSUPPORTED,
                             "mode \"%s\" is not supported, expected \"linear\" or \"nearest\"",
                             mode);
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
    if (x->shape.rank != 4 || g->shape.rank != 4)
        return ir_node_error(c->node, KILN_ERR_UNSUPPORTED,
                             "X %s and grid %s: only 4-D X (N x C x H x W) is supported",
                             kiln_dims_str(&x->shape, a, sizeof a),
                             kiln_dims_str(&g->shape, b, sizeof b));
    if (g->shape.d[3] != 2 ||
        (g->shape.d[0] != x->shape.d[0] && x->shape.d[0] >= 0 && g->shape.d[0] >= 0))
        return ir_node_error(c->node, KILN_ERR_SHAPE,
                             "grid has shape %s, expected N x H_out x W_out x 2 with N of X %s",
                             kiln_dims_str(&g->shape, b, sizeof b),
                             kiln_dims_str(&x->shape, a, sizeof a));
    if (x->shape.d[2] == 0 || x->shape.d[3] == 0)
        return ir_node_error(c->node, KILN_ERR_SHAPE, "X %s has an empty spatial dim",
                             kiln_dims_str(&x->shape, a, sizeof a));
    c->out[0].dtype = KILN_DTYPE_F32;
    c->out[0].shape =
        kiln_dims_make(4, (int64_t[]){x->shape.d[0], x->shape.d[1], g->shape.d[1], g->shape.d[2]});
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
    if (m->nearest) v = nearbyint(v);
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

static double gs_pixel(const float *plane, const gs_axis *ay, const gs_axis *ax, int64_t yi,
                       int64_t xi, gs_pad pad)
{
    int64_t r = gs_index(yi, ay, pad), c = gs_index(xi, ax, pad);
    return r < 0 || c < 0 ? 0.0 : plane[r * ax->size + c];
}

kiln_status ex_eval_grid_sample(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                                int32_t n_out)
{
    gs_mode m;
    KILN_TRY(gs_read(n, &m));
    const kiln_dims *xs = &in[0].shape, *gsh = &in[1].shape;
    /* shapes can change after inference (dynamic inputs): re-check what indexing needs */
    if (xs->rank != 4 || gsh->rank != 4 || gsh->d[0] != xs->d[0] || gsh->d[3] != 2 ||
        xs->d[2] < 1 || xs->d[3] < 1)
        return ir_node_error(n, KILN_ERR_SHAPE, "X and grid shapes do not agree when running");
    const int64_t N = xs->d[0], C = xs->d[1], pts = gsh->d[1] * gsh->d[2];
    gs_axis ay = {xs->d[2], 0, 0}, ax = {xs->d[3], 0, 0};
    gs_axis *axes[2] = {&ay, &ax};
    for (int i = 0; i < 2; i++) {
        axes[i]->lo = m.align ? 0.0 : -0.5;
        axes[i]->hi = m.align ? (double)(axes[i]->size - 1) : (double)axes[i]->size - 0.5;
    }
    const float *x = in[0].data, *grid = in[1].data;
    float *y = out[0].data;
    const int64_t plane = ay.size * ax.size;
    for (int64_t b = 0; b < N; b++) {
        for (int64_t p = 0; p < pts; p++) {
            const float *gp = grid + (b * pts + p) * 2;
            /* grid holds (x, y): width first */
            double gx = gp[0], gy = gp[1];
            bool nan = isnan(gx) || isnan(gy);
            double cx = nan ? 0.0 : gs_coord(gx, &ax, &m), cy = nan ? 0.0 : gs_coord(gy, &ay, &m);
            for (int64_t ch = 0; ch < C; ch++) {
                const float *xp = x + (b * C + ch) * plane;
                double v;
                if (nan) {
                    v = NAN;
                } else if (m.nearest) {
                    v = gs_pixel(xp, &ay, &ax, (int64_t)cy, (int64_t)cx, m.pad);
                } else {
                    double fx = floor(cx), fy = floor(cy), wx = cx - fx, wy = cy - fy;
                    int64_t x0 = (int64_t)fx, y0 = (int64_t)fy;
                    double top = (1.0 - wx) * gs_pixel(xp, &ay, &ax, y0, x0, m.pad) +
                                 wx * gs_pixel(xp, &ay, &ax, y0, x0 + 1, m.pad);
                    double bot = (1.0 - wx) * gs_pixel(xp, &ay, &ax, y0 + 1, x0, m.pad) +
                                 wx * gs_pixel(xp, &ay, &ax, y0 + 1, x0 + 1, m.pad);
                    v = (1.0 - wy) * top + wy * bot;
                }
                y[((b * C + ch) * pts) + p] = (float)v;
            }
        }
    }
    return KILN_OK;
}
