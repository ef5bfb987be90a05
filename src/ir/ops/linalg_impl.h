/* linalg_impl.h - private to the linalg op group (linalg.c, softmax.c, reduce.c): the
 * shape rules and reference kernels its table names, and the small helpers they share. */
#ifndef KILN_LINALG_IMPL_H
#define KILN_LINALG_IMPL_H

#include "ir/ir.h"

/* ---- helpers (linalg.c) ---- */

/* Counts of a shape around `axis`: dims before it, the axis itself, dims after it. */
void lin_split(const kiln_dims *d, int32_t axis, int64_t *outer, int64_t *n, int64_t *inner);
/* Offset of linear index `lin` of a shape (`size`, `rank` dims) into a tensor whose
 * dims have `stride`. Every size must be >= 1. */
int64_t lin_offset(int64_t lin, int32_t rank, const int64_t *size, const int64_t *stride);
/* Fails unless input `i` has one of the `n_ok` dtypes of `ok`. */
kiln_status lin_check_dtype(const ir_infer *c, int32_t i, const char *what, const kiln_dtype *ok,
                            int32_t n_ok);
/* Fails when an inferred output shape holds more than KILN_MAX_ELEMENTS. */
kiln_status lin_check_size(const ir_infer *c, const kiln_dims *d);
/* Reads an integer input that must be known at build time (axes, k, axis): integer
 * dtype, rank 0 or 1, at most `max` values. */
kiln_status lin_const_ints(const ir_node *n, const ir_tensor *t, const char *what, int64_t *vals,
                           int64_t max, int64_t *count);
/* True if `small` broadcasts to `big` without growing it (ONNX unidirectional). */
bool lin_unidirectional(const kiln_dims *small, const kiln_dims *big);
/* Normalizes attribute or input `what` = `axis` against `rank`, or fails naming both. */
kiln_status lin_axis(const ir_node *n, const char *what, int64_t axis, int32_t rank, int32_t *out);

/* ---- the ops ---- */

#define LIN_OP(name)                                                                               \
    kiln_status lin_infer_##name(ir_infer *c);                                                     \
    kiln_status lin_eval_##name(const ir_node *n, const ir_tensor *in, int32_t n_in,               \
                                ir_tensor *out, int32_t n_out);

/* linalg.c */
LIN_OP(matmul)
LIN_OP(gemm)
/* softmax.c */
LIN_OP(softmax)
LIN_OP(logsoftmax)
LIN_OP(hardmax)
LIN_OP(layernorm)
/* reduce.c */
LIN_OP(reduce_sum)
LIN_OP(reduce_mean)
LIN_OP(reduce_max)
LIN_OP(reduce_min)
LIN_OP(reduce_prod)
LIN_OP(reduce_l1)
LIN_OP(reduce_l2)
LIN_OP(reduce_sumsq)
LIN_OP(reduce_logsum)
LIN_OP(reduce_logsumexp)
LIN_OP(argmax)
LIN_OP(argmin)
LIN_OP(cumsum)
LIN_OP(topk)

#undef LIN_OP

#endif /* KILN_LINALG_IMPL_H */
