/* conv.c - Conv and ConvTranspose (ONNX, N-D, groups, dilations, auto_pad): schemas,
 * shape rules and direct reference kernels that run row by row over whole output rows,
 * fast enough for a ResNet-50 in the tests. */
#include <string.h>

#include "ir/ops/nn_impl.h"

const ir_attr_def ir_nn_conv_attrs[] = {
    {"auto_pad", KILN_ATTR_STRING, false, 0, 0, "NOTSET"},
    {"dilations", KILN_ATTR_INTS, false, 0, 0, NULL},
    {"group", KILN_ATTR_INT, false, 1, 0, NULL},
    {"kernel_shape", KILN_ATTR_INTS, false, 0, 0, NULL},
    {"pads", KILN_ATTR_INTS, false, 0, 0, NULL},
    {"strides", KILN_ATTR_INTS, false, 0, 0, NULL},
};

const ir_attr_def ir_nn_conv_transpose_attrs[] = {
    {"auto_pad", KILN_ATTR_STRING, false, 0, 0, "NOTSET"},
    {"dilations", KILN_ATTR_INTS, false, 0, 0, NULL},
    {"group", KILN_ATTR_INT, false, 1, 0, NULL},
    {"kernel_shape", KILN_ATTR_INTS, false, 0, 0, NULL},
    {"output_padding", KILN_ATTR_INTS, false, 0, 0, NULL},
    {"output_shape", KILN_ATTR_INTS, false, 0, 0, NULL},
    {"pads", KILN_ATTR_INTS, false, 0, 0, NULL},
    {"strides", KILN_ATTR_INTS, false, 0, 0, NULL},
};

/* Everything both ops derive from attributes and input shapes; computed the same way
 * by shape inference and by evaluation. */
typedef struct conv_geom {
    int64_t batch, c_in, c_out, group;
    nn_window w;
    int64_t ist[NN_MAX_SPATIAL], ost[NN_MAX_SPATIAL]; /* plane strides, for evaluation */
} conv_geom;

/* Checks X, W and B of either op. `transposed`: W is C x M/group x k... instead of
 * M x C/group x k.... Fills everything of `g` but the window's out sizes and pads. */
static kiln_status conv_check(const ir_node *n, const ir_tensor *in, int32_t n_in, bool transposed,
                              conv_geom *g)
{
    const ir_tensor *x = &in[0], *w = &in[1];
    const ir_tensor *b = n_in > 2 && ir_tensor_present(&in[2]) ? &in[2] : NULL;
    char s1[KILN_DIMS_STR_MAX], s2[KILN_DIMS_STR_MAX];
    KILN_TRY(ir_nn_need_f32(n, x, "X"));
    KILN_TRY(ir_nn_need_f32(n, w, "W"));
    if (b) KILN_TRY(ir_nn_need_f32(n, b, "B"));
    int32_t r = x->shape.rank;
    if (r < 3)
        return ir_node_error(n, KILN_ERR_SHAPE,
                             "X must be N x C x D1 x ... (rank 3 or more), got %s",
                             kiln_dims_str(&x->shape, s1, sizeof s1));
    if (w->shape.rank != r)
        return ir_node_error(n, KILN_ERR_SHAPE, "X is %d-D (%s), so W must be %d-D, got %d-D (%s)",
                             r, kiln_dims_str(&x->shape, s1, sizeof s1), r, w->shape.rank,
                             kiln_dims_str(&w->shape, s2, sizeof s2));
    for (int32_t i = 0; i < r; i++)
        if (w->shape.d[i] < 0)
            return ir_node_error(n, KILN_ERR_SHAPE, "W's shape %s must be known",
                                 kiln_dims_str(&w->shape, s2, sizeof s2));
    int64_t group = ir_attr_int(n, "group");
    g->batch = x->shape.d[0];
    g->c_in = x->shape.d[1];
    g->group = group;
    if (group < 1 || group > NN_MAX_ATTR)
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH, "group is %lld, expected 1 or more",
                             (long long)group);
    if (g->c_in < 0) return ir_node_error(n, KILN_ERR_SHAPE, "X's channel count must be known");
    if (g->c_in % group != 0)
        return ir_node_error(n, KILN_ERR_SHAPE, "X has %lld channels, not divisible by group %lld",
                             (long long)g->c_in, (long long)group);
    if (!transposed) {
        g->c_out = w->shape.d[0];
        if (w->shape.d[1] != g->c_in / group)
            return ir_node_error(n, KILN_ERR_SHAPE,
                                 "W %s takes %lld channels per group x %lld groups, X has %lld",
                                 kiln_dims_str(&w->shape, s2, sizeof s2), (long long)w->shape.d[1],
                                 (long long)group, (long long)g->c_in);
        if (g->c_out % group != 0)
            return ir_node_error(n, KILN_ERR_SHAPE,
                                 "W has %lld output channels, not divisible by group %lld",
                                 (long long)g->c_out, (long long)group);
    } else {
        if (w->shape.d[0] != g->c_in)
            return ir_node_error(n, KILN_ERR_SHAPE, "W %s must have X's %lld channels in dim 0",
                                 kiln_dims_str(&w->shape, s2, sizeof s2), (long long)g->c_in);
        if (!kiln_mul_ok(w->shape.d[1], group, &g->c_out) || g->c_out > KILN_MAX_ELEMENTS)
            return ir_node_error(n, KILN_ERR_SHAPE, "too many output channels");
    }
    if (b && (b->shape.rank != 1 || b->shape.d[0] != g->c_out))
        return ir_node_error(n, KILN_ERR_SHAPE,
                             "B must have shape %lld (one per output channel), got %s",
                             (long long)g->c_out, kiln_dims_str(&b->shape, s1, sizeof s1));
    KILN_TRY(ir_nn_window_read(n, r - 2, &w->shape.d[2], &g->w));
    for (int32_t d = 0; d < r - 2; d++) g->w.in[d] = x->shape.d[2 + d];
    return KILN_OK;
}

static void conv_out_shape(const conv_geom *g, kiln_dims *o)
{
    o->rank = g->w.ns + 2;
    o->d[0] = g->batch;
    o->d[1] = g->c_out;
    for (int32_t d = 0; d < g->w.ns; d++) o->d[2 + d] = g->w.out[d];
}

/* ---- Conv ---- */

static kiln_status conv_geometry(const ir_node *n, const ir_tensor *in, int32_t n_in, conv_geom *g)
{
    KILN_TRY(conv_check(n, in, n_in, false, g));
    return ir_nn_window_forward(n, &g->w, false);
}

kiln_status ir_nn_conv_window(const ir_node *n, const ir_tensor *in, int32_t n_in, nn_window *w)
{
    conv_geom g;
    KILN_TRY(conv_geometry(n, in, n_in, &g));
    *w = g.w;
    return KILN_OK;
}

kiln_status ir_nn_conv_infer(ir_infer *c)
{
    conv_geom g;
    KILN_TRY(conv_geometry(c->node, c->in, c->n_in, &g));
    c->out[0].dtype = KILN_DTYPE_F32;
    conv_out_shape(&g, &c->out[0].shape);
    return KILN_OK;
}

/* y[i] += a * x[i * sx] for i < n. The unit-stride case is split out so that the
 * compiler vectorizes it. */
static void axpy_strided(float *restrict y, const float *restrict x, int64_t n, int64_t sx, float a)
{
    if (sx == 1)
        for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
    else
        for (int64_t i = 0; i < n; i++) y[i] += a * x[i * sx];
}

/* y[i * sy] += a * x[i] for i < n. */
static void axpy_scatter(float *restrict y, const float *restrict x, int64_t n, int64_t sy, float a)
{
    if (sy == 1)
        for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
    else
        for (int64_t i = 0; i < n; i++) y[i * sy] += a * x[i];
}

/* Row-major strides of the input and output planes. */
static void plane_strides(conv_geom *g)
{
    int64_t si = 1, so = 1;
    for (int32_t d = g->w.ns - 1; d >= 0; d--) {
        g->ist[d] = si;
        g->ost[d] = so;
        si *= g->w.in[d];
        so *= g->w.out[d];
    }
}

/* What one kernel tap touches. Conv: output o reads input o * stride + off; the box
 * holds the outputs whose input lies inside. ConvTranspose: input i lands on output
 * i * stride + off; the box holds the inputs whose output lies inside. Finding the
 * box up front keeps bounds checks out of the row loops. */
typedef struct tap_box {
    int64_t lo[NN_MAX_SPATIAL], hi[NN_MAX_SPATIAL], off[NN_MAX_SPATIAL];
} tap_box;

static bool tap_box_make(const nn_window *w, const int64_t *tap, bool transposed, tap_box *b)
{
    for (int32_t d = 0; d < w->ns; d++) {
        int64_t s = w->stride[d];
        int64_t limit = transposed ? w->out[d] : w->in[d];
        int64_t count = transposed ? w->in[d] : w->out[d];
        b->off[d] = tap[d] * w->dilation[d] - w->pad_begin[d];
        b->lo[d] = nn_ceil_div(-b->off[d], s);
        b->hi[d] = nn_floor_div(limit - 1 - b->off[d], s) + 1;
        if (b->lo[d] < 0) b->lo[d] = 0;
        if (b->hi[d] > count) b->hi[d] = count;
        if (b->lo[d] >= b->hi[d]) return false;
    }
    return true;
}

/* Adds `a` times one input plane, moved as the tap's box says, to one output plane:
 * one axpy per row of the box, the box side dense, the other side strided. */
static void tap_rows(const conv_geom *g, const tap_box *b, bool transposed, const float *x,
                     float *y, float a)
{
    int32_t ns = g->w.ns, last = ns - 1;
    const int64_t *dense = transposed ? g->ist : g->ost, *sparse = transposed ? g->ost : g->ist;
    int64_t len = b->hi[last] - b->lo[last], st = g->w.stride[last];
    if (ns == 2) { /* the common case, without the general row stepping */
        int64_t s0 = g->w.stride[0];
        const float *xr =
            x + (transposed ? b->lo[0] * dense[0] + b->lo[1]
                            : (b->lo[0] * s0 + b->off[0]) * sparse[0] + b->lo[1] * st + b->off[1]);
        float *yr =
            y + (transposed ? (b->lo[0] * s0 + b->off[0]) * sparse[0] + b->lo[1] * st + b->off[1]
                            : b->lo[0] * dense[0] + b->lo[1]);
        int64_t xstep = transposed ? dense[0] : s0 * sparse[0];
        int64_t ystep = transposed ? s0 * sparse[0] : dense[0];
        for (int64_t r = 0; r < b->hi[0] - b->lo[0]; r++) {
            if (transposed)
                axpy_scatter(yr + r * ystep, xr + r * xstep, len, st, a);
            else
                axpy_strided(yr + r * ystep, xr + r * xstep, len, st, a);
        }
        return;
    }
    int64_t p[NN_MAX_SPATIAL];
    memcpy(p, b->lo, sizeof(int64_t) * (size_t)ns);
    do {
        int64_t dof = 0, sof = 0;
        for (int32_t d = 0; d < ns; d++) {
            dof += p[d] * dense[d];
            sof += (p[d] * g->w.stride[d] + b->off[d]) * sparse[d];
        }
        if (transposed)
            axpy_scatter(y + sof, x + dof, len, st, a);
        else
            axpy_strided(y + dof, x + sof, len, st, a);
    } while (nn_next(p, b->lo, b->hi, last));
}

/* Computes every output plane: for each output channel, bias, then each kernel tap's
 * box once, applied to every input channel of the group (so the bounds work is per
 * tap, not per tap and channel pair). W's layout differs: Conv M x C/g x k...,
 * ConvTranspose C x M/g x k.... */
static void conv_run(conv_geom *g, bool transposed, const float *x, const float *w, const float *b,
                     float *y)
{
    plane_strides(g);
    const nn_window *win = &g->w;
    int32_t ns = win->ns;
    int64_t in_plane = ir_nn_prod(win->in, ns), out_plane = ir_nn_prod(win->out, ns);
    int64_t ksize = ir_nn_prod(win->kernel, ns);
    int64_t cg = g->c_in / g->group, mg = g->c_out / g->group;
    bool pointwise = !transposed; /* 1x1, stride 1, no padding: one axpy per plane */
    for (int32_t d = 0; d < ns; d++)
        if (win->kernel[d] != 1 || win->stride[d] != 1 || win->pad_begin[d] != 0 ||
            win->in[d] != win->out[d])
            pointwise = false;
    for (int64_t nb = 0; nb < g->batch; nb++)
        for (int64_t oc = 0; oc < g->c_out; oc++) {
            float *yp = y + (nb * g->c_out + oc) * out_plane;
            float bias = b ? b[oc] : 0.0f;
            for (int64_t i = 0; i < out_plane; i++) yp[i] = bias;
            int64_t grp = oc / mg, m = oc % mg;
            const float *xg = x + (nb * g->c_in + grp * cg) * in_plane;
            if (pointwise) {
                for (int64_t ci = 0; ci < cg; ci++)
                    axpy_strided(yp, xg + ci * in_plane, out_plane, 1, w[oc * cg + ci]);
                continue;
            }
            int64_t tap[NN_MAX_SPATIAL] = {0}, zero[NN_MAX_SPATIAL] = {0};
            for (int64_t t = 0; t < ksize; t++, nn_next(tap, zero, win->kernel, ns)) {
                tap_box box;
                if (!tap_box_make(win, tap, transposed, &box)) continue;
                for (int64_t ci = 0; ci < cg; ci++) {
                    int64_t wi = transposed ? ((grp * cg + ci) * mg + m) * ksize + t
                                            : (oc * cg + ci) * ksize + t;
                    tap_rows(g, &box, transposed, xg + ci * in_plane, yp, w[wi]);
                }
            }
        }
}

kiln_status ir_nn_conv_eval(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                            int32_t n_out)
{
    conv_geom g;
    KILN_TRY(conv_geometry(n, in, n_in, &g));
    const float *b = n_in > 2 && ir_tensor_present(&in[2]) ? in[2].data : NULL;
    conv_run(&g, false, in[0].data, in[1].data, b, out[0].data);
    return KILN_OK;
}

/* ---- ConvTranspose ---- */

/* Output sizes and pads by the ONNX formulas: from pads, or, with output_shape or
 * SAME_*, pads from the total padding (split like the spec says; never negative, as
 * in onnxruntime, so a larger output_shape leaves the excess at the bias). */
static kiln_status conv_transpose_geometry(const ir_node *n, const ir_tensor *in, int32_t n_in,
                                           conv_geom *g)
{
    KILN_TRY(conv_check(n, in, n_in, true, g));
    nn_window *w = &g->w;
    int32_t ns = w->ns;
    int64_t opad[NN_MAX_SPATIAL] = {0}, oshape[NN_MAX_SPATIAL] = {0};
    int32_t cnt = 0;
    const int64_t *v = ir_attr_ints(n, "output_padding", &cnt);
    if (cnt && cnt != ns)
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH, "output_padding has %d values, expected %d",
                             cnt, ns);
    for (int32_t d = 0; d < cnt; d++) {
        if (v[d] < 0 || v[d] > NN_MAX_ATTR)
            return ir_node_error(n, KILN_ERR_INVALID_GRAPH, "output_padding[%d] is %lld", d,
                                 (long long)v[d]);
        opad[d] = v[d];
    }
    /* output_shape may list the spatial dims only or N and C too (both are seen). */
    v = ir_attr_ints(n, "output_shape", &cnt);
    bool has_oshape = cnt > 0;
    if (has_oshape && cnt != ns && cnt != ns + 2)
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                             "output_shape has %d values, expected %d (or %d with N and C)", cnt,
                             ns, ns + 2);
    for (int32_t d = 0; has_oshape && d < ns; d++) {
        oshape[d] = v[cnt - ns + d];
        if (oshape[d] < 1 || oshape[d] > KILN_MAX_ELEMENTS)
            return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                                 "output_shape has %lld in spatial dim %d", (long long)oshape[d],
                                 d);
    }
    bool same = w->auto_pad == NN_PAD_SAME_UPPER || w->auto_pad == NN_PAD_SAME_LOWER;
    for (int32_t d = 0; d < ns; d++) {
        int64_t in_d = w->in[d], s = w->stride[d];
        int64_t dk = (w->kernel[d] - 1) * w->dilation[d] + 1;
        if (in_d < 0) {
            w->out[d] = has_oshape ? oshape[d] : -1;
            continue;
        }
        if (in_d == 0)
            return ir_node_error(n, KILN_ERR_SHAPE, "spatial dim %d of the input is 0", d);
        int64_t full; /* the output before padding is cut off */
        if (!kiln_mul_ok(s, in_d - 1, &full) || full > KILN_MAX_ELEMENTS ||
            (full += opad[d] + dk) > KILN_MAX_ELEMENTS)
            return ir_node_error(n, KILN_ERR_SHAPE, "spatial dim %d of the output is too large", d);
        if (has_oshape || same) {
            int64_t o = oshape[d];
            if (!has_oshape && (!kiln_mul_ok(in_d, s, &o) || o > KILN_MAX_ELEMENTS))
                return ir_node_error(n, KILN_ERR_SHAPE, "spatial dim %d of the output is too large",
                                     d);
            int64_t total = full - o;
            if (total < 0) total = 0;
            w->pad_begin[d] = w->auto_pad == NN_PAD_SAME_UPPER ? total / 2 : total - total / 2;
            w->pad_end[d] = total - w->pad_begin[d];
            w->out[d] = o;
            continue;
        }
        if (w->auto_pad == NN_PAD_VALID) w->pad_begin[d] = w->pad_end[d] = 0;
        w->out[d] = full - w->pad_begin[d] - w->pad_end[d];
        if (w->out[d] < 1)
            return ir_node_error(
                n, KILN_ERR_SHAPE, "spatial dim %d: pads %lld+%lld remove the whole output of %lld",
                d, (long long)w->pad_begin[d], (long long)w->pad_end[d], (long long)full);
    }
    return KILN_OK;
}

kiln_status ir_nn_conv_transpose_infer(ir_infer *c)
{
    conv_geom g;
    KILN_TRY(conv_transpose_geometry(c->node, c->in, c->n_in, &g));
    c->out[0].dtype = KILN_DTYPE_F32;
    conv_out_shape(&g, &c->out[0].shape);
    return KILN_OK;
}

kiln_status ir_nn_conv_transpose_eval(const ir_node *n, const ir_tensor *in, int32_t n_in,
                                      ir_tensor *out, int32_t n_out)
{
    conv_geom g;
    KILN_TRY(conv_transpose_geometry(n, in, n_in, &g));
    const float *b = n_in > 2 && ir_tensor_present(&in[2]) ? in[2].data : NULL;
    conv_run(&g, true, in[0].data, in[1].data, b, out[0].data);
    return KILN_OK;
}
