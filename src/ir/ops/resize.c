/* resize.c - Resize (opset 19) on f32: nearest and N-D linear interpolation over any set
 * of axes, with every coordinate transformation but tf_crop_and_resize. Coordinates are
 * computed in double; onnxruntime uses float, which can differ on exact rounding ties. */
#include <math.h>
#include <string.h>

#include "ir/ops/shape_impl.h"

enum {
    CT_HALF_PIXEL,
    CT_HALF_PIXEL_SYMMETRIC,
    CT_PYTORCH_HALF_PIXEL,
    CT_ALIGN_CORNERS,
    CT_ASYMMETRIC
};
static const char *const ct_names[] = {"half_pixel", "half_pixel_symmetric", "pytorch_half_pixel",
                                       "align_corners", "asymmetric"};
enum { NM_ROUND_PREFER_FLOOR, NM_ROUND_PREFER_CEIL, NM_FLOOR, NM_CEIL };
static const char *const nm_names[] = {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"};
enum { KA_STRETCH, KA_NOT_LARGER, KA_NOT_SMALLER };
static const char *const ka_names[] = {"stretch", "not_larger", "not_smaller"};

typedef struct resize_plan {
    kiln_dims out;
    bool linear;
    int ct, nearest;
    double scale[KILN_MAX_RANK]; /* the scale the coordinate transform uses, per axis */
} resize_plan;

static int find_name(const char *s, const char *const *names, int count)
{
    for (int i = 0; i < count; i++)
        if (strcmp(s, names[i]) == 0) return i;
    return -1;
}

static kiln_status resize_modes(const ir_node *n, resize_plan *p, int *keep)
{
    const char *mode = ir_attr_string(n, "mode");
    const char *ct = ir_attr_string(n, "coordinate_transformation_mode");
    const char *nm = ir_attr_string(n, "nearest_mode");
    const char *ka = ir_attr_string(n, "keep_aspect_ratio_policy");
    if (strcmp(mode, "cubic") == 0)
        return ir_node_error(n, KILN_ERR_UNSUPPORTED,
                             "mode 'cubic' is not supported, kiln implements nearest and linear");
    if (strcmp(mode, "nearest") != 0 && strcmp(mode, "linear") != 0)
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                             "mode '%s' is unknown, expected nearest, linear or cubic", mode);
    p->linear = strcmp(mode, "linear") == 0;
    if (ir_attr_int(n, "antialias") != 0)
        return ir_node_error(n, KILN_ERR_UNSUPPORTED, "antialias=%lld is not supported, expected 0",
                             (long long)ir_attr_int(n, "antialias"));
    if (strcmp(ct, "tf_crop_and_resize") == 0)
        return ir_node_error(
            n, KILN_ERR_UNSUPPORTED,
            "coordinate_transformation_mode 'tf_crop_and_resize' is not supported");
    p->ct = find_name(ct, ct_names, 5);
    if (p->ct < 0)
        return ir_node_error(
            n, KILN_ERR_INVALID_GRAPH,
            "coordinate_transformation_mode '%s' is unknown, expected half_pixel, "
            "half_pixel_symmetric, pytorch_half_pixel, align_corners or asymmetric",
            ct);
    p->nearest = find_name(nm, nm_names, 4);
    if (p->nearest < 0)
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                             "nearest_mode '%s' is unknown, expected round_prefer_floor, "
                             "round_prefer_ceil, floor or ceil",
                             nm);
    *keep = find_name(ka, ka_names, 3);
    if (*keep < 0)
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                             "keep_aspect_ratio_policy '%s' is unknown, expected stretch, "
                             "not_larger or not_smaller",
                             ka);
    return KILN_OK;
}

/* Output sizes from `scales` (f32): floor(in * scale), the scale used as given. */
static kiln_status resize_from_scales(const ir_node *n, const ir_tensor *t, const int32_t *ax,
                                      int64_t na, const kiln_dims *s, resize_plan *p)
{
    if (t->dtype != KILN_DTYPE_F32)
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH, "input 'scales' must be f32, got %s",
                             kiln_dtype_name(t->dtype));
    if (!t->data)
        return ir_node_error(n, KILN_ERR_UNSUPPORTED,
                             "input 'scales' must be a constant known at build time");
    if (t->shape.rank > 1 || shape_count(t) != na)
        return ir_node_error(n, KILN_ERR_SHAPE,
                             "scales has %lld values, expected %lld (one per axis)",
                             (long long)shape_count(t), (long long)na);
    for (int64_t i = 0; i < na; i++) {
        double sc = ((const float *)t->data)[i], o = floor((double)s->d[ax[i]] * sc);
        if (!(sc > 0.0) || !isfinite(sc))
            return ir_node_error(n, KILN_ERR_SHAPE,
                                 "scales[%lld] is %g, expected a finite value > 0", (long long)i,
                                 sc);
        if (o > (double)KILN_MAX_ELEMENTS)
            return ir_node_error(n, KILN_ERR_SHAPE, "scaling axis %d by %g is too large", ax[i],
                                 sc);
        p->scale[ax[i]] = sc;
        p->out.d[ax[i]] = (int64_t)o;
    }
    return KILN_OK;
}

/* Output sizes from `sizes`; the scale is out / in, or with keep_aspect_ratio_policy one
 * scale (the smallest or largest ratio) for every axis, rounding sizes half up. */
static kiln_status resize_from_sizes(const ir_node *n, const ir_tensor *in, const int32_t *ax,
                                     int64_t na, int keep, resize_plan *p)
{
    const kiln_dims *s = &in[0].shape;
    int64_t v[KILN_MAX_RANK], cnt = 0;
    KILN_TRY(shape_const_ints(n, in, 3, "sizes", v, KILN_MAX_RANK, &cnt));
    if (cnt != na)
        return ir_node_error(n, KILN_ERR_SHAPE,
                             "sizes has %lld values, expected %lld (one per axis)", (long long)cnt,
                             (long long)na);
    double common = keep == KA_NOT_LARGER ? INFINITY : 0.0;
    for (int64_t i = 0; i < na; i++) {
        int64_t len = s->d[ax[i]];
        if (v[i] < 0 || v[i] > KILN_MAX_ELEMENTS)
            return ir_node_error(n, KILN_ERR_SHAPE, "sizes[%lld] is %lld, expected >= 0",
                                 (long long)i, (long long)v[i]);
        if (len == 0 && v[i] != 0)
            return ir_node_error(n, KILN_ERR_SHAPE, "cannot resize axis %d from 0 elements to %lld",
                                 ax[i], (long long)v[i]);
        double sc = len ? (double)v[i] / (double)len : 1.0;
        p->scale[ax[i]] = sc;
        p->out.d[ax[i]] = v[i];
        if (keep == KA_NOT_LARGER && sc < common) common = sc;
        if (keep == KA_NOT_SMALLER && sc > common) common = sc;
    }
    if (keep == KA_STRETCH) return KILN_OK;
    for (int64_t i = 0; i < na; i++) {
        p->scale[ax[i]] = common;
        p->out.d[ax[i]] = (int64_t)floor(common * (double)s->d[ax[i]] + 0.5);
    }
    return KILN_OK;
}

static kiln_status resize_make(const ir_node *n, const ir_tensor *in, int32_t n_in, resize_plan *p)
{
    const kiln_dims *s = &in[0].shape;
    int32_t r = s->rank, ax[KILN_MAX_RANK], cnt = 0;
    int keep = KA_STRETCH;
    if (in[0].dtype != KILN_DTYPE_F32)
        return ir_node_error(n, KILN_ERR_UNSUPPORTED, "input X is %s, expected f32",
                             kiln_dtype_name(in[0].dtype));
    if (r < 1) return ir_node_error(n, KILN_ERR_SHAPE, "input X is 0-D, expected at least 1-D");
    KILN_TRY(resize_modes(n, p, &keep));
    const int64_t *axes = ir_attr_ints(n, "axes", &cnt);
    int64_t all[KILN_MAX_RANK], na = axes ? cnt : r;
    if (!axes) {
        for (int32_t i = 0; i < r; i++) all[i] = i;
        axes = all;
    }
    if (na > r)
        return ir_node_error(n, KILN_ERR_SHAPE, "axes has %lld values, expected at most %d",
                             (long long)na, r);
    KILN_TRY(shape_axes(n, axes, na, r, "axes", ax));
    /* Older exporters pass an empty scales tensor beside sizes: empty means absent. */
    bool has_scales = shape_has(in, n_in, 2) && shape_count(&in[2]) > 0;
    bool has_sizes = shape_has(in, n_in, 3) && shape_count(&in[3]) > 0;
    if (has_scales == has_sizes)
        return ir_node_error(
            n, KILN_ERR_INVALID_GRAPH, "%s, expected exactly one of inputs 'scales' and 'sizes'",
            has_scales ? "both scales and sizes are given" : "neither scales nor sizes is given");
    p->out = *s;
    for (int32_t k = 0; k < r; k++) p->scale[k] = 1.0;
    if (has_scales)
        KILN_TRY(resize_from_scales(n, &in[2], ax, na, s, p));
    else
        KILN_TRY(resize_from_sizes(n, in, ax, na, keep, p));
    return KILN_OK;
}

kiln_status shape_infer_resize(ir_infer *c)
{
    resize_plan p;
    KILN_TRY(resize_make(c->node, c->in, c->n_in, &p));
    return shape_set_output(c->node, &c->out[0], KILN_DTYPE_F32, &p.out);
}

/* Where output coordinate x of an axis (out_len long, in_len in the input) samples the
 * input; the formulas of the ONNX Resize spec. */
static double resize_coord(int ct, double x, double scale, int64_t in_len, int64_t out_len)
{
    switch (ct) {
    case CT_ASYMMETRIC: return x / scale;
    case CT_ALIGN_CORNERS:
        return out_len > 1 ? x * (double)(in_len - 1) / (double)(out_len - 1) : 0.0;
    case CT_PYTORCH_HALF_PIXEL: return out_len > 1 ? (x + 0.5) / scale - 0.5 : 0.0;
    case CT_HALF_PIXEL_SYMMETRIC: {
        /* Centers the output on the input when floor() made it shorter than in * scale. */
        double adjustment = (double)out_len / (scale * (double)in_len);
        double offset = (double)in_len / 2.0 * (1.0 - adjustment);
        return offset + (x + 0.5) / scale - 0.5;
    }
    default: return (x + 0.5) / scale - 0.5;
    }
}

static double nearest_round(int mode, double x)
{
    double f = floor(x), frac = x - f;
    switch (mode) {
    case NM_FLOOR: return f;
    case NM_CEIL: return ceil(x);
    case NM_ROUND_PREFER_CEIL: return frac >= 0.5 ? f + 1.0 : f;
    default: return frac > 0.5 ? f + 1.0 : f;
    }
}

/* Per axis, the input elements output index o reads: i0 (and i1 with weight w for
 * linear). Samples outside the input take the edge, as the spec's edge padding does;
 * clamping x to [-1, len] first keeps the integer conversion defined and changes
 * nothing else. */
typedef struct axis_tap {
    int64_t i0, i1;
    double w;
} axis_tap;

static axis_tap resize_tap(const resize_plan *p, int32_t k, int64_t o, int64_t in_len)
{
    axis_tap t;
    double x = resize_coord(p->ct, (double)o, p->scale[k], in_len, p->out.d[k]);
    if (x < -1.0) x = -1.0;
    if (x > (double)in_len) x = (double)in_len;
    if (!p->linear) {
        int64_t i = (int64_t)nearest_round(p->nearest, x);
        t.i0 = t.i1 = i < 0 ? 0 : i >= in_len ? in_len - 1 : i;
        t.w = 0.0;
        return t;
    }
    double f = floor(x);
    int64_t a = (int64_t)f;
    t.w = x - f;
    t.i0 = a < 0 ? 0 : a >= in_len ? in_len - 1 : a;
    t.i1 = a + 1 < 0 ? 0 : a + 1 >= in_len ? in_len - 1 : a + 1;
    return t;
}

kiln_status shape_eval_resize(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                              int32_t n_out)
{
    resize_plan p;
    KILN_TRY(shape_eval_guard(n, in, n_in, out, n_out));
    KILN_TRY(resize_make(n, in, n_in, &p));
    const kiln_dims *s = &in[0].shape;
    const float *x = in[0].data;
    float *y = out[0].data;
    int32_t r = s->rank;
    int64_t st[KILN_MAX_RANK], idx[KILN_MAX_RANK] = {0}, total = kiln_dims_count(&p.out);
    axis_tap tap[KILN_MAX_RANK];
    if (total == 0) return KILN_OK;
    kiln_dims_strides(s, st);
    /* Walk the output in order, recomputing taps only for the axes whose index moved. */
    for (int32_t k = 0; k < r; k++) tap[k] = resize_tap(&p, k, 0, s->d[k]);
    for (int64_t j = 0; j < total; j++) {
        int64_t base = 0;
        for (int32_t k = 0; k < r; k++) base += tap[k].i0 * st[k];
        if (!p.linear) {
            y[j] = x[base];
        } else {
            /* Sum over the corners of the cell, only along axes that interpolate. */
            int32_t act[KILN_MAX_RANK], na = 0;
            for (int32_t k = 0; k < r; k++)
                if (tap[k].w != 0.0 && tap[k].i1 != tap[k].i0) act[na++] = k;
            double acc = 0.0;
            for (uint32_t m = 0; m < (1u << na); m++) {
                double w = 1.0;
                int64_t off = base;
                for (int32_t a = 0; a < na; a++) {
                    const axis_tap *t = &tap[act[a]];
                    if (m >> a & 1u) {
                        w *= t->w;
                        off += (t->i1 - t->i0) * st[act[a]];
                    } else {
                        w *= 1.0 - t->w;
                    }
                }
                acc += w * (double)x[off];
            }
            y[j] = (float)acc;
        }
        int32_t moved = shape_index_next(idx, p.out.d, r);
        if (moved < 0) break;
        for (int32_t k = moved; k < r; k++) tap[k] = resize_tap(&p, k, idx[k], s->d[k]);
    }
    return KILN_OK;
}
