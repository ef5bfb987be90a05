/* infer.c - static shape inference over the graph, folding what shapes need at build time
 * (shape arithmetic such as Shape -> Gather -> Concat -> Reshape). */
#include <string.h>

#include "build/build.h"

uint64_t build_value_bytes(const ir_value *v)
{
    ir_tensor t = {v->dtype, v->shape, NULL, v->layout};
    return (uint64_t)ir_tensor_storage_count(&t) * kiln_dtype_size(v->dtype);
}

/* Evaluates `n` now; its outputs become constants, or in a dynamic graph where they
 * change with the input shapes (`keep`), activations with their value at the planning
 * shapes as probe_data. */
static kiln_status fold(ir_graph *g, ir_node *n, const ir_tensor *in, ir_tensor *out, bool keep)
{
    for (int32_t k = 0; k < n->n_out; k++) {
        ir_value *v = &g->values[n->out[k]];
        size_t bytes = (size_t)build_value_bytes(v);
        out[k].data = kiln_arena_alloc(&g->arena, bytes ? bytes : 1);
        if (!out[k].data) return KILN_ERR_OUT_OF_MEMORY;
    }
    kiln_status st = n->op->eval(n, in, n->n_in, out, n->n_out);
    if (st) return kiln_error_prefix(st, "while folding at build time: ");
    if (keep) {
        for (int32_t k = 0; k < n->n_out; k++) g->values[n->out[k]].probe_data = out[k].data;
        return KILN_OK;
    }
    for (int32_t k = 0; k < n->n_out; k++) {
        ir_value *v = &g->values[n->out[k]];
        v->kind = IR_VALUE_CONSTANT;
        v->data = out[k].data;
        v->nbytes = (size_t)build_value_bytes(v);
        v->producer = -1;
    }
    n->dead = true;
    kiln_log(KILN_LOG_VERBOSE, "folded layer '%s' (%s) into a constant", n->name, n->op->name);
    return KILN_OK;
}

kiln_status build_infer(ir_graph *g, int32_t *folded)
{
    kiln_status st = KILN_OK;
    int32_t *order = NULL, count = 0;
    ir_tensor *in = NULL, *out = NULL;
    unsigned char *varies = NULL; /* per value: computed from a shape that changes */
    int32_t max_in = 1, max_out = 1;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        if (g->nodes[i].n_in > max_in) max_in = g->nodes[i].n_in;
        if (g->nodes[i].n_out > max_out) max_out = g->nodes[i].n_out;
    }
    KILN_CHECK(
        kiln_alloc_checked((void **)&order, (size_t)g->n_nodes + 1, sizeof *order, "inference"));
    KILN_CHECK(kiln_alloc_checked((void **)&in, (size_t)max_in, sizeof *in, "inference"));
    KILN_CHECK(kiln_alloc_checked((void **)&out, (size_t)max_out, sizeof *out, "inference"));
    KILN_CHECK(kiln_alloc_checked((void **)&varies, (size_t)g->n_values + 1, 1, "inference"));
    KILN_CHECK(ir_graph_topo_order(g, order, &count));
    for (int32_t i = 0; i < count; i++) {
        ir_node *n = &g->nodes[order[i]];
        bool all_const = true, changes = false;
        bool shape_only = (n->op->flags & IR_OP_SHAPE_ONLY) != 0;
        for (int32_t k = 0; k < n->n_in; k++) {
            memset(&in[k], 0, sizeof in[k]);
            if (n->in[k] < 0) continue;
            const ir_value *v = &g->values[n->in[k]];
            if (!v->shape_known || v->dtype == KILN_DTYPE_UNDEFINED) {
                st = ir_node_error(n, KILN_ERR_INTERNAL, "input '%s' has no inferred shape",
                                   v->name);
                goto fail;
            }
            in[k].dtype = v->dtype;
            in[k].shape = v->shape;
            in[k].data = (void *)(v->data ? v->data : v->probe_data);
            if (!in[k].data) all_const = false;
            if (varies[n->in[k]] || (shape_only && v->dyn_dims)) changes = true;
        }
        memset(out, 0, sizeof *out * (size_t)n->n_out);
        ir_infer c = {.node = n, .n_in = n->n_in, .n_out = n->n_out, .in = in, .out = out};
        KILN_CHECK(n->op->infer(&c));
        size_t out_bytes = 0;
        for (int32_t k = 0; k < n->n_out; k++) {
            ir_value *v = &g->values[n->out[k]];
            int64_t cnt, bytes;
            size_t es = kiln_dtype_size(out[k].dtype);
            if (es == 0 || !kiln_dims_numel(&out[k].shape, &cnt) ||
                !kiln_mul_ok(cnt, (int64_t)es, &bytes)) {
                char buf[KILN_DIMS_STR_MAX];
                st = ir_node_error(n, KILN_ERR_SHAPE, "output '%s' would be %s %s, too large",
                                   v->name, kiln_dtype_name(out[k].dtype),
                                   kiln_dims_str(&out[k].shape, buf, sizeof buf));
                goto fail;
            }
            v->dtype = out[k].dtype;
            v->shape = out[k].shape;
            v->shape_known = true;
            out_bytes += (size_t)bytes;
        }
        /* Only what shapes may need: ops that read shapes alone, and small all-constant
         * layers (shape arithmetic). Bigger constant work is the constant-folding pass's,
         * which can be switched off. What changes with the input shapes stays a layer;
         * shape arithmetic among it is still evaluated, for inference (probe_data). */
        if (changes) {
            for (int32_t k = 0; k < n->n_out; k++) varies[n->out[k]] = 1;
            bool small = n->n_out > 0;
            for (int32_t k = 0; k < n->n_out; k++)
                small = small &&
                        ir_is_shape_value(out[k].dtype, build_value_bytes(&g->values[n->out[k]]));
            if (small && (shape_only || all_const)) KILN_CHECK(fold(g, n, in, out, true));
        } else if ((shape_only && out_bytes <= BUILD_FOLD_CAP_BYTES) ||
                   (all_const && out_bytes <= BUILD_SHAPE_FOLD_BYTES)) {
            KILN_CHECK(fold(g, n, in, out, false));
            (*folded)++;
        }
    }
fail:
    kiln_free(varies);
    kiln_free(order);
    kiln_free(in);
    kiln_free(out);
    return st;
}
