/* elementwise.c - elementwise ops: unary math and activations, Clip, Identity, and the
 * group's op table (broadcasting binary ops live in elementwise_binary.c, Cast in
 * elementwise_cast.c). */
#include <math.h>
#include <string.h>

#include "ir/ops/elementwise_impl.h"
#include "ir/ops/elementwise_scalar.h"

/* ---- Identity ---- */

static kiln_status eval_identity(const ir_node *n, const ir_tensor *in, int32_t n_in,
                                 ir_tensor *out, int32_t n_out)
{
    size_t bytes = (size_t)ir_tensor_count(&in[0]) * kiln_dtype_size(in[0].dtype);
    if (bytes && out[0].data != in[0].data) memmove(out[0].data, in[0].data, bytes);
    return KILN_OK;
}

/* ---- shape rules of the unary ops ---- */

static kiln_status infer_unary(ir_infer *c, uint32_t mask, kiln_dtype out)
{
    KILN_TRY(ir_ew_check_dtype(c->node, "input", c->in[0].dtype, mask));
    c->out[0].dtype = out == KILN_DTYPE_UNDEFINED ? c->in[0].dtype : out;
    c->out[0].shape = c->in[0].shape;
    return KILN_OK;
}

static kiln_status infer_f32(ir_infer *c)
{
    return infer_unary(c, IR_EW_F32, KILN_DTYPE_UNDEFINED);
}
static kiln_status infer_num(ir_infer *c)
{
    return infer_unary(c, IR_EW_NUM, KILN_DTYPE_UNDEFINED);
}
static kiln_status infer_not(ir_infer *c) { return infer_unary(c, IR_EW_BOOL, KILN_DTYPE_BOOL); }
/* IsNaN and IsInf also classify f16 and bf16 (test_isnan_float16): no arithmetic. */
#define IR_EW_FLOATS (IR_EW_F32 | IR_EW_BIT(KILN_DTYPE_F16) | IR_EW_BIT(KILN_DTYPE_BF16))
static kiln_status infer_isnan(ir_infer *c)
{
    return infer_unary(c, IR_EW_FLOATS, KILN_DTYPE_BOOL);
}

static kiln_status infer_isinf(ir_infer *c)
{
    static const char *const flags[] = {"detect_negative", "detect_positive"};
    for (int i = 0; i < 2; i++) {
        int64_t v = ir_attr_int(c->node, flags[i]);
        if (v != 0 && v != 1)
            return ir_node_error(c->node, KILN_ERR_INVALID_GRAPH, "%s must be 0 or 1, got %lld",
                                 flags[i], (long long)v);
    }
    return infer_unary(c, IR_EW_FLOATS, KILN_DTYPE_BOOL);
}

static kiln_status infer_gelu(ir_infer *c)
{
    const char *a = ir_attr_string(c->node, "approximate");
    if (strcmp(a, "none") != 0 && strcmp(a, "tanh") != 0)
        return ir_node_error(c->node, KILN_ERR_INVALID_GRAPH,
                             "approximate must be \"none\" or \"tanh\", got \"%s\"", a);
    return infer_f32(c);
}

/* ---- float unary kernels ---- */

/* One f32 kernel per op: y = EXPR(x), with the op's float attributes in alpha, beta
 * and gamma (0 where the op has none). */
#define UNARY_F32(name, EXPR)                                                                      \
    static kiln_status name(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,   \
                            int32_t n_out)                                                         \
    {                                                                                              \
        const float *xs = in[0].data;                                                              \
        float *ys = out[0].data;                                                                   \
        int64_t cnt = ir_tensor_count(&in[0]);                                                     \
        const float alpha = ir_attr_float(n, "alpha"), beta = ir_attr_float(n, "beta");            \
        const float gamma = ir_attr_float(n, "gamma");                                             \
        (void)alpha;                                                                               \
        (void)beta;                                                                                \
        (void)gamma;                                                                               \
        for (int64_t i = 0; i < cnt; i++) {                                                        \
            const float x = xs[i];                                                                 \
            ys[i] = (EXPR);                                                                        \
        }                                                                                          \
        return KILN_OK;                                                                            \
    }

/* The formulas are elementwise_scalar.h's, which the fused layers share. */
UNARY_F32(eval_leaky_relu, ew_leaky_relu(x, alpha))
UNARY_F32(eval_sigmoid, ew_sigmoid(x))
UNARY_F32(eval_tanh, ew_tanh(x))
UNARY_F32(eval_hard_sigmoid, ew_hard_sigmoid(x, alpha, beta))
UNARY_F32(eval_hard_swish, ew_hard_swish(x))
UNARY_F32(eval_gelu_erf, ew_gelu_erf(x))
UNARY_F32(eval_gelu_tanh, ew_gelu_tanh(x))
UNARY_F32(eval_erf, ew_erf(x))
UNARY_F32(eval_elu, ew_elu(x, alpha))
UNARY_F32(eval_selu, ew_selu(x, alpha, gamma))
UNARY_F32(eval_softplus, ew_softplus(x))
UNARY_F32(eval_softsign, ew_softsign(x))
UNARY_F32(eval_mish, ew_mish(x))
UNARY_F32(eval_thresholded_relu, ew_thresholded_relu(x, alpha))
UNARY_F32(eval_sqrt, ew_sqrt(x))
UNARY_F32(eval_exp, ew_exp(x))
UNARY_F32(eval_log, ew_log(x))
UNARY_F32(eval_reciprocal, ew_reciprocal(x))
UNARY_F32(eval_floor, ew_floor(x))
UNARY_F32(eval_ceil, ew_ceil(x))
UNARY_F32(eval_round, ew_round(x))
UNARY_F32(eval_sin, ew_sin(x))
UNARY_F32(eval_cos, ew_cos(x))

static kiln_status eval_gelu(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                             int32_t n_out)
{
    if (strcmp(ir_attr_string(n, "approximate"), "tanh") == 0)
        return eval_gelu_tanh(n, in, n_in, out, n_out);
    return eval_gelu_erf(n, in, n_in, out, n_out);
}

/* ---- unary ops on f32, i32 and i64 ---- */

/* Integer negation and abs wrap at the minimum value (as numpy) instead of
 * overflowing. */
#define UNARY_NUM(name, FEXPR, IEXPR)                                                              \
    static kiln_status name(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,   \
                            int32_t n_out)                                                         \
    {                                                                                              \
        int64_t cnt = ir_tensor_count(&in[0]);                                                     \
        if (in[0].dtype == KILN_DTYPE_F32) {                                                       \
            const float *xs = in[0].data;                                                          \
            float *ys = out[0].data;                                                               \
            for (int64_t i = 0; i < cnt; i++) {                                                    \
                const float x = xs[i];                                                             \
                ys[i] = (FEXPR);                                                                   \
            }                                                                                      \
        } else if (in[0].dtype == KILN_DTYPE_I32) {                                                \
            const int32_t *xs = in[0].data;                                                        \
            int32_t *ys = out[0].data;                                                             \
            for (int64_t i = 0; i < cnt; i++) {                                                    \
                const int32_t x = xs[i];                                                           \
                const uint32_t ux = (uint32_t)x;                                                   \
                (void)ux;                                                                          \
                ys[i] = (int32_t)(IEXPR);                                                          \
            }                                                                                      \
        } else {                                                                                   \
            const int64_t *xs = in[0].data;                                                        \
            int64_t *ys = out[0].data;                                                             \
            for (int64_t i = 0; i < cnt; i++) {                                                    \
                const int64_t x = xs[i];                                                           \
                const uint64_t ux = (uint64_t)x;                                                   \
                (void)ux;                                                                          \
                ys[i] = (int64_t)(IEXPR);                                                          \
            }                                                                                      \
        }                                                                                          \
        return KILN_OK;                                                                            \
    }

UNARY_NUM(eval_relu, ew_relu(x), x < 0 ? 0 : x)
UNARY_NUM(eval_neg, ew_neg(x), 0 - ux)
UNARY_NUM(eval_abs, ew_abs(x), x < 0 ? 0 - ux : ux)
UNARY_NUM(eval_sign, ew_sign(x), (x > 0) - (x < 0))

/* ---- bool and classification ---- */

static kiln_status eval_not(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                            int32_t n_out)
{
    const uint8_t *x = in[0].data;
    uint8_t *y = out[0].data;
    int64_t cnt = ir_tensor_count(&in[0]);
    for (int64_t i = 0; i < cnt; i++) y[i] = x[i] == 0;
    return KILN_OK;
}

/* Element i of an f32, f16 or bf16 tensor as a float (widening is exact). */
static inline float float_at(const ir_tensor *t, int64_t i)
{
    switch (t->dtype) {
    case KILN_DTYPE_F16: return kiln_f16_to_f32(((const uint16_t *)t->data)[i]);
    case KILN_DTYPE_BF16: return kiln_bf16_to_f32(((const uint16_t *)t->data)[i]);
    default: return ((const float *)t->data)[i];
    }
}

static kiln_status eval_isnan(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                              int32_t n_out)
{
    uint8_t *y = out[0].data;
    int64_t cnt = ir_tensor_count(&in[0]);
    for (int64_t i = 0; i < cnt; i++) y[i] = isnan(float_at(&in[0], i)) != 0;
    return KILN_OK;
}

static kiln_status eval_isinf(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                              int32_t n_out)
{
    uint8_t *y = out[0].data;
    int64_t cnt = ir_tensor_count(&in[0]);
    bool neg = ir_attr_int(n, "detect_negative") != 0, pos = ir_attr_int(n, "detect_positive") != 0;
    for (int64_t i = 0; i < cnt; i++) {
        float x = float_at(&in[0], i);
        y[i] = (x == INFINITY && pos) || (x == -INFINITY && neg);
    }
    return KILN_OK;
}

/* ---- Clip: optional scalar inputs min and max ---- */

static bool input_present(const ir_tensor *in, int32_t n_in, int32_t i)
{
    return i < n_in && ir_tensor_present(&in[i]);
}

static kiln_status infer_clip(ir_infer *c)
{
    static const char *const names[] = {"", "min (input 1)", "max (input 2)"};
    KILN_TRY(ir_ew_check_dtype(c->node, "input", c->in[0].dtype,
                               IR_EW_NUM | IR_EW_BIT(KILN_DTYPE_I8) | IR_EW_BIT(KILN_DTYPE_U8)));
    for (int32_t i = 1; i < 3; i++) {
        if (!input_present(c->in, c->n_in, i)) continue;
        const ir_tensor *b = &c->in[i];
        if (b->dtype != c->in[0].dtype)
            return ir_node_error(c->node, KILN_ERR_INVALID_GRAPH,
                                 "%s has dtype %s, expected %s like the input", names[i],
                                 kiln_dtype_name(b->dtype), kiln_dtype_name(c->in[0].dtype));
        /* ONNX asks for a scalar; exporters also write 1-element tensors. */
        bool one = true;
        for (int32_t k = 0; k < b->shape.rank; k++)
            if (b->shape.d[k] != 1) one = false;
        if (!one) {
            char s[KILN_DIMS_STR_MAX];
            return ir_node_error(c->node, KILN_ERR_SHAPE, "%s has shape %s, expected a scalar",
                                 names[i], kiln_dims_str(&b->shape, s, sizeof s));
        }
    }
    return ir_infer_same_as_input(c);
}

#define CLIP_LOOP(T, LO, HI)                                                                       \
    do {                                                                                           \
        const T *x = in[0].data;                                                                   \
        T *y = out[0].data;                                                                        \
        T lo = input_present(in, n_in, 1) ? *(const T *)in[1].data : (LO);                         \
        T hi = input_present(in, n_in, 2) ? *(const T *)in[2].data : (HI);                         \
        /* lo first, then hi (ew_clip): when min > max every value becomes max, as ONNX says. */   \
        for (int64_t i = 0; i < cnt; i++) {                                                        \
            T v = x[i] < lo ? lo : x[i];                                                           \
            y[i] = v > hi ? hi : v;                                                                \
        }                                                                                          \
    } while (0)

static kiln_status eval_clip(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                             int32_t n_out)
{
    int64_t cnt = ir_tensor_count(&in[0]);
    switch (in[0].dtype) {
    case KILN_DTYPE_F32: CLIP_LOOP(float, -INFINITY, INFINITY); break;
    case KILN_DTYPE_I32: CLIP_LOOP(int32_t, INT32_MIN, INT32_MAX); break;
    case KILN_DTYPE_I64: CLIP_LOOP(int64_t, INT64_MIN, INT64_MAX); break;
    case KILN_DTYPE_I8: CLIP_LOOP(int8_t, INT8_MIN, INT8_MAX); break;
    case KILN_DTYPE_U8: CLIP_LOOP(uint8_t, 0, UINT8_MAX); break;
    default:
        return ir_node_error(n, KILN_ERR_INTERNAL, "no kernel for dtype %s",
                             kiln_dtype_name(in[0].dtype));
    }
    return KILN_OK;
}

/* ---- the table ---- */

/* clang-format off */
#define FLOAT_ATTR(name, v) {name, KILN_ATTR_FLOAT, false, 0, v, NULL}
#define INT_ATTR(name, v) {name, KILN_ATTR_INT, false, v, 0.0f, NULL}
/* clang-format on */
#define N_ATTRS(a) a, (int32_t)(sizeof a / sizeof *a)

static const ir_attr_def k_leaky_relu_attrs[] = {FLOAT_ATTR("alpha", 0.01f)};
static const ir_attr_def k_hard_sigmoid_attrs[] = {FLOAT_ATTR("alpha", 0.2f),
                                                   FLOAT_ATTR("beta", 0.5f)};
static const ir_attr_def k_elu_attrs[] = {FLOAT_ATTR("alpha", 1.0f)};
static const ir_attr_def k_thresholded_relu_attrs[] = {FLOAT_ATTR("alpha", 1.0f)};
static const ir_attr_def k_selu_attrs[] = {FLOAT_ATTR("alpha", 1.67326319217681884765625f),
                                           FLOAT_ATTR("gamma", 1.05070102214813232421875f)};
static const ir_attr_def k_gelu_attrs[] = {
    {"approximate", KILN_ATTR_STRING, false, 0, 0.0f, "none"}};
static const ir_attr_def k_isinf_attrs[] = {INT_ATTR("detect_negative", 1),
                                            INT_ATTR("detect_positive", 1)};
static const ir_attr_def k_mod_attrs[] = {INT_ATTR("fmod", 0)};
static const ir_attr_def k_cast_attrs[] = {{"to", KILN_ATTR_INT, true, 0, 0.0f, NULL},
                                           INT_ATTR("saturate", 1)};
static const ir_attr_def k_castlike_attrs[] = {INT_ATTR("saturate", 1)};

/* clang-format off */
#define UNARY(name, infer, eval) {name, 1, 1, 1, 1, NULL, 0, infer, eval, 0}
#define UNARY_A(name, attrs, infer, eval) {name, 1, 1, 1, 1, N_ATTRS(attrs), infer, eval, 0}
/* Kernels that read x[i] before writing y[i] and keep the dtype may run in place. */
#define UNARY_IP(name, infer, eval) {name, 1, 1, 1, 1, NULL, 0, infer, eval, IR_OP_INPLACE}
#define UNARY_A_IP(name, attrs, infer, eval)                                                       \
    {name, 1, 1, 1, 1, N_ATTRS(attrs), infer, eval, IR_OP_INPLACE}
#define BINARY(name, op)                                                                           \
    {name, 2, 2, 1, 1, NULL, 0, ir_ew_infer_##op, ir_ew_eval_##op, IR_OP_ELEMENTWISE}
#define VARIADIC(name, op)                                                                         \
    {name, 1, 127, 1, 1, NULL, 0, ir_ew_infer_##op, ir_ew_eval_##op, IR_OP_ELEMENTWISE}
/* clang-format on */

const ir_op ir_ops_elementwise[] = {
    {"Identity", 1, 1, 1, 1, NULL, 0, ir_infer_same_as_input, eval_identity, IR_OP_ALIAS},
    UNARY_IP("Relu", infer_num, eval_relu),
    UNARY_A_IP("LeakyRelu", k_leaky_relu_attrs, infer_f32, eval_leaky_relu),
    BINARY("PRelu", prelu),
    UNARY_IP("Sigmoid", infer_f32, eval_sigmoid),
    UNARY_IP("Tanh", infer_f32, eval_tanh),
    {"Clip", 1, 3, 1, 1, NULL, 0, infer_clip, eval_clip, IR_OP_INPLACE},
    UNARY_A_IP("HardSigmoid", k_hard_sigmoid_attrs, infer_f32, eval_hard_sigmoid),
    UNARY_IP("HardSwish", infer_f32, eval_hard_swish),
    UNARY_A_IP("Gelu", k_gelu_attrs, infer_gelu, eval_gelu),
    UNARY_IP("Erf", infer_f32, eval_erf),
    UNARY_A_IP("Elu", k_elu_attrs, infer_f32, eval_elu),
    UNARY_A_IP("Selu", k_selu_attrs, infer_f32, eval_selu),
    UNARY_IP("Softplus", infer_f32, eval_softplus),
    UNARY_IP("Softsign", infer_f32, eval_softsign),
    UNARY_IP("Mish", infer_f32, eval_mish),
    UNARY_A_IP("ThresholdedRelu", k_thresholded_relu_attrs, infer_f32, eval_thresholded_relu),
    BINARY("Add", add),
    BINARY("Sub", sub),
    BINARY("Mul", mul),
    BINARY("Div", div),
    BINARY("Pow", pow),
    {"Mod", 2, 2, 1, 1, N_ATTRS(k_mod_attrs), ir_ew_infer_mod, ir_ew_eval_mod, IR_OP_ELEMENTWISE},
    VARIADIC("Max", max),
    VARIADIC("Min", min),
    VARIADIC("Sum", sum),
    VARIADIC("Mean", mean),
    UNARY_IP("Sqrt", infer_f32, eval_sqrt),
    UNARY_IP("Exp", infer_f32, eval_exp),
    UNARY_IP("Log", infer_f32, eval_log),
    UNARY_IP("Neg", infer_num, eval_neg),
    UNARY_IP("Abs", infer_num, eval_abs),
    UNARY_IP("Sign", infer_num, eval_sign),
    UNARY_IP("Reciprocal", infer_f32, eval_reciprocal),
    UNARY_IP("Floor", infer_f32, eval_floor),
    UNARY_IP("Ceil", infer_f32, eval_ceil),
    UNARY_IP("Round", infer_f32, eval_round),
    UNARY_IP("Sin", infer_f32, eval_sin),
    UNARY_IP("Cos", infer_f32, eval_cos),
    {"Where", 3, 3, 1, 1, NULL, 0, ir_ew_infer_where, ir_ew_eval_where, IR_OP_ELEMENTWISE},
    BINARY("Equal", equal),
    BINARY("Less", less),
    BINARY("Greater", greater),
    BINARY("LessOrEqual", less_equal),
    BINARY("GreaterOrEqual", greater_equal),
    UNARY_IP("Not", infer_not, eval_not),
    BINARY("And", and),
    BINARY("Or", or),
    BINARY("Xor", xor),
    UNARY("IsNaN", infer_isnan, eval_isnan),
    UNARY_A("IsInf", k_isinf_attrs, infer_isinf, eval_isinf),
    {"Cast", 1, 1, 1, 1, N_ATTRS(k_cast_attrs), ir_ew_infer_cast, ir_ew_eval_cast, 0},
    {"CastLike", 2, 2, 1, 1, N_ATTRS(k_castlike_attrs), ir_ew_infer_castlike, ir_ew_eval_cast, 0},
};
const int32_t ir_ops_elementwise_count = sizeof ir_ops_elementwise / sizeof *ir_ops_elementwise;
