/* shape.c - (being written) */
#include "ir/ir.h"

const ir_op ir_ops_shape[1] = {{0}};
const int32_t ir_ops_shape_count = 0;
