/* extra.c - the op group for less common ONNX ops (being written). */
#include "ir/ir.h"

const ir_op ir_ops_extra[1] = {{0}};
const int32_t ir_ops_extra_count = 0;
