/* caffe_layers.c - one converter per Caffe layer type onto kiln's ops (ONNX semantics),
 * composing several ops where Caffe's layer has no single counterpart (Power, Exp, Log,
 * LRN within channels, Scale, Eltwise with coefficients, Reshape with axis). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "parsers/caffe/caffe_import.h"

#define MAX_SPATIAL 6

/* ---- small helpers ---- */

/* Normalizes a Caffe axis (negative counts from the end) against `rank`. */
static kiln_status norm_axis(caffe_ctx *c, const caffe_layer *L, int64_t axis, int32_t rank,
                             const char *what, int32_t *out)
{
    if (axis < -rank || axis >= rank)
        return caffe_layer_error(c, L, KILN_ERR_SHAPE, "%s %lld is out of range for rank %d", what,
                                 (long long)axis, rank);
    *out = (int32_t)(axis < 0 ? axis + rank : axis);
    return KILN_OK;
}

/* Emits a chain of elementwise steps on `x` ending in `out`: each step is an op with an
 * optional scalar second operand. No steps: an Identity. The first node takes the
 * layer's name. */
typedef struct step {
    const char *op;
    bool has_scalar;
    float scalar;
} step;

static kiln_status emit_chain(caffe_ctx *c, const caffe_layer *L, const char *x, const char *out,
                              const step *steps, int32_t n)
{
    if (n == 0) return caffe_emit1(c, L, "Identity", L->name, x, out, NULL, 0);
    const char *cur = x;
    for (int32_t i = 0; i < n; i++) {
        const char *dst = i == n - 1 ? out : caffe_tmp(c, L, steps[i].op);
        if (!dst) return KILN_ERR_OUT_OF_MEMORY;
        const char *name = i == 0 ? L->name : NULL;
        if (steps[i].has_scalar) {
            const char *k;
            KILN_TRY(caffe_const_scalar(c, L, steps[i].op, steps[i].scalar, &k));
            KILN_TRY(caffe_emit2(c, L, steps[i].op, name, cur, k, dst));
        } else {
            KILN_TRY(caffe_emit1(c, L, steps[i].op, name, cur, dst, NULL, 0));
        }
        cur = dst;
    }
    return KILN_OK;
}

static kiln_dims dims1(int64_t a) { return (kiln_dims){.rank = 1, .d = {a}}; }

/* ---- Convolution, Deconvolution ---- */

/* One spatial parameter: the _h/_w pair (2-D only), else a repeated field with 0, 1 or
 * `ns` values (`def` when empty). */
static kiln_status spatial_param(caffe_ctx *c, const caffe_layer *L, const char *what, int32_t ns,
                                 bool has_h, uint32_t h, bool has_w, uint32_t w, size_t n,
                                 const uint32_t *v, int64_t def, bool required, int64_t *out)
{
    if (has_h || has_w) {
        if (ns != 2)
            return caffe_layer_error(c, L, KILN_ERR_PARSE,
                                     "%s_h/%s_w are for 2-D convolutions; this one has %d spatial "
                                     "dims",
                                     what, what, ns);
        if (n)
            return caffe_layer_error(c, L, KILN_ERR_PARSE, "both %s and %s_h/%s_w are given", what,
                                     what, what);
        if (!has_h || !has_w)
            return caffe_layer_error(c, L, KILN_ERR_PARSE, "%s_h and %s_w must be given together",
                                     what, what);
        out[0] = h, out[1] = w;
        return KILN_OK;
    }
    if (n == 0 && required) return caffe_layer_error(c, L, KILN_ERR_PARSE, "no %s given", what);
    if (n != 0 && n != 1 && n != (size_t)ns)
        return caffe_layer_error(c, L, KILN_ERR_PARSE,
                                 "%s has %zu values; expected 1 or %d (one per spatial dim)", what,
                                 n, ns);
    for (int32_t i = 0; i < ns; i++) out[i] = n == 0 ? def : v[n == 1 ? 0 : i];
    return KILN_OK;
}

static kiln_status conv_layer(caffe_ctx *c, const caffe_layer *L)
{
    static const Caffe__ConvolutionParameter def = CAFFE__CONVOLUTION_PARAMETER__INIT;
    const Caffe__ConvolutionParameter *cp =
        L->p->convolution_param ? L->p->convolution_param : &def;
    bool deconv = strcmp(L->type, "Deconvolution") == 0;
    if (L->n_in != L->n_out)
        return caffe_layer_error(c, L, KILN_ERR_PARSE, "%d bottoms but %d tops", L->n_in, L->n_out);
    const kiln_dims *xs;
    KILN_TRY(caffe_input_shape(c, L, 0, 3, &xs));
    int32_t axis = 0;
    KILN_TRY(norm_axis(c, L, cp->axis, xs->rank, "axis", &axis));
    if (axis != 1)
        return caffe_layer_error(c, L, KILN_ERR_UNSUPPORTED,
                                 "axis %d: kiln convolves with channels at axis 1", (int)cp->axis);
    int32_t ns = xs->rank - 2;
    if (ns > MAX_SPATIAL)
        return caffe_layer_error(c, L, KILN_ERR_UNSUPPORTED, "%d spatial dims", ns);
    int64_t k[MAX_SPATIAL], pad[2 * MAX_SPATIAL], stride[MAX_SPATIAL], dil[MAX_SPATIAL];
    KILN_TRY(spatial_param(c, L, "kernel", ns, cp->has_kernel_h, cp->kernel_h, cp->has_kernel_w,
                           cp->kernel_w, cp->n_kernel_size, cp->kernel_size, 0, true, k));
    KILN_TRY(spatial_param(c, L, "pad", ns, cp->has_pad_h, cp->pad_h, cp->has_pad_w, cp->pad_w,
                           cp->n_pad, cp->pad, 0, false, pad));
    KILN_TRY(spatial_param(c, L, "stride", ns, cp->has_stride_h, cp->stride_h, cp->has_stride_w,
                           cp->stride_w, cp->n_stride, cp->stride, 1, false, stride));
    KILN_TRY(spatial_param(c, L, "dilation", ns, false, 0, false, 0, cp->n_dilation, cp->dilation,
                           1, false, dil));
    for (int32_t i = 0; i < ns; i++) {
        pad[ns + i] = pad[i];
        if (k[i] <= 0 || stride[i] <= 0 || dil[i] <= 0)
            return caffe_layer_error(c, L, KILN_ERR_PARSE,
                                     "kernel, stride and dilation must be positive");
    }
    int64_t cin = xs->d[1], cout = cp->num_output, group = cp->group;
    if (!cp->has_num_output || cout == 0)
        return caffe_layer_error(c, L, KILN_ERR_PARSE, "num_output is missing or 0");
    if (group <= 0 || cin % group || cout % group)
        return caffe_layer_error(c, L, KILN_ERR_SHAPE,
                                 "group %lld does not divide the %lld input and %lld output "
                                 "channels",
                                 (long long)group, (long long)cin, (long long)cout);
    /* Convolution weights are out x in/group x k...; Deconvolution's in x out/group x k...,
     * which is ConvTranspose's layout too. */
    kiln_dims wd = {.rank = 2 + ns};
    wd.d[0] = deconv ? cin : cout;
    wd.d[1] = deconv ? cout / group : cin / group;
    for (int32_t i = 0; i < ns; i++) wd.d[2 + i] = k[i];
    const float *wv, *bv;
    const char *in[3];
    KILN_TRY(caffe_blob(c, L, 0, "weights", &wd, &wv));
    KILN_TRY(caffe_const(c, L, "weights", &wd, wv, &in[1]));
    int32_t n_in = 2;
    if (cp->bias_term) {
        kiln_dims bd = dims1(cout);
        KILN_TRY(caffe_blob(c, L, 1, "bias", &bd, &bv));
        KILN_TRY(caffe_const(c, L, "bias", &bd, bv, &in[2]));
        n_in = 3;
    }
    kiln_attr a[5] = {KILN_ATTR_IS("kernel_shape", k, ns), KILN_ATTR_IS("pads", pad, 2 * ns),
                      KILN_ATTR_IS("strides", stride, ns), KILN_ATTR_IS("dilations", dil, ns),
                      KILN_ATTR_I("group", group)};
    /* Caffe applies one set of weights to each bottom, giving one top each. */
    for (int32_t t = 0; t < L->n_in; t++) {
        in[0] = L->in[t];
        if (t) KILN_TRY(caffe_input_shape(c, L, t, 3, &xs));
        KILN_TRY(caffe_emit(c, L, deconv ? "ConvTranspose" : "Conv", t ? NULL : L->name, in, n_in,
                            &L->out[t], 1, a, 5));
    }
    return KILN_OK;
}

/* ---- Pooling ---- */

/* Caffe's output size is ceil((in + 2p - k) / s) + 1, less one when the last window would
 * start at or past in + p; ONNX's ceil_mode computes exactly that (kiln drops such
 * windows with or without padding, Caffe only with padding: they differ only when a
 * kernel smaller than its stride leaves an empty last window). AVE divides by the window
 * clipped to the padded input, which is count_include_pad=1. */
static kiln_status pool_layer(caffe_ctx *c, const caffe_layer *L)
{
    static const Caffe__PoolingParameter def = CAFFE__POOLING_PARAMETER__INIT;
    const Caffe__PoolingParameter *pp = L->p->pooling_param ? L->p->pooling_param : &def;
    const kiln_dims *xs;
    KILN_TRY(caffe_input_shape(c, L, 0, 4, &xs));
    if (xs->rank != 4)
        return caffe_layer_error(c, L, KILN_ERR_UNSUPPORTED, "Caffe pools 4-D blobs only");
    bool max = pp->pool == CAFFE__POOLING_PARAMETER__POOL_METHOD__MAX;
    if (!max && pp->pool != CAFFE__POOLING_PARAMETER__POOL_METHOD__AVE)
        return caffe_layer_error(c, L, KILN_ERR_UNSUPPORTED,
                                 "pool STOCHASTIC is not supported (MAX and AVE are)");
    if (pp->global_pooling) {
        if (pp->pad || pp->pad_h || pp->pad_w || pp->stride != 1 ||
            (pp->has_stride_h && pp->stride_h != 1) || (pp->has_stride_w && pp->stride_w != 1))
            return caffe_layer_error(c, L, KILN_ERR_PARSE,
                                     "global pooling takes no padding and stride 1");
        return caffe_emit1(c, L, max ? "GlobalMaxPool" : "GlobalAveragePool", L->name, L->in[0],
                           L->out[0], NULL, 0);
    }
    int64_t k[2], pad[4], s[2];
    if (pp->has_kernel_size && (pp->has_kernel_h || pp->has_kernel_w))
        return caffe_layer_error(c, L, KILN_ERR_PARSE, "both kernel_size and kernel_h/_w given");
    if (pp->has_kernel_size)
        k[0] = k[1] = pp->kernel_size;
    else if (pp->has_kernel_h && pp->has_kernel_w)
        k[0] = pp->kernel_h, k[1] = pp->kernel_w;
    else
        return caffe_layer_error(c, L, KILN_ERR_PARSE,
                                 "needs kernel_size or kernel_h and kernel_w (or global_pooling)");
    if (pp->has_pad_h || pp->has_pad_w)
        pad[0] = pp->pad_h, pad[1] = pp->pad_w;
    else
        pad[0] = pad[1] = pp->pad;
    if (pp->has_stride_h || pp->has_stride_w)
        s[0] = pp->has_stride_h ? pp->stride_h : 1, s[1] = pp->has_stride_w ? pp->stride_w : 1;
    else
        s[0] = s[1] = pp->stride;
    for (int i = 0; i < 2; i++) {
        if (k[i] <= 0 || s[i] <= 0)
            return caffe_layer_error(c, L, KILN_ERR_PARSE, "kernel and stride must be positive");
        if (pad[i] >= k[i])
            return caffe_layer_error(c, L, KILN_ERR_PARSE,
                                     "pad %lld must be smaller than the kernel %lld",
                                     (long long)pad[i], (long long)k[i]);
        pad[2 + i] = pad[i];
    }
    int64_t ceil_mode = pp->round_mode == CAFFE__POOLING_PARAMETER__ROUND_MODE__CEIL;
    kiln_attr a[5] = {KILN_ATTR_IS("kernel_shape", k, 2), KILN_ATTR_IS("pads", pad, 4),
                      KILN_ATTR_IS("strides", s, 2), KILN_ATTR_I("ceil_mode", ceil_mode),
                      KILN_ATTR_I("count_include_pad", 1)};
    return caffe_emit1(c, L, max ? "MaxPool" : "AveragePool", L->name, L->in[0], L->out[0], a,
                       max ? 4 : 5);
}

/* ---- InnerProduct ---- */

static kiln_status inner_product_layer(caffe_ctx *c, const caffe_layer *L)
{
    static const Caffe__InnerProductParameter def = CAFFE__INNER_PRODUCT_PARAMETER__INIT;
    const Caffe__InnerProductParameter *ip =
        L->p->inner_product_param ? L->p->inner_product_param : &def;
    const kiln_dims *xs;
    KILN_TRY(caffe_input_shape(c, L, 0, 1, &xs));
    int32_t axis = 0;
    KILN_TRY(norm_axis(c, L, ip->axis, xs->rank, "axis", &axis));
    int64_t n = ip->num_output, k = 1;
    if (!ip->has_num_output || n == 0)
        return caffe_layer_error(c, L, KILN_ERR_PARSE, "num_output is missing or 0");
    for (int32_t i = axis; i < xs->rank; i++) k *= xs->d[i];
    /* Caffe keeps N x K (K x N with transpose). */
    kiln_dims wd =
        ip->transpose ? (kiln_dims){.rank = 2, .d = {k, n}} : (kiln_dims){.rank = 2, .d = {n, k}};
    const float *wv, *bv = NULL;
    KILN_TRY(caffe_blob(c, L, 0, "weights", &wd, &wv));
    kiln_dims bd = dims1(n);
    if (ip->bias_term) KILN_TRY(caffe_blob(c, L, 1, "bias", &bd, &bv));
    const char *w, *b = NULL;
    if (axis == 1) {
        /* The common case: Flatten to N x K, then one Gemm. */
        KILN_TRY(caffe_const(c, L, "weights", &wd, wv, &w));
        if (bv) KILN_TRY(caffe_const(c, L, "bias", &bd, bv, &b));
        const char *flat = L->in[0];
        if (xs->rank != 2) {
            flat = caffe_tmp(c, L, "flat");
            if (!flat) return KILN_ERR_OUT_OF_MEMORY;
            kiln_attr fa = KILN_ATTR_I("axis", 1);
            KILN_TRY(caffe_emit1(c, L, "Flatten", NULL, L->in[0], flat, &fa, 1));
        }
        const char *in[3] = {flat, w, b};
        kiln_attr ga = KILN_ATTR_I("transB", ip->transpose ? 0 : 1);
        return caffe_emit(c, L, "Gemm", L->name, in, b ? 3 : 2, &L->out[0], 1, &ga, 1);
    }
    /* Other axes keep the leading dims: Reshape to [d0 .. d(axis-1), K], MatMul by the
     * K x N matrix, add the bias. */
    const float *kn = wv;
    if (!ip->transpose) {
        float *t = caffe_scratch(c, sizeof(float) * (size_t)(n * k));
        if (!t) return KILN_ERR_OUT_OF_MEMORY;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < k; j++) t[j * n + i] = wv[i * k + j];
        kn = t;
    }
    kiln_dims knd = {.rank = 2, .d = {k, n}};
    KILN_TRY(caffe_const(c, L, "weights", &knd, kn, &w));
    int64_t shape[KILN_MAX_RANK];
    for (int32_t i = 0; i < axis; i++) shape[i] = 0;
    shape[axis] = -1;
    const char *sh, *flat = caffe_tmp(c, L, "flat");
    if (!flat) return KILN_ERR_OUT_OF_MEMORY;
    KILN_TRY(caffe_const_i64(c, L, "shape", shape, axis + 1, &sh));
    KILN_TRY(caffe_emit2(c, L, "Reshape", NULL, L->in[0], sh, flat));
    if (!bv) return caffe_emit2(c, L, "MatMul", L->name, flat, w, L->out[0]);
    const char *prod = caffe_tmp(c, L, "matmul");
    if (!prod) return KILN_ERR_OUT_OF_MEMORY;
    KILN_TRY(caffe_emit2(c, L, "MatMul", L->name, flat, w, prod));
    KILN_TRY(caffe_const(c, L, "bias", &bd, bv, &b));
    return caffe_emit2(c, L, "Add", NULL, prod, b, L->out[0]);
}

/* ---- activations and other one-to-one layers ---- */

static kiln_status simple_layer(caffe_ctx *c, const caffe_layer *L, const char *op)
{
    return caffe_emit1(c, L, op, L->name, L->in[0], L->out[0], NULL, 0);
}

static kiln_status relu_layer(caffe_ctx *c, const caffe_layer *L)
{
    const Caffe__ReLUParameter *rp = L->p->relu_param;
    if (rp && rp->negative_slope != 0.0f) {
        kiln_attr a = KILN_ATTR_F("alpha", rp->negative_slope);
        return caffe_emit1(c, L, "LeakyRelu", L->name, L->in[0], L->out[0], &a, 1);
    }
    return simple_layer(c, L, "Relu");
}

static kiln_status prelu_layer(caffe_ctx *c, const caffe_layer *L)
{
    const Caffe__PReLUParameter *pp = L->p->prelu_param;
    bool shared = pp && pp->channel_shared;
    const kiln_dims *xs;
    KILN_TRY(caffe_input_shape(c, L, 0, 2, &xs));
    int64_t ch = shared ? 1 : xs->d[1];
    kiln_dims want = dims1(ch);
    const float *v;
    KILN_TRY(caffe_blob(c, L, 0, "slopes", &want, &v));
    /* Channel slopes broadcast as C x 1 x ... against N x C x ... */
    kiln_dims sd = {.rank = shared ? 1 : xs->rank - 1};
    for (int32_t i = 0; i < sd.rank; i++) sd.d[i] = 1;
    sd.d[0] = ch;
    const char *slope;
    KILN_TRY(caffe_const(c, L, "slope", &sd, v, &slope));
    return caffe_emit2(c, L, "PRelu", L->name, L->in[0], slope, L->out[0]);
}

static kiln_status elu_layer(caffe_ctx *c, const caffe_layer *L)
{
    kiln_attr a = KILN_ATTR_F("alpha", L->p->elu_param ? L->p->elu_param->alpha : 1.0f);
    return caffe_emit1(c, L, "Elu", L->name, L->in[0], L->out[0], &a, 1);
}

static kiln_status power_layer(caffe_ctx *c, const caffe_layer *L)
{
    static const Caffe__PowerParameter def = CAFFE__POWER_PARAMETER__INIT;
    const Caffe__PowerParameter *pp = L->p->power_param ? L->p->power_param : &def;
    step s[3];
    int32_t n = 0;
    if (pp->scale != 1.0f) s[n++] = (step){"Mul", true, pp->scale};
    if (pp->shift != 0.0f) s[n++] = (step){"Add", true, pp->shift};
    if (pp->power != 1.0f) s[n++] = (step){"Pow", true, pp->power};
    return emit_chain(c, L, L->in[0], L->out[0], s, n);
}

/* y = base^(shift + scale x), computed as Caffe does: outer * exp(inner * x) with
 * inner = ln(base) scale and outer = base^shift. base -1 means e. */
static kiln_status exp_layer(caffe_ctx *c, const caffe_layer *L)
{
    static const Caffe__ExpParameter def = CAFFE__EXP_PARAMETER__INIT;
    const Caffe__ExpParameter *ep = L->p->exp_param ? L->p->exp_param : &def;
    bool e = ep->base_ == -1.0f;
    if (!e && !(ep->base_ > 0.0f))
        return caffe_layer_error(c, L, KILN_ERR_PARSE, "base %g must be positive (or -1 for e)",
                                 (double)ep->base_);
    double log_base = e ? 1.0 : log((double)ep->base_);
    float inner = (float)(log_base * (double)ep->scale);
    float outer = ep->shift == 0.0f ? 1.0f : (float)exp(log_base * (double)ep->shift);
    step s[3];
    int32_t n = 0;
    if (inner != 1.0f) s[n++] = (step){"Mul", true, inner};
    s[n++] = (step){"Exp", false, 0};
    if (outer != 1.0f) s[n++] = (step){"Mul", true, outer};
    return emit_chain(c, L, L->in[0], L->out[0], s, n);
}

/* y = log_base(shift + scale x) = ln(shift + scale x) / ln(base); base -1 means e. */
static kiln_status log_layer(caffe_ctx *c, const caffe_layer *L)
{
    static const Caffe__LogParameter def = CAFFE__LOG_PARAMETER__INIT;
    const Caffe__LogParameter *lp = L->p->log_param ? L->p->log_param : &def;
    bool e = lp->base_ == -1.0f;
    if (!e && !(lp->base_ > 0.0f && lp->base_ != 1.0f))
        return caffe_layer_error(c, L, KILN_ERR_PARSE,
                                 "base %g must be positive and not 1 (or -1 for e)",
                                 (double)lp->base_);
    step s[4];
    int32_t n = 0;
    if (lp->scale != 1.0f) s[n++] = (step){"Mul", true, lp->scale};
    if (lp->shift != 0.0f) s[n++] = (step){"Add", true, lp->shift};
    s[n++] = (step){"Log", false, 0};
    if (!e) s[n++] = (step){"Mul", true, (float)(1.0 / log((double)lp->base_))};
    return emit_chain(c, L, L->in[0], L->out[0], s, n);
}

/* y = x > threshold ? 1 : 0 */
static kiln_status threshold_layer(caffe_ctx *c, const caffe_layer *L)
{
    float t = L->p->threshold_param ? L->p->threshold_param->threshold : 0.0f;
    const char *k, *cmp = caffe_tmp(c, L, "greater");
    if (!cmp) return KILN_ERR_OUT_OF_MEMORY;
    KILN_TRY(caffe_const_scalar(c, L, "threshold", t, &k));
    KILN_TRY(caffe_emit2(c, L, "Greater", L->name, L->in[0], k, cmp));
    kiln_attr a = KILN_ATTR_I("to", KILN_DTYPE_F32);
    return caffe_emit1(c, L, "Cast", NULL, cmp, L->out[0], &a, 1);
}

/* ---- LRN ---- */

static kiln_status lrn_layer(caffe_ctx *c, const caffe_layer *L)
{
    static const Caffe__LRNParameter def = CAFFE__LRNPARAMETER__INIT;
    const Caffe__LRNParameter *lp = L->p->lrn_param ? L->p->lrn_param : &def;
    const kiln_dims *xs;
    KILN_TRY(caffe_input_shape(c, L, 0, 4, &xs));
    int64_t n = lp->local_size;
    if (n <= 0 || n % 2 == 0)
        return caffe_layer_error(c, L, KILN_ERR_PARSE, "local_size %lld must be odd", (long long)n);
    if (lp->norm_region == CAFFE__LRNPARAMETER__NORM_REGION__ACROSS_CHANNELS) {
        /* Caffe's scale k + alpha/n * sum is ONNX's bias + alpha/size * sum. */
        kiln_attr a[4] = {KILN_ATTR_I("size", n), KILN_ATTR_F("alpha", lp->alpha),
                          KILN_ATTR_F("beta", lp->beta), KILN_ATTR_F("bias", lp->k)};
        return caffe_emit1(c, L, "LRN", L->name, L->in[0], L->out[0], a, 4);
    }
    /* WITHIN_CHANNEL: y = x (1 + alpha * mean of x^2 over the n x n window)^-beta, the
     * mean over the window clipped to the padded input (Caffe ignores k here). */
    if (xs->rank != 4)
        return caffe_layer_error(c, L, KILN_ERR_UNSUPPORTED, "WITHIN_CHANNEL needs a 4-D blob");
    const char *x = L->in[0], *sq = caffe_tmp(c, L, "square");
    if (!sq) return KILN_ERR_OUT_OF_MEMORY;
    KILN_TRY(caffe_emit2(c, L, "Mul", L->name, x, x, sq));
    int64_t k[2] = {n, n}, p = (n - 1) / 2, pads[4] = {p, p, p, p}, s[2] = {1, 1};
    kiln_attr a[4] = {KILN_ATTR_IS("kernel_shape", k, 2), KILN_ATTR_IS("pads", pads, 4),
                      KILN_ATTR_IS("strides", s, 2), KILN_ATTR_I("count_include_pad", 1)};
    const char *mean = caffe_tmp(c, L, "mean");
    if (!mean) return KILN_ERR_OUT_OF_MEMORY;
    KILN_TRY(caffe_emit1(c, L, "AveragePool", NULL, sq, mean, a, 4));
    const step st[3] = {{"Mul", true, lp->alpha}, {"Add", true, 1.0f}, {"Pow", true, lp->beta}};
    const char *cur = mean;
    for (int i = 0; i < 3; i++) {
        const char *dst = caffe_tmp(c, L, st[i].op), *kc;
        if (!dst) return KILN_ERR_OUT_OF_MEMORY;
        KILN_TRY(caffe_const_scalar(c, L, st[i].op, st[i].scalar, &kc));
        KILN_TRY(caffe_emit2(c, L, st[i].op, NULL, cur, kc, dst));
        cur = dst;
    }
    return caffe_emit2(c, L, "Div", NULL, x, cur, L->out[0]);
}

/* ---- Softmax, BatchNorm ---- */

static kiln_status softmax_layer(caffe_ctx *c, const caffe_layer *L)
{
    const kiln_dims *xs;
    KILN_TRY(caffe_input_shape(c, L, 0, 1, &xs));
    int32_t axis = 0;
    KILN_TRY(norm_axis(c, L, L->p->softmax_param ? L->p->softmax_param->axis : 1, xs->rank, "axis",
                       &axis));
    kiln_attr a = KILN_ATTR_I("axis", axis);
    return caffe_emit1(c, L, "Softmax", L->name, L->in[0], L->out[0], &a, 1);
}

/* Caffe keeps running sums: mean and variance are blobs 0 and 1 divided by the scale
 * factor in blob 2 (a factor of 0 leaves them 0, as Caffe does). */
static kiln_status batch_norm_layer(caffe_ctx *c, const caffe_layer *L)
{
    const kiln_dims *xs;
    KILN_TRY(caffe_input_shape(c, L, 0, 2, &xs));
    int64_t ch = xs->d[1];
    kiln_dims cd = dims1(ch), one = dims1(1);
    const float *mean, *var, *factor;
    KILN_TRY(caffe_blob(c, L, 0, "mean", &cd, &mean));
    KILN_TRY(caffe_blob(c, L, 1, "variance", &cd, &var));
    KILN_TRY(caffe_blob(c, L, 2, "scale factor", &one, &factor));
    float f = factor[0] == 0.0f ? 0.0f : 1.0f / factor[0];
    float *buf = caffe_scratch(c, sizeof(float) * 4 * (size_t)ch);
    if (!buf) return KILN_ERR_OUT_OF_MEMORY;
    for (int64_t i = 0; i < ch; i++) {
        buf[i] = 1.0f;
        buf[ch + i] = 0.0f;
        buf[2 * ch + i] = mean[i] * f;
        buf[3 * ch + i] = var[i] * f;
    }
    const char *in[5] = {L->in[0]};
    static const char *hints[4] = {"scale", "bias", "mean", "var"};
    for (int i = 0; i < 4; i++)
        KILN_TRY(caffe_const(c, L, hints[i], &cd, buf + i * ch, &in[1 + i]));
    float eps = L->p->batch_norm_param ? L->p->batch_norm_param->eps : 1e-5f;
    kiln_attr a = KILN_ATTR_F("epsilon", eps);
    return caffe_emit(c, L, "BatchNormalization", L->name, in, 5, &L->out[0], 1, &a, 1);
}

/* ---- Scale, Bias ---- */

/* The operand's shape padded with trailing 1s so that it broadcasts against x from
 * `axis` on. */
static kiln_dims broadcast_shape(const kiln_dims *x, int32_t axis, int32_t num_axes)
{
    kiln_dims d = {.rank = x->rank - axis};
    for (int32_t i = 0; i < d.rank; i++) d.d[i] = i < num_axes ? x->d[axis + i] : 1;
    return d;
}

/* Scale (x * s [+ b]) and Bias (x + b): the operand is the second bottom, or a learned
 * blob covering x's dims [axis, axis + num_axes). */
static kiln_status scale_layer(caffe_ctx *c, const caffe_layer *L)
{
    bool is_scale = strcmp(L->type, "Scale") == 0;
    static const Caffe__ScaleParameter sdef = CAFFE__SCALE_PARAMETER__INIT;
    static const Caffe__BiasParameter bdef = CAFFE__BIAS_PARAMETER__INIT;
    const Caffe__ScaleParameter *sp = L->p->scale_param ? L->p->scale_param : &sdef;
    const Caffe__BiasParameter *bp = L->p->bias_param ? L->p->bias_param : &bdef;
    int64_t axis_p = is_scale ? sp->axis : bp->axis;
    int64_t num_axes = is_scale ? sp->num_axes : bp->num_axes;
    const kiln_dims *xs;
    char a[KILN_DIMS_STR_MAX], b[KILN_DIMS_STR_MAX];
    KILN_TRY(caffe_input_shape(c, L, 0, 0, &xs));
    kiln_dims x = *xs;
    const char *operand;
    int32_t axis = 0, nax;
    if (L->n_in == 2) {
        const kiln_dims *os;
        KILN_TRY(caffe_input_shape(c, L, 1, 0, &os));
        nax = os->rank;
        /* A scalar second bottom ignores axis. */
        if (nax > 0) KILN_TRY(norm_axis(c, L, axis_p, x.rank, "axis", &axis));
        bool fits = axis + nax <= x.rank;
        for (int32_t i = 0; fits && i < nax; i++) fits = os->d[i] == x.d[axis + i];
        if (!fits)
            return caffe_layer_error(c, L, KILN_ERR_SHAPE,
                                     "bottom '%s' (%s) does not match the dims of '%s' (%s) from "
                                     "axis %d",
                                     L->p->bottom[1], kiln_dims_str(os, a, sizeof a),
                                     L->p->bottom[0], kiln_dims_str(&x, b, sizeof b), axis);
        operand = L->in[1];
        if (nax > 0 && axis + nax < x.rank) {
            kiln_dims bs = broadcast_shape(&x, axis, nax);
            const char *sh, *r = caffe_tmp(c, L, "operand");
            if (!r) return KILN_ERR_OUT_OF_MEMORY;
            KILN_TRY(caffe_const_i64(c, L, "shape", bs.d, bs.rank, &sh));
            KILN_TRY(caffe_emit2(c, L, "Reshape", NULL, operand, sh, r));
            operand = r;
        }
    } else {
        if (x.rank > 0 || axis_p != 0) KILN_TRY(norm_axis(c, L, axis_p, x.rank, "axis", &axis));
        nax = num_axes < 0 ? x.rank - axis : (int32_t)num_axes;
        if (num_axes < -1 || axis + nax > x.rank)
            return caffe_layer_error(c, L, KILN_ERR_SHAPE,
                                     "axis %d and num_axes %lld do not fit the bottom %s", axis,
                                     (long long)num_axes, kiln_dims_str(&x, a, sizeof a));
        kiln_dims want = {.rank = nax};
        for (int32_t i = 0; i < nax; i++) want.d[i] = x.d[axis + i];
        const float *v;
        KILN_TRY(caffe_blob(c, L, 0, is_scale ? "scale" : "bias", &want, &v));
        kiln_dims bs = nax ? broadcast_shape(&x, axis, nax) : want;
        KILN_TRY(caffe_const(c, L, is_scale ? "scale" : "bias", &bs, v, &operand));
    }
    if (!is_scale) return caffe_emit2(c, L, "Add", L->name, L->in[0], operand, L->out[0]);
    if (!sp->bias_term) return caffe_emit2(c, L, "Mul", L->name, L->in[0], operand, L->out[0]);
    /* The bias follows the scale's blobs: blob 1 with a learned scale, else blob 0. */
    kiln_dims want = {.rank = nax};
    for (int32_t i = 0; i < nax; i++) want.d[i] = x.d[axis + i];
    const float *bv;
    const char *bias, *prod = caffe_tmp(c, L, "scaled");
    if (!prod) return KILN_ERR_OUT_OF_MEMORY;
    KILN_TRY(caffe_blob(c, L, L->n_in == 2 ? 0 : 1, "bias", &want, &bv));
    kiln_dims bs = nax ? broadcast_shape(&x, axis, nax) : want;
    KILN_TRY(caffe_const(c, L, "bias", &bs, bv, &bias));
    KILN_TRY(caffe_emit2(c, L, "Mul", L->name, L->in[0], operand, prod));
    return caffe_emit2(c, L, "Add", NULL, prod, bias, L->out[0]);
}

/* ---- Eltwise, Concat, Slice, Split ---- */

static kiln_status eltwise_layer(caffe_ctx *c, const caffe_layer *L)
{
    static const Caffe__EltwiseParameter def = CAFFE__ELTWISE_PARAMETER__INIT;
    const Caffe__EltwiseParameter *ep = L->p->eltwise_param ? L->p->eltwise_param : &def;
    int32_t n = L->n_in;
    if (ep->n_coeff && ep->operation != CAFFE__ELTWISE_PARAMETER__ELTWISE_OP__SUM)
        return caffe_layer_error(c, L, KILN_ERR_PARSE, "coeff is for operation SUM only");
    if (ep->n_coeff && ep->n_coeff != (size_t)n)
        return caffe_layer_error(c, L, KILN_ERR_PARSE, "%zu coeffs for %d bottoms", ep->n_coeff, n);
    switch (ep->operation) {
    case CAFFE__ELTWISE_PARAMETER__ELTWISE_OP__MAX:
        return caffe_emit(c, L, "Max", L->name, L->in, n, &L->out[0], 1, NULL, 0);
    case CAFFE__ELTWISE_PARAMETER__ELTWISE_OP__PROD: {
        const char *cur = L->in[0];
        for (int32_t i = 1; i < n; i++) {
            const char *dst = i == n - 1 ? L->out[0] : caffe_tmp(c, L, "prod");
            if (!dst) return KILN_ERR_OUT_OF_MEMORY;
            KILN_TRY(caffe_emit2(c, L, "Mul", i == 1 ? L->name : NULL, cur, L->in[i], dst));
            cur = dst;
        }
        return KILN_OK;
    }
    case CAFFE__ELTWISE_PARAMETER__ELTWISE_OP__SUM: break;
    default: return caffe_layer_error(c, L, KILN_ERR_UNSUPPORTED, "unknown operation");
    }
    if (n == 2 && ep->n_coeff == 2 && ep->coeff[0] == 1.0f && ep->coeff[1] == -1.0f)
        return caffe_emit2(c, L, "Sub", L->name, L->in[0], L->in[1], L->out[0]);
    const char **terms = caffe_scratch(c, sizeof(char *) * (size_t)n);
    if (!terms) return KILN_ERR_OUT_OF_MEMORY;
    for (int32_t i = 0; i < n; i++) {
        terms[i] = L->in[i];
        if (!ep->n_coeff || ep->coeff[i] == 1.0f) continue;
        const char *k, *dst = caffe_tmp(c, L, "term");
        if (!dst) return KILN_ERR_OUT_OF_MEMORY;
        KILN_TRY(caffe_const_scalar(c, L, "coeff", ep->coeff[i], &k));
        KILN_TRY(caffe_emit2(c, L, "Mul", NULL, terms[i], k, dst));
        terms[i] = dst;
    }
    return caffe_emit(c, L, n == 2 ? "Add" : "Sum", L->name, terms, n, &L->out[0], 1, NULL, 0);
}

static kiln_status concat_layer(caffe_ctx *c, const caffe_layer *L)
{
    const Caffe__ConcatParameter *cp = L->p->concat_param;
    const kiln_dims *xs;
    KILN_TRY(caffe_input_shape(c, L, 0, 1, &xs));
    int64_t ax = 1;
    if (cp) ax = cp->has_concat_dim && !cp->has_axis ? (int64_t)cp->concat_dim : cp->axis;
    int32_t axis = 0;
    KILN_TRY(norm_axis(c, L, ax, xs->rank, "axis", &axis));
    if (L->n_in == 1) return simple_layer(c, L, "Identity");
    kiln_attr a = KILN_ATTR_I("axis", axis);
    return caffe_emit(c, L, "Concat", L->name, L->in, L->n_in, &L->out[0], 1, &a, 1);
}

static kiln_status slice_layer(caffe_ctx *c, const caffe_layer *L)
{
    const Caffe__SliceParameter *sp = L->p->slice_param;
    const kiln_dims *xs;
    KILN_TRY(caffe_input_shape(c, L, 0, 1, &xs));
    int64_t ax = 1;
    if (sp) ax = sp->has_slice_dim && !sp->has_axis ? (int64_t)sp->slice_dim : sp->axis;
    int32_t axis = 0, n = L->n_out;
    KILN_TRY(norm_axis(c, L, ax, xs->rank, "axis", &axis));
    int64_t dim = xs->d[axis];
    size_t np = sp ? sp->n_slice_point : 0;
    if (np && np != (size_t)n - 1)
        return caffe_layer_error(c, L, KILN_ERR_PARSE, "%zu slice points for %d tops", np, n);
    if (!np && dim % n)
        return caffe_layer_error(c, L, KILN_ERR_SHAPE,
                                 "axis %d of size %lld does not split evenly into %d tops", axis,
                                 (long long)dim, n);
    int64_t start = 0;
    for (int32_t t = 0; t < n; t++) {
        int64_t end = t == n - 1 ? dim : np ? (int64_t)sp->slice_point[t] : (t + 1) * (dim / n);
        if (end <= start || end > dim)
            return caffe_layer_error(c, L, KILN_ERR_SHAPE,
                                     "slice points must increase within (0, %lld)", (long long)dim);
        const char *in[4] = {L->in[0]};
        int64_t ax64 = axis;
        KILN_TRY(caffe_const_i64(c, L, "starts", &start, 1, &in[1]));
        KILN_TRY(caffe_const_i64(c, L, "ends", &end, 1, &in[2]));
        KILN_TRY(caffe_const_i64(c, L, "axes", &ax64, 1, &in[3]));
        KILN_TRY(caffe_emit(c, L, "Slice", t ? NULL : L->name, in, 4, &L->out[t], 1, NULL, 0));
        start = end;
    }
    return KILN_OK;
}

static kiln_status split_layer(caffe_ctx *c, const caffe_layer *L)
{
    for (int32_t t = 0; t < L->n_out; t++)
        KILN_TRY(caffe_emit1(c, L, "Identity", t ? NULL : L->name, L->in[0], L->out[t], NULL, 0));
    return KILN_OK;
}

/* ---- Flatten, Reshape, Permute ---- */

/* Emits Reshape of the layer's bottom to `shape` (0 copies the input dim in place). */
static kiln_status reshape_to(caffe_ctx *c, const caffe_layer *L, const int64_t *shape,
                              int32_t rank)
{
    const char *sh;
    KILN_TRY(caffe_const_i64(c, L, "shape", shape, rank, &sh));
    return caffe_emit2(c, L, "Reshape", L->name, L->in[0], sh, L->out[0]);
}

static kiln_status flatten_layer(caffe_ctx *c, const caffe_layer *L)
{
    const Caffe__FlattenParameter *fp = L->p->flatten_param;
    const kiln_dims *xs;
    KILN_TRY(caffe_input_shape(c, L, 0, 1, &xs));
    int32_t axis = 0, end = 0;
    KILN_TRY(norm_axis(c, L, fp ? fp->axis : 1, xs->rank, "axis", &axis));
    KILN_TRY(norm_axis(c, L, fp ? fp->end_axis : -1, xs->rank, "end_axis", &end));
    if (end < axis)
        return caffe_layer_error(c, L, KILN_ERR_PARSE, "end_axis %d comes before axis %d", end,
                                 axis);
    int64_t shape[KILN_MAX_RANK];
    int32_t r = 0;
    for (int32_t i = 0; i < axis; i++) shape[r++] = 0;
    shape[r++] = -1;
    for (int32_t i = end + 1; i < xs->rank; i++) shape[r++] = xs->d[i];
    return reshape_to(c, L, shape, r);
}

/* Caffe replaces the bottom's dims [axis, axis + num_axes) by the given shape, where 0
 * copies the bottom's dim at the same place and -1 is inferred; ONNX Reshape reads 0 and
 * -1 the same way once the kept dims are spelled out. */
static kiln_status reshape_layer(caffe_ctx *c, const caffe_layer *L)
{
    static const Caffe__ReshapeParameter def = CAFFE__RESHAPE_PARAMETER__INIT;
    const Caffe__ReshapeParameter *rp = L->p->reshape_param ? L->p->reshape_param : &def;
    const kiln_dims *xs;
    KILN_TRY(caffe_input_shape(c, L, 0, 0, &xs));
    int32_t r = xs->rank;
    int64_t start = rp->axis < 0 ? rp->axis + r + 1 : rp->axis;
    if (start < 0 || start > r)
        return caffe_layer_error(c, L, KILN_ERR_SHAPE, "axis %d is out of range for rank %d",
                                 (int)rp->axis, r);
    int64_t end = rp->num_axes == -1 ? r : start + rp->num_axes;
    if (rp->num_axes < -1 || end > r)
        return caffe_layer_error(c, L, KILN_ERR_SHAPE, "num_axes %d is out of range",
                                 (int)rp->num_axes);
    size_t ns = rp->shape ? rp->shape->n_dim : 0;
    if ((size_t)start + ns + (size_t)(r - end) > KILN_MAX_RANK)
        return caffe_layer_error(c, L, KILN_ERR_UNSUPPORTED, "the result has rank over %d",
                                 KILN_MAX_RANK);
    int64_t shape[KILN_MAX_RANK];
    int32_t n = 0, inferred = 0;
    for (int64_t i = 0; i < start; i++) shape[n++] = 0;
    for (size_t i = 0; i < ns; i++) {
        int64_t d = rp->shape->dim[i];
        if (d == -1) inferred++;
        if (d < -1 || inferred > 1)
            return caffe_layer_error(c, L, KILN_ERR_PARSE,
                                     "shape dims must be sizes, 0 or one -1 (dim %zu is %lld)", i,
                                     (long long)d);
        if (d == 0 && start + (int64_t)i >= r)
            return caffe_layer_error(c, L, KILN_ERR_SHAPE,
                                     "dim %zu is 0 (copy), but the bottom has no dim %lld", i,
                                     (long long)(start + (int64_t)i));
        shape[n++] = d;
    }
    for (int64_t i = end; i < r; i++) shape[n++] = xs->d[i];
    return reshape_to(c, L, shape, n);
}

/* SSD's Permute: `order` may list only the leading axes; the rest follow in order. */
static kiln_status permute_layer(caffe_ctx *c, const caffe_layer *L)
{
    const Caffe__PermuteParameter *pp = L->p->permute_param;
    const kiln_dims *xs;
    KILN_TRY(caffe_input_shape(c, L, 0, 1, &xs));
    int32_t r = xs->rank;
    size_t n = pp ? pp->n_order : 0;
    int64_t perm[KILN_MAX_RANK];
    bool used[KILN_MAX_RANK] = {false};
    if (n > (size_t)r)
        return caffe_layer_error(c, L, KILN_ERR_PARSE, "order lists %zu axes of a rank-%d blob", n,
                                 r);
    for (size_t i = 0; i < n; i++) {
        uint32_t a = pp->order[i];
        if (a >= (uint32_t)r || used[a])
            return caffe_layer_error(c, L, KILN_ERR_PARSE,
                                     "order must list distinct axes below %d (found %u)", r, a);
        used[a] = true;
        perm[i] = a;
    }
    for (int32_t a = 0; a < r; a++)
        if (!used[a]) perm[n++] = a;
    kiln_attr at = KILN_ATTR_IS("perm", perm, r);
    return caffe_emit1(c, L, "Transpose", L->name, L->in[0], L->out[0], &at, 1);
}

/* ---- SSD and friends: kiln's caffe.* ops ---- */

static kiln_status crop_layer(caffe_ctx *c, const caffe_layer *L)
{
    const Caffe__CropParameter *cp = L->p->crop_param;
    int64_t off[KILN_MAX_RANK];
    size_t n = cp ? cp->n_offset : 0;
    if (n > KILN_MAX_RANK) return caffe_layer_error(c, L, KILN_ERR_PARSE, "%zu offsets", n);
    for (size_t i = 0; i < n; i++) off[i] = cp->offset[i];
    kiln_attr a[2] = {KILN_ATTR_I("axis", cp ? cp->axis : 2),
                      KILN_ATTR_IS("offset", off, (int32_t)n)};
    return caffe_emit(c, L, "caffe.Crop", L->name, L->in, 2, &L->out[0], 1, a, n ? 2 : 1);
}

static kiln_status argmax_layer(caffe_ctx *c, const caffe_layer *L)
{
    static const Caffe__ArgMaxParameter def = CAFFE__ARG_MAX_PARAMETER__INIT;
    const Caffe__ArgMaxParameter *ap = L->p->argmax_param ? L->p->argmax_param : &def;
    if (ap->top_k < 1) return caffe_layer_error(c, L, KILN_ERR_PARSE, "top_k must be at least 1");
    kiln_attr a[4] = {KILN_ATTR_I("out_max_val", ap->out_max_val), KILN_ATTR_I("top_k", ap->top_k),
                      KILN_ATTR_I("axis", ap->axis), KILN_ATTR_I("has_axis", ap->has_axis)};
    return caffe_emit1(c, L, "caffe.ArgMax", L->name, L->in[0], L->out[0], a, 4);
}

static kiln_status normalize_layer(caffe_ctx *c, const caffe_layer *L)
{
    static const Caffe__NormalizeParameter def = CAFFE__NORMALIZE_PARAMETER__INIT;
    const Caffe__NormalizeParameter *np = L->p->norm_param ? L->p->norm_param : &def;
    const kiln_dims *xs;
    KILN_TRY(caffe_input_shape(c, L, 0, 2, &xs));
    kiln_dims want = dims1(np->channel_shared ? 1 : xs->d[1]);
    const float *v;
    const char *in[2] = {L->in[0]};
    KILN_TRY(caffe_blob(c, L, 0, "scale", &want, &v));
    KILN_TRY(caffe_const(c, L, "scale", &want, v, &in[1]));
    kiln_attr a[3] = {KILN_ATTR_I("across_spatial", np->across_spatial),
                      KILN_ATTR_I("channel_shared", np->channel_shared),
                      KILN_ATTR_F("eps", np->eps)};
    return caffe_emit(c, L, "caffe.Normalize", L->name, in, 2, &L->out[0], 1, a, 3);
}

static kiln_status prior_box_layer(caffe_ctx *c, const caffe_layer *L)
{
    static const Caffe__PriorBoxParameter def = CAFFE__PRIOR_BOX_PARAMETER__INIT;
    const Caffe__PriorBoxParameter *pp = L->p->prior_box_param ? L->p->prior_box_param : &def;
    if (pp->n_min_size > 4096 || pp->n_max_size > 4096 || pp->n_aspect_ratio > 4096 ||
        pp->n_variance > 4096)
        return caffe_layer_error(c, L, KILN_ERR_PARSE, "too many sizes or ratios");
    kiln_attr a[13];
    int32_t n = 0;
    a[n++] = KILN_ATTR_FS("min_size", pp->min_size, (int32_t)pp->n_min_size);
    if (pp->n_max_size) a[n++] = KILN_ATTR_FS("max_size", pp->max_size, (int32_t)pp->n_max_size);
    if (pp->n_aspect_ratio)
        a[n++] = KILN_ATTR_FS("aspect_ratio", pp->aspect_ratio, (int32_t)pp->n_aspect_ratio);
    if (pp->n_variance) a[n++] = KILN_ATTR_FS("variance", pp->variance, (int32_t)pp->n_variance);
    a[n++] = KILN_ATTR_I("flip", pp->flip);
    a[n++] = KILN_ATTR_I("clip", pp->clip);
    if (pp->has_img_size) a[n++] = KILN_ATTR_I("img_size", pp->img_size);
    if (pp->has_img_h) a[n++] = KILN_ATTR_I("img_h", pp->img_h);
    if (pp->has_img_w) a[n++] = KILN_ATTR_I("img_w", pp->img_w);
    if (pp->has_step) a[n++] = KILN_ATTR_F("step", pp->step);
    if (pp->has_step_h) a[n++] = KILN_ATTR_F("step_h", pp->step_h);
    if (pp->has_step_w) a[n++] = KILN_ATTR_F("step_w", pp->step_w);
    a[n++] = KILN_ATTR_F("offset", pp->offset);
    return caffe_emit(c, L, "caffe.PriorBox", L->name, L->in, 2, &L->out[0], 1, a, n);
}

static kiln_status detection_output_layer(caffe_ctx *c, const caffe_layer *L)
{
    static const Caffe__DetectionOutputParameter def = CAFFE__DETECTION_OUTPUT_PARAMETER__INIT;
    static const Caffe__NonMaximumSuppressionParameter ndef =
        CAFFE__NON_MAXIMUM_SUPPRESSION_PARAMETER__INIT;
    const Caffe__DetectionOutputParameter *dp =
        L->p->detection_output_param ? L->p->detection_output_param : &def;
    const Caffe__NonMaximumSuppressionParameter *nms = dp->nms_param ? dp->nms_param : &ndef;
    if (!dp->has_num_classes || dp->num_classes == 0)
        return caffe_layer_error(c, L, KILN_ERR_PARSE, "num_classes is missing or 0");
    kiln_attr a[10];
    int32_t n = 0;
    a[n++] = KILN_ATTR_I("num_classes", dp->num_classes);
    a[n++] = KILN_ATTR_I("share_location", dp->share_location);
    a[n++] = KILN_ATTR_I("background_label_id", dp->background_label_id);
    a[n++] = KILN_ATTR_F("nms_threshold", nms->nms_threshold);
    a[n++] = KILN_ATTR_I("top_k", nms->has_top_k ? nms->top_k : -1);
    a[n++] = KILN_ATTR_I("keep_top_k", dp->keep_top_k);
    if (dp->has_confidence_threshold)
        a[n++] = KILN_ATTR_F("confidence_threshold", dp->confidence_threshold);
    a[n++] = KILN_ATTR_I("code_type", dp->code_type);
    a[n++] = KILN_ATTR_I("variance_encoded_in_target", dp->variance_encoded_in_target);
    a[n++] = KILN_ATTR_F("eta", nms->eta);
    return caffe_emit(c, L, "caffe.DetectionOutput", L->name, L->in, 3, &L->out[0], 1, a, n);
}

/* ---- the table ---- */

static kiln_status sigmoid_layer(caffe_ctx *c, const caffe_layer *L)
{
    return simple_layer(c, L, "Sigmoid");
}
static kiln_status tanh_layer(caffe_ctx *c, const caffe_layer *L)
{
    return simple_layer(c, L, "Tanh");
}
static kiln_status abs_layer(caffe_ctx *c, const caffe_layer *L)
{
    return simple_layer(c, L, "Abs");
}
/* BNLL is log(1 + e^x), which Softplus computes. */
static kiln_status bnll_layer(caffe_ctx *c, const caffe_layer *L)
{
    return simple_layer(c, L, "Softplus");
}
/* Caffe scales during training, so at inference Dropout passes its input through. */
static kiln_status dropout_layer(caffe_ctx *c, const caffe_layer *L)
{
    return simple_layer(c, L, "Identity");
}

typedef kiln_status (*layer_fn)(caffe_ctx *c, const caffe_layer *L);

typedef struct layer_row {
    const char *type;
    layer_fn fn;
    int8_t min_in, max_in, min_out, max_out; /* -1: any number */
    const char *op; /* a kiln op that must exist (the caffe.* ones), or NULL */
} layer_row;

static const layer_row k_layers[] = {
    {"Convolution", conv_layer, 1, -1, 1, -1, NULL},
    {"Deconvolution", conv_layer, 1, -1, 1, -1, NULL},
    {"Pooling", pool_layer, 1, 1, 1, 1, NULL},
    {"InnerProduct", inner_product_layer, 1, 1, 1, 1, NULL},
    {"ReLU", relu_layer, 1, 1, 1, 1, NULL},
    {"PReLU", prelu_layer, 1, 1, 1, 1, NULL},
    {"ELU", elu_layer, 1, 1, 1, 1, NULL},
    {"Sigmoid", sigmoid_layer, 1, 1, 1, 1, NULL},
    {"TanH", tanh_layer, 1, 1, 1, 1, NULL},
    {"AbsVal", abs_layer, 1, 1, 1, 1, NULL},
    {"BNLL", bnll_layer, 1, 1, 1, 1, NULL},
    {"Power", power_layer, 1, 1, 1, 1, NULL},
    {"Exp", exp_layer, 1, 1, 1, 1, NULL},
    {"Log", log_layer, 1, 1, 1, 1, NULL},
    {"Threshold", threshold_layer, 1, 1, 1, 1, NULL},
    {"Dropout", dropout_layer, 1, 1, 1, 1, NULL},
    {"LRN", lrn_layer, 1, 1, 1, 1, NULL},
    {"Softmax", softmax_layer, 1, 1, 1, 1, NULL},
    {"BatchNorm", batch_norm_layer, 1, 1, 1, 1, NULL},
    {"Scale", scale_layer, 1, 2, 1, 1, NULL},
    {"Bias", scale_layer, 1, 2, 1, 1, NULL},
    {"Eltwise", eltwise_layer, 2, -1, 1, 1, NULL},
    {"Concat", concat_layer, 1, -1, 1, 1, NULL},
    {"Slice", slice_layer, 1, 1, 1, -1, NULL},
    {"Split", split_layer, 1, 1, 1, -1, NULL},
    {"Flatten", flatten_layer, 1, 1, 1, 1, NULL},
    {"Reshape", reshape_layer, 1, 1, 1, 1, NULL},
    {"Permute", permute_layer, 1, 1, 1, 1, NULL},
    {"Crop", crop_layer, 2, 2, 1, 1, "caffe.Crop"},
    {"ArgMax", argmax_layer, 1, 1, 1, 1, "caffe.ArgMax"},
    {"Normalize", normalize_layer, 1, 1, 1, 1, "caffe.Normalize"},
    {"PriorBox", prior_box_layer, 2, 2, 1, 1, "caffe.PriorBox"},
    {"DetectionOutput", detection_output_layer, 3, 3, 1, 1, "caffe.DetectionOutput"},
};

static const layer_row *find_row(const char *type)
{
    for (size_t i = 0; i < sizeof k_layers / sizeof *k_layers; i++)
        if (strcmp(k_layers[i].type, type) == 0) return &k_layers[i];
    return NULL;
}

bool caffe_layer_supported(const char *type)
{
    const layer_row *r = find_row(type);
    return r && (!r->op || ir_op_find(r->op));
}

bool caffe_layer_is_noop(const char *type) { return strcmp(type, "Silence") == 0; }

static bool count_ok(int32_t n, int8_t lo, int8_t hi) { return n >= lo && (hi < 0 || n <= hi); }

static void count_text(char *buf, size_t cap, int8_t lo, int8_t hi)
{
    if (hi < 0)
        snprintf(buf, cap, "%d or more", lo);
    else if (lo == hi)
        snprintf(buf, cap, "%d", lo);
    else
        snprintf(buf, cap, "%d to %d", lo, hi);
}

kiln_status caffe_convert_layer(caffe_ctx *c, const caffe_layer *L)
{
    const layer_row *r = find_row(L->type);
    if (!r) return caffe_layer_error(c, L, KILN_ERR_UNSUPPORTED, "unsupported layer type");
    char want[32];
    if (!count_ok(L->n_in, r->min_in, r->max_in)) {
        count_text(want, sizeof want, r->min_in, r->max_in);
        return caffe_layer_error(c, L, KILN_ERR_PARSE, "has %d bottom%s, expected %s", L->n_in,
                                 L->n_in == 1 ? "" : "s", want);
    }
    if (!count_ok(L->n_out, r->min_out, r->max_out)) {
        count_text(want, sizeof want, r->min_out, r->max_out);
        return caffe_layer_error(c, L, KILN_ERR_PARSE, "has %d top%s, expected %s", L->n_out,
                                 L->n_out == 1 ? "" : "s", want);
    }
    return r->fn(c, L);
}
