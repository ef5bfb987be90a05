/* resize.c - Resize (opset 19) on f32: nearest, N-D linear and N-D cubic interpolation
 * over any set of axes, antialiasing when downscaling, exclude_outside, and every
 * coordinate transformation including tf_crop_and_resize. Coordinates are computed in
 * double; onnxruntime uses float, which can differ on exact rounding ties. */
#include <math.h>
#include <string.h>

#include "ir/ops/shape_impl.h"

enum {
    CT_HALF_PIXEL,
    CT_HALF_PIXEL_SYMMETRIC,
    CT_PYTORCH_HALF_PIXEL,
    CT_ALIGN_CORNERS,
    CT_ASYMMETRIC,
    CT_TF_CROP_AND_RESIZE
};
static const char *const ct_names[] = {"half_pixel",         "half_pixel_symmetric",
                                       "pytorch_half_pixel", "align_corners",
                                       "asymmetric",         "tf_crop_and_resize"};
enum { NM_ROUND_PREFER_FLOOR, NM_ROUND_PREFER_CEIL, NM_FLOOR, NM_CEIL };
static const char *const nm_names[] = {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"};
enum { KA_STRETCH, KA_NOT_LARGER, KA_NOT_SMALLER };
static const char *const ka_names[] = {"stretch", "not_larger", "not_smaller"};
enum { RM_NEAREST, RM_LINEAR, RM_CUBIC };
static const char *const mode_names[] = {"nearest", "linear", "cubic"};

/* Most taps one axis may read per output: antialiased cubic reads about 4 / scale, so
 * this allows downscaling by 1/15 at most (checked when the plan is made). */
enum { RS_MAX_TAPS = 64 };

typedef struct resize_plan {
    kiln_dims out;
    int mode, ct, nearest;
    bool antialias, exclude_outside;
    double cubic_a;
    double scale[KILN_MAX_RANK];         /* the scale the coordinate transform uses, per axis */
    int32_t n_axes, axis[KILN_MAX_RANK]; /* the axes resized, in the order roi lists them */
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
    p->mode = find_name(mode, mode_names, 3);
    if (p->mode < 0)
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                             "mode '%s' is unknown, expected nearest, linear or cubic", mode);
    int64_t aa = ir_attr_int(n, "antialias"), eo = ir_attr_int(n, "exclude_outside");
    if ((aa != 0 && aa != 1) || (eo != 0 && eo != 1))
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                             "antialias is %lld and exclude_outside %lld, expected 0 or 1",
                             (long long)aa, (long long)eo);
    /* ONNX: antialias affects linear and cubic only. */
    p->antialias = aa == 1 && p->mode != RM_NEAREST;
    p->exclude_outside = eo == 1;
    p->cubic_a = ir_attr_float(n, "cubic_coeff_a");
    p->ct = find_name(ct, ct_names, 6);
    if (p->ct < 0)
        return ir_node_error(
            n, KILN_ERR_INVALID_GRAPH,
            "coordinate_transformation_mode '%s' is unknown, expected half_pixel, "
            "half_pixel_symmetric, pytorch_half_pixel, align_corners, asymmetric or "
            "tf_crop_and_resize",
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
    p->n_axes = (int32_t)na;
    memcpy(p->axis, ax, sizeof(int32_t) * (size_t)na);
    if (p->ct == CT_TF_CROP_AND_RESIZE) {
        const ir_tensor *roi = shape_has(in, n_in, 1) ? &in[1] : NULL;
        if (!roi || roi->dtype != KILN_DTYPE_F32 || roi->shape.rank != 1 ||
            roi->shape.d[0] != 2 * na)
            return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                                 "tf_crop_and_resize needs input 'roi' as f32 of %lld values "
                                 "(a start and an end per axis)",
                                 (long long)(2 * na));
    }
    for (int32_t k = 0; p->mode != RM_NEAREST && k < r; k++) {
        double ks = p->antialias && p->scale[k] < 1.0 ? p->scale[k] : 1.0;
        double support = p->mode == RM_CUBIC ? 2.0 : 1.0;
        if (2.0 * support / ks + 2.0 > (double)RS_MAX_TAPS)
            return ir_node_error(n, KILN_ERR_UNSUPPORTED,
                                 "antialiased downscaling of axis %d by %g reads more than %d "
                                 "input elements per output, the most kiln supports",
                                 k, p->scale[k], (int)RS_MAX_TAPS);
    }
    return KILN_OK;
}

kiln_status shape_infer_resize(ir_infer *c)
{
    resize_plan p;
    KILN_TRY(resize_make(c->node, c->in, c->n_in, &p));
    return shape_set_output(c->node, &c->out[0], KILN_DTYPE_F32, &p.out);
}

/* Where output coordinate x of an axis (out_len long, in_len in the input) samples the
 * input; the formulas of the ONNX Resize spec. `roi` is the axis's (start, end) for
 * tf_crop_and_resize. The output length is the integer one, as in onnxruntime (ONNX's
 * reference uses in_len * scale, fractional with scales: see onnx_node_skips.txt). */
static double resize_coord(int ct, double x, double scale, int64_t in_len, int64_t out_len,
                           const float *roi)
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
    case CT_TF_CROP_AND_RESIZE: {
        double lo = roi[0], hi = roi[1], span = (double)(in_len - 1);
        return lo * span + (out_len > 1 ? x * (hi - lo) * span / (double)(out_len - 1)
                                        : 0.5 * (hi - lo) * span);
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

/* The interpolation kernels at distance t (in input elements, scaled when antialiasing):
 * the triangle, and Keys' cubic with parameter a; both vanish from their support on. */
static double kernel_weight(int mode, double a, double t)
{
    t = fabs(t);
    if (mode == RM_LINEAR) return t < 1.0 ? 1.0 - t : 0.0;
    if (t <= 1.0) return ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0;
    if (t < 2.0) return ((a * t - 5.0 * a) * t + 8.0 * a) * t - 4.0 * a;
    return 0.0;
}

/* Per axis, the input elements an output index reads and their weights. `outside`:
 * tf_crop_and_resize sampled outside the input, so the output is extrapolation_value. */
typedef struct axis_taps {
    int32_t n;
    bool outside;
    int64_t idx[RS_MAX_TAPS];
    double w[RS_MAX_TAPS];
} axis_taps;

/* The taps of output index o of axis k: the nearest element, or every element within the
 * kernel's support (stretched by 1 / scale when antialiasing a downscale) around the
 * sample x. Samples past the edges read the edge element (ONNX's edge padding), unless
 * exclude_outside drops them and renormalizes the rest. */
static void resize_taps(const resize_plan *p, int32_t k, int64_t o, int64_t in_len,
                        const float *roi, axis_taps *t)
{
    double x = resize_coord(p->ct, (double)o, p->scale[k], in_len, p->out.d[k], roi);
    t->outside = p->ct == CT_TF_CROP_AND_RESIZE && (x < 0.0 || x > (double)(in_len - 1));
    /* Far outside, every tap is an edge tap: clamping keeps the integer conversions
     * defined and changes no result. */
    double lim = (double)RS_MAX_TAPS + 2.0;
    if (x < -lim) x = -lim;
    if (x > (double)in_len + lim) x = (double)in_len + lim;
    if (p->mode == RM_NEAREST) {
        int64_t i = (int64_t)nearest_round(p->nearest, x);
        t->n = 1;
        t->idx[0] = i < 0 ? 0 : i >= in_len ? in_len - 1 : i;
        t->w[0] = 1.0;
        return;
    }
    double ks = p->antialias && p->scale[k] < 1.0 ? p->scale[k] : 1.0;
    double support = p->mode == RM_CUBIC ? 2.0 : 1.0, base = floor(x), ratio = x - base, sum = 0.0;
    int64_t first = (int64_t)floor(-support / ks) + 1;
    t->n = (int32_t)(2 - 2 * first);
    for (int32_t i = 0; i < t->n; i++) {
        int64_t at = (int64_t)base + first + i;
        double w = kernel_weight(p->mode, p->cubic_a, ((double)(first + i) - ratio) * ks);
        if (p->exclude_outside && (at < 0 || at >= in_len)) w = 0.0;
        t->idx[i] = at < 0 ? 0 : at >= in_len ? in_len - 1 : at;
        t->w[i] = w;
        sum += w;
    }
    /* Antialiased kernels are normalized (their stretched weights do not sum to 1), and
     * exclude_outside renormalizes what is left. */
    if ((p->antialias || p->exclude_outside) && sum != 0.0)
        for (int32_t i = 0; i < t->n; i++) t->w[i] /= sum;
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
    float extrapolation = ir_attr_float(n, "extrapolation_value");
    int32_t r = s->rank;
    int64_t st[KILN_MAX_RANK], idx[KILN_MAX_RANK] = {0}, total = kiln_dims_count(&p.out);
    /* roi per axis (start, end); axes not listed keep the whole range */
    float roi[KILN_MAX_RANK][2];
    for (int32_t k = 0; k < r; k++) {
        roi[k][0] = 0.0f;
        roi[k][1] = 1.0f;
    }
    if (p.ct == CT_TF_CROP_AND_RESIZE)
        for (int32_t i = 0; i < p.n_axes; i++) {
            roi[p.axis[i]][0] = ((const float *)in[1].data)[i];
            roi[p.axis[i]][1] = ((const float *)in[1].data)[p.n_axes + i];
        }
    axis_taps tap[KILN_MAX_RANK];
    if (total == 0) return KILN_OK;
    kiln_dims_strides(s, st);
    /* Walk the output in order, recomputing taps only for the axes whose index moved. */
    for (int32_t k = 0; k < r; k++) resize_taps(&p, k, 0, s->d[k], roi[k], &tap[k]);
    for (int64_t j = 0; j < total; j++) {
        /* Axes with one tap add a fixed offset; the others are summed over. */
        int32_t act[KILN_MAX_RANK], na = 0;
        int64_t base = 0;
        bool outside = false;
        for (int32_t k = 0; k < r; k++) {
            outside = outside || tap[k].outside;
            if (tap[k].n == 1)
                base += tap[k].idx[0] * st[k];
            else
                act[na++] = k;
        }
        if (outside) {
            y[j] = extrapolation;
        } else if (na == 0) {
            y[j] = x[base];
        } else {
            int32_t c[KILN_MAX_RANK] = {0};
            double acc = 0.0;
            for (;;) {
                double w = 1.0;
                int64_t off = base;
                for (int32_t a = 0; a < na; a++) {
                    const axis_taps *t = &tap[act[a]];
                    w *= t->w[c[a]];
                    off += t->idx[c[a]] * st[act[a]];
                }
                if (w != 0.0) acc += w * (double)x[off];
                int32_t a = na - 1;
                while (a >= 0 && ++c[a] == tap[act[a]].n) c[a--] = 0;
                if (a < 0) break;
            }
            y[j] = (float)acc;
        }
        int32_t moved = shape_index_next(idx, p.out.d, r);
        if (moved < 0) break;
        for (int32_t k = moved; k < r; k++) resize_taps(&p, k, idx[k], s->d[k], roi[k], &tap[k]);
    }
    return KILN_OK;
}
