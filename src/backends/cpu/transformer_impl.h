/* transformer_impl.h - private to the transformer kernels of the CPU backend (attention.c,
 * transpose.c, matmul_act.c and their ISA files transformer_avx512.c / transformer_avx2.c):
 * the per-ISA row and tile routines and the kernels' entry points the family table names. */
#ifndef KILN_TRANSFORMER_IMPL_H
#define KILN_TRANSFORMER_IMPL_H

#include "backends/cpu/cpu_impl.h"
#include "backends/cpu/gemm/gemm.h"

/* How one row of attention scores becomes exponentials: s = s * mul, then s = s / div when
 * has_div, then s = s + mask[j * mask_step] when mask is not NULL (mask_step 0 or 1); then
 * s = exp(s - max s). Returns the sum of the exponentials (a float sum in a fixed order). */
typedef struct tf_softmax {
    float mul, div;
    bool has_div;
    const float *mask;
    int64_t mask_step;
} tf_softmax;

typedef float (*tf_softmax_row_fn)(float *s, int64_t n, const tf_softmax *p);

float tf_softmax_row_generic(float *s, int64_t n, const tf_softmax *p);
/* out[a * ldo + b] = in[b * ldi + a] for a < rows, b < cols: a 2-D transpose of 4-byte
 * elements (input contiguous along a, output along b). */
typedef void (*tf_transpose32_fn)(const uint32_t *in, int64_t ldi, uint32_t *out, int64_t ldo,
                                  int64_t rows, int64_t cols);

void tf_transpose32_generic(const uint32_t *in, int64_t ldi, uint32_t *out, int64_t ldo,
                            int64_t rows, int64_t cols);

#if defined(__x86_64__)
/* Built with their ISA's flags; call only when kiln_cpu_features() has them. */
float tf_softmax_row_avx512(float *s, int64_t n, const tf_softmax *p);
float tf_softmax_row_avx2(float *s, int64_t n, const tf_softmax *p);
void tf_transpose32_avx512(const uint32_t *in, int64_t ldi, uint32_t *out, int64_t ldo,
                           int64_t rows, int64_t cols);
void tf_transpose32_avx2(const uint32_t *in, int64_t ldi, uint32_t *out, int64_t ldo, int64_t rows,
                         int64_t cols);
#endif

/* The routines of path `isa` (GEMM_ISA_*: the GEMM's path names the family's too); NULL
 * when this kiln lacks it. */
tf_softmax_row_fn tf_softmax_row_of(gemm_isa isa);
tf_transpose32_fn tf_transpose32_of(gemm_isa isa);

/* Whether `isa` runs here now (built in, and kiln_cpu_features() has what it needs). */
bool tf_isa_runs(gemm_isa isa);

/* Below this many multiply-adds a layer runs on one thread: waking others costs more. */
#define TF_PARALLEL_MIN_FLOPS ((int64_t)1 << 21)

/* ---- the kernels (entry points for the table in attention.c) ---- */

#define TF_KERNEL_FNS(prefix)                                                                      \
    bool prefix##_applies(gemm_isa isa, const ir_node *n, const ir_tensor *in, int32_t n_in,       \
                          const ir_tensor *out, int32_t n_out);                                    \
    size_t prefix##_scratch(gemm_isa isa, const ir_node *n, const ir_tensor *in, int32_t n_in,     \
                            const ir_tensor *out, int32_t n_out, int32_t threads);                 \
    kiln_status prefix##_run(gemm_isa isa, const ir_node *n, const ir_tensor *in, int32_t n_in,    \
                             ir_tensor *out, int32_t n_out, const backend_exec *x);

/* kiln.Attention (attention.c) */
TF_KERNEL_FNS(tf_attention)
/* Transpose of any dtype of 1, 2, 4 or 8 bytes (transpose.c) */
TF_KERNEL_FNS(tf_transpose)
/* MatMul and kiln.MatMul whose B is not a constant (matmul_act.c) */
TF_KERNEL_FNS(tf_matmul_act)

#undef TF_KERNEL_FNS

#endif
