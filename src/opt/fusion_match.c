/* fusion_match.c - see fusion_match.h: the reader index, pattern predicates and in-place
 * rewriting the fusion passes are built from. */
#include <math.h>
#include <string.h>

#include "opt/fusion_match.h"

kiln_status fm_readers_build(const ir_graph *g, fm_readers *r)
{
    memset(r, 0, sizeof *r);
    int32_t total = 0;
    for (int32_t i = 0; i < g->n_nodes; i++)
        if (!g->nodes[i].dead) total += g->nodes[i].n_in;
    r->n_values = g->n_values;
    KILN_TRY(kiln_alloc_checked((void **)&r->start, (size_t)g->n_values + 2, sizeof(int32_t),
                                "fusion pass"));
    kiln_status st =
        kiln_alloc_checked((void **)&r->node, (size_t)total + 1, sizeof(int32_t), "fusion pass");
    if (!st)
        st = kiln_alloc_checked((void **)&r->slot, (size_t)total + 1, sizeof(int32_t),
                                "fusion pass");
    if (st) {
        fm_readers_free(r);
        return st;
    }
    /* Counts into start[v + 1], prefix sums, then fill using start[v] as a cursor that
     * ends at start[v + 1]; one shift restores the starts. */
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const ir_node *n = &g->nodes[i];
        if (n->dead) continue;
        for (int32_t k = 0; k < n->n_in; k++)
            if (n->in[k] >= 0) r->start[n->in[k] + 1]++;
    }
    for (int32_t v = 0; v < g->n_values; v++) r->start[v + 1] += r->start[v];
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const ir_node *n = &g->nodes[i];
        if (n->dead) continue;
        for (int32_t k = 0; k < n->n_in; k++) {
            int32_t v = n->in[k];
            if (v < 0) continue;
            int32_t at = r->start[v]++;
            r->node[at] = i;
            r->slot[at] = k;
        }
    }
    for (int32_t v = g->n_values; v > 0; v--) r->start[v] = r->start[v - 1];
    r->start[0] = 0;
    return KILN_OK;
}

void fm_readers_free(fm_readers *r)
{
    kiln_free(r->start);
    kiln_free(r->node);
    kiln_free(r->slot);
    memset(r, 0, sizeof *r);
}

int32_t fm_only_reader(const fm_readers *r, int32_t v)
{
    return fm_count(r, v) == 1 ? r->node[r->start[v]] : -1;
}

bool fm_private(const ir_graph *g, const fm_readers *r, int32_t v, int32_t uses)
{
    if (v < 0 || v >= g->n_values) return false;
    const ir_value *val = &g->values[v];
    return val->kind == IR_VALUE_ACTIVATION && !val->is_output && val->dtype == KILN_DTYPE_F32 &&
           fm_count(r, v) == uses;
}

bool fm_is(const ir_graph *g, int32_t node, const char *op)
{
    return node >= 0 && !g->nodes[node].dead && strcmp(g->nodes[node].op->name, op) == 0;
}

int32_t fm_producer(const ir_graph *g, int32_t v)
{
    if (v < 0) return -1;
    int32_t p = g->values[v].producer;
    return p >= 0 && !g->nodes[p].dead ? p : -1;
}

int32_t fm_other(const ir_node *n, int32_t v)
{
    if (n->n_in != 2) return -1;
    if (n->in[0] == v && n->in[1] != v) return n->in[1];
    if (n->in[1] == v && n->in[0] != v) return n->in[0];
    return -1;
}

bool fm_scalar(const ir_graph *g, int32_t v, float *out)
{
    if (v < 0) return false;
    const ir_value *c = &g->values[v];
    if (c->kind != IR_VALUE_CONSTANT || c->dtype != KILN_DTYPE_F32 || !c->data ||
        kiln_dims_count(&c->shape) != 1)
        return false;
    *out = *(const float *)c->data;
    return true;
}

bool fm_scalar_near(const ir_graph *g, int32_t v, double want, double tol)
{
    float f;
    return fm_scalar(g, v, &f) && fabs((double)f - want) <= tol;
}

bool fm_same_shape(const ir_graph *g, int32_t a, int32_t b) { return opt_same_shape(g, a, b); }

bool fm_channel_vector(const ir_graph *g, int32_t v, const kiln_dims *shape, int32_t axis,
                       float *vec)
{
    const ir_value *c = &g->values[v];
    if (c->kind != IR_VALUE_CONSTANT || c->dtype != KILN_DTYPE_F32 || !c->data) return false;
    int32_t r = shape->rank, rv = c->shape.rank;
    if (rv > r || axis < 0 || axis >= r) return false;
    int64_t n = shape->d[axis];
    bool varies = false;
    for (int32_t j = 0; j < rv; j++) {
        int64_t dj = c->shape.d[j];
        if (dj == 1) continue;
        if (j + r - rv != axis || dj != n) return false;
        varies = true;
    }
    if (kiln_dims_count(&c->shape) != (varies ? n : 1)) return false;
    const float *p = c->data;
    for (int64_t i = 0; i < n; i++) vec[i] = p[varies ? i : 0];
    return true;
}

/* The attribute list of `op` for a node becoming it: see fm_rewrite. */
static kiln_status rewrite_attrs(ir_graph *g, const ir_node *n, const ir_op *op,
                                 const kiln_attr *extra, int32_t n_extra, kiln_attr **out,
                                 int32_t *count)
{
    kiln_attr *arr = kiln_arena_alloc(&g->arena, sizeof(kiln_attr) * (size_t)(op->n_attrs + 1));
    if (!arr) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory in a fusion pass");
    int32_t na = 0;
    for (int32_t k = 0; k < op->n_attrs; k++) {
        const ir_attr_def *d = &op->attrs[k];
        const kiln_attr *src = NULL;
        for (int32_t i = 0; i < n_extra && !src; i++)
            if (strcmp(extra[i].name, d->name) == 0) src = &extra[i];
        if (!src) src = ir_attr_find(n, d->name);
        if (src && src->type != d->type)
            return ir_node_error(n, KILN_ERR_INTERNAL, "fusion: attribute '%s' has the wrong type",
                                 d->name);
        kiln_attr a = {.name = d->name, .type = d->type};
        if (src) {
            a = *src;
            a.name = d->name;
            if (a.type == KILN_ATTR_STRING && !(a.s = kiln_arena_strdup(&g->arena, a.s)))
                return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory in a fusion pass");
        } else if (d->required) {
            return ir_node_error(n, KILN_ERR_INTERNAL, "fusion: %s needs attribute '%s'", op->name,
                                 d->name);
        } else if (d->type == KILN_ATTR_INT) {
            a.i = d->i;
        } else if (d->type == KILN_ATTR_FLOAT) {
            a.f = d->f;
        } else if (d->type == KILN_ATTR_STRING) {
            a.s = d->s ? d->s : "";
        } else {
            continue; /* a list left out stays out */
        }
        arr[na++] = a;
    }
    *out = arr;
    *count = na;
    return KILN_OK;
}

kiln_status fm_rewrite(ir_graph *g, int32_t node, const char *opname, const int32_t *in,
                       int32_t n_in, int32_t out, const kiln_attr *extra, int32_t n_extra,
                       bool *done)
{
    *done = false;
    ir_node *n = &g->nodes[node];
    const ir_op *op = ir_op_find(opname);
    if (!op || n_in < op->min_in || n_in > op->max_in || n_in > 16)
        return ir_node_error(n, KILN_ERR_INTERNAL, "fusion: cannot become %s with %d inputs",
                             opname, n_in);
    ir_node t = *n;
    t.op = op;
    t.n_in = n_in;
    t.n_out = 1;
    /* one spare entry each, as the graph's own arrays have (ir_graph_clone copies it) */
    t.in = kiln_arena_alloc(&g->arena, sizeof(int32_t) * (size_t)(n_in + 1));
    t.out = kiln_arena_alloc(&g->arena, sizeof(int32_t) * 2);
    if (!t.in || !t.out)
        return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory in a fusion pass");
    memcpy(t.in, in, sizeof(int32_t) * (size_t)n_in);
    t.in[n_in] = -1;
    t.out[0] = out;
    t.out[1] = -1;
    KILN_TRY(rewrite_attrs(g, n, op, extra, n_extra, &t.attrs, &t.n_attrs));

    /* The new node must compute exactly what `out` holds now. */
    ir_tensor tin[16], tout[1];
    memset(tout, 0, sizeof tout);
    for (int32_t k = 0; k < n_in; k++) {
        memset(&tin[k], 0, sizeof tin[k]);
        if (in[k] < 0) continue;
        const ir_value *v = &g->values[in[k]];
        tin[k] = (ir_tensor){v->dtype, v->shape, (void *)v->data, v->layout};
    }
    ir_infer c = {.node = &t, .n_in = n_in, .n_out = 1, .in = tin, .out = tout};
    const ir_value *vo = &g->values[out];
    if (op->infer(&c) != KILN_OK) {
        kiln_log(KILN_LOG_VERBOSE, "fusion: '%s' not rewritten into %s: %s", n->name, opname,
                 kiln_last_error());
        return KILN_OK;
    }
    if (tout[0].dtype != vo->dtype || !kiln_dims_equal(&tout[0].shape, &vo->shape)) {
        kiln_log(KILN_LOG_VERBOSE, "fusion: '%s' not rewritten into %s: the output would change",
                 n->name, opname);
        return KILN_OK;
    }
    for (int32_t k = 0; k < n->n_out; k++)
        if (g->values[n->out[k]].producer == node) g->values[n->out[k]].producer = -1;
    *n = t;
    g->values[out].producer = node;
    *done = true;
    return KILN_OK;
}

kiln_status fm_absorb(ir_graph *g, int32_t into, const int32_t *nodes, int32_t n)
{
    for (int32_t i = 0; i < n; i++) {
        g->nodes[nodes[i]].dead = true;
        KILN_TRY(opt_record_fusion(g, into, nodes[i]));
    }
    return KILN_OK;
}
