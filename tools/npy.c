/* npy.c - a defensive reader and a writer of NumPy .npy files. The format is specified in
 * numpy/lib/format.py: magic, version, header length, a Python dict literal, then data. */
#include "npy.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define NPY_MAGIC     "\x93NUMPY"
#define NPY_MAGIC_LEN 6
/* NumPy pads the header so that the data starts at a multiple of 64 bytes. */
#define NPY_ALIGN 64

typedef struct npy_header {
    kiln_dtype dtype;
    kiln_dims shape;
    size_t data_offset; /* magic + version + length field + dict */
    size_t nbytes;      /* elements x element size */
} npy_header;

static int fail(char *err, size_t cap, const char *fmt, ...)
{
    if (err && cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, cap, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* ---- descr <-> dtype ---- */

static const struct {
    const char *code; /* descr without the byte-order character */
    kiln_dtype dtype;
} g_types[] = {
    {"f4", KILN_DTYPE_F32}, {"f2", KILN_DTYPE_F16}, {"i8", KILN_DTYPE_I64},  {"i4", KILN_DTYPE_I32},
    {"i1", KILN_DTYPE_I8},  {"u1", KILN_DTYPE_U8},  {"b1", KILN_DTYPE_BOOL},
};

const char *npy_descr(kiln_dtype dtype)
{
    switch (dtype) {
    case KILN_DTYPE_F32: return "<f4";
    case KILN_DTYPE_F16: return "<f2";
    case KILN_DTYPE_I64: return "<i8";
    case KILN_DTYPE_I32: return "<i4";
    case KILN_DTYPE_I8: return "|i1";
    case KILN_DTYPE_U8: return "|u1";
    case KILN_DTYPE_BOOL: return "|b1";
    default: return NULL;
    }
}

static int descr_to_dtype(const char *descr, kiln_dtype *out, char *err, size_t cap)
{
    if (descr[0] == '>')
        return fail(err, cap,
                    "big-endian data (descr '%s') is not supported; save it little-endian, "
                    "e.g. with a.astype(a.dtype.newbyteorder('<'))",
                    descr);
    if (descr[0] != '<' && descr[0] != '|')
        return fail(err, cap, "descr '%s' is not supported (byte order must be '<' or '|')", descr);
    for (size_t i = 0; i < sizeof g_types / sizeof *g_types; i++) {
        if (strcmp(descr + 1, g_types[i].code) == 0) {
            *out = g_types[i].dtype;
            return 0;
        }
    }
    return fail(err, cap,
                "dtype '%s' is not supported (supported: float32, float16, int64, int32, "
                "int8, uint8, bool)",
                descr);
}

/* ---- the header dict, parsed literally ---- */

typedef struct cursor {
    const char *p, *end;
} cursor;

static void skip_ws(cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int expect_char(cursor *c, char ch, char *err, size_t cap)
{
    skip_ws(c);
    if (c->p >= c->end || *c->p != ch) return fail(err, cap, "malformed header: expected '%c'", ch);
    c->p++;
    return 0;
}

/* A quoted Python string without escapes (NumPy never writes any in its keys or descr). */
static int parse_string(cursor *c, char *out, size_t out_cap, char *err, size_t cap)
{
    skip_ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
        return fail(err, cap, "malformed header: expected a quoted string");
    char quote = *c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != quote) {
        if (*c->p == '\\' || n + 1 >= out_cap)
            return fail(err, cap, "malformed header: unexpected string");
        out[n++] = *c->p++;
    }
    if (c->p >= c->end) return fail(err, cap, "malformed header: unterminated string");
    c->p++;
    out[n] = '\0';
    return 0;
}

static bool take_word(cursor *c, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0) return false;
    c->p += n;
    return true;
}

static int parse_bool(cursor *c, bool *out, char *err, size_t cap)
{
    skip_ws(c);
    if (take_word(c, "True"))
        *out = true;
    else if (take_word(c, "False"))
        *out = false;
    else
        return fail(err, cap, "malformed header: fortran_order must be True or False");
    return 0;
}

/* A non-negative integer; Python 2 era NumPy wrote longs with an 'L' suffix. */
static int parse_dim(cursor *c, int64_t *out, char *err, size_t cap)
{
    skip_ws(c);
    if (c->p >= c->end || *c->p < '0' || *c->p > '9')
        return fail(err, cap, "malformed header: shape must hold non-negative integers");
    int64_t v = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        int digit = *c->p++ - '0';
        if (v > (INT64_MAX - digit) / 10)
            return fail(err, cap, "shape has a dimension too large to represent");
        v = v * 10 + digit;
    }
    if (c->p < c->end && *c->p == 'L') c->p++;
    *out = v;
    return 0;
}

/* "()" or "(n,)" or "(n, m, ...)" with an optional trailing comma. */
static int parse_shape(cursor *c, kiln_dims *shape, char *err, size_t cap)
{
    memset(shape, 0, sizeof *shape);
    if (expect_char(c, '(', err, cap))
        return fail(err, cap, "malformed header: shape must be a tuple");
    int count = 0;
    bool comma_after_last = false;
    for (;;) {
        skip_ws(c);
        if (c->p < c->end && *c->p == ')') {
            c->p++;
            break;
        }
        if (count > 0 && !comma_after_last)
            return fail(err, cap, "malformed header: expected ',' in shape");
        int64_t d = 0;
        if (parse_dim(c, &d, err, cap)) return -1;
        if (count >= KILN_MAX_RANK)
            return fail(err, cap, "shape has more than %d dimensions", KILN_MAX_RANK);
        shape->d[count++] = d;
        skip_ws(c);
        comma_after_last = c->p < c->end && *c->p == ',';
        if (comma_after_last) c->p++;
    }
    /* "(5)" is a plain int in Python, not a tuple. */
    if (count == 1 && !comma_after_last)
        return fail(err, cap, "malformed header: shape must be a tuple");
    shape->rank = count;
    return 0;
}

static int parse_dict(const char *text, size_t len, npy_header *h, char *err, size_t cap)
{
    cursor c = {text, text + len};
    bool have_descr = false, have_order = false, have_shape = false, fortran = false;
    char descr[32] = "";
    if (expect_char(&c, '{', err, cap)) return -1;
    for (;;) {
        skip_ws(&c);
        if (c.p < c.end && *c.p == '}') {
            c.p++;
            break;
        }
        char key[32];
        if (parse_string(&c, key, sizeof key, err, cap)) return -1;
        if (expect_char(&c, ':', err, cap)) return -1;
        if (strcmp(key, "descr") == 0 && !have_descr) {
            if (parse_string(&c, descr, sizeof descr, err, cap)) return -1;
            have_descr = true;
        } else if (strcmp(key, "fortran_order") == 0 && !have_order) {
            if (parse_bool(&c, &fortran, err, cap)) return -1;
            have_order = true;
        } else if (strcmp(key, "shape") == 0 && !have_shape) {
            if (parse_shape(&c, &h->shape, err, cap)) return -1;
            have_shape = true;
        } else {
            return fail(err, cap, "malformed header: unexpected or repeated key '%s'", key);
        }
        skip_ws(&c);
        if (c.p < c.end && *c.p == ',') {
            c.p++;
        } else if (c.p >= c.end || *c.p != '}') {
            return fail(err, cap, "malformed header: expected ',' or '}'");
        }
    }
    skip_ws(&c);
    if (c.p != c.end) return fail(err, cap, "malformed header: text after the dict");
    if (!have_descr || !have_order || !have_shape)
        return fail(err, cap, "malformed header: needs the keys descr, fortran_order and shape");
    if (fortran)
        return fail(err, cap,
                    "fortran_order True (column-major) arrays are not supported; save a "
                    "C-ordered copy, e.g. np.save(f, np.ascontiguousarray(a))");
    return descr_to_dtype(descr, &h->dtype, err, cap);
}

/* How many bytes the prefix (magic, version, length field) and the dict take; needs the
 * first 12 bytes (or the whole file if shorter). */
static int parse_prefix(const uint8_t *p, size_t avail, size_t *dict_off, size_t *dict_len,
                        char *err, size_t cap)
{
    if (avail < 10 || memcmp(p, NPY_MAGIC, NPY_MAGIC_LEN) != 0)
        return fail(err, cap, "not a .npy file (bad magic)");
    int major = p[6], minor = p[7];
    if (major < 1 || major > 3 || minor != 0)
        return fail(err, cap, ".npy format version %d.%d is not supported (1.0, 2.0, 3.0 are)",
                    major, minor);
    if (major == 1) {
        *dict_off = 10;
        *dict_len = (size_t)p[8] | (size_t)p[9] << 8;
    } else {
        if (avail < 12) return fail(err, cap, "truncated .npy header");
        *dict_off = 12;
        *dict_len = (size_t)p[8] | (size_t)p[9] << 8 | (size_t)p[10] << 16 | (size_t)p[11] << 24;
    }
    if (*dict_len > NPY_MAX_HEADER)
        return fail(err, cap, "header of %zu bytes is larger than the %u kiln accepts", *dict_len,
                    NPY_MAX_HEADER);
    return 0;
}

/* Parses the dict and computes the data size with overflow checks. */
static int finish_header(const char *dict, size_t dict_len, size_t dict_off, npy_header *h,
                         char *err, size_t cap)
{
    memset(h, 0, sizeof *h);
    if (parse_dict(dict, dict_len, h, err, cap)) return -1;
    size_t n = kiln_dtype_size(h->dtype);
    for (int32_t i = 0; i < h->shape.rank; i++) {
        size_t d = (size_t)h->shape.d[i];
        if ((uint64_t)d != (uint64_t)h->shape.d[i] || (d != 0 && n > SIZE_MAX / d))
            return fail(err, cap, "shape is too large (its byte size overflows)");
        n *= d;
    }
    h->nbytes = n;
    h->data_offset = dict_off + dict_len;
    return 0;
}

/* ---- reading ---- */

void npy_free(npy_array *a)
{
    if (!a) return;
    free(a->data);
    memset(a, 0, sizeof *a);
}

static int take_array(const npy_header *h, npy_array *out, char *err, size_t cap)
{
    memset(out, 0, sizeof *out);
    out->dtype = h->dtype;
    out->shape = h->shape;
    out->nbytes = h->nbytes;
    if (h->nbytes > 0) {
        out->data = malloc(h->nbytes);
        if (!out->data) return fail(err, cap, "out of memory for %zu bytes of data", h->nbytes);
    }
    return 0;
}

static int check_size(const npy_header *h, size_t file_size, char *err, size_t cap)
{
    if (file_size < h->data_offset || file_size - h->data_offset != h->nbytes)
        return fail(err, cap, "file has %zu bytes but its header describes %zu + %zu", file_size,
                    h->data_offset, h->nbytes);
    return 0;
}

int npy_parse(const void *data, size_t size, npy_array *out, char *err, size_t cap)
{
    const uint8_t *p = data;
    size_t dict_off, dict_len;
    npy_header h;
    memset(out, 0, sizeof *out);
    if (!p) return fail(err, cap, "no data");
    if (parse_prefix(p, size, &dict_off, &dict_len, err, cap)) return -1;
    if (dict_len > size - dict_off) return fail(err, cap, "truncated .npy header");
    if (finish_header((const char *)p + dict_off, dict_len, dict_off, &h, err, cap)) return -1;
    if (check_size(&h, size, err, cap) || take_array(&h, out, err, cap)) return -1;
    if (h.nbytes) memcpy(out->data, p + h.data_offset, h.nbytes);
    return 0;
}

int npy_read(const char *path, npy_array *out, char *err, size_t cap)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) return fail(err, cap, "cannot open: %s", strerror(errno));
    int rc = -1;
    char *dict = NULL;
    uint8_t prefix[12];
    size_t dict_off, dict_len;
    npy_header h;
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fail(err, cap, "not a regular file");
        goto done;
    }
    size_t size = (size_t)st.st_size;
    size_t got = fread(prefix, 1, sizeof prefix < size ? sizeof prefix : size, f);
    if (parse_prefix(prefix, got, &dict_off, &dict_len, err, cap)) goto done;
    if (dict_len > size - dict_off) {
        fail(err, cap, "truncated .npy header");
        goto done;
    }
    dict = malloc(dict_len ? dict_len : 1);
    if (!dict) {
        fail(err, cap, "out of memory");
        goto done;
    }
    if (fseek(f, (long)dict_off, SEEK_SET) != 0 || fread(dict, 1, dict_len, f) != dict_len) {
        fail(err, cap, "cannot read the header");
        goto done;
    }
    if (finish_header(dict, dict_len, dict_off, &h, err, cap)) goto done;
    if (check_size(&h, size, err, cap) || take_array(&h, out, err, cap)) goto done;
    if (h.nbytes && fread(out->data, 1, h.nbytes, f) != h.nbytes) {
        fail(err, cap, "cannot read %zu bytes of data", h.nbytes);
        npy_free(out);
        goto done;
    }
    rc = 0;
done:
    free(dict);
    fclose(f);
    return rc;
}

/* ---- writing ---- */

int npy_write(const char *path, kiln_dtype dtype, const kiln_dims *shape, const void *data,
              size_t nbytes, char *err, size_t cap)
{
    const char *descr = npy_descr(dtype);
    if (!descr) return fail(err, cap, "dtype %s has no .npy equivalent", kiln_dtype_name(dtype));
    if (shape->rank < 0 || shape->rank > KILN_MAX_RANK) return fail(err, cap, "bad rank");
    /* The dict exactly as NumPy writes it, so files compare equal to np.save's. */
    char dict[512];
    int n =
        snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (int32_t i = 0; i < shape->rank; i++)
        n += snprintf(dict + n, sizeof dict - (size_t)n, "%s%lld", i ? ", " : "",
                      (long long)shape->d[i]);
    n += snprintf(dict + n, sizeof dict - (size_t)n, "%s), }", shape->rank == 1 ? "," : "");
    /* Version 1.0 always: the dict of a rank-8 shape is far below its 64 KiB limit. */
    const size_t prefix = 10;
    size_t dict_len = (size_t)n + 1; /* + the final newline */
    size_t total = (prefix + dict_len + NPY_ALIGN - 1) / NPY_ALIGN * NPY_ALIGN;
    size_t hlen = total - prefix;
    uint8_t head[640];
    memcpy(head, NPY_MAGIC, NPY_MAGIC_LEN);
    head[6] = 1;
    head[7] = 0;
    head[8] = (uint8_t)(hlen & 0xff);
    head[9] = (uint8_t)(hlen >> 8);
    memcpy(head + prefix, dict, (size_t)n);
    memset(head + prefix + n, ' ', total - prefix - (size_t)n - 1);
    head[total - 1] = '\n';

    FILE *f = fopen(path, "wb");
    if (!f) return fail(err, cap, "cannot create: %s", strerror(errno));
    bool ok = fwrite(head, 1, total, f) == total;
    if (ok && nbytes) ok = fwrite(data, 1, nbytes, f) == nbytes;
    int saved = errno;
    if (fclose(f) != 0) ok = false, saved = errno;
    if (!ok) {
        remove(path);
        return fail(err, cap, "cannot write: %s", strerror(saved));
    }
    return 0;
}
