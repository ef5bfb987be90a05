/* kernels.c - the builder's kernel step: for each layer the backend's candidates, the one
 * chosen, and the data it keeps in the plan (weights prepacked for its micro-kernel), which
 * becomes a constant of the graph that only that layer's kernel reads. */
#include <stdio.h>
#include <string.h>

#include "backends/backend.h"
#include "build/build.h"
#include "build/tactics.h"

/* The layer's tensors as kernels see them at build time (constants with their data). */
static kiln_status layer_tensors(const ir_graph *g, const ir_node *n, ir_tensor *in, ir_tensor *out)
{
    for (int32_t k = 0; k < n->n_in; k++) {
        memset(&in[k], 0, sizeof in[k]);
        if (n->in[k] < 0) continue;
        const ir_value *v = &g->values[n->in[k]];
        in[k] = (ir_tensor){v->dtype, v->shape, (void *)v->data, v->layout};
    }
    for (int32_t k = 0; k < n->n_out; k++) {
        const ir_value *v = &g->values[n->out[k]];
        out[k] = (ir_tensor){v->dtype, v->shape, NULL, v->layout};
    }
    return KILN_OK;
}

/* Runs `k`'s prepare for node `id` and adds its bytes as a u8 constant. */
static kiln_status prepare(ir_graph *g, int32_t id, const backend_kernel *k, const ir_tensor *in,
                           const ir_tensor *out, int32_t *value)
{
    kiln_buf b;
    memset(&b, 0, sizeof b);
    const ir_node *n = &g->nodes[id];
    kiln_status st = k->prepare(n, in, n->n_in, out, n->n_out, &b);
    if (st == KILN_OK && b.failed) st = KILN_ERR_OUT_OF_MEMORY;
    if (st == KILN_OK) {
        char name[256];
        snprintf(name, sizeof name, "%s#%s", n->name, k->name);
        for (int i = 2; ir_graph_find_value(g, name) >= 0; i++)
            snprintf(name, sizeof name, "%s#%s.%d", n->name, k->name, i);
        kiln_dims s = {1, {(int64_t)b.len}};
        st = ir_graph_add_constant(g, name, KILN_DTYPE_U8, &s, b.len ? (const void *)b.data : "",
                                   b.len, true, value);
        if (st == KILN_OK) g->values[*value].shape_known = true;
    }
    kiln_buf_free(&b);
    return st;
}

/* The candidate `cands` index to use: the first, the cache's choice, or the fastest when
 * timed. */
static kiln_status pick(const ir_node *n, const ir_tensor *in, const ir_tensor *out,
                        const backend_kernel *const *cands, int32_t nc, const build_tactics *t,
                        int32_t *best, int32_t *timed, int32_t *cached)
{
    *best = 0;
    /* The reference kernel is the fallback, never a tactic worth timing. */
    int32_t n_fast = 0;
    while (n_fast < nc && strcmp(cands[n_fast]->name, "ref") != 0) n_fast++;
    if (n_fast < 2) return KILN_OK;
    uint64_t key = tactic_key(n, in, n->n_in, out, n->n_out, t->threads);
    const char *hit = t->cache ? tactic_cache_find(t->cache, key) : NULL;
    for (int32_t i = 0; hit && i < n_fast; i++)
        if (strcmp(cands[i]->name, hit) == 0) {
            *best = i;
            (*cached)++;
            return KILN_OK;
        }
    if (!t->timing) return KILN_OK;
    uint64_t best_ns = UINT64_MAX;
    for (int32_t i = 0; i < n_fast; i++) {
        uint64_t ns;
        KILN_TRY(tactic_time(cands[i], n, in, n->n_in, out, n->n_out, t->threads, best_ns, &ns));
        kiln_log(KILN_LOG_VERBOSE, "layer '%s' (%s): tactic %s %.3f ms", n->name, n->op->name,
                 cands[i]->name, (double)ns / 1e6);
        if (ns < best_ns) {
            best_ns = ns;
            *best = i;
        }
    }
    (*timed)++;
    if (t->cache) KILN_TRY(tactic_cache_put(t->cache, key, cands[*best]->name, best_ns));
    return KILN_OK;
}

kiln_status build_choose_kernels(ir_graph *g, const kiln_backend *be, const int32_t *order,
                                 int32_t n_order, const build_tactics *tactics,
                                 const backend_kernel **chosen, int32_t *data)
{
    int32_t timed = 0, cached = 0;
    kiln_status st = KILN_OK;
    ir_tensor *in = NULL, *out = NULL;
    int32_t max_in = 1, max_out = 1;
    for (int32_t s = 0; s < n_order; s++) {
        const ir_node *n = &g->nodes[order[s]];
        if (n->n_in > max_in) max_in = n->n_in;
        if (n->n_out > max_out) max_out = n->n_out;
    }
    KILN_CHECK(kiln_alloc_checked((void **)&in, (size_t)max_in, sizeof *in, "kernel choice"));
    KILN_CHECK(kiln_alloc_checked((void **)&out, (size_t)max_out, sizeof *out, "kernel choice"));
    for (int32_t s = 0; s < n_order; s++) {
        int32_t id = order[s];
        const ir_node *n = &g->nodes[id];
        KILN_CHECK(layer_tensors(g, n, in, out));
        const backend_kernel *cands[16];
        int32_t nc = be->candidates(n, in, n->n_in, out, n->n_out, cands, 16);
        if (nc == 0) {
            st = ir_node_error(n, KILN_ERR_UNSUPPORTED, "no %s kernel runs this layer", be->name);
            goto fail;
        }
        /* The backend orders them by expected speed; timing may choose another. */
        int32_t b = 0;
        st = pick(n, in, out, cands, nc, tactics, &b, &timed, &cached);
        if (st) {
            if (st != KILN_ERR_OUT_OF_MEMORY)
                kiln_error_prefix(st, "node '%s' (%s): timing its kernels: ", n->name, n->op->name);
            goto fail;
        }
        chosen[id] = cands[b];
        data[id] = -1;
        if (cands[b]->prepare) {
            st = prepare(g, id, cands[b], in, out, &data[id]);
            if (st) {
                if (st != KILN_ERR_OUT_OF_MEMORY)
                    kiln_error_prefix(st, "node '%s' (%s): kernel %s: ", n->name, n->op->name,
                                      cands[b]->name);
                goto fail;
            }
        }
        kiln_log(KILN_LOG_VERBOSE, "layer '%s' (%s): kernel %s of %d candidate%s%s", n->name,
                 n->op->name, cands[b]->name, nc, nc == 1 ? "" : "s",
                 data[id] >= 0 ? ", data prepared" : "");
    }
    if (timed || cached)
        kiln_log(KILN_LOG_INFO, "tactics: %d layer%s timed, %d from the timing cache", timed,
                 timed == 1 ? "" : "s", cached);
fail:
    kiln_free(in);
    kiln_free(out);
    return st;
}
