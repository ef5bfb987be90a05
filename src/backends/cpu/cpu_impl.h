/* cpu_impl.h - private to the CPU backend: its kernel families' tables, and the rule that says
 * which of a layer's tensors the blocked reference kernels of ref_nchwc.c take blocked. */
#ifndef KILN_CPU_IMPL_H
#define KILN_CPU_IMPL_H

#include "backends/backend.h"

/* The blocked reference kernels, one per op, each named "ref_nchwc" (any block: the
 * tensors' layouts say which). */
extern const backend_kernel cpu_nchwc_kernels[];
extern const int32_t cpu_nchwc_kernel_count;

/* The GEMM kernels of gemm_layers.c: MatMul, Gemm and Conv (and their kiln.* forms) with
 * constant weights packed into the plan, per ISA path (avx512, avx2, generic). */
extern const backend_kernel cpu_gemm_kernels[];
extern const int32_t cpu_gemm_kernel_count;

/* The transformer kernels (attention.c, transpose.c, matmul_act.c), per ISA path (avx512, avx2,
 * generic): kiln.Attention on the GEMM with a vector softmax, Transpose of any 1/2/4/8-byte
 * dtype, and MatMul / kiln.MatMul of two activations on the GEMM with raw operands. */
extern const backend_kernel cpu_transformer_kernels[];
extern const int32_t cpu_transformer_kernel_count;

/* The Winograd kernels of winograd.c: 3x3 stride-1 Conv and kiln.Conv by F(4x4, 3x3) with the
 * transformed weights packed into the plan, per ISA path ("winograd_f4_avx512", ...). */
extern const backend_kernel cpu_winograd_kernels[];
extern const int32_t cpu_winograd_kernel_count;

/* The depthwise-convolution and pooling kernels of dwconv_pool.c: Conv and kiln.Conv with
 * group = C_in, MaxPool, AveragePool, GlobalAveragePool and GlobalMaxPool on plain NCHW f32,
 * per ISA path (avx512, avx2, generic). */
extern const backend_kernel cpu_dwpool_kernels[];
extern const int32_t cpu_dwpool_kernel_count;

/* The kernels of eltwise_layers.c on plain f32 tensors, per ISA path (avx512, avx2, generic):
 * kiln.Elementwise and the elementwise ops ("eltwise_*"), Softmax and LogSoftmax
 * ("softmax_*"), LayerNormalization ("layernorm_*"), ReduceSum and ReduceMean over trailing
 * axes ("reduce_*"). */
extern const backend_kernel cpu_eltwise_kernels[];
extern const int32_t cpu_eltwise_kernel_count;

/* Whether a blocked reference kernel runs layer `n` with its activations in layout `l`
 * (a blocked one); if so fills the layout of every input and output slot: `l` for the
 * data (X, Z, the per-channel operand of Add and Mul), plain for weights and biases.
 * The builder's hook and the kernels' `applies` both use it, so they cannot disagree. */
bool cpu_nchwc_layouts(const ir_node *n, const ir_tensor *in, int32_t n_in, const ir_tensor *out,
                       int32_t n_out, ir_layout l, ir_layout *lin, ir_layout *lout);

/* Whether the layouts of the tensors are exactly lin / lout (absent inputs aside). */
bool cpu_layouts_are(const ir_tensor *in, int32_t n_in, const ir_tensor *out, int32_t n_out,
                     const ir_layout *lin, const ir_layout *lout);

/* Most inputs a layer run with blocked tensors may have (variadic ops beyond it stay plain). */
#define CPU_MAX_BLOCKED_IN 16

#endif
