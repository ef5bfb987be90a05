/* elementwise.c - elementwise ops: unary math and activations, broadcasting binary
 * arithmetic and comparisons, Where, Cast, Identity. */
#include <math.h>
#include <string.h>

#include "ir/ir.h"

/* ---- Identity ---- */

static kiln_status eval_identity(const ir_node *n, const ir_tensor *in, int32_t n_in,
                                 ir_tensor *out, int32_t n_out)
{
    size_t bytes = (size_t)ir_tensor_count(&in[0]) * kiln_dtype_size(in[0].dtype);
    if (out[0].data != in[0].data) memmove(out[0].data, in[0].data, bytes);
    return KILN_OK;
}

/* ---- Relu ---- */

static kiln_status infer_float_unary(ir_infer *c)
{
    if (c->in[0].dtype != KILN_DTYPE_F32)
        return ir_node_error(c->node, KILN_ERR_UNSUPPORTED, "input dtype %s (needs f32)",
                             kiln_dtype_name(c->in[0].dtype));
    return ir_infer_same_as_input(c);
}

static kiln_status eval_relu(const ir_node *n, const ir_tensor *in, int32_t n_in,
                             ir_tensor *out, int32_t n_out)
{
    const float *x = in[0].data;
    float *y = out[0].data;
    int64_t cnt = ir_tensor_count(&in[0]);
    for (int64_t i = 0; i < cnt; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
    return KILN_OK;
}

const ir_op ir_ops_elementwise[] = {
    {"Identity", 1, 1, 1, 1, NULL, 0, ir_infer_same_as_input, eval_identity, IR_OP_ALIAS},
    {"Relu", 1, 1, 1, 1, NULL, 0, infer_float_unary, eval_relu, 0},
};
const int32_t ir_ops_elementwise_count = sizeof ir_ops_elementwise / sizeof *ir_ops_elementwise;
