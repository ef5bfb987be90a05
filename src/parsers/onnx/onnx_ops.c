/* onnx_ops.c - per-op conversion from any supported opset to kiln's op table, which
 * follows ONNX's newest forms: attributes that later opsets turned into inputs become
 * constant inputs, renamed and retired ops map onto their successors, and ops with
 * changed semantics (pre-13 Softmax) are rewritten. Ops without a row here pass through
 * by name with their attributes. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "parsers/onnx/onnx_import.h"

#define MAX_ATTRS 32

/* A copy of the node's attributes minus some, plus room for more. */
typedef struct attr_list {
    kiln_attr a[MAX_ATTRS];
    int32_t n;
} attr_list;

static void attrs_without(const onnx_node *n, attr_list *l, const char *const *drop)
{
    l->n = 0;
    for (int32_t i = 0; i < n->n_attrs && l->n < MAX_ATTRS; i++) {
        bool skip = false;
        for (const char *const *d = drop; d && *d; d++)
            if (strcmp(n->attrs[i].name, *d) == 0) skip = true;
        if (!skip) l->a[l->n++] = n->attrs[i];
    }
}

static void attrs_add(attr_list *l, kiln_attr a)
{
    for (int32_t i = 0; i < l->n; i++)
        if (strcmp(l->a[i].name, a.name) == 0) {
            l->a[i] = a;
            return;
        }
    if (l->n < MAX_ATTRS) l->a[l->n++] = a;
}

static kiln_status emit_same(onnx_ctx *c, const onnx_node *n, const attr_list *l)
{
    return onnx_emit(c, n, n->op, n->name, n->in, n->n_in, n->out, n->n_out, l->a, l->n);
}

static kiln_status node_error(onnx_ctx *c, const onnx_node *n, kiln_status st, const char *what)
{
    return kiln_error(st, "%s: node '%s' (%s, opset %lld): %s", c->source, n->name, n->op,
                      (long long)n->opset, what);
}

/* Inputs of the node with `extra` appended at position `at` (growing with "" as needed). */
typedef struct input_list {
    const char *v[16];
    int32_t n;
} input_list;

static void inputs_from(const onnx_node *n, input_list *l)
{
    l->n = n->n_in < 16 ? n->n_in : 16;
    for (int32_t i = 0; i < l->n; i++) l->v[i] = n->in[i];
}

static void inputs_set(input_list *l, int32_t at, const char *name)
{
    while (l->n <= at && l->n < 16) l->v[l->n++] = "";
    if (at < 16) l->v[at] = name;
}

/* An INTS attribute moved to input `at` as an i64 constant (when present). */
static kiln_status ints_to_input(onnx_ctx *c, const onnx_node *n, const char *attr, int32_t at,
                                 input_list *in)
{
    const kiln_attr *a = onnx_attr(n, attr);
    if (!a) return KILN_OK;
    if (a->type != KILN_ATTR_INTS)
        return node_error(c, n, KILN_ERR_PARSE, "attribute must be ints");
    const char *name;
    KILN_TRY(onnx_add_const_i64(c, n, attr, a->ints, a->count, &name));
    inputs_set(in, at, name);
    return KILN_OK;
}

/* ---- converters ---- */

typedef kiln_status (*convert_fn)(onnx_ctx *c, const onnx_node *n);

/* Attributes moved to inputs: Slice < 10, Squeeze/Unsqueeze/Split < 13, TopK < 10. */
static kiln_status conv_attrs_to_inputs(onnx_ctx *c, const onnx_node *n, const char *const *names,
                                        const int32_t *slots, int32_t count)
{
    input_list in;
    inputs_from(n, &in);
    for (int32_t i = 0; i < count; i++) KILN_TRY(ints_to_input(c, n, names[i], slots[i], &in));
    attr_list l;
    const char *drop[8] = {0};
    for (int32_t i = 0; i < count && i < 7; i++) drop[i] = names[i];
    attrs_without(n, &l, drop);
    return onnx_emit(c, n, n->op, n->name, in.v, in.n, n->out, n->n_out, l.a, l.n);
}

static kiln_status conv_slice(onnx_ctx *c, const onnx_node *n)
{
    if (n->opset >= 10) {
        attr_list l;
        attrs_without(n, &l, NULL);
        return emit_same(c, n, &l);
    }
    static const char *names[] = {"starts", "ends", "axes"};
    static const int32_t slots[] = {1, 2, 3};
    if (!onnx_attr(n, "starts") || !onnx_attr(n, "ends"))
        return node_error(c, n, KILN_ERR_PARSE, "needs attributes 'starts' and 'ends'");
    return conv_attrs_to_inputs(c, n, names, slots, 3);
}

static kiln_status conv_axes_input(onnx_ctx *c, const onnx_node *n)
{
    attr_list l;
    attrs_without(n, &l, NULL);
    if (n->opset >= 13) return emit_same(c, n, &l);
    static const char *names[] = {"axes"};
    static const int32_t slots[] = {1};
    return conv_attrs_to_inputs(c, n, names, slots, 1);
}

static kiln_status conv_split(onnx_ctx *c, const onnx_node *n)
{
    attr_list l;
    attrs_without(n, &l, NULL);
    if (n->opset >= 13) return emit_same(c, n, &l);
    static const char *names[] = {"split"};
    static const int32_t slots[] = {1};
    return conv_attrs_to_inputs(c, n, names, slots, 1);
}

static kiln_status conv_topk(onnx_ctx *c, const onnx_node *n)
{
    attr_list l;
    attrs_without(n, &l, NULL);
    if (n->opset >= 10) return emit_same(c, n, &l);
    const kiln_attr *k = onnx_attr(n, "k");
    if (!k || k->type != KILN_ATTR_INT)
        return node_error(c, n, KILN_ERR_PARSE, "needs attribute 'k'");
    const char *name;
    KILN_TRY(onnx_add_const_i64(c, n, "k", &k->i, 1, &name));
    input_list in;
    inputs_from(n, &in);
    inputs_set(&in, 1, name);
    static const char *drop[] = {"k", NULL};
    attrs_without(n, &l, drop);
    return onnx_emit(c, n, "TopK", n->name, in.v, in.n, n->out, n->n_out, l.a, l.n);
}

/* Clip < 11: min and max attributes become scalar inputs. */
static kiln_status conv_clip(onnx_ctx *c, const onnx_node *n)
{
    attr_list l;
    attrs_without(n, &l, NULL);
    if (n->opset >= 11) return emit_same(c, n, &l);
    input_list in;
    inputs_from(n, &in);
    const kiln_attr *lo = onnx_attr(n, "min"), *hi = onnx_attr(n, "max");
    const char *name;
    if (lo) {
        KILN_TRY(onnx_add_const_f32_scalar(c, n, "min", lo->f, &name));
        inputs_set(&in, 1, name);
    }
    if (hi) {
        KILN_TRY(onnx_add_const_f32_scalar(c, n, "max", hi->f, &name));
        inputs_set(&in, 2, name);
    }
    static const char *drop[] = {"min", "max", NULL};
    attrs_without(n, &l, drop);
    return onnx_emit(c, n, "Clip", n->name, in.v, in.n, n->out, n->n_out, l.a, l.n);
}

/* Pad < 11: pads and value attributes become inputs. */
static kiln_status conv_pad(onnx_ctx *c, const onnx_node *n)
{
    attr_list l;
    attrs_without(n, &l, NULL);
    if (n->opset >= 11) return emit_same(c, n, &l);
    input_list in;
    inputs_from(n, &in);
    if (!onnx_attr(n, "pads")) return node_error(c, n, KILN_ERR_PARSE, "needs attribute 'pads'");
    KILN_TRY(ints_to_input(c, n, "pads", 1, &in));
    const kiln_attr *v = onnx_attr(n, "value");
    if (v) {
        const char *name;
        KILN_TRY(onnx_add_const_f32_scalar(c, n, "value", v->f, &name));
        inputs_set(&in, 2, name);
    }
    static const char *drop[] = {"pads", "value", NULL};
    attrs_without(n, &l, drop);
    return onnx_emit(c, n, "Pad", n->name, in.v, in.n, n->out, n->n_out, l.a, l.n);
}

/* Softmax, LogSoftmax and Hardmax before opset 13 flatten the input to 2-D at `axis`
 * (default 1), normalize each row, and restore the shape. */
static kiln_status conv_softmax(onnx_ctx *c, const onnx_node *n)
{
    attr_list l;
    attrs_without(n, &l, NULL);
    if (n->opset >= 13) return emit_same(c, n, &l);
    const kiln_attr *ax = onnx_attr(n, "axis");
    int64_t axis = ax && ax->type == KILN_ATTR_INT ? ax->i : 1;
    const char *shape = onnx_fresh_name(c, n->name, "shape");
    const char *flat = onnx_fresh_name(c, n->name, "flat");
    const char *norm = onnx_fresh_name(c, n->name, "rows");
    if (!shape || !flat || !norm) return KILN_ERR_OUT_OF_MEMORY;
    const char *x[] = {n->in[0]};
    KILN_TRY(onnx_emit(c, n, "Shape", NULL, x, 1, &shape, 1, NULL, 0));
    kiln_attr fa = KILN_ATTR_I("axis", axis);
    KILN_TRY(onnx_emit(c, n, "Flatten", NULL, x, 1, &flat, 1, &fa, 1));
    kiln_attr sa = KILN_ATTR_I("axis", -1);
    KILN_TRY(onnx_emit(c, n, n->op, NULL, &flat, 1, &norm, 1, &sa, 1));
    const char *rin[] = {norm, shape};
    return onnx_emit(c, n, "Reshape", n->name, rin, 2, n->out, 1, NULL, 0);
}

static kiln_status conv_batchnorm(onnx_ctx *c, const onnx_node *n)
{
    const kiln_attr *sp = onnx_attr(n, "spatial");
    if (sp && sp->i != 1)
        return node_error(c, n, KILN_ERR_UNSUPPORTED,
                          "spatial=0 (per-activation statistics) is not supported");
    const kiln_attr *test = onnx_attr(n, "is_test");
    if (n->opset < 7 && (!test || test->i == 0))
        return node_error(c, n, KILN_ERR_UNSUPPORTED, "training mode is not supported");
    if (n->n_out > 1)
        return node_error(c, n, KILN_ERR_UNSUPPORTED,
                          "running mean/variance outputs (training mode) are not supported");
    static const char *drop[] = {"spatial", "is_test", "consumed_inputs", NULL};
    attr_list l;
    attrs_without(n, &l, drop);
    return emit_same(c, n, &l);
}

/* Dropout is the identity at inference; its optional mask is all true. */
static kiln_status conv_dropout(onnx_ctx *c, const onnx_node *n)
{
    if (n->n_in >= 3 && *n->in[2]) {
        int32_t v = ir_graph_find_value(c->g, n->in[2]);
        const ir_value *tm = v >= 0 ? &c->g->values[v] : NULL;
        if (!tm || tm->kind != IR_VALUE_CONSTANT || tm->nbytes < 1 ||
            ((const uint8_t *)tm->data)[0])
            return node_error(c, n, KILN_ERR_UNSUPPORTED,
                              "training_mode must be a constant false at inference");
    }
    const char *x[] = {n->in[0]};
    KILN_TRY(onnx_emit(c, n, "Identity", n->name, x, 1, n->out, 1, NULL, 0));
    if (n->n_out < 2) return KILN_OK;
    const char *shape = onnx_fresh_name(c, n->name, "shape");
    if (!shape) return KILN_ERR_OUT_OF_MEMORY;
    KILN_TRY(onnx_emit(c, n, "Shape", NULL, x, 1, &shape, 1, NULL, 0));
    kiln_attr a[] = {KILN_ATTR_F("value", 1.0f), KILN_ATTR_I("dtype", KILN_DTYPE_BOOL)};
    return onnx_emit(c, n, "ConstantOfShape", NULL, &shape, 1, &n->out[1], 1, a, 2);
}

/* Constant: a tensor, or a scalar or list given as value_float(s) / value_int(s). */
static kiln_status conv_constant(onnx_ctx *c, const onnx_node *n)
{
    if (n->n_out != 1) return node_error(c, n, KILN_ERR_PARSE, "must have one output");
    const Onnx__AttributeProto *t = onnx_attr_proto(n, "value");
    if (t && t->t) return onnx_tensor_to_constant(c, t->t, n->out[0]);
    const kiln_attr *a;
    kiln_status st;
    if ((a = onnx_attr(n, "value_float")) != NULL) {
        kiln_dims s = {0, {0}};
        st = ir_graph_add_constant(c->g, n->out[0], KILN_DTYPE_F32, &s, &a->f, 4, true, NULL);
    } else if ((a = onnx_attr(n, "value_int")) != NULL) {
        kiln_dims s = {0, {0}};
        st = ir_graph_add_constant(c->g, n->out[0], KILN_DTYPE_I64, &s, &a->i, 8, true, NULL);
    } else if ((a = onnx_attr(n, "value_floats")) != NULL) {
        kiln_dims s = {1, {a->count}};
        st = ir_graph_add_constant(c->g, n->out[0], KILN_DTYPE_F32, &s,
                                   a->count ? (const void *)a->floats : "", 4 * (size_t)a->count,
                                   true, NULL);
    } else if ((a = onnx_attr(n, "value_ints")) != NULL) {
        kiln_dims s = {1, {a->count}};
        st = ir_graph_add_constant(c->g, n->out[0], KILN_DTYPE_I64, &s,
                                   a->count ? (const void *)a->ints : "", 8 * (size_t)a->count,
                                   true, NULL);
    } else {
        return node_error(c, n, KILN_ERR_UNSUPPORTED,
                          "needs a value, value_float(s) or value_int(s) attribute (strings and "
                          "sparse tensors are not supported)");
    }
    if (st) kiln_error_prefix(st, "%s: node '%s' (Constant): ", c->source, n->name);
    return st;
}

/* ConstantOfShape's value is a one-element tensor; kiln's op takes its value and dtype
 * as plain attributes. */
static kiln_status conv_constant_of_shape(onnx_ctx *c, const onnx_node *n)
{
    const Onnx__AttributeProto *t = onnx_attr_proto(n, "value");
    double v = 0.0;
    kiln_dtype dt = KILN_DTYPE_F32;
    if (t && t->t) KILN_TRY(onnx_tensor_scalar(c, t->t, "ConstantOfShape value", &v, &dt));
    kiln_attr a[] = {KILN_ATTR_F("value", (float)v), KILN_ATTR_I("dtype", dt)};
    return onnx_emit(c, n, "ConstantOfShape", n->name, n->in, n->n_in, n->out, n->n_out, a, 2);
}

/* Resize 10 and Upsample: (X, scales) with the transform those versions used (asymmetric,
 * nearest rounding down); Upsample 7 keeps scales in an attribute. */
static kiln_status conv_resize(onnx_ctx *c, const onnx_node *n)
{
    bool upsample = strcmp(n->op, "Upsample") == 0;
    attr_list l;
    attrs_without(n, &l, NULL);
    if (!upsample && n->opset >= 11) return emit_same(c, n, &l);
    input_list in;
    in.n = 0;
    inputs_set(&in, 0, n->in[0]);
    inputs_set(&in, 1, "");
    if (upsample && n->opset < 9) {
        const kiln_attr *s = onnx_attr(n, "scales");
        if (!s || s->type != KILN_ATTR_FLOATS)
            return node_error(c, n, KILN_ERR_PARSE, "needs attribute 'scales'");
        kiln_dims d = {1, {s->count}};
        const char *name;
        KILN_TRY(onnx_add_const(c, n, "scales", KILN_DTYPE_F32, &d,
                                s->count ? (const void *)s->floats : "", 4 * (size_t)s->count,
                                &name));
        inputs_set(&in, 2, name);
    } else {
        if (n->n_in < 2) return node_error(c, n, KILN_ERR_PARSE, "needs a scales input");
        inputs_set(&in, 2, n->in[1]);
    }
    const kiln_attr *mode = onnx_attr(n, "mode");
    const char *m = mode && mode->type == KILN_ATTR_STRING ? mode->s : "nearest";
    if (strcmp(m, "bilinear") == 0 || strcmp(m, "linear") == 0) m = "linear";
    static const char *drop[] = {"scales", "mode", NULL};
    attrs_without(n, &l, drop);
    attrs_add(&l, KILN_ATTR_S("mode", m));
    attrs_add(&l, KILN_ATTR_S("coordinate_transformation_mode", "asymmetric"));
    attrs_add(&l, KILN_ATTR_S("nearest_mode", "floor"));
    return onnx_emit(c, n, "Resize", n->name, in.v, in.n, n->out, n->n_out, l.a, l.n);
}

/* Scatter (opset 9-10) is ScatterElements under its old name. */
static kiln_status conv_scatter(onnx_ctx *c, const onnx_node *n)
{
    attr_list l;
    attrs_without(n, &l, NULL);
    return onnx_emit(c, n, "ScatterElements", n->name, n->in, n->n_in, n->out, n->n_out, l.a, l.n);
}

/* Attributes that old opsets carried and later ones dropped, harmless to ignore. */
static kiln_status conv_drop_legacy(onnx_ctx *c, const onnx_node *n)
{
    static const char *drop[] = {"consumed_inputs", "broadcast", NULL};
    const kiln_attr *b = onnx_attr(n, "axis");
    if (onnx_attr(n, "broadcast") && b && (strcmp(n->op, "Add") == 0 || strcmp(n->op, "Mul") == 0))
        return node_error(c, n, KILN_ERR_UNSUPPORTED,
                          "legacy broadcast with an axis is not supported");
    attr_list l;
    attrs_without(n, &l, drop);
    return emit_same(c, n, &l);
}

typedef struct converter {
    const char *op;
    int32_t since; /* lowest opset the converter handles */
    convert_fn fn;
} converter;

static const converter g_conv[] = {
    {"Slice", 1, conv_slice},
    {"Squeeze", 1, conv_axes_input},
    {"Unsqueeze", 1, conv_axes_input},
    {"Split", 1, conv_split},
    {"TopK", 1, conv_topk},
    {"Clip", 1, conv_clip},
    {"Pad", 1, conv_pad},
    {"Softmax", 1, conv_softmax},
    {"LogSoftmax", 1, conv_softmax},
    {"Hardmax", 1, conv_softmax},
    {"BatchNormalization", 1, conv_batchnorm},
    {"Dropout", 1, conv_dropout},
    {"Constant", 1, conv_constant},
    {"ConstantOfShape", 9, conv_constant_of_shape},
    {"Resize", 10, conv_resize},
    {"Upsample", 7, conv_resize},
    {"Scatter", 9, conv_scatter},
    {"Gemm", 1, conv_drop_legacy},
    {"Add", 1, conv_drop_legacy},
    {"Sub", 1, conv_drop_legacy},
    {"Mul", 1, conv_drop_legacy},
    {"Div", 1, conv_drop_legacy},
};

static const converter *find_converter(const char *op)
{
    for (size_t i = 0; i < sizeof g_conv / sizeof *g_conv; i++)
        if (strcmp(g_conv[i].op, op) == 0) return &g_conv[i];
    return NULL;
}

/* kiln's own ops (caffe.*) carry another framework's semantics; ONNX names have no dot. */
static bool table_op_importable(const char *op) { return strchr(op, '.') == NULL; }

bool onnx_op_known(const char *op, int64_t opset)
{
    const converter *cv = find_converter(op);
    if (cv) {
        if (opset < cv->since) return false;
        /* Upsample left the standard at opset 10. */
        if (strcmp(op, "Upsample") == 0 && opset >= 10) return false;
        if (strcmp(op, "Scatter") == 0 && opset >= 11) return false;
        return strcmp(op, "Constant") == 0 || strcmp(op, "Dropout") == 0 ||
               strcmp(op, "Upsample") == 0 || strcmp(op, "Scatter") == 0 || ir_op_find(op) != NULL;
    }
    return ir_op_find(op) != NULL && table_op_importable(op);
}

kiln_status onnx_convert_node(onnx_ctx *c, const onnx_node *n)
{
    const converter *cv = find_converter(n->op);
    if (cv) return cv->fn(c, n);
    attr_list l;
    attrs_without(n, &l, NULL);
    if (n->n_attrs > MAX_ATTRS)
        return node_error(c, n, KILN_ERR_UNSUPPORTED, "too many attributes");
    return emit_same(c, n, &l);
}
