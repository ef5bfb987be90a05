/* cse.c - common-subexpression elimination: small identical constants (same dtype, shape,
 * bytes) become one, then live layers with the same op, inputs and attributes become one
 * (kiln's ops are deterministic); readers of the second read the first. */
#include <string.h>

#include "opt/opt.h"

/* Constants up to this size are compared byte for byte and merged. */
#define CSE_CONST_MAX_BYTES ((size_t)64 << 10)

/* Open-addressing table of ids keyed by a 32-bit hash; several ids may share a hash. */
typedef struct id_table {
    int32_t *ids;
    uint32_t *hashes;
    uint32_t mask;
} id_table;

static kiln_status table_init(id_table *t, int32_t n)
{
    uint32_t cap = 16;
    while (cap < 2u * (uint32_t)n) cap <<= 1;
    t->mask = cap - 1;
    t->hashes = NULL;
    KILN_TRY(kiln_alloc_checked((void **)&t->ids, cap, sizeof(int32_t), "cse"));
    kiln_status st = kiln_alloc_checked((void **)&t->hashes, cap, sizeof(uint32_t), "cse");
    if (st) {
        kiln_free(t->ids);
        t->ids = NULL;
        return st;
    }
    for (uint32_t i = 0; i < cap; i++) t->ids[i] = -1;
    return KILN_OK;
}

static void table_free(id_table *t)
{
    kiln_free(t->ids);
    kiln_free(t->hashes);
}

/* Calls match(id) for each stored id with hash h until it returns true; that id, or -1. */
static int32_t table_find(const id_table *t, uint32_t h, bool (*match)(const void *, int32_t),
                          const void *ctx)
{
    for (uint32_t i = h & t->mask; t->ids[i] >= 0; i = (i + 1) & t->mask)
        if (t->hashes[i] == h && match(ctx, t->ids[i])) return t->ids[i];
    return -1;
}

static void table_put(id_table *t, uint32_t h, int32_t id)
{
    uint32_t i = h & t->mask;
    while (t->ids[i] >= 0) i = (i + 1) & t->mask;
    t->ids[i] = id;
    t->hashes[i] = h;
}

/* ---- constants ---- */

static size_t const_bytes(const ir_value *v)
{
    return (size_t)kiln_dims_count(&v->shape) * kiln_dtype_size(v->dtype);
}

static uint32_t const_hash(const ir_value *v)
{
    uint32_t h = kiln_crc32c(0, &v->dtype, sizeof v->dtype);
    h = kiln_crc32c(h, &v->shape.rank, sizeof v->shape.rank);
    h = kiln_crc32c(h, v->shape.d, sizeof(int64_t) * (size_t)v->shape.rank);
    size_t n = const_bytes(v);
    return n ? kiln_crc32c(h, v->data, n) : h;
}

typedef struct const_ctx {
    const ir_graph *g;
    int32_t v;
} const_ctx;

static bool same_constant(const void *ctx, int32_t other)
{
    const const_ctx *c = ctx;
    const ir_value *a = &c->g->values[c->v], *b = &c->g->values[other];
    size_t n = const_bytes(a);
    return a->dtype == b->dtype && kiln_dims_equal(&a->shape, &b->shape) &&
           (n == 0 || memcmp(a->data, b->data, n) == 0);
}

static kiln_status merge_constants(ir_graph *g, int32_t *changes)
{
    int32_t *uses = NULL;
    id_table t;
    KILN_TRY(opt_use_counts(g, &uses));
    kiln_status st = table_init(&t, g->n_values);
    if (st) {
        kiln_free(uses);
        return st;
    }
    for (int32_t v = 0; v < g->n_values; v++) {
        const ir_value *val = &g->values[v];
        size_t n = const_bytes(val);
        if (val->kind != IR_VALUE_CONSTANT || kiln_dtype_size(val->dtype) == 0 ||
            n > CSE_CONST_MAX_BYTES || (n && !val->data))
            continue;
        uint32_t h = const_hash(val);
        const_ctx c = {g, v};
        int32_t keep = table_find(&t, h, same_constant, &c);
        if (keep < 0) {
            table_put(&t, h, v);
            continue;
        }
        if (uses[v] == 0) continue; /* nothing reads it: nothing to change */
        opt_replace_uses(g, v, keep);
        uses[keep] += uses[v];
        uses[v] = 0;
        (*changes)++;
        kiln_log(KILN_LOG_VERBOSE, "cse: constant '%s' is identical to '%s': readers now use '%s'",
                 val->name, g->values[keep].name, g->values[keep].name);
    }
    table_free(&t);
    kiln_free(uses);
    return KILN_OK;
}

/* ---- layers ---- */

static bool same_attr(const kiln_attr *a, const kiln_attr *b)
{
    if (a->type != b->type) return false;
    switch (a->type) {
    case KILN_ATTR_INT: return a->i == b->i;
    case KILN_ATTR_FLOAT: return memcmp(&a->f, &b->f, sizeof a->f) == 0; /* bits: NaN, -0 */
    case KILN_ATTR_STRING: return strcmp(a->s, b->s) == 0;
    case KILN_ATTR_INTS:
        return a->count == b->count &&
               (a->count == 0 || memcmp(a->ints, b->ints, sizeof(int64_t) * (size_t)a->count) == 0);
    case KILN_ATTR_FLOATS:
        return a->count == b->count &&
               (a->count == 0 ||
                memcmp(a->floats, b->floats, sizeof(float) * (size_t)a->count) == 0);
    }
    return false;
}

static bool same_attrs(const ir_node *a, const ir_node *b)
{
    if (a->n_attrs != b->n_attrs) return false;
    for (int32_t i = 0; i < a->n_attrs; i++) {
        const kiln_attr *other = ir_attr_find(b, a->attrs[i].name);
        if (!other || !same_attr(&a->attrs[i], other)) return false;
    }
    return true;
}

static uint32_t node_hash(const ir_node *n)
{
    uint32_t h = kiln_crc32c(0, n->op->name, strlen(n->op->name));
    h = kiln_crc32c(h, &n->n_out, sizeof n->n_out);
    h = kiln_crc32c(h, &n->n_in, sizeof n->n_in);
    return kiln_crc32c(h, n->in, sizeof(int32_t) * (size_t)n->n_in);
}

typedef struct node_ctx {
    const ir_graph *g;
    int32_t node;
} node_ctx;

static bool same_node(const void *ctx, int32_t other)
{
    const node_ctx *c = ctx;
    const ir_node *a = &c->g->nodes[other], *b = &c->g->nodes[c->node];
    if (a->dead || a->op != b->op || a->n_in != b->n_in || a->n_out != b->n_out) return false;
    if (a->n_in && memcmp(a->in, b->in, sizeof(int32_t) * (size_t)a->n_in) != 0) return false;
    for (int32_t k = 0; k < a->n_out; k++) {
        const ir_value *x = &c->g->values[a->out[k]], *y = &c->g->values[b->out[k]];
        if (x->dtype != y->dtype || !kiln_dims_equal(&x->shape, &y->shape)) return false;
    }
    return same_attrs(a, b);
}

/* Readers of node `dup`'s outputs read node `keep`'s. A network output of `dup` keeps its
 * name: `keep` then writes it (its own output's readers follow), which needs `keep`'s
 * output not to be a network output itself. Returns false when that is not possible. */
static bool merge_node(ir_graph *g, int32_t keep, int32_t dup)
{
    ir_node *a = &g->nodes[keep], *b = &g->nodes[dup];
    for (int32_t k = 0; k < b->n_out; k++)
        if (g->values[b->out[k]].is_output && g->values[a->out[k]].is_output) return false;
    for (int32_t k = 0; k < b->n_out; k++) {
        int32_t ya = a->out[k], yb = b->out[k];
        if (!g->values[yb].is_output) {
            opt_replace_uses(g, yb, ya);
            continue;
        }
        opt_replace_uses(g, ya, yb);
        a->out[k] = yb;
        g->values[yb].producer = keep;
        g->values[ya].producer = -1;
    }
    b->dead = true;
    return true;
}

static kiln_status merge_nodes(ir_graph *g, int32_t *changes)
{
    kiln_status st = KILN_OK;
    int32_t *order = NULL, count = 0;
    id_table t = {NULL, NULL, 0};
    KILN_CHECK(kiln_alloc_checked((void **)&order, (size_t)g->n_nodes + 1, sizeof *order, "cse"));
    KILN_CHECK(ir_graph_topo_order(g, order, &count));
    KILN_CHECK(table_init(&t, count));
    /* Producers first: once two layers merge, their readers have equal inputs too. */
    for (int32_t i = 0; i < count; i++) {
        int32_t id = order[i];
        const ir_node *n = &g->nodes[id];
        uint32_t h = node_hash(n);
        node_ctx c = {g, id};
        int32_t keep = table_find(&t, h, same_node, &c);
        if (keep < 0) {
            table_put(&t, h, id);
            continue;
        }
        if (!merge_node(g, keep, id)) {
            kiln_log(KILN_LOG_VERBOSE,
                     "cse: kept layer '%s' (%s), a duplicate of '%s': both write network outputs",
                     n->name, n->op->name, g->nodes[keep].name);
            continue;
        }
        KILN_CHECK(opt_record_fusion(g, keep, id));
        (*changes)++;
        kiln_log(KILN_LOG_VERBOSE, "cse: layer '%s' (%s) computes what '%s' does: removed",
                 g->nodes[id].name, g->nodes[id].op->name, g->nodes[keep].name);
    }
fail:
    table_free(&t);
    kiln_free(order);
    return st;
}

kiln_status opt_cse(ir_graph *g, int32_t *changes)
{
    KILN_TRY(merge_constants(g, changes));
    return merge_nodes(g, changes);
}
