/* plan_write.c - serializes a plan_desc to the version-1 plan format. */
#include <string.h>

#include "runtime/plan.h"

/* Deduplicated NUL-terminated strings; offset 0 is the empty string. */
typedef struct strtab {
    kiln_buf buf;
    kiln_strmap map;
} strtab;

static kiln_status str_off(strtab *t, const char *s, uint32_t *off)
{
    if (!s) s = "";
    int32_t found = kiln_strmap_get(&t->map, s);
    if (found >= 0) {
        *off = (uint32_t)found;
        return KILN_OK;
    }
    if (t->buf.len > INT32_MAX - KILN_MAX_NAME)
        return kiln_error(KILN_ERR_UNSUPPORTED, "plan string table exceeds 2 GiB");
    *off = (uint32_t)t->buf.len;
    kiln_buf_write(&t->buf, s, strlen(s) + 1);
    if (t->buf.failed) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory writing a plan");
    return kiln_strmap_put(&t->map, s, (int32_t)*off);
}

static kiln_status write_tensors(const plan_desc *d, strtab *st, kiln_buf *b)
{
    kiln_buf_u32(b, (uint32_t)d->n_tensors);
    kiln_buf_u32(b, 0);
    for (int32_t i = 0; i < d->n_tensors; i++) {
        const plan_tensor *t = &d->tensors[i];
        uint32_t name;
        KILN_TRY(str_off(st, t->name, &name));
        kiln_buf_u32(b, name);
        kiln_buf_u32(b, (uint32_t)t->dtype);
        kiln_buf_u32(b, t->flags);
        kiln_buf_u32(b, (uint32_t)t->shape.rank);
        for (int k = 0; k < KILN_MAX_RANK; k++)
            kiln_buf_i64(b, k < t->shape.rank ? t->shape.d[k] : 0);
        kiln_buf_u64(b, t->offset);
        kiln_buf_u64(b, t->nbytes);
    }
    return KILN_OK;
}

static kiln_status write_layers(const plan_desc *d, strtab *st, kiln_buf *b)
{
    kiln_buf_u32(b, (uint32_t)d->n_layers);
    kiln_buf_u32(b, 0);
    for (int32_t i = 0; i < d->n_layers; i++) {
        const plan_layer *l = &d->layers[i];
        const ir_node *n = &l->node;
        uint32_t name, op, kernel;
        KILN_TRY(str_off(st, n->name, &name));
        KILN_TRY(str_off(st, n->op->name, &op));
        KILN_TRY(str_off(st, l->kernel, &kernel));
        kiln_buf_u32(b, name);
        kiln_buf_u32(b, op);
        kiln_buf_u32(b, kernel);
        kiln_buf_u32(b, 0); /* precision: fp32 */
        kiln_buf_u32(b, (uint32_t)n->n_in);
        kiln_buf_u32(b, (uint32_t)n->n_out);
        kiln_buf_u32(b, (uint32_t)n->n_attrs);
        kiln_buf_u32(b, (uint32_t)(l->data + 1)); /* 0: no prepared data */
        for (int32_t k = 0; k < n->n_in; k++) kiln_buf_u32(b, (uint32_t)n->in[k]);
        for (int32_t k = 0; k < n->n_out; k++) kiln_buf_u32(b, (uint32_t)n->out[k]);
        kiln_buf_align(b, 8);
        for (int32_t k = 0; k < n->n_attrs; k++) {
            const kiln_attr *a = &n->attrs[k];
            uint32_t an, as = 0;
            KILN_TRY(str_off(st, a->name, &an));
            if (a->type == KILN_ATTR_STRING) KILN_TRY(str_off(st, a->s, &as));
            kiln_buf_u32(b, an);
            kiln_buf_u32(b, (uint32_t)a->type);
            kiln_buf_i64(b, a->type == KILN_ATTR_INT ? a->i : 0);
            kiln_buf_f32(b, a->type == KILN_ATTR_FLOAT ? a->f : 0.0f);
            kiln_buf_u32(b, as);
            int32_t count =
                (a->type == KILN_ATTR_INTS || a->type == KILN_ATTR_FLOATS) ? a->count : 0;
            kiln_buf_u32(b, (uint32_t)count);
            kiln_buf_u32(b, 0);
            if (a->type == KILN_ATTR_INTS)
                kiln_buf_write(b, a->ints, sizeof(int64_t) * (size_t)count);
            else if (a->type == KILN_ATTR_FLOATS)
                kiln_buf_write(b, a->floats, sizeof(float) * (size_t)count);
            kiln_buf_align(b, 8);
        }
    }
    return KILN_OK;
}

kiln_status plan_write(const plan_desc *d, kiln_buf *out)
{
    kiln_status st = KILN_OK;
    strtab strs;
    memset(&strs, 0, sizeof strs);
    kiln_buf sec[PLAN_SEC_COUNT_];
    memset(sec, 0, sizeof sec);
    uint32_t empty;
    KILN_CHECK(str_off(&strs, "", &empty));

    KILN_CHECK(write_tensors(d, &strs, &sec[PLAN_SEC_TENSORS]));
    KILN_CHECK(write_layers(d, &strs, &sec[PLAN_SEC_LAYERS]));

    kiln_buf *io = &sec[PLAN_SEC_IO];
    kiln_buf_u32(io, (uint32_t)d->n_inputs);
    kiln_buf_u32(io, (uint32_t)d->n_outputs);
    for (int32_t i = 0; i < d->n_inputs; i++) kiln_buf_u32(io, (uint32_t)d->inputs[i]);
    for (int32_t i = 0; i < d->n_outputs; i++) kiln_buf_u32(io, (uint32_t)d->outputs[i]);

    kiln_buf_u64(&sec[PLAN_SEC_MEMORY], d->arena_bytes);
    kiln_buf_u64(&sec[PLAN_SEC_MEMORY], d->activation_bytes);

    uint32_t dev, info;
    KILN_CHECK(str_off(&strs, d->device, &dev));
    KILN_CHECK(str_off(&strs, d->build_info, &info));
    kiln_buf *bs = &sec[PLAN_SEC_BUILD];
    kiln_buf_u32(bs, (uint32_t)d->threads);
    kiln_buf_u32(bs, d->precisions);
    kiln_buf_u32(bs, dev);
    kiln_buf_u32(bs, info);

    /* Written only when some layer was fused, so unfused plans stay as they were. */
    bool any_fused = false;
    for (int32_t i = 0; i < d->n_layers; i++) any_fused |= d->layers[i].node.n_fused > 0;
    if (any_fused) {
        kiln_buf *fb = &sec[PLAN_SEC_FUSED];
        for (int32_t i = 0; i < d->n_layers; i++) {
            const ir_node *n = &d->layers[i].node;
            kiln_buf_u32(fb, (uint32_t)n->n_fused);
            for (int32_t k = 0; k < n->n_fused; k++) {
                uint32_t off;
                KILN_CHECK(str_off(&strs, n->fused_from[k], &off));
                kiln_buf_u32(fb, off);
            }
        }
    }

    /* Written only when some tensor is not plain, so plain plans stay as they were. */
    bool any_layout = false;
    for (int32_t i = 0; i < d->n_tensors; i++)
        any_layout |= d->tensors[i].layout != IR_LAYOUT_PLAIN;
    if (any_layout) {
        kiln_buf *lb = &sec[PLAN_SEC_LAYOUTS];
        kiln_buf_u32(lb, (uint32_t)d->n_tensors);
        kiln_buf_u32(lb, 0);
        for (int32_t i = 0; i < d->n_tensors; i++) kiln_buf_u32(lb, (uint32_t)d->tensors[i].layout);
    }

    /* Written only for dynamic engines: static plans stay as they were. */
    if (d->n_profiles > 0) {
        kiln_buf *pb = &sec[PLAN_SEC_PROFILES];
        kiln_buf_u32(pb, (uint32_t)d->n_profiles);
        kiln_buf_u32(pb, (uint32_t)d->n_inputs);
        for (int32_t q = 0; q < d->n_profiles; q++)
            for (int32_t i = 0; i < d->n_inputs; i++) {
                size_t at = (size_t)q * (size_t)d->n_inputs + (size_t)i;
                const kiln_dims *r[3] = {&d->prof_min[at], &d->prof_opt[at], &d->prof_max[at]};
                for (int j = 0; j < 3; j++)
                    for (int32_t k = 0; k < r[j]->rank; k++) kiln_buf_u64(pb, (uint64_t)r[j]->d[k]);
            }
    }

    kiln_buf *w = &sec[PLAN_SEC_WEIGHTS];
    for (int32_t i = 0; i < d->n_tensors; i++) {
        const plan_tensor *t = &d->tensors[i];
        if (!(t->flags & PLAN_T_CONSTANT) || (t->flags & PLAN_T_ELIDED)) continue;
        if (!w->failed && w->len != t->offset) { /* a failed write is reported below */
            st = kiln_error(KILN_ERR_INTERNAL, "plan: weights of '%s' are not in offset order",
                            t->name);
            goto fail;
        }
        kiln_buf_write(w, t->data, t->nbytes);
        kiln_buf_align(w, PLAN_ALIGN);
    }
    sec[PLAN_SEC_STRINGS] = strs.buf;
    memset(&strs.buf, 0, sizeof strs.buf);

    for (int i = 1; i < PLAN_SEC_COUNT_; i++)
        if (sec[i].failed) {
            st = kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory writing a plan");
            goto fail;
        }

    /* Layout: header, section table, then each section 64-byte aligned: the required
     * ones, then the optional ones present, by id. */
    uint32_t ids[PLAN_SEC_COUNT_], n_sec = 0;
    for (uint32_t id = 1; id < PLAN_SEC_COUNT_; id++)
        if (id <= PLAN_SEC_REQUIRED_LAST || (id == PLAN_SEC_FUSED && any_fused) ||
            (id == PLAN_SEC_LAYOUTS && any_layout) ||
            (id == PLAN_SEC_PROFILES && d->n_profiles > 0))
            ids[n_sec++] = id;
    size_t base = out->len;
    kiln_buf_zeros(out, PLAN_HEADER_BYTES + PLAN_SECTION_ENTRY_BYTES * n_sec);
    uint64_t offs[PLAN_SEC_COUNT_];
    for (uint32_t i = 0; i < n_sec; i++) {
        kiln_buf_align(out, PLAN_ALIGN);
        offs[i] = out->len - base;
        kiln_buf_write(out, sec[ids[i]].data, sec[ids[i]].len);
    }
    if (out->failed) {
        st = kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory writing a plan");
        goto fail;
    }
    uint8_t *h = out->data + base;
    uint64_t file_size = out->len - base;
    for (uint32_t i = 0; i < n_sec; i++) {
        uint8_t *e = h + PLAN_HEADER_BYTES + PLAN_SECTION_ENTRY_BYTES * i;
        uint32_t id = ids[i], zero = 0;
        uint64_t size = sec[ids[i]].len;
        memcpy(e, &id, 4);
        memcpy(e + 4, &zero, 4);
        memcpy(e + 8, &offs[i], 8);
        memcpy(e + 16, &size, 8);
    }
    memcpy(h, PLAN_MAGIC, 8);
    uint32_t fmt = PLAN_FORMAT_VERSION, ver = (uint32_t)kiln_version_number();
    memcpy(h + 8, &fmt, 4);
    memcpy(h + 12, &ver, 4);
    memcpy(h + 16, &d->features, 8);
    memcpy(h + 24, &file_size, 8);
    memcpy(h + 36, &n_sec, 4);
    uint32_t body_crc = kiln_crc32c(0, h + PLAN_HEADER_BYTES, file_size - PLAN_HEADER_BYTES);
    memcpy(h + 32, &body_crc, 4);
    uint32_t head_crc = plan_header_crc(h);
    memcpy(h + 40, &head_crc, 4);
fail:
    for (int i = 0; i < PLAN_SEC_COUNT_; i++) kiln_buf_free(&sec[i]);
    kiln_buf_free(&strs.buf);
    kiln_strmap_free(&strs.map);
    return st;
}
