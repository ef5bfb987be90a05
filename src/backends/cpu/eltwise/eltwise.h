/* eltwise.h - the CPU backend's engine for the layers that are not GEMMs: elementwise
 * programs (kiln.Elementwise and the plain elementwise ops, as one-step programs), Softmax
 * and LogSoftmax, LayerNormalization and row sums (ReduceSum / ReduceMean over trailing
 * axes). What each ISA file (eltwise_<isa>.c) gives the layer driver (eltwise_layers.c).
 *
 * Numerics. The generic path runs the reference formulas (src/ir/ops/elementwise_scalar.h)
 * and the reference kernels' order of operations, so it gives their bits. The AVX2 and
 * AVX-512 paths give the bits of the reference for every step whose formula is exact in
 * IEEE arithmetic (add, sub, mul, div, max, min, PRelu, Relu, LeakyRelu, neg, abs, sqrt,
 * reciprocal, clip, HardSigmoid, HardSwish, Softsign, ThresholdedRelu, floor, ceil, round,
 * sign: the same operations in the same order, no contraction into FMAs); exp, log, erf,
 * tanh, sigmoid, Gelu, the expm1 of Elu/Celu/Selu, Softplus and Mish use polynomials
 * within a few ulp of libm (eltwise_vec.h says how); Pow by a scalar 2 is x * x; other
 * Pow, Sin and Cos call libm lane by lane. Sums (softmax, layer norm, reductions) accumulate in
 * double like the references, in another order, which the rounding to float hides.
 *
 * Every result depends only on its own row (or element), never on how the driver splits
 * the work among threads. */
#ifndef KILN_ELTWISE_H
#define KILN_ELTWISE_H

#include <stdbool.h>
#include <stdint.h>

/* A program of kiln.Elementwise steps (codes of src/ir/ops/fused_chain.h) over inputs
 * 0..: the value starts as input 0; a binary step reads input operand[s] (side 0:
 * op(v, operand), 1: op(operand, v)); alpha and beta are the step's parameters. */
typedef struct ew_prog {
    int32_t n;
    const int64_t *ops, *operand, *side;
    const float *alpha, *beta;
} ew_prog;

/* Elements a chain runs over at a time: every step over the block, then the next step. */
#define EW_BLOCK 1024

/* Most inputs a program reads: kiln.Elementwise's 16, or a variadic op's 16 and a
 * constant (Mean's count). */
#define EW_MAX_IN 17

/* Columns softmax_cols handles at once (an axis other than the last). */
#define EW_COLS 64

typedef struct ew_isa {
    const char *name; /* "avx512", "avx2", "generic" */
    /* y[i] for i < m: the program on v = opd[0][i * os[0]], input k of the program read at
     * opd[k][i * os[k]]; every os[k] is 0 (one value for the run) or 1. y may be opd[0]
     * (os[0] = 1): each block is read before it is written. */
    void (*chain)(const ew_prog *p, float *y, int64_t m, const float *const *opd,
                  const int64_t *os);
    /* Softmax (log: LogSoftmax) of `rows` contiguous rows of `len`. */
    void (*softmax_rows)(bool log, const float *x, float *y, int64_t rows, int64_t len);
    /* The same along an axis of `len` with `inner` elements after it: m <= EW_COLS
     * adjacent columns, element (k, j) at x[k * inner + j]. */
    void (*softmax_cols)(bool log, const float *x, float *y, int64_t len, int64_t inner, int64_t m);
    /* LayerNormalization of `rows` contiguous rows of d: scale[j] and bias[j] (NULL: none)
     * per position; mean and inv_std (NULL: not wanted) get each row's statistics. */
    void (*layernorm_rows)(const float *x, float *y, int64_t rows, int64_t d, const float *scale,
                           const float *bias, float eps, float *mean, float *inv_std);
    /* y[r] = the sum of row r (of `len` contiguous values) in double, divided by len when
     * `mean`, rounded to float. */
    void (*sum_rows)(const float *x, float *y, int64_t rows, int64_t len, bool mean);
} ew_isa;

extern const ew_isa ew_isa_generic;
#if defined(__x86_64__)
extern const ew_isa ew_isa_avx2;
extern const ew_isa ew_isa_avx512;
#endif

/* Step s of p from src[0..m) to dst (which may be src), input k at opd[k] with stride
 * os[k], with the reference's formula: the generic path's steps, and the vector paths' for
 * steps without a vector formula. Element i is read, at every input, before dst[i] is
 * written, and nothing else is, so dst may also be input 0 (in place). */
void ew_step_scalar(const ew_prog *p, int32_t s, const float *src, float *dst, int64_t m,
                    const float *const *opd, const int64_t *os);

/* Whether a vector path computes step `code` with libm lane by lane (Pow, Sin, Cos). */
bool ew_step_is_scalar(int64_t code);

#endif /* KILN_ELTWISE_H */
