/* test_tactics.c - tactic selection: the timing cache file (round trip, sorted and stable,
 * a cache from another machine or a damaged one ignored and replaced, hostile lines), the
 * timing of a kernel, and builds that read and write the cache. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "build/tactics.h"
#include "testnet.h"

static char g_dir[64];

static void path_in(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", g_dir, name);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

static void spit(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/kiln-tactics-XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static void test_cache_round_trip(void **state)
{
    (void)state;
    char path[128];
    path_in(path, sizeof path, "rt.cache");
    tactic_cache c;
    tactic_cache_init(&c);
    assert_int_equal(tactic_cache_load(&c, path), KILN_OK); /* no file yet */
    assert_int_equal(c.n, 0);
    assert_int_equal(tactic_cache_put(&c, 0x30, "winograd_f4", 1200), KILN_OK);
    assert_int_equal(tactic_cache_put(&c, 0x10, "gemm", 900), KILN_OK);
    assert_int_equal(tactic_cache_put(&c, 0x30, "gemm", 800), KILN_OK); /* replaces */
    assert_int_equal(tactic_cache_save(&c), KILN_OK);
    tactic_cache_free(&c);
    const char *text = slurp(path);
    assert_non_null(text);
    assert_non_null(strstr(text, "kiln-timing-cache 1\ncpu "));
    /* sorted by key */
    const char *a = strstr(text, "0000000000000010 gemm 900"),
               *b = strstr(text, "0000000000000030 gemm 800");
    assert_true(a && b && a < b);
    tactic_cache_init(&c);
    assert_int_equal(tactic_cache_load(&c, path), KILN_OK);
    assert_int_equal(c.n, 2);
    assert_string_equal(tactic_cache_find(&c, 0x30), "gemm");
    assert_null(tactic_cache_find(&c, 0x20));
    assert_false(c.dirty);
    assert_int_equal(tactic_cache_save(&c), KILN_OK); /* nothing new: not rewritten */
    tactic_cache_free(&c);
}

static void test_cache_from_elsewhere_or_damaged(void **state)
{
    (void)state;
    char path[128];
    path_in(path, sizeof path, "other.cache");
    const char *bad[] = {
        "kiln-timing-cache 1\ncpu Some Other CPU|features 0|threads 1|kiln 0.0.1\n"
        "0000000000000010 gemm 900\n",
        "kiln-timing-cache 9\n",
        "not a cache at all",
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        spit(path, bad[i]);
        tactic_cache c;
        tactic_cache_init(&c);
        assert_int_equal(tactic_cache_load(&c, path), KILN_OK);
        assert_int_equal(c.n, 0);
        assert_true(c.dirty); /* to be replaced */
        tactic_cache_free(&c);
    }
    /* This machine's header (from a cache it wrote), then lines a reader must not trust. */
    char good[128];
    path_in(good, sizeof good, "header.cache");
    tactic_cache w;
    tactic_cache_init(&w);
    assert_int_equal(tactic_cache_load(&w, good), KILN_OK);
    assert_int_equal(tactic_cache_save(&w), KILN_OK);
    tactic_cache_free(&w);
    char header[1024];
    const char *h = slurp(good);
    assert_true(strlen(h) < sizeof header);
    memcpy(header, h, strlen(h) + 1);
    char longline[700];
    memset(longline, 'a', sizeof longline - 1);
    longline[sizeof longline - 1] = 0;
    const char *lines[] = {"zzzz gemm 1\n", "0000000000000010 bad/name 1\n",
                           "0000000000000010 gemm\n", longline};
    for (size_t i = 0; i < sizeof lines / sizeof *lines; i++) {
        char text[4096];
        snprintf(text, sizeof text, "%s0000000000000011 gemm 5\n%s", header, lines[i]);
        spit(path, text);
        tactic_cache c;
        tactic_cache_init(&c);
        assert_int_equal(tactic_cache_load(&c, path), KILN_OK);
        assert_int_equal(c.n, 0); /* a damaged file is dropped whole */
        assert_true(c.dirty);
        tactic_cache_free(&c);
    }
    char text[4096];
    snprintf(text, sizeof text, "%s0000000000000011 gemm 5\n", header);
    spit(path, text);
    tactic_cache c;
    tactic_cache_init(&c);
    assert_int_equal(tactic_cache_load(&c, path), KILN_OK);
    assert_int_equal(c.n, 1);
    assert_string_equal(tactic_cache_find(&c, 0x11), "gemm");
    tactic_cache_free(&c);
}

/* A conv net: its layers' kernels are timed when they have several candidates; the cache
 * file is written either way, and two builds with it give one plan. */
static kiln_network *conv_net(void)
{
    kiln_network *net = tn_net();
    tn_input(net, "x", TU_DIMS(1, 16, 20, 20));
    tn_weights(net, "w", TU_DIMS(16, 16, 3, 3), 1, -0.3f, 0.3f);
    tn_weights(net, "b", TU_DIMS(16), 2, -0.3f, 0.3f);
    int64_t k[2] = {3, 3}, pads[4] = {1, 1, 1, 1};
    tn_layer(net, "Conv", "conv", IN("x", "w", "b"), OUT("c"),
             ATTRS(KILN_ATTR_IS("kernel_shape", k, 2), KILN_ATTR_IS("pads", pads, 4)));
    tn_layer(net, "Relu", "relu", IN("c"), OUT("y"), NO_ATTRS);
    tn_output(net, "y");
    return net;
}

static void test_builds_with_a_cache(void **state)
{
    (void)state;
    char path[128];
    path_in(path, sizeof path, "build.cache");
    remove(path);
    kiln_network *net = conv_net();
    void *plans[2];
    size_t sizes[2];
    for (int i = 0; i < 2; i++) {
        kiln_config *cfg = NULL;
        assert_int_equal(kiln_config_create(&cfg), KILN_OK);
        assert_int_equal(kiln_config_set_threads(cfg, 1), KILN_OK);
        assert_int_equal(kiln_config_set_timing_cache(cfg, path), KILN_OK);
        kiln_engine *e = NULL;
        assert_int_equal(kiln_build(net, cfg, &e), KILN_OK);
        assert_int_equal(kiln_engine_serialize(e, &plans[i], &sizes[i]), KILN_OK);
        kiln_engine_destroy(e);
        kiln_config_destroy(cfg);
        assert_non_null(strstr(slurp(path), "kiln-timing-cache 1\n"));
    }
    assert_int_equal(sizes[0], sizes[1]);
    assert_memory_equal(plans[0], plans[1], sizes[0]);
    kiln_free(plans[0]);
    kiln_free(plans[1]);
    /* An unwritable cache path fails the build, naming the file. */
    kiln_config *cfg = NULL;
    assert_int_equal(kiln_config_create(&cfg), KILN_OK);
    assert_int_equal(kiln_config_set_timing_cache(cfg, "/nonexistent-dir/x.cache"), KILN_OK);
    kiln_engine *e = NULL;
    assert_int_equal(kiln_build(net, cfg, &e), KILN_ERR_IO);
    assert_non_null(strstr(kiln_last_error(), "/nonexistent-dir/x.cache"));
    assert_null(e);
    kiln_config_destroy(cfg);
    kiln_network_destroy(net);
}

/* Timing a kernel gives a time, with its prepared data and scratch. */
static void test_time_a_kernel(void **state)
{
    (void)state;
    kiln_network *net = conv_net();
    ir_graph g;
    tn_prepare(net, &g);
    const ir_node *n = tn_node(&g, "conv");
    ir_tensor in[3], out[1];
    for (int32_t k = 0; k < 3; k++) {
        const ir_value *v = &g.values[n->in[k]];
        in[k] = (ir_tensor){v->dtype, v->shape, (void *)v->data, v->layout};
    }
    const ir_value *o = &g.values[n->out[0]];
    out[0] = (ir_tensor){o->dtype, o->shape, NULL, o->layout};
    const backend_kernel *cands[8];
    int32_t nc = backend_cpu()->candidates(n, in, 3, out, 1, cands, 8);
    assert_true(nc >= 1);
    for (int32_t i = 0; i < nc; i++) {
        uint64_t ns = 0;
        assert_int_equal(tactic_time(cands[i], n, in, 3, out, 1, 1, UINT64_MAX, &ns), KILN_OK);
        assert_true(ns > 0 && ns < 10000000000ull);
    }
    ir_graph_free(&g);
    kiln_network_destroy(net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cache_round_trip),
        cmocka_unit_test(test_cache_from_elsewhere_or_damaged),
        cmocka_unit_test(test_builds_with_a_cache),
        cmocka_unit_test(test_time_a_kernel),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
