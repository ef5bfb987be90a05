/* test_ir.c - graph building, attribute defaults, verifier messages, topological order. */
#include <string.h>

#include "testutil.h"

static void test_add_and_find(void **state)
{
    ir_graph g;
    ir_graph_init(&g);
    kiln_dims s = {2, {2, 3}};
    assert_int_equal(ir_graph_add_input(&g, "x", KILN_DTYPE_F32, &s), KILN_OK);
    const char *in[] = {"x"}, *out[] = {"y"};
    assert_int_equal(ir_graph_add_node(&g, "Relu", "r", in, 1, out, 1, NULL, 0, NULL), KILN_OK);
    assert_int_equal(ir_graph_find_value(&g, "y"), 1);
    assert_int_equal(ir_graph_mark_output(&g, "y"), KILN_OK);
    assert_int_equal(ir_graph_verify(&g), KILN_OK);
    assert_int_equal(ir_graph_mark_output(&g, "x"), KILN_ERR_INVALID_GRAPH);
    assert_non_null(strstr(kiln_last_error(), "'x' as output: it is a network input"));
    /* a second producer of y */
    assert_int_equal(ir_graph_add_node(&g, "Relu", "r2", in, 1, out, 1, NULL, 0, NULL),
                     KILN_ERR_INVALID_GRAPH);
    assert_non_null(strstr(kiln_last_error(), "'y' is already defined"));
    /* unknown input */
    const char *bad[] = {"nope"}, *o2[] = {"z"};
    assert_int_equal(ir_graph_add_node(&g, "Relu", "r3", bad, 1, o2, 1, NULL, 0, NULL),
                     KILN_ERR_INVALID_GRAPH);
    assert_non_null(strstr(kiln_last_error(), "node 'r3' (Relu): input 0 'nope'"));
    /* unknown op */
    assert_int_equal(ir_graph_add_node(&g, "Frobnicate", "f", in, 1, o2, 1, NULL, 0, NULL),
                     KILN_ERR_UNSUPPORTED);
    assert_non_null(strstr(kiln_last_error(), "Frobnicate"));
    ir_graph_free(&g);
}

static void test_cycle_detected(void **state)
{
    ir_graph g;
    ir_graph_init(&g);
    kiln_dims s = {1, {4}};
    assert_int_equal(ir_graph_add_input(&g, "x", KILN_DTYPE_F32, &s), KILN_OK);
    const char *i1[] = {"x"}, *o1[] = {"a"}, *i2[] = {"a"}, *o2[] = {"b"};
    assert_int_equal(ir_graph_add_node(&g, "Relu", "n1", i1, 1, o1, 1, NULL, 0, NULL), KILN_OK);
    assert_int_equal(ir_graph_add_node(&g, "Relu", "n2", i2, 1, o2, 1, NULL, 0, NULL), KILN_OK);
    /* rewire n1 to read b: a cycle n1 -> n2 -> n1 */
    g.nodes[0].in[0] = ir_graph_find_value(&g, "b");
    assert_int_equal(ir_graph_mark_output(&g, "b"), KILN_OK);
    assert_int_equal(ir_graph_verify(&g), KILN_ERR_INVALID_GRAPH);
    assert_non_null(strstr(kiln_last_error(), "cycle"));
    ir_graph_free(&g);
}

static void test_topo_order_is_stable(void **state)
{
    ir_graph g;
    ir_graph_init(&g);
    kiln_dims s = {1, {4}};
    assert_int_equal(ir_graph_add_input(&g, "x", KILN_DTYPE_F32, &s), KILN_OK);
    const char *names[] = {"a", "b", "c", "d"};
    const char *prev = "x";
    for (int i = 0; i < 4; i++) {
        const char *in[] = {prev}, *out[] = {names[i]};
        assert_int_equal(ir_graph_add_node(&g, "Relu", NULL, in, 1, out, 1, NULL, 0, NULL),
                         KILN_OK);
        prev = names[i];
    }
    /* reverse the storage of node 1 and 2's roles: order must still put producers first */
    g.nodes[1].in[0] = ir_graph_find_value(&g, "x");
    int32_t order[4], n = 0;
    assert_int_equal(ir_graph_topo_order(&g, order, &n), KILN_OK);
    assert_int_equal(n, 4);
    for (int i = 0; i < 4; i++) assert_int_equal(order[i], i);
    ir_graph_free(&g);
}

static void test_clone(void **state)
{
    ir_graph g, c;
    ir_graph_init(&g);
    kiln_dims s = {1, {3}};
    float w[3] = {1, 2, 3};
    assert_int_equal(ir_graph_add_input(&g, "x", KILN_DTYPE_F32, &s), KILN_OK);
    assert_int_equal(ir_graph_add_constant(&g, "w", KILN_DTYPE_F32, &s, w, sizeof w, true, NULL),
                     KILN_OK);
    const char *in[] = {"x"}, *out[] = {"y"};
    assert_int_equal(ir_graph_add_node(&g, "Relu", "r", in, 1, out, 1, NULL, 0, NULL), KILN_OK);
    assert_int_equal(ir_graph_mark_output(&g, "y"), KILN_OK);
    assert_int_equal(ir_graph_clone(&g, &c), KILN_OK);
    assert_int_equal(c.n_nodes, 1);
    assert_int_equal(c.n_outputs, 1);
    assert_string_equal(c.values[c.outputs[0]].name, "y");
    assert_memory_equal(c.values[1].data, w, sizeof w);
    ir_graph_free(&g);
    ir_graph_free(&c);
}

static void test_alloc_failures_do_not_leak(void **state)
{
    /* Fail every allocation in turn while building a small graph: each failure must
     * return an error, and freeing must not leak (checked by ASan in the sanitizer build). */
    for (long k = 0; k < 200; k++) {
        ir_graph g;
        ir_graph_init(&g);
        kiln_alloc_fail_after(k);
        kiln_dims s = {1, {3}};
        kiln_status st = ir_graph_add_input(&g, "x", KILN_DTYPE_F32, &s);
        const char *in[] = {"x"}, *out[] = {"y"};
        if (!st) st = ir_graph_add_node(&g, "Relu", "r", in, 1, out, 1, NULL, 0, NULL);
        if (!st) st = ir_graph_mark_output(&g, "y");
        ir_graph c;
        if (!st) {
            st = ir_graph_clone(&g, &c);
            if (!st) ir_graph_free(&c);
        }
        kiln_alloc_fail_after(-1);
        ir_graph_free(&g);
        if (!st) break;
        assert_int_equal(st, KILN_ERR_OUT_OF_MEMORY);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_and_find),
        cmocka_unit_test(test_cycle_detected),
        cmocka_unit_test(test_topo_order_is_stable),
        cmocka_unit_test(test_clone),
        cmocka_unit_test(test_alloc_failures_do_not_leak),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
