/* test_ops_shape.c - the shape op group (src/ir/ops/shape.c, movement.c, resize.c):
 * hand-computed cases from the ONNX operator docs, seeded random sweeps against naive
 * references written with explicit index arithmetic, and error cases. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* ---- helpers ---- */

static const kiln_dtype k_dtypes[] = {KILN_DTYPE_F32,  KILN_DTYPE_I64, KILN_DTYPE_I32,
                                      KILN_DTYPE_BOOL, KILN_DTYPE_U8,  KILN_DTYPE_I8,
                                      KILN_DTYPE_F16,  KILN_DTYPE_BF16};

static kiln_dtype rand_dtype(tu_rng *r) { return k_dtypes[tu_int(r, 0, 7)]; }

/* Random bytes: data-movement ops copy bits, so any pattern is a valid element. */
static ir_tensor rand_tensor(tu_rng *r, kiln_dtype dt, const kiln_dims *d)
{
    ir_tensor t = tu_tensor(dt, d->rank, d->d, NULL);
    size_t n = (size_t)ir_tensor_count(&t) * kiln_dtype_size(dt);
    for (size_t i = 0; i < n; i++) ((uint8_t *)t.data)[i] = (uint8_t)(tu_next(r) >> 32);
    return t;
}

static ir_tensor rand_f32(tu_rng *r, const kiln_dims *d)
{
    ir_tensor t = tu_tensor(KILN_DTYPE_F32, d->rank, d->d, NULL);
    tu_fill(r, t.data, ir_tensor_count(&t), -2.0f, 2.0f);
    return t;
}

static ir_tensor ints(int32_t n, const int64_t *v) { return tu_tensor_i64(1, (int64_t[]){n}, v); }
static ir_tensor ints32(int32_t n, const int64_t *v)
{
    ir_tensor t = tu_tensor(KILN_DTYPE_I32, 1, (int64_t[]){n}, NULL);
    for (int32_t i = 0; i < n; i++) ((int32_t *)t.data)[i] = (int32_t)v[i];
    return t;
}
static ir_tensor scalar_i64(int64_t v) { return tu_tensor_i64(0, NULL, &v); }
static ir_tensor scalar_f32(float v) { return tu_tensor_f32(0, NULL, &v); }

static void free_all(ir_tensor *t, int32_t n)
{
    for (int32_t i = 0; i < n; i++) tu_tensor_free(&t[i]);
}

static void unravel(int64_t lin, const kiln_dims *d, int64_t *idx)
{
    for (int32_t k = d->rank - 1; k >= 0; k--) {
        idx[k] = d->d[k] ? lin % d->d[k] : 0;
        lin = d->d[k] ? lin / d->d[k] : 0;
    }
}

static int64_t ravel(const int64_t *idx, const kiln_dims *d)
{
    int64_t o = 0;
    for (int32_t k = 0; k < d->rank; k++) o = o * d->d[k] + idx[k];
    return o;
}

/* Runs an op that must fail with `want`, its message naming the node and holding `text`. */
static void run_err(const char *op, const kiln_attr *at, int32_t nat, const ir_tensor *in,
                    int32_t nin, int32_t nout, kiln_status want, const char *text)
{
    ir_tensor out[16];
    kiln_status st = tu_run_op(op, at, nat, in, nin, out, nout);
    free_all(out, nout);
    if (st != want)
        fail_msg("%s: expected %s, got %s (%s)", op, kiln_status_name(want), kiln_status_name(st),
                 kiln_last_error());
    const char *msg = kiln_last_error();
    if (!strstr(msg, "node 'node'") || (text && !strstr(msg, text)))
        fail_msg("%s: message '%s' lacks the node name or '%s'", op, msg, text ? text : "");
}

static void assert_dims(const ir_tensor *t, int32_t rank, const int64_t *d)
{
    kiln_dims w = kiln_dims_make(rank, d);
    char a[KILN_DIMS_STR_MAX], b[KILN_DIMS_STR_MAX];
    if (!kiln_dims_equal(&t->shape, &w))
        fail_msg("shape %s, expected %s", kiln_dims_str(&t->shape, a, sizeof a),
                 kiln_dims_str(&w, b, sizeof b));
}

static void assert_f32(const ir_tensor *t, const float *want, int64_t n)
{
    assert_int_equal(t->dtype, KILN_DTYPE_F32);
    assert_int_equal(ir_tensor_count(t), n);
    for (int64_t i = 0; i < n; i++)
        if (fabsf(((const float *)t->data)[i] - want[i]) > 1e-5f * (1.0f + fabsf(want[i])))
            fail_msg("element %lld is %.7g, expected %.7g", (long long)i,
                     (double)((const float *)t->data)[i], (double)want[i]);
}

static void assert_i64(const ir_tensor *t, const int64_t *want, int64_t n)
{
    assert_int_equal(t->dtype, KILN_DTYPE_I64);
    assert_int_equal(ir_tensor_count(t), n);
    for (int64_t i = 0; i < n; i++)
        if (((const int64_t *)t->data)[i] != want[i])
            fail_msg("element %lld is %lld, expected %lld", (long long)i,
                     (long long)((const int64_t *)t->data)[i], (long long)want[i]);
}

/* out element j must equal src element map[j] bit for bit, or `fill` where map[j] < 0. */
static void check_map(const ir_tensor *out, const ir_tensor *src, const int64_t *map,
                      const void *fill, const char *what, int it)
{
    size_t es = kiln_dtype_size(src->dtype);
    assert_int_equal(out->dtype, src->dtype);
    int64_t n = ir_tensor_count(out);
    for (int64_t j = 0; j < n; j++) {
        const void *want = map[j] < 0 ? fill : (const char *)src->data + (size_t)map[j] * es;
        if (memcmp((const char *)out->data + (size_t)j * es, want, es) != 0)
            fail_msg("%s (case %d): element %lld differs (source %lld)", what, it, (long long)j,
                     (long long)map[j]);
    }
}

static kiln_dims rand_dims(tu_rng *r, int32_t rank, int64_t lo, int64_t hi)
{
    kiln_dims d;
    memset(&d, 0, sizeof d);
    d.rank = rank;
    for (int32_t k = 0; k < rank; k++) d.d[k] = tu_int(r, lo, hi);
    return d;
}

static int64_t *alloc_map(const ir_tensor *out)
{
    int64_t n = ir_tensor_count(out);
    return malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
}

/* Runs only shape inference with the inputs in mask `unknown` declared as network inputs,
 * so their values are not known at build time. */
static kiln_status infer_unknown(const char *op, const kiln_attr *at, int32_t nat,
                                 const ir_tensor *in, int32_t nin, uint32_t unknown, ir_tensor *out,
                                 int32_t nout)
{
    ir_graph g;
    ir_graph_init(&g);
    char names[8][16];
    const char *inames[8], *onames[8] = {"o0", "o1", "o2", "o3", "o4", "o5", "o6", "o7"};
    ir_tensor view[8];
    kiln_status st = KILN_OK;
    for (int32_t i = 0; i < nin && !st; i++) {
        view[i] = in[i];
        inames[i] = "";
        if (!ir_tensor_present(&in[i])) continue;
        snprintf(names[i], sizeof names[i], "in%d", i);
        inames[i] = names[i];
        if (unknown >> i & 1u) {
            view[i].data = NULL;
            st = ir_graph_add_input(&g, names[i], in[i].dtype, &in[i].shape);
        } else {
            size_t nb = (size_t)ir_tensor_count(&in[i]) * kiln_dtype_size(in[i].dtype);
            st = ir_graph_add_constant(&g, names[i], in[i].dtype, &in[i].shape, in[i].data, nb,
                                       false, NULL);
        }
    }
    int32_t id = -1;
    if (!st) st = ir_graph_add_node(&g, op, "node", inames, nin, onames, nout, at, nat, &id);
    if (!st) {
        ir_infer c = {.node = &g.nodes[id], .n_in = nin, .n_out = nout, .in = view, .out = out};
        memset(out, 0, sizeof(ir_tensor) * (size_t)nout);
        st = g.nodes[id].op->infer(&c);
    }
    ir_graph_free(&g);
    return st;
}

static void expect_needs_constant(const char *op, const kiln_attr *at, int32_t nat,
                                  const ir_tensor *in, int32_t nin, int32_t which, const char *name)
{
    ir_tensor out[4];
    char text[96];
    kiln_status st = infer_unknown(op, at, nat, in, nin, 1u << which, out, 1);
    snprintf(text, sizeof text, "input '%s' must be a constant known at build time", name);
    if (st != KILN_ERR_UNSUPPORTED || !strstr(kiln_last_error(), text) ||
        !strstr(kiln_last_error(), "node 'node'"))
        fail_msg("%s: expected UNSUPPORTED '%s', got %s: %s", op, text, kiln_status_name(st),
                 kiln_last_error());
}

/* ---- schema flags ---- */

static void test_flags(void **state)
{
    const char *alias[] = {"Reshape", "Flatten", "Squeeze", "Unsqueeze"};
    for (int i = 0; i < 4; i++) {
        const ir_op *op = ir_op_find(alias[i]);
        assert_non_null(op);
        assert_true(op->flags & IR_OP_ALIAS);
    }
    assert_true(ir_op_find("Shape")->flags & IR_OP_SHAPE_ONLY);
    assert_true(ir_op_find("Size")->flags & IR_OP_SHAPE_ONLY);
    const char *all[] = {"Concat", "Split",          "Slice",    "Gather",    "Transpose",
                         "Expand", "Tile",           "Pad",      "Resize",    "ConstantOfShape",
                         "Range",  "GatherElements", "GatherND", "ScatterND", "ScatterElements",
                         "Trilu",  "EyeLike",        "OneHot"};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) assert_non_null(ir_op_find(all[i]));
}

/* ---- Reshape, Flatten, Squeeze, Unsqueeze ---- */

static void test_reshape_cases(void **state)
{
    float x[24];
    for (int i = 0; i < 24; i++) x[i] = (float)i;
    ir_tensor in[2] = {tu_tensor_f32(TU_DIMS(2, 3, 4), x), ints(2, (int64_t[]){3, -1})}, out;
    tu_run_op_ok("Reshape", NULL, 0, in, 2, &out, 1);
    assert_dims(&out, 2, (int64_t[]){3, 8});
    assert_f32(&out, x, 24);
    tu_tensor_free(&out);
    tu_tensor_free(&in[1]);
    in[1] = ints(2, (int64_t[]){0, -1});
    tu_run_op_ok("Reshape", NULL, 0, in, 2, &out, 1);
    assert_dims(&out, 2, (int64_t[]){2, 12});
    tu_tensor_free(&out);
    tu_tensor_free(&in[1]);
    in[1] = ints(2, (int64_t[]){4, 2});
    run_err("Reshape", NULL, 0, in, 2, 1, KILN_ERR_SHAPE,
            "cannot reshape 2x3x4 (24 elements) to 4x2 (8 elements)");
    tu_tensor_free(&in[1]);
    in[1] = ints(2, (int64_t[]){-1, -1});
    run_err("Reshape", NULL, 0, in, 2, 1, KILN_ERR_SHAPE, "at most one");
    tu_tensor_free(&in[1]);
    in[1] = ints(2, (int64_t[]){-1, 5});
    run_err("Reshape", NULL, 0, in, 2, 1, KILN_ERR_SHAPE, "no size for -1");
    tu_tensor_free(&in[1]);
    in[1] = ints(3, (int64_t[]){INT64_MAX, INT64_MAX, 2});
    run_err("Reshape", NULL, 0, in, 2, 1, KILN_ERR_SHAPE, "has more than");
    tu_tensor_free(&in[1]);
    in[1] = ints(2, (int64_t[]){-7, 2});
    run_err("Reshape", NULL, 0, in, 2, 1, KILN_ERR_SHAPE, "-7");
    tu_tensor_free(&in[1]);
    in[1] = ints(4, (int64_t[]){2, 3, 4, 0});
    run_err("Reshape", NULL, 0, in, 2, 1, KILN_ERR_SHAPE, "copies dimension 3");
    tu_tensor_free(&in[1]);
    in[1] = ints(2, (int64_t[]){6, 4});
    expect_needs_constant("Reshape", NULL, 0, in, 2, 1, "shape");
    free_all(in, 2);

    /* allowzero=1: a 0 is a real zero-size dimension */
    kiln_attr az = KILN_ATTR_I("allowzero", 1);
    in[0] = tu_tensor_f32(TU_DIMS(0, 3), NULL);
    in[1] = ints(2, (int64_t[]){3, 0});
    tu_run_op_ok("Reshape", &az, 1, in, 2, &out, 1);
    assert_dims(&out, 2, (int64_t[]){3, 0});
    tu_tensor_free(&out);
    tu_tensor_free(&in[1]);
    in[1] = ints(2, (int64_t[]){0, -1});
    run_err("Reshape", &az, 1, in, 2, 1, KILN_ERR_SHAPE, "both 0 and -1");
    free_all(in, 2);
    /* i32 shape input is read too */
    in[0] = tu_tensor_f32(TU_DIMS(6), x);
    in[1] = ints32(2, (int64_t[]){2, 3});
    tu_run_op_ok("Reshape", NULL, 0, in, 2, &out, 1);
    assert_dims(&out, 2, (int64_t[]){2, 3});
    tu_tensor_free(&out);
    free_all(in, 2);
}

/* Merges random runs of adjacent dims of c: two merges of one c have equal counts. */
static kiln_dims merge_dims(tu_rng *r, const int64_t *c, int32_t n)
{
    kiln_dims d;
    memset(&d, 0, sizeof d);
    for (int32_t i = 0; i < n;) {
        int64_t p = c[i++];
        while (i < n && tu_int(r, 0, 2) == 0) p *= c[i++];
        d.d[d.rank++] = p;
    }
    return d;
}

static void test_reshape_sweep(void **state)
{
    tu_rng r = {101};
    for (int it = 0; it < 300; it++) {
        int32_t n = (int32_t)tu_int(&r, 1, 6);
        int64_t c[8];
        for (int32_t k = 0; k < n; k++) c[k] = tu_int(&r, 0, 30) == 0 ? 0 : tu_int(&r, 1, 4);
        kiln_dims a = merge_dims(&r, c, n), b = merge_dims(&r, c, n);
        int64_t v[8];
        for (int32_t k = 0; k < b.rank; k++) v[k] = b.d[k];
        /* A literal 0 copies the input's dimension unless allowzero=1, which in turn
         * forbids -1: shapes with a real zero take that path. */
        bool zero = false;
        for (int32_t k = 0; k < b.rank; k++) zero |= b.d[k] == 0;
        int mode = zero ? 0 : (int)tu_int(&r, 0, 2);
        kiln_attr az = KILN_ATTR_I("allowzero", 1);
        int32_t at = (int32_t)tu_int(&r, 0, b.rank - 1);
        int64_t others = 1;
        for (int32_t k = 0; k < b.rank; k++)
            if (k != at) others *= b.d[k];
        if (mode == 1 && others != 0) v[at] = -1;
        if (mode == 2)
            for (int32_t k = 0; k < b.rank && k < a.rank; k++)
                if (a.d[k] == b.d[k] && tu_int(&r, 0, 1)) v[k] = 0;
        ir_tensor in[2] = {rand_tensor(&r, rand_dtype(&r), &a), ints(b.rank, v)}, out;
        tu_run_op_ok("Reshape", &az, zero ? 1 : 0, in, 2, &out, 1);
        assert_dims(&out, b.rank, b.d);
        assert_memory_equal(out.data, in[0].data,
                            (size_t)ir_tensor_count(&out) * kiln_dtype_size(out.dtype) + 0);
        tu_tensor_free(&out);
        free_all(in, 2);
    }
}

static void test_flatten(void **state)
{
    tu_rng r = {202};
    ir_tensor x = tu_tensor_f32(TU_DIMS(2, 3, 4, 5), NULL), out;
    int64_t want[][2] = {{1, 120}, {2, 60}, {6, 20}, {24, 5}, {120, 1}};
    for (int64_t axis = -4; axis <= 4; axis++) {
        kiln_attr a = KILN_ATTR_I("axis", axis);
        tu_run_op_ok("Flatten", &a, 1, &x, 1, &out, 1);
        assert_dims(&out, 2, want[axis < 0 ? axis + 4 : axis]);
        tu_tensor_free(&out);
    }
    kiln_attr bad = KILN_ATTR_I("axis", 5);
    run_err("Flatten", &bad, 1, &x, 1, 1, KILN_ERR_SHAPE, "axis 5 is out of range");
    tu_tensor_free(&x);
    for (int it = 0; it < 100; it++) {
        kiln_dims d = rand_dims(&r, (int32_t)tu_int(&r, 0, 5), 1, 4);
        int64_t axis = tu_int(&r, -d.rank, d.rank), p = 1, q = 1;
        for (int32_t k = 0; k < d.rank; k++) {
            if (k < (axis < 0 ? axis + d.rank : axis))
                p *= d.d[k];
            else
                q *= d.d[k];
        }
        kiln_attr a = KILN_ATTR_I("axis", axis);
        ir_tensor in = rand_tensor(&r, rand_dtype(&r), &d);
        tu_run_op_ok("Flatten", &a, 1, &in, 1, &out, 1);
        assert_dims(&out, 2, (int64_t[]){p, q});
        assert_memory_equal(out.data, in.data, (size_t)(p * q) * kiln_dtype_size(in.dtype));
        tu_tensor_free(&out);
        tu_tensor_free(&in);
    }
}

static void test_squeeze_unsqueeze(void **state)
{
    tu_rng r = {303};
    ir_tensor in[2] = {tu_tensor_f32(TU_DIMS(1, 3, 1, 5), NULL), tu_absent()}, out;
    tu_run_op_ok("Squeeze", NULL, 0, in, 1, &out, 1);
    assert_dims(&out, 2, (int64_t[]){3, 5});
    tu_tensor_free(&out);
    in[1] = ints(1, (int64_t[]){-2});
    tu_run_op_ok("Squeeze", NULL, 0, in, 2, &out, 1);
    assert_dims(&out, 3, (int64_t[]){1, 3, 5});
    tu_tensor_free(&out);
    tu_tensor_free(&in[1]);
    in[1] = ints(1, (int64_t[]){1});
    run_err("Squeeze", NULL, 0, in, 2, 1, KILN_ERR_SHAPE, "cannot squeeze axis 1");
    tu_tensor_free(&in[1]);
    in[1] = ints(2, (int64_t[]){0, -4});
    run_err("Squeeze", NULL, 0, in, 2, 1, KILN_ERR_SHAPE, "twice");
    tu_tensor_free(&in[1]);
    in[1] = ints(1, (int64_t[]){4});
    run_err("Squeeze", NULL, 0, in, 2, 1, KILN_ERR_SHAPE, "out of range");
    tu_tensor_free(&in[1]);
    in[1] = ints(1, (int64_t[]){0});
    expect_needs_constant("Squeeze", NULL, 0, in, 2, 1, "axes");
    free_all(in, 2);

    in[0] = tu_tensor_f32(TU_DIMS(3, 4, 5), NULL);
    in[1] = ints(2, (int64_t[]){0, 4});
    tu_run_op_ok("Unsqueeze", NULL, 0, in, 2, &out, 1);
    assert_dims(&out, 5, (int64_t[]){1, 3, 4, 5, 1});
    tu_tensor_free(&out);
    tu_tensor_free(&in[1]);
    in[1] = ints(1, (int64_t[]){-1});
    tu_run_op_ok("Unsqueeze", NULL, 0, in, 2, &out, 1);
    assert_dims(&out, 4, (int64_t[]){3, 4, 5, 1});
    tu_tensor_free(&out);
    tu_tensor_free(&in[1]);
    in[1] = ints(1, (int64_t[]){INT64_MIN});
    run_err("Unsqueeze", NULL, 0, in, 2, 1, KILN_ERR_SHAPE, "out of range");
    tu_tensor_free(&in[1]);
    in[1] = ints(6, (int64_t[]){0, 1, 2, 3, 4, 5});
    run_err("Unsqueeze", NULL, 0, in, 2, 1, KILN_ERR_SHAPE, "expected at most 8");
    free_all(in, 2);

    /* sweep: squeeze random ones and put them back with Unsqueeze */
    for (int it = 0; it < 200; it++) {
        kiln_dims d = rand_dims(&r, (int32_t)tu_int(&r, 1, 6), 1, 3);
        int64_t ax[8], nax = 0;
        for (int32_t k = 0; k < d.rank; k++)
            if (d.d[k] == 1 && tu_int(&r, 0, 1)) ax[nax++] = tu_int(&r, 0, 1) ? k : k - d.rank;
        kiln_dims sq;
        memset(&sq, 0, sizeof sq);
        for (int32_t k = 0; k < d.rank; k++) {
            bool gone = nax == 0 ? d.d[k] == 1 : false;
            for (int64_t i = 0; i < nax; i++)
                if (ax[i] == k || ax[i] == k - d.rank) gone = true;
            if (!gone) sq.d[sq.rank++] = d.d[k];
        }
        ir_tensor x[2] = {rand_tensor(&r, rand_dtype(&r), &d), ints((int32_t)nax, ax)};
        tu_run_op_ok("Squeeze", NULL, 0, x, tu_int(&r, 0, 1) || nax ? 2 : 1, &out, 1);
        assert_dims(&out, sq.rank, sq.d);
        assert_memory_equal(out.data, x[0].data,
                            (size_t)ir_tensor_count(&out) * kiln_dtype_size(out.dtype));
        /* Unsqueeze at the squeezed positions (given against the output rank) restores d */
        int64_t back[8], nb = 0;
        for (int32_t k = 0; k < d.rank; k++) {
            bool gone = nax == 0 ? d.d[k] == 1 : false;
            for (int64_t i = 0; i < nax; i++)
                if (ax[i] == k || ax[i] == k - d.rank) gone = true;
            if (gone) back[nb++] = tu_int(&r, 0, 1) ? k : k - d.rank;
        }
        if (nb > 0) {
            ir_tensor y[2] = {out, ints((int32_t)nb, back)}, out2;
            tu_run_op_ok("Unsqueeze", NULL, 0, y, 2, &out2, 1);
            assert_dims(&out2, d.rank, d.d);
            tu_tensor_free(&out2);
            tu_tensor_free(&y[1]);
        }
        tu_tensor_free(&out);
        free_all(x, 2);
    }
}

/* ---- Shape, Size ---- */

static void test_shape_size(void **state)
{
    tu_rng r = {404};
    ir_tensor x = tu_tensor_f32(TU_DIMS(3, 4, 5), NULL), out;
    tu_run_op_ok("Shape", NULL, 0, &x, 1, &out, 1);
    assert_dims(&out, 1, (int64_t[]){3});
    assert_i64(&out, (int64_t[]){3, 4, 5}, 3);
    tu_tensor_free(&out);
    tu_run_op_ok("Size", NULL, 0, &x, 1, &out, 1);
    assert_dims(&out, 0, NULL);
    assert_i64(&out, (int64_t[]){60}, 1);
    tu_tensor_free(&out);
    struct {
        int64_t s, e;
        int n;
        int64_t v[3];
    } cases[] = {{1, INT64_MAX, 2, {4, 5}},
                 {0, -1, 2, {3, 4}},
                 {-10, 10, 3, {3, 4, 5}},
                 {2, 1, 0, {0}},
                 {-1, 3, 1, {5}}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        kiln_attr a[2] = {KILN_ATTR_I("start", cases[i].s), KILN_ATTR_I("end", cases[i].e)};
        tu_run_op_ok("Shape", a, cases[i].e == INT64_MAX ? 1 : 2, &x, 1, &out, 1);
        assert_dims(&out, 1, (int64_t[]){cases[i].n});
        assert_i64(&out, cases[i].v, cases[i].n);
        tu_tensor_free(&out);
    }
    tu_tensor_free(&x);
    for (int it = 0; it < 100; it++) {
        kiln_dims d = rand_dims(&r, (int32_t)tu_int(&r, 0, 6), 0, 4);
        int64_t s = tu_int(&r, -8, 8), e = tu_int(&r, -8, 8), want[8], n = 0;
        for (int64_t i = 0; i < d.rank; i++) {
            int64_t lo = s < 0 ? s + d.rank : s, hi = e < 0 ? e + d.rank : e;
            if (i >= lo && i < hi) want[n++] = d.d[i];
        }
        kiln_attr a[2] = {KILN_ATTR_I("start", s), KILN_ATTR_I("end", e)};
        ir_tensor in = tu_tensor_f32(d.rank, d.d, NULL);
        tu_run_op_ok("Shape", a, 2, &in, 1, &out, 1);
        assert_dims(&out, 1, &n);
        assert_i64(&out, want, n);
        tu_tensor_free(&out);
        tu_tensor_free(&in);
    }
}

/* Shape and Size may run on a tensor whose data is never there (IR_OP_SHAPE_ONLY). */
static void test_shape_reads_no_data(void **state)
{
    const char *ops[] = {"Shape", "Size", "EyeLike"};
    for (int i = 0; i < 3; i++) {
        ir_graph g;
        ir_graph_init(&g);
        kiln_dims s = {2, {2, 7}};
        const char *in[] = {"x"}, *outn[] = {"y"};
        int32_t id;
        assert_int_equal(ir_graph_add_input(&g, "x", KILN_DTYPE_F32, &s), KILN_OK);
        assert_int_equal(ir_graph_add_node(&g, ops[i], "node", in, 1, outn, 1, NULL, 0, &id),
                         KILN_OK);
        ir_tensor x = {KILN_DTYPE_F32, s, NULL, IR_LAYOUT_PLAIN}, y;
        memset(&y, 0, sizeof y);
        ir_infer c = {.node = &g.nodes[id], .n_in = 1, .n_out = 1, .in = &x, .out = &y};
        assert_int_equal(g.nodes[id].op->infer(&c), KILN_OK);
        int64_t buf[16] = {0};
        y.data = buf;
        assert_int_equal(g.nodes[id].op->eval(&g.nodes[id], &x, 1, &y, 1), KILN_OK);
        if (i == 0) assert_true(buf[0] == 2 && buf[1] == 7);
        if (i == 1) assert_true(buf[0] == 14);
        if (i == 2) {
            float f[2];
            memcpy(f, buf, sizeof f);
            assert_true(f[0] == 1.0f && f[1] == 0.0f);
        }
        ir_graph_free(&g);
    }
}

/* Reshape, Flatten, Squeeze and Unsqueeze may run with output 0 on input 0's bytes. */
static void test_alias_in_place(void **state)
{
    float x[6] = {1, 2, 3, 4, 5, 6};
    ir_graph g;
    ir_graph_init(&g);
    kiln_dims s = {2, {2, 3}}, sd = {1, {1}};
    int64_t shape[1] = {6};
    const char *in[] = {"x", "s"}, *outn[] = {"y"};
    int32_t id;
    assert_int_equal(ir_graph_add_input(&g, "x", KILN_DTYPE_F32, &s), KILN_OK);
    assert_int_equal(
        ir_graph_add_constant(&g, "s", KILN_DTYPE_I64, &sd, shape, sizeof shape, false, NULL),
        KILN_OK);
    assert_int_equal(ir_graph_add_node(&g, "Reshape", "node", in, 2, outn, 1, NULL, 0, &id),
                     KILN_OK);
    ir_tensor t[2] = {{KILN_DTYPE_F32, s, x, IR_LAYOUT_PLAIN},
                      {KILN_DTYPE_I64, sd, shape, IR_LAYOUT_PLAIN}},
              y;
    memset(&y, 0, sizeof y);
    ir_infer c = {.node = &g.nodes[id], .n_in = 2, .n_out = 1, .in = t, .out = &y};
    assert_int_equal(g.nodes[id].op->infer(&c), KILN_OK);
    y.data = x;
    assert_int_equal(g.nodes[id].op->eval(&g.nodes[id], t, 2, &y, 1), KILN_OK);
    for (int i = 0; i < 6; i++) assert_true(x[i] == (float)(i + 1));
    /* a buffer sized for other inputs is refused, not overrun */
    y.shape.d[0] = 7;
    assert_int_equal(g.nodes[id].op->eval(&g.nodes[id], t, 2, &y, 1), KILN_ERR_INTERNAL);
    assert_non_null(strstr(kiln_last_error(), "node 'node'"));
    ir_graph_free(&g);
}

/* ---- Concat ---- */

static void test_concat(void **state)
{
    tu_rng r = {505};
    float a[] = {1, 2, 3, 4}, b[] = {5, 6, 7, 8};
    ir_tensor in[4] = {tu_tensor_f32(TU_DIMS(2, 2), a), tu_tensor_f32(TU_DIMS(2, 2), b)}, out;
    kiln_attr ax0 = KILN_ATTR_I("axis", 0), ax1 = KILN_ATTR_I("axis", -1);
    tu_run_op_ok("Concat", &ax0, 1, in, 2, &out, 1);
    assert_dims(&out, 2, (int64_t[]){4, 2});
    assert_f32(&out, (float[]){1, 2, 3, 4, 5, 6, 7, 8}, 8);
    tu_tensor_free(&out);
    tu_run_op_ok("Concat", &ax1, 1, in, 2, &out, 1);
    assert_dims(&out, 2, (int64_t[]){2, 4});
    assert_f32(&out, (float[]){1, 2, 5, 6, 3, 4, 7, 8}, 8);
    tu_tensor_free(&out);
    kiln_attr bad = KILN_ATTR_I("axis", 2);
    run_err("Concat", &bad, 1, in, 2, 1, KILN_ERR_SHAPE, "axis 2 is out of range");
    run_err("Concat", NULL, 0, in, 2, 1, KILN_ERR_INVALID_GRAPH, "required attribute 'axis'");
    tu_tensor_free(&in[1]);
    in[1] = tu_tensor_f32(TU_DIMS(3, 3), NULL);
    run_err("Concat", &ax0, 1, in, 2, 1, KILN_ERR_SHAPE, "input 1 is 3x3, expected 2x2");
    tu_tensor_free(&in[1]);
    in[1] = tu_tensor_i64(TU_DIMS(2, 2), NULL);
    run_err("Concat", &ax0, 1, in, 2, 1, KILN_ERR_INVALID_GRAPH, "input 1 is i64");
    free_all(in, 2);

    for (int it = 0; it < 300; it++) {
        int32_t rank = (int32_t)tu_int(&r, 1, 5), nin = (int32_t)tu_int(&r, 1, 4);
        int64_t axis = tu_int(&r, -rank, rank - 1), ax = axis < 0 ? axis + rank : axis;
        kiln_dims base = rand_dims(&r, rank, 1, 4), od = base;
        kiln_dtype dt = rand_dtype(&r);
        int64_t start[4];
        od.d[ax] = 0;
        for (int32_t i = 0; i < nin; i++) {
            kiln_dims d = base;
            d.d[ax] = tu_int(&r, 0, 3);
            start[i] = od.d[ax];
            od.d[ax] += d.d[ax];
            in[i] = rand_tensor(&r, dt, &d);
        }
        kiln_attr at = KILN_ATTR_I("axis", axis);
        tu_run_op_ok("Concat", &at, 1, in, nin, &out, 1);
        assert_dims(&out, od.rank, od.d);
        size_t es = kiln_dtype_size(dt);
        for (int64_t j = 0; j < ir_tensor_count(&out); j++) {
            int64_t idx[8];
            unravel(j, &od, idx);
            int32_t src = 0;
            while (src + 1 < nin && idx[ax] >= start[src + 1]) src++;
            idx[ax] -= start[src];
            int64_t off = ravel(idx, &in[src].shape);
            if (memcmp((char *)out.data + j * (int64_t)es, (char *)in[src].data + off * (int64_t)es,
                       es))
                fail_msg("concat case %d: element %lld differs", it, (long long)j);
        }
        tu_tensor_free(&out);
        free_all(in, nin);
    }
}

/* ---- Split ---- */

static void test_split(void **state)
{
    tu_rng r = {606};
    float x[] = {1, 2, 3, 4, 5, 6, 7};
    ir_tensor in[2] = {tu_tensor_f32(TU_DIMS(6), x), tu_absent()}, out[4];
    tu_run_op_ok("Split", NULL, 0, in, 1, out, 3);
    for (int i = 0; i < 3; i++) assert_f32(&out[i], (float[]){x[2 * i], x[2 * i + 1]}, 2);
    free_all(out, 3);
    in[1] = ints(2, (int64_t[]){2, 4});
    tu_run_op_ok("Split", NULL, 0, in, 2, out, 2);
    assert_f32(&out[0], (float[]){1, 2}, 2);
    assert_f32(&out[1], (float[]){3, 4, 5, 6}, 4);
    free_all(out, 2);
    kiln_attr nout = KILN_ATTR_I("num_outputs", 2);
    run_err("Split", &nout, 1, in, 2, 2, KILN_ERR_INVALID_GRAPH, "are given, expected one");
    expect_needs_constant("Split", NULL, 0, in, 2, 1, "split");
    tu_tensor_free(&in[1]);
    in[1] = ints(2, (int64_t[]){2, 5});
    run_err("Split", NULL, 0, in, 2, 2, KILN_ERR_SHAPE, "add up to 6");
    tu_tensor_free(&in[1]);
    in[1] = ints(2, (int64_t[]){-1, 7});
    run_err("Split", NULL, 0, in, 2, 2, KILN_ERR_SHAPE, "size 0 is -1");
    free_all(in, 2);
    /* opset 18: 7 into 4 outputs is 2, 2, 2, 1; 5 into 4 cannot be done */
    in[0] = tu_tensor_f32(TU_DIMS(7), x);
    kiln_attr n4 = KILN_ATTR_I("num_outputs", 4);
    tu_run_op_ok("Split", &n4, 1, in, 1, out, 4);
    for (int i = 0; i < 4; i++) assert_dims(&out[i], 1, (int64_t[]){i < 3 ? 2 : 1});
    assert_f32(&out[3], (float[]){7}, 1);
    free_all(out, 4);
    run_err("Split", &n4, 1, in, 1, 3, KILN_ERR_INVALID_GRAPH, "num_outputs is 4, expected 3");
    run_err("Split", NULL, 0, in, 1, 2, KILN_ERR_SHAPE, "equal parts");
    tu_tensor_free(&in[0]);
    in[0] = tu_tensor_f32(TU_DIMS(5), x);
    run_err("Split", &n4, 1, in, 1, 4, KILN_ERR_SHAPE, "the last would get -1");
    tu_tensor_free(&in[0]);

    for (int it = 0; it < 300; it++) {
        int32_t rank = (int32_t)tu_int(&r, 1, 5), n = (int32_t)tu_int(&r, 1, 4);
        int64_t axis = tu_int(&r, -rank, rank - 1), ax = axis < 0 ? axis + rank : axis;
        kiln_dims d = rand_dims(&r, rank, 1, 4);
        int64_t sizes[4], start[5] = {0};
        int how = (int)tu_int(&r, 0, 2);
        kiln_attr at[2] = {KILN_ATTR_I("axis", axis), KILN_ATTR_I("num_outputs", n)};
        int32_t nat = 1, nin = 1;
        if (how == 0) { /* explicit sizes */
            d.d[ax] = 0;
            for (int32_t i = 0; i < n; i++) d.d[ax] += sizes[i] = tu_int(&r, 0, 3);
            in[1] = ints(n, sizes);
            nin = 2;
        } else if (how == 1) { /* num_outputs: ceil chunks, the last smaller */
            int64_t chunk;
            do {
                d.d[ax] = tu_int(&r, 0, 10);
                chunk = (d.d[ax] + n - 1) / n;
            } while (d.d[ax] - chunk * (n - 1) < 0);
            for (int32_t i = 0; i < n; i++)
                sizes[i] = i < n - 1 ? chunk : d.d[ax] - chunk * (n - 1);
            nat = 2;
        } else { /* neither: equal parts */
            d.d[ax] = n * tu_int(&r, 0, 3);
            for (int32_t i = 0; i < n; i++) sizes[i] = d.d[ax] / n;
        }
        for (int32_t i = 0; i < n; i++) start[i + 1] = start[i] + sizes[i];
        in[0] = rand_tensor(&r, rand_dtype(&r), &d);
        tu_run_op_ok("Split", at, nat, in, nin, out, n);
        for (int32_t i = 0; i < n; i++) {
            kiln_dims od = d;
            od.d[ax] = sizes[i];
            assert_dims(&out[i], od.rank, od.d);
            int64_t *map = alloc_map(&out[i]);
            for (int64_t j = 0; j < ir_tensor_count(&out[i]); j++) {
                int64_t idx[8];
                unravel(j, &od, idx);
                idx[ax] += start[i];
                map[j] = ravel(idx, &d);
            }
            check_map(&out[i], &in[0], map, NULL, "split", it);
            free(map);
        }
        free_all(out, n);
        free_all(in, nin);
    }
}

/* ---- Slice ---- */

/* Indices a slice picks along one axis, by walking from the clamped start. */
static int64_t ref_slice_axis(int64_t dim, int64_t s, int64_t e, int64_t step, int64_t *list)
{
    int64_t n = 0;
    if (dim == 0) return 0;
    if (s < 0) s += dim;
    if (e < 0) e += dim;
    if (step > 0) {
        s = s < 0 ? 0 : s > dim ? dim : s;
        e = e < 0 ? 0 : e > dim ? dim : e;
        for (int64_t i = s; i < e; i += step) {
            list[n++] = i;
            if (i > INT64_MAX - step) break;
        }
    } else {
        s = s < 0 ? 0 : s > dim - 1 ? dim - 1 : s;
        e = e < -1 ? -1 : e > dim - 1 ? dim - 1 : e;
        for (int64_t i = s; i > e; i += step) {
            list[n++] = i;
            if (i < INT64_MIN - step) break;
        }
    }
    return n;
}

static void test_slice_cases(void **state)
{
    float x[] = {1, 2, 3, 4, 5, 6, 7, 8};
    ir_tensor in[5] = {tu_tensor_f32(TU_DIMS(2, 4), x), ints(2, (int64_t[]){1, 0}),
                       ints(2, (int64_t[]){2, 3}), ints(2, (int64_t[]){0, 1}),
                       ints(2, (int64_t[]){1, 2})},
              out;
    tu_run_op_ok("Slice", NULL, 0, in, 5, &out, 1);
    assert_dims(&out, 2, (int64_t[]){1, 2});
    assert_f32(&out, (float[]){5, 7}, 2);
    tu_tensor_free(&out);
    free_all(in + 1, 4);
    in[1] = ints(2, (int64_t[]){0, 1});
    in[2] = ints(2, (int64_t[]){-1, 1000});
    tu_run_op_ok("Slice", NULL, 0, in, 3, &out, 1);
    assert_dims(&out, 2, (int64_t[]){1, 3});
    assert_f32(&out, (float[]){2, 3, 4}, 3);
    tu_tensor_free(&out);
    free_all(in, 3);

    /* negative steps and the INT64 sentinels */
    in[0] = tu_tensor_f32(TU_DIMS(5), x);
    in[1] = ints(1, (int64_t[]){-1});
    in[2] = ints(1, (int64_t[]){INT64_MIN});
    in[3] = ints(1, (int64_t[]){0});
    in[4] = ints(1, (int64_t[]){-1});
    tu_run_op_ok("Slice", NULL, 0, in, 5, &out, 1);
    assert_f32(&out, (float[]){5, 4, 3, 2, 1}, 5);
    tu_tensor_free(&out);
    free_all(in + 1, 4);
    in[1] = ints(1, (int64_t[]){10});
    in[2] = ints(1, (int64_t[]){-10});
    in[3] = tu_absent();
    in[4] = ints(1, (int64_t[]){-2});
    tu_run_op_ok("Slice", NULL, 0, in, 5, &out, 1);
    assert_f32(&out, (float[]){5, 3, 1}, 3);
    tu_tensor_free(&out);
    tu_tensor_free(&in[4]);
    in[4] = ints(1, (int64_t[]){INT64_MIN});
    tu_run_op_ok("Slice", NULL, 0, in, 5, &out, 1);
    assert_f32(&out, (float[]){5}, 1);
    tu_tensor_free(&out);
    free_all(in + 1, 4);
    in[1] = ints(1, (int64_t[]){INT64_MIN});
    in[2] = ints(1, (int64_t[]){INT64_MAX});
    in[4] = ints(1, (int64_t[]){INT64_MAX});
    tu_run_op_ok("Slice", NULL, 0, in, 5, &out, 1);
    assert_f32(&out, (float[]){1}, 1);
    tu_tensor_free(&out);
    tu_tensor_free(&in[4]);
    in[4] = ints(1, (int64_t[]){0});
    run_err("Slice", NULL, 0, in, 5, 1, KILN_ERR_SHAPE, "steps[0] is 0");
    tu_tensor_free(&in[4]);
    in[4] = tu_absent();
    expect_needs_constant("Slice", NULL, 0, in, 3, 2, "ends");
    tu_tensor_free(&in[2]);
    in[2] = ints(2, (int64_t[]){1, 2});
    run_err("Slice", NULL, 0, in, 3, 1, KILN_ERR_SHAPE, "ends has 2 values, expected 1");
    free_all(in, 3);
    in[0] = tu_tensor_f32(TU_DIMS(2, 4), x);
    in[1] = ints(2, (int64_t[]){0, 0});
    in[2] = ints(2, (int64_t[]){1, 1});
    in[3] = ints(2, (int64_t[]){1, -1});
    run_err("Slice", NULL, 0, in, 4, 1, KILN_ERR_SHAPE, "names axis 1 twice");
    tu_tensor_free(&in[3]);
    in[3] = ints32(2, (int64_t[]){0, 1});
    tu_run_op_ok("Slice", NULL, 0, in, 4, &out, 1);
    assert_f32(&out, (float[]){1}, 1);
    tu_tensor_free(&out);
    tu_tensor_free(&in[3]);
    in[3] = tu_tensor(KILN_DTYPE_F32, 1, (int64_t[]){2}, (float[]){0, 1});
    run_err("Slice", NULL, 0, in, 4, 1, KILN_ERR_INVALID_GRAPH, "input 'axes' must be i64 or i32");
    free_all(in, 4);
}

static void test_slice_sweep(void **state)
{
    tu_rng r = {707};
    const int64_t extremes[] = {INT64_MIN, INT64_MAX, INT64_MIN + 1, INT64_MAX - 1};
    for (int it = 0; it < 2000; it++) {
        int32_t rank = (int32_t)tu_int(&r, 1, 5);
        kiln_dims d = rand_dims(&r, rank, 0, 6);
        for (int32_t k = 0; k < rank; k++)
            if (d.d[k] == 0 && tu_int(&r, 0, 3)) d.d[k] = 1 + tu_int(&r, 0, 5);
        int32_t n = (int32_t)tu_int(&r, 0, rank);
        bool give_axes = tu_int(&r, 0, 2) != 0, give_steps = tu_int(&r, 0, 3) != 0;
        int64_t axes[8], starts[8], ends[8], steps[8], perm[8];
        for (int32_t k = 0; k < rank; k++) perm[k] = k;
        for (int32_t k = rank - 1; k > 0 && give_axes; k--) {
            int64_t j = tu_int(&r, 0, k), t = perm[k];
            perm[k] = perm[j];
            perm[j] = t;
        }
        kiln_dims od = d;
        int64_t lists[8][64];
        for (int32_t k = 0; k < rank; k++)
            for (int64_t i = 0; i < d.d[k]; i++) lists[k][i] = i;
        for (int32_t i = 0; i < n; i++) {
            int32_t k = (int32_t)perm[i];
            int64_t dim = d.d[k];
            axes[i] = tu_int(&r, 0, 1) ? k : k - rank;
            starts[i] = tu_int(&r, -dim - 3, dim + 3);
            ends[i] = tu_int(&r, -dim - 3, dim + 3);
            steps[i] = give_steps ? tu_int(&r, 1, 3) * (tu_int(&r, 0, 1) ? 1 : -1) : 1;
            if (tu_int(&r, 0, 9) == 0) starts[i] = extremes[tu_int(&r, 0, 3)];
            if (tu_int(&r, 0, 9) == 0) ends[i] = extremes[tu_int(&r, 0, 3)];
            if (give_steps && tu_int(&r, 0, 19) == 0) steps[i] = extremes[tu_int(&r, 0, 3)];
            od.d[k] = ref_slice_axis(dim, starts[i], ends[i], steps[i], lists[k]);
        }
        ir_tensor in[5] = {rand_tensor(&r, rand_dtype(&r), &d), ints(n, starts), ints(n, ends),
                           give_axes ? ints(n, axes) : tu_absent(),
                           give_steps ? ints(n, steps) : tu_absent()},
                  out;
        tu_run_op_ok("Slice", NULL, 0, in, give_steps ? 5 : give_axes ? 4 : 3, &out, 1);
        assert_dims(&out, od.rank, od.d);
        int64_t *map = alloc_map(&out);
        for (int64_t j = 0; j < ir_tensor_count(&out); j++) {
            int64_t idx[8];
            unravel(j, &od, idx);
            for (int32_t k = 0; k < rank; k++) idx[k] = lists[k][idx[k]];
            map[j] = ravel(idx, &d);
        }
        check_map(&out, &in[0], map, NULL, "slice", it);
        free(map);
        tu_tensor_free(&out);
        free_all(in, 5);
    }
}

/* ---- Transpose ---- */

static void test_transpose(void **state)
{
    tu_rng r = {808};
    float x[] = {1, 2, 3, 4, 5, 6};
    ir_tensor in = tu_tensor_f32(TU_DIMS(2, 3), x), out;
    tu_run_op_ok("Transpose", NULL, 0, &in, 1, &out, 1);
    assert_dims(&out, 2, (int64_t[]){3, 2});
    assert_f32(&out, (float[]){1, 4, 2, 5, 3, 6}, 6);
    tu_tensor_free(&out);
    kiln_attr bad = KILN_ATTR_IS("perm", ((int64_t[]){0, 0}), 2);
    run_err("Transpose", &bad, 1, &in, 1, 1, KILN_ERR_SHAPE, "permutation");
    bad = KILN_ATTR_IS("perm", ((int64_t[]){0, 1, 2}), 3);
    run_err("Transpose", &bad, 1, &in, 1, 1, KILN_ERR_SHAPE, "perm has 3 entries, expected 2");
    bad = KILN_ATTR_IS("perm", ((int64_t[]){1, -1}), 2);
    run_err("Transpose", &bad, 1, &in, 1, 1, KILN_ERR_SHAPE, "permutation");
    tu_tensor_free(&in);
    for (int it = 0; it < 300; it++) {
        int32_t rank = (int32_t)tu_int(&r, 1, 5);
        kiln_dims d = rand_dims(&r, rank, 1, 5), od = d;
        int64_t perm[8];
        bool give = tu_int(&r, 0, 4) != 0;
        for (int32_t k = 0; k < rank; k++) perm[k] = give ? k : rank - 1 - k;
        for (int32_t k = rank - 1; k > 0 && give; k--) {
            int64_t j = tu_int(&r, 0, k), t = perm[k];
            perm[k] = perm[j];
            perm[j] = t;
        }
        for (int32_t k = 0; k < rank; k++) od.d[k] = d.d[perm[k]];
        kiln_attr at = KILN_ATTR_IS("perm", perm, rank);
        in = rand_tensor(&r, rand_dtype(&r), &d);
        tu_run_op_ok("Transpose", &at, give ? 1 : 0, &in, 1, &out, 1);
        assert_dims(&out, od.rank, od.d);
        int64_t *map = alloc_map(&out);
        for (int64_t j = 0; j < ir_tensor_count(&out); j++) {
            int64_t oi[8], ii[8];
            unravel(j, &od, oi);
            for (int32_t k = 0; k < rank; k++) ii[perm[k]] = oi[k];
            map[j] = ravel(ii, &d);
        }
        check_map(&out, &in, map, NULL, "transpose", it);
        free(map);
        tu_tensor_free(&out);
        tu_tensor_free(&in);
    }
}

/* ---- Expand, Tile ---- */

static void test_expand_tile(void **state)
{
    tu_rng r = {909};
    float x[] = {1, 2, 3};
    ir_tensor in[2] = {tu_tensor_f32(TU_DIMS(3, 1), x), ints(3, (int64_t[]){2, 1, 6})}, out;
    tu_run_op_ok("Expand", NULL, 0, in, 2, &out, 1);
    assert_dims(&out, 3, (int64_t[]){2, 3, 6});
    for (int i = 0; i < 36; i++) assert_true(((float *)out.data)[i] == x[(i / 6) % 3]);
    tu_tensor_free(&out);
    tu_tensor_free(&in[1]);
    in[1] = ints(2, (int64_t[]){2, 4});
    run_err("Expand", NULL, 0, in, 2, 1, KILN_ERR_SHAPE, "cannot expand 3x1 to 2x4");
    tu_tensor_free(&in[1]);
    in[1] = ints(2, (int64_t[]){-1, 4});
    run_err("Expand", NULL, 0, in, 2, 1, KILN_ERR_SHAPE, "negative");
    tu_tensor_free(&in[1]);
    in[1] = ints(3, (int64_t[]){INT64_MAX, INT64_MAX, 1});
    run_err("Expand", NULL, 0, in, 2, 1, KILN_ERR_SHAPE, NULL);
    tu_tensor_free(&in[1]);
    in[1] = ints(2, (int64_t[]){3, 4});
    expect_needs_constant("Expand", NULL, 0, in, 2, 1, "shape");
    free_all(in, 2);

    in[0] = tu_tensor_f32(TU_DIMS(2, 2), (float[]){1, 2, 3, 4});
    in[1] = ints(2, (int64_t[]){1, 2});
    tu_run_op_ok("Tile", NULL, 0, in, 2, &out, 1);
    assert_dims(&out, 2, (int64_t[]){2, 4});
    assert_f32(&out, (float[]){1, 2, 1, 2, 3, 4, 3, 4}, 8);
    tu_tensor_free(&out);
    tu_tensor_free(&in[1]);
    in[1] = ints(1, (int64_t[]){2});
    run_err("Tile", NULL, 0, in, 2, 1, KILN_ERR_SHAPE, "repeats has 1 values, expected 2");
    tu_tensor_free(&in[1]);
    in[1] = ints(2, (int64_t[]){1, -1});
    run_err("Tile", NULL, 0, in, 2, 1, KILN_ERR_SHAPE, "repeats[1] is -1");
    tu_tensor_free(&in[1]);
    in[1] = ints(2, (int64_t[]){INT64_MAX, 1});
    run_err("Tile", NULL, 0, in, 2, 1, KILN_ERR_SHAPE, "too large");
    free_all(in, 2);

    for (int it = 0; it < 300; it++) {
        /* Expand: aligned from the right, either side may be 1 */
        int32_t rank = (int32_t)tu_int(&r, 0, 5),
                extra = (int32_t)tu_int(&r, 0, 5 - rank < 2 ? 5 - rank : 2);
        kiln_dims d = rand_dims(&r, rank, 1, 4), want, od;
        memset(&want, 0, sizeof want);
        want.rank = rank + extra;
        for (int32_t k = 0; k < rank; k++)
            if (tu_int(&r, 0, 2) == 0) d.d[k] = 1;
        for (int32_t k = 0; k < want.rank; k++) {
            int32_t j = k - extra;
            int64_t v = j < 0 || d.d[j] == 1 ? tu_int(&r, 0, 3) : d.d[j];
            want.d[k] = tu_int(&r, 0, 3) == 0 ? 1 : v;
        }
        assert_true(ir_broadcast(&d, &want, &od));
        in[0] = rand_tensor(&r, rand_dtype(&r), &d);
        in[1] = ints(want.rank, want.d);
        tu_run_op_ok("Expand", NULL, 0, in, 2, &out, 1);
        assert_dims(&out, od.rank, od.d);
        int64_t *map = alloc_map(&out);
        for (int64_t j = 0; j < ir_tensor_count(&out); j++) {
            int64_t oi[8], ii[8];
            unravel(j, &od, oi);
            for (int32_t k = 0; k < rank; k++) ii[k] = d.d[k] == 1 ? 0 : oi[k + od.rank - rank];
            map[j] = ravel(ii, &d);
        }
        check_map(&out, &in[0], map, NULL, "expand", it);
        free(map);
        tu_tensor_free(&out);
        free_all(in, 2);

        /* Tile */
        rank = (int32_t)tu_int(&r, 1, 5);
        d = rand_dims(&r, rank, 1, 3);
        int64_t rep[8];
        od = d;
        for (int32_t k = 0; k < rank; k++) od.d[k] = d.d[k] * (rep[k] = tu_int(&r, 0, 3));
        in[0] = rand_tensor(&r, rand_dtype(&r), &d);
        in[1] = tu_int(&r, 0, 1) ? ints(rank, rep) : ints32(rank, rep);
        tu_run_op_ok("Tile", NULL, 0, in, 2, &out, 1);
        assert_dims(&out, od.rank, od.d);
        map = alloc_map(&out);
        for (int64_t j = 0; j < ir_tensor_count(&out); j++) {
            int64_t oi[8];
            unravel(j, &od, oi);
            for (int32_t k = 0; k < rank; k++) oi[k] %= d.d[k];
            map[j] = ravel(oi, &d);
        }
        check_map(&out, &in[0], map, NULL, "tile", it);
        free(map);
        tu_tensor_free(&out);
        free_all(in, 2);
    }
}

/* ---- Pad ---- */

static void test_pad_cases(void **state)
{
    float x[] = {1.0f, 1.2f, 2.3f, 3.4f, 4.5f, 5.7f};
    ir_tensor in[4] = {tu_tensor_f32(TU_DIMS(3, 2), x), ints(4, (int64_t[]){0, 2, 0, 0}),
                       tu_absent(), tu_absent()},
              out;
    kiln_attr m = KILN_ATTR_S("mode", "constant");
    tu_run_op_ok("Pad", &m, 1, in, 2, &out, 1);
    assert_dims(&out, 2, (int64_t[]){3, 4});
    assert_f32(&out, (float[]){0, 0, 1.0f, 1.2f, 0, 0, 2.3f, 3.4f, 0, 0, 4.5f, 5.7f}, 12);
    tu_tensor_free(&out);
    m = KILN_ATTR_S("mode", "reflect");
    tu_run_op_ok("Pad", &m, 1, in, 2, &out, 1);
    assert_f32(&out,
               (float[]){1.0f, 1.2f, 1.0f, 1.2f, 2.3f, 3.4f, 2.3f, 3.4f, 4.5f, 5.7f, 4.5f, 5.7f},
               12);
    tu_tensor_free(&out);
    m = KILN_ATTR_S("mode", "edge");
    tu_run_op_ok("Pad", &m, 1, in, 2, &out, 1);
    assert_f32(&out,
               (float[]){1.0f, 1.0f, 1.0f, 1.2f, 2.3f, 2.3f, 2.3f, 3.4f, 4.5f, 4.5f, 4.5f, 5.7f},
               12);
    tu_tensor_free(&out);
    tu_tensor_free(&in[1]);
    in[1] = ints(4, (int64_t[]){2, 1, 1, 1});
    m = KILN_ATTR_S("mode", "wrap");
    tu_run_op_ok("Pad", &m, 1, in, 2, &out, 1);
    assert_dims(&out, 2, (int64_t[]){6, 4});
    float w[] = {3.4f, 2.3f, 3.4f, 2.3f, 5.7f, 4.5f, 5.7f, 4.5f, 1.2f, 1.0f, 1.2f, 1.0f,
                 3.4f, 2.3f, 3.4f, 2.3f, 5.7f, 4.5f, 5.7f, 4.5f, 1.2f, 1.0f, 1.2f, 1.0f};
    assert_f32(&out, w, 24);
    tu_tensor_free(&out);
    /* constant_value and axes (negative) */
    tu_tensor_free(&in[1]);
    in[1] = ints(2, (int64_t[]){1, -1});
    in[2] = scalar_f32(9.0f);
    in[3] = ints(1, (int64_t[]){-2});
    tu_run_op_ok("Pad", NULL, 0, in, 4, &out, 1);
    assert_dims(&out, 2, (int64_t[]){3, 2});
    assert_f32(&out, (float[]){9, 9, 1.0f, 1.2f, 2.3f, 3.4f}, 6);
    tu_tensor_free(&out);
    /* errors */
    m = KILN_ATTR_S("mode", "mirror");
    run_err("Pad", &m, 1, in, 4, 1, KILN_ERR_INVALID_GRAPH, "mode 'mirror' is unknown");
    tu_tensor_free(&in[2]);
    in[2] = tu_tensor_i64(TU_DIMS(1), (int64_t[]){9});
    run_err("Pad", NULL, 0, in, 4, 1, KILN_ERR_INVALID_GRAPH, "constant_value is i64");
    tu_tensor_free(&in[2]);
    in[2] = tu_absent();
    tu_tensor_free(&in[1]);
    in[1] = ints(3, (int64_t[]){1, 1, 1});
    run_err("Pad", NULL, 0, in, 4, 1, KILN_ERR_SHAPE, "pads has 3 values, expected 2");
    tu_tensor_free(&in[1]);
    in[1] = ints(2, (int64_t[]){-2, -2});
    run_err("Pad", NULL, 0, in, 4, 1, KILN_ERR_SHAPE, "crop 4 elements from axis 0");
    tu_tensor_free(&in[1]);
    in[1] = ints(2, (int64_t[]){INT64_MAX, 0});
    run_err("Pad", NULL, 0, in, 4, 1, KILN_ERR_SHAPE, "too large");
    tu_tensor_free(&in[1]);
    in[1] = ints(2, (int64_t[]){-3, 1});
    m = KILN_ATTR_S("mode", "reflect");
    run_err("Pad", &m, 1, in, 4, 1, KILN_ERR_SHAPE, "no elements are left");
    expect_needs_constant("Pad", NULL, 0, in, 2, 1, "pads");
    free_all(in, 4);

    /* negative pads crop before reflecting: [1..5] -> [2,3,4,5] -> [2,3,4,5,4,3] */
    in[0] = tu_tensor_f32(TU_DIMS(5), (float[]){1, 2, 3, 4, 5});
    in[1] = ints(2, (int64_t[]){-1, 2});
    tu_run_op_ok("Pad", &m, 1, in, 2, &out, 1);
    assert_f32(&out, (float[]){2, 3, 4, 5, 4, 3}, 6);
    tu_tensor_free(&out);
    free_all(in, 2);
}

/* Input index each output position of one axis reads (-1: the constant), built by
 * walking outwards from the kept run, bouncing (reflect) or cycling (wrap). */
static void ref_pad_axis(const char *mode, int64_t dim, int64_t b, int64_t e, int64_t *list,
                         int64_t *n)
{
    int64_t lo = b < 0 ? -b : 0, hi = dim - (e < 0 ? -e : 0), m = hi - lo;
    int64_t pb = b > 0 ? b : 0, pe = e > 0 ? e : 0;
    *n = pb + m + pe;
    for (int64_t i = 0; i < m; i++) list[pb + i] = lo + i;
    for (int side = 0; side < 2; side++) {
        int64_t count = side ? pe : pb, pos = side ? m - 1 : 0, dir = side ? 1 : -1;
        for (int64_t t = 0; t < count; t++) {
            int64_t v;
            if (!strcmp(mode, "constant")) {
                v = -1;
            } else if (!strcmp(mode, "edge")) {
                v = lo + pos;
            } else if (!strcmp(mode, "wrap")) {
                pos += dir;
                if (pos < 0) pos = m - 1;
                if (pos >= m) pos = 0;
                v = lo + pos;
            } else {
                if (m > 1) {
                    if (pos + dir < 0 || pos + dir >= m) dir = -dir;
                    pos += dir;
                }
                v = lo + pos;
            }
            list[side ? pb + m + t : pb - 1 - t] = v;
        }
    }
}

static void test_pad_sweep(void **state)
{
    tu_rng r = {1001};
    const char *modes[] = {"constant", "reflect", "edge", "wrap"};
    for (int it = 0; it < 1200; it++) {
        const char *mode = modes[it % 4];
        int32_t rank = (int32_t)tu_int(&r, 1, 5);
        kiln_dims d = rand_dims(&r, rank, 1, rank == 5 ? 3 : 5), od = d;
        kiln_dtype dt = rand_dtype(&r);
        bool give_axes = tu_int(&r, 0, 1) != 0;
        int64_t axes[8], pads[16], na = give_axes ? tu_int(&r, 0, rank) : rank, perm[8];
        int64_t lists[8][64];
        for (int32_t k = 0; k < rank; k++) {
            perm[k] = k;
            for (int64_t i = 0; i < d.d[k]; i++) lists[k][i] = i;
        }
        for (int32_t k = rank - 1; k > 0 && give_axes; k--) {
            int64_t j = tu_int(&r, 0, k), t = perm[k];
            perm[k] = perm[j];
            perm[j] = t;
        }
        for (int64_t i = 0; i < na; i++) {
            int32_t k = (int32_t)perm[i];
            int64_t b, e, kept;
            do { /* keep at least one element (two for some reflect cases is not needed) */
                b = tu_int(&r, -2, 6);
                e = tu_int(&r, -2, 6);
                kept = d.d[k] + (b < 0 ? b : 0) + (e < 0 ? e : 0);
            } while (kept < (strcmp(mode, "constant") ? 1 : 0));
            axes[i] = tu_int(&r, 0, 1) ? k : k - rank;
            pads[i] = b;
            pads[na + i] = e;
            ref_pad_axis(mode, d.d[k], b, e, lists[k], &od.d[k]);
        }
        uint8_t fill[8] = {0};
        ir_tensor in[4] = {rand_tensor(&r, dt, &d), ints((int32_t)(2 * na), pads), tu_absent(),
                           give_axes ? ints((int32_t)na, axes) : tu_absent()},
                  out;
        if (tu_int(&r, 0, 1)) {
            kiln_dims one = {0, {0}};
            in[2] = rand_tensor(&r, dt, &one);
            memcpy(fill, in[2].data, kiln_dtype_size(dt));
        }
        kiln_attr m = KILN_ATTR_S("mode", mode);
        tu_run_op_ok("Pad", &m, 1, in, give_axes ? 4 : ir_tensor_present(&in[2]) ? 3 : 2, &out, 1);
        assert_dims(&out, od.rank, od.d);
        int64_t *map = alloc_map(&out);
        for (int64_t j = 0; j < ir_tensor_count(&out); j++) {
            int64_t idx[8];
            unravel(j, &od, idx);
            map[j] = 0;
            for (int32_t k = 0; k < rank && map[j] >= 0; k++)
                if ((idx[k] = lists[k][idx[k]]) < 0) map[j] = -1;
            if (map[j] >= 0) map[j] = ravel(idx, &d);
        }
        check_map(&out, &in[0], map, fill, mode, it);
        free(map);
        tu_tensor_free(&out);
        free_all(in, 4);
    }
}

/* ---- Gather family ---- */

static void test_gather(void **state)
{
    tu_rng r = {1101};
    float x[] = {1.0f, 1.2f, 2.3f, 3.4f, 4.5f, 5.7f};
    ir_tensor in[2] = {tu_tensor_f32(TU_DIMS(3, 2), x),
                       tu_tensor_i64(TU_DIMS(2, 2), (int64_t[]){0, 1, 1, 2})},
              out;
    tu_run_op_ok("Gather", NULL, 0, in, 2, &out, 1);
    assert_dims(&out, 3, (int64_t[]){2, 2, 2});
    assert_f32(&out, (float[]){1.0f, 1.2f, 2.3f, 3.4f, 2.3f, 3.4f, 4.5f, 5.7f}, 8);
    tu_tensor_free(&out);
    tu_tensor_free(&in[1]);
    in[1] = ints32(2, (int64_t[]){-1, 0});
    kiln_attr ax = KILN_ATTR_I("axis", -1);
    tu_run_op_ok("Gather", &ax, 1, in, 2, &out, 1);
    assert_dims(&out, 2, (int64_t[]){3, 2});
    assert_f32(&out, (float[]){1.2f, 1.0f, 3.4f, 2.3f, 5.7f, 4.5f}, 6);
    tu_tensor_free(&out);
    tu_tensor_free(&in[1]);
    in[1] = scalar_i64(2);
    tu_run_op_ok("Gather", NULL, 0, in, 2, &out, 1);
    assert_dims(&out, 1, (int64_t[]){2});
    assert_f32(&out, (float[]){4.5f, 5.7f}, 2);
    tu_tensor_free(&out);
    tu_tensor_free(&in[1]);
    /* out-of-range indices are errors, never reads */
    in[1] = tu_tensor_i64(TU_DIMS(2), (int64_t[]){0, 3});
    run_err("Gather", NULL, 0, in, 2, 1, KILN_ERR_INVALID_ARGUMENT, "index 3 (at position 1");
    tu_tensor_free(&in[1]);
    in[1] = ints32(1, (int64_t[]){-4});
    run_err("Gather", NULL, 0, in, 2, 1, KILN_ERR_INVALID_ARGUMENT, "index -4");
    tu_tensor_free(&in[1]);
    in[1] = tu_tensor_i64(TU_DIMS(1), (int64_t[]){INT64_MIN});
    run_err("Gather", NULL, 0, in, 2, 1, KILN_ERR_INVALID_ARGUMENT, "out of range");
    tu_tensor_free(&in[1]);
    in[1] = tu_tensor_f32(TU_DIMS(1), (float[]){0});
    run_err("Gather", NULL, 0, in, 2, 1, KILN_ERR_INVALID_GRAPH, "i64 or i32");
    tu_tensor_free(&in[1]);
    in[1] = tu_tensor_i64(TU_DIMS(1), (int64_t[]){0});
    ax = KILN_ATTR_I("axis", 2);
    run_err("Gather", &ax, 1, in, 2, 1, KILN_ERR_SHAPE, "axis 2 is out of range");
    free_all(in, 2);

    for (int it = 0; it < 300; it++) {
        int32_t rank = (int32_t)tu_int(&r, 1, 5), q = (int32_t)tu_int(&r, 0, 3);
        kiln_dims d = rand_dims(&r, rank, 1, 4), id = rand_dims(&r, q, 0, 3), od;
        int64_t axis = tu_int(&r, -rank, rank - 1), a = axis < 0 ? axis + rank : axis;
        memset(&od, 0, sizeof od);
        for (int32_t k = 0; k < a; k++) od.d[od.rank++] = d.d[k];
        for (int32_t k = 0; k < q; k++) od.d[od.rank++] = id.d[k];
        for (int32_t k = (int32_t)a + 1; k < rank; k++) od.d[od.rank++] = d.d[k];
        ir_tensor idx =
            tu_tensor(tu_int(&r, 0, 1) ? KILN_DTYPE_I64 : KILN_DTYPE_I32, q, id.d, NULL);
        int64_t ni = ir_tensor_count(&idx), vals[64];
        for (int64_t j = 0; j < ni; j++) {
            vals[j] = tu_int(&r, -d.d[a], d.d[a] - 1);
            ir_tensor_set(&idx, j, (double)vals[j]);
        }
        in[0] = rand_tensor(&r, rand_dtype(&r), &d);
        in[1] = idx;
        kiln_attr at = KILN_ATTR_I("axis", axis);
        tu_run_op_ok("Gather", &at, 1, in, 2, &out, 1);
        assert_dims(&out, od.rank, od.d);
        int64_t *map = alloc_map(&out);
        for (int64_t j = 0; j < ir_tensor_count(&out); j++) {
            int64_t oi[8], ii[8], qi[8];
            unravel(j, &od, oi);
            for (int32_t k = 0; k < q; k++) qi[k] = oi[a + k];
            int64_t v = vals[ravel(qi, &id)];
            for (int32_t k = 0; k < rank; k++)
                ii[k] = k < a ? oi[k] : k == a ? (v < 0 ? v + d.d[a] : v) : oi[k + q - 1];
            map[j] = ravel(ii, &d);
        }
        check_map(&out, &in[0], map, NULL, "gather", it);
        free(map);
        tu_tensor_free(&out);
        free_all(in, 2);
    }
}

static void test_gather_elements(void **state)
{
    tu_rng r = {1201};
    ir_tensor in[2] = {tu_tensor_f32(TU_DIMS(3, 3), (float[]){1, 2, 3, 4, 5, 6, 7, 8, 9}),
                       tu_tensor_i64(TU_DIMS(2, 3), (int64_t[]){-1, -2, 0, -2, 0, 0})},
              out;
    tu_run_op_ok("GatherElements", NULL, 0, in, 2, &out, 1);
    assert_dims(&out, 2, (int64_t[]){2, 3});
    assert_f32(&out, (float[]){7, 5, 3, 4, 2, 3}, 6);
    tu_tensor_free(&out);
    tu_tensor_free(&in[1]);
    in[1] = tu_tensor_i64(TU_DIMS(3, 2), (int64_t[]){0, 0, 1, 0, 2, 1});
    kiln_attr ax = KILN_ATTR_I("axis", 1);
    tu_run_op_ok("GatherElements", &ax, 1, in, 2, &out, 1);
    assert_f32(&out, (float[]){1, 1, 5, 4, 9, 8}, 6);
    tu_tensor_free(&out);
    tu_tensor_free(&in[1]);
    in[1] = tu_tensor_i64(TU_DIMS(1, 2), (int64_t[]){0, 3});
    run_err("GatherElements", &ax, 1, in, 2, 1, KILN_ERR_INVALID_ARGUMENT, "index 3");
    tu_tensor_free(&in[1]);
    in[1] = tu_tensor_i64(TU_DIMS(4, 1), NULL);
    run_err("GatherElements", &ax, 1, in, 2, 1, KILN_ERR_SHAPE, "no larger size outside axis 1");
    free_all(in, 2);
    for (int it = 0; it < 200; it++) {
        int32_t rank = (int32_t)tu_int(&r, 1, 4);
        kiln_dims d = rand_dims(&r, rank, 1, 4), id = d;
        int64_t axis = tu_int(&r, -rank, rank - 1), a = axis < 0 ? axis + rank : axis;
        for (int32_t k = 0; k < rank; k++)
            id.d[k] = k == a ? tu_int(&r, 0, 5) : tu_int(&r, 0, d.d[k]);
        ir_tensor idx =
            tu_tensor(tu_int(&r, 0, 1) ? KILN_DTYPE_I64 : KILN_DTYPE_I32, rank, id.d, NULL);
        int64_t ni = ir_tensor_count(&idx), *vals = malloc(sizeof(int64_t) * (size_t)(ni + 1));
        for (int64_t j = 0; j < ni; j++)
            ir_tensor_set(&idx, j, (double)(vals[j] = tu_int(&r, -d.d[a], d.d[a] - 1)));
        in[0] = rand_tensor(&r, rand_dtype(&r), &d);
        in[1] = idx;
        kiln_attr at = KILN_ATTR_I("axis", axis);
        tu_run_op_ok("GatherElements", &at, 1, in, 2, &out, 1);
        assert_dims(&out, id.rank, id.d);
        int64_t *map = alloc_map(&out);
        for (int64_t j = 0; j < ni; j++) {
            int64_t ii[8];
            unravel(j, &id, ii);
            ii[a] = vals[j] < 0 ? vals[j] + d.d[a] : vals[j];
            map[j] = ravel(ii, &d);
        }
        check_map(&out, &in[0], map, NULL, "gather_elements", it);
        free(map);
        free(vals);
        tu_tensor_free(&out);
        free_all(in, 2);
    }
}

static void test_gather_nd(void **state)
{
    tu_rng r = {1301};
    ir_tensor in[2] = {tu_tensor_f32(TU_DIMS(2, 2), (float[]){0, 1, 2, 3}),
                       tu_tensor_i64(TU_DIMS(2, 2), (int64_t[]){0, 0, 1, 1})},
              out;
    tu_run_op_ok("GatherND", NULL, 0, in, 2, &out, 1);
    assert_dims(&out, 1, (int64_t[]){2});
    assert_f32(&out, (float[]){0, 3}, 2);
    tu_tensor_free(&out);
    tu_tensor_free(&in[1]);
    in[1] = tu_tensor_i64(TU_DIMS(2, 1), (int64_t[]){1, -2});
    tu_run_op_ok("GatherND", NULL, 0, in, 2, &out, 1);
    assert_dims(&out, 2, (int64_t[]){2, 2});
    assert_f32(&out, (float[]){2, 3, 0, 1}, 4);
    tu_tensor_free(&out);
    tu_tensor_free(&in[1]);
    in[1] = tu_tensor_i64(TU_DIMS(1, 2), (int64_t[]){0, 2});
    run_err("GatherND", NULL, 0, in, 2, 1, KILN_ERR_INVALID_ARGUMENT, "index 2");
    tu_tensor_free(&in[1]);
    in[1] = tu_tensor_i64(TU_DIMS(1, 3), NULL);
    run_err("GatherND", NULL, 0, in, 2, 1, KILN_ERR_SHAPE, "indices end in 3");
    free_all(in, 2);
    in[0] = tu_tensor_f32(TU_DIMS(2, 2, 2), (float[]){0, 1, 2, 3, 4, 5, 6, 7});
    in[1] = tu_tensor_i64(TU_DIMS(2, 1), (int64_t[]){1, 0});
    kiln_attr bd = KILN_ATTR_I("batch_dims", 1);
    tu_run_op_ok("GatherND", &bd, 1, in, 2, &out, 1);
    assert_dims(&out, 2, (int64_t[]){2, 2});
    assert_f32(&out, (float[]){2, 3, 4, 5}, 4);
    tu_tensor_free(&out);
    free_all(in, 2);

    for (int it = 0; it < 200; it++) {
        int32_t rank = (int32_t)tu_int(&r, 1, 4), b = (int32_t)tu_int(&r, 0, rank - 1);
        int32_t k = (int32_t)tu_int(&r, 1, rank - b), q = b + (int32_t)tu_int(&r, 1, 2);
        kiln_dims d = rand_dims(&r, rank, 1, 3), id = rand_dims(&r, q, 0, 3), od;
        for (int32_t i = 0; i < b; i++) id.d[i] = d.d[i];
        id.d[q - 1] = k;
        memset(&od, 0, sizeof od);
        for (int32_t i = 0; i < q - 1; i++) od.d[od.rank++] = id.d[i];
        for (int32_t i = b + k; i < rank; i++) od.d[od.rank++] = d.d[i];
        ir_tensor idx =
            tu_tensor(tu_int(&r, 0, 1) ? KILN_DTYPE_I64 : KILN_DTYPE_I32, q, id.d, NULL);
        int64_t ni = ir_tensor_count(&idx), *vals = malloc(sizeof(int64_t) * (size_t)(ni + 1));
        for (int64_t j = 0; j < ni; j++) {
            int64_t dim = d.d[b + j % k];
            ir_tensor_set(&idx, j, (double)(vals[j] = tu_int(&r, -dim, dim - 1)));
        }
        in[0] = rand_tensor(&r, rand_dtype(&r), &d);
        in[1] = idx;
        kiln_attr at = KILN_ATTR_I("batch_dims", b);
        tu_run_op_ok("GatherND", &at, 1, in, 2, &out, 1);
        assert_dims(&out, od.rank, od.d);
        int64_t *map = alloc_map(&out);
        for (int64_t j = 0; j < ir_tensor_count(&out); j++) {
            int64_t oi[8], ii[8], ti[8];
            unravel(j, &od, oi);
            for (int32_t i = 0; i < q - 1; i++) ti[i] = oi[i];
            for (int32_t i = 0; i < b; i++) ii[i] = oi[i];
            for (int32_t i = 0; i < k; i++) {
                ti[q - 1] = i;
                int64_t v = vals[ravel(ti, &id)];
                ii[b + i] = v < 0 ? v + d.d[b + i] : v;
            }
            for (int32_t i = b + k; i < rank; i++) ii[i] = oi[q - 1 + i - b - k];
            map[j] = ravel(ii, &d);
        }
        check_map(&out, &in[0], map, NULL, "gather_nd", it);
        free(map);
        free(vals);
        tu_tensor_free(&out);
        free_all(in, 2);
    }
}

/* ---- Scatter family ---- */

static double ref_reduce(const char *red, double a, double b)
{
    if (!strcmp(red, "add")) return a + b;
    if (!strcmp(red, "mul")) return a * b;
    if (!strcmp(red, "max")) return a > b ? a : b;
    if (!strcmp(red, "min")) return a < b ? a : b;
    return b;
}

static void test_scatter_cases(void **state)
{
    ir_tensor in[3] = {tu_tensor_f32(TU_DIMS(8), (float[]){1, 2, 3, 4, 5, 6, 7, 8}),
                       tu_tensor_i64(TU_DIMS(4, 1), (int64_t[]){4, 3, 1, 7}),
                       tu_tensor_f32(TU_DIMS(4), (float[]){9, 10, 11, 12})},
              out;
    tu_run_op_ok("ScatterND", NULL, 0, in, 3, &out, 1);
    assert_f32(&out, (float[]){1, 11, 3, 10, 9, 6, 7, 12}, 8);
    tu_tensor_free(&out);
    free_all(in + 1, 2);
    in[1] = tu_tensor_i64(TU_DIMS(2, 1), (int64_t[]){4, -4});
    in[2] = tu_tensor_f32(TU_DIMS(2), (float[]){5, 6});
    kiln_attr red = KILN_ATTR_S("reduction", "add");
    tu_run_op_ok("ScatterND", &red, 1, in, 3, &out, 1);
    assert_f32(&out, (float[]){1, 2, 3, 4, 16, 6, 7, 8}, 8);
    tu_tensor_free(&out);
    red = KILN_ATTR_S("reduction", "mul");
    tu_run_op_ok("ScatterND", &red, 1, in, 3, &out, 1);
    assert_f32(&out, (float[]){1, 2, 3, 4, 150, 6, 7, 8}, 8);
    tu_tensor_free(&out);
    red = KILN_ATTR_S("reduction", "sum");
    run_err("ScatterND", &red, 1, in, 3, 1, KILN_ERR_INVALID_GRAPH, "reduction 'sum' is unknown");
    tu_tensor_free(&in[1]);
    in[1] = tu_tensor_i64(TU_DIMS(2, 1), (int64_t[]){4, 8});
    run_err("ScatterND", NULL, 0, in, 3, 1, KILN_ERR_INVALID_ARGUMENT, "index 8");
    tu_tensor_free(&in[2]);
    in[2] = tu_tensor_f32(TU_DIMS(3), NULL);
    run_err("ScatterND", NULL, 0, in, 3, 1, KILN_ERR_SHAPE, "updates are 3, expected 2");
    free_all(in, 3);

    in[0] = tu_tensor_f32(TU_DIMS(3, 3), NULL);
    in[1] = tu_tensor_i64(TU_DIMS(2, 3), (int64_t[]){1, 0, 2, 0, 2, 1});
    in[2] = tu_tensor_f32(TU_DIMS(2, 3), (float[]){1.0f, 1.1f, 1.2f, 2.0f, 2.1f, 2.2f});
    tu_run_op_ok("ScatterElements", NULL, 0, in, 3, &out, 1);
    assert_f32(&out, (float[]){2.0f, 1.1f, 0, 1.0f, 0, 2.2f, 0, 2.1f, 1.2f}, 9);
    tu_tensor_free(&out);
    free_all(in, 3);
    in[0] = tu_tensor_f32(TU_DIMS(1, 5), (float[]){1, 2, 3, 4, 5});
    in[1] = tu_tensor_i64(TU_DIMS(1, 2), (int64_t[]){1, -3});
    in[2] = tu_tensor_f32(TU_DIMS(1, 2), (float[]){1.1f, 2.1f});
    kiln_attr at[2] = {KILN_ATTR_I("axis", 1), KILN_ATTR_S("reduction", "none")};
    tu_run_op_ok("ScatterElements", at, 2, in, 3, &out, 1);
    assert_f32(&out, (float[]){1, 1.1f, 2.1f, 4, 5}, 5);
    tu_tensor_free(&out);
    tu_tensor_free(&in[1]);
    in[1] = tu_tensor_i64(TU_DIMS(1, 2), (int64_t[]){1, 1});
    at[1] = KILN_ATTR_S("reduction", "add");
    tu_run_op_ok("ScatterElements", at, 2, in, 3, &out, 1);
    assert_f32(&out, (float[]){1, 5.2f, 3, 4, 5}, 5);
    tu_tensor_free(&out);
    tu_tensor_free(&in[1]);
    in[1] = tu_tensor_i64(TU_DIMS(1, 2), (int64_t[]){1, 5});
    run_err("ScatterElements", at, 2, in, 3, 1, KILN_ERR_INVALID_ARGUMENT, "index 5");
    tu_tensor_free(&in[2]);
    in[2] = tu_tensor_f32(TU_DIMS(2, 1), NULL);
    run_err("ScatterElements", at, 2, in, 3, 1, KILN_ERR_SHAPE, "like the indices");
    free_all(in, 3);
}

static void test_scatter_sweep(void **state)
{
    tu_rng r = {1401};
    const char *reds[] = {"none", "add", "mul", "max", "min"};
    const kiln_dtype num[] = {KILN_DTYPE_F32, KILN_DTYPE_I64, KILN_DTYPE_I32};
    for (int it = 0; it < 300; it++) {
        const char *red = reds[it % 5];
        bool nd = (it / 5) % 2 == 0;
        kiln_dtype dt = red == reds[0] ? rand_dtype(&r) : num[tu_int(&r, 0, 2)];
        int32_t rank = (int32_t)tu_int(&r, 1, 4);
        kiln_dims d = rand_dims(&r, rank, 1, 4), id, ud;
        int32_t k = 0, axis = 0;
        if (nd) {
            k = (int32_t)tu_int(&r, 1, rank);
            id = rand_dims(&r, (int32_t)tu_int(&r, 1, 3), 0, 3);
            id.d[id.rank - 1] = k;
            memset(&ud, 0, sizeof ud);
            for (int32_t i = 0; i < id.rank - 1; i++) ud.d[ud.rank++] = id.d[i];
            for (int32_t i = k; i < rank; i++) ud.d[ud.rank++] = d.d[i];
        } else {
            axis = (int32_t)tu_int(&r, 0, rank - 1);
            id = d;
            for (int32_t i = 0; i < rank; i++)
                id.d[i] = i == axis ? tu_int(&r, 0, 5) : tu_int(&r, 0, d.d[i]);
            ud = id;
        }
        ir_tensor idx =
            tu_tensor(tu_int(&r, 0, 1) ? KILN_DTYPE_I64 : KILN_DTYPE_I32, id.rank, id.d, NULL);
        int64_t ni = ir_tensor_count(&idx), *vals = malloc(sizeof(int64_t) * (size_t)(ni + 1));
        for (int64_t j = 0; j < ni; j++) {
            int64_t dim = nd ? d.d[j % k] : d.d[axis];
            ir_tensor_set(&idx, j, (double)(vals[j] = tu_int(&r, -dim, dim - 1)));
        }
        ir_tensor in[3] = {rand_tensor(&r, dt, &d), idx, rand_tensor(&r, dt, &ud)}, out;
        if (red != reds[0])
            for (int i = 0; i < 3; i += 2)
                for (int64_t j = 0; j < ir_tensor_count(&in[i]); j++)
                    ir_tensor_set(&in[i], j, (double)tu_int(&r, -3, 3));
        kiln_attr at[2] = {KILN_ATTR_S("reduction", red),
                           KILN_ATTR_I("axis", axis - (tu_int(&r, 0, 1) ? rank : 0))};
        tu_run_op_ok(nd ? "ScatterND" : "ScatterElements", at, nd ? 1 : 2, in, 3, &out, 1);
        assert_dims(&out, d.rank, d.d);
        /* reference: apply each update in order, through an index map */
        ir_tensor want = tu_tensor(dt, d.rank, d.d, in[0].data);
        int64_t nu = ir_tensor_count(&in[2]);
        for (int64_t u = 0; u < nu; u++) {
            int64_t ui[8], di[8];
            unravel(u, &ud, ui);
            if (nd) {
                int64_t ti[8];
                for (int32_t i = 0; i < id.rank - 1; i++) ti[i] = ui[i];
                for (int32_t i = 0; i < k; i++) {
                    ti[id.rank - 1] = i;
                    int64_t v = vals[ravel(ti, &id)];
                    di[i] = v < 0 ? v + d.d[i] : v;
                }
                for (int32_t i = k; i < rank; i++) di[i] = ui[id.rank - 1 + i - k];
            } else {
                for (int32_t i = 0; i < rank; i++) di[i] = ui[i];
                di[axis] = vals[u] < 0 ? vals[u] + d.d[axis] : vals[u];
            }
            int64_t o = ravel(di, &d);
            size_t es = kiln_dtype_size(dt);
            if (red == reds[0])
                memcpy((char *)want.data + o * (int64_t)es, (char *)in[2].data + u * (int64_t)es,
                       es);
            else
                ir_tensor_set(&want, o,
                              ref_reduce(red, ir_tensor_get(&want, o), ir_tensor_get(&in[2], u)));
        }
        if (memcmp(out.data, want.data, (size_t)ir_tensor_count(&out) * kiln_dtype_size(dt)))
            fail_msg("%s %s case %d differs", nd ? "ScatterND" : "ScatterElements", red, it);
        free(vals);
        tu_tensor_free(&want);
        tu_tensor_free(&out);
        free_all(in, 3);
    }
}

/* ---- Resize ---- */

static double ref_coord(const char *ct, double x, double scale, int64_t in, int64_t out)
{
    if (!strcmp(ct, "asymmetric")) return x / scale;
    if (!strcmp(ct, "align_corners"))
        return out == 1 ? 0.0 : x * (double)(in - 1) / (double)(out - 1);
    if (!strcmp(ct, "pytorch_half_pixel")) return out == 1 ? 0.0 : (x + 0.5) / scale - 0.5;
    if (!strcmp(ct, "half_pixel_symmetric")) {
        double adj = (double)out / (scale * (double)in);
        return (double)in * 0.5 * (1.0 - adj) + (x + 0.5) / scale - 0.5;
    }
    return (x + 0.5) / scale - 0.5;
}

static int64_t ref_clamp(int64_t v, int64_t n) { return v < 0 ? 0 : v >= n ? n - 1 : v; }

/* One axis of a separable resize, in double: nearest picks a sample, linear blends the
 * two around x (edge samples repeat outside the input). */
static double *ref_resize_axis(const double *src, const kiln_dims *sd, int32_t k, int64_t ol,
                               double scale, bool linear, const char *ct, const char *nm)
{
    int64_t outer = 1, inner = 1, il = sd->d[k];
    for (int32_t i = 0; i < k; i++) outer *= sd->d[i];
    for (int32_t i = k + 1; i < sd->rank; i++) inner *= sd->d[i];
    double *dst = malloc(sizeof(double) * (size_t)(outer * ol * inner + 1));
    for (int64_t o = 0; o < outer; o++)
        for (int64_t x = 0; x < ol; x++) {
            double xo = ref_coord(ct, (double)x, scale, il, ol), v0, v1, w = 0;
            int64_t a, b;
            if (linear) {
                a = (int64_t)floor(xo);
                b = a + 1;
                w = xo - floor(xo);
            } else {
                double f = floor(xo), ratio = xo - f;
                if (ratio == 0.0)
                    a = (int64_t)f;
                else if (!strcmp(nm, "floor"))
                    a = (int64_t)f;
                else if (!strcmp(nm, "ceil"))
                    a = (int64_t)f + 1;
                else if (!strcmp(nm, "round_prefer_ceil"))
                    a = (int64_t)f + (ratio >= 0.5);
                else
                    a = (int64_t)f + (ratio > 0.5);
                b = a;
            }
            for (int64_t i = 0; i < inner; i++) {
                v0 = src[(o * il + ref_clamp(a, il)) * inner + i];
                v1 = src[(o * il + ref_clamp(b, il)) * inner + i];
                dst[(o * ol + x) * inner + i] = (1.0 - w) * v0 + w * v1;
            }
        }
    return dst;
}

static void test_resize_cases(void **state)
{
    float x[] = {1, 2, 3, 4};
    ir_tensor in[4] = {tu_tensor_f32(TU_DIMS(1, 1, 2, 2), x), tu_absent(),
                       tu_tensor_f32(TU_DIMS(4), (float[]){1, 1, 2, 3}), tu_absent()},
              out;
    tu_run_op_ok("Resize", NULL, 0, in, 3, &out, 1);
    assert_dims(&out, 4, (int64_t[]){1, 1, 4, 6});
    assert_f32(&out,
               (float[]){1, 1, 1, 2, 2, 2, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 3, 3, 3, 4, 4, 4},
               24);
    tu_tensor_free(&out);
    tu_tensor_free(&in[2]);
    in[2] = tu_tensor_f32(TU_DIMS(4), (float[]){1, 1, 2, 2});
    kiln_attr lin[2] = {KILN_ATTR_S("mode", "linear"),
                        KILN_ATTR_S("coordinate_transformation_mode", "align_corners")};
    tu_run_op_ok("Resize", lin, 1, in, 3, &out, 1);
    assert_f32(&out,
               (float[]){1, 1.25f, 1.75f, 2, 1.5f, 1.75f, 2.25f, 2.5f, 2.5f, 2.75f, 3.25f, 3.5f, 3,
                         3.25f, 3.75f, 4},
               16);
    tu_tensor_free(&out);
    tu_run_op_ok("Resize", lin, 2, in, 3, &out, 1);
    float t = 1.0f / 3.0f;
    assert_f32(&out,
               (float[]){1, 1 + t, 1 + 2 * t, 2, 1 + 2 * t, 2, 2 + t, 2 + 2 * t, 2 + t, 2 + 2 * t,
                         3, 3 + t, 3, 3 + t, 3 + 2 * t, 4},
               16);
    tu_tensor_free(&out);
    free_all(in, 4);
    /* downsampling: scales 0.6 on 2x4 */
    in[0] = tu_tensor_f32(TU_DIMS(1, 1, 2, 4), (float[]){1, 2, 3, 4, 5, 6, 7, 8});
    in[2] = tu_tensor_f32(TU_DIMS(4), (float[]){1, 1, 0.6f, 0.6f});
    tu_run_op_ok("Resize", lin, 1, in, 3, &out, 1);
    assert_dims(&out, 4, (int64_t[]){1, 1, 1, 2});
    assert_f32(&out, (float[]){2.6666665f, 4.3333331f}, 2);
    tu_tensor_free(&out);
    tu_run_op_ok("Resize", NULL, 0, in, 3, &out, 1);
    assert_f32(&out, (float[]){1, 3}, 2);
    tu_tensor_free(&out);
    /* sizes with axes, and keep_aspect_ratio_policy */
    tu_tensor_free(&in[2]);
    in[2] = tu_absent();
    in[3] = ints(2, (int64_t[]){1, 3});
    kiln_attr ax[2] = {KILN_ATTR_IS("axes", ((int64_t[]){-2, -1}), 2),
                       KILN_ATTR_S("keep_aspect_ratio_policy", "not_larger")};
    tu_run_op_ok("Resize", ax, 2, in, 4, &out, 1);
    assert_dims(&out, 4, (int64_t[]){1, 1, 1, 2}); /* scale min(1/2, 3/4) = 0.5 -> 1x2 */
    assert_f32(&out, (float[]){1, 3}, 2);
    tu_tensor_free(&out);
    ax[1] = KILN_ATTR_S("keep_aspect_ratio_policy", "not_smaller");
    tu_run_op_ok("Resize", ax, 2, in, 4, &out, 1);
    assert_dims(&out, 4, (int64_t[]){1, 1, 2, 3}); /* scale 0.75: round(1.5)=2, 3 */
    tu_tensor_free(&out);

    /* errors */
    kiln_attr bad = KILN_ATTR_S("mode", "bicubic");
    run_err("Resize", &bad, 1, in, 4, 1, KILN_ERR_INVALID_GRAPH, "mode 'bicubic' is unknown");
    kiln_attr crop_no_roi[2] = {
        ax[0], KILN_ATTR_S("coordinate_transformation_mode", "tf_crop_and_resize")};
    run_err("Resize", crop_no_roi, 2, in, 4, 1, KILN_ERR_INVALID_GRAPH, "needs input 'roi'");
    bad = KILN_ATTR_I("antialias", 2);
    run_err("Resize", &bad, 1, in, 4, 1, KILN_ERR_INVALID_GRAPH, "antialias is 2");
    bad = KILN_ATTR_S("nearest_mode", "round");
    run_err("Resize", &bad, 1, in, 4, 1, KILN_ERR_INVALID_GRAPH, "nearest_mode 'round'");
    run_err("Resize", NULL, 0, in, 4, 1, KILN_ERR_SHAPE, "sizes has 2 values, expected 4");
    expect_needs_constant("Resize", ax, 1, in, 4, 3, "sizes");
    in[2] = tu_tensor_f32(TU_DIMS(2), (float[]){2, 2});
    run_err("Resize", ax, 1, in, 4, 1, KILN_ERR_INVALID_GRAPH, "both scales and sizes");
    tu_tensor_free(&in[3]);
    in[3] = tu_absent();
    run_err("Resize", NULL, 0, in, 3, 1, KILN_ERR_SHAPE, "scales has 2 values, expected 4");
    tu_tensor_free(&in[2]);
    in[2] = tu_tensor_f32(TU_DIMS(4), (float[]){1, 1, -2, 1});
    run_err("Resize", NULL, 0, in, 3, 1, KILN_ERR_SHAPE, "scales[2] is -2");
    tu_tensor_free(&in[2]);
    in[2] = tu_tensor_f32(TU_DIMS(4), (float[]){1, 1, 1e30f, 1e30f});
    run_err("Resize", NULL, 0, in, 3, 1, KILN_ERR_SHAPE, "too large");
    tu_tensor_free(&in[2]);
    in[2] = tu_tensor_f32(TU_DIMS(0), NULL);
    run_err("Resize", NULL, 0, in, 3, 1, KILN_ERR_INVALID_GRAPH, "neither scales nor sizes");
    tu_tensor_free(&in[2]);
    in[2] = tu_tensor_f32(TU_DIMS(4), (float[]){1, 1, 2, 2});
    expect_needs_constant("Resize", NULL, 0, in, 3, 2, "scales");
    free_all(in, 4);
    in[0] = tu_tensor_i64(TU_DIMS(2, 2), NULL);
    in[2] = tu_tensor_f32(TU_DIMS(2), (float[]){2, 2});
    run_err("Resize", NULL, 0, in, 3, 1, KILN_ERR_UNSUPPORTED, "expected f32");
    free_all(in, 4);
}

/* Cubic (with cubic_coeff_a and exclude_outside), antialiased downscaling and
 * tf_crop_and_resize, against ONNX's node test outputs (test_resize_upsample_scales_cubic,
 * ..._cubic_A_n0p5_exclude_outside, ..._linear_antialias, ..._sizes_cubic_antialias,
 * test_resize_tf_crop_and_resize_extrapolation_value); these modes were refused. */
static void test_resize_cubic_antialias_crop(void **state)
{
    float x[16];
    for (int i = 0; i < 16; i++) x[i] = (float)(i + 1);
    ir_tensor in[4] = {tu_tensor_f32(TU_DIMS(1, 1, 4, 4), x), tu_absent(),
                       tu_tensor_f32(TU_DIMS(4), (float[]){1, 1, 2, 2}), tu_absent()},
              out;
    kiln_attr cubic[3] = {KILN_ATTR_S("mode", "cubic"), KILN_ATTR_F("cubic_coeff_a", -0.5f),
                          KILN_ATTR_I("exclude_outside", 1)};
    tu_run_op_ok("Resize", cubic, 1, in, 3, &out, 1);
    assert_dims(&out, 4, (int64_t[]){1, 1, 8, 8});
    float up[] = {0.47265625f, 0.76953125f, 1.24609375f, 1.875f, 2.28125f, 2.91015625f};
    for (int i = 0; i < 6; i++) assert_true(fabsf(((float *)out.data)[i] - up[i]) < 1e-5f);
    tu_tensor_free(&out);
    tu_tensor_free(&in[2]);
    in[2] = tu_tensor_f32(TU_DIMS(4), (float[]){1, 1, 0.8f, 0.8f});
    tu_run_op_ok("Resize", cubic, 3, in, 3, &out, 1);
    assert_dims(&out, 4, (int64_t[]){1, 1, 3, 3});
    float eo[] = {1.3681267f, 2.6695013f, 4.0133367f, 6.573625f, 7.875f,
                  9.218835f,  11.948966f, 13.250341f, 14.594176f};
    tu_assert_close(out.data, eo, 9, 1e-6);
    tu_tensor_free(&out);
    /* antialiased linear downscale by 0.6: a triangle stretched to 1 / 0.6 */
    tu_tensor_free(&in[2]);
    in[2] = tu_tensor_f32(TU_DIMS(4), (float[]){1, 1, 0.6f, 0.6f});
    kiln_attr aa[2] = {KILN_ATTR_S("mode", "linear"), KILN_ATTR_I("antialias", 1)};
    tu_run_op_ok("Resize", aa, 2, in, 3, &out, 1);
    tu_assert_close(out.data, ((float[]){2.875f, 4.5f, 9.375f, 11.0f}), 4, 1e-6);
    tu_tensor_free(&out);
    /* antialiased cubic to sizes 3x3 */
    tu_tensor_free(&in[2]);
    in[2] = tu_absent();
    in[3] = ints(4, (int64_t[]){1, 1, 3, 3});
    aa[0] = (kiln_attr)KILN_ATTR_S("mode", "cubic");
    tu_run_op_ok("Resize", aa, 2, in, 4, &out, 1);
    float ac[] = {1.7750092f, 3.1200073f, 4.4650054f,  7.1550016f, 8.5f,
                  9.844998f,  12.534994f, 13.8799925f, 15.224991f};
    tu_assert_close(out.data, ac, 9, 1e-6);
    tu_tensor_free(&out);
    /* tf_crop_and_resize: the roi in normalized coordinates, extrapolation outside it */
    in[1] = tu_tensor_f32(TU_DIMS(8), (float[]){0, 0, 0.4f, 0.6f, 1, 1, 1.2f, 1.7f});
    kiln_attr crop[3] = {KILN_ATTR_S("mode", "linear"),
                         KILN_ATTR_S("coordinate_transformation_mode", "tf_crop_and_resize"),
                         KILN_ATTR_F("extrapolation_value", 10.0f)};
    tu_run_op_ok("Resize", crop, 3, in, 4, &out, 1);
    tu_assert_close(out.data, ((float[]){7.6f, 10, 10, 12.4f, 10, 10, 10, 10, 10}), 9, 1e-6);
    tu_tensor_free(&out);
    /* too strong an antialiased downscale for the tap buffer */
    tu_tensor_free(&in[3]);
    in[3] = tu_absent();
    in[2] = tu_tensor_f32(TU_DIMS(4), (float[]){1, 1, 0.01f, 1});
    tu_tensor_free(&in[0]);
    in[0] = tu_tensor_f32(TU_DIMS(1, 1, 400, 1), NULL);
    run_err("Resize", aa, 2, in, 3, 1, KILN_ERR_UNSUPPORTED, "the most kiln supports");
    free_all(in, 4);
}

static void test_resize_sweep(void **state)
{
    tu_rng r = {1501};
    const char *cts[] = {"half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel",
                         "half_pixel_symmetric"};
    const char *nms[] = {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"};
    const char *kas[] = {"stretch", "not_larger", "not_smaller"};
    const float scales[] = {0.5f, 0.6f, 0.75f, 1.0f, 1.25f, 1.5f, 2.0f, 2.5f, 3.0f, 0.34f, 1.7f};
    for (int it = 0; it < 1200; it++) {
        bool linear = it % 2 == 1;
        const char *ct = cts[(it / 2) % 5], *nm = nms[tu_int(&r, 0, 3)];
        int32_t rank = (int32_t)tu_int(&r, 1, 5);
        kiln_dims d = rand_dims(&r, rank, 1, rank == 5 ? 3 : 6), od = d;
        bool give_axes = tu_int(&r, 0, 1) != 0, use_sizes = tu_int(&r, 0, 1) != 0;
        const char *ka = use_sizes && tu_int(&r, 0, 2) == 0 ? kas[tu_int(&r, 1, 2)] : kas[0];
        int64_t axes[8], na = give_axes ? tu_int(&r, 1, rank) : rank, sizes[8], perm[8];
        float sc[8];
        double scale[8];
        for (int32_t k = 0; k < rank; k++) {
            perm[k] = k;
            scale[k] = 1.0;
        }
        for (int32_t k = rank - 1; k > 0 && give_axes; k--) {
            int64_t j = tu_int(&r, 0, k), t = perm[k];
            perm[k] = perm[j];
            perm[j] = t;
        }
        double common = !strcmp(ka, "not_larger") ? 1e300 : 0.0;
        for (int64_t i = 0; i < na; i++) {
            int32_t k = (int32_t)perm[i];
            axes[i] = tu_int(&r, 0, 1) ? k : k - rank;
            if (use_sizes) {
                sizes[i] = tu_int(&r, 1, 9);
                od.d[k] = sizes[i];
                scale[k] = (double)sizes[i] / (double)d.d[k];
                if (!strcmp(ka, "not_larger") && scale[k] < common) common = scale[k];
                if (!strcmp(ka, "not_smaller") && scale[k] > common) common = scale[k];
            } else {
                sc[i] = scales[tu_int(&r, 0, 10)];
                scale[k] = sc[i];
                od.d[k] = (int64_t)floor((double)d.d[k] * (double)sc[i]);
            }
        }
        if (strcmp(ka, "stretch"))
            for (int64_t i = 0; i < na; i++) {
                int32_t k = (int32_t)perm[i];
                scale[k] = common;
                od.d[k] = (int64_t)(common * (double)d.d[k] + 0.5);
            }
        ir_tensor in[4] = {rand_f32(&r, &d), tu_absent(), tu_absent(), tu_absent()}, out;
        if (use_sizes)
            in[3] = ints((int32_t)na, sizes);
        else
            in[2] = tu_tensor_f32(1, (int64_t[]){na}, sc);
        if (tu_int(&r, 0, 3) == 0) in[1] = tu_tensor_f32(TU_DIMS(0), NULL); /* roi, ignored */
        kiln_attr at[5] = {
            KILN_ATTR_S("mode", linear ? "linear" : "nearest"),
            KILN_ATTR_S("coordinate_transformation_mode", ct), KILN_ATTR_S("nearest_mode", nm),
            KILN_ATTR_S("keep_aspect_ratio_policy", ka), KILN_ATTR_IS("axes", axes, (int32_t)na)};
        tu_run_op_ok("Resize", at, give_axes ? 5 : 4, in, use_sizes ? 4 : 3, &out, 1);
        assert_dims(&out, od.rank, od.d);
        /* reference: resize one axis at a time */
        int64_t n = ir_tensor_count(&in[0]);
        double *cur = malloc(sizeof(double) * (size_t)(n + 1));
        for (int64_t j = 0; j < n; j++) cur[j] = ((float *)in[0].data)[j];
        kiln_dims cd = d;
        for (int32_t k = 0; k < rank; k++) {
            if (od.d[k] == d.d[k] && scale[k] == 1.0) continue;
            double *next = ref_resize_axis(cur, &cd, k, od.d[k], scale[k], linear, ct, nm);
            free(cur);
            cur = next;
            cd.d[k] = od.d[k];
        }
        int64_t m = ir_tensor_count(&out);
        float *want = malloc(sizeof(float) * (size_t)(m + 1));
        for (int64_t j = 0; j < m; j++) want[j] = (float)cur[j];
        if (linear) {
            tu_assert_close(out.data, want, m, 1e-5);
        } else {
            for (int64_t j = 0; j < m; j++)
                if (((float *)out.data)[j] != want[j])
                    fail_msg("resize nearest %s %s case %d: element %lld is %g, expected %g", ct,
                             nm, it, (long long)j, (double)((float *)out.data)[j], (double)want[j]);
        }
        free(want);
        free(cur);
        tu_tensor_free(&out);
        free_all(in, 4);
    }
}

/* ---- ConstantOfShape, Range, EyeLike, Trilu, OneHot ---- */

static void test_generators(void **state)
{
    ir_tensor in[3] = {ints(2, (int64_t[]){2, 3})}, out;
    kiln_attr at[2] = {KILN_ATTR_F("value", 5.0f), KILN_ATTR_I("dtype", KILN_DTYPE_I32)};
    tu_run_op_ok("ConstantOfShape", at, 2, in, 1, &out, 1);
    assert_dims(&out, 2, (int64_t[]){2, 3});
    assert_int_equal(out.dtype, KILN_DTYPE_I32);
    for (int i = 0; i < 6; i++) assert_int_equal(((int32_t *)out.data)[i], 5);
    tu_tensor_free(&out);
    tu_run_op_ok("ConstantOfShape", NULL, 0, in, 1, &out, 1);
    assert_f32(&out, (float[]){0, 0, 0, 0, 0, 0}, 6);
    tu_tensor_free(&out);
    at[1] = KILN_ATTR_I("dtype", 99);
    run_err("ConstantOfShape", at, 2, in, 1, 1, KILN_ERR_UNSUPPORTED, "dtype 99");
    tu_tensor_free(&in[0]);
    in[0] = tu_tensor_i64(TU_DIMS(0), NULL);
    tu_run_op_ok("ConstantOfShape", at, 1, in, 1, &out, 1);
    assert_dims(&out, 0, NULL);
    assert_f32(&out, (float[]){5}, 1);
    tu_tensor_free(&out);
    tu_tensor_free(&in[0]);
    in[0] = ints(3, (int64_t[]){1 << 20, 1 << 20, 1 << 20});
    run_err("ConstantOfShape", NULL, 0, in, 1, 1, KILN_ERR_SHAPE, "more than");
    tu_tensor_free(&in[0]);

    /* Range */
    in[0] = scalar_i64(3);
    in[1] = scalar_i64(9);
    in[2] = scalar_i64(3);
    tu_run_op_ok("Range", NULL, 0, in, 3, &out, 1);
    assert_i64(&out, (int64_t[]){3, 6}, 2);
    tu_tensor_free(&out);
    free_all(in, 3);
    in[0] = scalar_i64(10);
    in[1] = scalar_i64(4);
    in[2] = scalar_i64(-2);
    tu_run_op_ok("Range", NULL, 0, in, 3, &out, 1);
    assert_i64(&out, (int64_t[]){10, 8, 6}, 3);
    tu_tensor_free(&out);
    free_all(in, 3);
    in[0] = scalar_i64(INT64_MIN);
    in[1] = scalar_i64(INT64_MAX);
    in[2] = scalar_i64(INT64_MAX);
    tu_run_op_ok("Range", NULL, 0, in, 3, &out, 1);
    assert_i64(&out, (int64_t[]){INT64_MIN, -1, INT64_MAX - 1}, 3);
    tu_tensor_free(&out);
    tu_tensor_free(&in[2]);
    in[2] = scalar_i64(1);
    run_err("Range", NULL, 0, in, 3, 1, KILN_ERR_SHAPE, "too long");
    tu_tensor_free(&in[2]);
    in[2] = scalar_i64(0);
    run_err("Range", NULL, 0, in, 3, 1, KILN_ERR_INVALID_GRAPH, "delta is 0");
    free_all(in, 3);
    in[0] = scalar_f32(1.0f);
    in[1] = scalar_f32(2.0f);
    in[2] = scalar_f32(0.3f);
    tu_run_op_ok("Range", NULL, 0, in, 3, &out, 1);
    assert_f32(&out, (float[]){1.0f, 1.3f, 1.6f, 1.9f}, 4);
    tu_tensor_free(&out);
    tu_tensor_free(&in[2]);
    in[2] = scalar_i64(1);
    run_err("Range", NULL, 0, in, 3, 1, KILN_ERR_INVALID_GRAPH, "input 'delta' is i64");
    free_all(in, 3);
    in[0] = tu_tensor(KILN_DTYPE_I32, 0, NULL, (int32_t[]){5});
    in[1] = tu_tensor(KILN_DTYPE_I32, 0, NULL, (int32_t[]){-2});
    in[2] = tu_tensor(KILN_DTYPE_I32, 0, NULL, (int32_t[]){-3});
    tu_run_op_ok("Range", NULL, 0, in, 3, &out, 1);
    assert_int_equal(out.dtype, KILN_DTYPE_I32);
    assert_dims(&out, 1, (int64_t[]){3});
    assert_true(((int32_t *)out.data)[0] == 5 && ((int32_t *)out.data)[2] == -1);
    tu_tensor_free(&out);
    expect_needs_constant("Range", NULL, 0, in, 3, 1, "limit");
    free_all(in, 3);
    /* f16 and bf16 (test_range_float16_type_positive_delta): the dtype is kept */
    for (int h = 0; h < 2; h++) {
        kiln_dtype dt = h ? KILN_DTYPE_BF16 : KILN_DTYPE_F16;
        uint16_t (*to)(float) = h ? kiln_f32_to_bf16 : kiln_f32_to_f16;
        float (*from)(uint16_t) = h ? kiln_bf16_to_f32 : kiln_f16_to_f32;
        uint16_t v[3] = {to(1.0f), to(5.0f), to(1.5f)};
        for (int i = 0; i < 3; i++) in[i] = tu_tensor(dt, 0, NULL, &v[i]);
        tu_run_op_ok("Range", NULL, 0, in, 3, &out, 1);
        assert_int_equal(out.dtype, dt);
        assert_dims(&out, 1, (int64_t[]){3});
        for (int i = 0; i < 3; i++)
            assert_true(from(((uint16_t *)out.data)[i]) == 1.0f + 1.5f * (float)i);
        tu_tensor_free(&out);
        free_all(in, 3);
    }

    /* EyeLike */
    in[0] = tu_tensor_f32(TU_DIMS(3, 4), NULL);
    at[0] = KILN_ATTR_I("k", 1);
    at[1] = KILN_ATTR_I("dtype", KILN_DTYPE_I64);
    tu_run_op_ok("EyeLike", at, 2, in, 1, &out, 1);
    assert_i64(&out, (int64_t[]){0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1}, 12);
    tu_tensor_free(&out);
    at[0] = KILN_ATTR_I("k", INT64_MIN);
    tu_run_op_ok("EyeLike", at, 1, in, 1, &out, 1);
    assert_f32(&out, (float[]){0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 12);
    tu_tensor_free(&out);
    tu_tensor_free(&in[0]);
    in[0] = tu_tensor_f32(TU_DIMS(3), NULL);
    run_err("EyeLike", NULL, 0, in, 1, 1, KILN_ERR_SHAPE, "expected 2-D");
    tu_tensor_free(&in[0]);
}

static void test_trilu_onehot(void **state)
{
    tu_rng r = {1601};
    ir_tensor in[3] = {tu_tensor_f32(TU_DIMS(3, 4),
                                     (float[]){1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}),
                       scalar_i64(-1)},
              out;
    tu_run_op_ok("Trilu", NULL, 0, in, 2, &out, 1);
    assert_f32(&out, (float[]){1, 2, 3, 4, 5, 6, 7, 8, 0, 10, 11, 12}, 12);
    tu_tensor_free(&out);
    kiln_attr lower = KILN_ATTR_I("upper", 0);
    tu_run_op_ok("Trilu", &lower, 1, in, 1, &out, 1);
    assert_f32(&out, (float[]){1, 0, 0, 0, 5, 6, 0, 0, 9, 10, 11, 0}, 12);
    tu_tensor_free(&out);
    tu_tensor_free(&in[1]);
    in[1] = ints(2, (int64_t[]){1, 2});
    run_err("Trilu", NULL, 0, in, 2, 1, KILN_ERR_SHAPE, "k has 2 elements");
    free_all(in, 2);
    for (int it = 0; it < 200; it++) {
        int32_t rank = (int32_t)tu_int(&r, 2, 4);
        kiln_dims d = rand_dims(&r, rank, 0, 5);
        int64_t k =
            tu_int(&r, 0, 9) == 0 ? (tu_int(&r, 0, 1) ? INT64_MAX : INT64_MIN) : tu_int(&r, -6, 6);
        bool upper = tu_int(&r, 0, 1) != 0;
        kiln_dtype dt = rand_dtype(&r);
        in[0] = rand_tensor(&r, dt, &d);
        in[1] = scalar_i64(k);
        kiln_attr at = KILN_ATTR_I("upper", upper);
        tu_run_op_ok("Trilu", &at, 1, in, 2, &out, 1);
        int64_t *map = alloc_map(&out);
        for (int64_t j = 0; j < ir_tensor_count(&out); j++) {
            int64_t idx[8];
            unravel(j, &d, idx);
            int64_t i = idx[rank - 2], c = idx[rank - 1];
            bool keep = upper ? (k == INT64_MIN || (k != INT64_MAX && c >= i + k))
                              : (k == INT64_MAX || (k != INT64_MIN && c <= i + k));
            map[j] = keep ? j : -1;
        }
        uint8_t zero[8] = {0};
        check_map(&out, &in[0], map, zero, "trilu", it);
        free(map);
        tu_tensor_free(&out);
        free_all(in, 2);
    }

    /* OneHot: indices [[1, 9], [2, 4]], depth 10, axis 1 */
    in[0] = tu_tensor_i64(TU_DIMS(2, 2), (int64_t[]){1, 9, 2, 4});
    in[1] = scalar_f32(10.0f);
    in[2] = tu_tensor_f32(TU_DIMS(2), (float[]){1, 3});
    kiln_attr ax = KILN_ATTR_I("axis", 1);
    tu_run_op_ok("OneHot", &ax, 1, in, 3, &out, 1);
    assert_dims(&out, 3, (int64_t[]){2, 10, 2});
    for (int64_t j = 0; j < 40; j++) {
        int64_t b = j / 20, h = (j / 2) % 10, p = j % 2, v = ((int64_t *)in[0].data)[b * 2 + p];
        assert_true(((float *)out.data)[j] == (h == v ? 3.0f : 1.0f));
    }
    tu_tensor_free(&out);
    tu_tensor_free(&in[1]);
    in[1] = scalar_i64(0);
    run_err("OneHot", &ax, 1, in, 3, 1, KILN_ERR_SHAPE, "depth is 0");
    tu_tensor_free(&in[1]);
    in[1] = scalar_i64(3);
    expect_needs_constant("OneHot", &ax, 1, in, 3, 1, "depth");
    free_all(in, 3);
    for (int it = 0; it < 200; it++) {
        int32_t rank = (int32_t)tu_int(&r, 0, 3);
        kiln_dims id = rand_dims(&r, rank, 0, 4), od;
        int64_t depth = tu_int(&r, 1, 5), axis = tu_int(&r, -rank - 1, rank),
                a = axis < 0 ? axis + rank + 1 : axis;
        bool fidx = tu_int(&r, 0, 1) != 0;
        in[0] = tu_tensor(fidx ? KILN_DTYPE_F32 : KILN_DTYPE_I64, rank, id.d, NULL);
        for (int64_t j = 0; j < ir_tensor_count(&in[0]); j++)
            ir_tensor_set(&in[0], j,
                          (double)tu_int(&r, -depth - 2, depth + 2) + (fidx ? 0.25 : 0.0));
        in[1] = scalar_i64(depth);
        kiln_dtype dt = rand_dtype(&r);
        kiln_dims two = {1, {2}};
        in[2] = rand_tensor(&r, dt, &two);
        kiln_attr at = KILN_ATTR_I("axis", axis);
        tu_run_op_ok("OneHot", &at, 1, in, 3, &out, 1);
        memset(&od, 0, sizeof od);
        for (int32_t k = 0; k <= rank; k++)
            od.d[od.rank++] = k == a ? depth : id.d[k < a ? k : k - 1];
        assert_dims(&out, od.rank, od.d);
        int64_t *map = alloc_map(&out);
        for (int64_t j = 0; j < ir_tensor_count(&out); j++) {
            int64_t oi[8], ii[8];
            unravel(j, &od, oi);
            for (int32_t k = 0; k < rank; k++) ii[k] = oi[k < a ? k : k + 1];
            int64_t v = (int64_t)trunc(ir_tensor_get(&in[0], ravel(ii, &id)));
            if (v < 0) v += depth;
            map[j] = v == oi[a] ? 1 : 0;
        }
        check_map(&out, &in[2], map, NULL, "onehot", it);
        free(map);
        tu_tensor_free(&out);
        free_all(in, 3);
    }
}

/* Dimensions that multiply past int64 reach shape inference from network inputs: every
 * op must refuse them with a message instead of overflowing. */
static void test_hostile_shapes(void **state)
{
    int64_t big = (int64_t)1 << 62;
    ir_tensor x = tu_absent(), out[2];
    x.dtype = KILN_DTYPE_F32;
    x.shape = kiln_dims_make(3, (int64_t[]){big, big, 0});
    struct {
        const char *op;
        kiln_attr at;
        int32_t nat, nin;
        ir_tensor extra;
    } cases[] = {
        {"Flatten", KILN_ATTR_I("axis", 2), 1, 1, tu_absent()},
        {"Size", KILN_ATTR_I("axis", 0), 0, 1, tu_absent()},
        {"Reshape", KILN_ATTR_I("allowzero", 0), 0, 2, ints(1, (int64_t[]){0})},
        {"Tile", KILN_ATTR_I("axis", 0), 0, 2, ints(3, (int64_t[]){2, 2, 2})},
        {"Pad", KILN_ATTR_I("axis", 0), 0, 2, ints(6, (int64_t[]){1, 1, 1, 1, 1, 1})},
        {"Split", KILN_ATTR_I("num_outputs", 2), 1, 1, tu_absent()},
        {"Concat", KILN_ATTR_I("axis", 0), 1, 2, tu_absent()},
        {"Unsqueeze", KILN_ATTR_I("axis", 0), 0, 2, ints(1, (int64_t[]){0})},
        {"Resize", KILN_ATTR_I("axis", 0), 0, 3, tu_absent()},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ir_tensor in[3] = {x, cases[i].extra, tu_absent()};
        if (!strcmp(cases[i].op, "Concat")) in[1] = x;
        if (!strcmp(cases[i].op, "Resize")) {
            in[0].shape = kiln_dims_make(2, (int64_t[]){big, 2});
            in[2] = tu_tensor_f32(TU_DIMS(2), (float[]){4, 4});
        }
        kiln_status st = infer_unknown(cases[i].op, &cases[i].at, cases[i].nat, in, cases[i].nin,
                                       strcmp(cases[i].op, "Concat") ? 1u : 3u, out,
                                       strcmp(cases[i].op, "Split") ? 1 : 2);
        if (st != KILN_ERR_SHAPE || !strstr(kiln_last_error(), "node 'node'"))
            fail_msg("%s: expected KILN_ERR_SHAPE, got %s: %s", cases[i].op, kiln_status_name(st),
                     kiln_last_error());
        tu_tensor_free(&cases[i].extra);
        if (!strcmp(cases[i].op, "Resize")) tu_tensor_free(&in[2]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flags),
        cmocka_unit_test(test_reshape_cases),
        cmocka_unit_test(test_reshape_sweep),
        cmocka_unit_test(test_flatten),
        cmocka_unit_test(test_squeeze_unsqueeze),
        cmocka_unit_test(test_shape_size),
        cmocka_unit_test(test_shape_reads_no_data),
        cmocka_unit_test(test_alias_in_place),
        cmocka_unit_test(test_concat),
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_slice_cases),
        cmocka_unit_test(test_slice_sweep),
        cmocka_unit_test(test_transpose),
        cmocka_unit_test(test_expand_tile),
        cmocka_unit_test(test_pad_cases),
        cmocka_unit_test(test_pad_sweep),
        cmocka_unit_test(test_gather),
        cmocka_unit_test(test_gather_elements),
        cmocka_unit_test(test_gather_nd),
        cmocka_unit_test(test_scatter_cases),
        cmocka_unit_test(test_scatter_sweep),
        cmocka_unit_test(test_resize_cases),
        cmocka_unit_test(test_resize_sweep),
        cmocka_unit_test(test_resize_cubic_antialias_crop),
        cmocka_unit_test(test_generators),
        cmocka_unit_test(test_trilu_onehot),
        cmocka_unit_test(test_hostile_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
