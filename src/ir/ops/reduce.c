/* reduce.c - ops that fold or scan along axes: the Reduce family (opset 18: axes as an
 * input), ArgMax/ArgMin, CumSum and TopK, shape rules and reference kernels. */
#include <math.h>
#include <string.h>

#include "ir/ops/linalg_impl.h"

/* ---- the Reduce family ---- */

typedef enum red_kind {
    RK_SUM,
    RK_MEAN,
    RK_MAX,
    RK_MIN,
    RK_PROD,
    RK_L1,
    RK_L2,
    RK_SUMSQ,
    RK_LOGSUM,
    RK_LSE,
    RK_EXPSUM /* second pass of RK_LSE: sum of exp(x - shift) */
} red_kind;

/* Most axes a node may list; more than the rank always repeats one anyway. */
enum { RED_MAX_AXES = 64, RED_CHUNK = 64 };

/* Which dims a Reduce node folds, from the `axes` input (or the pre-opset-18 attribute).
 * No axes folds every dim, or none when noop_with_empty_axes is set: each output then
 * is the op applied to one element (ReduceSumSquare squares, ReduceL1 takes |x|, ...),
 * as the ONNX reference does. */
static kiln_status reduce_mask(const ir_node *n, const ir_tensor *in, int32_t n_in, bool *mask)
{
    int32_t rank = in[0].shape.rank;
    int64_t axes[RED_MAX_AXES], count = 0;
    int32_t n_attr = 0;
    const int64_t *attr = ir_attr_ints(n, "axes", &n_attr);
    bool has_input = n_in > 1 && ir_tensor_present(&in[1]);
    if (has_input && attr)
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                             "axes are given both as an attribute and as an input");
    if (has_input) {
        KILN_TRY(lin_const_ints(n, &in[1], "axes", axes, RED_MAX_AXES, &count));
    } else if (attr) {
        if (n_attr > RED_MAX_AXES)
            return ir_node_error(n, KILN_ERR_SHAPE, "attribute 'axes' has %d values, at most %d",
                                 n_attr, RED_MAX_AXES);
        count = n_attr;
        memcpy(axes, attr, sizeof(int64_t) * (size_t)count);
    }
    bool all = count == 0 && ir_attr_int(n, "noop_with_empty_axes") == 0;
    for (int32_t i = 0; i < rank; i++) mask[i] = all;
    for (int64_t i = 0; i < count; i++) {
        int32_t ax;
        KILN_TRY(lin_axis(n, "axis", axes[i], rank, &ax));
        if (mask[ax])
            return ir_node_error(n, KILN_ERR_INVALID_GRAPH, "axis %lld appears twice in axes",
                                 (long long)axes[i]);
        mask[ax] = true;
    }
    return KILN_OK;
}

/* `n_ok` dtypes of the list are accepted: f32 only, with i32 and i64, with bool too. */
static kiln_status reduce_infer(ir_infer *c, int n_ok)
{
    static const kiln_dtype ok[] = {KILN_DTYPE_F32, KILN_DTYPE_I32, KILN_DTYPE_I64,
                                    KILN_DTYPE_BOOL};
    KILN_TRY(lin_check_dtype(c, 0, "data", ok, n_ok));
    const kiln_dims *xs = &c->in[0].shape;
    bool mask[KILN_MAX_RANK];
    KILN_TRY(reduce_mask(c->node, c->in, c->n_in, mask));
    bool keep = ir_attr_int(c->node, "keepdims") != 0;
    kiln_dims o;
    memset(&o, 0, sizeof o);
    for (int32_t i = 0; i < xs->rank; i++) {
        if (!mask[i])
            o.d[o.rank++] = xs->d[i];
        else if (keep)
            o.d[o.rank++] = 1;
    }
    c->out[0].dtype = c->in[0].dtype;
    c->out[0].shape = o;
    return KILN_OK;
}

/* The input seen as kept and reduced groups: size-1 dims dropped, neighbours of the same
 * kind merged (valid because the tensor is dense). Outputs follow the kept groups in
 * order, so output i is the i-th kept multi-index. */
typedef struct red_plan {
    int32_t nk, nr;
    int64_t ksz[KILN_MAX_RANK], kst[KILN_MAX_RANK];
    int64_t rsz[KILN_MAX_RANK], rst[KILN_MAX_RANK];
    int64_t kcount, rcount; /* outputs, and inputs folded into each */
    bool inner_reduced;     /* the innermost group (stride 1) is reduced */
} red_plan;

static void red_plan_make(const kiln_dims *d, const bool *mask, red_plan *p)
{
    int64_t st[KILN_MAX_RANK];
    kiln_dims_strides(d, st);
    memset(p, 0, sizeof *p);
    p->kcount = p->rcount = 1;
    int last = -1; /* 0 kept, 1 reduced */
    for (int32_t i = 0; i < d->rank; i++) {
        int64_t s = d->d[i];
        *(mask[i] ? &p->rcount : &p->kcount) *= s;
        if (s == 1) continue;
        int cls = mask[i] ? 1 : 0;
        int64_t *sz = cls ? p->rsz : p->ksz, *sd = cls ? p->rst : p->kst;
        int32_t *cnt = cls ? &p->nr : &p->nk;
        if (cls == last) {
            sz[*cnt - 1] *= s;
            sd[*cnt - 1] = st[i];
        } else {
            sz[*cnt] = s;
            sd[*cnt] = st[i];
            (*cnt)++;
        }
        last = cls;
    }
    p->inner_reduced = last == 1;
}

static double red_init(red_kind k)
{
    switch (k) {
    case RK_MAX: return -INFINITY;
    case RK_MIN: return INFINITY;
    case RK_PROD: return 1.0;
    default: return 0.0;
    }
}

/* Sums and products accumulate in double: a reduction over a whole tensor (millions of
 * elements) in float would drift from the ONNX reference (numpy's pairwise sum) by far
 * more than 1e-5, and double costs the scalar loop nothing. Max and min are exact. */
static double red_row(red_kind k, const float *restrict x, int64_t n, double acc, float shift)
{
    switch (k) {
    case RK_MAX:
        for (int64_t i = 0; i < n; i++)
            if (x[i] > acc || isnan(x[i])) acc = x[i]; /* NaN sticks: nothing is > NaN */
        break;
    case RK_MIN:
        for (int64_t i = 0; i < n; i++)
            if (x[i] < acc || isnan(x[i])) acc = x[i];
        break;
    case RK_PROD:
        for (int64_t i = 0; i < n; i++) acc *= x[i];
        break;
    case RK_L1:
        for (int64_t i = 0; i < n; i++) acc += fabsf(x[i]);
        break;
    case RK_L2:
    case RK_SUMSQ:
        for (int64_t i = 0; i < n; i++) acc += (double)x[i] * x[i];
        break;
    case RK_EXPSUM:
        for (int64_t i = 0; i < n; i++) acc += expf(x[i] - shift);
        break;
    default:
        for (int64_t i = 0; i < n; i++) acc += x[i];
        break;
    }
    return acc;
}

/* Column form of red_row: acc[j] folds x[j] for a run of m adjacent outputs. */
static void red_cols(red_kind k, const float *restrict x, int64_t m, double *restrict acc,
                     const float *restrict shift)
{
    switch (k) {
    case RK_MAX:
        for (int64_t j = 0; j < m; j++)
            if (x[j] > acc[j] || isnan(x[j])) acc[j] = x[j];
        break;
    case RK_MIN:
        for (int64_t j = 0; j < m; j++)
            if (x[j] < acc[j] || isnan(x[j])) acc[j] = x[j];
        break;
    case RK_PROD:
        for (int64_t j = 0; j < m; j++) acc[j] *= x[j];
        break;
    case RK_L1:
        for (int64_t j = 0; j < m; j++) acc[j] += fabsf(x[j]);
        break;
    case RK_L2:
    case RK_SUMSQ:
        for (int64_t j = 0; j < m; j++) acc[j] += (double)x[j] * x[j];
        break;
    case RK_EXPSUM:
        for (int64_t j = 0; j < m; j++) acc[j] += expf(x[j] - shift[j]);
        break;
    default:
        for (int64_t j = 0; j < m; j++) acc[j] += x[j];
        break;
    }
}

/* LogSumExp shifts by the max unless it is infinite (then exp(x - max) would be NaN):
 * all -inf gives log(0) = -inf, a +inf gives +inf, as in the ONNX reference. */
static float lse_shift(double mx) { return isfinite(mx) ? (float)mx : 0.0f; }

static float red_finish(red_kind k, double acc, float shift, int64_t n)
{
    switch (k) {
    case RK_MEAN: return n > 0 ? (float)(acc / (double)n) : NAN;
    case RK_L2: return (float)sqrt(acc);
    case RK_LOGSUM: return (float)log(acc);
    case RK_LSE: return (float)(log(acc) + shift);
    default: return (float)acc;
    }
}

static void reduce_f32(red_kind kind, const kiln_dims *xs, const bool *mask, const float *x,
                       float *y)
{
    red_plan p;
    red_plan_make(xs, mask, &p);
    red_kind first = kind == RK_LSE ? RK_MAX : kind;
    if (kiln_dims_count(xs) == 0) { /* nothing to fold: the empty-set value */
        float v = red_finish(kind, kind == RK_LSE ? 0.0 : red_init(kind), 0.0f, 0);
        for (int64_t o = 0; o < p.kcount; o++) y[o] = v;
        return;
    }
    if (p.inner_reduced) {
        /* Each output folds contiguous rows of the innermost reduced group. */
        int64_t len = p.rsz[p.nr - 1], rows = p.rcount / len;
        for (int64_t o = 0; o < p.kcount; o++) {
            const float *xo = x + lin_offset(o, p.nk, p.ksz, p.kst);
            double acc = red_init(first);
            for (int64_t r = 0; r < rows; r++)
                acc = red_row(first, xo + lin_offset(r, p.nr - 1, p.rsz, p.rst), len, acc, 0.0f);
            float shift = 0.0f;
            if (kind == RK_LSE) {
                shift = lse_shift(acc);
                acc = 0.0;
                for (int64_t r = 0; r < rows; r++)
                    acc = red_row(RK_EXPSUM, xo + lin_offset(r, p.nr - 1, p.rsz, p.rst), len, acc,
                                  shift);
            }
            y[o] = red_finish(kind, acc, shift, p.rcount);
        }
        return;
    }
    /* The innermost group is kept: fold whole runs of adjacent outputs at once, so every
     * read is a contiguous run of up to RED_CHUNK elements. */
    int64_t len = p.nk > 0 ? p.ksz[p.nk - 1] : 1, outer = p.kcount / len;
    int32_t nk_outer = p.nk > 0 ? p.nk - 1 : 0;
    double acc[RED_CHUNK];
    float shift[RED_CHUNK];
    for (int64_t oo = 0; oo < outer; oo++) {
        const float *xo = x + lin_offset(oo, nk_outer, p.ksz, p.kst);
        for (int64_t j0 = 0; j0 < len; j0 += RED_CHUNK) {
            int64_t m = len - j0 < RED_CHUNK ? len - j0 : RED_CHUNK;
            for (int64_t j = 0; j < m; j++) {
                acc[j] = red_init(first);
                shift[j] = 0.0f;
            }
            for (int64_t r = 0; r < p.rcount; r++)
                red_cols(first, xo + lin_offset(r, p.nr, p.rsz, p.rst) + j0, m, acc, NULL);
            if (kind == RK_LSE) {
                for (int64_t j = 0; j < m; j++) {
                    shift[j] = lse_shift(acc[j]);
                    acc[j] = 0.0;
                }
                for (int64_t r = 0; r < p.rcount; r++)
                    red_cols(RK_EXPSUM, xo + lin_offset(r, p.nr, p.rsz, p.rst) + j0, m, acc, shift);
            }
            for (int64_t j = 0; j < m; j++)
                y[oo * len + j0 + j] = red_finish(kind, acc[j], shift[j], p.rcount);
        }
    }
}

/* Integer reductions wrap like C unsigned arithmetic (sum, product, squares); they serve
 * shape arithmetic, so a plain loop per output is enough. Bool (ReduceMax and ReduceMin
 * only) is any and all; the empty set gives false and true. */
static void reduce_int(red_kind kind, kiln_dtype dt, const kiln_dims *xs, const bool *mask,
                       const void *x, void *y)
{
    red_plan p;
    red_plan_make(xs, mask, &p);
    bool is64 = dt == KILN_DTYPE_I64, is_bool = dt == KILN_DTYPE_BOOL;
    int64_t lo = is64 ? INT64_MIN : is_bool ? 0 : INT32_MIN;
    int64_t hi = is64 ? INT64_MAX : is_bool ? 1 : INT32_MAX;
    for (int64_t o = 0; o < p.kcount; o++) {
        int64_t base = lin_offset(o, p.nk, p.ksz, p.kst);
        uint64_t acc = kind == RK_PROD ? 1 : 0;
        int64_t ext = kind == RK_MAX ? lo : hi;
        for (int64_t r = 0; r < p.rcount; r++) {
            int64_t i = base + lin_offset(r, p.nr, p.rsz, p.rst);
            int64_t v = is64      ? ((const int64_t *)x)[i]
                        : is_bool ? (int64_t)(((const uint8_t *)x)[i] != 0)
                                  : ((const int32_t *)x)[i];
            switch (kind) {
            case RK_MAX: ext = v > ext ? v : ext; break;
            case RK_MIN: ext = v < ext ? v : ext; break;
            case RK_PROD: acc *= (uint64_t)v; break;
            case RK_L1: acc += v < 0 ? 0 - (uint64_t)v : (uint64_t)v; break;
            case RK_SUMSQ: acc += (uint64_t)v * (uint64_t)v; break;
            default: acc += (uint64_t)v; break;
            }
        }
        uint64_t res = kind == RK_MAX || kind == RK_MIN ? (uint64_t)ext : acc;
        if (is_bool)
            ((uint8_t *)y)[o] = (uint8_t)res;
        else if (is64)
            ((int64_t *)y)[o] = (int64_t)res;
        else
            ((int32_t *)y)[o] = (int32_t)(uint32_t)res;
    }
}

static kiln_status reduce_eval(red_kind kind, const ir_node *n, const ir_tensor *in, int32_t n_in,
                               ir_tensor *out)
{
    bool mask[KILN_MAX_RANK];
    KILN_TRY(reduce_mask(n, in, n_in, mask));
    if (in[0].dtype == KILN_DTYPE_F32)
        reduce_f32(kind, &in[0].shape, mask, in[0].data, out[0].data);
    else
        reduce_int(kind, in[0].dtype, &in[0].shape, mask, in[0].data, out[0].data);
    return KILN_OK;
}

/* One infer and eval pair per op; `n_ok` as reduce_infer takes it. */
#define REDUCE_OP(fn, kind, n_ok)                                                                  \
    kiln_status lin_infer_##fn(ir_infer *c) { return reduce_infer(c, n_ok); }                      \
    kiln_status lin_eval_##fn(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out, \
                              int32_t n_out)                                                       \
    {                                                                                              \
        return reduce_eval(kind, n, in, n_in, out);                                                \
    }

REDUCE_OP(reduce_sum, RK_SUM, 3)
REDUCE_OP(reduce_mean, RK_MEAN, 1)
REDUCE_OP(reduce_max, RK_MAX, 4)
REDUCE_OP(reduce_min, RK_MIN, 4)
REDUCE_OP(reduce_prod, RK_PROD, 3)
REDUCE_OP(reduce_l1, RK_L1, 3)
REDUCE_OP(reduce_l2, RK_L2, 1)
REDUCE_OP(reduce_sumsq, RK_SUMSQ, 3)
REDUCE_OP(reduce_logsum, RK_LOGSUM, 1)
REDUCE_OP(reduce_logsumexp, RK_LSE, 1)

/* ---- element comparison shared by ArgMax/ArgMin and TopK ---- */

/* Compares elements i and j of a f32/i32/i64 buffer: -1, 0 or 1. A NaN compares above
 * every number (numpy's argmax picks it, its sort puts it last); two NaNs are equal. */
static int cmp_elem(const void *x, kiln_dtype dt, int64_t i, int64_t j)
{
    if (dt == KILN_DTYPE_F32) {
        float a = ((const float *)x)[i], b = ((const float *)x)[j];
        if (isnan(a) || isnan(b)) return isnan(a) - isnan(b);
        return (a > b) - (a < b);
    }
    if (dt == KILN_DTYPE_I64) {
        int64_t a = ((const int64_t *)x)[i], b = ((const int64_t *)x)[j];
        return (a > b) - (a < b);
    }
    int32_t a = ((const int32_t *)x)[i], b = ((const int32_t *)x)[j];
    return (a > b) - (a < b);
}

static const kiln_dtype g_ordered[] = {KILN_DTYPE_F32, KILN_DTYPE_I32, KILN_DTYPE_I64};

/* ---- ArgMax, ArgMin ---- */

static kiln_status infer_arg(ir_infer *c)
{
    const ir_node *node = c->node;
    const kiln_dims *xs = &c->in[0].shape;
    KILN_TRY(lin_check_dtype(c, 0, "data", g_ordered, 3));
    int32_t axis;
    KILN_TRY(lin_axis(node, "axis", ir_attr_int(node, "axis"), xs->rank, &axis));
    if (xs->d[axis] == 0)
        return ir_node_error(node, KILN_ERR_SHAPE, "axis %d has size 0: no element to pick", axis);
    kiln_dims o = *xs;
    if (ir_attr_int(node, "keepdims") != 0) {
        o.d[axis] = 1;
    } else {
        for (int32_t i = axis; i + 1 < o.rank; i++) o.d[i] = o.d[i + 1];
        o.d[--o.rank] = 0;
    }
    c->out[0].dtype = KILN_DTYPE_I64;
    c->out[0].shape = o;
    return KILN_OK;
}

kiln_status lin_infer_argmax(ir_infer *c) { return infer_arg(c); }
kiln_status lin_infer_argmin(ir_infer *c) { return infer_arg(c); }

/* `sign` 1 for ArgMax, -1 for ArgMin. Ties keep the first index unless
 * select_last_index is set. */
static kiln_status eval_arg(int sign, const ir_node *n, const ir_tensor *in, ir_tensor *out)
{
    int32_t axis;
    KILN_TRY(lin_axis(n, "axis", ir_attr_int(n, "axis"), in[0].shape.rank, &axis));
    bool last = ir_attr_int(n, "select_last_index") != 0;
    int64_t outer, len, inner;
    lin_split(&in[0].shape, axis, &outer, &len, &inner);
    int64_t *y = out[0].data;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            int64_t base = o * len * inner + i, best = 0;
            for (int64_t k = 1; k < len; k++) {
                int c = cmp_elem(in[0].data, in[0].dtype, base + k * inner, base + best * inner);
                /* NaN is picked by both (numpy's argmax and argmin both return it) */
                const float *fx = in[0].dtype == KILN_DTYPE_F32 ? in[0].data : NULL;
                if (fx && isnan(fx[base + k * inner]) != isnan(fx[base + best * inner]))
                    c = isnan(fx[base + k * inner]) ? sign : -sign;
                if (c * sign > 0 || (last && c == 0)) best = k;
            }
            y[o * inner + i] = best;
        }
    return KILN_OK;
}

kiln_status lin_eval_argmax(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                            int32_t n_out)
{
    return eval_arg(1, n, in, out);
}

kiln_status lin_eval_argmin(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                            int32_t n_out)
{
    return eval_arg(-1, n, in, out);
}

/* ---- CumSum ---- */

/* The axis input of CumSum: a single integer, scalar or 1-D. */
static kiln_status cumsum_axis(const ir_node *n, const ir_tensor *in, int32_t *axis)
{
    int64_t v[1], cnt = 0;
    KILN_TRY(lin_const_ints(n, &in[1], "axis", v, 1, &cnt));
    if (cnt != 1)
        return ir_node_error(n, KILN_ERR_SHAPE, "input 'axis' must hold one value, got %lld",
                             (long long)cnt);
    return lin_axis(n, "axis", v[0], in[0].shape.rank, axis);
}

kiln_status lin_infer_cumsum(ir_infer *c)
{
    KILN_TRY(lin_check_dtype(c, 0, "x", g_ordered, 3));
    if (c->in[0].shape.rank < 1)
        return ir_node_error(c->node, KILN_ERR_SHAPE, "x must have rank >= 1, got a scalar");
    /* The axis only steers evaluation, so it may arrive at run time; when known it is
     * checked now. */
    if (c->in[1].data) {
        int32_t axis;
        KILN_TRY(cumsum_axis(c->node, c->in, &axis));
    } else if (c->in[1].dtype != KILN_DTYPE_I64 && c->in[1].dtype != KILN_DTYPE_I32) {
        return ir_node_error(c->node, KILN_ERR_INVALID_GRAPH, "input 'axis' must be i64, got %s",
                             kiln_dtype_name(c->in[1].dtype));
    } else if (c->in[1].shape.rank > 1 || ir_tensor_count(&c->in[1]) != 1) {
        return ir_node_error(c->node, KILN_ERR_SHAPE, "input 'axis' must hold one value, got %lld",
                             (long long)ir_tensor_count(&c->in[1]));
    }
    return ir_infer_same_as_input(c);
}

/* Running sums reuse the previous output row, so the inner loop is contiguous. Floats
 * accumulate in float like numpy's cumsum (the ONNX reference); integers wrap. */
kiln_status lin_eval_cumsum(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                            int32_t n_out)
{
    int32_t axis;
    KILN_TRY(cumsum_axis(n, in, &axis));
    bool excl = ir_attr_int(n, "exclusive") != 0, rev = ir_attr_int(n, "reverse") != 0;
    int64_t outer, len, inner;
    lin_split(&in[0].shape, axis, &outer, &len, &inner);
    kiln_dtype dt = in[0].dtype;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t s = 0; s < len; s++) {
            int64_t k = rev ? len - 1 - s : s, prev = rev ? k + 1 : k - 1;
            int64_t yo = (o * len + k) * inner, po = (o * len + prev) * inner;
            /* the row added to the previous sum: this one, or the previous input row
             * when exclusive (none for the first) */
            int64_t xo = excl ? po : yo;
            bool has_prev = s > 0, has_x = !excl || s > 0;
            if (dt == KILN_DTYPE_F32) {
                const float *x = in[0].data;
                float *y = out[0].data;
                for (int64_t j = 0; j < inner; j++)
                    y[yo + j] = (has_prev ? y[po + j] : 0.0f) + (has_x ? x[xo + j] : 0.0f);
            } else if (dt == KILN_DTYPE_I64) {
                const uint64_t *x = in[0].data;
                uint64_t *y = out[0].data;
                for (int64_t j = 0; j < inner; j++)
                    y[yo + j] = (has_prev ? y[po + j] : 0) + (has_x ? x[xo + j] : 0);
            } else {
                const uint32_t *x = in[0].data;
                uint32_t *y = out[0].data;
                for (int64_t j = 0; j < inner; j++)
                    y[yo + j] = (has_prev ? y[po + j] : 0u) + (has_x ? x[xo + j] : 0u);
            }
        }
    return KILN_OK;
}

/* ---- TopK ---- */

static kiln_status topk_k(const ir_node *n, const ir_tensor *in, int32_t axis, int64_t *k)
{
    int64_t v[1], cnt = 0;
    KILN_TRY(lin_const_ints(n, &in[1], "K", v, 1, &cnt));
    if (cnt != 1)
        return ir_node_error(n, KILN_ERR_SHAPE, "input 'K' must hold one value, got %lld",
                             (long long)cnt);
    int64_t len = in[0].shape.d[axis];
    if (v[0] < 0 || v[0] > len)
        return ir_node_error(n, KILN_ERR_SHAPE, "K is %lld, expected 0..%lld (the size of axis %d)",
                             (long long)v[0], (long long)len, axis);
    *k = v[0];
    return KILN_OK;
}

kiln_status lin_infer_topk(ir_infer *c)
{
    const ir_node *node = c->node;
    KILN_TRY(lin_check_dtype(c, 0, "X", g_ordered, 3));
    int32_t axis;
    KILN_TRY(lin_axis(node, "axis", ir_attr_int(node, "axis"), c->in[0].shape.rank, &axis));
    int64_t k;
    KILN_TRY(topk_k(node, c->in, axis, &k));
    kiln_dims o = c->in[0].shape;
    o.d[axis] = k;
    c->out[0].dtype = c->in[0].dtype;
    c->out[0].shape = o;
    c->out[1].dtype = KILN_DTYPE_I64;
    c->out[1].shape = o;
    return KILN_OK;
}

/* A selection along one axis: element i of the run is x[base + i*stride]. */
typedef struct topk_run {
    const void *x;
    kiln_dtype dt;
    int64_t base, stride;
    bool largest;
    int64_t *h; /* heap of element indices, stored in the Indices output */
    int64_t hs; /* its stride */
} topk_run;

/* Whether element a ranks before element b: by value (larger first when `largest`), NaN
 * last either way (numpy's sort), then lower index first (ONNX's rule for ties). */
static bool topk_before(const topk_run *t, int64_t a, int64_t b)
{
    int64_t ia = t->base + a * t->stride, ib = t->base + b * t->stride;
    if (t->dt == KILN_DTYPE_F32) {
        float va = ((const float *)t->x)[ia], vb = ((const float *)t->x)[ib];
        if (isnan(va) != isnan(vb)) return isnan(vb);
    }
    int c = cmp_elem(t->x, t->dt, ia, ib);
    if (c != 0) return t->largest ? c > 0 : c < 0;
    return a < b;
}

/* The heap keeps the k best seen so far with the worst at its root. */
static void topk_sift(const topk_run *t, int64_t p, int64_t size)
{
    int64_t *h = t->h, s = t->hs;
    for (;;) {
        int64_t l = 2 * p + 1, r = l + 1, w = p;
        if (l < size && topk_before(t, h[w * s], h[l * s])) w = l;
        if (r < size && topk_before(t, h[w * s], h[r * s])) w = r;
        if (w == p) return;
        int64_t tmp = h[p * s];
        h[p * s] = h[w * s];
        h[w * s] = tmp;
        p = w;
    }
}

/* O(n log k) without scratch memory: the heap lives in the Indices output; heapsort at
 * the end leaves the best first (sorted=0 may return any order, so sorted is fine). */
kiln_status lin_eval_topk(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                          int32_t n_out)
{
    int32_t axis;
    KILN_TRY(lin_axis(n, "axis", ir_attr_int(n, "axis"), in[0].shape.rank, &axis));
    int64_t k;
    KILN_TRY(topk_k(n, in, axis, &k));
    int64_t outer, len, inner;
    lin_split(&in[0].shape, axis, &outer, &len, &inner);
    size_t es = kiln_dtype_size(in[0].dtype);
    if (k == 0) return KILN_OK;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            topk_run t = {in[0].data,
                          in[0].dtype,
                          o * len * inner + i,
                          inner,
                          ir_attr_int(n, "largest") != 0,
                          (int64_t *)out[1].data + o * k * inner + i,
                          inner};
            for (int64_t e = 0; e < k; e++) t.h[e * t.hs] = e;
            for (int64_t p = k / 2 - 1; p >= 0; p--) topk_sift(&t, p, k);
            for (int64_t e = k; e < len; e++)
                if (topk_before(&t, e, t.h[0])) {
                    t.h[0] = e;
                    topk_sift(&t, 0, k);
                }
            for (int64_t end = k - 1; end > 0; end--) {
                int64_t tmp = t.h[0];
                t.h[0] = t.h[end * t.hs];
                t.h[end * t.hs] = tmp;
                topk_sift(&t, 0, end);
            }
            for (int64_t e = 0; e < k; e++) {
                int64_t src = t.base + t.h[e * t.hs] * inner;
                int64_t dst = o * k * inner + i + e * inner;
                memcpy((char *)out[0].data + (size_t)dst * es,
                       (const char *)in[0].data + (size_t)src * es, es);
            }
        }
    return KILN_OK;
}
