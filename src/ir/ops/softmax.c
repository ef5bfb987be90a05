/* softmax.c - ops that normalize along axes: Softmax, LogSoftmax, Hardmax (opset 13:
 * along one axis) and LayerNormalization (opset 17), shape rules and reference kernels. */
#include <math.h>
#include <string.h>

#include "ir/ops/linalg_impl.h"

/* Columns handled together when the axis is not the last dim: per-column state lives on
 * the stack, and every step reads one contiguous run of the input. */
enum { SM_CHUNK = 64 };

/* ---- Softmax, LogSoftmax, Hardmax ---- */

typedef enum sm_mode { SM_SOFTMAX, SM_LOG, SM_HARD } sm_mode;

static kiln_status infer_softmax_like(ir_infer *c)
{
    static const kiln_dtype ok[] = {KILN_DTYPE_F32};
    KILN_TRY(lin_check_dtype(c, 0, "input", ok, 1));
    int32_t axis;
    KILN_TRY(lin_axis(c->node, "axis", ir_attr_int(c->node, "axis"), c->in[0].shape.rank, &axis));
    return ir_infer_same_as_input(c);
}

kiln_status lin_infer_softmax(ir_infer *c) { return infer_softmax_like(c); }
kiln_status lin_infer_logsoftmax(ir_infer *c) { return infer_softmax_like(c); }
kiln_status lin_infer_hardmax(ir_infer *c) { return infer_softmax_like(c); }

/* The max subtracted first keeps exp from overflowing; a NaN in a column makes its max
 * NaN, so the whole column comes out NaN, as in the ONNX reference. The sum of
 * exponentials accumulates in double: cheap here, and the result no longer depends on
 * the length of the axis. */
static void softmax_block(sm_mode mode, const float *x, float *y, int64_t n, int64_t inner,
                          int64_t m)
{
    float mx[SM_CHUNK];
    double sum[SM_CHUNK];
    int64_t arg[SM_CHUNK];
    for (int64_t j = 0; j < m; j++) {
        mx[j] = -INFINITY;
        sum[j] = 0.0;
        arg[j] = 0;
    }
    for (int64_t k = 0; k < n; k++) {
        const float *xr = x + k * inner;
        for (int64_t j = 0; j < m; j++) {
            float v = xr[j];
            /* strict > keeps the first maximum, which Hardmax needs; NaN wins like
             * numpy's argmax */
            if (v > mx[j] || (isnan(v) && !isnan(mx[j])) || k == 0) {
                mx[j] = v;
                arg[j] = k;
            }
        }
    }
    if (mode == SM_HARD) {
        for (int64_t k = 0; k < n; k++)
            for (int64_t j = 0; j < m; j++) y[k * inner + j] = arg[j] == k ? 1.0f : 0.0f;
        return;
    }
    for (int64_t k = 0; k < n; k++) {
        const float *xr = x + k * inner;
        float *yr = y + k * inner;
        for (int64_t j = 0; j < m; j++) {
            float e = expf(xr[j] - mx[j]);
            if (mode == SM_SOFTMAX) yr[j] = e;
            sum[j] += e;
        }
    }
    if (mode == SM_SOFTMAX) {
        for (int64_t j = 0; j < m; j++) sum[j] = 1.0 / sum[j];
        for (int64_t k = 0; k < n; k++)
            for (int64_t j = 0; j < m; j++) y[k * inner + j] = (float)(y[k * inner + j] * sum[j]);
    } else {
        float lse[SM_CHUNK];
        for (int64_t j = 0; j < m; j++) lse[j] = (float)log(sum[j]);
        for (int64_t k = 0; k < n; k++)
            for (int64_t j = 0; j < m; j++) y[k * inner + j] = (x[k * inner + j] - mx[j]) - lse[j];
    }
}

static kiln_status eval_softmax_like(sm_mode mode, const ir_node *n, const ir_tensor *in,
                                     ir_tensor *out)
{
    int32_t axis;
    KILN_TRY(lin_axis(n, "axis", ir_attr_int(n, "axis"), in[0].shape.rank, &axis));
    int64_t outer, len, inner;
    lin_split(&in[0].shape, axis, &outer, &len, &inner);
    const float *x = in[0].data;
    float *y = out[0].data;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j0 = 0; j0 < inner; j0 += SM_CHUNK) {
            int64_t m = inner - j0 < SM_CHUNK ? inner - j0 : SM_CHUNK;
            int64_t off = o * len * inner + j0;
            softmax_block(mode, x + off, y + off, len, inner, m);
        }
    return KILN_OK;
}

kiln_status lin_eval_softmax(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                             int32_t n_out)
{
    return eval_softmax_like(SM_SOFTMAX, n, in, out);
}

kiln_status lin_eval_logsoftmax(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                                int32_t n_out)
{
    return eval_softmax_like(SM_LOG, n, in, out);
}

kiln_status lin_eval_hardmax(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                             int32_t n_out)
{
    return eval_softmax_like(SM_HARD, n, in, out);
}

/* ---- LayerNormalization ---- */

kiln_status lin_infer_layernorm(ir_infer *c)
{
    static const kiln_dtype ok[] = {KILN_DTYPE_F32};
    static const char *names[] = {"X", "Scale", "B"};
    const ir_node *node = c->node;
    const kiln_dims *xs = &c->in[0].shape;
    char s1[KILN_DIMS_STR_MAX], s2[KILN_DIMS_STR_MAX];
    for (int32_t i = 0; i < c->n_in; i++) {
        if (!ir_tensor_present(&c->in[i])) continue;
        KILN_TRY(lin_check_dtype(c, i, names[i], ok, 1));
        /* Scale and B multiply and add onto the normalized X (the op's function body), so
         * numpy broadcasting applies; the result must keep X's shape. */
        if (i > 0 && !lin_unidirectional(&c->in[i].shape, xs))
            return ir_node_error(
                node, KILN_ERR_SHAPE, "%s of shape %s does not broadcast to X's %s", names[i],
                kiln_dims_str(&c->in[i].shape, s1, sizeof s1), kiln_dims_str(xs, s2, sizeof s2));
    }
    int32_t axis;
    KILN_TRY(lin_axis(node, "axis", ir_attr_int(node, "axis"), xs->rank, &axis));
    int64_t stash = ir_attr_int(node, "stash_type");
    if (stash != KILN_DTYPE_F32)
        return ir_node_error(node, KILN_ERR_UNSUPPORTED,
                             "stash_type %lld is not supported, expected 1 (f32)",
                             (long long)stash);
    c->out[0].dtype = KILN_DTYPE_F32;
    c->out[0].shape = *xs;
    kiln_dims stat = *xs;
    for (int32_t i = axis; i < stat.rank; i++) stat.d[i] = 1;
    for (int32_t i = 1; i < c->n_out; i++) {
        c->out[i].dtype = KILN_DTYPE_F32;
        c->out[i].shape = stat;
    }
    return KILN_OK;
}

/* Per-dim strides of a broadcast operand, and whether it is indexed by the position
 * within the normalized block alone (the usual Scale of shape X.shape[axis:]). */
static bool ln_operand(const ir_tensor *t, const kiln_dims *xs, int32_t axis, int64_t *strides)
{
    ir_broadcast_strides(&t->shape, xs, strides);
    int64_t want = 1;
    for (int32_t i = xs->rank - 1; i >= 0; i--) {
        bool ok = i >= axis ? strides[i] == want || xs->d[i] == 1 : strides[i] == 0;
        if (!ok) return false;
        want *= xs->d[i];
    }
    return true;
}

kiln_status lin_eval_layernorm(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                               int32_t n_out)
{
    const kiln_dims *xs = &in[0].shape;
    int32_t axis;
    KILN_TRY(lin_axis(n, "axis", ir_attr_int(n, "axis"), xs->rank, &axis));
    float eps = ir_attr_float(n, "epsilon");
    int64_t outer = 1, d = 1;
    for (int32_t i = 0; i < xs->rank; i++) *(i < axis ? &outer : &d) *= xs->d[i];
    bool has_b = n_in > 2 && ir_tensor_present(&in[2]);
    int64_t ss[KILN_MAX_RANK], bs[KILN_MAX_RANK];
    bool s_fast = ln_operand(&in[1], xs, axis, ss);
    bool b_fast = has_b ? ln_operand(&in[2], xs, axis, bs) : true;
    const float *x = in[0].data, *scale = in[1].data, *bias = has_b ? in[2].data : NULL;
    float *y = out[0].data;
    float *mean_out = n_out > 1 ? out[1].data : NULL, *inv_out = n_out > 2 ? out[2].data : NULL;
    for (int64_t o = 0; o < outer; o++) {
        const float *xr = x + o * d;
        float *yr = y + o * d;
        /* Mean and variance in double and two passes (sum of squared deviations, not
         * E[x^2] - E[x]^2): at least as accurate as the spec's f32 stash, and immune to
         * cancellation when the mean is large against the spread. */
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
        if (s_fast && b_fast) {
            for (int64_t j = 0; j < d; j++) {
                float t = (xr[j] - meanf) * inv * scale[j];
                yr[j] = bias ? t + bias[j] : t;
            }
        } else {
            for (int64_t j = 0; j < d; j++) {
                int64_t e = o * d + j;
                float sc = scale[lin_offset(e, xs->rank, xs->d, ss)];
                float t = (xr[j] - meanf) * inv * sc;
                yr[j] = bias ? t + bias[lin_offset(e, xs->rank, xs->d, bs)] : t;
            }
        }
    }
    return KILN_OK;
}
