/* arena.c - bump allocator (graph strings and attributes) and growable byte buffers. */
#include <stdio.h>
#include <string.h>

#include "core.h"

struct kiln_arena_block {
    kiln_arena_block *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

void kiln_arena_init(kiln_arena *a) { memset(a, 0, sizeof *a); }

void kiln_arena_free(kiln_arena *a)
{
    kiln_arena_block *b = a->head;
    while (b) {
        kiln_arena_block *n = b->next;
        kiln_free(b);
        b = n;
    }
    memset(a, 0, sizeof *a);
}

void *kiln_arena_alloc(kiln_arena *a, size_t size)
{
    size = (size + 15) & ~(size_t)15;
    if (size == 0) size = 16;
    kiln_arena_block *b = a->head;
    if (!b || b->cap - b->used < size) {
        size_t cap = size > 16384 ? size : 16384;
        b = kiln_malloc(sizeof *b + cap);
        if (!b) {
            kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory (arena block of %zu bytes)", cap);
            return NULL;
        }
        b->used = 0;
        b->cap = cap;
        b->next = a->head;
        a->head = b;
    }
    void *p = b->data + b->used;
    b->used += size;
    a->used_total += size;
    memset(p, 0, size);
    return p;
}

void *kiln_arena_memdup(kiln_arena *a, const void *p, size_t size)
{
    void *d = kiln_arena_alloc(a, size);
    if (d && size) memcpy(d, p, size);
    return d;
}

char *kiln_arena_strdup(kiln_arena *a, const char *s)
{
    return kiln_arena_memdup(a, s, strlen(s) + 1);
}

/* ---- kiln_buf ---- */

void kiln_buf_free(kiln_buf *b)
{
    kiln_free(b->data);
    memset(b, 0, sizeof *b);
}

static bool buf_reserve(kiln_buf *b, size_t n)
{
    if (b->failed) return false;
    if (b->cap - b->len >= n) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < n) {
        if (cap > SIZE_MAX / 2) {
            b->failed = true;
            return false;
        }
        cap *= 2;
    }
    uint8_t *d = kiln_realloc(b->data, cap);
    if (!d) {
        b->failed = true;
        return false;
    }
    b->data = d;
    b->cap = cap;
    return true;
}

void kiln_buf_write(kiln_buf *b, const void *p, size_t n)
{
    if (!n || !buf_reserve(b, n)) return;
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

void kiln_buf_zeros(kiln_buf *b, size_t n)
{
    if (!n || !buf_reserve(b, n)) return;
    memset(b->data + b->len, 0, n);
    b->len += n;
}

void kiln_buf_align(kiln_buf *b, size_t align)
{
    size_t r = b->len % align;
    if (r) kiln_buf_zeros(b, align - r);
}

/* Plans are little-endian; kiln only builds for little-endian hosts (checked in
 * CMake), so these write the host representation. */
void kiln_buf_u32(kiln_buf *b, uint32_t v) { kiln_buf_write(b, &v, 4); }
void kiln_buf_u64(kiln_buf *b, uint64_t v) { kiln_buf_write(b, &v, 8); }
void kiln_buf_i64(kiln_buf *b, int64_t v) { kiln_buf_write(b, &v, 8); }
void kiln_buf_f32(kiln_buf *b, float v) { kiln_buf_write(b, &v, 4); }

void kiln_buf_printf(kiln_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !buf_reserve(b, (size_t)n + 1)) return;
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

const char *kiln_buf_cstr(kiln_buf *b)
{
    if (!buf_reserve(b, 1)) return NULL;
    b->data[b->len] = 0;
    return (const char *)b->data;
}

/* ---- kiln_reader ---- */

void kiln_reader_init(kiln_reader *r, const void *data, size_t len)
{
    r->data = data;
    r->len = len;
    r->pos = 0;
    r->failed = false;
}

bool kiln_reader_bytes(kiln_reader *r, void *out, size_t n)
{
    if (r->failed || r->len - r->pos < n) {
        r->failed = true;
        memset(out, 0, n);
        return false;
    }
    memcpy(out, r->data + r->pos, n);
    r->pos += n;
    return true;
}

uint32_t kiln_reader_u32(kiln_reader *r)
{
    uint32_t v;
    kiln_reader_bytes(r, &v, 4);
    return v;
}

uint64_t kiln_reader_u64(kiln_reader *r)
{
    uint64_t v;
    kiln_reader_bytes(r, &v, 8);
    return v;
}

int64_t kiln_reader_i64(kiln_reader *r)
{
    int64_t v;
    kiln_reader_bytes(r, &v, 8);
    return v;
}

float kiln_reader_f32(kiln_reader *r)
{
    float v;
    kiln_reader_bytes(r, &v, 4);
    return v;
}
