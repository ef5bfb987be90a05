/* layernorm.c - the `layernorm` pass: LayerNormalization written out of elementwise ops,
 * as Hugging Face models export it at opset 11 (ReduceMean, Sub, Pow 2 or a self-Mul,
 * ReduceMean, Add eps, Sqrt, Div, then Mul gamma and Add beta), becomes one layer. */
#include <string.h>

#include "opt/fusion_match.h"

/* The axes of ReduceMean `n` over a rank-`rank` input, when they are the trailing ones
 * with keepdims=1: the first of them (LayerNormalization's axis); -1 otherwise. */
static int32_t trailing_axis(const ir_graph *g, const ir_node *n, int32_t rank)
{
    if (ir_attr_int(n, "keepdims") != 1) return -1;
    int64_t axes[KILN_MAX_RANK], cnt = 0;
    int32_t ac = 0;
    const int64_t *av = ir_attr_ints(n, "axes", &ac);
    if (ac > 0) {
        if (ac > KILN_MAX_RANK) return -1;
        memcpy(axes, av, sizeof(int64_t) * (size_t)ac);
        cnt = ac;
    } else if (n->n_in > 1 && n->in[1] >= 0) {
        const ir_value *v = &g->values[n->in[1]];
        ir_tensor t = {v->dtype, v->shape, (void *)v->data, v->layout};
        if (v->kind != IR_VALUE_CONSTANT || !v->data ||
            !ir_tensor_ints(&t, axes, KILN_MAX_RANK, &cnt))
            return -1;
    }
    if (cnt < 1 || cnt > rank) return -1;
    bool seen[KILN_MAX_RANK] = {false};
    for (int64_t k = 0; k < cnt; k++) {
        int32_t a;
        if (!ir_axis(axes[k], rank, &a) || a < rank - cnt || seen[a]) return -1;
        seen[a] = true;
    }
    return (int32_t)(rank - cnt);
}

/* The one reader of private value `v`, if it runs `op` and reads v in input `slot`. */
static int32_t reader(const ir_graph *g, const fm_readers *r, int32_t v, const char *op,
                      int32_t slot)
{
    if (!fm_private(g, r, v, 1)) return -1;
    int32_t n = fm_only_reader(r, v);
    return fm_is(g, n, op) && g->nodes[n].n_in > slot && g->nodes[n].in[slot] == v ? n : -1;
}

typedef struct ln_match {
    int32_t x, axis, gamma, beta, y;
    float eps;
    int32_t nodes[10];
    int32_t n;
} ln_match;

/* The square of d: Pow(d, 2) or Mul(d, d), and how many times it reads d. */
static int32_t square_of(const ir_graph *g, const fm_readers *r, int32_t d, int32_t *uses)
{
    if (d < 0 || d >= r->n_values) return -1;
    for (int32_t i = r->start[d]; i < r->start[d + 1]; i++) {
        int32_t n = r->node[i];
        const ir_node *p = &g->nodes[n];
        if (fm_is(g, n, "Pow") && r->slot[i] == 0 && fm_scalar_near(g, p->in[1], 2.0, 0.0)) {
            *uses = 1;
            return n;
        }
        if (fm_is(g, n, "Mul") && p->in[0] == d && p->in[1] == d) {
            *uses = 2;
            return n;
        }
    }
    return -1;
}

/* From the first ReduceMean to the end of the pattern. */
static bool match(const ir_graph *g, const fm_readers *r, int32_t rm1, ln_match *m)
{
    memset(m, 0, sizeof *m);
    const ir_node *n1 = &g->nodes[rm1];
    m->x = n1->in[0];
    const ir_value *vx = &g->values[m->x];
    if (vx->dtype != KILN_DTYPE_F32 || vx->shape.rank < 1) return false;
    int32_t rank = vx->shape.rank;
    if ((m->axis = trailing_axis(g, n1, rank)) < 0) return false;
    int32_t sub = reader(g, r, n1->out[0], "Sub", 1);
    if (sub < 0 || g->nodes[sub].in[0] != m->x) return false;
    int32_t d = g->nodes[sub].out[0], uses = 0;
    if (!fm_same_shape(g, d, m->x)) return false;
    int32_t sq = square_of(g, r, d, &uses);
    if (sq < 0 || !fm_private(g, r, d, uses + 1)) return false;
    int32_t rm2 = reader(g, r, g->nodes[sq].out[0], "ReduceMean", 0);
    if (rm2 < 0 || trailing_axis(g, &g->nodes[rm2], rank) != m->axis) return false;
    int32_t var = g->nodes[rm2].out[0];
    int32_t add = reader(g, r, var, "Add", 0);
    if (add < 0) add = reader(g, r, var, "Add", 1);
    if (add < 0 || !fm_scalar(g, fm_other(&g->nodes[add], var), &m->eps)) return false;
    int32_t sqrt_n = reader(g, r, g->nodes[add].out[0], "Sqrt", 0);
    if (sqrt_n < 0) return false;
    int32_t div = reader(g, r, g->nodes[sqrt_n].out[0], "Div", 1);
    if (div < 0 || g->nodes[div].in[0] != d) return false;
    int32_t parts[] = {rm1, sub, sq, rm2, add, sqrt_n, div};
    for (size_t k = 0; k < sizeof parts / sizeof *parts; k++) m->nodes[m->n++] = parts[k];
    m->y = g->nodes[div].out[0];
    m->gamma = m->beta = -1;
    /* then * gamma and + beta, constants, when present */
    for (int32_t step = 0; step < 2; step++) {
        if (!fm_private(g, r, m->y, 1)) break;
        int32_t n = fm_only_reader(r, m->y);
        if (!fm_is(g, n, step == 0 ? "Mul" : "Add")) break;
        int32_t c = fm_other(&g->nodes[n], m->y);
        if (c < 0 || g->values[c].kind != IR_VALUE_CONSTANT || g->values[c].dtype != KILN_DTYPE_F32)
            break;
        *(step == 0 ? &m->gamma : &m->beta) = c;
        m->nodes[m->n++] = n;
        m->y = g->nodes[n].out[0];
    }
    return fm_same_shape(g, m->y, m->x);
}

/* A Scale of ones over the normalized dims, for a pattern without Mul gamma. */
static kiln_status ones(ir_graph *g, const ln_match *m, const char *base, int32_t *value)
{
    const kiln_dims *xs = &g->values[m->x].shape;
    kiln_dims s = kiln_dims_make(xs->rank - m->axis, xs->d + m->axis);
    int64_t cnt = kiln_dims_count(&s);
    float *data = NULL;
    KILN_TRY(kiln_alloc_checked((void **)&data, (size_t)cnt + 1, sizeof(float), "layernorm"));
    for (int64_t i = 0; i < cnt; i++) data[i] = 1.0f;
    kiln_status st = opt_add_constant(g, base, KILN_DTYPE_F32, &s, data, value);
    kiln_free(data);
    return st;
}

kiln_status opt_layernorm(ir_graph *g, int32_t *changes)
{
    fm_readers r;
    KILN_TRY(fm_readers_build(g, &r));
    kiln_status st = KILN_OK;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        ln_match m;
        if (!fm_is(g, i, "ReduceMean") || !match(g, &r, i, &m)) continue;
        if (m.gamma < 0) KILN_CHECK(ones(g, &m, g->nodes[i].name, &m.gamma));
        int32_t in[3] = {m.x, m.gamma, m.beta};
        kiln_attr attrs[] = {
            KILN_ATTR_I("axis", m.axis),
            KILN_ATTR_F("epsilon", m.eps),
            KILN_ATTR_I("stash_type", 1),
        };
        bool done;
        KILN_CHECK(
            fm_rewrite(g, i, "LayerNormalization", in, m.beta >= 0 ? 3 : 2, m.y, attrs, 3, &done));
        if (!done) continue;
        KILN_CHECK(fm_absorb(g, i, m.nodes + 1, m.n - 1));
        kiln_log(KILN_LOG_VERBOSE,
                 "layernorm: %d layers from '%s' to '%s' -> LayerNormalization '%s' (axis %d, "
                 "epsilon %g)",
                 m.n, g->nodes[i].name, g->nodes[m.nodes[m.n - 1]].name, g->nodes[i].name, m.axis,
                 (double)m.eps);
        (*changes)++;
        fm_readers_free(&r);
        KILN_CHECK(fm_readers_build(g, &r));
    }
fail:
    fm_readers_free(&r);
    return st;
}
