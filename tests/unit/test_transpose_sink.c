/* test_transpose_sink.c - the transpose-sinking pass: where each Transpose ends up (one pass
 * on the builder's graph: which layers live, what they read, new constants, perms and axes),
 * what the whole pipeline leaves (Transposes counted in the engine), the same numbers with
 * the pass on and off, and what the pass must leave alone. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testnet.h"

#define DIMS(...) TU_DIMS(__VA_ARGS__)
#define PERM(...)                                                                                  \
    ATTRS(KILN_ATTR_IS("perm", ((const int64_t[]){__VA_ARGS__}),                                   \
                       (int32_t)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t))))

#define PASS "transpose-sinking"
#define TOL  1e-5

/* NCHW -> NHWC and back: the pair exporters write around layers that want channels last. */
#define TO_NHWC   PERM(0, 2, 3, 1)
#define FROM_NHWC PERM(0, 3, 1, 2)

static void expect_shape(const ir_graph *g, const char *value, int32_t rank, const int64_t *d)
{
    int32_t v = ir_graph_find_value(g, value);
    assert_true(v >= 0);
    kiln_dims want = kiln_dims_make(rank, d);
    if (!kiln_dims_equal(&g->values[v].shape, &want)) {
        char a[KILN_DIMS_STR_MAX], b[KILN_DIMS_STR_MAX];
        fail_msg("'%s' has shape %s, expected %s", value,
                 kiln_dims_str(&g->values[v].shape, a, sizeof a),
                 kiln_dims_str(&want, b, sizeof b));
    }
}

static void expect_ints(const ir_graph *g, const char *layer, const char *attr, int32_t n,
                        const int64_t *want)
{
    int32_t cnt = 0;
    const int64_t *p = ir_attr_ints(tn_node(g, layer), attr, &cnt);
    assert_non_null(p);
    assert_int_equal(cnt, n);
    assert_memory_equal(p, want, sizeof(int64_t) * (size_t)n);
}

/* The values of constant `value` (f32). */
static const float *const_data(const ir_graph *g, const char *value)
{
    int32_t v = ir_graph_find_value(g, value);
    assert_true(v >= 0 && g->values[v].kind == IR_VALUE_CONSTANT);
    return g->values[v].data;
}

/* Transposes an engine built with every pass runs, and with this pass off. */
static void expect_transposes(const kiln_network *net, int on, int off)
{
    kiln_engine *e = tn_build(net, NULL);
    assert_int_equal(tn_count_op(e, "Transpose"), on);
    kiln_engine_destroy(e);
    e = tn_build(net, PASS);
    assert_int_equal(tn_count_op(e, "Transpose"), off);
    kiln_engine_destroy(e);
}

/* Runs the pass once on the builder's view of `net`; returns its change count. */
static int32_t run_once(const kiln_network *net, ir_graph *g)
{
    tn_prepare(net, g);
    return tn_run_pass(g, opt_transpose_sinking);
}

/* ---- unary ---- */

static void test_unary_chain(void **state)
{
    kiln_network *net = tn_net();
    tn_input(net, "x", DIMS(2, 3, 4, 5));
    tn_layer(net, "Transpose", "t1", IN("x"), OUT("a"), TO_NHWC);
    tn_layer(net, "Relu", "relu", IN("a"), OUT("b"), NO_ATTRS);
    tn_layer(net, "LeakyRelu", "leaky", IN("b"), OUT("c"), ATTRS(KILN_ATTR_F("alpha", 0.3f)));
    tn_scalar(net, "lo", -0.5f);
    tn_scalar(net, "hi", 0.5f);
    tn_layer(net, "Clip", "clip", IN("c", "lo", "hi"), OUT("d"), NO_ATTRS);
    tn_layer(net, "Transpose", "t2", IN("d"), OUT("y"), FROM_NHWC);
    tn_output(net, "y");
    ir_graph g;
    assert_int_equal(run_once(net, &g), 3);
    assert_string_equal(tn_reads(&g, "relu", 0), "x");
    assert_string_equal(tn_reads(&g, "leaky", 0), tn_writes(&g, "relu", 0));
    assert_string_equal(tn_reads(&g, "clip", 0), tn_writes(&g, "leaky", 0));
    assert_string_equal(tn_reads(&g, "clip", 1), "lo"); /* scalars stay */
    assert_string_equal(tn_reads(&g, "t1", 0), tn_writes(&g, "clip", 0));
    assert_string_equal(tn_writes(&g, "t1", 0), "d");
    assert_string_equal(tn_reads(&g, "t2", 0), "d");
    expect_shape(&g, tn_writes(&g, "relu", 0), DIMS(2, 3, 4, 5));
    expect_ints(&g, "t1", "perm", 4, (int64_t[]){0, 2, 3, 1});
    ir_graph_free(&g);
    expect_transposes(net, 0, 2);
    /* With the Transposes gone the three layers are one elementwise chain. */
    kiln_engine *e = tn_build(net, NULL);
    assert_int_equal(kiln_engine_num_layers(e), 1);
    tn_expect_layer(e, "relu", "kiln.Elementwise", -1, "relu,leaky,clip");
    kiln_engine_destroy(e);
    tn_same_numbers(net, PASS, 0);
    kiln_network_destroy(net);
}

/* Not an inverse: the two meet and merge into one Transpose with the composed perm. */
static void test_unary_merges(void **state)
{
    kiln_network *net = tn_net();
    tn_input(net, "x", DIMS(2, 3, 4, 5));
    tn_layer(net, "Transpose", "t1", IN("x"), OUT("a"), TO_NHWC);
    tn_layer(net, "Exp", "exp", IN("a"), OUT("b"), NO_ATTRS);
    tn_layer(net, "Neg", "neg", IN("b"), OUT("c"), NO_ATTRS);
    tn_layer(net, "Cast", "cast", IN("c"), OUT("d"), ATTRS(KILN_ATTR_I("to", KILN_DTYPE_I64)));
    tn_layer(net, "Transpose", "t2", IN("d"), OUT("y"), TO_NHWC);
    tn_output(net, "y");
    ir_graph g;
    assert_int_equal(run_once(net, &g), 3);
    assert_string_equal(tn_reads(&g, "exp", 0), "x");
    assert_string_equal(tn_reads(&g, "t1", 0), tn_writes(&g, "cast", 0));
    ir_graph_free(&g);
    expect_transposes(net, 1, 2);
    tn_same_numbers(net, PASS, 0);
    kiln_network_destroy(net);
}

/* Every op the table lets run in place is elementwise and moves: the pass's list covers them. */
static void test_every_inplace_op(void **state)
{
    int tried = 0;
    for (int32_t i = 0; ir_op_at(i); i++) {
        const ir_op *op = ir_op_at(i);
        /* kiln's own fused ops are not in models: kiln.Elementwise has operands. */
        if (!(op->flags & IR_OP_INPLACE) || strncmp(op->name, "kiln.", 5) == 0) continue;
        bool boolean = strcmp(op->name, "Not") == 0;
        kiln_network *net = tn_net();
        kiln_dims s = kiln_dims_make(DIMS(2, 3, 4));
        assert_int_equal(
            kiln_network_add_input(net, "x", boolean ? KILN_DTYPE_BOOL : KILN_DTYPE_F32, &s),
            KILN_OK);
        tn_layer(net, "Transpose", "t1", IN("x"), OUT("a"), PERM(1, 2, 0));
        tn_layer(net, op->name, "op", IN("a"), OUT("b"), NO_ATTRS);
        tn_layer(net, "Transpose", "t2", IN("b"), OUT("y"), PERM(2, 0, 1));
        tn_output(net, "y");
        ir_graph g;
        if (run_once(net, &g) != 1) fail_msg("%s: the Transpose did not move", op->name);
        assert_string_equal(tn_reads(&g, "op", 0), "x");
        ir_graph_free(&g);
        if (!boolean) { /* the engines' inputs are f32 */
            expect_transposes(net, 0, 2);
            tn_same_numbers(net, PASS, 0);
        }
        kiln_network_destroy(net);
        tried++;
    }
    assert_true(tried >= 20);
}

/* ---- binary ---- */

/* Constants of full rank, of lower rank (broadcast), scalars, on either side. */
static void test_binary_constants(void **state)
{
    kiln_network *net = tn_net();
    tn_input(net, "x", DIMS(2, 3, 4, 5));
    tn_weights(net, "full", DIMS(2, 4, 5, 3), 1, -1, 1); /* NHWC */
    tn_weights(net, "chan", DIMS(3), 2, 0.5f, 2);        /* per channel, channels last */
    tn_weights(net, "w5", DIMS(5, 1), 3, -1, 1);         /* along W */
    tn_scalar(net, "half", 0.5f);
    tn_layer(net, "Transpose", "t1", IN("x"), OUT("a"), TO_NHWC);
    tn_layer(net, "Add", "add", IN("a", "full"), OUT("b"), NO_ATTRS);
    tn_layer(net, "Mul", "mul", IN("chan", "b"), OUT("c"), NO_ATTRS);
    tn_layer(net, "Sub", "sub", IN("c", "half"), OUT("d"), NO_ATTRS);
    tn_layer(net, "Div", "div", IN("d", "w5"), OUT("e"), NO_ATTRS);
    tn_layer(net, "Transpose", "t2", IN("e"), OUT("y"), FROM_NHWC);
    tn_output(net, "y");
    ir_graph g;
    assert_int_equal(run_once(net, &g), 4);
    assert_string_equal(tn_reads(&g, "add", 0), "x");
    const char *full = tn_reads(&g, "add", 1), *chan = tn_reads(&g, "mul", 0);
    const char *w5 = tn_reads(&g, "div", 1);
    assert_true(tn_is_constant(&g, full) && strcmp(full, "full") != 0);
    expect_shape(&g, full, DIMS(2, 3, 4, 5));
    expect_shape(&g, chan, DIMS(1, 3, 1, 1));
    expect_shape(&g, w5, DIMS(1, 1, 1, 5));
    assert_string_equal(tn_reads(&g, "sub", 1), "half");
    /* new[n][c][h][w] = full[n][h][w][c] */
    const float *f0 = const_data(&g, "full"), *f1 = const_data(&g, full);
    for (int n = 0; n < 2; n++)
        for (int c = 0; c < 3; c++)
            for (int h = 0; h < 4; h++)
                for (int w = 0; w < 5; w++)
                    assert_true(f1[((n * 3 + c) * 4 + h) * 5 + w] ==
                                f0[((n * 4 + h) * 5 + w) * 3 + c]);
    assert_memory_equal(const_data(&g, chan), const_data(&g, "chan"), 3 * sizeof(float));
    assert_string_equal(tn_reads(&g, "t1", 0), tn_writes(&g, "div", 0));
    ir_graph_free(&g);
    expect_transposes(net, 0, 2);
    tn_same_numbers(net, PASS, 0);
    kiln_network_destroy(net);
}

/* T(a) op T(b) = T(a op b), broadcasting included; Where with three Transposed inputs. */
static void test_binary_two_transposes(void **state)
{
    kiln_network *net = tn_net();
    tn_input(net, "a", DIMS(2, 3, 4, 5));
    tn_input(net, "b", DIMS(2, 3, 1, 5));
    tn_input(net, "c", DIMS(2, 3, 4, 5));
    tn_input(net, "d", DIMS(2, 3, 4, 5));
    tn_layer(net, "Transpose", "ta", IN("a"), OUT("ta"), TO_NHWC);
    tn_layer(net, "Transpose", "tb", IN("b"), OUT("tb"), TO_NHWC);
    tn_layer(net, "Mul", "mul", IN("ta", "tb"), OUT("m"), NO_ATTRS);
    tn_layer(net, "Transpose", "tc", IN("c"), OUT("tc"), TO_NHWC);
    tn_scalar(net, "zero", 0.0f);
    tn_layer(net, "Greater", "gt", IN("tc", "zero"), OUT("cond"), NO_ATTRS);
    tn_layer(net, "Transpose", "td", IN("d"), OUT("td"), TO_NHWC);
    tn_layer(net, "Where", "where", IN("cond", "m", "td"), OUT("w"), NO_ATTRS);
    tn_layer(net, "Transpose", "back", IN("w"), OUT("y"), FROM_NHWC);
    tn_output(net, "y");
    ir_graph g;
    int32_t changes = run_once(net, &g);
    assert_true(changes >= 3);
    assert_string_equal(tn_reads(&g, "mul", 0), "a");
    assert_string_equal(tn_reads(&g, "mul", 1), "b");
    assert_string_equal(tn_reads(&g, "gt", 0), "c");
    assert_string_equal(tn_reads(&g, "where", 2), "d");
    int live = 0;
    const char *names[] = {"ta", "tb", "tc", "td"};
    for (int i = 0; i < 4; i++) live += tn_live(&g, names[i]);
    assert_int_equal(live, 1); /* one Transpose left, above 'back' */
    ir_graph_free(&g);
    expect_transposes(net, 0, 5);
    tn_same_numbers(net, PASS, 0);
    kiln_network_destroy(net);
}

/* Two Transposes joining is a gain of its own: one is left, nothing below to meet. */
static void test_binary_join_alone(void **state)
{
    kiln_network *net = tn_net();
    tn_input(net, "a", DIMS(2, 3, 4));
    tn_input(net, "b", DIMS(2, 3, 4));
    tn_layer(net, "Transpose", "ta", IN("a"), OUT("ta"), PERM(2, 0, 1));
    tn_layer(net, "Transpose", "tb", IN("b"), OUT("tb"), PERM(2, 0, 1));
    tn_layer(net, "Add", "add", IN("ta", "tb"), OUT("y"), NO_ATTRS);
    tn_output(net, "y");
    ir_graph g;
    assert_int_equal(run_once(net, &g), 1);
    assert_string_equal(tn_reads(&g, "add", 0), "a");
    assert_string_equal(tn_reads(&g, "add", 1), "b");
    assert_string_equal(tn_writes(&g, "ta", 0), "y"); /* the output keeps its name */
    assert_false(tn_live(&g, "tb"));
    ir_graph_free(&g);
    expect_transposes(net, 1, 2);
    kiln_engine *e = tn_build(net, NULL);
    tn_expect_layer(e, "ta", "Transpose", 1, "ta,tb");
    kiln_engine_destroy(e);
    tn_same_numbers(net, PASS, 0);
    kiln_network_destroy(net);
}

/* ---- Concat ---- */

static void test_concat(void **state)
{
    kiln_network *net = tn_net();
    tn_input(net, "a", DIMS(2, 3, 4, 5));
    tn_input(net, "b", DIMS(2, 1, 4, 5));
    tn_weights(net, "k", DIMS(2, 4, 5, 2), 4, -1, 1); /* NHWC, 2 channels */
    tn_layer(net, "Transpose", "ta", IN("a"), OUT("ta"), TO_NHWC);
    tn_layer(net, "Transpose", "tb", IN("b"), OUT("tb"), TO_NHWC);
    tn_layer(net, "Concat", "cat", IN("ta", "k", "tb"), OUT("c"), ATTRS(KILN_ATTR_I("axis", -1)));
    tn_layer(net, "Sigmoid", "sig", IN("c"), OUT("s"), NO_ATTRS);
    tn_layer(net, "Transpose", "back", IN("s"), OUT("y"), FROM_NHWC);
    tn_output(net, "y");
    ir_graph g;
    assert_int_equal(run_once(net, &g), 2);
    assert_string_equal(tn_reads(&g, "cat", 0), "a");
    assert_string_equal(tn_reads(&g, "cat", 2), "b");
    expect_shape(&g, tn_reads(&g, "cat", 1), DIMS(2, 2, 4, 5));
    assert_int_equal(ir_attr_int(tn_node(&g, "cat"), "axis"), 1);
    expect_shape(&g, tn_writes(&g, "cat", 0), DIMS(2, 6, 4, 5));
    assert_false(tn_live(&g, "tb"));
    ir_graph_free(&g);
    expect_transposes(net, 0, 2); /* off: tb moves only a size-1 axis, a Reshape does it */
    tn_same_numbers(net, PASS, 0);
    kiln_network_destroy(net);
}

/* ---- Reduce, ArgMax, Softmax ---- */

/* keepdims 1, axes as an input: below the Reduce the Transpose moves only size-1 axes, so it
 * is free there even with nothing to meet (the pipeline makes it a Reshape). */
static void test_reduce_keepdims(void **state)
{
    kiln_network *net = tn_net();
    tn_input(net, "x", DIMS(2, 3, 4, 5));
    tn_ints(net, "hw", 2, (int64_t[]){1, 2});
    tn_layer(net, "Transpose", "t1", IN("x"), OUT("a"), TO_NHWC);
    tn_layer(net, "ReduceMean", "mean", IN("a", "hw"), OUT("y"), ATTRS(KILN_ATTR_I("keepdims", 1)));
    tn_output(net, "y");
    ir_graph g;
    assert_int_equal(run_once(net, &g), 1);
    assert_string_equal(tn_reads(&g, "mean", 0), "x");
    const char *axes = tn_reads(&g, "mean", 1);
    assert_true(tn_is_constant(&g, axes));
    int32_t v = ir_graph_find_value(&g, axes);
    assert_memory_equal(g.values[v].data, ((int64_t[]){2, 3}), 2 * sizeof(int64_t));
    expect_shape(&g, tn_writes(&g, "mean", 0), DIMS(2, 3, 1, 1));
    assert_string_equal(tn_writes(&g, "t1", 0), "y");
    ir_graph_free(&g);
    expect_transposes(net, 0, 1);
    kiln_engine *e = tn_build(net, NULL);
    assert_int_equal(tn_count_op(e, "Reshape"), 1);
    kiln_engine_destroy(e);
    tn_same_numbers(net, PASS, TOL);
    kiln_network_destroy(net);
}

/* keepdims 0: the perm loses the reduced axes; here the inverse below cancels it. */
static void test_reduce_drops_axes(void **state)
{
    kiln_network *net = tn_net();
    tn_input(net, "x", DIMS(2, 3, 4, 5));
    tn_ints(net, "w", 1, (int64_t[]){2});
    tn_layer(net, "Transpose", "t1", IN("x"), OUT("a"), TO_NHWC); /* 2x4x5x3 */
    tn_layer(net, "ReduceSum", "sum", IN("a", "w"), OUT("s"), ATTRS(KILN_ATTR_I("keepdims", 0)));
    tn_layer(net, "Exp", "exp", IN("s"), OUT("e"), NO_ATTRS);           /* 2x4x3 */
    tn_layer(net, "Transpose", "t2", IN("e"), OUT("y"), PERM(0, 2, 1)); /* 2x3x4 */
    tn_output(net, "y");
    ir_graph g;
    assert_int_equal(run_once(net, &g), 2);
    assert_string_equal(tn_reads(&g, "sum", 0), "x");
    expect_shape(&g, tn_writes(&g, "sum", 0), DIMS(2, 3, 4));
    expect_ints(&g, "t1", "perm", 3, (int64_t[]){0, 2, 1});
    assert_string_equal(tn_reads(&g, "t1", 0), tn_writes(&g, "exp", 0));
    ir_graph_free(&g);
    expect_transposes(net, 0, 2);
    tn_same_numbers(net, PASS, TOL);
    kiln_network_destroy(net);
}

/* keepdims 0 over the axis the perm moved (axes as the old attribute): what is left is the
 * identity, so the Transpose goes at once. */
static void test_reduce_leaves_identity(void **state)
{
    kiln_network *net = tn_net();
    tn_input(net, "x", DIMS(2, 3, 4, 5));
    tn_layer(net, "Transpose", "t1", IN("x"), OUT("a"), TO_NHWC);
    tn_layer(net, "ReduceMax", "max", IN("a"), OUT("y"),
             ATTRS(KILN_ATTR_I("keepdims", 0), KILN_ATTR_IS("axes", ((const int64_t[]){-1}), 1)));
    tn_output(net, "y");
    ir_graph g;
    assert_int_equal(run_once(net, &g), 1);
    assert_false(tn_live(&g, "t1"));
    assert_string_equal(tn_reads(&g, "max", 0), "x");
    assert_string_equal(tn_writes(&g, "max", 0), "y");
    expect_ints(&g, "max", "axes", 1, (int64_t[]){1});
    ir_graph_free(&g);
    expect_transposes(net, 0, 1);
    tn_same_numbers(net, PASS, 0); /* one axis: the same sums in the same order */
    kiln_network_destroy(net);
}

static void test_argmax(void **state)
{
    for (int keep = 0; keep <= 1; keep++) {
        kiln_network *net = tn_net();
        tn_input(net, "x", DIMS(2, 3, 4, 5));
        tn_layer(net, "Transpose", "t1", IN("x"), OUT("a"), PERM(0, 2, 1, 3)); /* 2x4x3x5 */
        tn_layer(net, "ArgMax", "arg", IN("a"), OUT("i"),
                 ATTRS(KILN_ATTR_I("axis", 3), KILN_ATTR_I("keepdims", keep)));
        if (keep)
            tn_layer(net, "Transpose", "t2", IN("i"), OUT("y"), PERM(0, 2, 1, 3));
        else
            tn_layer(net, "Transpose", "t2", IN("i"), OUT("y"), PERM(0, 2, 1));
        tn_output(net, "y");
        ir_graph g;
        assert_int_equal(run_once(net, &g), 1);
        assert_string_equal(tn_reads(&g, "arg", 0), "x");
        assert_int_equal(ir_attr_int(tn_node(&g, "arg"), "axis"), 3);
        ir_graph_free(&g);
        expect_transposes(net, 0, 2);
        tn_same_numbers(net, PASS, 0);
        kiln_network_destroy(net);
    }
}

/* Attention's layout: heads moved forward for a Softmax over the last axis, and back. */
static void test_softmax(void **state)
{
    const char *ops[] = {"Softmax", "LogSoftmax"};
    for (int k = 0; k < 2; k++) {
        kiln_network *net = tn_net();
        tn_input(net, "x", DIMS(2, 3, 4, 5));
        tn_layer(net, "Transpose", "t1", IN("x"), OUT("a"), PERM(0, 2, 1, 3));
        tn_layer(net, ops[k], "sm", IN("a"), OUT("s"), ATTRS(KILN_ATTR_I("axis", k ? 1 : -1)));
        tn_layer(net, "Transpose", "t2", IN("s"), OUT("y"), PERM(0, 2, 1, 3));
        tn_output(net, "y");
        ir_graph g;
        assert_int_equal(run_once(net, &g), 1);
        assert_string_equal(tn_reads(&g, "sm", 0), "x");
        assert_int_equal(ir_attr_int(tn_node(&g, "sm"), "axis"), k ? 2 : 3);
        ir_graph_free(&g);
        expect_transposes(net, 0, 2);
        tn_same_numbers(net, PASS, 0);
        kiln_network_destroy(net);
    }
}

/* ---- moving up ---- */

/* The first Transpose has another reader, so it cannot move down; the second moves up past
 * the elementwise layers (permuting their constant) onto it, and both vanish there. */
static void test_hoist_onto_shared(void **state)
{
    kiln_network *net = tn_net();
    tn_input(net, "x", DIMS(2, 3, 4, 5));
    tn_weights(net, "chan", DIMS(3), 5, -1, 1);
    tn_layer(net, "Transpose", "t1", IN("x"), OUT("a"), TO_NHWC);
    tn_layer(net, "Neg", "other", IN("a"), OUT("z"), NO_ATTRS);
    tn_layer(net, "Relu", "relu", IN("a"), OUT("r"), NO_ATTRS);
    tn_layer(net, "Add", "add", IN("r", "chan"), OUT("s"), NO_ATTRS);
    tn_layer(net, "Transpose", "t2", IN("s"), OUT("y"), FROM_NHWC);
    tn_output(net, "y");
    tn_output(net, "z");
    ir_graph g;
    assert_int_equal(run_once(net, &g), 1);
    assert_false(tn_live(&g, "t2"));
    assert_true(tn_live(&g, "t1"));
    assert_string_equal(tn_reads(&g, "other", 0), "a");
    assert_string_equal(tn_reads(&g, "relu", 0), "x");
    assert_string_equal(tn_writes(&g, "add", 0), "y");
    expect_shape(&g, tn_reads(&g, "add", 1), DIMS(1, 3, 1, 1));
    ir_graph_free(&g);
    expect_transposes(net, 1, 2);
    tn_same_numbers(net, PASS, 0);
    kiln_network_destroy(net);
}

/* The first Transpose writes a network output: it stays, the second one goes. */
static void test_hoist_onto_output(void **state)
{
    kiln_network *net = tn_net();
    tn_input(net, "x", DIMS(2, 3, 4));
    tn_layer(net, "Transpose", "t1", IN("x"), OUT("a"), PERM(1, 2, 0));
    tn_layer(net, "Sigmoid", "sig", IN("a"), OUT("s"), NO_ATTRS);
    tn_layer(net, "Transpose", "t2", IN("s"), OUT("y"), PERM(2, 0, 1));
    tn_output(net, "a");
    tn_output(net, "y");
    ir_graph g;
    assert_int_equal(run_once(net, &g), 1);
    assert_string_equal(tn_reads(&g, "sig", 0), "x");
    assert_string_equal(tn_writes(&g, "sig", 0), "y");
    assert_string_equal(tn_writes(&g, "t1", 0), "a");
    ir_graph_free(&g);
    expect_transposes(net, 1, 2);
    tn_same_numbers(net, PASS, 0);
    kiln_network_destroy(net);
}

/* ---- what stays ---- */

/* Each network here keeps its layers as they are: run once, nothing changes. */
static void expect_untouched(kiln_network *net, int transposes)
{
    ir_graph g;
    tn_prepare(net, &g);
    int32_t before = tn_live_count(&g);
    assert_int_equal(tn_run_pass(&g, opt_transpose_sinking), 0);
    assert_int_equal(tn_live_count(&g), before);
    ir_graph_free(&g);
    expect_transposes(net, transposes, transposes);
    tn_same_numbers(net, PASS, 0);
    kiln_network_destroy(net);
}

static void test_leaves_two_readers(void **state)
{
    /* t1's output has two readers (and the perm below does not undo it: no moving up) */
    kiln_network *net = tn_net();
    tn_input(net, "x", DIMS(2, 3, 4));
    tn_layer(net, "Transpose", "t1", IN("x"), OUT("a"), PERM(1, 2, 0));
    tn_layer(net, "Relu", "relu", IN("a"), OUT("r"), NO_ATTRS);
    tn_layer(net, "Sigmoid", "sig", IN("a"), OUT("z"), NO_ATTRS);
    tn_layer(net, "Transpose", "t2", IN("r"), OUT("y"), PERM(1, 2, 0));
    tn_output(net, "y");
    tn_output(net, "z");
    expect_untouched(net, 2);
}

static void test_leaves_network_outputs(void **state)
{
    /* t1 writes a network output; and below u1, the Tanh's output is one */
    kiln_network *net = tn_net();
    tn_input(net, "x", DIMS(2, 3, 4));
    tn_input(net, "x2", DIMS(2, 3, 4));
    tn_layer(net, "Transpose", "t1", IN("x"), OUT("a"), PERM(1, 2, 0));
    tn_layer(net, "Relu", "relu", IN("a"), OUT("r"), NO_ATTRS);
    tn_layer(net, "Transpose", "t2", IN("r"), OUT("y"), PERM(1, 2, 0));
    tn_layer(net, "Transpose", "u1", IN("x2"), OUT("b"), PERM(1, 2, 0));
    tn_layer(net, "Tanh", "tanh", IN("b"), OUT("c"), NO_ATTRS);
    tn_layer(net, "Transpose", "u2", IN("c"), OUT("w"), PERM(2, 0, 1));
    tn_output(net, "a");
    tn_output(net, "y");
    tn_output(net, "c");
    tn_output(net, "w");
    expect_untouched(net, 4);
}

static void test_leaves_activation_operand(void **state)
{
    /* the other operand of an Add is an activation, of a Sub a Transpose with another perm;
     * a Concat has a plain input */
    kiln_network *net = tn_net();
    tn_input(net, "x", DIMS(2, 3, 4));
    tn_input(net, "b", DIMS(3, 4, 2));
    tn_input(net, "b43", DIMS(4, 3, 2));
    tn_layer(net, "Transpose", "t1", IN("x"), OUT("a1"), PERM(1, 2, 0));
    tn_layer(net, "Add", "add", IN("a1", "b"), OUT("s1"), NO_ATTRS);
    tn_layer(net, "Transpose", "t1b", IN("s1"), OUT("y1"), PERM(2, 0, 1));
    tn_layer(net, "Transpose", "t2", IN("x"), OUT("a2"), PERM(1, 2, 0));
    tn_layer(net, "Transpose", "t2p", IN("b43"), OUT("b3"), PERM(1, 0, 2)); /* 3x4x2 */
    tn_layer(net, "Sub", "sub", IN("a2", "b3"), OUT("s2"), NO_ATTRS);
    tn_layer(net, "Transpose", "t2b", IN("s2"), OUT("y2"), PERM(2, 0, 1));
    tn_layer(net, "Transpose", "t3", IN("x"), OUT("a3"), PERM(1, 2, 0));
    tn_layer(net, "Concat", "cat", IN("a3", "b"), OUT("c3"), ATTRS(KILN_ATTR_I("axis", 0)));
    tn_layer(net, "Transpose", "t3b", IN("c3"), OUT("y3"), PERM(2, 0, 1));
    tn_output(net, "y1");
    tn_output(net, "y2");
    tn_output(net, "y3");
    ir_graph g;
    tn_prepare(net, &g);
    (void)tn_run_pass(&g, opt_transpose_sinking);
    assert_string_equal(tn_reads(&g, "add", 0), "a1");
    assert_string_equal(tn_reads(&g, "sub", 0), "a2");
    assert_string_equal(tn_reads(&g, "cat", 0), "a3");
    assert_string_equal(tn_reads(&g, "t1b", 0), "s1");
    assert_string_equal(tn_reads(&g, "t3b", 0), "c3");
    ir_graph_free(&g);
    tn_same_numbers(net, PASS, 0);
    kiln_network_destroy(net);

    /* two Transposes with different perms, and one whose output has a second reader */
    net = tn_net();
    tn_input(net, "x", DIMS(2, 3, 4));
    tn_input(net, "b", DIMS(2, 3, 4));
    tn_input(net, "c", DIMS(4, 3, 2));
    tn_layer(net, "Transpose", "t1", IN("x"), OUT("a"), PERM(1, 2, 0));
    tn_layer(net, "Transpose", "tc", IN("c"), OUT("d"), PERM(1, 0, 2)); /* 3x4x2 */
    tn_layer(net, "Mul", "mul", IN("a", "d"), OUT("m"), NO_ATTRS);
    tn_layer(net, "Transpose", "back", IN("m"), OUT("y"), PERM(2, 0, 1));
    tn_layer(net, "Transpose", "t2", IN("x"), OUT("e"), PERM(1, 2, 0));
    tn_layer(net, "Transpose", "t3", IN("b"), OUT("f"), PERM(1, 2, 0));
    tn_layer(net, "Add", "add", IN("e", "f"), OUT("s"), NO_ATTRS);
    tn_layer(net, "Neg", "neg", IN("f"), OUT("z"), NO_ATTRS); /* f's second reader */
    tn_output(net, "y");
    tn_output(net, "s");
    tn_output(net, "z");
    tn_prepare(net, &g);
    (void)tn_run_pass(&g, opt_transpose_sinking);
    assert_string_equal(tn_reads(&g, "add", 0), "e");
    assert_string_equal(tn_reads(&g, "add", 1), "f");
    assert_string_equal(tn_reads(&g, "back", 0), "m");
    ir_graph_free(&g);
    tn_same_numbers(net, PASS, 0);
    kiln_network_destroy(net);
}

static void test_leaves_nothing_to_gain(void **state)
{
    /* nothing below to meet: moving past Relu and Add would only move the copy */
    kiln_network *net = tn_net();
    tn_input(net, "x", DIMS(2, 3, 4, 5));
    tn_weights(net, "c", DIMS(5, 3), 6, -1, 1);
    tn_layer(net, "Transpose", "t1", IN("x"), OUT("a"), TO_NHWC);
    tn_layer(net, "Relu", "relu", IN("a"), OUT("r"), NO_ATTRS);
    tn_layer(net, "Add", "add", IN("r", "c"), OUT("y"), NO_ATTRS);
    tn_output(net, "y");
    expect_untouched(net, 1);

    /* a layer that cares about the layout sits between the two */
    net = tn_net();
    tn_input(net, "x", DIMS(2, 3, 4, 5));
    tn_weights(net, "w", DIMS(4, 6), 7, -1, 1);
    tn_layer(net, "Transpose", "t1", IN("x"), OUT("a"), PERM(0, 1, 3, 2)); /* 2x3x5x4 */
    tn_layer(net, "Relu", "relu", IN("a"), OUT("r"), NO_ATTRS);
    tn_layer(net, "MatMul", "mm", IN("r", "w"), OUT("m"), NO_ATTRS); /* 2x3x5x6 */
    tn_layer(net, "Transpose", "t2", IN("m"), OUT("y"), PERM(0, 1, 3, 2));
    tn_output(net, "y");
    expect_untouched(net, 2);

    /* a Reduce over two axes whose Transpose stays a real copy below it */
    net = tn_net();
    tn_input(net, "x", DIMS(2, 3, 4, 5));
    tn_ints(net, "ax", 1, (int64_t[]){0});
    tn_layer(net, "Transpose", "t1", IN("x"), OUT("a"), PERM(0, 3, 2, 1));
    tn_layer(net, "ReduceSum", "sum", IN("a", "ax"), OUT("y"), ATTRS(KILN_ATTR_I("keepdims", 1)));
    tn_output(net, "y");
    expect_untouched(net, 1);
}

/* ---- the pipeline ---- */

static void test_pass_listed(void **state)
{
    int32_t at = -1, rt = -1;
    for (int32_t k = 0; kiln_pass_name(k); k++) {
        if (!strcmp(kiln_pass_name(k), PASS)) at = k;
        if (!strcmp(kiln_pass_name(k), "reshape-transpose")) rt = k;
    }
    assert_true(at >= 0);
    assert_int_equal(at + 1, rt);
}

/* Unary, constants, a join, a Reduce with new axes and a move up: one network. */
static kiln_network *all_cases_net(void)
{
    kiln_network *net = tn_net();
    tn_input(net, "x", DIMS(1, 3, 4, 5));
    tn_input(net, "x2", DIMS(1, 3, 4, 5));
    tn_weights(net, "chan", DIMS(3), 8, -1, 1);
    tn_ints(net, "ax", 1, (int64_t[]){1});
    tn_layer(net, "Transpose", "t1", IN("x"), OUT("a"), TO_NHWC);
    tn_layer(net, "Transpose", "t1b", IN("x2"), OUT("a2"), TO_NHWC);
    tn_layer(net, "Mul", "mul", IN("a", "a2"), OUT("m"), NO_ATTRS);
    tn_layer(net, "Add", "add", IN("m", "chan"), OUT("s"), NO_ATTRS);
    tn_layer(net, "Relu", "relu", IN("s"), OUT("r"), NO_ATTRS);
    tn_layer(net, "ReduceMean", "mean", IN("r", "ax"), OUT("q"), ATTRS(KILN_ATTR_I("keepdims", 1)));
    tn_layer(net, "Transpose", "t2", IN("q"), OUT("y"), FROM_NHWC);
    tn_layer(net, "Transpose", "u1", IN("x"), OUT("b"), PERM(0, 2, 1, 3));
    tn_layer(net, "Sigmoid", "sig", IN("b"), OUT("g"), NO_ATTRS);
    tn_layer(net, "Transpose", "u2", IN("g"), OUT("z"), PERM(0, 2, 1, 3));
    tn_output(net, "b");
    tn_output(net, "y");
    tn_output(net, "z");
    return net;
}

static void test_logs(void **state)
{
    kiln_network *net = all_cases_net();
    const char *capture_text;
    kiln_engine *e = tn_build_logged(net, &capture_text);
    const char *want[] = {
        "transpose-sinking: Transpose 't1b' joins Transpose 't1' below 'mul' (Mul)",
        "transpose-sinking: moved Transpose 't1' below 'mul' (Mul)",
        "transpose-sinking: moved Transpose 't1' below 'relu' (Relu)",
        "transpose-sinking: moved Transpose 't1' below 'mean' (ReduceMean)",
        "reshape-transpose: merged Transpose 't1' into Transpose 't2'",
        "transpose-sinking: removed Transpose 'u2': moved up past 1 layer from 'sig' (Sigmoid), "
        "it undoes Transpose 'u1'"};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) tn_expect_log(capture_text, want[i]);
    assert_int_equal(tn_count_op(e, "Transpose"), 1); /* u1, for the output b */
    kiln_engine_destroy(e);
    expect_transposes(net, 1, 5);
    tn_same_numbers(net, PASS, TOL);
    kiln_network_destroy(net);
}

static void test_allocation_failures(void **state)
{
    kiln_network *net = all_cases_net();
    tu_build_survives_allocation_failures(net);
    kiln_network_destroy(net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unary_chain),
        cmocka_unit_test(test_unary_merges),
        cmocka_unit_test(test_every_inplace_op),
        cmocka_unit_test(test_binary_constants),
        cmocka_unit_test(test_binary_two_transposes),
        cmocka_unit_test(test_binary_join_alone),
        cmocka_unit_test(test_concat),
        cmocka_unit_test(test_reduce_keepdims),
        cmocka_unit_test(test_reduce_drops_axes),
        cmocka_unit_test(test_reduce_leaves_identity),
        cmocka_unit_test(test_argmax),
        cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_hoist_onto_shared),
        cmocka_unit_test(test_hoist_onto_output),
        cmocka_unit_test(test_leaves_two_readers),
        cmocka_unit_test(test_leaves_network_outputs),
        cmocka_unit_test(test_leaves_activation_operand),
        cmocka_unit_test(test_leaves_nothing_to_gain),
        cmocka_unit_test(test_pass_listed),
        cmocka_unit_test(test_logs),
        cmocka_unit_test(test_allocation_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
