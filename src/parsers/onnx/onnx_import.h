/* onnx_import.h - what the ONNX importer's two files share: the import state, tensor and
 * attribute conversion, and the per-op converters that map every supported opset onto
 * kiln's op table (which follows ONNX's newest forms). */
#ifndef KILN_ONNX_IMPORT_H
#define KILN_ONNX_IMPORT_H

#include "ir/network.h"
#include "onnx.pb-c.h"

/* Opsets of the default domain kiln reads. */
#define ONNX_MIN_OPSET 7
#define ONNX_MAX_OPSET 28

typedef struct onnx_ctx {
    ir_graph *g;
    const char *source;   /* file name (or "model") for messages */
    const char *base_dir; /* where external data lives; NULL: none allowed */
    int64_t opset;        /* of the default domain */
    int32_t fresh;        /* counter for generated names */
} onnx_ctx;

/* The node being converted, with its attributes in kiln form. */
typedef struct onnx_node {
    const Onnx__NodeProto *proto;
    const char *name; /* unique within the network */
    const char *op;   /* op_type */
    int64_t opset;
    int32_t n_in, n_out;
    const char **in;  /* "" for absent optional inputs */
    const char **out; /* generated names where the model left an output empty */
    int32_t n_attrs;
    kiln_attr *attrs; /* the node's int/float/string/ints/floats attributes */
} onnx_node;

/* A fresh tensor name derived from `hint`, unused in the graph. Lives in the graph arena. */
const char *onnx_fresh_name(onnx_ctx *c, const char *node, const char *hint);

/* Adds a constant tensor and returns its (fresh) name in *name. */
kiln_status onnx_add_const(onnx_ctx *c, const onnx_node *n, const char *hint, kiln_dtype dtype,
                           const kiln_dims *shape, const void *data, size_t nbytes,
                           const char **name);
kiln_status onnx_add_const_i64(onnx_ctx *c, const onnx_node *n, const char *hint, const int64_t *v,
                               int32_t count, const char **name);
kiln_status onnx_add_const_f32_scalar(onnx_ctx *c, const onnx_node *n, const char *hint, float v,
                                      const char **name);

/* Converts a TensorProto (initializer, Constant value) into a constant named `name`. */
kiln_status onnx_tensor_to_constant(onnx_ctx *c, const Onnx__TensorProto *t, const char *name);
/* Reads a (small) TensorProto's first element as a double, and its kiln dtype. */
kiln_status onnx_tensor_scalar(onnx_ctx *c, const Onnx__TensorProto *t, const char *what,
                               double *value, kiln_dtype *dtype);

/* The node's attribute of this name, NULL if absent. */
const kiln_attr *onnx_attr(const onnx_node *n, const char *name);
/* The raw AttributeProto (for tensor-valued attributes), NULL if absent. */
const Onnx__AttributeProto *onnx_attr_proto(const onnx_node *n, const char *name);

/* Adds a layer to the network (errors name the ONNX node). */
kiln_status onnx_emit(onnx_ctx *c, const onnx_node *n, const char *op, const char *name,
                      const char *const *in, int32_t n_in, const char *const *out, int32_t n_out,
                      const kiln_attr *attrs, int32_t n_attrs);

/* Converts one node (opset adaptations, then onnx_emit). */
kiln_status onnx_convert_node(onnx_ctx *c, const onnx_node *n);
/* Whether the converter handles this op of the default domain at this opset. */
bool onnx_op_known(const char *op, int64_t opset);

#endif
