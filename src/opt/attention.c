/* attention.c - the `attention` pass: MatMul(Q, Kt) -> (Div or Mul by a scalar)? ->
 * (Add mask)? -> Softmax(last axis) -> MatMul(., V) becomes one kiln.Attention layer
 * (src/ir/ops/fused_attention.c), with a Mul(Q, scalar) before it and a Transpose
 * swapping K's last two axes taken in too. */
#include <stdio.h>
#include <string.h>

#include "opt/fusion_match.h"

enum { MAX_TAKEN = 6 };

typedef struct att_match {
    int32_t mm;         /* the first MatMul: becomes the fused layer */
    int32_t q, k, v, m; /* the fused layer's inputs (m: the mask or -1) */
    int32_t y;          /* what it computes */
    float q_scale, scale;
    bool div, kt;
    int32_t taken[MAX_TAKEN]; /* the other layers, in graph order */
    int32_t n;
} att_match;

static void take(att_match *a, int32_t node)
{
    if (a->n < MAX_TAKEN) a->taken[a->n++] = node;
}

/* The one reader of `v` when `v` is a private intermediate and the reader runs `op`
 * keeping v's shape; -1 otherwise. */
static int32_t next(const ir_graph *g, const fm_readers *r, int32_t v, const char *op)
{
    if (!fm_private(g, r, v, 1)) return -1;
    int32_t n = fm_only_reader(r, v);
    if (!fm_is(g, n, op) || !fm_same_shape(g, g->nodes[n].out[0], v)) return -1;
    return n;
}

/* Mul(x, c) or Mul(c, x) by a scalar f32 constant c: x, or -1. */
static int32_t scalar_mul(const ir_graph *g, const ir_node *n, float *c)
{
    if (n->n_in != 2) return -1;
    for (int32_t k = 0; k < 2; k++)
        if (fm_scalar(g, n->in[1 - k], c) && n->in[k] >= 0 && n->in[k] != n->in[1 - k])
            return n->in[k];
    return -1;
}

/* Whether a Transpose node swaps the last two of `rank` axes and keeps the others. */
static bool swaps_last_two(const ir_node *t, int32_t rank)
{
    int32_t cnt;
    const int64_t *perm = ir_attr_ints(t, "perm", &cnt);
    if (!perm || cnt != rank) return false;
    for (int32_t i = 0; i < rank - 2; i++)
        if (perm[i] != i) return false;
    return perm[rank - 2] == rank - 1 && perm[rank - 1] == rank - 2;
}

/* Q's pre-scale: Mul(Q, c) read only by the first MatMul. */
static void match_q(const ir_graph *g, const fm_readers *r, att_match *a)
{
    int32_t p = fm_producer(g, a->q);
    float c;
    if (!fm_is(g, p, "Mul") || !fm_private(g, r, a->q, 1)) return;
    int32_t x = scalar_mul(g, &g->nodes[p], &c);
    if (x < 0 || !fm_same_shape(g, x, a->q)) return;
    a->q = x;
    a->q_scale = c;
    take(a, p);
}

/* K as the MatMul reads it (transposed), or before a Transpose of its last two axes that
 * only this MatMul reads: then the layer reads K as [..., Sk, D] and the copy goes. */
static void match_k(const ir_graph *g, const fm_readers *r, att_match *a, int32_t rank)
{
    int32_t p = fm_producer(g, a->k);
    a->kt = true;
    if (!fm_is(g, p, "Transpose") || !fm_private(g, r, a->k, 1)) return;
    const ir_node *t = &g->nodes[p];
    int32_t x = t->in[0];
    if (x < 0 || g->values[x].shape.rank != rank || g->values[x].dtype != KILN_DTYPE_F32 ||
        !swaps_last_two(t, rank))
        return;
    a->k = x;
    a->kt = false;
    take(a, p);
}

/* Matches the pattern from MatMul node `i`. */
static bool match(const ir_graph *g, const fm_readers *r, int32_t i, att_match *a)
{
    memset(a, 0, sizeof *a);
    a->mm = i;
    a->m = -1;
    a->q_scale = a->scale = 1.0f;
    const ir_node *mm = &g->nodes[i];
    if (!fm_is(g, i, "MatMul") || mm->n_in != 2 || mm->n_out != 1) return false;
    int32_t cur = mm->out[0];
    const ir_value *s = &g->values[cur];
    int32_t rank = s->shape.rank;
    if (!s->shape_known || s->dtype != KILN_DTYPE_F32 || (rank != 3 && rank != 4)) return false;
    a->q = mm->in[0];
    a->k = mm->in[1];
    if (a->q < 0 || a->k < 0 || g->values[a->q].shape.rank != rank ||
        g->values[a->k].shape.rank != rank)
        return false;
    match_q(g, r, a);
    match_k(g, r, a, rank);

    int32_t n = next(g, r, cur, "Div");
    if (n >= 0 && g->nodes[n].in[0] == cur && fm_scalar(g, g->nodes[n].in[1], &a->scale)) {
        a->div = true;
    } else if ((n = next(g, r, cur, "Mul")) >= 0 && scalar_mul(g, &g->nodes[n], &a->scale) == cur) {
        a->div = false;
    } else {
        n = -1;
        a->scale = 1.0f;
    }
    if (n >= 0) {
        take(a, n);
        cur = g->nodes[n].out[0];
    }
    if ((n = next(g, r, cur, "Add")) >= 0) {
        a->m = fm_other(&g->nodes[n], cur);
        if (a->m < 0 || g->values[a->m].dtype != KILN_DTYPE_F32) return false;
        take(a, n);
        cur = g->nodes[n].out[0];
    }
    if ((n = next(g, r, cur, "Softmax")) < 0) return false;
    int32_t axis;
    if (!ir_axis(ir_attr_int(&g->nodes[n], "axis"), rank, &axis) || axis != rank - 1) return false;
    take(a, n);
    cur = g->nodes[n].out[0];
    if (!fm_private(g, r, cur, 1)) return false;
    n = fm_only_reader(r, cur);
    if (!fm_is(g, n, "MatMul") || g->nodes[n].in[0] != cur || g->nodes[n].in[1] == cur)
        return false;
    a->v = g->nodes[n].in[1];
    if (a->v < 0 || g->values[a->v].shape.rank != rank) return false;
    take(a, n);
    a->y = g->nodes[n].out[0];
    return true;
}

/* "'a' (MatMul) + 'b' (Div) + ..." for the log. */
static void describe(const ir_graph *g, const att_match *a, char *buf, size_t size)
{
    const ir_node *mm = &g->nodes[a->mm];
    size_t len = (size_t)snprintf(buf, size, "'%s' (%s)", mm->name, mm->op->name);
    for (int32_t k = 0; k < a->n && len < size; k++) {
        const ir_node *n = &g->nodes[a->taken[k]];
        len += (size_t)snprintf(buf + len, size - len, " + '%s' (%s)", n->name, n->op->name);
    }
}

static kiln_status apply(ir_graph *g, const att_match *a, bool *done)
{
    int32_t in[4] = {a->q, a->k, a->v, a->m};
    kiln_attr attrs[] = {
        KILN_ATTR_I("k_transposed", a->kt ? 1 : 0),
        KILN_ATTR_F("q_scale", a->q_scale),
        KILN_ATTR_F("scale", a->scale),
        KILN_ATTR_S("scale_mode", a->div ? "div" : "mul"),
    };
    char what[1024];
    describe(g, a, what, sizeof what);
    KILN_TRY(fm_rewrite(g, a->mm, "kiln.Attention", in, a->m >= 0 ? 4 : 3, a->y, attrs,
                        (int32_t)(sizeof attrs / sizeof *attrs), done));
    if (!*done) return KILN_OK;
    KILN_TRY(fm_absorb(g, a->mm, a->taken, a->n));
    kiln_log(KILN_LOG_VERBOSE,
             "attention: %s -> kiln.Attention '%s' (Q scale %g, scores %s %g, mask %s, K %s)", what,
             g->nodes[a->mm].name, (double)a->q_scale, a->div ? "/" : "*", (double)a->scale,
             a->m >= 0 ? g->values[a->m].name : "none", a->kt ? "transposed" : "as [.., Sk, D]");
    return KILN_OK;
}

kiln_status opt_attention(ir_graph *g, int32_t *changes)
{
    fm_readers r;
    KILN_TRY(fm_readers_build(g, &r));
    kiln_status st = KILN_OK;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        att_match a;
        if (!match(g, &r, i, &a)) continue;
        bool done;
        KILN_CHECK(apply(g, &a, &done));
        if (!done) continue;
        (*changes)++;
        fm_readers_free(&r);
        KILN_CHECK(fm_readers_build(g, &r));
    }
fail:
    fm_readers_free(&r);
    return st;
}
