/* gemm.h - the CPU backend's FP32 matrix multiply: C = A x B (+ bias) (+ residual), then an
 * activation, with either operand prepacked once into the micro-kernel's panel layout, cache
 * blocking, per-ISA micro-kernels (AVX-512, AVX2+FMA, portable C) and OpenMP threads.
 *
 * How layers map onto it (the constant operand is the one to prepack):
 *   Gemm (ONNX): A [M,K] (transA), B [K,N] (transB) constant -> gemm_pack_b(trans_b), bias
 *     per column (C broadcast from [N]); alpha: the caller scales the packed B (or the bias)
 *     once; beta * C: accumulate = true over a C the caller filled with beta * C.
 *   MatMul: as Gemm without bias; batched MatMul loops gemm_run over the batch, sharing one
 *     packed B when B is a constant broadcast over the batch.
 *   Conv as GEMM (NCHW, per image and group): weights W [Cout, Cin*kh*kw] are the LEFT
 *     operand -> gemm_pack_a; the image (1x1 conv: X [Cin, H*W] as is; otherwise its im2col
 *     [Cin*kh*kw, H*W]) is the right operand B, packed on the fly into the scratch; bias per
 *     row (GEMM_BIAS_ROW, one per output channel); C [Cout, H*W] is the NCHW output.
 *   Weights on the left with a narrow right operand (N <= 4: batch-1 fully connected as
 *     W [N_out, K] x x [K, 1], 1x1 convs on 1x1 images) take a kernel that vectorizes along
 *     M, so both forms of a batch-1 layer are fine; both are memory-bound on the weights.
 *
 * Layout: row-major everywhere, strides in elements. A is [M,K] with row stride lda, or
 * when trans_a its transpose is given: [K,M] with row stride lda (element (i,k) at
 * a[k*lda + i]); B is [K,N] with ldb, or when trans_b [N,K] (element (k,j) at b[j*ldb + k]).
 *
 * Packed operands are plain bytes: a 64-byte header (magic, format version, ISA path, which
 * operand, panel width, K block, rows, cols, payload bytes; little-endian, no pointers,
 * padding zeroed) and then K blocks of panels of floats (layout in gemm.c), so the same input
 * always gives the same bytes and a plan can store them and use them memory-mapped.
 * gemm_packed_check validates a header.
 *
 * Numerics and determinism: every output element is one fused multiply-add chain over
 * k = 0..K-1 in order, starting from 0 (or from C's old value with accumulate), whatever
 * the blocking, the tile the element falls in, or the thread count: threads split the
 * output tiles, never K. So results are bit-identical for any thread count, and the AVX2
 * and AVX-512 paths give the same products (the portable path rounds a*b and the add
 * separately). Then bias, then residual, then the activation. Activations: the portable path
 * uses the scalar formulas of src/ir/ops/fused_act.c (libm); the AVX2 and AVX-512 paths use
 * vector versions of the same formulas (polynomial exp/erfc/tanh, relative error below
 * 5e-7 against the scalar formulas where the result is not tiny: see gemm_vact.h).
 *
 * Threads: gemm_run(..., threads) opens one `#pragma omp parallel num_threads(n)` region
 * when threads > 1 and the product is large enough to gain (see GEMM_PARALLEL_MIN_FLOPS in
 * gemm.c); with one thread (or a small product) no OpenMP region is entered. kiln never
 * sets OpenMP environment variables: libgomp's idle workers spin for a while after a region
 * (OMP_WAIT_POLICY / GOMP_SPINCOUNT, the application's choice; docs/ARCHITECTURE.md).
 *
 * No allocation: gemm_run uses only the caller's scratch (gemm_scratch_bytes, allocated
 * once per layer and thread count, e.g. in the context's arena). Calls with different C
 * (and scratch) may run concurrently; gemm_run keeps no state. */
#ifndef KILN_GEMM_H
#define KILN_GEMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

/* The code paths, by the instruction set they need. The values are stable: packed operands
 * record them. */
typedef enum gemm_isa {
    GEMM_ISA_GENERIC = 1, /* portable C, 4x16 tiles */
    GEMM_ISA_AVX2 = 2,    /* AVX2 + FMA, 6x16 tiles */
    GEMM_ISA_AVX512 = 3   /* AVX-512 F, 14x32 tiles */
} gemm_isa;

/* The fastest path the given CPU features (kiln_cpu_features(), so KILN_ISA applies) allow. */
gemm_isa gemm_isa_best(uint64_t cpu_features);
/* Whether `isa` is built into this kiln and the given features run it. */
bool gemm_isa_supported(gemm_isa isa, uint64_t cpu_features);
/* The KILN_CPU_* bits a path needs (for a plan's requirements). */
uint64_t gemm_isa_features(gemm_isa isa);
/* "generic", "avx2", "avx512"; "?" for other values. */
const char *gemm_isa_name(gemm_isa isa);
/* The micro-kernel's tile: mr rows of A by nr columns of B; false for an unknown isa. */
bool gemm_isa_tile(gemm_isa isa, int32_t *mr, int32_t *nr);

/* Activations of the epilogue; the same set, order and parameters as the fused layers'
 * (src/ir/ops/fused_impl.h `fused_act`), so a kernel maps one onto the other by value. */
typedef enum gemm_act {
    GEMM_ACT_NONE = 0,
    GEMM_ACT_RELU,
    GEMM_ACT_LEAKY_RELU, /* alpha: slope below 0 */
    GEMM_ACT_CLIP,       /* alpha: min, beta: max (relu6: 0, 6) */
    GEMM_ACT_SIGMOID,
    GEMM_ACT_HARD_SWISH,   /* x * clamp(x / 6 + 0.5, 0, 1) */
    GEMM_ACT_HARD_SIGMOID, /* clamp(alpha * x + beta, 0, 1) */
    GEMM_ACT_SILU,         /* x * sigmoid(x) */
    GEMM_ACT_GELU,         /* erf form: 0.5 x erfc(-x / sqrt 2) */
    GEMM_ACT_GELU_TANH,    /* x * sigmoid(2 sqrt(2/pi) (x + 0.044715 x^3)) */
    GEMM_ACT_TANH,
    GEMM_ACT_ELU /* alpha * expm1(x) below 0 */
} gemm_act;

typedef enum gemm_bias {
    GEMM_BIAS_NONE = 0,
    GEMM_BIAS_COL, /* bias[j] added to column j: Gemm / MatMul + Add */
    GEMM_BIAS_ROW  /* bias[i] added to row i: conv as GEMM, one per output channel */
} gemm_bias;

/* What happens to each output tile after its last K block, while it is in cache:
 * C = C + bias, then C = C + residual, then C = act(C). Zero-initialized: nothing. */
typedef struct gemm_epilogue {
    gemm_bias bias_kind;
    const float *bias; /* [N] or [M] */
    /* [M,N] with row stride ldr; must not overlap C (for C += old C use accumulate) */
    const float *residual;
    int64_t ldr;
    gemm_act act;
    float alpha, beta; /* parameters of act, as named above */
} gemm_epilogue;

/* ---- prepacking ---- */

typedef enum gemm_operand {
    GEMM_OPERAND_A = 1, /* left, [M,K]: panels of mr rows */
    GEMM_OPERAND_B = 2  /* right, [K,N]: panels of nr columns */
} gemm_operand;

/* Bytes of a packed operand (header included) for this path; 0 on bad arguments (negative
 * dims, unknown isa, size overflow). */
size_t gemm_pack_a_bytes(gemm_isa isa, int64_t m, int64_t k);
size_t gemm_pack_b_bytes(gemm_isa isa, int64_t k, int64_t n);

/* Packs A [M,K] (see the layout above; trans_a: [K,M] given) or B [K,N] (trans_b: [N,K]
 * given) into `dst` of `dst_bytes` (at least gemm_pack_?_bytes). Keep `dst` 64-byte aligned
 * (plans align weights so): any alignment works, but at 16 bytes every 64-byte load of the
 * AVX-512 kernel straddles two cache lines (-10% at 1024^3). Every byte is written. Fails with
 * KILN_ERR_INVALID_ARGUMENT (message set) on bad dims, strides or sizes. */
kiln_status gemm_pack_a(gemm_isa isa, int64_t m, int64_t k, const float *a, int64_t lda,
                        bool trans_a, void *dst, size_t dst_bytes);
kiln_status gemm_pack_b(gemm_isa isa, int64_t k, int64_t n, const float *b, int64_t ldb,
                        bool trans_b, void *dst, size_t dst_bytes);

/* Checks that `p` (of `bytes`, e.g. from a plan) holds a packed `which` operand for `isa`
 * with `rows` x `cols` (A: M x K, B: K x N) and enough payload; KILN_ERR_CORRUPT_PLAN with a
 * message saying what differs otherwise (a consumer may then repack for its own path). */
kiln_status gemm_packed_check(const void *p, size_t bytes, gemm_isa isa, gemm_operand which,
                              int64_t rows, int64_t cols);

/* ---- running ---- */

typedef struct gemm_args {
    gemm_isa isa;
    int64_t m, n, k;
    /* A: a raw matrix (a, lda, trans_a) or a_packed (gemm_pack_a with the same isa) */
    const float *a;
    int64_t lda;
    bool trans_a;
    const void *a_packed;
    /* B: a raw matrix (b, ldb, trans_b) or b_packed (gemm_pack_b with the same isa) */
    const float *b;
    int64_t ldb;
    bool trans_b;
    const void *b_packed;
    float *c; /* [M,N], row stride ldc >= N */
    int64_t ldc;
    bool accumulate; /* C += A x B (the chains start from C's values) instead of C = A x B */
    gemm_epilogue ep;
} gemm_args;

/* Scratch bytes gemm_run needs for these arguments with up to `threads` threads: room to
 * pack the raw operands' blocks, one set per thread; 0 when both operands are prepacked. */
size_t gemm_scratch_bytes(const gemm_args *g, int32_t threads);

/* Computes the product with up to `threads` threads (<= 0 counts as 1). `scratch` of
 * `scratch_bytes` >= gemm_scratch_bytes(g, threads) (NULL when that is 0). Checks the
 * arguments (dims, strides, pointers, packed headers, scratch size, isa runnable on this
 * CPU) and fails with KILN_ERR_INVALID_ARGUMENT or KILN_ERR_DEVICE, message set, before
 * touching C. With K = 0, C = epilogue(0 or old C). */
kiln_status gemm_run(const gemm_args *g, void *scratch, size_t scratch_bytes, int32_t threads);

#endif /* KILN_GEMM_H */
