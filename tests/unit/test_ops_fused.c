/* test_ops_fused.c - the fused op group (kiln.Conv, kiln.Gemm, kiln.MatMul): each against
 * its base op followed by the epilogue written as separate ops (Add, then the activation
 * op, SiLU as Sigmoid and Mul), all run through tu_run_op, over seeded random shapes and
 * every activation; then the schemas and the error paths. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* ---- activations and their unfused form ---- */

typedef struct act_case {
    const char *name; /* the fused op's `activation` */
    float alpha, beta;
} act_case;

static const act_case k_acts[] = {
    {"", 0, 0},
    {"Relu", 0, 0},
    {"LeakyRelu", 0.1f, 0},
    {"Clip", -0.5f, 0.75f},
    {"Sigmoid", 0, 0},
    {"HardSwish", 0, 0},
    {"HardSigmoid", 0.3f, 0.4f},
    {"Silu", 0, 0},
    {"Gelu", 0, 0},
    {"GeluTanh", 0, 0},
    {"Tanh", 0, 0},
    {"Elu", 0.8f, 0},
};
#define N_ACTS ((int)(sizeof k_acts / sizeof *k_acts))

static void run_ok(const char *op, const kiln_attr *a, int32_t na, const ir_tensor *in, int32_t nin,
                   ir_tensor *out)
{
    tu_run_op_ok(op, a, na, in, nin, out, 1);
}

/* Replaces *y by op(*y, extra...) run as a separate layer. */
static void then(const char *op, const kiln_attr *a, int32_t na, ir_tensor *y, const ir_tensor *b,
                 const ir_tensor *c)
{
    ir_tensor in[3] = {*y, b ? *b : tu_absent(), c ? *c : tu_absent()};
    ir_tensor out;
    run_ok(op, a, na, in, b ? (c ? 3 : 2) : 1, &out);
    tu_tensor_free(y);
    *y = out;
}

/* The epilogue as standalone ops: y + z, then the activation. */
static void unfused_epilogue(ir_tensor *y, const ir_tensor *z, const act_case *act)
{
    if (z) then("Add", NULL, 0, y, z, NULL);
    const char *n = act->name;
    if (!strcmp(n, "")) return;
    if (!strcmp(n, "LeakyRelu") || !strcmp(n, "Elu")) {
        kiln_attr a = KILN_ATTR_F("alpha", act->alpha);
        then(n, &a, 1, y, NULL, NULL);
    } else if (!strcmp(n, "HardSigmoid")) {
        kiln_attr a[] = {KILN_ATTR_F("alpha", act->alpha), KILN_ATTR_F("beta", act->beta)};
        then(n, a, 2, y, NULL, NULL);
    } else if (!strcmp(n, "Clip")) {
        ir_tensor lo = tu_tensor_f32(0, NULL, &act->alpha), hi = tu_tensor_f32(0, NULL, &act->beta);
        then(n, NULL, 0, y, &lo, &hi);
        tu_tensor_free(&lo);
        tu_tensor_free(&hi);
    } else if (!strcmp(n, "Silu")) {
        ir_tensor s;
        run_ok("Sigmoid", NULL, 0, y, 1, &s);
        then("Mul", NULL, 0, y, &s, NULL);
        tu_tensor_free(&s);
    } else if (!strcmp(n, "Gelu") || !strcmp(n, "GeluTanh")) {
        kiln_attr a = KILN_ATTR_S("approximate", n[4] ? "tanh" : "none");
        then("Gelu", &a, 1, y, NULL, NULL);
    } else {
        then(n, NULL, 0, y, NULL, NULL);
    }
}

/* The base op's attributes followed by the activation's. */
typedef struct attrs {
    kiln_attr a[16];
    int n;
    int64_t ints[6][8];
    int ni;
} attrs;

static void at_ints(attrs *A, const char *name, const int64_t *v, int count)
{
    memcpy(A->ints[A->ni], v, sizeof(int64_t) * (size_t)count);
    A->a[A->n++] = (kiln_attr)KILN_ATTR_IS(name, A->ints[A->ni], count);
    A->ni++;
}

static void add_act(attrs *A, const act_case *act)
{
    A->a[A->n++] = (kiln_attr)KILN_ATTR_S("activation", act->name);
    A->a[A->n++] = (kiln_attr)KILN_ATTR_F("act_alpha", act->alpha);
    A->a[A->n++] = (kiln_attr)KILN_ATTR_F("act_beta", act->beta);
}

static ir_tensor rand_t(tu_rng *r, int32_t rank, const int64_t *d, float lo, float hi)
{
    ir_tensor t = tu_tensor_f32(rank, d, NULL);
    tu_fill(r, t.data, ir_tensor_count(&t), lo, hi);
    return t;
}

/* Fused against unfused: same shape, and the same numbers (the same formulas in the same
 * order, so only libm's own rounding could differ). */
static void compare(const ir_tensor *got, const ir_tensor *want, const char *what)
{
    char a[KILN_DIMS_STR_MAX], b[KILN_DIMS_STR_MAX];
    if (!kiln_dims_equal(&got->shape, &want->shape))
        fail_msg("%s: shape %s, expected %s", what, kiln_dims_str(&got->shape, a, sizeof a),
                 kiln_dims_str(&want->shape, b, sizeof b));
    double e = tu_rel_l2(got->data, want->data, ir_tensor_count(want));
    if (!(e <= 1e-6)) fail_msg("%s: rel L2 %g", what, e);
}

/* ---- kiln.Conv ---- */

static void test_conv_random(void **state)
{
    tu_rng r = {11};
    for (int it = 0; it < 4 * N_ACTS; it++) {
        const act_case *act = &k_acts[it % N_ACTS];
        int32_t ns = (int32_t)tu_int(&r, 1, 2); /* 1-D and 2-D convolutions */
        int64_t group = tu_int(&r, 1, 2), cin = group * tu_int(&r, 1, 3);
        int64_t cout = group * tu_int(&r, 1, 3), batch = tu_int(&r, 1, 2);
        int64_t xd[4] = {batch, cin}, wd[4] = {cout, cin / group};
        int64_t k[2], s[2], pads[4], dil[2];
        for (int32_t d = 0; d < ns; d++) {
            xd[2 + d] = tu_int(&r, 5, 9); /* room for a 3-tap kernel, dilation 2 */
            wd[2 + d] = k[d] = tu_int(&r, 1, 3);
            s[d] = tu_int(&r, 1, 2);
            dil[d] = tu_int(&r, 1, 2);
            pads[d] = tu_int(&r, 0, 1);
            pads[ns + d] = tu_int(&r, 0, 1);
        }
        attrs A = {.n = 0};
        A.a[A.n++] = (kiln_attr)KILN_ATTR_I("group", group);
        at_ints(&A, "kernel_shape", k, ns);
        at_ints(&A, "strides", s, ns);
        at_ints(&A, "pads", pads, 2 * ns);
        at_ints(&A, "dilations", dil, ns);
        int nbase = A.n;
        ir_tensor in[4];
        in[0] = rand_t(&r, ns + 2, xd, -2, 2);
        in[1] = rand_t(&r, ns + 2, wd, -1, 1);
        bool has_b = it % 3 != 0, has_z = it % 2 == 0;
        in[2] = has_b ? rand_t(&r, 1, &cout, -1, 1) : tu_absent();
        ir_tensor want;
        run_ok("Conv", A.a, nbase, in, 3, &want);
        in[3] = has_z ? rand_t(&r, want.shape.rank, want.shape.d, -1, 1) : tu_absent();
        unfused_epilogue(&want, has_z ? &in[3] : NULL, act);
        add_act(&A, act);
        ir_tensor got;
        run_ok("kiln.Conv", A.a, A.n, in, has_z ? 4 : 3, &got);
        char what[96];
        snprintf(what, sizeof what, "kiln.Conv case %d (%s%s)", it, act->name, has_z ? ", Z" : "");
        compare(&got, &want, what);
        for (int i = 0; i < 4; i++) tu_tensor_free(&in[i]);
        tu_tensor_free(&got);
        tu_tensor_free(&want);
    }
}

/* ---- kiln.Gemm ---- */

static void test_gemm_random(void **state)
{
    tu_rng r = {12};
    for (int it = 0; it < 4 * N_ACTS; it++) {
        const act_case *act = &k_acts[it % N_ACTS];
        int64_t m = tu_int(&r, 1, 7), kk = tu_int(&r, 1, 9), n = tu_int(&r, 1, 8);
        bool ta = tu_int(&r, 0, 1), tb = tu_int(&r, 0, 1);
        int c_form = (int)tu_int(&r, 0, 3); /* none, [N], [M, N], [M, 1] */
        attrs A = {.n = 0};
        A.a[A.n++] = (kiln_attr)KILN_ATTR_I("transA", ta);
        A.a[A.n++] = (kiln_attr)KILN_ATTR_I("transB", tb);
        A.a[A.n++] = (kiln_attr)KILN_ATTR_F("alpha", tu_uniform(&r, 0.5f, 1.5f));
        A.a[A.n++] = (kiln_attr)KILN_ATTR_F("beta", tu_uniform(&r, 0.5f, 1.5f));
        int nbase = A.n;
        ir_tensor in[4];
        in[0] = rand_t(&r, 2, ta ? (int64_t[]){kk, m} : (int64_t[]){m, kk}, -1, 1);
        in[1] = rand_t(&r, 2, tb ? (int64_t[]){n, kk} : (int64_t[]){kk, n}, -1, 1);
        in[2] = c_form == 0   ? tu_absent()
                : c_form == 1 ? rand_t(&r, 1, &n, -1, 1)
                : c_form == 2 ? rand_t(&r, 2, (int64_t[]){m, n}, -1, 1)
                              : rand_t(&r, 2, (int64_t[]){m, 1}, -1, 1);
        bool has_z = it % 2 == 1;
        ir_tensor want;
        run_ok("Gemm", A.a, nbase, in, 3, &want);
        in[3] = has_z ? rand_t(&r, 2, want.shape.d, -1, 1) : tu_absent();
        unfused_epilogue(&want, has_z ? &in[3] : NULL, act);
        add_act(&A, act);
        ir_tensor got;
        run_ok("kiln.Gemm", A.a, A.n, in, has_z ? 4 : (c_form ? 3 : 2), &got);
        char what[96];
        snprintf(what, sizeof what, "kiln.Gemm case %d (%s%s)", it, act->name, has_z ? ", Z" : "");
        compare(&got, &want, what);
        for (int i = 0; i < 4; i++) tu_tensor_free(&in[i]);
        tu_tensor_free(&got);
        tu_tensor_free(&want);
    }
}

/* ---- kiln.MatMul ---- */

static void test_matmul_random(void **state)
{
    tu_rng r = {13};
    for (int it = 0; it < 4 * N_ACTS; it++) {
        const act_case *act = &k_acts[it % N_ACTS];
        int64_t m = tu_int(&r, 1, 6), kk = tu_int(&r, 1, 8), n = tu_int(&r, 1, 9);
        int form = it % 3; /* [B, M, K] x [K, N]; [M, K] x [K, N]; [B, M, K] x [B, K, N] */
        int64_t b = tu_int(&r, 1, 3);
        ir_tensor in[4];
        in[0] = form == 1 ? rand_t(&r, 2, (int64_t[]){m, kk}, -1, 1)
                          : rand_t(&r, 3, (int64_t[]){b, m, kk}, -1, 1);
        in[1] = form == 2 ? rand_t(&r, 3, (int64_t[]){b, kk, n}, -1, 1)
                          : rand_t(&r, 2, (int64_t[]){kk, n}, -1, 1);
        bool has_bias = it % 4 != 3, has_z = it % 2 == 0;
        in[2] = has_bias ? rand_t(&r, 1, &n, -1, 1) : tu_absent();
        ir_tensor want;
        run_ok("MatMul", NULL, 0, in, 2, &want);
        if (has_bias) then("Add", NULL, 0, &want, &in[2], NULL);
        in[3] = has_z ? rand_t(&r, want.shape.rank, want.shape.d, -1, 1) : tu_absent();
        unfused_epilogue(&want, has_z ? &in[3] : NULL, act);
        attrs A = {.n = 0};
        add_act(&A, act);
        ir_tensor got;
        run_ok("kiln.MatMul", A.a, A.n, in, has_z ? 4 : (has_bias ? 3 : 2), &got);
        char what[96];
        snprintf(what, sizeof what, "kiln.MatMul case %d (%s%s%s)", it, act->name,
                 has_bias ? ", bias" : "", has_z ? ", Z" : "");
        compare(&got, &want, what);
        for (int i = 0; i < 4; i++) tu_tensor_free(&in[i]);
        tu_tensor_free(&got);
        tu_tensor_free(&want);
    }
}

/* A few exact values: Relu6 as Clip, the residual before the activation. */
static void test_hand_values(void **state)
{
    /* 1x1 conv with weight 2 and bias 1 on [-3, -1, 0, 2], residual [1, 1, 1, 10]. */
    ir_tensor in[4] = {
        tu_tensor_f32(4, (int64_t[]){1, 1, 1, 4}, (float[]){-3, -1, 0, 2}),
        tu_tensor_f32(4, (int64_t[]){1, 1, 1, 1}, (float[]){2}),
        tu_tensor_f32(1, (int64_t[]){1}, (float[]){1}),
        tu_tensor_f32(4, (int64_t[]){1, 1, 1, 4}, (float[]){1, 1, 1, 10}),
    };
    kiln_attr a[] = {KILN_ATTR_S("activation", "Clip"), KILN_ATTR_F("act_alpha", 0.0f),
                     KILN_ATTR_F("act_beta", 6.0f)};
    ir_tensor y;
    run_ok("kiln.Conv", a, 3, in, 4, &y);
    const float want[] = {0, 0, 2, 6}; /* clip(2x + 1 + z, 0, 6) */
    assert_memory_equal(y.data, want, sizeof want);
    tu_tensor_free(&y);
    for (int i = 0; i < 4; i++) tu_tensor_free(&in[i]);
}

/* ---- schemas ---- */

/* Every attribute of the base op is one of the fused op's, with the same type and
 * default, so a node can change op in place and keep its attributes. */
static void check_superset(const char *fused, const char *base)
{
    const ir_op *f = ir_op_find(fused), *b = ir_op_find(base);
    assert_non_null(f);
    assert_non_null(b);
    for (int32_t i = 0; i < b->n_attrs; i++) {
        const ir_attr_def *d = &b->attrs[i], *e = NULL;
        for (int32_t k = 0; k < f->n_attrs; k++)
            if (!strcmp(f->attrs[k].name, d->name)) e = &f->attrs[k];
        if (!e) fail_msg("%s lacks %s's attribute '%s'", fused, base, d->name);
        assert_int_equal(e->type, d->type);
        assert_int_equal(e->i, d->i);
        assert_true(e->f == d->f);
        assert_true((e->s == NULL) == (d->s == NULL));
        if (e->s) assert_string_equal(e->s, d->s);
    }
    assert_true(f->min_in == b->min_in && f->max_in == 4);
}

static void test_schemas(void **state)
{
    check_superset("kiln.Conv", "Conv");
    check_superset("kiln.Gemm", "Gemm");
    check_superset("kiln.MatMul", "MatMul");
    assert_true(kiln_op_supported("kiln.Conv"));
}

/* ---- errors ---- */

static void expect_err(const char *op, const kiln_attr *a, int32_t na, const ir_tensor *in,
                       int32_t nin, kiln_status want, const char *needle)
{
    ir_tensor out;
    kiln_status st = tu_run_op(op, a, na, in, nin, &out, 1);
    tu_tensor_free(&out);
    const char *msg = kiln_last_error();
    if (st != want || !strstr(msg, needle) || !strstr(msg, "node 'node'"))
        fail_msg("%s: want %d and '%s', got %d: %s", op, (int)want, needle, (int)st, msg);
}

static void test_errors(void **state)
{
    ir_tensor conv[4] = {
        tu_tensor_f32(4, (int64_t[]){1, 2, 3, 3}, NULL),
        tu_tensor_f32(4, (int64_t[]){4, 2, 1, 1}, NULL),
        tu_absent(),
        tu_tensor_f32(4, (int64_t[]){1, 4, 3, 2}, NULL),
    };
    kiln_attr bad = KILN_ATTR_S("activation", "Swish");
    expect_err("kiln.Conv", &bad, 1, conv, 3, KILN_ERR_INVALID_GRAPH, "activation \"Swish\"");
    expect_err("kiln.Conv", NULL, 0, conv, 4, KILN_ERR_SHAPE, "Z (input 3) has shape 1x4x3x2");
    ir_tensor mm[3] = {
        tu_tensor_f32(3, (int64_t[]){2, 3, 4}, NULL),
        tu_tensor_f32(2, (int64_t[]){4, 5}, NULL),
        tu_tensor_f32(1, (int64_t[]){4}, NULL),
    };
    expect_err("kiln.MatMul", NULL, 0, mm, 3, KILN_ERR_SHAPE, "bias must be 1-D");
    ir_tensor mi[2] = {tu_tensor_i64(2, (int64_t[]){2, 2}, NULL),
                       tu_tensor_i64(2, (int64_t[]){2, 2}, NULL)};
    expect_err("kiln.MatMul", NULL, 0, mi, 2, KILN_ERR_UNSUPPORTED, "expected f32");
    ir_tensor gm[4] = {
        tu_tensor_f32(2, (int64_t[]){2, 3}, NULL),
        tu_tensor_f32(2, (int64_t[]){3, 4}, NULL),
        tu_absent(),
        tu_tensor_i64(2, (int64_t[]){2, 4}, NULL),
    };
    expect_err("kiln.Gemm", NULL, 0, gm, 4, KILN_ERR_UNSUPPORTED, "Z (input 3) has dtype i64");
    for (int i = 0; i < 4; i++) {
        tu_tensor_free(&conv[i]);
        tu_tensor_free(&gm[i]);
    }
    for (int i = 0; i < 3; i++) tu_tensor_free(&mm[i]);
    for (int i = 0; i < 2; i++) tu_tensor_free(&mi[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_random),   cmocka_unit_test(test_gemm_random),
        cmocka_unit_test(test_matmul_random), cmocka_unit_test(test_hand_values),
        cmocka_unit_test(test_schemas),       cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
