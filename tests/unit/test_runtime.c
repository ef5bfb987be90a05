/* test_runtime.c - builder, plan files and contexts through the public API: a plan round
 * trip gives bit-identical outputs, plans are deterministic, corrupt and hostile plans
 * are refused without crashing, bindings are checked by name. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/plan.h"
#include "testutil.h"

/* x[2x8] -> Relu -> a; a + w -> b; Relu(b) -> y, with a second output a. */
static kiln_network *small_net(void)
{
    kiln_network *net = NULL;
    assert_int_equal(kiln_network_create(&net), KILN_OK);
    kiln_dims s = {2, {2, 8}};
    float w[16];
    for (int i = 0; i < 16; i++) w[i] = (float)(i - 8) * 0.25f;
    assert_int_equal(kiln_network_add_input(net, "x", KILN_DTYPE_F32, &s), KILN_OK);
    assert_int_equal(kiln_network_add_constant(net, "w", KILN_DTYPE_F32, &s, w, sizeof w), KILN_OK);
    const char *i1[] = {"x"}, *o1[] = {"a"};
    assert_int_equal(kiln_network_add_layer(net, "Relu", "relu1", i1, 1, o1, 1, NULL, 0), KILN_OK);
    const char *i2[] = {"a", "w"}, *o2[] = {"b"};
    if (kiln_op_supported("Add")) {
        assert_int_equal(kiln_network_add_layer(net, "Add", "add", i2, 2, o2, 1, NULL, 0), KILN_OK);
    } else {
        assert_int_equal(kiln_network_add_layer(net, "Identity", "add", i2, 1, o2, 1, NULL, 0),
                         KILN_OK);
    }
    const char *i3[] = {"b"}, *o3[] = {"y"};
    assert_int_equal(kiln_network_add_layer(net, "Relu", "relu2", i3, 1, o3, 1, NULL, 0), KILN_OK);
    /* a dead branch the builder must drop */
    const char *i4[] = {"x"}, *o4[] = {"unused"};
    assert_int_equal(kiln_network_add_layer(net, "Relu", "dead", i4, 1, o4, 1, NULL, 0), KILN_OK);
    assert_int_equal(kiln_network_mark_output(net, "y"), KILN_OK);
    assert_int_equal(kiln_network_mark_output(net, "a"), KILN_OK);
    return net;
}

/* With elementwise-chain off: these tests check the runtime on the layers as written
 * (relu1 .. relu2 and the Relu chain below would become one kiln.Elementwise). Without
 * tactic timing, so two builds give one plan. */
static kiln_engine *build(kiln_network *net)
{
    kiln_engine *e = NULL;
    kiln_config *cfg = NULL;
    assert_int_equal(kiln_config_create(&cfg), KILN_OK);
    assert_int_equal(kiln_config_disable_pass(cfg, "elementwise-chain"), KILN_OK);
    assert_int_equal(kiln_config_set_tactic_timing(cfg, 0), KILN_OK);
    kiln_status st = kiln_build(net, cfg, &e);
    kiln_config_destroy(cfg);
    if (st) print_error("build failed: %s\n", kiln_last_error());
    assert_int_equal(st, KILN_OK);
    return e;
}

static void run(kiln_engine *e, const float *x, float *y, float *a)
{
    kiln_context *c = NULL;
    assert_int_equal(kiln_context_create(e, &c), KILN_OK);
    assert_int_equal(kiln_context_set_tensor(c, "x", (void *)x), KILN_OK);
    assert_int_equal(kiln_context_set_tensor(c, "y", y), KILN_OK);
    assert_int_equal(kiln_context_set_tensor(c, "a", a), KILN_OK);
    assert_int_equal(kiln_context_run(c), KILN_OK);
    kiln_context_destroy(c);
}

static void test_build_and_run(void **state)
{
    kiln_network *net = small_net();
    kiln_engine *e = build(net);
    kiln_network_destroy(net); /* the engine does not depend on the network */
    assert_int_equal(kiln_engine_num_layers(e), kiln_op_supported("Add") ? 3 : 3);
    assert_int_equal(kiln_engine_num_io(e), 3);
    assert_string_equal(kiln_engine_io_name(e, 0), "x");
    assert_string_equal(kiln_engine_io_name(e, 1), "y");
    assert_int_equal(kiln_engine_io_mode(e, "x"), KILN_IO_INPUT);
    assert_int_equal(kiln_engine_io_mode(e, "a"), KILN_IO_OUTPUT);
    assert_int_equal(kiln_engine_io_mode(e, "b"), KILN_IO_NONE);
    kiln_dtype dt;
    kiln_dims sh;
    assert_int_equal(kiln_engine_tensor_info(e, "b", &dt, &sh), KILN_OK);
    assert_int_equal(dt, KILN_DTYPE_F32);
    assert_int_equal(sh.rank, 2);
    assert_int_equal(kiln_engine_tensor_info(e, "nope", &dt, &sh), KILN_ERR_NOT_FOUND);

    float x[16], y[16], a[16], want[16];
    for (int i = 0; i < 16; i++) x[i] = (float)(i % 5) - 2.0f;
    run(e, x, y, a);
    for (int i = 0; i < 16; i++) {
        float r = x[i] > 0 ? x[i] : 0;
        float b = kiln_op_supported("Add") ? r + (float)(i - 8) * 0.25f : r;
        want[i] = b > 0 ? b : 0;
        assert_true(a[i] == r);
    }
    assert_memory_equal(y, want, sizeof y);
    kiln_engine_destroy(e);
}

static void test_plan_round_trip_and_determinism(void **state)
{
    kiln_network *net = small_net();
    kiln_engine *e1 = build(net), *e2 = build(net);
    void *p1, *p2;
    size_t n1, n2;
    assert_int_equal(kiln_engine_serialize(e1, &p1, &n1), KILN_OK);
    assert_int_equal(kiln_engine_serialize(e2, &p2, &n2), KILN_OK);
    assert_int_equal(n1, n2);
    assert_memory_equal(p1, p2, n1); /* same network and config: byte-identical plans */

    char path[] = "/tmp/kiln_test_plan_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(kiln_engine_save(e1, path), KILN_OK);
    kiln_engine *fromfile = NULL, *frommem = NULL;
    assert_int_equal(kiln_engine_load(path, &fromfile), KILN_OK);
    assert_int_equal(kiln_engine_load_memory(p1, n1, &frommem), KILN_OK);

    float x[16], y1[16], a1[16], y2[16], a2[16], y3[16], a3[16];
    for (int i = 0; i < 16; i++) x[i] = (float)i * 0.37f - 3.0f;
    run(e1, x, y1, a1);
    run(fromfile, x, y2, a2);
    run(frommem, x, y3, a3);
    assert_memory_equal(y1, y2, sizeof y1);
    assert_memory_equal(y1, y3, sizeof y1);
    assert_memory_equal(a1, a2, sizeof a1);

    /* a loaded plan serializes to the same bytes */
    void *p3;
    size_t n3;
    assert_int_equal(kiln_engine_serialize(fromfile, &p3, &n3), KILN_OK);
    assert_int_equal(n3, n1);
    assert_memory_equal(p3, p1, n1);

    kiln_free(p1);
    kiln_free(p2);
    kiln_free(p3);
    kiln_engine_destroy(e1);
    kiln_engine_destroy(e2);
    kiln_engine_destroy(fromfile);
    kiln_engine_destroy(frommem);
    kiln_network_destroy(net);
    remove(path);
}

static void fix_crcs(uint8_t *p, size_t n)
{
    uint32_t body = kiln_crc32c(0, p + PLAN_HEADER_BYTES, n - PLAN_HEADER_BYTES);
    memcpy(p + 32, &body, 4);
    uint32_t head = plan_header_crc(p);
    memcpy(p + 40, &head, 4);
}

static void try_run(kiln_engine *e)
{
    /* A plan that loads must also run without touching memory outside its buffers. */
    kiln_context *c = NULL;
    if (kiln_context_create(e, &c) != KILN_OK) return;
    static float bufs[8][4096];
    for (int32_t i = 0; i < kiln_engine_num_io(e) && i < 8; i++) {
        kiln_dims sh;
        kiln_dtype dt;
        const char *name = kiln_engine_io_name(e, i);
        if (kiln_engine_tensor_info(e, name, &dt, &sh) != KILN_OK) continue;
        int64_t bytes = kiln_dims_count(&sh) * (int64_t)kiln_dtype_size(dt);
        if (bytes <= (int64_t)sizeof bufs[i]) kiln_context_set_tensor(c, name, bufs[i]);
    }
    kiln_context_run(c);
    kiln_context_destroy(c);
}

static void test_corrupt_plans_are_refused(void **state)
{
    kiln_network *net = small_net();
    kiln_engine *e = build(net);
    uint8_t *p;
    size_t n;
    assert_int_equal(kiln_engine_serialize(e, (void **)&p, &n), KILN_OK);
    uint8_t *q = malloc(n);

    /* Truncation anywhere (including every section boundary) */
    for (size_t cut = 0; cut < n; cut++) {
        kiln_engine *x = NULL;
        kiln_status st = kiln_engine_load_memory(p, cut, &x);
        assert_int_equal(st, KILN_ERR_CORRUPT_PLAN);
        assert_null(x);
        assert_non_null(strstr(kiln_last_error(), "corrupt plan"));
    }
    /* Any flipped bit is caught by the checksums. */
    for (size_t i = 0; i < n; i += 7) {
        memcpy(q, p, n);
        q[i] ^= 0x10;
        kiln_engine *x = NULL;
        kiln_status st = kiln_engine_load_memory(q, n, &x);
        assert_int_not_equal(st, KILN_OK);
        assert_null(x);
    }
    /* Wrong format version */
    memcpy(q, p, n);
    uint32_t v = 99;
    memcpy(q + 8, &v, 4);
    fix_crcs(q, n);
    kiln_engine *x = NULL;
    assert_int_equal(kiln_engine_load_memory(q, n, &x), KILN_ERR_VERSION);
    assert_non_null(strstr(kiln_last_error(), "version 99"));
    /* Required CPU features this machine lacks */
    memcpy(q, p, n);
    uint64_t f = 1ull << 62;
    memcpy(q + 16, &f, 8);
    fix_crcs(q, n);
    assert_int_equal(kiln_engine_load_memory(q, n, &x), KILN_ERR_DEVICE);
    /* Hostile plans with valid checksums: every byte of the body set to several values.
     * Each must load cleanly or be refused; none may crash (ASan checks the runs). */
    const uint8_t vals[] = {0x00, 0xff, 0x7f, 0x80, 0x01, 0x40};
    int loaded = 0, refused = 0;
    for (size_t i = PLAN_HEADER_BYTES; i < n; i++) {
        for (size_t k = 0; k < sizeof vals; k++) {
            if (p[i] == vals[k]) continue;
            memcpy(q, p, n);
            q[i] = vals[k];
            fix_crcs(q, n);
            x = NULL;
            kiln_status st = kiln_engine_load_memory(q, n, &x);
            if (st == KILN_OK) {
                loaded++;
                try_run(x);
                kiln_engine_destroy(x);
            } else {
                refused++;
                assert_null(x);
                assert_true(strlen(kiln_last_error()) > 0);
            }
        }
    }
    assert_true(refused > 0);
    /* Absurd sizes: tensor count */
    free(q);
    kiln_free(p);
    kiln_engine_destroy(e);
    kiln_network_destroy(net);
}

static void test_missing_file_and_bad_bindings(void **state)
{
    kiln_engine *e = NULL;
    assert_int_equal(kiln_engine_load("/nonexistent/x.plan", &e), KILN_ERR_IO);
    assert_non_null(strstr(kiln_last_error(), "/nonexistent/x.plan"));

    kiln_network *net = small_net();
    e = build(net);
    kiln_context *c = NULL;
    assert_int_equal(kiln_context_create(e, &c), KILN_OK);
    float buf[16] = {0};
    assert_int_equal(kiln_context_set_tensor(c, "nope", buf), KILN_ERR_NOT_FOUND);
    assert_non_null(strstr(kiln_last_error(), "'nope'"));
    assert_int_equal(kiln_context_set_tensor(c, "b", buf), KILN_ERR_INVALID_ARGUMENT);
    assert_int_equal(kiln_context_set_tensor(c, "x", buf), KILN_OK);
    assert_int_equal(kiln_context_run(c), KILN_ERR_STATE);
    assert_non_null(strstr(kiln_last_error(), "output 'y' is not bound"));
    kiln_dims wrong = {2, {3, 8}};
    assert_int_equal(kiln_context_set_input_shape(c, "x", &wrong), KILN_ERR_SHAPE);
    assert_non_null(strstr(kiln_last_error(), "2x8"));
    kiln_context_destroy(c);
    kiln_engine_destroy(e);
    kiln_network_destroy(net);
}

static void test_build_errors(void **state)
{
    kiln_network *net = NULL;
    kiln_engine *e = NULL;
    assert_int_equal(kiln_network_create(&net), KILN_OK);
    kiln_dims s = {2, {-1, 8}};
    assert_int_equal(kiln_network_add_input(net, "x", KILN_DTYPE_F32, &s), KILN_OK);
    const char *i1[] = {"x"}, *o1[] = {"y"};
    assert_int_equal(kiln_network_add_layer(net, "Relu", "r", i1, 1, o1, 1, NULL, 0), KILN_OK);
    /* no output marked */
    assert_int_equal(kiln_build(net, NULL, &e), KILN_ERR_INVALID_GRAPH);
    assert_non_null(strstr(kiln_last_error(), "no output"));
    assert_int_equal(kiln_network_mark_output(net, "y"), KILN_OK);
    /* dynamic dimension without a shape */
    assert_int_equal(kiln_build(net, NULL, &e), KILN_ERR_SHAPE);
    assert_non_null(strstr(kiln_last_error(), "input 'x' has a dynamic dimension 0"));
    kiln_config *cfg = NULL;
    assert_int_equal(kiln_config_create(&cfg), KILN_OK);
    kiln_dims bad = {2, {4, 9}}, good = {2, {4, 8}};
    assert_int_equal(kiln_config_set_input_shape(cfg, "x", &bad), KILN_OK);
    assert_int_equal(kiln_build(net, cfg, &e), KILN_ERR_SHAPE);
    assert_int_equal(kiln_config_set_input_shape(cfg, "x", &good), KILN_OK);
    assert_int_equal(kiln_build(net, cfg, &e), KILN_OK);
    kiln_dims sh;
    assert_int_equal(kiln_engine_tensor_info(e, "y", NULL, &sh), KILN_OK);
    assert_int_equal(sh.d[0], 4);
    assert_int_equal(kiln_config_disable_pass(cfg, "no-such-pass"), KILN_ERR_INVALID_ARGUMENT);
    assert_int_equal(kiln_config_disable_pass(cfg, "dead-code"), KILN_OK);
    assert_int_equal(kiln_config_set_device(cfg, "tpu"), KILN_ERR_INVALID_ARGUMENT);
    kiln_engine_destroy(e);
    kiln_config_destroy(cfg);
    kiln_network_destroy(net);
}

static void test_allocation_failures(void **state)
{
    /* Every allocation of a whole build-save-load-run cycle fails in turn; each failure
     * must surface as an error (leaks are caught by the sanitizer build). */
    kiln_network *net = small_net();
    long k;
    for (k = 0; k < 5000; k++) {
        kiln_engine *e = NULL, *e2 = NULL;
        kiln_context *c = NULL;
        void *p = NULL;
        size_t n = 0;
        float x[16] = {1}, y[16], a[16];
        kiln_alloc_fail_after(k);
        kiln_status st = kiln_build(net, NULL, &e);
        if (!st) st = kiln_engine_serialize(e, &p, &n);
        if (!st) st = kiln_engine_load_memory(p, n, &e2);
        if (!st) st = kiln_context_create(e2, &c);
        if (!st) st = kiln_context_set_tensor(c, "x", x);
        if (!st) st = kiln_context_set_tensor(c, "y", y);
        if (!st) st = kiln_context_set_tensor(c, "a", a);
        if (!st) st = kiln_context_run(c);
        kiln_alloc_fail_after(-1);
        kiln_context_destroy(c);
        kiln_engine_destroy(e2);
        kiln_engine_destroy(e);
        kiln_free(p);
        if (st == KILN_OK) break;
        assert_int_equal(st, KILN_ERR_OUT_OF_MEMORY);
    }
    assert_true(k < 5000);
    kiln_network_destroy(net);
}

static void test_memory_plan_reuses(void **state)
{
    /* A chain of 10 Relus on 1 KiB tensors runs in place in one buffer. */
    kiln_network *net = NULL;
    assert_int_equal(kiln_network_create(&net), KILN_OK);
    kiln_dims s = {1, {256}};
    assert_int_equal(kiln_network_add_input(net, "t0", KILN_DTYPE_F32, &s), KILN_OK);
    char in[16], out[16];
    for (int i = 0; i < 10; i++) {
        snprintf(in, sizeof in, "t%d", i);
        snprintf(out, sizeof out, "t%d", i + 1);
        const char *ii[] = {in}, *oo[] = {out};
        assert_int_equal(kiln_network_add_layer(net, "Relu", NULL, ii, 1, oo, 1, NULL, 0), KILN_OK);
    }
    assert_int_equal(kiln_network_mark_output(net, "t10"), KILN_OK);
    kiln_engine *e = build(net);
    assert_int_equal(kiln_engine_activation_bytes(e), 9 * 1024);
    assert_int_equal(kiln_engine_arena_bytes(e), 1024);
    float x[256], y[256];
    for (int i = 0; i < 256; i++) x[i] = (float)(i - 128);
    kiln_context *c = NULL;
    assert_int_equal(kiln_context_create(e, &c), KILN_OK);
    assert_int_equal(kiln_context_set_tensor(c, "t0", x), KILN_OK);
    assert_int_equal(kiln_context_set_tensor(c, "t10", y), KILN_OK);
    assert_int_equal(kiln_context_run(c), KILN_OK);
    for (int i = 0; i < 256; i++) assert_true(y[i] == (x[i] > 0 ? x[i] : 0));
    kiln_context_destroy(c);
    kiln_engine_destroy(e);
    kiln_network_destroy(net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_and_run),
        cmocka_unit_test(test_plan_round_trip_and_determinism),
        cmocka_unit_test(test_corrupt_plans_are_refused),
        cmocka_unit_test(test_missing_file_and_bad_bindings),
        cmocka_unit_test(test_build_errors),
        cmocka_unit_test(test_allocation_failures),
        cmocka_unit_test(test_memory_plan_reuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
