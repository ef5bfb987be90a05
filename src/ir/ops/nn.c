/* nn.c - the nn op group: its table, the sliding-window geometry that Conv,
 * ConvTranspose and the pools share, and the channel/space rearrangements DepthToSpace
 * and SpaceToDepth. The ops themselves live in conv.c, pool.c and norm.c. */
#include <stdio.h>
#include <string.h>

#include "ir/ops/nn_impl.h"

/* ---- shared helpers ---- */

char *ir_nn_ints_str(const int64_t *v, int32_t count, char *buf, size_t size)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int32_t i = 0; i < count && len < size; i++) {
        int k = snprintf(buf + len, size - len, i ? "x%lld" : "%lld", (long long)v[i]);
        if (k < 0) break;
        len += (size_t)k;
    }
    return buf;
}

kiln_status ir_nn_need_f32(const ir_node *n, const ir_tensor *t, const char *what)
{
    if (t->dtype != KILN_DTYPE_F32)
        return ir_node_error(n, KILN_ERR_UNSUPPORTED, "%s has dtype %s, only f32 is supported",
                             what, kiln_dtype_name(t->dtype));
    return KILN_OK;
}

int64_t ir_nn_prod(const int64_t *v, int32_t count)
{
    int64_t p = 1;
    for (int32_t i = 0; i < count; i++) p *= v[i];
    return p;
}

kiln_status ir_window_of(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_window *out)
{
    nn_window w;
    const char *op = n->op->name;
    if (strcmp(op, "Conv") == 0 || strcmp(op, "kiln.Conv") == 0)
        KILN_TRY(ir_nn_conv_window(n, in, n_in < 3 ? n_in : 3, &w));
    else if (strcmp(op, "MaxPool") == 0 || strcmp(op, "AveragePool") == 0)
        KILN_TRY(ir_nn_pool_window(n, &in[0], op[0] == 'M', &w));
    else
        return ir_node_error(n, KILN_ERR_INTERNAL, "ir_window_of: %s has no sliding window", op);
    memset(out, 0, sizeof *out);
    out->ns = w.ns;
    for (int32_t d = 0; d < w.ns; d++) {
        out->kernel[d] = w.kernel[d];
        out->stride[d] = w.stride[d];
        out->dilation[d] = w.dilation[d];
        out->pad_begin[d] = w.pad_begin[d];
        out->pad_end[d] = w.pad_end[d];
        out->in[d] = w.in[d];
        out->out[d] = w.out[d];
    }
    return KILN_OK;
}

/* An optional ints attribute of `want` values in [lo, NN_MAX_ATTR]; `def` fills an
 * absent (or empty) one. */
static kiln_status read_ints(const ir_node *n, const char *name, int32_t want, int64_t lo,
                             int64_t def, int64_t *out)
{
    int32_t cnt = 0;
    const int64_t *v = ir_attr_ints(n, name, &cnt);
    if (!v || cnt == 0) {
        for (int32_t i = 0; i < want; i++) out[i] = def;
        return KILN_OK;
    }
    if (cnt != want)
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH, "%s has %d values, expected %d", name, cnt,
                             want);
    for (int32_t i = 0; i < cnt; i++) {
        if (v[i] < lo || v[i] > NN_MAX_ATTR)
            return ir_node_error(n, KILN_ERR_INVALID_GRAPH, "%s[%d] is %lld, expected %lld to %lld",
                                 name, i, (long long)v[i], (long long)lo, (long long)NN_MAX_ATTR);
        out[i] = v[i];
    }
    return KILN_OK;
}

kiln_status ir_nn_window_read(const ir_node *n, int32_t ns, const int64_t *kernel, nn_window *w)
{
    static const char *const modes[] = {"NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"};
    memset(w, 0, sizeof *w);
    if (ns < 1 || ns > NN_MAX_SPATIAL)
        return ir_node_error(n, KILN_ERR_SHAPE, "%d spatial dims, expected 1 to %d", ns,
                             NN_MAX_SPATIAL);
    w->ns = ns;
    const char *ap = ir_attr_string(n, "auto_pad");
    int32_t m = 0;
    while (m < 4 && strcmp(ap, modes[m]) != 0) m++;
    if (m == 4)
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                             "auto_pad '%s' is not NOTSET, SAME_UPPER, SAME_LOWER or VALID", ap);
    w->auto_pad = (nn_auto_pad)m;

    int32_t kcount = 0;
    ir_attr_ints(n, "kernel_shape", &kcount);
    if (kcount == 0 && !kernel)
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH, "kernel_shape is required");
    if (kcount != 0 && kcount != ns)
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                             "kernel_shape has %d values, the input has %d spatial dims", kcount,
                             ns);
    KILN_TRY(read_ints(n, "kernel_shape", ns, 1, 0, w->kernel));
    if (kernel) {
        char a[96], b[96];
        for (int32_t i = 0; i < ns; i++) {
            if (kernel[i] < 1 || kernel[i] > NN_MAX_ATTR)
                return ir_node_error(
                    n, KILN_ERR_SHAPE, "weights have spatial dims %s, each must be 1 to %lld",
                    ir_nn_ints_str(kernel, ns, a, sizeof a), (long long)NN_MAX_ATTR);
            if (kcount && w->kernel[i] != kernel[i])
                return ir_node_error(n, KILN_ERR_SHAPE,
                                     "kernel_shape %s does not match the weights' %s",
                                     ir_nn_ints_str(w->kernel, ns, a, sizeof a),
                                     ir_nn_ints_str(kernel, ns, b, sizeof b));
            w->kernel[i] = kernel[i];
        }
    }
    KILN_TRY(read_ints(n, "strides", ns, 1, 1, w->stride));
    KILN_TRY(read_ints(n, "dilations", ns, 1, 1, w->dilation));
    int64_t pads[2 * NN_MAX_SPATIAL];
    KILN_TRY(read_ints(n, "pads", 2 * ns, 0, 0, pads));
    for (int32_t i = 0; i < ns; i++) {
        w->pad_begin[i] = pads[i];
        w->pad_end[i] = pads[ns + i];
    }
    return KILN_OK;
}

kiln_status ir_nn_window_forward(const ir_node *n, nn_window *w, bool ceil_mode)
{
    for (int32_t d = 0; d < w->ns; d++) {
        int64_t in = w->in[d], s = w->stride[d];
        int64_t dk = (w->kernel[d] - 1) * w->dilation[d] + 1;
        if (in < 0) { /* dynamic: the size is known only when running */
            w->out[d] = -1;
            continue;
        }
        if (in == 0) return ir_node_error(n, KILN_ERR_SHAPE, "spatial dim %d of the input is 0", d);
        if (w->auto_pad == NN_PAD_SAME_UPPER || w->auto_pad == NN_PAD_SAME_LOWER) {
            /* ONNX: out = ceil(in / stride), the padding split evenly with the odd one
             * at the end (UPPER) or the beginning (LOWER); never negative. */
            int64_t out = nn_ceil_div(in, s);
            int64_t total = (out - 1) * s + dk - in;
            if (total < 0) total = 0;
            w->pad_begin[d] = w->auto_pad == NN_PAD_SAME_UPPER ? total / 2 : total - total / 2;
            w->pad_end[d] = total - w->pad_begin[d];
            w->out[d] = out;
            continue;
        }
        if (w->auto_pad == NN_PAD_VALID) w->pad_begin[d] = w->pad_end[d] = 0;
        int64_t padded = in + w->pad_begin[d] + w->pad_end[d];
        if (padded < dk)
            return ir_node_error(n, KILN_ERR_SHAPE,
                                 "spatial dim %d: the kernel spans %lld (size %lld, dilation "
                                 "%lld), more than the padded input %lld",
                                 d, (long long)dk, (long long)w->kernel[d],
                                 (long long)w->dilation[d], (long long)padded);
        int64_t out = (padded - dk) / s + 1;
        /* Rounding up may add a window; PyTorch and ONNX drop it when it would start
         * in the end padding, so every window starts inside the input or its front pad.
         * Under VALID the spec's ceil and floor formulas agree, so ceil_mode is moot. */
        if (ceil_mode && w->auto_pad == NN_PAD_NOTSET && (padded - dk) % s != 0) {
            out++;
            if ((out - 1) * s >= in + w->pad_begin[d]) out--;
        }
        w->out[d] = out;
    }
    return KILN_OK;
}

/* ---- DepthToSpace / SpaceToDepth ---- */

static const ir_attr_def depth_to_space_attrs[] = {
    {"blocksize", KILN_ATTR_INT, true, 0, 0, NULL},
    {"mode", KILN_ATTR_STRING, false, 0, 0, "DCR"},
};
/* SpaceToDepth has `mode` since opset 28 (test_spacetodepth_crd_mode_example). */
static const ir_attr_def space_to_depth_attrs[] = {
    {"blocksize", KILN_ATTR_INT, true, 0, 0, NULL},
    {"mode", KILN_ATTR_STRING, false, 0, 0, "DCR"},
};

/* Checks the common part of both ops: a 4-D tensor of a known dtype, a positive block
 * size and a mode of DCR or CRD. */
static kiln_status rearrange_check(ir_infer *c, int64_t *block)
{
    const ir_tensor *x = &c->in[0];
    char s[KILN_DIMS_STR_MAX];
    if (kiln_dtype_size(x->dtype) == 0)
        return ir_node_error(c->node, KILN_ERR_UNSUPPORTED, "input dtype %s is not supported",
                             kiln_dtype_name(x->dtype));
    if (x->shape.rank != 4)
        return ir_node_error(c->node, KILN_ERR_SHAPE, "input must be 4-D (N x C x H x W), got %s",
                             kiln_dims_str(&x->shape, s, sizeof s));
    *block = ir_attr_int(c->node, "blocksize");
    if (*block < 1 || *block > NN_MAX_ATTR)
        return ir_node_error(c->node, KILN_ERR_INVALID_GRAPH,
                             "blocksize is %lld, expected 1 to %lld", (long long)*block,
                             (long long)NN_MAX_ATTR);
    const char *mode = ir_attr_string(c->node, "mode");
    if (strcmp(mode, "DCR") != 0 && strcmp(mode, "CRD") != 0)
        return ir_node_error(c->node, KILN_ERR_INVALID_GRAPH, "mode '%s' is not DCR or CRD", mode);
    return KILN_OK;
}

/* A dim times the block size, -1 staying unknown. */
static bool scale_dim(int64_t d, int64_t b, int64_t *out)
{
    if (d < 0) {
        *out = -1;
        return true;
    }
    return kiln_mul_ok(d, b, out) && *out <= KILN_MAX_ELEMENTS;
}

static kiln_status infer_depth_to_space(ir_infer *c)
{
    int64_t b;
    KILN_TRY(rearrange_check(c, &b));
    kiln_dims o = c->in[0].shape;
    int64_t ch = o.d[1];
    if (ch < 0) return ir_node_error(c->node, KILN_ERR_SHAPE, "the channel count must be known");
    if (ch % (b * b) != 0)
        return ir_node_error(c->node, KILN_ERR_SHAPE,
                             "%lld channels are not divisible by blocksize^2 = %lld", (long long)ch,
                             (long long)(b * b));
    o.d[1] = ch / (b * b);
    if (!scale_dim(o.d[2], b, &o.d[2]) || !scale_dim(o.d[3], b, &o.d[3]))
        return ir_node_error(c->node, KILN_ERR_SHAPE, "the output would be too large");
    c->out[0].dtype = c->in[0].dtype;
    c->out[0].shape = o;
    return KILN_OK;
}

static kiln_status infer_space_to_depth(ir_infer *c)
{
    int64_t b;
    KILN_TRY(rearrange_check(c, &b));
    kiln_dims o = c->in[0].shape;
    for (int32_t d = 2; d < 4; d++) {
        if (o.d[d] >= 0 && o.d[d] % b != 0)
            return ir_node_error(c->node, KILN_ERR_SHAPE,
                                 "dim %d (%lld) is not divisible by blocksize %lld", d,
                                 (long long)o.d[d], (long long)b);
        if (o.d[d] >= 0) o.d[d] /= b;
    }
    if (!scale_dim(o.d[1], b * b, &o.d[1]))
        return ir_node_error(c->node, KILN_ERR_SHAPE, "the output would be too large");
    c->out[0].dtype = c->in[0].dtype;
    c->out[0].shape = o;
    return KILN_OK;
}

/* Both ops move elements between `deep` (N x C*b*b x H x W) and `wide`
 * (N x C x H*b x W*b). Element (c, h*b+i, w*b+j) of `wide` is channel
 * (i*b+j)*C + c of `deep` in DCR order, c*b*b + i*b + j in CRD order. */
static void rearrange(const ir_tensor *deep_t, const ir_tensor *wide_t, int64_t b, bool crd,
                      bool to_wide)
{
    size_t es = kiln_dtype_size(wide_t->dtype);
    const kiln_dims *wd = &wide_t->shape;
    int64_t nb = wd->d[0], ch = wd->d[1], wh = wd->d[2], ww = wd->d[3];
    int64_t h = wh / b, w = ww / b;
    uint8_t *deep = deep_t->data, *wide = wide_t->data;
    for (int64_t n = 0; n < nb; n++)
        for (int64_t c = 0; c < ch; c++)
            for (int64_t y = 0; y < wh; y++) {
                int64_t i = y % b;
                for (int64_t x = 0; x < ww; x++) {
                    int64_t j = x % b;
                    int64_t dc = crd ? c * b * b + i * b + j : (i * b + j) * ch + c;
                    int64_t di = ((n * ch * b * b + dc) * h + y / b) * w + x / b;
                    int64_t wi = ((n * ch + c) * wh + y) * ww + x;
                    if (to_wide)
                        memcpy(wide + wi * (int64_t)es, deep + di * (int64_t)es, es);
                    else
                        memcpy(deep + di * (int64_t)es, wide + wi * (int64_t)es, es);
                }
            }
}

static kiln_status eval_depth_to_space(const ir_node *n, const ir_tensor *in, int32_t n_in,
                                       ir_tensor *out, int32_t n_out)
{
    bool crd = strcmp(ir_attr_string(n, "mode"), "CRD") == 0;
    rearrange(&in[0], &out[0], ir_attr_int(n, "blocksize"), crd, true);
    return KILN_OK;
}

static kiln_status eval_space_to_depth(const ir_node *n, const ir_tensor *in, int32_t n_in,
                                       ir_tensor *out, int32_t n_out)
{
    bool crd = strcmp(ir_attr_string(n, "mode"), "CRD") == 0;
    rearrange(&out[0], &in[0], ir_attr_int(n, "blocksize"), crd, false);
    return KILN_OK;
}

/* ---- the group table ---- */

#define NN_N(a) (int32_t)(sizeof a / sizeof *a)

const ir_op ir_ops_nn[] = {
    {"Conv", 2, 3, 1, 1, ir_nn_conv_attrs, NN_CONV_ATTRS, ir_nn_conv_infer, ir_nn_conv_eval, 0},
    {"ConvTranspose", 2, 3, 1, 1, ir_nn_conv_transpose_attrs, NN_CONV_TRANSPOSE_ATTRS,
     ir_nn_conv_transpose_infer, ir_nn_conv_transpose_eval, 0},
    {"MaxPool", 1, 1, 1, 2, ir_nn_maxpool_attrs, NN_MAXPOOL_ATTRS, ir_nn_maxpool_infer,
     ir_nn_maxpool_eval, 0},
    {"AveragePool", 1, 1, 1, 1, ir_nn_avgpool_attrs, NN_AVGPOOL_ATTRS, ir_nn_avgpool_infer,
     ir_nn_avgpool_eval, 0},
    {"GlobalAveragePool", 1, 1, 1, 1, NULL, 0, ir_nn_global_avgpool_infer,
     ir_nn_global_avgpool_eval, 0},
    {"GlobalMaxPool", 1, 1, 1, 1, NULL, 0, ir_nn_global_maxpool_infer, ir_nn_global_maxpool_eval,
     0},
    {"BatchNormalization", 5, 5, 1, 3, ir_nn_batchnorm_attrs, NN_BATCHNORM_ATTRS,
     ir_nn_batchnorm_infer, ir_nn_batchnorm_eval, 0},
    {"LRN", 1, 1, 1, 1, ir_nn_lrn_attrs, NN_LRN_ATTRS, ir_nn_lrn_infer, ir_nn_lrn_eval, 0},
    {"InstanceNormalization", 3, 3, 1, 1, ir_nn_instancenorm_attrs, NN_INSTANCENORM_ATTRS,
     ir_nn_instancenorm_infer, ir_nn_instancenorm_eval, 0},
    {"GroupNormalization", 3, 3, 1, 1, ir_nn_groupnorm_attrs, NN_GROUPNORM_ATTRS,
     ir_nn_groupnorm_infer, ir_nn_groupnorm_eval, 0},
    {"LpNormalization", 1, 1, 1, 1, ir_nn_lpnorm_attrs, NN_LPNORM_ATTRS, ir_nn_lpnorm_infer,
     ir_nn_lpnorm_eval, 0},
    {"DepthToSpace", 1, 1, 1, 1, depth_to_space_attrs, NN_N(depth_to_space_attrs),
     infer_depth_to_space, eval_depth_to_space, 0},
    {"SpaceToDepth", 1, 1, 1, 1, space_to_depth_attrs, NN_N(space_to_depth_attrs),
     infer_space_to_depth, eval_space_to_depth, 0},
};
const int32_t ir_ops_nn_count = NN_N(ir_ops_nn);
