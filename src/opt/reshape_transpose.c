/* reshape_transpose.c - Transpose(Transpose(x)) becomes one Transpose with the composed
 * perm (or nothing); a chain of Reshape/Flatten/Squeeze/Unsqueeze becomes one Reshape to
 * the final shape; a Transpose that moves only size-1 axes becomes a Reshape (no copy). */
#include <string.h>

#include "opt/opt.h"

static bool is_op(const ir_node *n, const char *name) { return strcmp(n->op->name, name) == 0; }

static bool is_shape_op(const ir_node *n)
{
    return is_op(n, "Reshape") || is_op(n, "Flatten") || is_op(n, "Squeeze") ||
           is_op(n, "Unsqueeze");
}

/* The live producer of node n's input 0 when it is an op accepted by `want` and its
 * output is private to n: read by n alone and not a network output. -1 otherwise. */
static int32_t private_producer(const ir_graph *g, int32_t node, bool (*want)(const ir_node *))
{
    const ir_node *n = &g->nodes[node];
    if (n->n_in < 1 || n->in[0] < 0) return -1;
    const ir_value *t = &g->values[n->in[0]];
    if (t->kind != IR_VALUE_ACTIVATION || t->is_output || t->producer < 0) return -1;
    const ir_node *p = &g->nodes[t->producer];
    if (p->dead || p->n_in < 1 || p->in[0] < 0 || !want(p)) return -1;
    if (opt_single_consumer(g, n->in[0], NULL) != node) return -1;
    return t->producer;
}

static bool is_transpose(const ir_node *n) { return is_op(n, "Transpose"); }

/* Turns node `id` in place into Reshape(x, constant shape of its output): it keeps its
 * name and its output tensor. */
static kiln_status to_reshape(ir_graph *g, int32_t id, int32_t x)
{
    const ir_op *op = ir_op_find("Reshape");
    if (!op) return kiln_error(KILN_ERR_INTERNAL, "reshape-transpose: no Reshape op");
    kiln_dims want = g->values[g->nodes[id].out[0]].shape, cshape = {1, {want.rank}};
    bool has_zero = false;
    for (int32_t i = 0; i < want.rank; i++) has_zero |= want.d[i] == 0;
    int32_t c = -1;
    KILN_TRY(opt_add_constant(g, g->nodes[id].name, KILN_DTYPE_I64, &cshape, want.d, &c));
    ir_node *n = &g->nodes[id];
    int32_t *in = kiln_arena_alloc(&g->arena, sizeof(int32_t) * 3);
    kiln_attr *attrs = kiln_arena_alloc(&g->arena, sizeof(kiln_attr) * (size_t)(op->n_attrs + 1));
    if (!in || !attrs) return KILN_ERR_OUT_OF_MEMORY;
    int32_t na = 0;
    for (int32_t k = 0; k < op->n_attrs; k++) {
        const ir_attr_def *d = &op->attrs[k];
        if (d->type == KILN_ATTR_INT) attrs[na++] = KILN_ATTR_I(d->name, d->i);
        if (d->type == KILN_ATTR_INT && strcmp(d->name, "allowzero") == 0)
            attrs[na - 1].i = has_zero; /* a 0 in the shape means 0, not "copy" */
    }
    in[0] = x;
    in[1] = c;
    n->op = op;
    n->in = in;
    n->n_in = 2;
    n->attrs = attrs;
    n->n_attrs = na;
    KILN_TRY(opt_infer_node(g, id));
    if (!kiln_dims_equal(&g->values[n->out[0]].shape, &want))
        return ir_node_error(n, KILN_ERR_INTERNAL, "reshape-transpose changed the output shape");
    return KILN_OK;
}

/* After a merge, a layer that now maps x onto its own shape is removed when it can be. */
static void drop_if_identity(ir_graph *g, int32_t id)
{
    ir_node *n = &g->nodes[id];
    const ir_value *x = &g->values[n->in[0]];
    if (!opt_same_shape(g, n->in[0], n->out[0])) return;
    if (is_transpose(n)) {
        int32_t perm[KILN_MAX_RANK];
        opt_transpose_perm(n, x->shape.rank, perm);
        for (int32_t i = 0; i < x->shape.rank; i++)
            if (perm[i] != i) return;
    }
    const char *name = n->name;
    if (opt_bypass(g, id))
        kiln_log(KILN_LOG_VERBOSE, "reshape-transpose: removed layer '%s', now the identity", name);
}

/* Transpose(Transpose(x)): output axis i of the pair reads axis p1[p2[i]] of x. */
static kiln_status merge_transposes(ir_graph *g, int32_t id, int32_t *changes)
{
    int32_t pid = private_producer(g, id, is_transpose);
    if (pid < 0) return KILN_OK;
    ir_node *n = &g->nodes[id], *p = &g->nodes[pid];
    int32_t rank = g->values[p->in[0]].shape.rank, p1[KILN_MAX_RANK], p2[KILN_MAX_RANK],
            q[KILN_MAX_RANK];
    opt_transpose_perm(p, rank, p1);
    opt_transpose_perm(n, rank, p2);
    for (int32_t i = 0; i < rank; i++) q[i] = p1[p2[i]];
    KILN_TRY(opt_set_transpose_perm(g, n, q, rank));
    n->in[0] = p->in[0];
    p->dead = true;
    KILN_TRY(opt_record_fusion(g, id, pid));
    (*changes)++;
    kiln_log(KILN_LOG_VERBOSE, "reshape-transpose: merged Transpose '%s' into Transpose '%s'",
             p->name, n->name);
    drop_if_identity(g, id);
    return KILN_OK;
}

/* A Transpose that keeps the order of the axes longer than 1 leaves the bytes in place. */
static bool moves_only_unit_axes(const ir_graph *g, const ir_node *n)
{
    const kiln_dims *s = &g->values[n->in[0]].shape;
    int32_t perm[KILN_MAX_RANK], last = -1;
    opt_transpose_perm(n, s->rank, perm);
    for (int32_t i = 0; i < s->rank; i++) {
        if (s->d[perm[i]] == 1) continue;
        if (perm[i] < last) return false;
        last = perm[i];
    }
    return true;
}

static kiln_status transpose_to_reshape(ir_graph *g, int32_t id, int32_t *changes)
{
    ir_node *n = &g->nodes[id];
    /* The Reshape's target is a constant: the output's shape must not change. */
    if (!moves_only_unit_axes(g, n) || !opt_static_shape(g, n->out[0])) return KILN_OK;
    if (opt_same_shape(g, n->in[0], n->out[0])) return KILN_OK; /* the identity pass's */
    KILN_TRY(to_reshape(g, id, n->in[0]));
    (*changes)++;
    kiln_log(KILN_LOG_VERBOSE,
             "reshape-transpose: Transpose '%s' moves only size-1 axes: now a Reshape",
             g->nodes[id].name);
    return KILN_OK;
}

/* Shape-op(shape-op(x)) -> Reshape(x, final shape). */
static kiln_status merge_reshapes(ir_graph *g, int32_t id, int32_t *changes)
{
    int32_t pid = private_producer(g, id, is_shape_op);
    if (pid < 0 || !opt_static_shape(g, g->nodes[id].out[0])) return KILN_OK;
    int32_t x = g->nodes[pid].in[0];
    const char *was = g->nodes[id].op->name;
    KILN_TRY(to_reshape(g, id, x));
    g->nodes[pid].dead = true;
    KILN_TRY(opt_record_fusion(g, id, pid));
    (*changes)++;
    kiln_log(KILN_LOG_VERBOSE, "reshape-transpose: merged %s '%s' and %s '%s' into one Reshape",
             g->nodes[pid].op->name, g->nodes[pid].name, was, g->nodes[id].name);
    drop_if_identity(g, id);
    return KILN_OK;
}

kiln_status opt_reshape_transpose(ir_graph *g, int32_t *changes)
{
    kiln_status st = KILN_OK;
    int32_t *order = NULL, count = 0;
    KILN_CHECK(kiln_alloc_checked((void **)&order, (size_t)g->n_nodes + 1, sizeof *order,
                                  "reshape-transpose"));
    /* Producers first: a chain collapses into its last layer in one run. */
    KILN_CHECK(ir_graph_topo_order(g, order, &count));
    for (int32_t i = 0; i < count; i++) {
        int32_t id = order[i];
        if (g->nodes[id].dead) continue;
        if (is_transpose(&g->nodes[id])) {
            KILN_CHECK(merge_transposes(g, id, changes));
            if (g->nodes[id].dead) continue;
            KILN_CHECK(transpose_to_reshape(g, id, changes));
        }
        if (is_shape_op(&g->nodes[id])) KILN_CHECK(merge_reshapes(g, id, changes));
    }
fail:
    kiln_free(order);
    return st;
}
