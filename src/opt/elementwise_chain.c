/* elementwise_chain.c - the `elementwise-chain` pass: a run of f32 elementwise layers, each
 * reading the one before it as that value's only reader, becomes one kiln.Elementwise
 * (src/ir/ops/fused_chain.c) that reads the run's input and its binary steps' operands and
 * writes the run's result in one pass. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ir/ops/fused_chain.h"
#include "opt/fusion_match.h"

/* A chain of more steps ends and the next layer starts another. */
enum { MAX_STEPS = 64 };

typedef struct chain {
    int32_t cur;                 /* the value computed so far */
    int32_t in[FUSED_EW_MAX_IN]; /* in[0] is x, then the operands */
    int32_t n_in;
    int32_t nodes[MAX_STEPS];
    int64_t ops[MAX_STEPS], operand[MAX_STEPS], side[MAX_STEPS];
    float alpha[MAX_STEPS], beta[MAX_STEPS];
    int32_t n;
} chain;

typedef struct step {
    int64_t code;
    int32_t other; /* binary: the operand value */
    int64_t side;
    float alpha, beta;
} step;

/* The step code of standalone op `op` (Sum of two inputs is Add); -1 when it has none. */
static int64_t code_of(const ir_node *n)
{
    const char *op = n->op->name;
    if (strcmp(op, "Sum") == 0) return FUSED_EW_ADD;
    if (strcmp(op, "Gelu") == 0)
        return strcmp(ir_attr_string(n, "approximate"), "tanh") == 0 ? FUSED_EW_GELU_TANH
                                                                     : FUSED_EW_GELU;
    for (int64_t c = 0; c < FUSED_EW_COUNT; c++)
        if (strcmp(fused_ew_step(c)->op, op) == 0) return c;
    return -1;
}

/* Shape `s` broadcasts to `x` without growing it. */
static bool fits(const kiln_dims *s, const kiln_dims *x)
{
    if (s->rank > x->rank) return false;
    for (int32_t j = 0; j < s->rank; j++) {
        int64_t ds = s->d[j];
        if (ds != 1 && ds != x->d[j + x->rank - s->rank]) return false;
    }
    return true;
}

/* Whether live node `node` can be a step on chain value `v` (f32): an op with a step
 * code, writing one f32 value of v's shape, reading v once (or, binary, as both operands:
 * x * x at a chain's start) and otherwise only f32 operands that broadcast to v's shape;
 * Clip's bounds must be constants. */
static bool step_of(const ir_graph *g, int32_t node, int32_t v, step *s)
{
    const ir_node *n = &g->nodes[node];
    memset(s, 0, sizeof *s);
    s->code = code_of(n);
    s->other = -1;
    if (s->code < 0 || n->n_out != 1 || !fm_same_shape(g, n->out[0], v)) return false;
    const fused_ew_info *info = fused_ew_step(s->code);
    if (info->alpha) s->alpha = ir_attr_float(n, info->alpha);
    if (info->beta) s->beta = ir_attr_float(n, info->beta);
    if (!info->binary) {
        if (n->in[0] != v) return false;
        if (s->code != FUSED_EW_CLIP) return n->n_in == 1;
        s->alpha = -INFINITY;
        s->beta = INFINITY;
        if (n->n_in > 1 && n->in[1] >= 0 && !fm_scalar(g, n->in[1], &s->alpha)) return false;
        return !(n->n_in > 2 && n->in[2] >= 0 && !fm_scalar(g, n->in[2], &s->beta));
    }
    if (n->n_in != 2 || n->in[0] < 0 || n->in[1] < 0) return false;
    if (n->in[0] == v) {
        s->other = n->in[1];
    } else if (n->in[1] == v) {
        s->other = n->in[0];
        s->side = 1;
    } else {
        return false;
    }
    const ir_value *o = &g->values[s->other];
    return o->dtype == KILN_DTYPE_F32 && o->shape_known && fits(&o->shape, &g->values[v].shape);
}

/* Adds step `s` of `node`; false (chain unchanged) when the operands would be too many. */
static bool chain_add(chain *c, int32_t node, const step *s, int32_t out)
{
    if (c->n >= MAX_STEPS) return false;
    int32_t k = -1;
    if (s->other >= 0) {
        for (int32_t i = 0; i < c->n_in && k < 0; i++)
            if (c->in[i] == s->other) k = i;
        if (k < 0) {
            if (c->n_in >= FUSED_EW_MAX_IN) return false;
            k = c->n_in;
            c->in[c->n_in++] = s->other;
        }
    }
    c->nodes[c->n] = node;
    c->ops[c->n] = s->code;
    c->operand[c->n] = k;
    c->side[c->n] = s->side;
    c->alpha[c->n] = s->alpha;
    c->beta[c->n] = s->beta;
    c->n++;
    c->cur = out;
    return true;
}

/* The chain starting at `node`, if it can start one: x is input 0, or for a binary op whose
 * input 0 is broadcast up, input 1. Then each next layer is the only reader of the value so
 * far (which must be private: no network output) and keeps its shape. An operand never
 * depends on the chain's intermediates (their only readers are in the chain), so the one
 * fused layer cannot close a cycle. */
static bool collect(const ir_graph *g, const fm_readers *r, int32_t node, chain *c)
{
    const ir_node *n = &g->nodes[node];
    memset(c, 0, sizeof *c);
    if (n->dead || n->n_out != 1 || n->n_in < 1) return false;
    int32_t x = n->in[0];
    if (n->n_in == 2 && n->in[1] >= 0 && (x < 0 || !fm_same_shape(g, n->out[0], x))) x = n->in[1];
    if (x < 0 || g->values[x].dtype != KILN_DTYPE_F32) return false;
    step s;
    if (!step_of(g, node, x, &s)) return false;
    c->in[0] = x;
    c->n_in = 1;
    chain_add(c, node, &s, n->out[0]);
    while (fm_private(g, r, c->cur, 1)) {
        int32_t next = fm_only_reader(r, c->cur);
        if (next < 0 || !step_of(g, next, c->cur, &s) ||
            !chain_add(c, next, &s, g->nodes[next].out[0]))
            break;
    }
    return true;
}

/* "'a' (Mul) + 'b' (Add) + ..." for the log. */
static void describe(const ir_graph *g, const chain *c, char *buf, size_t size)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int32_t k = 0; k < c->n && len < size; k++) {
        const ir_node *n = &g->nodes[c->nodes[k]];
        len += (size_t)snprintf(buf + len, size - len, "%s'%s' (%s)", k ? " + " : "", n->name,
                                n->op->name);
    }
}

/* Rewrites the chain's first layer into the kiln.Elementwise writing the chain's result
 * and absorbs the others; *done false when shape inference disagrees. */
static kiln_status apply(ir_graph *g, const chain *c, bool *done)
{
    size_t ni = sizeof(int64_t) * (size_t)c->n, nf = sizeof(float) * (size_t)c->n;
    const int64_t *ops = kiln_arena_memdup(&g->arena, c->ops, ni);
    const int64_t *operand = kiln_arena_memdup(&g->arena, c->operand, ni);
    const int64_t *side = kiln_arena_memdup(&g->arena, c->side, ni);
    const float *alpha = kiln_arena_memdup(&g->arena, c->alpha, nf);
    const float *beta = kiln_arena_memdup(&g->arena, c->beta, nf);
    if (!ops || !operand || !side || !alpha || !beta)
        return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory in elementwise-chain");
    kiln_attr attrs[5] = {
        KILN_ATTR_IS("ops", ops, c->n),   KILN_ATTR_IS("operand", operand, c->n),
        KILN_ATTR_IS("side", side, c->n), KILN_ATTR_FS("alpha", alpha, c->n),
        KILN_ATTR_FS("beta", beta, c->n),
    };
    char what[1024];
    describe(g, c, what, sizeof what);
    int32_t head = c->nodes[0];
    KILN_TRY(fm_rewrite(g, head, "kiln.Elementwise", c->in, c->n_in, c->cur, attrs, 5, done));
    if (!*done) return KILN_OK;
    KILN_TRY(fm_absorb(g, head, c->nodes + 1, c->n - 1));
    kiln_log(KILN_LOG_VERBOSE,
             "elementwise-chain: %s -> kiln.Elementwise '%s' (%d steps, %d operand%s)", what,
             g->nodes[head].name, c->n, c->n_in - 1, c->n_in == 2 ? "" : "s");
    return KILN_OK;
}

kiln_status opt_elementwise_chain(ir_graph *g, int32_t *changes)
{
    kiln_status st = KILN_OK;
    int32_t *order = NULL, count = 0;
    fm_readers r;
    memset(&r, 0, sizeof r);
    /* In execution order, so a chain is met at its first layer: a layer met later is no
     * tail of a longer chain, whose walk would have taken it (unless that one was full). */
    KILN_CHECK(kiln_alloc_checked((void **)&order, (size_t)g->n_nodes + 1, sizeof *order,
                                  "elementwise-chain"));
    KILN_CHECK(ir_graph_topo_order(g, order, &count));
    KILN_CHECK(fm_readers_build(g, &r));
    for (int32_t i = 0; i < count; i++) {
        chain c;
        if (!collect(g, &r, order[i], &c) || c.n < 2) continue;
        bool done;
        KILN_CHECK(apply(g, &c, &done));
        if (!done) continue;
        *changes += c.n - 1;
        fm_readers_free(&r);
        KILN_CHECK(fm_readers_build(g, &r));
    }
fail:
    fm_readers_free(&r);
    kiln_free(order);
    return st;
}
