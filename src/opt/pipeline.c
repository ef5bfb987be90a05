/* pipeline.c - the listed sequence of optimization passes. A pass joins the pipeline by
 * a row here; each can be switched off by name for debugging. */
#include "opt/opt.h"

static const opt_pass g_passes[] = {
    {"constant-folding", "evaluate layers whose inputs are all constants (outputs up to 16 MiB)",
     opt_constant_folding},
    {"identity", "remove Identity, same-dtype Cast and no-op Reshape/Transpose/Pad/Slice/Expand",
     opt_identity},
    {"transpose-sinking",
     "move a Transpose below elementwise/Concat/Reduce/Softmax layers onto a Transpose it merges "
     "with, or up onto its inverse",
     opt_transpose_sinking},
    {"reshape-transpose", "merge Transpose pairs and chains of Reshape/Flatten/Squeeze/Unsqueeze",
     opt_reshape_transpose},
    {"cse", "merge identical constants and layers computing the same thing", opt_cse},
    /* before activation-fusion, which would otherwise take the MatMuls (and a constant
     * mask as their bias) */
    {"attention", "MatMul-(Div|Mul)-(Add mask)-Softmax-MatMul -> kiln.Attention", opt_attention},
    {"matmul-add-to-gemm", "MatMul with 2-D A and constant B, then Add of a bias -> Gemm",
     opt_matmul_add_to_gemm},
    {"batchnorm-fold", "BatchNormalization after Conv/ConvTranspose/Gemm -> new weights and bias",
     opt_batchnorm_fold},
    {"gelu", "GELU written with Erf or Tanh -> one Gelu", opt_gelu},
    {"layernorm", "LayerNormalization written with ReduceMean/Sub/Pow/Sqrt/Div -> one layer",
     opt_layernorm},
    {"activation-fusion", "Conv/Gemm/MatMul + bias + residual Add + activation -> kiln.* layer",
     opt_activation_fusion},
    /* after activation-fusion: what a Conv/Gemm/MatMul takes as its epilogue goes there */
    {"elementwise-chain",
     "runs of elementwise layers, each the last one's only reader -> one "
     "kiln.Elementwise",
     opt_elementwise_chain},
    {"dead-code", "remove layers whose outputs nothing uses", opt_dead_code},
};

#define N_PASSES   ((int32_t)(sizeof g_passes / sizeof *g_passes))
#define MAX_ROUNDS 4

const opt_pass *opt_pass_at(int32_t index)
{
    return index >= 0 && index < N_PASSES ? &g_passes[index] : NULL;
}

const char *kiln_pass_name(int32_t index)
{
    const opt_pass *p = opt_pass_at(index);
    return p ? p->name : NULL;
}

kiln_status opt_run_pipeline(ir_graph *g, bool (*disabled)(const char *, const void *),
                             const void *user)
{
    for (int round = 0; round < MAX_ROUNDS; round++) {
        int32_t total = 0;
        for (int32_t i = 0; i < N_PASSES; i++) {
            if (disabled && disabled(g_passes[i].name, user)) continue;
            int32_t changes = 0;
            KILN_TRY(g_passes[i].run(g, &changes));
            if (changes)
                kiln_log(KILN_LOG_INFO, "pass %s: %d change%s", g_passes[i].name, changes,
                         changes == 1 ? "" : "s");
            total += changes;
        }
        if (total == 0) break;
    }
    return KILN_OK;
}
