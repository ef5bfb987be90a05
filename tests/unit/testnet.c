/* testnet.c - networks, single passes and engines for the pass and fusion tests. */
#include "testnet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "build/build.h"
#include "ir/network.h"

kiln_network *tn_net(void)
{
    kiln_network *net = NULL;
    assert_int_equal(kiln_network_create(&net), KILN_OK);
    return net;
}

void tn_input(kiln_network *net, const char *name, int32_t rank, const int64_t *dims)
{
    kiln_dims s = kiln_dims_make(rank, dims);
    assert_int_equal(kiln_network_add_input(net, name, KILN_DTYPE_F32, &s), KILN_OK);
}

void tn_constant(kiln_network *net, const char *name, kiln_dtype dt, int32_t rank,
                 const int64_t *dims, const void *data)
{
    kiln_dims s = kiln_dims_make(rank, dims);
    size_t bytes = (size_t)kiln_dims_count(&s) * kiln_dtype_size(dt);
    assert_int_equal(kiln_network_add_constant(net, name, dt, &s, data, bytes), KILN_OK);
}

void tn_ints(kiln_network *net, const char *name, int32_t n, const int64_t *v)
{
    int64_t d[1] = {n};
    tn_constant(net, name, KILN_DTYPE_I64, 1, d, v);
}

void tn_scalar(kiln_network *net, const char *name, float v)
{
    tn_constant(net, name, KILN_DTYPE_F32, 0, NULL, &v);
}

void tn_weights(kiln_network *net, const char *name, int32_t rank, const int64_t *dims,
                uint64_t seed, float lo, float hi)
{
    kiln_dims s = kiln_dims_make(rank, dims);
    int64_t n = kiln_dims_count(&s);
    float *w = malloc(sizeof(float) * (size_t)(n ? n : 1));
    tu_rng r = {seed};
    tu_fill(&r, w, n, lo, hi);
    tn_constant(net, name, KILN_DTYPE_F32, rank, dims, w);
    free(w);
}

void tn_layer(kiln_network *net, const char *op, const char *name, const char *const *in,
              int32_t n_in, const char *const *out, int32_t n_out, const kiln_attr *attrs,
              int32_t n_attrs)
{
    kiln_status st = kiln_network_add_layer(net, op, name, in, n_in, out, n_out, attrs, n_attrs);
    if (st) print_error("%s\n", kiln_last_error());
    assert_int_equal(st, KILN_OK);
}

void tn_output(kiln_network *net, const char *name)
{
    assert_int_equal(kiln_network_mark_output(net, name), KILN_OK);
}

void tn_prepare(const kiln_network *net, ir_graph *g)
{
    int32_t folded = 0;
    assert_int_equal(ir_graph_clone(&net->g, g), KILN_OK);
    assert_int_equal(ir_graph_verify(g), KILN_OK);
    kiln_status st = build_infer(g, &folded);
    if (st) print_error("%s\n", kiln_last_error());
    assert_int_equal(st, KILN_OK);
}

int32_t tn_run_pass(ir_graph *g, opt_pass_fn pass)
{
    int32_t changes = 0, dead = 0;
    kiln_status st = pass(g, &changes);
    if (st) print_error("%s\n", kiln_last_error());
    assert_int_equal(st, KILN_OK);
    assert_int_equal(opt_dead_code(g, &dead), KILN_OK);
    assert_int_equal(ir_graph_verify(g), KILN_OK);
    return changes;
}

const ir_node *tn_node(const ir_graph *g, const char *name)
{
    int32_t id = kiln_strmap_get(&g->node_by_name, name);
    if (id < 0) print_error("no layer '%s'\n", name);
    assert_true(id >= 0);
    return &g->nodes[id];
}

bool tn_live(const ir_graph *g, const char *name) { return !tn_node(g, name)->dead; }

int32_t tn_live_count(const ir_graph *g)
{
    int32_t n = 0;
    for (int32_t i = 0; i < g->n_nodes; i++) n += !g->nodes[i].dead;
    return n;
}

const char *tn_reads(const ir_graph *g, const char *name, int32_t k)
{
    const ir_node *n = tn_node(g, name);
    assert_true(k < n->n_in && n->in[k] >= 0);
    return g->values[n->in[k]].name;
}

const char *tn_writes(const ir_graph *g, const char *name, int32_t k)
{
    const ir_node *n = tn_node(g, name);
    assert_true(k < n->n_out);
    return g->values[n->out[k]].name;
}

bool tn_is_constant(const ir_graph *g, const char *value)
{
    int32_t v = ir_graph_find_value(g, value);
    assert_true(v >= 0);
    return g->values[v].kind == IR_VALUE_CONSTANT;
}

kiln_engine *tn_build(const kiln_network *net, const char *off)
{
    kiln_config *cfg = NULL;
    kiln_engine *e = NULL;
    assert_int_equal(kiln_config_create(&cfg), KILN_OK);
    assert_int_equal(kiln_config_set_threads(cfg, 1), KILN_OK);
    assert_int_equal(kiln_config_set_tactic_timing(cfg, 0), KILN_OK);
    if (off) assert_int_equal(kiln_config_disable_pass(cfg, off), KILN_OK);
    kiln_status st = kiln_build(net, cfg, &e);
    if (st) print_error("build failed: %s\n", kiln_last_error());
    assert_int_equal(st, KILN_OK);
    kiln_config_destroy(cfg);
    return e;
}

static char g_log[1 << 16];
static size_t g_log_len;

static void capture(kiln_log_level level, const char *msg, void *user)
{
    (void)level;
    (void)user;
    size_t n = strlen(msg);
    if (g_log_len + n + 2 < sizeof g_log) {
        memcpy(g_log + g_log_len, msg, n);
        g_log_len += n;
        g_log[g_log_len++] = '\n';
        g_log[g_log_len] = 0;
    }
}

kiln_engine *tn_build_logged(const kiln_network *net, const char **log)
{
    kiln_config *cfg = NULL;
    kiln_engine *e = NULL;
    g_log_len = 0;
    g_log[0] = 0;
    kiln_set_logger(capture, NULL, KILN_LOG_VERBOSE);
    assert_int_equal(kiln_config_create(&cfg), KILN_OK);
    assert_int_equal(kiln_config_set_log_level(cfg, KILN_LOG_VERBOSE), KILN_OK);
    kiln_status st = kiln_build(net, cfg, &e);
    kiln_set_logger(NULL, NULL, KILN_LOG_ERROR);
    kiln_config_destroy(cfg);
    if (st) print_error("build failed: %s\n", kiln_last_error());
    assert_int_equal(st, KILN_OK);
    *log = g_log;
    return e;
}

void tn_expect_log(const char *log, const char *want)
{
    if (!strstr(log, want)) fail_msg("log lacks \"%s\":\n%s", want, log);
}

void tn_run(kiln_engine *e, tn_io *b)
{
    kiln_context *c = NULL;
    assert_int_equal(kiln_context_create(e, &c), KILN_OK);
    b->n = kiln_engine_num_io(e);
    assert_true(b->n <= 16);
    for (int32_t i = 0; i < b->n; i++) {
        kiln_dims s;
        b->names[i] = kiln_engine_io_name(e, i);
        b->is_input[i] = kiln_engine_io_mode(e, b->names[i]) == KILN_IO_INPUT;
        assert_int_equal(kiln_engine_tensor_info(e, b->names[i], &b->dtype[i], &s), KILN_OK);
        b->bytes[i] = (size_t)kiln_dims_count(&s) * kiln_dtype_size(b->dtype[i]);
        b->data[i] = calloc(1, b->bytes[i] + 1);
        if (b->is_input[i]) {
            tu_rng r = {1000 + (uint64_t)i};
            assert_int_equal(b->dtype[i], KILN_DTYPE_F32);
            tu_fill(&r, b->data[i], kiln_dims_count(&s), -2.0f, 2.0f);
        }
        assert_int_equal(kiln_context_set_tensor(c, b->names[i], b->data[i]), KILN_OK);
    }
    kiln_status st = kiln_context_run(c);
    if (st) print_error("run failed: %s\n", kiln_last_error());
    assert_int_equal(st, KILN_OK);
    kiln_context_destroy(c);
}

void tn_io_free(tn_io *b)
{
    for (int32_t i = 0; i < b->n; i++) free(b->data[i]);
}

void tn_same_numbers(const kiln_network *net, const char *pass, double tol)
{
    kiln_engine *on = tn_build(net, NULL), *off = tn_build(net, pass);
    tn_io a, b;
    tn_run(on, &a);
    tn_run(off, &b);
    assert_int_equal(a.n, b.n);
    for (int32_t i = 0; i < a.n; i++) {
        assert_string_equal(a.names[i], b.names[i]);
        if (a.is_input[i]) continue;
        assert_int_equal(a.bytes[i], b.bytes[i]);
        if (tol == 0.0 || a.dtype[i] != KILN_DTYPE_F32)
            assert_memory_equal(a.data[i], b.data[i], a.bytes[i]);
        else if (!(tu_rel_l2(a.data[i], b.data[i], (int64_t)(a.bytes[i] / 4)) < tol))
            fail_msg("output '%s' with and without %s: rel L2 %g", a.names[i], pass,
                     tu_rel_l2(a.data[i], b.data[i], (int64_t)(a.bytes[i] / 4)));
    }
    tn_io_free(&a);
    tn_io_free(&b);
    kiln_engine_destroy(on);
    kiln_engine_destroy(off);
}

int tn_count_op(const kiln_engine *e, const char *op)
{
    int n = 0;
    for (int32_t i = 0; i < kiln_engine_num_layers(e); i++) {
        kiln_layer_info li;
        assert_int_equal(kiln_engine_layer_info(e, i, &li), KILN_OK);
        n += strcmp(li.op, op) == 0;
    }
    return n;
}

int32_t tn_find_layer(const kiln_engine *e, const char *name)
{
    for (int32_t i = 0; i < kiln_engine_num_layers(e); i++) {
        kiln_layer_info li;
        assert_int_equal(kiln_engine_layer_info(e, i, &li), KILN_OK);
        if (strcmp(li.name, name) == 0) return i;
    }
    fail_msg("no layer '%s'", name);
    return -1;
}

void tn_expect_layer(const kiln_engine *e, const char *name, const char *op, int32_t n_in,
                     const char *fused)
{
    int32_t i = tn_find_layer(e, name);
    kiln_layer_info li;
    assert_int_equal(kiln_engine_layer_info(e, i, &li), KILN_OK);
    if (strcmp(li.op, op) != 0) fail_msg("layer '%s' runs %s, expected %s", name, li.op, op);
    if (n_in >= 0 && li.n_inputs != n_in)
        fail_msg("layer '%s' has %d inputs, expected %d", name, li.n_inputs, n_in);
    char got[512] = "";
    const char *f;
    for (int32_t k = 0; (f = kiln_engine_layer_fused_from(e, i, k)) != NULL; k++) {
        size_t len = strlen(got);
        snprintf(got + len, sizeof got - len, "%s%s", k ? "," : "", f);
    }
    if (strcmp(got, fused) != 0)
        fail_msg("layer '%s' stands for %s, expected %s", name, got, fused);
}
