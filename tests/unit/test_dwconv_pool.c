/* test_dwconv_pool.c - the depthwise-convolution and pooling kernels of the CPU backend
 * (dwconv_pool.c) against the ops' reference kernels: random shapes (channels 1..33, planes
 * 1..40 a side, smaller than the kernel too, batches), kernels, strides, pads (auto_pad
 * included), dilations, ceil_mode, count_include_pad, fused bias / residual / activation, on
 * every ISA path this machine runs (KILN_ISA); threads; and which layers engines give them. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "backends/cpu/dwpool/dwpool.h"
#include "testnet.h"

#define TOL 1e-5

/* KILN_ISA as it was, put back by isa_restore. */
static char *isa_save(void)
{
    const char *v = getenv("KILN_ISA");
    return v ? strdup(v) : NULL;
}

static void isa_restore(char *saved)
{
    if (saved)
        setenv("KILN_ISA", saved, 1);
    else
        unsetenv("KILN_ISA");
    free(saved);
}

/* One layer: op, attributes (with storage for their lists) and inputs. */
typedef struct layer {
    const char *op;
    kiln_attr attrs[12];
    int32_t n_attrs;
    int64_t kernel[2], strides[2], pads[4], dils[2];
    ir_tensor in[4];
    int32_t n_in;
    char what[200];
} layer;

static void layer_free(layer *L)
{
    for (int32_t i = 0; i < L->n_in; i++) tu_tensor_free(&L->in[i]);
}

static ir_tensor random_tensor(tu_rng *r, int32_t rank, const int64_t *d, float lo, float hi)
{
    ir_tensor t = tu_tensor_f32(rank, d, NULL);
    tu_fill(r, t.data, ir_tensor_count(&t), lo, hi);
    return t;
}

/* Runs kernel `name` on the layer as the builder would (constant inputs, inferred output);
 * false when it does not apply. */
static bool run_kernel(const layer *L, const char *name, int32_t threads, ir_tensor *out)
{
    ir_graph g;
    ir_graph_init(&g);
    char names[4][16];
    const char *inames[4];
    for (int32_t i = 0; i < L->n_in; i++) {
        inames[i] = "";
        if (!ir_tensor_present(&L->in[i])) continue;
        snprintf(names[i], sizeof names[i], "in%d", i);
        inames[i] = names[i];
        size_t nb = (size_t)ir_tensor_count(&L->in[i]) * sizeof(float);
        assert_int_equal(ir_graph_add_constant(&g, names[i], KILN_DTYPE_F32, &L->in[i].shape,
                                               L->in[i].data, nb, false, NULL),
                         KILN_OK);
    }
    int32_t nid;
    assert_int_equal(ir_graph_add_node(&g, L->op, "node", inames, L->n_in, NAMES("y"), 1, L->attrs,
                                       L->n_attrs, &nid),
                     KILN_OK);
    const ir_node *node = &g.nodes[nid];
    memset(out, 0, sizeof *out);
    ir_infer c = {.node = node, .n_in = L->n_in, .n_out = 1, .in = L->in, .out = out};
    assert_int_equal(node->op->infer(&c), KILN_OK);
    out->data = calloc(1, (size_t)ir_tensor_count(out) * sizeof(float) + 1);
    const backend_kernel *k = backend_cpu()->find(L->op, name);
    if (!k) fail_msg("no kernel %s for %s", name, L->op);
    bool ok = k->applies(node, L->in, L->n_in, out, 1);
    if (ok) {
        backend_exec x = {.threads = threads};
        kiln_status st = k->run(node, L->in, L->n_in, out, 1, &x);
        if (st != KILN_OK) fail_msg("%s on %s: %s", name, L->what, kiln_last_error());
    }
    ir_graph_free(&g);
    if (!ok) tu_tensor_free(out);
    return ok;
}

/* The reference kernel's output; false when the op refuses the layer (a kernel longer than
 * the padded input, a random case to skip). */
static bool run_reference(const layer *L, ir_tensor *out)
{
    return tu_run_op(L->op, L->attrs, L->n_attrs, L->in, L->n_in, out, 1) == KILN_OK;
}

/* Kernel `what` ("dwconv" or "pool") on every path against the reference. exact: the same
 * bits (NaN for NaN); else rel L2 <= TOL. The portable path must give the reference's bits
 * when `generic_exact`. Returns the paths that ran. */
static int check_layer(const layer *L, const char *what, bool exact, bool generic_exact,
                       int32_t threads)
{
    ir_tensor ref;
    if (!run_reference(L, &ref)) return 0;
    int64_t n = ir_tensor_count(&ref);
    int ran = 0;
    char *saved = isa_save();
    for (int p = 0; p < 3; p++) {
        if (!tu_isa_runs(p)) continue;
        setenv("KILN_ISA", tu_isa_env[p], 1);
        char name[32];
        snprintf(name, sizeof name, "%s_%s", what, tu_isa_suffix[p]);
        ir_tensor got;
        if (!run_kernel(L, name, threads, &got)) fail_msg("%s does not take %s", name, L->what);
        assert_true(kiln_dims_equal(&got.shape, &ref.shape));
        if (exact || (p == 2 && generic_exact)) {
            const uint32_t *a = got.data, *b = ref.data;
            for (int64_t i = 0; i < n; i++) {
                bool same = a[i] == b[i] || (isnan(((float *)got.data)[i]) &&
                                             isnan(((float *)ref.data)[i]) && a[i] == b[i]);
                if (!same)
                    fail_msg("%s on %s: element %lld is %a (0x%08x), the reference %a (0x%08x)",
                             name, L->what, (long long)i, (double)((float *)got.data)[i], a[i],
                             (double)((float *)ref.data)[i], b[i]);
            }
        } else {
            double err = tu_rel_l2(got.data, ref.data, n);
            if (!(err <= TOL)) fail_msg("%s on %s: rel L2 %g", name, L->what, err);
        }
        tu_tensor_free(&got);
        ran++;
    }
    isa_restore(saved);
    tu_tensor_free(&ref);
    return ran;
}

static const char *const k_acts[] = {"",        "Relu",      "LeakyRelu",   "Clip",
                                     "Sigmoid", "HardSwish", "HardSigmoid", "Silu",
                                     "Gelu",    "GeluTanh",  "Tanh",        "Elu"};

/* The window attributes: kernel, strides, dilations and either pads or an auto_pad mode. */
static void window_attrs(tu_rng *r, layer *L, bool dilations)
{
    static const int64_t ks[] = {3, 3, 3, 5, 5, 1, 2, 4, 7};
    static const int64_t ss[] = {1, 1, 1, 2, 2, 3};
    L->kernel[0] = ks[tu_int(r, 0, 8)];
    L->kernel[1] = tu_int(r, 0, 4) == 0 ? ks[tu_int(r, 0, 8)] : L->kernel[0];
    L->strides[0] = ss[tu_int(r, 0, 5)];
    L->strides[1] = tu_int(r, 0, 4) == 0 ? ss[tu_int(r, 0, 5)] : L->strides[0];
    for (int d = 0; d < 2; d++) L->dils[d] = dilations && tu_int(r, 0, 4) == 0 ? 2 : 1;
    L->attrs[L->n_attrs++] = KILN_ATTR_IS("kernel_shape", L->kernel, 2);
    L->attrs[L->n_attrs++] = KILN_ATTR_IS("strides", L->strides, 2);
    if (dilations) L->attrs[L->n_attrs++] = KILN_ATTR_IS("dilations", L->dils, 2);
    int mode = (int)tu_int(r, 0, 5);
    const char *ap = mode == 3 ? "SAME_UPPER" : mode == 4 ? "SAME_LOWER" : "VALID";
    if (mode <= 2) {
        for (int d = 0; d < 2; d++) {
            int64_t half = (L->kernel[d] - 1) * L->dils[d] / 2;
            /* symmetric "same" pads, or any pads below the kernel at each end */
            L->pads[d] = mode == 0 ? half : tu_int(r, 0, L->kernel[d] - 1);
            L->pads[d + 2] = mode == 0 ? half : tu_int(r, 0, L->kernel[d] - 1);
        }
        L->attrs[L->n_attrs++] = KILN_ATTR_IS("pads", L->pads, 4);
        ap = "NOTSET";
    }
    L->attrs[L->n_attrs++] = KILN_ATTR_S("auto_pad", ap);
    snprintf(L->what + strlen(L->what), sizeof L->what - strlen(L->what),
             " k%lldx%lld s%lldx%lld d%lldx%lld %s pads %lld,%lld,%lld,%lld",
             (long long)L->kernel[0], (long long)L->kernel[1], (long long)L->strides[0],
             (long long)L->strides[1], (long long)L->dils[0], (long long)L->dils[1], ap,
             (long long)L->pads[0], (long long)L->pads[1], (long long)L->pads[2],
             (long long)L->pads[3]);
}

/* A random depthwise convolution; `big` makes planes large enough for threads. */
static void random_dwconv(tu_rng *r, layer *L, bool big)
{
    memset(L, 0, sizeof *L);
    int64_t batch = tu_int(r, 0, 3) == 0 ? tu_int(r, 2, 3) : 1;
    int64_t c = tu_int(r, 1, 33), mult = tu_int(r, 0, 5) == 0 ? tu_int(r, 2, 3) : 1;
    if (c == 1) mult = 1; /* one channel into several is the GEMM kernels' (test_not_taken) */
    int64_t h = big ? tu_int(r, 60, 90) : tu_int(r, 1, 40);
    int64_t w = big ? tu_int(r, 60, 90) : tu_int(r, 1, 40);
    bool fused = tu_int(r, 0, 1) == 1, bias = tu_int(r, 0, 2) > 0;
    L->op = fused ? "kiln.Conv" : "Conv";
    snprintf(L->what, sizeof L->what, "%s %lldx%lldx%lldx%lld x%lld%s", L->op, (long long)batch,
             (long long)c, (long long)h, (long long)w, (long long)mult, bias ? " bias" : "");
    window_attrs(r, L, true);
    L->attrs[L->n_attrs++] = KILN_ATTR_I("group", c);
    L->in[0] = random_tensor(r, 4, (int64_t[]){batch, c, h, w}, -2.0f, 2.0f);
    L->in[1] =
        random_tensor(r, 4, (int64_t[]){c * mult, 1, L->kernel[0], L->kernel[1]}, -1.0f, 1.0f);
    L->n_in = 2;
    if (bias) L->in[L->n_in++] = random_tensor(r, 1, (int64_t[]){c * mult}, -1.0f, 1.0f);
    if (!fused) return;
    const char *act = k_acts[tu_int(r, 0, 11)];
    bool clip = strcmp(act, "Clip") == 0;
    L->attrs[L->n_attrs++] = KILN_ATTR_S("activation", act);
    L->attrs[L->n_attrs++] = KILN_ATTR_F("act_alpha", clip ? -0.5f : 0.2f);
    L->attrs[L->n_attrs++] = KILN_ATTR_F("act_beta", clip ? 0.7f : 0.5f);
    snprintf(L->what + strlen(L->what), sizeof L->what - strlen(L->what), " act '%s'", act);
    if (tu_int(r, 0, 2) == 0) {
        /* Z has the output's shape: the reference's inference gives it */
        ir_tensor y;
        if (!run_reference(L, &y)) return; /* an invalid case: skipped by the caller */
        if (!bias) L->in[L->n_in++] = tu_absent();
        L->in[L->n_in++] = random_tensor(r, 4, y.shape.d, -1.0f, 1.0f);
        tu_tensor_free(&y);
        strcat(L->what, " Z");
    }
}

static void test_dwconv_random(void **state)
{
    (void)state;
    tu_rng r = {11};
    int cases = 0, runs = 0;
    for (int t = 0; t < 600; t++) {
        layer L;
        random_dwconv(&r, &L, false);
        int ran = check_layer(&L, "dwconv", false, true, 1);
        cases += ran > 0;
        runs += ran;
        layer_free(&L);
    }
    print_message("dwconv: %d random cases, %d kernel runs\n", cases, runs);
    assert_true(cases >= 400);
}

/* The fast paths of the networks: 3x3 and 5x5, strides 1 and 2, same pads, every width from
 * below one vector to past two (tails, planes narrower than the kernel), batch 2. */
static void test_dwconv_fast_paths(void **state)
{
    (void)state;
    tu_rng r = {12};
    for (int64_t k = 3; k <= 5; k += 2)
        for (int64_t s = 1; s <= 2; s++)
            for (int64_t w = 1; w <= 37; w += 3) {
                layer L;
                memset(&L, 0, sizeof L);
                L.op = "kiln.Conv";
                L.kernel[0] = L.kernel[1] = k;
                L.strides[0] = L.strides[1] = s;
                for (int d = 0; d < 4; d++) L.pads[d] = k / 2;
                L.attrs[L.n_attrs++] = KILN_ATTR_IS("kernel_shape", L.kernel, 2);
                L.attrs[L.n_attrs++] = KILN_ATTR_IS("strides", L.strides, 2);
                L.attrs[L.n_attrs++] = KILN_ATTR_IS("pads", L.pads, 4);
                L.attrs[L.n_attrs++] = KILN_ATTR_I("group", 5);
                L.attrs[L.n_attrs++] = KILN_ATTR_S("activation", w % 2 ? "Clip" : "Silu");
                L.attrs[L.n_attrs++] = KILN_ATTR_F("act_alpha", 0.0f);
                L.attrs[L.n_attrs++] = KILN_ATTR_F("act_beta", 6.0f);
                int64_t h = 1 + (w * 7) % 23;
                snprintf(L.what, sizeof L.what, "kiln.Conv 2x5x%lldx%lld k%lld s%lld", (long long)h,
                         (long long)w, (long long)k, (long long)s);
                L.in[0] = random_tensor(&r, 4, (int64_t[]){2, 5, h, w}, -2.0f, 2.0f);
                L.in[1] = random_tensor(&r, 4, (int64_t[]){5, 1, k, k}, -1.0f, 1.0f);
                L.in[2] = random_tensor(&r, 1, (int64_t[]){5}, -1.0f, 1.0f);
                L.n_in = 3;
                assert_true(check_layer(&L, "dwconv", false, true, 1) > 0);
                layer_free(&L);
            }
}

/* Rows wider than the per-layer mask tables hold (300 columns) and kernels wider than 8:
 * the border masks are then worked out chunk by chunk; pools too. */
static void test_wide_rows_and_kernels(void **state)
{
    (void)state;
    tu_rng r = {14};
    const int64_t forms[][7] = {
        /* h, w, kh, kw, stride, pad (each side), dilation */
        {5, 300, 3, 3, 1, 1, 1},  {6, 300, 5, 5, 2, 2, 1}, {6, 290, 3, 3, 3, 0, 2},
        {12, 40, 9, 9, 1, 4, 1},  {13, 41, 9, 9, 2, 4, 1}, {7, 37, 1, 11, 1, 5, 1},
        {25, 60, 11, 9, 3, 3, 2}, {3, 280, 2, 4, 2, 1, 1},
    };
    const char *ops[] = {"kiln.Conv", "MaxPool", "AveragePool"};
    for (size_t f = 0; f < sizeof forms / sizeof *forms; f++)
        for (int o = 0; o < 3; o++) {
            const int64_t *q = forms[f];
            layer L;
            memset(&L, 0, sizeof L);
            L.op = ops[o];
            L.kernel[0] = q[2];
            L.kernel[1] = q[3];
            L.strides[0] = L.strides[1] = q[4];
            for (int d = 0; d < 4; d++) L.pads[d] = q[5];
            L.dils[0] = L.dils[1] = q[6];
            L.attrs[L.n_attrs++] = KILN_ATTR_IS("kernel_shape", L.kernel, 2);
            L.attrs[L.n_attrs++] = KILN_ATTR_IS("strides", L.strides, 2);
            L.attrs[L.n_attrs++] = KILN_ATTR_IS("pads", L.pads, 4);
            L.attrs[L.n_attrs++] = KILN_ATTR_IS("dilations", L.dils, 2);
            snprintf(L.what, sizeof L.what, "%s wide form %zu", L.op, f);
            L.in[0] = random_tensor(&r, 4, (int64_t[]){1, 3, q[0], q[1]}, -2.0f, 2.0f);
            L.n_in = 1;
            if (o == 0) {
                L.attrs[L.n_attrs++] = KILN_ATTR_I("group", 3);
                L.attrs[L.n_attrs++] = KILN_ATTR_S("activation", "Relu");
                L.in[1] = random_tensor(&r, 4, (int64_t[]){3, 1, q[2], q[3]}, -1.0f, 1.0f);
                L.in[2] = random_tensor(&r, 1, (int64_t[]){3}, -1.0f, 1.0f);
                L.n_in = 3;
            } else if (o == 2) {
                L.attrs[L.n_attrs++] = KILN_ATTR_I("count_include_pad", (int64_t)(f % 2));
            }
            assert_true(check_layer(&L, o == 0 ? "dwconv" : "pool", o > 0, true, 1) > 0);
            layer_free(&L);
        }
}

/* The epilogue's vector activations value by value: a 1x1 depthwise convolution of weight 1
 * turns inputs over [-40, 40] (and a residual) into act(x + z); within 2e-6 of the
 * reference's libm formulas wherever the result is not tiny, NaN where it is NaN. */
static void test_dwconv_activations(void **state)
{
    (void)state;
    tu_rng r = {15};
    char *saved = isa_save();
    for (int a = 0; a < 12; a++)
        for (int with_z = 0; with_z < 2; with_z++) {
            layer L;
            memset(&L, 0, sizeof L);
            L.op = "kiln.Conv";
            L.kernel[0] = L.kernel[1] = 1;
            L.attrs[L.n_attrs++] = KILN_ATTR_IS("kernel_shape", L.kernel, 2);
            L.attrs[L.n_attrs++] = KILN_ATTR_I("group", 2);
            L.attrs[L.n_attrs++] = KILN_ATTR_S("activation", k_acts[a]);
            L.attrs[L.n_attrs++] = KILN_ATTR_F("act_alpha", a == 3 ? -3.0f : 0.3f);
            L.attrs[L.n_attrs++] = KILN_ATTR_F("act_beta", a == 3 ? 5.0f : 0.4f);
            snprintf(L.what, sizeof L.what, "activation '%s'%s", k_acts[a], with_z ? " Z" : "");
            const int64_t h = 25, w = 41;
            L.in[0] = random_tensor(&r, 4, (int64_t[]){1, 2, h, w}, -40.0f, 40.0f);
            float *x = L.in[0].data;
            x[0] = 0.0f;
            x[1] = -0.0f;
            x[2] = 1e-20f;
            x[3] = -1e-20f;
            x[4] = 88.0f;
            x[5] = -88.0f;
            x[6] = 100.0f;
            x[7] = -100.0f;
            for (int64_t i = 8; i < 400; i++) x[i] = (float)(i - 200) * 0.05f;
            L.in[1] = tu_tensor_f32(4, (int64_t[]){2, 1, 1, 1}, (float[]){1.0f, 1.0f});
            L.in[2] = tu_tensor_f32(1, (int64_t[]){2}, (float[]){0.0f, 0.0f});
            L.n_in = 3;
            if (with_z) L.in[L.n_in++] = random_tensor(&r, 4, (int64_t[]){1, 2, h, w}, -1.0f, 1.0f);
            ir_tensor ref;
            assert_true(run_reference(&L, &ref));
            const int64_t n = ir_tensor_count(&ref);
            for (int p = 0; p < 3; p++) {
                if (!tu_isa_runs(p)) continue;
                setenv("KILN_ISA", tu_isa_env[p], 1);
                char name[32];
                snprintf(name, sizeof name, "dwconv_%s", tu_isa_suffix[p]);
                ir_tensor got;
                assert_true(run_kernel(&L, name, 1, &got));
                const float *g = got.data, *b = ref.data;
                for (int64_t i = 0; i < n; i++) {
                    double e = fabs((double)g[i] - (double)b[i]);
                    bool ok = p == 2        ? memcmp(&g[i], &b[i], sizeof(float)) == 0
                              : isnan(b[i]) ? isnan(g[i])
                                            : e <= 2e-6 * fabs((double)b[i]) || fabs(b[i]) < 1e-30;
                    if (!ok)
                        fail_msg("%s on %s: x %a: %a, the reference %a", name, L.what, (double)x[i],
                                 (double)g[i], (double)b[i]);
                }
                tu_tensor_free(&got);
            }
            tu_tensor_free(&ref);
            layer_free(&L);
        }
    isa_restore(saved);
}

/* Weights that are not finite: padding taps must stay out of the sums (inf * 0 would be
 * NaN), as in the reference, on every path; finite channels beside them are unaffected. */
static void test_dwconv_nonfinite_weights(void **state)
{
    (void)state;
    tu_rng r = {17};
    char *saved = isa_save();
    for (int64_t side = 5; side <= 20; side += 15) {
        layer L;
        memset(&L, 0, sizeof L);
        L.op = "Conv";
        L.kernel[0] = L.kernel[1] = 3;
        for (int d = 0; d < 4; d++) L.pads[d] = 1;
        L.attrs[L.n_attrs++] = KILN_ATTR_IS("kernel_shape", L.kernel, 2);
        L.attrs[L.n_attrs++] = KILN_ATTR_IS("pads", L.pads, 4);
        L.attrs[L.n_attrs++] = KILN_ATTR_I("group", 4);
        snprintf(L.what, sizeof L.what, "Conv 1x4x%lldx%lld, inf and NaN weights", (long long)side,
                 (long long)side);
        L.in[0] = random_tensor(&r, 4, (int64_t[]){1, 4, side, side}, 0.5f, 2.0f);
        L.in[1] = random_tensor(&r, 4, (int64_t[]){4, 1, 3, 3}, -1.0f, 1.0f);
        float *w = L.in[1].data;
        w[9 + 0] = INFINITY; /* channel 1, tap (0, 0): a padding tap of row 0 and column 0 */
        w[18 + 8] = NAN;     /* channel 2, tap (2, 2) */
        L.n_in = 2;
        ir_tensor ref;
        assert_true(run_reference(&L, &ref));
        const int64_t n = ir_tensor_count(&ref);
        for (int p = 0; p < 3; p++) {
            if (!tu_isa_runs(p)) continue;
            setenv("KILN_ISA", tu_isa_env[p], 1);
            char name[32];
            snprintf(name, sizeof name, "dwconv_%s", tu_isa_suffix[p]);
            ir_tensor got;
            assert_true(run_kernel(&L, name, 1, &got));
            const float *g = got.data, *b = ref.data;
            for (int64_t i = 0; i < n; i++) {
                bool ok = isnan(b[i])   ? isnan(g[i])
                          : isinf(b[i]) ? g[i] == b[i]
                                        : fabs((double)g[i] - (double)b[i]) <=
                                              1e-5 * (fabs((double)b[i]) + 1.0);
                if (!ok)
                    fail_msg("%s on %s: element %lld is %g, the reference %g", name, L.what,
                             (long long)i, (double)g[i], (double)b[i]);
            }
            tu_tensor_free(&got);
        }
        tu_tensor_free(&ref);
        layer_free(&L);
    }
    isa_restore(saved);
}

/* A whole small plane (the AVX-512 flat path) gives the bits of the same plane done in two
 * row ranges (the row path, as when threads cut planes): so the thread count cannot show. */
static void test_flat_matches_rows(void **state)
{
    (void)state;
#if defined(__x86_64__)
    if (!tu_isa_runs(0)) return;
    tu_rng r = {16};
    /* side, kernel, stride */
    const int64_t forms[][3] = {{14, 3, 1}, {14, 5, 1}, {7, 3, 1},  {7, 5, 1},
                                {14, 3, 2}, {14, 5, 2}, {13, 3, 2}, {15, 5, 1}};
    for (size_t f = 0; f < sizeof forms / sizeof *forms; f++) {
        const int64_t side = forms[f][0], k = forms[f][1], s = forms[f][2], c = 3;
        dwp_args *a = calloc(1, sizeof *a);
        a->op = DWP_CONV;
        a->planes = a->c_in = a->c_out = c;
        a->mult = 1;
        a->ih = a->iw = side;
        a->kh = a->kw = k;
        a->sh = a->sw = s;
        a->dh = a->dw = 1;
        a->ph = a->pw = a->pe_h = a->pe_w = k / 2;
        a->oh = a->ow = (side + 2 * (k / 2) - k) / s + 1;
        a->act = 1; /* Relu */
        const int64_t in = c * side * side, on = c * a->oh * a->ow;
        float *x = malloc(sizeof(float) * (size_t)in),
              *w = malloc(sizeof(float) * (size_t)(c * k * k));
        float *bias = malloc(sizeof(float) * (size_t)c);
        float *y1 = malloc(sizeof(float) * (size_t)on), *y2 = malloc(sizeof(float) * (size_t)on);
        tu_fill(&r, x, in, -2.0f, 2.0f);
        tu_fill(&r, w, c * k * k, -1.0f, 1.0f);
        tu_fill(&r, bias, c, -1.0f, 1.0f);
        a->x = x;
        a->w = w;
        a->bias = bias;
        dwp_prepare_avx512(a);
        a->y = y1;
        for (int64_t p = 0; p < c; p++) dwp_rows_avx512(a, p, 0, a->oh);
        a->y = y2;
        for (int64_t p = 0; p < c; p++) {
            dwp_rows_avx512(a, p, 0, 1);
            dwp_rows_avx512(a, p, 1, a->oh);
        }
        if (memcmp(y1, y2, sizeof(float) * (size_t)on) != 0)
            fail_msg("form %zu: the whole plane and its row ranges differ", f);
        free(x);
        free(w);
        free(bias);
        free(y1);
        free(y2);
        free(a);
    }
#endif
}

/* Outputs do not depend on the thread count (bit for bit), on planes large enough to split. */
static void test_dwconv_threads(void **state)
{
    (void)state;
    tu_rng r = {13};
    char *saved = isa_save();
    for (int t = 0; t < 8; t++) {
        layer L;
        random_dwconv(&r, &L, true);
        if (t >= 6) { /* fewer planes than threads: planes are cut into row ranges */
            ir_tensor x1 = random_tensor(&r, 4, (int64_t[]){1, 2, 80, 77}, -2.0f, 2.0f);
            int64_t mult = L.in[1].shape.d[0] / L.in[0].shape.d[1];
            ir_tensor w1 = random_tensor(
                &r, 4, (int64_t[]){2 * mult, 1, L.in[1].shape.d[2], L.in[1].shape.d[3]}, -1.0f,
                1.0f);
            layer_free(&L);
            L.in[0] = x1;
            L.in[1] = w1;
            L.n_in = 2;
            for (int32_t i = 0; i < L.n_attrs; i++)
                if (strcmp(L.attrs[i].name, "group") == 0) L.attrs[i] = KILN_ATTR_I("group", 2);
            strcat(L.what, " (as 1x2x80x77, no bias or Z)");
        }
        ir_tensor ref;
        if (!run_reference(&L, &ref)) {
            layer_free(&L);
            continue;
        }
        for (int p = 0; p < 3; p++) {
            if (!tu_isa_runs(p)) continue;
            setenv("KILN_ISA", tu_isa_env[p], 1);
            char name[32];
            snprintf(name, sizeof name, "dwconv_%s", tu_isa_suffix[p]);
            ir_tensor one, two;
            assert_true(run_kernel(&L, name, 1, &one));
            assert_true(run_kernel(&L, name, 3, &two));
            int64_t n = ir_tensor_count(&one);
            assert_memory_equal(one.data, two.data, sizeof(float) * (size_t)n);
            double err = tu_rel_l2(two.data, ref.data, n);
            if (!(err <= TOL)) fail_msg("%s on %s: rel L2 %g", name, L.what, err);
            tu_tensor_free(&one);
            tu_tensor_free(&two);
        }
        tu_tensor_free(&ref);
        layer_free(&L);
    }
    isa_restore(saved);
}

/* Inputs with ties (+0.0 and -0.0, repeated values) and, when `nans`, a few NaNs: the max
 * rule's corners. */
static void tie_values(tu_rng *r, ir_tensor *t, bool nans)
{
    static const float levels[] = {-1.0f, -0.0f, 0.0f, 0.5f, -INFINITY};
    float *p = t->data;
    for (int64_t i = 0; i < ir_tensor_count(t); i++) {
        int64_t k = tu_int(r, 0, nans ? 40 : 39);
        p[i] = k == 40 ? NAN : levels[k % 5];
    }
}

static void random_pool(tu_rng *r, layer *L, bool big)
{
    memset(L, 0, sizeof *L);
    bool is_max = tu_int(r, 0, 1) == 0;
    int64_t batch = tu_int(r, 0, 3) == 0 ? tu_int(r, 2, 3) : 1, c = tu_int(r, 1, 33);
    int64_t h = big ? tu_int(r, 60, 90) : tu_int(r, 1, 40);
    int64_t w = big ? tu_int(r, 60, 90) : tu_int(r, 1, 40);
    L->op = is_max ? "MaxPool" : "AveragePool";
    snprintf(L->what, sizeof L->what, "%s %lldx%lldx%lldx%lld", L->op, (long long)batch,
             (long long)c, (long long)h, (long long)w);
    window_attrs(r, L, true);
    int64_t ceil_mode = tu_int(r, 0, 1);
    L->attrs[L->n_attrs++] = KILN_ATTR_I("ceil_mode", ceil_mode);
    if (!is_max) L->attrs[L->n_attrs++] = KILN_ATTR_I("count_include_pad", tu_int(r, 0, 1));
    snprintf(L->what + strlen(L->what), sizeof L->what - strlen(L->what), " ceil %lld%s",
             (long long)ceil_mode,
             !is_max && L->attrs[L->n_attrs - 1].i ? " count_include_pad" : "");
    L->in[0] = random_tensor(r, 4, (int64_t[]){batch, c, h, w}, -2.0f, 2.0f);
    L->n_in = 1;
    int64_t v = tu_int(r, 0, 3);
    if (is_max && v == 0) tie_values(r, &L->in[0], tu_int(r, 0, 1) == 0);
}

static void test_pool_random(void **state)
{
    (void)state;
    tu_rng r = {21};
    int cases = 0;
    for (int t = 0; t < 600; t++) {
        layer L;
        random_pool(&r, &L, false);
        cases += check_layer(&L, "pool", true, true, 1) > 0;
        layer_free(&L);
    }
    print_message("pools: %d random cases\n", cases);
    assert_true(cases >= 400);
}

/* Pools whose windows reach past the padding: empty windows (max -inf, average NaN) and
 * windows hanging over the end in ceil_mode. */
static void test_pool_corners(void **state)
{
    (void)state;
    tu_rng r = {22};
    const int64_t forms[][8] = {
        /* h, w, kernel, stride, pad begin, pad end, dilation, ceil */
        {5, 5, 2, 3, 1, 1, 1, 1},  {7, 19, 3, 2, 1, 1, 1, 1}, {1, 1, 3, 1, 1, 1, 1, 0},
        {4, 33, 2, 2, 1, 0, 2, 1}, {9, 9, 3, 3, 2, 2, 2, 1},  {3, 17, 4, 1, 3, 3, 1, 0},
        {2, 40, 5, 2, 4, 4, 1, 1}, {6, 6, 1, 2, 0, 0, 1, 1},  {8, 23, 3, 1, 0, 2, 3, 0},
    };
    for (size_t f = 0; f < sizeof forms / sizeof *forms; f++)
        for (int op = 0; op < 3; op++) {
            const int64_t *q = forms[f];
            layer L;
            memset(&L, 0, sizeof L);
            L.op = op == 0 ? "MaxPool" : "AveragePool";
            L.kernel[0] = L.kernel[1] = q[2];
            L.strides[0] = L.strides[1] = q[3];
            L.pads[0] = L.pads[1] = q[4];
            L.pads[2] = L.pads[3] = q[5];
            L.dils[0] = L.dils[1] = q[6];
            L.attrs[L.n_attrs++] = KILN_ATTR_IS("kernel_shape", L.kernel, 2);
            L.attrs[L.n_attrs++] = KILN_ATTR_IS("strides", L.strides, 2);
            L.attrs[L.n_attrs++] = KILN_ATTR_IS("pads", L.pads, 4);
            L.attrs[L.n_attrs++] = KILN_ATTR_IS("dilations", L.dils, 2);
            L.attrs[L.n_attrs++] = KILN_ATTR_I("ceil_mode", q[7]);
            if (op > 0) L.attrs[L.n_attrs++] = KILN_ATTR_I("count_include_pad", op - 1);
            snprintf(L.what, sizeof L.what, "%s form %zu%s", L.op, f,
                     op == 2 ? " count_include_pad" : "");
            L.in[0] = random_tensor(&r, 4, (int64_t[]){2, 3, q[0], q[1]}, -2.0f, 2.0f);
            L.n_in = 1;
            assert_true(check_layer(&L, "pool", true, true, 1) > 0);
            layer_free(&L);
        }
}

static void test_pool_threads(void **state)
{
    (void)state;
    tu_rng r = {23};
    char *saved = isa_save();
    for (int t = 0; t < 6; t++) {
        layer L;
        random_pool(&r, &L, true);
        ir_tensor ref;
        if (!run_reference(&L, &ref)) {
            layer_free(&L);
            continue;
        }
        int64_t n = ir_tensor_count(&ref);
        for (int p = 0; p < 3; p++) {
            if (!tu_isa_runs(p)) continue;
            setenv("KILN_ISA", tu_isa_env[p], 1);
            char name[32];
            snprintf(name, sizeof name, "pool_%s", tu_isa_suffix[p]);
            ir_tensor two;
            assert_true(run_kernel(&L, name, 3, &two));
            assert_memory_equal(two.data, ref.data, sizeof(float) * (size_t)n);
            tu_tensor_free(&two);
        }
        tu_tensor_free(&ref);
        layer_free(&L);
    }
    isa_restore(saved);
}

/* Global pools over planes of 1 to 1600 values (ranks 3 to 5): max exact (zeros of both
 * signs and NaNs included), average within 1e-6 per value (the sum's order differs). */
static void test_global_pools(void **state)
{
    (void)state;
    tu_rng r = {31};
    char *saved = isa_save();
    for (int t = 0; t < 200; t++) {
        layer L;
        memset(&L, 0, sizeof L);
        bool is_max = t % 2 == 0;
        L.op = is_max ? "GlobalMaxPool" : "GlobalAveragePool";
        int32_t rank = t % 10 == 0 ? 3 : t % 10 == 1 ? 5 : 4;
        int64_t d[5] = {tu_int(&r, 1, 3), tu_int(&r, 1, 33), tu_int(&r, 1, 40), tu_int(&r, 1, 40),
                        2};
        if (rank == 5) d[2] = tu_int(&r, 1, 9);
        L.in[0] = random_tensor(&r, rank, d, -2.0f, 2.0f);
        if (is_max && t % 3 == 0) tie_values(&r, &L.in[0], t % 4 == 0);
        L.n_in = 1;
        snprintf(L.what, sizeof L.what, "%s case %d", L.op, t);
        ir_tensor ref;
        assert_true(run_reference(&L, &ref));
        int64_t n = ir_tensor_count(&ref);
        for (int p = 0; p < 3; p++) {
            if (!tu_isa_runs(p)) continue;
            setenv("KILN_ISA", tu_isa_env[p], 1);
            char name[32];
            snprintf(name, sizeof name, "pool_%s", tu_isa_suffix[p]);
            ir_tensor got;
            assert_true(run_kernel(&L, name, t % 5 == 0 ? 2 : 1, &got));
            const float *a = got.data, *b = ref.data;
            for (int64_t i = 0; i < n; i++) {
                bool ok = is_max || p == 2
                              ? memcmp(&a[i], &b[i], sizeof(float)) == 0
                              : fabs((double)a[i] - (double)b[i]) <= 1e-6 * fabs((double)b[i]);
                if (!ok)
                    fail_msg("%s on %s: plane %lld: %a, the reference %a", name, L.what,
                             (long long)i, (double)a[i], (double)b[i]);
            }
            tu_tensor_free(&got);
        }
        tu_tensor_free(&ref);
        layer_free(&L);
    }
    isa_restore(saved);
}

/* Layers the kernels leave to others: grouped (not depthwise) convolutions, a one-channel
 * image into many channels, 1-D and 3-D windows, MaxPool with Indices, blocked tensors. */
static void test_not_taken(void **state)
{
    (void)state;
    tu_rng r = {41};
    layer L;
    memset(&L, 0, sizeof L);
    L.op = "Conv";
    L.kernel[0] = L.kernel[1] = 3;
    L.attrs[L.n_attrs++] = KILN_ATTR_IS("kernel_shape", L.kernel, 2);
    L.attrs[L.n_attrs++] = KILN_ATTR_I("group", 4);
    L.in[0] = random_tensor(&r, 4, (int64_t[]){1, 8, 6, 6}, -1.0f, 1.0f);
    L.in[1] = random_tensor(&r, 4, (int64_t[]){8, 2, 3, 3}, -1.0f, 1.0f);
    L.n_in = 2;
    ir_tensor out;
    assert_false(run_kernel(&L, "dwconv_generic", 1, &out));
    layer_free(&L);
    L.attrs[1] = KILN_ATTR_I("group", 1);
    L.in[0] = random_tensor(&r, 4, (int64_t[]){1, 1, 6, 6}, -1.0f, 1.0f);
    L.in[1] = random_tensor(&r, 4, (int64_t[]){8, 1, 3, 3}, -1.0f, 1.0f);
    assert_false(run_kernel(&L, "dwconv_generic", 1, &out));
    layer_free(&L);
    /* one channel into one is depthwise */
    L.in[0] = random_tensor(&r, 4, (int64_t[]){1, 1, 6, 6}, -1.0f, 1.0f);
    L.in[1] = random_tensor(&r, 4, (int64_t[]){1, 1, 3, 3}, -1.0f, 1.0f);
    assert_int_equal(check_layer(&L, "dwconv", false, true, 1) > 0, 1);
    layer_free(&L);
    /* 1-D */
    memset(&L, 0, sizeof L);
    L.op = "MaxPool";
    L.kernel[0] = 3;
    L.attrs[L.n_attrs++] = KILN_ATTR_IS("kernel_shape", L.kernel, 1);
    L.in[0] = random_tensor(&r, 3, (int64_t[]){1, 4, 9}, -1.0f, 1.0f);
    L.n_in = 1;
    assert_false(run_kernel(&L, "pool_generic", 1, &out));
    layer_free(&L);

    /* through engines: the kernel each layer gets */
    kiln_network *net = tn_net();
    tn_input(net, "x", 4, (int64_t[]){1, 8, 10, 10});
    int64_t k3[2] = {3, 3}, pads[4] = {1, 1, 1, 1};
    tn_weights(net, "wd", 4, (int64_t[]){8, 1, 3, 3}, 1, -1.0f, 1.0f);
    tn_weights(net, "wg", 4, (int64_t[]){8, 2, 3, 3}, 2, -1.0f, 1.0f);
    tn_layer(net, "Conv", "dw", IN("x", "wd"), OUT("a"),
             ATTRS(KILN_ATTR_IS("kernel_shape", k3, 2), KILN_ATTR_IS("pads", pads, 4),
                   KILN_ATTR_I("group", 8)));
    tn_layer(net, "Relu", "relu", IN("a"), OUT("b"), NO_ATTRS);
    tn_layer(net, "Conv", "grouped", IN("b", "wg"), OUT("c"),
             ATTRS(KILN_ATTR_IS("kernel_shape", k3, 2), KILN_ATTR_IS("pads", pads, 4),
                   KILN_ATTR_I("group", 4)));
    tn_layer(net, "MaxPool", "mp", IN("c"), OUT("d", "idx"),
             ATTRS(KILN_ATTR_IS("kernel_shape", k3, 2)));
    tn_layer(net, "AveragePool", "ap", IN("d"), OUT("e"),
             ATTRS(KILN_ATTR_IS("kernel_shape", k3, 2), KILN_ATTR_IS("pads", pads, 4)));
    tn_layer(net, "GlobalAveragePool", "gap", IN("e"), OUT("f"), NO_ATTRS);
    tn_output(net, "f");
    tn_output(net, "idx");
    char *saved = isa_save();
    for (int p = 0; p < 3; p++) {
        if (!tu_isa_runs(p)) continue;
        setenv("KILN_ISA", tu_isa_env[p], 1);
        kiln_engine *e = tn_build(net, NULL);
        kiln_layer_info li;
        char want[32];
        snprintf(want, sizeof want, "dwconv_%s", tu_isa_suffix[p]);
        assert_int_equal(kiln_engine_layer_info(e, tn_find_layer(e, "dw"), &li), KILN_OK);
        assert_string_equal(li.op, "kiln.Conv"); /* the Relu fused */
        assert_string_equal(li.kernel, want);
        assert_int_equal(kiln_engine_layer_info(e, tn_find_layer(e, "grouped"), &li), KILN_OK);
        assert_true(strncmp(li.kernel, "gemm_", 5) == 0);
        assert_int_equal(kiln_engine_layer_info(e, tn_find_layer(e, "mp"), &li), KILN_OK);
        assert_string_equal(li.kernel, "ref");
        snprintf(want, sizeof want, "pool_%s", tu_isa_suffix[p]);
        assert_int_equal(kiln_engine_layer_info(e, tn_find_layer(e, "ap"), &li), KILN_OK);
        assert_string_equal(li.kernel, want);
        assert_int_equal(kiln_engine_layer_info(e, tn_find_layer(e, "gap"), &li), KILN_OK);
        assert_string_equal(li.kernel, want);
        kiln_engine_destroy(e);
    }
    isa_restore(saved);
    /* blocked tensors stay with the blocked reference kernels */
    int32_t old = backend_cpu_set_layout_policy(IR_LAYOUT_NCHW8C);
    kiln_engine *e = tn_build(net, NULL);
    kiln_layer_info li;
    assert_int_equal(kiln_engine_layer_info(e, tn_find_layer(e, "ap"), &li), KILN_OK);
    assert_string_equal(li.kernel, "ref_nchwc");
    kiln_engine_destroy(e);
    backend_cpu_set_layout_policy(old);
    tu_build_survives_allocation_failures(net);
    kiln_network_destroy(net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dwconv_random),      cmocka_unit_test(test_dwconv_fast_paths),
        cmocka_unit_test(test_dwconv_threads),     cmocka_unit_test(test_wide_rows_and_kernels),
        cmocka_unit_test(test_dwconv_activations), cmocka_unit_test(test_dwconv_nonfinite_weights),
        cmocka_unit_test(test_flat_matches_rows),  cmocka_unit_test(test_pool_random),
        cmocka_unit_test(test_pool_corners),       cmocka_unit_test(test_pool_threads),
        cmocka_unit_test(test_global_pools),       cmocka_unit_test(test_not_taken),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
