/* fused.c - the "fused" op group: layers the optimizer makes by folding a bias, a residual
 * (input Z) and an activation into Conv, Gemm and MatMul (each runs its base op's shape
 * rule and reference kernel, then the epilogue of fused_act.c in place); kiln.Elementwise,
 * a chain of elementwise ops in one pass (fused_chain.c); and kiln.Attention
 * (fused_attention.c). */
#include <string.h>

#include "ir/ops/fused_impl.h"
#include "ir/ops/linalg_impl.h"
#include "ir/ops/nn_impl.h"

/* ---- shared checks ---- */

static bool present(const ir_tensor *in, int32_t n_in, int32_t i)
{
    return i < n_in && ir_tensor_present(&in[i]);
}

/* Input `slot`, when given, must be an f32 tensor of exactly the output's shape: the
 * epilogue adds it element by element, without broadcasting. */
static kiln_status check_z(const ir_infer *c, int32_t slot)
{
    if (!present(c->in, c->n_in, slot)) return KILN_OK;
    const ir_tensor *z = &c->in[slot];
    char a[KILN_DIMS_STR_MAX], b[KILN_DIMS_STR_MAX];
    if (z->dtype != KILN_DTYPE_F32)
        return ir_node_error(c->node, KILN_ERR_UNSUPPORTED,
                             "Z (input %d) has dtype %s, expected f32", slot,
                             kiln_dtype_name(z->dtype));
    if (!kiln_dims_equal(&z->shape, &c->out[0].shape))
        return ir_node_error(
            c->node, KILN_ERR_SHAPE, "Z (input %d) has shape %s, expected the output's %s", slot,
            kiln_dims_str(&z->shape, a, sizeof a), kiln_dims_str(&c->out[0].shape, b, sizeof b));
    return KILN_OK;
}

kiln_status ir_fused_epilogue(const ir_node *n, float *y, int64_t count, const float *z)
{
    fused_act act;
    KILN_TRY(fused_act_parse(n, &act));
    fused_epilogue(y, count, z, act, ir_attr_float(n, "act_alpha"), ir_attr_float(n, "act_beta"));
    return KILN_OK;
}

static kiln_status epilogue(const ir_node *n, const ir_tensor *in, int32_t n_in, int32_t z_slot,
                            ir_tensor *out)
{
    const float *z = present(in, n_in, z_slot) ? in[z_slot].data : NULL;
    return ir_fused_epilogue(n, out[0].data, ir_tensor_count(&out[0]), z);
}

/* The base op sees only its own inputs. */
static ir_infer base_infer(const ir_infer *c, int32_t n_base)
{
    ir_infer b = *c;
    if (b.n_in > n_base) b.n_in = n_base;
    return b;
}

static int32_t min_in(int32_t n_in, int32_t n_base) { return n_in < n_base ? n_in : n_base; }

/* ---- kiln.Conv: X, W, B, Z ---- */

static kiln_status infer_conv(ir_infer *c)
{
    ir_infer b = base_infer(c, 3);
    KILN_TRY(ir_nn_conv_infer(&b));
    KILN_TRY(check_z(c, 3));
    fused_act act;
    return fused_act_parse(c->node, &act);
}

static kiln_status eval_conv(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                             int32_t n_out)
{
    KILN_TRY(ir_nn_conv_eval(n, in, min_in(n_in, 3), out, n_out));
    return epilogue(n, in, n_in, 3, out);
}

/* ---- kiln.Gemm: A, B, C, Z ---- */

static kiln_status infer_gemm(ir_infer *c)
{
    ir_infer b = base_infer(c, 3);
    KILN_TRY(lin_infer_gemm(&b));
    KILN_TRY(check_z(c, 3));
    fused_act act;
    return fused_act_parse(c->node, &act);
}

static kiln_status eval_gemm(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                             int32_t n_out)
{
    KILN_TRY(lin_eval_gemm(n, in, min_in(n_in, 3), out, n_out));
    return epilogue(n, in, n_in, 3, out);
}

/* ---- kiln.MatMul: A, B, bias (one value per element of the output's last dim), Z ---- */

static kiln_status infer_matmul(ir_infer *c)
{
    const ir_node *n = c->node;
    char s1[KILN_DIMS_STR_MAX], s2[KILN_DIMS_STR_MAX];
    if (c->in[0].dtype != KILN_DTYPE_F32)
        return ir_node_error(n, KILN_ERR_UNSUPPORTED, "A has dtype %s, expected f32",
                             kiln_dtype_name(c->in[0].dtype));
    ir_infer b = base_infer(c, 2);
    KILN_TRY(lin_infer_matmul(&b));
    if (present(c->in, c->n_in, 2)) {
        const ir_tensor *bias = &c->in[2];
        const kiln_dims *o = &c->out[0].shape;
        if (bias->dtype != KILN_DTYPE_F32)
            return ir_node_error(n, KILN_ERR_UNSUPPORTED, "bias has dtype %s, expected f32",
                                 kiln_dtype_name(bias->dtype));
        if (o->rank < 1 || bias->shape.rank != 1 || bias->shape.d[0] != o->d[o->rank - 1])
            return ir_node_error(n, KILN_ERR_SHAPE,
                                 "bias must be 1-D with one value per element of the output's "
                                 "last dim (output %s), got %s",
                                 kiln_dims_str(o, s1, sizeof s1),
                                 kiln_dims_str(&bias->shape, s2, sizeof s2));
    }
    KILN_TRY(check_z(c, 3));
    fused_act act;
    return fused_act_parse(n, &act);
}

static kiln_status eval_matmul(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                               int32_t n_out)
{
    KILN_TRY(lin_eval_matmul(n, in, 2, out, n_out));
    if (present(in, n_in, 2)) {
        const float *bias = in[2].data;
        float *y = out[0].data;
        int64_t cols = in[2].shape.d[0], rows = cols ? ir_tensor_count(&out[0]) / cols : 0;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < cols; j++) y[r * cols + j] += bias[j];
    }
    return epilogue(n, in, n_in, 3, out);
}

/* ---- the group table ---- */

/* clang-format off */
#define ACT_ATTRS                                                                                  \
    {"activation", KILN_ATTR_STRING, false, 0, 0.0f, ""},                                         \
    {"act_alpha", KILN_ATTR_FLOAT, false, 0, 0.0f, NULL},                                          \
    {"act_beta", KILN_ATTR_FLOAT, false, 0, 0.0f, NULL}
/* clang-format on */

/* Conv's and Gemm's attributes (same defaults), then the activation's. */
static const ir_attr_def k_conv_attrs[] = {
    {"auto_pad", KILN_ATTR_STRING, false, 0, 0.0f, "NOTSET"},
    {"dilations", KILN_ATTR_INTS, false, 0, 0.0f, NULL},
    {"group", KILN_ATTR_INT, false, 1, 0.0f, NULL},
    {"kernel_shape", KILN_ATTR_INTS, false, 0, 0.0f, NULL},
    {"pads", KILN_ATTR_INTS, false, 0, 0.0f, NULL},
    {"strides", KILN_ATTR_INTS, false, 0, 0.0f, NULL},
    ACT_ATTRS,
};
static const ir_attr_def k_gemm_attrs[] = {
    {"alpha", KILN_ATTR_FLOAT, false, 0, 1.0f, NULL},
    {"beta", KILN_ATTR_FLOAT, false, 0, 1.0f, NULL},
    {"transA", KILN_ATTR_INT, false, 0, 0.0f, NULL},
    {"transB", KILN_ATTR_INT, false, 0, 0.0f, NULL},
    ACT_ATTRS,
};
static const ir_attr_def k_matmul_attrs[] = {ACT_ATTRS};
static const ir_attr_def k_attention_attrs[] = {
    {"k_transposed", KILN_ATTR_INT, false, 0, 0.0f, NULL},
    {"q_scale", KILN_ATTR_FLOAT, false, 0, 1.0f, NULL},
    {"scale", KILN_ATTR_FLOAT, false, 0, 1.0f, NULL},
    {"scale_mode", KILN_ATTR_STRING, false, 0, 0.0f, "mul"},
};

/* kiln.Elementwise's program: one entry per step in each list (fused_chain.c). */
static const ir_attr_def k_chain_attrs[] = {
    {"ops", KILN_ATTR_INTS, true, 0, 0.0f, NULL},
    {"operand", KILN_ATTR_INTS, true, 0, 0.0f, NULL},
    {"side", KILN_ATTR_INTS, true, 0, 0.0f, NULL},
    {"alpha", KILN_ATTR_FLOATS, true, 0, 0.0f, NULL},
    {"beta", KILN_ATTR_FLOATS, true, 0, 0.0f, NULL},
};

#define N_ATTRS(a) a, (int32_t)(sizeof a / sizeof *a)

const ir_op ir_ops_fused[] = {
    {"kiln.Conv", 2, 4, 1, 1, N_ATTRS(k_conv_attrs), infer_conv, eval_conv, 0},
    {"kiln.Gemm", 2, 4, 1, 1, N_ATTRS(k_gemm_attrs), infer_gemm, eval_gemm, 0},
    {"kiln.MatMul", 2, 4, 1, 1, N_ATTRS(k_matmul_attrs), infer_matmul, eval_matmul, 0},
    {"kiln.Attention", 3, 4, 1, 1, N_ATTRS(k_attention_attrs), fused_attention_infer,
     fused_attention_eval, 0},
    /* x and up to 15 operands (FUSED_EW_MAX_IN); reads x[i] before writing y[i]. */
    {"kiln.Elementwise", 1, 16, 1, 1, N_ATTRS(k_chain_attrs), fused_chain_infer, fused_chain_eval,
     IR_OP_INPLACE},
};
const int32_t ir_ops_fused_count = sizeof ir_ops_fused / sizeof *ir_ops_fused;
