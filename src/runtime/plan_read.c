/* plan_read.c - parses and validates a plan. Every file is untrusted: each count, index,
 * size and offset is checked before use, and each layer's shapes are inferred again,
 * so that nothing a kernel is given can point outside a tensor. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/plan.h"

#define CORRUPT(...) kiln_error(KILN_ERR_CORRUPT_PLAN, "corrupt plan: " __VA_ARGS__)

/* Caps that keep a hostile plan from asking for absurd allocations. */
#define MAX_TENSORS (1 << 24)
#define MAX_LAYERS  (1 << 24)
#define MAX_ATTRS   256

typedef struct sections {
    const uint8_t *base;
    uint64_t off[PLAN_SEC_COUNT_], size[PLAN_SEC_COUNT_];
    bool have[PLAN_SEC_COUNT_];
} sections;

static const char *section_name(int id)
{
    static const char *names[PLAN_SEC_COUNT_] = {"?",     "strings", "tensors", "layers",
                                                 "io",    "memory",  "build",   "weights",
                                                 "fused", "layouts", "profiles"};
    return id > 0 && id < PLAN_SEC_COUNT_ ? names[id] : "?";
}

uint32_t plan_header_crc(const uint8_t *header)
{
    uint8_t h[PLAN_HEADER_BYTES];
    memcpy(h, header, sizeof h);
    memset(h + 40, 0, 4);
    return kiln_crc32c(0, h, sizeof h);
}

static kiln_status read_header(const uint8_t *p, size_t size, sections *s, uint64_t *features)
{
    if (size < PLAN_HEADER_BYTES)
        return CORRUPT("%zu bytes is shorter than the %u-byte header", size, PLAN_HEADER_BYTES);
    if (memcmp(p, PLAN_MAGIC, 8) != 0) return CORRUPT("bad magic (not a kiln plan file)");
    uint32_t fmt, ver, n_sec, body_crc, head_crc;
    uint64_t file_size;
    memcpy(&fmt, p + 8, 4);
    memcpy(&ver, p + 12, 4);
    memcpy(features, p + 16, 8);
    memcpy(&file_size, p + 24, 8);
    memcpy(&body_crc, p + 32, 4);
    memcpy(&n_sec, p + 36, 4);
    memcpy(&head_crc, p + 40, 4);
    if (plan_header_crc(p) != head_crc) return CORRUPT("header checksum mismatch");
    for (int i = 44; i < (int)PLAN_HEADER_BYTES; i++)
        if (p[i]) return CORRUPT("reserved header byte %d is not zero", i);
    if (fmt != PLAN_FORMAT_VERSION)
        return kiln_error(KILN_ERR_VERSION,
                          "plan format version %u (written by kiln %u.%u.%u); this kiln %s reads "
                          "version %u: rebuild the plan",
                          fmt, ver / 10000, ver / 100 % 100, ver % 100, kiln_version(),
                          PLAN_FORMAT_VERSION);
    if (file_size != size)
        return CORRUPT("header says %llu bytes, file has %zu (truncated or padded)",
                       (unsigned long long)file_size, size);
    if (kiln_crc32c(0, p + PLAN_HEADER_BYTES, size - PLAN_HEADER_BYTES) != body_crc)
        return CORRUPT("body checksum mismatch (the file was altered or damaged)");
    if (n_sec == 0 || n_sec > 64) return CORRUPT("%u sections", n_sec);
    if ((uint64_t)PLAN_HEADER_BYTES + (uint64_t)n_sec * PLAN_SECTION_ENTRY_BYTES > size)
        return CORRUPT("section table runs past the end of the file");
    memset(s, 0, sizeof *s);
    s->base = p;
    for (uint32_t i = 0; i < n_sec; i++) {
        const uint8_t *e = p + PLAN_HEADER_BYTES + (size_t)i * PLAN_SECTION_ENTRY_BYTES;
        uint32_t id;
        uint64_t off, len;
        memcpy(&id, e, 4);
        memcpy(&off, e + 8, 8);
        memcpy(&len, e + 16, 8);
        if (off > size || len > size - off)
            return CORRUPT("section %u (id %u) spans %llu+%llu, past the file's %zu bytes", i, id,
                           (unsigned long long)off, (unsigned long long)len, size);
        if (off < PLAN_HEADER_BYTES + (uint64_t)n_sec * PLAN_SECTION_ENTRY_BYTES)
            return CORRUPT("section %u overlaps the header", i);
        if (id == 0 || id >= PLAN_SEC_COUNT_) continue; /* unknown: skipped */
        if (s->have[id]) return CORRUPT("section '%s' appears twice", section_name((int)id));
        if (off % PLAN_ALIGN)
            return CORRUPT("section '%s' is not 64-byte aligned", section_name((int)id));
        s->have[id] = true;
        s->off[id] = off;
        s->size[id] = len;
    }
    for (int id = 1; id <= PLAN_SEC_REQUIRED_LAST; id++)
        if (!s->have[id]) return CORRUPT("section '%s' is missing", section_name(id));
    return KILN_OK;
}

static void section_reader(const sections *s, int id, kiln_reader *r)
{
    kiln_reader_init(r, s->base + s->off[id], (size_t)s->size[id]);
}

/* A string at `off` of the string section, NUL-terminated inside it. */
static kiln_status get_str(const sections *s, uint32_t off, const char *what, const char **out)
{
    const char *base = (const char *)s->base + s->off[PLAN_SEC_STRINGS];
    uint64_t n = s->size[PLAN_SEC_STRINGS];
    if (off >= n)
        return CORRUPT("%s: string offset %u outside the %llu-byte string table", what, off,
                       (unsigned long long)n);
    if (!memchr(base + off, 0, (size_t)(n - off)))
        return CORRUPT("%s: string is not terminated", what);
    *out = base + off;
    return KILN_OK;
}

/* Optional: a layout code per tensor; absent, every tensor is plain. */
static kiln_status read_layouts(const sections *s, uint32_t n, kiln_reader *r)
{
    if (!s->have[PLAN_SEC_LAYOUTS]) {
        kiln_reader_init(r, NULL, 0);
        return KILN_OK;
    }
    section_reader(s, PLAN_SEC_LAYOUTS, r);
    uint32_t count = kiln_reader_u32(r), reserved = kiln_reader_u32(r);
    if (r->failed || count != n || reserved != 0 || r->len - r->pos != (size_t)n * 4)
        return CORRUPT("layouts section (%zu bytes) does not hold one layout per tensor (%u)",
                       r->len, n);
    return KILN_OK;
}

static kiln_status read_tensors(const sections *s, kiln_arena *a, plan_desc *d, kiln_strmap *names)
{
    kiln_reader r, lr;
    section_reader(s, PLAN_SEC_TENSORS, &r);
    uint32_t n = kiln_reader_u32(&r);
    kiln_reader_u32(&r);
    if (r.failed || n > MAX_TENSORS || (uint64_t)n * PLAN_TENSOR_RECORD_BYTES > r.len - r.pos)
        return CORRUPT("tensor section holds %u records in %zu bytes", n, r.len);
    KILN_TRY(read_layouts(s, n, &lr));
    d->n_tensors = (int32_t)n;
    d->tensors = kiln_arena_alloc(a, sizeof(plan_tensor) * (size_t)(n + 1));
    if (!d->tensors) return KILN_ERR_OUT_OF_MEMORY;
    const uint8_t *wbase = s->base + s->off[PLAN_SEC_WEIGHTS];
    for (uint32_t i = 0; i < n; i++) {
        plan_tensor *t = &d->tensors[i];
        uint32_t name = kiln_reader_u32(&r);
        t->dtype = (kiln_dtype)kiln_reader_u32(&r);
        t->flags = kiln_reader_u32(&r);
        uint32_t rank = kiln_reader_u32(&r);
        for (int k = 0; k < KILN_MAX_RANK; k++) t->shape.d[k] = kiln_reader_i64(&r);
        t->offset = kiln_reader_u64(&r);
        t->nbytes = kiln_reader_u64(&r);
        uint32_t layout = s->have[PLAN_SEC_LAYOUTS] ? kiln_reader_u32(&lr) : 0;
        KILN_TRY(get_str(s, name, "tensor name", &t->name));
        if (!*t->name) return CORRUPT("tensor #%u has an empty name", i);
        if (kiln_strmap_get(names, t->name) >= 0)
            return CORRUPT("tensor '%s' appears twice", t->name);
        KILN_TRY(kiln_strmap_put(names, t->name, (int32_t)i));
        size_t es = kiln_dtype_size(t->dtype);
        if (es == 0)
            return CORRUPT("tensor '%s' has unknown dtype %u", t->name, (unsigned)t->dtype);
        if (rank > KILN_MAX_RANK) return CORRUPT("tensor '%s' has rank %u", t->name, rank);
        t->shape.rank = (int32_t)rank;
        if (!ir_layout_known(layout))
            return CORRUPT("tensor '%s' has layout code %u", t->name, layout);
        t->layout = (ir_layout)layout;
        int64_t count, bytes;
        char sh[KILN_DIMS_STR_MAX];
        if (!kiln_dims_numel(&t->shape, &count))
            return CORRUPT("tensor '%s' has an impossible shape", t->name);
        if (!ir_layout_numel(t->layout, &t->shape, &count) ||
            !kiln_mul_ok(count, (int64_t)es, &bytes))
            return CORRUPT("tensor '%s': layout %s does not fit its shape %s", t->name,
                           ir_layout_name(t->layout), kiln_dims_str(&t->shape, sh, sizeof sh));
        if ((uint64_t)bytes != t->nbytes)
            return CORRUPT("tensor '%s': %llu bytes recorded, its shape%s%s needs %lld", t->name,
                           (unsigned long long)t->nbytes, t->layout ? " in " : "",
                           t->layout ? ir_layout_name(t->layout) : "", (long long)bytes);
        uint32_t known = PLAN_T_INPUT | PLAN_T_OUTPUT | PLAN_T_CONSTANT | PLAN_T_ELIDED;
        if ((t->flags & ~known) || ((t->flags & PLAN_T_CONSTANT) && (t->flags & PLAN_T_INPUT)) ||
            ((t->flags & PLAN_T_INPUT) && (t->flags & PLAN_T_OUTPUT)) ||
            ((t->flags & PLAN_T_ELIDED) &&
             (t->flags & (PLAN_T_CONSTANT | PLAN_T_OUTPUT)) != PLAN_T_CONSTANT))
            return CORRUPT("tensor '%s' has flags 0x%x", t->name, t->flags);
        if ((t->flags & (PLAN_T_INPUT | PLAN_T_OUTPUT)) && t->layout != IR_LAYOUT_PLAIN)
            return CORRUPT("%s '%s' has layout %s; network inputs and outputs are plain",
                           t->flags & PLAN_T_INPUT ? "input" : "output", t->name,
                           ir_layout_name(t->layout));
        if (t->flags & PLAN_T_ELIDED) {
            if (t->offset)
                return CORRUPT("left-out tensor '%s' has weights offset %llu", t->name,
                               (unsigned long long)t->offset);
            t->data = plan_elided_data;
        } else if (t->flags & PLAN_T_CONSTANT) {
            uint64_t ws = s->size[PLAN_SEC_WEIGHTS];
            if (t->offset % PLAN_ALIGN || t->offset > ws || t->nbytes > ws - t->offset)
                return CORRUPT("weights of '%s' (%llu bytes at %llu) lie outside the %llu-byte "
                               "weights section",
                               t->name, (unsigned long long)t->nbytes,
                               (unsigned long long)t->offset, (unsigned long long)ws);
            t->data = wbase + t->offset;
        }
    }
    return KILN_OK;
}

const uint8_t plan_elided_data[64] __attribute__((aligned(64)));

static kiln_status read_attr(const sections *s, kiln_reader *r, kiln_arena *a, const ir_op *op,
                             const char *layer, kiln_attr *out)
{
    uint32_t name = kiln_reader_u32(r), type = kiln_reader_u32(r);
    int64_t i = kiln_reader_i64(r);
    float f = kiln_reader_f32(r);
    uint32_t soff = kiln_reader_u32(r), count = kiln_reader_u32(r);
    kiln_reader_u32(r);
    if (r->failed) return CORRUPT("layer '%s': attributes run past the section", layer);
    const char *nm = NULL;
    KILN_TRY(get_str(s, name, "attribute name", &nm));
    const ir_attr_def *def = NULL;
    for (int32_t k = 0; k < op->n_attrs; k++)
        if (strcmp(op->attrs[k].name, nm) == 0) def = &op->attrs[k];
    if (!def) return CORRUPT("layer '%s' (%s): unknown attribute '%s'", layer, op->name, nm);
    if ((uint32_t)def->type != type)
        return CORRUPT("layer '%s' (%s): attribute '%s' has type %u", layer, op->name, nm, type);
    memset(out, 0, sizeof *out);
    out->name = def->name;
    out->type = def->type;
    if (type == KILN_ATTR_INT) out->i = i;
    if (type == KILN_ATTR_FLOAT) out->f = f;
    if (type == KILN_ATTR_STRING) KILN_TRY(get_str(s, soff, "attribute string", &out->s));
    if (type == KILN_ATTR_INTS || type == KILN_ATTR_FLOATS) {
        if (count > 4096)
            return CORRUPT("layer '%s': attribute '%s' lists %u values", layer, nm, count);
        size_t es = type == KILN_ATTR_INTS ? 8 : 4, bytes = es * count;
        void *p = kiln_arena_alloc(a, bytes);
        if (!p) return KILN_ERR_OUT_OF_MEMORY;
        if (!kiln_reader_bytes(r, p, bytes))
            return CORRUPT("layer '%s': attribute '%s' runs past the section", layer, nm);
        if (bytes % 8) kiln_reader_u32(r);
        out->count = (int32_t)count;
        if (type == KILN_ATTR_INTS)
            out->ints = p;
        else
            out->floats = p;
    } else if (count) {
        return CORRUPT("layer '%s': scalar attribute '%s' has a count", layer, nm);
    }
    return KILN_OK;
}

static kiln_status read_layers(const sections *s, kiln_arena *a, plan_desc *d)
{
    kiln_reader r;
    section_reader(s, PLAN_SEC_LAYERS, &r);
    uint32_t n = kiln_reader_u32(&r);
    kiln_reader_u32(&r);
    /* Each layer record takes at least 32 bytes. */
    if (r.failed || n > MAX_LAYERS || (uint64_t)n * 32 > r.len - r.pos)
        return CORRUPT("layer section holds %u layers in %zu bytes", n, r.len);
    d->n_layers = (int32_t)n;
    d->layers = kiln_arena_alloc(a, sizeof(plan_layer) * (size_t)(n + 1));
    if (!d->layers) return KILN_ERR_OUT_OF_MEMORY;
    for (uint32_t i = 0; i < n; i++) {
        plan_layer *l = &d->layers[i];
        ir_node *nd = &l->node;
        uint32_t name = kiln_reader_u32(&r), op = kiln_reader_u32(&r), kern = kiln_reader_u32(&r);
        uint32_t prec = kiln_reader_u32(&r), n_in = kiln_reader_u32(&r),
                 n_out = kiln_reader_u32(&r);
        uint32_t n_attrs = kiln_reader_u32(&r);
        uint32_t data = kiln_reader_u32(&r); /* tensor index + 1, 0: none */
        if (data > (uint32_t)INT32_MAX) return CORRUPT("layer #%u names data tensor %u", i, data);
        l->data = (int32_t)data - 1; /* checked with the data flow */
        if (r.failed) return CORRUPT("layer #%u runs past the section", i);
        const char *opname = NULL;
        KILN_TRY(get_str(s, name, "layer name", &nd->name));
        KILN_TRY(get_str(s, op, "layer op", &opname));
        KILN_TRY(get_str(s, kern, "layer kernel", &l->kernel));
        nd->op = ir_op_find(opname);
        if (!nd->op)
            return kiln_error(KILN_ERR_UNSUPPORTED,
                              "plan layer '%s' uses op '%s', which this kiln (%s) does not have",
                              nd->name, opname, kiln_version());
        if (prec != 0) return CORRUPT("layer '%s' has precision code %u", nd->name, prec);
        if ((int64_t)n_in < nd->op->min_in || (int64_t)n_in > nd->op->max_in ||
            (int64_t)n_out < nd->op->min_out || (int64_t)n_out > nd->op->max_out)
            return CORRUPT("layer '%s' (%s) has %u inputs and %u outputs", nd->name, opname, n_in,
                           n_out);
        if (n_attrs > MAX_ATTRS) return CORRUPT("layer '%s' has %u attributes", nd->name, n_attrs);
        nd->n_in = (int32_t)n_in;
        nd->n_out = (int32_t)n_out;
        nd->in = kiln_arena_alloc(a, sizeof(int32_t) * (n_in + 1));
        nd->out = kiln_arena_alloc(a, sizeof(int32_t) * (n_out + 1));
        nd->attrs = kiln_arena_alloc(a, sizeof(kiln_attr) * (n_attrs + 1));
        if (!nd->in || !nd->out || !nd->attrs) return KILN_ERR_OUT_OF_MEMORY;
        for (uint32_t k = 0; k < n_in; k++) nd->in[k] = (int32_t)kiln_reader_u32(&r);
        for (uint32_t k = 0; k < n_out; k++) nd->out[k] = (int32_t)kiln_reader_u32(&r);
        if ((n_in + n_out) % 2) kiln_reader_u32(&r);
        if (r.failed) return CORRUPT("layer '%s' runs past the section", nd->name);
        nd->n_attrs = (int32_t)n_attrs;
        for (uint32_t k = 0; k < n_attrs; k++)
            KILN_TRY(read_attr(s, &r, a, nd->op, nd->name, &nd->attrs[k]));
        for (uint32_t k = 0; k < n_attrs; k++)
            for (uint32_t j = 0; j < k; j++)
                if (nd->attrs[j].name == nd->attrs[k].name)
                    return CORRUPT("layer '%s': attribute '%s' appears twice", nd->name,
                                   nd->attrs[k].name);
        /* Writers store every scalar attribute (defaults filled) and every required one. */
        for (int32_t k = 0; k < nd->op->n_attrs; k++) {
            const ir_attr_def *def = &nd->op->attrs[k];
            bool scalar = def->type == KILN_ATTR_INT || def->type == KILN_ATTR_FLOAT ||
                          def->type == KILN_ATTR_STRING;
            if ((def->required || scalar) && !ir_attr_find(nd, def->name))
                return CORRUPT("layer '%s' (%s) lacks attribute '%s'", nd->name, opname, def->name);
        }
        l->k = backend_cpu()->find(opname, l->kernel);
        if (!l->k)
            return kiln_error(
                KILN_ERR_UNSUPPORTED,
                "plan layer '%s' (%s) uses kernel '%s', which this kiln (%s) does not have",
                nd->name, opname, l->kernel, kiln_version());
    }
    return KILN_OK;
}

static kiln_status read_io(const sections *s, kiln_arena *a, plan_desc *d)
{
    kiln_reader r;
    section_reader(s, PLAN_SEC_IO, &r);
    uint32_t ni = kiln_reader_u32(&r), no = kiln_reader_u32(&r);
    if (r.failed || ni > (uint32_t)d->n_tensors || no > (uint32_t)d->n_tensors ||
        (uint64_t)(ni + no) * 4 > r.len - r.pos)
        return CORRUPT("I/O section lists %u inputs and %u outputs", ni, no);
    if (no == 0) return CORRUPT("the plan has no outputs");
    d->n_inputs = (int32_t)ni;
    d->n_outputs = (int32_t)no;
    d->inputs = kiln_arena_alloc(a, sizeof(int32_t) * (ni + 1));
    d->outputs = kiln_arena_alloc(a, sizeof(int32_t) * (no + 1));
    if (!d->inputs || !d->outputs) return KILN_ERR_OUT_OF_MEMORY;
    for (uint32_t i = 0; i < ni + no; i++) {
        uint32_t t = kiln_reader_u32(&r);
        bool is_in = i < ni;
        uint32_t want = is_in ? PLAN_T_INPUT : PLAN_T_OUTPUT;
        if (t >= (uint32_t)d->n_tensors || !(d->tensors[t].flags & want))
            return CORRUPT("I/O entry %u names tensor #%u, which is not an %s", i, t,
                           is_in ? "input" : "output");
        for (uint32_t j = 0; j < (is_in ? i : i - ni); j++)
            if ((is_in ? d->inputs : d->outputs)[j] == (int32_t)t)
                return CORRUPT("I/O tensor '%s' is listed twice", d->tensors[t].name);
        (is_in ? d->inputs : d->outputs)[is_in ? i : i - ni] = (int32_t)t;
    }
    /* Every flagged tensor must be listed, or nothing would bind it. */
    for (int32_t t = 0; t < d->n_tensors; t++) {
        uint32_t f = d->tensors[t].flags;
        bool in_listed = false, out_listed = false;
        for (int32_t j = 0; j < d->n_inputs; j++) in_listed |= d->inputs[j] == t;
        for (int32_t j = 0; j < d->n_outputs; j++) out_listed |= d->outputs[j] == t;
        if (((f & PLAN_T_INPUT) && !in_listed) || ((f & PLAN_T_OUTPUT) && !out_listed))
            return CORRUPT("tensor '%s' is flagged I/O but not listed", d->tensors[t].name);
    }
    return KILN_OK;
}

static kiln_status read_memory_and_build(const sections *s, plan_desc *d)
{
    kiln_reader r;
    section_reader(s, PLAN_SEC_MEMORY, &r);
    d->arena_bytes = kiln_reader_u64(&r);
    d->activation_bytes = kiln_reader_u64(&r);
    if (r.failed) return CORRUPT("memory section is short");
    /* The arena is exactly as large as its furthest activation (sizes rounded to 64),
     * and the activation total is their sum: a plan cannot ask for memory it never uses. */
    uint64_t end = 0, sum = 0;
    for (int32_t i = 0; i < d->n_tensors; i++) {
        const plan_tensor *t = &d->tensors[i];
        if (t->flags) continue;
        if (t->offset % PLAN_ALIGN || t->offset > d->arena_bytes ||
            t->nbytes > d->arena_bytes - t->offset)
            return CORRUPT("activation '%s' (%llu bytes at %llu) lies outside the %llu-byte arena",
                           t->name, (unsigned long long)t->nbytes, (unsigned long long)t->offset,
                           (unsigned long long)d->arena_bytes);
        uint64_t e = t->offset + ((t->nbytes + PLAN_ALIGN - 1) & ~(uint64_t)(PLAN_ALIGN - 1));
        if (e > end) end = e;
        sum += t->nbytes;
    }
    if (end != d->arena_bytes || sum != d->activation_bytes)
        return CORRUPT(
            "memory section says arena %llu / activations %llu bytes; the tensors need %llu / %llu",
            (unsigned long long)d->arena_bytes, (unsigned long long)d->activation_bytes,
            (unsigned long long)end, (unsigned long long)sum);
    section_reader(s, PLAN_SEC_BUILD, &r);
    uint32_t threads = kiln_reader_u32(&r), prec = kiln_reader_u32(&r);
    uint32_t dev = kiln_reader_u32(&r), info = kiln_reader_u32(&r);
    if (r.failed) return CORRUPT("build section is short");
    if (threads > 1024) return CORRUPT("%u threads", threads);
    d->threads = (int32_t)threads;
    d->precisions = prec;
    KILN_TRY(get_str(s, dev, "device", &d->device));
    KILN_TRY(get_str(s, info, "build info", &d->build_info));
    if (strcmp(d->device, "cpu") != 0)
        return kiln_error(KILN_ERR_DEVICE, "the plan targets device '%s'; this kiln runs cpu plans",
                          d->device);
    return KILN_OK;
}

/* "input 0 'x' nchw8c, output 0 'y' plain" for a layer's tensors. */
static void layouts_str(const plan_desc *d, const ir_node *n, char *buf, size_t size)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int32_t k = 0; k < n->n_in + n->n_out && len < size; k++) {
        bool is_in = k < n->n_in;
        int32_t t = is_in ? n->in[k] : n->out[k - n->n_in];
        if (t < 0) continue;
        int w = snprintf(buf + len, size - len, "%s%s %d '%s' %s", len ? ", " : "",
                         is_in ? "input" : "output", is_in ? k : k - n->n_in, d->tensors[t].name,
                         ir_layout_name(d->tensors[t].layout));
        if (w < 0) break;
        len += (size_t)w;
    }
}

/* Each tensor a layer writes must be an activation or output written by that layer
 * only, after everything it reads has been written; shapes must be what the op's
 * inference gives for its inputs. */
static kiln_status check_dataflow(plan_desc *d, kiln_arena *arena)
{
    kiln_status st = KILN_OK;
    unsigned char *written = NULL;
    void **known = NULL; /* per tensor: its value where the loader knows it */
    kiln_arena scratch;  /* shape layers' outputs */
    kiln_arena_init(&scratch);
    d->shape_layer = kiln_arena_alloc(arena, (size_t)d->n_layers + 1);
    if (!d->shape_layer) return KILN_ERR_OUT_OF_MEMORY;
    memset(d->shape_layer, 0, (size_t)d->n_layers + 1);
    KILN_CHECK(kiln_alloc_checked((void **)&written, (size_t)d->n_tensors + 1, 1, "plan check"));
    KILN_CHECK(
        kiln_alloc_checked((void **)&known, (size_t)d->n_tensors + 1, sizeof *known, "plan check"));
    for (int32_t t = 0; t < d->n_tensors; t++)
        if (d->tensors[t].flags & PLAN_T_CONSTANT) known[t] = (void *)d->tensors[t].data;
    for (int32_t t = 0; t < d->n_tensors; t++)
        if (d->tensors[t].flags & (PLAN_T_INPUT | PLAN_T_CONSTANT)) written[t] = 1;
    for (int32_t i = 0; i < d->n_layers; i++) {
        ir_node *n = &d->layers[i].node;
        ir_tensor in[64], out[64];
        if (n->n_in > 64 || n->n_out > 64) {
            st = CORRUPT("layer '%s' has too many tensors", n->name);
            goto fail;
        }
        bool shapes = true, all_known = true; /* outputs small integers; inputs known */
        for (int32_t k = 0; k < n->n_in; k++) {
            int32_t t = n->in[k];
            memset(&in[k], 0, sizeof in[k]);
            if (t == -1 && k >= n->op->min_in) continue;
            if (t < 0 || t >= d->n_tensors) {
                st = CORRUPT("layer '%s' input %d refers to tensor #%d", n->name, k, t);
                goto fail;
            }
            if (!written[t]) {
                st = CORRUPT("layer '%s' reads '%s' before anything writes it", n->name,
                             d->tensors[t].name);
                goto fail;
            }
            in[k].dtype = d->tensors[t].dtype;
            in[k].shape = d->tensors[t].shape;
            in[k].data = known[t];
            in[k].layout = d->tensors[t].layout;
            if (!known[t]) all_known = false;
        }
        for (int32_t k = 0; k < n->n_out; k++) {
            int32_t t = n->out[k];
            if (t < 0 || t >= d->n_tensors) {
                st = CORRUPT("layer '%s' output %d refers to tensor #%d", n->name, k, t);
                goto fail;
            }
            if (written[t] || (d->tensors[t].flags & (PLAN_T_INPUT | PLAN_T_CONSTANT))) {
                st = CORRUPT("layer '%s' writes '%s', which is already written or read-only",
                             n->name, d->tensors[t].name);
                goto fail;
            }
            written[t] = 1;
            memset(&out[k], 0, sizeof out[k]);
            if (!ir_is_shape_value(d->tensors[t].dtype, d->tensors[t].nbytes)) shapes = false;
        }
        ir_infer c = {.node = n, .n_in = n->n_in, .n_out = n->n_out, .in = in, .out = out};
        st = n->op->infer(&c);
        if (st) {
            kiln_error_prefix(KILN_ERR_CORRUPT_PLAN, "corrupt plan: ");
            st = KILN_ERR_CORRUPT_PLAN;
            goto fail;
        }
        for (int32_t k = 0; k < n->n_out; k++) {
            const plan_tensor *t = &d->tensors[n->out[k]];
            if (out[k].dtype != t->dtype || !kiln_dims_equal(&out[k].shape, &t->shape)) {
                char a[KILN_DIMS_STR_MAX], b[KILN_DIMS_STR_MAX];
                st = CORRUPT("layer '%s' (%s) output '%s' is recorded as %s %s, the op gives %s %s",
                             n->name, n->op->name, t->name, kiln_dtype_name(t->dtype),
                             kiln_dims_str(&t->shape, a, sizeof a), kiln_dtype_name(out[k].dtype),
                             kiln_dims_str(&out[k].shape, b, sizeof b));
                goto fail;
            }
            out[k].data = NULL;
            out[k].layout = t->layout;
        }
        /* The kernel must take the tensors as they lie: a layout no kernel of the layer
         * reads (a Reorder whose attributes disagree with its tensors, a plain kernel on
         * blocked data) would make it read the bytes wrongly. */
        const backend_kernel *kern = d->layers[i].k;
        if (kern->applies && !kern->applies(n, in, n->n_in, out, n->n_out)) {
            char what[512];
            layouts_str(d, n, what, sizeof what);
            st = CORRUPT("layer '%s' (%s): kernel '%s' does not run it with these tensors (%s)",
                         n->name, n->op->name, d->layers[i].kernel, what);
            goto fail;
        }
        /* A left-out constant is read only through the slots the kernel does not look at,
         * by a kernel that has its prepared data. */
        for (int32_t k = 0; k < n->n_in; k++) {
            int32_t t = n->in[k];
            if (t < 0 || !(d->tensors[t].flags & PLAN_T_ELIDED)) continue;
            if (!kern->prepare || !((kern->prepared_inputs >> k) & 1) || d->layers[i].data < 0) {
                st = CORRUPT("layer '%s' (%s): kernel '%s' would read '%s', which the plan "
                             "leaves out",
                             n->name, n->op->name, d->layers[i].kernel, d->tensors[t].name);
                goto fail;
            }
            all_known = false; /* never a shape layer's input */
        }
        /* Prepared data: a u8 constant of the shape the kernel expects, given exactly when
         * the kernel prepares some. */
        int32_t dt = d->layers[i].data;
        if (dt >= 0 || kern->prepare) {
            const plan_tensor *t = dt >= 0 && dt < d->n_tensors ? &d->tensors[dt] : NULL;
            if (!t || !kern->prepare || !kern->data_ok || !(t->flags & PLAN_T_CONSTANT) ||
                (t->flags & PLAN_T_ELIDED) || t->dtype != KILN_DTYPE_U8 || t->shape.rank != 1 ||
                !kern->data_ok(n, in, n->n_in, out, n->n_out, t->data, t->nbytes)) {
                st = CORRUPT("layer '%s' (%s): kernel '%s' %s", n->name, n->op->name,
                             d->layers[i].kernel,
                             !kern->prepare ? "keeps no prepared data, but the layer names some"
                             : !t           ? "needs its prepared data, which the layer lacks"
                                            : "does not accept the prepared data given");
                goto fail;
            }
        }
        if (!(n->n_out > 0 && shapes && (all_known || (n->op->flags & IR_OP_SHAPE_ONLY)))) continue;
        /* A shape layer: evaluated now, so the inference of the layers reading it sees its
         * value at the recorded shapes. */
        d->shape_layer[i] = 1;
        for (int32_t k = 0; k < n->n_out; k++) {
            const plan_tensor *t = &d->tensors[n->out[k]];
            out[k].data = kiln_arena_alloc(&scratch, t->nbytes ? (size_t)t->nbytes : 1);
            if (!out[k].data) {
                st = KILN_ERR_OUT_OF_MEMORY;
                goto fail;
            }
            known[n->out[k]] = out[k].data;
        }
        st = n->op->eval(n, in, n->n_in, out, n->n_out);
        if (st) {
            kiln_error_prefix(KILN_ERR_CORRUPT_PLAN,
                              "corrupt plan: evaluating shape layer '%s': ", n->name);
            st = KILN_ERR_CORRUPT_PLAN;
            goto fail;
        }
    }
    for (int32_t i = 0; i < d->n_outputs; i++)
        if (!written[d->outputs[i]]) {
            st = CORRUPT("output '%s' is never written", d->tensors[d->outputs[i]].name);
            goto fail;
        }
fail:
    kiln_free(written);
    kiln_free(known);
    kiln_arena_free(&scratch);
    return st;
}

/* ---- activations sharing arena bytes ---- */

typedef struct live_range {
    uint64_t end;   /* one past the last byte */
    int32_t live;   /* tensors alive in exactly this range now */
    int32_t tensor; /* the latest of them, for messages */
} live_range;

typedef struct arena_walk {
    const plan_desc *d;
    int32_t *first, *last; /* per tensor: the layer writing it and the last reading it */
    int32_t *rank;         /* per arena tensor: index of its offset in `offs` */
    uint64_t *offs;        /* distinct offsets of arena tensors, ascending */
    int32_t m;
    int32_t *fen;       /* Fenwick tree over `offs`: 1 where a live range starts */
    live_range *ranges; /* per offset index */
} arena_walk;

/* An activation with bytes (empty ones overlap nothing). */
static bool in_arena(const plan_desc *d, int32_t t)
{
    return t >= 0 && d->tensors[t].flags == 0 && d->tensors[t].nbytes > 0;
}

static int by_offset_then_index(const void *a, const void *b)
{
    const uint64_t *x = a, *y = b; /* {offset, tensor} pairs */
    if (x[0] != y[0]) return x[0] < y[0] ? -1 : 1;
    return x[1] < y[1] ? -1 : x[1] > y[1];
}

static void fen_add(arena_walk *w, int32_t i, int32_t v)
{
    for (i++; i <= w->m; i += i & -i) w->fen[i] += v;
}

/* Live ranges starting at offsets offs[0..i). */
static int32_t fen_prefix(const arena_walk *w, int32_t i)
{
    int32_t s = 0;
    for (; i > 0; i -= i & -i) s += w->fen[i];
    return s;
}

/* The offset index of the k-th live range (1-based) by start. */
static int32_t fen_kth(const arena_walk *w, int32_t k)
{
    int32_t pos = 0, step = 1;
    while (step * 2 <= w->m) step *= 2;
    for (; step; step /= 2)
        if (pos + step <= w->m && w->fen[pos + step] < k) {
            pos += step;
            k -= w->fen[pos];
        }
    return pos;
}

/* Layer `i` writes arena tensor `t` as its output `k`. Live ranges never overlap but
 * where they are the same range: a new range must miss every live one, except that
 * output 0 of an alias or in-place layer may take exactly input 0's range, in place
 * only when nothing else alive holds those bytes and no later layer reads input 0. */
static kiln_status place(arena_walk *w, int32_t i, int32_t k, int32_t t)
{
    const plan_desc *d = w->d;
    const ir_node *n = &d->layers[i].node;
    const plan_tensor *pt = &d->tensors[t];
    uint64_t start = pt->offset, end = pt->offset + pt->nbytes;
    int32_t lo = 0, hi = w->m; /* offsets below `end` */
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        if (w->offs[mid] < end)
            lo = mid + 1;
        else
            hi = mid;
    }
    int32_t c = fen_prefix(w, lo), q = c > 0 ? fen_kth(w, c) : -1;
    live_range *r = &w->ranges[w->rank[t]];
    if (q < 0 || w->ranges[q].end <= start) {
        *r = (live_range){end, 1, t};
        fen_add(w, w->rank[t], 1);
        return KILN_OK;
    }
    const plan_tensor *other = &d->tensors[w->ranges[q].tensor];
    uint32_t f = n->op->flags & (IR_OP_ALIAS | IR_OP_INPLACE);
    int32_t t0 = n->n_in > 0 ? n->in[0] : -1;
    bool exact = k == 0 && f && in_arena(d, t0) && q == w->rank[t] &&
                 d->tensors[t0].offset == start && d->tensors[t0].nbytes == pt->nbytes;
    if (exact && !(f & IR_OP_ALIAS) && (r->live != 1 || w->last[t0] != i))
        return CORRUPT("layer '%s' (%s) writes '%s' in place of '%s', which is still in use "
                       "after it",
                       n->name, n->op->name, pt->name, other->name);
    if (!exact)
        return CORRUPT("layer '%s' (%s) writes '%s' (%llu bytes at arena offset %llu) over '%s' "
                       "(%llu bytes at %llu), which is alive at the same time",
                       n->name, n->op->name, pt->name, (unsigned long long)pt->nbytes,
                       (unsigned long long)start, other->name, (unsigned long long)other->nbytes,
                       (unsigned long long)other->offset);
    for (int32_t j = 1; j < n->n_in; j++) {
        const plan_tensor *x = in_arena(d, n->in[j]) ? &d->tensors[n->in[j]] : NULL;
        if (x && x->offset < end && start < x->offset + x->nbytes)
            return CORRUPT("layer '%s' (%s) writes '%s' over its input %d '%s'", n->name,
                           n->op->name, pt->name, j, x->name);
    }
    r->live++;
    r->tensor = t;
    return KILN_OK;
}

/* Activations share arena bytes only as the planner lets them (docs/plan-format.md,
 * "memory"): layers run in plan order, a tensor is alive from the layer writing it to
 * the last layer reading it, and the live byte ranges are kept by start offset. */
static kiln_status check_arena(const plan_desc *d)
{
    kiln_status st = KILN_OK;
    arena_walk w = {.d = d};
    int32_t *die_head = NULL, *die_next = NULL;
    uint64_t *pairs = NULL;
    size_t nt = (size_t)d->n_tensors + 1, nl = (size_t)d->n_layers + 1;
    KILN_CHECK(kiln_alloc_checked((void **)&w.first, nt, sizeof *w.first, "plan check"));
    KILN_CHECK(kiln_alloc_checked((void **)&w.last, nt, sizeof *w.last, "plan check"));
    KILN_CHECK(kiln_alloc_checked((void **)&w.rank, nt, sizeof *w.rank, "plan check"));
    KILN_CHECK(kiln_alloc_checked((void **)&w.offs, nt, sizeof *w.offs, "plan check"));
    KILN_CHECK(kiln_alloc_checked((void **)&w.fen, nt + 1, sizeof *w.fen, "plan check"));
    KILN_CHECK(kiln_alloc_checked((void **)&w.ranges, nt, sizeof *w.ranges, "plan check"));
    KILN_CHECK(kiln_alloc_checked((void **)&pairs, nt, 2 * sizeof *pairs, "plan check"));
    KILN_CHECK(kiln_alloc_checked((void **)&die_head, nl, sizeof *die_head, "plan check"));
    KILN_CHECK(kiln_alloc_checked((void **)&die_next, nt, sizeof *die_next, "plan check"));
    for (int32_t t = 0; t < d->n_tensors; t++) w.first[t] = w.last[t] = -1;
    for (int32_t i = 0; i < d->n_layers; i++) {
        const ir_node *n = &d->layers[i].node;
        die_head[i] = -1;
        for (int32_t k = 0; k < n->n_out; k++)
            if (in_arena(d, n->out[k])) w.first[n->out[k]] = w.last[n->out[k]] = i;
        for (int32_t k = 0; k < n->n_in; k++)
            if (in_arena(d, n->in[k]) && w.last[n->in[k]] < i) w.last[n->in[k]] = i;
    }
    /* check_dataflow saw every arena tensor that is read written before; one that no
     * layer writes is never alive. */
    size_t np = 0;
    for (int32_t t = 0; t < d->n_tensors; t++) {
        if (w.first[t] < 0) continue;
        pairs[2 * np] = d->tensors[t].offset;
        pairs[2 * np + 1] = (uint64_t)t;
        np++;
        die_next[t] = die_head[w.last[t]];
        die_head[w.last[t]] = t;
    }
    qsort(pairs, np, 2 * sizeof *pairs, by_offset_then_index);
    for (size_t j = 0; j < np; j++) {
        if (j == 0 || pairs[2 * j] != pairs[2 * j - 2]) w.offs[w.m++] = pairs[2 * j];
        w.rank[pairs[2 * j + 1]] = w.m - 1;
    }
    for (int32_t i = 0; i < d->n_layers; i++) {
        const ir_node *n = &d->layers[i].node;
        for (int32_t k = 0; k < n->n_out; k++)
            if (in_arena(d, n->out[k])) KILN_CHECK(place(&w, i, k, n->out[k]));
        for (int32_t t = die_head[i]; t >= 0; t = die_next[t])
            if (--w.ranges[w.rank[t]].live == 0) fen_add(&w, w.rank[t], -1);
    }
fail:
    kiln_free(w.first);
    kiln_free(w.last);
    kiln_free(w.rank);
    kiln_free(w.offs);
    kiln_free(w.fen);
    kiln_free(w.ranges);
    kiln_free(pairs);
    kiln_free(die_head);
    kiln_free(die_next);
    return st;
}

/* Optional: which network layers each engine layer was fused from. */
static kiln_status read_fused(const sections *s, kiln_arena *a, plan_desc *d)
{
    if (!s->have[PLAN_SEC_FUSED]) return KILN_OK;
    kiln_reader r;
    section_reader(s, PLAN_SEC_FUSED, &r);
    for (int32_t i = 0; i < d->n_layers; i++) {
        ir_node *n = &d->layers[i].node;
        uint32_t count = kiln_reader_u32(&r);
        if (r.failed || count > 4096 || (uint64_t)count * 4 > r.len - r.pos)
            return CORRUPT("fused section: layer '%s' lists %u names", n->name, count);
        n->n_fused = (int32_t)count;
        n->fused_from = count ? kiln_arena_alloc(a, sizeof(char *) * count) : NULL;
        if (count && !n->fused_from) return KILN_ERR_OUT_OF_MEMORY;
        for (uint32_t k = 0; k < count; k++)
            KILN_TRY(get_str(s, kiln_reader_u32(&r), "fused layer name", &n->fused_from[k]));
    }
    if (r.pos != r.len) return CORRUPT("fused section has %zu trailing bytes", r.len - r.pos);
    return KILN_OK;
}

/* Profiles: per profile and input, min <= opt <= max <= the input's recorded (largest)
 * shape; dimensions of one rank each. */
static kiln_status read_profiles(const sections *s, kiln_arena *a, plan_desc *d)
{
    if (!s->have[PLAN_SEC_PROFILES]) return KILN_OK;
    kiln_reader r;
    section_reader(s, PLAN_SEC_PROFILES, &r);
    uint32_t np = kiln_reader_u32(&r), ni = kiln_reader_u32(&r);
    if (r.failed || np == 0 || np > KILN_MAX_PROFILES || ni != (uint32_t)d->n_inputs)
        return CORRUPT("profiles section: %u profiles of %u inputs (the engine has %d inputs)", np,
                       ni, d->n_inputs);
    size_t cells = (size_t)np * ni + 1;
    d->prof_min = kiln_arena_alloc(a, sizeof(kiln_dims) * cells);
    d->prof_opt = kiln_arena_alloc(a, sizeof(kiln_dims) * cells);
    d->prof_max = kiln_arena_alloc(a, sizeof(kiln_dims) * cells);
    if (!d->prof_min || !d->prof_opt || !d->prof_max) return KILN_ERR_OUT_OF_MEMORY;
    for (uint32_t q = 0; q < np; q++)
        for (uint32_t i = 0; i < ni; i++) {
            const plan_tensor *t = &d->tensors[d->inputs[i]];
            size_t at = (size_t)q * ni + i;
            kiln_dims *r3[3] = {&d->prof_min[at], &d->prof_opt[at], &d->prof_max[at]};
            for (int j = 0; j < 3; j++) {
                r3[j]->rank = t->shape.rank;
                for (int32_t k = 0; k < t->shape.rank; k++) r3[j]->d[k] = kiln_reader_i64(&r);
            }
            if (r.failed) return CORRUPT("profiles section is truncated");
            for (int32_t k = 0; k < t->shape.rank; k++)
                if (!(0 <= r3[0]->d[k] && r3[0]->d[k] <= r3[1]->d[k] &&
                      r3[1]->d[k] <= r3[2]->d[k] && r3[2]->d[k] <= t->shape.d[k]))
                    return CORRUPT("profile %u: input '%s' dimension %d has min %lld, opt %lld, "
                                   "max %lld for a tensor recorded with %lld",
                                   q, t->name, k, (long long)r3[0]->d[k], (long long)r3[1]->d[k],
                                   (long long)r3[2]->d[k], (long long)t->shape.d[k]);
        }
    if (r.pos != r.len) return CORRUPT("profiles section has %zu trailing bytes", r.len - r.pos);
    d->n_profiles = (int32_t)np;
    return KILN_OK;
}

kiln_status plan_read(const void *data, size_t size, kiln_arena *a, plan_desc *d)
{
    sections s;
    kiln_strmap names;
    memset(&names, 0, sizeof names);
    memset(d, 0, sizeof *d);
    kiln_status st = read_header(data, size, &s, &d->features);
    if (st) return st;
    uint64_t missing = d->features & ~kiln_cpu_features();
    if (missing) {
        char need[256], have[256];
        kiln_cpu_features_str(missing, need, sizeof need);
        kiln_cpu_features_str(kiln_cpu_features(), have, sizeof have);
        return kiln_error(KILN_ERR_DEVICE,
                          "the plan needs CPU features this machine lacks: %s (this CPU has: %s); "
                          "build the plan on this machine",
                          need, have);
    }
    KILN_CHECK(read_tensors(&s, a, d, &names));
    KILN_CHECK(read_layers(&s, a, d));
    KILN_CHECK(read_io(&s, a, d));
    KILN_CHECK(read_fused(&s, a, d));
    KILN_CHECK(read_profiles(&s, a, d));
    KILN_CHECK(read_memory_and_build(&s, d));
    KILN_CHECK(check_dataflow(d, a));
    KILN_CHECK(check_arena(d));
fail:
    kiln_strmap_free(&names);
    return st;
}
