/* core.h - what every part of kiln uses: errors, logging, allocation with a failure
 * hook for tests, arenas, byte buffers, name maps, shape arithmetic with overflow
 * checks, checksums and CPU feature detection. Depends on libc only. */
#ifndef KILN_CORE_H
#define KILN_CORE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln.h"

#if defined(__GNUC__)
#define KILN_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define KILN_UNUSED       __attribute__((unused))
#else
#define KILN_PRINTF(a, b)
#define KILN_UNUSED
#endif

/* ---- errors ---- */

/* Sets this thread's last error message and returns `status`, so that a failure is
 * reported in one line: `return kiln_error(KILN_ERR_SHAPE, "node '%s' ...", ...)`. */
kiln_status kiln_error(kiln_status status, const char *fmt, ...) KILN_PRINTF(2, 3);
/* Prefixes the current message with more context ("file 'x.onnx': " + old message). */
kiln_status kiln_error_prefix(kiln_status status, const char *fmt, ...) KILN_PRINTF(2, 3);

/* Returns early on failure. */
#define KILN_TRY(expr)                                                                             \
    do {                                                                                           \
        kiln_status try_st_ = (expr);                                                              \
        if (try_st_ != KILN_OK) return try_st_;                                                    \
    } while (0)

/* Jumps to the function's `fail:` label on failure, keeping the status in `st`. */
#define KILN_CHECK(expr)                                                                           \
    do {                                                                                           \
        st = (expr);                                                                               \
        if (st != KILN_OK) goto fail;                                                              \
    } while (0)

/* ---- logging ---- */

void kiln_log(kiln_log_level level, const char *fmt, ...) KILN_PRINTF(2, 3);
bool kiln_log_enabled(kiln_log_level level);
/* Limits this thread's messages to `cap` and returns the previous limit. */
kiln_log_level kiln_log_set_cap(kiln_log_level cap);

/* ---- allocation ---- */

void *kiln_malloc(size_t size);
void *kiln_calloc(size_t count, size_t size);
void *kiln_realloc(void *p, size_t size);
/* kiln_free (public) releases all three. */
void *kiln_aligned_alloc(size_t size, size_t align); /* align: power of two >= 8 */
void kiln_aligned_free(void *p);
char *kiln_strdup(const char *s);
/* Allocation that reports KILN_ERR_OUT_OF_MEMORY itself. */
kiln_status kiln_alloc_checked(void **out, size_t count, size_t size, const char *what);

/* Test hook: after `n` more successful allocations every allocation fails (n < 0: never).
 * Returns how many allocations happened since the last call. */
long kiln_alloc_fail_after(long n);

/* ---- arena: bump allocation freed all at once ---- */

typedef struct kiln_arena_block kiln_arena_block;
typedef struct kiln_arena {
    kiln_arena_block *head;
    size_t used_total;
} kiln_arena;

void kiln_arena_init(kiln_arena *a);
void kiln_arena_free(kiln_arena *a);
/* 16-byte aligned, zeroed; NULL on failure (message set). */
void *kiln_arena_alloc(kiln_arena *a, size_t size);
char *kiln_arena_strdup(kiln_arena *a, const char *s);
void *kiln_arena_memdup(kiln_arena *a, const void *p, size_t size);

/* ---- growable byte buffer (for writers) ---- */

typedef struct kiln_buf {
    uint8_t *data;
    size_t len, cap;
    bool failed; /* an allocation failed; later writes are ignored */
} kiln_buf;

void kiln_buf_free(kiln_buf *b);
void kiln_buf_write(kiln_buf *b, const void *p, size_t n);
void kiln_buf_zeros(kiln_buf *b, size_t n);
void kiln_buf_align(kiln_buf *b, size_t align); /* pads with zero bytes */
void kiln_buf_u32(kiln_buf *b, uint32_t v);
void kiln_buf_u64(kiln_buf *b, uint64_t v);
void kiln_buf_i64(kiln_buf *b, int64_t v);
void kiln_buf_f32(kiln_buf *b, float v);
void kiln_buf_printf(kiln_buf *b, const char *fmt, ...) KILN_PRINTF(2, 3);
/* Appends a terminating NUL without counting it in len; returns the text or NULL. */
const char *kiln_buf_cstr(kiln_buf *b);

/* ---- bounded reader (for loaders: every read is checked) ---- */

typedef struct kiln_reader {
    const uint8_t *data;
    size_t len, pos;
    bool failed;
} kiln_reader;

void kiln_reader_init(kiln_reader *r, const void *data, size_t len);
bool kiln_reader_bytes(kiln_reader *r, void *out, size_t n);
uint32_t kiln_reader_u32(kiln_reader *r);
uint64_t kiln_reader_u64(kiln_reader *r);
int64_t kiln_reader_i64(kiln_reader *r);
float kiln_reader_f32(kiln_reader *r);

/* ---- string -> int32 map ---- */

typedef struct kiln_strmap {
    const char **keys; /* not owned */
    int32_t *vals;
    uint32_t cap, count;
} kiln_strmap;

void kiln_strmap_free(kiln_strmap *m);
/* Adds key -> val; the key string must outlive the map. Fails on allocation only. */
kiln_status kiln_strmap_put(kiln_strmap *m, const char *key, int32_t val);
/* The value, or -1 if the key is absent. */
int32_t kiln_strmap_get(const kiln_strmap *m, const char *key);

/* ---- shapes ---- */

/* a * b, false on overflow or negative operands. */
bool kiln_mul_ok(int64_t a, int64_t b, int64_t *out);
/* Element count of a shape; false if a dimension is negative or the product overflows
 * KILN_MAX_ELEMENTS. */
bool kiln_dims_numel(const kiln_dims *d, int64_t *out);
/* Count without checks, for shapes already validated. */
int64_t kiln_dims_count(const kiln_dims *d);
bool kiln_dims_equal(const kiln_dims *a, const kiln_dims *b);
kiln_dims kiln_dims_make(int32_t rank, const int64_t *d);
/* "1x3x224x224" ("scalar" for rank 0); writes at most n bytes. Returns buf. */
char *kiln_dims_str(const kiln_dims *d, char *buf, size_t n);
/* Room for any kiln_dims_str result. */
#define KILN_DIMS_STR_MAX 192

/* Limits on what kiln accepts from files and callers. */
#define KILN_MAX_ELEMENTS ((int64_t)1 << 40)
#define KILN_MAX_NAME     4096

/* Row-major strides of a shape, in elements. */
void kiln_dims_strides(const kiln_dims *d, int64_t *strides);

/* ---- checksum ---- */

/* CRC-32C (Castagnoli) of a buffer, continuing from `crc` (0 to start). */
uint32_t kiln_crc32c(uint32_t crc, const void *data, size_t n);

/* ---- CPU ---- */

enum {
    KILN_CPU_SSE42 = 1u << 0,
    KILN_CPU_AVX2 = 1u << 1,
    KILN_CPU_FMA = 1u << 2,
    KILN_CPU_AVX512F = 1u << 3,
    KILN_CPU_AVX512BW = 1u << 4,
    KILN_CPU_AVX512VL = 1u << 5,
    KILN_CPU_AVX512VNNI = 1u << 6,
    KILN_CPU_AVX512BF16 = 1u << 7,
    KILN_CPU_F16C = 1u << 8
};

/* Features of this CPU, limited by the KILN_ISA environment variable when set
 * ("portable" or "generic": none; "avx2": no AVX-512; "avx512": all detected), so tests
 * and users can force each path. Not cached: each call reads KILN_ISA again. */
uint64_t kiln_cpu_features(void);
/* What the hardware runs, KILN_ISA ignored (detected once, cheap): the check before running
 * ISA-specific code, which KILN_ISA only steers away from. */
uint64_t kiln_cpu_features_hw(void);
/* Writes names of the feature bits ("avx2 fma"), "none" when empty. */
void kiln_cpu_features_str(uint64_t f, char *buf, size_t n);
/* Hardware threads available to this process. */
int32_t kiln_cpu_threads(void);
/* The process-wide thread budget that keeps contexts running at once from oversubscribing
 * the cores: a run asks for `want` threads and gets what is free of the hardware threads
 * (at least 1: its own); it gives them back when it ends. Kernels split work so that the
 * result does not depend on the count. */
int32_t kiln_threads_acquire(int32_t want);
/* `got` as kiln_threads_acquire returned it. */
void kiln_threads_release(int32_t got);
/* The processor's name (cpuid's brand string; "unknown" elsewhere), for timing caches. */
void kiln_cpu_model(char *buf, size_t n);
/* A monotonic clock in nanoseconds. */
uint64_t kiln_now_ns(void);

/* ---- half precision conversions ---- */

float kiln_f16_to_f32(uint16_t h);
uint16_t kiln_f32_to_f16(float f);
float kiln_bf16_to_f32(uint16_t h);
uint16_t kiln_f32_to_bf16(float f);

#endif /* KILN_CORE_H */
