/* memplan.c - activation memory planning: offsets in one arena by liveness, placed
 * largest first into the tightest gap that fits (greedy by size, best fit). */
#include <stdlib.h>
#include <string.h>

#include "build/build.h"

typedef struct item {
    int32_t value;
    int32_t first, last; /* steps of the producer and the last consumer */
    uint64_t size, offset;
} item;

static int by_size_desc(const void *a, const void *b)
{
    const item *x = a, *y = b;
    if (x->size != y->size) return x->size > y->size ? -1 : 1;
    if (x->first != y->first) return x->first < y->first ? -1 : 1;
    return x->value < y->value ? -1 : x->value > y->value;
}

static int by_offset(const void *a, const void *b)
{
    const item *x = *(const item *const *)a, *y = *(const item *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return 0;
}

kiln_status build_memplan(const ir_graph *g, const int32_t *order, int32_t n_order,
                          uint64_t *offsets, uint64_t *arena_bytes, uint64_t *activation_bytes)
{
    kiln_status st = KILN_OK;
    int32_t *step_of = NULL;
    item *items = NULL;
    const item **placed = NULL;
    int32_t n_items = 0;
    *arena_bytes = 0;
    *activation_bytes = 0;
    for (int32_t v = 0; v < g->n_values; v++) offsets[v] = UINT64_MAX;
    KILN_CHECK(kiln_alloc_checked((void **)&step_of, (size_t)g->n_values + 1, sizeof *step_of,
                                  "memory plan"));
    KILN_CHECK(
        kiln_alloc_checked((void **)&items, (size_t)g->n_values + 1, sizeof *items, "memory plan"));
    KILN_CHECK(kiln_alloc_checked((void **)&placed, (size_t)g->n_values + 1, sizeof *placed,
                                  "memory plan"));
    for (int32_t v = 0; v < g->n_values; v++) step_of[v] = -1;
    for (int32_t s = 0; s < n_order; s++) {
        const ir_node *n = &g->nodes[order[s]];
        for (int32_t k = 0; k < n->n_out; k++) {
            const ir_value *v = &g->values[n->out[k]];
            if (v->kind != IR_VALUE_ACTIVATION || v->is_output) continue;
            item *it = &items[n_items];
            it->value = n->out[k];
            it->first = it->last = s;
            it->size = (build_value_bytes(v) + 63) & ~(uint64_t)63;
            step_of[n->out[k]] = n_items++;
        }
    }
    for (int32_t s = 0; s < n_order; s++) {
        const ir_node *n = &g->nodes[order[s]];
        for (int32_t k = 0; k < n->n_in; k++) {
            if (n->in[k] < 0 || step_of[n->in[k]] < 0) continue;
            item *it = &items[step_of[n->in[k]]];
            if (s > it->last) it->last = s;
        }
    }
    for (int32_t i = 0; i < n_items; i++)
        *activation_bytes += build_value_bytes(&g->values[items[i].value]);
    qsort(items, (size_t)n_items, sizeof *items, by_size_desc);
    for (int32_t i = 0; i < n_items; i++) {
        item *it = &items[i];
        int32_t nc = 0;
        for (int32_t j = 0; j < i; j++)
            if (!(items[j].last < it->first || it->last < items[j].first)) placed[nc++] = &items[j];
        qsort(placed, (size_t)nc, sizeof *placed, by_offset);
        uint64_t end = 0, best = UINT64_MAX, best_gap = UINT64_MAX;
        for (int32_t j = 0; j < nc; j++) {
            if (placed[j]->offset > end) {
                uint64_t gap = placed[j]->offset - end;
                if (gap >= it->size && gap < best_gap) {
                    best = end;
                    best_gap = gap;
                }
            }
            uint64_t e = placed[j]->offset + placed[j]->size;
            if (e > end) end = e;
        }
        it->offset = best != UINT64_MAX ? best : end;
        if (it->offset + it->size > *arena_bytes) *arena_bytes = it->offset + it->size;
        offsets[it->value] = it->offset;
    }
fail:
    kiln_free(step_of);
    kiln_free(items);
    kiln_free(placed);
    return st;
}
