/* identity_elim.c - removes layers whose output equals their input 0: Identity, Cast to
 * the same dtype, Reshape/Flatten/Squeeze/Unsqueeze/Expand that keep the shape, Transpose
 * with the identity perm, Pad with all-zero pads and Slice that takes everything. */
#include <string.h>

#include "opt/opt.h"

static bool is_op(const ir_node *n, const char *name) { return strcmp(n->op->name, name) == 0; }

/* Reads constant integer input k (i64 or i32, at most 1-D); false when not constant. */
static bool const_ints(const ir_graph *g, const ir_node *n, int32_t k, int64_t *vals, int64_t max,
                       int64_t *count)
{
    if (k >= n->n_in || n->in[k] < 0) return false;
    const ir_value *v = &g->values[n->in[k]];
    if (v->kind != IR_VALUE_CONSTANT || v->shape.rank > 1) return false;
    ir_tensor t = {v->dtype, v->shape, (void *)v->data, v->layout};
    return ir_tensor_ints(&t, vals, max, count);
}

static bool transpose_is_identity(const ir_node *n, int32_t rank)
{
    int32_t cnt = 0;
    const int64_t *p = ir_attr_ints(n, "perm", &cnt);
    if (!p) return rank <= 1; /* the default reverses the axes */
    if (cnt != rank) return false;
    for (int32_t i = 0; i < cnt; i++)
        if (p[i] != i) return false;
    return true;
}

static bool pads_all_zero(const ir_graph *g, const ir_node *n)
{
    int64_t pads[2 * KILN_MAX_RANK], cnt = 0;
    if (!const_ints(g, n, 1, pads, 2 * KILN_MAX_RANK, &cnt)) return false;
    for (int64_t i = 0; i < cnt; i++)
        if (pads[i] != 0) return false;
    return true;
}

/* With the shape unchanged, a Slice copies everything exactly when no step is negative
 * (a reversed axis keeps its length). Positive steps over a kept length start at 0. */
static bool slice_takes_all(const ir_graph *g, const ir_node *n)
{
    int64_t steps[KILN_MAX_RANK], cnt = 0;
    if (n->n_in < 5 || n->in[4] < 0) return true;
    if (!const_ints(g, n, 4, steps, KILN_MAX_RANK, &cnt)) return false;
    for (int64_t i = 0; i < cnt; i++)
        if (steps[i] < 0) return false;
    return true;
}

/* Whether node n passes input 0 through unchanged. */
static bool is_identity(const ir_graph *g, const ir_node *n)
{
    if (n->n_in < 1 || n->n_out != 1 || n->in[0] < 0) return false;
    const ir_value *x = &g->values[n->in[0]];
    if (!opt_same_shape(g, n->in[0], n->out[0])) return false;
    if (is_op(n, "Identity") || is_op(n, "Reshape") || is_op(n, "Flatten") || is_op(n, "Squeeze") ||
        is_op(n, "Unsqueeze") || is_op(n, "Expand"))
        return true;
    if (is_op(n, "Cast") || is_op(n, "CastLike")) return true; /* the dtypes are equal */
    if (is_op(n, "Transpose")) return transpose_is_identity(n, x->shape.rank);
    if (is_op(n, "Pad")) return pads_all_zero(g, n);
    if (is_op(n, "Slice")) return slice_takes_all(g, n);
    return false;
}

kiln_status opt_identity(ir_graph *g, int32_t *changes)
{
    for (int32_t i = 0; i < g->n_nodes; i++) {
        ir_node *n = &g->nodes[i];
        if (n->dead || !is_identity(g, n)) continue;
        const char *x = g->values[n->in[0]].name, *y = g->values[n->out[0]].name;
        if (!opt_bypass(g, i)) {
            kiln_log(KILN_LOG_VERBOSE,
                     "identity: kept layer '%s' (%s): its output '%s' is a network output and "
                     "'%s' cannot be renamed",
                     n->name, n->op->name, y, x);
            continue;
        }
        (*changes)++;
        kiln_log(KILN_LOG_VERBOSE, "identity: removed layer '%s' (%s) between '%s' and '%s'",
                 n->name, n->op->name, x, y);
    }
    return KILN_OK;
}
