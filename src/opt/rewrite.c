/* rewrite.c - the small graph edits passes are made of: counting readers, rewiring,
 * bypassing Identity-like nodes, adding nodes, values and constants, recording fusions,
 * reading and setting a Transpose's perm. */
#include <stdio.h>
#include <string.h>

#include "opt/opt.h"

kiln_status opt_use_counts(const ir_graph *g, int32_t **counts)
{
    KILN_TRY(kiln_alloc_checked((void **)counts, (size_t)g->n_values + 1, sizeof(int32_t), "pass"));
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const ir_node *n = &g->nodes[i];
        if (n->dead) continue;
        for (int32_t k = 0; k < n->n_in; k++)
            if (n->in[k] >= 0) (*counts)[n->in[k]]++;
    }
    return KILN_OK;
}

int32_t opt_single_consumer(const ir_graph *g, int32_t v, int32_t *slot)
{
    int32_t found = -1;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const ir_node *n = &g->nodes[i];
        if (n->dead) continue;
        for (int32_t k = 0; k < n->n_in; k++) {
            if (n->in[k] != v) continue;
            if (found >= 0) return -1;
            found = i;
            if (slot) *slot = k;
        }
    }
    return found;
}

void opt_replace_uses(ir_graph *g, int32_t from, int32_t to)
{
    for (int32_t i = 0; i < g->n_nodes; i++) {
        ir_node *n = &g->nodes[i];
        if (n->dead) continue;
        for (int32_t k = 0; k < n->n_in; k++)
            if (n->in[k] == from) n->in[k] = to;
    }
}

bool opt_bypass(ir_graph *g, int32_t node)
{
    ir_node *n = &g->nodes[node];
    int32_t x = n->in[0], y = n->out[0];
    ir_value *vx = &g->values[x], *vy = &g->values[y];
    if (!vy->is_output) {
        opt_replace_uses(g, y, x);
        n->dead = true;
        return true;
    }
    /* y is bound by name: let x's producer write y, if x is private to this node. */
    if (vx->kind != IR_VALUE_ACTIVATION || vx->is_output || vx->producer < 0) return false;
    int32_t slot;
    if (opt_single_consumer(g, x, &slot) != node) return false;
    ir_node *p = &g->nodes[vx->producer];
    for (int32_t k = 0; k < p->n_out; k++)
        if (p->out[k] == x) p->out[k] = y;
    vy->producer = vx->producer;
    vx->producer = -1;
    n->dead = true;
    return true;
}

kiln_status opt_record_fusion(ir_graph *g, int32_t into, int32_t from)
{
    ir_node *a = &g->nodes[into], *b = &g->nodes[from];
    int32_t na = a->n_fused ? a->n_fused : 1, nb = b->n_fused ? b->n_fused : 1;
    const char **list = kiln_arena_alloc(&g->arena, sizeof(char *) * (size_t)(na + nb));
    if (!list) return KILN_ERR_OUT_OF_MEMORY;
    for (int32_t i = 0; i < na; i++) list[i] = a->n_fused ? a->fused_from[i] : a->name;
    for (int32_t i = 0; i < nb; i++) list[na + i] = b->n_fused ? b->fused_from[i] : b->name;
    a->fused_from = list;
    a->n_fused = na + nb;
    return KILN_OK;
}

/* "base::suffixN", unused as a node or value name. */
static const char *fresh(ir_graph *g, const char *base, const char *suffix, char *buf, size_t n)
{
    for (int32_t k = 0;; k++) {
        snprintf(buf, n, "%.200s::%s%d", base, suffix, k);
        if (ir_graph_find_value(g, buf) < 0 && kiln_strmap_get(&g->node_by_name, buf) < 0)
            return buf;
    }
}

kiln_status opt_add_node(ir_graph *g, const char *op, const char *base, const int32_t *in,
                         int32_t n_in, int32_t n_out, const kiln_attr *attrs, int32_t n_attrs,
                         int32_t *node)
{
    const char *in_names[16], *out_names[8];
    char nbuf[256], obuf[8][256];
    if (n_in > 16 || n_out > 8)
        return kiln_error(KILN_ERR_INTERNAL, "opt_add_node: too many tensors");
    for (int32_t k = 0; k < n_in; k++) in_names[k] = in[k] < 0 ? "" : g->values[in[k]].name;
    for (int32_t k = 0; k < n_out; k++) {
        char tmp[256];
        snprintf(tmp, sizeof tmp, "%.200s", base);
        out_names[k] = fresh(g, tmp, "out", obuf[k], sizeof obuf[k]);
        /* reserve the name against the next output by making it distinct */
        for (int32_t j = 0; j < k; j++)
            if (strcmp(out_names[j], out_names[k]) == 0)
                snprintf(obuf[k], sizeof obuf[k], "%.200s::out_%d_%d", base, k, j);
    }
    const char *name = fresh(g, base, op, nbuf, sizeof nbuf);
    int32_t id = -1;
    KILN_TRY(ir_graph_add_node(g, op, name, in_names, n_in, out_names, n_out, attrs, n_attrs, &id));
    if (node) *node = id;
    return opt_infer_node(g, id);
}

kiln_status opt_infer_node(ir_graph *g, int32_t node)
{
    ir_node *n = &g->nodes[node];
    ir_tensor in[16], out[8];
    if (n->n_in > 16 || n->n_out > 8)
        return ir_node_error(n, KILN_ERR_INTERNAL, "too many tensors");
    for (int32_t k = 0; k < n->n_in; k++) {
        memset(&in[k], 0, sizeof in[k]);
        if (n->in[k] < 0) continue;
        const ir_value *v = &g->values[n->in[k]];
        in[k] = (ir_tensor){v->dtype, v->shape, (void *)v->data, v->layout};
    }
    memset(out, 0, sizeof out);
    ir_infer c = {.node = n, .n_in = n->n_in, .n_out = n->n_out, .in = in, .out = out};
    KILN_TRY(n->op->infer(&c));
    for (int32_t k = 0; k < n->n_out; k++) {
        ir_value *v = &g->values[n->out[k]];
        v->dtype = out[k].dtype;
        v->shape = out[k].shape;
        v->shape_known = true;
    }
    return KILN_OK;
}

kiln_status opt_add_constant(ir_graph *g, const char *base, kiln_dtype dtype,
                             const kiln_dims *shape, const void *data, int32_t *value)
{
    char buf[256];
    const char *name = fresh(g, base, "const", buf, sizeof buf);
    size_t bytes = (size_t)kiln_dims_count(shape) * kiln_dtype_size(dtype);
    return ir_graph_add_constant(g, name, dtype, shape, bytes ? data : "", bytes, true, value);
}

bool opt_static_shape(const ir_graph *g, int32_t v)
{
    return !g->dynamic || g->values[v].dyn_dims == 0;
}

bool opt_same_shape(const ir_graph *g, int32_t a, int32_t b)
{
    const ir_value *va = &g->values[a], *vb = &g->values[b];
    if (va->dtype != vb->dtype || !kiln_dims_equal(&va->shape, &vb->shape)) return false;
    if (!g->dynamic || a == b || (va->dyn_dims == 0 && vb->dyn_dims == 0)) return true;
    return va->dyn_dims != IR_DIMS_UNKNOWN && va->dyn_dims == vb->dyn_dims &&
           va->shape_sig == vb->shape_sig;
}

kiln_status opt_add_value(ir_graph *g, const char *base, int32_t *value)
{
    char buf[256];
    return ir_graph_add_value(g, fresh(g, base, "out", buf, sizeof buf), IR_VALUE_ACTIVATION,
                              value);
}

void opt_transpose_perm(const ir_node *n, int32_t rank, int32_t *perm)
{
    int32_t cnt = 0;
    const int64_t *p = ir_attr_ints(n, "perm", &cnt);
    for (int32_t i = 0; i < rank; i++) perm[i] = p && cnt == rank ? (int32_t)p[i] : rank - 1 - i;
}

kiln_status opt_set_transpose_perm(ir_graph *g, ir_node *n, const int32_t *perm, int32_t rank)
{
    int64_t *vals = kiln_arena_alloc(&g->arena, sizeof(int64_t) * (size_t)(rank + 1));
    if (!vals) return KILN_ERR_OUT_OF_MEMORY;
    for (int32_t i = 0; i < rank; i++) vals[i] = perm[i];
    kiln_attr *a = (kiln_attr *)ir_attr_find(n, "perm");
    if (!a) {
        kiln_attr *arr = kiln_arena_alloc(&g->arena, sizeof(kiln_attr) * (size_t)(n->n_attrs + 1));
        if (!arr) return KILN_ERR_OUT_OF_MEMORY;
        if (n->n_attrs) memcpy(arr, n->attrs, sizeof(kiln_attr) * (size_t)n->n_attrs);
        a = &arr[n->n_attrs];
        n->attrs = arr;
        n->n_attrs++;
    }
    *a = KILN_ATTR_IS("perm", vals, rank);
    return KILN_OK;
}
