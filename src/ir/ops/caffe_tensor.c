/* caffe_tensor.c - caffe.Crop (BVLC's CropLayer), caffe.ArgMax (ArgMaxLayer) and
 * caffe.Normalize (SSD's NormalizeLayer, an L2 normalization with a learned scale). */
#include <math.h>
#include <string.h>

#include "ir/ops/caffe_impl.h"

static kiln_status check_flag(const ir_node *n, const char *name)
{
    int64_t v = ir_attr_int(n, name);
    if (v != 0 && v != 1)
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH, "%s must be 0 or 1, got %lld", name,
                             (long long)v);
    return KILN_OK;
}

static kiln_status check_f32(const ir_node *n, const ir_tensor *t, const char *what)
{
    if (t->dtype != KILN_DTYPE_F32)
        return ir_node_error(n, KILN_ERR_UNSUPPORTED, "%s has dtype %s, expected f32", what,
                             kiln_dtype_name(t->dtype));
    return KILN_OK;
}

/* Product of dims [from, to) of `s`; false if it overflows. */
static bool dims_prod(const kiln_dims *s, int32_t from, int32_t to, int64_t *out)
{
    int64_t p = 1;
    for (int32_t d = from; d < to; d++)
        if (!kiln_mul_ok(p, s->d[d], &p)) return false;
    *out = p;
    return true;
}

static bool has_zero_dim(const kiln_dims *s)
{
    for (int32_t d = 0; d < s->rank; d++)
        if (s->d[d] == 0) return true;
    return false;
}

/* ---- caffe.Crop ---- */

/* Where the crop starts in each dim of `x` and the output shape: dims from `axis` on
 * take the reference's size, at offset[0] (one value) or offset[d - axis] (one per dim);
 * dims before it are kept whole. */
static kiln_status crop_plan(const ir_node *n, const ir_tensor *x, const ir_tensor *ref,
                             kiln_dims *shape, int64_t *off)
{
    char a[KILN_DIMS_STR_MAX], b[KILN_DIMS_STR_MAX];
    const int32_t r = x->shape.rank;
    if (r < 1 || ref->shape.rank != r)
        return ir_node_error(
            n, KILN_ERR_SHAPE, "data %s and reference %s must have the same rank (1 or more)",
            kiln_dims_str(&x->shape, a, sizeof a), kiln_dims_str(&ref->shape, b, sizeof b));
    int64_t axis = ir_attr_int(n, "axis");
    int32_t ax;
    if (!ir_axis(axis, r, &ax))
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                             "axis %lld is out of range for rank-%d data (expected %d..%d)",
                             (long long)axis, (int)r, (int)-r, (int)r - 1);
    int32_t cnt = 0;
    const int64_t *o = ir_attr_ints(n, "offset", &cnt);
    if (cnt > 1 && cnt != r - ax)
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                             "offset has %d values, expected 1 or %d (one per dim from axis %d on)",
                             (int)cnt, (int)(r - ax), (int)ax);
    *shape = x->shape;
    for (int32_t d = 0; d < r; d++) {
        off[d] = 0;
        if (d < ax) continue;
        int64_t v = cnt == 0 ? 0 : cnt == 1 ? o[0] : o[d - ax];
        if (v < 0)
            return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                                 "offset for dim %d is %lld, expected >= 0", (int)d, (long long)v);
        if (v > x->shape.d[d] - ref->shape.d[d])
            return ir_node_error(n, KILN_ERR_SHAPE,
                                 "dim %d: a crop of %lld at offset %lld does not fit data %s",
                                 (int)d, (long long)ref->shape.d[d], (long long)v,
                                 kiln_dims_str(&x->shape, a, sizeof a));
        off[d] = v;
        shape->d[d] = ref->shape.d[d];
    }
    return KILN_OK;
}

kiln_status caffe_infer_crop(ir_infer *c)
{
    int64_t off[KILN_MAX_RANK];
    if (kiln_dtype_size(c->in[0].dtype) == 0)
        return ir_node_error(c->node, KILN_ERR_UNSUPPORTED, "data has unsupported dtype %s",
                             kiln_dtype_name(c->in[0].dtype));
    KILN_TRY(crop_plan(c->node, &c->in[0], &c->in[1], &c->out[0].shape, off));
    c->out[0].dtype = c->in[0].dtype;
    return KILN_OK;
}

kiln_status caffe_eval_crop(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                            int32_t n_out)
{
    int64_t off[KILN_MAX_RANK], st[KILN_MAX_RANK], idx[KILN_MAX_RANK] = {0};
    kiln_dims s;
    KILN_TRY(crop_plan(n, &in[0], &in[1], &s, off));
    if (has_zero_dim(&s)) return KILN_OK;
    const size_t es = kiln_dtype_size(in[0].dtype);
    const int32_t r = s.rank;
    kiln_dims_strides(&in[0].shape, st);
    const int64_t run = s.d[r - 1], rows = kiln_dims_count(&s) / run;
    const char *x = in[0].data;
    char *y = out[0].data;
    /* One contiguous run of the last dim per output row; idx walks the leading dims. */
    for (int64_t row = 0; row < rows; row++) {
        int64_t src = off[r - 1];
        for (int32_t d = 0; d < r - 1; d++) src += (idx[d] + off[d]) * st[d];
        memcpy(y + (size_t)(row * run) * es, x + (size_t)src * es, (size_t)run * es);
        for (int32_t d = r - 2; d >= 0; d--) {
            if (++idx[d] < s.d[d]) break;
            idx[d] = 0;
        }
    }
    return KILN_OK;
}

/* ---- caffe.ArgMax ---- */

/* Indices are stored as f32, exact up to 2^24. */
#define ARGMAX_MAX_DIM ((int64_t)1 << 24)

typedef struct argmax_plan {
    bool has_axis, out_max_val;
    int32_t axis; /* normalized; 0 without has_axis */
    int64_t top_k, outer, dim, inner;
} argmax_plan;

/* Splits the input into outer x dim x inner around the dim searched: the axis when
 * has_axis, else everything after the first dim. */
static kiln_status argmax_plan_make(const ir_node *n, const ir_tensor *x, argmax_plan *p)
{
    char buf[KILN_DIMS_STR_MAX];
    const kiln_dims *s = &x->shape;
    KILN_TRY(check_flag(n, "out_max_val"));
    KILN_TRY(check_flag(n, "has_axis"));
    KILN_TRY(check_f32(n, x, "input"));
    if (s->rank < 1)
        return ir_node_error(n, KILN_ERR_SHAPE, "input must have rank 1 or more, got a scalar");
    p->has_axis = ir_attr_int(n, "has_axis") != 0;
    p->out_max_val = ir_attr_int(n, "out_max_val") != 0;
    p->top_k = ir_attr_int(n, "top_k");
    int32_t ax = 0;
    if (p->has_axis) {
        int64_t axis = ir_attr_int(n, "axis");
        if (!ir_axis(axis, s->rank, &ax))
            return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                                 "axis %lld is out of range for a rank-%d input (expected %d..%d)",
                                 (long long)axis, (int)s->rank, (int)-s->rank, (int)s->rank - 1);
    }
    p->axis = ax;
    int32_t lo = p->has_axis ? ax : 1, hi = p->has_axis ? ax + 1 : s->rank;
    if (!dims_prod(s, 0, lo, &p->outer) || !dims_prod(s, lo, hi, &p->dim) ||
        !dims_prod(s, hi, s->rank, &p->inner))
        return ir_node_error(n, KILN_ERR_SHAPE, "input %s has too many elements",
                             kiln_dims_str(s, buf, sizeof buf));
    if (p->top_k < 1 || p->top_k > p->dim)
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                             "top_k is %lld, expected 1..%lld (the size searched in input %s)",
                             (long long)p->top_k, (long long)p->dim,
                             kiln_dims_str(s, buf, sizeof buf));
    if (!(p->has_axis && p->out_max_val) && p->dim > ARGMAX_MAX_DIM)
        return ir_node_error(n, KILN_ERR_UNSUPPORTED,
                             "searching %lld values, expected at most %lld (f32 indices)",
                             (long long)p->dim, (long long)ARGMAX_MAX_DIM);
    return KILN_OK;
}

kiln_status caffe_infer_argmax(ir_infer *c)
{
    argmax_plan p;
    const kiln_dims *s = &c->in[0].shape;
    KILN_TRY(argmax_plan_make(c->node, &c->in[0], &p));
    kiln_dims *o = &c->out[0].shape;
    if (p.has_axis) {
        *o = *s;
        o->d[p.axis] = p.top_k;
    } else {
        /* Caffe's shape: [N, 1 or 2, top_k] padded with ones to the input's rank. */
        o->rank = s->rank < 3 ? 3 : s->rank;
        for (int32_t d = 0; d < o->rank; d++) o->d[d] = 1;
        o->d[0] = s->d[0];
        o->d[1] = p.out_max_val ? 2 : 1;
        o->d[2] = p.top_k;
    }
    c->out[0].dtype = KILN_DTYPE_F32;
    return KILN_OK;
}

/* Caffe sorts (value, index) pairs with std::greater: larger values first and, among
 * equal values, larger indices first. NaN (which Caffe leaves unordered) ranks above
 * every number here, so the order is total. */
static bool argmax_before(float va, int64_t ia, float vb, int64_t ib)
{
    bool na = isnan(va), nb = isnan(vb);
    if (na != nb) return na;
    if (!na && va != vb) return va > vb;
    return ia > ib;
}

kiln_status caffe_eval_argmax(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                              int32_t n_out)
{
    argmax_plan p;
    KILN_TRY(argmax_plan_make(n, &in[0], &p));
    const float *x = in[0].data;
    float *y = out[0].data;
    const int64_t k = p.top_k;
    for (int64_t o = 0; o < p.outer; o++)
        for (int64_t i = 0; i < p.inner; i++) {
            const float *sl = x + o * p.dim * p.inner + i;
            /* The j-th pick is the first in the order among those after the (j-1)-th:
             * a selection without scratch memory. */
            float pv = 0.0f;
            int64_t pi = -1;
            for (int64_t j = 0; j < k; j++) {
                int64_t bi = -1;
                float bv = 0.0f;
                for (int64_t t = 0; t < p.dim; t++) {
                    float v = sl[t * p.inner];
                    if (pi >= 0 && !argmax_before(pv, pi, v, t)) continue;
                    if (bi < 0 || argmax_before(v, t, bv, bi)) {
                        bv = v;
                        bi = t;
                    }
                }
                pv = bv;
                pi = bi;
                if (p.has_axis)
                    y[(o * k + j) * p.inner + i] = p.out_max_val ? bv : (float)bi;
                else if (p.out_max_val) {
                    y[2 * o * k + j] = (float)bi;
                    y[2 * o * k + k + j] = bv;
                } else
                    y[o * k + j] = (float)bi;
            }
        }
    return KILN_OK;
}

/* ---- caffe.Normalize ---- */

static kiln_status normalize_check(const ir_node *n, const ir_tensor *x, const ir_tensor *scale)
{
    char buf[KILN_DIMS_STR_MAX];
    KILN_TRY(check_flag(n, "across_spatial"));
    KILN_TRY(check_flag(n, "channel_shared"));
    KILN_TRY(check_f32(n, x, "data"));
    KILN_TRY(check_f32(n, scale, "scale"));
    if (x->shape.rank < 2)
        return ir_node_error(n, KILN_ERR_SHAPE, "data must have rank 2 or more (N, C, ...), got %s",
                             kiln_dims_str(&x->shape, buf, sizeof buf));
    if (isnan(ir_attr_float(n, "eps")))
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH, "eps is NaN");
    bool shared = ir_attr_int(n, "channel_shared") != 0;
    int64_t want = shared ? 1 : x->shape.d[1], got = -1;
    if (!kiln_dims_numel(&scale->shape, &got) || got != want)
        return ir_node_error(n, KILN_ERR_SHAPE,
                             "scale %s has %lld values, expected %lld (channel_shared=%d)",
                             kiln_dims_str(&scale->shape, buf, sizeof buf), (long long)got,
                             (long long)want, (int)shared);
    return KILN_OK;
}

kiln_status caffe_infer_normalize(ir_infer *c)
{
    KILN_TRY(normalize_check(c->node, &c->in[0], &c->in[1]));
    return ir_infer_same_as_input(c);
}

/* SSD's formula: y = x / sqrt(sum(x^2) + eps) * scale, the sum over C x H x W of one
 * image (across_spatial) or over C at each position; eps goes inside the root. Sums in
 * double. */
kiln_status caffe_eval_normalize(const ir_node *n, const ir_tensor *in, int32_t n_in,
                                 ir_tensor *out, int32_t n_out)
{
    KILN_TRY(normalize_check(n, &in[0], &in[1]));
    const kiln_dims *s = &in[0].shape;
    if (has_zero_dim(s)) return KILN_OK;
    const int64_t batch = s->d[0], ch = s->d[1];
    const int64_t sp = kiln_dims_count(s) / (batch * ch);
    const bool across = ir_attr_int(n, "across_spatial") != 0;
    const bool shared = ir_attr_int(n, "channel_shared") != 0;
    const double eps = ir_attr_float(n, "eps");
    const float *x = in[0].data, *scale = in[1].data;
    float *y = out[0].data;
    for (int64_t b = 0; b < batch; b++) {
        const float *xb = x + b * ch * sp;
        float *yb = y + b * ch * sp;
        /* across_spatial: one norm for the image (one pass with sp positions folded in);
         * otherwise one per position. */
        const int64_t groups = across ? 1 : sp, span = across ? sp : 1;
        for (int64_t g = 0; g < groups; g++) {
            double sum = 0.0;
            for (int64_t cc = 0; cc < ch; cc++)
                for (int64_t t = 0; t < span; t++) {
                    double v = xb[cc * sp + g + t];
                    sum += v * v;
                }
            const double norm = sqrt(sum + eps);
            for (int64_t cc = 0; cc < ch; cc++) {
                const float sc = scale[shared ? 0 : cc];
                for (int64_t t = 0; t < span; t++) {
                    int64_t i = cc * sp + g + t;
                    yb[i] = (float)(xb[i] / norm) * sc;
                }
            }
        }
    }
    return KILN_OK;
}
