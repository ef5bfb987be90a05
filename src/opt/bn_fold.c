/* bn_fold.c - the `batchnorm-fold` pass: a BatchNormalization right after a Conv,
 * ConvTranspose or Gemm with constant weights folds into new weights and bias (computed in
 * double, rounded once). A BatchNormalization elsewhere stays: its kernel is already one
 * multiply-add per element, as a Mul + Add would be. */
#include <math.h>
#include <string.h>

#include "opt/fusion_match.h"

/* Constant f32 data of value `v` with `count` elements, or NULL. */
static const float *const_f32(const ir_graph *g, int32_t v, int64_t count)
{
    if (v < 0) return NULL;
    const ir_value *c = &g->values[v];
    if (c->kind != IR_VALUE_CONSTANT || c->dtype != KILN_DTYPE_F32 || !c->data) return NULL;
    if (count >= 0 && kiln_dims_count(&c->shape) != count) return NULL;
    return c->data;
}

/* A layer the BN can fold into: Conv, ConvTranspose, Gemm, or their fused forms while
 * they add nothing after the bias (no residual, no activation). */
static bool foldable_op(const ir_node *n)
{
    const char *op = n->op->name;
    if (!strcmp(op, "Conv") || !strcmp(op, "ConvTranspose") || !strcmp(op, "Gemm")) return true;
    if (strcmp(op, "kiln.Conv") != 0 && strcmp(op, "kiln.Gemm") != 0) return false;
    return ir_attr_string(n, "activation")[0] == '\0' && (n->n_in < 4 || n->in[3] < 0);
}

typedef struct bn_fold {
    int64_t ch;
    double *a, *b;   /* y = x * a[c] + b[c] */
    float *w, *bias; /* the new constants */
    kiln_dims bias_shape;
} bn_fold;

/* Scales the weights of output channel oc by a[oc]. Layouts: Conv M x C/g x k...,
 * ConvTranspose C x M/g x k..., Gemm B K x N or (transB) N x K. */
static void fold_weights(const ir_graph *g, const ir_node *p, const float *w, bn_fold *f)
{
    const kiln_dims *ws = &g->values[p->in[1]].shape;
    int64_t count = kiln_dims_count(ws);
    const char *op = p->op->name;
    if (strstr(op, "Gemm")) {
        bool tb = ir_attr_int(p, "transB") != 0;
        int64_t rows = ws->d[0], cols = ws->d[1];
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < cols; j++)
                f->w[i * cols + j] = (float)((double)w[i * cols + j] * f->a[tb ? i : j]);
    } else if (strcmp(op, "ConvTranspose") == 0) {
        int64_t cin = ws->d[0], mg = ws->d[1], ksize = count / (cin * mg);
        int64_t cg = cin / ir_attr_int(p, "group");
        for (int64_t e = 0; e < count; e++) {
            int64_t ci = e / (mg * ksize), j = (e / ksize) % mg;
            f->w[e] = (float)((double)w[e] * f->a[(ci / cg) * mg + j]);
        }
    } else {
        int64_t per = count / f->ch;
        for (int64_t e = 0; e < count; e++) f->w[e] = (float)((double)w[e] * f->a[e / per]);
    }
}

/* The new bias: Conv's B (one per channel) or Gemm's C, which may vary by row too; a
 * Gemm's beta is taken into C (the caller sets beta to 1). */
static kiln_status fold_bias(const ir_graph *g, const ir_node *p, const kiln_dims *out, bn_fold *f)
{
    int32_t bv = p->n_in > 2 ? p->in[2] : -1;
    const ir_value *b = bv >= 0 ? &g->values[bv] : NULL;
    bool gemm = strstr(p->op->name, "Gemm") != NULL;
    double beta = gemm ? ir_attr_float(p, "beta") : 1.0;
    if (b && gemm && beta == 0.0) b = NULL; /* C is ignored */
    int64_t rows = 1;
    if (b && gemm && b->shape.rank == 2 && b->shape.d[0] != 1) rows = out->d[0];
    f->bias_shape = rows > 1 ? (kiln_dims){2, {rows, f->ch}} : (kiln_dims){1, {f->ch}};
    KILN_TRY(kiln_alloc_checked((void **)&f->bias, (size_t)(rows * f->ch), sizeof(float),
                                "batchnorm-fold"));
    /* C broadcasts against Gemm's M x N output (rows == 1 when it does not vary by row) */
    int64_t st[2] = {0, 0};
    if (b && gemm) ir_broadcast_strides(&b->shape, out, st);
    const float *bd = b ? b->data : NULL;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t c = 0; c < f->ch; c++) {
            double v = 0.0;
            if (bd && gemm)
                v = beta * bd[i * st[0] + c * st[1]];
            else if (bd)
                v = bd[c];
            f->bias[i * f->ch + c] = (float)(v * f->a[c] + f->b[c]);
        }
    return KILN_OK;
}

/* Folds BN node `bn` into the producer of its input when every condition holds. */
static kiln_status try_fold(ir_graph *g, int32_t bn, bool *done)
{
    *done = false;
    ir_node *n = &g->nodes[bn];
    if (n->n_in != 5 || n->n_out != 1) return KILN_OK;
    int32_t x = n->in[0], pid = fm_producer(g, x);
    const ir_value *vx = &g->values[x];
    if (pid < 0 || vx->is_output || vx->kind != IR_VALUE_ACTIVATION || vx->shape.rank < 2 ||
        opt_single_consumer(g, x, NULL) != bn)
        return KILN_OK;
    ir_node *p = &g->nodes[pid];
    if (!foldable_op(p) || p->n_out != 1) return KILN_OK;
    bn_fold f = {.ch = vx->shape.d[1]};
    const float *prm[4];
    for (int32_t k = 0; k < 4; k++)
        if (!(prm[k] = const_f32(g, n->in[k + 1], f.ch))) return KILN_OK;
    const float *w = const_f32(g, p->in[1], -1);
    int32_t bv = p->n_in > 2 ? p->in[2] : -1;
    if (!w || (bv >= 0 && !const_f32(g, bv, -1))) return KILN_OK;

    int64_t wcount = kiln_dims_count(&g->values[p->in[1]].shape);
    if (f.ch < 1 || wcount < 1) return KILN_OK; /* nothing to scale (and no divisions by 0) */
    kiln_status st = KILN_OK;
    KILN_CHECK(kiln_alloc_checked((void **)&f.a, (size_t)f.ch, sizeof(double), "batchnorm-fold"));
    KILN_CHECK(kiln_alloc_checked((void **)&f.b, (size_t)f.ch, sizeof(double), "batchnorm-fold"));
    KILN_CHECK(kiln_alloc_checked((void **)&f.w, (size_t)wcount, sizeof(float), "batchnorm-fold"));
    double eps = ir_attr_float(n, "epsilon");
    for (int64_t c = 0; c < f.ch; c++) {
        /* scale, B, mean, var */
        f.a[c] = (double)prm[0][c] / sqrt((double)prm[3][c] + eps);
        f.b[c] = (double)prm[1][c] - (double)prm[2][c] * f.a[c];
    }
    fold_weights(g, p, w, &f);
    KILN_CHECK(fold_bias(g, p, &vx->shape, &f));

    int32_t nw, nb;
    KILN_CHECK(opt_add_constant(g, g->values[p->in[1]].name, KILN_DTYPE_F32,
                                &g->values[p->in[1]].shape, f.w, &nw));
    KILN_CHECK(opt_add_constant(g, n->name, KILN_DTYPE_F32, &f.bias_shape, f.bias, &nb));
    p = &g->nodes[pid]; /* adding values does not move nodes, but stay safe */
    n = &g->nodes[bn];
    if (p->n_in < 3) {
        int32_t *in = kiln_arena_alloc(&g->arena, sizeof(int32_t) * 4);
        if (!in) {
            st = kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory in batchnorm-fold");
            goto fail;
        }
        in[0] = p->in[0];
        p->in = in;
        p->n_in = 3;
    }
    p->in[1] = nw;
    p->in[2] = nb;
    for (int32_t k = 0; k < p->n_attrs && strstr(p->op->name, "Gemm"); k++)
        if (strcmp(p->attrs[k].name, "beta") == 0) p->attrs[k].f = 1.0f;
    int32_t y = n->out[0];
    p->out[0] = y;
    g->values[y].producer = pid;
    g->values[x].producer = -1;
    n->dead = true;
    KILN_CHECK(opt_record_fusion(g, pid, bn));
    KILN_CHECK(opt_infer_node(g, pid));
    kiln_log(KILN_LOG_VERBOSE, "batchnorm-fold: '%s' (BatchNormalization) folded into '%s' (%s)",
             n->name, p->name, p->op->name);
    *done = true;
fail:
    kiln_free(f.a);
    kiln_free(f.b);
    kiln_free(f.w);
    kiln_free(f.bias);
    return st;
}

kiln_status opt_batchnorm_fold(ir_graph *g, int32_t *changes)
{
    for (int32_t i = 0; i < g->n_nodes; i++) {
        if (!fm_is(g, i, "BatchNormalization")) continue;
        bool done;
        KILN_TRY(try_fold(g, i, &done));
        if (done) (*changes)++;
    }
    return KILN_OK;
}
