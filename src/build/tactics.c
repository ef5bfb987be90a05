/* tactics.c - tactic selection: timing a layer's candidate kernels on the build machine,
 * and the timing cache that records the choices (a text file keyed by CPU model and kiln
 * version, one line per layer signature) so that rebuilds are instant and reproducible. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "build/tactics.h"

#define CACHE_MAGIC "kiln-timing-cache 1"
#define MAX_LINE    512
#define MAX_ENTRIES (1 << 20)
#define TIMED_RUNS  5
#define BUDGET_NS   50000000ull /* per candidate: stop timing it past this */

/* ---- layer signatures ---- */

static uint64_t mix(uint64_t h, uint64_t x)
{
    h ^= x + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    return h * 0xff51afd7ed558ccdull;
}

static uint64_t mix_str(uint64_t h, const char *s)
{
    for (; s && *s; s++) h = mix(h, (unsigned char)*s);
    return mix(h, 0xff);
}

static uint64_t mix_tensor(uint64_t h, const ir_tensor *t)
{
    h = mix(h, (uint64_t)t->dtype);
    h = mix(h, (uint64_t)t->layout);
    h = mix(h, t->data != NULL); /* constant or not */
    h = mix(h, (uint64_t)t->shape.rank);
    for (int32_t k = 0; k < t->shape.rank; k++) h = mix(h, (uint64_t)t->shape.d[k]);
    return h;
}

uint64_t tactic_key(const ir_node *n, const ir_tensor *in, int32_t n_in, const ir_tensor *out,
                    int32_t n_out, int32_t threads)
{
    uint64_t h = mix_str(0x6b696c6eull, n->op->name);
    h = mix(h, (uint64_t)threads);
    for (int32_t k = 0; k < n_in; k++) h = mix_tensor(h, &in[k]);
    for (int32_t k = 0; k < n_out; k++) h = mix_tensor(h, &out[k]);
    for (int32_t i = 0; i < n->n_attrs; i++) {
        const kiln_attr *a = &n->attrs[i];
        h = mix_str(h, a->name);
        h = mix(h, (uint64_t)a->type);
        switch (a->type) {
        case KILN_ATTR_INT: h = mix(h, (uint64_t)a->i); break;
        case KILN_ATTR_FLOAT: {
            uint32_t b;
            memcpy(&b, &a->f, 4);
            h = mix(h, b);
            break;
        }
        case KILN_ATTR_STRING: h = mix_str(h, a->s); break;
        case KILN_ATTR_INTS:
            for (int32_t j = 0; j < a->count; j++) h = mix(h, (uint64_t)a->ints[j]);
            break;
        case KILN_ATTR_FLOATS:
            for (int32_t j = 0; j < a->count; j++) {
                uint32_t b;
                memcpy(&b, &a->floats[j], 4);
                h = mix(h, b);
            }
            break;
        default: break;
        }
    }
    return h;
}

/* ---- the cache ---- */

static void identity(char *buf, size_t n)
{
    char model[128];
    kiln_cpu_model(model, sizeof model);
    snprintf(buf, n, "cpu %s|features %llx|threads %d|kiln %s", model,
             (unsigned long long)kiln_cpu_features(), kiln_cpu_threads(), kiln_version());
}

void tactic_cache_init(tactic_cache *c) { memset(c, 0, sizeof *c); }

void tactic_cache_free(tactic_cache *c)
{
    for (int32_t i = 0; i < c->n; i++) kiln_free(c->e[i].kernel);
    kiln_free(c->e);
    kiln_free(c->path);
    memset(c, 0, sizeof *c);
}

static kiln_status put(tactic_cache *c, uint64_t key, const char *kernel, uint64_t ns)
{
    for (int32_t i = 0; i < c->n; i++)
        if (c->e[i].key == key) {
            char *k = kiln_strdup(kernel);
            if (!k) return KILN_ERR_OUT_OF_MEMORY;
            kiln_free(c->e[i].kernel);
            c->e[i].kernel = k;
            c->e[i].ns = ns;
            return KILN_OK;
        }
    if (c->n >= MAX_ENTRIES) return KILN_OK;
    if (c->n == c->cap) {
        int32_t cap = c->cap ? 2 * c->cap : 64;
        tactic_entry *e = kiln_realloc(c->e, sizeof *e * (size_t)cap);
        if (!e) return KILN_ERR_OUT_OF_MEMORY;
        c->e = e;
        c->cap = cap;
    }
    char *k = kiln_strdup(kernel);
    if (!k) return KILN_ERR_OUT_OF_MEMORY;
    c->e[c->n++] = (tactic_entry){key, k, ns};
    return KILN_OK;
}

kiln_status tactic_cache_put(tactic_cache *c, uint64_t key, const char *kernel, uint64_t ns)
{
    KILN_TRY(put(c, key, kernel, ns));
    c->dirty = true;
    return KILN_OK;
}

const char *tactic_cache_find(const tactic_cache *c, uint64_t key)
{
    for (int32_t i = 0; i < c->n; i++)
        if (c->e[i].key == key) return c->e[i].kernel;
    return NULL;
}

/* Whether s is a kernel name as this cache stores it: [A-Za-z0-9_.]+ */
static bool name_ok(const char *s)
{
    if (!*s || strlen(s) > 64) return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '.'))
            return false;
    return true;
}

kiln_status tactic_cache_load(tactic_cache *c, const char *path)
{
    kiln_status st = KILN_OK;
    c->path = kiln_strdup(path);
    if (!c->path) return KILN_ERR_OUT_OF_MEMORY;
    FILE *f = fopen(path, "r");
    if (!f) {
        if (errno == ENOENT) {
            c->dirty = true; /* made at the end of the build */
            return KILN_OK;
        }
        return kiln_error(KILN_ERR_IO, "timing cache '%s': %s", path, strerror(errno));
    }
    char line[MAX_LINE], want[MAX_LINE];
    identity(want, sizeof want);
    int lineno = 0;
    bool ok = true;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        size_t len = strlen(line);
        if (len && line[len - 1] == '\n')
            line[--len] = 0;
        else if (!feof(f)) {
            ok = false;
            break; /* a line longer than any this kiln writes */
        }
        if (lineno == 1) {
            if (strcmp(line, CACHE_MAGIC) != 0) ok = false;
            if (!ok) break;
            continue;
        }
        if (lineno == 2) {
            if (strcmp(line, want) != 0) {
                kiln_log(KILN_LOG_WARNING,
                         "timing cache '%s' was made for another machine or kiln (%s; this is "
                         "%s): its timings are not used and it will be replaced",
                         path, line, want);
                c->dirty = true;
                goto done;
            }
            continue;
        }
        unsigned long long key, ns;
        char name[MAX_LINE];
        if (sscanf(line, "%16llx %64s %llu", &key, name, &ns) != 3 || !name_ok(name)) {
            ok = false;
            break;
        }
        if ((st = put(c, key, name, ns)) != KILN_OK) goto done;
    }
    if (ok && lineno >= 2 && !ferror(f)) goto done;
    /* A damaged file: what was read is dropped, the build times afresh and rewrites it. */
    kiln_log(KILN_LOG_WARNING, "timing cache '%s' is damaged near line %d: ignored and replaced",
             path, lineno);
    for (int32_t i = 0; i < c->n; i++) kiln_free(c->e[i].kernel);
    c->n = 0;
    c->dirty = true;
done:
    fclose(f);
    return st;
}

static int cmp_key(const void *a, const void *b)
{
    const tactic_entry *x = a, *y = b;
    return (x->key > y->key) - (x->key < y->key);
}

kiln_status tactic_cache_save(tactic_cache *c)
{
    if (!c->path || !c->dirty) return KILN_OK;
    /* Sorted by key: the file depends on what it holds, not on the order layers came. */
    if (c->n > 1) qsort(c->e, (size_t)c->n, sizeof *c->e, cmp_key);
    size_t n = strlen(c->path);
    char *tmp = kiln_malloc(n + 32);
    if (!tmp) return KILN_ERR_OUT_OF_MEMORY;
    snprintf(tmp, n + 32, "%s.tmp.%ld", c->path, (long)getpid());
    kiln_status st = KILN_OK;
    FILE *f = fopen(tmp, "w");
    if (!f) {
        st = kiln_error(KILN_ERR_IO, "cannot write timing cache '%s': %s", tmp, strerror(errno));
        goto out;
    }
    char id[MAX_LINE];
    identity(id, sizeof id);
    fprintf(f, "%s\n%s\n", CACHE_MAGIC, id);
    for (int32_t i = 0; i < c->n; i++)
        fprintf(f, "%016llx %s %llu\n", (unsigned long long)c->e[i].key, c->e[i].kernel,
                (unsigned long long)c->e[i].ns);
    if (fclose(f) != 0) {
        st = kiln_error(KILN_ERR_IO, "writing timing cache '%s' failed", tmp);
        remove(tmp);
        goto out;
    }
    if (rename(tmp, c->path) != 0) {
        st = kiln_error(KILN_ERR_IO, "cannot rename '%s' to '%s': %s", tmp, c->path,
                        strerror(errno));
        remove(tmp);
        goto out;
    }
    c->dirty = false;
out:
    kiln_free(tmp);
    return st;
}

/* ---- timing ---- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Storage bytes of a tensor (padded when blocked); 0 when it cannot be allocated. */
static size_t storage_bytes(const ir_tensor *t)
{
    int64_t cnt;
    if (!ir_layout_numel(t->layout, &t->shape, &cnt)) return 0;
    return (size_t)cnt * kiln_dtype_size(t->dtype);
}

kiln_status tactic_time(const backend_kernel *k, const ir_node *n, const ir_tensor *in,
                        int32_t n_in, const ir_tensor *out, int32_t n_out, int32_t threads,
                        uint64_t best_ns, uint64_t *ns)
{
    kiln_status st = KILN_OK;
    ir_tensor *ti = NULL, *to = NULL;
    void **owned = NULL;
    int32_t n_owned = 0;
    kiln_buf data;
    memset(&data, 0, sizeof data);
    void *scratch = NULL;
    *ns = UINT64_MAX;
    KILN_CHECK(kiln_alloc_checked((void **)&ti, (size_t)n_in + 1, sizeof *ti, "tactic timing"));
    KILN_CHECK(kiln_alloc_checked((void **)&to, (size_t)n_out + 1, sizeof *to, "tactic timing"));
    KILN_CHECK(kiln_alloc_checked((void **)&owned, (size_t)(n_in + n_out) + 1, sizeof *owned,
                                  "tactic timing"));
    /* Activations get seeded values; constants are the layer's own. */
    uint64_t seed = 0x2545f4914f6cdd1dull;
    for (int32_t i = 0; i < n_in + n_out; i++) {
        const ir_tensor *src = i < n_in ? &in[i] : &out[i - n_in];
        ir_tensor *dst = i < n_in ? &ti[i] : &to[i - n_in];
        *dst = *src;
        if (!ir_tensor_present(src) || (i < n_in && src->data)) continue;
        size_t b = storage_bytes(src);
        void *p = kiln_aligned_alloc(b ? b : 64, 64);
        if (!p) {
            st = KILN_ERR_OUT_OF_MEMORY;
            goto fail;
        }
        owned[n_owned++] = p;
        memset(p, 0, b);
        if (src->dtype == KILN_DTYPE_F32 && i < n_in) {
            float *f = p;
            for (size_t j = 0; j < b / 4; j++) {
                seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
                f[j] = (float)((seed >> 40) & 0xffff) / 32768.0f - 1.0f;
            }
            ir_layout_zero_padding(dst);
        }
        dst->data = p;
    }
    backend_exec x = {.threads = threads};
    if (k->prepare) {
        KILN_CHECK(k->prepare(n, in, n_in, out, n_out, &data));
        if (data.failed) {
            st = KILN_ERR_OUT_OF_MEMORY;
            goto fail;
        }
        x.data = data.data;
        x.data_bytes = data.len;
    }
    if (k->scratch) {
        x.scratch_bytes = k->scratch(n, in, n_in, out, n_out, threads);
        if (x.scratch_bytes && !(scratch = kiln_aligned_alloc(x.scratch_bytes, 64))) {
            st = KILN_ERR_OUT_OF_MEMORY;
            goto fail;
        }
        x.scratch = scratch;
    }
    uint64_t t[TIMED_RUNS];
    int32_t runs = 0;
    uint64_t start = kiln_now_ns();
    KILN_CHECK(k->run(n, ti, n_in, to, n_out, &x)); /* warm-up */
    uint64_t first = kiln_now_ns() - start;
    /* A candidate already 3x slower than the best once warm is not timed further. */
    if (best_ns != UINT64_MAX && first > 3 * best_ns) {
        *ns = first;
        goto fail;
    }
    for (; runs < TIMED_RUNS; runs++) {
        uint64_t a = kiln_now_ns();
        KILN_CHECK(k->run(n, ti, n_in, to, n_out, &x));
        t[runs] = kiln_now_ns() - a;
        if (kiln_now_ns() - start > BUDGET_NS) {
            runs++;
            break;
        }
    }
    qsort(t, (size_t)runs, sizeof *t, cmp_u64);
    *ns = t[runs / 2];
fail:
    for (int32_t i = 0; i < n_owned; i++) kiln_aligned_free(owned[i]);
    kiln_free(owned);
    kiln_free(ti);
    kiln_free(to);
    kiln_buf_free(&data);
    kiln_aligned_free(scratch);
    return st;
}
