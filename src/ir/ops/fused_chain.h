/* fused_chain.h - the program of a kiln.Elementwise layer (fused_chain.c): the step
 * codes it stores in its `ops` attribute and what each computes, for the op itself and
 * for the elementwise-chain pass that writes such layers. */
#ifndef KILN_FUSED_CHAIN_H
#define KILN_FUSED_CHAIN_H

#include "ir/ir.h"

/* The most inputs a kiln.Elementwise takes: x and up to 15 operands. */
#define FUSED_EW_MAX_IN 16

/* Step codes. Plans store them: append new ones, never renumber. Binary steps first. */
typedef enum fused_ew_op {
    FUSED_EW_ADD = 0,
    FUSED_EW_SUB,
    FUSED_EW_MUL,
    FUSED_EW_DIV,
    FUSED_EW_POW,
    FUSED_EW_MAX,
    FUSED_EW_MIN,
    FUSED_EW_PRELU, /* the slope is input 1 of PRelu */
    FUSED_EW_RELU,
    FUSED_EW_LEAKY_RELU, /* alpha */
    FUSED_EW_SIGMOID,
    FUSED_EW_TANH,
    FUSED_EW_EXP,
    FUSED_EW_LOG,
    FUSED_EW_SQRT,
    FUSED_EW_NEG,
    FUSED_EW_ABS,
    FUSED_EW_RECIPROCAL,
    FUSED_EW_ERF,
    FUSED_EW_CLIP,         /* alpha: min, beta: max (Clip's inputs 1 and 2) */
    FUSED_EW_HARD_SIGMOID, /* alpha, beta */
    FUSED_EW_HARD_SWISH,
    FUSED_EW_ELU,  /* alpha */
    FUSED_EW_CELU, /* alpha (finite, nonzero) */
    FUSED_EW_SELU, /* alpha, beta: Selu's gamma */
    FUSED_EW_SOFTPLUS,
    FUSED_EW_SOFTSIGN,
    FUSED_EW_MISH,
    FUSED_EW_THRESHOLDED_RELU, /* alpha */
    FUSED_EW_FLOOR,
    FUSED_EW_CEIL,
    FUSED_EW_ROUND,
    FUSED_EW_SIGN,
    FUSED_EW_SIN,
    FUSED_EW_COS,
    FUSED_EW_GELU,      /* Gelu, approximate "none" */
    FUSED_EW_GELU_TANH, /* Gelu, approximate "tanh" */
    FUSED_EW_COUNT
} fused_ew_op;

typedef struct fused_ew_info {
    const char *name;  /* in messages: "GeluTanh" */
    const char *op;    /* the standalone op whose formula the step runs: "Gelu" */
    bool binary;       /* reads an operand */
    const char *alpha; /* the op's float attribute the step's alpha holds, or NULL */
    const char *beta;  /* the same for beta */
} fused_ew_info;

/* Step `code`; NULL when it is no step code. */
const fused_ew_info *fused_ew_step(int64_t code);

/* One step of a program over m values: dst[i] = the step of src[i] (with b[i * bs], on the
 * right when `right`, for a binary step; a, be its alpha and beta), by the formulas of
 * elementwise_scalar.h. src and dst may be one array. kiln.Elementwise's reference kernel
 * and the CPU backend's portable path both run steps through it. */
void fused_ew_run_step(int64_t op, bool right, float a, float be, const float *src, float *dst,
                       int64_t m, const float *b, int64_t bs);

#endif /* KILN_FUSED_CHAIN_H */
