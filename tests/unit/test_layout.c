/* test_layout.c - layouts: kiln.Reorder against an index formula of its own (odd channel
 * counts, ranks 3 to 5, every block), the blocked reference kernels against the plain ones
 * (attribute sweeps, NaN in the input's padding, zeros in the output's), and the builder's
 * layout step under the CPU backend's blocked policy: the reorders an engine ends with
 * (inserted, shared, cancelled), the numbers of the plain engine, padded sizes, plans that
 * round-trip, plans with inconsistent layouts refused, allocation failures. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cpu/cpu_impl.h"
#include "build/build.h"
#include "runtime/engine.h"
#include "testnet.h"

#define DIMS(...)    TU_DIMS(__VA_ARGS__)
#define COUNT_I(...) ((int32_t)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
/* An ints attribute: IS("pads", 1, 1, 1, 1). */
#define IS(name, ...) KILN_ATTR_IS(name, ((const int64_t[]){__VA_ARGS__}), COUNT_I(__VA_ARGS__))

/* Blocked engines give the plain engine's numbers within this relative L2 error. */
#define TOL 1e-6

static const ir_layout k_blocked[] = {IR_LAYOUT_NCHW4C, IR_LAYOUT_NCHW8C, IR_LAYOUT_NCHW16C};

/* Every test starts and ends with the default policy. */
static int reset_policy(void **state)
{
    backend_cpu_set_layout_policy(-1);
    return 0;
}

/* ---- kiln.Reorder ---- */

static ir_node reorder_node(kiln_attr *attrs, ir_layout from, ir_layout to)
{
    attrs[0] = KILN_ATTR_S("from", ir_layout_name(from));
    attrs[1] = KILN_ATTR_S("to", ir_layout_name(to));
    ir_node n = {.name = "r", .op = ir_op_find("kiln.Reorder"), .n_attrs = 2, .attrs = attrs};
    return n;
}

/* Runs kiln.Reorder (shape inference, then the reference kernel) on `x`, held in `from`;
 * returns the storage in `to` (malloc). The output buffer starts as 0xff bytes, so padding
 * the kernel leaves unwritten shows. */
static void *reorder(kiln_dtype dt, const kiln_dims *shape, const void *x, ir_layout from,
                     ir_layout to)
{
    kiln_attr attrs[2];
    ir_node n = reorder_node(attrs, from, to);
    assert_non_null(n.op);
    ir_tensor in = {dt, *shape, (void *)x, from}, out;
    memset(&out, 0, sizeof out);
    ir_infer c = {.node = &n, .n_in = 1, .n_out = 1, .in = &in, .out = &out};
    assert_int_equal(n.op->infer(&c), KILN_OK);
    assert_int_equal(out.dtype, dt);
    assert_true(kiln_dims_equal(&out.shape, shape));
    out.layout = to;
    size_t bytes = (size_t)ir_tensor_storage_count(&out) * kiln_dtype_size(dt);
    out.data = malloc(bytes + 1);
    memset(out.data, 0xff, bytes + 1);
    assert_int_equal(n.op->eval(&n, &in, 1, &out, 1), KILN_OK);
    return out.data;
}

/* N, C and the spatial size of a shape. */
static void ncs(const kiln_dims *s, int64_t *n, int64_t *c, int64_t *sp)
{
    *n = s->d[0];
    *c = s->d[1];
    *sp = 1;
    for (int32_t d = 2; d < s->rank; d++) *sp *= s->d[d];
}

/* y must be x (plain) in NCHWc of block b, walked over the storage [N, C/b, S, b] row by row
 * (the kernel walks the logical tensor): every lane past C zero. */
static void expect_blocked_f32(const kiln_dims *shape, const float *x, const float *y, int64_t b)
{
    int64_t n, c, sp, i = 0;
    ncs(shape, &n, &c, &sp);
    for (int64_t nn = 0; nn < n; nn++)
        for (int64_t cb = 0; cb < (c + b - 1) / b; cb++)
            for (int64_t s = 0; s < sp; s++)
                for (int64_t lane = 0; lane < b; lane++, i++) {
                    int64_t ch = cb * b + lane;
                    float want = ch < c ? x[(nn * c + ch) * sp + s] : 0.0f;
                    uint32_t bits;
                    memcpy(&bits, &y[i], 4);
                    if (y[i] != want || (ch >= c && bits != 0))
                        fail_msg("storage [%lld] (n %lld, channel %lld, position %lld): %g, "
                                 "expected %g",
                                 (long long)i, (long long)nn, (long long)ch, (long long)s, y[i],
                                 want);
                }
}

static void test_reorder_round_trips(void **state)
{
    static const int64_t channels[] = {1, 3, 5, 8, 13, 16, 17, 33};
    for (int32_t rank = 3; rank <= 5; rank++)
        for (size_t ci = 0; ci < sizeof channels / sizeof *channels; ci++)
            for (int64_t nb = 1; nb <= 2; nb++) {
                static const int64_t spatial[3][3] = {{5}, {3, 4}, {2, 3, 2}};
                kiln_dims s = {.rank = rank, .d = {nb, channels[ci]}};
                for (int32_t d = 2; d < rank; d++) s.d[d] = spatial[rank - 3][d - 2];
                int64_t count = kiln_dims_count(&s);
                float *x = malloc(sizeof(float) * (size_t)count);
                for (int64_t i = 0; i < count; i++) x[i] = (float)(i + 1);
                for (int k = 0; k < 3; k++) {
                    ir_layout l = k_blocked[k];
                    float *y = reorder(KILN_DTYPE_F32, &s, x, IR_LAYOUT_PLAIN, l);
                    expect_blocked_f32(&s, x, y, ir_layout_block(l));
                    float *back = reorder(KILN_DTYPE_F32, &s, y, l, IR_LAYOUT_PLAIN);
                    assert_memory_equal(back, x, sizeof(float) * (size_t)count);
                    /* blocked to another block: the same as from plain */
                    ir_layout l2 = k_blocked[(k + 1) % 3];
                    float *z = reorder(KILN_DTYPE_F32, &s, y, l, l2);
                    float *z2 = reorder(KILN_DTYPE_F32, &s, x, IR_LAYOUT_PLAIN, l2);
                    ir_tensor t = {KILN_DTYPE_F32, s, NULL, l2};
                    assert_memory_equal(z, z2, sizeof(float) * (size_t)ir_tensor_storage_count(&t));
                    free(y);
                    free(back);
                    free(z);
                    free(z2);
                }
                free(x);
            }
    /* Any dtype: the kernel moves elements of the dtype's size. */
    kiln_dims s = {.rank = 4, .d = {2, 5, 2, 3}};
    int64_t xi[60];
    uint8_t xb[60];
    for (int i = 0; i < 60; i++) {
        xi[i] = (int64_t)i * 1000000007LL;
        xb[i] = (uint8_t)(i + 1);
    }
    int64_t *yi = reorder(KILN_DTYPE_I64, &s, xi, IR_LAYOUT_PLAIN, IR_LAYOUT_NCHW4C);
    uint8_t *yb = reorder(KILN_DTYPE_U8, &s, xb, IR_LAYOUT_PLAIN, IR_LAYOUT_NCHW4C);
    /* [2, 2, 6, 4]: channel 4 is lane 0 of block 1, channels 5..7 are padding */
    assert_true(yi[(0 * 2 + 1) * 24 + 2 * 4 + 0] == xi[4 * 6 + 2]);
    assert_true(yi[(1 * 2 + 1) * 24 + 5 * 4 + 3] == 0);
    assert_int_equal(yb[(1 * 2 + 0) * 24 + 3 * 4 + 2], xb[(5 + 2) * 6 + 3]);
    assert_int_equal(yb[(0 * 2 + 1) * 24 + 1 * 4 + 1], 0);
    int64_t *bi = reorder(KILN_DTYPE_I64, &s, yi, IR_LAYOUT_NCHW4C, IR_LAYOUT_PLAIN);
    uint8_t *bb = reorder(KILN_DTYPE_U8, &s, yb, IR_LAYOUT_NCHW4C, IR_LAYOUT_PLAIN);
    assert_memory_equal(bi, xi, sizeof xi);
    assert_memory_equal(bb, xb, sizeof xb);
    free(yi);
    free(yb);
    free(bi);
    free(bb);
}

static void test_layout_helpers(void **state)
{
    ir_layout l;
    assert_string_equal(ir_layout_name(IR_LAYOUT_NCHW16C), "nchw16c");
    assert_string_equal(ir_layout_name((ir_layout)7), "?");
    assert_true(ir_layout_parse("nchw4c", &l) && l == IR_LAYOUT_NCHW4C);
    assert_true(ir_layout_parse("plain", &l) && l == IR_LAYOUT_PLAIN);
    assert_false(ir_layout_parse("nhwc", &l));
    assert_false(ir_layout_known(7));
    assert_true(ir_layout_known(8));
    int64_t count;
    kiln_dims s = {.rank = 4, .d = {2, 5, 3, 3}};
    assert_true(ir_layout_numel(IR_LAYOUT_NCHW8C, &s, &count) && count == 2 * 8 * 9);
    assert_true(ir_layout_numel(IR_LAYOUT_PLAIN, &s, &count) && count == 90);
    kiln_dims st = ir_layout_storage_shape(IR_LAYOUT_NCHW4C, &s);
    assert_int_equal(st.rank, 5);
    assert_true(st.d[0] == 2 && st.d[1] == 2 && st.d[2] == 3 && st.d[3] == 3 && st.d[4] == 4);
    kiln_dims r2 = {.rank = 2, .d = {4, 5}}, r6 = {.rank = 6, .d = {1, 2, 1, 1, 1, 1}};
    kiln_dims dyn = {.rank = 4, .d = {1, -1, 2, 2}};
    assert_false(ir_layout_numel(IR_LAYOUT_NCHW8C, &r2, &count));
    assert_false(ir_layout_numel(IR_LAYOUT_NCHW8C, &r6, &count));
    assert_false(ir_layout_numel(IR_LAYOUT_NCHW8C, &dyn, &count));
    assert_false(ir_layout_numel((ir_layout)7, &s, &count));
    /* zero padding clears exactly the lanes past C */
    float buf[2 * 8 * 9];
    for (int i = 0; i < 144; i++) buf[i] = NAN;
    ir_tensor t = {KILN_DTYPE_F32, s, buf, IR_LAYOUT_NCHW8C};
    ir_layout_zero_padding(&t);
    for (int i = 0; i < 144; i++) {
        bool pad = i % 8 >= 5;
        if (pad != (buf[i] == 0.0f)) fail_msg("storage [%d] is %g", i, buf[i]);
    }
}

static void test_reorder_errors(void **state)
{
    ir_tensor x2 = tu_tensor_f32(DIMS(4, 6), NULL), x4 = tu_tensor_f32(DIMS(1, 3, 2, 2), NULL);
    const kiln_attr to8[] = {KILN_ATTR_S("from", "plain"), KILN_ATTR_S("to", "nchw8c")};
    const kiln_attr nhwc[] = {KILN_ATTR_S("from", "nhwc"), KILN_ATTR_S("to", "nchw8c")};
    const kiln_attr same[] = {KILN_ATTR_S("from", "nchw8c"), KILN_ATTR_S("to", "nchw8c")};
    tu_expect_op_error("kiln.Reorder", to8, 2, &x2, 1, 1, KILN_ERR_SHAPE, "rank 3 to 5");
    tu_expect_op_error("kiln.Reorder", nhwc, 2, &x4, 1, 1, KILN_ERR_INVALID_GRAPH,
                       "from is \"nhwc\"");
    tu_expect_op_error("kiln.Reorder", same, 2, &x4, 1, 1, KILN_ERR_INVALID_GRAPH, "both nchw8c");
    tu_tensor_free(&x2);
    tu_tensor_free(&x4);
}

/* ---- the blocked reference kernels against the plain ones ---- */

/* One layer in a graph of its own: network inputs are its activations, constants its
 * weights; the output is "y". */
typedef struct klayer {
    ir_graph g;
    int32_t node;
    uint64_t seed;
} klayer;

static void kl_input(klayer *k, const char *name, int32_t rank, const int64_t *dims)
{
    kiln_dims s = kiln_dims_make(rank, dims);
    assert_int_equal(ir_graph_add_input(&k->g, name, KILN_DTYPE_F32, &s), KILN_OK);
    k->g.values[ir_graph_find_value(&k->g, name)].shape_known = true;
}

static void kl_weights(klayer *k, const char *name, int32_t rank, const int64_t *dims)
{
    kiln_dims s = kiln_dims_make(rank, dims);
    int64_t n = kiln_dims_count(&s);
    float *w = malloc(sizeof(float) * (size_t)n);
    tu_rng r = {++k->seed};
    tu_fill(&r, w, n, -1.0f, 1.0f);
    assert_int_equal(ir_graph_add_constant(&k->g, name, KILN_DTYPE_F32, &s, w,
                                           sizeof(float) * (size_t)n, true, NULL),
                     KILN_OK);
    free(w);
}

static void kl_node(klayer *k, const char *op, const char *const *in, int32_t n_in,
                    const kiln_attr *attrs, int32_t n_attrs)
{
    const char *out[1] = {"y"};
    kiln_status st =
        ir_graph_add_node(&k->g, op, "layer", in, n_in, out, 1, attrs, n_attrs, &k->node);
    if (st == KILN_OK) st = opt_infer_node(&k->g, k->node);
    if (st) fail_msg("%s", kiln_last_error());
}

/* A copy of plain `t` in layout l (shape given leading 1s up to `rank` first), its padding
 * NaN: kernels must never read it. */
static ir_tensor blocked_copy(const ir_tensor *t, ir_layout l, int32_t rank)
{
    ir_tensor b = *t;
    if (b.shape.rank < rank) {
        int32_t lead = rank - t->shape.rank;
        for (int32_t d = 0; d < rank; d++) b.shape.d[d] = d < lead ? 1 : t->shape.d[d - lead];
        b.shape.rank = rank;
    }
    b.data = reorder(KILN_DTYPE_F32, &b.shape, t->data, IR_LAYOUT_PLAIN, l);
    b.layout = l;
    int64_t n, c, sp, bk = ir_layout_block(l);
    ncs(&b.shape, &n, &c, &sp);
    float *p = b.data;
    for (int64_t i = 0; i < ir_tensor_storage_count(&b); i++)
        if (i % bk + (i / bk / sp % ((c + bk - 1) / bk)) * bk >= c) p[i] = NAN;
    return b;
}

/* Layer k run by its blocked reference kernel in layout l equals its plain reference kernel
 * (within TOL); the kernel is what the backend offers first, it never reads the input's
 * padding and leaves the output's zero. */
static void check_blocked(klayer *k, ir_layout l)
{
    ir_graph *g = &k->g;
    const ir_node *n = &g->nodes[k->node];
    ir_tensor pin[4], hook[4], bin[4], pout, bout;
    ir_layout lin[16], lout[1];
    assert_true(n->n_in <= 4);
    for (int32_t i = 0; i < n->n_in; i++) {
        const ir_value *v = &g->values[n->in[i]];
        pin[i] = tu_tensor_f32(v->shape.rank, v->shape.d, v->data);
        if (v->kind == IR_VALUE_INPUT) {
            tu_rng r = {100 + (uint64_t)i};
            tu_fill(&r, pin[i].data, ir_tensor_count(&pin[i]), -2.0f, 2.0f);
        }
        hook[i] = pin[i]; /* as the builder asks: activations without data */
        if (v->kind == IR_VALUE_INPUT) hook[i].data = NULL;
    }
    const ir_value *y = &g->values[n->out[0]];
    pout = tu_tensor_f32(y->shape.rank, y->shape.d, NULL);
    ir_tensor hout = pout;
    hout.data = NULL;
    if (!cpu_nchwc_layouts(n, hook, n->n_in, &hout, 1, l, lin, lout))
        fail_msg("%s: no blocked kernel takes it", n->op->name);
    for (int32_t i = 0; i < n->n_in; i++)
        bin[i] = lin[i] == IR_LAYOUT_PLAIN ? pin[i] : blocked_copy(&pin[i], lin[i], y->shape.rank);
    bout = blocked_copy(&pout, lout[0], y->shape.rank);
    const backend_kernel *cands[8], *kern = backend_cpu()->find(n->op->name, "ref_nchwc");
    assert_non_null(kern);
    assert_int_equal(cpu_nchwc_layouts(n, bin, n->n_in, &bout, 1, l, lin, lout), true);
    assert_true(backend_cpu()->candidates(n, bin, n->n_in, &bout, 1, cands, 8) >= 1);
    assert_ptr_equal(cands[0], kern);
    assert_false(kern->applies(n, pin, n->n_in, &pout, 1)); /* plain tensors: not this one */
    assert_int_equal(kern->run(n, bin, n->n_in, &bout, 1, &(backend_exec){.threads = 1}), KILN_OK);
    assert_int_equal(n->op->eval(n, pin, n->n_in, &pout, 1), KILN_OK);
    int64_t nb, c, sp, bk = ir_layout_block(l), count = ir_tensor_count(&pout);
    ncs(&bout.shape, &nb, &c, &sp);
    const float *bs = bout.data;
    for (int64_t i = 0; i < ir_tensor_storage_count(&bout); i++) {
        uint32_t bits;
        memcpy(&bits, &bs[i], 4);
        if (i % bk + (i / bk / sp % ((c + bk - 1) / bk)) * bk >= c && bits != 0)
            fail_msg("%s in %s: padding lane [%lld] holds %g", n->op->name, ir_layout_name(l),
                     (long long)i, bs[i]);
    }
    float *back = reorder(KILN_DTYPE_F32, &pout.shape, bout.data, l, IR_LAYOUT_PLAIN);
    if (!(tu_rel_l2(back, pout.data, count) <= TOL))
        fail_msg("%s in %s: rel L2 %g from the plain kernel", n->op->name, ir_layout_name(l),
                 tu_rel_l2(back, pout.data, count));
    free(back);
    for (int32_t i = 0; i < n->n_in; i++) {
        if (bin[i].data != pin[i].data) free(bin[i].data);
        tu_tensor_free(&pin[i]);
    }
    free(bout.data);
    tu_tensor_free(&pout);
}

/* Builds the layer, checks it in every block, frees it. */
typedef void (*kl_build_fn)(klayer *k, int variant);

static void sweep(kl_build_fn build, int variants)
{
    for (int v = 0; v < variants; v++)
        for (int b = 0; b < 3; b++) {
            klayer k = {.seed = (uint64_t)v * 10};
            ir_graph_init(&k.g);
            build(&k, v);
            check_blocked(&k, k_blocked[b]);
            ir_graph_free(&k.g);
        }
}

static void conv_layer(klayer *k, int v)
{
    switch (v) {
    case 0: /* 3x3, pads, bias, two images */
        kl_input(k, "x", DIMS(2, 5, 7, 6));
        kl_weights(k, "w", DIMS(6, 5, 3, 3));
        kl_weights(k, "b", DIMS(6));
        kl_node(k, "Conv", IN("x", "w", "b"), ATTRS(IS("pads", 1, 1, 1, 1)));
        break;
    case 1: /* groups, strides, dilations, uneven pads */
        kl_input(k, "x", DIMS(1, 6, 9, 8));
        kl_weights(k, "w", DIMS(9, 2, 3, 2));
        kl_node(k, "Conv", IN("x", "w"),
                ATTRS(KILN_ATTR_I("group", 3), IS("strides", 2, 1), IS("dilations", 1, 2),
                      IS("pads", 1, 2, 0, 1)));
        break;
    case 2: /* depthwise, SAME_UPPER, stride 2 */
        kl_input(k, "x", DIMS(1, 12, 7, 6));
        kl_weights(k, "w", DIMS(12, 1, 3, 3));
        kl_weights(k, "b", DIMS(12));
        kl_node(k, "Conv", IN("x", "w", "b"),
                ATTRS(KILN_ATTR_I("group", 12), KILN_ATTR_S("auto_pad", "SAME_UPPER"),
                      IS("strides", 2, 2)));
        break;
    case 3: /* 1-D, dilated */
        kl_input(k, "x", DIMS(2, 5, 11));
        kl_weights(k, "w", DIMS(4, 5, 3));
        kl_node(k, "Conv", IN("x", "w"), ATTRS(IS("pads", 1, 2), IS("dilations", 2)));
        break;
    case 4: /* 3-D, strided, padded */
        kl_input(k, "x", DIMS(1, 3, 4, 5, 4));
        kl_weights(k, "w", DIMS(5, 3, 2, 3, 2));
        kl_node(k, "Conv", IN("x", "w"),
                ATTRS(IS("strides", 1, 2, 1), IS("pads", 0, 1, 1, 1, 0, 0)));
        break;
    case 5: /* pointwise, 13 -> 17 channels */
        kl_input(k, "x", DIMS(1, 13, 4, 4));
        kl_weights(k, "w", DIMS(17, 13, 1, 1));
        kl_node(k, "Conv", IN("x", "w"), NO_ATTRS);
        break;
    case 6: /* kiln.Conv: bias, residual Z, Sigmoid (whose f(0) = 0.5 must not stay in the
             * padding) */
        kl_input(k, "x", DIMS(1, 5, 6, 6));
        kl_input(k, "z", DIMS(1, 7, 6, 6));
        kl_weights(k, "w", DIMS(7, 5, 3, 3));
        kl_weights(k, "b", DIMS(7));
        kl_node(k, "kiln.Conv", IN("x", "w", "b", "z"),
                ATTRS(IS("pads", 1, 1, 1, 1), KILN_ATTR_S("activation", "Sigmoid")));
        break;
    default: /* kiln.Conv with LeakyRelu, no Z, grouped */
        kl_input(k, "x", DIMS(2, 6, 5, 5));
        kl_weights(k, "w", DIMS(4, 3, 3, 3));
        kl_node(k, "kiln.Conv", IN("x", "w"),
                ATTRS(KILN_ATTR_I("group", 2), KILN_ATTR_S("activation", "LeakyRelu"),
                      KILN_ATTR_F("act_alpha", 0.1f)));
        break;
    }
}

static void test_blocked_conv(void **state) { sweep(conv_layer, 8); }

static void pool_layer(klayer *k, int v)
{
    switch (v) {
    case 0:
        kl_input(k, "x", DIMS(2, 5, 7, 7));
        kl_node(k, "MaxPool", IN("x"),
                ATTRS(IS("kernel_shape", 3, 3), IS("strides", 2, 2), IS("pads", 1, 1, 1, 1)));
        break;
    case 1: /* ceil_mode, dilations */
        kl_input(k, "x", DIMS(1, 9, 8, 7));
        kl_node(k, "MaxPool", IN("x"),
                ATTRS(IS("kernel_shape", 2, 2), IS("strides", 2, 2), IS("dilations", 2, 1),
                      KILN_ATTR_I("ceil_mode", 1)));
        break;
    case 2: /* 1-D and 3-D */
        kl_input(k, "x", DIMS(2, 3, 9));
        kl_node(k, "MaxPool", IN("x"),
                ATTRS(IS("kernel_shape", 3), KILN_ATTR_S("auto_pad", "SAME_LOWER")));
        break;
    case 3:
        kl_input(k, "x", DIMS(1, 5, 4, 5, 4));
        kl_node(k, "AveragePool", IN("x"),
                ATTRS(IS("kernel_shape", 2, 3, 2), IS("pads", 1, 1, 0, 0, 1, 1)));
        break;
    case 4: /* pads not counted */
        kl_input(k, "x", DIMS(1, 5, 7, 6));
        kl_node(k, "AveragePool", IN("x"),
                ATTRS(IS("kernel_shape", 3, 2), IS("strides", 2, 2), IS("pads", 1, 0, 1, 1)));
        break;
    case 5: /* pads counted, ceil_mode */
        kl_input(k, "x", DIMS(2, 11, 7, 6));
        kl_node(k, "AveragePool", IN("x"),
                ATTRS(IS("kernel_shape", 3, 3), IS("strides", 2, 2), IS("pads", 1, 1, 1, 1),
                      KILN_ATTR_I("count_include_pad", 1), KILN_ATTR_I("ceil_mode", 1)));
        break;
    case 6:
        kl_input(k, "x", DIMS(2, 13, 5, 4));
        kl_node(k, "GlobalAveragePool", IN("x"), NO_ATTRS);
        break;
    case 7:
        kl_input(k, "x", DIMS(1, 6, 3, 2, 5));
        kl_node(k, "GlobalAveragePool", IN("x"), NO_ATTRS);
        break;
    default:
        kl_input(k, "x", DIMS(2, 9, 7));
        kl_node(k, "GlobalMaxPool", IN("x"), NO_ATTRS);
        break;
    }
}

static void test_blocked_pools(void **state) { sweep(pool_layer, 9); }

static void channel_layer(klayer *k, int v)
{
    switch (v) {
    case 0: /* x + b[C,1,1]: the constant gets a leading 1 and is stored blocked */
        kl_input(k, "x", DIMS(2, 5, 4, 3));
        kl_weights(k, "b", DIMS(5, 1, 1));
        kl_node(k, "Add", IN("x", "b"), NO_ATTRS);
        break;
    case 1: /* b[1,C,1,1] * x, constant first */
        kl_input(k, "x", DIMS(1, 13, 3, 3));
        kl_weights(k, "b", DIMS(1, 13, 1, 1));
        kl_node(k, "Mul", IN("b", "x"), NO_ATTRS);
        break;
    case 2: /* a per-image, per-channel activation (squeeze-and-excite) */
        kl_input(k, "x", DIMS(2, 6, 3, 4));
        kl_input(k, "s", DIMS(2, 6, 1, 1));
        kl_node(k, "Mul", IN("x", "s"), NO_ATTRS);
        break;
    default: /* rank 3 and 5 */
        kl_input(k, "x", DIMS(1, 7, 2, 3, 2));
        kl_weights(k, "b", DIMS(7, 1, 1, 1));
        kl_node(k, "Add", IN("x", "b"), NO_ATTRS);
        break;
    }
}

static void test_blocked_channel_ops(void **state) { sweep(channel_layer, 4); }

/* Layers the blocked kernels must not take. */
static void test_blocked_kernels_refuse(void **state)
{
    for (int v = 0; v < 4; v++) {
        klayer k = {.seed = 1};
        ir_graph_init(&k.g);
        switch (v) {
        case 0: /* Add of a scalar-like [1,1,1]: not per channel */
            kl_input(&k, "x", DIMS(1, 5, 3, 3));
            kl_weights(&k, "b", DIMS(1, 1, 1));
            kl_node(&k, "Add", IN("x", "b"), NO_ATTRS);
            break;
        case 1: /* Add broadcasting over space */
            kl_input(&k, "x", DIMS(1, 5, 3, 3));
            kl_weights(&k, "b", DIMS(3, 3));
            kl_node(&k, "Add", IN("x", "b"), NO_ATTRS);
            break;
        case 2: /* a per-channel activation of lower rank: its C is not at dim 1 */
            kl_input(&k, "x", DIMS(1, 5, 3, 3));
            kl_input(&k, "b", DIMS(5, 1, 1));
            kl_node(&k, "Add", IN("x", "b"), NO_ATTRS);
            break;
        default: /* MaxPool with Indices */
            kl_input(&k, "x", DIMS(1, 5, 4, 4));
            const char *outs[2] = {"y", "i"};
            assert_int_equal(ir_graph_add_node(&k.g, "MaxPool", "layer", IN("x"), outs, 2,
                                               ATTRS(IS("kernel_shape", 2, 2)), &k.node),
                             KILN_OK);
            assert_int_equal(opt_infer_node(&k.g, k.node), KILN_OK);
            break;
        }
        const ir_node *n = &k.g.nodes[k.node];
        ir_tensor in[2], out[2];
        ir_layout lin[16], lout[2];
        for (int32_t i = 0; i < n->n_in; i++) {
            const ir_value *x = &k.g.values[n->in[i]];
            in[i] = (ir_tensor){x->dtype, x->shape, (void *)x->data, IR_LAYOUT_PLAIN};
        }
        for (int32_t i = 0; i < n->n_out; i++) {
            const ir_value *x = &k.g.values[n->out[i]];
            out[i] = (ir_tensor){x->dtype, x->shape, NULL, IR_LAYOUT_PLAIN};
        }
        if (cpu_nchwc_layouts(n, in, n->n_in, out, n->n_out, IR_LAYOUT_NCHW8C, lin, lout))
            fail_msg("variant %d: a blocked kernel takes it", v);
        ir_graph_free(&k.g);
    }
}

/* The agnostic kernel: Sigmoid over blocked storage zeroes the padding again. */
static void test_blocked_elementwise_kernel(void **state)
{
    kiln_dims s = {.rank = 4, .d = {1, 5, 2, 2}};
    float x[20];
    for (int i = 0; i < 20; i++) x[i] = (float)i - 10.0f;
    float *xb = reorder(KILN_DTYPE_F32, &s, x, IR_LAYOUT_PLAIN, IR_LAYOUT_NCHW8C);
    float yb[32];
    memset(yb, 0xff, sizeof yb);
    ir_node n = {.name = "sig", .op = ir_op_find("Sigmoid")};
    ir_tensor in = {KILN_DTYPE_F32, s, xb, IR_LAYOUT_NCHW8C},
              out = {KILN_DTYPE_F32, s, yb, IR_LAYOUT_NCHW8C};
    const backend_kernel *k = backend_cpu()->find("Sigmoid", "ref_blocked");
    assert_non_null(k);
    assert_true(k->applies(&n, &in, 1, &out, 1));
    ir_tensor plain_in = in;
    plain_in.layout = IR_LAYOUT_PLAIN;
    assert_false(k->applies(&n, &plain_in, 1, &out, 1)); /* layouts must agree */
    assert_int_equal(k->run(&n, &in, 1, &out, 1, &(backend_exec){.threads = 1}), KILN_OK);
    for (int i = 0; i < 32; i++) {
        int ch = i % 8, pos = i / 8;
        float want = ch < 5 ? 1.0f / (1.0f + expf(-x[ch * 4 + pos])) : 0.0f;
        if (fabsf(yb[i] - want) > 1e-6f) fail_msg("[%d] %g, expected %g", i, yb[i], want);
    }
    free(xb);
}

/* ---- the builder's layout step ---- */

static kiln_engine *build_with(const kiln_network *net, ir_layout policy, const char *off)
{
    int32_t old = backend_cpu_set_layout_policy(policy);
    kiln_engine *e = tn_build(net, off);
    backend_cpu_set_layout_policy(old);
    return e;
}

/* The engine built under `policy` gives the numbers of the plain one (rel L2 <= TOL). */
static void same_numbers(const kiln_network *net, ir_layout policy, const char *off)
{
    kiln_engine *a = build_with(net, IR_LAYOUT_PLAIN, off), *b = build_with(net, policy, off);
    tn_io x, y;
    tn_run(a, &x);
    tn_run(b, &y);
    assert_int_equal(x.n, y.n);
    for (int32_t i = 0; i < x.n; i++) {
        assert_string_equal(x.names[i], y.names[i]);
        if (x.is_input[i]) continue;
        assert_int_equal(x.bytes[i], y.bytes[i]);
        double e = tu_rel_l2(y.data[i], x.data[i], (int64_t)(x.bytes[i] / 4));
        if (!(e <= TOL))
            fail_msg("output '%s' in %s: rel L2 %g from the plain engine", x.names[i],
                     ir_layout_name(policy), e);
    }
    tn_io_free(&x);
    tn_io_free(&y);
    kiln_engine_destroy(a);
    kiln_engine_destroy(b);
}

static const char *layer_kernel(const kiln_engine *e, const char *name)
{
    kiln_layer_info li;
    assert_int_equal(kiln_engine_layer_info(e, tn_find_layer(e, name), &li), KILN_OK);
    return li.kernel;
}

/* Whether kernel k runs on plain tensors: the reference or a fast kernel, not a blocked one. */
static bool plain_kernel(const char *k)
{
    return strcmp(k, "ref") == 0 || strncmp(k, "ref_", 4) != 0;
}

static const char *layer_op(const kiln_engine *e, int32_t i)
{
    kiln_layer_info li;
    assert_int_equal(kiln_engine_layer_info(e, i, &li), KILN_OK);
    return li.op;
}

/* Layers of `e` reading tensor `name`. */
static int readers(const kiln_engine *e, const char *name)
{
    int count = 0;
    for (int32_t i = 0; i < kiln_engine_num_layers(e); i++) {
        kiln_layer_info li;
        assert_int_equal(kiln_engine_layer_info(e, i, &li), KILN_OK);
        for (int32_t k = 0; k < li.n_inputs; k++)
            count += strcmp(kiln_engine_layer_input(e, i, k), name) == 0;
    }
    return count;
}

/* Conv -> Relu -> Conv -> MaxPool -> Add(bias) -> Conv -> GlobalAveragePool, with channel
 * counts that are no multiple of any block. */
static kiln_network *chain_net(void)
{
    kiln_network *net = tn_net();
    tn_input(net, "x", DIMS(1, 3, 12, 11));
    tn_weights(net, "w1", DIMS(5, 3, 3, 3), 1, -0.5f, 0.5f);
    tn_weights(net, "b1", DIMS(5), 2, -0.5f, 0.5f);
    tn_layer(net, "Conv", "conv1", IN("x", "w1", "b1"), OUT("c1"), ATTRS(IS("pads", 1, 1, 1, 1)));
    tn_layer(net, "Relu", "relu", IN("c1"), OUT("r1"), NO_ATTRS);
    tn_weights(net, "w2", DIMS(12, 5, 3, 3), 3, -0.5f, 0.5f);
    tn_layer(net, "Conv", "conv2", IN("r1", "w2"), OUT("c2"),
             ATTRS(IS("strides", 2, 1), IS("dilations", 1, 2)));
    tn_layer(net, "MaxPool", "pool", IN("c2"), OUT("p"),
             ATTRS(IS("kernel_shape", 2, 2), IS("strides", 2, 2)));
    tn_weights(net, "bias", DIMS(12, 1, 1), 4, -1.0f, 1.0f);
    tn_layer(net, "Add", "add", IN("p", "bias"), OUT("a"), NO_ATTRS);
    tn_weights(net, "w3", DIMS(9, 4, 1, 1), 5, -0.5f, 0.5f);
    tn_layer(net, "Conv", "conv3", IN("a", "w3"), OUT("c3"), ATTRS(KILN_ATTR_I("group", 3)));
    tn_layer(net, "GlobalAveragePool", "gap", IN("c3"), OUT("y"), NO_ATTRS);
    tn_output(net, "y");
    return net;
}

static void test_chain_one_reorder_in_one_out(void **state)
{
    kiln_network *net = chain_net();
    for (int b = 0; b < 3; b++) {
        for (int fuse = 0; fuse < 2; fuse++) {
            const char *off = fuse ? NULL : "activation-fusion";
            kiln_engine *e = build_with(net, k_blocked[b], off);
            int32_t n = kiln_engine_num_layers(e);
            assert_int_equal(tn_count_op(e, "kiln.Reorder"), 2);
            assert_string_equal(layer_op(e, 0), "kiln.Reorder");
            assert_string_equal(kiln_engine_layer_input(e, 0, 0), "x");
            assert_string_equal(layer_op(e, n - 1), "kiln.Reorder");
            assert_string_equal(kiln_engine_layer_output(e, n - 1, 0), "y");
            for (int32_t i = 1; i < n - 1; i++) {
                kiln_layer_info li;
                assert_int_equal(kiln_engine_layer_info(e, i, &li), KILN_OK);
                /* Relu, when not fused, runs the agnostic kernel on the blocked tensor */
                const char *want = strcmp(li.op, "Relu") == 0 ? "ref_blocked" : "ref_nchwc";
                if (strcmp(li.kernel, want) != 0)
                    fail_msg("layer '%s' (%s) runs %s, expected %s", li.name, li.op, li.kernel,
                             want);
                const char *o = kiln_engine_layer_output(e, i, 0);
                assert_string_equal(kiln_engine_tensor_layout(e, o), ir_layout_name(k_blocked[b]));
            }
            if (!fuse) assert_int_equal(tn_count_op(e, "Relu"), 1);
            /* the bias was stored blocked at build time, with a leading 1 */
            kiln_dtype dt;
            kiln_dims s;
            char name[32];
            snprintf(name, sizeof name, "bias::%s", ir_layout_name(k_blocked[b]));
            assert_int_equal(kiln_engine_tensor_info(e, name, &dt, &s), KILN_OK);
            assert_true(s.rank == 4 && s.d[0] == 1 && s.d[1] == 12 && s.d[2] == 1 && s.d[3] == 1);
            assert_string_equal(kiln_engine_tensor_layout(e, name), ir_layout_name(k_blocked[b]));
            kiln_engine_destroy(e);
            same_numbers(net, k_blocked[b], off);
        }
    }
    /* The default policy: the engine is what it always was. */
    kiln_engine *e = tn_build(net, NULL);
    assert_int_equal(tn_count_op(e, "kiln.Reorder"), 0);
    for (int32_t i = 0; i < e->d.n_tensors; i++)
        assert_int_equal(e->d.tensors[i].layout, IR_LAYOUT_PLAIN);
    for (int32_t i = 0; i < kiln_engine_num_layers(e); i++) {
        kiln_layer_info li;
        assert_int_equal(kiln_engine_layer_info(e, i, &li), KILN_OK);
        assert_true(strcmp(li.kernel, "ref_nchwc") != 0 && strcmp(li.kernel, "ref_blocked") != 0);
    }
    kiln_engine_destroy(e);
    kiln_network_destroy(net);
}

/* Blocked tensors take their padded bytes, in the plan and the memory plan. */
static void test_padded_sizes(void **state)
{
    kiln_network *net = chain_net();
    kiln_engine *p = tn_build(net, NULL), *b = build_with(net, IR_LAYOUT_NCHW8C, NULL);
    /* the fused conv1 + relu writes r1: 5 channels of 12 x 11, padded to 8 */
    const plan_tensor *tp = &p->d.tensors[kiln_strmap_get(&p->by_name, "r1")];
    const plan_tensor *tb = &b->d.tensors[kiln_strmap_get(&b->by_name, "r1")];
    assert_int_equal(tp->nbytes, 5 * 12 * 11 * 4);
    assert_int_equal(tb->nbytes, 8 * 12 * 11 * 4);
    const plan_tensor *xb = &b->d.tensors[kiln_strmap_get(&b->by_name, "x::nchw8c")];
    assert_int_equal(xb->nbytes, 8 * 12 * 11 * 4);
    uint64_t sum = 0;
    for (int32_t i = 0; i < b->d.n_tensors; i++) {
        const plan_tensor *t = &b->d.tensors[i];
        int64_t count;
        assert_true(ir_layout_numel(t->layout, &t->shape, &count));
        assert_int_equal(t->nbytes, (uint64_t)count * 4);
        if (!t->flags) sum += t->nbytes;
    }
    assert_int_equal(kiln_engine_activation_bytes(b), sum);
    assert_true(kiln_engine_activation_bytes(b) > kiln_engine_activation_bytes(p));
    kiln_engine_destroy(p);
    kiln_engine_destroy(b);
    kiln_network_destroy(net);
}

/* A layer no blocked kernel takes, in the middle, gets a reorder on each side. */
static void test_unblocked_layer_in_the_middle(void **state)
{
    for (int v = 0; v < 2; v++) {
        kiln_network *net = tn_net();
        tn_input(net, "x", DIMS(1, 5, 6, 6));
        tn_weights(net, "w1", DIMS(6, 5, 3, 3), 1, -0.5f, 0.5f);
        tn_layer(net, "Conv", "conv1", IN("x", "w1"), OUT("c1"), ATTRS(IS("pads", 1, 1, 1, 1)));
        if (v == 0) {
            tn_layer(net, "Softmax", "mid", IN("c1"), OUT("m"), ATTRS(KILN_ATTR_I("axis", 1)));
        } else {
            tn_ints(net, "shape", 4, (const int64_t[]){1, 6, 36, 1});
            tn_layer(net, "Reshape", "mid", IN("c1", "shape"), OUT("m"), NO_ATTRS);
        }
        tn_weights(net, "w2", DIMS(4, 6, 1, 1), 2, -0.5f, 0.5f);
        tn_layer(net, "Conv", "conv2", IN("m", "w2"), OUT("y"), NO_ATTRS);
        tn_output(net, "y");
        kiln_engine *e = build_with(net, IR_LAYOUT_NCHW8C, NULL);
        assert_int_equal(tn_count_op(e, "kiln.Reorder"), 4);
        int32_t mid = tn_find_layer(e, "mid");
        assert_string_equal(layer_op(e, mid - 1), "kiln.Reorder");
        assert_string_equal(layer_op(e, mid + 1), "kiln.Reorder");
        assert_string_equal(kiln_engine_layer_input(e, mid, 0), "c1::plain");
        assert_string_equal(kiln_engine_tensor_layout(e, "c1"), "nchw8c");
        assert_string_equal(kiln_engine_tensor_layout(e, "m"), "plain");
        assert_string_equal(kiln_engine_layer_input(e, tn_find_layer(e, "conv2"), 0), "m::nchw8c");
        assert_true(plain_kernel(layer_kernel(e, "mid")));
        kiln_engine_destroy(e);
        same_numbers(net, IR_LAYOUT_NCHW8C, NULL);
        kiln_network_destroy(net);
    }
}

/* One reorder per value and layout, whatever the number of readers. */
static void test_reorders_are_shared(void **state)
{
    kiln_network *net = tn_net();
    tn_input(net, "x", DIMS(1, 3, 5, 5));
    tn_weights(net, "wa", DIMS(4, 3, 3, 3), 1, -1, 1);
    tn_weights(net, "wb", DIMS(6, 3, 1, 1), 2, -1, 1);
    tn_layer(net, "Conv", "conv_a", IN("x", "wa"), OUT("a"), NO_ATTRS);
    tn_layer(net, "Conv", "conv_b", IN("x", "wb"), OUT("b"), NO_ATTRS);
    /* b is blocked; two plain readers share one reorder back */
    tn_layer(net, "Softmax", "soft", IN("b"), OUT("s"), ATTRS(KILN_ATTR_I("axis", 1)));
    tn_layer(net, "Flatten", "flat", IN("b"), OUT("f"), NO_ATTRS);
    tn_output(net, "a");
    tn_output(net, "s");
    tn_output(net, "f");
    kiln_engine *e = build_with(net, IR_LAYOUT_NCHW8C, NULL);
    /* x in (shared by both convs), b out (shared by soft and flat), a out */
    assert_int_equal(tn_count_op(e, "kiln.Reorder"), 3);
    assert_int_equal(readers(e, "x"), 1);
    assert_int_equal(readers(e, "x::nchw8c"), 2);
    assert_int_equal(readers(e, "b::plain"), 2);
    kiln_engine_destroy(e);
    same_numbers(net, IR_LAYOUT_NCHW8C, NULL);
    kiln_network_destroy(net);
}

typedef struct log_capture {
    char text[1 << 16];
    size_t len;
} log_capture;

static void capture(kiln_log_level level, const char *msg, void *user)
{
    log_capture *c = user;
    size_t n = strlen(msg);
    if (c->len + n + 2 < sizeof c->text) {
        memcpy(c->text + c->len, msg, n);
        c->len += n;
        c->text[c->len++] = '\n';
        c->text[c->len] = 0;
    }
}

static kiln_engine *build_logged(const kiln_network *net, ir_layout policy, log_capture *cap)
{
    kiln_config *cfg = NULL;
    kiln_engine *e = NULL;
    cap->len = 0;
    cap->text[0] = 0;
    int32_t old = backend_cpu_set_layout_policy(policy);
    kiln_set_logger(capture, cap, KILN_LOG_VERBOSE);
    assert_int_equal(kiln_config_create(&cfg), KILN_OK);
    assert_int_equal(kiln_config_set_log_level(cfg, KILN_LOG_VERBOSE), KILN_OK);
    assert_int_equal(kiln_config_set_tactic_timing(cfg, 0), KILN_OK); /* one plan per network */
    kiln_status st = kiln_build(net, cfg, &e);
    kiln_set_logger(NULL, NULL, KILN_LOG_ERROR);
    backend_cpu_set_layout_policy(old);
    kiln_config_destroy(cfg);
    if (st) fail_msg("%s", kiln_last_error());
    return e;
}

static void expect_log(const log_capture *cap, const char *text)
{
    if (!strstr(cap->text, text)) fail_msg("log lacks \"%s\":\n%s", text, cap->text);
}

/* A blocked layer writing a network output that another blocked layer reads: the output's
 * reorder back and the reader's reorder in cancel; the reader reads the blocked twin. */
static void test_pairs_cancel(void **state)
{
    kiln_network *net = tn_net();
    tn_input(net, "x", DIMS(1, 3, 6, 6));
    tn_weights(net, "w1", DIMS(5, 3, 3, 3), 1, -1, 1);
    tn_weights(net, "w2", DIMS(7, 5, 3, 3), 2, -1, 1);
    tn_layer(net, "Conv", "conv1", IN("x", "w1"), OUT("c1"), NO_ATTRS);
    tn_layer(net, "Conv", "conv2", IN("c1", "w2"), OUT("y"), NO_ATTRS);
    tn_output(net, "c1");
    tn_output(net, "y");
    log_capture *cap = malloc(sizeof *cap);
    kiln_engine *e = build_logged(net, IR_LAYOUT_NCHW8C, cap);
    assert_int_equal(tn_count_op(e, "kiln.Reorder"), 3); /* x in, c1 out, y out */
    assert_string_equal(kiln_engine_layer_input(e, tn_find_layer(e, "conv2"), 0), "c1::nchw8c");
    assert_int_equal(readers(e, "c1"), 0);
    expect_log(cap, "layout: reorder 'x::reorder_nchw8c' (plain -> nchw8c) of 'x' for layer "
                    "'conv1'");
    expect_log(cap, "layout: layer 'conv1' writes network output 'c1' as 'c1::nchw8c' (nchw8c)");
    expect_log(cap, "cancel; 'c1::nchw8c1' is read as 'c1::nchw8c'");
    expect_log(cap, "layouts: 2 layers on blocked tensors; 4 reorders inserted, 1 cancelled, 3 "
                    "left; 0 constants stored blocked");
    kiln_engine_destroy(e);
    same_numbers(net, IR_LAYOUT_NCHW8C, NULL);
    /* nothing is logged about layouts under the default policy */
    e = build_logged(net, IR_LAYOUT_PLAIN, cap);
    assert_null(strstr(cap->text, "layout"));
    kiln_engine_destroy(e);
    free(cap);
    kiln_network_destroy(net);
}

/* Reorders a network holds itself: a pair that undoes itself goes; a single one to a block
 * the policy does not use carries agnostic layers along. */
static void test_network_reorders(void **state)
{
    for (int v = 0; v < 3; v++) {
        kiln_network *net = tn_net();
        tn_input(net, "x", DIMS(1, 5, 3, 4));
        tn_layer(net, "kiln.Reorder", "r1", IN("x"), OUT("x16"),
                 ATTRS(KILN_ATTR_S("from", "plain"), KILN_ATTR_S("to", "nchw16c")));
        const char *relu_in = "x16";
        if (v == 0) {
            tn_layer(net, "kiln.Reorder", "r2", IN("x16"), OUT("xp"),
                     ATTRS(KILN_ATTR_S("from", "nchw16c"), KILN_ATTR_S("to", "plain")));
            relu_in = "xp";
        }
        tn_layer(net, "Relu", "relu", IN(relu_in), OUT("y"), NO_ATTRS);
        tn_output(net, "y");
        ir_layout policy = v == 2 ? IR_LAYOUT_NCHW8C : IR_LAYOUT_PLAIN;
        kiln_engine *e = build_with(net, policy, NULL);
        if (v < 2) { /* plain: every reorder cancels */
            assert_int_equal(tn_count_op(e, "kiln.Reorder"), 0);
            assert_int_equal(kiln_engine_num_layers(e), 1);
            assert_string_equal(kiln_engine_layer_input(e, 0, 0), "x");
            assert_true(plain_kernel(layer_kernel(e, "relu")));
        } else { /* the agnostic Relu keeps nchw16c */
            assert_int_equal(tn_count_op(e, "kiln.Reorder"), 2);
            assert_string_equal(layer_kernel(e, "relu"), "ref_blocked");
            assert_string_equal(kiln_engine_tensor_layout(e, "x16"), "nchw16c");
            assert_string_equal(kiln_engine_tensor_layout(e, "y::nchw16c"), "nchw16c");
        }
        tn_io b;
        tn_run(e, &b);
        const float *x = b.data[0], *y = b.data[1];
        for (int i = 0; i < 60; i++) assert_true(y[i] == (x[i] > 0 ? x[i] : 0.0f));
        tn_io_free(&b);
        kiln_engine_destroy(e);
        kiln_network_destroy(net);
    }
}

/* Squeeze-and-excite (a per-channel activation), and a residual Add of two blocked
 * tensors (the agnostic kernel when not fused into the convolution). */
static void test_se_and_residual(void **state)
{
    kiln_network *net = tn_net();
    tn_input(net, "x", DIMS(1, 6, 5, 5));
    tn_weights(net, "wa", DIMS(6, 6, 3, 3), 1, -0.5f, 0.5f);
    tn_weights(net, "wb", DIMS(6, 6, 1, 1), 2, -0.5f, 0.5f);
    tn_layer(net, "Conv", "conv_a", IN("x", "wa"), OUT("a"), ATTRS(IS("pads", 1, 1, 1, 1)));
    tn_layer(net, "GlobalAveragePool", "gap", IN("a"), OUT("g"), NO_ATTRS);
    tn_layer(net, "Sigmoid", "gate", IN("g"), OUT("s"), NO_ATTRS);
    tn_layer(net, "Mul", "scale", IN("a", "s"), OUT("se"), NO_ATTRS);
    tn_layer(net, "Conv", "conv_b", IN("se", "wb"), OUT("b"), NO_ATTRS);
    tn_layer(net, "Add", "res", IN("b", "se"), OUT("y"), NO_ATTRS);
    tn_output(net, "y");
    for (int fuse = 0; fuse < 2; fuse++) {
        const char *off = fuse ? NULL : "activation-fusion";
        kiln_engine *e = build_with(net, IR_LAYOUT_NCHW8C, off);
        assert_int_equal(tn_count_op(e, "kiln.Reorder"), 2);
        assert_string_equal(layer_kernel(e, "gap"), "ref_nchwc");
        assert_string_equal(layer_kernel(e, "gate"), "ref_blocked");
        assert_string_equal(layer_kernel(e, "scale"), "ref_nchwc");
        if (!fuse) assert_string_equal(layer_kernel(e, "res"), "ref_blocked");
        if (fuse) tn_expect_layer(e, "conv_b", "kiln.Conv", 4, "conv_b,res");
        kiln_engine_destroy(e);
        same_numbers(net, IR_LAYOUT_NCHW8C, off);
    }
    kiln_network_destroy(net);
}

/* ---- plans ---- */

static void test_plan_round_trip(void **state)
{
    kiln_network *net = chain_net();
    kiln_engine *e1 = build_with(net, IR_LAYOUT_NCHW8C, NULL);
    kiln_engine *e2 = build_with(net, IR_LAYOUT_NCHW8C, NULL);
    void *p1, *p2, *p3;
    size_t n1, n2, n3;
    assert_int_equal(kiln_engine_serialize(e1, &p1, &n1), KILN_OK);
    assert_int_equal(kiln_engine_serialize(e2, &p2, &n2), KILN_OK);
    assert_int_equal(n1, n2);
    assert_memory_equal(p1, p2, n1); /* deterministic */
    kiln_engine *l = NULL;
    assert_int_equal(kiln_engine_load_memory(p1, n1, &l), KILN_OK);
    assert_int_equal(tn_count_op(l, "kiln.Reorder"), 2);
    assert_string_equal(kiln_engine_tensor_layout(l, "r1"), "nchw8c");
    assert_string_equal(kiln_engine_tensor_layout(l, "x"), "plain");
    assert_null(kiln_engine_tensor_layout(l, "no such tensor"));
    assert_int_equal(kiln_engine_serialize(l, &p3, &n3), KILN_OK);
    assert_int_equal(n3, n1);
    assert_memory_equal(p3, p1, n1);
    tn_io a, b;
    tn_run(e1, &a);
    tn_run(l, &b);
    for (int32_t i = 0; i < a.n; i++) assert_memory_equal(a.data[i], b.data[i], a.bytes[i]);
    tn_io_free(&a);
    tn_io_free(&b);
    kiln_free(p1);
    kiln_free(p2);
    kiln_free(p3);
    kiln_engine_destroy(e1);
    kiln_engine_destroy(e2);
    kiln_engine_destroy(l);
    kiln_network_destroy(net);
}

static void fix_crcs(uint8_t *p, size_t n)
{
    uint32_t body = kiln_crc32c(0, p + PLAN_HEADER_BYTES, n - PLAN_HEADER_BYTES);
    memcpy(p + 32, &body, 4);
    uint32_t head = plan_header_crc(p);
    memcpy(p + 40, &head, 4);
}

/* The section table entry of section `id`. */
static uint8_t *section_entry(uint8_t *p, uint32_t id)
{
    uint32_t n_sec;
    memcpy(&n_sec, p + 36, 4);
    for (uint32_t i = 0; i < n_sec; i++) {
        uint8_t *e = p + PLAN_HEADER_BYTES + PLAN_SECTION_ENTRY_BYTES * i;
        uint32_t got;
        memcpy(&got, e, 4);
        if (got == id) return e;
    }
    return NULL;
}

static uint64_t section_offset(uint8_t *p, uint32_t id)
{
    uint64_t off;
    uint8_t *e = section_entry(p, id);
    assert_non_null(e);
    memcpy(&off, e + 8, 8);
    return off;
}

/* Loads q (n bytes, checksums fixed) and expects it refused as corrupt with `text`. */
static void expect_refused(uint8_t *q, size_t n, const char *text)
{
    kiln_engine *e = NULL;
    fix_crcs(q, n);
    kiln_status st = kiln_engine_load_memory(q, n, &e);
    if (st != KILN_ERR_CORRUPT_PLAN || !strstr(kiln_last_error(), text))
        fail_msg("expected a refusal with \"%s\", got status %d: %s", text, (int)st,
                 st ? kiln_last_error() : "(loaded)");
    assert_null(e);
}

static void test_inconsistent_plans_refused(void **state)
{
    /* 16 channels: every block takes the same bytes, so only the layout checks can tell. */
    kiln_network *net = tn_net();
    tn_input(net, "x", DIMS(1, 16, 4, 4));
    tn_weights(net, "w", DIMS(16, 16, 1, 1), 1, -1, 1);
    tn_layer(net, "Conv", "conv", IN("x", "w"), OUT("y"), NO_ATTRS);
    tn_output(net, "y");
    kiln_engine *e = build_with(net, IR_LAYOUT_NCHW8C, NULL);
    assert_int_equal(tn_count_op(e, "kiln.Reorder"), 2);
    uint8_t *p;
    size_t n;
    assert_int_equal(kiln_engine_serialize(e, (void **)&p, &n), KILN_OK);
    uint8_t *q = malloc(n);
    uint64_t lay = section_offset(p, PLAN_SEC_LAYOUTS);
    int32_t tx = kiln_strmap_get(&e->by_name, "x"), tb = kiln_strmap_get(&e->by_name, "x::nchw8c");
    assert_true(tx >= 0 && tb >= 0);
    uint32_t v;
    /* a reorder's output in a layout other than its `to` */
    memcpy(q, p, n);
    v = IR_LAYOUT_NCHW16C;
    memcpy(q + lay + 8 + 4 * (size_t)tb, &v, 4);
    expect_refused(q, n,
                   "kernel 'ref' does not run it with these tensors (input 0 'x' plain, "
                   "output 0 'x::nchw8c' nchw16c)");
    /* a network input that is not plain */
    memcpy(q, p, n);
    v = IR_LAYOUT_NCHW8C;
    memcpy(q + lay + 8 + 4 * (size_t)tx, &v, 4);
    expect_refused(q, n, "input 'x' has layout nchw8c; network inputs and outputs are plain");
    /* an unknown layout code */
    memcpy(q, p, n);
    v = 7;
    memcpy(q + lay + 8 + 4 * (size_t)tb, &v, 4);
    expect_refused(q, n, "layout code 7");
    /* a count that is not the tensor count */
    memcpy(q, p, n);
    memcpy(&v, q + lay, 4);
    v++;
    memcpy(q + lay, &v, 4);
    expect_refused(q, n, "does not hold one layout per tensor");
    /* without the section every tensor reads as plain: the blocked kernels refuse them */
    memcpy(q, p, n);
    v = 200;
    memcpy(section_entry(q, PLAN_SEC_LAYOUTS), &v, 4);
    expect_refused(q, n, "does not run it with these tensors");
    /* a Reorder whose attribute names another layout than its tensors hold */
    memcpy(q, p, n);
    uint64_t strs = section_offset(p, PLAN_SEC_STRINGS);
    uint8_t *hit = NULL;
    for (uint8_t *s = q + strs; s + 8 < q + n && !hit; s++)
        if (s[-1] == 0 && memcmp(s, "nchw8c", 7) == 0) hit = s;
    assert_non_null(hit);
    hit[4] = '4';
    expect_refused(q, n, "does not run it with these tensors");
    kiln_engine_destroy(e);
    kiln_free(p);
    kiln_network_destroy(net);

    /* 5 channels: a block that pads differently changes the bytes the tensor needs */
    net = tn_net();
    tn_input(net, "x", DIMS(1, 5, 4, 4));
    tn_layer(net, "GlobalMaxPool", "gmp", IN("x"), OUT("y"), NO_ATTRS);
    tn_output(net, "y");
    e = build_with(net, IR_LAYOUT_NCHW8C, NULL);
    assert_int_equal(kiln_engine_serialize(e, (void **)&p, &n), KILN_OK);
    free(q);
    q = malloc(n);
    memcpy(q, p, n);
    lay = section_offset(p, PLAN_SEC_LAYOUTS);
    tb = kiln_strmap_get(&e->by_name, "x::nchw8c");
    v = IR_LAYOUT_NCHW16C;
    memcpy(q + lay + 8 + 4 * (size_t)tb, &v, 4);
    expect_refused(q, n, "'x::nchw8c': 512 bytes recorded, its shape in nchw16c needs 1024");
    /* a plain plan has no layouts section at all */
    kiln_engine *plain = tn_build(net, NULL);
    uint8_t *pp;
    size_t pn;
    assert_int_equal(kiln_engine_serialize(plain, (void **)&pp, &pn), KILN_OK);
    assert_null(section_entry(pp, PLAN_SEC_LAYOUTS));
    kiln_free(pp);
    kiln_engine_destroy(plain);
    free(q);
    kiln_free(p);
    kiln_engine_destroy(e);
    kiln_network_destroy(net);
}

/* Every byte of a blocked plan's body set to a few values (checksums fixed): each plan
 * loads and runs within its buffers, or is refused (the sanitizer build checks). */
static void test_hostile_blocked_plans(void **state)
{
    kiln_network *net = tn_net();
    tn_input(net, "x", DIMS(1, 5, 3, 3));
    tn_weights(net, "w", DIMS(3, 5, 3, 3), 1, -1, 1);
    tn_weights(net, "b", DIMS(3, 1, 1), 2, -1, 1);
    tn_layer(net, "Conv", "conv", IN("x", "w"), OUT("c"), ATTRS(IS("pads", 1, 1, 1, 1)));
    tn_layer(net, "Add", "add", IN("c", "b"), OUT("a"), NO_ATTRS);
    tn_layer(net, "Sigmoid", "sig", IN("a"), OUT("y"), NO_ATTRS);
    tn_output(net, "y");
    kiln_engine *e = build_with(net, IR_LAYOUT_NCHW4C, NULL);
    uint8_t *p;
    size_t n;
    assert_int_equal(kiln_engine_serialize(e, (void **)&p, &n), KILN_OK);
    uint8_t *q = malloc(n);
    static float in[45], out[27];
    const uint8_t vals[] = {0x00, 0xff, 0x04, 0x08, 0x10, 0x01};
    int loaded = 0, refused = 0;
    for (size_t i = PLAN_HEADER_BYTES; i < n; i++)
        for (size_t k = 0; k < sizeof vals; k++) {
            if (p[i] == vals[k]) continue;
            memcpy(q, p, n);
            q[i] = vals[k];
            fix_crcs(q, n);
            kiln_engine *x = NULL;
            if (kiln_engine_load_memory(q, n, &x) != KILN_OK) {
                refused++;
                assert_null(x);
                continue;
            }
            loaded++;
            kiln_context *c = NULL;
            kiln_dims sx, sy;
            /* run only what still binds the same I/O */
            if (kiln_engine_tensor_info(x, "x", NULL, &sx) == KILN_OK &&
                kiln_engine_tensor_info(x, "y", NULL, &sy) == KILN_OK &&
                kiln_dims_count(&sx) * 4 <= (int64_t)sizeof in &&
                kiln_dims_count(&sy) * 4 <= (int64_t)sizeof out &&
                kiln_context_create(x, &c) == KILN_OK) {
                kiln_context_set_tensor(c, "x", in);
                kiln_context_set_tensor(c, "y", out);
                kiln_context_run(c);
            }
            kiln_context_destroy(c);
            kiln_engine_destroy(x);
        }
    assert_true(refused > 0 && loaded > 0);
    free(q);
    kiln_free(p);
    kiln_engine_destroy(e);
    kiln_network_destroy(net);
}

/* ---- the policy switch, the hook's contract, allocation failures ---- */

static void test_env_policy(void **state)
{
    kiln_network *net = chain_net();
    setenv("KILN_CPU_LAYOUT", "nchw4c", 1);
    kiln_engine *e = tn_build(net, NULL);
    assert_int_equal(tn_count_op(e, "kiln.Reorder"), 2);
    assert_string_equal(kiln_engine_tensor_layout(e, "r1"), "nchw4c");
    kiln_engine_destroy(e);
    /* the test hook wins over the environment */
    e = build_with(net, IR_LAYOUT_PLAIN, NULL);
    assert_int_equal(tn_count_op(e, "kiln.Reorder"), 0);
    kiln_engine_destroy(e);
    setenv("KILN_CPU_LAYOUT", "nchw5c", 1);
    e = NULL;
    assert_int_equal(kiln_build(net, NULL, &e), KILN_ERR_INVALID_ARGUMENT);
    assert_null(e);
    assert_non_null(strstr(kiln_last_error(), "KILN_CPU_LAYOUT is \"nchw5c\""));
    unsetenv("KILN_CPU_LAYOUT");
    e = tn_build(net, NULL);
    assert_int_equal(tn_count_op(e, "kiln.Reorder"), 0);
    kiln_engine_destroy(e);
    kiln_network_destroy(net);
}

/* A backend that asks for what cannot be: the builder refuses, naming the layer. */
static kiln_status bad_layout(const ir_node *n, const ir_tensor *in, int32_t n_in,
                              const ir_tensor *out, int32_t n_out, ir_layout *want_in,
                              ir_layout *want_out)
{
    want_out[0] = strcmp(n->name, "flat") == 0 ? IR_LAYOUT_NCHW8C : (ir_layout)7;
    return KILN_OK;
}

static void test_hook_asking_the_impossible(void **state)
{
    kiln_network *net = tn_net();
    tn_input(net, "x", DIMS(1, 5, 3, 3));
    tn_layer(net, "Flatten", "flat", IN("x"), OUT("f"), NO_ATTRS);
    tn_layer(net, "Relu", "relu", IN("x"), OUT("r"), NO_ATTRS);
    tn_output(net, "f");
    tn_output(net, "r");
    const kiln_backend bad = {"test", NULL, NULL, bad_layout};
    for (int v = 0; v < 2; v++) {
        ir_graph g;
        build_layout_result r;
        tn_prepare(net, &g);
        if (v == 1) g.nodes[tn_node(&g, "flat") - g.nodes].dead = true;
        kiln_status st = build_layout(&g, &bad, &r);
        assert_int_equal(st, KILN_ERR_INTERNAL);
        const char *want = v == 0 ? "node 'flat' (Flatten): the test backend asks for layout "
                                    "nchw8c (code 8) of output 0, shape 1x45"
                                  : "node 'relu' (Relu): the test backend asks for layout ? "
                                    "(code 7)";
        if (!strstr(kiln_last_error(), want))
            fail_msg("message \"%s\" lacks \"%s\"", kiln_last_error(), want);
        ir_graph_free(&g);
    }
    kiln_network_destroy(net);
}

static void test_blocked_build_survives_allocation_failures(void **state)
{
    kiln_network *net = chain_net();
    backend_cpu_set_layout_policy(IR_LAYOUT_NCHW8C);
    tu_build_survives_allocation_failures(net);
    kiln_network_destroy(net);
    net = tn_net(); /* the output twin and cancelling pair */
    tn_input(net, "x", DIMS(1, 3, 4, 4));
    tn_weights(net, "w1", DIMS(5, 3, 1, 1), 1, -1, 1);
    tn_layer(net, "Conv", "conv1", IN("x", "w1"), OUT("c1"), NO_ATTRS);
    tn_layer(net, "Relu", "relu", IN("c1"), OUT("y"), NO_ATTRS);
    tn_output(net, "c1");
    tn_output(net, "y");
    tu_build_survives_allocation_failures(net);
    backend_cpu_set_layout_policy(-1);
    kiln_network_destroy(net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reorder_round_trips),
        cmocka_unit_test(test_layout_helpers),
        cmocka_unit_test(test_reorder_errors),
        cmocka_unit_test(test_blocked_conv),
        cmocka_unit_test(test_blocked_pools),
        cmocka_unit_test(test_blocked_channel_ops),
        cmocka_unit_test(test_blocked_kernels_refuse),
        cmocka_unit_test(test_blocked_elementwise_kernel),
        cmocka_unit_test_teardown(test_chain_one_reorder_in_one_out, reset_policy),
        cmocka_unit_test_teardown(test_padded_sizes, reset_policy),
        cmocka_unit_test_teardown(test_unblocked_layer_in_the_middle, reset_policy),
        cmocka_unit_test_teardown(test_reorders_are_shared, reset_policy),
        cmocka_unit_test_teardown(test_pairs_cancel, reset_policy),
        cmocka_unit_test_teardown(test_network_reorders, reset_policy),
        cmocka_unit_test_teardown(test_se_and_residual, reset_policy),
        cmocka_unit_test_teardown(test_plan_round_trip, reset_policy),
        cmocka_unit_test_teardown(test_inconsistent_plans_refused, reset_policy),
        cmocka_unit_test_teardown(test_hostile_blocked_plans, reset_policy),
        cmocka_unit_test_teardown(test_env_policy, reset_policy),
        cmocka_unit_test_teardown(test_hook_asking_the_impossible, reset_policy),
        cmocka_unit_test_teardown(test_blocked_build_survives_allocation_failures, reset_policy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
