/* shape_impl.h - private to the shape op group (shape.c, movement.c, resize.c): checks
 * shared by their shape rules, index stepping for the reference kernels, and the
 * infer/eval functions that the group table in shape.c points at. */
#ifndef KILN_SHAPE_IMPL_H
#define KILN_SHAPE_IMPL_H

#include <string.h>

#include "ir/ir.h"

/* Longest integer list input read (pads holds two values per axis). */
#define SHAPE_MAX_LIST (2 * KILN_MAX_RANK)

/* Whether optional input i was given. */
static inline bool shape_has(const ir_tensor *in, int32_t n_in, int32_t i)
{
    return i < n_in && ir_tensor_present(&in[i]);
}

/* Reads input i (present) as a list of at most `max` integers. It must be a constant
 * (shapes depend on it), i64 or i32, and at most 1-D; `name` is the ONNX input name
 * used in messages. Shared by infer and eval so both see the same checks. */
kiln_status shape_const_ints(const ir_node *n, const ir_tensor *in, int32_t i, const char *name,
                             int64_t *vals, int64_t max, int64_t *count);

/* Normalizes `count` axes against `rank` into `out`, rejecting out-of-range and
 * repeated ones; `what` names the list in messages. */
kiln_status shape_axes(const ir_node *n, const int64_t *axes, int64_t count, int32_t rank,
                       const char *what, int32_t *out);

/* Sets an inferred output after checking its rank and element count. */
kiln_status shape_set_output(const ir_node *n, ir_tensor *out, kiln_dtype dtype,
                             const kiln_dims *d);

/* Eval's guard: the output buffer was sized for `want`; anything else is a bug. */
kiln_status shape_check_output(const ir_node *n, const ir_tensor *out, const kiln_dims *want);

/* Eval's first step: re-runs the op's shape rule on the inputs eval receives and checks
 * the outputs were allocated to match, so eval never trusts a buffer sized for other
 * inputs (and may then rely on everything infer checked). */
kiln_status shape_eval_guard(const ir_node *n, const ir_tensor *in, int32_t n_in,
                             const ir_tensor *out, int32_t n_out);

/* Fills `dst` (shape `out`) with src elements base + sum(idx[k] * st[k]): the one loop
 * behind Slice, Transpose and Expand. */
void shape_strided_copy(void *dst, const void *src, size_t es, const kiln_dims *out,
                        const int64_t *st, int64_t base);

/* Checks an indices input is i64 or i32. */
kiln_status shape_check_index_dtype(const ir_node *n, const ir_tensor *t, const char *name);

/* Element i of an i64 or i32 tensor. */
static inline int64_t shape_index_at(const ir_tensor *t, int64_t i)
{
    if (t->dtype == KILN_DTYPE_I64) return ((const int64_t *)t->data)[i];
    return ((const int32_t *)t->data)[i];
}

/* Advances a row-major multi-index; returns the outermost axis that moved, or -1 once
 * every index has been visited. */
static inline int32_t shape_index_next(int64_t *idx, const int64_t *dims, int32_t rank)
{
    for (int32_t k = rank - 1; k >= 0; k--) {
        if (++idx[k] < dims[k]) return k;
        idx[k] = 0;
    }
    return -1;
}

/* Copies element si of src to element di of dst; constant sizes let the compiler
 * turn each memcpy into one move. */
static inline void shape_copy_elem(void *dst, int64_t di, const void *src, int64_t si, size_t es)
{
    char *d = (char *)dst;
    const char *s = (const char *)src;
    switch (es) {
    case 1: d[di] = s[si]; break;
    case 2: memcpy(d + di * 2, s + si * 2, 2); break;
    case 4: memcpy(d + di * 4, s + si * 4, 4); break;
    case 8: memcpy(d + di * 8, s + si * 8, 8); break;
    default: memcpy(d + di * (int64_t)es, s + si * (int64_t)es, es); break;
    }
}

/* Product of d[from..to). Unchecked: for shapes of tensors that hold elements, whose
 * partial products cannot overflow. Eval returns early on empty tensors for this. */
static inline int64_t shape_prod(const kiln_dims *d, int32_t from, int32_t to)
{
    int64_t p = 1;
    for (int32_t i = from; i < to; i++) p *= d->d[i];
    return p;
}

/* Product of d[from..to) for any shape infer may see: 0 if a dimension is 0, INT64_MAX
 * once it passes KILN_MAX_ELEMENTS (which shape_set_output then rejects). */
static inline int64_t shape_prod_sat(const kiln_dims *d, int32_t from, int32_t to)
{
    int64_t p = 1;
    bool big = false;
    for (int32_t i = from; i < to; i++) {
        if (d->d[i] == 0) return 0;
        if (!kiln_mul_ok(p, d->d[i], &p) || p > KILN_MAX_ELEMENTS) {
            big = true;
            p = 1;
        }
    }
    return big ? INT64_MAX : p;
}

/* Element count of any shape, INT64_MAX when it does not fit (for messages and checks
 * in infer, where input shapes are not yet validated). */
static inline int64_t shape_count(const ir_tensor *t)
{
    int64_t n;
    return kiln_dims_numel(&t->shape, &n) ? n : INT64_MAX;
}

/* ---- ops defined in movement.c ---- */
kiln_status shape_infer_slice(ir_infer *c);
kiln_status shape_eval_slice(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                             int32_t n_out);
kiln_status shape_infer_transpose(ir_infer *c);
kiln_status shape_eval_transpose(const ir_node *n, const ir_tensor *in, int32_t n_in,
                                 ir_tensor *out, int32_t n_out);
kiln_status shape_infer_pad(ir_infer *c);
kiln_status shape_eval_pad(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                           int32_t n_out);
kiln_status shape_infer_gather(ir_infer *c);
kiln_status shape_eval_gather(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                              int32_t n_out);
kiln_status shape_infer_gather_elements(ir_infer *c);
kiln_status shape_eval_gather_elements(const ir_node *n, const ir_tensor *in, int32_t n_in,
                                       ir_tensor *out, int32_t n_out);
kiln_status shape_infer_gather_nd(ir_infer *c);
kiln_status shape_eval_gather_nd(const ir_node *n, const ir_tensor *in, int32_t n_in,
                                 ir_tensor *out, int32_t n_out);
kiln_status shape_infer_scatter_nd(ir_infer *c);
kiln_status shape_eval_scatter_nd(const ir_node *n, const ir_tensor *in, int32_t n_in,
                                  ir_tensor *out, int32_t n_out);
kiln_status shape_infer_scatter_elements(ir_infer *c);
kiln_status shape_eval_scatter_elements(const ir_node *n, const ir_tensor *in, int32_t n_in,
                                        ir_tensor *out, int32_t n_out);
kiln_status shape_infer_trilu(ir_infer *c);
kiln_status shape_eval_trilu(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                             int32_t n_out);
kiln_status shape_infer_onehot(ir_infer *c);
kiln_status shape_eval_onehot(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                              int32_t n_out);

/* ---- ops defined in resize.c ---- */
kiln_status shape_infer_resize(ir_infer *c);
kiln_status shape_eval_resize(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                              int32_t n_out);

#endif /* KILN_SHAPE_IMPL_H */
