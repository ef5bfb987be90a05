/* act_fusion.c - the `activation-fusion` pass: Conv, Gemm or MatMul, then an Add of a
 * constant bias vector, a residual Add (Z) and an activation, become one kiln.Conv,
 * kiln.Gemm or kiln.MatMul (src/ir/ops/fused.c). Each swallowed intermediate must have
 * exactly one reader (SiLU and written-out GELU read theirs in the pattern only) and
 * must not be a network output. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "opt/fusion_match.h"

typedef enum anchor_kind { K_CONV, K_GEMM, K_MATMUL } anchor_kind;

static const char *const k_fused_op[] = {"kiln.Conv", "kiln.Gemm", "kiln.MatMul"};

enum { MAX_TAKEN = FM_GELU_MAX_NODES + 8 };

typedef struct fusion {
    int32_t anchor;
    anchor_kind kind;
    int32_t cur;     /* the value the fused layer computes so far */
    int32_t axis;    /* the output axis a bias vector runs along */
    float *vec;      /* sum of the constant bias vectors taken, or NULL */
    int32_t n_vec;   /* how many */
    int32_t vec_src; /* the last one taken, as a value */
    int32_t z;       /* the residual, or -1 */
    const char *act;
    float alpha, beta;
    int32_t taken[MAX_TAKEN];
    int32_t n;
} fusion;

static void take(fusion *f, int32_t node)
{
    if (f->n < MAX_TAKEN) f->taken[f->n++] = node;
}

/* Sets up `f` for anchor `i`; false when it is no anchor or has nothing left to take. */
static bool anchor_start(const ir_graph *g, int32_t i, fusion *f)
{
    const ir_node *n = &g->nodes[i];
    const char *op = n->op->name;
    memset(f, 0, sizeof *f);
    f->anchor = i;
    f->z = -1;
    f->act = "";
    if (n->dead || n->n_out != 1) return false;
    bool fused = strncmp(op, "kiln.", 5) == 0;
    const char *base = fused ? op + 5 : op;
    if (strcmp(base, "Conv") == 0)
        f->kind = K_CONV;
    else if (strcmp(base, "Gemm") == 0)
        f->kind = K_GEMM;
    else if (strcmp(base, "MatMul") == 0)
        f->kind = K_MATMUL;
    else
        return false;
    f->cur = n->out[0];
    const ir_value *out = &g->values[f->cur];
    if (out->dtype != KILN_DTYPE_F32 || out->shape.rank < 1) return false;
    f->axis = f->kind == K_CONV ? 1 : out->shape.rank - 1;
    if (f->kind == K_CONV && out->shape.rank < 3) return false;
    if (fused) {
        if (ir_attr_string(n, "activation")[0] != '\0') return false;
        if (n->n_in > 3) f->z = n->in[3];
    }
    return true;
}

/* Whether the taken bias vectors can join the bias the layer adds now (Conv's B,
 * kiln.MatMul's bias, Gemm's C): it must be a constant, or absent. */
static bool bias_mergeable(const ir_graph *g, const fusion *f)
{
    const ir_node *n = &g->nodes[f->anchor];
    int32_t b = n->n_in > 2 ? n->in[2] : -1;
    if (b < 0) return true;
    if (f->kind == K_GEMM && ir_attr_float(n, "beta") == 0.0f) return true;
    return g->values[b].kind == IR_VALUE_CONSTANT && g->values[b].data;
}

/* Add(cur, constant varying only along the channel axis) while no residual is taken. */
static kiln_status try_bias(const ir_graph *g, fusion *f, int32_t other, bool *ok)
{
    *ok = false;
    const kiln_dims *s = &g->values[f->cur].shape;
    int64_t ch = s->d[f->axis];
    if (f->z >= 0 || ch < 1 || g->values[other].kind != IR_VALUE_CONSTANT || !bias_mergeable(g, f))
        return KILN_OK;
    float *v = NULL;
    KILN_TRY(kiln_alloc_checked((void **)&v, (size_t)ch + 1, sizeof(float), "activation-fusion"));
    if (!fm_channel_vector(g, other, s, f->axis, v)) {
        kiln_free(v);
        return KILN_OK;
    }
    if (f->vec) {
        for (int64_t c = 0; c < ch; c++) f->vec[c] += v[c];
        kiln_free(v);
    } else {
        f->vec = v;
    }
    f->n_vec++;
    f->vec_src = other;
    *ok = true;
    return KILN_OK;
}

/* A standalone activation reading cur: its name for the fused op and parameters. */
static bool try_act(const ir_graph *g, fusion *f, int32_t node)
{
    const ir_node *n = &g->nodes[node];
    const char *op = n->op->name;
    if (n->in[0] != f->cur || !fm_same_shape(g, n->out[0], f->cur)) return false;
    static const char *const plain[] = {"Relu", "Sigmoid", "Tanh", "HardSwish"};
    for (size_t i = 0; i < sizeof plain / sizeof *plain; i++)
        if (strcmp(op, plain[i]) == 0) f->act = plain[i];
    if (strcmp(op, "LeakyRelu") == 0 || strcmp(op, "Elu") == 0 || strcmp(op, "HardSigmoid") == 0) {
        f->act = strcmp(op, "LeakyRelu") == 0 ? "LeakyRelu" : op[0] == 'E' ? "Elu" : "HardSigmoid";
        f->alpha = ir_attr_float(n, "alpha");
        f->beta = ir_attr_float(n, "beta");
    } else if (strcmp(op, "Gelu") == 0) {
        f->act = strcmp(ir_attr_string(n, "approximate"), "tanh") == 0 ? "GeluTanh" : "Gelu";
    } else if (strcmp(op, "Clip") == 0) {
        float lo = -INFINITY, hi = INFINITY;
        if (n->n_in > 1 && n->in[1] >= 0 && !fm_scalar(g, n->in[1], &lo)) return false;
        if (n->n_in > 2 && n->in[2] >= 0 && !fm_scalar(g, n->in[2], &hi)) return false;
        f->act = "Clip";
        f->alpha = lo;
        f->beta = hi;
    }
    if (f->act[0] == '\0') return false;
    take(f, node);
    f->cur = n->out[0];
    return true;
}

/* cur * Sigmoid(cur): cur's two readers are exactly these. */
static bool try_silu(const ir_graph *g, const fm_readers *r, fusion *f)
{
    int32_t c = f->cur;
    if (fm_count(r, c) != 2) return false;
    for (int32_t k = 0; k < 2; k++) {
        int32_t sg = r->node[r->start[c] + k], mul = r->node[r->start[c] + 1 - k];
        if (!fm_is(g, sg, "Sigmoid") || !fm_is(g, mul, "Mul")) continue;
        int32_t s = g->nodes[sg].out[0];
        if (!fm_private(g, r, s, 1) || fm_only_reader(r, s) != mul ||
            fm_other(&g->nodes[mul], c) != s || !fm_same_shape(g, g->nodes[mul].out[0], c))
            continue;
        take(f, sg);
        take(f, mul);
        f->act = "Silu";
        f->cur = g->nodes[mul].out[0];
        return true;
    }
    return false;
}

/* Walks from the anchor's output through what it can take. */
static kiln_status collect(const ir_graph *g, const fm_readers *r, fusion *f)
{
    while (f->act[0] == '\0') {
        int32_t c = f->cur, cnt = fm_count(r, c);
        if (!fm_private(g, r, c, cnt)) break;
        if (cnt == 1) {
            int32_t rd = fm_only_reader(r, c);
            if (fm_is(g, rd, "Add")) {
                int32_t other = fm_other(&g->nodes[rd], c);
                if (other < 0 || !fm_same_shape(g, g->nodes[rd].out[0], c)) break;
                bool ok;
                KILN_TRY(try_bias(g, f, other, &ok));
                if (!ok) {
                    if (f->z >= 0 || !fm_same_shape(g, other, c)) break;
                    f->z = other;
                }
                take(f, rd);
                f->cur = g->nodes[rd].out[0];
                continue;
            }
            try_act(g, f, rd);
            break;
        }
        if (try_silu(g, r, f)) break;
        fm_gelu m;
        if (fm_gelu_match(g, r, c, &m) && m.x_uses == cnt) {
            for (int32_t k = 0; k < m.n; k++) take(f, m.nodes[k]);
            f->act = m.tanh ? "GeluTanh" : "Gelu";
            f->cur = m.y;
        }
        break;
    }
    return KILN_OK;
}

/* The new bias constant: the anchor's own bias plus the taken vectors. Gemm's C may vary
 * by row too and is scaled by beta, which the caller then sets to 1. */
static kiln_status merged_bias(ir_graph *g, const fusion *f, int32_t *value)
{
    const ir_node *n = &g->nodes[f->anchor];
    const kiln_dims *out = &g->values[n->out[0]].shape;
    int64_t ch = out->d[f->axis], rows = 1;
    int32_t b = n->n_in > 2 ? n->in[2] : -1;
    double scale = f->kind == K_GEMM ? ir_attr_float(n, "beta") : 1.0;
    if (scale == 0.0) b = -1;
    const ir_value *bv = b >= 0 ? &g->values[b] : NULL;
    int64_t st[2] = {0, 1};
    if (bv && f->kind == K_GEMM) {
        ir_broadcast_strides(&bv->shape, out, st);
        if (st[0] != 0) rows = out->d[0];
    }
    float *data = NULL;
    KILN_TRY(kiln_alloc_checked((void **)&data, (size_t)(rows * ch), sizeof(float),
                                "activation-fusion"));
    const float *bd = bv ? bv->data : NULL;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t c = 0; c < ch; c++) {
            double v = bd ? scale * bd[i * st[0] + c * st[1]] : 0.0;
            data[i * ch + c] = (float)(v + f->vec[c]);
        }
    kiln_dims shape = rows > 1 ? (kiln_dims){2, {rows, ch}} : (kiln_dims){1, {ch}};
    kiln_status s = opt_add_constant(g, n->name, KILN_DTYPE_F32, &shape, data, value);
    kiln_free(data);
    return s;
}

/* "'a' (Conv) + 'b' (Add) + ..." for the log. */
static void describe(const ir_graph *g, const fusion *f, char *buf, size_t size)
{
    const ir_node *a = &g->nodes[f->anchor];
    size_t len = (size_t)snprintf(buf, size, "'%s' (%s)", a->name, a->op->name);
    for (int32_t k = 0; k < f->n && len < size; k++) {
        const ir_node *n = &g->nodes[f->taken[k]];
        len += (size_t)snprintf(buf + len, size - len, " + '%s' (%s)", n->name, n->op->name);
    }
}

/* Rewrites the anchor into its fused op; *done false when shape inference disagrees. */
static kiln_status apply(ir_graph *g, fusion *f, bool *done)
{
    const ir_node *n = &g->nodes[f->anchor];
    int32_t in[4] = {n->in[0], n->in[1], n->n_in > 2 ? n->in[2] : -1, f->z};
    kiln_attr extra[4] = {
        KILN_ATTR_S("activation", f->act),
        KILN_ATTR_F("act_alpha", f->alpha),
        KILN_ATTR_F("act_beta", f->beta),
        KILN_ATTR_F("beta", 1.0f),
    };
    int32_t n_extra = 3;
    if (f->vec) {
        /* One vector, of the shape the op takes, and no bias of the layer's own: used as
         * it is rather than copied. */
        const kiln_dims *vs = &g->values[f->vec_src].shape;
        bool own = in[2] >= 0 && !(f->kind == K_GEMM && ir_attr_float(n, "beta") == 0.0f);
        const kiln_dims *os = &g->values[n->out[0]].shape;
        if (f->n_vec == 1 && !own && vs->rank == 1 && vs->d[0] == os->d[f->axis])
            in[2] = f->vec_src;
        else
            KILN_TRY(merged_bias(g, f, &in[2]));
        if (f->kind == K_GEMM) n_extra = 4;
    }
    int32_t n_in = f->z >= 0 ? 4 : in[2] >= 0 ? 3 : 2;
    char what[512];
    describe(g, f, what, sizeof what);
    KILN_TRY(fm_rewrite(g, f->anchor, k_fused_op[f->kind], in, n_in, f->cur, extra, n_extra, done));
    if (!*done) return KILN_OK;
    KILN_TRY(fm_absorb(g, f->anchor, f->taken, f->n));
    kiln_log(KILN_LOG_VERBOSE, "activation-fusion: %s -> %s (activation \"%s\"%s%s)", what,
             k_fused_op[f->kind], f->act, f->z >= 0 ? ", residual " : "",
             f->z >= 0 ? g->values[f->z].name : "");
    return KILN_OK;
}

kiln_status opt_activation_fusion(ir_graph *g, int32_t *changes)
{
    fm_readers r;
    KILN_TRY(fm_readers_build(g, &r));
    kiln_status st = KILN_OK;
    fusion f;
    memset(&f, 0, sizeof f);
    for (int32_t i = 0; i < g->n_nodes; i++) {
        if (!anchor_start(g, i, &f)) continue;
        KILN_CHECK(collect(g, &r, &f));
        if (f.n > 0) {
            bool done;
            KILN_CHECK(apply(g, &f, &done));
            if (done) {
                *changes += f.n;
                fm_readers_free(&r);
                KILN_CHECK(fm_readers_build(g, &r));
            }
        }
        kiln_free(f.vec);
        f.vec = NULL;
    }
fail:
    kiln_free(f.vec);
    fm_readers_free(&r);
    return st;
}
