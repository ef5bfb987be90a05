/* caffe_import.c - Caffe deploy prototxt + caffemodel -> kiln network: decoding (text and
 * binary NetParameter), legacy V1 layers, include/exclude rules, network inputs, the walk
 * over layers with in-place tops renamed, weights by layer name, and the outputs. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "parsers/caffe/caffe_import.h"
#include "parsers/caffe/prototxt.h"

/* ---- protobuf-c allocation through kiln's allocator (so tests can make it fail) ---- */

/* allocator_data points at a flag set when an allocation fails, so that a failed decode
 * can be told apart from a malformed file. */
static void *pb_alloc(void *data, size_t size)
{
    void *p = kiln_malloc(size);
    if (!p) *(bool *)data = true;
    return p;
}

static void pb_free(void *data, void *p) { kiln_free(p); }

/* ---- helpers the converters use ---- */

kiln_status caffe_layer_error(caffe_ctx *c, const caffe_layer *L, kiln_status st, const char *fmt,
                              ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return kiln_error(st, "%s: layer '%s' (%s): %s", c->source, L->name, L->type, msg);
}

void *caffe_scratch(caffe_ctx *c, size_t bytes)
{
    void *p = kiln_arena_alloc(&c->scratch, bytes ? bytes : 1);
    if (!p) kiln_error(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", c->source);
    return p;
}

static bool name_taken(const caffe_ctx *c, const char *name)
{
    return ir_graph_find_value(c->g, name) >= 0 ||
           kiln_strmap_get(&c->g->node_by_name, name) >= 0 ||
           kiln_strmap_get(&c->all_blobs, name) >= 0 || kiln_strmap_get(&c->tmp_names, name) >= 0;
}

const char *caffe_tmp(caffe_ctx *c, const caffe_layer *L, const char *hint)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%.200s::%.200s", L->name, hint);
    while (name_taken(c, buf))
        snprintf(buf, sizeof buf, "%.200s::%.200s_%d", L->name, hint, ++c->fresh);
    char *s = kiln_arena_strdup(&c->g->arena, buf);
    if (!s || kiln_strmap_put(&c->tmp_names, s, 0)) {
        kiln_error(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", c->source);
        return NULL;
    }
    return s;
}

/* Records the dtype and shape of value `v` (growing the table). */
static kiln_status set_shape(caffe_ctx *c, int32_t v, kiln_dtype dtype, const kiln_dims *d)
{
    if (v >= c->n_shape) {
        int32_t n = c->n_shape ? c->n_shape : 64;
        while (n <= v) n *= 2;
        kiln_dims *s = kiln_realloc(c->shape, sizeof *s * (size_t)n);
        if (!s) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", c->source);
        c->shape = s;
        kiln_dtype *t = kiln_realloc(c->dtype, sizeof *t * (size_t)n);
        if (!t) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", c->source);
        c->dtype = t;
        for (int32_t i = c->n_shape; i < n; i++) s[i].rank = -1;
        c->n_shape = n;
    }
    c->shape[v] = *d;
    c->dtype[v] = dtype;
    return KILN_OK;
}

const kiln_dims *caffe_shape(const caffe_ctx *c, const char *value)
{
    int32_t v = ir_graph_find_value(c->g, value);
    if (v < 0 || v >= c->n_shape || c->shape[v].rank < 0) return NULL;
    return &c->shape[v];
}

kiln_status caffe_input_shape(caffe_ctx *c, const caffe_layer *L, int32_t k, int32_t min_rank,
                              const kiln_dims **out)
{
    char b[KILN_DIMS_STR_MAX];
    *out = caffe_shape(c, L->in[k]);
    if (!*out)
        return caffe_layer_error(c, L, KILN_ERR_INTERNAL, "bottom '%s' has no known shape",
                                 L->p->bottom[k]);
    if ((*out)->rank < min_rank)
        return caffe_layer_error(c, L, KILN_ERR_SHAPE,
                                 "bottom '%s' is %s; expected rank %d or more", L->p->bottom[k],
                                 kiln_dims_str(*out, b, sizeof b), min_rank);
    return KILN_OK;
}

/* Runs the op's shape inference on the node just added, so that later converters know
 * the shapes of their inputs. The builder infers again; this only reads. */
static kiln_status infer_node(caffe_ctx *c, int32_t id)
{
    const ir_node *n = &c->g->nodes[id];
    ir_tensor in[16], out[16];
    if (n->n_in > 16 || n->n_out > 16)
        return ir_node_error(n, KILN_ERR_INTERNAL, "too many inputs or outputs to infer");
    memset(in, 0, sizeof in);
    memset(out, 0, sizeof out);
    for (int32_t k = 0; k < n->n_in; k++) {
        int32_t v = n->in[k];
        if (v < 0) continue;
        const ir_value *val = &c->g->values[v];
        if (v >= c->n_shape || c->shape[v].rank < 0)
            return ir_node_error(n, KILN_ERR_INTERNAL, "input '%s' has no shape", val->name);
        in[k].dtype = c->dtype[v];
        in[k].shape = c->shape[v];
        if (val->kind == IR_VALUE_CONSTANT) in[k].data = (void *)val->data;
    }
    ir_infer ic = {.node = n, .n_in = n->n_in, .n_out = n->n_out, .in = in, .out = out};
    KILN_TRY(n->op->infer(&ic));
    for (int32_t k = 0; k < n->n_out; k++) {
        int64_t count;
        char b[KILN_DIMS_STR_MAX];
        if (!kiln_dims_numel(&out[k].shape, &count))
            return ir_node_error(n, KILN_ERR_SHAPE, "output %d would be %s, too large", k,
                                 kiln_dims_str(&out[k].shape, b, sizeof b));
        KILN_TRY(set_shape(c, n->out[k], out[k].dtype, &out[k].shape));
    }
    return KILN_OK;
}

kiln_status caffe_emit(caffe_ctx *c, const caffe_layer *L, const char *op, const char *name,
                       const char *const *in, int32_t n_in, const char *const *out, int32_t n_out,
                       const kiln_attr *attrs, int32_t n_attrs)
{
    if (!name) name = caffe_tmp(c, L, op);
    if (!name) return KILN_ERR_OUT_OF_MEMORY;
    int32_t id = -1;
    kiln_status st = ir_graph_add_node(c->g, op, name, in, n_in, out, n_out, attrs, n_attrs, &id);
    if (!st) st = infer_node(c, id);
    if (st && st != KILN_ERR_OUT_OF_MEMORY)
        kiln_error_prefix(st, "%s: layer '%s' (%s): ", c->source, L->name, L->type);
    return st;
}

kiln_status caffe_emit1(caffe_ctx *c, const caffe_layer *L, const char *op, const char *name,
                        const char *in, const char *out, const kiln_attr *attrs, int32_t n_attrs)
{
    return caffe_emit(c, L, op, name, &in, 1, &out, 1, attrs, n_attrs);
}

kiln_status caffe_emit2(caffe_ctx *c, const caffe_layer *L, const char *op, const char *name,
                        const char *a, const char *b, const char *out)
{
    const char *in[2] = {a, b};
    return caffe_emit(c, L, op, name, in, 2, &out, 1, NULL, 0);
}

static kiln_status add_const(caffe_ctx *c, const caffe_layer *L, const char *hint, kiln_dtype dtype,
                             const kiln_dims *shape, const void *data, size_t nbytes,
                             const char **name)
{
    *name = caffe_tmp(c, L, hint);
    if (!*name) return KILN_ERR_OUT_OF_MEMORY;
    int32_t id = -1;
    kiln_status st = ir_graph_add_constant(c->g, *name, dtype, shape, data, nbytes, true, &id);
    if (!st) st = set_shape(c, id, dtype, shape);
    return st;
}

kiln_status caffe_const(caffe_ctx *c, const caffe_layer *L, const char *hint,
                        const kiln_dims *shape, const float *data, const char **name)
{
    size_t n = (size_t)kiln_dims_count(shape);
    return add_const(c, L, hint, KILN_DTYPE_F32, shape, data, n * sizeof(float), name);
}

kiln_status caffe_const_i64(caffe_ctx *c, const caffe_layer *L, const char *hint, const int64_t *v,
                            int32_t count, const char **name)
{
    kiln_dims d = {.rank = 1, .d = {count}};
    return add_const(c, L, hint, KILN_DTYPE_I64, &d, v, sizeof(int64_t) * (size_t)count, name);
}

kiln_status caffe_const_scalar(caffe_ctx *c, const caffe_layer *L, const char *hint, float v,
                               const char **name)
{
    kiln_dims d = {.rank = 0};
    return add_const(c, L, hint, KILN_DTYPE_F32, &d, &v, sizeof v, name);
}

/* The shape a blob declares: `shape`, else the legacy num/channels/height/width; rank -1
 * when it declares none. */
static kiln_dims blob_declared(const Caffe__BlobProto *b)
{
    kiln_dims d = {.rank = -1};
    if (b->shape && b->shape->n_dim <= KILN_MAX_RANK) {
        d.rank = (int32_t)b->shape->n_dim;
        for (size_t i = 0; i < b->shape->n_dim; i++) d.d[i] = b->shape->dim[i];
    } else if (b->has_num || b->has_channels || b->has_height || b->has_width) {
        d.rank = 4;
        d.d[0] = b->num, d.d[1] = b->channels, d.d[2] = b->height, d.d[3] = b->width;
    }
    return d;
}

kiln_status caffe_blob(caffe_ctx *c, const caffe_layer *L, int32_t i, const char *what,
                       const kiln_dims *want, const float **data)
{
    char a[KILN_DIMS_STR_MAX], b[KILN_DIMS_STR_MAX];
    const char *src = c->model_source;
    if (i >= L->n_blobs) {
        if (!src && L->n_blobs == 0)
            return caffe_layer_error(c, L, KILN_ERR_NOT_FOUND,
                                     "needs its %s, and no caffemodel was given", what);
        if (!L->in_model && L->n_blobs == 0)
            return kiln_error(KILN_ERR_NOT_FOUND,
                              "caffemodel '%s': has no layer '%s' (%s), which needs its %s", src,
                              L->name, L->type, what);
        return kiln_error(KILN_ERR_NOT_FOUND,
                          "caffemodel '%s': layer '%s' (%s): no blob %d (%s); the layer has %d "
                          "blob%s",
                          src ? src : c->source, L->name, L->type, i, what, L->n_blobs,
                          L->n_blobs == 1 ? "" : "s");
    }
    const Caffe__BlobProto *bp = L->blobs[i];
    const char *where = L->in_model ? "caffemodel" : "prototxt";
    const char *file = L->in_model ? src : c->source;
    size_t have = bp->n_data ? bp->n_data : bp->n_double_data;
    int64_t need = kiln_dims_count(want);
    if (bp->n_data && bp->n_double_data)
        return kiln_error(KILN_ERR_PARSE,
                          "%s '%s': layer '%s' (%s): %s hold both float and double values", where,
                          file, L->name, L->type, what);
    if ((int64_t)have != need)
        return kiln_error(KILN_ERR_PARSE,
                          "%s '%s': layer '%s' (%s): %s have %zu values, expected %s", where, file,
                          L->name, L->type, what, have, kiln_dims_str(want, a, sizeof a));
    kiln_dims decl = blob_declared(bp);
    int64_t decl_count;
    if (decl.rank >= 0 && (!kiln_dims_numel(&decl, &decl_count) || decl_count != need))
        return kiln_error(KILN_ERR_PARSE,
                          "%s '%s': layer '%s' (%s): %s declare shape %s, expected %s", where, file,
                          L->name, L->type, what, kiln_dims_str(&decl, a, sizeof a),
                          kiln_dims_str(want, b, sizeof b));
    if (bp->n_data) {
        *data = bp->data;
        return KILN_OK;
    }
    float *f = caffe_scratch(c, sizeof(float) * have);
    if (!f) return KILN_ERR_OUT_OF_MEMORY;
    for (size_t k = 0; k < have; k++) f[k] = (float)bp->double_data[k];
    *data = f;
    return KILN_OK;
}

/* ---- legacy V1 layers ---- */

static const char *v1_type_name(Caffe__V1LayerParameter__LayerType t)
{
    switch (t) {
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__ABSVAL: return "AbsVal";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__ACCURACY: return "Accuracy";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__ARGMAX: return "ArgMax";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__BNLL: return "BNLL";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__CONCAT: return "Concat";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__CONTRASTIVE_LOSS: return "ContrastiveLoss";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__CONVOLUTION: return "Convolution";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__DATA: return "Data";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__DECONVOLUTION: return "Deconvolution";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__DROPOUT: return "Dropout";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__DUMMY_DATA: return "DummyData";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__EUCLIDEAN_LOSS: return "EuclideanLoss";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__ELTWISE: return "Eltwise";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__EXP: return "Exp";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__FLATTEN: return "Flatten";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__HDF5_DATA: return "HDF5Data";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__HDF5_OUTPUT: return "HDF5Output";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__HINGE_LOSS: return "HingeLoss";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__IM2COL: return "Im2col";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__IMAGE_DATA: return "ImageData";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__INFOGAIN_LOSS: return "InfogainLoss";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__INNER_PRODUCT: return "InnerProduct";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__LRN: return "LRN";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__MEMORY_DATA: return "MemoryData";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__MULTINOMIAL_LOGISTIC_LOSS:
        return "MultinomialLogisticLoss";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__MVN: return "MVN";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__POOLING: return "Pooling";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__POWER: return "Power";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__RELU: return "ReLU";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__SIGMOID: return "Sigmoid";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__SIGMOID_CROSS_ENTROPY_LOSS:
        return "SigmoidCrossEntropyLoss";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__SILENCE: return "Silence";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__SOFTMAX: return "Softmax";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__SOFTMAX_LOSS: return "SoftmaxWithLoss";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__SPLIT: return "Split";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__SLICE: return "Slice";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__TANH: return "TanH";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__WINDOW_DATA: return "WindowData";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__THRESHOLD: return "Threshold";
    default: return "NONE";
    }
}

/* A V1 layer in the current form: the same parameter messages, shared (not copied). */
static Caffe__LayerParameter *from_v1(caffe_ctx *c, const Caffe__V1LayerParameter *v)
{
    Caffe__LayerParameter *p = caffe_scratch(c, sizeof *p);
    if (!p) return NULL;
    caffe__layer_parameter__init(p);
    p->name = v->name;
    p->type = (char *)v1_type_name(v->type);
    p->n_bottom = v->n_bottom, p->bottom = v->bottom;
    p->n_top = v->n_top, p->top = v->top;
    p->n_blobs = v->n_blobs, p->blobs = v->blobs;
    p->n_include = v->n_include, p->include = v->include;
    p->n_exclude = v->n_exclude, p->exclude = v->exclude;
    p->argmax_param = v->argmax_param;
    p->concat_param = v->concat_param;
    p->convolution_param = v->convolution_param;
    p->dropout_param = v->dropout_param;
    p->eltwise_param = v->eltwise_param;
    p->exp_param = v->exp_param;
    p->inner_product_param = v->inner_product_param;
    p->lrn_param = v->lrn_param;
    p->pooling_param = v->pooling_param;
    p->power_param = v->power_param;
    p->relu_param = v->relu_param;
    p->sigmoid_param = v->sigmoid_param;
    p->softmax_param = v->softmax_param;
    p->slice_param = v->slice_param;
    p->tanh_param = v->tanh_param;
    p->threshold_param = v->threshold_param;
    return p;
}

/* The layers of a net in the current form, V1 ones converted; a net holds one kind. */
static kiln_status net_layers(caffe_ctx *c, const Caffe__NetParameter *net, const char *what,
                              const Caffe__LayerParameter ***out, int32_t *count)
{
    *out = NULL;
    *count = 0;
    if (net->n_layer && net->n_layers)
        return kiln_error(KILN_ERR_PARSE,
                          "%s: the net mixes 'layer' and legacy 'layers' entries; upgrade it "
                          "with Caffe's upgrade_net_proto_text",
                          what);
    size_t n = net->n_layer ? net->n_layer : net->n_layers;
    if (n > (1u << 24)) return kiln_error(KILN_ERR_PARSE, "%s: %zu layers", what, n);
    const Caffe__LayerParameter **l = caffe_scratch(c, sizeof *l * (n + 1));
    if (!l) return KILN_ERR_OUT_OF_MEMORY;
    for (size_t i = 0; i < n; i++) {
        l[i] = net->n_layer ? net->layer[i] : from_v1(c, net->layers[i]);
        if (!l[i]) return KILN_ERR_OUT_OF_MEMORY;
    }
    *out = l;
    *count = (int32_t)n;
    return KILN_OK;
}

/* ---- include / exclude rules against the net's state (TEST phase by default) ---- */

static bool has_stage(const Caffe__NetState *s, const char *stage)
{
    for (size_t i = 0; s && i < s->n_stage; i++)
        if (s->stage[i] && stage && strcmp(s->stage[i], stage) == 0) return true;
    return false;
}

static bool rule_met(const Caffe__NetStateRule *r, const Caffe__NetState *s)
{
    Caffe__Phase phase = s && s->has_phase ? s->phase : CAFFE__PHASE__TEST;
    int32_t level = s ? s->level : 0;
    if (r->has_phase && r->phase != phase) return false;
    if (r->has_min_level && level < r->min_level) return false;
    if (r->has_max_level && level > r->max_level) return false;
    for (size_t i = 0; i < r->n_stage; i++)
        if (!has_stage(s, r->stage[i])) return false;
    for (size_t i = 0; i < r->n_not_stage; i++)
        if (has_stage(s, r->not_stage[i])) return false;
    return true;
}

/* As Caffe's Net::FilterNet: excluded by a met exclude rule unless an include rule is
 * met; with include rules, only a met one includes. */
static bool layer_included(const Caffe__LayerParameter *p, const Caffe__NetState *s)
{
    bool in = p->n_include == 0;
    for (size_t i = 0; i < p->n_exclude; i++)
        if (rule_met(p->exclude[i], s)) in = false;
    for (size_t i = 0; i < p->n_include; i++)
        if (rule_met(p->include[i], s)) in = true;
    return in;
}

/* ---- network inputs ---- */

/* Declares input `name` of shape `d`, unless the caller declared it before the import
 * (to build another batch size): then that declaration stands if only dim 0 differs. */
static kiln_status declare_input(caffe_ctx *c, const char *name, const kiln_dims *d)
{
    char a[KILN_DIMS_STR_MAX], b[KILN_DIMS_STR_MAX];
    int64_t count;
    if (!name || !*name) return kiln_error(KILN_ERR_PARSE, "%s: an input has no name", c->source);
    if (kiln_strmap_get(&c->blob, name) >= 0)
        return kiln_error(KILN_ERR_PARSE, "%s: input '%s' is declared twice", c->source, name);
    if (!kiln_dims_numel(d, &count)) /* negative or overflowing dims */
        return kiln_error(KILN_ERR_PARSE, "%s: input '%s' has shape %s", c->source, name,
                          kiln_dims_str(d, a, sizeof a));
    int32_t v = ir_graph_find_value(c->g, name);
    if (v >= 0 && c->g->values[v].kind == IR_VALUE_INPUT) {
        const kiln_dims *pre = &c->g->values[v].shape;
        bool fits = pre->rank == d->rank;
        for (int32_t k = 1; fits && k < d->rank; k++) fits = pre->d[k] == d->d[k];
        if (!fits || (pre->rank > 0 && pre->d[0] < 0))
            return kiln_error(KILN_ERR_SHAPE,
                              "%s: input '%s' is %s in the prototxt; the network declares it %s "
                              "(only the batch dimension may differ)",
                              c->source, name, kiln_dims_str(d, a, sizeof a),
                              kiln_dims_str(pre, b, sizeof b));
    } else {
        kiln_status st = ir_graph_add_input(c->g, name, KILN_DTYPE_F32, d);
        if (st) return kiln_error_prefix(st, "%s: ", c->source);
        v = ir_graph_find_value(c->g, name);
    }
    KILN_TRY(set_shape(c, v, KILN_DTYPE_F32, &c->g->values[v].shape));
    return kiln_strmap_put(&c->blob, c->g->values[v].name, v);
}

static kiln_dims shape_from_proto(const Caffe__BlobShape *s, bool *ok)
{
    kiln_dims d = {0};
    *ok = s->n_dim <= KILN_MAX_RANK;
    d.rank = *ok ? (int32_t)s->n_dim : 0;
    for (int32_t i = 0; i < d.rank; i++) d.d[i] = s->dim[i];
    return d;
}

/* `input:` with `input_shape` (one per input) or `input_dim` (four per input). */
static kiln_status net_inputs(caffe_ctx *c, const Caffe__NetParameter *net)
{
    size_t n = net->n_input;
    if (!n && (net->n_input_shape || net->n_input_dim))
        return kiln_error(KILN_ERR_PARSE, "%s: input shapes are given without 'input' names",
                          c->source);
    if (!n) return KILN_OK;
    if (net->n_input_shape && net->n_input_dim)
        return kiln_error(KILN_ERR_PARSE, "%s: both input_shape and input_dim are given",
                          c->source);
    if (net->n_input_shape && net->n_input_shape != n)
        return kiln_error(KILN_ERR_PARSE, "%s: %zu inputs but %zu input_shape entries", c->source,
                          n, net->n_input_shape);
    if (!net->n_input_shape && net->n_input_dim != 4 * n)
        return kiln_error(KILN_ERR_PARSE,
                          "%s: %zu input%s need %zu input_dim values (4 each), found %zu",
                          c->source, n, n == 1 ? "" : "s", 4 * n, net->n_input_dim);
    for (size_t i = 0; i < n; i++) {
        kiln_dims d = {.rank = 4};
        bool ok = true;
        if (net->n_input_shape)
            d = shape_from_proto(net->input_shape[i], &ok);
        else
            for (int k = 0; k < 4; k++) d.d[k] = net->input_dim[4 * i + (size_t)k];
        if (!ok)
            return kiln_error(KILN_ERR_UNSUPPORTED, "%s: input '%s' has rank over %d", c->source,
                              net->input[i], KILN_MAX_RANK);
        KILN_TRY(declare_input(c, net->input[i], &d));
    }
    return KILN_OK;
}

/* An Input layer: its tops are network inputs, with one shape each or one for all. */
static kiln_status input_layer(caffe_ctx *c, const caffe_layer *L)
{
    const Caffe__InputParameter *ip = L->p->input_param;
    size_t ns = ip ? ip->n_shape : 0;
    if (ns == 0 || (ns != 1 && ns != L->p->n_top))
        return caffe_layer_error(c, L, KILN_ERR_PARSE,
                                 "input_param gives %zu shapes for %zu tops (kiln needs one per "
                                 "top, or one for all)",
                                 ns, L->p->n_top);
    for (size_t i = 0; i < L->p->n_top; i++) {
        bool ok;
        kiln_dims d = shape_from_proto(ip->shape[ns == 1 ? 0 : i], &ok);
        if (!ok)
            return caffe_layer_error(c, L, KILN_ERR_UNSUPPORTED, "rank over %d", KILN_MAX_RANK);
        KILN_TRY(declare_input(c, L->p->top[i], &d));
    }
    return KILN_OK;
}

/* ---- the walk over layers ---- */

typedef struct walk {
    const Caffe__LayerParameter **layers;
    int32_t n;
    bool *included;
    kiln_strmap last_write; /* blob -> index of the last layer writing it */
    kiln_strmap names;      /* node names given so far */
} walk;

static const char *layer_name(const Caffe__LayerParameter *p)
{
    return p->name && *p->name ? p->name : "(unnamed)";
}

static const char *layer_type(const Caffe__LayerParameter *p) { return p->type ? p->type : ""; }

/* Lists every unsupported layer type once, with the first layer that uses it. */
static kiln_status check_types(caffe_ctx *c, const walk *w)
{
    const char *types[64], *first[64];
    int n = 0, total = 0;
    for (int32_t i = 0; i < w->n; i++) {
        const Caffe__LayerParameter *p = w->layers[i];
        const char *t = layer_type(p);
        if (!w->included[i] || strcmp(t, "Input") == 0 || caffe_layer_is_noop(t) ||
            caffe_layer_supported(t))
            continue;
        bool seen = false;
        for (int k = 0; k < n && !seen; k++) seen = strcmp(types[k], t) == 0;
        if (seen) continue;
        total++;
        if (n < 64) types[n] = t, first[n++] = layer_name(p);
    }
    if (!total) return KILN_OK;
    kiln_buf b;
    memset(&b, 0, sizeof b);
    kiln_buf_printf(&b, "%s: the net uses %d layer type%s kiln does not support: ", c->source,
                    total, total == 1 ? "" : "s");
    for (int k = 0; k < n; k++)
        kiln_buf_printf(&b, "%s%s (first at layer '%s')", k ? ", " : "",
                        *types[k] ? types[k] : "(no type)", first[k]);
    const char *msg = kiln_buf_cstr(&b);
    kiln_status st = msg ? kiln_error(KILN_ERR_UNSUPPORTED, "%s", msg)
                         : kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory");
    kiln_buf_free(&b);
    return st;
}

/* Every blob name, and the last layer writing each. */
static kiln_status scan_blobs(caffe_ctx *c, walk *w, const Caffe__NetParameter *net)
{
    for (size_t i = 0; i < net->n_input; i++)
        if (net->input[i] && kiln_strmap_get(&c->all_blobs, net->input[i]) < 0)
            KILN_TRY(kiln_strmap_put(&c->all_blobs, net->input[i], 0));
    for (int32_t i = 0; i < w->n; i++) {
        const Caffe__LayerParameter *p = w->layers[i];
        if (!w->included[i]) continue;
        for (size_t k = 0; k < p->n_top; k++) {
            const char *t = p->top[k];
            if (!t || !*t)
                return kiln_error(KILN_ERR_PARSE, "%s: layer '%s' (%s): top %zu has no name",
                                  c->source, layer_name(p), layer_type(p), k);
            if (kiln_strmap_get(&c->all_blobs, t) < 0)
                KILN_TRY(kiln_strmap_put(&c->all_blobs, t, 0));
            KILN_TRY(kiln_strmap_put(&w->last_write, t, i));
        }
    }
    return KILN_OK;
}

/* A node name for the layer: its own when free, else one made unique. */
static const char *unique_layer_name(caffe_ctx *c, walk *w, const Caffe__LayerParameter *p,
                                     int32_t index)
{
    const char *name = layer_name(p);
    char buf[300];
    if (kiln_strmap_get(&w->names, name) >= 0 || kiln_strmap_get(&c->g->node_by_name, name) >= 0 ||
        strlen(name) > 1024) {
        for (int k = 0;; k++) {
            snprintf(buf, sizeof buf, "%.200s_%d%s", strlen(name) <= 200 ? name : "layer",
                     (int)index, k ? "_" : "");
            if (k) snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%d", k);
            if (kiln_strmap_get(&w->names, buf) < 0 &&
                kiln_strmap_get(&c->g->node_by_name, buf) < 0)
                break;
        }
        name = buf;
    }
    char *s = kiln_arena_strdup(&c->g->arena, name);
    if (!s) return NULL;
    if (kiln_strmap_put(&w->names, s, index)) return NULL;
    return s;
}

static kiln_status convert(caffe_ctx *c, walk *w, int32_t i)
{
    const Caffe__LayerParameter *p = w->layers[i];
    caffe_layer L;
    memset(&L, 0, sizeof L);
    L.p = p;
    L.type = layer_type(p);
    L.name = unique_layer_name(c, w, p, i);
    if (!L.name) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", c->source);
    if (p->n_bottom > 1024 || p->n_top > 1024)
        return caffe_layer_error(c, &L, KILN_ERR_PARSE, "%zu bottoms and %zu tops", p->n_bottom,
                                 p->n_top);
    L.n_in = (int32_t)p->n_bottom;
    L.n_out = (int32_t)p->n_top;
    L.in = caffe_scratch(c, sizeof(char *) * (p->n_bottom + 1));
    L.out = caffe_scratch(c, sizeof(char *) * (p->n_top + 1));
    if (!L.in || !L.out) return KILN_ERR_OUT_OF_MEMORY;
    for (int32_t k = 0; k < L.n_in; k++) {
        int32_t v = kiln_strmap_get(&c->blob, p->bottom[k]);
        if (v < 0)
            return caffe_layer_error(c, &L, KILN_ERR_INVALID_GRAPH,
                                     "bottom '%s' is neither an input nor a top of an earlier "
                                     "layer",
                                     p->bottom[k] ? p->bottom[k] : "");
        L.in[k] = c->g->values[v].name;
    }
    /* A top keeps its blob's name on its last write; earlier versions of a blob that
     * in-place layers rewrite get generated names. */
    for (int32_t k = 0; k < L.n_out; k++) {
        const char *t = p->top[k];
        bool last = kiln_strmap_get(&w->last_write, t) == i;
        L.out[k] = last && ir_graph_find_value(c->g, t) < 0 ? t : caffe_tmp(c, &L, t);
        if (!L.out[k]) return KILN_ERR_OUT_OF_MEMORY;
    }
    int32_t wi = p->name ? kiln_strmap_get(&c->weights, p->name) : -1;
    if (wi >= 0) {
        L.in_model = true;
        L.blobs = c->wlayers[wi]->blobs;
        L.n_blobs = (int32_t)c->wlayers[wi]->n_blobs;
    } else {
        L.blobs = p->blobs;
        L.n_blobs = (int32_t)p->n_blobs;
    }
    KILN_TRY(caffe_convert_layer(c, &L));
    for (int32_t k = 0; k < L.n_out; k++) {
        int32_t v = ir_graph_find_value(c->g, L.out[k]);
        if (v < 0)
            return caffe_layer_error(c, &L, KILN_ERR_INTERNAL, "top '%s' was not produced",
                                     p->top[k]);
        KILN_TRY(kiln_strmap_put(&c->blob, p->top[k], v));
    }
    return KILN_OK;
}

static kiln_status mark_outputs(caffe_ctx *c, const walk *w, const char *const *outputs,
                                int32_t n_outputs)
{
    kiln_status st = KILN_OK;
    for (int32_t i = 0; i < n_outputs; i++) {
        int32_t v = outputs[i] ? kiln_strmap_get(&c->blob, outputs[i]) : -1;
        if (v < 0)
            return kiln_error(KILN_ERR_NOT_FOUND, "%s: no blob '%s' in the net to mark as output",
                              c->source, outputs[i] ? outputs[i] : "(null)");
        if (c->g->values[v].is_output) continue;
        st = ir_graph_mark_output(c->g, c->g->values[v].name);
        if (st) return kiln_error_prefix(st, "%s: ", c->source);
    }
    if (n_outputs > 0) return KILN_OK;
    /* No names given: every blob whose final version no layer reads, in layer order. */
    bool *read = kiln_calloc((size_t)c->g->n_values + 1, sizeof *read);
    if (!read) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", c->source);
    for (int32_t n = 0; n < c->g->n_nodes; n++)
        for (int32_t k = 0; k < c->g->nodes[n].n_in; k++)
            if (c->g->nodes[n].in[k] >= 0) read[c->g->nodes[n].in[k]] = true;
    for (int32_t i = 0; i < w->n && !st; i++) {
        const Caffe__LayerParameter *p = w->layers[i];
        if (!w->included[i]) continue;
        for (size_t k = 0; k < p->n_top && !st; k++) {
            int32_t v = kiln_strmap_get(&c->blob, p->top[k]);
            if (v < 0 || read[v] || c->g->values[v].is_output ||
                c->g->values[v].kind == IR_VALUE_INPUT)
                continue;
            st = ir_graph_mark_output(c->g, c->g->values[v].name);
            if (st) kiln_error_prefix(st, "%s: ", c->source);
        }
    }
    kiln_free(read);
    if (!st && c->g->n_outputs == 0)
        st = kiln_error(KILN_ERR_INVALID_GRAPH,
                        "%s: the net has no outputs (every top is read by a later layer)",
                        c->source);
    return st;
}

static kiln_status import(caffe_ctx *c, walk *w, const Caffe__NetParameter *deploy,
                          const Caffe__NetParameter *model, const char *const *outputs,
                          int32_t n_outputs)
{
    if (model) {
        KILN_TRY(net_layers(c, model, c->model_source, &c->wlayers, &c->n_wlayers));
        if (c->n_wlayers == 0)
            return kiln_error(KILN_ERR_PARSE,
                              "caffemodel '%s': holds no layers (is it a trained caffemodel?)",
                              c->model_source);
        for (int32_t i = 0; i < c->n_wlayers; i++) {
            const char *name = c->wlayers[i]->name;
            if (name && kiln_strmap_get(&c->weights, name) < 0)
                KILN_TRY(kiln_strmap_put(&c->weights, name, i));
        }
    }
    KILN_TRY(net_layers(c, deploy, c->source, &w->layers, &w->n));
    w->included = caffe_scratch(c, sizeof(bool) * ((size_t)w->n + 1));
    if (!w->included) return KILN_ERR_OUT_OF_MEMORY;
    for (int32_t i = 0; i < w->n; i++) w->included[i] = layer_included(w->layers[i], deploy->state);
    KILN_TRY(check_types(c, w));
    KILN_TRY(scan_blobs(c, w, deploy));
    KILN_TRY(net_inputs(c, deploy));
    for (int32_t i = 0; i < w->n; i++) {
        const Caffe__LayerParameter *p = w->layers[i];
        if (!w->included[i] || caffe_layer_is_noop(layer_type(p))) continue;
        if (strcmp(layer_type(p), "Input") == 0) {
            caffe_layer L = {.p = p, .name = layer_name(p), .type = "Input"};
            KILN_TRY(input_layer(c, &L));
            continue;
        }
        KILN_TRY(convert(c, w, i));
    }
    for (int32_t i = 0; i < c->g->n_inputs; i++) {
        const char *name = c->g->values[c->g->inputs[i]].name;
        if (kiln_strmap_get(&c->blob, name) < 0)
            return kiln_error(KILN_ERR_NOT_FOUND,
                              "%s: the network declares input '%s', which the net does not have",
                              c->source, name);
    }
    if (c->g->n_inputs == 0)
        return kiln_error(KILN_ERR_INVALID_GRAPH,
                          "%s: the net declares no inputs (no 'input:' entries and no Input "
                          "layer)",
                          c->source);
    return mark_outputs(c, w, outputs, n_outputs);
}

/* Inputs a caller declared before the import (see declare_input), to restore on failure. */
typedef struct saved_input {
    char *name;
    kiln_dims shape;
} saved_input;

kiln_status caffe_import_nets(kiln_network *net, const Caffe__NetParameter *deploy,
                              const Caffe__NetParameter *model, const char *source,
                              const char *model_source, const char *const *outputs,
                              int32_t n_outputs)
{
    if (!net || !deploy || n_outputs < 0 || (n_outputs > 0 && !outputs))
        return kiln_error(KILN_ERR_INVALID_ARGUMENT, "Caffe import: bad arguments");
    ir_graph *g = &net->g;
    if (g->n_nodes || g->n_outputs || g->n_values != g->n_inputs)
        return kiln_error(KILN_ERR_INVALID_ARGUMENT,
                          "Caffe import: the network is not empty (it may hold only inputs, "
                          "declared to set their batch size)");
    saved_input *saved = NULL;
    int32_t n_saved = g->n_inputs;
    if (n_saved) {
        saved = kiln_calloc((size_t)n_saved, sizeof *saved);
        if (!saved) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory");
        for (int32_t i = 0; i < n_saved; i++) {
            saved[i].name = kiln_strdup(g->values[g->inputs[i]].name);
            saved[i].shape = g->values[g->inputs[i]].shape;
        }
    }
    caffe_ctx c;
    memset(&c, 0, sizeof c);
    c.g = g;
    c.source = source ? source : "prototxt";
    c.model_source = model ? (model_source ? model_source : "caffemodel") : NULL;
    kiln_arena_init(&c.scratch);
    walk w;
    memset(&w, 0, sizeof w);
    kiln_status st = KILN_OK;
    for (int32_t i = 0; i < n_saved; i++)
        if (!saved[i].name) st = kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory");
    if (!st) st = import(&c, &w, deploy, model, outputs, n_outputs);
    if (st == KILN_ERR_OUT_OF_MEMORY && !strstr(kiln_last_error(), "out of memory"))
        kiln_error(st, "%s: out of memory", c.source);
    kiln_strmap_free(&c.blob);
    kiln_strmap_free(&c.all_blobs);
    kiln_strmap_free(&c.tmp_names);
    kiln_strmap_free(&c.weights);
    kiln_strmap_free(&w.last_write);
    kiln_strmap_free(&w.names);
    kiln_arena_free(&c.scratch);
    kiln_free(c.shape);
    kiln_free(c.dtype);
    if (st) {
        /* Leave the network as it was: empty, or holding only the caller's inputs. */
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", kiln_last_error());
        ir_graph_free(g);
        ir_graph_init(g);
        for (int32_t i = 0; i < n_saved; i++)
            if (saved[i].name)
                ir_graph_add_input(g, saved[i].name, KILN_DTYPE_F32, &saved[i].shape);
        kiln_error(st, "%s", msg);
    }
    for (int32_t i = 0; i < n_saved; i++) kiln_free(saved[i].name);
    kiln_free(saved);
    return st;
}

/* ---- files ---- */

/* Reads a whole regular file (at most `limit` bytes) into a new buffer. */
static kiln_status read_file(const char *path, const char *what, size_t limit, char **out,
                             size_t *size)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return kiln_error(KILN_ERR_IO, "cannot open %s '%s': %s", what, path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return kiln_error(KILN_ERR_IO, "%s '%s' is not a regular file", what, path);
    }
    if ((uint64_t)sb.st_size > limit) {
        fclose(f);
        return kiln_error(KILN_ERR_PARSE, "%s '%s': %lld bytes is over the %zu-byte limit", what,
                          path, (long long)sb.st_size, limit);
    }
    *size = (size_t)sb.st_size;
    *out = kiln_malloc(*size + 1);
    if (!*out) {
        fclose(f);
        return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory reading %s '%s' (%zu bytes)", what,
                          path, *size);
    }
    size_t got = fread(*out, 1, *size, f);
    fclose(f);
    if (got != *size) {
        kiln_free(*out);
        *out = NULL;
        return kiln_error(KILN_ERR_IO, "reading %s '%s' failed", what, path);
    }
    (*out)[*size] = '\0';
    return KILN_OK;
}

kiln_status kiln_caffe_parse_files(kiln_network *net, const char *prototxt, const char *caffemodel,
                                   const char *const *outputs, int32_t n_outputs)
{
    if (!net || !prototxt)
        return kiln_error(KILN_ERR_INVALID_ARGUMENT, "kiln_caffe_parse_files: NULL argument");
    bool oom = false;
    ProtobufCAllocator pba = {pb_alloc, pb_free, &oom};
    char *text = NULL, *bin = NULL;
    size_t text_len = 0, bin_len = 0;
    ProtobufCMessage *deploy = NULL;
    Caffe__NetParameter *model = NULL;
    kiln_status st;
    KILN_CHECK(read_file(prototxt, "prototxt", (size_t)1 << 30, &text, &text_len));
    KILN_CHECK(
        prototxt_parse(text, text_len, prototxt, &caffe__net_parameter__descriptor, &pba, &deploy));
    kiln_free(text);
    text = NULL;
    if (caffemodel) {
        /* protobuf messages are limited to 2 GiB. */
        KILN_CHECK(read_file(caffemodel, "caffemodel", INT32_MAX, &bin, &bin_len));
        model = caffe__net_parameter__unpack(&pba, bin_len, (const uint8_t *)bin);
        kiln_free(bin);
        bin = NULL;
        if (!model && oom) {
            st = kiln_error(KILN_ERR_OUT_OF_MEMORY, "caffemodel '%s': out of memory decoding it",
                            caffemodel);
            goto fail;
        }
        if (!model) {
            st = kiln_error(KILN_ERR_PARSE,
                            "caffemodel '%s': not a valid caffemodel (%zu bytes that do not "
                            "decode as a binary NetParameter: truncated, corrupt, or another "
                            "format)",
                            caffemodel, bin_len);
            goto fail;
        }
    }
    st = caffe_import_nets(net, (const Caffe__NetParameter *)deploy, model, prototxt, caffemodel,
                           outputs, n_outputs);
fail:
    kiln_free(text);
    kiln_free(bin);
    if (deploy) protobuf_c_message_free_unpacked(deploy, &pba);
    if (model) caffe__net_parameter__free_unpacked(model, &pba);
    return st;
}
