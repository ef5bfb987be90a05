/* test_memplan.c - the memory planner: no live value overwritten on random graphs with
 * aliases and in-place ops, aliases and unary ops share bytes, built networks give the
 * same numbers, and the loader refuses plans that share bytes unsafely. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "build/build.h"
#include "runtime/plan.h"
#include "testutil.h"

#define MAXV 96

/* ---- planner on IR graphs ---- */

static void set_shape(ir_graph *g, const char *name, kiln_dtype dtype, kiln_dims s)
{
    ir_value *v = &g->values[ir_graph_find_value(g, name)];
    v->dtype = dtype;
    v->shape = s;
    v->shape_known = true;
}

static void add(ir_graph *g, const char *op, const char *in0, const char *in1, const char *out)
{
    const char *ii[] = {in0, in1}, *oo[] = {out};
    assert_int_equal(ir_graph_add_node(g, op, NULL, ii, in1 ? 2 : 1, oo, 1, NULL, 0, NULL),
                     KILN_OK);
}

/* A random DAG over values of random sizes: unary ops that may run in place (Relu,
 * Sigmoid), aliases (Identity, Flatten, Reshape: same bytes as their input), and Add of
 * two earlier values; inputs are picked at random distances, so values fan out to
 * several readers, aliases of aliases form chains, and some values are network outputs. */
static void random_graph(ir_graph *g, tu_rng *r, int n_layers)
{
    static const char *const ops[] = {"Relu", "Sigmoid", "Identity", "Flatten", "Reshape", "Add"};
    ir_graph_init(g);
    kiln_dims s = {1, {tu_int(r, 1, 300)}};
    assert_int_equal(ir_graph_add_input(g, "v0", KILN_DTYPE_F32, &s), KILN_OK);
    g->values[0].shape_known = true;
    int64_t two = 2;
    kiln_dims one = {1, {1}};
    assert_int_equal(ir_graph_add_constant(g, "shape", KILN_DTYPE_I64, &one, &two, 8, true, NULL),
                     KILN_OK);
    for (int i = 1; i <= n_layers; i++) {
        char in[16], in2[16], out[16];
        const char *op = ops[tu_int(r, 0, 5)];
        snprintf(in, sizeof in, "v%d", (int)tu_int(r, i > 6 ? i - 6 : 0, i - 1));
        snprintf(in2, sizeof in2, "v%d", (int)tu_int(r, i > 6 ? i - 6 : 0, i - 1));
        snprintf(out, sizeof out, "v%d", i);
        bool alias =
            strcmp(op, "Identity") == 0 || strcmp(op, "Flatten") == 0 || strcmp(op, "Reshape") == 0;
        add(g, op, in,
            strcmp(op, "Add") == 0       ? in2
            : strcmp(op, "Reshape") == 0 ? "shape"
                                         : NULL,
            out);
        const ir_value *src = &g->values[ir_graph_find_value(g, in)];
        /* Aliases keep their input's bytes; the others mostly do (a different size must
         * not be shared). */
        kiln_dims sh = {1, {tu_int(r, 1, 300)}};
        if (alias || tu_int(r, 0, 3) > 0) sh = (kiln_dims){1, {kiln_dims_count(&src->shape)}};
        set_shape(g, out, KILN_DTYPE_F32, sh);
    }
    char name[16];
    snprintf(name, sizeof name, "v%d", n_layers);
    assert_int_equal(ir_graph_mark_output(g, name), KILN_OK);
    for (int k = 0; k < 2; k++) {
        snprintf(name, sizeof name, "v%d", (int)tu_int(r, 1, n_layers));
        if (!g->values[ir_graph_find_value(g, name)].is_output)
            assert_int_equal(ir_graph_mark_output(g, name), KILN_OK);
    }
}

static bool arena_value(const ir_value *v)
{
    return v->kind == IR_VALUE_ACTIVATION && !v->is_output;
}

static uint64_t rounded(const ir_value *v) { return (build_value_bytes(v) + 63) & ~(uint64_t)63; }

/* Runs the plan on a model of the arena in 64-byte blocks: each value's blocks are
 * tagged with its content when written (an alias has its input's content), and every
 * read finds its value's content in all its blocks. Output 0 may overlap input 0 only
 * exactly and only for ops allowed to share; nothing else a layer writes touches what
 * it reads. */
static void check_plan(const ir_graph *g, const int32_t *order, int32_t count,
                       const uint64_t *offsets, const build_memplan_result *res)
{
    int32_t content[MAXV];
    uint64_t sum = 0;
    for (int32_t v = 0; v < g->n_values; v++) {
        const ir_value *val = &g->values[v];
        content[v] = v;
        if (!arena_value(val)) {
            assert_true(offsets[v] == UINT64_MAX);
            continue;
        }
        sum += build_value_bytes(val);
        assert_int_equal(offsets[v] % 64, 0);
        assert_true(offsets[v] + rounded(val) <= res->arena_bytes);
    }
    assert_int_equal(res->activation_bytes, sum);
    assert_true(res->arena_bytes <= sum + 64 * (uint64_t)g->n_values);
    assert_true(res->peak_bytes <= res->arena_bytes);
    int32_t *mem = calloc(res->arena_bytes / 64 + 1, sizeof *mem);
    for (int32_t s = 0; s < count; s++) {
        const ir_node *n = &g->nodes[order[s]];
        if (n->op->flags & IR_OP_ALIAS) content[n->out[0]] = content[n->in[0]];
        for (int32_t k = 0; k < n->n_in; k++) {
            const ir_value *v = &g->values[n->in[k]];
            if (!arena_value(v)) continue;
            for (uint64_t b = offsets[n->in[k]] / 64; b < (offsets[n->in[k]] + rounded(v)) / 64;
                 b++)
                assert_int_equal(mem[b], content[n->in[k]] + 1);
        }
        for (int32_t j = 0; j < n->n_out; j++) {
            int32_t o = n->out[j];
            const ir_value *ov = &g->values[o];
            if (!arena_value(ov)) continue;
            for (int32_t k = 0; k < n->n_in; k++) {
                int32_t i = n->in[k];
                if (!arena_value(&g->values[i])) continue;
                bool disjoint = offsets[o] + rounded(ov) <= offsets[i] ||
                                offsets[i] + rounded(&g->values[i]) <= offsets[o];
                bool exact = j == 0 && k == 0 && (n->op->flags & (IR_OP_ALIAS | IR_OP_INPLACE)) &&
                             offsets[o] == offsets[i] && rounded(ov) == rounded(&g->values[i]);
                assert_true(disjoint || exact);
            }
            for (uint64_t b = offsets[o] / 64; b < (offsets[o] + rounded(ov)) / 64; b++)
                mem[b] = content[o] + 1;
        }
    }
    free(mem);
}

static void test_random_graphs_never_overwrite_live_values(void **state)
{
    tu_rng r = {42};
    int aliased = 0, in_place = 0;
    for (int trial = 0; trial < 400; trial++) {
        ir_graph g;
        int n = (int)tu_int(&r, 1, 60);
        random_graph(&g, &r, n);
        int32_t order[MAXV], count = 0;
        assert_int_equal(ir_graph_topo_order(&g, order, &count), KILN_OK);
        uint64_t offsets[MAXV];
        build_memplan_result res;
        assert_int_equal(build_memplan(&g, order, count, offsets, &res), KILN_OK);
        check_plan(&g, order, count, offsets, &res);
        /* Every alias of an arena value into an arena value of the same size shares. */
        for (int32_t s = 0; s < count; s++) {
            const ir_node *nd = &g.nodes[order[s]];
            if (!(nd->op->flags & IR_OP_ALIAS)) continue;
            if (arena_value(&g.values[nd->in[0]]) && arena_value(&g.values[nd->out[0]]))
                assert_true(offsets[nd->in[0]] == offsets[nd->out[0]]);
        }
        aliased += res.aliased;
        in_place += res.in_place;
        ir_graph_free(&g);
    }
    assert_true(aliased > 100);
    assert_true(in_place > 100);
}

static void test_chain_runs_in_place(void **state)
{
    /* v0 -> 8 Relus -> v8: v1..v7 live in one buffer (v1 is written beside the input). */
    ir_graph g;
    ir_graph_init(&g);
    kiln_dims s = {1, {16}};
    assert_int_equal(ir_graph_add_input(&g, "v0", KILN_DTYPE_F32, &s), KILN_OK);
    for (int i = 1; i <= 8; i++) {
        char in[8], out[8];
        snprintf(in, sizeof in, "v%d", i - 1);
        snprintf(out, sizeof out, "v%d", i);
        add(&g, "Relu", in, NULL, out);
        set_shape(&g, out, KILN_DTYPE_F32, s);
    }
    assert_int_equal(ir_graph_mark_output(&g, "v8"), KILN_OK);
    int32_t order[8], count;
    uint64_t offsets[9];
    build_memplan_result res;
    assert_int_equal(ir_graph_topo_order(&g, order, &count), KILN_OK);
    assert_int_equal(build_memplan(&g, order, count, offsets, &res), KILN_OK);
    assert_int_equal(res.activation_bytes, 7 * 64);
    assert_int_equal(res.arena_bytes, 64);
    assert_int_equal(res.peak_bytes, 64);
    assert_int_equal(res.in_place, 6);
    assert_int_equal(res.buffers, 1);
    check_plan(&g, order, count, offsets, &res);
    ir_graph_free(&g);
}

static void test_aliases_share_and_extend_lifetimes(void **state)
{
    /* a = Relu(x); b = Reshape(a); c = Identity(b); e = Neg(x); y = Add(c, e).
     * b and c are a's bytes, so a's buffer lives until the Add and e must not take it;
     * xr = Flatten(x) of the network input stays a copy. */
    ir_graph g;
    ir_graph_init(&g);
    kiln_dims s = {1, {32}}, s2 = {2, {4, 8}};
    int64_t shp[2] = {4, 8};
    kiln_dims two = {1, {2}};
    assert_int_equal(ir_graph_add_input(&g, "x", KILN_DTYPE_F32, &s), KILN_OK);
    assert_int_equal(
        ir_graph_add_constant(&g, "shape", KILN_DTYPE_I64, &two, shp, sizeof shp, true, NULL),
        KILN_OK);
    add(&g, "Relu", "x", NULL, "a");
    add(&g, "Reshape", "a", "shape", "b");
    add(&g, "Identity", "b", NULL, "c");
    add(&g, "Flatten", "x", NULL, "xr");
    add(&g, "Neg", "xr", NULL, "e");
    add(&g, "Add", "c", "e", "y");
    set_shape(&g, "a", KILN_DTYPE_F32, s);
    set_shape(&g, "b", KILN_DTYPE_F32, s2);
    set_shape(&g, "c", KILN_DTYPE_F32, s2);
    set_shape(&g, "xr", KILN_DTYPE_F32, (kiln_dims){2, {1, 32}});
    set_shape(&g, "e", KILN_DTYPE_F32, (kiln_dims){2, {1, 32}});
    set_shape(&g, "y", KILN_DTYPE_F32, s2);
    assert_int_equal(ir_graph_mark_output(&g, "y"), KILN_OK);
    int32_t order[8], count;
    uint64_t offsets[16];
    build_memplan_result res;
    assert_int_equal(ir_graph_topo_order(&g, order, &count), KILN_OK);
    assert_int_equal(build_memplan(&g, order, count, offsets, &res), KILN_OK);
#define OFF(name) offsets[ir_graph_find_value(&g, name)]
    assert_true(OFF("a") == OFF("b"));
    assert_true(OFF("b") == OFF("c"));
    assert_true(OFF("e") != OFF("a"));
    assert_true(OFF("xr") != OFF("a"));
    assert_true(OFF("x") == UINT64_MAX && OFF("y") == UINT64_MAX);
    /* e = Neg(xr) runs in place over the copy xr. */
    assert_true(OFF("e") == OFF("xr"));
#undef OFF
    assert_int_equal(res.aliased, 2);
    assert_int_equal(res.in_place, 1);
    assert_int_equal(res.arena_bytes, 2 * 128);
    assert_int_equal(res.activation_bytes, 5 * 128);
    check_plan(&g, order, count, offsets, &res);
    ir_graph_free(&g);
}

static void test_in_place_needs_the_last_reader(void **state)
{
    /* a = Relu(x); b = Sigmoid(a); c = Relu(b); y = Add(a, c): a is read after the
     * Sigmoid, so b needs bytes of its own; c may overwrite b. */
    ir_graph g;
    ir_graph_init(&g);
    kiln_dims s = {1, {16}};
    assert_int_equal(ir_graph_add_input(&g, "x", KILN_DTYPE_F32, &s), KILN_OK);
    add(&g, "Relu", "x", NULL, "a");
    add(&g, "Sigmoid", "a", NULL, "b");
    add(&g, "Relu", "b", NULL, "c");
    add(&g, "Add", "a", "c", "y");
    /* d = Add(a, a) reads one buffer twice; z = Relu(d) of another size (as a graph may
     * say before shapes are checked) cannot take d's bytes. */
    add(&g, "Add", "a", "a", "d");
    add(&g, "Relu", "d", NULL, "z");
    add(&g, "Add", "z", "z", "w");
    const char *names[] = {"a", "b", "c", "y", "d"};
    for (int i = 0; i < 5; i++) set_shape(&g, names[i], KILN_DTYPE_F32, s);
    set_shape(&g, "z", KILN_DTYPE_F32, (kiln_dims){1, {32}});
    set_shape(&g, "w", KILN_DTYPE_F32, (kiln_dims){1, {32}});
    assert_int_equal(ir_graph_mark_output(&g, "y"), KILN_OK);
    assert_int_equal(ir_graph_mark_output(&g, "w"), KILN_OK);
    int32_t order[8], count;
    uint64_t offsets[16];
    build_memplan_result res;
    assert_int_equal(ir_graph_topo_order(&g, order, &count), KILN_OK);
    assert_int_equal(build_memplan(&g, order, count, offsets, &res), KILN_OK);
#define OFF(name) offsets[ir_graph_find_value(&g, name)]
    assert_true(OFF("b") != OFF("a"));
    assert_true(OFF("c") == OFF("b"));
    assert_true(OFF("z") != OFF("d"));
#undef OFF
    assert_int_equal(res.in_place, 1);
    check_plan(&g, order, count, offsets, &res);
    ir_graph_free(&g);
}

static void test_allocation_failures(void **state)
{
    tu_rng r = {7};
    ir_graph g;
    random_graph(&g, &r, 40);
    int32_t order[MAXV], count = 0;
    uint64_t offsets[MAXV];
    build_memplan_result res;
    assert_int_equal(ir_graph_topo_order(&g, order, &count), KILN_OK);
    long k;
    for (k = 0; k < 100; k++) {
        kiln_alloc_fail_after(k);
        kiln_status st = build_memplan(&g, order, count, offsets, &res);
        kiln_alloc_fail_after(-1);
        if (st == KILN_OK) break;
        assert_int_equal(st, KILN_ERR_OUT_OF_MEMORY);
    }
    assert_true(k > 0 && k < 100);
    ir_graph_free(&g);
}

/* ---- through kiln_build and a context ---- */

/* A config with every optimization pass switched off (or none). */
static kiln_config *config(bool passes)
{
    kiln_config *cfg = NULL;
    assert_int_equal(kiln_config_create(&cfg), KILN_OK);
    assert_int_equal(kiln_config_set_threads(cfg, 1), KILN_OK);
    assert_int_equal(kiln_config_set_log_level(cfg, KILN_LOG_ERROR), KILN_OK);
    for (int32_t i = 0; !passes && kiln_pass_name(i); i++)
        assert_int_equal(kiln_config_disable_pass(cfg, kiln_pass_name(i)), KILN_OK);
    return cfg;
}

typedef struct ref_value {
    char name[16];
    kiln_dims shape;
    float *data;
} ref_value;

/* Applies `op` to a and b (b: Add only) with the op's reference kernel into y. */
static void ref_eval(const char *op, const ref_value *a, const ref_value *b, ref_value *y)
{
    const ir_op *o = ir_op_find(op);
    ir_node n = {.name = "ref", .op = o};
    ir_tensor in[2] = {{KILN_DTYPE_F32, a->shape, a->data, IR_LAYOUT_PLAIN},
                       {KILN_DTYPE_F32, a->shape, NULL, IR_LAYOUT_PLAIN}};
    ir_tensor out = {KILN_DTYPE_F32, y->shape, y->data, IR_LAYOUT_PLAIN};
    if (b) in[1].data = b->data;
    if (o->flags & IR_OP_ALIAS) {
        memcpy(y->data, a->data, sizeof(float) * (size_t)kiln_dims_count(&a->shape));
        return;
    }
    assert_int_equal(o->eval(&n, in, b ? 2 : 1, &out, 1), KILN_OK);
}

/* A random network of unary ops, aliases and Adds over N floats, built through the
 * public API and run; every output must equal the reference kernels run on separate
 * buffers (bit for bit with passes off, within 1e-6 with them on). */
static void run_random_network(tu_rng *r, bool passes)
{
    static const char *const ops[] = {"Relu",     "Sigmoid", "Neg",     "Tanh",
                                      "Identity", "Flatten", "Reshape", "Add"};
    enum { L = 24 };
    ref_value v[L + 1];
    int64_t n = tu_int(r, 1, 200);
    int n_layers = (int)tu_int(r, 1, L);
    kiln_network *net = NULL;
    assert_int_equal(kiln_network_create(&net), KILN_OK);
    v[0] = (ref_value){"v0", {1, {n}}, malloc(sizeof(float) * (size_t)n)};
    tu_fill(r, v[0].data, n, -3.0f, 3.0f);
    assert_int_equal(kiln_network_add_input(net, "v0", KILN_DTYPE_F32, &v[0].shape), KILN_OK);
    const kiln_dims shapes[3] = {{1, {n}}, {2, {1, n}}, {2, {n, 1}}};
    kiln_dims two = {1, {2}}, one = {1, {1}};
    int64_t s1[1] = {n}, s2[2] = {1, n}, s3[2] = {n, 1};
    assert_int_equal(kiln_network_add_constant(net, "s0", KILN_DTYPE_I64, &one, s1, 8), KILN_OK);
    assert_int_equal(kiln_network_add_constant(net, "s1", KILN_DTYPE_I64, &two, s2, 16), KILN_OK);
    assert_int_equal(kiln_network_add_constant(net, "s2", KILN_DTYPE_I64, &two, s3, 16), KILN_OK);
    for (int i = 1; i <= n_layers; i++) {
        const char *op = ops[tu_int(r, 0, 7)];
        ref_value *a = &v[tu_int(r, i > 6 ? i - 6 : 0, i - 1)], *b = NULL;
        ref_value *y = &v[i];
        snprintf(y->name, sizeof y->name, "v%d", i);
        y->shape = a->shape;
        y->data = malloc(sizeof(float) * (size_t)n);
        const char *ins[2] = {a->name, NULL};
        kiln_attr attrs[1] = {KILN_ATTR_I("axis", 1)};
        int32_t n_in = 1, n_attrs = 0;
        if (strcmp(op, "Add") == 0) {
            b = a; /* another earlier value of the same shape, else a itself */
            for (int j = (int)tu_int(r, 0, i - 1); j < i; j++)
                if (kiln_dims_equal(&v[j].shape, &a->shape)) b = &v[j];
            ins[1] = b->name;
            n_in = 2;
        } else if (strcmp(op, "Reshape") == 0) {
            int k = (int)tu_int(r, 0, 2);
            ins[1] = k == 0 ? "s0" : k == 1 ? "s1" : "s2";
            n_in = 2;
            y->shape = shapes[k];
        } else if (strcmp(op, "Flatten") == 0) {
            y->shape = (kiln_dims){2, {a->shape.d[0], a->shape.rank == 2 ? a->shape.d[1] : 1}};
            n_attrs = 1;
        }
        const char *outs[1] = {y->name};
        assert_int_equal(kiln_network_add_layer(net, op, NULL, ins, n_in, outs, 1, attrs, n_attrs),
                         KILN_OK);
        ref_eval(op, a, b, y);
    }
    bool is_out[L + 1] = {false};
    is_out[n_layers] = true;
    is_out[tu_int(r, 1, n_layers)] = true;
    for (int i = 1; i <= n_layers; i++)
        if (is_out[i]) assert_int_equal(kiln_network_mark_output(net, v[i].name), KILN_OK);
    kiln_config *cfg = config(passes);
    kiln_engine *e = NULL;
    /* Bit for bit needs the reference's formulas: the portable kernels keep them (the
     * vector paths' Sigmoid and Tanh are polynomials, within 1e-6). */
    char *isa = getenv("KILN_ISA") ? strdup(getenv("KILN_ISA")) : NULL;
    if (!passes) setenv("KILN_ISA", "portable", 1);
    kiln_status st = kiln_build(net, cfg, &e);
    if (isa)
        setenv("KILN_ISA", isa, 1);
    else
        unsetenv("KILN_ISA");
    free(isa);
    if (st) print_error("build failed: %s\n", kiln_last_error());
    assert_int_equal(st, KILN_OK);
    kiln_context *c = NULL;
    assert_int_equal(kiln_context_create(e, &c), KILN_OK);
    assert_int_equal(kiln_context_set_tensor(c, "v0", v[0].data), KILN_OK);
    float *got[L + 1] = {NULL};
    for (int i = 1; i <= n_layers; i++) {
        if (!is_out[i]) continue;
        got[i] = malloc(sizeof(float) * (size_t)n);
        assert_int_equal(kiln_context_set_tensor(c, v[i].name, got[i]), KILN_OK);
    }
    assert_int_equal(kiln_context_run(c), KILN_OK);
    for (int i = 1; i <= n_layers; i++) {
        if (!got[i]) continue;
        if (passes)
            tu_assert_close(got[i], v[i].data, n, 1e-6);
        else
            assert_memory_equal(got[i], v[i].data, sizeof(float) * (size_t)n);
        free(got[i]);
    }
    kiln_context_destroy(c);
    kiln_engine_destroy(e);
    kiln_config_destroy(cfg);
    kiln_network_destroy(net);
    for (int i = 0; i <= n_layers; i++) free(v[i].data);
}

static void test_numbers_unchanged_through_build_and_run(void **state)
{
    tu_rng r = {2024};
    for (int trial = 0; trial < 150; trial++) run_random_network(&r, trial % 2 == 0);
}

/* ---- hostile plans: activations moved to overlap ---- */

static uint8_t *section(uint8_t *p, uint32_t id)
{
    uint32_t n_sec;
    memcpy(&n_sec, p + 36, 4);
    for (uint32_t i = 0; i < n_sec; i++) {
        uint8_t *e = p + PLAN_HEADER_BYTES + (size_t)i * PLAN_SECTION_ENTRY_BYTES;
        uint32_t sid;
        uint64_t off;
        memcpy(&sid, e, 4);
        memcpy(&off, e + 8, 8);
        if (sid == id) return p + off;
    }
    fail_msg("plan has no section %u", id);
    return NULL;
}

/* The record of tensor `name`: offset at +80, nbytes at +88. */
static uint8_t *tensor_record(uint8_t *p, const char *name)
{
    uint8_t *t = section(p, PLAN_SEC_TENSORS);
    const char *strings = (const char *)section(p, PLAN_SEC_STRINGS);
    uint32_t count;
    memcpy(&count, t, 4);
    for (uint32_t i = 0; i < count; i++) {
        uint8_t *rec = t + 8 + (size_t)i * PLAN_TENSOR_RECORD_BYTES;
        uint32_t name_off;
        memcpy(&name_off, rec, 4);
        if (strcmp(strings + name_off, name) == 0) return rec;
    }
    fail_msg("plan has no tensor '%s'", name);
    return NULL;
}

static uint64_t field(const uint8_t *rec, int at)
{
    uint64_t v;
    memcpy(&v, rec + at, 8);
    return v;
}

/* Moves activation `name` to `offset`, makes the memory section's arena size agree
 * with the tensors again and fixes the checksums, so only the overlap is wrong. */
static void move_tensor(uint8_t *p, size_t n, const char *name, uint64_t offset)
{
    memcpy(tensor_record(p, name) + 80, &offset, 8);
    uint8_t *t = section(p, PLAN_SEC_TENSORS);
    uint32_t count, flags;
    memcpy(&count, t, 4);
    uint64_t end = 0;
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *rec = t + 8 + (size_t)i * PLAN_TENSOR_RECORD_BYTES;
        memcpy(&flags, rec + 8, 4);
        uint64_t e = field(rec, 80) + ((field(rec, 88) + 63) & ~(uint64_t)63);
        if (flags == 0 && e > end) end = e;
    }
    memcpy(section(p, PLAN_SEC_MEMORY), &end, 8);
    uint32_t body = kiln_crc32c(0, p + PLAN_HEADER_BYTES, n - PLAN_HEADER_BYTES);
    memcpy(p + 32, &body, 4);
    uint32_t head = plan_header_crc(p);
    memcpy(p + 40, &head, 4);
}

/* x[32] -> a = Relu(x); b = Sigmoid(a); r = Reshape(b); c = Relu(r);
 * d = Add(a, c); y = Relu(d) (output). */
static kiln_network *overlap_net(void)
{
    kiln_network *net = NULL;
    assert_int_equal(kiln_network_create(&net), KILN_OK);
    kiln_dims s = {1, {32}}, two = {1, {2}};
    int64_t shp[2] = {4, 8}, back[1] = {32};
    kiln_dims one = {1, {1}};
    assert_int_equal(kiln_network_add_input(net, "x", KILN_DTYPE_F32, &s), KILN_OK);
    assert_int_equal(kiln_network_add_constant(net, "s", KILN_DTYPE_I64, &two, shp, 16), KILN_OK);
    assert_int_equal(kiln_network_add_constant(net, "s1", KILN_DTYPE_I64, &one, back, 8), KILN_OK);
    const char *layers[][4] = {{"Relu", "x", NULL, "a"},   {"Sigmoid", "a", NULL, "b"},
                               {"Reshape", "b", "s", "r"}, {"Reshape", "r", "s1", "c"},
                               {"Add", "a", "c", "d"},     {"Relu", "d", NULL, "y"}};
    for (int i = 0; i < 6; i++) {
        const char *ins[2] = {layers[i][1], layers[i][2]}, *outs[1] = {layers[i][3]};
        assert_int_equal(
            kiln_network_add_layer(net, layers[i][0], NULL, ins, ins[1] ? 2 : 1, outs, 1, NULL, 0),
            KILN_OK);
    }
    assert_int_equal(kiln_network_mark_output(net, "y"), KILN_OK);
    return net;
}

static kiln_status load_moved(const uint8_t *p, size_t n, const char *name, const char *onto)
{
    uint8_t *q = malloc(n);
    memcpy(q, p, n);
    move_tensor(q, n, name, field(tensor_record(q, onto), 80));
    kiln_engine *e = NULL;
    kiln_status st = kiln_engine_load_memory(q, n, &e);
    kiln_engine_destroy(e);
    free(q);
    return st;
}

static void test_overlapping_activations_are_refused(void **state)
{
    kiln_network *net = overlap_net();
    kiln_config *cfg = config(false);
    kiln_engine *e = NULL;
    assert_int_equal(kiln_build(net, cfg, &e), KILN_OK);
    uint8_t *p;
    size_t n;
    assert_int_equal(kiln_engine_serialize(e, (void **)&p, &n), KILN_OK);
    /* The planner's choices: r and c are b's bytes; a lives until the Add, so b has
     * bytes of its own. */
    uint64_t a = field(tensor_record(p, "a"), 80), b = field(tensor_record(p, "b"), 80);
    assert_true(field(tensor_record(p, "r"), 80) == b);
    assert_true(field(tensor_record(p, "c"), 80) == b);
    assert_true(a != b);

    /* b in place of a, though the Add reads a later. */
    assert_int_equal(load_moved(p, n, "b", "a"), KILN_ERR_CORRUPT_PLAN);
    assert_non_null(strstr(kiln_last_error(), "still in use"));
    /* d (Add: not an in-place op) onto a, one of its inputs. */
    assert_int_equal(load_moved(p, n, "d", "a"), KILN_ERR_CORRUPT_PLAN);
    assert_non_null(strstr(kiln_last_error(), "alive at the same time"));
    /* The alias chain moved off its buffer: c no longer on r's bytes but on a's. */
    assert_int_equal(load_moved(p, n, "c", "a"), KILN_ERR_CORRUPT_PLAN);
    /* An alias layer writing fresh bytes is a copy: fine. */
    uint8_t *q = malloc(n);
    memcpy(q, p, n);
    move_tensor(q, n, "c", field(section(q, PLAN_SEC_MEMORY), 0));
    kiln_engine *e2 = NULL;
    assert_int_equal(kiln_engine_load_memory(q, n, &e2), KILN_OK);
    kiln_engine_destroy(e2);
    /* Partial overlap: b half over a. */
    memcpy(q, p, n);
    move_tensor(q, n, "b", a + 64);
    move_tensor(q, n, "r", a + 64);
    move_tensor(q, n, "c", a + 64);
    assert_int_equal(kiln_engine_load_memory(q, n, &e2), KILN_ERR_CORRUPT_PLAN);
    assert_null(e2);
    free(q);
    kiln_free(p);
    kiln_engine_destroy(e);
    kiln_config_destroy(cfg);
    kiln_network_destroy(net);
}

/* Random offsets for every activation of overlap_net: a plan the loader accepts must
 * compute what the planner's plan computes (so its rules are sound), and some of each
 * kind turn up. */
static void test_loader_accepts_only_safe_sharing(void **state)
{
    static const char *const acts[] = {"a", "b", "r", "c", "d"};
    kiln_network *net = overlap_net();
    kiln_config *cfg = config(false);
    kiln_engine *e = NULL;
    assert_int_equal(kiln_build(net, cfg, &e), KILN_OK);
    uint8_t *p;
    size_t n;
    assert_int_equal(kiln_engine_serialize(e, (void **)&p, &n), KILN_OK);
    float x[32], want[32], got[32];
    tu_rng r = {99};
    tu_fill(&r, x, 32, -2.0f, 2.0f);
    kiln_context *c = NULL;
    assert_int_equal(kiln_context_create(e, &c), KILN_OK);
    assert_int_equal(kiln_context_set_tensor(c, "x", x), KILN_OK);
    assert_int_equal(kiln_context_set_tensor(c, "y", want), KILN_OK);
    assert_int_equal(kiln_context_run(c), KILN_OK);
    kiln_context_destroy(c);
    uint8_t *q = malloc(n);
    int loaded = 0, refused = 0;
    for (int trial = 0; trial < 3000; trial++) {
        memcpy(q, p, n);
        for (int i = 0; i < 5; i++) move_tensor(q, n, acts[i], 64 * (uint64_t)tu_int(&r, 0, 6));
        kiln_engine *h = NULL;
        kiln_status st = kiln_engine_load_memory(q, n, &h);
        if (st != KILN_OK) {
            assert_int_equal(st, KILN_ERR_CORRUPT_PLAN);
            refused++;
            continue;
        }
        loaded++;
        assert_int_equal(kiln_context_create(h, &c), KILN_OK);
        assert_int_equal(kiln_context_set_tensor(c, "x", x), KILN_OK);
        assert_int_equal(kiln_context_set_tensor(c, "y", got), KILN_OK);
        assert_int_equal(kiln_context_run(c), KILN_OK);
        assert_memory_equal(got, want, sizeof got);
        kiln_context_destroy(c);
        kiln_engine_destroy(h);
    }
    assert_true(loaded > 20 && refused > 20);
    free(q);
    kiln_free(p);
    kiln_engine_destroy(e);
    kiln_config_destroy(cfg);
    kiln_network_destroy(net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_graphs_never_overwrite_live_values),
        cmocka_unit_test(test_chain_runs_in_place),
        cmocka_unit_test(test_aliases_share_and_extend_lifetimes),
        cmocka_unit_test(test_in_place_needs_the_last_reader),
        cmocka_unit_test(test_allocation_failures),
        cmocka_unit_test(test_numbers_unchanged_through_build_and_run),
        cmocka_unit_test(test_overlapping_activations_are_refused),
        cmocka_unit_test(test_loader_accepts_only_safe_sharing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
