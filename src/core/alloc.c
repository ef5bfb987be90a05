/* alloc.c - every allocation of kiln goes through here, so tests can make the N-th one
 * fail and check that each error path cleans up (SQLite's habit). */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

static atomic_long g_fail_after = -1; /* < 0: never fail */
static atomic_long g_count;

long kiln_alloc_fail_after(long n)
{
    long c = atomic_exchange(&g_count, 0);
    atomic_store(&g_fail_after, n);
    return c;
}

static bool should_fail(void)
{
    long n = atomic_fetch_add(&g_count, 1);
    long lim = atomic_load(&g_fail_after);
    return lim >= 0 && n >= lim;
}

void *kiln_malloc(size_t size)
{
    if (should_fail()) return NULL;
    return malloc(size ? size : 1);
}

void *kiln_calloc(size_t count, size_t size)
{
    if (should_fail()) return NULL;
    if (count == 0 || size == 0) return calloc(1, 1);
    return calloc(count, size);
}

void *kiln_realloc(void *p, size_t size)
{
    if (should_fail()) return NULL;
    return realloc(p, size ? size : 1);
}

void kiln_free(void *p) { free(p); }

void *kiln_aligned_alloc(size_t size, size_t align)
{
    if (should_fail()) return NULL;
    void *p = NULL;
    if (align < sizeof(void *)) align = sizeof(void *);
    if (posix_memalign(&p, align, size ? size : 1) != 0) return NULL;
    return p;
}

void kiln_aligned_free(void *p) { free(p); }

char *kiln_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = kiln_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

kiln_status kiln_alloc_checked(void **out, size_t count, size_t size, const char *what)
{
    *out = NULL;
    if (size && count > SIZE_MAX / size)
        return kiln_error(KILN_ERR_OUT_OF_MEMORY, "size of %s overflows (%zu x %zu bytes)", what,
                          count, size);
    *out = kiln_calloc(count, size);
    if (!*out)
        return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory allocating %s (%zu bytes)", what,
                          count * size);
    return KILN_OK;
}
