/* test_opt.c - the graph passes identity, constant-folding, cse, reshape-transpose and
 * matmul-add-to-gemm: the structure each leaves (which layers live, what they read), the
 * same numbers with the pass on and off, and what each must leave alone. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "build/build.h"
#include "ir/network.h"
#include "opt/opt.h"
#include "testnet.h"

/* ---- identity ---- */

static void test_identity_removes_noops(void **state)
{
    kiln_network *net = tn_net();
    tn_input(net, "x", TU_DIMS(2, 3, 4));
    tn_input(net, "x2", TU_DIMS(6, 4));
    tn_ints(net, "shape", 3, (int64_t[]){2, 3, 4});
    tn_ints(net, "pads", 6, (int64_t[]){0, 0, 0, 0, 0, 0});
    tn_ints(net, "st", 2, (int64_t[]){0, 0});
    tn_ints(net, "en", 2, (int64_t[]){100, 3});
    tn_ints(net, "ax", 2, (int64_t[]){0, 1});
    tn_layer(net, "Identity", "id", IN("x"), OUT("a"), NO_ATTRS);
    tn_layer(net, "Cast", "cast", IN("a"), OUT("b"), ATTRS(KILN_ATTR_I("to", KILN_DTYPE_F32)));
    tn_layer(net, "Reshape", "reshape", IN("b", "shape"), OUT("c"), NO_ATTRS);
    tn_layer(net, "Transpose", "tr", IN("c"), OUT("d"),
             ATTRS(KILN_ATTR_IS("perm", ((const int64_t[]){0, 1, 2}), 3)));
    tn_layer(net, "Pad", "pad", IN("d", "pads"), OUT("e"), NO_ATTRS);
    tn_layer(net, "Slice", "slice", IN("e", "st", "en", "ax"), OUT("f"), NO_ATTRS);
    tn_layer(net, "Expand", "expand", IN("f", "shape"), OUT("g"), NO_ATTRS);
    tn_layer(net, "Squeeze", "squeeze", IN("g"), OUT("h"), NO_ATTRS); /* no size-1 axis */
    tn_layer(net, "Relu", "relu", IN("h"), OUT("y"), NO_ATTRS);
    tn_layer(net, "Flatten", "flatten", IN("x2"), OUT("f2"), NO_ATTRS); /* 2-D, axis 1 */
    tn_layer(net, "Neg", "neg", IN("f2"), OUT("y2"), NO_ATTRS);
    tn_output(net, "y");
    tn_output(net, "y2");

    ir_graph g;
    tn_prepare(net, &g);
    assert_int_equal(tn_run_pass(&g, opt_identity), 9);
    assert_int_equal(tn_live_count(&g), 2);
    assert_string_equal(tn_reads(&g, "relu", 0), "x");
    assert_string_equal(tn_reads(&g, "neg", 0), "x2");
    ir_graph_free(&g);
    tn_same_numbers(net, "identity", 0);
    kiln_network_destroy(net);
}

static void test_identity_keeps_real_work(void **state)
{
    kiln_network *net = tn_net();
    tn_input(net, "x", TU_DIMS(2, 3, 4));
    tn_ints(net, "shape", 2, (int64_t[]){6, 4});
    tn_ints(net, "pads", 6, (int64_t[]){0, 1, 0, 0, 0, 0});
    tn_ints(net, "st", 1, (int64_t[]){-1});
    tn_ints(net, "en", 1, (int64_t[]){-100});
    tn_ints(net, "ax", 1, (int64_t[]){2});
    tn_ints(net, "step", 1, (int64_t[]){-1});
    tn_layer(net, "Transpose", "tr", IN("x"), OUT("a"),
             ATTRS(KILN_ATTR_IS("perm", ((const int64_t[]){0, 2, 1}), 3)));
    tn_layer(net, "Slice", "reverse", IN("x", "st", "en", "ax", "step"), OUT("b"), NO_ATTRS);
    tn_layer(net, "Pad", "pad", IN("x", "pads"), OUT("c"), NO_ATTRS);
    tn_layer(net, "Reshape", "reshape", IN("x", "shape"), OUT("d"), NO_ATTRS);
    tn_layer(net, "Cast", "to_i32", IN("x"), OUT("e"), ATTRS(KILN_ATTR_I("to", KILN_DTYPE_I32)));
    for (int i = 0; i < 5; i++) tn_output(net, (const char *[]){"a", "b", "c", "d", "e"}[i]);

    ir_graph g;
    tn_prepare(net, &g);
    assert_int_equal(tn_run_pass(&g, opt_identity), 0);
    assert_int_equal(tn_live_count(&g), 5);
    ir_graph_free(&g);
    tn_same_numbers(net, "identity", 0);
    kiln_network_destroy(net);
}

static void test_identity_network_outputs(void **state)
{
    /* x -> Identity -> y: both are bound by name, so the layer stays. a -> Identity -> z
     * with a private to it: Relu writes z itself. */
    kiln_network *net = tn_net();
    tn_input(net, "x", TU_DIMS(4));
    tn_layer(net, "Identity", "pass", IN("x"), OUT("y"), NO_ATTRS);
    tn_layer(net, "Relu", "relu", IN("x"), OUT("a"), NO_ATTRS);
    tn_layer(net, "Identity", "id", IN("a"), OUT("z"), NO_ATTRS);
    tn_output(net, "y");
    tn_output(net, "z");

    ir_graph g;
    tn_prepare(net, &g);
    assert_int_equal(tn_run_pass(&g, opt_identity), 1);
    assert_true(tn_live(&g, "pass"));
    assert_false(tn_live(&g, "id"));
    assert_string_equal(tn_writes(&g, "relu", 0), "z");
    ir_graph_free(&g);
    tn_same_numbers(net, "identity", 0);
    kiln_network_destroy(net);
}

/* ---- constant-folding ---- */

/* x[3,32] @ (w[64,32] * 2)^T, plus the folded weights as a second output. The weights
 * are 8 KiB: more than the builder folds for shapes, so the pass does it. */
static kiln_network *folding_net(void)
{
    kiln_network *net = tn_net();
    tn_input(net, "x", TU_DIMS(3, 32));
    tn_weights(net, "w", TU_DIMS(64, 32), 7, -1.0f, 1.0f);
    tn_constant(net, "k", KILN_DTYPE_F32, 0, NULL, (float[]){2.0f});
    tn_layer(net, "Mul", "scale_w", IN("w", "k"), OUT("w2"), NO_ATTRS);
    tn_layer(net, "Transpose", "tr_w", IN("w2"), OUT("wt"),
             ATTRS(KILN_ATTR_IS("perm", ((const int64_t[]){1, 0}), 2)));
    tn_layer(net, "MatMul", "mm", IN("x", "wt"), OUT("y"), NO_ATTRS);
    tn_layer(net, "Sigmoid", "sig_w", IN("w2"), OUT("ws"), NO_ATTRS);
    tn_output(net, "y");
    tn_output(net, "ws");
    return net;
}

static void test_constant_folding(void **state)
{
    kiln_network *net = folding_net();
    ir_graph g;
    tn_prepare(net, &g);
    /* The builder's inference left the 8 KiB work alone. */
    assert_int_equal(tn_live_count(&g), 4);
    assert_int_equal(tn_run_pass(&g, opt_constant_folding), 3);
    assert_int_equal(tn_live_count(&g), 1);
    assert_true(tn_live(&g, "mm"));
    assert_string_equal(tn_reads(&g, "mm", 1), "wt");
    assert_true(tn_is_constant(&g, "wt"));
    assert_true(tn_is_constant(&g, "ws")); /* a network output can be a constant */
    int32_t wt = ir_graph_find_value(&g, "wt");
    assert_int_equal(g.values[wt].producer, -1);
    assert_int_equal(g.values[wt].nbytes, 64 * 32 * 4);
    ir_graph_free(&g);
    tn_same_numbers(net, "constant-folding", 1e-6);
    kiln_network_destroy(net);
}

static void test_constant_folding_limits(void **state)
{
    /* Expanding a scalar to 16 MiB + 4 bytes is over the cap; a layer reading the
     * input is not constant work. */
    kiln_network *net = tn_net();
    tn_input(net, "x", TU_DIMS(1));
    tn_constant(net, "one", KILN_DTYPE_F32, 0, NULL, (float[]){1.0f});
    tn_ints(net, "big", 1, (int64_t[]){(16 << 20) / 4 + 1});
    tn_layer(net, "Expand", "expand", IN("one", "big"), OUT("e"), NO_ATTRS);
    tn_layer(net, "ReduceSum", "sum", IN("e"), OUT("s"), NO_ATTRS);
    tn_layer(net, "Add", "add", IN("x", "s"), OUT("y"), NO_ATTRS);
    tn_output(net, "y");
    ir_graph g;
    tn_prepare(net, &g);
    assert_int_equal(tn_run_pass(&g, opt_constant_folding), 0);
    assert_true(tn_live(&g, "expand"));
    assert_true(tn_live(&g, "sum"));
    assert_true(tn_live(&g, "add"));
    ir_graph_free(&g);
    kiln_network_destroy(net);
}

static void test_builder_folds_only_shape_work(void **state)
{
    /* A small all-constant layer (shape arithmetic size) is folded during inference, a
     * larger one is not; Shape is folded whatever its input. */
    kiln_network *net = tn_net();
    tn_input(net, "x", TU_DIMS(2, 3));
    tn_weights(net, "small", TU_DIMS(1024), 1, -1.0f, 1.0f); /* 4 KiB: folded */
    tn_weights(net, "large", TU_DIMS(1025), 2, -1.0f, 1.0f); /* just over */
    tn_layer(net, "Neg", "neg_small", IN("small"), OUT("a"), NO_ATTRS);
    tn_layer(net, "Neg", "neg_large", IN("large"), OUT("b"), NO_ATTRS);
    tn_layer(net, "Shape", "shape", IN("x"), OUT("s"), NO_ATTRS);
    tn_output(net, "a");
    tn_output(net, "b");
    tn_output(net, "s");
    ir_graph g;
    tn_prepare(net, &g);
    assert_false(tn_live(&g, "neg_small"));
    assert_true(tn_live(&g, "neg_large"));
    assert_false(tn_live(&g, "shape"));
    ir_graph_free(&g);
    tn_same_numbers(net, "constant-folding", 0);
    kiln_network_destroy(net);
}

/* ---- cse ---- */

static void test_cse_merges(void **state)
{
    /* Two equal constants make two equal Muls, which make two equal Relus. */
    kiln_network *net = tn_net();
    tn_input(net, "x", TU_DIMS(2, 8));
    tn_weights(net, "c1", TU_DIMS(8), 3, -1.0f, 1.0f);
    tn_weights(net, "c2", TU_DIMS(8), 3, -1.0f, 1.0f);
    tn_layer(net, "Mul", "m1", IN("x", "c1"), OUT("a1"), NO_ATTRS);
    tn_layer(net, "Mul", "m2", IN("x", "c2"), OUT("a2"), NO_ATTRS);
    tn_layer(net, "Relu", "r1", IN("a1"), OUT("b1"), NO_ATTRS);
    tn_layer(net, "Relu", "r2", IN("a2"), OUT("b2"), NO_ATTRS);
    tn_layer(net, "Sub", "sub", IN("b1", "b2"), OUT("y"), NO_ATTRS);
    tn_layer(net, "Add", "add", IN("a2", "b2"), OUT("z"), NO_ATTRS);
    tn_output(net, "y");
    tn_output(net, "z");
    ir_graph g;
    tn_prepare(net, &g);
    assert_int_equal(tn_run_pass(&g, opt_cse), 3);
    assert_false(tn_live(&g, "m2"));
    assert_false(tn_live(&g, "r2"));
    assert_string_equal(tn_reads(&g, "m1", 1), "c1");
    assert_string_equal(tn_reads(&g, "sub", 0), "b1");
    assert_string_equal(tn_reads(&g, "sub", 1), "b1");
    assert_string_equal(tn_reads(&g, "add", 0), "a1");
    assert_string_equal(tn_reads(&g, "add", 1), "b1");
    ir_graph_free(&g);
    tn_same_numbers(net, "cse", 0);
    kiln_network_destroy(net);
}

static void test_cse_leaves_different_work(void **state)
{
    /* Different attributes, different constants (one bit apart, or too large to compare),
     * and different inputs are different work. */
    kiln_network *net = tn_net();
    tn_input(net, "x", TU_DIMS(4, 8));
    float a[8] = {1, 2, 3, 4, 5, 6, 7, 8}, b[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    b[7] = nextafterf(b[7], 9.0f);
    tn_constant(net, "ca", KILN_DTYPE_F32, TU_DIMS(8), a);
    tn_constant(net, "cb", KILN_DTYPE_F32, TU_DIMS(8), b);
    tn_weights(net, "big1", TU_DIMS(8, 2049), 5, -1.0f, 1.0f); /* 64 KiB + 32 bytes, same bytes */
    tn_weights(net, "big2", TU_DIMS(8, 2049), 5, -1.0f, 1.0f);
    tn_layer(net, "LeakyRelu", "l1", IN("x"), OUT("l1o"), ATTRS(KILN_ATTR_F("alpha", 0.1f)));
    tn_layer(net, "LeakyRelu", "l2", IN("x"), OUT("l2o"), ATTRS(KILN_ATTR_F("alpha", 0.2f)));
    tn_layer(net, "Softmax", "s0", IN("x"), OUT("s0o"), ATTRS(KILN_ATTR_I("axis", 0)));
    tn_layer(net, "Softmax", "s1", IN("x"), OUT("s1o"), ATTRS(KILN_ATTR_I("axis", 1)));
    tn_layer(net, "Add", "pa", IN("x", "ca"), OUT("pao"), NO_ATTRS);
    tn_layer(net, "Add", "pb", IN("x", "cb"), OUT("pbo"), NO_ATTRS);
    tn_layer(net, "Sub", "d1", IN("x", "l1o"), OUT("d1o"), NO_ATTRS);
    tn_layer(net, "Sub", "d2", IN("l1o", "x"), OUT("d2o"), NO_ATTRS);
    tn_layer(net, "MatMul", "g1", IN("x", "big1"), OUT("g1o"), NO_ATTRS);
    tn_layer(net, "MatMul", "g2", IN("x", "big2"), OUT("g2o"), NO_ATTRS);
    const char *outs[] = {"l2o", "s0o", "s1o", "pao", "pbo", "d1o", "d2o", "g1o", "g2o"};
    for (int i = 0; i < 9; i++) tn_output(net, outs[i]);
    ir_graph g;
    tn_prepare(net, &g);
    assert_int_equal(tn_run_pass(&g, opt_cse), 0);
    assert_int_equal(tn_live_count(&g), 10);
    ir_graph_free(&g);
    tn_same_numbers(net, "cse", 0);
    kiln_network_destroy(net);
}

static void test_cse_network_outputs(void **state)
{
    /* y1 and y2 are both network outputs: nothing to merge. a (private) and y3 (an
     * output): the kept layer writes y3, and a's reader follows. */
    kiln_network *net = tn_net();
    tn_input(net, "x", TU_DIMS(6));
    tn_layer(net, "Relu", "r1", IN("x"), OUT("y1"), NO_ATTRS);
    tn_layer(net, "Relu", "r2", IN("x"), OUT("y2"), NO_ATTRS);
    tn_layer(net, "Sigmoid", "s1", IN("x"), OUT("a"), NO_ATTRS);
    tn_layer(net, "Sigmoid", "s2", IN("x"), OUT("y3"), NO_ATTRS);
    tn_layer(net, "Neg", "neg", IN("a"), OUT("y4"), NO_ATTRS);
    const char *outs[] = {"y1", "y2", "y3", "y4"};
    for (int i = 0; i < 4; i++) tn_output(net, outs[i]);
    ir_graph g;
    tn_prepare(net, &g);
    assert_int_equal(tn_run_pass(&g, opt_cse), 1);
    assert_true(tn_live(&g, "r1"));
    assert_true(tn_live(&g, "r2"));
    assert_true(tn_live(&g, "s1"));
    assert_false(tn_live(&g, "s2"));
    assert_string_equal(tn_writes(&g, "s1", 0), "y3");
    assert_string_equal(tn_reads(&g, "neg", 0), "y3");
    ir_graph_free(&g);
    tn_same_numbers(net, "cse", 0);
    kiln_network_destroy(net);
}

/* ---- reshape-transpose ---- */

static const int64_t *perm_attr(const ir_graph *g, const char *name, int32_t *count)
{
    const int64_t *p = ir_attr_ints(tn_node(g, name), "perm", count);
    assert_non_null(p);
    return p;
}

static void test_transpose_pairs(void **state)
{
    kiln_network *net = tn_net();
    tn_input(net, "x", TU_DIMS(2, 3, 4, 5));
    /* inverse perms: nothing left */
    tn_layer(net, "Transpose", "t1", IN("x"), OUT("a"),
             ATTRS(KILN_ATTR_IS("perm", ((const int64_t[]){0, 2, 3, 1}), 4)));
    tn_layer(net, "Transpose", "t2", IN("a"), OUT("b"),
             ATTRS(KILN_ATTR_IS("perm", ((const int64_t[]){0, 3, 1, 2}), 4)));
    tn_layer(net, "Neg", "neg", IN("b"), OUT("y"), NO_ATTRS);
    /* composed: axis i of the result is axis p1[p2[i]] of x */
    tn_layer(net, "Transpose", "u1", IN("x"), OUT("c"),
             ATTRS(KILN_ATTR_IS("perm", ((const int64_t[]){1, 0, 2, 3}), 4)));
    tn_layer(net, "Transpose", "u2", IN("c"), OUT("z"),
             ATTRS(KILN_ATTR_IS("perm", ((const int64_t[]){0, 2, 1, 3}), 4)));
    tn_output(net, "y");
    tn_output(net, "z");
    ir_graph g;
    tn_prepare(net, &g);
    assert_int_equal(tn_run_pass(&g, opt_reshape_transpose), 2);
    assert_int_equal(tn_live_count(&g), 2);
    assert_string_equal(tn_reads(&g, "neg", 0), "x");
    assert_string_equal(tn_reads(&g, "u2", 0), "x");
    int32_t n = 0;
    const int64_t *p = perm_attr(&g, "u2", &n);
    assert_int_equal(n, 4);
    int64_t want[4] = {1, 2, 0, 3};
    assert_memory_equal(p, want, sizeof want);
    ir_graph_free(&g);
    tn_same_numbers(net, "reshape-transpose", 0);
    kiln_network_destroy(net);
}

static void test_transpose_shared_intermediate(void **state)
{
    /* t1's output has two readers: the pair stays. */
    kiln_network *net = tn_net();
    tn_input(net, "x", TU_DIMS(2, 3, 4));
    tn_layer(net, "Transpose", "t1", IN("x"), OUT("a"),
             ATTRS(KILN_ATTR_IS("perm", ((const int64_t[]){2, 0, 1}), 3)));
    tn_layer(net, "Transpose", "t2", IN("a"), OUT("y"),
             ATTRS(KILN_ATTR_IS("perm", ((const int64_t[]){1, 2, 0}), 3)));
    tn_layer(net, "Relu", "relu", IN("a"), OUT("z"), NO_ATTRS);
    tn_output(net, "y");
    tn_output(net, "z");
    ir_graph g;
    tn_prepare(net, &g);
    assert_int_equal(tn_run_pass(&g, opt_reshape_transpose), 0);
    assert_int_equal(tn_live_count(&g), 3);
    assert_string_equal(tn_reads(&g, "t2", 0), "a");
    ir_graph_free(&g);
    tn_same_numbers(net, "reshape-transpose", 0);
    kiln_network_destroy(net);
}

static void test_reshape_chain(void **state)
{
    /* Reshape -> Unsqueeze -> Flatten -> Squeeze collapses into one Reshape. */
    kiln_network *net = tn_net();
    tn_input(net, "x", TU_DIMS(2, 3, 4));
    tn_ints(net, "s24", 1, (int64_t[]){24});
    tn_ints(net, "ax0", 1, (int64_t[]){0});
    tn_ints(net, "ax1", 1, (int64_t[]){1});
    tn_layer(net, "Reshape", "r1", IN("x", "s24"), OUT("a"), NO_ATTRS);              /* 24 */
    tn_layer(net, "Unsqueeze", "u", IN("a", "ax1"), OUT("b"), NO_ATTRS);             /* 24x1 */
    tn_layer(net, "Flatten", "f", IN("b"), OUT("c"), ATTRS(KILN_ATTR_I("axis", 0))); /* 1x24 */
    tn_layer(net, "Squeeze", "s", IN("c", "ax0"), OUT("d"), NO_ATTRS);               /* 24 */
    tn_layer(net, "Sigmoid", "sig", IN("d"), OUT("y"), NO_ATTRS);
    tn_output(net, "y");
    ir_graph g;
    tn_prepare(net, &g);
    assert_int_equal(tn_run_pass(&g, opt_reshape_transpose), 3);
    assert_int_equal(tn_live_count(&g), 2);
    assert_string_equal(tn_node(&g, "s")->op->name, "Reshape");
    assert_string_equal(tn_reads(&g, "s", 0), "x");
    int32_t shp = tn_node(&g, "s")->in[1];
    assert_int_equal(g.values[shp].kind, IR_VALUE_CONSTANT);
    assert_int_equal(g.values[shp].shape.d[0], 1);
    assert_int_equal(((const int64_t *)g.values[shp].data)[0], 24);
    assert_int_equal(tn_node(&g, "s")->n_fused, 4);
    ir_graph_free(&g);
    tn_same_numbers(net, "reshape-transpose", 0);
    kiln_network_destroy(net);
}

static void test_reshape_intermediate_is_output(void **state)
{
    /* a is a network output: both Reshapes stay. */
    kiln_network *net = tn_net();
    tn_input(net, "x", TU_DIMS(2, 6));
    tn_ints(net, "s1", 2, (int64_t[]){3, 4});
    tn_ints(net, "s2", 1, (int64_t[]){12});
    tn_layer(net, "Reshape", "r1", IN("x", "s1"), OUT("a"), NO_ATTRS);
    tn_layer(net, "Reshape", "r2", IN("a", "s2"), OUT("y"), NO_ATTRS);
    tn_output(net, "a");
    tn_output(net, "y");
    ir_graph g;
    tn_prepare(net, &g);
    assert_int_equal(tn_run_pass(&g, opt_reshape_transpose), 0);
    assert_true(tn_live(&g, "r1"));
    assert_string_equal(tn_reads(&g, "r2", 0), "a");
    ir_graph_free(&g);
    tn_same_numbers(net, "reshape-transpose", 0);
    kiln_network_destroy(net);
}

static void test_transpose_of_unit_axes_is_reshape(void **state)
{
    /* [1,3,4] -> perm (1,0,2) -> [3,1,4] keeps the bytes in place: a Reshape, which then
     * merges with the Reshape after it. */
    kiln_network *net = tn_net();
    tn_input(net, "x", TU_DIMS(1, 3, 4));
    tn_ints(net, "s", 2, (int64_t[]){3, 4});
    tn_layer(net, "Transpose", "t", IN("x"), OUT("a"),
             ATTRS(KILN_ATTR_IS("perm", ((const int64_t[]){1, 0, 2}), 3)));
    tn_layer(net, "Relu", "relu", IN("a"), OUT("y"), NO_ATTRS);
    tn_layer(net, "Transpose", "t2", IN("x"), OUT("b"),
             ATTRS(KILN_ATTR_IS("perm", ((const int64_t[]){1, 0, 2}), 3)));
    tn_layer(net, "Reshape", "r", IN("b", "s"), OUT("z"), NO_ATTRS);
    tn_output(net, "y");
    tn_output(net, "z");
    ir_graph g;
    tn_prepare(net, &g);
    assert_int_equal(tn_run_pass(&g, opt_reshape_transpose), 3);
    assert_string_equal(tn_node(&g, "t")->op->name, "Reshape");
    assert_false(tn_live(&g, "t2"));
    assert_string_equal(tn_reads(&g, "r", 0), "x");
    ir_graph_free(&g);
    tn_same_numbers(net, "reshape-transpose", 0);
    kiln_network_destroy(net);
}

/* ---- matmul-add-to-gemm ---- */

static void test_matmul_add_to_gemm(void **state)
{
    kiln_network *net = tn_net();
    tn_input(net, "x", TU_DIMS(4, 8));
    tn_weights(net, "w", TU_DIMS(8, 5), 11, -1.0f, 1.0f);
    tn_weights(net, "b", TU_DIMS(5), 12, -1.0f, 1.0f);
    tn_weights(net, "b2", TU_DIMS(4, 1), 13, -1.0f, 1.0f);
    tn_layer(net, "MatMul", "mm", IN("x", "w"), OUT("m"), NO_ATTRS);
    tn_layer(net, "Add", "bias", IN("m", "b"), OUT("y"), NO_ATTRS);
    tn_layer(net, "MatMul", "mm2", IN("x", "w"), OUT("m2"), NO_ATTRS);
    tn_layer(net, "Add", "bias2", IN("b2", "m2"), OUT("a2"), NO_ATTRS); /* bias first */
    tn_layer(net, "Relu", "relu", IN("a2"), OUT("z"), NO_ATTRS);
    tn_output(net, "y");
    tn_output(net, "z");
    ir_graph g;
    tn_prepare(net, &g);
    assert_int_equal(tn_run_pass(&g, opt_matmul_add_to_gemm), 2);
    assert_int_equal(tn_live_count(&g), 3);
    assert_string_equal(tn_node(&g, "mm")->op->name, "Gemm");
    assert_string_equal(tn_reads(&g, "mm", 0), "x");
    assert_string_equal(tn_reads(&g, "mm", 1), "w");
    assert_string_equal(tn_reads(&g, "mm", 2), "b");
    assert_string_equal(tn_writes(&g, "mm", 0), "y");
    assert_string_equal(tn_reads(&g, "mm2", 2), "b2");
    assert_string_equal(tn_reads(&g, "relu", 0), "a2");
    assert_int_equal(tn_node(&g, "mm")->n_fused, 2);
    ir_graph_free(&g);
    tn_same_numbers(net, "matmul-add-to-gemm", 1e-6);
    kiln_network_destroy(net);
}

static void test_matmul_add_left_alone(void **state)
{
    /* 3-D A (batched), B not a constant, the product also a network output, and a bias
     * that widens the result: each stays MatMul + Add. */
    kiln_network *net = tn_net();
    tn_input(net, "x3", TU_DIMS(2, 4, 8));
    tn_input(net, "x", TU_DIMS(4, 8));
    tn_input(net, "wi", TU_DIMS(8, 5));
    tn_weights(net, "w", TU_DIMS(8, 5), 21, -1.0f, 1.0f);
    tn_weights(net, "b", TU_DIMS(5), 22, -1.0f, 1.0f);
    tn_weights(net, "wide", TU_DIMS(3, 4, 5), 23, -1.0f, 1.0f);
    tn_layer(net, "MatMul", "mm3", IN("x3", "w"), OUT("m3"), NO_ATTRS);
    tn_layer(net, "Add", "add3", IN("m3", "b"), OUT("y3"), NO_ATTRS);
    tn_layer(net, "MatMul", "mmi", IN("x", "wi"), OUT("mi"), NO_ATTRS);
    tn_layer(net, "Add", "addi", IN("mi", "b"), OUT("yi"), NO_ATTRS);
    tn_layer(net, "MatMul", "mmo", IN("x", "w"), OUT("mo"), NO_ATTRS);
    tn_layer(net, "Add", "addo", IN("mo", "b"), OUT("yo"), NO_ATTRS);
    tn_layer(net, "MatMul", "mmw", IN("x", "w"), OUT("mw"), NO_ATTRS);
    tn_layer(net, "Add", "addw", IN("mw", "wide"), OUT("yw"), NO_ATTRS);
    const char *outs[] = {"y3", "yi", "mo", "yo", "yw"};
    for (int i = 0; i < 5; i++) tn_output(net, outs[i]);
    ir_graph g;
    tn_prepare(net, &g);
    assert_int_equal(tn_run_pass(&g, opt_matmul_add_to_gemm), 0);
    assert_int_equal(tn_live_count(&g), 8);
    assert_string_equal(tn_node(&g, "mm3")->op->name, "MatMul");
    ir_graph_free(&g);
    tn_same_numbers(net, "matmul-add-to-gemm", 0);
    kiln_network_destroy(net);
}

/* ---- the pipeline together ---- */

/* One network every pass has work in. */
static kiln_network *every_pass_net(void)
{
    kiln_network *net = tn_net();
    tn_input(net, "x", TU_DIMS(4, 16));
    tn_weights(net, "w", TU_DIMS(16, 40), 31, -1.0f, 1.0f); /* 2.5 KiB; x2 below is 5 KiB */
    tn_constant(net, "two", KILN_DTYPE_F32, 0, NULL, (float[]){2.0f});
    tn_weights(net, "b", TU_DIMS(80), 32, -1.0f, 1.0f);
    tn_ints(net, "s", 2, (int64_t[]){2, 160});
    tn_ints(net, "s2", 2, (int64_t[]){2, 160});
    tn_layer(net, "Concat", "cat_w", IN("w", "w"), OUT("ww"), ATTRS(KILN_ATTR_I("axis", 1)));
    tn_layer(net, "Mul", "scale", IN("ww", "two"), OUT("w2"), NO_ATTRS);
    tn_layer(net, "Identity", "id", IN("x"), OUT("xi"), NO_ATTRS);
    tn_layer(net, "MatMul", "mm", IN("xi", "w2"), OUT("m"), NO_ATTRS);
    tn_layer(net, "Add", "bias", IN("m", "b"), OUT("a"), NO_ATTRS);
    tn_layer(net, "Transpose", "t1", IN("a"), OUT("t"),
             ATTRS(KILN_ATTR_IS("perm", ((const int64_t[]){1, 0}), 2)));
    tn_layer(net, "Transpose", "t2", IN("t"), OUT("u"),
             ATTRS(KILN_ATTR_IS("perm", ((const int64_t[]){1, 0}), 2)));
    tn_layer(net, "Reshape", "r1", IN("u", "s"), OUT("r"), NO_ATTRS);
    tn_layer(net, "Reshape", "r2", IN("u", "s2"), OUT("q"), NO_ATTRS);
    tn_layer(net, "Tanh", "tanh1", IN("r"), OUT("h1"), NO_ATTRS);
    tn_layer(net, "Tanh", "tanh2", IN("q"), OUT("h2"), NO_ATTRS);
    tn_layer(net, "Add", "sum", IN("h1", "h2"), OUT("y"), NO_ATTRS);
    tn_output(net, "y");
    return net;
}

static void test_pipeline_logs_and_numbers(void **state)
{
    kiln_network *net = every_pass_net();
    const char *log;
    kiln_engine *e = tn_build_logged(net, &log);
    const char *want[] = {"constant-folding: folded layer 'cat_w'", "identity: removed layer 'id'",
                          "reshape-transpose: merged Transpose 't1' into Transpose 't2'",
                          "cse: layer 'r2' (Reshape) computes what 'r1' does",
                          "matmul-add-to-gemm: MatMul 'mm' + Add 'bias' -> Gemm 'mm'"};
    for (int i = 0; i < 5; i++) tn_expect_log(log, want[i]);
    /* Gemm, Reshape, Tanh, Add at most: the rest is folded, removed or merged. */
    assert_true(kiln_engine_num_layers(e) <= 4);
    kiln_engine_destroy(e);
    const char *passes[] = {"constant-folding", "identity", "reshape-transpose", "cse",
                            "matmul-add-to-gemm"};
    for (int i = 0; i < 5; i++) tn_same_numbers(net, passes[i], 1e-6);
    kiln_network_destroy(net);
}

static void test_pass_names_listed(void **state)
{
    const char *want[] = {"constant-folding",   "identity", "reshape-transpose", "cse",
                          "matmul-add-to-gemm", "dead-code"};
    for (int i = 0; i < 6; i++) {
        bool found = false;
        for (int32_t k = 0; kiln_pass_name(k); k++)
            found |= strcmp(kiln_pass_name(k), want[i]) == 0;
        if (!found) fail_msg("pass '%s' is not listed", want[i]);
    }
}

static void test_allocation_failures(void **state)
{
    /* Every allocation of a build running all these passes fails in turn: each failure
     * is reported as such (leaks are caught by the sanitizer build). */
    kiln_network *net = every_pass_net();
    tu_build_survives_allocation_failures(net);
    kiln_network_destroy(net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identity_removes_noops),
        cmocka_unit_test(test_identity_keeps_real_work),
        cmocka_unit_test(test_identity_network_outputs),
        cmocka_unit_test(test_constant_folding),
        cmocka_unit_test(test_constant_folding_limits),
        cmocka_unit_test(test_builder_folds_only_shape_work),
        cmocka_unit_test(test_cse_merges),
        cmocka_unit_test(test_cse_leaves_different_work),
        cmocka_unit_test(test_cse_network_outputs),
        cmocka_unit_test(test_transpose_pairs),
        cmocka_unit_test(test_transpose_shared_intermediate),
        cmocka_unit_test(test_reshape_chain),
        cmocka_unit_test(test_reshape_intermediate_is_output),
        cmocka_unit_test(test_transpose_of_unit_axes_is_reshape),
        cmocka_unit_test(test_matmul_add_to_gemm),
        cmocka_unit_test(test_matmul_add_left_alone),
        cmocka_unit_test(test_pipeline_logs_and_numbers),
        cmocka_unit_test(test_pass_names_listed),
        cmocka_unit_test(test_allocation_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
