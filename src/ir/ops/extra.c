/* extra.c - the op group for less common ONNX ops that exported models and ONNX's node
 * tests use: its table and the attribute schemas; the ops live in extra_*.c. */
#include "ir/ops/extra_impl.h"

/* clang-format off */
#define FLOAT_ATTR(name, v) {name, KILN_ATTR_FLOAT, false, 0, v, NULL}
#define INT_ATTR(name, v) {name, KILN_ATTR_INT, false, v, 0.0f, NULL}
#define STRING_ATTR(name, v) {name, KILN_ATTR_STRING, false, 0, 0.0f, v}
#define INTS_ATTR(name) {name, KILN_ATTR_INTS, false, 0, 0.0f, NULL}
/* clang-format on */
#define N_ATTRS(a) a, (int32_t)(sizeof a / sizeof *a)

static const ir_attr_def k_einsum_attrs[] = {{"equation", KILN_ATTR_STRING, true, 0, 0.0f, NULL}};
static const ir_attr_def k_celu_attrs[] = {FLOAT_ATTR("alpha", 1.0f)};
static const ir_attr_def k_shrink_attrs[] = {FLOAT_ATTR("bias", 0.0f), FLOAT_ATTR("lambd", 0.5f)};
static const ir_attr_def k_bitshift_attrs[] = {
    {"direction", KILN_ATTR_STRING, true, 0, 0.0f, NULL}};
static const ir_attr_def k_mvn_attrs[] = {INTS_ATTR("axes")};
static const ir_attr_def k_lppool_attrs[] = {
    STRING_ATTR("auto_pad", "NOTSET"),
    INT_ATTR("ceil_mode", 0),
    INTS_ATTR("dilations"),
    {"kernel_shape", KILN_ATTR_INTS, true, 0, 0.0f, NULL},
    INT_ATTR("p", 2),
    INTS_ATTR("pads"),
    INTS_ATTR("strides"),
};
static const ir_attr_def k_global_lppool_attrs[] = {INT_ATTR("p", 2)};
static const ir_attr_def k_reverse_sequence_attrs[] = {INT_ATTR("batch_axis", 1),
                                                       INT_ATTR("time_axis", 0)};
static const ir_attr_def k_grid_sample_attrs[] = {
    INT_ATTR("align_corners", 0),
    STRING_ATTR("mode", "linear"),
    STRING_ATTR("padding_mode", "zeros"),
};

/* clang-format off */
#define UNARY(name, op) {name, 1, 1, 1, 1, NULL, 0, ex_infer_unary_f32, ex_eval_##op, 0}
#define OP(name, nin_lo, nin_hi, attrs, op)                                                        \
    {name, nin_lo, nin_hi, 1, 1, attrs, ex_infer_##op, ex_eval_##op, 0}
#define NO_ATTRS NULL, 0
/* clang-format on */

const ir_op ir_ops_extra[] = {
    OP("Einsum", 1, 127, N_ATTRS(k_einsum_attrs), einsum),
    UNARY("Acos", acos),
    UNARY("Asin", asin),
    UNARY("Atan", atan),
    UNARY("Acosh", acosh),
    UNARY("Asinh", asinh),
    UNARY("Atanh", atanh),
    UNARY("Sinh", sinh),
    UNARY("Cosh", cosh),
    UNARY("Tan", tan),
    OP("Celu", 1, 1, N_ATTRS(k_celu_attrs), celu),
    OP("Shrink", 1, 1, N_ATTRS(k_shrink_attrs), shrink),
    OP("BitShift", 2, 2, N_ATTRS(k_bitshift_attrs), bitshift),
    OP("MeanVarianceNormalization", 1, 1, N_ATTRS(k_mvn_attrs), mvn),
    OP("LpPool", 1, 1, N_ATTRS(k_lppool_attrs), lppool),
    OP("GlobalLpPool", 1, 1, N_ATTRS(k_global_lppool_attrs), global_lppool),
    OP("ReverseSequence", 2, 2, N_ATTRS(k_reverse_sequence_attrs), reverse_sequence),
    OP("Det", 1, 1, NO_ATTRS, det),
    OP("GridSample", 2, 2, N_ATTRS(k_grid_sample_attrs), grid_sample),
};
const int32_t ir_ops_extra_count = sizeof ir_ops_extra / sizeof *ir_ops_extra;
