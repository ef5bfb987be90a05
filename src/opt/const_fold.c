/* const_fold.c - constant folding: every live layer whose inputs are all constants is
 * evaluated now with its op's reference evaluation and its outputs become constants.
 * The builder's shape inference folds only what shapes need; this pass does the rest. */
#include <string.h>

#include "opt/opt.h"

/* Largest output (per output tensor) folded: a bigger one would swell the plan's weights
 * more than running the layer costs. */
#define FOLD_CAP_BYTES ((size_t)16 << 20)

static bool all_inputs_constant(const ir_graph *g, const ir_node *n)
{
    for (int32_t k = 0; k < n->n_in; k++)
        if (n->in[k] >= 0 && g->values[n->in[k]].kind != IR_VALUE_CONSTANT) return false;
    return true;
}

/* Evaluates node `id` into arena-owned data; `in`/`out` have room for its tensors. On a
 * refusal (an output over the cap) *folded stays false and nothing changes. */
static kiln_status fold_node(ir_graph *g, int32_t id, ir_tensor *in, ir_tensor *out, bool *folded)
{
    ir_node *n = &g->nodes[id];
    *folded = false;
    for (int32_t k = 0; k < n->n_out; k++) {
        const ir_value *v = &g->values[n->out[k]];
        size_t bytes = (size_t)kiln_dims_count(&v->shape) * kiln_dtype_size(v->dtype);
        if (!v->shape_known || kiln_dtype_size(v->dtype) == 0 || bytes > FOLD_CAP_BYTES)
            return KILN_OK;
    }
    for (int32_t k = 0; k < n->n_in; k++) {
        memset(&in[k], 0, sizeof in[k]);
        if (n->in[k] < 0) continue;
        const ir_value *v = &g->values[n->in[k]];
        in[k] = (ir_tensor){v->dtype, v->shape, (void *)v->data, v->layout};
    }
    for (int32_t k = 0; k < n->n_out; k++) {
        const ir_value *v = &g->values[n->out[k]];
        size_t bytes = (size_t)kiln_dims_count(&v->shape) * kiln_dtype_size(v->dtype);
        out[k] = (ir_tensor){v->dtype, v->shape, kiln_arena_alloc(&g->arena, bytes ? bytes : 1),
                             IR_LAYOUT_PLAIN};
        if (!out[k].data) return KILN_ERR_OUT_OF_MEMORY;
    }
    kiln_status st = n->op->eval(n, in, n->n_in, out, n->n_out);
    if (st) return kiln_error_prefix(st, "constant folding: ");
    for (int32_t k = 0; k < n->n_out; k++) {
        ir_value *v = &g->values[n->out[k]];
        v->kind = IR_VALUE_CONSTANT;
        v->data = out[k].data;
        v->nbytes = (size_t)kiln_dims_count(&v->shape) * kiln_dtype_size(v->dtype);
        v->producer = -1;
    }
    n->dead = true;
    *folded = true;
    return KILN_OK;
}

kiln_status opt_constant_folding(ir_graph *g, int32_t *changes)
{
    kiln_status st = KILN_OK;
    int32_t *order = NULL, count = 0, max_in = 1, max_out = 1;
    ir_tensor *in = NULL, *out = NULL;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        if (g->nodes[i].n_in > max_in) max_in = g->nodes[i].n_in;
        if (g->nodes[i].n_out > max_out) max_out = g->nodes[i].n_out;
    }
    KILN_CHECK(kiln_alloc_checked((void **)&order, (size_t)g->n_nodes + 1, sizeof *order,
                                  "constant folding"));
    KILN_CHECK(kiln_alloc_checked((void **)&in, (size_t)max_in, sizeof *in, "constant folding"));
    KILN_CHECK(kiln_alloc_checked((void **)&out, (size_t)max_out, sizeof *out, "constant folding"));
    /* Producers first, so a chain of constant layers folds in one run. */
    KILN_CHECK(ir_graph_topo_order(g, order, &count));
    for (int32_t i = 0; i < count; i++) {
        ir_node *n = &g->nodes[order[i]];
        if (n->dead || !all_inputs_constant(g, n)) continue;
        bool folded = false;
        KILN_CHECK(fold_node(g, order[i], in, out, &folded));
        if (!folded) {
            kiln_log(KILN_LOG_VERBOSE,
                     "constant-folding: kept layer '%s' (%s): an output is over %zu bytes", n->name,
                     n->op->name, FOLD_CAP_BYTES);
            continue;
        }
        (*changes)++;
        kiln_log(KILN_LOG_VERBOSE, "constant-folding: folded layer '%s' (%s) into a constant",
                 n->name, n->op->name);
    }
fail:
    kiln_free(order);
    kiln_free(in);
    kiln_free(out);
    return st;
}
