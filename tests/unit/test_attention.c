/* test_attention.c - kiln.Attention and the `attention` pass: the op against the unfused
 * chain of ops (same bits), its shape errors; the pass's rewrites through the public API
 * (the layers an engine ends with, what each stands for, the same numbers with the pass
 * off), the attributes it sets, and the patterns it must leave alone. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testnet.h"

#define DIMS(...) TU_DIMS(__VA_ARGS__)

#define TOL 1e-6

/* ---- the op against the unfused chain ---- */

typedef struct op_case {
    int32_t rank;
    int64_t qb[2], kb[2], vb[2]; /* batch dims of Q, K and V (rank - 2 of them) */
    int64_t sq, sk, d, dv;
    bool kt;           /* K given as [..., D, Sk] */
    float q_scale;     /* 1: none */
    float scale;       /* 1: none */
    bool div;          /* scores / scale */
    int32_t mask_rank; /* 0: no mask */
    int64_t mask[4];
} op_case;

static ir_tensor seeded(int32_t rank, const int64_t *dims, uint64_t seed, float lo, float hi)
{
    ir_tensor t = tu_tensor_f32(rank, dims, NULL);
    tu_rng r = {seed};
    tu_fill(&r, t.data, ir_tensor_count(&t), lo, hi);
    return t;
}

static ir_tensor scalar(float v) { return tu_tensor_f32(0, NULL, &v); }

/* Replaces *y by op(*y, b) (b NULL: op(*y)); `first` puts b first. */
static void then(const char *op, const kiln_attr *a, int32_t na, ir_tensor *y, const ir_tensor *b,
                 bool first)
{
    ir_tensor in[2] = {first ? *b : *y, first ? *y : (b ? *b : tu_absent())};
    ir_tensor out;
    tu_run_op_ok(op, a, na, in, b ? 2 : 1, &out, 1);
    tu_tensor_free(y);
    *y = out;
}

static void check_case(const op_case *c, uint64_t seed)
{
    int32_t r = c->rank, nb = r - 2;
    int64_t qd[4], kd[4], vd[4];
    for (int32_t i = 0; i < nb; i++) {
        qd[i] = c->qb[i];
        kd[i] = c->kb[i];
        vd[i] = c->vb[i];
    }
    qd[nb] = c->sq, qd[nb + 1] = c->d;
    kd[nb] = c->kt ? c->d : c->sk, kd[nb + 1] = c->kt ? c->sk : c->d;
    vd[nb] = c->sk, vd[nb + 1] = c->dv;
    ir_tensor in[4] = {seeded(r, qd, seed, -2, 2), seeded(r, kd, seed + 1, -2, 2),
                       seeded(r, vd, seed + 2, -2, 2), tu_absent()};
    if (c->mask_rank) {
        in[3] = seeded(c->mask_rank, c->mask, seed + 3, -3, 3);
        float *m = in[3].data;
        m[0] = -INFINITY; /* a masked-out column, as -inf or float min */
        if (ir_tensor_count(&in[3]) > 2) m[2] = -3.4028235e38f;
    }
    kiln_attr attrs[] = {
        KILN_ATTR_I("k_transposed", c->kt),
        KILN_ATTR_F("q_scale", c->q_scale),
        KILN_ATTR_F("scale", c->scale),
        KILN_ATTR_S("scale_mode", c->div ? "div" : "mul"),
    };
    ir_tensor got;
    tu_run_op_ok("kiln.Attention", attrs, 4, in, c->mask_rank ? 4 : 3, &got, 1);

    /* The chain the pass replaces, op by op. */
    ir_tensor q = tu_tensor_f32(r, qd, in[0].data), kt = tu_tensor_f32(r, kd, in[1].data);
    if (c->q_scale != 1.0f) {
        ir_tensor s = scalar(c->q_scale);
        then("Mul", NULL, 0, &q, &s, false);
        tu_tensor_free(&s);
    }
    if (!c->kt) {
        int64_t perm[4] = {0, 1, 2, 3};
        perm[r - 2] = r - 1, perm[r - 1] = r - 2;
        kiln_attr p = KILN_ATTR_IS("perm", perm, r);
        then("Transpose", &p, 1, &kt, NULL, false);
    }
    ir_tensor pair[2] = {q, kt}, y;
    tu_run_op_ok("MatMul", NULL, 0, pair, 2, &y, 1);
    if (c->scale != 1.0f) {
        ir_tensor s = scalar(c->scale);
        then(c->div ? "Div" : "Mul", NULL, 0, &y, &s, !c->div && seed % 2);
        tu_tensor_free(&s);
    }
    if (c->mask_rank) then("Add", NULL, 0, &y, &in[3], seed % 2);
    kiln_attr axis = KILN_ATTR_I("axis", -1);
    then("Softmax", &axis, 1, &y, NULL, false);
    then("MatMul", NULL, 0, &y, &in[2], false);

    assert_int_equal(got.shape.rank, y.shape.rank);
    for (int32_t i = 0; i < y.shape.rank; i++) assert_int_equal(got.shape.d[i], y.shape.d[i]);
    if (memcmp(got.data, y.data, sizeof(float) * (size_t)ir_tensor_count(&y)) != 0) {
        tu_assert_close(got.data, y.data, ir_tensor_count(&y), 1e-6);
        fail_msg("case seed %llu: close but not the chain's bits", (unsigned long long)seed);
    }
    tu_tensor_free(&got);
    tu_tensor_free(&y);
    tu_tensor_free(&q);
    tu_tensor_free(&kt);
    for (int i = 0; i < 4; i++) tu_tensor_free(&in[i]);
}

static void test_op_matches_chain(void **state)
{
    const op_case cases[] = {
        /* the exports' form: K transposed, Div by sqrt(D), mask [B, 1, 1, Sk] */
        {4, {2, 3}, {2, 3}, {2, 3}, 5, 7, 8, 6, true, 1, 2.828427f, true, 4, {2, 1, 1, 7}},
        /* K as [.., Sk, D], Mul scale, mask [1, 1, Sq, Sk] */
        {4, {2, 3}, {2, 3}, {2, 3}, 5, 7, 12, 3, false, 1, 0.5f, false, 4, {1, 1, 5, 7}},
        /* no scale, no mask; Q scaled first */
        {4, {1, 2}, {1, 2}, {1, 2}, 9, 9, 16, 16, false, 0.25f, 1, false, 0, {0}},
        {4, {1, 2}, {1, 2}, {1, 2}, 9, 9, 16, 16, true, 0.25f, 1, false, 0, {0}},
        /* both scales, a 1-D mask */
        {4, {1, 2}, {1, 2}, {1, 2}, 3, 12, 5, 2, false, 0.7f, 3.0f, true, 1, {12}},
        /* rank 3 [B*H, S, D], full mask */
        {3, {6}, {6}, {6}, 4, 5, 3, 7, true, 1, 1.5f, false, 3, {6, 4, 5}},
        /* K and V shared across heads (multi-query), Q across the batch */
        {4, {1, 4}, {2, 1}, {2, 1}, 3, 6, 4, 5, false, 1, 2.0f, true, 4, {2, 1, 3, 6}},
        /* a row longer than the kernel's stack block: scores recomputed chunk by chunk */
        {4, {1, 1}, {1, 1}, {1, 1}, 3, 2500, 8, 4, true, 1, 2.828427f, true, 4, {1, 1, 1, 2500}},
        {3, {2}, {2}, {2}, 2, 1100, 9, 3, false, 0.3f, 0.9f, false, 1, {1100}},
        /* a mask broadcast along the keys (one value per query row and head) */
        {4, {2, 3}, {2, 3}, {2, 3}, 5, 7, 8, 6, true, 1, 1, false, 4, {1, 3, 5, 1}},
        /* a single key; empty V rows */
        {4, {1, 1}, {1, 1}, {1, 1}, 4, 1, 3, 2, true, 1, 1, false, 0, {0}},
        {4, {1, 1}, {1, 1}, {1, 1}, 2, 3, 3, 0, false, 1, 2, true, 0, {0}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) check_case(&cases[i], 10 + 17 * i);
}

/* The defaults: K as [.., Sk, D], no scale; the output against a plain double loop. */
static void test_op_defaults(void **state)
{
    int64_t b = 2, s = 3, d = 4;
    ir_tensor in[3] = {seeded(DIMS(2, 3, 4), 1, -1, 1), seeded(DIMS(2, 3, 4), 2, -1, 1),
                       seeded(DIMS(2, 3, 4), 3, -1, 1)};
    ir_tensor out;
    tu_run_op_ok("kiln.Attention", NULL, 0, in, 3, &out, 1);
    const float *q = in[0].data, *k = in[1].data, *v = in[2].data;
    float want[24];
    for (int64_t t = 0; t < b; t++)
        for (int64_t i = 0; i < s; i++) {
            double sc[3], mx = -INFINITY, sum = 0;
            for (int64_t j = 0; j < s; j++) {
                sc[j] = 0;
                for (int64_t c = 0; c < d; c++)
                    sc[j] += (double)q[(t * s + i) * d + c] * k[(t * s + j) * d + c];
                mx = sc[j] > mx ? sc[j] : mx;
            }
            for (int64_t j = 0; j < s; j++) sum += exp(sc[j] - mx);
            for (int64_t c = 0; c < d; c++) {
                double acc = 0;
                for (int64_t j = 0; j < s; j++)
                    acc += exp(sc[j] - mx) / sum * v[(t * s + j) * d + c];
                want[(t * s + i) * d + c] = (float)acc;
            }
        }
    tu_assert_close(out.data, want, 24, 1e-6);
    tu_tensor_free(&out);
    for (int i = 0; i < 3; i++) tu_tensor_free(&in[i]);
}

static void test_op_errors(void **state)
{
    ir_tensor q = tu_tensor_f32(DIMS(2, 3, 5, 8), NULL), kt = tu_tensor_f32(DIMS(2, 3, 8, 7), NULL),
              v = tu_tensor_f32(DIMS(2, 3, 7, 4), NULL);
    kiln_attr kt1 = KILN_ATTR_I("k_transposed", 1);
    ir_tensor ok[4] = {q, kt, v, tu_tensor_f32(DIMS(2, 1, 1, 7), NULL)};
    ir_tensor out;
    tu_run_op_ok("kiln.Attention", &kt1, 1, ok, 4, &out, 1);
    assert_int_equal(out.shape.rank, 4);
    assert_int_equal(out.shape.d[2], 5);
    assert_int_equal(out.shape.d[3], 4);
    tu_tensor_free(&out);

    /* K read as [.., Sk, D]: its last dim 7 is no head size of 8 */
    tu_expect_op_error("kiln.Attention", NULL, 0, ok, 3, 1, KILN_ERR_SHAPE,
                       "K of shape 2x3x8x7 (k_transposed=0) has head size 7, Q of shape 2x3x5x8");
    ir_tensor q2[3] = {tu_tensor_f32(DIMS(5, 8), NULL), kt, v};
    tu_expect_op_error("kiln.Attention", &kt1, 1, q2, 3, 1, KILN_ERR_SHAPE, "Q must be 3-D");
    ir_tensor r3[3] = {q, tu_tensor_f32(DIMS(6, 8, 7), NULL), v};
    tu_expect_op_error("kiln.Attention", &kt1, 1, r3, 3, 1, KILN_ERR_SHAPE, "one rank");
    ir_tensor vrows[3] = {q, kt, tu_tensor_f32(DIMS(2, 3, 6, 4), NULL)};
    tu_expect_op_error("kiln.Attention", &kt1, 1, vrows, 3, 1, KILN_ERR_SHAPE,
                       "V of shape 2x3x6x4 has 6 rows, expected K's sequence length 7");
    ir_tensor batch[3] = {q, tu_tensor_f32(DIMS(2, 2, 8, 7), NULL), v};
    tu_expect_op_error("kiln.Attention", &kt1, 1, batch, 3, 1, KILN_ERR_SHAPE,
                       "batch dims do not broadcast");
    ir_tensor mask[4] = {q, kt, v, tu_tensor_f32(DIMS(2, 1, 5, 1, 7), NULL)};
    tu_expect_op_error("kiln.Attention", &kt1, 1, mask, 4, 1, KILN_ERR_SHAPE,
                       "mask of shape 2x1x5x1x7 does not broadcast to the scores' 2x3x5x7");
    ir_tensor mask2[4] = {q, kt, v, tu_tensor_f32(DIMS(1, 1, 7, 1), NULL)};
    tu_expect_op_error("kiln.Attention", &kt1, 1, mask2, 4, 1, KILN_ERR_SHAPE, "mask of shape");
    ir_tensor qi[3] = {tu_tensor_i64(DIMS(2, 3, 5, 8), NULL), kt, v};
    tu_expect_op_error("kiln.Attention", &kt1, 1, qi, 3, 1, KILN_ERR_UNSUPPORTED,
                       "input 'Q' has dtype i64, expected f32");
    ir_tensor mi[4] = {q, kt, v, tu_tensor_i64(DIMS(2, 1, 1, 7), NULL)};
    tu_expect_op_error("kiln.Attention", &kt1, 1, mi, 4, 1, KILN_ERR_UNSUPPORTED,
                       "input 'mask' has dtype i64");
    kiln_attr bad_mode[] = {kt1, KILN_ATTR_S("scale_mode", "sqrt")};
    tu_expect_op_error("kiln.Attention", bad_mode, 2, ok, 3, 1, KILN_ERR_INVALID_GRAPH,
                       "scale_mode \"sqrt\" is unknown");
    kiln_attr bad_kt = KILN_ATTR_I("k_transposed", 2);
    tu_expect_op_error("kiln.Attention", &bad_kt, 1, ok, 3, 1, KILN_ERR_INVALID_GRAPH,
                       "k_transposed is 2, expected 0 or 1");
    ir_tensor *frees[] = {&q,        &kt,       &v,       &ok[3],    &q2[0], &r3[1],
                          &vrows[2], &batch[1], &mask[3], &mask2[3], &qi[0], &mi[3]};
    for (size_t i = 0; i < sizeof frees / sizeof *frees; i++) tu_tensor_free(frees[i]);
}

/* ---- the pass ---- */

typedef enum k_form {
    K_GIVEN_T,     /* the network's input is K transposed already */
    K_SWAP,        /* Transpose swapping the last two axes of K */
    K_FROM_TOKENS, /* Transpose perm [0, 2, 3, 1] of [B, Sk, H, D], as the exports write it */
} k_form;

typedef enum mask_form {
    M_NONE,
    M_PADDING, /* an input [B, 1, 1, Sk] (rank 3: [B, 1, Sk]) */
    M_CONST,   /* a constant [1, 1, Sq, Sk] with -inf and float-min entries */
    M_FULL,    /* an input of the scores' shape */
} mask_form;

typedef struct net_form {
    int32_t rank;
    const char *scale; /* NULL, "Div", "Mul" (scores * c) or "cMul" (c * scores) */
    bool q_scale;      /* Mul(Q, c) first */
    mask_form mask;
    k_form k;
} net_form;

enum { B = 2, H = 3, SQ = 5, SK = 6, D = 10, DV = 3 };

/* The attention chain on inputs q, k, v (and m) of `f`'s shapes, writing `y`; layers
 * qscale, kt, qk, scale, mask, softmax and pv. Returns the network layers the fused
 * layer should stand for. */
static const char *attention_net(kiln_network *net, const net_form *f, char *fused, size_t n)
{
    int32_t r = f->rank;
    bool r4 = r == 4;
    int64_t qd[4], kd[4], vd[4], bd[2] = {B, H};
    int32_t nb = r - 2;
    if (!r4) bd[0] = B * H;
    for (int32_t i = 0; i < nb; i++) qd[i] = kd[i] = vd[i] = bd[i];
    qd[nb] = SQ, qd[nb + 1] = D;
    vd[nb] = SK, vd[nb + 1] = DV;
    kd[nb] = f->k == K_GIVEN_T ? D : SK, kd[nb + 1] = f->k == K_GIVEN_T ? SK : D;
    tn_input(net, "q", r, qd);
    if (f->k == K_FROM_TOKENS) {
        assert_true(r4);
        tn_input(net, "k", DIMS(B, SK, H, D));
    } else {
        tn_input(net, "k", r, kd);
    }
    tn_input(net, "v", r, vd);
    size_t len = (size_t)snprintf(fused, n, "qk");
    const char *q = "q", *k = "k", *s = "s";
    if (f->q_scale) {
        tn_scalar(net, "qc", 0.35f);
        tn_layer(net, "Mul", "qscale", IN("qc", "q"), OUT("qs"), NO_ATTRS);
        q = "qs";
        len += (size_t)snprintf(fused + len, n - len, ",qscale");
    }
    if (f->k != K_GIVEN_T) {
        int64_t swap[4] = {0, 1, 2, 3};
        swap[r - 2] = r - 1, swap[r - 1] = r - 2;
        const int64_t *perm = f->k == K_SWAP ? swap : (const int64_t[]){0, 2, 3, 1};
        tn_layer(net, "Transpose", "kt", IN("k"), OUT("kt"), ATTRS(KILN_ATTR_IS("perm", perm, r)));
        k = "kt";
        if (f->k == K_SWAP) len += (size_t)snprintf(fused + len, n - len, ",kt");
    }
    tn_layer(net, "MatMul", "qk", IN(q, k), OUT("s"), NO_ATTRS);
    if (f->scale) {
        tn_scalar(net, "c", 2.0f);
        if (!strcmp(f->scale, "Div"))
            tn_layer(net, "Div", "scale", IN("s", "c"), OUT("ss"), NO_ATTRS);
        else if (!strcmp(f->scale, "Mul"))
            tn_layer(net, "Mul", "scale", IN("s", "c"), OUT("ss"), NO_ATTRS);
        else
            tn_layer(net, "Mul", "scale", IN("c", "s"), OUT("ss"), NO_ATTRS);
        s = "ss";
        len += (size_t)snprintf(fused + len, n - len, ",scale");
    }
    if (f->mask != M_NONE) {
        if (f->mask == M_PADDING) {
            int64_t md[4] = {B, 1, 1, SK};
            if (!r4) md[0] = B * H, md[2] = SK;
            tn_input(net, "m", r, md);
        } else if (f->mask == M_CONST) {
            float m[SQ * SK];
            tu_rng rng = {77};
            tu_fill(&rng, m, SQ * SK, -1, 1);
            m[3] = -INFINITY;
            m[SK + 1] = -3.4028235e38f;
            tn_constant(net, "m", KILN_DTYPE_F32, r,
                        r4 ? (int64_t[]){1, 1, SQ, SK} : (int64_t[]){1, SQ, SK}, m);
        } else {
            int64_t md[4];
            for (int32_t i = 0; i < nb; i++) md[i] = bd[i];
            md[nb] = SQ, md[nb + 1] = SK;
            tn_input(net, "m", r, md);
        }
        tn_layer(net, "Add", "mask", IN(s, "m"), OUT("sm"), NO_ATTRS);
        s = "sm";
        len += (size_t)snprintf(fused + len, n - len, ",mask");
    }
    tn_layer(net, "Softmax", "softmax", IN(s), OUT("p"), ATTRS(KILN_ATTR_I("axis", -1)));
    tn_layer(net, "MatMul", "pv", IN("p", "v"), OUT("y"), NO_ATTRS);
    snprintf(fused + len, n - len, ",softmax,pv");
    return fused;
}

/* Builds form `f`, checks the engine's layers and the numbers with the pass off. */
static void check_form(const net_form *f)
{
    char fused[128];
    kiln_network *net = tn_net();
    attention_net(net, f, fused, sizeof fused);
    tn_output(net, "y");
    kiln_engine *e = tn_build(net, NULL);
    bool transpose_stays = f->k == K_FROM_TOKENS;
    assert_int_equal(kiln_engine_num_layers(e), transpose_stays ? 2 : 1);
    tn_expect_layer(e, "qk", "kiln.Attention", f->mask != M_NONE ? 4 : 3, fused);
    int32_t at = tn_find_layer(e, "qk");
    assert_string_equal(kiln_engine_layer_output(e, at, 0), "y");
    assert_string_equal(kiln_engine_layer_input(e, at, 0), "q");
    assert_string_equal(kiln_engine_layer_input(e, at, 1), f->k == K_FROM_TOKENS ? "kt" : "k");
    assert_string_equal(kiln_engine_layer_input(e, at, 2), "v");
    kiln_engine_destroy(e);
    e = tn_build(net, "attention");
    assert_int_equal(tn_count_op(e, "kiln.Attention"), 0);
    assert_int_equal(tn_count_op(e, "Softmax"), 1);
    kiln_engine_destroy(e);
    tn_same_numbers(net, "attention", TOL);

    /* The attributes the pass sets. */
    ir_graph g;
    tn_prepare(net, &g);
    assert_int_equal(tn_run_pass(&g, opt_attention), 1);
    const ir_node *n = tn_node(&g, "qk");
    assert_string_equal(n->op->name, "kiln.Attention");
    assert_int_equal(ir_attr_int(n, "k_transposed"), f->k != K_SWAP);
    assert_true(ir_attr_float(n, "q_scale") == (f->q_scale ? 0.35f : 1.0f));
    assert_true(ir_attr_float(n, "scale") == (f->scale ? 2.0f : 1.0f));
    bool div = f->scale && !strcmp(f->scale, "Div");
    assert_string_equal(ir_attr_string(n, "scale_mode"), div ? "div" : "mul");
    ir_graph_free(&g);
    kiln_network_destroy(net);
}

static void test_pass_forms(void **state)
{
    static const char *const scales[] = {NULL, "Div", "Mul", "cMul"};
    int count = 0;
    for (int32_t r = 3; r <= 4; r++)
        for (int s = 0; s < 4; s++)
            for (int m = M_NONE; m <= M_FULL; m++)
                for (int k = K_GIVEN_T; k <= K_FROM_TOKENS; k++) {
                    if (k == K_FROM_TOKENS && r == 3) continue;
                    /* Q's scale in half of the forms, so each combination still runs */
                    net_form f = {r, scales[s], (s + m + k) % 2 == 0, (mask_form)m, (k_form)k};
                    check_form(&f);
                    count++;
                }
    assert_int_equal(count, 2 * 4 * 4 * 3 - 16);
}

/* Two attention blocks reading one mask computed from an input (BERT's form): both are
 * fused, and the mask's layers stay. A Transpose of K with a second reader stays too. */
static void test_pass_shared_mask(void **state)
{
    kiln_network *net = tn_net();
    tn_input(net, "q", DIMS(1, 2, 4, 8));
    tn_input(net, "k", DIMS(1, 2, 4, 8));
    tn_input(net, "v", DIMS(1, 2, 4, 8));
    tn_input(net, "pad", DIMS(1, 1, 1, 4));
    tn_scalar(net, "big", -10000.0f);
    tn_scalar(net, "c", 2.828427f);
    tn_layer(net, "Mul", "bias", IN("pad", "big"), OUT("m"), NO_ATTRS);
    tn_layer(net, "Transpose", "kt", IN("k"), OUT("kt"),
             ATTRS(KILN_ATTR_IS("perm", ((const int64_t[]){0, 1, 3, 2}), 4)));
    const char *queries[] = {"q", "y1"}; /* the second block reads the first one's output */
    for (int i = 0; i < 2; i++) {
        /* qk1, s1, div1, sd1, add1, sm1, softmax1, p1, pv1, y1 (2 for the second block) */
        char n[10][16];
        const char *base[] = {"qk", "s", "div", "sd", "add", "sm", "softmax", "p", "pv", "y"};
        for (int j = 0; j < 10; j++) snprintf(n[j], sizeof n[j], "%s%d", base[j], i + 1);
        tn_layer(net, "MatMul", n[0], IN(queries[i], "kt"), OUT(n[1]), NO_ATTRS);
        tn_layer(net, "Div", n[2], IN(n[1], "c"), OUT(n[3]), NO_ATTRS);
        tn_layer(net, "Add", n[4], IN("m", n[3]), OUT(n[5]), NO_ATTRS);
        tn_layer(net, "Softmax", n[6], IN(n[5]), OUT(n[7]), NO_ATTRS);
        tn_layer(net, "MatMul", n[8], IN(n[7], "v"), OUT(n[9]), NO_ATTRS);
    }
    tn_output(net, "y2");
    kiln_engine *e = tn_build(net, NULL);
    assert_int_equal(tn_count_op(e, "kiln.Attention"), 2);
    assert_int_equal(kiln_engine_num_layers(e), 4);
    tn_expect_layer(e, "qk1", "kiln.Attention", 4, "qk1,div1,add1,softmax1,pv1");
    tn_expect_layer(e, "qk2", "kiln.Attention", 4, "qk2,div2,add2,softmax2,pv2");
    tn_expect_layer(e, "kt", "Transpose", 1, "kt");
    tn_expect_layer(e, "bias", "Mul", 2, "bias");
    assert_string_equal(kiln_engine_layer_input(e, tn_find_layer(e, "qk2"), 3), "m");
    kiln_engine_destroy(e);
    tn_same_numbers(net, "attention", TOL);
    kiln_network_destroy(net);
}

/* Builds the 4-D chain with Div and a padding mask, then lets `spoil` change one thing;
 * the pass must fuse nothing. */
typedef void (*spoil_fn)(kiln_network *net);

static void leave_alone(const char *what, spoil_fn spoil, const char *divisor, int64_t axis)
{
    kiln_network *net = tn_net();
    tn_input(net, "q", DIMS(B, H, SQ, D));
    tn_input(net, "kt", DIMS(B, H, D, SK));
    tn_input(net, "v", DIMS(B, H, SK, DV));
    tn_input(net, "m", DIMS(B, 1, 1, SK));
    tn_scalar(net, "c", 2.0f);
    tn_weights(net, "cv", DIMS(SK), 5, 1, 2);
    tn_layer(net, "MatMul", "qk", IN("q", "kt"), OUT("s"), NO_ATTRS);
    tn_layer(net, "Div", "div", IN("s", divisor), OUT("sd"), NO_ATTRS);
    tn_layer(net, "Add", "mask", IN("sd", "m"), OUT("sm"), NO_ATTRS);
    tn_layer(net, "Softmax", "softmax", IN("sm"), OUT("p"), ATTRS(KILN_ATTR_I("axis", axis)));
    tn_layer(net, "MatMul", "pv", IN("p", "v"), OUT("y"), NO_ATTRS);
    tn_output(net, "y");
    if (spoil) spoil(net);
    ir_graph g;
    tn_prepare(net, &g);
    if (tn_run_pass(&g, opt_attention) != 0) fail_msg("%s: the pass changed something", what);
    assert_false(strcmp(tn_node(&g, "qk")->op->name, "MatMul"));
    assert_true(tn_live(&g, "softmax"));
    ir_graph_free(&g);
    kiln_engine *e = tn_build(net, NULL);
    if (tn_count_op(e, "kiln.Attention")) fail_msg("%s: fused", what);
    assert_int_equal(tn_count_op(e, "Softmax"), 1);
    kiln_engine_destroy(e);
    kiln_network_destroy(net);
}

static void spoil_scores_read_twice(kiln_network *net)
{
    tn_layer(net, "Relu", "other", IN("s"), OUT("r"), NO_ATTRS);
    tn_output(net, "r");
}
static void spoil_probs_output(kiln_network *net) { tn_output(net, "p"); }
static void spoil_scaled_output(kiln_network *net) { tn_output(net, "sd"); }
static void spoil_probs_read_twice(kiln_network *net)
{
    tn_layer(net, "Relu", "other", IN("p"), OUT("r"), NO_ATTRS);
    tn_output(net, "r");
}

static void test_pass_leaves_alone(void **state)
{
    leave_alone("scores read twice", spoil_scores_read_twice, "c", -1);
    leave_alone("probabilities a network output", spoil_probs_output, "c", -1);
    leave_alone("probabilities read twice", spoil_probs_read_twice, "c", -1);
    leave_alone("scaled scores a network output", spoil_scaled_output, "c", -1);
    leave_alone("Softmax on axis 2", NULL, "c", 2);
    leave_alone("Softmax on axis -2", NULL, "c", -2);
    leave_alone("a scale that is a vector", NULL, "cv", -1);

    /* A scalar divided by the scores, not the scores by it. */
    kiln_network *net = tn_net();
    tn_input(net, "q", DIMS(1, 2, 3, 4));
    tn_input(net, "kt", DIMS(1, 2, 4, 3));
    tn_input(net, "v", DIMS(1, 2, 3, 4));
    tn_scalar(net, "c", 2.0f);
    tn_layer(net, "MatMul", "qk", IN("q", "kt"), OUT("s"), NO_ATTRS);
    tn_layer(net, "Div", "div", IN("c", "s"), OUT("sd"), NO_ATTRS);
    tn_layer(net, "Softmax", "softmax", IN("sd"), OUT("p"), NO_ATTRS);
    tn_layer(net, "MatMul", "pv", IN("p", "v"), OUT("y"), NO_ATTRS);
    tn_output(net, "y");
    kiln_engine *e = tn_build(net, NULL);
    assert_int_equal(tn_count_op(e, "kiln.Attention"), 0);
    kiln_engine_destroy(e);
    kiln_network_destroy(net);

    /* The probabilities as the second operand of the MatMul; a mask that would grow the
     * scores (the Add's output is bigger than its input); 2-D MatMuls. */
    for (int form = 0; form < 3; form++) {
        net = tn_net();
        bool flat = form == 2;
        if (flat) {
            tn_input(net, "q", DIMS(3, 4));
            tn_input(net, "kt", DIMS(4, 3));
            tn_input(net, "v", DIMS(3, 3));
        } else {
            tn_input(net, "q", DIMS(1, 2, 3, 4));
            tn_input(net, "kt", DIMS(1, 2, 4, 3));
            tn_input(net, "v", DIMS(1, 2, 3, 3));
        }
        if (form == 1) tn_input(net, "m", DIMS(2, 2, 3, 3));
        tn_layer(net, "MatMul", "qk", IN("q", "kt"), OUT("s"), NO_ATTRS);
        const char *sm = "s";
        if (form == 1) {
            tn_layer(net, "Add", "mask", IN("s", "m"), OUT("sm"), NO_ATTRS);
            sm = "sm";
        }
        tn_layer(net, "Softmax", "softmax", IN(sm), OUT("p"), NO_ATTRS);
        if (form == 0)
            tn_layer(net, "MatMul", "pv", IN("v", "p"), OUT("y"), NO_ATTRS);
        else
            tn_layer(net, "MatMul", "pv", IN("p", "v"), OUT("y"), NO_ATTRS);
        tn_output(net, "y");
        e = tn_build(net, NULL);
        if (tn_count_op(e, "kiln.Attention")) fail_msg("form %d: fused", form);
        assert_int_equal(tn_count_op(e, "Softmax"), 1);
        kiln_engine_destroy(e);
        kiln_network_destroy(net);
    }
}

/* The log names every layer taken in. */
static kiln_network *full_net(void)
{
    char fused[128];
    kiln_network *net = tn_net();
    net_form f = {4, "Div", true, M_PADDING, K_SWAP};
    attention_net(net, &f, fused, sizeof fused);
    tn_output(net, "y");
    return net;
}

static void test_pass_log(void **state)
{
    kiln_network *net = full_net();
    const char *capture_text;
    kiln_engine *e = tn_build_logged(net, &capture_text);
    const char *want = "attention: 'qk' (MatMul) + 'qscale' (Mul) + 'kt' (Transpose) + 'scale' "
                       "(Div) + 'mask' (Add) + 'softmax' (Softmax) + 'pv' (MatMul) -> "
                       "kiln.Attention 'qk' (Q scale 0.35, scores / 2, mask m, K as [.., Sk, D])";
    tn_expect_log(capture_text, want);
    bool found = false;
    for (int32_t k = 0; kiln_pass_name(k); k++) found |= !strcmp(kiln_pass_name(k), "attention");
    assert_true(found);
    kiln_engine_destroy(e);
    kiln_network_destroy(net);
}

/* The pass runs before activation-fusion, which would otherwise take the first MatMul and
 * a constant mask that varies along the last axis only as its bias. */
static void test_pass_before_activation_fusion(void **state)
{
    kiln_network *net = tn_net();
    tn_input(net, "q", DIMS(1, 2, 3, 4));
    tn_input(net, "kt", DIMS(1, 2, 4, 5));
    tn_input(net, "v", DIMS(1, 2, 5, 4));
    tn_weights(net, "m", DIMS(5), 9, -1, 1);
    tn_layer(net, "MatMul", "qk", IN("q", "kt"), OUT("s"), NO_ATTRS);
    tn_layer(net, "Add", "mask", IN("s", "m"), OUT("sm"), NO_ATTRS);
    tn_layer(net, "Softmax", "softmax", IN("sm"), OUT("p"), NO_ATTRS);
    tn_layer(net, "MatMul", "pv", IN("p", "v"), OUT("y"), NO_ATTRS);
    tn_output(net, "y");
    kiln_engine *e = tn_build(net, NULL);
    assert_int_equal(kiln_engine_num_layers(e), 1);
    tn_expect_layer(e, "qk", "kiln.Attention", 4, "qk,mask,softmax,pv");
    kiln_engine_destroy(e);
    e = tn_build(net, "attention");
    assert_int_equal(tn_count_op(e, "kiln.MatMul"), 1); /* what activation-fusion does instead */
    kiln_engine_destroy(e);
    tn_same_numbers(net, "attention", TOL);
    kiln_network_destroy(net);
}

static void test_allocation_failures(void **state)
{
    kiln_network *net = full_net();
    tu_build_survives_allocation_failures(net);
    kiln_network_destroy(net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_op_matches_chain),
        cmocka_unit_test(test_op_defaults),
        cmocka_unit_test(test_op_errors),
        cmocka_unit_test(test_pass_forms),
        cmocka_unit_test(test_pass_shared_mask),
        cmocka_unit_test(test_pass_leaves_alone),
        cmocka_unit_test(test_pass_log),
        cmocka_unit_test(test_pass_before_activation_fusion),
        cmocka_unit_test(test_allocation_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
