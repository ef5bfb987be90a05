/* layout.c - the builder's layout step (docs/ARCHITECTURE.md, "Layouts"), after the pass
 * pipeline: each layer, in execution order, gets the layouts its backend asks for; a
 * kiln.Reorder layer goes wherever a value's layout differs from what a reader wants (one
 * per value and layout, shared by its readers), constants are stored in the layout asked
 * for, and reorder pairs that undo each other are then removed. */
#include <stdio.h>
#include <string.h>

#include "build/build.h"
#include "opt/opt.h"

#define N_LAYOUT_SLOTS 4 /* plain, nchw4c, nchw8c, nchw16c */

static int32_t layout_slot(ir_layout l)
{
    switch (l) {
    case IR_LAYOUT_NCHW4C: return 1;
    case IR_LAYOUT_NCHW8C: return 2;
    case IR_LAYOUT_NCHW16C: return 3;
    default: return 0;
    }
}

static bool is_reorder(const ir_node *n) { return strcmp(n->op->name, "kiln.Reorder") == 0; }

typedef struct step {
    ir_graph *g;
    const kiln_backend *be;
    build_layout_result *r;
    int32_t n_orig; /* values before the step: those that `cache` covers */
    int32_t *cache; /* [value * N_LAYOUT_SLOTS + slot]: the value holding it so, or -1 */
    ir_tensor *tin, *tout;
    ir_layout *want_in, *want_out;
} step;

/* "base::suffix", numbered when taken (as a value or a layer name). */
static const char *fresh_name(const ir_graph *g, const char *base, const char *suffix, char *buf,
                              size_t size)
{
    snprintf(buf, size, "%.200s::%s", base, suffix);
    for (int32_t k = 1;
         ir_graph_find_value(g, buf) >= 0 || kiln_strmap_get(&g->node_by_name, buf) >= 0; k++)
        snprintf(buf, size, "%.200s::%s%d", base, suffix, k);
    return buf;
}

/* Adds kiln.Reorder layer *node reading value v (in layout `from`) and writing a new value
 * *out ("v::<named>") in layout `to`. */
static kiln_status add_reorder(ir_graph *g, int32_t v, ir_layout from, ir_layout to,
                               ir_layout named, int32_t *node, int32_t *out)
{
    char vbuf[256], nbuf[256], suffix[32];
    const char *in[1] = {g->values[v].name};
    const char *outs[1] = {fresh_name(g, in[0], ir_layout_name(named), vbuf, sizeof vbuf)};
    snprintf(suffix, sizeof suffix, "reorder_%s", ir_layout_name(to));
    const kiln_attr attrs[2] = {KILN_ATTR_S("from", ir_layout_name(from)),
                                KILN_ATTR_S("to", ir_layout_name(to))};
    KILN_TRY(ir_graph_add_node(g, "kiln.Reorder", fresh_name(g, in[0], suffix, nbuf, sizeof nbuf),
                               in, 1, outs, 1, attrs, 2, node));
    KILN_TRY(opt_infer_node(g, *node));
    *out = g->nodes[*node].out[0];
    g->values[*out].layout = to;
    return KILN_OK;
}

/* The value holding activation v in layout `to` for reader `layer`: a shared reorder. */
static kiln_status reordered(step *s, int32_t v, ir_layout to, const char *layer, int32_t *out)
{
    int32_t *slot = &s->cache[(size_t)v * N_LAYOUT_SLOTS + (size_t)layout_slot(to)];
    if (*slot >= 0) {
        *out = *slot;
        return KILN_OK;
    }
    ir_layout from = s->g->values[v].layout;
    int32_t node;
    KILN_TRY(add_reorder(s->g, v, from, to, to, &node, out));
    *slot = *out;
    s->r->inserted++;
    kiln_log(KILN_LOG_VERBOSE, "layout: reorder '%s' (%s -> %s) of '%s' for layer '%s'",
             s->g->nodes[node].name, ir_layout_name(from), ir_layout_name(to), s->g->values[v].name,
             layer);
    return KILN_OK;
}

/* The value holding constant v in blocked layout `to`, reordered now; a constant of lower
 * rank than `rank` first gets leading 1s (the operand broadcasting reads is the same). */
static kiln_status stored_blocked(step *s, int32_t v, ir_layout to, int32_t rank, const ir_node *n,
                                  int32_t *out)
{
    ir_graph *g = s->g;
    int32_t *slot = &s->cache[(size_t)v * N_LAYOUT_SLOTS + (size_t)layout_slot(to)];
    if (*slot >= 0) {
        *out = *slot;
        return KILN_OK;
    }
    const ir_value src = g->values[v];
    kiln_dims shape = src.shape;
    if (shape.rank < rank) {
        int32_t lead = rank - shape.rank;
        for (int32_t d = rank - 1; d >= 0; d--) shape.d[d] = d < lead ? 1 : src.shape.d[d - lead];
        shape.rank = rank;
    }
    int64_t count;
    char sh[KILN_DIMS_STR_MAX], buf[256];
    if (!ir_layout_numel(to, &shape, &count))
        return ir_node_error(n, KILN_ERR_INTERNAL,
                             "the backend asks for constant '%s' (%s) in layout %s, which does not "
                             "fit it",
                             src.name, kiln_dims_str(&src.shape, sh, sizeof sh),
                             ir_layout_name(to));
    size_t bytes = (size_t)count * kiln_dtype_size(src.dtype);
    void *data = kiln_arena_alloc(&g->arena, bytes ? bytes : 1);
    if (!data) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory reordering '%s'", src.name);
    /* The reference Reorder of the op table does the work, as it would at run time. */
    const kiln_attr attrs[2] = {KILN_ATTR_S("from", "plain"),
                                KILN_ATTR_S("to", ir_layout_name(to))};
    ir_node reorder = {.name = src.name,
                       .op = ir_op_find("kiln.Reorder"),
                       .n_attrs = 2,
                       .attrs = (kiln_attr *)attrs};
    ir_tensor x = {src.dtype, shape, (void *)src.data, IR_LAYOUT_PLAIN};
    ir_tensor y = {src.dtype, shape, data, to};
    KILN_TRY(reorder.op->eval(&reorder, &x, 1, &y, 1));
    int32_t id;
    KILN_TRY(ir_graph_add_value(g, fresh_name(g, src.name, ir_layout_name(to), buf, sizeof buf),
                                IR_VALUE_CONSTANT, &id));
    ir_value *c = &g->values[id];
    c->dtype = src.dtype;
    c->shape = shape;
    c->shape_known = true;
    c->data = data;
    c->nbytes = bytes;
    c->layout = to;
    *slot = *out = id;
    s->r->constants++;
    kiln_log(KILN_LOG_VERBOSE, "layout: constant '%s' stored as '%s' (%s) for layer '%s'", src.name,
             c->name, ir_layout_name(to), n->name);
    return KILN_OK;
}

/* Checks that layout `l` asked for activation slot `what` k of layer n fits the tensor
 * (stored_blocked checks constants, after giving them leading 1s). */
static kiln_status check_want(const ir_node *n, const kiln_backend *be, const char *what, int32_t k,
                              ir_layout l, const ir_tensor *t)
{
    int64_t count;
    if (ir_layout_known(l) && (l == IR_LAYOUT_PLAIN || ir_layout_numel(l, &t->shape, &count)))
        return KILN_OK;
    char sh[KILN_DIMS_STR_MAX];
    return ir_node_error(n, KILN_ERR_INTERNAL,
                         "the %s backend asks for layout %s (code %d) of %s %d, shape %s, which "
                         "does not fit it",
                         be->name, ir_layout_name(l), (int)l, what, k,
                         kiln_dims_str(&t->shape, sh, sizeof sh));
}

/* Gives layer `id` the layouts it wants: reorders or stored copies for its inputs, the
 * layouts of its outputs; a network output stays plain, so a layer writing it blocked
 * writes a twin that a reorder turns into it. */
static kiln_status assign(step *s, int32_t id)
{
    ir_graph *g = s->g;
    ir_node *n = &g->nodes[id];
    for (int32_t k = 0; k < n->n_in; k++) {
        memset(&s->tin[k], 0, sizeof s->tin[k]);
        s->want_in[k] = IR_LAYOUT_PLAIN;
        if (n->in[k] < 0) continue;
        const ir_value *v = &g->values[n->in[k]];
        s->tin[k] = (ir_tensor){v->dtype, v->shape, (void *)v->data, v->layout};
    }
    for (int32_t k = 0; k < n->n_out; k++) {
        const ir_value *v = &g->values[n->out[k]];
        s->tout[k] = (ir_tensor){v->dtype, v->shape, NULL, IR_LAYOUT_PLAIN};
        s->want_out[k] = IR_LAYOUT_PLAIN;
    }
    if (is_reorder(n)) { /* what it says it converts: its own attributes */
        if (!ir_layout_parse(ir_attr_string(n, "from"), &s->want_in[0]) ||
            !ir_layout_parse(ir_attr_string(n, "to"), &s->want_out[0]))
            return ir_node_error(n, KILN_ERR_INVALID_GRAPH, "unknown layout in from or to");
    } else {
        KILN_TRY(s->be->layout(n, s->tin, n->n_in, s->tout, n->n_out, s->want_in, s->want_out));
    }
    /* Adding reorders may move g->nodes: from here on the layer is g->nodes[id]. */
    const int32_t n_in = n->n_in;
    bool blocked = false;
    for (int32_t k = 0; k < n_in; k++) {
        int32_t v = g->nodes[id].in[k];
        ir_layout want = s->want_in[k];
        if (v < 0) continue;
        bool constant = g->values[v].kind == IR_VALUE_CONSTANT;
        if (!constant) KILN_TRY(check_want(&g->nodes[id], s->be, "input", k, want, &s->tin[k]));
        if (v >= s->n_orig)
            return ir_node_error(&g->nodes[id], KILN_ERR_INTERNAL,
                                 "layout step: input %d was made by the step itself", k);
        blocked |= want != IR_LAYOUT_PLAIN;
        if (want == g->values[v].layout) continue;
        int32_t nv;
        if (constant && g->values[v].layout == IR_LAYOUT_PLAIN)
            KILN_TRY(stored_blocked(s, v, want, s->tout[0].shape.rank, &g->nodes[id], &nv));
        else
            KILN_TRY(reordered(s, v, want, g->nodes[id].name, &nv));
        g->nodes[id].in[k] = nv;
    }
    for (int32_t k = 0; k < g->nodes[id].n_out; k++) {
        ir_layout want = s->want_out[k];
        int32_t v = g->nodes[id].out[k];
        KILN_TRY(check_want(&g->nodes[id], s->be, "output", k, want, &s->tout[k]));
        if (want == IR_LAYOUT_PLAIN) continue;
        blocked = true;
        if (!g->values[v].is_output) {
            g->values[v].layout = want;
            continue;
        }
        /* Add reorder R: v -> twin, then swap: the layer writes the twin, R writes v. */
        int32_t r, twin;
        KILN_TRY(add_reorder(g, v, want, IR_LAYOUT_PLAIN, want, &r, &twin));
        ir_node *rn = &g->nodes[r];
        rn->in[0] = twin;
        rn->out[0] = v;
        g->nodes[id].out[k] = twin;
        g->values[twin].producer = id;
        g->values[twin].layout = want;
        g->values[v].producer = r;
        g->values[v].layout = IR_LAYOUT_PLAIN;
        s->r->inserted++;
        kiln_log(KILN_LOG_VERBOSE,
                 "layout: layer '%s' writes network output '%s' as '%s' (%s); reorder '%s' "
                 "makes it plain",
                 g->nodes[id].name, g->values[v].name, g->values[twin].name, ir_layout_name(want),
                 rn->name);
    }
    if (blocked && !is_reorder(&g->nodes[id])) s->r->blocked++;
    return KILN_OK;
}

/* Reorder B reading what reorder A wrote, back to the layout A read: B's readers read A's
 * input. When B writes a network output, A's input's producer writes it instead, if that
 * value is private to A (else B stays). */
static kiln_status cancel_pairs(ir_graph *g, build_layout_result *r)
{
    for (bool changed = true; changed;) {
        changed = false;
        for (int32_t i = 0; i < g->n_nodes; i++) {
            ir_node *b = &g->nodes[i];
            if (b->dead || !is_reorder(b)) continue;
            int32_t v = b->in[0], a = g->values[v].producer, y = b->out[0];
            if (a < 0 || g->nodes[a].dead || !is_reorder(&g->nodes[a])) continue;
            int32_t u = g->nodes[a].in[0];
            if (g->values[u].layout != g->values[y].layout) continue;
            if (!g->values[y].is_output) {
                opt_replace_uses(g, y, u);
                b->dead = true;
            } else {
                /* bypassing needs u private to B: A goes first when B was its only reader */
                if (g->values[v].is_output || opt_single_consumer(g, v, NULL) != i) continue;
                g->nodes[a].dead = true;
                b->in[0] = u;
                if (!opt_bypass(g, i)) {
                    b->in[0] = v;
                    g->nodes[a].dead = false;
                    continue;
                }
                r->cancelled++;
            }
            r->cancelled++;
            changed = true;
            kiln_log(KILN_LOG_VERBOSE,
                     "layout: reorders '%s' (%s -> %s) and '%s' (%s -> %s) cancel; '%s' is read "
                     "as '%s'",
                     g->nodes[a].name, ir_attr_string(&g->nodes[a], "from"),
                     ir_attr_string(&g->nodes[a], "to"), b->name, ir_attr_string(b, "from"),
                     ir_attr_string(b, "to"), g->values[y].name, g->values[u].name);
        }
    }
    /* Reorders nobody reads any more (the A of a cancelled pair with no other reader). */
    for (bool changed = true; changed;) {
        int32_t *uses = NULL;
        changed = false;
        KILN_TRY(opt_use_counts(g, &uses));
        for (int32_t i = 0; i < g->n_nodes; i++) {
            ir_node *n = &g->nodes[i];
            if (n->dead || !is_reorder(n) || uses[n->out[0]] || g->values[n->out[0]].is_output)
                continue;
            n->dead = true;
            r->cancelled++;
            changed = true;
            kiln_log(KILN_LOG_VERBOSE, "layout: reorder '%s' has no readers left; removed",
                     n->name);
        }
        kiln_free(uses);
    }
    return KILN_OK;
}

kiln_status build_layout(ir_graph *g, const kiln_backend *be, build_layout_result *r)
{
    kiln_status st = KILN_OK;
    step s = {.g = g, .be = be, .r = r, .n_orig = g->n_values};
    int32_t *order = NULL, n_order = 0, max_in = 1, max_out = 1;
    memset(r, 0, sizeof *r);
    for (int32_t i = 0; i < g->n_nodes; i++) {
        if (g->nodes[i].n_in > max_in) max_in = g->nodes[i].n_in;
        if (g->nodes[i].n_out > max_out) max_out = g->nodes[i].n_out;
    }
    KILN_CHECK(
        kiln_alloc_checked((void **)&order, (size_t)g->n_nodes + 1, sizeof *order, "layout"));
    KILN_CHECK(kiln_alloc_checked((void **)&s.cache, (size_t)s.n_orig * N_LAYOUT_SLOTS + 1,
                                  sizeof *s.cache, "layout"));
    KILN_CHECK(kiln_alloc_checked((void **)&s.tin, (size_t)max_in, sizeof *s.tin, "layout"));
    KILN_CHECK(kiln_alloc_checked((void **)&s.tout, (size_t)max_out, sizeof *s.tout, "layout"));
    KILN_CHECK(
        kiln_alloc_checked((void **)&s.want_in, (size_t)max_in, sizeof *s.want_in, "layout"));
    KILN_CHECK(
        kiln_alloc_checked((void **)&s.want_out, (size_t)max_out, sizeof *s.want_out, "layout"));
    for (size_t i = 0; i < (size_t)s.n_orig * N_LAYOUT_SLOTS; i++) s.cache[i] = -1;
    KILN_CHECK(ir_graph_topo_order(g, order, &n_order));
    for (int32_t i = 0; i < n_order; i++) KILN_CHECK(assign(&s, order[i]));
    KILN_CHECK(cancel_pairs(g, r));
    for (int32_t i = 0; i < g->n_nodes; i++)
        r->reorders += !g->nodes[i].dead && is_reorder(&g->nodes[i]);
    if (r->inserted || r->constants || r->reorders)
        kiln_log(KILN_LOG_INFO,
                 "layouts: %d layer%s on blocked tensors; %d reorder%s inserted, %d cancelled, %d "
                 "left; %d constant%s stored blocked",
                 r->blocked, r->blocked == 1 ? "" : "s", r->inserted, r->inserted == 1 ? "" : "s",
                 r->cancelled, r->reorders, r->constants, r->constants == 1 ? "" : "s");
fail:
    kiln_free(order);
    kiln_free(s.cache);
    kiln_free(s.tin);
    kiln_free(s.tout);
    kiln_free(s.want_in);
    kiln_free(s.want_out);
    return st;
}
