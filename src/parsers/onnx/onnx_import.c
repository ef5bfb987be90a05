/* onnx_import.c - ONNX ModelProto -> kiln network: decoding (protobuf-c), opset checks,
 * initializers and external data, graph inputs and outputs, and the walk over nodes.
 * Every file is untrusted: sizes, names, dims and paths are checked before use. */
#define _XOPEN_SOURCE 700 /* realpath */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "parsers/onnx/onnx_import.h"

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

/* ---- names ---- */

const char *onnx_fresh_name(onnx_ctx *c, const char *node, const char *hint)
{
    char buf[512];
    for (;;) {
        snprintf(buf, sizeof buf, "%.200s::%.200s%s%d", node, hint, c->fresh ? "_" : "", c->fresh);
        c->fresh++;
        if (ir_graph_find_value(c->g, buf) < 0 && kiln_strmap_get(&c->g->node_by_name, buf) < 0)
            return kiln_arena_strdup(&c->g->arena, buf);
    }
}

/* ---- tensors ---- */

static kiln_dtype dtype_of(int32_t onnx_type)
{
    switch (onnx_type) {
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: return KILN_DTYPE_F32;
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT8: return KILN_DTYPE_U8;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT8: return KILN_DTYPE_I8;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: return KILN_DTYPE_I32;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: return KILN_DTYPE_I64;
    case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL: return KILN_DTYPE_BOOL;
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16: return KILN_DTYPE_F16;
    case ONNX__TENSOR_PROTO__DATA_TYPE__BFLOAT16: return KILN_DTYPE_BF16;
    default: return KILN_DTYPE_UNDEFINED;
    }
}

static const char *onnx_type_name(int32_t t)
{
    static const char *names[] = {"undefined",  "float",   "uint8",  "int8",   "uint16",
                                  "int16",      "int32",   "int64",  "string", "bool",
                                  "float16",    "double",  "uint32", "uint64", "complex64",
                                  "complex128", "bfloat16"};
    if (t >= 0 && t < (int32_t)(sizeof names / sizeof *names)) return names[t];
    return t >= 17 && t <= 26 ? "a float8/int4/float4 type" : "unknown";
}

/* Joins base_dir and a relative location, refusing anything that could leave base_dir. */
static kiln_status external_path(onnx_ctx *c, const char *tensor, const char *loc, char *out,
                                 size_t n)
{
    if (!c->base_dir)
        return kiln_error(KILN_ERR_PARSE,
                          "%s: tensor '%s' keeps its data in external file '%s', but the model "
                          "was given from memory with no base directory",
                          c->source, tensor, loc);
    bool bad = !*loc || loc[0] == '/' || strchr(loc, '\\') != NULL;
    for (const char *p = loc; !bad && *p;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 2 && p[0] == '.' && p[1] == '.') bad = true;
        p += len + (slash ? 1 : 0);
    }
    if (bad)
        return kiln_error(KILN_ERR_PARSE,
                          "%s: tensor '%s': external data location '%s' is not a plain path "
                          "inside the model's directory",
                          c->source, tensor, loc);
    int w = snprintf(out, n, "%s/%s", c->base_dir, loc);
    if (w < 0 || (size_t)w >= n)
        return kiln_error(KILN_ERR_PARSE, "%s: tensor '%s': external data path is too long",
                          c->source, tensor);
    /* A symlink could still point outside: compare resolved paths. */
    char rbase[PATH_MAX], rfile[PATH_MAX];
    if (!realpath(c->base_dir, rbase) || !realpath(out, rfile))
        return kiln_error(KILN_ERR_IO, "%s: tensor '%s': cannot open external data '%s': %s",
                          c->source, tensor, out, strerror(errno));
    size_t bl = strlen(rbase);
    if (strncmp(rfile, rbase, bl) != 0 || (rfile[bl] != '/' && !(bl == 1 && rbase[0] == '/')))
        return kiln_error(KILN_ERR_PARSE,
                          "%s: tensor '%s': external data '%s' resolves outside the model's "
                          "directory",
                          c->source, tensor, loc);
    return KILN_OK;
}

/* Reads `bytes` of external data for tensor `t` into a new buffer. */
static kiln_status read_external(onnx_ctx *c, const Onnx__TensorProto *t, const char *name,
                                 size_t bytes, void **out)
{
    const char *loc = NULL;
    int64_t offset = 0, length = -1;
    *out = NULL;
    for (size_t i = 0; i < t->n_external_data; i++) {
        const Onnx__StringStringEntryProto *e = t->external_data[i];
        if (!e->key || !e->value) continue;
        char *end = NULL;
        if (strcmp(e->key, "location") == 0) loc = e->value;
        if (strcmp(e->key, "offset") == 0 || strcmp(e->key, "length") == 0) {
            errno = 0;
            long long v = strtoll(e->value, &end, 10);
            if (errno || end == e->value || *end || v < 0)
                return kiln_error(KILN_ERR_PARSE,
                                  "%s: tensor '%s': external data %s '%s' is not a valid size",
                                  c->source, name, e->key, e->value);
            if (e->key[0] == 'o')
                offset = v;
            else
                length = v;
        }
    }
    if (!loc)
        return kiln_error(KILN_ERR_PARSE, "%s: tensor '%s': external data has no location",
                          c->source, name);
    char path[PATH_MAX + 1];
    KILN_TRY(external_path(c, name, loc, path, sizeof path));
    if (length >= 0 && (uint64_t)length != bytes)
        return kiln_error(KILN_ERR_PARSE,
                          "%s: tensor '%s': external data length %lld, its shape needs %zu bytes",
                          c->source, name, (long long)length, bytes);
    FILE *f = fopen(path, "rb");
    if (!f)
        return kiln_error(KILN_ERR_IO, "%s: tensor '%s': cannot open '%s': %s", c->source, name,
                          path, strerror(errno));
    struct stat sb;
    kiln_status st = KILN_OK;
    if (fstat(fileno(f), &sb) != 0 || offset > (int64_t)sb.st_size ||
        bytes > (uint64_t)(sb.st_size - offset)) {
        st = kiln_error(
            KILN_ERR_PARSE,
            "%s: tensor '%s': '%s' holds %lld bytes, the tensor needs %zu at offset %lld",
            c->source, name, path, (long long)sb.st_size, bytes, (long long)offset);
        goto done;
    }
    *out = kiln_malloc(bytes ? bytes : 1);
    if (!*out) {
        st = kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory reading tensor '%s'", name);
        goto done;
    }
    if (fseeko(f, (off_t)offset, SEEK_SET) != 0 || fread(*out, 1, bytes, f) != bytes) {
        st = kiln_error(KILN_ERR_IO, "%s: tensor '%s': reading '%s' failed", c->source, name, path);
        kiln_free(*out);
        *out = NULL;
    }
done:
    fclose(f);
    return st;
}

/* Unpacks a TensorProto's values into a dense buffer (owned by the caller when *owned). */
static kiln_status tensor_data(onnx_ctx *c, const Onnx__TensorProto *t, const char *name,
                               kiln_dtype *dtype, kiln_dims *shape, const void **data, void **owned,
                               size_t *nbytes)
{
    *owned = NULL;
    *data = NULL;
    *dtype = dtype_of(t->data_type);
    if (*dtype == KILN_DTYPE_UNDEFINED)
        return kiln_error(KILN_ERR_UNSUPPORTED,
                          "%s: tensor '%s' has dtype %s, which kiln does not support", c->source,
                          name, onnx_type_name(t->data_type));
    if (t->segment)
        return kiln_error(KILN_ERR_UNSUPPORTED, "%s: tensor '%s' is segmented", c->source, name);
    if (t->n_dims > KILN_MAX_RANK)
        return kiln_error(KILN_ERR_UNSUPPORTED, "%s: tensor '%s' has rank %zu (kiln allows %d)",
                          c->source, name, t->n_dims, KILN_MAX_RANK);
    memset(shape, 0, sizeof *shape);
    shape->rank = (int32_t)t->n_dims;
    for (size_t i = 0; i < t->n_dims; i++) shape->d[i] = t->dims[i];
    int64_t count, bytes;
    size_t es = kiln_dtype_size(*dtype);
    if (!kiln_dims_numel(shape, &count) || !kiln_mul_ok(count, (int64_t)es, &bytes)) {
        char b[KILN_DIMS_STR_MAX];
        return kiln_error(KILN_ERR_PARSE, "%s: tensor '%s' has an impossible shape %s", c->source,
                          name, kiln_dims_str(shape, b, sizeof b));
    }
    *nbytes = (size_t)bytes;
    if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL) {
        KILN_TRY(read_external(c, t, name, *nbytes, owned));
        *data = *owned;
        return KILN_OK;
    }
    if (t->has_raw_data && (t->raw_data.len > 0 || count == 0)) {
        if (t->raw_data.len != *nbytes)
            return kiln_error(KILN_ERR_PARSE,
                              "%s: tensor '%s': raw_data holds %zu bytes, its shape needs %zu",
                              c->source, name, t->raw_data.len, *nbytes);
        *data = t->raw_data.data;
        return KILN_OK;
    }
    /* Typed fields: float_data, int32_data (also 8/16-bit types and bool), int64_data. */
    size_t have;
    const char *field;
    switch (*dtype) {
    case KILN_DTYPE_F32: have = t->n_float_data, field = "float_data"; break;
    case KILN_DTYPE_I64: have = t->n_int64_data, field = "int64_data"; break;
    default: have = t->n_int32_data, field = "int32_data"; break;
    }
    if (have != (size_t)count)
        return kiln_error(KILN_ERR_PARSE,
                          "%s: tensor '%s': %s holds %zu values, its shape needs %lld", c->source,
                          name, field, have, (long long)count);
    if (*dtype == KILN_DTYPE_F32 && sizeof(float) == 4) {
        *data = t->float_data;
        return KILN_OK;
    }
    if (*dtype == KILN_DTYPE_I64) {
        *data = t->int64_data;
        return KILN_OK;
    }
    if (*dtype == KILN_DTYPE_I32) {
        *data = t->int32_data;
        return KILN_OK;
    }
    uint8_t *buf = kiln_malloc(*nbytes ? *nbytes : 1);
    if (!buf)
        return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory converting tensor '%s'", name);
    for (int64_t i = 0; i < count; i++) {
        int32_t v = t->int32_data[i];
        if (es == 1)
            buf[i] = (uint8_t)v;
        else {
            uint16_t h = (uint16_t)v;
            memcpy(buf + 2 * i, &h, 2);
        }
    }
    *owned = buf;
    *data = buf;
    return KILN_OK;
}

kiln_status onnx_tensor_to_constant(onnx_ctx *c, const Onnx__TensorProto *t, const char *name)
{
    kiln_dtype dtype;
    kiln_dims shape;
    const void *data;
    void *owned;
    size_t nbytes = 0;
    KILN_TRY(tensor_data(c, t, name, &dtype, &shape, &data, &owned, &nbytes));
    kiln_status st = ir_graph_add_constant(c->g, name, dtype, &shape, data, nbytes, true, NULL);
    kiln_free(owned);
    if (st) kiln_error_prefix(st, "%s: ", c->source);
    return st;
}

kiln_status onnx_tensor_scalar(onnx_ctx *c, const Onnx__TensorProto *t, const char *what,
                               double *value, kiln_dtype *dtype)
{
    kiln_dims shape;
    const void *data;
    void *owned;
    size_t nbytes = 0;
    KILN_TRY(tensor_data(c, t, what, dtype, &shape, &data, &owned, &nbytes));
    if (kiln_dims_count(&shape) != 1) {
        kiln_free(owned);
        return kiln_error(KILN_ERR_PARSE, "%s: %s must hold one value", c->source, what);
    }
    ir_tensor tmp = {*dtype, shape, (void *)data, IR_LAYOUT_PLAIN};
    *value = ir_tensor_get(&tmp, 0);
    kiln_free(owned);
    return KILN_OK;
}

kiln_status onnx_add_const(onnx_ctx *c, const onnx_node *n, const char *hint, kiln_dtype dtype,
                           const kiln_dims *shape, const void *data, size_t nbytes,
                           const char **name)
{
    *name = onnx_fresh_name(c, n->name, hint);
    if (!*name) return KILN_ERR_OUT_OF_MEMORY;
    return ir_graph_add_constant(c->g, *name, dtype, shape, data, nbytes, true, NULL);
}

kiln_status onnx_add_const_i64(onnx_ctx *c, const onnx_node *n, const char *hint, const int64_t *v,
                               int32_t count, const char **name)
{
    kiln_dims s = {1, {count}};
    return onnx_add_const(c, n, hint, KILN_DTYPE_I64, &s, count ? (const void *)v : "",
                          sizeof(int64_t) * (size_t)count, name);
}

kiln_status onnx_add_const_f32_scalar(onnx_ctx *c, const onnx_node *n, const char *hint, float v,
                                      const char **name)
{
    kiln_dims s = {0, {0}};
    return onnx_add_const(c, n, hint, KILN_DTYPE_F32, &s, &v, sizeof v, name);
}

/* ---- attributes ---- */

const kiln_attr *onnx_attr(const onnx_node *n, const char *name)
{
    for (int32_t i = 0; i < n->n_attrs; i++)
        if (strcmp(n->attrs[i].name, name) == 0) return &n->attrs[i];
    return NULL;
}

const Onnx__AttributeProto *onnx_attr_proto(const onnx_node *n, const char *name)
{
    for (size_t i = 0; i < n->proto->n_attribute; i++)
        if (n->proto->attribute[i]->name && strcmp(n->proto->attribute[i]->name, name) == 0)
            return n->proto->attribute[i];
    return NULL;
}

/* Converts the plain attributes of a node; tensor- and graph-valued ones are left to the
 * op's converter (onnx_attr_proto). Old models may leave `type` unset: it is then taken
 * from the field that holds a value. */
static kiln_status convert_attrs(onnx_ctx *c, onnx_node *n)
{
    const Onnx__NodeProto *p = n->proto;
    n->attrs = kiln_arena_alloc(&c->g->arena, sizeof(kiln_attr) * (p->n_attribute + 1));
    if (!n->attrs) return KILN_ERR_OUT_OF_MEMORY;
    n->n_attrs = 0;
    for (size_t i = 0; i < p->n_attribute; i++) {
        const Onnx__AttributeProto *a = p->attribute[i];
        if (!a->name || !*a->name)
            return kiln_error(KILN_ERR_PARSE, "%s: node '%s' (%s): attribute %zu has no name",
                              c->source, n->name, n->op, i);
        int t = a->has_type ? (int)a->type : 0;
        if (!t) {
            if (a->n_ints)
                t = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
            else if (a->n_floats)
                t = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS;
            else if (a->has_s)
                t = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
            else if (a->t)
                t = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR;
            else if (a->has_f)
                t = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
            else if (a->has_i)
                t = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
        }
        kiln_attr k;
        memset(&k, 0, sizeof k);
        k.name = kiln_arena_strdup(&c->g->arena, a->name);
        if (!k.name) return KILN_ERR_OUT_OF_MEMORY;
        switch (t) {
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT: k.type = KILN_ATTR_INT, k.i = a->i; break;
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT:
            k.type = KILN_ATTR_FLOAT, k.f = a->f;
            break;
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING: {
            char *s = kiln_arena_alloc(&c->g->arena, a->s.len + 1);
            if (!s) return KILN_ERR_OUT_OF_MEMORY;
            if (a->s.len) memcpy(s, a->s.data, a->s.len);
            if (memchr(s, 0, a->s.len))
                return kiln_error(KILN_ERR_PARSE, "%s: node '%s': attribute '%s' holds a NUL byte",
                                  c->source, n->name, a->name);
            k.type = KILN_ATTR_STRING, k.s = s;
            break;
        }
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS:
            if (a->n_ints > 4096)
                return kiln_error(KILN_ERR_PARSE, "%s: node '%s': attribute '%s' lists %zu values",
                                  c->source, n->name, a->name, a->n_ints);
            k.type = KILN_ATTR_INTS, k.ints = a->ints, k.count = (int32_t)a->n_ints;
            break;
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS:
            if (a->n_floats > 4096)
                return kiln_error(KILN_ERR_PARSE, "%s: node '%s': attribute '%s' lists %zu values",
                                  c->source, n->name, a->name, a->n_floats);
            k.type = KILN_ATTR_FLOATS, k.floats = a->floats, k.count = (int32_t)a->n_floats;
            break;
        default:
            continue; /* tensors, graphs, strings lists: read by the converters that take them */
        }
        n->attrs[n->n_attrs++] = k;
    }
    return KILN_OK;
}

/* ---- layers ---- */

kiln_status onnx_emit(onnx_ctx *c, const onnx_node *n, const char *op, const char *name,
                      const char *const *in, int32_t n_in, const char *const *out, int32_t n_out,
                      const kiln_attr *attrs, int32_t n_attrs)
{
    if (!name) {
        name = onnx_fresh_name(c, n->name, op);
        if (!name) return KILN_ERR_OUT_OF_MEMORY;
    }
    kiln_status st = ir_graph_add_node(c->g, op, name, in, n_in, out, n_out, attrs, n_attrs, NULL);
    if (st) kiln_error_prefix(st, "%s: ", c->source);
    return st;
}

/* ---- model ---- */

typedef struct unsupported {
    const char *domain, *op, *node;
    int64_t opset;
} unsupported;

static bool default_domain(const char *d) { return !d || !*d || strcmp(d, "ai.onnx") == 0; }

static int64_t domain_opset(const Onnx__ModelProto *m, const char *domain)
{
    for (size_t i = 0; i < m->n_opset_import; i++) {
        const char *d = m->opset_import[i]->domain;
        if ((default_domain(d) && default_domain(domain)) ||
            (d && domain && strcmp(d, domain) == 0))
            return m->opset_import[i]->version;
    }
    return -1;
}

int kiln_onnx_op_supported(const char *domain, const char *op_type, int64_t opset)
{
    if (!op_type || !default_domain(domain)) return 0;
    if (opset < ONNX_MIN_OPSET || opset > ONNX_MAX_OPSET) return 0;
    return onnx_op_known(op_type, opset);
}

/* Lists every unsupported op type once, with the first node that uses it. */
static kiln_status check_ops(onnx_ctx *c, const Onnx__ModelProto *m, const Onnx__GraphProto *g)
{
    unsupported list[64];
    int n = 0, total = 0;
    for (size_t i = 0; i < g->n_node; i++) {
        const Onnx__NodeProto *p = g->node[i];
        const char *op = p->op_type ? p->op_type : "";
        const char *dom = p->domain ? p->domain : "";
        int64_t opset = domain_opset(m, dom);
        if (default_domain(dom) && kiln_onnx_op_supported(dom, op, opset)) continue;
        bool seen = false;
        for (int k = 0; k < n; k++)
            if (strcmp(list[k].op, op) == 0 && strcmp(list[k].domain, dom) == 0) seen = true;
        if (seen) continue;
        total++;
        if (n < 64)
            list[n++] = (unsupported){dom, op, p->name && *p->name ? p->name : "(unnamed)", opset};
    }
    if (!total) return KILN_OK;
    kiln_buf b;
    memset(&b, 0, sizeof b);
    kiln_buf_printf(&b, "%s: the model uses %d op%s kiln does not support: ", c->source, total,
                    total == 1 ? "" : "s");
    for (int k = 0; k < n; k++)
        kiln_buf_printf(&b, "%s%s (domain %s, opset %lld; first at node '%s')", k ? ", " : "",
                        list[k].op, *list[k].domain ? list[k].domain : "ai.onnx",
                        (long long)list[k].opset, list[k].node);
    const char *msg = kiln_buf_cstr(&b);
    kiln_status st = kiln_error(KILN_ERR_UNSUPPORTED, "%s", msg ? msg : "unsupported ops");
    kiln_buf_free(&b);
    return st;
}

static kiln_status add_inputs(onnx_ctx *c, const Onnx__GraphProto *g, kiln_strmap *inits)
{
    for (size_t i = 0; i < g->n_input; i++) {
        const Onnx__ValueInfoProto *v = g->input[i];
        if (!v->name || !*v->name)
            return kiln_error(KILN_ERR_PARSE, "%s: graph input %zu has no name", c->source, i);
        if (kiln_strmap_get(inits, v->name) >= 0) continue; /* an initializer: a constant */
        const Onnx__TypeProto *t = v->type;
        if (!t || t->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !t->tensor_type)
            return kiln_error(
                KILN_ERR_UNSUPPORTED,
                "%s: input '%s' is not a tensor (sequences, maps and optionals are not supported)",
                c->source, v->name);
        const Onnx__TypeProto__Tensor *tt = t->tensor_type;
        kiln_dtype dt = dtype_of(tt->elem_type);
        if (dt == KILN_DTYPE_UNDEFINED)
            return kiln_error(KILN_ERR_UNSUPPORTED,
                              "%s: input '%s' has dtype %s, which kiln does not support", c->source,
                              v->name, onnx_type_name(tt->elem_type));
        if (!tt->shape)
            return kiln_error(KILN_ERR_UNSUPPORTED,
                              "%s: input '%s' has no shape (not even a rank) in the model",
                              c->source, v->name);
        if (tt->shape->n_dim > KILN_MAX_RANK)
            return kiln_error(KILN_ERR_UNSUPPORTED, "%s: input '%s' has rank %zu (kiln allows %d)",
                              c->source, v->name, tt->shape->n_dim, KILN_MAX_RANK);
        kiln_dims s;
        memset(&s, 0, sizeof s);
        s.rank = (int32_t)tt->shape->n_dim;
        for (size_t k = 0; k < tt->shape->n_dim; k++) {
            const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[k];
            bool fixed = d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            if (fixed && d->dim_value < 0)
                return kiln_error(KILN_ERR_PARSE, "%s: input '%s' dimension %zu is %lld", c->source,
                                  v->name, k, (long long)d->dim_value);
            /* dim_param (symbolic) and unknown dims are dynamic: the build gives them sizes. */
            s.d[k] = fixed ? d->dim_value : -1;
        }
        kiln_status st = ir_graph_add_input(c->g, v->name, dt, &s);
        if (st) return kiln_error_prefix(st, "%s: ", c->source);
    }
    return KILN_OK;
}

/* Gives every node a unique, non-empty name and fills onnx_node. */
static kiln_status prepare_node(onnx_ctx *c, const Onnx__ModelProto *m, size_t index,
                                const Onnx__NodeProto *p, kiln_strmap *names, onnx_node *n)
{
    memset(n, 0, sizeof *n);
    n->proto = p;
    n->op = p->op_type;
    n->opset = domain_opset(m, p->domain);
    char buf[300];
    const char *name = p->name && *p->name ? p->name : NULL;
    if (!name || kiln_strmap_get(names, name) >= 0 || strlen(name) > 1024) {
        for (int k = 0;; k++) {
            snprintf(buf, sizeof buf, "%.200s_%zu%s",
                     name && strlen(name) <= 200 ? name : p->op_type, index, k ? "_" : "");
            if (k) snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%d", k);
            if (kiln_strmap_get(names, buf) < 0) break;
        }
        name = buf;
    }
    n->name = kiln_arena_strdup(&c->g->arena, name);
    if (!n->name) return KILN_ERR_OUT_OF_MEMORY;
    KILN_TRY(kiln_strmap_put(names, n->name, (int32_t)index));
    if (p->n_input > 1024 || p->n_output > 1024)
        return kiln_error(KILN_ERR_PARSE, "%s: node '%s' has %zu inputs and %zu outputs", c->source,
                          n->name, p->n_input, p->n_output);
    n->n_in = (int32_t)p->n_input;
    n->in = kiln_arena_alloc(&c->g->arena, sizeof(char *) * (p->n_input + 1));
    n->out = kiln_arena_alloc(&c->g->arena, sizeof(char *) * (p->n_output + 1));
    if (!n->in || !n->out) return KILN_ERR_OUT_OF_MEMORY;
    for (size_t k = 0; k < p->n_input; k++) n->in[k] = p->input[k] ? p->input[k] : "";
    /* Trailing empty inputs are the same as absent ones. */
    while (n->n_in > 0 && !*n->in[n->n_in - 1]) n->n_in--;
    /* Trailing empty outputs are dropped; empty ones in between get generated names. */
    int32_t n_out = (int32_t)p->n_output;
    while (n_out > 0 && (!p->output[n_out - 1] || !*p->output[n_out - 1])) n_out--;
    for (int32_t k = 0; k < n_out; k++) {
        n->out[k] =
            p->output[k] && *p->output[k] ? p->output[k] : onnx_fresh_name(c, n->name, "unused");
        if (!n->out[k]) return KILN_ERR_OUT_OF_MEMORY;
    }
    n->n_out = n_out;
    return convert_attrs(c, n);
}

static kiln_status import_graph(onnx_ctx *c, const Onnx__ModelProto *m)
{
    const Onnx__GraphProto *g = m->graph;
    kiln_status st = KILN_OK;
    kiln_strmap inits, names;
    memset(&inits, 0, sizeof inits);
    memset(&names, 0, sizeof names);
    KILN_CHECK(check_ops(c, m, g));
    for (size_t i = 0; i < g->n_initializer; i++) {
        const Onnx__TensorProto *t = g->initializer[i];
        if (!t->name || !*t->name) {
            st = kiln_error(KILN_ERR_PARSE, "%s: initializer %zu has no name", c->source, i);
            goto fail;
        }
        KILN_CHECK(kiln_strmap_put(&inits, t->name, (int32_t)i));
    }
    if (g->n_sparse_initializer) {
        st = kiln_error(KILN_ERR_UNSUPPORTED, "%s: sparse initializers are not supported",
                        c->source);
        goto fail;
    }
    KILN_CHECK(add_inputs(c, g, &inits));
    for (size_t i = 0; i < g->n_initializer; i++)
        KILN_CHECK(onnx_tensor_to_constant(c, g->initializer[i], g->initializer[i]->name));
    for (size_t i = 0; i < g->n_node; i++) {
        onnx_node n;
        KILN_CHECK(prepare_node(c, m, i, g->node[i], &names, &n));
        KILN_CHECK(onnx_convert_node(c, &n));
    }
    for (size_t i = 0; i < g->n_output; i++) {
        const char *name = g->output[i]->name;
        if (!name || !*name) {
            st = kiln_error(KILN_ERR_PARSE, "%s: graph output %zu has no name", c->source, i);
            goto fail;
        }
        int32_t v = ir_graph_find_value(c->g, name);
        if (v >= 0 && c->g->values[v].is_output) continue; /* listed twice */
        st = ir_graph_mark_output(c->g, name);
        if (st) {
            kiln_error_prefix(st, "%s: ", c->source);
            goto fail;
        }
    }
fail:
    kiln_strmap_free(&inits);
    kiln_strmap_free(&names);
    return st;
}

static kiln_status import_model(kiln_network *net, const void *data, size_t size,
                                const char *base_dir, const char *source)
{
    if (!net || (!data && size))
        return kiln_error(KILN_ERR_INVALID_ARGUMENT, "ONNX import: network or data is NULL");
    if (net->g.n_nodes || net->g.n_values)
        return kiln_error(KILN_ERR_INVALID_ARGUMENT, "ONNX import: the network is not empty");
    bool oom = false;
    ProtobufCAllocator pba = {pb_alloc, pb_free, &oom};
    Onnx__ModelProto *m = onnx__model_proto__unpack(&pba, size, data);
    if (!m && oom)
        return kiln_error(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory decoding the model", source);
    if (!m)
        return kiln_error(KILN_ERR_PARSE,
                          "%s: not a valid ONNX model (%zu bytes that do not decode as a "
                          "ModelProto: truncated, corrupt, or another format)",
                          source, size);
    kiln_status st = KILN_OK;
    onnx_ctx c = {&net->g, source, base_dir, domain_opset(m, ""), 0};
    if (!m->graph) {
        st = kiln_error(KILN_ERR_PARSE, "%s: the model has no graph", source);
        goto done;
    }
    if (c.opset < 0) {
        st = kiln_error(KILN_ERR_PARSE, "%s: the model imports no opset of the default ONNX domain",
                        source);
        goto done;
    }
    if (c.opset < ONNX_MIN_OPSET || c.opset > ONNX_MAX_OPSET) {
        st = kiln_error(KILN_ERR_UNSUPPORTED,
                        "%s: opset %lld of the default domain; kiln reads opsets %d to %d", source,
                        (long long)c.opset, ONNX_MIN_OPSET, ONNX_MAX_OPSET);
        goto done;
    }
    st = import_graph(&c, m);
done:
    onnx__model_proto__free_unpacked(m, &pba);
    if (st) {
        /* Leave the network empty rather than half imported. */
        ir_graph_free(&net->g);
        ir_graph_init(&net->g);
    }
    return st;
}

kiln_status kiln_onnx_parse_memory(kiln_network *net, const void *data, size_t size,
                                   const char *base_dir)
{
    return import_model(net, data, size, base_dir, "model");
}

kiln_status kiln_onnx_parse_file(kiln_network *net, const char *path)
{
    if (!net || !path)
        return kiln_error(KILN_ERR_INVALID_ARGUMENT, "kiln_onnx_parse_file: NULL argument");
    FILE *f = fopen(path, "rb");
    if (!f) return kiln_error(KILN_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return kiln_error(KILN_ERR_IO, "'%s' is not a regular file", path);
    }
    /* protobuf limits a message to 2 GiB; larger models keep weights in external files. */
    if (sb.st_size > INT32_MAX) {
        fclose(f);
        return kiln_error(KILN_ERR_PARSE,
                          "'%s': %lld bytes is over protobuf's 2 GiB limit (use external data)",
                          path, (long long)sb.st_size);
    }
    size_t size = (size_t)sb.st_size;
    void *buf = kiln_malloc(size ? size : 1);
    if (!buf) {
        fclose(f);
        return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory reading '%s' (%zu bytes)", path,
                          size);
    }
    size_t got = fread(buf, 1, size, f);
    fclose(f);
    if (got != size) {
        kiln_free(buf);
        return kiln_error(KILN_ERR_IO, "reading '%s' failed", path);
    }
    char *dir = kiln_strdup(path);
    if (!dir) {
        kiln_free(buf);
        return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory");
    }
    char *slash = strrchr(dir, '/');
    if (slash)
        *(slash == dir ? slash + 1 : slash) = 0;
    else
        strcpy(dir, ".");
    kiln_status st = import_model(net, buf, size, dir, path);
    kiln_free(dir);
    kiln_free(buf);
    return st;
}
