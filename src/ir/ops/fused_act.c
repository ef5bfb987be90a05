/* fused_act.c - the epilogue of fused layers: residual add and activation, in place over
 * the base op's output. Formulas match the standalone ops of elementwise.c. */
#include <math.h>
#include <string.h>

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

#define K_SQRT1_2        0.70710678118654752440f
#define K_SQRT_2_OVER_PI 0.79788456080286535588f

/* Split at 0 so that large |x| neither overflows nor cancels. */
static inline float sigmoid_f(float x)
{
    if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

/* Clamps to [0, 1] keeping NaN. */
static inline float clamp01(float v) { return v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v); }

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
    case FUSED_ACT_RELU: ACT_LOOP(x < 0.0f ? 0.0f : x); break;
    case FUSED_ACT_LEAKY_RELU: ACT_LOOP(x < 0.0f ? alpha * x : x); break;
    case FUSED_ACT_CLIP:
        /* as Clip: min first, then max (a min above max gives max everywhere) */
        for (int64_t i = 0; i < count; i++) {
            float v = y[i] < alpha ? alpha : y[i];
            y[i] = v > beta ? beta : v;
        }
        break;
    case FUSED_ACT_SIGMOID: ACT_LOOP(sigmoid_f(x)); break;
    case FUSED_ACT_HARD_SWISH: ACT_LOOP(x * clamp01((x / 6.0f) + 0.5f)); break;
    case FUSED_ACT_HARD_SIGMOID: ACT_LOOP(clamp01((alpha * x) + beta)); break;
    case FUSED_ACT_SILU: ACT_LOOP(x * sigmoid_f(x)); break;
    /* 0.5 x erfc(-x / sqrt 2) and x sigmoid(2 u): the textbook forms without the
     * cancellation of 1 + erf and 1 + tanh for negative x. */
    case FUSED_ACT_GELU: ACT_LOOP(0.5f * x * erfcf(-x * K_SQRT1_2)); break;
    case FUSED_ACT_GELU_TANH:
        ACT_LOOP(x * sigmoid_f(2.0f * K_SQRT_2_OVER_PI * (x + 0.044715f * x * x * x)));
        break;
    case FUSED_ACT_TANH: ACT_LOOP(tanhf(x)); break;
    case FUSED_ACT_ELU: ACT_LOOP(x < 0.0f ? alpha * expm1f(x) : x); break;
    }
}
