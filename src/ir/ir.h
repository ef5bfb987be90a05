/* ir.h - kiln's graph: values (tensors) and nodes (op applications), the op schema
 * table (arity, attributes with defaults, shape inference, reference evaluation), the
 * verifier and topological order. */
#ifndef KILN_IR_H
#define KILN_IR_H

#include "core/core.h"

/* ---- tensors as kernels see them ---- */

/* How a tensor's elements lie in memory; its shape is always the logical (ONNX) one.
 * PLAIN: row-major in that shape. NCHWc, coded by its block c: a tensor of shape
 * [N, C, D1, ...] (rank 3 to 5) stored as [N, ceil(C/c), D1, ..., c], channel ch in lane
 * ch % c of block ch / c; the lanes past C ("padding") hold zeros (docs/ARCHITECTURE.md,
 * "Layouts": every kernel writing a blocked tensor keeps them so). */
typedef enum ir_layout {
    IR_LAYOUT_PLAIN = 0,
    IR_LAYOUT_NCHW4C = 4,
    IR_LAYOUT_NCHW8C = 8,
    IR_LAYOUT_NCHW16C = 16
} ir_layout;

/* A dense tensor view, row-major unless `layout` says otherwise (zero: plain). An absent
 * optional input has dtype UNDEFINED and data NULL. */
typedef struct ir_tensor {
    kiln_dtype dtype;
    kiln_dims shape;
    void *data;
    ir_layout layout;
} ir_tensor;

static inline int64_t ir_tensor_count(const ir_tensor *t) { return kiln_dims_count(&t->shape); }
static inline bool ir_tensor_present(const ir_tensor *t)
{
    return t->dtype != KILN_DTYPE_UNDEFINED;
}

/* ---- graph ---- */

typedef enum ir_value_kind {
    IR_VALUE_ACTIVATION = 0, /* produced by a node */
    IR_VALUE_INPUT = 1,      /* a network input */
    IR_VALUE_CONSTANT = 2    /* weights or a folded value; data holds it */
} ir_value_kind;

typedef struct ir_value {
    const char *name;
    ir_value_kind kind;
    kiln_dtype dtype; /* UNDEFINED until inferred */
    kiln_dims shape;
    bool shape_known;
    const void *data; /* constants: nbytes of dense data, not owned by the value */
    size_t nbytes;
    int32_t producer; /* node index, -1 for inputs and constants */
    bool is_output;
    ir_layout layout; /* set by the builder's layout step; inputs and outputs stay plain */
    /* Dynamic graphs (ir_graph.dynamic): `shape` is the shape at the largest input shapes
     * of the profiles; the builder also infers shapes at each profile's min and opt. */
    uint32_t dyn_dims;      /* bit k: dimension k changes within the profiles; IR_DIMS_UNKNOWN
                               for values a pass made (treated as changing) */
    uint64_t shape_sig;     /* a hash of the value's shape at every probe */
    const void *probe_data; /* a small integer value computed from shapes (Shape -> Gather
                               -> Concat): known at the build's shapes, for inference only;
                               the value is an activation recomputed at run time */
} ir_value;

#define IR_DIMS_UNKNOWN UINT32_MAX
/* The largest value a dynamic engine computes from shapes ahead of a run (shape
 * arithmetic: integer tensors of at most this many bytes). */
#define IR_SHAPE_VALUE_MAX_BYTES 4096
static inline bool ir_is_shape_value(kiln_dtype dtype, uint64_t bytes)
{
    return (dtype == KILN_DTYPE_I64 || dtype == KILN_DTYPE_I32) &&
           bytes <= IR_SHAPE_VALUE_MAX_BYTES;
}

struct ir_op;

typedef struct ir_node {
    const char *name;
    const struct ir_op *op;
    int32_t n_in, n_out;
    int32_t *in;  /* value ids; -1 for an absent optional input */
    int32_t *out; /* value ids */
    int32_t n_attrs;
    kiln_attr *attrs; /* every scalar attribute of the schema is present (defaults filled) */
    bool dead;        /* removed by a pass; skipped everywhere */
    /* Names of the network's layers this node stands for after fusion (the node's own
     * name first); n_fused 0 means just itself. */
    int32_t n_fused;
    const char **fused_from;
} ir_node;

typedef struct ir_graph {
    kiln_arena arena; /* names, attributes, arrays of nodes, owned constant data */
    ir_value *values;
    int32_t n_values, cap_values;
    ir_node *nodes;
    int32_t n_nodes, cap_nodes;
    int32_t *inputs; /* value ids of network inputs, in declaration order */
    int32_t n_inputs, cap_inputs;
    int32_t *outputs; /* value ids of network outputs, in marking order */
    int32_t n_outputs, cap_outputs;
    kiln_strmap value_by_name;
    kiln_strmap node_by_name;
    int32_t auto_names; /* counter for generated names */
    bool dynamic;       /* some input's shape changes within the build's profiles */
} ir_graph;

void ir_graph_init(ir_graph *g);
void ir_graph_free(ir_graph *g);
/* Deep copy of structure; constant data pointers are shared with `src`. */
kiln_status ir_graph_clone(const ir_graph *src, ir_graph *dst);

/* Value id by name, -1 if none. */
int32_t ir_graph_find_value(const ir_graph *g, const char *name);
/* Adds a value (name must be new). */
kiln_status ir_graph_add_value(ir_graph *g, const char *name, ir_value_kind kind, int32_t *id);
kiln_status ir_graph_add_input(ir_graph *g, const char *name, kiln_dtype dtype,
                               const kiln_dims *shape);
/* `copy`: duplicate data into the graph's arena; otherwise the caller keeps it alive. */
kiln_status ir_graph_add_constant(ir_graph *g, const char *name, kiln_dtype dtype,
                                  const kiln_dims *shape, const void *data, size_t nbytes,
                                  bool copy, int32_t *id);
/* Adds a node; checks the op exists, arity, and attribute names and types against the
 * schema, fills attribute defaults. Output names must be new values. */
kiln_status ir_graph_add_node(ir_graph *g, const char *op, const char *name,
                              const char *const *inputs, int32_t n_in, const char *const *outputs,
                              int32_t n_out, const kiln_attr *attrs, int32_t n_attrs, int32_t *id);
kiln_status ir_graph_mark_output(ir_graph *g, const char *name);

/* Checks the graph is well formed: every input of a node is a known value produced
 * before or by no node, no value has two producers, no cycles, outputs exist.
 * The message names the node at fault. */
kiln_status ir_graph_verify(const ir_graph *g);
/* Node ids in an order where producers come first (stable: keeps insertion order
 * where possible). `order` has room for n_nodes; returns the count of live nodes. */
kiln_status ir_graph_topo_order(const ir_graph *g, int32_t *order, int32_t *count);

/* Sets this thread's error with the node's name and op in front:
 * "node 'conv_3' (Conv): kernel shape 3x3 needs 4-D weights, got 2-D". */
kiln_status ir_node_error(const ir_node *n, kiln_status st, const char *fmt, ...) KILN_PRINTF(3, 4);

/* ---- attributes ---- */

const kiln_attr *ir_attr_find(const ir_node *n, const char *name);
/* "int", "float", "string", "ints", "floats". */
const char *ir_attr_type_name(kiln_attr_type t);
int64_t ir_attr_int(const ir_node *n, const char *name);        /* 0 if absent */
float ir_attr_float(const ir_node *n, const char *name);        /* 0 if absent */
const char *ir_attr_string(const ir_node *n, const char *name); /* "" if absent */
/* NULL (and *count 0) if absent. */
const int64_t *ir_attr_ints(const ir_node *n, const char *name, int32_t *count);
const float *ir_attr_floats(const ir_node *n, const char *name, int32_t *count);

/* ---- op schema ---- */

/* Shape inference: fills out[i].dtype and out[i].shape from the inputs. An input's
 * data is non-NULL when its value is known at build time (a constant); ops whose
 * output shape depends on an input's values (Reshape, Slice, ...) need that and fail
 * with a clear message otherwise. */
typedef struct ir_infer {
    const ir_node *node;
    int32_t n_in, n_out;
    const ir_tensor *in;
    ir_tensor *out;
} ir_infer;

typedef kiln_status (*ir_infer_fn)(ir_infer *c);
/* Reference evaluation: outputs are allocated by the caller with the inferred dtypes
 * and shapes; the function fills out[i].data. No allocation unless unavoidable. */
typedef kiln_status (*ir_eval_fn)(const ir_node *n, const ir_tensor *in, int32_t n_in,
                                  ir_tensor *out, int32_t n_out);

typedef struct ir_attr_def {
    const char *name;
    kiln_attr_type type;
    bool required;
    int64_t i;     /* default of an INT */
    float f;       /* default of a FLOAT */
    const char *s; /* default of a STRING */
} ir_attr_def;

enum {
    /* The outputs depend only on input shapes, not values (Shape): foldable at build
     * time whenever the input shapes are known. */
    IR_OP_SHAPE_ONLY = 1u << 0,
    /* Output 0 may share memory with input 0 (same bytes: Reshape, Flatten, ...). */
    IR_OP_ALIAS = 1u << 1,
    /* Output 0 may overwrite input 0 (same size): every kernel of the op reads x[i] before
     * it writes y[i] and tolerates in[0].data == out[0].data (unary elementwise ops). */
    IR_OP_INPLACE = 1u << 2,
    /* When every input has the output's shape (nothing broadcasts), output element i is a
     * function of input elements i alone: binary and variadic elementwise ops. */
    IR_OP_ELEMENTWISE = 1u << 3
};

typedef struct ir_op {
    const char *name;
    int8_t min_in, max_in, min_out, max_out;
    const ir_attr_def *attrs;
    int32_t n_attrs;
    ir_infer_fn infer;
    ir_eval_fn eval;
    uint32_t flags;
} ir_op;

/* The op by (ONNX) name, NULL if kiln has none. */
const ir_op *ir_op_find(const char *name);
/* All ops, for docs and tools: the i-th op, NULL past the end. */
const ir_op *ir_op_at(int32_t i);

/* Each op file defines one group: `const ir_op ir_ops_<group>[]` and its count. */
#define IR_OP_GROUP(group)                                                                         \
    extern const ir_op ir_ops_##group[];                                                           \
    extern const int32_t ir_ops_##group##_count;

IR_OP_GROUP(elementwise)
IR_OP_GROUP(nn)
IR_OP_GROUP(linalg)
IR_OP_GROUP(shape)
IR_OP_GROUP(extra)
IR_OP_GROUP(caffe)
IR_OP_GROUP(fused)
IR_OP_GROUP(layout)

/* ---- layouts (src/ir/ops/layout.c, with the kiln.Reorder op) ---- */

/* "plain", "nchw4c", "nchw8c", "nchw16c"; "?" for a code that is none of them. */
const char *ir_layout_name(ir_layout l);
/* The layout ir_layout_name calls `name`; false if none. */
bool ir_layout_parse(const char *name, ir_layout *out);
/* Whether `code` is one of ir_layout's values. */
bool ir_layout_known(int64_t code);
/* The channel block of a layout (0 for plain). */
static inline int64_t ir_layout_block(ir_layout l) { return l == IR_LAYOUT_PLAIN ? 0 : (int64_t)l; }
/* Elements a tensor of `shape` occupies in layout `l` (channels padded up to the block);
 * false if the layout does not fit the shape (a blocked one needs rank 3 to 5 and known
 * dims) or the count passes KILN_MAX_ELEMENTS. */
bool ir_layout_numel(ir_layout l, const kiln_dims *shape, int64_t *count);
/* The storage of `shape` in layout `l` as a plain shape: [N, ceil(C/c), D1, ..., c] for a
 * blocked layout, `shape` itself for plain. For shapes ir_layout_numel accepts. */
kiln_dims ir_layout_storage_shape(ir_layout l, const kiln_dims *shape);
/* Elements of t's storage (its count when plain). */
int64_t ir_tensor_storage_count(const ir_tensor *t);
/* Sets the padding lanes of a blocked tensor to zero bytes (nothing to do when plain or
 * when C is a multiple of the block). */
void ir_layout_zero_padding(ir_tensor *t);

/* ---- sliding windows (src/ir/ops/nn.c) ---- */

#define IR_MAX_SPATIAL (KILN_MAX_RANK - 2)

/* A window sliding over the spatial dims of a Conv or pool layer, with the pads in use. */
typedef struct ir_window {
    int32_t ns; /* spatial dims */
    int64_t kernel[IR_MAX_SPATIAL], stride[IR_MAX_SPATIAL], dilation[IR_MAX_SPATIAL];
    int64_t pad_begin[IR_MAX_SPATIAL], pad_end[IR_MAX_SPATIAL];
    int64_t in[IR_MAX_SPATIAL], out[IR_MAX_SPATIAL];
} ir_window;

/* The window of a Conv, kiln.Conv, MaxPool or AveragePool layer with these inputs, as its
 * shape inference and reference kernel resolve it (defaults, auto_pad, ceil_mode), so that
 * other kernels of these ops compute the same thing. Fails naming the node for other ops. */
kiln_status ir_window_of(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_window *w);

/* The epilogue of a kiln.Conv, kiln.Gemm or kiln.MatMul layer, in place over `count`
 * values of its output: the residual z added (NULL: none), then the activation its
 * attributes name, as its reference kernel applies them (src/ir/ops/fused.c). */
kiln_status ir_fused_epilogue(const ir_node *n, float *y, int64_t count, const float *z);
/* The activation a fused layer's `activation` attribute names, as an index in the order
 * "", Relu, LeakyRelu, Clip, Sigmoid, HardSwish, HardSigmoid, Silu, Gelu, GeluTanh, Tanh,
 * Elu (src/ir/ops/fused_impl.h `fused_act`); -1 for an unknown name. */
int32_t ir_fused_act_code(const ir_node *n);

/* ---- helpers shared by op files ---- */

/* numpy broadcasting of two shapes; false if they do not broadcast. An unknown
 * dimension (-1) takes the other side's size, as ONNX shape inference does. */
bool ir_broadcast(const kiln_dims *a, const kiln_dims *b, kiln_dims *out);
/* Offset into a tensor of shape `in` (right-aligned against `out`, broadcast dims
 * repeat) for each linear index of `out`: fills `strides` with per-dim strides of
 * `in` as seen from `out` (0 where broadcast). `strides` has out->rank entries. */
void ir_broadcast_strides(const kiln_dims *in, const kiln_dims *out, int64_t *strides);
/* Dot product of two float vectors with eight independent partial sums, so compilers
 * vectorize it without reassociating (which they may not do for floats on their own). */
float ir_dot_f32(const float *restrict x, const float *restrict y, int64_t n);
/* Normalizes a possibly negative axis into [0, rank); false if out of range. */
bool ir_axis(int64_t axis, int32_t rank, int32_t *out);
/* Reads an integer tensor (i64 or i32) as int64 values; false if the dtype is not an
 * integer type or the count exceeds `max`. */
bool ir_tensor_ints(const ir_tensor *t, int64_t *out, int64_t max, int64_t *count);
/* A float from element i of an f32/i64/i32/bool/u8/i8 tensor. */
double ir_tensor_get(const ir_tensor *t, int64_t i);
/* Stores v into element i, converting to the tensor's dtype. */
void ir_tensor_set(ir_tensor *t, int64_t i, double v);

/* Infer helpers: copy input 0's dtype and shape to output 0 (elementwise unary ops). */
kiln_status ir_infer_same_as_input(ir_infer *c);

#endif /* KILN_IR_H */
