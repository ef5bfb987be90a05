/* norm.c - normalizations: BatchNormalization (inference), LRN, InstanceNormalization,
 * GroupNormalization and LpNormalization. Statistics are accumulated in double so the
 * reference stays accurate on large planes. */
#include <math.h>
#include <string.h>

#include "ir/ops/nn_impl.h"

const ir_attr_def ir_nn_batchnorm_attrs[] = {
    {"epsilon", KILN_ATTR_FLOAT, false, 0, 1e-5f, NULL},
    {"momentum", KILN_ATTR_FLOAT, false, 0, 0.9f, NULL},
    {"training_mode", KILN_ATTR_INT, false, 0, 0, NULL},
};

const ir_attr_def ir_nn_lrn_attrs[] = {
    {"alpha", KILN_ATTR_FLOAT, false, 0, 1e-4f, NULL},
    {"beta", KILN_ATTR_FLOAT, false, 0, 0.75f, NULL},
    {"bias", KILN_ATTR_FLOAT, false, 0, 1.0f, NULL},
    {"size", KILN_ATTR_INT, true, 0, 0, NULL},
};

const ir_attr_def ir_nn_instancenorm_attrs[] = {
    {"epsilon", KILN_ATTR_FLOAT, false, 0, 1e-5f, NULL},
};

const ir_attr_def ir_nn_groupnorm_attrs[] = {
    {"epsilon", KILN_ATTR_FLOAT, false, 0, 1e-5f, NULL},
    {"num_groups", KILN_ATTR_INT, true, 0, 0, NULL},
    {"stash_type", KILN_ATTR_INT, false, 1, 0, NULL},
};

const ir_attr_def ir_nn_lpnorm_attrs[] = {
    {"axis", KILN_ATTR_INT, false, -1, 0, NULL},
    {"p", KILN_ATTR_INT, false, 2, 0, NULL},
};

/* X is f32 of rank >= min_rank with a known channel count (dim 1). */
static kiln_status check_x(const ir_node *n, const ir_tensor *x, int32_t min_rank)
{
    char s[KILN_DIMS_STR_MAX];
    KILN_TRY(ir_nn_need_f32(n, x, "X"));
    if (x->shape.rank < min_rank)
        return ir_node_error(n, KILN_ERR_SHAPE, "X must be N x C%s (rank %d or more), got %s",
                             min_rank > 2 ? " x D1 x ..." : " x ...", min_rank,
                             kiln_dims_str(&x->shape, s, sizeof s));
    if (x->shape.d[1] < 0)
        return ir_node_error(n, KILN_ERR_SHAPE, "X's channel count must be known");
    return KILN_OK;
}

/* A per-channel parameter: f32, 1-D with `len` values. */
static kiln_status check_vec(const ir_node *n, const ir_tensor *t, const char *what, int64_t len)
{
    char s[KILN_DIMS_STR_MAX];
    KILN_TRY(ir_nn_need_f32(n, t, what));
    if (t->shape.rank != 1 || t->shape.d[0] != len)
        return ir_node_error(n, KILN_ERR_SHAPE, "%s must have shape %lld, got %s", what,
                             (long long)len, kiln_dims_str(&t->shape, s, sizeof s));
    return KILN_OK;
}

/* Elements per channel of N x C x ...: the product of dims 2... */
static int64_t inner_size(const kiln_dims *s) { return ir_nn_prod(&s->d[2], s->rank - 2); }

/* ---- BatchNormalization ---- */

kiln_status ir_nn_batchnorm_infer(ir_infer *c)
{
    static const char *const names[] = {"X", "scale", "B", "input_mean", "input_var"};
    const ir_node *n = c->node;
    if (ir_attr_int(n, "training_mode") != 0)
        return ir_node_error(n, KILN_ERR_UNSUPPORTED,
                             "training_mode=1 (batch statistics) is not supported; kiln "
                             "runs inference only");
    if (c->n_out > 1)
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                             "in inference mode only Y is produced, got %d outputs", c->n_out);
    KILN_TRY(check_x(n, &c->in[0], 2));
    for (int32_t i = 1; i < 5; i++)
        KILN_TRY(check_vec(n, &c->in[i], names[i], c->in[0].shape.d[1]));
    return ir_infer_same_as_input(c);
}

kiln_status ir_nn_batchnorm_eval(const ir_node *n, const ir_tensor *in, int32_t n_in,
                                 ir_tensor *out, int32_t n_out)
{
    const kiln_dims *s = &in[0].shape;
    const float *x = in[0].data, *scale = in[1].data, *bias = in[2].data;
    const float *mean = in[3].data, *var = in[4].data;
    float eps = ir_attr_float(n, "epsilon");
    float *y = out[0].data;
    int64_t nb = s->d[0], ch = s->d[1], size = inner_size(s);
    for (int64_t c = 0; c < ch; c++) {
        /* y = (x - mean) / sqrt(var + eps) * scale + B, folded to one multiply-add */
        float a = scale[c] / sqrtf(var[c] + eps);
        float b = bias[c] - mean[c] * a;
        for (int64_t i = 0; i < nb; i++) {
            const float *xp = x + (i * ch + c) * size;
            float *yp = y + (i * ch + c) * size;
            for (int64_t j = 0; j < size; j++) yp[j] = xp[j] * a + b;
        }
    }
    return KILN_OK;
}

/* ---- LRN ---- */

kiln_status ir_nn_lrn_infer(ir_infer *c)
{
    KILN_TRY(check_x(c->node, &c->in[0], 3));
    int64_t size = ir_attr_int(c->node, "size");
    if (size < 1 || size > NN_MAX_ATTR)
        return ir_node_error(c->node, KILN_ERR_INVALID_GRAPH, "size is %lld, expected 1 or more",
                             (long long)size);
    return ir_infer_same_as_input(c);
}

/* ONNX: y = x / (bias + alpha / size * sum of x^2 over channels
 * [c - floor((size-1)/2), c + ceil((size-1)/2)])^beta. The output plane holds the sum
 * first, so nothing is allocated. */
kiln_status ir_nn_lrn_eval(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                           int32_t n_out)
{
    const kiln_dims *s = &in[0].shape;
    const float *x = in[0].data;
    float *y = out[0].data;
    int64_t size = ir_attr_int(n, "size");
    float alpha = ir_attr_float(n, "alpha"), beta = ir_attr_float(n, "beta");
    float bias = ir_attr_float(n, "bias");
    float scale = alpha / (float)size;
    int64_t nb = s->d[0], ch = s->d[1], plane = inner_size(s);
    int64_t before = (size - 1) / 2, after = size - 1 - before;
    for (int64_t i = 0; i < nb; i++)
        for (int64_t c = 0; c < ch; c++) {
            float *yp = y + (i * ch + c) * plane;
            const float *xc = x + (i * ch + c) * plane;
            int64_t lo = c - before < 0 ? 0 : c - before;
            int64_t hi = c + after >= ch ? ch - 1 : c + after;
            memset(yp, 0, sizeof(float) * (size_t)plane);
            for (int64_t k = lo; k <= hi; k++) {
                const float *xk = x + (i * ch + k) * plane;
                for (int64_t j = 0; j < plane; j++) yp[j] += xk[j] * xk[j];
            }
            for (int64_t j = 0; j < plane; j++) yp[j] = xc[j] / powf(bias + scale * yp[j], beta);
        }
    return KILN_OK;
}

/* ---- InstanceNormalization, GroupNormalization ---- */

/* Mean and 1 / sqrt(variance + eps) of `count` values, two passes for accuracy. */
static void moments(const float *x, int64_t count, float eps, double *mean, double *inv_std)
{
    double sum = 0.0, sq = 0.0;
    for (int64_t i = 0; i < count; i++) sum += x[i];
    double m = count ? sum / (double)count : 0.0;
    for (int64_t i = 0; i < count; i++) {
        double d = x[i] - m;
        sq += d * d;
    }
    *mean = m;
    *inv_std = 1.0 / sqrt((count ? sq / (double)count : 0.0) + (double)eps);
}

kiln_status ir_nn_instancenorm_infer(ir_infer *c)
{
    KILN_TRY(check_x(c->node, &c->in[0], 3));
    KILN_TRY(check_vec(c->node, &c->in[1], "scale", c->in[0].shape.d[1]));
    KILN_TRY(check_vec(c->node, &c->in[2], "B", c->in[0].shape.d[1]));
    return ir_infer_same_as_input(c);
}

kiln_status ir_nn_instancenorm_eval(const ir_node *n, const ir_tensor *in, int32_t n_in,
                                    ir_tensor *out, int32_t n_out)
{
    const kiln_dims *s = &in[0].shape;
    const float *x = in[0].data, *scale = in[1].data, *bias = in[2].data;
    float *y = out[0].data;
    float eps = ir_attr_float(n, "epsilon");
    int64_t ch = s->d[1], plane = inner_size(s), planes = s->d[0] * ch;
    for (int64_t p = 0; p < planes; p++) {
        double mean, inv_std;
        moments(x + p * plane, plane, eps, &mean, &inv_std);
        float a = (float)(scale[p % ch] * inv_std);
        float b = (float)(bias[p % ch] - mean * scale[p % ch] * inv_std);
        for (int64_t j = 0; j < plane; j++) y[p * plane + j] = x[p * plane + j] * a + b;
    }
    return KILN_OK;
}

/* Opset 21 gives scale and bias per channel; opset 18 gave them per group. Both are
 * accepted: the lengths tell them apart, and where C == num_groups they mean the same. */
kiln_status ir_nn_groupnorm_infer(ir_infer *c)
{
    const ir_node *n = c->node;
    KILN_TRY(check_x(n, &c->in[0], 2));
    int64_t ch = c->in[0].shape.d[1], groups = ir_attr_int(n, "num_groups");
    if (groups < 1 || groups > NN_MAX_ATTR)
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH, "num_groups is %lld, expected 1 or more",
                             (long long)groups);
    if (ch % groups != 0)
        return ir_node_error(n, KILN_ERR_SHAPE,
                             "%lld channels are not divisible by num_groups %lld", (long long)ch,
                             (long long)groups);
    int64_t len = c->in[1].shape.rank == 1 && c->in[1].shape.d[0] == groups ? groups : ch;
    KILN_TRY(check_vec(n, &c->in[1], "scale", len));
    KILN_TRY(check_vec(n, &c->in[2], "bias", len));
    return ir_infer_same_as_input(c);
}

kiln_status ir_nn_groupnorm_eval(const ir_node *n, const ir_tensor *in, int32_t n_in,
                                 ir_tensor *out, int32_t n_out)
{
    const kiln_dims *s = &in[0].shape;
    const float *x = in[0].data, *scale = in[1].data, *bias = in[2].data;
    float *y = out[0].data;
    float eps = ir_attr_float(n, "epsilon");
    int64_t nb = s->d[0], ch = s->d[1], groups = ir_attr_int(n, "num_groups");
    int64_t cg = ch / groups, plane = inner_size(s);
    bool per_group = in[1].shape.d[0] != ch;
    for (int64_t i = 0; i < nb; i++)
        for (int64_t g = 0; g < groups; g++) {
            /* a group's channels are contiguous in N x C x ... */
            int64_t base = (i * ch + g * cg) * plane;
            double mean, inv_std;
            moments(x + base, cg * plane, eps, &mean, &inv_std);
            for (int64_t c = 0; c < cg; c++) {
                int64_t k = per_group ? g : g * cg + c;
                float a = (float)(scale[k] * inv_std);
                float b = (float)(bias[k] - mean * scale[k] * inv_std);
                const float *xp = x + base + c * plane;
                float *yp = y + base + c * plane;
                for (int64_t j = 0; j < plane; j++) yp[j] = xp[j] * a + b;
            }
        }
    return KILN_OK;
}

/* ---- LpNormalization ---- */

kiln_status ir_nn_lpnorm_infer(ir_infer *c)
{
    const ir_node *n = c->node;
    KILN_TRY(ir_nn_need_f32(n, &c->in[0], "input"));
    int32_t axis;
    int64_t p = ir_attr_int(n, "p");
    if (!ir_axis(ir_attr_int(n, "axis"), c->in[0].shape.rank, &axis))
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH, "axis %lld is out of range for rank %d",
                             (long long)ir_attr_int(n, "axis"), c->in[0].shape.rank);
    if (p != 1 && p != 2)
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH, "p is %lld, expected 1 or 2", (long long)p);
    return ir_infer_same_as_input(c);
}

/* A zero vector stays zero (no 0/0). */
kiln_status ir_nn_lpnorm_eval(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                              int32_t n_out)
{
    const kiln_dims *s = &in[0].shape;
    int32_t axis = 0;
    ir_axis(ir_attr_int(n, "axis"), s->rank, &axis);
    bool l1 = ir_attr_int(n, "p") == 1;
    int64_t len = s->d[axis], outer = ir_nn_prod(s->d, axis);
    int64_t inner = ir_nn_prod(&s->d[axis + 1], s->rank - axis - 1);
    const float *x = in[0].data;
    float *y = out[0].data;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            const float *xp = x + o * len * inner + i;
            float *yp = y + o * len * inner + i;
            double norm = 0.0;
            for (int64_t k = 0; k < len; k++) {
                double v = xp[k * inner];
                norm += l1 ? fabs(v) : v * v;
            }
            if (!l1) norm = sqrt(norm);
            float scale = norm != 0.0 ? (float)(1.0 / norm) : 0.0f;
            for (int64_t k = 0; k < len; k++) yp[k * inner] = xp[k * inner] * scale;
        }
    return KILN_OK;
}
