/* test_dynamic.c - dynamic shapes: optimization profiles in the config and the plan, shapes
 * inside and outside a profile, a dynamic engine against static engines built for each
 * shape, shape arithmetic (Shape -> Gather -> Concat -> Reshape) recomputed per shape,
 * contexts with caller memory, and many contexts of one engine on many threads. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/plan.h"
#include "testnet.h"

#define D(...) TU_DIMS(__VA_ARGS__)

static kiln_dims dims(int32_t rank, const int64_t *d) { return kiln_dims_make(rank, d); }

/* ---- networks ---- */

/* x [B, S, 16] -> MatMul + Add -> heads by a Reshape to [B, S, 4, 4] whose shape comes from
 * Shape(x) -> Transpose -> Softmax -> Transpose -> Reshape to Shape(x) -> Relu -> y, and
 * ReduceMean over S -> m [B, 16]. */
static kiln_network *seq_net(void)
{
    kiln_network *net = tn_net();
    kiln_dims x = dims(D(-1, -1, 16));
    assert_int_equal(kiln_network_add_input(net, "x", KILN_DTYPE_F32, &x), KILN_OK);
    tn_weights(net, "w", D(16, 16), 1, -0.5f, 0.5f);
    tn_weights(net, "b", D(16), 2, -0.5f, 0.5f);
    tn_ints(net, "i0", 1, (int64_t[]){0});
    tn_ints(net, "i1", 1, (int64_t[]){1});
    tn_ints(net, "heads", 2, (int64_t[]){4, 4});
    tn_ints(net, "axes", 1, (int64_t[]){1});
    tn_layer(net, "MatMul", "mm", IN("x", "w"), OUT("mm"), NO_ATTRS);
    tn_layer(net, "Add", "bias", IN("mm", "b"), OUT("h"), NO_ATTRS);
    tn_layer(net, "Shape", "shape", IN("x"), OUT("sx"), NO_ATTRS);
    tn_layer(net, "Gather", "batch", IN("sx", "i0"), OUT("bd"), ATTRS(KILN_ATTR_I("axis", 0)));
    tn_layer(net, "Gather", "seq", IN("sx", "i1"), OUT("sd"), ATTRS(KILN_ATTR_I("axis", 0)));
    tn_layer(net, "Concat", "split_shape", IN("bd", "sd", "heads"), OUT("split"),
             ATTRS(KILN_ATTR_I("axis", 0)));
    tn_layer(net, "Reshape", "split", IN("h", "split"), OUT("h4"), NO_ATTRS);
    tn_layer(net, "Transpose", "t1", IN("h4"), OUT("t1"),
             ATTRS(KILN_ATTR_IS("perm", ((int64_t[]){0, 2, 1, 3}), 4)));
    tn_layer(net, "Softmax", "sm", IN("t1"), OUT("sm"), ATTRS(KILN_ATTR_I("axis", -1)));
    tn_layer(net, "Transpose", "t2", IN("sm"), OUT("t2"),
             ATTRS(KILN_ATTR_IS("perm", ((int64_t[]){0, 2, 1, 3}), 4)));
    tn_layer(net, "Reshape", "merge", IN("t2", "sx"), OUT("merged"), NO_ATTRS);
    tn_layer(net, "Relu", "relu", IN("merged"), OUT("y"), NO_ATTRS);
    tn_layer(net, "ReduceMean", "mean", IN("y", "axes"), OUT("m"),
             ATTRS(KILN_ATTR_I("keepdims", 0)));
    tn_output(net, "y");
    tn_output(net, "m");
    return net;
}

/* x [N, 3, H, W] -> Conv + BatchNorm-free bias -> Relu -> MaxPool -> GlobalAveragePool ->
 * Flatten -> Gemm -> y [N, 5]. */
static kiln_network *conv_net(void)
{
    kiln_network *net = tn_net();
    kiln_dims x = dims(D(-1, 3, -1, -1));
    assert_int_equal(kiln_network_add_input(net, "x", KILN_DTYPE_F32, &x), KILN_OK);
    tn_weights(net, "w", D(8, 3, 3, 3), 3, -0.5f, 0.5f);
    tn_weights(net, "cb", D(8), 4, -0.5f, 0.5f);
    tn_weights(net, "fw", D(5, 8), 5, -0.5f, 0.5f);
    tn_weights(net, "fb", D(5), 6, -0.5f, 0.5f);
    tn_layer(net, "Conv", "conv", IN("x", "w", "cb"), OUT("c"),
             ATTRS(KILN_ATTR_IS("pads", ((int64_t[]){1, 1, 1, 1}), 4)));
    tn_layer(net, "Relu", "relu", IN("c"), OUT("r"), NO_ATTRS);
    tn_layer(net, "MaxPool", "pool", IN("r"), OUT("p"),
             ATTRS(KILN_ATTR_IS("kernel_shape", ((int64_t[]){2, 2}), 2),
                   KILN_ATTR_IS("strides", ((int64_t[]){2, 2}), 2)));
    tn_layer(net, "GlobalAveragePool", "gap", IN("p"), OUT("g"), NO_ATTRS);
    tn_layer(net, "Flatten", "flat", IN("g"), OUT("f"), NO_ATTRS);
    tn_layer(net, "Gemm", "fc", IN("f", "fw", "fb"), OUT("y"), ATTRS(KILN_ATTR_I("transB", 1)));
    tn_output(net, "y");
    return net;
}

static kiln_config *range_config(const char *input, kiln_dims min, kiln_dims opt, kiln_dims max)
{
    kiln_config *cfg = NULL;
    assert_int_equal(kiln_config_create(&cfg), KILN_OK);
    assert_int_equal(kiln_config_set_threads(cfg, 1), KILN_OK);
    assert_int_equal(kiln_config_set_tactic_timing(cfg, 0), KILN_OK); /* one kernel choice */
    kiln_status st = kiln_config_set_shape_range(cfg, 0, input, &min, &opt, &max);
    if (st) print_error("%s\n", kiln_last_error());
    assert_int_equal(st, KILN_OK);
    return cfg;
}

static kiln_engine *build_cfg(const kiln_network *net, const kiln_config *cfg)
{
    kiln_engine *e = NULL;
    kiln_status st = kiln_build(net, cfg, &e);
    if (st) print_error("build failed: %s\n", kiln_last_error());
    assert_int_equal(st, KILN_OK);
    return e;
}

static kiln_engine *build_static(const kiln_network *net, const char *input, kiln_dims shape)
{
    kiln_config *cfg = range_config(input, shape, shape, shape);
    kiln_engine *e = build_cfg(net, cfg);
    kiln_config_destroy(cfg);
    return e;
}

/* ---- running at a shape ---- */

typedef struct result {
    int n;
    kiln_dims shape[4];
    float *data[4];
    int64_t count[4];
} result;

static void result_free(result *r)
{
    for (int i = 0; i < r->n; i++) free(r->data[i]);
    memset(r, 0, sizeof *r);
}

/* Seeded input of `shape` (seed picks the data). */
static float *make_input(kiln_dims shape, uint64_t seed)
{
    int64_t n = kiln_dims_count(&shape);
    float *x = malloc(sizeof(float) * (size_t)(n ? n : 1));
    tu_rng r = {seed};
    tu_fill(&r, x, n, -2.0f, 2.0f);
    return x;
}

/* Runs context `c` with its input "x" at `shape`: outputs sized by the context's shapes. */
static kiln_status run_at(kiln_context *c, const kiln_engine *e, kiln_dims shape, const float *x,
                          result *r)
{
    memset(r, 0, sizeof *r);
    kiln_status st = kiln_context_set_input_shape(c, "x", &shape);
    if (st) return st;
    assert_int_equal(kiln_context_set_tensor(c, "x", (void *)x), KILN_OK);
    for (int32_t i = 0; i < kiln_engine_num_io(e); i++) {
        const char *name = kiln_engine_io_name(e, i);
        if (kiln_engine_io_mode(e, name) != KILN_IO_OUTPUT) continue;
        assert_int_equal(kiln_context_tensor_shape(c, name, &r->shape[r->n]), KILN_OK);
        r->count[r->n] = kiln_dims_count(&r->shape[r->n]);
        r->data[r->n] = calloc((size_t)r->count[r->n] + 1, sizeof(float));
        assert_int_equal(kiln_context_set_tensor(c, name, r->data[r->n]), KILN_OK);
        r->n++;
    }
    return kiln_context_run(c);
}

static void expect_same(const result *a, const result *b, double tol)
{
    assert_int_equal(a->n, b->n);
    for (int i = 0; i < a->n; i++) {
        char s1[KILN_DIMS_STR_MAX], s2[KILN_DIMS_STR_MAX];
        if (!kiln_dims_equal(&a->shape[i], &b->shape[i]))
            fail_msg("output %d: shape %s, expected %s", i,
                     kiln_dims_str(&a->shape[i], s1, sizeof s1),
                     kiln_dims_str(&b->shape[i], s2, sizeof s2));
        if (tol == 0)
            assert_memory_equal(a->data[i], b->data[i], sizeof(float) * (size_t)a->count[i]);
        else
            tu_assert_close(a->data[i], b->data[i], a->count[i], tol);
    }
}

/* The dynamic engine at `shape` equals a static engine built for exactly `shape`. */
static void check_against_static(const kiln_network *net, kiln_engine *dyn, int32_t profile,
                                 kiln_dims shape, uint64_t seed)
{
    kiln_engine *st = build_static(net, "x", shape);
    float *x = make_input(shape, seed);
    kiln_context *cd = NULL, *cs = NULL;
    assert_int_equal(kiln_context_create(dyn, &cd), KILN_OK);
    assert_int_equal(kiln_context_create(st, &cs), KILN_OK);
    assert_int_equal(kiln_context_set_profile(cd, profile), KILN_OK);
    result a, b;
    kiln_status s = run_at(cd, dyn, shape, x, &a);
    if (s) fail_msg("dynamic run: %s", kiln_last_error());
    assert_int_equal(run_at(cs, st, shape, x, &b), KILN_OK);
    expect_same(&a, &b, 1e-6);
    result_free(&a);
    result_free(&b);
    kiln_context_destroy(cd);
    kiln_context_destroy(cs);
    kiln_engine_destroy(st);
    free(x);
}

/* ---- tests ---- */

static void test_sequence_model_every_shape(void **state)
{
    (void)state;
    kiln_network *net = seq_net();
    kiln_config *cfg = range_config("x", dims(D(1, 1, 16)), dims(D(2, 8, 16)), dims(D(4, 12, 16)));
    kiln_engine *e = build_cfg(net, cfg);
    /* The engine keeps the shape arithmetic as layers, since it changes with x. */
    assert_true(tn_count_op(e, "Shape") >= 1);
    int64_t grid[][2] = {{1, 1}, {1, 12}, {4, 1}, {4, 12}, {3, 7}, {2, 8}, {1, 5}};
    for (size_t i = 0; i < sizeof grid / sizeof *grid; i++)
        check_against_static(net, e, 0, dims(D(grid[i][0], grid[i][1], 16)), 10 + i);
    kiln_engine_destroy(e);
    kiln_config_destroy(cfg);
    kiln_network_destroy(net);
}

static void test_conv_model_every_shape(void **state)
{
    (void)state;
    kiln_network *net = conv_net();
    kiln_config *cfg =
        range_config("x", dims(D(1, 3, 4, 4)), dims(D(2, 3, 16, 16)), dims(D(3, 3, 20, 24)));
    kiln_engine *e = build_cfg(net, cfg);
    int64_t grid[][3] = {{1, 4, 4}, {3, 20, 24}, {2, 9, 13}, {1, 17, 5}, {2, 16, 16}};
    for (size_t i = 0; i < sizeof grid / sizeof *grid; i++)
        check_against_static(net, e, 0, dims(D(grid[i][0], 3, grid[i][1], grid[i][2])), 20 + i);
    kiln_engine_destroy(e);
    kiln_config_destroy(cfg);
    kiln_network_destroy(net);
}

static void expect_error(kiln_status st, kiln_status want, const char *text)
{
    assert_int_equal(st, want);
    if (text && !strstr(kiln_last_error(), text))
        fail_msg("message \"%s\" lacks \"%s\"", kiln_last_error(), text);
}

static void test_shapes_outside_the_profile(void **state)
{
    (void)state;
    kiln_network *net = seq_net();
    kiln_config *cfg = range_config("x", dims(D(1, 1, 16)), dims(D(2, 8, 16)), dims(D(4, 12, 16)));
    kiln_engine *e = build_cfg(net, cfg);
    kiln_context *c = NULL;
    assert_int_equal(kiln_context_create(e, &c), KILN_OK);
    kiln_dims s = dims(D(5, 3, 16));
    expect_error(kiln_context_set_input_shape(c, "x", &s), KILN_ERR_SHAPE,
                 "input 'x': dimension 0 is 5; profile 0 allows 1..4");
    s = dims(D(2, 13, 16));
    expect_error(kiln_context_set_input_shape(c, "x", &s), KILN_ERR_SHAPE,
                 "dimension 1 is 13; profile 0 allows 1..12");
    s = dims(D(2, 3, 8));
    expect_error(kiln_context_set_input_shape(c, "x", &s), KILN_ERR_SHAPE,
                 "dimension 2 is 8; the engine was built for 16");
    s = dims(D(2, 3));
    expect_error(kiln_context_set_input_shape(c, "x", &s), KILN_ERR_SHAPE, "rank 2");
    s = dims(D(2, 3, 16));
    expect_error(kiln_context_set_input_shape(c, "y", &s), KILN_ERR_INVALID_ARGUMENT,
                 "not an input");
    /* A shape in range after refused ones works, and output shapes follow it. */
    assert_int_equal(kiln_context_set_input_shape(c, "x", &s), KILN_OK);
    kiln_dims y, m;
    assert_int_equal(kiln_context_tensor_shape(c, "y", &y), KILN_OK);
    assert_int_equal(kiln_context_tensor_shape(c, "m", &m), KILN_OK);
    assert_true(kiln_dims_equal(&y, &s));
    kiln_dims want_m = dims(D(2, 16));
    assert_true(kiln_dims_equal(&m, &want_m));
    /* The engine reports its profile. */
    assert_int_equal(kiln_engine_num_profiles(e), 1);
    kiln_dims b;
    assert_int_equal(kiln_engine_profile_shape(e, 0, "x", KILN_PROFILE_OPT, &b), KILN_OK);
    kiln_dims want_opt = dims(D(2, 8, 16));
    assert_true(kiln_dims_equal(&b, &want_opt));
    expect_error(kiln_engine_profile_shape(e, 1, "x", KILN_PROFILE_MIN, &b),
                 KILN_ERR_INVALID_ARGUMENT, "profile 1");
    expect_error(kiln_engine_profile_shape(e, 0, "y", KILN_PROFILE_MIN, &b), KILN_ERR_NOT_FOUND,
                 "no input 'y'");
    kiln_context_destroy(c);
    kiln_engine_destroy(e);
    kiln_config_destroy(cfg);
    kiln_network_destroy(net);
}

static void test_config_errors(void **state)
{
    (void)state;
    kiln_network *net = seq_net();
    kiln_config *cfg = NULL;
    assert_int_equal(kiln_config_create(&cfg), KILN_OK);
    kiln_dims a = dims(D(1, 4, 16)), b = dims(D(2, 2, 16)), c = dims(D(4, 8, 16));
    expect_error(kiln_config_set_shape_range(cfg, 0, "x", &a, &b, &c), KILN_ERR_SHAPE,
                 "dimension 1 needs min <= opt <= max, got 4, 2, 8");
    expect_error(kiln_config_set_shape_range(cfg, 1, "x", &a, &a, &c), KILN_ERR_INVALID_ARGUMENT,
                 "profile 1: the config has 0 profiles");
    kiln_dims r2 = dims(D(1, 4));
    expect_error(kiln_config_set_shape_range(cfg, 0, "x", &a, &r2, &c), KILN_ERR_SHAPE, "ranks");
    /* No shape at all for a dynamic input: the build says what to give. */
    kiln_engine *e = NULL;
    expect_error(kiln_build(net, cfg, &e), KILN_ERR_SHAPE, "input 'x' has a dynamic dimension 0");
    /* A declared dimension cannot change. */
    kiln_dims w = dims(D(1, 4, 8));
    assert_int_equal(kiln_config_set_shape_range(cfg, 0, "x", &w, &w, &w), KILN_OK);
    expect_error(kiln_build(net, cfg, &e), KILN_ERR_SHAPE, "dimension 2 is 16");
    /* The second profile must cover the dynamic input too. */
    assert_int_equal(kiln_config_set_shape_range(cfg, 0, "x", &a, &a, &c), KILN_OK);
    kiln_dims z = dims(D(1, 1, 16));
    assert_int_equal(kiln_config_set_shape_range(cfg, 1, "nothing", &z, &z, &z), KILN_OK);
    expect_error(kiln_build(net, cfg, &e), KILN_ERR_NOT_FOUND, "'nothing', which is not");
    assert_null(e);
    kiln_config_destroy(cfg);
    kiln_network_destroy(net);
}

static void test_profiles(void **state)
{
    (void)state;
    kiln_network *net = conv_net();
    kiln_config *cfg =
        range_config("x", dims(D(1, 3, 8, 8)), dims(D(2, 3, 8, 8)), dims(D(4, 3, 8, 8)));
    kiln_dims lo = dims(D(5, 3, 8, 8)), opt = dims(D(8, 3, 8, 8)), hi = dims(D(12, 3, 8, 8));
    assert_int_equal(kiln_config_set_shape_range(cfg, 1, "x", &lo, &opt, &hi), KILN_OK);
    assert_int_equal(kiln_config_num_profiles(cfg), 2);
    kiln_engine *e = build_cfg(net, cfg);
    assert_int_equal(kiln_engine_num_profiles(e), 2);
    kiln_context *c = NULL;
    assert_int_equal(kiln_context_create(e, &c), KILN_OK);
    assert_int_equal(kiln_context_profile(c), 0);
    kiln_dims s = dims(D(9, 3, 8, 8));
    expect_error(kiln_context_set_input_shape(c, "x", &s), KILN_ERR_SHAPE, "profile 0 allows 1..4");
    assert_int_equal(kiln_context_set_profile(c, 1), KILN_OK);
    /* A new profile starts at its max shapes. */
    kiln_dims cur;
    assert_int_equal(kiln_context_tensor_shape(c, "x", &cur), KILN_OK);
    assert_true(kiln_dims_equal(&cur, &hi));
    assert_int_equal(kiln_context_set_input_shape(c, "x", &s), KILN_OK);
    kiln_dims three = dims(D(3, 3, 8, 8));
    expect_error(kiln_context_set_input_shape(c, "x", &three), KILN_ERR_SHAPE,
                 "profile 1 allows 5..12");
    expect_error(kiln_context_set_profile(c, 2), KILN_ERR_INVALID_ARGUMENT, "2 profiles");
    kiln_context_destroy(c);
    check_against_static(net, e, 1, s, 31);
    check_against_static(net, e, 0, three, 32);
    kiln_engine_destroy(e);
    kiln_config_destroy(cfg);
    kiln_network_destroy(net);
}

static void test_plan_round_trip(void **state)
{
    (void)state;
    kiln_network *net = seq_net();
    kiln_config *cfg = range_config("x", dims(D(1, 1, 16)), dims(D(2, 8, 16)), dims(D(4, 12, 16)));
    kiln_engine *e = build_cfg(net, cfg);
    void *plan = NULL;
    size_t size = 0;
    kiln_engine *loaded = NULL;
    assert_int_equal(kiln_engine_serialize(e, &plan, &size), KILN_OK);
    assert_int_equal(kiln_engine_load_memory(plan, size, &loaded), KILN_OK);
    kiln_dims b;
    assert_int_equal(kiln_engine_profile_shape(loaded, 0, "x", KILN_PROFILE_MIN, &b), KILN_OK);
    kiln_dims want = dims(D(1, 1, 16));
    assert_true(kiln_dims_equal(&b, &want));
    int64_t grid[][2] = {{1, 1}, {3, 7}, {4, 12}};
    for (int i = 0; i < 3; i++) {
        kiln_dims s = dims(D(grid[i][0], grid[i][1], 16));
        float *x = make_input(s, 40 + (uint64_t)i);
        kiln_context *c1 = NULL, *c2 = NULL;
        assert_int_equal(kiln_context_create(e, &c1), KILN_OK);
        assert_int_equal(kiln_context_create(loaded, &c2), KILN_OK);
        result r1, r2;
        assert_int_equal(run_at(c1, e, s, x, &r1), KILN_OK);
        assert_int_equal(run_at(c2, loaded, s, x, &r2), KILN_OK);
        expect_same(&r1, &r2, 0);
        result_free(&r1);
        result_free(&r2);
        kiln_context_destroy(c1);
        kiln_context_destroy(c2);
        free(x);
    }
    /* Damage to the profiles section is refused (checksums recomputed by the loader's
     * tests elsewhere; here the checksum alone must catch it). */
    ((unsigned char *)plan)[size - 9] ^= 0x40;
    kiln_engine *bad = NULL;
    assert_int_not_equal(kiln_engine_load_memory(plan, size, &bad), KILN_OK);
    assert_null(bad);
    kiln_free(plan);
    kiln_engine_destroy(loaded);
    kiln_engine_destroy(e);
    kiln_config_destroy(cfg);
    kiln_network_destroy(net);
}

static void test_caller_memory(void **state)
{
    (void)state;
    kiln_network *net = conv_net();
    kiln_config *cfg =
        range_config("x", dims(D(1, 3, 4, 4)), dims(D(2, 3, 8, 8)), dims(D(2, 3, 12, 12)));
    kiln_engine *e = build_cfg(net, cfg);
    size_t need = kiln_engine_arena_bytes(e);
    assert_true(need > 0);
    kiln_context *own = NULL, *c1 = NULL, *c2 = NULL;
    assert_int_equal(kiln_context_create(e, &own), KILN_OK);
    assert_int_equal(kiln_context_create_without_memory(e, &c1), KILN_OK);
    assert_int_equal(kiln_context_create_without_memory(e, &c2), KILN_OK);
    kiln_dims s = dims(D(2, 3, 11, 9));
    float *x = make_input(s, 50);
    result want, got;
    assert_int_equal(run_at(own, e, s, x, &want), KILN_OK);
    expect_error(run_at(c1, e, s, x, &got), KILN_ERR_STATE, "no activation memory");
    result_free(&got);
    unsigned char *mem = kiln_aligned_alloc(need + 64, 64);
    expect_error(kiln_context_set_memory(c1, mem, need - 1), KILN_ERR_INVALID_ARGUMENT,
                 "the engine needs");
    expect_error(kiln_context_set_memory(c1, mem + 8, need), KILN_ERR_INVALID_ARGUMENT, "aligned");
    expect_error(kiln_context_set_memory(own, mem, need), KILN_ERR_STATE, "memory of its own");
    /* One block serves two contexts that run one after the other. */
    assert_int_equal(kiln_context_set_memory(c1, mem, need), KILN_OK);
    assert_int_equal(kiln_context_set_memory(c2, mem, need), KILN_OK);
    for (int round = 0; round < 2; round++) {
        kiln_context *c = round ? c2 : c1;
        assert_int_equal(run_at(c, e, s, x, &got), KILN_OK);
        expect_same(&got, &want, 0);
        result_free(&got);
    }
    result_free(&want);
    free(x);
    kiln_aligned_free(mem);
    kiln_context_destroy(own);
    kiln_context_destroy(c1);
    kiln_context_destroy(c2);
    kiln_engine_destroy(e);
    kiln_config_destroy(cfg);
    kiln_network_destroy(net);
}

/* ---- hostile dynamic plans ---- */

static void fix_crcs(uint8_t *p, size_t n)
{
    uint32_t body = kiln_crc32c(0, p + PLAN_HEADER_BYTES, n - PLAN_HEADER_BYTES);
    memcpy(p + 32, &body, 4);
    uint32_t head = plan_header_crc(p);
    memcpy(p + 40, &head, 4);
}

/* A plan that loads runs at its profile's extremes without touching memory outside its
 * buffers (ASan watches), or refuses the shape. */
static void try_shapes(kiln_engine *e)
{
    static float bufs[4][8192];
    kiln_context *c = NULL;
    if (kiln_context_create(e, &c) != KILN_OK) return;
    for (int b = 0; b < 2; b++) {
        kiln_dims s;
        if (kiln_engine_profile_shape(e, 0, "x", b ? KILN_PROFILE_MAX : KILN_PROFILE_MIN, &s))
            continue;
        if (kiln_context_set_input_shape(c, "x", &s)) continue;
        bool ok = true;
        for (int32_t i = 0; i < kiln_engine_num_io(e) && i < 4; i++) {
            const char *name = kiln_engine_io_name(e, i);
            kiln_dims sh;
            kiln_dtype dt;
            if (kiln_engine_tensor_info(e, name, &dt, &sh) ||
                kiln_context_tensor_shape(c, name, &sh)) {
                ok = false;
                break;
            }
            int64_t bytes = kiln_dims_count(&sh) * (int64_t)kiln_dtype_size(dt);
            ok = ok && bytes <= (int64_t)sizeof bufs[i] &&
                 kiln_context_set_tensor(c, name, bufs[i]) == KILN_OK;
        }
        if (ok) kiln_context_run(c);
    }
    kiln_context_destroy(c);
}

static void test_hostile_dynamic_plans(void **state)
{
    (void)state;
    kiln_network *net = seq_net();
    kiln_config *cfg = range_config("x", dims(D(1, 1, 16)), dims(D(2, 4, 16)), dims(D(3, 6, 16)));
    kiln_engine *e = build_cfg(net, cfg);
    uint8_t *p;
    size_t n;
    assert_int_equal(kiln_engine_serialize(e, (void **)&p, &n), KILN_OK);
    uint8_t *q = malloc(n);
    const uint8_t vals[] = {0x00, 0xff, 0x01, 0x40};
    int loaded = 0, refused = 0;
    for (size_t i = PLAN_HEADER_BYTES; i < n; i++)
        for (size_t k = 0; k < sizeof vals; k++) {
            if (p[i] == vals[k]) continue;
            memcpy(q, p, n);
            q[i] = vals[k];
            fix_crcs(q, n);
            kiln_engine *x = NULL;
            if (kiln_engine_load_memory(q, n, &x) == KILN_OK) {
                loaded++;
                try_shapes(x);
                kiln_engine_destroy(x);
            } else {
                refused++;
                assert_null(x);
            }
        }
    assert_true(refused > 0 && loaded > 0);
    free(q);
    kiln_free(p);
    kiln_engine_destroy(e);
    kiln_config_destroy(cfg);
    kiln_network_destroy(net);
}

/* ---- many contexts on many threads ---- */

#define THREADS 8
#define RUNS    200
#define SHAPES  12

typedef struct stress {
    kiln_engine *e;
    kiln_dims shape[SHAPES];
    float *x[SHAPES];
    result want[SHAPES];
    int id;
    int mismatches;
    kiln_status failed;
} stress;

static void *stress_thread(void *arg)
{
    stress *s = arg;
    kiln_context *c = NULL;
    if ((s->failed = kiln_context_create(s->e, &c)) != KILN_OK) return NULL;
    tu_rng r = {1234 + (uint64_t)s->id};
    for (int i = 0; i < RUNS; i++) {
        int k = (int)tu_int(&r, 0, SHAPES - 1);
        result got;
        kiln_status st = run_at(c, s->e, s->shape[k], s->x[k], &got);
        if (st) {
            s->failed = st;
            result_free(&got);
            break;
        }
        for (int o = 0; o < got.n; o++)
            if (memcmp(got.data[o], s->want[k].data[o], sizeof(float) * (size_t)got.count[o]))
                s->mismatches++;
        result_free(&got);
    }
    kiln_context_destroy(c);
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    kiln_network *net = seq_net();
    kiln_config *cfg = range_config("x", dims(D(1, 1, 16)), dims(D(2, 8, 16)), dims(D(4, 12, 16)));
    kiln_engine *e = build_cfg(net, cfg);
    stress base = {.e = e};
    tu_rng r = {99};
    /* The expected results: one context, one thread. */
    kiln_context *c = NULL;
    assert_int_equal(kiln_context_create(e, &c), KILN_OK);
    for (int k = 0; k < SHAPES; k++) {
        base.shape[k] = dims(D(tu_int(&r, 1, 4), tu_int(&r, 1, 12), 16));
        base.x[k] = make_input(base.shape[k], 60 + (uint64_t)k);
        assert_int_equal(run_at(c, e, base.shape[k], base.x[k], &base.want[k]), KILN_OK);
    }
    kiln_context_destroy(c);
    stress s[THREADS];
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        s[i] = base;
        s[i].id = i;
        assert_int_equal(pthread_create(&t[i], NULL, stress_thread, &s[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        if (s[i].failed) fail_msg("thread %d: %s", i, kiln_last_error());
        assert_int_equal(s[i].mismatches, 0);
    }
    for (int k = 0; k < SHAPES; k++) {
        result_free(&base.want[k]);
        free(base.x[k]);
    }
    kiln_engine_destroy(e);
    kiln_config_destroy(cfg);
    kiln_network_destroy(net);
}

static void test_allocation_failures(void **state)
{
    (void)state;
    kiln_network *net = seq_net();
    kiln_config *cfg = range_config("x", dims(D(1, 1, 16)), dims(D(2, 8, 16)), dims(D(4, 12, 16)));
    tu_build_cfg_survives_allocation_failures(net, cfg);
    kiln_config_destroy(cfg);
    kiln_network_destroy(net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sequence_model_every_shape),
        cmocka_unit_test(test_conv_model_every_shape),
        cmocka_unit_test(test_shapes_outside_the_profile),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_profiles),
        cmocka_unit_test(test_plan_round_trip),
        cmocka_unit_test(test_caller_memory),
        cmocka_unit_test(test_hostile_dynamic_plans),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_allocation_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
