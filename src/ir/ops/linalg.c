/* linalg.c - (being written) */
#include "ir/ir.h"

const ir_op ir_ops_linalg[1] = {{0}};
const int32_t ir_ops_linalg_count = 0;
