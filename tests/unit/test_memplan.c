/* test_memplan.c - the activation memory planner on random graphs: values alive at the
 * same time never share bytes, offsets are aligned, the arena never exceeds the sum. */
#include <stdio.h>
#include <string.h>

#include "build/build.h"
#include "testutil.h"

/* A random DAG of Relu layers over values of random sizes: each layer reads one
 * earlier value, so values fan out to several readers at random distances. */
static void random_graph(ir_graph *g, tu_rng *r, int n_layers)
{
    ir_graph_init(g);
    kiln_dims s = {1, {tu_int(r, 1, 300)}};
    assert_int_equal(ir_graph_add_input(g, "v0", KILN_DTYPE_F32, &s), KILN_OK);
    g->values[0].shape_known = true;
    for (int i = 1; i <= n_layers; i++) {
        char in[16], out[16];
        snprintf(in, sizeof in, "v%d", (int)tu_int(r, i > 6 ? i - 6 : 0, i - 1));
        snprintf(out, sizeof out, "v%d", i);
        const char *ii[] = {in}, *oo[] = {out};
        assert_int_equal(ir_graph_add_node(g, "Relu", NULL, ii, 1, oo, 1, NULL, 0, NULL), KILN_OK);
        ir_value *v = &g->values[ir_graph_find_value(g, out)];
        v->dtype = KILN_DTYPE_F32;
        v->shape = (kiln_dims){1, {tu_int(r, 1, 300)}};
        v->shape_known = true;
    }
    char last[16];
    snprintf(last, sizeof last, "v%d", n_layers);
    assert_int_equal(ir_graph_mark_output(g, last), KILN_OK);
}

static void test_no_overlap_while_alive(void **state)
{
    tu_rng r = {42};
    for (int trial = 0; trial < 200; trial++) {
        ir_graph g;
        int n = (int)tu_int(&r, 1, 40);
        random_graph(&g, &r, n);
        int32_t order[64], count = 0;
        assert_int_equal(ir_graph_topo_order(&g, order, &count), KILN_OK);
        uint64_t offsets[64], arena = 0, total = 0;
        assert_int_equal(build_memplan(&g, order, count, offsets, &arena, &total), KILN_OK);
        /* lifetimes: [step of producer, step of last reader] */
        int first[64], last[64];
        for (int v = 0; v < g.n_values; v++) first[v] = last[v] = -1;
        for (int s = 0; s < count; s++) {
            const ir_node *nd = &g.nodes[order[s]];
            first[nd->out[0]] = last[nd->out[0]] = s;
        }
        for (int s = 0; s < count; s++) {
            const ir_node *nd = &g.nodes[order[s]];
            if (last[nd->in[0]] < s && first[nd->in[0]] >= 0) last[nd->in[0]] = s;
        }
        uint64_t sum = 0;
        for (int a = 0; a < g.n_values; a++) {
            const ir_value *va = &g.values[a];
            bool in_arena = va->kind == IR_VALUE_ACTIVATION && !va->is_output;
            if (!in_arena) {
                assert_true(offsets[a] == UINT64_MAX);
                continue;
            }
            uint64_t sa = build_value_bytes(va);
            sum += sa;
            assert_int_equal(offsets[a] % 64, 0);
            assert_true(offsets[a] + sa <= arena);
            for (int b = a + 1; b < g.n_values; b++) {
                const ir_value *vb = &g.values[b];
                if (vb->kind != IR_VALUE_ACTIVATION || vb->is_output) continue;
                bool alive_together = !(last[a] < first[b] || last[b] < first[a]);
                if (!alive_together) continue;
                uint64_t sb = build_value_bytes(vb);
                bool disjoint = offsets[a] + sa <= offsets[b] || offsets[b] + sb <= offsets[a];
                assert_true(disjoint);
            }
        }
        assert_int_equal(total, sum);
        assert_true(arena <= ((sum + 64 * (uint64_t)g.n_values)));
        ir_graph_free(&g);
    }
}

static void test_chain_uses_two_buffers(void **state)
{
    ir_graph g;
    ir_graph_init(&g);
    kiln_dims s = {1, {16}};
    assert_int_equal(ir_graph_add_input(&g, "v0", KILN_DTYPE_F32, &s), KILN_OK);
    for (int i = 1; i <= 8; i++) {
        char in[8], out[8];
        snprintf(in, sizeof in, "v%d", i - 1);
        snprintf(out, sizeof out, "v%d", i);
        const char *ii[] = {in}, *oo[] = {out};
        assert_int_equal(ir_graph_add_node(&g, "Relu", NULL, ii, 1, oo, 1, NULL, 0, NULL), KILN_OK);
        ir_value *v = &g.values[i];
        v->dtype = KILN_DTYPE_F32;
        v->shape = s;
        v->shape_known = true;
    }
    assert_int_equal(ir_graph_mark_output(&g, "v8"), KILN_OK);
    int32_t order[8], count;
    uint64_t offsets[9], arena, total;
    assert_int_equal(ir_graph_topo_order(&g, order, &count), KILN_OK);
    assert_int_equal(build_memplan(&g, order, count, offsets, &arena, &total), KILN_OK);
    assert_int_equal(total, 7 * 64);
    assert_int_equal(arena, 2 * 64);
    ir_graph_free(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_overlap_while_alive),
        cmocka_unit_test(test_chain_uses_two_buffers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
