/* test_winograd.c - the Winograd F(4x4, 3x3) kernels of the CPU backend against the reference
 * Conv: each path's kernel run directly on random shapes (sizes below and between tiles,
 * pads, channel tails, batches, bias, residual, activations) and thread counts; and through
 * engines: which layers it takes (KILN_ISA per path, KILN_CPU_WINOGRAD), plans, dynamic
 * shapes and allocation failures. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "testnet.h"

/* The bound for Winograd's error (10x the 1e-5 of direct sums); the typical error is printed. */
#define TOL 1e-4

static const char *const k_kernels[] = {"winograd_f4_avx512", "winograd_f4_avx2",
                                        "winograd_f4_generic"};

/* setenv / unsetenv that restore the old value at the end of a test. */
typedef struct saved_env {
    const char *name;
    char *value;
} saved_env;

static saved_env env_save(const char *name)
{
    const char *v = getenv(name);
    return (saved_env){name, v ? strdup(v) : NULL};
}

static void env_restore(saved_env *s)
{
    if (s->value)
        setenv(s->name, s->value, 1);
    else
        unsetenv(s->name);
    free(s->value);
}

/* ---- one convolution ---- */

typedef struct conv_case {
    bool fused; /* kiln.Conv (bias, Z, activation) or Conv (bias) */
    int64_t batch, cin, cout, h, w;
    int64_t pads[4]; /* top, left, bottom, right */
    bool bias, z;
    const char *act;
    float alpha, beta;
} conv_case;

static int32_t case_attrs(const conv_case *c, kiln_attr *a)
{
    static const int64_t k3[2] = {3, 3};
    int32_t n = 0;
    a[n++] = (kiln_attr)KILN_ATTR_IS("kernel_shape", k3, 2);
    a[n++] = (kiln_attr)KILN_ATTR_IS("pads", c->pads, 4);
    if (c->fused) {
        a[n++] = (kiln_attr)KILN_ATTR_S("activation", c->act ? c->act : "");
        a[n++] = (kiln_attr)KILN_ATTR_F("act_alpha", c->alpha);
        a[n++] = (kiln_attr)KILN_ATTR_F("act_beta", c->beta);
    }
    return n;
}

static int64_t out_h(const conv_case *c) { return c->h + c->pads[0] + c->pads[2] - 2; }
static int64_t out_w(const conv_case *c) { return c->w + c->pads[1] + c->pads[3] - 2; }

/* The case's inputs: x in [-2, 2), w and bias in [-1, 1), z in [-1, 1). */
static int32_t case_inputs(const conv_case *c, uint64_t seed, ir_tensor *in)
{
    tu_rng r = {seed};
    int64_t xd[4] = {c->batch, c->cin, c->h, c->w}, wd[4] = {c->cout, c->cin, 3, 3};
    int64_t zd[4] = {c->batch, c->cout, out_h(c), out_w(c)};
    in[0] = tu_tensor_f32(4, xd, NULL);
    tu_fill(&r, in[0].data, ir_tensor_count(&in[0]), -2.0f, 2.0f);
    in[1] = tu_tensor_f32(4, wd, NULL);
    tu_fill(&r, in[1].data, ir_tensor_count(&in[1]), -1.0f, 1.0f);
    int32_t n = 2;
    if (c->bias) {
        in[2] = tu_tensor_f32(1, &c->cout, NULL);
        tu_fill(&r, in[2].data, c->cout, -1.0f, 1.0f);
        n = 3;
    }
    if (c->z) {
        if (n == 2) in[n++] = tu_absent();
        in[3] = tu_tensor_f32(4, zd, NULL);
        tu_fill(&r, in[3].data, ir_tensor_count(&in[3]), -1.0f, 1.0f);
        n = 4;
    }
    return n;
}

/* Runs backend kernel `kname` on the case's node directly, as an engine would: prepare the
 * data, check it, size the scratch for `threads`, run. `out` gets a malloc'd output. */
static void run_kernel(const char *kname, const conv_case *c, const ir_tensor *in, int32_t n_in,
                       int32_t threads, ir_tensor *out)
{
    const char *op = c->fused ? "kiln.Conv" : "Conv";
    const backend_kernel *k = backend_cpu()->find(op, kname);
    assert_non_null(k);
    kiln_attr attrs[8];
    int32_t n_attrs = case_attrs(c, attrs);
    ir_graph g;
    ir_graph_init(&g);
    const char *names[4] = {"x", "w", "", ""};
    if (n_in > 2 && ir_tensor_present(&in[2])) names[2] = "b";
    if (n_in > 3) names[3] = "z";
    for (int32_t i = 0; i < n_in; i++) {
        if (!*names[i]) continue;
        size_t bytes = (size_t)ir_tensor_count(&in[i]) * sizeof(float);
        assert_int_equal(ir_graph_add_constant(&g, names[i], KILN_DTYPE_F32, &in[i].shape,
                                               in[i].data, bytes, false, NULL),
                         KILN_OK);
    }
    int32_t id;
    assert_int_equal(
        ir_graph_add_node(&g, op, "conv", names, n_in, NAMES("y"), 1, attrs, n_attrs, &id),
        KILN_OK);
    const ir_node *n = &g.nodes[id];
    memset(out, 0, sizeof *out);
    ir_infer inf = {.node = n, .n_in = n_in, .n_out = 1, .in = in, .out = out};
    assert_int_equal(n->op->infer(&inf), KILN_OK);
    out->data = calloc((size_t)ir_tensor_count(out) + 1, sizeof(float));
    kiln_buf data = {0};
    kiln_status st = k->prepare(n, in, n_in, out, 1, &data);
    if (st) fail_msg("%s: prepare: %s", kname, kiln_last_error());
    assert_true(k->data_ok(n, in, n_in, out, 1, data.data, data.len));
    size_t sb = k->scratch(n, in, n_in, out, 1, threads);
    void *scratch = sb ? kiln_aligned_alloc(sb, 64) : NULL;
    /* the plan keeps prepared data 64-byte aligned */
    void *aligned = kiln_aligned_alloc(data.len ? data.len : 1, 64);
    memcpy(aligned, data.data, data.len);
    backend_exec x = {threads, aligned, data.len, scratch, sb};
    st = k->run(n, in, n_in, out, 1, &x);
    if (st) fail_msg("%s: run: %s", kname, kiln_last_error());
    kiln_aligned_free(aligned);
    kiln_aligned_free(scratch);
    kiln_buf_free(&data);
    ir_graph_free(&g);
}

/* The largest and the sum of the errors seen, for the report line. */
static double g_err_max, g_err_sum;
static int g_err_n;

/* The case through each path's kernel against the reference Conv. */
static void check_case(const conv_case *c, uint64_t seed, int32_t threads)
{
    ir_tensor in[4], ref;
    int32_t n_in = case_inputs(c, seed, in);
    kiln_attr attrs[8];
    int32_t n_attrs = case_attrs(c, attrs);
    tu_run_op_ok(c->fused ? "kiln.Conv" : "Conv", attrs, n_attrs, in, n_in, &ref, 1);
    int64_t count = ir_tensor_count(&ref);
    for (int p = 0; p < 3; p++) {
        if (!tu_isa_runs(p)) continue;
        ir_tensor got;
        run_kernel(k_kernels[p], c, in, n_in, threads, &got);
        assert_int_equal(ir_tensor_count(&got), count);
        double err = tu_rel_l2(got.data, ref.data, count);
        if (!(err <= TOL))
            fail_msg("%s: %lldx%lldx%lldx%lld -> %lld, pads %lld %lld %lld %lld, act '%s': rel L2 "
                     "%g",
                     k_kernels[p], (long long)c->batch, (long long)c->cin, (long long)c->h,
                     (long long)c->w, (long long)c->cout, (long long)c->pads[0],
                     (long long)c->pads[1], (long long)c->pads[2], (long long)c->pads[3],
                     c->act ? c->act : "", err);
        if (err > g_err_max) g_err_max = err;
        g_err_sum += err;
        g_err_n++;
        tu_tensor_free(&got);
    }
    tu_tensor_free(&ref);
    for (int32_t i = 0; i < n_in; i++) tu_tensor_free(&in[i]);
}

static const char *const k_acts[] = {"",        "Relu",      "LeakyRelu",   "Clip",
                                     "Sigmoid", "HardSwish", "HardSigmoid", "Silu",
                                     "Gelu",    "GeluTanh",  "Tanh",        "Elu"};

static void test_random_shapes(void **state)
{
    (void)state;
    tu_rng r = {77};
    const int64_t chans[] = {1, 2, 3, 7, 15, 16, 17, 31, 32, 33, 48, 64, 70};
    g_err_max = g_err_sum = 0.0;
    g_err_n = 0;
    for (int t = 0; t < 60; t++) {
        conv_case c = {0};
        c.fused = tu_int(&r, 0, 2) != 0;
        c.batch = tu_int(&r, 1, 3);
        c.cin = chans[tu_int(&r, 0, 12)];
        c.cout = chans[tu_int(&r, 0, 12)];
        for (int i = 0; i < 4; i++) c.pads[i] = tu_int(&r, 0, 1);
        /* outputs 1..40 wide: below a tile, between tiles, several tiles */
        c.h = tu_int(&r, 1, 40) + 2 - c.pads[0] - c.pads[2];
        c.w = tu_int(&r, 1, 40) + 2 - c.pads[1] - c.pads[3];
        if (c.h < 1) c.h = 1;
        if (c.w < 1) c.w = 1;
        if (out_h(&c) < 1 || out_w(&c) < 1) continue;
        c.bias = tu_int(&r, 0, 1) != 0;
        if (c.fused) {
            c.z = tu_int(&r, 0, 1) != 0;
            c.act = k_acts[tu_int(&r, 0, 11)];
            c.alpha = 0.2f;
            c.beta = strcmp(c.act, "Clip") == 0 ? 0.7f : 0.5f;
        }
        check_case(&c, 1000 + (uint64_t)t, 1);
    }
    print_message("winograd: %d kernel runs, rel L2 mean %.2e, max %.2e\n", g_err_n,
                  g_err_sum / g_err_n, g_err_max);
}

/* Shapes at the edges of the tiling: 1x1 images (pads 1 both sides give 1x1 outputs), 4x4,
 * 5x5, images that leave 1, 2 or 3 outputs in the last tile, large pads. */
static void test_tile_edges(void **state)
{
    (void)state;
    /* batch, cin, cout, h, w, pads t l b r */
    const int64_t forms[][9] = {
        {1, 16, 16, 1, 1, 1, 1, 1, 1},   {2, 3, 5, 3, 3, 0, 0, 0, 0},
        {1, 16, 20, 6, 6, 0, 0, 0, 0},   {1, 17, 18, 4, 4, 1, 1, 1, 1},
        {3, 18, 17, 5, 7, 1, 0, 0, 1},   {1, 16, 16, 9, 10, 1, 1, 1, 1},
        {1, 33, 65, 11, 13, 0, 1, 1, 0}, {2, 16, 16, 40, 3, 1, 1, 1, 1},
        {1, 20, 24, 2, 40, 2, 2, 2, 2},  {1, 16, 16, 7, 7, 3, 0, 2, 4},
    };
    for (size_t f = 0; f < sizeof forms / sizeof *forms; f++) {
        const int64_t *p = forms[f];
        conv_case c = {.fused = f % 2 == 1,
                       .batch = p[0],
                       .cin = p[1],
                       .cout = p[2],
                       .h = p[3],
                       .w = p[4],
                       .pads = {p[5], p[6], p[7], p[8]},
                       .bias = f % 3 != 0,
                       .z = f % 4 == 1,
                       .act = f % 4 == 3 ? "Relu" : ""};
        check_case(&c, 2000 + f, 1);
    }
}

/* Threads split tile blocks: the output is the same bytes for any thread count, and a
 * context sized for more threads runs with fewer. */
static void test_threads_same_bytes(void **state)
{
    (void)state;
    conv_case c = {.fused = true,
                   .batch = 2,
                   .cin = 40,
                   .cout = 48,
                   .h = 37,
                   .w = 41,
                   .pads = {1, 1, 1, 1},
                   .bias = true,
                   .z = true,
                   .act = "Relu"};
    ir_tensor in[4];
    int32_t n_in = case_inputs(&c, 3000, in);
    for (int p = 0; p < 3; p++) {
        if (!tu_isa_runs(p)) continue;
        ir_tensor one;
        run_kernel(k_kernels[p], &c, in, n_in, 1, &one);
        for (int32_t t = 2; t <= 4; t++) {
            ir_tensor many;
            run_kernel(k_kernels[p], &c, in, n_in, t, &many);
            assert_memory_equal(one.data, many.data, sizeof(float) * (size_t)ir_tensor_count(&one));
            tu_tensor_free(&many);
        }
        tu_tensor_free(&one);
    }
    for (int32_t i = 0; i < n_in; i++) tu_tensor_free(&in[i]);
}

/* ---- through engines ---- */

/* A network of one layer with constant weights "w" (and bias "b"), input "x". */
static kiln_network *layer_net(const char *op, kiln_dims x, kiln_dims w, bool bias,
                               const kiln_attr *attrs, int32_t n_attrs)
{
    kiln_network *net = tn_net();
    assert_int_equal(kiln_network_add_input(net, "x", KILN_DTYPE_F32, &x), KILN_OK);
    tn_weights(net, "w", w.rank, w.d, 5, -1.0f, 1.0f);
    const char *in[3] = {"x", "w", "b"};
    if (bias) tn_weights(net, "b", 1, w.d, 6, -1.0f, 1.0f);
    tn_layer(net, op, "conv", in, bias ? 3 : 2, NAMES("y"), 1, attrs, n_attrs);
    tn_output(net, "y");
    return net;
}

static const char *kernel_of(kiln_engine *e)
{
    kiln_layer_info li;
    assert_int_equal(kiln_engine_layer_info(e, 0, &li), KILN_OK);
    return li.kernel;
}

/* The engine's output against the reference Conv on the same inputs. */
static void check_engine(kiln_engine *e, const kiln_network *net_unused, kiln_dims x, kiln_dims w,
                         bool bias, const kiln_attr *attrs, int32_t n_attrs)
{
    (void)net_unused;
    tn_io got;
    tn_run(e, &got);
    ir_tensor in[3];
    int32_t n_in = bias ? 3 : 2;
    for (int32_t i = 0; i < got.n; i++)
        if (got.is_input[i]) in[0] = tu_tensor_f32(x.rank, x.d, got.data[i]);
    in[1] = tu_tensor_f32(w.rank, w.d, NULL);
    tu_rng r = {5};
    tu_fill(&r, in[1].data, kiln_dims_count(&w), -1.0f, 1.0f);
    if (bias) {
        in[2] = tu_tensor_f32(1, w.d, NULL);
        tu_rng rb = {6};
        tu_fill(&rb, in[2].data, w.d[0], -1.0f, 1.0f);
    }
    ir_tensor ref;
    tu_run_op_ok("Conv", attrs, n_attrs, in, n_in, &ref, 1);
    for (int32_t i = 0; i < got.n; i++)
        if (!got.is_input[i]) {
            double err = tu_rel_l2(got.data[i], ref.data, ir_tensor_count(&ref));
            if (!(err <= TOL)) fail_msg("%s: rel L2 %g", kernel_of(e), err);
        }
    tu_tensor_free(&ref);
    for (int32_t i = 0; i < n_in; i++) tu_tensor_free(&in[i]);
    tn_io_free(&got);
}

/* ResNet's 3x3 convolutions (smaller) take Winograd on every path; KILN_ISA picks the path. */
static void test_engine_paths(void **state)
{
    (void)state;
    saved_env isa = env_save("KILN_ISA");
    int64_t pads[4] = {1, 1, 1, 1};
    kiln_attr attrs[] = {KILN_ATTR_IS("pads", pads, 4)};
    kiln_dims x = {4, {2, 32, 14, 13}}, w = {4, {24, 32, 3, 3}};
    kiln_network *net = layer_net("Conv", x, w, true, attrs, 1);
    for (int p = 0; p < 3; p++) {
        if (!tu_isa_runs(p)) continue;
        setenv("KILN_ISA", tu_isa_env[p], 1);
        kiln_engine *e = tn_build(net, NULL);
        assert_string_equal(kernel_of(e), k_kernels[p]);
        check_engine(e, net, x, w, true, attrs, 1);
        kiln_engine_destroy(e);
    }
    env_restore(&isa);
    kiln_network_destroy(net);
}

/* Layers Winograd does not take, or where it does not win (winograd.c `wins`), go to the
 * GEMM kernels; the ones it wins take it. */
static void test_which_layers(void **state)
{
    (void)state;
    /* cin, cout, h, w (pads 1: the output's size), kernel, stride, dilation, group,
     * Winograd? */
    const int64_t forms[][9] = {
        {32, 32, 16, 16, 3, 2, 1, 1, 0},   /* stride 2 */
        {32, 32, 16, 16, 3, 1, 2, 1, 0},   /* dilation 2 */
        {32, 32, 16, 16, 3, 1, 1, 2, 0},   /* groups */
        {32, 32, 16, 16, 5, 1, 1, 1, 0},   /* 5x5 */
        {32, 32, 16, 16, 1, 1, 1, 1, 0},   /* 1x1 */
        {7, 32, 16, 16, 3, 1, 1, 1, 0},    /* few input channels */
        {8, 32, 16, 16, 3, 1, 1, 1, 1},    /* enough */
        {32, 1, 16, 16, 3, 1, 1, 1, 1},    /* one output channel */
        {32, 32, 3, 16, 3, 1, 1, 1, 0},    /* 3 output rows */
        {32, 32, 16, 3, 3, 1, 1, 1, 0},    /* 3 output columns */
        {64, 64, 8, 4, 3, 1, 1, 1, 0},     /* 2 tiles */
        {64, 64, 7, 7, 3, 1, 1, 1, 1},     /* 4 tiles, 64 x 64 */
        {128, 64, 7, 7, 3, 1, 1, 1, 0},    /* 4 tiles, more */
        {256, 256, 12, 12, 3, 1, 1, 1, 1}, /* 9 tiles, 256 x 256 */
        {512, 256, 12, 12, 3, 1, 1, 1, 0}, /* 9 tiles, more */
        {512, 512, 14, 14, 3, 1, 1, 1, 1}, /* 16 tiles */
        {512, 512, 7, 7, 3, 1, 1, 1, 0},   /* ResNet-50's last stage at batch 1 */
    };
    for (size_t f = 0; f < sizeof forms / sizeof *forms; f++) {
        const int64_t *p = forms[f];
        int64_t k[2] = {p[4], p[4]}, s[2] = {p[5], p[5]}, d[2] = {p[6], p[6]};
        int64_t pads[4] = {p[4] / 2, p[4] / 2, p[4] / 2, p[4] / 2};
        kiln_attr attrs[] = {KILN_ATTR_IS("kernel_shape", k, 2), KILN_ATTR_IS("strides", s, 2),
                             KILN_ATTR_IS("dilations", d, 2), KILN_ATTR_I("group", p[7]),
                             KILN_ATTR_IS("pads", pads, 4)};
        kiln_dims x = {4, {1, p[0], p[2], p[3]}}, w = {4, {p[1], p[0] / p[7], p[4], p[4]}};
        kiln_network *net = layer_net("Conv", x, w, false, attrs, 5);
        kiln_engine *e = tn_build(net, NULL);
        const char *want = p[8] ? "winograd_f4_" : "gemm_";
        if (strncmp(kernel_of(e), want, strlen(want)) != 0)
            fail_msg("form %zu runs %s, expected %s*", f, kernel_of(e), want);
        kiln_engine_destroy(e);
        kiln_network_destroy(net);
    }
}

/* KILN_CPU_WINOGRAD=off keeps Winograd out of builds; a plan that uses it still loads (and
 * gives the same bytes) with the setting off. The plan's data: the same for two builds. */
static void test_switch_and_plans(void **state)
{
    (void)state;
    saved_env sw = env_save("KILN_CPU_WINOGRAD");
    int64_t pads[4] = {1, 1, 1, 1};
    kiln_attr attrs[] = {KILN_ATTR_IS("pads", pads, 4), KILN_ATTR_S("activation", "Relu")};
    kiln_dims x = {4, {1, 16, 9, 9}}, w = {4, {16, 16, 3, 3}};
    kiln_network *net = layer_net("kiln.Conv", x, w, true, attrs, 2);
    unsetenv("KILN_CPU_WINOGRAD");
    kiln_engine *e1 = tn_build(net, NULL), *e2 = tn_build(net, NULL);
    assert_true(strncmp(kernel_of(e1), "winograd_f4_", 12) == 0);
    void *p1, *p2;
    size_t n1, n2;
    assert_int_equal(kiln_engine_serialize(e1, &p1, &n1), KILN_OK);
    assert_int_equal(kiln_engine_serialize(e2, &p2, &n2), KILN_OK);
    assert_int_equal(n1, n2);
    assert_memory_equal(p1, p2, n1);
    /* weights, then the transformed ones: 36 points of 16x16 */
    assert_true(kiln_engine_weight_bytes(e1) > (16 * 16 * 9 + 36 * 16 * 16) * sizeof(float));
    setenv("KILN_CPU_WINOGRAD", "off", 1);
    kiln_engine *off = tn_build(net, NULL), *back = NULL;
    assert_true(strncmp(kernel_of(off), "gemm_", 5) == 0);
    assert_int_equal(kiln_engine_load_memory(p1, n1, &back), KILN_OK);
    assert_string_equal(kernel_of(back), kernel_of(e1));
    tn_io a, b, c;
    tn_run(e1, &a);
    tn_run(back, &b);
    tn_run(off, &c);
    for (int32_t i = 0; i < a.n; i++) {
        assert_memory_equal(a.data[i], b.data[i], a.bytes[i]);
        if (!a.is_input[i])
            assert_true(tu_rel_l2(a.data[i], c.data[i], (int64_t)(a.bytes[i] / 4)) <= TOL);
    }
    tn_io_free(&a);
    tn_io_free(&b);
    tn_io_free(&c);
    env_restore(&sw);
    kiln_engine_destroy(back);
    kiln_engine_destroy(off);
    kiln_free(p1);
    kiln_free(p2);
    kiln_engine_destroy(e1);
    kiln_engine_destroy(e2);
    kiln_network_destroy(net);
}

/* Prepared data that does not fit the layer is refused: short, another path's, a header
 * changed (the first point's row count, the last point's magic). */
static void test_data_checked(void **state)
{
    (void)state;
    int64_t wd[4] = {17, 16, 3, 3};
    ir_tensor in[2] = {tu_tensor_f32(4, (int64_t[]){1, 16, 8, 8}, NULL),
                       tu_tensor_f32(4, wd, NULL)};
    tu_rng r = {4000};
    tu_fill(&r, in[0].data, ir_tensor_count(&in[0]), -1.0f, 1.0f);
    tu_fill(&r, in[1].data, ir_tensor_count(&in[1]), -1.0f, 1.0f);
    int64_t pads[4] = {1, 1, 1, 1};
    kiln_attr attrs[] = {KILN_ATTR_IS("pads", pads, 4)};
    ir_graph g;
    ir_graph_init(&g);
    for (int i = 0; i < 2; i++)
        assert_int_equal(
            ir_graph_add_constant(&g, i ? "w" : "x", KILN_DTYPE_F32, &in[i].shape, in[i].data,
                                  sizeof(float) * (size_t)ir_tensor_count(&in[i]), false, NULL),
            KILN_OK);
    int32_t id;
    assert_int_equal(
        ir_graph_add_node(&g, "Conv", "conv", NAMES("x", "w"), 2, NAMES("y"), 1, attrs, 1, &id),
        KILN_OK);
    const ir_node *n = &g.nodes[id];
    ir_tensor out = {.dtype = KILN_DTYPE_F32, .shape = {4, {1, 17, 8, 8}}};
    for (int p = 0; p < 3; p++) {
        if (!tu_isa_runs(p)) continue;
        const backend_kernel *k = backend_cpu()->find("Conv", k_kernels[p]);
        assert_non_null(k);
        kiln_buf data = {0};
        assert_int_equal(k->prepare(n, in, 2, &out, 1, &data), KILN_OK);
        assert_true(k->data_ok(n, in, 2, &out, 1, data.data, data.len));
        assert_false(k->data_ok(n, in, 2, &out, 1, data.data, data.len - 64));
        int q = p == 2 ? 1 : 2;
        if (tu_isa_runs(q)) {
            kiln_buf od = {0};
            const backend_kernel *other = backend_cpu()->find("Conv", k_kernels[q]);
            assert_int_equal(other->prepare(n, in, 2, &out, 1, &od), KILN_OK);
            assert_false(k->data_ok(n, in, 2, &out, 1, od.data, od.len));
            kiln_buf_free(&od);
        }
        data.data[24] ^= 1;
        assert_false(k->data_ok(n, in, 2, &out, 1, data.data, data.len));
        data.data[24] ^= 1;
        data.data[data.len / 36 * 35] ^= 1;
        assert_false(k->data_ok(n, in, 2, &out, 1, data.data, data.len));
        kiln_buf_free(&data);
    }
    ir_graph_free(&g);
    tu_tensor_free(&in[0]);
    tu_tensor_free(&in[1]);
}

/* A dynamic engine plans scratch for its largest shape and runs smaller ones (down to
 * images smaller than a tile) and larger batches with more threads. */
static void test_dynamic_shapes(void **state)
{
    (void)state;
    int64_t pads[4] = {1, 1, 1, 1};
    kiln_attr attrs[] = {KILN_ATTR_IS("pads", pads, 4)};
    kiln_dims xd = {4, {-1, 24, -1, -1}}, w = {4, {32, 24, 3, 3}};
    kiln_network *net = layer_net("Conv", xd, w, true, attrs, 1);
    kiln_config *cfg = NULL;
    assert_int_equal(kiln_config_create(&cfg), KILN_OK);
    assert_int_equal(kiln_config_set_threads(cfg, 2), KILN_OK);
    assert_int_equal(kiln_config_set_tactic_timing(cfg, 0), KILN_OK); /* Winograd, untimed */
    kiln_dims mn = {4, {1, 24, 1, 1}}, opt = {4, {2, 24, 16, 16}}, mx = {4, {3, 24, 30, 29}};
    assert_int_equal(kiln_config_set_shape_range(cfg, 0, "x", &mn, &opt, &mx), KILN_OK);
    kiln_engine *e = NULL;
    kiln_status st = kiln_build(net, cfg, &e);
    if (st) fail_msg("build: %s", kiln_last_error());
    assert_true(strncmp(kernel_of(e), "winograd_f4_", 12) == 0);
    const int64_t shapes[][3] = {{3, 30, 29}, {1, 1, 1}, {2, 5, 3}, {1, 16, 16}, {3, 28, 29}};
    kiln_context *c = NULL;
    assert_int_equal(kiln_context_create(e, &c), KILN_OK);
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        kiln_dims x = {4, {shapes[s][0], 24, shapes[s][1], shapes[s][2]}};
        kiln_dims y = {4, {shapes[s][0], 32, shapes[s][1], shapes[s][2]}};
        st = kiln_context_set_input_shape(c, "x", &x);
        if (st) fail_msg("shape %zu: %s", s, kiln_last_error());
        ir_tensor in[3];
        in[0] = tu_tensor_f32(4, x.d, NULL);
        tu_rng r = {10 + s};
        tu_fill(&r, in[0].data, kiln_dims_count(&x), -2.0f, 2.0f);
        in[1] = tu_tensor_f32(4, w.d, NULL);
        tu_rng rw = {5};
        tu_fill(&rw, in[1].data, kiln_dims_count(&w), -1.0f, 1.0f);
        in[2] = tu_tensor_f32(1, w.d, NULL);
        tu_rng rb = {6};
        tu_fill(&rb, in[2].data, w.d[0], -1.0f, 1.0f);
        float *got = calloc((size_t)kiln_dims_count(&y) + 1, sizeof(float));
        assert_int_equal(kiln_context_set_tensor(c, "x", in[0].data), KILN_OK);
        assert_int_equal(kiln_context_set_tensor(c, "y", got), KILN_OK);
        kiln_context_set_threads(c, s % 2 ? 1 : 2);
        st = kiln_context_run(c);
        if (st) fail_msg("run: %s", kiln_last_error());
        ir_tensor ref;
        tu_run_op_ok("Conv", attrs, 1, in, 3, &ref, 1);
        double err = tu_rel_l2(got, ref.data, kiln_dims_count(&y));
        if (!(err <= TOL)) fail_msg("shape %zu: rel L2 %g", s, err);
        tu_tensor_free(&ref);
        for (int i = 0; i < 3; i++) tu_tensor_free(&in[i]);
        free(got);
    }
    kiln_context_destroy(c);
    kiln_engine_destroy(e);
    kiln_config_destroy(cfg);
    kiln_network_destroy(net);
}

static void test_allocation_failures(void **state)
{
    (void)state;
    int64_t pads[4] = {1, 1, 1, 1};
    kiln_attr attrs[] = {KILN_ATTR_IS("pads", pads, 4)};
    kiln_dims x = {4, {1, 16, 8, 8}}, w = {4, {16, 16, 3, 3}};
    kiln_network *net = layer_net("Conv", x, w, true, attrs, 1);
    kiln_engine *e = tn_build(net, NULL);
    assert_true(strncmp(kernel_of(e), "winograd_f4_", 12) == 0);
    kiln_engine_destroy(e);
    tu_build_survives_allocation_failures(net);
    kiln_network_destroy(net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_shapes),       cmocka_unit_test(test_tile_edges),
        cmocka_unit_test(test_threads_same_bytes),  cmocka_unit_test(test_engine_paths),
        cmocka_unit_test(test_which_layers),        cmocka_unit_test(test_switch_and_plans),
        cmocka_unit_test(test_data_checked),        cmocka_unit_test(test_dynamic_shapes),
        cmocka_unit_test(test_allocation_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
