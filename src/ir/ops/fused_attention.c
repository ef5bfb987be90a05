/* fused_attention.c - kiln.Attention, the layer the `attention` pass makes of
 * MatMul(Q, Kt) -> scale -> (+ mask) -> Softmax -> MatMul(., V): its shape rule and a
 * reference kernel that gives the unfused chain's bits (same sums in the same order). */
#include <math.h>
#include <string.h>

#include "ir/ops/fused_impl.h"
#include "ir/ops/linalg_impl.h"

/* Scores of one query row held on the stack at once. A longer row is computed chunk by
 * chunk three times over (for its max, its sum of exponentials and the product with V):
 * the kernel then needs no scratch memory, at the cost of recomputing Q.K. */
enum { ATT_CHUNK = 1024 };

/* The geometry of a kiln.Attention layer, from its input shapes. */
typedef struct att_geom {
    int32_t rank;             /* of Q, K, V and the output: 3 or 4 */
    int64_t sq, sk, d, dv;    /* query rows, key rows, head size, V's head size */
    bool kt;                  /* K is given transposed: [..., D, Sk] */
    bool div;                 /* scores are divided by `scale`, not multiplied */
    kiln_dims qb, kb, vb, ob; /* batch dims (all but the last two) of Q, K, V, output */
    kiln_dims scores;         /* [ob..., Sq, Sk]: what the mask broadcasts to */
} att_geom;

static bool present(const ir_tensor *in, int32_t n_in, int32_t i)
{
    return i < n_in && ir_tensor_present(&in[i]);
}

static kiln_status att_geometry(const ir_node *n, const ir_tensor *in, int32_t n_in, att_geom *g)
{
    char s1[KILN_DIMS_STR_MAX], s2[KILN_DIMS_STR_MAX], s3[KILN_DIMS_STR_MAX];
    const kiln_dims *q = &in[0].shape, *k = &in[1].shape, *v = &in[2].shape;
    memset(g, 0, sizeof *g);
    int64_t kt = ir_attr_int(n, "k_transposed");
    if (kt != 0 && kt != 1)
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH, "k_transposed is %lld, expected 0 or 1",
                             (long long)kt);
    const char *mode = ir_attr_string(n, "scale_mode");
    if (strcmp(mode, "mul") != 0 && strcmp(mode, "div") != 0)
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                             "scale_mode \"%s\" is unknown (expected \"mul\" or \"div\")", mode);
    g->kt = kt == 1;
    g->div = mode[0] == 'd';
    int32_t r = q->rank;
    if (r != 3 && r != 4)
        return ir_node_error(n, KILN_ERR_SHAPE,
                             "Q must be 3-D [B*H, Sq, D] or 4-D [B, H, Sq, D], got %s",
                             kiln_dims_str(q, s1, sizeof s1));
    if (k->rank != r || v->rank != r)
        return ir_node_error(n, KILN_ERR_SHAPE, "Q, K and V must have one rank, got %s, %s and %s",
                             kiln_dims_str(q, s1, sizeof s1), kiln_dims_str(k, s2, sizeof s2),
                             kiln_dims_str(v, s3, sizeof s3));
    g->rank = r;
    g->sq = q->d[r - 2];
    g->d = q->d[r - 1];
    g->sk = k->d[g->kt ? r - 1 : r - 2];
    int64_t dk = k->d[g->kt ? r - 2 : r - 1];
    if (dk != g->d)
        return ir_node_error(n, KILN_ERR_SHAPE,
                             "K of shape %s (k_transposed=%d) has head size %lld, Q of shape %s "
                             "has %lld",
                             kiln_dims_str(k, s1, sizeof s1), g->kt, (long long)dk,
                             kiln_dims_str(q, s2, sizeof s2), (long long)g->d);
    if (v->d[r - 2] != g->sk)
        return ir_node_error(n, KILN_ERR_SHAPE,
                             "V of shape %s has %lld rows, expected K's sequence length %lld "
                             "(K is %s, k_transposed=%d)",
                             kiln_dims_str(v, s1, sizeof s1), (long long)v->d[r - 2],
                             (long long)g->sk, kiln_dims_str(k, s2, sizeof s2), g->kt);
    g->dv = v->d[r - 1];
    g->qb = kiln_dims_make(r - 2, q->d);
    g->kb = kiln_dims_make(r - 2, k->d);
    g->vb = kiln_dims_make(r - 2, v->d);
    kiln_dims qk;
    if (!ir_broadcast(&g->qb, &g->kb, &qk) || !ir_broadcast(&qk, &g->vb, &g->ob))
        return ir_node_error(n, KILN_ERR_SHAPE,
                             "batch dims do not broadcast: Q is %s, K is %s, V is %s",
                             kiln_dims_str(q, s1, sizeof s1), kiln_dims_str(k, s2, sizeof s2),
                             kiln_dims_str(v, s3, sizeof s3));
    g->scores = g->ob;
    g->scores.d[g->scores.rank++] = g->sq;
    g->scores.d[g->scores.rank++] = g->sk;
    if (present(in, n_in, 3) && !lin_unidirectional(&in[3].shape, &g->scores))
        return ir_node_error(n, KILN_ERR_SHAPE,
                             "mask of shape %s does not broadcast to the "
                             "scores' %s",
                             kiln_dims_str(&in[3].shape, s1, sizeof s1),
                             kiln_dims_str(&g->scores, s2, sizeof s2));
    return KILN_OK;
}

kiln_status fused_attention_infer(ir_infer *c)
{
    static const kiln_dtype ok[] = {KILN_DTYPE_F32};
    static const char *const names[] = {"Q", "K", "V", "mask"};
    for (int32_t i = 0; i < c->n_in && i < 4; i++)
        if (ir_tensor_present(&c->in[i])) KILN_TRY(lin_check_dtype(c, i, names[i], ok, 1));
    att_geom g;
    KILN_TRY(att_geometry(c->node, c->in, c->n_in, &g));
    kiln_dims o = g.ob;
    o.d[o.rank++] = g.sq;
    o.d[o.rank++] = g.dv;
    KILN_TRY(lin_check_size(c, &o));
    c->out[0].dtype = KILN_DTYPE_F32;
    c->out[0].shape = o;
    return KILN_OK;
}

/* One query row's inputs. */
typedef struct att_row {
    const float *q;    /* D values */
    const float *k;    /* this (batch, head)'s K: Sk x D, or D x Sk when kt */
    const float *mask; /* the row's mask at column 0, or NULL */
    int64_t mask_step; /* mask stride along the columns (0 when broadcast) */
    float q_scale, scale;
} att_row;

/* Scores of columns j0 .. j0 + m - 1 into s: the sums of MatMul's reference kernel
 * (float, over d ascending, from 0), then the scale and the mask as the Mul or Div and
 * the Add of the unfused chain apply them. A factor of 1 is skipped: x * 1 == x / 1 == x. */
static void att_scores(const att_geom *g, const att_row *r, int64_t j0, int64_t m, float *s)
{
    const float *q = r->q;
    float qs = r->q_scale;
    if (g->kt) {
        for (int64_t j = 0; j < m; j++) s[j] = 0.0f;
        for (int64_t dd = 0; dd < g->d; dd++) {
            float qv = qs != 1.0f ? q[dd] * qs : q[dd];
            const float *kr = r->k + dd * g->sk + j0;
            for (int64_t j = 0; j < m; j++) s[j] += qv * kr[j];
        }
    } else {
        for (int64_t j = 0; j < m; j++) {
            const float *kr = r->k + (j0 + j) * g->d;
            float acc = 0.0f;
            if (qs != 1.0f)
                for (int64_t dd = 0; dd < g->d; dd++) acc += (q[dd] * qs) * kr[dd];
            else
                for (int64_t dd = 0; dd < g->d; dd++) acc += q[dd] * kr[dd];
            s[j] = acc;
        }
    }
    float sc = r->scale;
    if (sc != 1.0f) {
        if (g->div)
            for (int64_t j = 0; j < m; j++) s[j] = s[j] / sc;
        else
            for (int64_t j = 0; j < m; j++) s[j] = s[j] * sc;
    }
    if (r->mask)
        for (int64_t j = 0; j < m; j++) s[j] = s[j] + r->mask[(j0 + j) * r->mask_step];
}

/* y (Dv values) = softmax(scores) . V, with Softmax's reference formula (softmax.c): the
 * row's max (first NaN wins), exponentials as floats summed in double, each scaled by
 * the reciprocal of the sum; then the products with V's rows as MatMul sums them. */
static void att_row_run(const att_geom *g, const att_row *r, const float *v, float *y)
{
    float s[ATT_CHUNK];
    bool once = g->sk <= ATT_CHUNK;
    float mx = -INFINITY;
    for (int64_t j0 = 0; j0 < g->sk; j0 += ATT_CHUNK) {
        int64_t m = g->sk - j0 < ATT_CHUNK ? g->sk - j0 : ATT_CHUNK;
        att_scores(g, r, j0, m, s);
        for (int64_t j = 0; j < m; j++) {
            float x = s[j];
            if (x > mx || (isnan(x) && !isnan(mx)) || j0 + j == 0) mx = x;
        }
    }
    double sum = 0.0;
    for (int64_t j0 = 0; j0 < g->sk; j0 += ATT_CHUNK) {
        int64_t m = g->sk - j0 < ATT_CHUNK ? g->sk - j0 : ATT_CHUNK;
        if (!once) att_scores(g, r, j0, m, s);
        for (int64_t j = 0; j < m; j++) {
            float e = expf(s[j] - mx);
            if (once) s[j] = e;
            sum += e;
        }
    }
    double inv = 1.0 / sum;
    for (int64_t c = 0; c < g->dv; c++) y[c] = 0.0f;
    for (int64_t j0 = 0; j0 < g->sk; j0 += ATT_CHUNK) {
        int64_t m = g->sk - j0 < ATT_CHUNK ? g->sk - j0 : ATT_CHUNK;
        if (!once) {
            att_scores(g, r, j0, m, s);
            for (int64_t j = 0; j < m; j++) s[j] = expf(s[j] - mx);
        }
        for (int64_t j = 0; j < m; j++) {
            float p = (float)(s[j] * inv);
            const float *restrict vr = v + (j0 + j) * g->dv;
            for (int64_t c = 0; c < g->dv; c++) y[c] += p * vr[c];
        }
    }
}

kiln_status fused_attention_eval(const ir_node *n, const ir_tensor *in, int32_t n_in,
                                 ir_tensor *out, int32_t n_out)
{
    att_geom g;
    KILN_TRY(att_geometry(n, in, n_in, &g));
    int32_t nb = g.ob.rank;
    int64_t qs[KILN_MAX_RANK], ks[KILN_MAX_RANK], vs[KILN_MAX_RANK], ms[KILN_MAX_RANK];
    ir_broadcast_strides(&g.qb, &g.ob, qs); /* in units of whole matrices */
    ir_broadcast_strides(&g.kb, &g.ob, ks);
    ir_broadcast_strides(&g.vb, &g.ob, vs);
    const float *mask = present(in, n_in, 3) ? in[3].data : NULL;
    if (mask) ir_broadcast_strides(&in[3].shape, &g.scores, ms); /* in elements */
    const float *q = in[0].data, *k = in[1].data, *v = in[2].data;
    float *y = out[0].data;
    att_row r = {.q_scale = ir_attr_float(n, "q_scale"), .scale = ir_attr_float(n, "scale")};
    r.mask_step = mask ? ms[nb + 1] : 0;
    int64_t batches = kiln_dims_count(&g.ob);
    for (int64_t t = 0; t < batches; t++) {
        const float *qt = q + lin_offset(t, nb, g.ob.d, qs) * g.sq * g.d;
        const float *vt = v + lin_offset(t, nb, g.ob.d, vs) * g.sk * g.dv;
        r.k = k + lin_offset(t, nb, g.ob.d, ks) * g.sk * g.d;
        const float *mt = mask ? mask + lin_offset(t, nb, g.ob.d, ms) : NULL;
        for (int64_t i = 0; i < g.sq; i++) {
            r.q = qt + i * g.d;
            r.mask = mt ? mt + i * ms[nb] : NULL;
            att_row_run(&g, &r, vt, y + (t * g.sq + i) * g.dv);
        }
    }
    return KILN_OK;
}
