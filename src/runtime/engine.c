/* engine.c - loading, saving and querying engines. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/engine.h"

static void release_mem(void *mem, size_t size, bool mapped)
{
    if (!mem) return;
    if (mapped)
        munmap(mem, size);
    else
        kiln_aligned_free(mem);
}

kiln_status engine_from_plan(void *mem, size_t size, bool mapped, kiln_engine **out)
{
    kiln_status st = KILN_OK;
    *out = NULL;
    kiln_engine *e = kiln_calloc(1, sizeof *e);
    if (!e) {
        release_mem(mem, size, mapped);
        return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory creating an engine");
    }
    e->mem = mem;
    e->size = size;
    e->mapped = mapped;
    kiln_arena_init(&e->arena);
    KILN_CHECK(plan_read(mem, size, &e->arena, &e->d));
    for (int32_t i = 0; i < e->d.n_tensors; i++) {
        KILN_CHECK(kiln_strmap_put(&e->by_name, e->d.tensors[i].name, i));
        if ((e->d.tensors[i].flags & (PLAN_T_CONSTANT | PLAN_T_ELIDED)) == PLAN_T_CONSTANT)
            e->weight_bytes += e->d.tensors[i].nbytes;
    }
    for (int32_t i = 0; i < e->d.n_layers; i++) {
        const ir_node *n = &e->d.layers[i].node;
        if (n->n_in > e->max_in) e->max_in = n->n_in;
        if (n->n_out > e->max_out) e->max_out = n->n_out;
    }
    *out = e;
    return KILN_OK;
fail:
    kiln_engine_destroy(e);
    return st;
}

void kiln_engine_destroy(kiln_engine *e)
{
    if (!e) return;
    release_mem(e->mem, e->size, e->mapped);
    kiln_arena_free(&e->arena);
    kiln_strmap_free(&e->by_name);
    kiln_free(e);
}

kiln_status kiln_engine_load_memory(const void *data, size_t size, kiln_engine **out)
{
    if (!out || (!data && size))
        return kiln_error(KILN_ERR_INVALID_ARGUMENT, "kiln_engine_load_memory: NULL argument");
    *out = NULL;
    /* Copied so that weights are 64-byte aligned whatever the caller's buffer. */
    void *mem = kiln_aligned_alloc(size, PLAN_ALIGN);
    if (!mem)
        return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory copying a %zu-byte plan", size);
    if (size) memcpy(mem, data, size);
    return engine_from_plan(mem, size, false, out);
}

kiln_status kiln_engine_load(const char *path, kiln_engine **out)
{
    if (!path || !out)
        return kiln_error(KILN_ERR_INVALID_ARGUMENT, "kiln_engine_load: NULL argument");
    *out = NULL;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return kiln_error(KILN_ERR_IO, "cannot open plan '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return kiln_error(KILN_ERR_IO, "plan '%s' is not a regular file", path);
    }
    size_t size = (size_t)sb.st_size;
    if (size < PLAN_HEADER_BYTES) {
        close(fd);
        return kiln_error(KILN_ERR_CORRUPT_PLAN,
                          "plan '%s': corrupt plan: %zu bytes is shorter than the header", path,
                          size);
    }
    void *mem = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (mem == MAP_FAILED)
        return kiln_error(KILN_ERR_IO, "cannot map plan '%s': %s", path, strerror(errno));
    kiln_status st = engine_from_plan(mem, size, true, out);
    if (st) kiln_error_prefix(st, "plan '%s': ", path);
    return st;
}

kiln_status kiln_engine_serialize(const kiln_engine *e, void **data, size_t *size)
{
    if (!e || !data || !size)
        return kiln_error(KILN_ERR_INVALID_ARGUMENT, "kiln_engine_serialize: NULL argument");
    *data = kiln_malloc(e->size);
    if (!*data) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory serializing a plan");
    memcpy(*data, e->mem, e->size);
    *size = e->size;
    return KILN_OK;
}

kiln_status kiln_engine_save(const kiln_engine *e, const char *path)
{
    if (!e || !path)
        return kiln_error(KILN_ERR_INVALID_ARGUMENT, "kiln_engine_save: NULL argument");
    /* Write a temporary file beside the target and rename it, so a reader never sees a
     * half-written plan. */
    size_t n = strlen(path);
    char *tmp = kiln_malloc(n + 32);
    if (!tmp) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory");
    snprintf(tmp, n + 32, "%s.tmp.%ld", path, (long)getpid());
    kiln_status st = KILN_OK;
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        st = kiln_error(KILN_ERR_IO, "cannot write '%s': %s", tmp, strerror(errno));
        goto done;
    }
    size_t w = fwrite(e->mem, 1, e->size, f);
    int err = ferror(f);
    if (fclose(f) != 0 || w != e->size || err) {
        st = kiln_error(KILN_ERR_IO, "writing '%s' failed: %s", tmp, strerror(errno));
        remove(tmp);
        goto done;
    }
    if (rename(tmp, path) != 0) {
        st = kiln_error(KILN_ERR_IO, "cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
        remove(tmp);
    }
done:
    kiln_free(tmp);
    return st;
}

int32_t kiln_engine_num_io(const kiln_engine *e) { return e ? e->d.n_inputs + e->d.n_outputs : 0; }

const char *kiln_engine_io_name(const kiln_engine *e, int32_t i)
{
    if (!e || i < 0 || i >= e->d.n_inputs + e->d.n_outputs) return NULL;
    int32_t t = i < e->d.n_inputs ? e->d.inputs[i] : e->d.outputs[i - e->d.n_inputs];
    return e->d.tensors[t].name;
}

kiln_io_mode kiln_engine_io_mode(const kiln_engine *e, const char *name)
{
    if (!e || !name) return KILN_IO_NONE;
    int32_t t = kiln_strmap_get(&e->by_name, name);
    if (t < 0) return KILN_IO_NONE;
    uint32_t f = e->d.tensors[t].flags;
    if (f & PLAN_T_INPUT) return KILN_IO_INPUT;
    if (f & PLAN_T_OUTPUT) return KILN_IO_OUTPUT;
    return KILN_IO_NONE;
}

int32_t kiln_engine_num_profiles(const kiln_engine *e)
{
    return e ? (e->d.n_profiles > 0 ? e->d.n_profiles : 1) : 0;
}

kiln_status kiln_engine_profile_shape(const kiln_engine *e, int32_t profile, const char *name,
                                      kiln_profile_bound bound, kiln_dims *shape)
{
    if (!e || !name || !shape)
        return kiln_error(KILN_ERR_INVALID_ARGUMENT, "kiln_engine_profile_shape: NULL argument");
    int32_t np = kiln_engine_num_profiles(e);
    if (profile < 0 || profile >= np)
        return kiln_error(KILN_ERR_INVALID_ARGUMENT, "profile %d: the engine has %d profile%s",
                          profile, np, np == 1 ? "" : "s");
    if (bound < KILN_PROFILE_MIN || bound > KILN_PROFILE_MAX)
        return kiln_error(KILN_ERR_INVALID_ARGUMENT, "unknown profile bound %d", (int)bound);
    int32_t t = kiln_strmap_get(&e->by_name, name);
    for (int32_t i = 0; t >= 0 && i < e->d.n_inputs; i++) {
        if (e->d.inputs[i] != t) continue;
        if (e->d.n_profiles == 0) {
            *shape = e->d.tensors[t].shape;
            return KILN_OK;
        }
        size_t at = (size_t)profile * (size_t)e->d.n_inputs + (size_t)i;
        *shape = bound == KILN_PROFILE_MIN   ? e->d.prof_min[at]
                 : bound == KILN_PROFILE_OPT ? e->d.prof_opt[at]
                                             : e->d.prof_max[at];
        return KILN_OK;
    }
    return kiln_error(KILN_ERR_NOT_FOUND, "the engine has no input '%s'", name);
}

kiln_status kiln_engine_tensor_info(const kiln_engine *e, const char *name, kiln_dtype *dtype,
                                    kiln_dims *shape)
{
    if (!e || !name)
        return kiln_error(KILN_ERR_INVALID_ARGUMENT, "kiln_engine_tensor_info: NULL argument");
    int32_t t = kiln_strmap_get(&e->by_name, name);
    if (t < 0) return kiln_error(KILN_ERR_NOT_FOUND, "the engine has no tensor '%s'", name);
    if (dtype) *dtype = e->d.tensors[t].dtype;
    if (shape) *shape = e->d.tensors[t].shape;
    return KILN_OK;
}

const char *kiln_engine_tensor_layout(const kiln_engine *e, const char *name)
{
    int32_t t = e && name ? kiln_strmap_get(&e->by_name, name) : -1;
    return t < 0 ? NULL : ir_layout_name(e->d.tensors[t].layout);
}

int32_t kiln_engine_num_layers(const kiln_engine *e) { return e ? e->d.n_layers : 0; }

kiln_status kiln_engine_layer_info(const kiln_engine *e, int32_t i, kiln_layer_info *info)
{
    if (!e || !info)
        return kiln_error(KILN_ERR_INVALID_ARGUMENT, "kiln_engine_layer_info: NULL argument");
    if (i < 0 || i >= e->d.n_layers)
        return kiln_error(KILN_ERR_NOT_FOUND, "layer index %d is outside 0..%d", i,
                          e->d.n_layers - 1);
    const plan_layer *l = &e->d.layers[i];
    info->name = l->node.name;
    info->op = l->node.op->name;
    info->kernel = l->kernel;
    info->precision = "fp32";
    info->n_inputs = l->node.n_in;
    info->n_outputs = l->node.n_out;
    return KILN_OK;
}

const char *kiln_engine_layer_input(const kiln_engine *e, int32_t i, int32_t k)
{
    if (!e || i < 0 || i >= e->d.n_layers) return NULL;
    const ir_node *n = &e->d.layers[i].node;
    if (k < 0 || k >= n->n_in) return NULL;
    return n->in[k] < 0 ? "" : e->d.tensors[n->in[k]].name;
}

const char *kiln_engine_layer_output(const kiln_engine *e, int32_t i, int32_t k)
{
    if (!e || i < 0 || i >= e->d.n_layers) return NULL;
    const ir_node *n = &e->d.layers[i].node;
    if (k < 0 || k >= n->n_out) return NULL;
    return e->d.tensors[n->out[k]].name;
}

size_t kiln_engine_arena_bytes(const kiln_engine *e) { return e ? (size_t)e->d.arena_bytes : 0; }
size_t kiln_engine_activation_bytes(const kiln_engine *e)
{
    return e ? (size_t)e->d.activation_bytes : 0;
}
size_t kiln_engine_weight_bytes(const kiln_engine *e) { return e ? e->weight_bytes : 0; }
int32_t kiln_engine_threads(const kiln_engine *e) { return e ? e->d.threads : 0; }
const char *kiln_engine_device(const kiln_engine *e) { return e ? e->d.device : ""; }
const char *kiln_engine_build_info(const kiln_engine *e) { return e ? e->d.build_info : ""; }

const char *kiln_engine_layer_fused_from(const kiln_engine *e, int32_t i, int32_t k)
{
    if (!e || i < 0 || i >= e->d.n_layers) return NULL;
    const ir_node *n = &e->d.layers[i].node;
    if (n->n_fused == 0) return k == 0 ? n->name : NULL;
    return k >= 0 && k < n->n_fused ? n->fused_from[k] : NULL;
}
