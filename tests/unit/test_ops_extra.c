/* test_ops_extra.c - the extra op group (Einsum, inverse and hyperbolic trigonometry,
 * Celu, Shrink, BitShift, MeanVarianceNormalization, LpPool, GlobalLpPool,
 * ReverseSequence, Det, GridSample; f16 and bf16 where supported): ONNX's documented
 * examples, seeded random sweeps against naive references written here another way,
 * and the error paths. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* ---- helpers ---- */

#define SHAPE(...)                                                                                 \
    (&(kiln_dims){(int32_t)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), {__VA_ARGS__}})

static ir_tensor rand_f32(tu_rng *r, const kiln_dims *d, float lo, float hi)
{
    ir_tensor t = tu_tensor_f32(d->rank, d->d, NULL);
    tu_fill(r, t.data, ir_tensor_count(&t), lo, hi);
    return t;
}

static ir_tensor rand_int(tu_rng *r, kiln_dtype dt, const kiln_dims *d, int64_t lo, int64_t hi)
{
    ir_tensor t = tu_tensor(dt, d->rank, d->d, NULL);
    for (int64_t i = 0; i < ir_tensor_count(&t); i++)
        ir_tensor_set(&t, i, (double)tu_int(r, lo, hi));
    return t;
}

static float *alloc_f(int64_t n) { return calloc((size_t)(n > 0 ? n : 1), sizeof(float)); }

/* An f16 or bf16 tensor of values uniform in [lo, hi), each rounded to the type. */
static ir_tensor rand_half(tu_rng *r, kiln_dtype dt, const kiln_dims *d, float lo, float hi)
{
    ir_tensor t = tu_tensor(dt, d->rank, d->d, NULL);
    for (int64_t i = 0; i < ir_tensor_count(&t); i++) ir_tensor_set(&t, i, tu_uniform(r, lo, hi));
    return t;
}

/* Whether `got` is `ref` rounded once to f16 or bf16: at most half an ulp of the type
 * (at ref's binade) away, plus `slack` for the error of computing ref in f32 first.
 * Rounding twice, or computing in the half type, misses by up to an ulp and more. */
static bool rounded_once(double got, double ref, kiln_dtype dt, double slack)
{
    const int mant = dt == KILN_DTYPE_F16 ? 10 : 7, emin = dt == KILN_DTYPE_F16 ? -14 : -126;
    int e = emin + 1;
    if (ref != 0) frexp(ref, &e); /* |ref| in [2^(e-1), 2^e) */
    const int ex = e - 1 < emin ? emin : e - 1;
    return fabs(got - ref) <= 0.5 * ldexp(1.0, ex - mant) + slack;
}

static void assert_shape(const ir_tensor *t, const kiln_dims *want)
{
    char a[KILN_DIMS_STR_MAX], b[KILN_DIMS_STR_MAX];
    if (!kiln_dims_equal(&t->shape, want))
        fail_msg("shape %s, expected %s", kiln_dims_str(&t->shape, a, sizeof a),
                 kiln_dims_str(want, b, sizeof b));
}

static void expect_error(const char *op, const kiln_attr *attrs, int32_t na, const ir_tensor *in,
                         int32_t n_in, kiln_status want, const char *msg)
{
    tu_expect_op_error(op, attrs, na, in, n_in, 1, want, msg);
}

/* Makes every kiln allocation fail during run_mixed's evaluation. */
static bool g_fail_eval_alloc;

/* Builds the node with the inputs in `runtime` (a bit mask) as network inputs, whose
 * values shape inference does not see, infers, and unless `infer_only` evaluates with
 * every input's data. Outputs are allocated as tu_run_op does. */
static kiln_status run_mixed(const char *op, const kiln_attr *attrs, int32_t na,
                             const ir_tensor *in, int32_t n_in, uint32_t runtime, bool infer_only,
                             ir_tensor *out)
{
    ir_graph g;
    ir_graph_init(&g);
    char names[8][16];
    const char *inames[8], *onames[1] = {"o0"};
    ir_tensor view[8];
    kiln_status st = KILN_OK;
    memset(out, 0, sizeof *out);
    for (int32_t i = 0; i < n_in; i++) {
        snprintf(names[i], sizeof names[i], "in%d", i);
        inames[i] = names[i];
        view[i] = in[i];
        if (runtime & (1u << i)) {
            st = ir_graph_add_input(&g, names[i], in[i].dtype, &in[i].shape);
            view[i].data = NULL;
        } else {
            st = ir_graph_add_constant(
                &g, names[i], in[i].dtype, &in[i].shape, in[i].data,
                (size_t)ir_tensor_count(&in[i]) * kiln_dtype_size(in[i].dtype), false, NULL);
        }
        if (st) goto done;
    }
    int32_t nid;
    st = ir_graph_add_node(&g, op, "node", inames, n_in, onames, 1, attrs, na, &nid);
    if (st) goto done;
    const ir_node *node = &g.nodes[nid];
    ir_infer c = {.node = node, .n_in = n_in, .n_out = 1, .in = view, .out = out};
    st = node->op->infer(&c);
    if (st || infer_only) goto done;
    int64_t cnt;
    assert_true(kiln_dims_numel(&out->shape, &cnt));
    out->data = calloc(1, (size_t)cnt * kiln_dtype_size(out->dtype) + 1);
    if (g_fail_eval_alloc) kiln_alloc_fail_after(0);
    st = node->op->eval(node, in, n_in, out, 1);
    kiln_alloc_fail_after(-1);
done:
    ir_graph_free(&g);
    return st;
}

static void free_all(ir_tensor *t, int32_t n)
{
    for (int32_t i = 0; i < n; i++) tu_tensor_free(&t[i]);
}

/* ---- Einsum: a reference over the whole index space ---- */

/* Subscripts of a test equation (letters only, no ellipsis). */
typedef struct test_eq {
    int32_t n_ops, rank[4], out_rank;
    char sub[4][8], out[8];
} test_eq;

static void test_eq_parse(const char *s, test_eq *q)
{
    memset(q, 0, sizeof *q);
    const char *arrow = strstr(s, "->");
    for (const char *p = s; *p && p != arrow; p++) {
        if (*p == ',')
            q->n_ops++;
        else if (*p != ' ')
            q->sub[q->n_ops][q->rank[q->n_ops]++] = *p;
    }
    q->n_ops++;
    if (arrow) {
        for (const char *p = arrow + 2; *p; p++)
            if (*p != ' ') q->out[q->out_rank++] = *p;
        return;
    }
    for (char ch = 'A'; ch <= 'z'; ch++) { /* letters used once, in ASCII order */
        int cnt = 0;
        for (int32_t k = 0; k < q->n_ops; k++)
            for (int32_t d = 0; d < q->rank[k]; d++) cnt += q->sub[k][d] == ch;
        if (cnt == 1) q->out[q->out_rank++] = ch;
    }
}

/* Every assignment of every letter, in double: out[out letters] += prod of inputs. */
static void einsum_brute(const char *eqs, const ir_tensor *in, double *y, int64_t out_count)
{
    test_eq q;
    test_eq_parse(eqs, &q);
    char letters[65] = {0}; /* NUL-terminated for strchr */
    int64_t size[64], val[64];
    int32_t nl = 0;
    for (int32_t k = 0; k < q.n_ops; k++)
        for (int32_t d = 0; d < q.rank[k]; d++) {
            int32_t j = 0;
            while (j < nl && letters[j] != q.sub[k][d]) j++;
            if (j == nl) {
                letters[nl] = q.sub[k][d];
                size[nl++] = 1;
            }
            if (in[k].shape.d[d] != 1) size[j] = in[k].shape.d[d];
        }
    for (int64_t i = 0; i < out_count; i++) y[i] = 0;
    int64_t total = 1;
    for (int32_t j = 0; j < nl; j++) total *= size[j];
    for (int64_t t = 0; t < total; t++) {
        int64_t rem = t;
        for (int32_t j = nl - 1; j >= 0; j--) {
            val[j] = rem % size[j];
            rem /= size[j];
        }
        double p = 1;
        for (int32_t k = 0; k < q.n_ops; k++) {
            int64_t lin = 0;
            for (int32_t d = 0; d < q.rank[k]; d++) {
                int32_t j = (int32_t)(strchr(letters, q.sub[k][d]) - letters);
                int64_t v = in[k].shape.d[d] == 1 ? 0 : val[j];
                lin = lin * in[k].shape.d[d] + v;
            }
            p *= ir_tensor_get(&in[k], lin);
        }
        int64_t o = 0;
        for (int32_t d = 0; d < q.out_rank; d++) {
            int32_t j = (int32_t)(strchr(letters, q.out[d]) - letters);
            o = o * size[j] + val[j];
        }
        y[o] += p;
    }
}

static void check_einsum_brute(const char *eq, const ir_tensor *in, int32_t n_in, double tol)
{
    kiln_attr a = KILN_ATTR_S("equation", eq);
    ir_tensor out[1];
    tu_run_op_ok("Einsum", &a, 1, in, n_in, out, 1);
    int64_t cnt = ir_tensor_count(&out[0]);
    double *ref = calloc((size_t)cnt + 1, sizeof(double));
    einsum_brute(eq, in, ref, cnt);
    if (out[0].dtype == KILN_DTYPE_F32) {
        float *rf = alloc_f(cnt);
        for (int64_t i = 0; i < cnt; i++) rf[i] = (float)ref[i];
        tu_assert_close(out[0].data, rf, cnt, tol);
        free(rf);
    } else {
        for (int64_t i = 0; i < cnt; i++)
            if (ir_tensor_get(&out[0], i) != ref[i])
                fail_msg("%s: element %lld is %g, expected %g", eq, (long long)i,
                         ir_tensor_get(&out[0], i), ref[i]);
    }
    free(ref);
    tu_tensor_free(&out[0]);
}

static void einsum_ok(const char *eq, const ir_tensor *in, int32_t n_in, ir_tensor *out)
{
    kiln_attr a = KILN_ATTR_S("equation", eq);
    tu_run_op_ok("Einsum", &a, 1, in, n_in, out, 1);
}

static void test_einsum_hand(void **state)
{
    ir_tensor out[1];
    /* implicit "ij,jk" is "ik" */
    ir_tensor mm[2] = {tu_tensor_f32(TU_DIMS(2, 3), (float[]){1, 2, 3, 4, 5, 6}),
                       tu_tensor_f32(TU_DIMS(3, 2), (float[]){7, 8, 9, 10, 11, 12})};
    einsum_ok("ij,jk", mm, 2, out);
    assert_shape(&out[0], SHAPE(2, 2));
    tu_assert_close(out[0].data, ((float[]){58, 64, 139, 154}), 4, 1e-7);
    tu_tensor_free(&out[0]);
    /* implicit with letters out of order: "ba" gives "ab", a transpose */
    einsum_ok("ba", mm, 1, out);
    assert_shape(&out[0], SHAPE(3, 2));
    tu_assert_close(out[0].data, ((float[]){1, 4, 2, 5, 3, 6}), 6, 0);
    tu_tensor_free(&out[0]);
    einsum_ok("ij->ji", mm, 1, out);
    tu_assert_close(out[0].data, ((float[]){1, 4, 2, 5, 3, 6}), 6, 0);
    tu_tensor_free(&out[0]);
    /* ONNX's einsum_sum: "ij->i" */
    einsum_ok("ij->i", mm, 1, out);
    assert_shape(&out[0], SHAPE(2));
    tu_assert_close(out[0].data, ((float[]){6, 15}), 2, 0);
    tu_tensor_free(&out[0]);
    einsum_ok("ij->", mm, 1, out);
    assert_int_equal(out[0].shape.rank, 0);
    assert_true(((float *)out[0].data)[0] == 21);
    tu_tensor_free(&out[0]);
    free_all(mm, 2);

    /* ONNX's einsum_inner_prod "i,i" and a scalar operand ",i->i" */
    ir_tensor v[2] = {tu_tensor_f32(TU_DIMS(3), (float[]){1, 2, 3}),
                      tu_tensor_f32(TU_DIMS(3), (float[]){4, -5, 6})};
    einsum_ok("i,i", v, 2, out);
    assert_int_equal(out[0].shape.rank, 0);
    assert_true(((float *)out[0].data)[0] == 4 - 10 + 18);
    tu_tensor_free(&out[0]);
    einsum_ok("i,j->ij", v, 2, out); /* outer product */
    tu_assert_close(out[0].data, ((float[]){4, -5, 6, 8, -10, 12, 12, -15, 18}), 9, 0);
    tu_tensor_free(&out[0]);
    tu_tensor_free(&v[1]);
    v[1] = v[0];
    v[0] = tu_tensor_f32(0, NULL, (float[]){2});
    einsum_ok(",i->i", v, 2, out);
    tu_assert_close(out[0].data, ((float[]){2, 4, 6}), 3, 0);
    tu_tensor_free(&out[0]);
    free_all(v, 2);

    /* diagonal and trace */
    ir_tensor sq = tu_tensor_f32(TU_DIMS(3, 3), (float[]){1, 2, 3, 4, 5, 6, 7, 8, 9});
    einsum_ok("ii->i", &sq, 1, out);
    tu_assert_close(out[0].data, ((float[]){1, 5, 9}), 3, 0);
    tu_tensor_free(&out[0]);
    einsum_ok("ii", &sq, 1, out);
    assert_int_equal(out[0].shape.rank, 0);
    assert_true(((float *)out[0].data)[0] == 15);
    tu_tensor_free(&out[0]);
    tu_tensor_free(&sq);

    /* ONNX's einsum_batch_diagonal "...ii ->...i" (with spaces) */
    float bd[18];
    for (int i = 0; i < 18; i++) bd[i] = (float)i;
    ir_tensor b3 = tu_tensor_f32(TU_DIMS(2, 3, 3), bd);
    einsum_ok("...ii ->...i", &b3, 1, out);
    assert_shape(&out[0], SHAPE(2, 3));
    tu_assert_close(out[0].data, ((float[]){0, 4, 8, 9, 13, 17}), 6, 0);
    tu_tensor_free(&out[0]);
    tu_tensor_free(&b3);

    /* a size-1 dim of a subscript broadcasts against the other operand's size */
    ir_tensor bc[2] = {tu_tensor_f32(TU_DIMS(1, 2), (float[]){1, 2}),
                       tu_tensor_f32(TU_DIMS(3, 2), (float[]){1, 1, 2, 2, 3, 3})};
    einsum_ok("ij,ij->ij", bc, 2, out);
    assert_shape(&out[0], SHAPE(3, 2));
    tu_assert_close(out[0].data, ((float[]){1, 2, 2, 4, 3, 6}), 6, 0);
    tu_tensor_free(&out[0]);
    free_all(bc, 2);

    /* empty: a summed subscript of size 0 gives zeros, an empty output nothing */
    ir_tensor e[2] = {tu_tensor_f32(TU_DIMS(2, 0), NULL), tu_tensor_f32(TU_DIMS(0, 3), NULL)};
    einsum_ok("ij,jk->ik", e, 2, out);
    assert_shape(&out[0], SHAPE(2, 3));
    for (int i = 0; i < 6; i++) assert_true(((float *)out[0].data)[i] == 0);
    tu_tensor_free(&out[0]);
    einsum_ok("ij,jk->ji", e, 2, out);
    assert_shape(&out[0], SHAPE(0, 2));
    tu_tensor_free(&out[0]);
    free_all(e, 2);
}

/* Attention and matmul forms against loops written out for each. */
static void test_einsum_attention(void **state)
{
    tu_rng r = {2024};
    for (int it = 0; it < 20; it++) {
        int64_t B = tu_int(&r, 1, 2), H = tu_int(&r, 1, 3), I = tu_int(&r, 1, 7),
                J = tu_int(&r, 1, 7), D = tu_int(&r, 1, 9);
        ir_tensor q[2] = {rand_f32(&r, SHAPE(B, H, I, D), -1, 1),
                          rand_f32(&r, SHAPE(B, H, J, D), -1, 1)},
                  out[1];
        einsum_ok("bhid,bhjd->bhij", q, 2, out);
        assert_shape(&out[0], SHAPE(B, H, I, J));
        float *ref = alloc_f(B * H * I * J);
        const float *a = q[0].data, *b = q[1].data;
        for (int64_t bb = 0; bb < B * H; bb++)
            for (int64_t i = 0; i < I; i++)
                for (int64_t j = 0; j < J; j++) {
                    double s = 0;
                    for (int64_t d = 0; d < D; d++)
                        s += (double)a[(bb * I + i) * D + d] * b[(bb * J + j) * D + d];
                    ref[(bb * I + i) * J + j] = (float)s;
                }
        tu_assert_close(out[0].data, ref, B * H * I * J, 1e-6);
        free(ref);
        tu_tensor_free(&out[0]);

        /* probabilities (b h i j) times values (b h j d) */
        ir_tensor pv[2] = {rand_f32(&r, SHAPE(B, H, I, J), 0, 1), q[1]};
        einsum_ok("bhij,bhjd->bhid", pv, 2, out);
        assert_shape(&out[0], SHAPE(B, H, I, D));
        ref = alloc_f(B * H * I * D);
        a = pv[0].data;
        for (int64_t bb = 0; bb < B * H; bb++)
            for (int64_t i = 0; i < I; i++)
                for (int64_t d = 0; d < D; d++) {
                    double s = 0;
                    for (int64_t j = 0; j < J; j++)
                        s += (double)a[(bb * I + i) * J + j] * b[(bb * J + j) * D + d];
                    ref[(bb * I + i) * D + d] = (float)s;
                }
        tu_assert_close(out[0].data, ref, B * H * I * D, 1e-6);
        free(ref);
        tu_tensor_free(&out[0]);
        tu_tensor_free(&pv[0]);

        /* "bij,bjk->bik" and "ij,jk" */
        ir_tensor bm[2] = {rand_f32(&r, SHAPE(B, I, D), -1, 1),
                           rand_f32(&r, SHAPE(B, D, J), -1, 1)};
        einsum_ok("bij,bjk->bik", bm, 2, out);
        ref = alloc_f(B * I * J);
        a = bm[0].data;
        const float *c = bm[1].data;
        for (int64_t bb = 0; bb < B; bb++)
            for (int64_t i = 0; i < I; i++)
                for (int64_t k = 0; k < J; k++) {
                    double s = 0;
                    for (int64_t j = 0; j < D; j++)
                        s += (double)a[(bb * I + i) * D + j] * c[(bb * D + j) * J + k];
                    ref[(bb * I + i) * J + k] = (float)s;
                }
        tu_assert_close(out[0].data, ref, B * I * J, 1e-6);
        tu_tensor_free(&out[0]);
        bm[0].shape = *SHAPE(B * I, D); /* same data seen as 2-D when B == 1 */
        if (B == 1) {
            bm[1].shape = *SHAPE(D, J);
            einsum_ok("ij,jk", bm, 2, out);
            tu_assert_close(out[0].data, ref, I * J, 1e-6);
            tu_tensor_free(&out[0]);
        }
        free(ref);
        free_all(bm, 2);
        free_all(q, 2);
    }
}

/* "...ij,...jk->...ik" with broadcast batch dims, against explicit batched loops. */
static void test_einsum_ellipsis(void **state)
{
    tu_rng r = {31};
    for (int it = 0; it < 40; it++) {
        int32_t ea = (int32_t)tu_int(&r, 0, 3), eb = (int32_t)tu_int(&r, 0, 3);
        int32_t e = ea > eb ? ea : eb;
        int64_t batch[3], m = tu_int(&r, 1, 5), k = tu_int(&r, 1, 5), n = tu_int(&r, 1, 5);
        for (int32_t i = 0; i < e; i++) batch[i] = tu_int(&r, 1, 3);
        kiln_dims as = {0, {0}}, bs = {0, {0}}, want = {0, {0}};
        for (int32_t i = e - ea; i < e; i++) as.d[as.rank++] = tu_int(&r, 0, 2) ? batch[i] : 1;
        for (int32_t i = e - eb; i < e; i++) bs.d[bs.rank++] = tu_int(&r, 0, 2) ? batch[i] : 1;
        for (int32_t i = 0; i < e; i++) {
            int32_t ia = i - (e - ea), ib = i - (e - eb);
            int64_t da = ia >= 0 ? as.d[ia] : 1, db = ib >= 0 ? bs.d[ib] : 1;
            want.d[want.rank++] = da > db ? da : db;
        }
        as.d[as.rank++] = m;
        as.d[as.rank++] = k;
        bs.d[bs.rank++] = k;
        bs.d[bs.rank++] = n;
        ir_tensor in[2] = {rand_f32(&r, &as, -1, 1), rand_f32(&r, &bs, -1, 1)}, out[1];
        einsum_ok("...ij,...jk->...ik", in, 2, out);
        kiln_dims full = want;
        full.d[full.rank++] = m;
        full.d[full.rank++] = n;
        assert_shape(&out[0], &full);
        int64_t nb = kiln_dims_count(&want);
        float *ref = alloc_f(nb * m * n);
        const float *a = in[0].data, *b = in[1].data;
        for (int64_t bl = 0; bl < nb; bl++) {
            /* the batch multi-index, then each operand's (broadcast) batch offset */
            int64_t idx[3], rem = bl, oa = 0, ob = 0;
            for (int32_t i = e - 1; i >= 0; i--) {
                idx[i] = rem % want.d[i];
                rem /= want.d[i];
            }
            for (int32_t i = 0; i < ea; i++)
                oa = oa * as.d[i] + (as.d[i] == 1 ? 0 : idx[i + e - ea]);
            for (int32_t i = 0; i < eb; i++)
                ob = ob * bs.d[i] + (bs.d[i] == 1 ? 0 : idx[i + e - eb]);
            for (int64_t i = 0; i < m; i++)
                for (int64_t kk = 0; kk < n; kk++) {
                    double s = 0;
                    for (int64_t j = 0; j < k; j++)
                        s += (double)a[(oa * m + i) * k + j] * b[(ob * k + j) * n + kk];
                    ref[(bl * m + i) * n + kk] = (float)s;
                }
        }
        tu_assert_close(out[0].data, ref, nb * m * n, 1e-6);
        free(ref);
        tu_tensor_free(&out[0]);
        free_all(in, 2);
    }
    /* an ellipsis in the middle, and implicit output with an ellipsis: "...ij" -> "...ij" */
    ir_tensor x = rand_f32(&r, SHAPE(2, 3, 4, 5), -1, 1), out[1];
    einsum_ok("i...j->j...i", &x, 1, out);
    assert_shape(&out[0], SHAPE(5, 3, 4, 2));
    const float *xv = x.data, *yv = out[0].data;
    for (int64_t i = 0; i < 2; i++)
        for (int64_t a = 0; a < 3; a++)
            for (int64_t b = 0; b < 4; b++)
                for (int64_t j = 0; j < 5; j++)
                    assert_true(yv[((j * 3 + a) * 4 + b) * 2 + i] ==
                                xv[((i * 3 + a) * 4 + b) * 5 + j]);
    tu_tensor_free(&out[0]);
    einsum_ok("...ji", &x, 1, out); /* implicit: "...ij", a transpose of the last two */
    assert_shape(&out[0], SHAPE(2, 3, 5, 4));
    tu_tensor_free(&out[0]);
    tu_tensor_free(&x);
}

/* A random equation of 1 to 3 operands over "abcDE" (repeated letters, summed letters,
 * size-1 dims that broadcast, explicit or implicit output) with operands of `dt`;
 * returns the operand count. */
static int32_t random_einsum(tu_rng *r, kiln_dtype dt, char *eq, ir_tensor *in)
{
    const char pool[] = "abcDE";
    int64_t size[5];
    for (int i = 0; i < 5; i++) size[i] = tu_int(r, 1, 4);
    int32_t n_ops = (int32_t)tu_int(r, 1, 3);
    int len = 0;
    bool used[5] = {false};
    for (int32_t k = 0; k < n_ops; k++) {
        if (k) eq[len++] = ',';
        int32_t rank = (int32_t)tu_int(r, 0, 4);
        kiln_dims d = {rank, {0}};
        for (int32_t j = 0; j < rank; j++) {
            int li = (int)tu_int(r, 0, 4);
            used[li] = true;
            eq[len++] = pool[li];
            /* now and then a size-1 dim that broadcasts */
            d.d[j] = tu_int(r, 0, 9) == 0 ? 1 : size[li];
        }
        /* a repeated letter in one operand (a diagonal) needs equal sizes */
        for (int32_t j = 0; j < rank; j++)
            for (int32_t i = 0; i < j; i++)
                if (eq[len - rank + i] == eq[len - rank + j]) d.d[j] = d.d[i];
        if (dt == KILN_DTYPE_I64)
            in[k] = rand_int(r, dt, &d, -9, 9);
        else if (dt == KILN_DTYPE_F32)
            in[k] = rand_f32(r, &d, -1, 1);
        else
            in[k] = rand_half(r, dt, &d, -1, 1);
    }
    if (tu_int(r, 0, 2)) { /* explicit: a random subset of the used letters */
        eq[len++] = '-';
        eq[len++] = '>';
        int start = len;
        for (int i = 0; i < 5; i++)
            if (used[i] && tu_int(r, 0, 1)) eq[len++] = pool[i];
        for (int i = len - 1; i > start; i--) { /* shuffle */
            int j = start + (int)tu_int(r, 0, i - start);
            char t = eq[i];
            eq[i] = eq[j];
            eq[j] = t;
        }
    }
    eq[len] = '\0';
    return n_ops;
}

/* Random equations against the whole-index-space reference. */
static void test_einsum_random(void **state)
{
    tu_rng r = {99};
    for (int it = 0; it < 300; it++) {
        char eq[64];
        ir_tensor in[3];
        int32_t n_ops = random_einsum(&r, it % 3 == 2 ? KILN_DTYPE_I64 : KILN_DTYPE_F32, eq, in);
        check_einsum_brute(eq, in, n_ops, 1e-5);
        free_all(in, n_ops);
    }
}

/* f16 and bf16 against the reference in double: each result is the exact value rounded
 * once, up to f32's rounding of the products and sums before (at most (terms + operands)
 * units of 2^-24 of the sum of magnitudes; the magnitudes and term counts come from the
 * same reference run on |inputs| and on ones). */
static void check_einsum_half(const char *eq, const ir_tensor *in, int32_t n_in)
{
    ir_tensor out[1], mag_in[4], one_in[4];
    einsum_ok(eq, in, n_in, out);
    assert_int_equal(out[0].dtype, in[0].dtype);
    for (int32_t k = 0; k < n_in; k++) {
        mag_in[k] = tu_tensor_f32(in[k].shape.rank, in[k].shape.d, NULL);
        one_in[k] = tu_tensor_f32(in[k].shape.rank, in[k].shape.d, NULL);
        for (int64_t i = 0; i < ir_tensor_count(&in[k]); i++) {
            ((float *)mag_in[k].data)[i] = (float)fabs(ir_tensor_get(&in[k], i));
            ((float *)one_in[k].data)[i] = 1.0f;
        }
    }
    int64_t cnt = ir_tensor_count(&out[0]);
    double *ref = calloc(3 * (size_t)cnt + 3, sizeof(double)), *mag = ref + cnt + 1,
           *terms = mag + cnt + 1;
    einsum_brute(eq, in, ref, cnt);
    einsum_brute(eq, mag_in, mag, cnt);
    einsum_brute(eq, one_in, terms, cnt);
    for (int64_t i = 0; i < cnt; i++) {
        double got = ir_tensor_get(&out[0], i), slack = (terms[i] + n_in) * 0x1p-24 * mag[i];
        if (!rounded_once(got, ref[i], in[0].dtype, slack))
            fail_msg("%s (%s): element %lld is %.9g, expected %.9g rounded once", eq,
                     kiln_dtype_name(in[0].dtype), (long long)i, got, ref[i]);
    }
    free(ref);
    free_all(mag_in, n_in);
    free_all(one_in, n_in);
    tu_tensor_free(&out[0]);
}

static void test_einsum_half(void **state)
{
    const kiln_dtype F16 = KILN_DTYPE_F16, BF16 = KILN_DTYPE_BF16;
    ir_tensor x = tu_tensor(BF16, TU_DIMS(2, 3), NULL), out[1];
    for (int i = 0; i < 6; i++) ir_tensor_set(&x, i, i + 1);
    /* ONNX's einsum_sum and einsum_transpose on exact values */
    einsum_ok("ij->i", &x, 1, out);
    assert_int_equal(out[0].dtype, BF16);
    assert_true(ir_tensor_get(&out[0], 0) == 6 && ir_tensor_get(&out[0], 1) == 15);
    tu_tensor_free(&out[0]);
    einsum_ok("ij->ji", &x, 1, out);
    assert_shape(&out[0], SHAPE(3, 2));
    assert_memory_equal(out[0].data, ((uint16_t[]){0x3f80, 0x4080, 0x4000, 0x40a0, 0x4040, 0x40c0}),
                        12);
    tu_tensor_free(&out[0]);
    tu_tensor_free(&x);
    /* the sum runs in f32: 2048 + 1 + 1 is 2050 in f16 (2048 if each step rounded to
     * f16), 256 + 1 + 1 is 258 in bf16 */
    const kiln_dtype halves[] = {F16, BF16};
    const double big[] = {2048, 256};
    for (int h = 0; h < 2; h++) {
        x = tu_tensor(halves[h], TU_DIMS(3), NULL);
        ir_tensor_set(&x, 0, big[h]);
        ir_tensor_set(&x, 1, 1);
        ir_tensor_set(&x, 2, 1);
        einsum_ok("i->", &x, 1, out);
        assert_int_equal(out[0].shape.rank, 0);
        assert_true(ir_tensor_get(&out[0], 0) == big[h] + 2);
        tu_tensor_free(&out[0]);
        tu_tensor_free(&x);
    }

    tu_rng r = {77};
    for (int it = 0; it < 300; it++) {
        char eq[64];
        ir_tensor in[3];
        int32_t n_ops = random_einsum(&r, halves[it % 2], eq, in);
        check_einsum_half(eq, in, n_ops);
        free_all(in, n_ops);
    }
    /* ONNX's einsum_batch_matmul in bf16, and attention in f16 */
    for (int h = 0; h < 2; h++) {
        ir_tensor bm[2] = {rand_half(&r, halves[h], SHAPE(5, 2, 3), -1, 1),
                           rand_half(&r, halves[h], SHAPE(5, 3, 4), -1, 1)};
        check_einsum_half("bij, bjk -> bik", bm, 2);
        free_all(bm, 2);
        ir_tensor at[2] = {rand_half(&r, halves[h], SHAPE(2, 3, 5, 16), -2, 2),
                           rand_half(&r, halves[h], SHAPE(2, 3, 7, 16), -2, 2)};
        check_einsum_half("bhid,bhjd->bhij", at, 2);
        free_all(at, 2);
    }
    /* a sum over nothing is +0 */
    ir_tensor e[2] = {tu_tensor(F16, TU_DIMS(2, 0), NULL), tu_tensor(F16, TU_DIMS(0, 3), NULL)};
    einsum_ok("ij,jk->ik", e, 2, out);
    assert_shape(&out[0], SHAPE(2, 3));
    assert_memory_equal(out[0].data, ((uint16_t[]){0, 0, 0, 0, 0, 0}), 12);
    tu_tensor_free(&out[0]);
    free_all(e, 2);
    /* f16 and bf16 do not mix */
    ir_tensor mix[2] = {tu_tensor(F16, TU_DIMS(2), NULL), tu_tensor(BF16, TU_DIMS(2), NULL)};
    kiln_attr ii = KILN_ATTR_S("equation", "i,i");
    expect_error("Einsum", &ii, 1, mix, 2, KILN_ERR_INVALID_GRAPH,
                 "input 1 has dtype bf16, expected f16");
    free_all(mix, 2);
}

/* i32 and i64: exact, and wrapping like the machine types. */
static void test_einsum_int(void **state)
{
    tu_rng r = {5};
    ir_tensor in[2] = {rand_int(&r, KILN_DTYPE_I32, SHAPE(3, 4), -100, 100),
                       rand_int(&r, KILN_DTYPE_I32, SHAPE(4, 5), -100, 100)};
    check_einsum_brute("ij,jk->ik", in, 2, 0);
    check_einsum_brute("ij,jk,ij->j", (ir_tensor[]){in[0], in[1], in[0]}, 3, 0);
    free_all(in, 2);
    /* 2^31 * 2 wraps to 0 in i32, 2^62 * 4 to 0 in i64 */
    int32_t a32[2] = {INT32_MIN, 3}, b32[2] = {2, 5};
    in[0] = tu_tensor(KILN_DTYPE_I32, TU_DIMS(2), a32);
    in[1] = tu_tensor(KILN_DTYPE_I32, TU_DIMS(2), b32);
    ir_tensor out[1];
    einsum_ok("i,i", in, 2, out);
    assert_int_equal(((int32_t *)out[0].data)[0], 15);
    tu_tensor_free(&out[0]);
    free_all(in, 2);
    int64_t a64[2] = {(int64_t)1 << 62, -7}, b64[2] = {4, 3};
    in[0] = tu_tensor_i64(TU_DIMS(2), a64);
    in[1] = tu_tensor_i64(TU_DIMS(2), b64);
    einsum_ok("i,i->", in, 2, out);
    assert_int_equal(out[0].dtype, KILN_DTYPE_I64);
    assert_true(((int64_t *)out[0].data)[0] == -21);
    tu_tensor_free(&out[0]);
    free_all(in, 2);
}

/* Many operands: ten sharing two subscripts, and ten with 30 subscripts of their own
 * (more strides than the kernel keeps on the stack); 4-operand chains. */
static void test_einsum_many_operands(void **state)
{
    tu_rng r = {8};
    ir_tensor in[10];
    char eq[128] = "";
    for (int k = 0; k < 10; k++) {
        in[k] = rand_f32(&r, SHAPE(2, 3), 0.5f, 1.5f);
        strcat(eq, k ? ",ij" : "ij");
    }
    strcat(eq, "->j");
    /* the brute reference takes at most 4 operands: check the products by hand */
    ir_tensor out[1];
    einsum_ok(eq, in, 10, out);
    for (int j = 0; j < 3; j++) {
        double s = 0;
        for (int i = 0; i < 2; i++) {
            double p = 1;
            for (int k = 0; k < 10; k++) p *= ((float *)in[k].data)[i * 3 + j];
            s += p;
        }
        assert_true(fabs(((float *)out[0].data)[j] - s) < 1e-5 * fabs(s));
    }
    tu_tensor_free(&out[0]);
    /* disjoint subscripts summed away: the product of each operand's sum */
    const char *letters = "abcdefghijklmnopqrstuvwxyzABCD";
    int len = 0;
    double want = 1;
    for (int k = 0; k < 10; k++) {
        if (k) eq[len++] = ',';
        for (int d = 0; d < 3; d++) eq[len++] = letters[3 * k + d];
        in[k].shape = *SHAPE(2, 3, 1);
        double s = 0;
        for (int i = 0; i < 6; i++) s += ((float *)in[k].data)[i];
        want *= s;
    }
    eq[len++] = '-';
    eq[len++] = '>';
    eq[len] = '\0';
    einsum_ok(eq, in, 10, out);
    assert_int_equal(out[0].shape.rank, 0);
    assert_true(fabs(((float *)out[0].data)[0] - want) < 1e-5 * want);
    tu_tensor_free(&out[0]);
    free_all(in, 10);
    ir_tensor c4[4] = {rand_f32(&r, SHAPE(2, 3), -1, 1), rand_f32(&r, SHAPE(3, 4), -1, 1),
                       rand_f32(&r, SHAPE(4, 2), -1, 1), rand_f32(&r, SHAPE(2), -1, 1)};
    check_einsum_brute("ab,bc,cd,d->a", c4, 4, 1e-6);
    /* two summed subscripts, the contiguous one not last in the loop order, and
     * attention written head-inner as some exporters do */
    ir_tensor kv[2] = {rand_f32(&r, SHAPE(3, 4, 5), -1, 1), rand_f32(&r, SHAPE(3, 2, 5), -1, 1)};
    check_einsum_brute("kab,kcb->ac", kv, 2, 1e-6);
    free_all(kv, 2);
    ir_tensor at[2] = {rand_f32(&r, SHAPE(2, 3, 2, 4), -1, 1),
                       rand_f32(&r, SHAPE(2, 5, 2, 4), -1, 1)};
    check_einsum_brute("bqhd,bkhd->bhqk", at, 2, 1e-6);
    ir_tensor pr = rand_f32(&r, SHAPE(2, 2, 3, 5), 0, 1);
    check_einsum_brute("bhqk,bkhd->bqhd", (ir_tensor[]){pr, at[1]}, 2, 1e-6);
    tu_tensor_free(&pr);
    free_all(at, 2);
    check_einsum_brute("ab,bc,ca,a", c4, 4, 1e-6);
    free_all(c4, 4);
}

static void einsum_err(const char *eq, const ir_tensor *in, int32_t n_in, kiln_status want,
                       const char *msg)
{
    kiln_attr a = KILN_ATTR_S("equation", eq);
    expect_error("Einsum", &a, 1, in, n_in, want, msg);
}

static void test_einsum_errors(void **state)
{
    ir_tensor in[2] = {tu_tensor_f32(TU_DIMS(2, 3), NULL), tu_tensor_f32(TU_DIMS(4, 5), NULL)};
    einsum_err("ij", in, 2, KILN_ERR_INVALID_GRAPH, "1 input terms, the node has 2");
    einsum_err("ij,jk,kl", in, 2, KILN_ERR_INVALID_GRAPH, "3 input terms");
    einsum_err("ijk,jk", in, 2, KILN_ERR_SHAPE, "input 0 has rank 2");
    einsum_err("i,jk", in, 2, KILN_ERR_SHAPE, "term 0 'i' has 1 subscripts");
    einsum_err("ij,jk", in, 2, KILN_ERR_SHAPE, "subscript 'j' has size 3 in input 0 and 4");
    einsum_err("i1,jk", in, 2, KILN_ERR_INVALID_GRAPH, "character '1'");
    einsum_err("i.j,kl", in, 2, KILN_ERR_INVALID_GRAPH, "'.' outside '...'");
    einsum_err("...i...,kl", in, 2, KILN_ERR_INVALID_GRAPH, "two '...'");
    einsum_err("ij,kl->iz", in, 2, KILN_ERR_INVALID_GRAPH, "output subscript 'z' appears in no");
    einsum_err("ij,kl->ii", in, 2, KILN_ERR_INVALID_GRAPH, "repeats subscript 'i'");
    einsum_err("ij,kl->ik->j", in, 2, KILN_ERR_INVALID_GRAPH, "two '->'");
    einsum_err("ij,kl-", in, 2, KILN_ERR_INVALID_GRAPH, "character '-'");
    einsum_err("ij,kl>i", in, 2, KILN_ERR_INVALID_GRAPH, "character '>'");
    einsum_err("...j,kl->jkl", in, 2, KILN_ERR_INVALID_GRAPH, "needs '...' too");
    einsum_err("ii", in, 1, KILN_ERR_SHAPE, "a diagonal needs equal sizes");
    einsum_err("ij,kl\t", in, 2, KILN_ERR_INVALID_GRAPH, "byte 0x09");
    /* dtypes */
    tu_tensor_free(&in[1]);
    in[1] = tu_tensor(KILN_DTYPE_I32, TU_DIMS(4, 5), NULL);
    einsum_err("ij,kl", in, 2, KILN_ERR_INVALID_GRAPH, "input 1 has dtype i32, expected f32");
    tu_tensor_free(&in[1]);
    in[1] = tu_tensor(KILN_DTYPE_U8, TU_DIMS(4, 5), NULL);
    einsum_err("ij,kl", in, 2, KILN_ERR_UNSUPPORTED,
               "input 1 has dtype u8, expected f32, f16, bf16, i32 or i64");
    /* the equation is required */
    ir_tensor out[1];
    kiln_status st = tu_run_op("Einsum", NULL, 0, in, 1, out, 1);
    tu_check_op_error("Einsum", st, KILN_ERR_INVALID_GRAPH, "'equation' is missing");
    free_all(in, 2);
    /* an output of rank 9, implicit or explicit */
    ir_tensor ones[2] = {tu_tensor_f32(TU_DIMS(1, 1, 1, 1, 1), NULL),
                         tu_tensor_f32(TU_DIMS(1, 1, 1, 1, 1), NULL)};
    einsum_err("abcde,fghij", ones, 2, KILN_ERR_SHAPE, "implicit output has rank 10");
    einsum_err("abcde,fghij->abcdefghi", ones, 2, KILN_ERR_SHAPE, "more than 8 subscripts");
    free_all(ones, 2);
    /* sizes that overflow, seen through network inputs (no data is needed) */
    ir_tensor big[2] = {tu_tensor_f32(TU_DIMS(0), NULL), tu_tensor_f32(TU_DIMS(0), NULL)};
    big[0].shape = *SHAPE((int64_t)1 << 30);
    big[1].shape = *SHAPE((int64_t)1 << 30);
    kiln_attr a = KILN_ATTR_S("equation", "i,j->ij");
    st = run_mixed("Einsum", &a, 1, big, 2, 3u, true, out);
    tu_check_op_error("Einsum", st, KILN_ERR_SHAPE, "too many elements");
    ir_tensor huge[4];
    for (int i = 0; i < 4; i++) {
        huge[i] = tu_tensor_f32(TU_DIMS(0), NULL);
        huge[i].shape = *SHAPE((int64_t)1 << 20, (int64_t)1 << 20);
    }
    a = KILN_ATTR_S("equation", "ab,cd,ef,gh->");
    st = run_mixed("Einsum", &a, 1, huge, 4, 15u, true, out);
    tu_check_op_error("Einsum", st, KILN_ERR_SHAPE, "more than 2^63");
    free_all(big, 2);
    free_all(huge, 4);
}

/* The kernels that need heap memory (Einsum's large stride tables, Det's large
 * matrices) report running out of it. */
static void test_alloc_failure(void **state)
{
    tu_rng r = {17};
    ir_tensor in[8], out[1];
    /* 8 operands x 40 subscripts: more strides than the kernel keeps on the stack */
    const char *letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN";
    char eq[64];
    int len = 0;
    double want = 1;
    for (int k = 0; k < 8; k++) {
        in[k] = rand_f32(&r, SHAPE(2, 1, 1, 1, 2), 0.5f, 1.5f);
        if (k) eq[len++] = ',';
        for (int d = 0; d < 5; d++) eq[len++] = letters[5 * k + d];
        const float *v = in[k].data;
        want *= (double)v[0] + v[1] + v[2] + v[3];
    }
    strcpy(eq + len, "->");
    kiln_attr a = KILN_ATTR_S("equation", eq);
    g_fail_eval_alloc = true;
    kiln_status st = run_mixed("Einsum", &a, 1, in, 8, 0, false, out);
    g_fail_eval_alloc = false;
    tu_tensor_free(&out[0]);
    tu_check_op_error("Einsum", st, KILN_ERR_OUT_OF_MEMORY, "no memory for 320 strides");
    st = run_mixed("Einsum", &a, 1, in, 8, 0, false, out);
    assert_int_equal(st, KILN_OK);
    assert_true(fabs(((float *)out[0].data)[0] - want) < 1e-5 * want);
    tu_tensor_free(&out[0]);
    free_all(in, 8);

    ir_tensor x = rand_f32(&r, SHAPE(2, 17, 17), -1, 1);
    g_fail_eval_alloc = true;
    st = run_mixed("Det", NULL, 0, &x, 1, 0, false, out);
    g_fail_eval_alloc = false;
    tu_tensor_free(&out[0]);
    tu_check_op_error("Det", st, KILN_ERR_OUT_OF_MEMORY, "a 17 x 17 matrix");
    tu_tensor_free(&x);
}

/* ---- unary math ---- */

typedef struct unary_case {
    const char *op;
    double (*ref)(double);
    float lo, hi;
} unary_case;

static void test_unary_math(void **state)
{
    static const unary_case cases[] = {
        {"Acos", acos, -1, 1},   {"Asin", asin, -1, 1},     {"Atan", atan, -20, 20},
        {"Acosh", acosh, 1, 50}, {"Asinh", asinh, -50, 50}, {"Atanh", atanh, -0.99f, 0.99f},
        {"Sinh", sinh, -10, 10}, {"Cosh", cosh, -10, 10},   {"Tan", tan, -1.5f, 1.5f},
    };
    tu_rng r = {3};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        ir_tensor x = rand_f32(&r, SHAPE(7, 33), cases[c].lo, cases[c].hi), out[1];
        tu_run_op_ok(cases[c].op, NULL, 0, &x, 1, out, 1);
        assert_shape(&out[0], SHAPE(7, 33));
        float ref[7 * 33];
        for (int i = 0; i < 7 * 33; i++) ref[i] = (float)cases[c].ref(((float *)x.data)[i]);
        tu_assert_close(out[0].data, ref, 7 * 33, 1e-6);
        tu_tensor_free(&out[0]);
        tu_tensor_free(&x);
    }
    /* outside the domain: NaN */
    ir_tensor x = tu_tensor_f32(TU_DIMS(2), (float[]){2, -2}), out[1];
    tu_run_op_ok("Acos", NULL, 0, &x, 1, out, 1);
    assert_true(isnan(((float *)out[0].data)[0]) && isnan(((float *)out[0].data)[1]));
    tu_tensor_free(&out[0]);
    tu_run_op_ok("Atanh", NULL, 0, &x, 1, out, 1);
    assert_true(isnan(((float *)out[0].data)[0]));
    tu_tensor_free(&out[0]);
    tu_tensor_free(&x);
    /* ONNX's examples */
    x = tu_tensor_f32(TU_DIMS(3), (float[]){-1, 0, 1});
    tu_run_op_ok("Asin", NULL, 0, &x, 1, out, 1);
    tu_assert_close(out[0].data, ((float[]){-1.5707963f, 0, 1.5707963f}), 3, 1e-7);
    tu_tensor_free(&out[0]);
    tu_run_op_ok("Cosh", NULL, 0, &x, 1, out, 1);
    tu_assert_close(out[0].data, ((float[]){1.5430806f, 1, 1.5430806f}), 3, 1e-7);
    tu_tensor_free(&out[0]);
    tu_tensor_free(&x);
    ir_tensor bad = tu_tensor(KILN_DTYPE_I32, TU_DIMS(2), NULL);
    expect_error("Tan", NULL, 0, &bad, 1, KILN_ERR_UNSUPPORTED, "dtype i32, expected f32");
    tu_tensor_free(&bad);
}

static void test_celu(void **state)
{
    tu_rng r = {4};
    const float alphas[] = {1.0f, 2.0f, 0.5f, -1.5f};
    for (int ai = 0; ai < 4; ai++) {
        ir_tensor x = rand_f32(&r, SHAPE(3, 40), -6, 6), out[1];
        kiln_attr a = KILN_ATTR_F("alpha", alphas[ai]);
        tu_run_op_ok("Celu", &a, ai == 0 ? 0 : 1, &x, 1, out, 1); /* alpha 1 is the default */
        float ref[120];
        for (int i = 0; i < 120; i++) {
            double v = ((float *)x.data)[i], al = alphas[ai];
            ref[i] = (float)(fmax(0.0, v) + fmin(0.0, al * (exp(v / al) - 1.0)));
        }
        tu_assert_close(out[0].data, ref, 120, 1e-6);
        tu_tensor_free(&out[0]);
        tu_tensor_free(&x);
    }
    ir_tensor x = tu_tensor_f32(TU_DIMS(1), (float[]){1});
    kiln_attr a = KILN_ATTR_F("alpha", 0.0f);
    expect_error("Celu", &a, 1, &x, 1, KILN_ERR_INVALID_GRAPH, "alpha is 0");
    tu_tensor_free(&x);
    x = tu_tensor(KILN_DTYPE_I32, TU_DIMS(1), NULL);
    expect_error("Celu", NULL, 0, &x, 1, KILN_ERR_UNSUPPORTED,
                 "dtype i32, expected f32, f16 or bf16");
    tu_tensor_free(&x);
}

/* f16 and bf16: computed in f32, rounded once to the type. */
static void test_celu_half(void **state)
{
    const kiln_dtype halves[] = {KILN_DTYPE_F16, KILN_DTYPE_BF16};
    /* expm1(-1), expm1(-0.5), expm1(-6) rounded once (numpy's float64 -> float16 and
     * ml_dtypes' -> bfloat16) */
    const double want[2][5] = {{-0.63232421875, -0.3935546875, 3, -0.99755859375, 0},
                               {-0.6328125, -0.392578125, 3, -0.99609375, 0}};
    const double xs[5] = {-1, -0.5, 3, -6, 0};
    for (int h = 0; h < 2; h++) {
        ir_tensor x = tu_tensor(halves[h], TU_DIMS(5), NULL), out[1];
        for (int i = 0; i < 5; i++) ir_tensor_set(&x, i, xs[i]);
        tu_run_op_ok("Celu", NULL, 0, &x, 1, out, 1);
        assert_int_equal(out[0].dtype, halves[h]);
        for (int i = 0; i < 5; i++)
            if (ir_tensor_get(&out[0], i) != want[h][i])
                fail_msg("%s: Celu(%g) is %.9g, expected %.9g", kiln_dtype_name(halves[h]), xs[i],
                         ir_tensor_get(&out[0], i), want[h][i]);
        tu_tensor_free(&out[0]);
        tu_tensor_free(&x);
    }
    tu_rng r = {40};
    const float alphas[] = {1.0f, 2.0f, 0.5f, -1.5f, 1e-3f};
    for (int it = 0; it < 10; it++) {
        kiln_dtype dt = halves[it % 2];
        float al = alphas[it / 2];
        ir_tensor x = rand_half(&r, dt, SHAPE(4, 250), -8, 8), out[1];
        kiln_attr a = KILN_ATTR_F("alpha", al);
        tu_run_op_ok("Celu", &a, 1, &x, 1, out, 1);
        for (int64_t i = 0; i < 1000; i++) {
            double v = ir_tensor_get(&x, i), got = ir_tensor_get(&out[0], i);
            double ref = v >= 0 ? v : (double)al * expm1(v / (double)al);
            /* x >= 0 passes through exactly; f32's expm1 and scaling err a few ulps */
            bool ok = v >= 0 ? got == v : rounded_once(got, ref, dt, 0x1p-21 * fabs(ref));
            if (!ok)
                fail_msg("%s alpha %g: Celu(%.9g) is %.9g, expected %.9g rounded once",
                         kiln_dtype_name(dt), (double)al, v, got, ref);
        }
        tu_tensor_free(&out[0]);
        tu_tensor_free(&x);
    }
}

static void test_shrink(void **state)
{
    /* ONNX's hard_shrink and soft_shrink examples */
    float xv[] = {-2, -1, 0, 1, 2};
    ir_tensor x = tu_tensor_f32(TU_DIMS(5), xv), out[1];
    kiln_attr hard[] = {KILN_ATTR_F("lambd", 1.5f)};
    tu_run_op_ok("Shrink", hard, 1, &x, 1, out, 1);
    tu_assert_close(out[0].data, ((float[]){-2, 0, 0, 0, 2}), 5, 0);
    tu_tensor_free(&out[0]);
    kiln_attr soft[] = {KILN_ATTR_F("lambd", 1.5f), KILN_ATTR_F("bias", 1.5f)};
    tu_run_op_ok("Shrink", soft, 2, &x, 1, out, 1);
    tu_assert_close(out[0].data, ((float[]){-0.5f, 0, 0, 0, 0.5f}), 5, 0);
    tu_tensor_free(&out[0]);
    tu_run_op_ok("Shrink", NULL, 0, &x, 1, out, 1); /* lambd 0.5, bias 0 */
    tu_assert_close(out[0].data, xv, 5, 0);
    tu_tensor_free(&out[0]);
    tu_tensor_free(&x);
    /* integer types */
    tu_rng r = {6};
    const kiln_dtype types[] = {KILN_DTYPE_I64, KILN_DTYPE_I32, KILN_DTYPE_I8, KILN_DTYPE_U8};
    for (int t = 0; t < 4; t++) {
        bool u8 = types[t] == KILN_DTYPE_U8;
        ir_tensor xi = rand_int(&r, types[t], SHAPE(50), u8 ? 0 : -20, 20);
        kiln_attr at[] = {KILN_ATTR_F("lambd", 3.0f), KILN_ATTR_F("bias", 2.0f)};
        tu_run_op_ok("Shrink", at, 2, &xi, 1, out, 1);
        assert_int_equal(out[0].dtype, types[t]);
        for (int64_t i = 0; i < 50; i++) {
            double v = ir_tensor_get(&xi, i), want = v < -3 ? v + 2 : (v > 3 ? v - 2 : 0);
            assert_true(ir_tensor_get(&out[0], i) == want);
        }
        tu_tensor_free(&out[0]);
        tu_tensor_free(&xi);
    }
    ir_tensor bad = tu_tensor(KILN_DTYPE_BOOL, TU_DIMS(2), NULL);
    expect_error("Shrink", NULL, 0, &bad, 1, KILN_ERR_UNSUPPORTED, "dtype bool");
    tu_tensor_free(&bad);
}

/* ---- BitShift ---- */

/* Element i of an integer tensor of kiln's shift types, read or written exactly. */
static int64_t raw_get(const ir_tensor *t, int64_t i)
{
    switch (t->dtype) {
    case KILN_DTYPE_U8: return ((const uint8_t *)t->data)[i];
    case KILN_DTYPE_I8: return ((const int8_t *)t->data)[i];
    case KILN_DTYPE_I32: return ((const int32_t *)t->data)[i];
    default: return ((const int64_t *)t->data)[i];
    }
}

static void raw_set(ir_tensor *t, int64_t i, int64_t v)
{
    switch (t->dtype) {
    case KILN_DTYPE_U8: ((uint8_t *)t->data)[i] = (uint8_t)v; break;
    case KILN_DTYPE_I8: ((int8_t *)t->data)[i] = (int8_t)v; break;
    case KILN_DTYPE_I32: ((int32_t *)t->data)[i] = (int32_t)v; break;
    default: ((int64_t *)t->data)[i] = v; break;
    }
}

/* One hand case: x and y as int64 values of `dt`, the expected z likewise. */
static void bitshift_case(kiln_dtype dt, const char *dir, const int64_t *x, const int64_t *y,
                          const int64_t *z, int64_t n)
{
    ir_tensor in[2] = {tu_tensor(dt, TU_DIMS(n), NULL), tu_tensor(dt, TU_DIMS(n), NULL)}, out[1];
    for (int64_t i = 0; i < n; i++) {
        raw_set(&in[0], i, x[i]);
        raw_set(&in[1], i, y[i]);
    }
    kiln_attr a = KILN_ATTR_S("direction", dir);
    tu_run_op_ok("BitShift", &a, 1, in, 2, out, 1);
    assert_int_equal(out[0].dtype, dt);
    for (int64_t i = 0; i < n; i++)
        if (raw_get(&out[0], i) != z[i])
            fail_msg("%s %s: %lld by %lld gave %lld, expected %lld", kiln_dtype_name(dt), dir,
                     (long long)x[i], (long long)y[i], (long long)raw_get(&out[0], i),
                     (long long)z[i]);
    tu_tensor_free(&out[0]);
    free_all(in, 2);
}

#define BS_CASE(dt, dir, x, y, z)                                                                  \
    bitshift_case(dt, dir, (int64_t[])x, (int64_t[])y, (int64_t[])z,                               \
                  (int64_t)(sizeof((int64_t[])x) / sizeof(int64_t)))
#define V(...)                                                                                     \
    {                                                                                              \
        __VA_ARGS__                                                                                \
    }

/* Bit by bit: bit b of the result is bit b - s (left) or b + s (right) of x; a position
 * past the top reads the fill (the sign bit of a signed type, else 0), one below bit 0
 * reads 0, and a shift outside [0, width) reads the fill everywhere (right) or zeros
 * (left). `xv` holds the width's bits. */
static uint64_t ref_shift(uint64_t xv, int64_t sh, int bits, bool is_signed, bool left)
{
    const uint64_t fill = is_signed ? (xv >> (bits - 1)) & 1 : 0;
    const bool out_of_range = sh < 0 || sh >= bits;
    uint64_t want = 0;
    for (int b = 0; b < bits; b++) {
        uint64_t bit;
        if (out_of_range) {
            bit = left ? 0 : fill;
        } else {
            int64_t from = left ? b - sh : b + sh;
            bit = from < 0 ? 0 : (from >= bits ? fill : (xv >> from) & 1);
        }
        want |= bit << b;
    }
    return want;
}

static void test_bitshift(void **state)
{
    const kiln_dtype U8 = KILN_DTYPE_U8, I8 = KILN_DTYPE_I8, I32 = KILN_DTYPE_I32,
                     I64 = KILN_DTYPE_I64;
    /* ONNX's examples (unsigned and signed) */
    BS_CASE(U8, "RIGHT", V(16, 4, 1), V(1, 2, 3), V(8, 1, 0));
    BS_CASE(U8, "LEFT", V(16, 4, 1), V(1, 2, 3), V(32, 16, 8));
    BS_CASE(I8, "RIGHT", V(16, 4, 1), V(1, 2, 3), V(8, 1, 0));
    BS_CASE(I8, "LEFT", V(16, 4, 1), V(1, 2, 3), V(32, 16, 8));
    BS_CASE(I64, "LEFT", V(16, 4, 1), V(1, 2, 3), V(32, 16, 8));
    /* signed right shifts are arithmetic */
    BS_CASE(I8, "RIGHT", V(-8, -1, -128), V(1, 1, 1), V(-4, -1, -64));
    BS_CASE(I32, "RIGHT", V(-8, -1, INT32_MIN), V(1, 1, 1), V(-4, -1, -1073741824));
    /* left shifts wrap within the width */
    BS_CASE(I8, "LEFT", V(64, 1, -64), V(1, 7, 1), V(-128, -128, -128));
    BS_CASE(I32, "LEFT", V(1073741824, 1, -1073741824), V(1, 31, 1),
            V(INT32_MIN, INT32_MIN, INT32_MIN));
    /* shifts of the width or more, and negative ones: the sign fill alone */
    BS_CASE(I8, "RIGHT", V(-8, 4, -1), V(8, 9, 127), V(-1, 0, -1));
    BS_CASE(I8, "LEFT", V(-8, 4, -1), V(8, 9, 127), V(0, 0, 0));
    BS_CASE(I32, "RIGHT", V(-8, 4, -1), V(32, 33, 100), V(-1, 0, -1));
    BS_CASE(I32, "LEFT", V(-8, 4, -1), V(32, 33, 100), V(0, 0, 0));
    BS_CASE(I8, "RIGHT", V(-8, 4, -1), V(-1, -8, -16), V(-1, 0, -1));
    BS_CASE(I8, "LEFT", V(-8, 4, -1), V(-1, -8, -16), V(0, 0, 0));
    BS_CASE(I32, "RIGHT", V(-8, 4, -1), V(-1, -32, -64), V(-1, 0, -1));
    BS_CASE(I32, "LEFT", V(-8, 4, -1), V(-1, -32, -64), V(0, 0, 0));
    BS_CASE(I64, "RIGHT", V(INT64_MIN, INT64_MIN, -5, 5, -1, 7),
            V(63, 64, 2, 2, INT64_MIN, INT64_MAX), V(-1, -1, -2, 1, -1, 0));
    BS_CASE(I64, "LEFT", V(INT64_MIN, 1, -5, 5, -1), V(1, 63, 2, 64, -1),
            V(0, INT64_MIN, -20, 0, 0));
    /* u8 reads 255 as a shift of 255, not -1 */
    BS_CASE(U8, "RIGHT", V(255, 128, 200), V(8, 7, 255), V(0, 1, 0));
    BS_CASE(U8, "LEFT", V(255, 255, 3), V(8, 7, 255), V(0, 128, 0));

    /* random, broadcasting, every dtype, shifts past the width and negative */
    ir_tensor in[2], out[1];
    kiln_attr right = KILN_ATTR_S("direction", "RIGHT"), left = KILN_ATTR_S("direction", "LEFT");
    tu_rng r = {7};
    const kiln_dtype types[] = {U8, I8, I32, I64};
    const int bits[] = {8, 8, 32, 64};
    for (int it = 0; it < 80; it++) {
        int t = it % 4;
        bool is_signed = types[t] != U8;
        kiln_dims xs = {2, {tu_int(&r, 1, 4), tu_int(&r, 1, 5)}}, ys = {1, {xs.d[1]}};
        if (it % 5 == 1) ys.d[0] = 1;
        if (it % 5 == 2) { /* Y bigger than X */
            ys = (kiln_dims){3, {2, xs.d[0], xs.d[1]}};
        }
        in[0] = tu_tensor(types[t], xs.rank, xs.d, NULL);
        in[1] = tu_tensor(types[t], ys.rank, ys.d, NULL);
        for (int64_t i = 0; i < ir_tensor_count(&in[0]); i++)
            raw_set(&in[0], i, (int64_t)tu_next(&r)); /* truncated to the width */
        for (int64_t i = 0; i < ir_tensor_count(&in[1]); i++) {
            int64_t sh = tu_int(&r, is_signed ? -3 : 0, bits[t] + 3);
            if (tu_int(&r, 0, 15) == 0) /* the extremes of the type */
                sh = !is_signed ? 255 : (tu_int(&r, 0, 1) ? INT64_MIN : INT64_MAX);
            if (types[t] == I8 && (sh < INT8_MIN || sh > INT8_MAX))
                sh = sh < 0 ? INT8_MIN : INT8_MAX;
            if (types[t] == I32 && (sh < INT32_MIN || sh > INT32_MAX))
                sh = sh < 0 ? INT32_MIN : INT32_MAX;
            raw_set(&in[1], i, sh);
        }
        bool l = it % 2 == 0;
        tu_run_op_ok("BitShift", l ? &left : &right, 1, in, 2, out, 1);
        kiln_dims os;
        assert_true(ir_broadcast(&xs, &ys, &os));
        assert_shape(&out[0], &os);
        int64_t cnt = kiln_dims_count(&os);
        const uint64_t mask = bits[t] == 64 ? ~0ull : ((1ull << bits[t]) - 1);
        for (int64_t o = 0; o < cnt; o++) {
            /* the output's multi-index, folded into each input */
            int64_t idx[3], rem = o;
            for (int32_t d = os.rank - 1; d >= 0; d--) {
                idx[d] = rem % os.d[d];
                rem /= os.d[d];
            }
            int64_t ix = 0, iy = 0;
            for (int32_t d = 0; d < xs.rank; d++)
                ix = ix * xs.d[d] + (xs.d[d] == 1 ? 0 : idx[d + os.rank - xs.rank]);
            for (int32_t d = 0; d < ys.rank; d++)
                iy = iy * ys.d[d] + (ys.d[d] == 1 ? 0 : idx[d + os.rank - ys.rank]);
            uint64_t xv = (uint64_t)raw_get(&in[0], ix) & mask;
            uint64_t got = (uint64_t)raw_get(&out[0], o) & mask;
            int64_t sh = raw_get(&in[1], iy);
            uint64_t want = ref_shift(xv, sh, bits[t], is_signed, l);
            if (got != want)
                fail_msg("it %d: %s %s shift of %llx by %lld gave %llx, expected %llx", it,
                         kiln_dtype_name(types[t]), l ? "left" : "right", (unsigned long long)xv,
                         (long long)sh, (unsigned long long)got, (unsigned long long)want);
        }
        tu_tensor_free(&out[0]);
        free_all(in, 2);
    }

    in[0] = tu_tensor(U8, TU_DIMS(3), NULL);
    in[1] = tu_tensor(U8, TU_DIMS(2), NULL);
    expect_error("BitShift", &left, 1, in, 2, KILN_ERR_SHAPE, "do not broadcast");
    kiln_attr up = KILN_ATTR_S("direction", "UP");
    expect_error("BitShift", &up, 1, in, 2, KILN_ERR_INVALID_GRAPH, "direction is \"UP\"");
    tu_tensor_free(&in[1]);
    in[1] = tu_tensor(I8, TU_DIMS(3), NULL);
    expect_error("BitShift", &left, 1, in, 2, KILN_ERR_INVALID_GRAPH, "Y has dtype i8");
    free_all(in, 2);
    in[0] = tu_tensor_f32(TU_DIMS(3), NULL);
    in[1] = tu_tensor_f32(TU_DIMS(3), NULL);
    expect_error("BitShift", &left, 1, in, 2, KILN_ERR_UNSUPPORTED,
                 "X has dtype f32, expected u8, i8, i32 or i64");
    free_all(in, 2);
}

#undef V
#undef BS_CASE

/* ---- MeanVarianceNormalization ---- */

/* ONNX's function body, literally: E[x^2] - E[x]^2 over the axes, in double. */
static void naive_mvn(const ir_tensor *x, const bool *reduce, float *y)
{
    const kiln_dims *s = &x->shape;
    int64_t cnt = kiln_dims_count(s), idx[KILN_MAX_RANK], jdx[KILN_MAX_RANK];
    const float *xv = x->data;
    for (int64_t o = 0; o < cnt; o++) {
        int64_t rem = o;
        for (int32_t d = s->rank - 1; d >= 0; d--) {
            idx[d] = rem % s->d[d];
            rem /= s->d[d];
        }
        double s1 = 0, s2 = 0, m = 0;
        for (int64_t i = 0; i < cnt; i++) { /* every element in the same group */
            rem = i;
            bool same = true;
            for (int32_t d = s->rank - 1; d >= 0; d--) {
                jdx[d] = rem % s->d[d];
                rem /= s->d[d];
                if (!reduce[d] && jdx[d] != idx[d]) same = false;
            }
            if (!same) continue;
            s1 += xv[i];
            s2 += (double)xv[i] * xv[i];
            m++;
        }
        double mean = s1 / m, var = s2 / m - mean * mean;
        y[o] = (float)((xv[o] - mean) / (sqrt(var > 0 ? var : 0) + 1e-9));
    }
}

static void test_mvn(void **state)
{
    tu_rng r = {10};
    for (int it = 0; it < 30; it++) {
        int32_t rank = it < 10 ? 4 : (int32_t)tu_int(&r, 1, 5);
        kiln_dims d = {rank, {0}};
        for (int32_t i = 0; i < rank; i++) d.d[i] = tu_int(&r, 1, 4);
        ir_tensor x = rand_f32(&r, &d, -3, 5), out[1];
        bool reduce[KILN_MAX_RANK] = {false};
        int64_t axes[KILN_MAX_RANK];
        int32_t na = 0;
        kiln_attr a;
        if (it < 10) {
            reduce[0] = reduce[2] = reduce[3] = true; /* the default */
            tu_run_op_ok("MeanVarianceNormalization", NULL, 0, &x, 1, out, 1);
        } else {
            for (int32_t i = 0; i < rank; i++)
                if (tu_int(&r, 0, 1)) {
                    reduce[i] = true;
                    axes[na++] = tu_int(&r, 0, 1) ? i : i - rank; /* negative too */
                }
            if (na == 0)
                for (int32_t i = 0; i < rank; i++) reduce[i] = true; /* [] means all */
            a = KILN_ATTR_IS("axes", axes, na);
            tu_run_op_ok("MeanVarianceNormalization", &a, 1, &x, 1, out, 1);
        }
        int64_t cnt = ir_tensor_count(&x);
        float *ref = alloc_f(cnt);
        naive_mvn(&x, reduce, ref);
        tu_assert_close(out[0].data, ref, cnt, 1e-5);
        free(ref);
        tu_tensor_free(&out[0]);
        tu_tensor_free(&x);
    }
    /* a constant group is all zeros, not NaN */
    ir_tensor x = tu_tensor_f32(TU_DIMS(1, 2, 1, 2), (float[]){3, 3, 1, 5}), out[1];
    tu_run_op_ok("MeanVarianceNormalization", NULL, 0, &x, 1, out, 1);
    tu_assert_close(out[0].data, ((float[]){0, 0, -1, 1}), 4, 1e-6);
    tu_tensor_free(&out[0]);
    tu_tensor_free(&x);

    x = tu_tensor_f32(TU_DIMS(2, 3), NULL);
    expect_error("MeanVarianceNormalization", NULL, 0, &x, 1, KILN_ERR_SHAPE,
                 "axes[1] is 2, out of range for a rank-2 input");
    kiln_attr a = KILN_ATTR_IS("axes", ((int64_t[]){1, -1}), 2);
    expect_error("MeanVarianceNormalization", &a, 1, &x, 1, KILN_ERR_INVALID_GRAPH,
                 "names dim 1 twice");
    tu_tensor_free(&x);
    x = tu_tensor(KILN_DTYPE_I64, TU_DIMS(1, 1, 1, 1), NULL);
    expect_error("MeanVarianceNormalization", NULL, 0, &x, 1, KILN_ERR_UNSUPPORTED, "dtype i64");
    tu_tensor_free(&x);
}

/* ---- LpPool, GlobalLpPool ---- */

static void test_lppool_hand(void **state)
{
    ir_tensor x = tu_tensor_f32(TU_DIMS(1, 1, 4), (float[]){1, -2, 3, 4}), out[1];
    kiln_attr k2 = KILN_ATTR_IS("kernel_shape", ((int64_t[]){2}), 1);
    tu_run_op_ok("LpPool", &k2, 1, &x, 1, out, 1); /* p = 2 */
    assert_shape(&out[0], SHAPE(1, 1, 3));
    tu_assert_close(out[0].data, ((float[]){sqrtf(5), sqrtf(13), 5}), 3, 1e-7);
    tu_tensor_free(&out[0]);
    kiln_attr p1[] = {k2, KILN_ATTR_I("p", 1), KILN_ATTR_IS("strides", ((int64_t[]){2}), 1)};
    tu_run_op_ok("LpPool", p1, 3, &x, 1, out, 1);
    tu_assert_close(out[0].data, ((float[]){3, 7}), 2, 1e-7);
    tu_tensor_free(&out[0]);
    /* pads add zeros, p = 3 */
    kiln_attr p3[] = {k2, KILN_ATTR_I("p", 3), KILN_ATTR_IS("pads", ((int64_t[]){1, 1}), 2),
                      KILN_ATTR_IS("strides", ((int64_t[]){2}), 1)};
    tu_run_op_ok("LpPool", p3, 4, &x, 1, out, 1);
    assert_shape(&out[0], SHAPE(1, 1, 3));
    tu_assert_close(out[0].data, ((float[]){1, cbrtf(8 + 27), 4}), 3, 1e-6);
    tu_tensor_free(&out[0]);
    /* ceil_mode adds a last window that hangs past the end */
    kiln_attr ce[] = {KILN_ATTR_IS("kernel_shape", ((int64_t[]){3}), 1), KILN_ATTR_I("p", 1),
                      KILN_ATTR_IS("strides", ((int64_t[]){2}), 1), KILN_ATTR_I("ceil_mode", 1)};
    tu_run_op_ok("LpPool", ce, 4, &x, 1, out, 1);
    assert_shape(&out[0], SHAPE(1, 1, 2));
    tu_assert_close(out[0].data, ((float[]){6, 7}), 2, 1e-7);
    tu_tensor_free(&out[0]);
    tu_tensor_free(&x);
    /* GlobalLpPool: ONNX's default p = 2 */
    x = tu_tensor_f32(TU_DIMS(1, 2, 2), (float[]){3, 4, 1, -1});
    tu_run_op_ok("GlobalLpPool", NULL, 0, &x, 1, out, 1);
    assert_shape(&out[0], SHAPE(1, 2, 1));
    tu_assert_close(out[0].data, ((float[]){5, sqrtf(2)}), 2, 1e-7);
    tu_tensor_free(&out[0]);
    kiln_attr gp = KILN_ATTR_I("p", 1);
    tu_run_op_ok("GlobalLpPool", &gp, 1, &x, 1, out, 1);
    tu_assert_close(out[0].data, ((float[]){7, 2}), 2, 1e-7);
    tu_tensor_free(&out[0]);
    tu_tensor_free(&x);
}

/* 2-D LpPool written out: output sizes from the spec's formulas, every tap checked
 * against the unpadded input. */
static void test_lppool_random(void **state)
{
    tu_rng r = {12};
    for (int it = 0; it < 120; it++) {
        int64_t N = tu_int(&r, 1, 2), C = tu_int(&r, 1, 3), in[2], k[2], s[2], dl[2], pb[2], pe[2],
                os[2];
        for (int i = 0; i < 2; i++) {
            k[i] = tu_int(&r, 1, 3);
            s[i] = tu_int(&r, 1, 3);
            dl[i] = tu_int(&r, 1, 2);
            pb[i] = tu_int(&r, 0, k[i] - 1);
            pe[i] = tu_int(&r, 0, k[i] - 1);
            int64_t span = (k[i] - 1) * dl[i] + 1;
            in[i] = tu_int(&r, span > pb[i] + pe[i] ? span - pb[i] - pe[i] : 1, 9);
        }
        int64_t p = tu_int(&r, 1, 4), ceil_mode = tu_int(&r, 0, 1);
        for (int i = 0; i < 2; i++) {
            int64_t span = (k[i] - 1) * dl[i] + 1, room = in[i] + pb[i] + pe[i] - span;
            os[i] = room / s[i] + 1;
            /* ceil: one more window if it starts inside the input or the front pad */
            if (ceil_mode && room % s[i] && (os[i]) * s[i] < in[i] + pb[i]) os[i]++;
        }
        ir_tensor x = rand_f32(&r, SHAPE(N, C, in[0], in[1]), -2, 2), out[1];
        kiln_attr at[] = {KILN_ATTR_IS("kernel_shape", k, 2),
                          KILN_ATTR_IS("strides", s, 2),
                          KILN_ATTR_IS("dilations", dl, 2),
                          KILN_ATTR_IS("pads", ((int64_t[]){pb[0], pb[1], pe[0], pe[1]}), 4),
                          KILN_ATTR_I("p", p),
                          KILN_ATTR_I("ceil_mode", ceil_mode)};
        tu_run_op_ok("LpPool", at, 6, &x, 1, out, 1);
        assert_shape(&out[0], SHAPE(N, C, os[0], os[1]));
        int64_t cnt = N * C * os[0] * os[1];
        float *ref = alloc_f(cnt);
        const float *xv = x.data;
        for (int64_t pl = 0; pl < N * C; pl++)
            for (int64_t oy = 0; oy < os[0]; oy++)
                for (int64_t ox = 0; ox < os[1]; ox++) {
                    double sum = 0;
                    for (int64_t ky = 0; ky < k[0]; ky++)
                        for (int64_t kx = 0; kx < k[1]; kx++) {
                            int64_t iy = oy * s[0] - pb[0] + ky * dl[0];
                            int64_t ix = ox * s[1] - pb[1] + kx * dl[1];
                            if (iy < 0 || iy >= in[0] || ix < 0 || ix >= in[1]) continue;
                            sum += pow(fabs(xv[(pl * in[0] + iy) * in[1] + ix]), (double)p);
                        }
                    ref[(pl * os[0] + oy) * os[1] + ox] = (float)pow(sum, 1.0 / (double)p);
                }
        tu_assert_close(out[0].data, ref, cnt, 1e-5);
        free(ref);
        tu_tensor_free(&out[0]);
        tu_tensor_free(&x);
    }
    /* SAME_UPPER keeps ceil(in / stride) */
    tu_rng r2 = {13};
    ir_tensor x = rand_f32(&r2, SHAPE(1, 1, 5, 7), -1, 1), out[1];
    kiln_attr same[] = {KILN_ATTR_IS("kernel_shape", ((int64_t[]){3, 3}), 2),
                        KILN_ATTR_IS("strides", ((int64_t[]){2, 2}), 2),
                        KILN_ATTR_S("auto_pad", "SAME_UPPER")};
    tu_run_op_ok("LpPool", same, 3, &x, 1, out, 1);
    assert_shape(&out[0], SHAPE(1, 1, 3, 4));
    tu_tensor_free(&out[0]);
    /* GlobalLpPool over 3 spatial dims against a plain sum */
    tu_tensor_free(&x);
    x = rand_f32(&r2, SHAPE(2, 3, 2, 3, 4), -2, 2);
    kiln_attr p3 = KILN_ATTR_I("p", 3);
    tu_run_op_ok("GlobalLpPool", &p3, 1, &x, 1, out, 1);
    assert_shape(&out[0], SHAPE(2, 3, 1, 1, 1));
    float ref[6];
    for (int pl = 0; pl < 6; pl++) {
        double sum = 0;
        for (int i = 0; i < 24; i++) sum += pow(fabs(((float *)x.data)[pl * 24 + i]), 3);
        ref[pl] = (float)cbrt(sum);
    }
    tu_assert_close(out[0].data, ref, 6, 1e-6);
    tu_tensor_free(&out[0]);
    tu_tensor_free(&x);
}

static void test_lppool_errors(void **state)
{
    ir_tensor x = tu_tensor_f32(TU_DIMS(1, 1, 4), NULL);
    kiln_attr at[] = {KILN_ATTR_IS("kernel_shape", ((int64_t[]){2}), 1), KILN_ATTR_I("p", 0)};
    expect_error("LpPool", at, 2, &x, 1, KILN_ERR_INVALID_GRAPH, "p is 0, expected 1 to");
    expect_error("GlobalLpPool", &at[1], 1, &x, 1, KILN_ERR_INVALID_GRAPH, "p is 0");
    at[1] = KILN_ATTR_I("ceil_mode", 2);
    expect_error("LpPool", at, 2, &x, 1, KILN_ERR_INVALID_GRAPH, "ceil_mode is 2");
    at[0] = KILN_ATTR_IS("kernel_shape", ((int64_t[]){5}), 1);
    expect_error("LpPool", at, 1, &x, 1, KILN_ERR_SHAPE, "more than the padded input");
    at[0] = KILN_ATTR_IS("kernel_shape", ((int64_t[]){2, 2}), 2);
    expect_error("LpPool", at, 1, &x, 1, KILN_ERR_INVALID_GRAPH, "kernel_shape has 2 values");
    ir_tensor out[1];
    kiln_status st = tu_run_op("LpPool", NULL, 0, &x, 1, out, 1);
    tu_check_op_error("LpPool", st, KILN_ERR_INVALID_GRAPH, "'kernel_shape' is missing");
    tu_tensor_free(&x);
    x = tu_tensor_f32(TU_DIMS(2, 4), NULL);
    expect_error("GlobalLpPool", NULL, 0, &x, 1, KILN_ERR_SHAPE, "rank 3 or more");
    tu_tensor_free(&x);
    x = tu_tensor(KILN_DTYPE_I32, TU_DIMS(1, 1, 4), NULL);
    expect_error("GlobalLpPool", NULL, 0, &x, 1, KILN_ERR_UNSUPPORTED, "only f32");
    tu_tensor_free(&x);
}

/* ---- ReverseSequence ---- */

static void test_reverse_sequence_hand(void **state)
{
    float xv[16];
    for (int i = 0; i < 16; i++) xv[i] = (float)i;
    /* ONNX's reversesequence_time example: batch_axis 1, time_axis 0 */
    ir_tensor in[2] = {tu_tensor_f32(TU_DIMS(4, 4), xv),
                       tu_tensor_i64(TU_DIMS(4), (int64_t[]){4, 3, 2, 1})},
              out[1];
    kiln_attr ta[] = {KILN_ATTR_I("time_axis", 0), KILN_ATTR_I("batch_axis", 1)};
    tu_run_op_ok("ReverseSequence", ta, 2, in, 2, out, 1);
    tu_assert_close(out[0].data, ((float[]){12, 9, 6, 3, 8, 5, 2, 7, 4, 1, 10, 11, 0, 13, 14, 15}),
                    16, 0);
    tu_tensor_free(&out[0]);
    /* ONNX's reversesequence_batch example: batch_axis 0, time_axis 1 */
    tu_tensor_free(&in[1]);
    in[1] = tu_tensor_i64(TU_DIMS(4), (int64_t[]){1, 2, 3, 4});
    kiln_attr ba[] = {KILN_ATTR_I("time_axis", 1), KILN_ATTR_I("batch_axis", 0)};
    tu_run_op_ok("ReverseSequence", ba, 2, in, 2, out, 1);
    tu_assert_close(out[0].data, ((float[]){0, 1, 2, 3, 5, 4, 6, 7, 10, 9, 8, 11, 15, 14, 13, 12}),
                    16, 0);
    tu_tensor_free(&out[0]);
    free_all(in, 2);
}

static void test_reverse_sequence_random(void **state)
{
    tu_rng r = {14};
    const kiln_dtype types[] = {KILN_DTYPE_F32, KILN_DTYPE_U8, KILN_DTYPE_I64};
    for (int it = 0; it < 60; it++) {
        int32_t rank = (int32_t)tu_int(&r, 2, 4), time = (int32_t)tu_int(&r, 0, 1);
        int32_t batch = 1 - time;
        kiln_dims d = {rank, {0}};
        for (int32_t i = 0; i < rank; i++) d.d[i] = tu_int(&r, 1, 5);
        kiln_dtype dt = types[it % 3];
        ir_tensor in[2] = {rand_int(&r, dt, &d, 0, 100),
                           tu_tensor(it % 2 ? KILN_DTYPE_I32 : KILN_DTYPE_I64, 1, &d.d[batch],
                                     NULL)},
                  out[1];
        for (int64_t b = 0; b < d.d[batch]; b++)
            ir_tensor_set(&in[1], b, (double)tu_int(&r, 0, d.d[time]));
        kiln_attr at[] = {KILN_ATTR_I("time_axis", time), KILN_ATTR_I("batch_axis", batch)};
        /* lengths as a network input exercise the check when running */
        kiln_status st =
            run_mixed("ReverseSequence", at, 2, in, 2, it % 4 == 0 ? 2u : 0u, false, out);
        if (st) fail_msg("%s", kiln_last_error());
        int64_t cnt = ir_tensor_count(&in[0]), idx[KILN_MAX_RANK];
        for (int64_t o = 0; o < cnt; o++) {
            int64_t rem = o;
            for (int32_t i = rank - 1; i >= 0; i--) {
                idx[i] = rem % d.d[i];
                rem /= d.d[i];
            }
            int64_t len = (int64_t)ir_tensor_get(&in[1], idx[batch]);
            if (idx[time] < len) idx[time] = len - 1 - idx[time];
            int64_t from = 0;
            for (int32_t i = 0; i < rank; i++) from = from * d.d[i] + idx[i];
            assert_true(ir_tensor_get(&out[0], o) == ir_tensor_get(&in[0], from));
        }
        tu_tensor_free(&out[0]);
        free_all(in, 2);
    }
}

static void test_reverse_sequence_errors(void **state)
{
    ir_tensor in[2] = {tu_tensor_f32(TU_DIMS(3, 2), NULL),
                       tu_tensor_i64(TU_DIMS(2), (int64_t[]){1, 4})},
              out[1];
    expect_error("ReverseSequence", NULL, 0, in, 2, KILN_ERR_INVALID_GRAPH,
                 "sequence_lens[1] is 4, expected 0 to 3");
    /* the same lengths unknown at build time fail when running */
    kiln_status st = run_mixed("ReverseSequence", NULL, 0, in, 2, 2u, false, out);
    tu_tensor_free(&out[0]);
    tu_check_op_error("ReverseSequence", st, KILN_ERR_INVALID_ARGUMENT, "sequence_lens[1] is 4");
    kiln_attr same[] = {KILN_ATTR_I("time_axis", 1), KILN_ATTR_I("batch_axis", 1)};
    expect_error("ReverseSequence", same, 2, in, 2, KILN_ERR_INVALID_GRAPH,
                 "batch_axis 1 and time_axis 1");
    kiln_attr far = KILN_ATTR_I("time_axis", 2);
    expect_error("ReverseSequence", &far, 1, in, 2, KILN_ERR_INVALID_GRAPH, "time_axis 2");
    tu_tensor_free(&in[1]);
    in[1] = tu_tensor_i64(TU_DIMS(3), (int64_t[]){1, 1, 1});
    expect_error("ReverseSequence", NULL, 0, in, 2, KILN_ERR_SHAPE, "expected [2]");
    tu_tensor_free(&in[1]);
    in[1] = tu_tensor_f32(TU_DIMS(2), NULL);
    expect_error("ReverseSequence", NULL, 0, in, 2, KILN_ERR_INVALID_GRAPH,
                 "sequence_lens has dtype f32");
    free_all(in, 2);
    in[0] = tu_tensor_f32(TU_DIMS(3), NULL);
    in[1] = tu_tensor_i64(TU_DIMS(1), (int64_t[]){1});
    expect_error("ReverseSequence", NULL, 0, in, 2, KILN_ERR_SHAPE, "rank 2 or more");
    free_all(in, 2);
    in[0] = tu_tensor_f32(TU_DIMS(3, 1), NULL);
    in[1] = tu_tensor_i64(TU_DIMS(1), (int64_t[]){-1});
    expect_error("ReverseSequence", NULL, 0, in, 2, KILN_ERR_INVALID_GRAPH,
                 "sequence_lens[0] is -1");
    free_all(in, 2);
}

/* ---- Det ---- */

/* Laplace expansion along the first row: a different algorithm from LU. */
static double det_cofactor(const double *a, int n)
{
    if (n == 0) return 1;
    if (n == 1) return a[0];
    double sum = 0, minor[64];
    for (int c = 0; c < n; c++) {
        int m = 0;
        for (int i = 1; i < n; i++)
            for (int j = 0; j < n; j++)
                if (j != c) minor[m++] = a[i * n + j];
        sum += (c % 2 ? -1 : 1) * a[c] * det_cofactor(minor, n - 1);
    }
    return sum;
}

static void test_det(void **state)
{
    /* ONNX's det_2d and det_nd examples */
    ir_tensor x = tu_tensor_f32(TU_DIMS(2, 2), (float[]){1, 2, 3, 4}), out[1];
    tu_run_op_ok("Det", NULL, 0, &x, 1, out, 1);
    assert_int_equal(out[0].shape.rank, 0);
    assert_true(fabsf(((float *)out[0].data)[0] + 2) < 1e-6f);
    tu_tensor_free(&out[0]);
    tu_tensor_free(&x);
    x = tu_tensor_f32(TU_DIMS(3, 2, 2), (float[]){1, 2, 3, 4, 1, 2, 2, 1, 1, 3, 3, 1});
    tu_run_op_ok("Det", NULL, 0, &x, 1, out, 1);
    assert_shape(&out[0], SHAPE(3));
    tu_assert_close(out[0].data, ((float[]){-2, -3, -8}), 3, 1e-6);
    tu_tensor_free(&out[0]);
    tu_tensor_free(&x);
    /* singular, and 0 x 0 (determinant 1) */
    x = tu_tensor_f32(TU_DIMS(3, 3), (float[]){1, 2, 3, 2, 4, 6, 0, 1, 1});
    tu_run_op_ok("Det", NULL, 0, &x, 1, out, 1);
    assert_true(fabsf(((float *)out[0].data)[0]) < 1e-6f);
    tu_tensor_free(&out[0]);
    tu_tensor_free(&x);
    x = tu_tensor_f32(TU_DIMS(2, 0, 0), NULL);
    tu_run_op_ok("Det", NULL, 0, &x, 1, out, 1);
    assert_true(((float *)out[0].data)[0] == 1 && ((float *)out[0].data)[1] == 1);
    tu_tensor_free(&out[0]);
    tu_tensor_free(&x);

    tu_rng r = {15};
    for (int it = 0; it < 60; it++) {
        int m = (int)tu_int(&r, 1, 6);
        int64_t b = tu_int(&r, 1, 3);
        ir_tensor xr = rand_f32(&r, SHAPE(b, m, m), -2, 2);
        tu_run_op_ok("Det", NULL, 0, &xr, 1, out, 1);
        for (int64_t k = 0; k < b; k++) {
            double a[36];
            for (int i = 0; i < m * m; i++) a[i] = ((float *)xr.data)[k * m * m + i];
            double want = det_cofactor(a, m), got = ((float *)out[0].data)[k];
            if (fabs(got - want) > 1e-4 * (1 + fabs(want)))
                fail_msg("%dx%d: det %g, expected %g", m, m, got, want);
        }
        tu_tensor_free(&out[0]);
        tu_tensor_free(&xr);
    }
    /* past the stack workspace (16 x 16): rows of L U shuffled, determinant known */
    const int n = 24;
    float *l = alloc_f(n * n), *u = alloc_f(n * n), *a = alloc_f(n * n);
    double want = 1;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < n; j++) {
            l[i * n + j] = j < i ? tu_uniform(&r, -1, 1) : (j == i ? 1.0f : 0.0f);
            u[i * n + j] = j > i ? tu_uniform(&r, -1, 1) : 0.0f;
        }
        u[i * n + i] = tu_uniform(&r, 0.8f, 1.25f) * (i % 3 ? 1.0f : -1.0f);
        want *= u[i * n + i];
    }
    for (int i = 0; i < n; i++) { /* row i of the product goes to row (i + 5) % n */
        int dst = (i + 5) % n;
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int k = 0; k < n; k++) s += (double)l[i * n + k] * u[k * n + j];
            a[dst * n + j] = (float)s;
        }
    }
    /* a cyclic shift by 5 of 24 rows is 5 * 23 transpositions: odd */
    want = -want;
    x = tu_tensor_f32(TU_DIMS(n, n), a);
    tu_run_op_ok("Det", NULL, 0, &x, 1, out, 1);
    double got = ((float *)out[0].data)[0];
    if (fabs(got - want) > 1e-3 * fabs(want)) fail_msg("24x24: det %g, expected %g", got, want);
    tu_tensor_free(&out[0]);
    tu_tensor_free(&x);
    free(l);
    free(u);
    free(a);

    x = tu_tensor_f32(TU_DIMS(2, 3), NULL);
    expect_error("Det", NULL, 0, &x, 1, KILN_ERR_SHAPE, "square matrices");
    tu_tensor_free(&x);
    x = tu_tensor_f32(TU_DIMS(3), NULL);
    expect_error("Det", NULL, 0, &x, 1, KILN_ERR_SHAPE, "got 3");
    tu_tensor_free(&x);
    x = tu_tensor(KILN_DTYPE_I64, TU_DIMS(2, 2), NULL);
    expect_error("Det", NULL, 0, &x, 1, KILN_ERR_UNSUPPORTED, "dtype i64");
    tu_tensor_free(&x);
}

/* ---- GridSample ---- */

/* PyTorch's formulation (grid_sampler_compute_source_index): padding applied to the
 * unnormalized coordinate (clip, or reflect then clip), then taps outside read 0. */
static double ref_reflect(double v, double lo, double hi)
{
    double span = hi - lo;
    if (span <= 0) return 0;
    v = fabs(v - lo);
    double extra = fmod(v, span);
    int flips = (int)floor(v / span);
    return flips % 2 == 0 ? extra + lo : span - extra + lo;
}

static double ref_source(double g, int64_t size, int pad, bool align)
{
    double v = align ? (g + 1) / 2 * (double)(size - 1) : ((g + 1) * (double)size - 1) / 2;
    if (pad == 2)
        v = align ? ref_reflect(v, 0, (double)(size - 1))
                  : ref_reflect(v, -0.5, (double)size - 0.5);
    if (pad >= 1) v = fmin(fmax(v, 0), (double)(size - 1));
    return v;
}

static double ref_tap(const float *p, int64_t h, int64_t w, int64_t y, int64_t x)
{
    return y < 0 || y >= h || x < 0 || x >= w ? 0 : p[y * w + x];
}

static void test_grid_sample(void **state)
{
    /* hand cases on [[1, 2], [3, 4]] */
    ir_tensor in[2] = {tu_tensor_f32(TU_DIMS(1, 1, 2, 2), (float[]){1, 2, 3, 4}),
                       tu_tensor_f32(TU_DIMS(1, 1, 3, 2), (float[]){0, 0, -1, -1, 1, -1})},
              out[1];
    tu_run_op_ok("GridSample", NULL, 0, in, 2, out, 1);
    assert_shape(&out[0], SHAPE(1, 1, 1, 3));
    /* centre: the mean; a corner of the image: a quarter of a pixel; (1, -1) the
     * top-right corner: a quarter of 2 */
    tu_assert_close(out[0].data, ((float[]){2.5f, 0.25f, 0.5f}), 3, 1e-7);
    tu_tensor_free(&out[0]);
    kiln_attr border = KILN_ATTR_S("padding_mode", "border");
    tu_run_op_ok("GridSample", &border, 1, in, 2, out, 1);
    tu_assert_close(out[0].data, ((float[]){2.5f, 1, 2}), 3, 1e-7);
    tu_tensor_free(&out[0]);
    kiln_attr refl = KILN_ATTR_S("padding_mode", "reflection");
    tu_run_op_ok("GridSample", &refl, 1, in, 2, out, 1);
    tu_assert_close(out[0].data, ((float[]){2.5f, 1, 2}), 3, 1e-7);
    tu_tensor_free(&out[0]);
    kiln_attr al[] = {KILN_ATTR_I("align_corners", 1), KILN_ATTR_S("mode", "nearest")};
    tu_run_op_ok("GridSample", al, 2, in, 2, out, 1);
    /* aligned corners hit pixel centres; the centre (0.5, 0.5) rounds to even: 0 */
    tu_assert_close(out[0].data, ((float[]){1, 1, 2}), 3, 0);
    tu_tensor_free(&out[0]);
    free_all(in, 2);

    /* an identity grid reproduces the input, aligned or not */
    tu_rng r = {16};
    for (int align = 0; align < 2; align++) {
        int64_t H = 3, W = 5;
        ir_tensor x = rand_f32(&r, SHAPE(2, 3, H, W), -1, 1),
                  g = tu_tensor_f32(TU_DIMS(2, H, W, 2), NULL);
        float *gv = g.data;
        for (int64_t b = 0; b < 2; b++)
            for (int64_t i = 0; i < H; i++)
                for (int64_t j = 0; j < W; j++) {
                    float *pt = gv + ((b * H + i) * W + j) * 2;
                    pt[0] = align ? 2.0f * (float)j / (float)(W - 1) - 1
                                  : (2.0f * (float)j + 1) / (float)W - 1;
                    pt[1] = align ? 2.0f * (float)i / (float)(H - 1) - 1
                                  : (2.0f * (float)i + 1) / (float)H - 1;
                }
        ir_tensor gin[2] = {x, g};
        static const char *modes[] = {"linear", "nearest", "cubic"};
        for (int mi = 0; mi < 3; mi++) {
            kiln_attr a[] = {KILN_ATTR_I("align_corners", align), KILN_ATTR_S("mode", modes[mi])};
            tu_run_op_ok("GridSample", a, 2, gin, 2, out, 1);
            tu_assert_close(out[0].data, x.data, 2 * 3 * H * W, 1e-6);
            tu_tensor_free(&out[0]);
        }
        free_all(gin, 2);
    }

    /* random grids, linear and nearest, every padding mode, against PyTorch's
     * formulation (nearest agrees with ONNX's order of rounding and padding except at
     * exact ties, which random grids do not hit) */
    static const char *pads[] = {"zeros", "border", "reflection"};
    for (int it = 0; it < 120; it++) {
        int pad = it % 3;
        bool align = (it / 3) % 2, nearest = (it / 6) % 2;
        int64_t N = tu_int(&r, 1, 2), C = tu_int(&r, 1, 3), H = tu_int(&r, 1, 5),
                W = tu_int(&r, 1, 5), Ho = tu_int(&r, 1, 4), Wo = tu_int(&r, 1, 4);
        ir_tensor gin[2] = {rand_f32(&r, SHAPE(N, C, H, W), -1, 1),
                            rand_f32(&r, SHAPE(N, Ho, Wo, 2), -4.5f, 4.5f)};
        kiln_attr at[] = {KILN_ATTR_S("padding_mode", pads[pad]),
                          KILN_ATTR_I("align_corners", align),
                          KILN_ATTR_S("mode", nearest ? "nearest" : "bilinear")};
        tu_run_op_ok("GridSample", at, 3, gin, 2, out, 1);
        assert_shape(&out[0], SHAPE(N, C, Ho, Wo));
        int64_t cnt = N * C * Ho * Wo;
        float *ref = alloc_f(cnt);
        const float *xv = gin[0].data, *gv = gin[1].data;
        for (int64_t n = 0; n < N; n++)
            for (int64_t c = 0; c < C; c++)
                for (int64_t p = 0; p < Ho * Wo; p++) {
                    double sx = ref_source(gv[(n * Ho * Wo + p) * 2], W, pad, align);
                    double sy = ref_source(gv[(n * Ho * Wo + p) * 2 + 1], H, pad, align);
                    int64_t x0 = (int64_t)floor(sx), y0 = (int64_t)floor(sy);
                    double fx = sx - (double)x0, fy = sy - (double)y0;
                    const float *pl = xv + (n * C + c) * H * W;
                    if (nearest) {
                        ref[(n * C + c) * Ho * Wo + p] = (float)ref_tap(
                            pl, H, W, (int64_t)nearbyint(sy), (int64_t)nearbyint(sx));
                        continue;
                    }
                    ref[(n * C + c) * Ho * Wo + p] =
                        (float)((1 - fy) * ((1 - fx) * ref_tap(pl, H, W, y0, x0) +
                                            fx * ref_tap(pl, H, W, y0, x0 + 1)) +
                                fy * ((1 - fx) * ref_tap(pl, H, W, y0 + 1, x0) +
                                      fx * ref_tap(pl, H, W, y0 + 1, x0 + 1)));
                }
        tu_assert_close(out[0].data, ref, cnt, 1e-5);
        free(ref);
        tu_tensor_free(&out[0]);
        free_all(gin, 2);
    }

    in[0] = tu_tensor_f32(TU_DIMS(1, 1, 2, 2), NULL);
    in[1] = tu_tensor_f32(TU_DIMS(1, 1, 1, 3), NULL);
    expect_error("GridSample", NULL, 0, in, 2, KILN_ERR_SHAPE,
                 "expected N x D1_out x ... x D2_out x 2");
    tu_tensor_free(&in[1]);
    in[1] = tu_tensor_f32(TU_DIMS(1, 1, 1, 1, 2), NULL); /* one rank too many */
    expect_error("GridSample", NULL, 0, in, 2, KILN_ERR_SHAPE, "grid has shape 1x1x1x1x2");
    tu_tensor_free(&in[1]);
    in[1] = tu_tensor_f32(TU_DIMS(2, 1, 1, 2), NULL); /* N of 2, X has 1 */
    expect_error("GridSample", NULL, 0, in, 2, KILN_ERR_SHAPE, "with N of X 1x1x2x2");
    tu_tensor_free(&in[1]);
    in[1] = tu_tensor_f32(TU_DIMS(1, 1, 1, 2), NULL);
    kiln_attr area = KILN_ATTR_S("mode", "area");
    expect_error("GridSample", &area, 1, in, 2, KILN_ERR_INVALID_GRAPH, "mode is \"area\"");
    kiln_attr bad = KILN_ATTR_S("padding_mode", "wrap");
    expect_error("GridSample", &bad, 1, in, 2, KILN_ERR_INVALID_GRAPH, "padding_mode is \"wrap\"");
    kiln_attr al2 = KILN_ATTR_I("align_corners", 2);
    expect_error("GridSample", &al2, 1, in, 2, KILN_ERR_INVALID_GRAPH, "align_corners is 2");
    free_all(in, 2);
    in[0] = tu_tensor_f32(TU_DIMS(1, 1, 2, 2, 2), NULL);
    in[1] = tu_tensor_f32(TU_DIMS(1, 1, 1, 1, 2), NULL);
    expect_error("GridSample", NULL, 0, in, 2, KILN_ERR_SHAPE, "D3_out x 3");
    free_all(in, 2);
    in[0] = tu_tensor_f32(TU_DIMS(1, 1, 0, 2), NULL);
    in[1] = tu_tensor_f32(TU_DIMS(1, 1, 1, 2), NULL);
    expect_error("GridSample", NULL, 0, in, 2, KILN_ERR_SHAPE, "empty spatial dim");
    free_all(in, 2);
    in[0] = tu_tensor_f32(TU_DIMS(1, 2), NULL);
    in[1] = tu_tensor_f32(TU_DIMS(1, 2), NULL);
    expect_error("GridSample", NULL, 0, in, 2, KILN_ERR_SHAPE, "rank 3 or more");
    free_all(in, 2);
    in[0] = tu_tensor(KILN_DTYPE_F16, TU_DIMS(1, 1, 2, 2), NULL);
    in[1] = tu_tensor_f32(TU_DIMS(1, 1, 1, 2), NULL);
    expect_error("GridSample", NULL, 0, in, 2, KILN_ERR_UNSUPPORTED, "dtypes f16 and f32");
    free_all(in, 2);
}

/* ONNX's rule for cubic (and its reference for every mode): the coordinate is padded
 * only when it lies outside [lo, hi] (PyTorch pads only the taps for bicubic), and each
 * tap is padded again. */
static double onnx_source(double g, int64_t size, int pad, bool align)
{
    double v = align ? (g + 1) / 2 * (double)(size - 1) : ((g + 1) * (double)size - 1) / 2;
    double lo = align ? 0 : -0.5, hi = align ? (double)(size - 1) : (double)size - 0.5;
    if (v < lo || v > hi) {
        if (pad == 1) v = fmin(fmax(v, 0), (double)(size - 1));
        if (pad == 2) v = ref_reflect(v, lo, hi);
    }
    return v;
}

/* A tap's index after padding, -1 for a zero. */
static int64_t ref_pad_index(int64_t i, int64_t size, int pad, bool align)
{
    if (i >= 0 && i < size) return i;
    if (pad == 0) return -1;
    if (pad == 2)
        i = (int64_t)ref_reflect((double)i, align ? 0 : -0.5,
                                 align ? (double)(size - 1) : (double)size - 0.5);
    return i < 0 ? 0 : (i >= size ? size - 1 : i);
}

/* Keys' cubic convolution kernel, a = -0.75, in its power form. */
static double ref_keys(double s)
{
    const double a = -0.75, x = fabs(s);
    if (x <= 1) return (a + 2) * pow(x, 3) - (a + 3) * x * x + 1;
    if (x < 2) return a * pow(x, 3) - 5 * a * x * x + 8 * a * x - 4 * a;
    return 0;
}

/* Bicubic the way ONNX's reference computes it: four rows interpolated along x, then
 * those four values along y. */
static double ref_bicubic(const float *p, int64_t h, int64_t w, double sx, double sy, int pad,
                          bool align)
{
    int64_t x0 = (int64_t)floor(sx), y0 = (int64_t)floor(sy);
    double col = 0;
    for (int i = -1; i <= 2; i++) {
        int64_t yi = ref_pad_index(y0 + i, h, pad, align);
        double row = 0;
        for (int j = -1; j <= 2; j++) {
            int64_t xj = ref_pad_index(x0 + j, w, pad, align);
            row += ref_keys(sx - (double)(x0 + j)) * (yi < 0 || xj < 0 ? 0 : p[yi * w + xj]);
        }
        col += ref_keys(sy - (double)(y0 + i)) * row;
    }
    return col;
}

static void grid_sample_case(const char *mode, int64_t align, const ir_tensor *in,
                             const kiln_dims *want_shape, const float *want, double tol)
{
    ir_tensor out[1];
    kiln_attr a[] = {KILN_ATTR_S("mode", mode), KILN_ATTR_I("align_corners", align)};
    tu_run_op_ok("GridSample", a, 2, in, 2, out, 1);
    assert_shape(&out[0], want_shape);
    tu_assert_close(out[0].data, want, ir_tensor_count(&out[0]), tol);
    tu_tensor_free(&out[0]);
}

static void test_grid_sample_cubic(void **state)
{
    /* ONNX's bicubic examples (to the digits given) on [[0, 1], [2, 3], [4, 5]] */
    ir_tensor in[2] = {tu_tensor_f32(TU_DIMS(1, 1, 3, 2), (float[]){0, 1, 2, 3, 4, 5}),
                       tu_tensor_f32(TU_DIMS(1, 2, 4, 2),
                                     (float[]){-1, -1, -0.5f, -0.5f, -0.2f, -0.2f, 0, 0, 0, 0,
                                               -0.2f, -0.2f, 0.5f, 0.5f, 1, 1})},
              out[1];
    grid_sample_case(
        "cubic", 0, in, SHAPE(1, 1, 2, 4),
        (float[]){-0.1406f, 0.3828f, 1.7556f, 2.9688f, 2.9688f, 1.7556f, 5.1445f, 1.3906f}, 2e-5);
    grid_sample_case(
        "bicubic", 0, in, SHAPE(1, 1, 2, 4), /* opset 16's name */
        (float[]){-0.1406f, 0.3828f, 1.7556f, 2.9688f, 2.9688f, 1.7556f, 5.1445f, 1.3906f}, 2e-5);
    tu_tensor_free(&in[1]);
    in[1] = tu_tensor_f32(TU_DIMS(1, 2, 4, 2),
                          (float[]){-1.0f, -0.8f, -0.6f, -0.5f, -0.1f, -0.2f, 0.7f, 0.0f, 0.0f,
                                    0.4f, 0.2f, -0.2f, -0.3f, 0.5f, -1.0f, 1.0f});
    grid_sample_case("cubic", 0, in, SHAPE(1, 1, 2, 4),
                     (float[]){-0.173250f, 0.284265f, 1.923106f, 2.568000f, 5.170375f, 2.284414f,
                               4.744844f, 1.046875f},
                     2e-6);
    grid_sample_case("cubic", 1, in, SHAPE(1, 1, 2, 4),
                     (float[]){0.304001f, 1.128750f, 2.266270f, 3.144844f, 4.531500f, 2.455360f,
                               4.599819f, 4.000000f},
                     2e-6);
    free_all(in, 2);

    /* 1-D on a ramp, worked by hand: a point on a pixel centre gives that pixel; at
     * 3 + 0.25 the taps 2..5 weigh -0.10546875, 0.87890625, 0.26171875, -0.03515625 (sum
     * 1), giving 3.296875: a = -0.75 does not reproduce a ramp (a = -0.5 would), linear
     * does */
    in[0] = tu_tensor_f32(TU_DIMS(1, 1, 6), (float[]){0, 1, 2, 3, 4, 5});
    in[1] = tu_tensor_f32(TU_DIMS(1, 4, 1), (float[]){-1, -0.08f, 0.3f, 1});
    grid_sample_case("cubic", 1, in, SHAPE(1, 1, 4), (float[]){0, 2.342f, 3.296875f, 5}, 1e-6);
    grid_sample_case("linear", 1, in, SHAPE(1, 1, 4), (float[]){0, 2.3f, 3.25f, 5}, 1e-6);
    free_all(in, 2);

    /* the weights sum to 1 per dim: a constant volume with border padding stays constant,
     * wherever the points fall; a NaN coordinate gives NaN */
    tu_rng r = {23};
    in[0] = tu_tensor_f32(TU_DIMS(1, 2, 3, 4, 2), NULL);
    for (int i = 0; i < 48; i++) ((float *)in[0].data)[i] = 2.5f;
    in[1] = rand_f32(&r, SHAPE(1, 2, 3, 5, 3), -3, 3);
    ((float *)in[1].data)[7] = NAN;
    kiln_attr cb[] = {KILN_ATTR_S("mode", "cubic"), KILN_ATTR_S("padding_mode", "border")};
    tu_run_op_ok("GridSample", cb, 2, in, 2, out, 1);
    assert_shape(&out[0], SHAPE(1, 2, 2, 3, 5));
    const float *ov = out[0].data;
    for (int c = 0; c < 2; c++)
        for (int p = 0; p < 30; p++) {
            float v = ov[c * 30 + p];
            if (p == 2 ? !isnan(v) : fabsf(v - 2.5f) > 1e-5f)
                fail_msg("channel %d point %d: %g, expected %s", c, p, (double)v,
                         p == 2 ? "NaN" : "2.5");
        }
    tu_tensor_free(&out[0]);
    free_all(in, 2);

    /* random grids, every padding mode and alignment, against ONNX's formulation */
    static const char *pads[] = {"zeros", "border", "reflection"};
    for (int it = 0; it < 120; it++) {
        int pad = it % 3;
        bool align = (it / 3) % 2;
        int64_t N = tu_int(&r, 1, 2), C = tu_int(&r, 1, 3), H = tu_int(&r, 1, 6),
                W = tu_int(&r, 1, 6), Ho = tu_int(&r, 1, 4), Wo = tu_int(&r, 1, 4);
        float gr = it % 4 == 3 ? 4.5f : 1.3f;
        ir_tensor gin[2] = {rand_f32(&r, SHAPE(N, C, H, W), -1, 1),
                            rand_f32(&r, SHAPE(N, Ho, Wo, 2), -gr, gr)};
        kiln_attr at[] = {KILN_ATTR_S("padding_mode", pads[pad]),
                          KILN_ATTR_I("align_corners", align), KILN_ATTR_S("mode", "cubic")};
        tu_run_op_ok("GridSample", at, 3, gin, 2, out, 1);
        assert_shape(&out[0], SHAPE(N, C, Ho, Wo));
        int64_t cnt = N * C * Ho * Wo;
        float *ref = alloc_f(cnt);
        const float *xv = gin[0].data, *gv = gin[1].data;
        for (int64_t n = 0; n < N; n++)
            for (int64_t c = 0; c < C; c++)
                for (int64_t p = 0; p < Ho * Wo; p++) {
                    double sx = onnx_source(gv[(n * Ho * Wo + p) * 2], W, pad, align);
                    double sy = onnx_source(gv[(n * Ho * Wo + p) * 2 + 1], H, pad, align);
                    ref[(n * C + c) * Ho * Wo + p] =
                        (float)ref_bicubic(xv + (n * C + c) * H * W, H, W, sx, sy, pad, align);
                }
        tu_assert_close(out[0].data, ref, cnt, 1e-5);
        free(ref);
        tu_tensor_free(&out[0]);
        free_all(gin, 2);
    }
}

static void test_grid_sample_volumetric(void **state)
{
    /* ONNX's volumetric examples: X 1..12 as 3 x 2 x 2, grid points (x, y, z) */
    float xs[12];
    for (int i = 0; i < 12; i++) xs[i] = (float)(i + 1);
    ir_tensor in[2] = {tu_tensor_f32(TU_DIMS(1, 1, 3, 2, 2), xs),
                       tu_tensor_f32(TU_DIMS(1, 2, 4, 2, 3),
                                     (float[]){-1.0f, -1.0f, -1.0f, -1.0f, -0.5f, 0.3f,  -0.5f,
                                               -0.5f, -0.5f, 1.0f,  -0.6f, -1.0f, -0.2f, -0.2f,
                                               -0.2f, 0.4f,  0.2f,  0.6f,  0.0f,  0.0f,  0.0f,
                                               -1.0f, 0.0f,  0.0f,  0.0f,  0.0f,  0.0f,  -1.0f,
                                               1.0f,  0.0f,  -0.2f, -0.2f, -0.2f, 1.0f,  0.4f,
                                               -0.2f, 0.5f,  0.5f,  0.5f,  -1.0f, -0.8f, 0.8f,
                                               1.0f,  1.0f,  1.0f,  0.4f,  0.6f,  -0.3f})},
              out[1];
    const kiln_dims *os = SHAPE(1, 1, 2, 4, 2);
    grid_sample_case("nearest", 0, in, os,
                     (float[]){1, 5, 1, 0, 5, 12, 5, 5, 5, 0, 5, 0, 12, 9, 0, 8}, 0);
    grid_sample_case("nearest", 1, in, os,
                     (float[]){1, 5, 1, 2, 5, 12, 5, 5, 5, 7, 5, 8, 12, 9, 12, 8}, 0);
    grid_sample_case("linear", 0, in, os,
                     (float[]){0.125f, 3.4f, 2.0f, 0.45f, 4.7f, 10.9f, 6.5f, 3.0f, 6.5f, 1.75f,
                               4.7f, 3.3f, 11.0f, 2.52f, 1.5f, 5.49f},
                     1e-6);
    grid_sample_case("linear", 1, in, os,
                     (float[]){1.0f, 6.7f, 3.75f, 2.4f, 5.4f, 9.3f, 6.5f, 6.0f, 6.5f, 7.0f, 5.4f,
                               6.6f, 9.25f, 8.4f, 12.0f, 6.1f},
                     1e-6);
    free_all(in, 2);

    /* random volumes, trilinear and nearest, every padding mode, against PyTorch's
     * formulation corner by corner */
    tu_rng r = {24};
    static const char *pads[] = {"zeros", "border", "reflection"};
    for (int it = 0; it < 96; it++) {
        int pad = it % 3;
        bool align = (it / 3) % 2, nearest = (it / 6) % 2;
        int64_t N = tu_int(&r, 1, 2), C = tu_int(&r, 1, 2), D = tu_int(&r, 1, 4),
                H = tu_int(&r, 1, 4), W = tu_int(&r, 1, 4), Do = tu_int(&r, 1, 3),
                Ho = tu_int(&r, 1, 3), Wo = tu_int(&r, 1, 3);
        ir_tensor gin[2] = {rand_f32(&r, SHAPE(N, C, D, H, W), -1, 1),
                            rand_f32(&r, SHAPE(N, Do, Ho, Wo, 3), -2.5f, 2.5f)};
        kiln_attr at[] = {KILN_ATTR_S("padding_mode", pads[pad]),
                          KILN_ATTR_I("align_corners", align),
                          KILN_ATTR_S("mode", nearest ? "nearest" : "linear")};
        tu_run_op_ok("GridSample", at, 3, gin, 2, out, 1);
        assert_shape(&out[0], SHAPE(N, C, Do, Ho, Wo));
        const int64_t pts = Do * Ho * Wo, cnt = N * C * pts, size[3] = {D, H, W};
        float *ref = alloc_f(cnt);
        const float *xv = gin[0].data, *gv = gin[1].data;
        for (int64_t n = 0; n < N; n++)
            for (int64_t p = 0; p < pts; p++) {
                double src[3]; /* z, y, x: the grid lists x first */
                for (int d = 0; d < 3; d++)
                    src[d] = ref_source(gv[(n * pts + p) * 3 + 2 - d], size[d], pad, align);
                for (int64_t c = 0; c < C; c++) {
                    const float *vol = xv + (n * C + c) * D * H * W;
                    double v = 0;
                    for (int corner = 0; corner < 8; corner++) {
                        double w = 1;
                        int64_t at3[3];
                        bool inside = true;
                        for (int d = 0; d < 3; d++) {
                            int hi = (corner >> (2 - d)) & 1;
                            if (nearest) {
                                at3[d] = (int64_t)nearbyint(src[d]);
                                w *= hi ? 0 : 1;
                            } else {
                                double f = floor(src[d]);
                                at3[d] = (int64_t)f + hi;
                                w *= hi ? src[d] - f : 1 - (src[d] - f);
                            }
                            inside = inside && at3[d] >= 0 && at3[d] < size[d];
                        }
                        if (inside && w != 0) v += w * vol[(at3[0] * H + at3[1]) * W + at3[2]];
                    }
                    ref[(n * C + c) * pts + p] = (float)v;
                }
            }
        tu_assert_close(out[0].data, ref, cnt, 1e-5);
        free(ref);
        tu_tensor_free(&out[0]);
        free_all(gin, 2);
    }
}

/* ---- the table ---- */

static void test_table(void **state)
{
    const char *ops[] = {"Einsum",
                         "Acos",
                         "Asin",
                         "Atan",
                         "Acosh",
                         "Asinh",
                         "Atanh",
                         "Sinh",
                         "Cosh",
                         "Tan",
                         "Celu",
                         "Shrink",
                         "BitShift",
                         "MeanVarianceNormalization",
                         "LpPool",
                         "GlobalLpPool",
                         "ReverseSequence",
                         "Det",
                         "GridSample"};
    for (size_t i = 0; i < sizeof ops / sizeof *ops; i++) assert_non_null(ir_op_find(ops[i]));
    /* no op name is defined twice across the groups */
    const ir_op *a, *b;
    for (int32_t i = 0; (a = ir_op_at(i)) != NULL; i++)
        for (int32_t j = i + 1; (b = ir_op_at(j)) != NULL; j++)
            if (strcmp(a->name, b->name) == 0) fail_msg("op %s is defined twice", a->name);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_einsum_hand),
        cmocka_unit_test(test_einsum_attention),
        cmocka_unit_test(test_einsum_ellipsis),
        cmocka_unit_test(test_einsum_random),
        cmocka_unit_test(test_einsum_half),
        cmocka_unit_test(test_einsum_int),
        cmocka_unit_test(test_einsum_many_operands),
        cmocka_unit_test(test_einsum_errors),
        cmocka_unit_test(test_alloc_failure),
        cmocka_unit_test(test_unary_math),
        cmocka_unit_test(test_celu),
        cmocka_unit_test(test_celu_half),
        cmocka_unit_test(test_shrink),
        cmocka_unit_test(test_bitshift),
        cmocka_unit_test(test_mvn),
        cmocka_unit_test(test_lppool_hand),
        cmocka_unit_test(test_lppool_random),
        cmocka_unit_test(test_lppool_errors),
        cmocka_unit_test(test_reverse_sequence_hand),
        cmocka_unit_test(test_reverse_sequence_random),
        cmocka_unit_test(test_reverse_sequence_errors),
        cmocka_unit_test(test_det),
        cmocka_unit_test(test_grid_sample),
        cmocka_unit_test(test_grid_sample_cubic),
        cmocka_unit_test(test_grid_sample_volumetric),
        cmocka_unit_test(test_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
