/* caffe.c - ops only Caffe networks use, named "caffe.*" so no ONNX op name collides
 * (being written). */
#include "ir/ir.h"

const ir_op ir_ops_caffe[1] = {{0}};
const int32_t ir_ops_caffe_count = 0;
