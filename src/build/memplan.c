/* memplan.c - activation memory planning: values first share buffers where an op allows
 * it (aliases such as Reshape, unary elementwise ops in place), then each buffer gets an
 * offset in one arena by liveness, greedily (a few orders tried, tightest gap first). */
#include <stdlib.h>
#include <string.h>

#include "build/build.h"

/* One arena value. Values sharing bytes form a buffer, named by its first value (the
 * root); the root's item holds the buffer's lifetime and offset. */
typedef struct item {
    int32_t value;
    int32_t root;          /* item index of the buffer's first value */
    int32_t first, last;   /* steps of the producer and the last reader */
    uint64_t bytes, size;  /* size: bytes rounded up to 64 */
    uint64_t offset, best; /* where the current strategy and the best one put it */
} item;

/* Placement orders to try; ties fall back to size, then execution order, so plans are
 * deterministic. */
static int tie(const item *x, const item *y)
{
    if (x->size != y->size) return x->size > y->size ? -1 : 1;
    if (x->first != y->first) return x->first < y->first ? -1 : 1;
    return x->value < y->value ? -1 : x->value > y->value;
}

static int by_size_desc(const void *a, const void *b)
{
    return tie(*(const item *const *)a, *(const item *const *)b);
}

static int by_lifetime_desc(const void *a, const void *b)
{
    const item *x = *(const item *const *)a, *y = *(const item *const *)b;
    int32_t lx = x->last - x->first, ly = y->last - y->first;
    if (lx != ly) return lx > ly ? -1 : 1;
    return tie(x, y);
}

static int by_area_desc(const void *a, const void *b)
{
    const item *x = *(const item *const *)a, *y = *(const item *const *)b;
    double ax = (double)x->size * (x->last - x->first + 1);
    double ay = (double)y->size * (y->last - y->first + 1);
    if (ax != ay) return ax > ay ? -1 : 1;
    return tie(x, y);
}

static int by_first_asc(const void *a, const void *b)
{
    const item *x = *(const item *const *)a, *y = *(const item *const *)b;
    if (x->first != y->first) return x->first < y->first ? -1 : 1;
    return tie(x, y);
}

static int by_offset(const void *a, const void *b)
{
    const item *x = *(const item *const *)a, *y = *(const item *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return 0;
}

/* Whether node `n` at step `s` may write output 0 into input 0's buffer: the op allows
 * it, both are arena values of the same size, no other input reads the same buffer, and
 * (in place) nothing reads the buffer after this node. An alias never changes bytes, so
 * it needs no such condition; the buffer's lifetime grows to cover its readers. */
static int32_t share_with(const ir_node *n, int32_t s, const int32_t *item_of, const item *items)
{
    uint32_t f = n->op->flags & (IR_OP_ALIAS | IR_OP_INPLACE);
    if (!f || n->n_in < 1 || n->n_out < 1 || n->in[0] < 0) return -1;
    int32_t a = item_of[n->in[0]], o = item_of[n->out[0]];
    if (a < 0 || o < 0 || items[a].bytes != items[o].bytes) return -1;
    int32_t root = items[a].root;
    for (int32_t k = 1; k < n->n_in; k++)
        if (n->in[k] >= 0 && item_of[n->in[k]] >= 0 && items[item_of[n->in[k]]].root == root)
            return -1;
    if (!(f & IR_OP_ALIAS) && items[root].last != s) return -1;
    return root;
}

/* Best fit: the lowest offset of the tightest gap between buffers alive at the same
 * time as `it` (placed[] holds them) that fits it, else the end of them all. First fit:
 * the lowest gap that fits. */
static uint64_t fit(const item *it, const item **placed, int32_t nc, bool first_fit)
{
    qsort(placed, (size_t)nc, sizeof *placed, by_offset);
    uint64_t end = 0, best = UINT64_MAX, best_gap = UINT64_MAX;
    for (int32_t j = 0; j < nc; j++) {
        if (placed[j]->offset > end) {
            uint64_t gap = placed[j]->offset - end;
            if (gap >= it->size && gap < best_gap) {
                best = end;
                best_gap = gap;
                if (first_fit) break;
            }
        }
        uint64_t e = placed[j]->offset + placed[j]->size;
        if (e > end) end = e;
    }
    return best != UINT64_MAX ? best : end;
}

/* Places the buffers in the order of `roots`; returns the arena size. */
static uint64_t place_all(item **roots, int32_t n, const item **placed, bool first_fit)
{
    uint64_t arena = 0;
    for (int32_t i = 0; i < n; i++) {
        item *it = roots[i];
        int32_t nc = 0;
        for (int32_t j = 0; j < i; j++)
            if (!(roots[j]->last < it->first || it->last < roots[j]->first))
                placed[nc++] = roots[j];
        it->offset = fit(it, placed, nc, first_fit);
        if (it->offset + it->size > arena) arena = it->offset + it->size;
    }
    return arena;
}

/* No placement beats the most bytes alive at one step. */
static uint64_t peak_live(item **roots, int32_t n, int32_t n_order, uint64_t *live)
{
    uint64_t peak = 0, sum = 0;
    memset(live, 0, sizeof *live * ((size_t)n_order + 1));
    for (int32_t i = 0; i < n; i++) {
        live[roots[i]->first] += roots[i]->size;
        live[roots[i]->last + 1] -= roots[i]->size; /* wraps, and wraps back in the sum */
    }
    for (int32_t s = 0; s < n_order; s++) {
        sum += live[s];
        if (sum > peak) peak = sum;
    }
    return peak;
}

kiln_status build_memplan(const ir_graph *g, const int32_t *order, int32_t n_order,
                          uint64_t *offsets, build_memplan_result *r)
{
    kiln_status st = KILN_OK;
    int32_t *item_of = NULL;
    item *items = NULL;
    item **roots = NULL;
    const item **placed = NULL;
    uint64_t *live = NULL;
    int32_t n_items = 0, n_roots = 0;
    memset(r, 0, sizeof *r);
    for (int32_t v = 0; v < g->n_values; v++) offsets[v] = UINT64_MAX;
    size_t cap = (size_t)g->n_values + 1;
    KILN_CHECK(kiln_alloc_checked((void **)&item_of, cap, sizeof *item_of, "memory plan"));
    KILN_CHECK(kiln_alloc_checked((void **)&items, cap, sizeof *items, "memory plan"));
    KILN_CHECK(kiln_alloc_checked((void **)&roots, cap, sizeof *roots, "memory plan"));
    KILN_CHECK(kiln_alloc_checked((void **)&placed, cap, sizeof *placed, "memory plan"));
    KILN_CHECK(
        kiln_alloc_checked((void **)&live, (size_t)n_order + 2, sizeof *live, "memory plan"));
    /* Arena values: activations that are not network outputs (those live in caller
     * buffers, as inputs do; constants live in the plan). */
    for (int32_t v = 0; v < g->n_values; v++) item_of[v] = -1;
    for (int32_t s = 0; s < n_order; s++) {
        const ir_node *n = &g->nodes[order[s]];
        for (int32_t k = 0; k < n->n_out; k++) {
            const ir_value *v = &g->values[n->out[k]];
            if (v->kind != IR_VALUE_ACTIVATION || v->is_output) continue;
            item *it = &items[n_items];
            it->value = n->out[k];
            it->root = n_items;
            it->first = it->last = s;
            it->bytes = build_value_bytes(v);
            it->size = (it->bytes + 63) & ~(uint64_t)63;
            r->activation_bytes += it->bytes;
            item_of[n->out[k]] = n_items++;
        }
    }
    for (int32_t s = 0; s < n_order; s++) {
        const ir_node *n = &g->nodes[order[s]];
        for (int32_t k = 0; k < n->n_in; k++) {
            if (n->in[k] < 0 || item_of[n->in[k]] < 0) continue;
            item *it = &items[item_of[n->in[k]]];
            if (s > it->last) it->last = s;
        }
    }
    /* Buffers, in execution order: a value joins its input's buffer when share_with
     * allows; the root's `last` becomes the buffer's last reader. Every value that could
     * read the buffer later has joined it by step s, so "last == s" at step s is final. */
    for (int32_t s = 0; s < n_order; s++) {
        const ir_node *n = &g->nodes[order[s]];
        int32_t root = share_with(n, s, item_of, items);
        if (root < 0) continue;
        item *o = &items[item_of[n->out[0]]];
        o->root = root;
        if (o->last > items[root].last) items[root].last = o->last;
        if (n->op->flags & IR_OP_ALIAS)
            r->aliased++;
        else
            r->in_place++;
    }
    for (int32_t i = 0; i < n_items; i++)
        if (items[i].root == i) roots[n_roots++] = &items[i];
    r->buffers = n_roots;
    /* Greedy placement is a heuristic: sharing makes some buffers long-lived, and no one
     * order suits every graph. Try a few, keep the smallest arena, stop at the bound. */
    static int (*const orders[])(const void *, const void *) = {by_size_desc, by_lifetime_desc,
                                                                by_area_desc, by_first_asc};
    r->peak_bytes = peak_live(roots, n_roots, n_order, live);
    r->arena_bytes = UINT64_MAX;
    for (int32_t k = 0; k < 8 && r->arena_bytes > r->peak_bytes; k++) {
        qsort(roots, (size_t)n_roots, sizeof *roots, orders[k / 2]);
        uint64_t arena = place_all(roots, n_roots, placed, k % 2 == 1);
        if (arena >= r->arena_bytes) continue;
        r->arena_bytes = arena;
        for (int32_t i = 0; i < n_roots; i++) roots[i]->best = roots[i]->offset;
    }
    for (int32_t i = 0; i < n_items; i++) offsets[items[i].value] = items[items[i].root].best;
fail:
    kiln_free(item_of);
    kiln_free(items);
    kiln_free(roots);
    kiln_free(placed);
    kiln_free(live);
    return st;
}
