/* gelu.c - the `gelu` pass: GELU written out of elementwise ops (the erf form of BERT's
 * exports, the tanh form of GPT-2's) becomes one Gelu layer; and the matcher for it,
 * which activation-fusion uses too. */
#include <math.h>
#include <string.h>

#include "opt/fusion_match.h"

#define TOL 1e-6

static void take(fm_gelu *m, int32_t node)
{
    if (m->n < FM_GELU_MAX_NODES) m->nodes[m->n++] = node;
}

/* The only reader of private value `v` if it runs `op` and its result keeps x's shape;
 * -1 otherwise. */
static int32_t next(const ir_graph *g, const fm_readers *r, int32_t v, const char *op, int32_t x)
{
    if (!fm_private(g, r, v, 1)) return -1;
    int32_t n = fm_only_reader(r, v);
    if (!fm_is(g, n, op) || !fm_same_shape(g, g->nodes[n].out[0], x)) return -1;
    return n;
}

/* `n` (reading v) is a binary op whose other input is a constant near `want`. */
static bool by_const(const ir_graph *g, int32_t n, int32_t v, double want)
{
    return n >= 0 && fm_scalar_near(g, fm_other(&g->nodes[n], v), want, TOL);
}

/* From the Erf or Tanh output e: 1 + e, then the products with x and 0.5. */
static bool match_tail(const ir_graph *g, const fm_readers *r, int32_t x, int32_t e, fm_gelu *m)
{
    int32_t add = next(g, r, e, "Add", x);
    if (!by_const(g, add, e, 1.0)) return false;
    int32_t a = g->nodes[add].out[0];
    int32_t mul = next(g, r, a, "Mul", x);
    if (mul < 0) return false;
    take(m, add);
    take(m, mul);
    int32_t o = fm_other(&g->nodes[mul], a), mv = g->nodes[mul].out[0];
    if (o == x) { /* (x * a) * 0.5 */
        int32_t half = next(g, r, mv, "Mul", x);
        if (!by_const(g, half, mv, 0.5)) return false;
        take(m, half);
        m->y = g->nodes[half].out[0];
    } else if (fm_scalar_near(g, o, 0.5, TOL)) { /* x * (a * 0.5) */
        int32_t xm = next(g, r, mv, "Mul", x);
        if (xm < 0 || fm_other(&g->nodes[xm], mv) != x) return false;
        take(m, xm);
        m->y = g->nodes[xm].out[0];
    } else { /* (x * 0.5) * a */
        int32_t h = fm_producer(g, o);
        if (!fm_is(g, h, "Mul") || !fm_private(g, r, o, 1) || !fm_same_shape(g, o, x) ||
            !by_const(g, h, x, 0.5))
            return false;
        take(m, h);
        m->y = mv;
    }
    m->x_uses++;
    return true;
}

/* x / sqrt 2 (or x * 1/sqrt 2) -> Erf. */
static bool match_erf(const ir_graph *g, const fm_readers *r, int32_t x, int32_t first,
                      int32_t slot, fm_gelu *m)
{
    const ir_node *f = &g->nodes[first];
    bool div = strcmp(f->op->name, "Div") == 0 && slot == 0 && f->n_in == 2 &&
               fm_scalar_near(g, f->in[1], sqrt(2.0), TOL);
    bool mul = strcmp(f->op->name, "Mul") == 0 && by_const(g, first, x, sqrt(0.5));
    if (!div && !mul) return false;
    int32_t erf = next(g, r, f->out[0], "Erf", x);
    if (erf < 0 || !fm_same_shape(g, f->out[0], x)) return false;
    take(m, erf);
    take(m, first);
    m->x_uses = 1;
    return match_tail(g, r, x, g->nodes[erf].out[0], m);
}

/* x^3 (Pow(x, 3) or x * x * x) -> * 0.044715 -> x + . -> * sqrt(2/pi) -> Tanh. */
static bool match_tanh(const ir_graph *g, const fm_readers *r, int32_t x, int32_t first,
                       int32_t slot, fm_gelu *m)
{
    const ir_node *f = &g->nodes[first];
    int32_t cube, uses, sq = -1;
    if (strcmp(f->op->name, "Pow") == 0 && slot == 0 && f->n_in == 2 &&
        fm_scalar_near(g, f->in[1], 3.0, TOL)) {
        cube = first;
        uses = 1;
    } else if (strcmp(f->op->name, "Mul") == 0 && f->in[0] == x && f->in[1] == x) {
        sq = first;
        cube = next(g, r, f->out[0], "Mul", x);
        if (cube < 0 || fm_other(&g->nodes[cube], f->out[0]) != x) return false;
        uses = 3;
    } else {
        return false;
    }
    int32_t cv = g->nodes[cube].out[0];
    if (!fm_same_shape(g, cv, x)) return false;
    int32_t k = next(g, r, cv, "Mul", x);
    if (!by_const(g, k, cv, 0.044715)) return false;
    int32_t kv = g->nodes[k].out[0];
    int32_t s = next(g, r, kv, "Add", x);
    if (s < 0 || fm_other(&g->nodes[s], kv) != x) return false;
    int32_t sv = g->nodes[s].out[0];
    int32_t u = next(g, r, sv, "Mul", x);
    if (!by_const(g, u, sv, 0.79788456080286535588 /* sqrt(2 / pi) */)) return false;
    int32_t th = next(g, r, g->nodes[u].out[0], "Tanh", x);
    if (th < 0) return false;
    take(m, th);
    if (sq >= 0) take(m, sq);
    take(m, cube);
    take(m, k);
    take(m, s);
    take(m, u);
    m->x_uses = uses + 1;
    m->tanh = true;
    return match_tail(g, r, x, g->nodes[th].out[0], m);
}

bool fm_gelu_match(const ir_graph *g, const fm_readers *r, int32_t x, fm_gelu *m)
{
    if (x < 0 || x >= r->n_values) return false;
    const ir_value *vx = &g->values[x];
    if (vx->dtype != KILN_DTYPE_F32 || !vx->shape_known) return false;
    for (int32_t i = r->start[x]; i < r->start[x + 1]; i++) {
        memset(m, 0, sizeof *m);
        if (match_erf(g, r, x, r->node[i], r->slot[i], m)) return true;
        memset(m, 0, sizeof *m);
        if (match_tanh(g, r, x, r->node[i], r->slot[i], m)) return true;
    }
    return false;
}

/* The x a GELU around this Erf or Tanh node would read: the non-constant input of the
 * Div/Mul before an Erf; before a Tanh, an input of the Add two steps up. */
static int32_t candidates(const ir_graph *g, int32_t core, int32_t *xs)
{
    const ir_node *n = &g->nodes[core];
    int32_t p = fm_producer(g, n->in[0]), c = 0;
    if (p < 0 || g->nodes[p].n_in != 2) return 0;
    const ir_node *pn = &g->nodes[p];
    if (strcmp(n->op->name, "Erf") == 0) {
        for (int32_t k = 0; k < 2; k++)
            if (pn->in[k] >= 0 && g->values[pn->in[k]].kind != IR_VALUE_CONSTANT)
                xs[c++] = pn->in[k];
        return c;
    }
    for (int32_t k = 0; k < 2; k++) {
        int32_t a = fm_producer(g, pn->in[k]);
        if (!fm_is(g, a, "Add")) continue;
        for (int32_t j = 0; j < 2 && c < 4; j++) xs[c++] = g->nodes[a].in[j];
    }
    return c;
}

kiln_status opt_gelu(ir_graph *g, int32_t *changes)
{
    fm_readers r;
    KILN_TRY(fm_readers_build(g, &r));
    kiln_status st = KILN_OK;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        if (!fm_is(g, i, "Erf") && !fm_is(g, i, "Tanh")) continue;
        int32_t xs[4], nx = candidates(g, i, xs), x = -1;
        fm_gelu m;
        for (int32_t k = 0; k < nx && x < 0; k++)
            if (xs[k] >= 0 && fm_gelu_match(g, &r, xs[k], &m) && m.nodes[0] == i) x = xs[k];
        if (x < 0) continue;
        kiln_attr a = KILN_ATTR_S("approximate", m.tanh ? "tanh" : "none");
        const char *was = g->nodes[i].name;
        bool done;
        st = fm_rewrite(g, i, "Gelu", &x, 1, m.y, &a, 1, &done);
        if (st) break;
        if (!done) continue;
        st = fm_absorb(g, i, m.nodes + 1, m.n - 1);
        if (st) break;
        kiln_log(KILN_LOG_VERBOSE, "gelu: %d layers from '%s' to '%s' -> Gelu (%s) '%s'", m.n,
                 g->nodes[m.nodes[1]].name, g->values[m.y].name, m.tanh ? "tanh" : "erf", was);
        (*changes)++;
        fm_readers_free(&r);
        st = fm_readers_build(g, &r);
        if (st) break;
    }
    fm_readers_free(&r);
    return st;
}
