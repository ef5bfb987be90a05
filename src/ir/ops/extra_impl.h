/* extra_impl.h - private to the extra op group: the shape rules and reference kernels
 * that extra_einsum.c, extra_math.c, extra_pool.c and extra_misc.c give to the one
 * table in extra.c, and the attribute schemas that table names. */
#ifndef KILN_EXTRA_IMPL_H
#define KILN_EXTRA_IMPL_H

#include "ir/ir.h"

#define EX_OP(op)                                                                                  \
    kiln_status ex_infer_##op(ir_infer *c);                                                        \
    kiln_status ex_eval_##op(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,  \
                             int32_t n_out);

/* extra_einsum.c */
EX_OP(einsum)

/* extra_math.c: the f32 unary ops share one shape rule */
kiln_status ex_infer_unary_f32(ir_infer *c);
#define EX_EVAL(op)                                                                                \
    kiln_status ex_eval_##op(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,  \
                             int32_t n_out);
EX_EVAL(acos)
EX_EVAL(asin)
EX_EVAL(atan)
EX_EVAL(acosh)
EX_EVAL(asinh)
EX_EVAL(atanh)
EX_EVAL(sinh)
EX_EVAL(cosh)
EX_EVAL(tan)
#undef EX_EVAL
EX_OP(celu)
EX_OP(shrink)
EX_OP(bitshift)

/* extra_pool.c */
EX_OP(lppool)
EX_OP(global_lppool)

/* extra_misc.c */
EX_OP(mvn)
EX_OP(reverse_sequence)
EX_OP(det)

/* extra_grid.c */
EX_OP(grid_sample)

#undef EX_OP

#endif /* KILN_EXTRA_IMPL_H */
