/* matmul_gemm.c - MatMul(A[M,K], B[K,N] constant) followed by Add(bias) becomes one Gemm
 * (alpha = beta = 1, so the sums are the same). Gemm is 2-D: a MatMul whose A has a
 * higher rank (batched, e.g. [batch, seq, K] in transformers) stays a MatMul. */
#include <string.h>

#include "opt/opt.h"

static bool is_op(const ir_node *n, const char *name) { return strcmp(n->op->name, name) == 0; }

/* bias broadcasts to [m, n] without widening it (Gemm's C is unidirectional). */
static bool bias_fits(const kiln_dims *b, int64_t m, int64_t n)
{
    if (b->rank > 2) return false;
    int64_t want[2] = {m, n};
    for (int32_t i = 0; i < b->rank; i++) {
        int64_t d = b->d[b->rank - 1 - i];
        if (d != 1 && d != want[1 - i]) return false;
    }
    return true;
}

/* Turns MatMul node `mm` in place into Gemm(A, B, bias) writing `y`, the Add's output. */
static kiln_status to_gemm(ir_graph *g, int32_t mm, int32_t add, int32_t bias)
{
    const ir_op *op = ir_op_find("Gemm");
    if (!op) return kiln_error(KILN_ERR_INTERNAL, "matmul-add-to-gemm: no Gemm op");
    ir_node *n = &g->nodes[mm], *a = &g->nodes[add];
    int32_t *in = kiln_arena_alloc(&g->arena, sizeof(int32_t) * 4);
    kiln_attr *attrs = kiln_arena_alloc(&g->arena, sizeof(kiln_attr) * (size_t)(op->n_attrs + 1));
    if (!in || !attrs) return KILN_ERR_OUT_OF_MEMORY;
    int32_t na = 0;
    for (int32_t k = 0; k < op->n_attrs; k++) { /* alpha 1, beta 1, no transposes */
        const ir_attr_def *d = &op->attrs[k];
        if (d->type == KILN_ATTR_INT) attrs[na++] = KILN_ATTR_I(d->name, d->i);
        if (d->type == KILN_ATTR_FLOAT) attrs[na++] = KILN_ATTR_F(d->name, d->f);
    }
    int32_t m = n->out[0], y = a->out[0];
    kiln_dims want = g->values[y].shape;
    in[0] = n->in[0];
    in[1] = n->in[1];
    in[2] = bias;
    n->op = op;
    n->in = in;
    n->n_in = 3;
    n->attrs = attrs;
    n->n_attrs = na;
    n->out[0] = y;
    g->values[y].producer = mm;
    g->values[m].producer = -1;
    a->dead = true;
    KILN_TRY(opt_infer_node(g, mm));
    if (!kiln_dims_equal(&g->values[y].shape, &want))
        return ir_node_error(n, KILN_ERR_INTERNAL, "matmul-add-to-gemm changed the output shape");
    return opt_record_fusion(g, mm, add);
}

/* The Add reading MatMul `mm`'s output alone, and the Add's other input; -1 if none. */
static int32_t bias_add(const ir_graph *g, int32_t mm, int32_t *bias)
{
    int32_t m = g->nodes[mm].out[0], slot = -1;
    if (g->values[m].is_output) return -1;
    int32_t add = opt_single_consumer(g, m, &slot);
    if (add < 0 || !is_op(&g->nodes[add], "Add") || g->nodes[add].n_in != 2) return -1;
    *bias = g->nodes[add].in[1 - slot];
    return *bias >= 0 ? add : -1;
}

kiln_status opt_matmul_add_to_gemm(ir_graph *g, int32_t *changes)
{
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const ir_node *n = &g->nodes[i];
        if (n->dead || !is_op(n, "MatMul")) continue;
        const ir_value *a = &g->values[n->in[0]], *b = &g->values[n->in[1]];
        int32_t bias = -1, add = bias_add(g, i, &bias);
        if (add < 0 || a->dtype != KILN_DTYPE_F32 || b->kind != IR_VALUE_CONSTANT ||
            b->shape.rank != 2)
            continue;
        if (a->shape.rank != 2) {
            kiln_log(KILN_LOG_VERBOSE,
                     "matmul-add-to-gemm: kept MatMul '%s' and Add '%s': A is %d-D, Gemm takes "
                     "2-D",
                     n->name, g->nodes[add].name, a->shape.rank);
            continue;
        }
        const ir_value *c = &g->values[bias];
        if (c->dtype != KILN_DTYPE_F32 || !bias_fits(&c->shape, a->shape.d[0], b->shape.d[1]))
            continue;
        KILN_TRY(to_gemm(g, i, add, bias));
        (*changes)++;
        kiln_log(KILN_LOG_VERBOSE, "matmul-add-to-gemm: MatMul '%s' + Add '%s' -> Gemm '%s'",
                 n->name, g->nodes[add].name, n->name);
    }
    return KILN_OK;
}
