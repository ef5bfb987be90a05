/* context.c - execution contexts: activation memory, bindings by name, and the run loop.
 * Everything a run needs is allocated when the context is created; a run allocates
 * nothing. */
#include <string.h>

#include "runtime/engine.h"

struct kiln_context {
    kiln_engine *e;
    uint8_t *arena;      /* engine's arena_bytes, 64-byte aligned */
    ir_tensor *tensors;  /* per engine tensor: dtype, shape, where its data lives */
    void **bound;        /* per engine tensor: the caller's buffer for I/O tensors */
    ir_tensor *in, *out; /* scratch for one layer's tensor lists */
    int32_t threads;
};

kiln_status kiln_context_create(kiln_engine *e, kiln_context **out)
{
    if (!e || !out)
        return kiln_error(KILN_ERR_INVALID_ARGUMENT, "kiln_context_create: NULL argument");
    *out = NULL;
    kiln_status st = KILN_OK;
    kiln_context *c = kiln_calloc(1, sizeof *c);
    if (!c) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory creating a context");
    c->e = e;
    c->threads = e->d.threads;
    size_t nt = (size_t)e->d.n_tensors + 1;
    KILN_CHECK(kiln_alloc_checked((void **)&c->tensors, nt, sizeof *c->tensors, "context tensors"));
    KILN_CHECK(kiln_alloc_checked((void **)&c->bound, nt, sizeof *c->bound, "context bindings"));
    KILN_CHECK(
        kiln_alloc_checked((void **)&c->in, (size_t)e->max_in + 1, sizeof *c->in, "context"));
    KILN_CHECK(
        kiln_alloc_checked((void **)&c->out, (size_t)e->max_out + 1, sizeof *c->out, "context"));
    if (e->d.arena_bytes) {
        c->arena = kiln_aligned_alloc((size_t)e->d.arena_bytes, PLAN_ALIGN);
        if (!c->arena) {
            st = kiln_error(KILN_ERR_OUT_OF_MEMORY,
                            "out of memory allocating a %llu-byte activation arena",
                            (unsigned long long)e->d.arena_bytes);
            goto fail;
        }
    }
    for (int32_t i = 0; i < e->d.n_tensors; i++) {
        const plan_tensor *t = &e->d.tensors[i];
        c->tensors[i].dtype = t->dtype;
        c->tensors[i].shape = t->shape;
        c->tensors[i].layout = t->layout;
        if (t->flags & PLAN_T_CONSTANT)
            c->tensors[i].data = (void *)t->data;
        else if (!(t->flags & (PLAN_T_INPUT | PLAN_T_OUTPUT)))
            c->tensors[i].data = c->arena + t->offset;
    }
    *out = c;
    return KILN_OK;
fail:
    kiln_context_destroy(c);
    return st;
}

void kiln_context_destroy(kiln_context *c)
{
    if (!c) return;
    kiln_aligned_free(c->arena);
    kiln_free(c->tensors);
    kiln_free(c->bound);
    kiln_free(c->in);
    kiln_free(c->out);
    kiln_free(c);
}

static kiln_status find_io(const kiln_context *c, const char *name, int32_t *t)
{
    if (!c || !name) return kiln_error(KILN_ERR_INVALID_ARGUMENT, "context or tensor name is NULL");
    *t = kiln_strmap_get(&c->e->by_name, name);
    if (*t < 0) return kiln_error(KILN_ERR_NOT_FOUND, "the engine has no tensor '%s'", name);
    return KILN_OK;
}

kiln_status kiln_context_set_input_shape(kiln_context *c, const char *name, const kiln_dims *shape)
{
    int32_t t = -1;
    KILN_TRY(find_io(c, name, &t));
    if (!shape) return kiln_error(KILN_ERR_INVALID_ARGUMENT, "input '%s': shape is NULL", name);
    const plan_tensor *pt = &c->e->d.tensors[t];
    if (!(pt->flags & PLAN_T_INPUT))
        return kiln_error(KILN_ERR_INVALID_ARGUMENT, "tensor '%s' is not an input", name);
    if (!kiln_dims_equal(shape, &pt->shape)) {
        char a[KILN_DIMS_STR_MAX], b[KILN_DIMS_STR_MAX];
        return kiln_error(KILN_ERR_SHAPE,
                          "input '%s': the engine was built for shape %s, got %s (this engine "
                          "has static shapes)",
                          name, kiln_dims_str(&pt->shape, a, sizeof a),
                          kiln_dims_str(shape, b, sizeof b));
    }
    return KILN_OK;
}

kiln_status kiln_context_tensor_shape(const kiln_context *c, const char *name, kiln_dims *shape)
{
    int32_t t = -1;
    KILN_TRY(find_io(c, name, &t));
    if (!shape) return kiln_error(KILN_ERR_INVALID_ARGUMENT, "shape is NULL");
    *shape = c->tensors[t].shape;
    return KILN_OK;
}

kiln_status kiln_context_set_tensor(kiln_context *c, const char *name, void *data)
{
    int32_t t = -1;
    KILN_TRY(find_io(c, name, &t));
    if (!(c->e->d.tensors[t].flags & (PLAN_T_INPUT | PLAN_T_OUTPUT)))
        return kiln_error(KILN_ERR_INVALID_ARGUMENT,
                          "tensor '%s' is neither an input nor an output of the engine", name);
    if (!data && c->e->d.tensors[t].nbytes)
        return kiln_error(KILN_ERR_INVALID_ARGUMENT, "tensor '%s': buffer is NULL", name);
    c->bound[t] = data;
    /* A constant output keeps feeding layers from the weights; runs copy it out. */
    if (!(c->e->d.tensors[t].flags & PLAN_T_CONSTANT)) c->tensors[t].data = data;
    return KILN_OK;
}

kiln_status kiln_context_set_threads(kiln_context *c, int32_t threads)
{
    if (!c) return kiln_error(KILN_ERR_INVALID_ARGUMENT, "context is NULL");
    if (threads < 0 || threads > 1024)
        return kiln_error(KILN_ERR_INVALID_ARGUMENT, "thread count %d is outside 0..1024", threads);
    c->threads = threads ? threads : c->e->d.threads;
    return KILN_OK;
}

kiln_status kiln_context_run(kiln_context *c)
{
    if (!c) return kiln_error(KILN_ERR_INVALID_ARGUMENT, "context is NULL");
    const plan_desc *d = &c->e->d;
    for (int32_t i = 0; i < d->n_inputs + d->n_outputs; i++) {
        int32_t t = i < d->n_inputs ? d->inputs[i] : d->outputs[i - d->n_inputs];
        if (!c->bound[t] && d->tensors[t].nbytes)
            return kiln_error(KILN_ERR_STATE, "%s '%s' is not bound (kiln_context_set_tensor)",
                              i < d->n_inputs ? "input" : "output", d->tensors[t].name);
    }
    backend_exec x = {.threads = c->threads ? c->threads : kiln_cpu_threads()};
    for (int32_t i = 0; i < d->n_layers; i++) {
        const plan_layer *l = &d->layers[i];
        const ir_node *n = &l->node;
        for (int32_t k = 0; k < n->n_in; k++) {
            if (n->in[k] < 0)
                memset(&c->in[k], 0, sizeof c->in[k]);
            else
                c->in[k] = c->tensors[n->in[k]];
        }
        for (int32_t k = 0; k < n->n_out; k++) c->out[k] = c->tensors[n->out[k]];
        kiln_status st = l->k->run(n, c->in, n->n_in, c->out, n->n_out, &x);
        if (st) return kiln_error_prefix(st, "running layer %d: ", i);
    }
    /* An output no layer writes (a constant) is copied out. */
    for (int32_t i = 0; i < d->n_outputs; i++) {
        const plan_tensor *t = &d->tensors[d->outputs[i]];
        if (t->flags & PLAN_T_CONSTANT) memcpy(c->bound[d->outputs[i]], t->data, (size_t)t->nbytes);
    }
    return KILN_OK;
}
