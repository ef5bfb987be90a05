/* test_gemm_layers.c - the GEMM kernels of the CPU backend (MatMul, Gemm, Conv and their
 * kiln.* forms with weights packed into the plan) against the ops' reference kernels, on
 * random shapes with tails, strides, pads, dilations, groups, batches, biases, residuals
 * and activations, on every ISA path this machine runs (KILN_ISA); and the plan's packed
 * data: refused when it does not fit, identical across builds. Winograd is kept out of the
 * builds (KILN_CPU_WINOGRAD=off) so the 3x3 convolutions run on the GEMM. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testnet.h"

#define TOL 1e-5

static const char *const k_kernels[] = {"gemm_avx512", "gemm_avx2", "gemm_generic"};

/* A network of one layer `op` over input "x" (and "z" when given a shape) with constant
 * weights "w" (and bias "b" when b_n > 0). */
typedef struct layer_case {
    const char *op;
    kiln_dims x, w, z;
    int64_t b_n;
    const kiln_attr *attrs;
    int32_t n_attrs;
} layer_case;

static kiln_network *case_net(const layer_case *c, uint64_t seed)
{
    kiln_network *net = tn_net();
    assert_int_equal(kiln_network_add_input(net, "x", KILN_DTYPE_F32, &c->x), KILN_OK);
    tn_weights(net, "w", c->w.rank, c->w.d, seed, -1.0f, 1.0f);
    const char *in[4] = {"x", "w", "", ""};
    int32_t n_in = 2;
    if (c->b_n > 0) {
        tn_weights(net, "b", 1, &c->b_n, seed + 1, -1.0f, 1.0f);
        in[n_in++] = "b";
    }
    if (c->z.rank > 0) {
        assert_int_equal(kiln_network_add_input(net, "z", KILN_DTYPE_F32, &c->z), KILN_OK);
        if (n_in == 2) in[n_in++] = "";
        in[n_in++] = "z";
    }
    tn_layer(net, c->op, "layer", in, n_in, NAMES("y"), 1, c->attrs, c->n_attrs);
    tn_output(net, "y");
    return net;
}

/* The one-layer engine's output against the op's reference kernel on the same data, on
 * each path; the engine must run the path's GEMM kernel. */
static void check_case(const layer_case *c, uint64_t seed)
{
    kiln_network *net = case_net(c, seed);
    char *saved = getenv("KILN_ISA") ? strdup(getenv("KILN_ISA")) : NULL;
    float *ref = NULL;
    int64_t count = 0;
    for (int p = 0; p < 3; p++) {
        if (!tu_isa_runs(p)) continue;
        setenv("KILN_ISA", tu_isa_env[p], 1);
        kiln_engine *e = tn_build(net, NULL);
        kiln_layer_info li;
        assert_int_equal(kiln_engine_layer_info(e, 0, &li), KILN_OK);
        if (strcmp(li.kernel, k_kernels[p]) != 0)
            fail_msg("%s on %s runs kernel %s", c->op, tu_isa_env[p], li.kernel);
        tn_io got;
        tn_run(e, &got);
        /* The reference: the same inputs through the op's reference kernel. */
        if (!ref) {
            ir_tensor ins[4];
            int32_t n_in = 0;
            for (int32_t i = 0; i < got.n; i++)
                if (got.is_input[i] && strcmp(got.names[i], "x") == 0)
                    ins[0] = tu_tensor_f32(c->x.rank, c->x.d, got.data[i]);
            kiln_dims ws = c->w;
            int64_t wn = kiln_dims_count(&ws);
            float *w = malloc(sizeof(float) * (size_t)wn);
            tu_rng r = {seed};
            tu_fill(&r, w, wn, -1.0f, 1.0f);
            ins[1] = tu_tensor_f32(ws.rank, ws.d, w);
            free(w);
            n_in = 2;
            if (c->b_n > 0) {
                float *b = malloc(sizeof(float) * (size_t)c->b_n);
                tu_rng rb = {seed + 1};
                tu_fill(&rb, b, c->b_n, -1.0f, 1.0f);
                ins[n_in++] = tu_tensor_f32(1, &c->b_n, b);
                free(b);
            }
            if (c->z.rank > 0) {
                if (n_in == 2) ins[n_in++] = tu_absent();
                for (int32_t i = 0; i < got.n; i++)
                    if (got.is_input[i] && strcmp(got.names[i], "z") == 0)
                        ins[n_in++] = tu_tensor_f32(c->z.rank, c->z.d, got.data[i]);
            }
            ir_tensor out;
            tu_run_op_ok(c->op, c->attrs, c->n_attrs, ins, n_in, &out, 1);
            count = ir_tensor_count(&out);
            ref = malloc(sizeof(float) * (size_t)(count ? count : 1));
            memcpy(ref, out.data, sizeof(float) * (size_t)count);
            tu_tensor_free(&out);
            for (int32_t i = 0; i < n_in; i++) tu_tensor_free(&ins[i]);
        }
        for (int32_t i = 0; i < got.n; i++) {
            if (got.is_input[i]) continue;
            assert_int_equal(got.bytes[i], sizeof(float) * (size_t)count);
            double err = tu_rel_l2(got.data[i], ref, count);
            if (!(err <= TOL))
                fail_msg("%s on %s: rel L2 %g against the reference", c->op, tu_isa_env[p], err);
        }
        tn_io_free(&got);
        kiln_engine_destroy(e);
    }
    if (saved) {
        setenv("KILN_ISA", saved, 1);
        free(saved);
    } else {
        unsetenv("KILN_ISA");
    }
    free(ref);
    kiln_network_destroy(net);
}

static kiln_dims dims2(int64_t a, int64_t b) { return (kiln_dims){2, {a, b}}; }

static void test_matmul_shapes(void **state)
{
    (void)state;
    tu_rng r = {5};
    const int64_t sizes[] = {1, 2, 3, 7, 13, 16, 17, 31, 33, 64, 65, 100};
    for (int t = 0; t < 24; t++) {
        int64_t m = sizes[tu_int(&r, 0, 11)], n = sizes[tu_int(&r, 0, 11)],
                k = sizes[tu_int(&r, 0, 11)];
        int64_t batch = tu_int(&r, 1, 3);
        layer_case c = {.op = "MatMul", .w = dims2(k, n)};
        c.x = batch > 1 ? (kiln_dims){3, {batch, m, k}} : dims2(m, k);
        check_case(&c, 100 + (uint64_t)t);
    }
}

static void test_fused_matmul_epilogues(void **state)
{
    (void)state;
    const char *acts[] = {"",        "Relu",      "LeakyRelu",   "Clip",
                          "Sigmoid", "HardSwish", "HardSigmoid", "Silu",
                          "Gelu",    "GeluTanh",  "Tanh",        "Elu"};
    for (int a = 0; a < 12; a++) {
        kiln_attr attrs[] = {KILN_ATTR_S("activation", acts[a]), KILN_ATTR_F("act_alpha", 0.2f),
                             KILN_ATTR_F("act_beta", a == 3 ? 0.7f : 0.5f)};
        layer_case c = {.op = "kiln.MatMul",
                        .x = {3, {2, 9, 40}},
                        .w = dims2(40, 37),
                        .b_n = a % 2 ? 37 : 0,
                        .attrs = attrs,
                        .n_attrs = 3};
        if (a % 3 == 0) c.z = (kiln_dims){3, {2, 9, 37}};
        check_case(&c, 200 + (uint64_t)a);
    }
}

static void test_gemm_forms(void **state)
{
    (void)state;
    for (int f = 0; f < 8; f++) {
        bool ta = f & 1, tb = f & 2, bias = f & 4;
        int64_t m = 5 + f, k = 19 + 3 * f, n = 29 - f;
        kiln_attr attrs[] = {KILN_ATTR_I("transA", ta), KILN_ATTR_I("transB", tb),
                             KILN_ATTR_F("alpha", f == 5 ? 0.5f : 1.0f)};
        layer_case c = {.op = "Gemm",
                        .x = ta ? dims2(k, m) : dims2(m, k),
                        .w = tb ? dims2(n, k) : dims2(k, n),
                        .b_n = bias ? n : 0,
                        .attrs = attrs,
                        .n_attrs = 3};
        check_case(&c, 300 + (uint64_t)f);
    }
    kiln_attr attrs[] = {KILN_ATTR_I("transB", 1), KILN_ATTR_S("activation", "Relu")};
    layer_case c = {.op = "kiln.Gemm",
                    .x = dims2(4, 64),
                    .w = dims2(10, 64),
                    .b_n = 10,
                    .z = dims2(4, 10),
                    .attrs = attrs,
                    .n_attrs = 2};
    check_case(&c, 399);
}

static void test_conv_forms(void **state)
{
    (void)state;
    /* batch, cin, h, w, cout, kernel, stride, pad, dilation, group */
    const int64_t forms[][10] = {
        {1, 3, 8, 8, 4, 1, 1, 0, 1, 1},   {2, 16, 7, 5, 9, 1, 1, 0, 1, 1},
        {1, 3, 9, 11, 8, 3, 1, 1, 1, 1},  {2, 5, 10, 10, 7, 3, 2, 1, 1, 1},
        {1, 4, 12, 9, 6, 3, 1, 2, 2, 1},  {1, 8, 9, 9, 12, 3, 1, 1, 1, 4},
        {1, 6, 13, 13, 6, 5, 2, 2, 1, 2}, {3, 2, 6, 6, 3, 7, 3, 3, 1, 1},
        {1, 33, 6, 6, 17, 1, 2, 0, 1, 1}, {1, 64, 14, 14, 64, 3, 1, 1, 1, 1},
    };
    for (size_t f = 0; f < sizeof forms / sizeof *forms; f++) {
        const int64_t *p = forms[f];
        int64_t k = p[5], s = p[6], pad = p[7], dil = p[8], g = p[9];
        int64_t kernel[2] = {k, k}, strides[2] = {s, s}, pads[4] = {pad, pad, pad, pad},
                dils[2] = {dil, dil};
        bool fused = f % 2 == 1;
        kiln_attr attrs[] = {KILN_ATTR_IS("kernel_shape", kernel, 2),
                             KILN_ATTR_IS("strides", strides, 2),
                             KILN_ATTR_IS("pads", pads, 4),
                             KILN_ATTR_IS("dilations", dils, 2),
                             KILN_ATTR_I("group", g),
                             KILN_ATTR_S("activation", "Relu")};
        layer_case c = {.op = fused ? "kiln.Conv" : "Conv",
                        .x = {4, {p[0], p[1], p[2], p[3]}},
                        .w = {4, {p[4], p[1] / g, k, k}},
                        .b_n = f % 3 ? p[4] : 0,
                        .attrs = attrs,
                        .n_attrs = fused ? 6 : 5};
        if (fused && f % 4 == 1) {
            int64_t oh = (p[2] + 2 * pad - dil * (k - 1) - 1) / s + 1;
            int64_t ow = (p[3] + 2 * pad - dil * (k - 1) - 1) / s + 1;
            c.z = (kiln_dims){4, {p[0], p[4], oh, ow}};
        }
        check_case(&c, 400 + (uint64_t)f);
    }
}

/* Depthwise convolutions and MatMuls of two activations are not the GEMM kernels' work. */
static void test_left_to_other_kernels(void **state)
{
    (void)state;
    int64_t kernel[2] = {3, 3}, pads[4] = {1, 1, 1, 1};
    kiln_attr attrs[] = {KILN_ATTR_IS("kernel_shape", kernel, 2), KILN_ATTR_IS("pads", pads, 4),
                         KILN_ATTR_I("group", 8)};
    layer_case c = {
        .op = "Conv", .x = {4, {1, 8, 6, 6}}, .w = {4, {8, 1, 3, 3}}, .attrs = attrs, .n_attrs = 3};
    kiln_network *net = case_net(&c, 1);
    kiln_engine *e = tn_build(net, NULL);
    kiln_layer_info li;
    assert_int_equal(kiln_engine_layer_info(e, 0, &li), KILN_OK);
    assert_true(strncmp(li.kernel, "gemm_", 5) != 0);
    kiln_engine_destroy(e);
    kiln_network_destroy(net);

    net = tn_net();
    kiln_dims a = dims2(4, 6), b = dims2(6, 5);
    assert_int_equal(kiln_network_add_input(net, "a", KILN_DTYPE_F32, &a), KILN_OK);
    assert_int_equal(kiln_network_add_input(net, "b", KILN_DTYPE_F32, &b), KILN_OK);
    tn_layer(net, "MatMul", "mm", IN("a", "b"), OUT("y"), NO_ATTRS);
    tn_output(net, "y");
    e = tn_build(net, NULL);
    assert_int_equal(kiln_engine_layer_info(e, 0, &li), KILN_OK);
    /* the activations' MatMul kernels of matmul_act.c (test_attention_kernels.c) */
    assert_true(strncmp(li.kernel, "matmul_act_", 11) == 0);
    kiln_engine_destroy(e);
    kiln_network_destroy(net);
}

/* The packed weights are in the plan, the same for two builds, and a plan whose packed
 * data does not fit the layer is refused. */
static void test_packed_data_in_plans(void **state)
{
    (void)state;
    int64_t kernel[2] = {3, 3}, pads[4] = {1, 1, 1, 1};
    kiln_attr attrs[] = {KILN_ATTR_IS("kernel_shape", kernel, 2), KILN_ATTR_IS("pads", pads, 4)};
    layer_case c = {.op = "Conv",
                    .x = {4, {1, 4, 8, 8}},
                    .w = {4, {8, 4, 3, 3}},
                    .b_n = 8,
                    .attrs = attrs,
                    .n_attrs = 2};
    kiln_network *net = case_net(&c, 9);
    kiln_engine *e1 = tn_build(net, NULL), *e2 = tn_build(net, NULL);
    void *p1, *p2;
    size_t n1, n2;
    assert_int_equal(kiln_engine_serialize(e1, &p1, &n1), KILN_OK);
    assert_int_equal(kiln_engine_serialize(e2, &p2, &n2), KILN_OK);
    assert_int_equal(n1, n2);
    assert_memory_equal(p1, p2, n1);
    /* The 8x4x3x3 weights are left out of the plan: their packed copy (a little larger:
     * header and panel padding) and the bias are what it holds. */
    size_t w = 8 * 4 * 9 * sizeof(float);
    assert_true(kiln_engine_weight_bytes(e1) > w && kiln_engine_weight_bytes(e1) < 2 * w);
    kiln_engine *back = NULL;
    assert_int_equal(kiln_engine_load_memory(p1, n1, &back), KILN_OK);
    tn_io a, b;
    tn_run(e1, &a);
    tn_run(back, &b);
    for (int32_t i = 0; i < a.n; i++) assert_memory_equal(a.data[i], b.data[i], a.bytes[i]);
    tn_io_free(&a);
    tn_io_free(&b);
    kiln_engine_destroy(back);
    kiln_free(p1);
    kiln_free(p2);
    kiln_engine_destroy(e1);
    kiln_engine_destroy(e2);
    kiln_network_destroy(net);
}

static void test_allocation_failures(void **state)
{
    (void)state;
    int64_t kernel[2] = {3, 3};
    kiln_attr attrs[] = {KILN_ATTR_IS("kernel_shape", kernel, 2)};
    layer_case c = {.op = "Conv",
                    .x = {4, {1, 3, 6, 6}},
                    .w = {4, {4, 3, 3, 3}},
                    .b_n = 4,
                    .attrs = attrs,
                    .n_attrs = 1};
    kiln_network *net = case_net(&c, 3);
    tu_build_survives_allocation_failures(net);
    kiln_network_destroy(net);
}

int main(void)
{
    /* The 3x3 stride-1 convolutions here are the GEMM kernels' to test: Winograd, offered
     * ahead of them, stays out of these builds (test_winograd.c tests it). */
    setenv("KILN_CPU_WINOGRAD", "off", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul_shapes),
        cmocka_unit_test(test_fused_matmul_epilogues),
        cmocka_unit_test(test_gemm_forms),
        cmocka_unit_test(test_conv_forms),
        cmocka_unit_test(test_left_to_other_kernels),
        cmocka_unit_test(test_packed_data_in_plans),
        cmocka_unit_test(test_allocation_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
