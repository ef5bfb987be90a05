/* test_ops_linalg.c - the linalg op group (MatMul, Gemm, Softmax family, LayerNorm,
 * Reduce family, ArgMax/ArgMin, CumSum, TopK): hand-computed cases, seeded random sweeps
 * against naive references written here (explicit multi-indices, double sums), and the
 * error paths. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* ---- helpers ---- */

static kiln_dims dims(int32_t rank, const int64_t *d) { return kiln_dims_make(rank, d); }
/* A pointer to a shape literal: SHAPE(2, 3). */
#define SHAPE(...)                                                                                 \
    (&(kiln_dims){(int32_t)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), {__VA_ARGS__}})

static void unravel(int64_t lin, const kiln_dims *d, int64_t *idx)
{
    for (int32_t i = d->rank - 1; i >= 0; i--) {
        idx[i] = lin % d->d[i];
        lin /= d->d[i];
    }
}

static int64_t ravel(const int64_t *idx, const kiln_dims *d)
{
    int64_t l = 0;
    for (int32_t i = 0; i < d->rank; i++) l = l * d->d[i] + idx[i];
    return l;
}

/* Index into `s` (right-aligned against an index of rank `orank`, size-1 dims fixed at 0). */
static int64_t bcast_index(const int64_t *oidx, int32_t orank, const kiln_dims *s)
{
    int64_t idx[KILN_MAX_RANK];
    for (int32_t j = 0; j < s->rank; j++) idx[j] = s->d[j] == 1 ? 0 : oidx[j + orank - s->rank];
    return ravel(idx, s);
}

static ir_tensor rand_f32(tu_rng *r, const kiln_dims *d, float lo, float hi)
{
    ir_tensor t = tu_tensor_f32(d->rank, d->d, NULL);
    tu_fill(r, t.data, ir_tensor_count(&t), lo, hi);
    return t;
}

static ir_tensor scalar_i64(int64_t v) { return tu_tensor_i64(0, (int64_t[]){0}, &v); }

static float *alloc_f(int64_t n) { return calloc((size_t)(n > 0 ? n : 1), sizeof(float)); }

static void assert_shape(const ir_tensor *t, const kiln_dims *want)
{
    char a[KILN_DIMS_STR_MAX], b[KILN_DIMS_STR_MAX];
    if (!kiln_dims_equal(&t->shape, want))
        fail_msg("shape %s, expected %s", kiln_dims_str(&t->shape, a, sizeof a),
                 kiln_dims_str(want, b, sizeof b));
}

/* Runs only shape inference with input `rt` a network input (its value unknown). */
static kiln_status infer_runtime_input(const char *op, const kiln_attr *attrs, int32_t na,
                                       const ir_tensor *in, int32_t n_in, int32_t rt, int32_t n_out)
{
    ir_graph g;
    ir_graph_init(&g);
    char names[4][16];
    const char *inames[4], *onames[3] = {"o0", "o1", "o2"};
    ir_tensor view[4];
    kiln_status st = KILN_OK;
    for (int32_t i = 0; i < n_in; i++) {
        snprintf(names[i], sizeof names[i], "in%d", i);
        inames[i] = names[i];
        view[i] = in[i];
        if (i == rt) {
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
    st = ir_graph_add_node(&g, op, "node", inames, n_in, onames, n_out, attrs, na, &nid);
    if (st) goto done;
    ir_tensor out[3];
    memset(out, 0, sizeof out);
    ir_infer c = {.node = &g.nodes[nid], .n_in = n_in, .n_out = n_out, .in = view, .out = out};
    st = g.nodes[nid].op->infer(&c);
done:
    ir_graph_free(&g);
    return st;
}

/* ---- MatMul ---- */

/* numpy matmul by explicit multi-indices over the promoted shapes, in double. */
static void naive_matmul(const ir_tensor *a, const ir_tensor *b, float *y)
{
    kiln_dims as = a->shape, bs = b->shape;
    if (as.rank == 1) as = dims(2, (int64_t[]){1, a->shape.d[0]});
    if (bs.rank == 1) bs = dims(2, (int64_t[]){b->shape.d[0], 1});
    kiln_dims ab = dims(as.rank - 2, as.d), bb = dims(bs.rank - 2, bs.d), ob;
    assert_true(ir_broadcast(&ab, &bb, &ob));
    int64_t m = as.d[as.rank - 2], k = as.d[as.rank - 1], n = bs.d[bs.rank - 1];
    kiln_dims full = ob;
    full.d[full.rank++] = m;
    full.d[full.rank++] = n;
    int64_t cnt = kiln_dims_count(&full), idx[KILN_MAX_RANK], ai[KILN_MAX_RANK], bi[KILN_MAX_RANK];
    const float *av = a->data, *bv = b->data;
    for (int64_t l = 0; l < cnt; l++) {
        unravel(l, &full, idx);
        for (int32_t j = 0; j < ab.rank; j++) ai[j] = ab.d[j] == 1 ? 0 : idx[j + ob.rank - ab.rank];
        for (int32_t j = 0; j < bb.rank; j++) bi[j] = bb.d[j] == 1 ? 0 : idx[j + ob.rank - bb.rank];
        double s = 0;
        for (int64_t kk = 0; kk < k; kk++) {
            ai[ab.rank] = idx[ob.rank];
            ai[ab.rank + 1] = kk;
            bi[bb.rank] = kk;
            bi[bb.rank + 1] = idx[ob.rank + 1];
            s += (double)av[ravel(ai, &as)] * bv[ravel(bi, &bs)];
        }
        y[l] = (float)s;
    }
}

static void check_matmul(tu_rng *r, const kiln_dims *as, const kiln_dims *bs, const kiln_dims *want)
{
    ir_tensor in[2] = {rand_f32(r, as, -1, 1), rand_f32(r, bs, -1, 1)}, out[1];
    tu_run_op_ok("MatMul", NULL, 0, in, 2, out, 1);
    assert_shape(&out[0], want);
    int64_t cnt = ir_tensor_count(&out[0]);
    float *ref = alloc_f(cnt);
    naive_matmul(&in[0], &in[1], ref);
    tu_assert_close(out[0].data, ref, cnt, 1e-5);
    free(ref);
    tu_tensor_free(&in[0]);
    tu_tensor_free(&in[1]);
    tu_tensor_free(&out[0]);
}

static void test_matmul_hand(void **state)
{
    float a[] = {1, 2, 3, 4, 5, 6}, b[] = {7, 8, 9, 10, 11, 12};
    ir_tensor in[2] = {tu_tensor_f32(TU_DIMS(2, 3), a), tu_tensor_f32(TU_DIMS(3, 2), b)}, out[1];
    tu_run_op_ok("MatMul", NULL, 0, in, 2, out, 1);
    float want[] = {58, 64, 139, 154};
    assert_shape(&out[0], SHAPE(2, 2));
    tu_assert_close(out[0].data, want, 4, 1e-6);
    tu_tensor_free(&out[0]);
    /* 1-D on both sides: a scalar dot product */
    tu_tensor_free(&in[1]);
    in[0].shape = dims(TU_DIMS(3));
    in[1] = tu_tensor_f32(TU_DIMS(3), (float[]){1, -1, 2});
    tu_run_op_ok("MatMul", NULL, 0, in, 2, out, 1);
    assert_int_equal(out[0].shape.rank, 0);
    assert_true(((float *)out[0].data)[0] == 1 - 2 + 6);
    for (int i = 0; i < 2; i++) tu_tensor_free(&in[i]);
    tu_tensor_free(&out[0]);
}

static void test_matmul_promotion(void **state)
{
    tu_rng r = {11};
    check_matmul(&r, SHAPE(4), SHAPE(4, 3), SHAPE(3));
    check_matmul(&r, SHAPE(2, 4), SHAPE(4), SHAPE(2));
    check_matmul(&r, SHAPE(5), SHAPE(2, 3, 5, 4), SHAPE(2, 3, 4));
    check_matmul(&r, SHAPE(2, 3, 6, 5), SHAPE(5), SHAPE(2, 3, 6));
    check_matmul(&r, SHAPE(1, 1), SHAPE(1), SHAPE(1));
    /* empty inner dimension: zeros; empty outer: nothing */
    check_matmul(&r, SHAPE(3, 0), SHAPE(0, 2), SHAPE(3, 2));
    check_matmul(&r, SHAPE(0, 3), SHAPE(2, 3, 2), SHAPE(2, 0, 2));
}

static void test_matmul_random(void **state)
{
    tu_rng r = {12345};
    for (int it = 0; it < 300; it++) {
        int32_t ra = (int32_t)tu_int(&r, 1, 5), rb = (int32_t)tu_int(&r, 1, 5);
        int32_t nb = (ra > rb ? ra : rb) - 2;
        int64_t m = tu_int(&r, 1, 9), k = tu_int(&r, 1, 9), n = tu_int(&r, 1, 9);
        kiln_dims ob = {nb > 0 ? nb : 0, {0}};
        for (int32_t i = 0; i < ob.rank; i++) ob.d[i] = tu_int(&r, 1, 3);
        kiln_dims as = {0, {0}}, bs = {0, {0}}, want = {0, {0}};
        for (int32_t i = 0; i < ra - 2; i++)
            as.d[as.rank++] = tu_int(&r, 0, 2) ? ob.d[i + ob.rank - (ra - 2)] : 1;
        for (int32_t i = 0; i < rb - 2; i++)
            bs.d[bs.rank++] = tu_int(&r, 0, 2) ? ob.d[i + ob.rank - (rb - 2)] : 1;
        if (ra >= 2) as.d[as.rank++] = m;
        as.d[as.rank++] = k;
        bs.d[bs.rank++] = k;
        if (rb >= 2) bs.d[bs.rank++] = n;
        kiln_dims ab = dims(ra >= 2 ? ra - 2 : 0, as.d), bb = dims(rb >= 2 ? rb - 2 : 0, bs.d);
        assert_true(ir_broadcast(&ab, &bb, &want));
        if (ra >= 2) want.d[want.rank++] = m;
        if (rb >= 2) want.d[want.rank++] = n;
        check_matmul(&r, &as, &bs, &want);
    }
    /* past the kernel's tiles (256 columns, 128 deep), with ragged tails */
    check_matmul(&r, SHAPE(5, 300), SHAPE(300, 600), SHAPE(5, 600));
    check_matmul(&r, SHAPE(2, 3, 129), SHAPE(1, 129, 257), SHAPE(2, 3, 257));
    check_matmul(&r, SHAPE(16, 768), SHAPE(768, 200), SHAPE(16, 200));
}

static void test_matmul_int(void **state)
{
    tu_rng r = {77};
    for (int it = 0; it < 40; it++) {
        int64_t bt = tu_int(&r, 1, 3), m = tu_int(&r, 1, 6), k = tu_int(&r, 1, 6),
                n = tu_int(&r, 1, 6);
        bool i64 = it % 2 == 0;
        kiln_dtype dt = i64 ? KILN_DTYPE_I64 : KILN_DTYPE_I32;
        ir_tensor in[2] = {tu_tensor(dt, TU_DIMS(bt, m, k), NULL),
                           tu_tensor(dt, TU_DIMS(1, k, n), NULL)},
                  out[1];
        for (int j = 0; j < 2; j++)
            for (int64_t e = 0; e < ir_tensor_count(&in[j]); e++)
                ir_tensor_set(&in[j], e, (double)tu_int(&r, -50, 50));
        tu_run_op_ok("MatMul", NULL, 0, in, 2, out, 1);
        assert_int_equal(out[0].dtype, dt);
        for (int64_t b = 0; b < bt; b++)
            for (int64_t i = 0; i < m; i++)
                for (int64_t j = 0; j < n; j++) {
                    double s = 0;
                    for (int64_t kk = 0; kk < k; kk++)
                        s += ir_tensor_get(&in[0], (b * m + i) * k + kk) *
                             ir_tensor_get(&in[1], kk * n + j);
                    assert_true(ir_tensor_get(&out[0], (b * m + i) * n + j) == s);
                }
        for (int j = 0; j < 2; j++) tu_tensor_free(&in[j]);
        tu_tensor_free(&out[0]);
    }
}

/* f16 and bf16 MatMul (test_flexattention_fp16_expanded_ver26 needs it): small integers
 * keep every product and sum exact, so the result is exact in both types. */
static void test_matmul_half(void **state)
{
    tu_rng r = {78};
    for (int h = 0; h < 2; h++) {
        kiln_dtype dt = h ? KILN_DTYPE_BF16 : KILN_DTYPE_F16;
        uint16_t (*to)(float) = h ? kiln_f32_to_bf16 : kiln_f32_to_f16;
        float (*from)(uint16_t) = h ? kiln_bf16_to_f32 : kiln_f16_to_f32;
        int64_t bt = 2, m = 3, k = 4, n = 5;
        ir_tensor in[2] = {tu_tensor(dt, TU_DIMS(bt, m, k), NULL),
                           tu_tensor(dt, TU_DIMS(k, n), NULL)},
                  out[1];
        for (int j = 0; j < 2; j++)
            for (int64_t e = 0; e < ir_tensor_count(&in[j]); e++)
                ((uint16_t *)in[j].data)[e] = to((float)tu_int(&r, -8, 8));
        tu_run_op_ok("MatMul", NULL, 0, in, 2, out, 1);
        assert_int_equal(out[0].dtype, dt);
        assert_shape(&out[0], SHAPE(2, 3, 5));
        const uint16_t *a = in[0].data, *b = in[1].data, *c = out[0].data;
        for (int64_t t = 0; t < bt; t++)
            for (int64_t i = 0; i < m; i++)
                for (int64_t j = 0; j < n; j++) {
                    float s = 0;
                    for (int64_t kk = 0; kk < k; kk++)
                        s += from(a[(t * m + i) * k + kk]) * from(b[kk * n + j]);
                    assert_true(from(c[(t * m + i) * n + j]) == s);
                }
        for (int j = 0; j < 2; j++) tu_tensor_free(&in[j]);
        tu_tensor_free(&out[0]);
    }
}

static void test_matmul_errors(void **state)
{
    ir_tensor a = tu_tensor_f32(TU_DIMS(2, 3), NULL), b = tu_tensor_f32(TU_DIMS(4, 5), NULL);
    ir_tensor in[2] = {a, b};
    tu_expect_op_error("MatMul", NULL, 0, in, 2, 1, KILN_ERR_SHAPE,
                       "inner dimensions differ: A is 2x3, B is 4x5");
    tu_tensor_free(&in[0]);
    tu_tensor_free(&in[1]);
    in[0] = tu_tensor_f32(TU_DIMS(2, 2, 3), NULL);
    in[1] = tu_tensor_f32(TU_DIMS(3, 3, 4), NULL);
    tu_expect_op_error("MatMul", NULL, 0, in, 2, 1, KILN_ERR_SHAPE,
                       "batch dimensions do not broadcast");
    tu_tensor_free(&in[1]);
    in[1] = tu_tensor_f32(0, (int64_t[]){0}, NULL);
    tu_expect_op_error("MatMul", NULL, 0, in, 2, 1, KILN_ERR_SHAPE, "rank >= 1");
    tu_tensor_free(&in[1]);
    in[1] = tu_tensor_i64(TU_DIMS(3, 4), NULL);
    tu_expect_op_error("MatMul", NULL, 0, in, 2, 1, KILN_ERR_INVALID_GRAPH,
                       "A is f32 but B is i64");
    tu_tensor_free(&in[0]);
    tu_tensor_free(&in[1]);
    in[0] = tu_tensor(KILN_DTYPE_U8, TU_DIMS(2, 2), NULL);
    in[1] = tu_tensor(KILN_DTYPE_U8, TU_DIMS(2, 2), NULL);
    tu_expect_op_error("MatMul", NULL, 0, in, 2, 1, KILN_ERR_UNSUPPORTED, "dtype u8");
    tu_tensor_free(&in[0]);
    tu_tensor_free(&in[1]);
}

/* ---- Gemm ---- */

static void naive_gemm(const ir_tensor *a, const ir_tensor *b, const ir_tensor *c, bool ta, bool tb,
                       double alpha, double beta, float *y)
{
    int64_t m = a->shape.d[ta], k = a->shape.d[!ta], n = b->shape.d[!tb];
    const float *av = a->data, *bv = b->data;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t kk = 0; kk < k; kk++)
                s += (double)(ta ? av[kk * m + i] : av[i * k + kk]) *
                     (tb ? bv[j * k + kk] : bv[kk * n + j]);
            double cv = 0;
            if (c && ir_tensor_present(c)) {
                int64_t idx[2] = {i, j};
                cv = ((const float *)c->data)[bcast_index(idx, 2, &c->shape)];
            }
            y[i * n + j] = (float)(alpha * s + beta * cv);
        }
}

static void test_gemm_hand(void **state)
{
    /* A^T (A stored 3x2) times B (3x2) plus a row vector C */
    float a[] = {1, 4, 2, 5, 3, 6}, b[] = {7, 8, 9, 10, 11, 12}, c[] = {1, 2};
    ir_tensor in[3] = {tu_tensor_f32(TU_DIMS(3, 2), a), tu_tensor_f32(TU_DIMS(3, 2), b),
                       tu_tensor_f32(TU_DIMS(2), c)},
              out[1];
    kiln_attr at[] = {KILN_ATTR_I("transA", 1), KILN_ATTR_F("alpha", 2.0f),
                      KILN_ATTR_F("beta", -1.0f)};
    tu_run_op_ok("Gemm", at, 3, in, 3, out, 1);
    float want[] = {2 * 58 - 1, 2 * 64 - 2, 2 * 139 - 1, 2 * 154 - 2};
    assert_shape(&out[0], SHAPE(2, 2));
    tu_assert_close(out[0].data, want, 4, 1e-6);
    for (int i = 0; i < 3; i++) tu_tensor_free(&in[i]);
    tu_tensor_free(&out[0]);
}

static void test_gemm_random(void **state)
{
    tu_rng r = {999};
    for (int it = 0; it < 120; it++) {
        bool big = it % 30 == 29;
        int64_t m = big ? 7 : tu_int(&r, 1, 9), k = big ? 200 : tu_int(&r, 1, 9),
                n = big ? 150 : tu_int(&r, 1, 9);
        for (int t = 0; t < 4; t++) {
            bool ta = t & 1, tb = t >> 1;
            kiln_dims cshapes[] = {dims(TU_DIMS(m, n)), dims(TU_DIMS(n)),    dims(TU_DIMS(1)),
                                   dims(TU_DIMS(1, n)), dims(TU_DIMS(m, 1)), dims(TU_DIMS(1, 1)),
                                   dims(0, NULL)};
            int cs = (int)tu_int(&r, -1, 6);
            ir_tensor in[3] = {rand_f32(&r, ta ? SHAPE(k, m) : SHAPE(m, k), -1, 1),
                               rand_f32(&r, tb ? SHAPE(n, k) : SHAPE(k, n), -1, 1),
                               cs < 0 ? tu_absent() : rand_f32(&r, &cshapes[cs], -1, 1)},
                      out[1];
            float alpha = tu_uniform(&r, -2, 2), beta = it % 7 == 0 ? 0.0f : tu_uniform(&r, -2, 2);
            kiln_attr at[] = {KILN_ATTR_I("transA", ta), KILN_ATTR_I("transB", tb),
                              KILN_ATTR_F("alpha", alpha), KILN_ATTR_F("beta", beta)};
            tu_run_op_ok("Gemm", at, 4, in, cs < 0 ? 2 : 3, out, 1);
            assert_shape(&out[0], SHAPE(m, n));
            float *ref = alloc_f(m * n);
            naive_gemm(&in[0], &in[1], &in[2], ta, tb, alpha, beta, ref);
            tu_assert_close(out[0].data, ref, m * n, 1e-5);
            free(ref);
            for (int i = 0; i < 3; i++) tu_tensor_free(&in[i]);
            tu_tensor_free(&out[0]);
        }
    }
}

static void test_gemm_errors(void **state)
{
    ir_tensor in[3] = {tu_tensor_f32(TU_DIMS(2, 3), NULL), tu_tensor_f32(TU_DIMS(4, 5), NULL),
                       tu_absent()};
    tu_expect_op_error("Gemm", NULL, 0, in, 2, 1, KILN_ERR_SHAPE,
                       "inner dimensions differ: A is 2x3 (transA=0), B is 4x5 (transB=0)");
    kiln_attr tb = KILN_ATTR_I("transB", 1);
    tu_tensor_free(&in[1]);
    in[1] = tu_tensor_f32(TU_DIMS(5, 3), NULL);
    in[2] = tu_tensor_f32(TU_DIMS(3, 5), NULL);
    tu_expect_op_error("Gemm", &tb, 1, in, 3, 1, KILN_ERR_SHAPE,
                       "C of shape 3x5 does not broadcast to 2x5");
    tu_tensor_free(&in[2]);
    in[2] = tu_tensor_f32(TU_DIMS(1, 2, 5), NULL);
    tu_expect_op_error("Gemm", &tb, 1, in, 3, 1, KILN_ERR_SHAPE, "does not broadcast");
    tu_tensor_free(&in[0]);
    in[0] = tu_tensor_f32(TU_DIMS(1, 2, 3), NULL);
    tu_expect_op_error("Gemm", &tb, 1, in, 2, 1, KILN_ERR_SHAPE, "must be 2-D");
    tu_tensor_free(&in[2]);
    in[2] = tu_tensor_i64(TU_DIMS(5), NULL);
    tu_tensor_free(&in[0]);
    in[0] = tu_tensor_f32(TU_DIMS(2, 3), NULL);
    tu_expect_op_error("Gemm", &tb, 1, in, 3, 1, KILN_ERR_UNSUPPORTED, "input 'C' has dtype i64");
    for (int i = 0; i < 3; i++) tu_tensor_free(&in[i]);
}

/* ---- Softmax, LogSoftmax, Hardmax ---- */

static void naive_softmax(const char *op, const ir_tensor *x, int32_t axis, float *y)
{
    const kiln_dims *d = &x->shape;
    const float *xv = x->data;
    int64_t cnt = kiln_dims_count(d), idx[KILN_MAX_RANK];
    for (int64_t l = 0; l < cnt; l++) {
        unravel(l, d, idx);
        int64_t self = idx[axis];
        double mx = -INFINITY, s = 0;
        int64_t arg = -1;
        for (idx[axis] = 0; idx[axis] < d->d[axis]; idx[axis]++) {
            double v = xv[ravel(idx, d)];
            if (v > mx) {
                mx = v;
                arg = idx[axis];
            }
        }
        for (idx[axis] = 0; idx[axis] < d->d[axis]; idx[axis]++) s += exp(xv[ravel(idx, d)] - mx);
        double v = xv[l];
        if (strcmp(op, "Softmax") == 0)
            y[l] = (float)(exp(v - mx) / s);
        else if (strcmp(op, "LogSoftmax") == 0)
            y[l] = (float)(v - mx - log(s));
        else
            y[l] = arg == self ? 1.0f : 0.0f;
    }
}

static void test_softmax_hand(void **state)
{
    ir_tensor in[1] = {tu_tensor_f32(TU_DIMS(2, 3), (float[]){1, 2, 3, 1000, 1001, 1002})}, out[1];
    tu_run_op_ok("Softmax", NULL, 0, in, 1, out, 1);
    float want[] = {0.09003057f, 0.24472847f, 0.66524096f, 0.09003057f, 0.24472847f, 0.66524096f};
    tu_assert_close(out[0].data, want, 6, 1e-6);
    tu_tensor_free(&out[0]);
    tu_run_op_ok("LogSoftmax", NULL, 0, in, 1, out, 1);
    float lw[] = {-2.40760596f, -1.40760596f, -0.40760596f,
                  -2.40760596f, -1.40760596f, -0.40760596f};
    tu_assert_close(out[0].data, lw, 6, 1e-6);
    tu_tensor_free(&out[0]);
    /* axis 0: columns; Hardmax picks the first of equal maxima */
    kiln_attr ax0 = KILN_ATTR_I("axis", 0);
    tu_tensor_free(&in[0]);
    in[0] = tu_tensor_f32(TU_DIMS(2, 3), (float[]){5, 2, 7, 5, 3, 1});
    tu_run_op_ok("Hardmax", &ax0, 1, in, 1, out, 1);
    float hw[] = {1, 0, 1, 0, 1, 0};
    assert_memory_equal(out[0].data, hw, sizeof hw);
    tu_tensor_free(&out[0]);
    tu_tensor_free(&in[0]);
}

static void test_softmax_random(void **state)
{
    static const char *ops[] = {"Softmax", "LogSoftmax", "Hardmax"};
    tu_rng r = {31337};
    for (int it = 0; it < 150; it++) {
        kiln_dims d = {(int32_t)tu_int(&r, 1, 4), {0}};
        for (int32_t i = 0; i < d.rank; i++) d.d[i] = tu_int(&r, 1, 6);
        if (it % 25 == 0) d = it % 50 ? dims(TU_DIMS(3, 130)) : dims(TU_DIMS(2, 3, 70));
        for (int32_t axis = -d.rank; axis < d.rank; axis++) {
            const char *op = ops[tu_int(&r, 0, 2)];
            ir_tensor in[1] = {rand_f32(&r, &d, -5, 5)}, out[1];
            kiln_attr at = KILN_ATTR_I("axis", axis);
            tu_run_op_ok(op, &at, 1, in, 1, out, 1);
            assert_shape(&out[0], &d);
            int64_t cnt = ir_tensor_count(&in[0]);
            float *ref = alloc_f(cnt);
            naive_softmax(op, &in[0], axis < 0 ? axis + d.rank : axis, ref);
            tu_assert_close(out[0].data, ref, cnt, 1e-5);
            free(ref);
            tu_tensor_free(&in[0]);
            tu_tensor_free(&out[0]);
        }
    }
}

static void test_softmax_errors(void **state)
{
    ir_tensor in[1] = {tu_tensor_f32(TU_DIMS(2, 3), NULL)};
    kiln_attr at = KILN_ATTR_I("axis", 2);
    tu_expect_op_error("Softmax", &at, 1, in, 1, 1, KILN_ERR_SHAPE,
                       "axis 2 is out of range for a rank-2");
    at.i = INT64_MIN;
    tu_expect_op_error("LogSoftmax", &at, 1, in, 1, 1, KILN_ERR_SHAPE, "out of range");
    tu_tensor_free(&in[0]);
    in[0] = tu_tensor_f32(0, (int64_t[]){0}, NULL);
    tu_expect_op_error("Hardmax", NULL, 0, in, 1, 1, KILN_ERR_SHAPE, "scalar");
    tu_tensor_free(&in[0]);
    in[0] = tu_tensor_i64(TU_DIMS(3), NULL);
    tu_expect_op_error("Softmax", NULL, 0, in, 1, 1, KILN_ERR_UNSUPPORTED,
                       "dtype i64, expected f32");
    tu_tensor_free(&in[0]);
}

/* ---- LayerNormalization ---- */

static void naive_layernorm(const ir_tensor *x, const ir_tensor *sc, const ir_tensor *b,
                            int32_t axis, double eps, float *y, float *mean, float *inv)
{
    const kiln_dims *d = &x->shape;
    int64_t outer = 1, n = 1, idx[KILN_MAX_RANK];
    for (int32_t i = 0; i < d->rank; i++) *(i < axis ? &outer : &n) *= d->d[i];
    const float *xv = x->data;
    for (int64_t o = 0; o < outer; o++) {
        double s = 0, ss = 0;
        for (int64_t j = 0; j < n; j++) s += xv[o * n + j];
        double mu = s / (double)n;
        for (int64_t j = 0; j < n; j++) ss += (xv[o * n + j] - mu) * (xv[o * n + j] - mu);
        double is = 1.0 / sqrt(ss / (double)n + eps);
        mean[o] = (float)mu;
        inv[o] = (float)is;
        for (int64_t j = 0; j < n; j++) {
            unravel(o * n + j, d, idx);
            double v = (xv[o * n + j] - mu) * is *
                       ((const float *)sc->data)[bcast_index(idx, d->rank, &sc->shape)];
            if (ir_tensor_present(b))
                v += ((const float *)b->data)[bcast_index(idx, d->rank, &b->shape)];
            y[o * n + j] = (float)v;
        }
    }
}

/* A shape that broadcasts to `d`: its trailing dims from `from` on, each kept or set to 1
 * with probability `p1` percent. */
static kiln_dims rand_operand(tu_rng *r, const kiln_dims *d, int32_t from, int p1)
{
    kiln_dims s = {0, {0}};
    for (int32_t i = from; i < d->rank; i++) s.d[s.rank++] = tu_int(r, 0, 99) < p1 ? 1 : d->d[i];
    return s;
}

static void test_layernorm(void **state)
{
    tu_rng r = {4242};
    /* hand case: one row [1, 2, 3, 4]: mean 2.5, var 1.25 */
    {
        ir_tensor in[3] = {tu_tensor_f32(TU_DIMS(1, 4), (float[]){1, 2, 3, 4}),
                           tu_tensor_f32(TU_DIMS(4), (float[]){1, 1, 2, 2}),
                           tu_tensor_f32(TU_DIMS(4), (float[]){0, 1, 0, 1})},
                  out[3];
        kiln_attr eps = KILN_ATTR_F("epsilon", 0.0f);
        tu_run_op_ok("LayerNormalization", &eps, 1, in, 3, out, 3);
        double is = 1 / sqrt(1.25);
        float want[] = {(float)(-1.5 * is), (float)(-0.5 * is + 1), (float)(0.5 * is * 2),
                        (float)(1.5 * is * 2 + 1)};
        tu_assert_close(out[0].data, want, 4, 1e-6);
        assert_shape(&out[1], SHAPE(1, 1));
        assert_true(fabsf(((float *)out[1].data)[0] - 2.5f) < 1e-6f);
        assert_true(fabsf(((float *)out[2].data)[0] - (float)is) < 1e-6f);
        for (int i = 0; i < 3; i++) {
            tu_tensor_free(&in[i]);
            tu_tensor_free(&out[i]);
        }
    }
    for (int it = 0; it < 100; it++) {
        kiln_dims d = {(int32_t)tu_int(&r, 1, 4), {0}};
        for (int32_t i = 0; i < d.rank; i++) d.d[i] = tu_int(&r, 1, 6);
        if (it == 99) d = dims(TU_DIMS(3, 768));
        for (int32_t axis = -d.rank; axis < d.rank; axis++) {
            int32_t a = axis < 0 ? axis + d.rank : axis;
            int kind = (int)tu_int(&r, 0, 3);
            /* exact normalized shape, with leading 1s, broadcast inside it, or spanning X */
            kiln_dims ss = kind == 0   ? rand_operand(&r, &d, a, 0)
                           : kind == 1 ? rand_operand(&r, &d, 0, 0)
                           : kind == 2 ? rand_operand(&r, &d, a, 40)
                                       : rand_operand(&r, &d, 0, 50);
            if (kind == 1)
                for (int32_t i = 0; i < a; i++) ss.d[i] = 1;
            bool has_b = tu_int(&r, 0, 1);
            kiln_dims bs = rand_operand(&r, &d, (int32_t)tu_int(&r, 0, a), 30);
            int32_t n_out = (int32_t)tu_int(&r, 1, 3);
            ir_tensor in[3] = {rand_f32(&r, &d, -3, 5), rand_f32(&r, &ss, 0.5f, 2),
                               has_b ? rand_f32(&r, &bs, -1, 1) : tu_absent()},
                      out[3];
            float e = tu_uniform(&r, 1e-5f, 1e-2f);
            kiln_attr at[] = {KILN_ATTR_I("axis", axis), KILN_ATTR_F("epsilon", e)};
            tu_run_op_ok("LayerNormalization", at, 2, in, has_b ? 3 : 2, out, n_out);
            int64_t cnt = ir_tensor_count(&in[0]), outer = 1;
            for (int32_t i = 0; i < a; i++) outer *= d.d[i];
            float *ry = alloc_f(cnt), *rm = alloc_f(outer), *ri = alloc_f(outer);
            naive_layernorm(&in[0], &in[1], &in[2], a, e, ry, rm, ri);
            assert_shape(&out[0], &d);
            tu_assert_close(out[0].data, ry, cnt, 1e-5);
            kiln_dims sd = d;
            for (int32_t i = a; i < sd.rank; i++) sd.d[i] = 1;
            if (n_out > 1) {
                assert_shape(&out[1], &sd);
                tu_assert_close(out[1].data, rm, outer, 1e-5);
            }
            if (n_out > 2) {
                assert_shape(&out[2], &sd);
                tu_assert_close(out[2].data, ri, outer, 1e-5);
            }
            free(ry);
            free(rm);
            free(ri);
            for (int i = 0; i < 3; i++) tu_tensor_free(&in[i]);
            for (int i = 0; i < n_out; i++) tu_tensor_free(&out[i]);
        }
    }
}

static void test_layernorm_errors(void **state)
{
    ir_tensor in[3] = {tu_tensor_f32(TU_DIMS(2, 4), NULL), tu_tensor_f32(TU_DIMS(5), NULL),
                       tu_absent()};
    tu_expect_op_error("LayerNormalization", NULL, 0, in, 2, 1, KILN_ERR_SHAPE,
                       "Scale of shape 5 does not broadcast to X's 2x4");
    tu_tensor_free(&in[1]);
    in[1] = tu_tensor_f32(TU_DIMS(4), NULL);
    in[2] = tu_tensor_f32(TU_DIMS(3, 4), NULL);
    tu_expect_op_error("LayerNormalization", NULL, 0, in, 3, 1, KILN_ERR_SHAPE, "B of shape 3x4");
    kiln_attr st = KILN_ATTR_I("stash_type", 11);
    tu_expect_op_error("LayerNormalization", &st, 1, in, 2, 1, KILN_ERR_UNSUPPORTED,
                       "stash_type 11");
    kiln_attr ax = KILN_ATTR_I("axis", -3);
    tu_expect_op_error("LayerNormalization", &ax, 1, in, 2, 3, KILN_ERR_SHAPE,
                       "axis -3 is out of range");
    tu_tensor_free(&in[2]);
    in[2] = tu_tensor_i64(TU_DIMS(4), NULL);
    tu_expect_op_error("LayerNormalization", NULL, 0, in, 3, 1, KILN_ERR_UNSUPPORTED,
                       "input 'B' has dtype i64");
    for (int i = 0; i < 3; i++) tu_tensor_free(&in[i]);
}

/* ---- Reduce family ---- */

static const char *g_reduce_ops[] = {
    "ReduceSum", "ReduceMean", "ReduceMax",       "ReduceMin",    "ReduceProd",
    "ReduceL1",  "ReduceL2",   "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp"};
enum { N_REDUCE = 10 };

/* Folds every input element into the output slot its kept coordinates name, in double. */
static void naive_reduce(int op, const ir_tensor *x, const bool *mask, float *y)
{
    const kiln_dims *d = &x->shape;
    kiln_dims od = *d;
    for (int32_t i = 0; i < d->rank; i++)
        if (mask[i]) od.d[i] = 1;
    int64_t on = kiln_dims_count(&od), n = kiln_dims_count(d), idx[KILN_MAX_RANK];
    double *acc = calloc((size_t)on + 1, sizeof(double));
    int64_t *cnt = calloc((size_t)on + 1, sizeof(int64_t));
    for (int64_t o = 0; o < on; o++) acc[o] = op == 2 ? -INFINITY : op == 3 ? INFINITY : op == 4;
    for (int64_t l = 0; l < n; l++) {
        unravel(l, d, idx);
        for (int32_t i = 0; i < d->rank; i++)
            if (mask[i]) idx[i] = 0;
        int64_t o = ravel(idx, &od);
        double v = ((const float *)x->data)[l];
        cnt[o]++;
        switch (op) {
        case 2: acc[o] = fmax(acc[o], v); break;
        case 3: acc[o] = fmin(acc[o], v); break;
        case 4: acc[o] *= v; break;
        case 5: acc[o] += fabs(v); break;
        case 6:
        case 7: acc[o] += v * v; break;
        case 9: acc[o] += exp(v); break;
        default: acc[o] += v; break;
        }
    }
    for (int64_t o = 0; o < on; o++) {
        double v = acc[o];
        switch (op) {
        case 1: v = cnt[o] ? v / (double)cnt[o] : NAN; break;
        case 6: v = sqrt(v); break;
        case 8:
        case 9: v = log(v); break;
        default: break;
        }
        y[o] = (float)v;
    }
    free(acc);
    free(cnt);
}

static void test_reduce_hand(void **state)
{
    /* 2x3 [[1, -2, 3], [4, 5, -6]] over axis 1 */
    float x[] = {1, -2, 3, 4, 5, -6};
    float want[N_REDUCE][2] = {
        {2, 3},
        {2.0f / 3, 1},
        {3, 5},
        {-2, -6},
        {-6, -120},
        {6, 15},
        {(float)sqrt(14), (float)sqrt(77)},
        {14, 77},
        {(float)log(2), (float)log(3)},
        {(float)log(exp(1) + exp(-2) + exp(3)), (float)log(exp(4) + exp(5) + exp(-6))}};
    ir_tensor in[2] = {tu_tensor_f32(TU_DIMS(2, 3), x), tu_tensor_i64(TU_DIMS(1), (int64_t[]){-1})},
              out[1];
    for (int op = 0; op < N_REDUCE; op++) {
        tu_run_op_ok(g_reduce_ops[op], NULL, 0, in, 2, out, 1);
        assert_shape(&out[0], SHAPE(2, 1));
        tu_assert_close(out[0].data, want[op], 2, 1e-6);
        tu_tensor_free(&out[0]);
    }
    /* keepdims=0, all axes by default: a scalar */
    kiln_attr kd = KILN_ATTR_I("keepdims", 0);
    tu_run_op_ok("ReduceSum", &kd, 1, in, 1, out, 1);
    assert_int_equal(out[0].shape.rank, 0);
    assert_true(((float *)out[0].data)[0] == 5.0f);
    tu_tensor_free(&out[0]);
    /* empty axes with noop: the input, squared for SumSquare */
    tu_tensor_free(&in[1]);
    in[1] = tu_tensor_i64(TU_DIMS(0), NULL);
    kiln_attr noop = KILN_ATTR_I("noop_with_empty_axes", 1);
    tu_run_op_ok("ReduceSumSquare", &noop, 1, in, 2, out, 1);
    float sq[] = {1, 4, 9, 16, 25, 36};
    assert_shape(&out[0], SHAPE(2, 3));
    tu_assert_close(out[0].data, sq, 6, 1e-7);
    tu_tensor_free(&out[0]);
    /* empty axes without noop: everything */
    tu_run_op_ok("ReduceMax", NULL, 0, in, 2, out, 1);
    assert_shape(&out[0], SHAPE(1, 1));
    assert_true(((float *)out[0].data)[0] == 5.0f);
    tu_tensor_free(&out[0]);
    /* the pre-opset-18 attribute form */
    kiln_attr axes_attr = KILN_ATTR_IS("axes", ((int64_t[]){0}), 1);
    tu_run_op_ok("ReduceMean", &axes_attr, 1, in, 1, out, 1);
    float m0[] = {2.5f, 1.5f, -1.5f};
    assert_shape(&out[0], SHAPE(1, 3));
    tu_assert_close(out[0].data, m0, 3, 1e-7);
    tu_tensor_free(&out[0]);
    /* a NaN wins in max and min */
    ((float *)in[0].data)[4] = NAN;
    kiln_attr ax1 = KILN_ATTR_IS("axes", ((int64_t[]){1}), 1);
    tu_run_op_ok("ReduceMin", &ax1, 1, in, 1, out, 1);
    assert_true(((float *)out[0].data)[0] == -2.0f && isnan(((float *)out[0].data)[1]));
    tu_tensor_free(&out[0]);
    for (int i = 0; i < 2; i++) tu_tensor_free(&in[i]);
}

static void check_reduce(tu_rng *r, int op, const kiln_dims *d, const int64_t *axes, int32_t n_axes,
                         bool axes_input, bool keep, bool noop)
{
    float lo = op == 4 ? 0.5f : op == 8 ? 0.1f : -2.0f, hi = op == 4 ? 1.5f : 2.0f;
    ir_tensor in[2] = {rand_f32(r, d, lo, hi),
                       axes_input ? tu_tensor_i64(1, (int64_t[]){n_axes}, axes) : tu_absent()},
              out[1];
    kiln_attr at[] = {KILN_ATTR_I("keepdims", keep), KILN_ATTR_I("noop_with_empty_axes", noop)};
    tu_run_op_ok(g_reduce_ops[op], at, 2, in, axes_input ? 2 : 1, out, 1);
    bool mask[KILN_MAX_RANK] = {false};
    for (int32_t i = 0; i < n_axes; i++) mask[axes[i] < 0 ? axes[i] + d->rank : axes[i]] = true;
    if (n_axes == 0 && !noop)
        for (int32_t i = 0; i < d->rank; i++) mask[i] = true;
    kiln_dims want = {0, {0}};
    for (int32_t i = 0; i < d->rank; i++)
        if (!mask[i] || keep) want.d[want.rank++] = mask[i] ? 1 : d->d[i];
    assert_shape(&out[0], &want);
    int64_t cnt = kiln_dims_count(&want);
    float *ref = alloc_f(cnt);
    naive_reduce(op, &in[0], mask, ref);
    tu_assert_close(out[0].data, ref, cnt, 1e-5);
    free(ref);
    tu_tensor_free(&in[0]);
    tu_tensor_free(&in[1]);
    tu_tensor_free(&out[0]);
}

static void test_reduce_random(void **state)
{
    tu_rng r = {2024};
    for (int it = 0; it < 600; it++) {
        int op = (int)tu_int(&r, 0, N_REDUCE - 1);
        kiln_dims d = {(int32_t)tu_int(&r, 0, 5), {0}};
        for (int32_t i = 0; i < d.rank; i++) d.d[i] = tu_int(&r, 1, 5);
        /* a random subset of the axes in random order, each maybe negative */
        int64_t axes[KILN_MAX_RANK];
        int32_t n = 0;
        for (int32_t i = 0; i < d.rank; i++)
            if (tu_int(&r, 0, 1)) axes[n++] = tu_int(&r, 0, 1) ? i : i - d.rank;
        for (int32_t i = n - 1; i > 0; i--) {
            int32_t j = (int32_t)tu_int(&r, 0, i);
            int64_t t = axes[i];
            axes[i] = axes[j];
            axes[j] = t;
        }
        bool as_input = n > 0 || tu_int(&r, 0, 1);
        check_reduce(&r, op, &d, axes, n, as_input, tu_int(&r, 0, 1), tu_int(&r, 0, 1));
    }
    /* chunks of adjacent outputs past 64, long contiguous rows, strided outer groups */
    for (int op = 0; op < N_REDUCE; op++) {
        check_reduce(&r, op, SHAPE(3, 5, 130), (int64_t[]){1}, 1, true, true, false);
        check_reduce(&r, op, SHAPE(4, 1000), (int64_t[]){-1}, 1, true, false, false);
        check_reduce(&r, op, SHAPE(200, 3), (int64_t[]){0}, 1, true, true, false);
        check_reduce(&r, op, SHAPE(3, 4, 5, 6), (int64_t[]){0, 2}, 2, true, false, false);
        check_reduce(&r, op, SHAPE(3, 4, 5, 6), (int64_t[]){3, 1}, 2, true, true, false);
        check_reduce(&r, op, SHAPE(2, 1, 3, 1, 4), (int64_t[]){1, 2}, 2, true, true, false);
    }
}

static void test_reduce_empty_and_scalar(void **state)
{
    /* folding an empty axis: each op's empty-set value */
    float want[N_REDUCE] = {0, NAN, -INFINITY, INFINITY, 1, 0, 0, 0, -INFINITY, -INFINITY};
    ir_tensor in[2] = {tu_tensor_f32(TU_DIMS(2, 0, 3), NULL),
                       tu_tensor_i64(TU_DIMS(1), (int64_t[]){1})},
              out[1];
    for (int op = 0; op < N_REDUCE; op++) {
        tu_run_op_ok(g_reduce_ops[op], NULL, 0, in, 2, out, 1);
        assert_shape(&out[0], SHAPE(2, 1, 3));
        for (int i = 0; i < 6; i++) {
            float v = ((float *)out[0].data)[i];
            assert_true(isnan(want[op]) ? isnan(v) : v == want[op]);
        }
        tu_tensor_free(&out[0]);
    }
    /* an empty kept dim: an empty output */
    ((int64_t *)in[1].data)[0] = 2;
    tu_run_op_ok("ReduceLogSumExp", NULL, 0, in, 2, out, 1);
    assert_shape(&out[0], SHAPE(2, 0, 1));
    tu_tensor_free(&out[0]);
    tu_tensor_free(&in[0]);
    tu_tensor_free(&in[1]);
    /* rank 0: nothing to fold, the op applies to the one element */
    float v = -3;
    in[0] = tu_tensor_f32(0, (int64_t[]){0}, &v);
    float w[N_REDUCE] = {-3, -3, -3, -3, -3, 3, 3, 9, NAN, -3};
    for (int op = 0; op < N_REDUCE; op++) {
        tu_run_op_ok(g_reduce_ops[op], NULL, 0, in, 1, out, 1);
        assert_int_equal(out[0].shape.rank, 0);
        float g = ((float *)out[0].data)[0];
        assert_true(isnan(w[op]) ? isnan(g) : fabsf(g - w[op]) < 1e-6f);
        tu_tensor_free(&out[0]);
    }
    tu_tensor_free(&in[0]);
}

static void test_reduce_int(void **state)
{
    static const int ops[] = {0, 2, 3, 4, 5, 7}; /* Sum Max Min Prod L1 SumSquare */
    tu_rng r = {55};
    for (int it = 0; it < 120; it++) {
        int op = ops[tu_int(&r, 0, 5)];
        kiln_dtype dt = it % 2 ? KILN_DTYPE_I32 : KILN_DTYPE_I64;
        kiln_dims d = {(int32_t)tu_int(&r, 1, 3), {0}};
        for (int32_t i = 0; i < d.rank; i++) d.d[i] = tu_int(&r, 1, 4);
        int64_t ax = tu_int(&r, -d.rank, d.rank - 1);
        ir_tensor in[2] = {tu_tensor(dt, d.rank, d.d, NULL), tu_tensor_i64(TU_DIMS(1), &ax)},
                  out[1];
        int64_t n = ir_tensor_count(&in[0]);
        for (int64_t e = 0; e < n; e++) ir_tensor_set(&in[0], e, (double)tu_int(&r, -9, 9));
        kiln_attr kd = KILN_ATTR_I("keepdims", it % 3 == 0 ? 0 : 1);
        tu_run_op_ok(g_reduce_ops[op], &kd, 1, in, 2, out, 1);
        assert_int_equal(out[0].dtype, dt);
        /* the float reference is exact for these magnitudes */
        ir_tensor xf = tu_tensor_f32(d.rank, d.d, NULL);
        for (int64_t e = 0; e < n; e++) ((float *)xf.data)[e] = (float)ir_tensor_get(&in[0], e);
        bool mask[KILN_MAX_RANK] = {false};
        mask[ax < 0 ? ax + d.rank : ax] = true;
        int64_t on = ir_tensor_count(&out[0]);
        float *ref = alloc_f(on);
        naive_reduce(op, &xf, mask, ref);
        for (int64_t o = 0; o < on; o++) assert_true(ir_tensor_get(&out[0], o) == ref[o]);
        free(ref);
        tu_tensor_free(&xf);
        tu_tensor_free(&in[0]);
        tu_tensor_free(&in[1]);
        tu_tensor_free(&out[0]);
    }
    /* empty max of i32: the dtype's minimum */
    ir_tensor in[2] = {tu_tensor(KILN_DTYPE_I32, TU_DIMS(0, 2), NULL),
                       tu_tensor_i64(TU_DIMS(1), (int64_t[]){0})},
              out[1];
    tu_run_op_ok("ReduceMax", NULL, 0, in, 2, out, 1);
    assert_int_equal(((int32_t *)out[0].data)[1], INT32_MIN);
    tu_tensor_free(&out[0]);
    tu_tensor_free(&in[0]);
    tu_tensor_free(&in[1]);
    /* bool ReduceMax / ReduceMin are any / all; the empty set gives false / true
     * (test_reduce_max_bool_inputs, test_reduce_max_empty_set_bool) */
    uint8_t b[] = {1, 1, 1, 0, 0, 1, 0, 0};
    in[0] = tu_tensor(KILN_DTYPE_BOOL, TU_DIMS(4, 2), b);
    in[1] = tu_tensor_i64(TU_DIMS(1), (int64_t[]){1});
    tu_run_op_ok("ReduceMax", NULL, 0, in, 2, out, 1);
    assert_int_equal(out[0].dtype, KILN_DTYPE_BOOL);
    assert_memory_equal(out[0].data, ((uint8_t[]){1, 1, 1, 0}), 4);
    tu_tensor_free(&out[0]);
    tu_run_op_ok("ReduceMin", NULL, 0, in, 2, out, 1);
    assert_memory_equal(out[0].data, ((uint8_t[]){1, 0, 0, 0}), 4);
    tu_tensor_free(&out[0]);
    tu_tensor_free(&in[0]);
    in[0] = tu_tensor(KILN_DTYPE_BOOL, TU_DIMS(2, 0), NULL);
    tu_run_op_ok("ReduceMax", NULL, 0, in, 2, out, 1);
    assert_memory_equal(out[0].data, ((uint8_t[]){0, 0}), 2);
    tu_tensor_free(&out[0]);
    tu_run_op_ok("ReduceMin", NULL, 0, in, 2, out, 1);
    assert_memory_equal(out[0].data, ((uint8_t[]){1, 1}), 2);
    tu_tensor_free(&out[0]);
    tu_tensor_free(&in[0]);
    tu_tensor_free(&in[1]);
}

static void test_reduce_errors(void **state)
{
    ir_tensor in[2] = {tu_tensor_f32(TU_DIMS(2, 3, 4), NULL),
                       tu_tensor_i64(TU_DIMS(2), (int64_t[]){1, -2})};
    tu_expect_op_error("ReduceSum", NULL, 0, in, 2, 1, KILN_ERR_INVALID_GRAPH,
                       "axis -2 appears twice");
    ((int64_t *)in[1].data)[1] = 3;
    tu_expect_op_error("ReduceMean", NULL, 0, in, 2, 1, KILN_ERR_SHAPE,
                       "axis 3 is out of range for a rank-3 input");
    ((int64_t *)in[1].data)[1] = 0;
    kiln_attr both = KILN_ATTR_IS("axes", ((int64_t[]){1}), 1);
    tu_expect_op_error("ReduceMax", &both, 1, in, 2, 1, KILN_ERR_INVALID_GRAPH, "both");
    kiln_attr dup = KILN_ATTR_IS("axes", ((int64_t[]){2, 2}), 2);
    tu_expect_op_error("ReduceMin", &dup, 1, in, 1, 1, KILN_ERR_INVALID_GRAPH, "appears twice");
    /* axes only known at run time */
    kiln_status st = infer_runtime_input("ReduceSum", NULL, 0, in, 2, 1, 1);
    assert_int_equal(st, KILN_ERR_UNSUPPORTED);
    assert_non_null(strstr(kiln_last_error(), "node 'node'"));
    assert_non_null(
        strstr(kiln_last_error(), "input 'axes' must be a constant known at build time"));
    tu_tensor_free(&in[1]);
    /* empty axes are known from the shape alone, whether or not the input holds data
     * (an empty initializer has none: ONNX test_reduce_sum_default_axes_keepdims_*) */
    in[1] = tu_tensor_i64(TU_DIMS(0), NULL);
    assert_int_equal(infer_runtime_input("ReduceSum", NULL, 0, in, 2, 1, 1), KILN_OK);
    free(in[1].data);
    in[1].data = NULL;
    {
        ir_tensor x[2] = {tu_tensor_f32(TU_DIMS(2, 2), (float[]){1, 2, 3, 4}), in[1]}, out[1];
        tu_run_op_ok("ReduceSum", NULL, 0, x, 2, out, 1);
        assert_shape(&out[0], SHAPE(1, 1));
        assert_true(((float *)out[0].data)[0] == 10.0f);
        tu_tensor_free(&out[0]);
        tu_tensor_free(&x[0]);
    }
    in[1] = tu_tensor_f32(TU_DIMS(1), (float[]){1});
    tu_expect_op_error("ReduceL2", NULL, 0, in, 2, 1, KILN_ERR_INVALID_GRAPH,
                       "input 'axes' must be i64");
    tu_tensor_free(&in[1]);
    in[1] = tu_tensor_i64(TU_DIMS(1, 1), (int64_t[]){0});
    tu_expect_op_error("ReduceL1", NULL, 0, in, 2, 1, KILN_ERR_SHAPE, "must be 1-D");
    tu_tensor_free(&in[0]);
    in[0] = tu_tensor_i64(TU_DIMS(2, 3), NULL);
    tu_expect_op_error("ReduceMean", NULL, 0, in, 1, 1, KILN_ERR_UNSUPPORTED,
                       "dtype i64, expected f32");
    tu_expect_op_error("ReduceLogSumExp", NULL, 0, in, 1, 1, KILN_ERR_UNSUPPORTED, "dtype i64");
    tu_tensor_free(&in[0]);
    in[0] = tu_tensor_f32(0, (int64_t[]){0}, NULL);
    tu_tensor_free(&in[1]);
    in[1] = tu_tensor_i64(TU_DIMS(1), (int64_t[]){0});
    tu_expect_op_error("ReduceProd", NULL, 0, in, 2, 1, KILN_ERR_SHAPE, "scalar");
    tu_tensor_free(&in[0]);
    tu_tensor_free(&in[1]);
}

/* ---- ArgMax, ArgMin ---- */

static void test_argmax(void **state)
{
    float x[] = {1, 3, 3, 5, 2, 5};
    ir_tensor in[1] = {tu_tensor_f32(TU_DIMS(2, 3), x)}, out[1];
    kiln_attr a1[] = {KILN_ATTR_I("axis", 1), KILN_ATTR_I("keepdims", 0)};
    tu_run_op_ok("ArgMax", a1, 2, in, 1, out, 1);
    assert_shape(&out[0], SHAPE(2));
    assert_int_equal(out[0].dtype, KILN_DTYPE_I64);
    assert_memory_equal(out[0].data, ((int64_t[]){1, 0}), 16);
    tu_tensor_free(&out[0]);
    kiln_attr a2[] = {KILN_ATTR_I("axis", -1), KILN_ATTR_I("select_last_index", 1)};
    tu_run_op_ok("ArgMax", a2, 2, in, 1, out, 1);
    assert_shape(&out[0], SHAPE(2, 1));
    assert_memory_equal(out[0].data, ((int64_t[]){2, 2}), 16);
    tu_tensor_free(&out[0]);
    tu_run_op_ok("ArgMin", NULL, 0, in, 1, out, 1); /* axis 0 by default */
    assert_shape(&out[0], SHAPE(1, 3));
    assert_memory_equal(out[0].data, ((int64_t[]){0, 1, 0}), 24);
    tu_tensor_free(&out[0]);
    tu_tensor_free(&in[0]);

    tu_rng r = {8};
    for (int it = 0; it < 150; it++) {
        kiln_dims d = {(int32_t)tu_int(&r, 1, 4), {0}};
        for (int32_t i = 0; i < d.rank; i++) d.d[i] = tu_int(&r, 1, 5);
        kiln_dtype dt = it % 3 == 0   ? KILN_DTYPE_F32
                        : it % 3 == 1 ? KILN_DTYPE_I64
                                      : KILN_DTYPE_I32;
        ir_tensor t[1] = {tu_tensor(dt, d.rank, d.d, NULL)}, o[1];
        int64_t n = ir_tensor_count(&t[0]), idx[KILN_MAX_RANK];
        for (int64_t e = 0; e < n; e++) ir_tensor_set(&t[0], e, (double)tu_int(&r, -3, 3));
        int64_t axis = tu_int(&r, -d.rank, d.rank - 1);
        int32_t a = (int32_t)(axis < 0 ? axis + d.rank : axis);
        bool mx = tu_int(&r, 0, 1), last = tu_int(&r, 0, 1);
        kiln_attr at[] = {KILN_ATTR_I("axis", axis), KILN_ATTR_I("select_last_index", last)};
        tu_run_op_ok(mx ? "ArgMax" : "ArgMin", at, 2, t, 1, o, 1);
        kiln_dims od = d;
        od.d[a] = 1;
        assert_shape(&o[0], &od);
        for (int64_t l = 0; l < kiln_dims_count(&od); l++) {
            unravel(l, &od, idx);
            int64_t best = -1;
            double bv = 0;
            for (idx[a] = 0; idx[a] < d.d[a]; idx[a]++) {
                double v = ir_tensor_get(&t[0], ravel(idx, &d));
                if (best < 0 || (mx ? v > bv : v < bv) || (last && v == bv)) {
                    best = idx[a];
                    bv = v;
                }
            }
            assert_int_equal(((int64_t *)o[0].data)[l], best);
        }
        tu_tensor_free(&t[0]);
        tu_tensor_free(&o[0]);
    }
    /* errors: an empty axis, a bad axis */
    in[0] = tu_tensor_f32(TU_DIMS(2, 0), NULL);
    kiln_attr ax = KILN_ATTR_I("axis", 1);
    tu_expect_op_error("ArgMax", &ax, 1, in, 1, 1, KILN_ERR_SHAPE, "axis 1 has size 0");
    ax.i = 2;
    tu_expect_op_error("ArgMin", &ax, 1, in, 1, 1, KILN_ERR_SHAPE, "out of range");
    tu_tensor_free(&in[0]);
}

/* ---- CumSum ---- */

static void test_cumsum(void **state)
{
    float x[] = {1, 2, 3, 4};
    float want[4][4] = {{1, 3, 6, 10}, {0, 1, 3, 6}, {10, 9, 7, 4}, {9, 7, 4, 0}};
    ir_tensor in[2] = {tu_tensor_f32(TU_DIMS(4), x), scalar_i64(0)}, out[1];
    for (int m = 0; m < 4; m++) {
        kiln_attr at[] = {KILN_ATTR_I("exclusive", m & 1), KILN_ATTR_I("reverse", m >> 1)};
        tu_run_op_ok("CumSum", at, 2, in, 2, out, 1);
        assert_memory_equal(out[0].data, want[m], sizeof want[m]);
        tu_tensor_free(&out[0]);
    }
    tu_tensor_free(&in[0]);
    tu_tensor_free(&in[1]);

    tu_rng r = {100};
    for (int it = 0; it < 120; it++) {
        kiln_dims d = {(int32_t)tu_int(&r, 1, 4), {0}};
        for (int32_t i = 0; i < d.rank; i++) d.d[i] = tu_int(&r, 1, 5);
        int64_t axis = tu_int(&r, -d.rank, d.rank - 1);
        int32_t a = (int32_t)(axis < 0 ? axis + d.rank : axis);
        bool excl = tu_int(&r, 0, 1), rev = tu_int(&r, 0, 1);
        kiln_dtype dt = it % 2 ? KILN_DTYPE_F32 : KILN_DTYPE_I64;
        int32_t ax32 = (int32_t)axis;
        ir_tensor t[2] = {tu_tensor(dt, d.rank, d.d, NULL),
                          it % 3 ? tu_tensor(KILN_DTYPE_I32, TU_DIMS(1), &ax32) : scalar_i64(axis)},
                  o[1];
        int64_t n = ir_tensor_count(&t[0]), idx[KILN_MAX_RANK];
        for (int64_t e = 0; e < n; e++)
            ir_tensor_set(&t[0], e,
                          dt == KILN_DTYPE_F32 ? tu_uniform(&r, -1, 1) : tu_int(&r, -99, 99));
        kiln_attr at[] = {KILN_ATTR_I("exclusive", excl), KILN_ATTR_I("reverse", rev)};
        tu_run_op_ok("CumSum", at, 2, t, 2, o, 1);
        assert_shape(&o[0], &d);
        float *got = alloc_f(n), *ref = alloc_f(n);
        for (int64_t l = 0; l < n; l++) {
            unravel(l, &d, idx);
            int64_t self = idx[a];
            double s = 0;
            for (idx[a] = 0; idx[a] < d.d[a]; idx[a]++) {
                bool in_range = rev ? idx[a] > self || (!excl && idx[a] == self)
                                    : idx[a] < self || (!excl && idx[a] == self);
                if (in_range) s += ir_tensor_get(&t[0], ravel(idx, &d));
            }
            ref[l] = (float)s;
            got[l] = (float)ir_tensor_get(&o[0], l);
        }
        tu_assert_close(got, ref, n, 1e-6);
        free(got);
        free(ref);
        for (int i = 0; i < 2; i++) tu_tensor_free(&t[i]);
        tu_tensor_free(&o[0]);
    }
    /* errors */
    in[0] = tu_tensor_f32(TU_DIMS(2, 3), NULL);
    in[1] = scalar_i64(2);
    tu_expect_op_error("CumSum", NULL, 0, in, 2, 1, KILN_ERR_SHAPE, "axis 2 is out of range");
    tu_tensor_free(&in[1]);
    in[1] = tu_tensor_i64(TU_DIMS(2), (int64_t[]){0, 1});
    tu_expect_op_error("CumSum", NULL, 0, in, 2, 1, KILN_ERR_SHAPE, "input 'axis' has 2 values");
    /* an axis known only at run time is accepted by shape inference, if it is one value */
    assert_int_equal(infer_runtime_input("CumSum", NULL, 0, in, 2, 1, 1), KILN_ERR_SHAPE);
    assert_non_null(strstr(kiln_last_error(), "input 'axis' must hold one value, got 2"));
    tu_tensor_free(&in[1]);
    in[1] = scalar_i64(1);
    assert_int_equal(infer_runtime_input("CumSum", NULL, 0, in, 2, 1, 1), KILN_OK);
    tu_tensor_free(&in[0]);
    tu_tensor_free(&in[1]);
}

/* ---- TopK ---- */

static void test_topk(void **state)
{
    float x[] = {3, 1, 4, 1, 5};
    ir_tensor in[2] = {tu_tensor_f32(TU_DIMS(5), x), tu_tensor_i64(TU_DIMS(1), (int64_t[]){3})},
              out[2];
    tu_run_op_ok("TopK", NULL, 0, in, 2, out, 2);
    assert_shape(&out[0], SHAPE(3));
    assert_memory_equal(out[0].data, ((float[]){5, 4, 3}), 12);
    assert_memory_equal(out[1].data, ((int64_t[]){4, 2, 0}), 24);
    for (int i = 0; i < 2; i++) tu_tensor_free(&out[i]);
    kiln_attr sm = KILN_ATTR_I("largest", 0);
    tu_run_op_ok("TopK", &sm, 1, in, 2, out, 2);
    assert_memory_equal(out[0].data, ((float[]){1, 1, 3}), 12);
    assert_memory_equal(out[1].data, ((int64_t[]){1, 3, 0}), 24); /* ties: lower index first */
    for (int i = 0; i < 2; i++) tu_tensor_free(&out[i]);
    tu_tensor_free(&in[0]);
    tu_tensor_free(&in[1]);

    tu_rng r = {7};
    for (int it = 0; it < 200; it++) {
        kiln_dims d = {(int32_t)tu_int(&r, 1, 3), {0}};
        for (int32_t i = 0; i < d.rank; i++) d.d[i] = tu_int(&r, 1, 6);
        if (it % 50 == 0) d = dims(TU_DIMS(2, 300));
        int64_t axis = tu_int(&r, -d.rank, d.rank - 1);
        int32_t a = (int32_t)(axis < 0 ? axis + d.rank : axis);
        int64_t k = tu_int(&r, 0, d.d[a]);
        bool largest = tu_int(&r, 0, 1);
        kiln_dtype dt = it % 2 ? KILN_DTYPE_F32 : KILN_DTYPE_I32;
        ir_tensor t[2] = {tu_tensor(dt, d.rank, d.d, NULL), tu_tensor_i64(TU_DIMS(1), &k)}, o[2];
        int64_t n = ir_tensor_count(&t[0]), idx[KILN_MAX_RANK];
        for (int64_t e = 0; e < n; e++) ir_tensor_set(&t[0], e, (double)tu_int(&r, -4, 4));
        kiln_attr at[] = {KILN_ATTR_I("axis", axis), KILN_ATTR_I("largest", largest)};
        tu_run_op_ok("TopK", at, 2, t, 2, o, 2);
        kiln_dims od = d;
        od.d[a] = k;
        assert_shape(&o[0], &od);
        assert_shape(&o[1], &od);
        assert_int_equal(o[0].dtype, dt);
        /* reference: a stable insertion sort of each run */
        kiln_dims rd = d;
        rd.d[a] = 1;
        int64_t *order = calloc((size_t)d.d[a], sizeof(int64_t));
        for (int64_t l = 0; l < kiln_dims_count(&rd); l++) {
            unravel(l, &rd, idx);
            int64_t len = d.d[a];
            for (int64_t i = 0; i < len; i++) {
                idx[a] = i;
                double v = ir_tensor_get(&t[0], ravel(idx, &d));
                int64_t p = i;
                for (; p > 0; p--) {
                    idx[a] = order[p - 1];
                    double w = ir_tensor_get(&t[0], ravel(idx, &d));
                    if (largest ? !(v > w) : !(v < w)) break;
                    order[p] = order[p - 1];
                }
                order[p] = i;
            }
            for (int64_t e = 0; e < k; e++) {
                idx[a] = e;
                int64_t oi = ravel(idx, &od);
                assert_int_equal(((int64_t *)o[1].data)[oi], order[e]);
                idx[a] = order[e];
                assert_true(ir_tensor_get(&o[0], oi) == ir_tensor_get(&t[0], ravel(idx, &d)));
            }
        }
        free(order);
        for (int i = 0; i < 2; i++) {
            tu_tensor_free(&t[i]);
            tu_tensor_free(&o[i]);
        }
    }
    /* errors */
    in[0] = tu_tensor_f32(TU_DIMS(2, 3), NULL);
    in[1] = tu_tensor_i64(TU_DIMS(1), (int64_t[]){4});
    tu_expect_op_error("TopK", NULL, 0, in, 2, 2, KILN_ERR_SHAPE, "K is 4, expected 0..3");
    ((int64_t *)in[1].data)[0] = -1;
    tu_expect_op_error("TopK", NULL, 0, in, 2, 2, KILN_ERR_SHAPE, "K is -1");
    kiln_status st = infer_runtime_input("TopK", NULL, 0, in, 2, 1, 2);
    assert_int_equal(st, KILN_ERR_UNSUPPORTED);
    assert_non_null(strstr(kiln_last_error(), "input 'K' must be a constant known at build time"));
    tu_tensor_free(&in[0]);
    tu_tensor_free(&in[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul_hand),
        cmocka_unit_test(test_matmul_promotion),
        cmocka_unit_test(test_matmul_random),
        cmocka_unit_test(test_matmul_int),
        cmocka_unit_test(test_matmul_half),
        cmocka_unit_test(test_matmul_errors),
        cmocka_unit_test(test_gemm_hand),
        cmocka_unit_test(test_gemm_random),
        cmocka_unit_test(test_gemm_errors),
        cmocka_unit_test(test_softmax_hand),
        cmocka_unit_test(test_softmax_random),
        cmocka_unit_test(test_softmax_errors),
        cmocka_unit_test(test_layernorm),
        cmocka_unit_test(test_layernorm_errors),
        cmocka_unit_test(test_reduce_hand),
        cmocka_unit_test(test_reduce_random),
        cmocka_unit_test(test_reduce_empty_and_scalar),
        cmocka_unit_test(test_reduce_int),
        cmocka_unit_test(test_reduce_errors),
        cmocka_unit_test(test_argmax),
        cmocka_unit_test(test_cumsum),
        cmocka_unit_test(test_topk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
