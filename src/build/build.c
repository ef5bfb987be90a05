/* build.c - kiln_build: network + config -> engine. Steps: copy the graph, fix input
 * shapes, verify, infer shapes (folding what is known), run the pass pipeline, give each
 * layer the layouts the backend wants (layout.c), choose a kernel per layer, plan
 * activation memory, write the plan and load it as the engine (so a built engine and a
 * loaded plan are the same thing). */
#include <stdio.h>
#include <string.h>

#include "backends/backend.h"
#include "build/build.h"
#include "build/config.h"
#include "build/tactics.h"
#include "ir/network.h"
#include "opt/opt.h"
#include "runtime/engine.h"

static bool pass_disabled(const char *name, const void *user)
{
    return config_pass_disabled((const kiln_config *)user, name);
}

/* Fills the plan description from the optimized graph. Arrays live in `a`. */
static kiln_status describe(const ir_graph *g, const kiln_config *cfg, const build_profiles *prof,
                            const int32_t *order, int32_t n_order, const backend_kernel **chosen,
                            const int32_t *kdata, const uint64_t *offsets, kiln_arena *a,
                            plan_desc *d)
{
    int32_t *tid = kiln_arena_alloc(a, sizeof(int32_t) * (size_t)(g->n_values + 1));
    if (!tid) return KILN_ERR_OUT_OF_MEMORY;
    for (int32_t v = 0; v < g->n_values; v++) tid[v] = -1;
    /* Tensors: every value a live layer touches, and every network input and output. */
    unsigned char *used = kiln_arena_alloc(a, (size_t)g->n_values + 1);
    if (!used) return KILN_ERR_OUT_OF_MEMORY;
    for (int32_t s = 0; s < n_order; s++) {
        const ir_node *n = &g->nodes[order[s]];
        for (int32_t k = 0; k < n->n_in; k++)
            if (n->in[k] >= 0) used[n->in[k]] = 1;
        for (int32_t k = 0; k < n->n_out; k++) used[n->out[k]] = 1;
        if (kdata[order[s]] >= 0) used[kdata[order[s]]] = 1;
    }
    for (int32_t i = 0; i < g->n_inputs; i++) used[g->inputs[i]] = 1;
    for (int32_t i = 0; i < g->n_outputs; i++) used[g->outputs[i]] = 1;
    int32_t nt = 0;
    for (int32_t v = 0; v < g->n_values; v++)
        if (used[v]) tid[v] = nt++;
    d->n_tensors = nt;
    d->tensors = kiln_arena_alloc(a, sizeof(plan_tensor) * (size_t)(nt + 1));
    if (!d->tensors) return KILN_ERR_OUT_OF_MEMORY;
    /* Constants that only prepared kernels read, through slots they do not look at, are left
     * out: their packed copy is what runs. */
    unsigned char *keep = kiln_arena_alloc(a, (size_t)g->n_values + 1);
    if (!keep) return KILN_ERR_OUT_OF_MEMORY;
    memset(keep, 0, (size_t)g->n_values + 1);
    for (int32_t v = 0; v < g->n_values; v++)
        if (g->values[v].is_output) keep[v] = 1;
    for (int32_t s = 0; s < n_order; s++) {
        const ir_node *n = &g->nodes[order[s]];
        const backend_kernel *k = chosen[order[s]];
        if (kdata[order[s]] >= 0) keep[kdata[order[s]]] = 1;
        for (int32_t j = 0; j < n->n_in; j++)
            if (n->in[j] >= 0 && !(kdata[order[s]] >= 0 && (k->prepared_inputs >> j) & 1))
                keep[n->in[j]] = 1;
    }
    uint64_t woff = 0;
    for (int32_t v = 0; v < g->n_values; v++) {
        if (tid[v] < 0) continue;
        const ir_value *val = &g->values[v];
        plan_tensor *t = &d->tensors[tid[v]];
        t->name = val->name;
        t->dtype = val->dtype;
        t->shape = val->shape;
        t->layout = val->layout;
        t->nbytes = build_value_bytes(val);
        if (val->kind == IR_VALUE_INPUT) t->flags |= PLAN_T_INPUT;
        if (val->is_output) t->flags |= PLAN_T_OUTPUT;
        if (val->kind == IR_VALUE_CONSTANT && !keep[v]) {
            t->flags |= PLAN_T_CONSTANT | PLAN_T_ELIDED;
        } else if (val->kind == IR_VALUE_CONSTANT) {
            t->flags |= PLAN_T_CONSTANT;
            t->data = val->data;
            t->offset = woff;
            woff = (woff + t->nbytes + PLAN_ALIGN - 1) & ~(uint64_t)(PLAN_ALIGN - 1);
        } else if (!t->flags) {
            t->offset = offsets[v];
            if (t->offset == UINT64_MAX)
                return kiln_error(KILN_ERR_INTERNAL, "activation '%s' got no arena offset",
                                  val->name);
        }
    }
    /* Layers in execution order, with kernels chosen by the backend. */
    d->n_layers = n_order;
    d->layers = kiln_arena_alloc(a, sizeof(plan_layer) * (size_t)(n_order + 1));
    if (!d->layers) return KILN_ERR_OUT_OF_MEMORY;
    for (int32_t s = 0; s < n_order; s++) {
        const ir_node *n = &g->nodes[order[s]];
        plan_layer *l = &d->layers[s];
        l->node = *n;
        l->node.in = kiln_arena_alloc(a, sizeof(int32_t) * (size_t)(n->n_in + 1));
        l->node.out = kiln_arena_alloc(a, sizeof(int32_t) * (size_t)(n->n_out + 1));
        if (!l->node.in || !l->node.out) return KILN_ERR_OUT_OF_MEMORY;
        for (int32_t k = 0; k < n->n_in; k++) l->node.in[k] = n->in[k] < 0 ? -1 : tid[n->in[k]];
        for (int32_t k = 0; k < n->n_out; k++) l->node.out[k] = tid[n->out[k]];
        l->k = chosen[order[s]];
        l->kernel = l->k->name;
        l->data = kdata[order[s]] >= 0 ? tid[kdata[order[s]]] : -1;
        d->features |= l->k->features;
    }
    d->n_inputs = g->n_inputs;
    d->n_outputs = g->n_outputs;
    d->inputs = kiln_arena_alloc(a, sizeof(int32_t) * (size_t)(g->n_inputs + 1));
    d->outputs = kiln_arena_alloc(a, sizeof(int32_t) * (size_t)(g->n_outputs + 1));
    if (!d->inputs || !d->outputs) return KILN_ERR_OUT_OF_MEMORY;
    for (int32_t i = 0; i < g->n_inputs; i++) d->inputs[i] = tid[g->inputs[i]];
    for (int32_t i = 0; i < g->n_outputs; i++) d->outputs[i] = tid[g->outputs[i]];
    d->n_profiles = prof->dynamic ? prof->n : 0;
    d->prof_min = prof->min;
    d->prof_opt = prof->opt;
    d->prof_max = prof->max;
    d->device = cfg->device;
    d->threads = cfg->threads;
    d->precisions = cfg->precisions;
    return KILN_OK;
}

kiln_status kiln_build(const kiln_network *net, const kiln_config *cfg_in, kiln_engine **out)
{
    if (!net || !out)
        return kiln_error(KILN_ERR_INVALID_ARGUMENT, "kiln_build: network or out is NULL");
    *out = NULL;
    kiln_config defaults;
    const kiln_config *cfg = cfg_in;
    if (!cfg) {
        config_defaults(&defaults);
        cfg = &defaults;
    }
    kiln_log_level old_cap = kiln_log_set_cap(cfg->log_level);
    kiln_status st = KILN_OK;
    ir_graph g;
    kiln_arena a;
    kiln_buf buf;
    memset(&buf, 0, sizeof buf);
    kiln_arena_init(&a);
    int32_t *order = NULL, n_order = 0, folded = 0, *kdata = NULL;
    const backend_kernel **chosen = NULL;
    tactic_cache cache;
    tactic_cache_init(&cache);
    uint64_t *offsets = NULL;
    plan_desc d;
    memset(&d, 0, sizeof d);

    st = ir_graph_clone(&net->g, &g);
    if (st) {
        kiln_log_set_cap(old_cap);
        return st;
    }
    int32_t layers_in = g.n_nodes;
    KILN_CHECK(ir_graph_verify(&g));
    build_profiles prof;
    KILN_CHECK(build_profiles_resolve(&g, cfg, &a, &prof));
    KILN_CHECK(build_profiles_probe(&g, &prof));
    KILN_CHECK(build_infer(&g, &folded));
    if (folded)
        kiln_log(KILN_LOG_INFO, "folded %d layer%s into constants at build time", folded,
                 folded == 1 ? "" : "s");
    KILN_CHECK(opt_run_pipeline(&g, pass_disabled, cfg));
    KILN_CHECK(build_profiles_check(&g, &prof));
    build_layout_result layouts;
    KILN_CHECK(build_layout(&g, backend_cpu(), &layouts));

    KILN_CHECK(kiln_alloc_checked((void **)&order, (size_t)g.n_nodes + 1, sizeof *order, "build"));
    KILN_CHECK(ir_graph_topo_order(&g, order, &n_order));
    KILN_CHECK(
        kiln_alloc_checked((void **)&chosen, (size_t)g.n_nodes + 1, sizeof *chosen, "build"));
    KILN_CHECK(kiln_alloc_checked((void **)&kdata, (size_t)g.n_nodes + 1, sizeof *kdata, "build"));
    if (cfg->timing_cache) KILN_CHECK(tactic_cache_load(&cache, cfg->timing_cache));
    build_tactics tactics = {.timing = !cfg->no_timing,
                             .threads = cfg->threads ? cfg->threads : kiln_cpu_threads(),
                             .cache = cfg->timing_cache ? &cache : NULL};
    KILN_CHECK(build_choose_kernels(&g, backend_cpu(), order, n_order, &tactics, chosen, kdata));
    KILN_CHECK(
        kiln_alloc_checked((void **)&offsets, (size_t)g.n_values + 1, sizeof *offsets, "build"));
    build_memplan_result mp;
    KILN_CHECK(build_memplan(&g, order, n_order, offsets, &mp));
    d.arena_bytes = mp.arena_bytes;
    d.activation_bytes = mp.activation_bytes;
    KILN_CHECK(describe(&g, cfg, &prof, order, n_order, chosen, kdata, offsets, &a, &d));

    char info[256];
    snprintf(info, sizeof info,
             "kiln=%s\nplan_format=%u\nnetwork_layers=%d\nengine_layers=%d\nfolded=%d\n",
             kiln_version(), PLAN_FORMAT_VERSION, layers_in, n_order, folded);
    d.build_info = info;
    KILN_CHECK(plan_write(&d, &buf));

    kiln_log(KILN_LOG_INFO,
             "engine: %d layers (network had %d); arena %llu bytes for %llu bytes of activations "
             "(%.1f%%; at least %llu are alive at once): %d buffers, %d aliased, %d in place",
             n_order, layers_in, (unsigned long long)d.arena_bytes,
             (unsigned long long)d.activation_bytes,
             d.activation_bytes ? 100.0 * (double)d.arena_bytes / (double)d.activation_bytes
                                : 100.0,
             (unsigned long long)mp.peak_bytes, mp.buffers, mp.aliased, mp.in_place);
    for (int32_t s = 0; s < n_order && kiln_log_enabled(KILN_LOG_VERBOSE); s++) {
        const plan_layer *l = &d.layers[s];
        char sh[KILN_DIMS_STR_MAX];
        const plan_tensor *o = &d.tensors[l->node.out[0]];
        const plan_tensor *i0 =
            l->node.n_in > 0 && l->node.in[0] >= 0 ? &d.tensors[l->node.in[0]] : NULL;
        bool shared = i0 && !i0->flags && !o->flags && i0->offset == o->offset && o->nbytes;
        kiln_log(KILN_LOG_VERBOSE, "layer %d '%s' (%s): kernel %s, fp32, output %s %s%s%s%s%s", s,
                 l->node.name, l->node.op->name, l->kernel, o->name,
                 kiln_dims_str(&o->shape, sh, sizeof sh), o->layout ? " " : "",
                 o->layout ? ir_layout_name(o->layout) : "",
                 shared ? (l->node.op->flags & IR_OP_ALIAS ? ", aliases " : ", in place of ") : "",
                 shared ? i0->name : "");
    }

    void *mem = kiln_aligned_alloc(buf.len, PLAN_ALIGN);
    if (!mem) {
        st = kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory holding a %zu-byte plan", buf.len);
        goto fail;
    }
    memcpy(mem, buf.data, buf.len);
    st = engine_from_plan(mem, buf.len, false, out);
    if (st) kiln_error_prefix(KILN_ERR_INTERNAL, "the plan just built does not load: ");
    if (st == KILN_OK && (st = tactic_cache_save(&cache)) != KILN_OK) {
        kiln_engine_destroy(*out);
        *out = NULL;
    }
fail:
    kiln_log_set_cap(old_cap);
    kiln_free(order);
    kiln_free(chosen);
    tactic_cache_free(&cache);
    kiln_free(kdata);
    kiln_free(offsets);
    kiln_buf_free(&buf);
    kiln_arena_free(&a);
    ir_graph_free(&g);
    return st;
}
