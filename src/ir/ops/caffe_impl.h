/* caffe_impl.h - private to the caffe op group: the shape rules and reference kernels
 * that caffe_tensor.c, caffe_priorbox.c and caffe_detection.c give to the one table in
 * caffe.c. */
#ifndef KILN_CAFFE_IMPL_H
#define KILN_CAFFE_IMPL_H

#include "ir/ir.h"

#define CAFFE_OP(op)                                                                               \
    kiln_status caffe_infer_##op(ir_infer *c);                                                     \
    kiln_status caffe_eval_##op(const ir_node *n, const ir_tensor *in, int32_t n_in,               \
                                ir_tensor *out, int32_t n_out);

/* caffe_tensor.c */
CAFFE_OP(crop)
CAFFE_OP(argmax)
CAFFE_OP(normalize)

/* caffe_priorbox.c */
CAFFE_OP(prior_box)

/* caffe_detection.c */
CAFFE_OP(detection_output)

#undef CAFFE_OP

/* Box encodings of DetectionOutput's code_type, numbered as Caffe's
 * PriorBoxParameter.CodeType. */
enum { CAFFE_CODE_CORNER = 1, CAFFE_CODE_CENTER_SIZE = 2, CAFFE_CODE_CORNER_SIZE = 3 };

#endif /* KILN_CAFFE_IMPL_H */
