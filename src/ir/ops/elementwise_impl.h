/* elementwise_impl.h - private to the elementwise op group: the shape rules and
 * reference kernels that live in elementwise_binary.c and elementwise_cast.c, for the
 * one op table in elementwise.c. */
#ifndef KILN_ELEMENTWISE_IMPL_H
#define KILN_ELEMENTWISE_IMPL_H

#include "ir/ir.h"

#define IR_EW_OP(op)                                                                               \
    kiln_status ir_ew_infer_##op(ir_infer *c);                                                     \
    kiln_status ir_ew_eval_##op(const ir_node *n, const ir_tensor *in, int32_t n_in,               \
                                ir_tensor *out, int32_t n_out);

/* elementwise_binary.c */
IR_EW_OP(add)
IR_EW_OP(sub)
IR_EW_OP(mul)
IR_EW_OP(div)
IR_EW_OP(pow)
IR_EW_OP(mod)
IR_EW_OP(equal)
IR_EW_OP(less)
IR_EW_OP(greater)
IR_EW_OP(less_equal)
IR_EW_OP(greater_equal)
IR_EW_OP(and)
IR_EW_OP(or)
IR_EW_OP(xor)
IR_EW_OP(prelu)
IR_EW_OP(where)
IR_EW_OP(max)
IR_EW_OP(min)
IR_EW_OP(sum)
IR_EW_OP(mean)

/* elementwise_cast.c */
IR_EW_OP(cast)
kiln_status ir_ew_infer_castlike(ir_infer *c);

#undef IR_EW_OP

/* "f32, i32 or i64" style lists for messages, from a mask of (1 << dtype) bits. */
const char *ir_ew_dtype_list(uint32_t mask, char *buf, size_t n);

#define IR_EW_BIT(t) (1u << (unsigned)(t))
#define IR_EW_F32    IR_EW_BIT(KILN_DTYPE_F32)
#define IR_EW_NUM                                                                                  \
    (IR_EW_BIT(KILN_DTYPE_F32) | IR_EW_BIT(KILN_DTYPE_I32) | IR_EW_BIT(KILN_DTYPE_I64))
#define IR_EW_BOOL IR_EW_BIT(KILN_DTYPE_BOOL)

/* Checks `t` is in `mask`; otherwise a KILN_ERR_UNSUPPORTED error naming the input,
 * the dtype found and the ones the op takes. */
kiln_status ir_ew_check_dtype(const ir_node *n, const char *what, kiln_dtype t, uint32_t mask);

#endif /* KILN_ELEMENTWISE_IMPL_H */
