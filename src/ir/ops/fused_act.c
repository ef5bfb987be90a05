/* fused_act.c - the epilogue of fused layers: residual add and activation, in place over
 * the base op's output. The formulas are the standalone ops' (elementwise_scalar.h). */
#include <string.h>

#include "ir/ops/elementwise_scalar.h"
#include "ir/ops/fused_impl.h"

static const char *const k_act_names[] = {
    "",     "Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSwish", "HardSigmoid",
    "Silu", "Gelu", "GeluTanh",  "Tanh", "Elu",
};

kiln_status fused_act_parse(const ir_node *n, fused_act *act)
{
    const char *s = ir_attr_string(n, "activation");
    for (size_t i = 0; i < sizeof k_act_names / sizeof *k_act_names; i++)
        if (strcmp(s, k_act_names[i]) == 0) {
            *act = (fused_act)i;
            return KILN_OK;
        }
    return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                         "activation \"%s\" is unknown (expected \"\", Relu, LeakyRelu, Clip, "
                         "Sigmoid, HardSwish, HardSigmoid, Silu, Gelu, GeluTanh, Tanh or Elu)",
                         s);
}

int32_t ir_fused_act_code(const ir_node *n)
{
    const char *s = ir_attr_string(n, "activation");
    for (size_t i = 0; i < sizeof k_act_names / sizeof *k_act_names; i++)
        if (strcmp(s, k_act_names[i]) == 0) return (int32_t)i;
    return -1;
}

/* One loop per activation, so each is a tight loop the compiler can vectorize. */
#define ACT_LOOP(EXPR)                                                                             \
    do {                                                                                           \
        for (int64_t i = 0; i < count; i++) {                                                      \
            const float x = y[i];                                                                  \
            y[i] = (EXPR);                                                                         \
        }                                                                                          \
    } while (0)

void fused_epilogue(float *y, int64_t count, const float *z, fused_act act, float alpha, float beta)
{
    if (z)
        for (int64_t i = 0; i < count; i++) y[i] += z[i];
    switch (act) {
    case FUSED_ACT_NONE: break;
    case FUSED_ACT_RELU: ACT_LOOP(ew_relu(x)); break;
    case FUSED_ACT_LEAKY_RELU: ACT_LOOP(ew_leaky_relu(x, alpha)); break;
    case FUSED_ACT_CLIP: ACT_LOOP(ew_clip(x, alpha, beta)); break;
    case FUSED_ACT_SIGMOID: ACT_LOOP(ew_sigmoid(x)); break;
    case FUSED_ACT_HARD_SWISH: ACT_LOOP(ew_hard_swish(x)); break;
    case FUSED_ACT_HARD_SIGMOID: ACT_LOOP(ew_hard_sigmoid(x, alpha, beta)); break;
    case FUSED_ACT_SILU: ACT_LOOP(ew_silu(x)); break;
    case FUSED_ACT_GELU: ACT_LOOP(ew_gelu_erf(x)); break;
    case FUSED_ACT_GELU_TANH: ACT_LOOP(ew_gelu_tanh(x)); break;
    case FUSED_ACT_TANH: ACT_LOOP(ew_tanh(x)); break;
    case FUSED_ACT_ELU: ACT_LOOP(ew_elu(x, alpha)); break;
    }
}
