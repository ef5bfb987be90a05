/* graph.c - building, copying and checking the graph; attribute access. */
#include <stdio.h>
#include <string.h>

#include "ir/ir.h"

void ir_graph_init(ir_graph *g)
{
    memset(g, 0, sizeof *g);
    kiln_arena_init(&g->arena);
}

void ir_graph_free(ir_graph *g)
{
    kiln_free(g->values);
    kiln_free(g->nodes);
    kiln_free(g->inputs);
    kiln_free(g->outputs);
    kiln_strmap_free(&g->value_by_name);
    kiln_strmap_free(&g->node_by_name);
    kiln_arena_free(&g->arena);
    memset(g, 0, sizeof *g);
}

/* Grows an array of `elem` bytes to hold one more; returns false on failure. */
static bool grow(void **arr, int32_t n, int32_t *cap, size_t elem)
{
    if (n < *cap) return true;
    int32_t nc = *cap ? *cap * 2 : 16;
    void *p = kiln_realloc(*arr, (size_t)nc * elem);
    if (!p) {
        kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory growing the graph to %d entries", nc);
        return false;
    }
    *arr = p;
    *cap = nc;
    return true;
}

static kiln_status check_name(const char *what, const char *name)
{
    if (!name || !*name) return kiln_error(KILN_ERR_INVALID_ARGUMENT, "%s name is empty", what);
    if (strlen(name) > KILN_MAX_NAME)
        return kiln_error(KILN_ERR_INVALID_ARGUMENT, "%s name is longer than %d bytes", what,
                          KILN_MAX_NAME);
    return KILN_OK;
}

int32_t ir_graph_find_value(const ir_graph *g, const char *name)
{
    return kiln_strmap_get(&g->value_by_name, name);
}

kiln_status ir_graph_add_value(ir_graph *g, const char *name, ir_value_kind kind, int32_t *id)
{
    KILN_TRY(check_name("tensor", name));
    if (ir_graph_find_value(g, name) >= 0)
        return kiln_error(KILN_ERR_INVALID_GRAPH, "tensor '%s' is defined twice", name);
    if (!grow((void **)&g->values, g->n_values, &g->cap_values, sizeof *g->values))
        return KILN_ERR_OUT_OF_MEMORY;
    char *s = kiln_arena_strdup(&g->arena, name);
    if (!s) return KILN_ERR_OUT_OF_MEMORY;
    KILN_TRY(kiln_strmap_put(&g->value_by_name, s, g->n_values));
    ir_value *v = &g->values[g->n_values];
    memset(v, 0, sizeof *v);
    v->name = s;
    v->kind = kind;
    v->producer = -1;
    v->dyn_dims = g->dynamic && kind == IR_VALUE_ACTIVATION ? IR_DIMS_UNKNOWN : 0;
    if (id) *id = g->n_values;
    g->n_values++;
    return KILN_OK;
}

static kiln_status check_shape(const char *name, const kiln_dims *shape, bool allow_dynamic)
{
    if (!shape) return kiln_error(KILN_ERR_INVALID_ARGUMENT, "tensor '%s': shape is NULL", name);
    if (shape->rank < 0 || shape->rank > KILN_MAX_RANK)
        return kiln_error(KILN_ERR_SHAPE, "tensor '%s': rank %d is outside 0..%d", name,
                          shape->rank, KILN_MAX_RANK);
    for (int i = 0; i < shape->rank; i++)
        if (shape->d[i] < 0 && !(allow_dynamic && shape->d[i] == -1))
            return kiln_error(KILN_ERR_SHAPE, "tensor '%s': dimension %d is %lld", name, i,
                              (long long)shape->d[i]);
    return KILN_OK;
}

kiln_status ir_graph_add_input(ir_graph *g, const char *name, kiln_dtype dtype,
                               const kiln_dims *shape)
{
    KILN_TRY(check_name("input", name));
    KILN_TRY(check_shape(name, shape, true));
    if (kiln_dtype_size(dtype) == 0)
        return kiln_error(KILN_ERR_UNSUPPORTED, "input '%s': unsupported dtype %d", name,
                          (int)dtype);
    if (!grow((void **)&g->inputs, g->n_inputs, &g->cap_inputs, sizeof *g->inputs))
        return KILN_ERR_OUT_OF_MEMORY;
    int32_t id = -1;
    KILN_TRY(ir_graph_add_value(g, name, IR_VALUE_INPUT, &id));
    ir_value *v = &g->values[id];
    v->dtype = dtype;
    v->shape = *shape;
    v->shape_known = true;
    for (int i = 0; i < shape->rank; i++)
        if (shape->d[i] < 0) v->shape_known = false;
    g->inputs[g->n_inputs++] = id;
    return KILN_OK;
}

kiln_status ir_graph_add_constant(ir_graph *g, const char *name, kiln_dtype dtype,
                                  const kiln_dims *shape, const void *data, size_t nbytes,
                                  bool copy, int32_t *id)
{
    KILN_TRY(check_name("constant", name));
    KILN_TRY(check_shape(name, shape, false));
    size_t es = kiln_dtype_size(dtype);
    if (es == 0)
        return kiln_error(KILN_ERR_UNSUPPORTED, "constant '%s': unsupported dtype %d", name,
                          (int)dtype);
    int64_t n, bytes;
    if (!kiln_dims_numel(shape, &n) || !kiln_mul_ok(n, (int64_t)es, &bytes))
        return kiln_error(KILN_ERR_SHAPE, "constant '%s': too many elements", name);
    if ((size_t)bytes != nbytes)
        return kiln_error(KILN_ERR_SHAPE, "constant '%s': shape needs %lld bytes, got %zu", name,
                          (long long)bytes, nbytes);
    if (nbytes && !data)
        return kiln_error(KILN_ERR_INVALID_ARGUMENT, "constant '%s': data is NULL", name);
    const void *stored = data;
    if (copy && nbytes) {
        stored = kiln_arena_memdup(&g->arena, data, nbytes);
        if (!stored) return KILN_ERR_OUT_OF_MEMORY;
    }
    int32_t vid = -1;
    KILN_TRY(ir_graph_add_value(g, name, IR_VALUE_CONSTANT, &vid));
    ir_value *v = &g->values[vid];
    v->dtype = dtype;
    v->shape = *shape;
    v->shape_known = true;
    v->data = stored;
    v->nbytes = nbytes;
    if (id) *id = vid;
    return KILN_OK;
}

static const ir_attr_def *attr_def(const ir_op *op, const char *name)
{
    for (int32_t i = 0; i < op->n_attrs; i++)
        if (strcmp(op->attrs[i].name, name) == 0) return &op->attrs[i];
    return NULL;
}

const char *ir_attr_type_name(kiln_attr_type t)
{
    switch (t) {
    case KILN_ATTR_INT: return "int";
    case KILN_ATTR_FLOAT: return "float";
    case KILN_ATTR_STRING: return "string";
    case KILN_ATTR_INTS: return "ints";
    case KILN_ATTR_FLOATS: return "floats";
    }
    return "?";
}

/* Copies the given attributes into the arena and adds schema defaults for the scalar
 * attributes not given. */
static kiln_status copy_attrs(ir_graph *g, const ir_op *op, const char *node,
                              const kiln_attr *attrs, int32_t n_attrs, ir_node *out)
{
    if (n_attrs < 0 || (n_attrs > 0 && !attrs))
        return kiln_error(KILN_ERR_INVALID_ARGUMENT, "node '%s' (%s): bad attribute list", node,
                          op->name);
    for (int32_t i = 0; i < n_attrs; i++) {
        const kiln_attr *a = &attrs[i];
        if (!a->name)
            return kiln_error(KILN_ERR_INVALID_ARGUMENT, "node '%s' (%s): attribute %d has no name",
                              node, op->name, i);
        const ir_attr_def *d = attr_def(op, a->name);
        if (!d)
            return kiln_error(KILN_ERR_UNSUPPORTED, "node '%s' (%s): unknown attribute '%s'", node,
                              op->name, a->name);
        if (d->type != a->type)
            return kiln_error(KILN_ERR_INVALID_ARGUMENT,
                              "node '%s' (%s): attribute '%s' must be %s, got %s", node, op->name,
                              a->name, ir_attr_type_name(d->type), ir_attr_type_name(a->type));
        if ((a->type == KILN_ATTR_INTS || a->type == KILN_ATTR_FLOATS) &&
            (a->count < 0 || a->count > 4096 ||
             (a->count > 0 &&
              !(a->type == KILN_ATTR_INTS ? (const void *)a->ints : (const void *)a->floats))))
            return kiln_error(KILN_ERR_INVALID_ARGUMENT,
                              "node '%s' (%s): attribute '%s' has a bad list (count %d)", node,
                              op->name, a->name, a->count);
        if (a->type == KILN_ATTR_STRING && !a->s)
            return kiln_error(KILN_ERR_INVALID_ARGUMENT,
                              "node '%s' (%s): attribute '%s' string is NULL", node, op->name,
                              a->name);
        for (int32_t j = 0; j < i; j++)
            if (strcmp(attrs[j].name, a->name) == 0)
                return kiln_error(KILN_ERR_INVALID_ARGUMENT,
                                  "node '%s' (%s): attribute '%s' given twice", node, op->name,
                                  a->name);
    }
    for (int32_t k = 0; k < op->n_attrs; k++) {
        bool given = false;
        for (int32_t i = 0; i < n_attrs; i++)
            if (strcmp(attrs[i].name, op->attrs[k].name) == 0) given = true;
        if (!given && op->attrs[k].required)
            return kiln_error(KILN_ERR_INVALID_GRAPH,
                              "node '%s' (%s): required attribute '%s' is missing", node, op->name,
                              op->attrs[k].name);
    }
    /* Room for everything given plus every default. */
    kiln_attr *arr =
        kiln_arena_alloc(&g->arena, sizeof(kiln_attr) * (size_t)(n_attrs + op->n_attrs + 1));
    if (!arr) return KILN_ERR_OUT_OF_MEMORY;
    int32_t n = 0;
    for (int32_t i = 0; i < n_attrs; i++) {
        kiln_attr c = attrs[i];
        c.name = attr_def(op, c.name)->name; /* static storage */
        if (c.type == KILN_ATTR_STRING) {
            c.s = kiln_arena_strdup(&g->arena, c.s);
            if (!c.s) return KILN_ERR_OUT_OF_MEMORY;
        } else if (c.type == KILN_ATTR_INTS) {
            c.floats = NULL;
            c.ints = kiln_arena_memdup(&g->arena, c.ints ? (const void *)c.ints : "",
                                       sizeof(int64_t) * (size_t)c.count);
            if (!c.ints) return KILN_ERR_OUT_OF_MEMORY;
        } else if (c.type == KILN_ATTR_FLOATS) {
            c.ints = NULL;
            c.floats = kiln_arena_memdup(&g->arena, c.floats ? (const void *)c.floats : "",
                                         sizeof(float) * (size_t)c.count);
            if (!c.floats) return KILN_ERR_OUT_OF_MEMORY;
        }
        if (c.type != KILN_ATTR_INTS) c.ints = NULL;
        if (c.type != KILN_ATTR_FLOATS) c.floats = NULL;
        if (c.type != KILN_ATTR_STRING) c.s = NULL;
        if (c.type != KILN_ATTR_INTS && c.type != KILN_ATTR_FLOATS) c.count = 0;
        arr[n++] = c;
    }
    for (int32_t k = 0; k < op->n_attrs; k++) {
        const ir_attr_def *d = &op->attrs[k];
        bool given = false;
        for (int32_t i = 0; i < n_attrs; i++)
            if (strcmp(attrs[i].name, d->name) == 0) given = true;
        if (given || d->required) continue;
        if (d->type == KILN_ATTR_INT)
            arr[n++] = (kiln_attr){.name = d->name, .type = d->type, .i = d->i};
        else if (d->type == KILN_ATTR_FLOAT)
            arr[n++] = (kiln_attr){.name = d->name, .type = d->type, .f = d->f};
        else if (d->type == KILN_ATTR_STRING)
            arr[n++] = (kiln_attr){.name = d->name, .type = d->type, .s = d->s ? d->s : ""};
    }
    out->attrs = arr;
    out->n_attrs = n;
    return KILN_OK;
}

kiln_status ir_graph_add_node(ir_graph *g, const char *opname, const char *name,
                              const char *const *inputs, int32_t n_in, const char *const *outputs,
                              int32_t n_out, const kiln_attr *attrs, int32_t n_attrs, int32_t *id)
{
    if (!opname) return kiln_error(KILN_ERR_INVALID_ARGUMENT, "layer op is NULL");
    char auto_name[64];
    if (!name || !*name) {
        snprintf(auto_name, sizeof auto_name, "%s_%d", opname, g->auto_names++);
        name = auto_name;
    }
    KILN_TRY(check_name("layer", name));
    const ir_op *op = ir_op_find(opname);
    if (!op)
        return kiln_error(KILN_ERR_UNSUPPORTED, "node '%s': op '%s' is not supported", name,
                          opname);
    if (kiln_strmap_get(&g->node_by_name, name) >= 0)
        return kiln_error(KILN_ERR_INVALID_GRAPH, "node '%s' (%s): a layer of this name exists",
                          name, op->name);
    if (n_in < op->min_in || n_in > op->max_in)
        return kiln_error(KILN_ERR_INVALID_GRAPH, "node '%s' (%s): takes %d to %d inputs, got %d",
                          name, op->name, op->min_in, op->max_in, n_in);
    if (n_out < op->min_out || n_out > op->max_out)
        return kiln_error(KILN_ERR_INVALID_GRAPH, "node '%s' (%s): gives %d to %d outputs, got %d",
                          name, op->name, op->min_out, op->max_out, n_out);
    if ((n_in && !inputs) || (n_out && !outputs))
        return kiln_error(KILN_ERR_INVALID_ARGUMENT, "node '%s' (%s): input or output list is NULL",
                          name, op->name);
    for (int32_t i = 0; i < n_in; i++) {
        if (!inputs[i])
            return kiln_error(KILN_ERR_INVALID_ARGUMENT, "node '%s' (%s): input %d is NULL", name,
                              op->name, i);
        if (!*inputs[i] && i < op->min_in)
            return kiln_error(KILN_ERR_INVALID_GRAPH,
                              "node '%s' (%s): input %d is required but empty", name, op->name, i);
        if (*inputs[i] && ir_graph_find_value(g, inputs[i]) < 0)
            return kiln_error(KILN_ERR_INVALID_GRAPH,
                              "node '%s' (%s): input %d '%s' is not a known tensor", name, op->name,
                              i, inputs[i]);
    }
    for (int32_t i = 0; i < n_out; i++) {
        if (!outputs[i] || !*outputs[i])
            return kiln_error(KILN_ERR_INVALID_GRAPH, "node '%s' (%s): output %d has no name", name,
                              op->name, i);
        if (ir_graph_find_value(g, outputs[i]) >= 0)
            return kiln_error(KILN_ERR_INVALID_GRAPH,
                              "node '%s' (%s): output '%s' is already defined", name, op->name,
                              outputs[i]);
        for (int32_t j = 0; j < i; j++)
            if (strcmp(outputs[i], outputs[j]) == 0)
                return kiln_error(KILN_ERR_INVALID_GRAPH,
                                  "node '%s' (%s): output '%s' is listed twice", name, op->name,
                                  outputs[i]);
    }
    if (!grow((void **)&g->nodes, g->n_nodes, &g->cap_nodes, sizeof *g->nodes))
        return KILN_ERR_OUT_OF_MEMORY;
    ir_node node;
    memset(&node, 0, sizeof node);
    node.op = op;
    node.n_in = n_in;
    node.n_out = n_out;
    node.name = kiln_arena_strdup(&g->arena, name);
    node.in = kiln_arena_alloc(&g->arena, sizeof(int32_t) * (size_t)(n_in + 1));
    node.out = kiln_arena_alloc(&g->arena, sizeof(int32_t) * (size_t)(n_out + 1));
    if (!node.name || !node.in || !node.out) return KILN_ERR_OUT_OF_MEMORY;
    KILN_TRY(copy_attrs(g, op, name, attrs, n_attrs, &node));
    for (int32_t i = 0; i < n_in; i++)
        node.in[i] = *inputs[i] ? ir_graph_find_value(g, inputs[i]) : -1;
    int32_t nid = g->n_nodes;
    for (int32_t i = 0; i < n_out; i++) {
        int32_t vid = -1;
        KILN_TRY(ir_graph_add_value(g, outputs[i], IR_VALUE_ACTIVATION, &vid));
        g->values[vid].producer = nid;
        node.out[i] = vid;
    }
    KILN_TRY(kiln_strmap_put(&g->node_by_name, node.name, nid));
    g->nodes[nid] = node;
    g->n_nodes++;
    if (id) *id = nid;
    return KILN_OK;
}

kiln_status ir_graph_mark_output(ir_graph *g, const char *name)
{
    if (!name) return kiln_error(KILN_ERR_INVALID_ARGUMENT, "output name is NULL");
    int32_t v = ir_graph_find_value(g, name);
    if (v < 0)
        return kiln_error(KILN_ERR_NOT_FOUND, "cannot mark '%s' as output: no such tensor", name);
    if (g->values[v].is_output)
        return kiln_error(KILN_ERR_INVALID_GRAPH, "tensor '%s' is already an output", name);
    /* Inputs and outputs are bound by name, so one tensor cannot be both. */
    if (g->values[v].kind == IR_VALUE_INPUT)
        return kiln_error(KILN_ERR_INVALID_GRAPH,
                          "cannot mark '%s' as output: it is a network input (an output passing "
                          "an input through needs a layer, such as Identity, and its own name)",
                          name);
    if (!grow((void **)&g->outputs, g->n_outputs, &g->cap_outputs, sizeof *g->outputs))
        return KILN_ERR_OUT_OF_MEMORY;
    g->values[v].is_output = true;
    g->outputs[g->n_outputs++] = v;
    return KILN_OK;
}

kiln_status ir_graph_clone(const ir_graph *src, ir_graph *dst)
{
    kiln_status st = KILN_OK;
    ir_graph_init(dst);
    dst->auto_names = src->auto_names;
    dst->dynamic = src->dynamic;
    for (int32_t i = 0; i < src->n_values; i++) {
        const ir_value *v = &src->values[i];
        int32_t id = -1;
        KILN_CHECK(ir_graph_add_value(dst, v->name, v->kind, &id));
        const char *nm = dst->values[id].name;
        dst->values[id] = *v;
        dst->values[id].name = nm;
        dst->values[id].is_output = false;
    }
    for (int32_t i = 0; i < src->n_nodes; i++) {
        const ir_node *n = &src->nodes[i];
        if (!grow((void **)&dst->nodes, dst->n_nodes, &dst->cap_nodes, sizeof *dst->nodes)) {
            st = KILN_ERR_OUT_OF_MEMORY;
            goto fail;
        }
        ir_node c = *n;
        c.name = kiln_arena_strdup(&dst->arena, n->name);
        c.in = kiln_arena_memdup(&dst->arena, n->in, sizeof(int32_t) * (size_t)(n->n_in + 1));
        c.out = kiln_arena_memdup(&dst->arena, n->out, sizeof(int32_t) * (size_t)(n->n_out + 1));
        /* Attribute payloads are immutable once added; sharing them is safe as long as
         * the source outlives the clone, which builds guarantee. */
        c.attrs =
            kiln_arena_memdup(&dst->arena, n->attrs, sizeof(kiln_attr) * (size_t)(n->n_attrs + 1));
        if (!c.name || !c.in || !c.out || !c.attrs) {
            st = KILN_ERR_OUT_OF_MEMORY;
            goto fail;
        }
        KILN_CHECK(kiln_strmap_put(&dst->node_by_name, c.name, dst->n_nodes));
        dst->nodes[dst->n_nodes++] = c;
    }
    for (int32_t i = 0; i < src->n_inputs; i++) {
        if (!grow((void **)&dst->inputs, dst->n_inputs, &dst->cap_inputs, sizeof(int32_t))) {
            st = KILN_ERR_OUT_OF_MEMORY;
            goto fail;
        }
        dst->inputs[dst->n_inputs++] = src->inputs[i];
    }
    for (int32_t i = 0; i < src->n_outputs; i++)
        KILN_CHECK(ir_graph_mark_output(dst, src->values[src->outputs[i]].name));
    return KILN_OK;
fail:
    ir_graph_free(dst);
    return st;
}

kiln_status ir_node_error(const ir_node *n, kiln_status st, const char *fmt, ...)
{
    char msg[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return kiln_error(st, "node '%s' (%s): %s", n->name, n->op ? n->op->name : "?", msg);
}

/* ---- verification and order ---- */

kiln_status ir_graph_topo_order(const ir_graph *g, int32_t *order, int32_t *count)
{
    /* Kahn's algorithm over live nodes, always taking the lowest ready node id so the
     * order is deterministic and follows insertion order when that is already valid. */
    kiln_status st = KILN_OK;
    int32_t *pending = NULL, *users_start = NULL, *users = NULL;
    unsigned char *ready = NULL;
    int32_t nn = g->n_nodes, nv = g->n_values;
    KILN_CHECK(kiln_alloc_checked((void **)&pending, (size_t)nn + 1, sizeof(int32_t),
                                  "topological order"));
    KILN_CHECK(kiln_alloc_checked((void **)&ready, (size_t)nn + 1, 1, "topological order"));
    KILN_CHECK(kiln_alloc_checked((void **)&users_start, (size_t)nv + 2, sizeof(int32_t),
                                  "topological order"));
    int64_t edges = 0;
    for (int32_t i = 0; i < nn; i++)
        if (!g->nodes[i].dead) edges += g->nodes[i].n_in;
    KILN_CHECK(kiln_alloc_checked((void **)&users, (size_t)edges + 1, sizeof(int32_t),
                                  "topological order"));
    for (int32_t i = 0; i < nn; i++) {
        const ir_node *n = &g->nodes[i];
        if (n->dead) continue;
        for (int32_t k = 0; k < n->n_in; k++) {
            int32_t v = n->in[k];
            if (v >= 0 && g->values[v].producer >= 0 && !g->nodes[g->values[v].producer].dead) {
                pending[i]++;
                users_start[v + 1]++;
            }
        }
    }
    for (int32_t v = 0; v < nv; v++) users_start[v + 1] += users_start[v];
    {
        int32_t *fill = NULL;
        KILN_CHECK(kiln_alloc_checked((void **)&fill, (size_t)nv + 1, sizeof(int32_t),
                                      "topological order"));
        memcpy(fill, users_start, sizeof(int32_t) * (size_t)nv);
        for (int32_t i = 0; i < nn; i++) {
            const ir_node *n = &g->nodes[i];
            if (n->dead) continue;
            for (int32_t k = 0; k < n->n_in; k++) {
                int32_t v = n->in[k];
                if (v >= 0 && g->values[v].producer >= 0 && !g->nodes[g->values[v].producer].dead)
                    users[fill[v]++] = i;
            }
        }
        kiln_free(fill);
    }
    /* A min-heap of ready node ids: the lowest ready id goes first, so the order is
     * deterministic and keeps insertion order wherever that is already valid. */
    int32_t *heap = NULL, hn = 0, done = 0, live = 0;
    KILN_CHECK(
        kiln_alloc_checked((void **)&heap, (size_t)nn + 1, sizeof(int32_t), "topological order"));
    for (int32_t i = 0; i < nn; i++) {
        if (g->nodes[i].dead) continue;
        live++;
        if (pending[i] == 0) heap[hn++] = i; /* ascending: already a heap */
    }
    while (hn > 0) {
        int32_t pick = heap[0];
        heap[0] = heap[--hn];
        for (int32_t p = 0;;) { /* sift down */
            int32_t l = 2 * p + 1, r = l + 1, m = p;
            if (l < hn && heap[l] < heap[m]) m = l;
            if (r < hn && heap[r] < heap[m]) m = r;
            if (m == p) break;
            int32_t t = heap[p];
            heap[p] = heap[m];
            heap[m] = t;
            p = m;
        }
        ready[pick] = 2;
        order[done++] = pick;
        const ir_node *n = &g->nodes[pick];
        for (int32_t k = 0; k < n->n_out; k++) {
            int32_t v = n->out[k];
            for (int32_t u = users_start[v]; u < users_start[v + 1]; u++) {
                int32_t c = users[u];
                if (--pending[c] != 0) continue;
                int32_t p = hn++; /* sift up */
                heap[p] = c;
                while (p > 0 && heap[(p - 1) / 2] > heap[p]) {
                    int32_t t = heap[p];
                    heap[p] = heap[(p - 1) / 2];
                    heap[(p - 1) / 2] = t;
                    p = (p - 1) / 2;
                }
            }
        }
    }
    kiln_free(heap);
    if (done < live) {
        for (int32_t i = 0; i < nn; i++)
            if (!g->nodes[i].dead && ready[i] != 2) {
                st = ir_node_error(&g->nodes[i], KILN_ERR_INVALID_GRAPH,
                                   "is part of a cycle (its inputs depend on its own outputs)");
                goto fail;
            }
    }
    *count = done;
fail:
    kiln_free(pending);
    kiln_free(ready);
    kiln_free(users_start);
    kiln_free(users);
    return st;
}

kiln_status ir_graph_verify(const ir_graph *g)
{
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const ir_node *n = &g->nodes[i];
        if (n->dead) continue;
        if (!n->op) return kiln_error(KILN_ERR_INVALID_GRAPH, "node '%s' has no op", n->name);
        if (n->n_in < n->op->min_in || n->n_in > n->op->max_in)
            return ir_node_error(n, KILN_ERR_INVALID_GRAPH, "takes %d to %d inputs, has %d",
                                 n->op->min_in, n->op->max_in, n->n_in);
        if (n->n_out < n->op->min_out || n->n_out > n->op->max_out)
            return ir_node_error(n, KILN_ERR_INVALID_GRAPH, "gives %d to %d outputs, has %d",
                                 n->op->min_out, n->op->max_out, n->n_out);
        for (int32_t k = 0; k < n->n_in; k++) {
            int32_t v = n->in[k];
            if (v < -1 || v >= g->n_values)
                return ir_node_error(n, KILN_ERR_INVALID_GRAPH, "input %d refers to tensor #%d", k,
                                     v);
            if (v == -1 && k < n->op->min_in)
                return ir_node_error(n, KILN_ERR_INVALID_GRAPH, "required input %d is absent", k);
            if (v >= 0 && g->values[v].kind == IR_VALUE_ACTIVATION &&
                (g->values[v].producer < 0 || g->nodes[g->values[v].producer].dead))
                return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                                     "input '%s' is produced by no layer", g->values[v].name);
        }
        for (int32_t k = 0; k < n->n_out; k++) {
            int32_t v = n->out[k];
            if (v < 0 || v >= g->n_values || g->values[v].producer != i)
                return ir_node_error(n, KILN_ERR_INVALID_GRAPH, "output %d is not its own", k);
        }
    }
    if (g->n_outputs == 0) return kiln_error(KILN_ERR_INVALID_GRAPH, "the network marks no output");
    for (int32_t i = 0; i < g->n_outputs; i++) {
        const ir_value *v = &g->values[g->outputs[i]];
        if (v->kind == IR_VALUE_ACTIVATION && (v->producer < 0 || g->nodes[v->producer].dead))
            return kiln_error(KILN_ERR_INVALID_GRAPH, "output '%s' is produced by no layer",
                              v->name);
    }
    int32_t *order = NULL, count = 0;
    KILN_TRY(kiln_alloc_checked((void **)&order, (size_t)g->n_nodes + 1, sizeof(int32_t), "order"));
    kiln_status st = ir_graph_topo_order(g, order, &count);
    kiln_free(order);
    return st;
}

/* ---- attributes ---- */

const kiln_attr *ir_attr_find(const ir_node *n, const char *name)
{
    for (int32_t i = 0; i < n->n_attrs; i++)
        if (strcmp(n->attrs[i].name, name) == 0) return &n->attrs[i];
    return NULL;
}

int64_t ir_attr_int(const ir_node *n, const char *name)
{
    const kiln_attr *a = ir_attr_find(n, name);
    return a && a->type == KILN_ATTR_INT ? a->i : 0;
}

float ir_attr_float(const ir_node *n, const char *name)
{
    const kiln_attr *a = ir_attr_find(n, name);
    return a && a->type == KILN_ATTR_FLOAT ? a->f : 0.0f;
}

const char *ir_attr_string(const ir_node *n, const char *name)
{
    const kiln_attr *a = ir_attr_find(n, name);
    return a && a->type == KILN_ATTR_STRING && a->s ? a->s : "";
}

const int64_t *ir_attr_ints(const ir_node *n, const char *name, int32_t *count)
{
    const kiln_attr *a = ir_attr_find(n, name);
    if (!a || a->type != KILN_ATTR_INTS) {
        *count = 0;
        return NULL;
    }
    *count = a->count;
    return a->ints;
}

const float *ir_attr_floats(const ir_node *n, const char *name, int32_t *count)
{
    const kiln_attr *a = ir_attr_find(n, name);
    if (!a || a->type != KILN_ATTR_FLOATS) {
        *count = 0;
        return NULL;
    }
    *count = a->count;
    return a->floats;
}
