/* profile.c - optimization profiles at build time: each input's min/opt/max shapes from
 * the config checked against the network, the planning shape (the largest of every
 * profile), and the probes that tell which dimensions of every value change within the
 * profiles (shape inference on copies of the graph at each profile's min and opt). */
#include <string.h>

#include "build/build.h"
#include "build/config.h"

static const char *dims_str(const kiln_dims *d, char *buf) { return kiln_dims_str(d, buf, 96); }

/* One profile's range for input value `v`: the config's, or the declared shape when the
 * config names none (which must then be static). */
static kiln_status input_range(const ir_graph *g, const kiln_config *cfg, int32_t p, int32_t v,
                               kiln_dims *min, kiln_dims *opt, kiln_dims *max)
{
    const ir_value *val = &g->values[v];
    const config_range *r = config_range_of(cfg, p, val->name);
    char a[96], b[96], c[96];
    if (!r) {
        for (int32_t k = 0; k < val->shape.rank; k++)
            if (val->shape.d[k] < 0)
                return kiln_error(
                    KILN_ERR_SHAPE,
                    "input '%s' has a dynamic dimension %d (shape %s): give its shape "
                    "(kiln_config_set_input_shape, or --shapes %s:...) or its range in profile %d "
                    "(kiln_config_set_shape_range, or --min-shapes/--opt-shapes/--max-shapes)",
                    val->name, k, dims_str(&val->shape, a), val->name, p);
        *min = *opt = *max = val->shape;
        return KILN_OK;
    }
    if (r->min.rank != val->shape.rank)
        return kiln_error(KILN_ERR_SHAPE,
                          "input '%s' is declared %s; profile %d gives it rank %d (%s..%s)",
                          val->name, dims_str(&val->shape, a), p, r->min.rank, dims_str(&r->min, b),
                          dims_str(&r->max, c));
    for (int32_t k = 0; k < val->shape.rank; k++) {
        int64_t d = val->shape.d[k];
        if (d >= 0 && (r->min.d[k] != d || r->max.d[k] != d))
            return kiln_error(KILN_ERR_SHAPE,
                              "input '%s' is declared %s: dimension %d is %lld, but profile %d "
                              "gives it %lld..%lld",
                              val->name, dims_str(&val->shape, a), k, (long long)d, p,
                              (long long)r->min.d[k], (long long)r->max.d[k]);
    }
    *min = r->min;
    *opt = r->opt;
    *max = r->max;
    return KILN_OK;
}

kiln_status build_profiles_resolve(ir_graph *g, const kiln_config *cfg, kiln_arena *a,
                                   build_profiles *p)
{
    memset(p, 0, sizeof *p);
    for (int32_t q = 0; q < cfg->n_profiles; q++)
        for (int32_t i = 0; i < cfg->profiles[q].n_ranges; i++) {
            const char *name = cfg->profiles[q].ranges[i].input;
            int32_t v = ir_graph_find_value(g, name);
            if (v < 0 || g->values[v].kind != IR_VALUE_INPUT)
                return kiln_error(KILN_ERR_NOT_FOUND,
                                  "config gives a shape for '%s', which is not a network input",
                                  name);
        }
    p->n = cfg->n_profiles > 0 ? cfg->n_profiles : 1;
    p->n_inputs = g->n_inputs;
    size_t cells = (size_t)p->n * (size_t)g->n_inputs + 1;
    p->min = kiln_arena_alloc(a, sizeof(kiln_dims) * cells);
    p->opt = kiln_arena_alloc(a, sizeof(kiln_dims) * cells);
    p->max = kiln_arena_alloc(a, sizeof(kiln_dims) * cells);
    p->plan = kiln_arena_alloc(a, sizeof(kiln_dims) * ((size_t)g->n_inputs + 1));
    if (!p->min || !p->opt || !p->max || !p->plan) return KILN_ERR_OUT_OF_MEMORY;
    for (int32_t i = 0; i < g->n_inputs; i++) {
        int32_t v = g->inputs[i];
        for (int32_t q = 0; q < p->n; q++) {
            size_t at = (size_t)q * (size_t)g->n_inputs + (size_t)i;
            KILN_TRY(input_range(g, cfg, q, v, &p->min[at], &p->opt[at], &p->max[at]));
            if (q == 0) p->plan[i] = p->max[at];
            if (p->max[at].rank != p->plan[i].rank)
                return kiln_error(KILN_ERR_SHAPE,
                                  "input '%s' has rank %d in profile 0 and %d in %d",
                                  g->values[v].name, p->plan[i].rank, p->max[at].rank, q);
            for (int32_t k = 0; k < p->plan[i].rank; k++) {
                if (p->max[at].d[k] > p->plan[i].d[k]) p->plan[i].d[k] = p->max[at].d[k];
                if (p->min[at].d[k] != p->max[at].d[k]) p->dynamic = true;
            }
        }
        int64_t n;
        if (!kiln_dims_numel(&p->plan[i], &n))
            return kiln_error(KILN_ERR_SHAPE, "input '%s' is too large", g->values[v].name);
        g->values[v].shape = p->plan[i];
        g->values[v].shape_known = true;
    }
    return KILN_OK;
}

/* ---- probes ---- */

static uint64_t mix(uint64_t h, uint64_t x)
{
    h ^= x + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    return h * 0xff51afd7ed558ccdull;
}

static uint64_t shape_hash(uint64_t h, const ir_value *v)
{
    h = mix(h, (uint64_t)v->shape.rank);
    for (int32_t k = 0; k < v->shape.rank; k++) h = mix(h, (uint64_t)v->shape.d[k]);
    return h;
}

/* Shape inference on a copy of `g` with the inputs at probe `shapes`; folds everything it
 * can (the copy is thrown away). Folds into the copy's own arena. */
static kiln_status probe(const ir_graph *g, const kiln_dims *shapes, ir_graph *copy)
{
    KILN_TRY(ir_graph_clone(g, copy));
    copy->dynamic = false;
    for (int32_t i = 0; i < copy->n_inputs; i++) copy->values[copy->inputs[i]].shape = shapes[i];
    int32_t folded = 0;
    return build_infer(copy, &folded);
}

/* Compares every value of `probe` with the graph at planning shapes. */
static void compare(ir_graph *g, const ir_graph *pr)
{
    for (int32_t v = 0; v < g->n_values; v++) {
        ir_value *gv = &g->values[v];
        const ir_value *pv = &pr->values[v];
        gv->shape_sig = shape_hash(gv->shape_sig, pv);
        if (pv->shape.rank != gv->shape.rank) {
            gv->dyn_dims = IR_DIMS_UNKNOWN;
            continue;
        }
        for (int32_t k = 0; k < gv->shape.rank; k++)
            if (pv->shape.d[k] != gv->shape.d[k]) gv->dyn_dims |= 1u << k;
    }
}

static const kiln_dims *probe_shapes(const build_profiles *p, int32_t q, int32_t which)
{
    return (which == 0 ? p->min : which == 1 ? p->opt : p->max) + (size_t)q * (size_t)p->n_inputs;
}

static const char *const k_which[3] = {"min", "opt", "max"};

kiln_status build_profiles_check(const ir_graph *g, const build_profiles *p)
{
    if (!p->dynamic) return KILN_OK;
    for (int32_t q = 0; q < p->n; q++)
        for (int32_t which = 0; which < 3; which++) {
            ir_graph pr;
            ir_graph_init(&pr);
            kiln_status st = probe(g, probe_shapes(p, q, which), &pr);
            ir_graph_free(&pr);
            if (st == KILN_ERR_OUT_OF_MEMORY) return st;
            if (st)
                return kiln_error_prefix(KILN_ERR_INTERNAL,
                                         "the optimized network does not infer at the %s shapes "
                                         "of profile %d (a pass rewrote it for one shape; "
                                         "--disable-pass finds which): ",
                                         k_which[which], q);
        }
    return KILN_OK;
}

kiln_status build_profiles_probe(ir_graph *g, const build_profiles *p)
{
    if (!p->dynamic) return KILN_OK;
    kiln_status st = KILN_OK;
    ir_graph at_plan, pr;
    ir_graph_init(&at_plan);
    ir_graph_init(&pr);
    /* The planning shapes first: what the others are compared with. */
    KILN_CHECK(probe(g, p->plan, &at_plan));
    for (int32_t v = 0; v < g->n_values; v++) {
        at_plan.values[v].dyn_dims = 0;
        at_plan.values[v].shape_sig = shape_hash(0, &at_plan.values[v]);
    }
    for (int32_t q = 0; q < p->n; q++)
        for (int32_t which = 0; which < 3; which++) {
            const kiln_dims *s = (which == 0   ? p->min
                                  : which == 1 ? p->opt
                                               : p->max) +
                                 (size_t)q * (size_t)p->n_inputs;
            st = probe(g, s, &pr);
            if (st) {
                char buf[96];
                kiln_error_prefix(st, "at the %s shapes of profile %d (first input %s): ",
                                  which == 0   ? "min"
                                  : which == 1 ? "opt"
                                               : "max",
                                  q, p->n_inputs ? dims_str(&s[0], buf) : "none");
                goto fail;
            }
            compare(&at_plan, &pr);
            ir_graph_free(&pr);
            ir_graph_init(&pr);
        }
    for (int32_t v = 0; v < g->n_values; v++) {
        g->values[v].dyn_dims = at_plan.values[v].dyn_dims;
        g->values[v].shape_sig = at_plan.values[v].shape_sig;
    }
    g->dynamic = true;
fail:
    ir_graph_free(&at_plan);
    ir_graph_free(&pr);
    return st;
}
