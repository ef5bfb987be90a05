/* context.c - execution contexts: activation memory, bindings by name, and the run loop.
 * Everything a run needs is allocated when the context is created; a run allocates
 * nothing. */
#include <string.h>

#include "runtime/engine.h"

struct kiln_context {
    kiln_engine *e;
    uint8_t *arena;      /* engine's arena_bytes, 64-byte aligned */
    bool own_arena;      /* false: memory the caller gave (kiln_context_set_memory) */
    ir_tensor *tensors;  /* per engine tensor: dtype, current shape, where its data lives */
    void **bound;        /* per engine tensor: the caller's buffer for I/O tensors */
    ir_tensor *in, *out; /* scratch for one layer's tensor lists */
    int32_t threads;
    void *scratch; /* kernels' scratch: the most any layer needs with scratch_threads */
    size_t scratch_bytes;
    int32_t scratch_threads;
    int32_t profile;
    bool stale; /* input shapes changed since the other tensors' shapes were inferred */
};

/* Points every activation at its place in the arena (NULL while there is none). */
static void place_activations(kiln_context *c)
{
    const plan_desc *d = &c->e->d;
    for (int32_t i = 0; i < d->n_tensors; i++) {
        const plan_tensor *t = &d->tensors[i];
        if (!(t->flags & (PLAN_T_CONSTANT | PLAN_T_INPUT | PLAN_T_OUTPUT)))
            c->tensors[i].data = c->arena ? c->arena + t->offset : NULL;
    }
}

/* Input `i`'s range in profile `p` (a static engine: its recorded shape). */
static void input_range(const kiln_engine *e, int32_t p, int32_t i, const kiln_dims **min,
                        const kiln_dims **opt, const kiln_dims **max)
{
    const plan_desc *d = &e->d;
    if (d->n_profiles == 0) {
        *min = *opt = *max = &d->tensors[d->inputs[i]].shape;
        return;
    }
    size_t at = (size_t)p * (size_t)d->n_inputs + (size_t)i;
    *min = &d->prof_min[at];
    *opt = &d->prof_opt[at];
    *max = &d->prof_max[at];
}

/* Every input at profile `p`'s largest shapes. */
static void select_profile(kiln_context *c, int32_t p)
{
    const plan_desc *d = &c->e->d;
    c->profile = p;
    for (int32_t i = 0; i < d->n_inputs; i++) {
        const kiln_dims *min, *opt, *max;
        input_range(c->e, p, i, &min, &opt, &max);
        ir_tensor *t = &c->tensors[d->inputs[i]];
        if (!kiln_dims_equal(&t->shape, max)) c->stale = true;
        t->shape = *max;
    }
}

static int32_t effective_threads(const kiln_context *c)
{
    return c->threads ? c->threads : kiln_cpu_threads();
}

/* Sizes the kernels' scratch for `threads` threads: the most any layer needs at the
 * engine's recorded (largest) shapes. Allocated when the context is made or given more
 * threads, never during a run. */
static kiln_status size_scratch(kiln_context *c, int32_t threads)
{
    const plan_desc *d = &c->e->d;
    size_t need = 0;
    for (int32_t i = 0; i < d->n_layers; i++) {
        const plan_layer *l = &d->layers[i];
        if (!l->k->scratch) continue;
        const ir_node *n = &l->node;
        for (int32_t k = 0; k < n->n_in; k++) {
            memset(&c->in[k], 0, sizeof c->in[k]);
            if (n->in[k] < 0) continue;
            const plan_tensor *t = &d->tensors[n->in[k]];
            c->in[k] = (ir_tensor){t->dtype, t->shape, (void *)t->data, t->layout};
        }
        for (int32_t k = 0; k < n->n_out; k++) {
            const plan_tensor *t = &d->tensors[n->out[k]];
            c->out[k] = (ir_tensor){t->dtype, t->shape, NULL, t->layout};
        }
        size_t b = l->k->scratch(n, c->in, n->n_in, c->out, n->n_out, threads);
        if (b > need) need = b;
    }
    if (need > c->scratch_bytes) {
        void *p = kiln_aligned_alloc(need, PLAN_ALIGN);
        if (!p)
            return kiln_error(KILN_ERR_OUT_OF_MEMORY,
                              "out of memory allocating %zu bytes of kernel scratch", need);
        kiln_aligned_free(c->scratch);
        c->scratch = p;
        c->scratch_bytes = need;
    }
    c->scratch_threads = threads;
    return KILN_OK;
}

static kiln_status context_new(kiln_engine *e, bool with_memory, kiln_context **out)
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
    if (e->d.arena_bytes && with_memory) {
        c->own_arena = true;
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
        if (t->flags & PLAN_T_CONSTANT) c->tensors[i].data = (void *)t->data;
    }
    place_activations(c);
    select_profile(c, 0);
    KILN_CHECK(size_scratch(c, effective_threads(c)));
    *out = c;
    return KILN_OK;
fail:
    kiln_context_destroy(c);
    return st;
}

kiln_status kiln_context_create(kiln_engine *e, kiln_context **out)
{
    return context_new(e, true, out);
}

kiln_status kiln_context_create_without_memory(kiln_engine *e, kiln_context **out)
{
    return context_new(e, false, out);
}

kiln_status kiln_context_set_memory(kiln_context *c, void *memory, size_t bytes)
{
    if (!c) return kiln_error(KILN_ERR_INVALID_ARGUMENT, "context is NULL");
    size_t need = (size_t)c->e->d.arena_bytes;
    if (c->own_arena)
        return kiln_error(KILN_ERR_STATE, "the context has memory of its own (it was made by "
                                          "kiln_context_create, not ..._without_memory)");
    if (need && !memory)
        return kiln_error(KILN_ERR_INVALID_ARGUMENT, "memory is NULL; the engine needs %zu bytes",
                          need);
    if (bytes < need)
        return kiln_error(KILN_ERR_INVALID_ARGUMENT,
                          "%zu bytes of memory given; the engine needs %zu "
                          "(kiln_engine_arena_bytes)",
                          bytes, need);
    if ((uintptr_t)memory % PLAN_ALIGN)
        return kiln_error(KILN_ERR_INVALID_ARGUMENT, "memory at %p is not %u-byte aligned", memory,
                          PLAN_ALIGN);
    c->arena = memory;
    place_activations(c);
    if (need) c->stale = true; /* shape layers' values lived in the old memory */
    return KILN_OK;
}

kiln_status kiln_context_set_profile(kiln_context *c, int32_t profile)
{
    if (!c) return kiln_error(KILN_ERR_INVALID_ARGUMENT, "context is NULL");
    int32_t n = kiln_engine_num_profiles(c->e);
    if (profile < 0 || profile >= n)
        return kiln_error(KILN_ERR_INVALID_ARGUMENT, "profile %d: the engine has %d profile%s",
                          profile, n, n == 1 ? "" : "s");
    select_profile(c, profile);
    return KILN_OK;
}

int32_t kiln_context_profile(const kiln_context *c) { return c ? c->profile : -1; }

void kiln_context_destroy(kiln_context *c)
{
    if (!c) return;
    if (c->own_arena) kiln_aligned_free(c->arena);
    kiln_aligned_free(c->scratch);
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
    const plan_desc *d = &c->e->d;
    int32_t i = 0;
    while (i < d->n_inputs && d->inputs[i] != t) i++;
    if (i == d->n_inputs)
        return kiln_error(KILN_ERR_INVALID_ARGUMENT, "tensor '%s' is not an input", name);
    const kiln_dims *min, *opt, *max;
    input_range(c->e, c->profile, i, &min, &opt, &max);
    char a[KILN_DIMS_STR_MAX], b[KILN_DIMS_STR_MAX];
    if (shape->rank != min->rank)
        return kiln_error(KILN_ERR_SHAPE,
                          "input '%s': shape %s has rank %d; the engine takes rank %d (%s)", name,
                          kiln_dims_str(shape, a, sizeof a), shape->rank, min->rank,
                          kiln_dims_str(max, b, sizeof b));
    for (int32_t k = 0; k < shape->rank; k++) {
        if (shape->d[k] >= min->d[k] && shape->d[k] <= max->d[k]) continue;
        if (min->d[k] == max->d[k] && kiln_engine_num_profiles(c->e) > 1)
            return kiln_error(KILN_ERR_SHAPE,
                              "input '%s': dimension %d is %lld; profile %d fixes it at %lld "
                              "(shape %s; kiln_context_set_profile picks another profile)",
                              name, k, (long long)shape->d[k], c->profile, (long long)min->d[k],
                              kiln_dims_str(max, b, sizeof b));
        if (min->d[k] == max->d[k])
            return kiln_error(KILN_ERR_SHAPE,
                              "input '%s': dimension %d is %lld; the engine was built for %lld "
                              "there (shape %s)",
                              name, k, (long long)shape->d[k], (long long)min->d[k],
                              kiln_dims_str(max, b, sizeof b));
        return kiln_error(KILN_ERR_SHAPE,
                          "input '%s': dimension %d is %lld; profile %d allows %lld..%lld "
                          "(shapes %s to %s)",
                          name, k, (long long)shape->d[k], c->profile, (long long)min->d[k],
                          (long long)max->d[k], kiln_dims_str(min, a, sizeof a),
                          kiln_dims_str(max, b, sizeof b));
    }
    if (!kiln_dims_equal(&c->tensors[t].shape, shape)) c->stale = true;
    c->tensors[t].shape = *shape;
    return KILN_OK;
}

/* The layer's tensor lists from the context's tensors. */
static void gather(kiln_context *c, const ir_node *n)
{
    for (int32_t k = 0; k < n->n_in; k++) {
        if (n->in[k] < 0)
            memset(&c->in[k], 0, sizeof c->in[k]);
        else
            c->in[k] = c->tensors[n->in[k]];
    }
    for (int32_t k = 0; k < n->n_out; k++) c->out[k] = c->tensors[n->out[k]];
}

/* Infers every tensor's shape from the inputs' in plan order, evaluating shape layers
 * (their values feed later inference), and checks each tensor fits the bytes the engine
 * planned for it (its shape at the largest input shapes). */
static kiln_status infer_shapes(kiln_context *c)
{
    const plan_desc *d = &c->e->d;
    for (int32_t i = 0; i < d->n_layers; i++) {
        const ir_node *n = &d->layers[i].node;
        gather(c, n);
        for (int32_t k = 0; k < n->n_out; k++) memset(&c->out[k].shape, 0, sizeof c->out[k].shape);
        ir_infer x = {.node = n, .n_in = n->n_in, .n_out = n->n_out, .in = c->in, .out = c->out};
        kiln_status st = n->op->infer(&x);
        if (st) return kiln_error_prefix(st, "inferring shapes for the inputs given: ");
        for (int32_t k = 0; k < n->n_out; k++) {
            int32_t t = n->out[k];
            const plan_tensor *pt = &d->tensors[t];
            int64_t cnt, bytes;
            char a[KILN_DIMS_STR_MAX], b[KILN_DIMS_STR_MAX];
            /* The storage's bytes: a blocked tensor's channels padded to the block. */
            if (c->out[k].dtype != pt->dtype ||
                !ir_layout_numel(pt->layout, &c->out[k].shape, &cnt) ||
                !kiln_mul_ok(cnt, (int64_t)kiln_dtype_size(pt->dtype), &bytes) ||
                (uint64_t)bytes > pt->nbytes)
                return ir_node_error(
                    n, KILN_ERR_SHAPE,
                    "for the inputs given, output '%s' would be %s %s; the engine planned %s %s "
                    "(%llu bytes) for it",
                    pt->name, kiln_dtype_name(c->out[k].dtype),
                    kiln_dims_str(&c->out[k].shape, a, sizeof a), kiln_dtype_name(pt->dtype),
                    kiln_dims_str(&pt->shape, b, sizeof b), (unsigned long long)pt->nbytes);
            c->tensors[t].shape = c->out[k].shape;
        }
        if (!d->shape_layer[i]) continue;
        for (int32_t k = 0; k < n->n_out; k++) {
            c->out[k] = c->tensors[n->out[k]];
            const plan_tensor *pt = &d->tensors[n->out[k]];
            if (c->out[k].data) continue;
            if (pt->flags & PLAN_T_OUTPUT)
                return kiln_error(KILN_ERR_STATE,
                                  "output '%s' is computed from shapes: bind it "
                                  "(kiln_context_set_tensor) before shapes are inferred",
                                  pt->name);
            return kiln_error(KILN_ERR_STATE, "the context has no activation memory "
                                              "(kiln_context_set_memory) to compute shapes in");
        }
        kiln_status st2 = n->op->eval(n, c->in, n->n_in, c->out, n->n_out);
        if (st2) return kiln_error_prefix(st2, "computing shapes for the inputs given: ");
    }
    c->stale = false;
    return KILN_OK;
}

kiln_status kiln_context_tensor_shape(const kiln_context *cc, const char *name, kiln_dims *shape)
{
    int32_t t = -1;
    KILN_TRY(find_io(cc, name, &t));
    if (!shape) return kiln_error(KILN_ERR_INVALID_ARGUMENT, "shape is NULL");
    /* Inference is a cache of the input shapes: it changes what the context shows, not
     * what it is. */
    kiln_context *c = (kiln_context *)cc;
    if (c->stale) KILN_TRY(infer_shapes(c));
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
    int32_t old = c->threads;
    c->threads = threads ? threads : c->e->d.threads;
    if (effective_threads(c) > c->scratch_threads) {
        kiln_status st = size_scratch(c, effective_threads(c));
        if (st) c->threads = old;
        return st;
    }
    return KILN_OK;
}

kiln_status kiln_context_run(kiln_context *c)
{
    if (!c) return kiln_error(KILN_ERR_INVALID_ARGUMENT, "context is NULL");
    const plan_desc *d = &c->e->d;
    if (!c->arena && d->arena_bytes)
        return kiln_error(KILN_ERR_STATE, "the context has no activation memory "
                                          "(kiln_context_set_memory)");
    for (int32_t i = 0; i < d->n_inputs + d->n_outputs; i++) {
        int32_t t = i < d->n_inputs ? d->inputs[i] : d->outputs[i - d->n_inputs];
        if (!c->bound[t] && d->tensors[t].nbytes)
            return kiln_error(KILN_ERR_STATE, "%s '%s' is not bound (kiln_context_set_tensor)",
                              i < d->n_inputs ? "input" : "output", d->tensors[t].name);
    }
    if (c->stale) KILN_TRY(infer_shapes(c));
    /* Threads from the process's budget, so that contexts running at once share the cores
     * instead of each starting a full team; the scratch was sized for the most. */
    int32_t want = effective_threads(c);
    if (want > c->scratch_threads) want = c->scratch_threads;
    backend_exec x = {.threads = kiln_threads_acquire(want),
                      .scratch = c->scratch,
                      .scratch_bytes = c->scratch_bytes};
    for (int32_t i = 0; i < d->n_layers; i++) {
        const plan_layer *l = &d->layers[i];
        const ir_node *n = &l->node;
        gather(c, n);
        x.data = l->data >= 0 ? d->tensors[l->data].data : NULL;
        x.data_bytes = l->data >= 0 ? d->tensors[l->data].nbytes : 0;
        kiln_status st = l->k->run(n, c->in, n->n_in, c->out, n->n_out, &x);
        if (st) {
            kiln_threads_release(x.threads);
            return kiln_error_prefix(st, "running layer %d: ", i);
        }
    }
    kiln_threads_release(x.threads);
    /* An output no layer writes (a constant) is copied out. */
    for (int32_t i = 0; i < d->n_outputs; i++) {
        const plan_tensor *t = &d->tensors[d->outputs[i]];
        if (t->flags & PLAN_T_CONSTANT) memcpy(c->bound[d->outputs[i]], t->data, (size_t)t->nbytes);
    }
    return KILN_OK;
}
