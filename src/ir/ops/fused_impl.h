/* fused_impl.h - private to the fused op group (fused.c, fused_act.c, fused_chain.c,
 * fused_attention.c): the activations a fused layer may end with, the epilogue that applies
 * a residual and an activation in place over a layer's output, and the shape rules and
 * kernels of kiln.Elementwise and kiln.Attention. */
#ifndef KILN_FUSED_IMPL_H
#define KILN_FUSED_IMPL_H

#include "ir/ir.h"

typedef enum fused_act {
    FUSED_ACT_NONE = 0,
    FUSED_ACT_RELU,
    FUSED_ACT_LEAKY_RELU, /* alpha: slope below 0 */
    FUSED_ACT_CLIP,       /* alpha: min, beta: max */
    FUSED_ACT_SIGMOID,
    FUSED_ACT_HARD_SWISH,
    FUSED_ACT_HARD_SIGMOID, /* alpha * x + beta, clamped to [0, 1] */
    FUSED_ACT_SILU,         /* x * sigmoid(x) */
    FUSED_ACT_GELU,         /* erf form */
    FUSED_ACT_GELU_TANH,
    FUSED_ACT_TANH,
    FUSED_ACT_ELU /* alpha: scale of expm1 below 0 */
} fused_act;

/* The activation named by a node's `activation` attribute; fails naming the node when
 * the name is not one of fused_act's. */
kiln_status fused_act_parse(const ir_node *n, fused_act *act);

/* y[i] += z[i] when z is given, then y[i] = act(y[i]), over `count` values. Each
 * activation is computed by the same formula as its standalone op, so a fused layer
 * gives the same bits as the unfused chain. */
void fused_epilogue(float *y, int64_t count, const float *z, fused_act act, float alpha,
                    float beta);

/* kiln.Attention (fused_attention.c): Q [..., Sq, D], K [..., Sk, D] (or [..., D, Sk]
 * with k_transposed = 1), V [..., Sk, Dv], an optional additive f32 mask broadcasting to
 * [..., Sq, Sk] -> softmax(Q.K^T scaled + mask) . V [..., Sq, Dv], ranks 3 or 4, batch
 * dims broadcasting. `q_scale` multiplies Q first; `scale` multiplies the scores, or
 * divides them when `scale_mode` is "div" (as the graph did, so the bits match). */
kiln_status fused_attention_infer(ir_infer *c);
kiln_status fused_attention_eval(const ir_node *n, const ir_tensor *in, int32_t n_in,
                                 ir_tensor *out, int32_t n_out);

/* kiln.Elementwise (fused_chain.c; its program is described there and in fused_chain.h). */
kiln_status fused_chain_infer(ir_infer *c);
kiln_status fused_chain_eval(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                             int32_t n_out);

#endif /* KILN_FUSED_IMPL_H */
