/* util.c - name maps, shape arithmetic, dtypes, CRC-32C and half-float conversion. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core.h"

/* ---- strmap: open addressing, FNV-1a ---- */

static uint32_t str_hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

void kiln_strmap_free(kiln_strmap *m)
{
    kiln_free(m->keys);
    kiln_free(m->vals);
    memset(m, 0, sizeof *m);
}

static kiln_status strmap_grow(kiln_strmap *m)
{
    uint32_t cap = m->cap ? m->cap * 2 : 64;
    const char **keys = kiln_calloc(cap, sizeof *keys);
    int32_t *vals = kiln_calloc(cap, sizeof *vals);
    if (!keys || !vals) {
        kiln_free(keys);
        kiln_free(vals);
        return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory (name table of %u)", cap);
    }
    for (uint32_t i = 0; i < m->cap; i++) {
        if (!m->keys[i]) continue;
        uint32_t j = str_hash(m->keys[i]) & (cap - 1);
        while (keys[j]) j = (j + 1) & (cap - 1);
        keys[j] = m->keys[i];
        vals[j] = m->vals[i];
    }
    kiln_free(m->keys);
    kiln_free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
    return KILN_OK;
}

kiln_status kiln_strmap_put(kiln_strmap *m, const char *key, int32_t val)
{
    if ((m->count + 1) * 2 > m->cap) KILN_TRY(strmap_grow(m));
    uint32_t j = str_hash(key) & (m->cap - 1);
    while (m->keys[j]) {
        if (strcmp(m->keys[j], key) == 0) {
            m->vals[j] = val;
            return KILN_OK;
        }
        j = (j + 1) & (m->cap - 1);
    }
    m->keys[j] = key;
    m->vals[j] = val;
    m->count++;
    return KILN_OK;
}

int32_t kiln_strmap_get(const kiln_strmap *m, const char *key)
{
    if (!m->cap || !key) return -1;
    uint32_t j = str_hash(key) & (m->cap - 1);
    while (m->keys[j]) {
        if (strcmp(m->keys[j], key) == 0) return m->vals[j];
        j = (j + 1) & (m->cap - 1);
    }
    return -1;
}

/* ---- shapes ---- */

bool kiln_mul_ok(int64_t a, int64_t b, int64_t *out)
{
    if (a < 0 || b < 0) return false;
    if (a != 0 && b > INT64_MAX / a) return false;
    *out = a * b;
    return true;
}

bool kiln_dims_numel(const kiln_dims *d, int64_t *out)
{
    if (d->rank < 0 || d->rank > KILN_MAX_RANK) return false;
    int64_t n = 1;
    for (int i = 0; i < d->rank; i++) {
        if (!kiln_mul_ok(n, d->d[i], &n)) return false;
        if (n > KILN_MAX_ELEMENTS) return false;
    }
    *out = n;
    return true;
}

int64_t kiln_dims_count(const kiln_dims *d)
{
    int64_t n = 1;
    for (int i = 0; i < d->rank; i++) n *= d->d[i];
    return n;
}

bool kiln_dims_equal(const kiln_dims *a, const kiln_dims *b)
{
    if (a->rank != b->rank) return false;
    for (int i = 0; i < a->rank; i++)
        if (a->d[i] != b->d[i]) return false;
    return true;
}

kiln_dims kiln_dims_make(int32_t rank, const int64_t *d)
{
    kiln_dims r;
    memset(&r, 0, sizeof r);
    r.rank = rank;
    for (int i = 0; i < rank && i < KILN_MAX_RANK; i++) r.d[i] = d[i];
    return r;
}

char *kiln_dims_str(const kiln_dims *d, char *buf, size_t n)
{
    if (n == 0) return buf;
    buf[0] = 0;
    if (d->rank == 0) {
        snprintf(buf, n, "scalar");
        return buf;
    }
    size_t off = 0;
    for (int i = 0; i < d->rank && i < KILN_MAX_RANK && off < n; i++) {
        int w = snprintf(buf + off, n - off, i ? "x%lld" : "%lld", (long long)d->d[i]);
        if (w < 0) break;
        off += (size_t)w;
    }
    return buf;
}

void kiln_dims_strides(const kiln_dims *d, int64_t *strides)
{
    int64_t s = 1;
    for (int i = d->rank - 1; i >= 0; i--) {
        strides[i] = s;
        s *= d->d[i];
    }
}

/* ---- dtypes ---- */

size_t kiln_dtype_size(kiln_dtype t)
{
    switch (t) {
    case KILN_DTYPE_F32: return 4;
    case KILN_DTYPE_U8: return 1;
    case KILN_DTYPE_I8: return 1;
    case KILN_DTYPE_I32: return 4;
    case KILN_DTYPE_I64: return 8;
    case KILN_DTYPE_BOOL: return 1;
    case KILN_DTYPE_F16: return 2;
    case KILN_DTYPE_BF16: return 2;
    default: return 0;
    }
}

const char *kiln_dtype_name(kiln_dtype t)
{
    switch (t) {
    case KILN_DTYPE_F32: return "f32";
    case KILN_DTYPE_U8: return "u8";
    case KILN_DTYPE_I8: return "i8";
    case KILN_DTYPE_I32: return "i32";
    case KILN_DTYPE_I64: return "i64";
    case KILN_DTYPE_BOOL: return "bool";
    case KILN_DTYPE_F16: return "f16";
    case KILN_DTYPE_BF16: return "bf16";
    default: return "?";
    }
}

/* ---- CRC-32C, slicing by 8 (tables built once) ---- */

static uint32_t g_crc[8][256];
static int g_crc_ready;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
        g_crc[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            g_crc[t][i] = (g_crc[t - 1][i] >> 8) ^ g_crc[0][g_crc[t - 1][i] & 0xff];
    __atomic_store_n(&g_crc_ready, 1, __ATOMIC_RELEASE);
}

uint32_t kiln_crc32c(uint32_t crc, const void *data, size_t n)
{
    /* Building the tables twice from two threads is harmless: same values. */
    if (!__atomic_load_n(&g_crc_ready, __ATOMIC_ACQUIRE)) crc_init();
    const uint8_t *p = data;
    crc = ~crc;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        w ^= crc;
        crc = g_crc[7][w & 0xff] ^ g_crc[6][(w >> 8) & 0xff] ^ g_crc[5][(w >> 16) & 0xff] ^
              g_crc[4][(w >> 24) & 0xff] ^ g_crc[3][(w >> 32) & 0xff] ^ g_crc[2][(w >> 40) & 0xff] ^
              g_crc[1][(w >> 48) & 0xff] ^ g_crc[0][w >> 56];
        p += 8;
        n -= 8;
    }
    while (n--) crc = (crc >> 8) ^ g_crc[0][(crc ^ *p++) & 0xff];
    return ~crc;
}

/* ---- half floats ---- */

float kiln_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        float f = ldexpf((float)man, -24);
        return sign ? -f : f;
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t kiln_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t exp = (x >> 23) & 0xff, man = x & 0x7fffff;
    if (exp == 0xff) return sign | 0x7c00 | (man ? 0x200 : 0);
    int e = (int)exp - 127 + 15;
    if (e >= 31) return sign | 0x7c00;
    if (e <= 0) {
        if (e < -10) return sign;
        man |= 0x800000;
        int shift = 14 - e;
        uint32_t half = man >> shift, rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return sign | (uint16_t)half;
    }
    uint32_t half = ((uint32_t)e << 10) | (man >> 13), rem = man & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) half++; /* may carry into exp: ok */
    return sign | (uint16_t)half;
}

float kiln_bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t kiln_f32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x40);
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}
