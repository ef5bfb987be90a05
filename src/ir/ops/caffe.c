/* caffe.c - ops only Caffe networks use, named "caffe.*" so no ONNX op name collides:
 * the table and the attribute schemas (defaults as in Caffe's caffe.proto and SSD's
 * fork of it); the ops live in caffe_*.c. */
#include <float.h>

#include "ir/ops/caffe_impl.h"

/* clang-format off */
#define FLOAT_ATTR(name, v) {name, KILN_ATTR_FLOAT, false, 0, v, NULL}
#define INT_ATTR(name, v) {name, KILN_ATTR_INT, false, v, 0.0f, NULL}
#define INTS_ATTR(name) {name, KILN_ATTR_INTS, false, 0, 0.0f, NULL}
#define FLOATS_ATTR(name) {name, KILN_ATTR_FLOATS, false, 0, 0.0f, NULL}
/* clang-format on */
#define N_ATTRS(a) a, (int32_t)(sizeof a / sizeof *a)

static const ir_attr_def k_crop_attrs[] = {INT_ATTR("axis", 2), INTS_ATTR("offset")};
static const ir_attr_def k_argmax_attrs[] = {
    INT_ATTR("out_max_val", 0),
    INT_ATTR("top_k", 1),
    INT_ATTR("axis", 0),
    INT_ATTR("has_axis", 0),
};
static const ir_attr_def k_normalize_attrs[] = {
    INT_ATTR("across_spatial", 1),
    INT_ATTR("channel_shared", 1),
    FLOAT_ATTR("eps", 1e-10f),
};
static const ir_attr_def k_prior_box_attrs[] = {
    FLOATS_ATTR("min_size"),    FLOATS_ATTR("max_size"),    FLOATS_ATTR("aspect_ratio"),
    INT_ATTR("flip", 1),        INT_ATTR("clip", 0),        FLOATS_ATTR("variance"),
    INT_ATTR("img_size", 0),    INT_ATTR("img_h", 0),       INT_ATTR("img_w", 0),
    FLOAT_ATTR("step", 0.0f),   FLOAT_ATTR("step_h", 0.0f), FLOAT_ATTR("step_w", 0.0f),
    FLOAT_ATTR("offset", 0.5f),
};
/* code_type defaults to CORNER as in caffe.proto (SSD's deploy files name CENTER_SIZE
 * explicitly); confidence_threshold absent means every box counts, as Caffe's -FLT_MAX. */
static const ir_attr_def k_detection_output_attrs[] = {
    {"num_classes", KILN_ATTR_INT, true, 0, 0.0f, NULL},
    INT_ATTR("share_location", 1),
    INT_ATTR("background_label_id", 0),
    FLOAT_ATTR("nms_threshold", 0.3f),
    INT_ATTR("top_k", -1),
    INT_ATTR("keep_top_k", -1),
    FLOAT_ATTR("confidence_threshold", -FLT_MAX),
    INT_ATTR("code_type", CAFFE_CODE_CORNER),
    INT_ATTR("variance_encoded_in_target", 0),
    FLOAT_ATTR("eta", 1.0f),
};

/* clang-format off */
#define OP(name, nin, attrs, op, flags)                                                            \
    {name, nin, nin, 1, 1, attrs, caffe_infer_##op, caffe_eval_##op, flags}
/* clang-format on */

const ir_op ir_ops_caffe[] = {
    OP("caffe.Crop", 2, N_ATTRS(k_crop_attrs), crop, 0),
    OP("caffe.ArgMax", 1, N_ATTRS(k_argmax_attrs), argmax, 0),
    OP("caffe.Normalize", 2, N_ATTRS(k_normalize_attrs), normalize, 0),
    OP("caffe.PriorBox", 2, N_ATTRS(k_prior_box_attrs), prior_box, IR_OP_SHAPE_ONLY),
    OP("caffe.DetectionOutput", 3, N_ATTRS(k_detection_output_attrs), detection_output, 0),
};
const int32_t ir_ops_caffe_count = sizeof ir_ops_caffe / sizeof *ir_ops_caffe;
