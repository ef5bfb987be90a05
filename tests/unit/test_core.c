/* test_core.c - errors, allocation hook, arenas, buffers, readers, name maps, shapes,
 * CRC-32C, half floats and CPU features. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static void test_errors(void **state)
{
    kiln_clear_error();
    assert_string_equal(kiln_last_error(), "");
    assert_int_equal(kiln_error(KILN_ERR_SHAPE, "bad %s %d", "thing", 3), KILN_ERR_SHAPE);
    assert_string_equal(kiln_last_error(), "bad thing 3");
    kiln_error_prefix(KILN_ERR_SHAPE, "file '%s': ", "m.onnx");
    assert_string_equal(kiln_last_error(), "file 'm.onnx': bad thing 3");
    assert_string_equal(kiln_status_name(KILN_ERR_CORRUPT_PLAN), "KILN_ERR_CORRUPT_PLAN");
    assert_string_equal(kiln_status_name((kiln_status)999), "KILN_ERR_UNKNOWN");
    char v[32];
    snprintf(v, sizeof v, "%d.%d.%d", KILN_VERSION_MAJOR, KILN_VERSION_MINOR, KILN_VERSION_PATCH);
    assert_string_equal(kiln_version(), v);
    assert_int_equal(kiln_version_number(),
                     KILN_VERSION_MAJOR * 10000 + KILN_VERSION_MINOR * 100 + KILN_VERSION_PATCH);
}

static void test_alloc_hook(void **state)
{
    kiln_alloc_fail_after(2);
    void *a = kiln_malloc(8), *b = kiln_malloc(8), *c = kiln_malloc(8);
    assert_non_null(a);
    assert_non_null(b);
    assert_null(c);
    assert_null(kiln_aligned_alloc(64, 64));
    kiln_alloc_fail_after(-1);
    void *d = kiln_aligned_alloc(100, 64);
    assert_non_null(d);
    assert_int_equal((uintptr_t)d % 64, 0);
    kiln_aligned_free(d);
    kiln_free(a);
    kiln_free(b);
    void *e;
    assert_int_equal(kiln_alloc_checked(&e, SIZE_MAX / 2, 4, "huge"), KILN_ERR_OUT_OF_MEMORY);
    assert_non_null(strstr(kiln_last_error(), "huge"));
}

static void test_arena_and_buf(void **state)
{
    kiln_arena a;
    kiln_arena_init(&a);
    char *s = kiln_arena_strdup(&a, "hello");
    assert_string_equal(s, "hello");
    void *big = kiln_arena_alloc(&a, 100000);
    assert_non_null(big);
    assert_int_equal((uintptr_t)big % 16, 0);
    kiln_arena_free(&a);

    kiln_buf b;
    memset(&b, 0, sizeof b);
    kiln_buf_u32(&b, 0x01020304u);
    kiln_buf_align(&b, 8);
    assert_int_equal(b.len, 8);
    kiln_buf_printf(&b, "x=%d", 42);
    assert_string_equal(kiln_buf_cstr(&b) + 8, "x=42");
    kiln_reader r;
    kiln_reader_init(&r, b.data, b.len);
    assert_int_equal(kiln_reader_u32(&r), 0x01020304u);
    assert_false(r.failed);
    kiln_reader_u64(&r);
    kiln_reader_u64(&r); /* past the end */
    assert_true(r.failed);
    kiln_buf_free(&b);
}

static void test_strmap(void **state)
{
    kiln_strmap m;
    memset(&m, 0, sizeof m);
    char keys[1000][16];
    for (int i = 0; i < 1000; i++) {
        snprintf(keys[i], sizeof keys[i], "k%d", i);
        assert_int_equal(kiln_strmap_put(&m, keys[i], i), KILN_OK);
    }
    for (int i = 0; i < 1000; i++) assert_int_equal(kiln_strmap_get(&m, keys[i]), i);
    assert_int_equal(kiln_strmap_get(&m, "absent"), -1);
    assert_int_equal(kiln_strmap_put(&m, keys[5], 77), KILN_OK);
    assert_int_equal(kiln_strmap_get(&m, keys[5]), 77);
    assert_int_equal(m.count, 1000);
    kiln_strmap_free(&m);
}

static void test_dims(void **state)
{
    int64_t n;
    kiln_dims d = {4, {1, 3, 224, 224}};
    assert_true(kiln_dims_numel(&d, &n));
    assert_int_equal(n, 150528);
    char buf[KILN_DIMS_STR_MAX];
    assert_string_equal(kiln_dims_str(&d, buf, sizeof buf), "1x3x224x224");
    kiln_dims s = {0, {0}};
    assert_string_equal(kiln_dims_str(&s, buf, sizeof buf), "scalar");
    kiln_dims huge = {3, {1 << 20, 1 << 20, 1 << 20}};
    assert_false(kiln_dims_numel(&huge, &n));
    kiln_dims neg = {2, {3, -2}};
    assert_false(kiln_dims_numel(&neg, &n));
    assert_false(kiln_mul_ok(INT64_MAX / 2, 3, &n));
    int64_t st[4];
    kiln_dims_strides(&d, st);
    assert_int_equal(st[0], 150528);
    assert_int_equal(st[3], 1);
}

static void test_crc32c(void **state)
{
    /* Standard check value of CRC-32C. */
    assert_int_equal(kiln_crc32c(0, "123456789", 9), 0xE3069283u);
    /* Incremental equals one shot, across the 8-byte fast path. */
    uint8_t data[1000];
    for (int i = 0; i < 1000; i++) data[i] = (uint8_t)(i * 31 + 7);
    uint32_t whole = kiln_crc32c(0, data, 1000);
    uint32_t part = kiln_crc32c(kiln_crc32c(0, data, 333), data + 333, 667);
    assert_int_equal(whole, part);
}

static void test_half_floats(void **state)
{
    assert_int_equal(kiln_f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(kiln_f32_to_f16(-2.0f), 0xc000);
    assert_int_equal(kiln_f32_to_f16(65504.0f), 0x7bff);
    assert_int_equal(kiln_f32_to_f16(1e6f), 0x7c00);
    assert_true(kiln_f16_to_f32(0x0001) == ldexpf(1, -24));
    assert_true(isnan(kiln_f16_to_f32(kiln_f32_to_f16(NAN))));
    /* every f16 value survives a round trip */
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue; /* NaNs */
        assert_int_equal(kiln_f32_to_f16(kiln_f16_to_f32((uint16_t)h)), h);
    }
    assert_int_equal(kiln_f32_to_bf16(1.0f), 0x3f80);
    assert_true(kiln_bf16_to_f32(0x3f80) == 1.0f);
    /* ties round to even: 1 + 2^-8 is halfway between two bf16 values */
    assert_int_equal(kiln_f32_to_bf16(1.00390625f), 0x3f80);
}

static void test_cpu_features(void **state)
{
    char buf[256];
    uint64_t f = kiln_cpu_features();
    kiln_cpu_features_str(f, buf, sizeof buf);
    assert_true(strlen(buf) > 0);
    setenv("KILN_ISA", "portable", 1);
    assert_int_equal(kiln_cpu_features(), 0);
    setenv("KILN_ISA", "generic", 1);
    assert_int_equal(kiln_cpu_features(), 0);
    setenv("KILN_ISA", "avx2", 1);
    assert_int_equal(kiln_cpu_features() & KILN_CPU_AVX512F, 0);
    assert_int_equal(kiln_cpu_features(),
                     f & (KILN_CPU_SSE42 | KILN_CPU_AVX2 | KILN_CPU_FMA | KILN_CPU_F16C));
    setenv("KILN_ISA", "avx512", 1);
    assert_int_equal(kiln_cpu_features(), f);
    unsetenv("KILN_ISA");
    assert_true(kiln_cpu_threads() >= 1);
}

static int g_logged;
static void logger(kiln_log_level level, const char *msg, void *user)
{
    g_logged++;
    assert_ptr_equal(user, &g_logged);
}

static void test_logger(void **state)
{
    g_logged = 0;
    kiln_set_logger(logger, &g_logged, KILN_LOG_INFO);
    kiln_log(KILN_LOG_INFO, "hello %d", 1);
    kiln_log(KILN_LOG_VERBOSE, "hidden");
    kiln_log_level old = kiln_log_set_cap(KILN_LOG_ERROR);
    kiln_log(KILN_LOG_INFO, "capped");
    kiln_log_set_cap(old);
    kiln_set_logger(NULL, NULL, KILN_LOG_ERROR);
    kiln_log(KILN_LOG_ERROR, "nobody listens");
    assert_int_equal(g_logged, 1);
}

/* The thread budget: a run gets what other runs leave of the hardware threads, at least
 * its own, and gives it back. */
static void test_thread_budget(void **state)
{
    (void)state;
    int32_t hw = kiln_cpu_threads();
    int32_t a = kiln_threads_acquire(hw + 3);
    assert_int_equal(a, hw);
    int32_t b = kiln_threads_acquire(hw); /* a second run while the first holds all */
    assert_int_equal(b, 1);
    assert_int_equal(kiln_threads_acquire(1), 1);
    kiln_threads_release(1);
    kiln_threads_release(b);
    kiln_threads_release(a);
    assert_int_equal(kiln_threads_acquire(hw), hw); /* all given back */
    kiln_threads_release(hw);
    assert_int_equal(kiln_threads_acquire(0), 1);
    kiln_threads_release(1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_thread_budget), cmocka_unit_test(test_errors),
        cmocka_unit_test(test_alloc_hook),    cmocka_unit_test(test_arena_and_buf),
        cmocka_unit_test(test_strmap),        cmocka_unit_test(test_dims),
        cmocka_unit_test(test_crc32c),        cmocka_unit_test(test_half_floats),
        cmocka_unit_test(test_cpu_features),  cmocka_unit_test(test_logger),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
