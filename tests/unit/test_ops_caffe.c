/* test_ops_caffe.c - the caffe op group (caffe.Crop, caffe.ArgMax, caffe.Normalize,
 * caffe.PriorBox, caffe.DetectionOutput): cases computed by hand, seeded random sweeps
 * against naive references written here another way, and the error paths. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* ---- helpers ---- */

#define SHAPE(...)                                                                                 \
    (&(kiln_dims){(int32_t)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), {__VA_ARGS__}})
#define N_OF(a) ((int32_t)(sizeof(a) / sizeof *(a)))

static ir_tensor f32_of(const kiln_dims *d, const float *v)
{
    return tu_tensor_f32(d->rank, d->d, v);
}

static void assert_shape(const ir_tensor *t, const kiln_dims *want)
{
    char a[KILN_DIMS_STR_MAX], b[KILN_DIMS_STR_MAX];
    if (!kiln_dims_equal(&t->shape, want))
        fail_msg("shape %s, expected %s", kiln_dims_str(&t->shape, a, sizeof a),
                 kiln_dims_str(want, b, sizeof b));
}

static void run_ok(const char *op, const kiln_attr *attrs, int32_t na, const ir_tensor *in,
                   int32_t n_in, ir_tensor *out)
{
    tu_run_op_ok(op, attrs, na, in, n_in, out, 1);
}

static void expect_error(const char *op, const kiln_attr *attrs, int32_t na, const ir_tensor *in,
                         int32_t n_in, kiln_status want, const char *msg)
{
    tu_expect_op_error(op, attrs, na, in, n_in, 1, want, msg);
}

static void free_all(ir_tensor *t, int32_t n)
{
    for (int32_t i = 0; i < n; i++) tu_tensor_free(&t[i]);
}

/* |got - want| <= tol x (1 + |want|) everywhere. */
static void assert_near(const float *got, const float *want, int64_t n, double tol)
{
    for (int64_t i = 0; i < n; i++)
        if (!(fabs((double)got[i] - (double)want[i]) <= tol * (1 + fabs((double)want[i]))))
            fail_msg("[%lld] got %.9g, want %.9g (tolerance %g)", (long long)i, (double)got[i],
                     (double)want[i], tol);
}

/* Makes every kiln allocation fail during run_net's evaluation. */
static bool g_fail_eval_alloc;

/* Builds the node with every input a network input (shape inference sees no values),
 * infers, and evaluates with `eval_in` (which may hold NULL data for shape-only ops). */
static kiln_status run_net(const char *op, const kiln_attr *attrs, int32_t na, const ir_tensor *in,
                           const ir_tensor *eval_in, int32_t n_in, ir_tensor *out)
{
    ir_graph g;
    ir_graph_init(&g);
    char names[4][16];
    const char *inames[4], *onames[1] = {"o0"};
    ir_tensor view[4];
    kiln_status st = KILN_OK;
    memset(out, 0, sizeof *out);
    for (int32_t i = 0; i < n_in; i++) {
        snprintf(names[i], sizeof names[i], "in%d", i);
        inames[i] = names[i];
        view[i] = in[i];
        view[i].data = NULL;
        st = ir_graph_add_input(&g, names[i], in[i].dtype, &in[i].shape);
        if (st) goto done;
    }
    int32_t nid;
    st = ir_graph_add_node(&g, op, "node", inames, n_in, onames, 1, attrs, na, &nid);
    if (st) goto done;
    const ir_node *node = &g.nodes[nid];
    ir_infer c = {.node = node, .n_in = n_in, .n_out = 1, .in = view, .out = out};
    st = node->op->infer(&c);
    if (st) goto done;
    int64_t cnt;
    assert_true(kiln_dims_numel(&out->shape, &cnt));
    out->data = calloc(1, (size_t)cnt * kiln_dtype_size(out->dtype) + 1);
    if (g_fail_eval_alloc) kiln_alloc_fail_after(0);
    st = node->op->eval(node, eval_in, n_in, out, 1);
    kiln_alloc_fail_after(-1);
done:
    ir_graph_free(&g);
    return st;
}

/* ---- caffe.Crop ---- */

static void test_crop_hand(void **state)
{
    float x[20];
    for (int i = 0; i < 20; i++) x[i] = (float)i; /* 4 x 5 image, row-major */
    ir_tensor in[2] = {f32_of(SHAPE(1, 1, 4, 5), x), tu_tensor_f32(TU_DIMS(1, 1, 2, 3), NULL)};
    ir_tensor out;
    /* defaults: axis 2, offset 0 */
    run_ok("caffe.Crop", NULL, 0, in, 2, &out);
    assert_shape(&out, SHAPE(1, 1, 2, 3));
    assert_near(out.data, (const float[]){0, 1, 2, 5, 6, 7}, 6, 0);
    tu_tensor_free(&out);
    /* one offset for both cropped dims */
    int64_t one[] = {1};
    kiln_attr a1 = KILN_ATTR_IS("offset", one, 1);
    run_ok("caffe.Crop", &a1, 1, in, 2, &out);
    assert_near(out.data, (const float[]){6, 7, 8, 11, 12, 13}, 6, 0);
    tu_tensor_free(&out);
    /* one offset per dim; a negative axis */
    int64_t two[] = {1, 2};
    kiln_attr a2[] = {KILN_ATTR_IS("offset", two, 2), KILN_ATTR_I("axis", -2)};
    run_ok("caffe.Crop", a2, 2, in, 2, &out);
    assert_near(out.data, (const float[]){7, 8, 9, 12, 13, 14}, 6, 0);
    tu_tensor_free(&out);
    /* axis 0 crops the batch too; dims before the axis are kept whatever the reference */
    tu_tensor_free(&in[1]);
    in[1] = tu_tensor_f32(TU_DIMS(3, 7, 2, 2), NULL);
    kiln_attr a3[] = {KILN_ATTR_I("axis", 3)};
    int64_t three[] = {3};
    kiln_attr a4[] = {KILN_ATTR_I("axis", 3), KILN_ATTR_IS("offset", three, 1)};
    run_ok("caffe.Crop", a3, 1, in, 2, &out);
    assert_shape(&out, SHAPE(1, 1, 4, 2));
    assert_near(out.data, (const float[]){0, 1, 5, 6, 10, 11, 15, 16}, 8, 0);
    tu_tensor_free(&out);
    run_ok("caffe.Crop", a4, 2, in, 2, &out);
    assert_near(out.data, (const float[]){3, 4, 8, 9, 13, 14, 18, 19}, 8, 0);
    tu_tensor_free(&out);
    free_all(in, 2);
}

static void test_crop_random(void **state)
{
    tu_rng r = {101};
    static const kiln_dtype types[] = {KILN_DTYPE_F32, KILN_DTYPE_I64, KILN_DTYPE_U8,
                                       KILN_DTYPE_F16};
    for (int iter = 0; iter < 300; iter++) {
        int32_t rank = (int32_t)tu_int(&r, 1, 5);
        int32_t ax = (int32_t)tu_int(&r, 0, rank - 1);
        int64_t xd[8], rd[8], off[8];
        int32_t mode = (int32_t)tu_int(&r, 0, 2); /* no offset, one value, one per dim */
        int64_t shared = tu_int(&r, 0, 2);
        for (int32_t d = 0; d < rank; d++) {
            xd[d] = tu_int(&r, 1, 6);
            rd[d] = tu_int(&r, 0, xd[d]);
            if (d < ax) {
                rd[d] = tu_int(&r, 1, 9); /* not read */
                off[d] = 0;
                continue;
            }
            if (mode == 1) {
                if (xd[d] < rd[d] + shared) xd[d] = rd[d] + shared;
                off[d] = shared;
            } else
                off[d] = mode == 0 ? 0 : tu_int(&r, 0, xd[d] - rd[d]);
        }
        kiln_dtype dt = types[tu_int(&r, 0, 3)];
        size_t es = kiln_dtype_size(dt);
        ir_tensor in[2] = {tu_tensor(dt, rank, xd, NULL),
                           tu_tensor(KILN_DTYPE_I64, rank, rd, NULL)};
        unsigned char *xb = in[0].data;
        for (int64_t i = 0; i < ir_tensor_count(&in[0]) * (int64_t)es; i++)
            xb[i] = (unsigned char)tu_next(&r);
        kiln_attr a[2];
        int32_t na = 0;
        int64_t axis_attr = tu_int(&r, 0, 1) ? ax : ax - rank;
        a[na++] = KILN_ATTR_I("axis", axis_attr);
        if (mode == 1) a[na++] = KILN_ATTR_IS("offset", &shared, 1);
        if (mode == 2) a[na++] = KILN_ATTR_IS("offset", off + ax, rank - ax);
        ir_tensor out;
        run_ok("caffe.Crop", a, na, in, 2, &out);
        int64_t od[8] = {0};
        for (int32_t d = 0; d < rank; d++) od[d] = d < ax ? xd[d] : rd[d];
        assert_shape(&out, &(kiln_dims){rank, {od[0], od[1], od[2], od[3], od[4]}});
        /* every output element from its multi-index */
        const unsigned char *yb = out.data;
        for (int64_t i = 0; i < ir_tensor_count(&out); i++) {
            int64_t rem = i, src = 0, mul = 1;
            for (int32_t d = rank - 1; d >= 0; d--) {
                int64_t id = rem % od[d];
                rem /= od[d];
                src += (id + off[d]) * mul;
                mul *= xd[d];
            }
            if (memcmp(yb + i * (int64_t)es, xb + src * (int64_t)es, es) != 0)
                fail_msg("iteration %d: element %lld differs", iter, (long long)i);
        }
        tu_tensor_free(&out);
        free_all(in, 2);
    }
}

static void test_crop_errors(void **state)
{
    ir_tensor in[2] = {tu_tensor_f32(TU_DIMS(1, 2, 4, 4), NULL),
                       tu_tensor_f32(TU_DIMS(1, 2, 3), NULL)};
    expect_error("caffe.Crop", NULL, 0, in, 2, KILN_ERR_SHAPE, "same rank");
    tu_tensor_free(&in[1]);
    in[1] = tu_tensor_f32(TU_DIMS(1, 2, 3, 3), NULL);
    kiln_attr axis[] = {KILN_ATTR_I("axis", 4)};
    expect_error("caffe.Crop", axis, 1, in, 2, KILN_ERR_INVALID_GRAPH, "axis 4 is out of range");
    int64_t three[] = {0, 0, 0};
    kiln_attr o3 = KILN_ATTR_IS("offset", three, 3);
    expect_error("caffe.Crop", &o3, 1, in, 2, KILN_ERR_INVALID_GRAPH,
                 "offset has 3 values, expected 1 or 2");
    int64_t neg[] = {-1};
    kiln_attr on = KILN_ATTR_IS("offset", neg, 1);
    expect_error("caffe.Crop", &on, 1, in, 2, KILN_ERR_INVALID_GRAPH, "expected >= 0");
    int64_t big[] = {0, 2};
    kiln_attr ob = KILN_ATTR_IS("offset", big, 2);
    expect_error("caffe.Crop", &ob, 1, in, 2, KILN_ERR_SHAPE, "dim 3: a crop of 3 at offset 2");
    tu_tensor_free(&in[1]);
    in[1] = tu_tensor_f32(TU_DIMS(1, 2, 5, 3), NULL);
    expect_error("caffe.Crop", NULL, 0, in, 2, KILN_ERR_SHAPE, "dim 2: a crop of 5");
    free_all(in, 2);
}

/* ---- caffe.ArgMax ---- */

static void test_argmax_hand(void **state)
{
    /* ties: Caffe puts the larger index first */
    float x[] = {1, 3, 3, 0, 2, 5, -1, 5, 5, 0};
    ir_tensor in = f32_of(SHAPE(2, 5), x), out;
    kiln_attr k2[] = {KILN_ATTR_I("top_k", 2), KILN_ATTR_I("out_max_val", 0)};
    run_ok("caffe.ArgMax", k2, 2, &in, 1, &out);
    assert_shape(&out, SHAPE(2, 1, 2));
    assert_near(out.data, (const float[]){2, 1, 3, 2}, 4, 0);
    tu_tensor_free(&out);
    k2[1] = KILN_ATTR_I("out_max_val", 1);
    run_ok("caffe.ArgMax", k2, 2, &in, 1, &out);
    assert_shape(&out, SHAPE(2, 2, 2));
    assert_near(out.data, (const float[]){2, 1, 3, 3, 3, 2, 5, 5}, 8, 0);
    tu_tensor_free(&out);
    /* defaults: top 1 over everything after the first dim, [N, 1, 1] */
    run_ok("caffe.ArgMax", NULL, 0, &in, 1, &out);
    assert_shape(&out, SHAPE(2, 1, 1));
    assert_near(out.data, (const float[]){2, 3}, 2, 0);
    tu_tensor_free(&out);
    tu_tensor_free(&in);

    /* a 4-D input without an axis: [N, 1, top_k, 1] */
    float y[] = {0, 9, 4, 9, 1, 2, 8, 7};
    in = f32_of(SHAPE(2, 2, 1, 2), y);
    run_ok("caffe.ArgMax", k2, 2, &in, 1, &out);
    assert_shape(&out, SHAPE(2, 2, 2, 1));
    assert_near(out.data, (const float[]){3, 1, 9, 9, 2, 3, 8, 7}, 8, 0);
    tu_tensor_free(&out);
    /* along the channel axis (segmentation): indices, or the values with out_max_val */
    kiln_attr ax[] = {KILN_ATTR_I("has_axis", 1), KILN_ATTR_I("axis", 1)};
    run_ok("caffe.ArgMax", ax, 2, &in, 1, &out);
    assert_shape(&out, SHAPE(2, 1, 1, 2));
    assert_near(out.data, (const float[]){1, 1, 1, 1}, 4, 0);
    tu_tensor_free(&out);
    kiln_attr axv[] = {KILN_ATTR_I("has_axis", 1), KILN_ATTR_I("axis", -1),
                       KILN_ATTR_I("out_max_val", 1)};
    run_ok("caffe.ArgMax", axv, 3, &in, 1, &out);
    assert_shape(&out, SHAPE(2, 2, 1, 1));
    assert_near(out.data, (const float[]){9, 9, 2, 8}, 4, 0);
    tu_tensor_free(&out);
    tu_tensor_free(&in);

    /* NaN ranks above every number; a rank-1 input has one value per instance */
    float z[] = {1, NAN, 7, -INFINITY};
    in = f32_of(SHAPE(1, 4), z);
    kiln_attr k3 = KILN_ATTR_I("top_k", 3);
    run_ok("caffe.ArgMax", &k3, 1, &in, 1, &out);
    assert_near(out.data, (const float[]){1, 2, 0}, 3, 0);
    tu_tensor_free(&out);
    tu_tensor_free(&in);
    in = f32_of(SHAPE(3), z);
    run_ok("caffe.ArgMax", NULL, 0, &in, 1, &out);
    assert_shape(&out, SHAPE(3, 1, 1));
    assert_near(out.data, (const float[]){0, 0, 0}, 3, 0);
    tu_tensor_free(&out);
    tu_tensor_free(&in);
}

/* The reference sorts each slice's (value, index) pairs with qsort. */
static int pair_desc(const void *pa, const void *pb)
{
    const double *a = pa, *b = pb; /* {value, index} */
    if (a[0] != b[0]) return a[0] > b[0] ? -1 : 1;
    return a[1] > b[1] ? -1 : 1;
}

static void test_argmax_random(void **state)
{
    tu_rng r = {202};
    double pairs[64][2];
    for (int iter = 0; iter < 300; iter++) {
        int32_t rank = (int32_t)tu_int(&r, 1, 4);
        int64_t d[4];
        for (int32_t i = 0; i < rank; i++) d[i] = tu_int(&r, 1, 4);
        ir_tensor in = tu_tensor_f32(rank, d, NULL);
        float *x = in.data;
        for (int64_t i = 0; i < ir_tensor_count(&in); i++)
            x[i] = (float)tu_int(&r, -3, 3); /* many ties */
        bool has_axis = tu_int(&r, 0, 1), omv = tu_int(&r, 0, 1);
        int32_t ax = (int32_t)tu_int(&r, 0, rank - 1);
        int64_t outer = 1, dim = 1, inner = 1;
        for (int32_t i = 0; i < rank; i++) {
            if (has_axis ? i < ax : i == 0)
                outer *= d[i];
            else if (!has_axis || i == ax)
                dim *= d[i];
            else
                inner *= d[i];
        }
        int64_t k = tu_int(&r, 1, dim);
        kiln_attr a[] = {KILN_ATTR_I("top_k", k), KILN_ATTR_I("out_max_val", omv),
                         KILN_ATTR_I("has_axis", has_axis), KILN_ATTR_I("axis", ax)};
        ir_tensor out;
        run_ok("caffe.ArgMax", a, 4, &in, 1, &out);
        const float *y = out.data;
        for (int64_t o = 0; o < outer; o++)
            for (int64_t i = 0; i < inner; i++) {
                for (int64_t t = 0; t < dim; t++) {
                    pairs[t][0] = x[(o * dim + t) * inner + i];
                    pairs[t][1] = (double)t;
                }
                qsort(pairs, (size_t)dim, sizeof pairs[0], pair_desc);
                for (int64_t j = 0; j < k; j++) {
                    double gi, gv = pairs[j][0];
                    if (has_axis) {
                        gi = y[(o * k + j) * inner + i];
                        if (omv ? gi != gv : gi != pairs[j][1])
                            fail_msg("iteration %d: slice %lld/%lld pick %lld is %g", iter,
                                     (long long)o, (long long)i, (long long)j, gi);
                    } else {
                        gi = y[(omv ? 2 : 1) * o * k + j];
                        if (gi != pairs[j][1] || (omv && y[2 * o * k + k + j] != gv))
                            fail_msg("iteration %d: instance %lld pick %lld is %g", iter,
                                     (long long)o, (long long)j, gi);
                    }
                }
            }
        tu_tensor_free(&out);
        tu_tensor_free(&in);
    }
}

static void test_argmax_errors(void **state)
{
    ir_tensor in = tu_tensor_f32(TU_DIMS(2, 3, 4), NULL);
    kiln_attr k0 = KILN_ATTR_I("top_k", 0);
    expect_error("caffe.ArgMax", &k0, 1, &in, 1, KILN_ERR_INVALID_GRAPH,
                 "top_k is 0, expected 1..12");
    kiln_attr big[] = {KILN_ATTR_I("top_k", 4), KILN_ATTR_I("has_axis", 1), KILN_ATTR_I("axis", 1)};
    expect_error("caffe.ArgMax", big, 3, &in, 1, KILN_ERR_INVALID_GRAPH,
                 "top_k is 4, expected 1..3");
    kiln_attr bad_axis[] = {KILN_ATTR_I("has_axis", 1), KILN_ATTR_I("axis", 3)};
    expect_error("caffe.ArgMax", bad_axis, 2, &in, 1, KILN_ERR_INVALID_GRAPH,
                 "axis 3 is out of range");
    kiln_attr flag = KILN_ATTR_I("out_max_val", 2);
    expect_error("caffe.ArgMax", &flag, 1, &in, 1, KILN_ERR_INVALID_GRAPH,
                 "out_max_val must be 0 or 1");
    tu_tensor_free(&in);
    in = tu_tensor_i64(TU_DIMS(2, 3), NULL);
    expect_error("caffe.ArgMax", NULL, 0, &in, 1, KILN_ERR_UNSUPPORTED, "expected f32");
    tu_tensor_free(&in);
    /* indices past 2^24 would not be exact in f32 (shape only: never evaluated) */
    in = tu_tensor_f32(TU_DIMS(0, 1 << 13, 1 << 12), NULL);
    expect_error("caffe.ArgMax", NULL, 0, &in, 1, KILN_ERR_UNSUPPORTED, "at most 16777216");
    tu_tensor_free(&in);
}

/* ---- caffe.Normalize ---- */

static void test_normalize_hand(void **state)
{
    /* c0 = [3, 0], c1 = [4, 5] at two positions */
    float x[] = {3, 0, 4, 5};
    float s2[] = {2, 10};
    ir_tensor in[2] = {f32_of(SHAPE(1, 2, 1, 2), x), f32_of(SHAPE(2), s2)}, out;
    kiln_attr a[] = {KILN_ATTR_I("across_spatial", 0), KILN_ATTR_I("channel_shared", 0)};
    /* per position: (3, 4) / 5 and (0, 5) / 5, then per-channel scale */
    run_ok("caffe.Normalize", a, 2, in, 2, &out);
    assert_shape(&out, SHAPE(1, 2, 1, 2));
    assert_near(out.data, (const float[]){1.2f, 0.0f, 8.0f, 10.0f}, 4, 1e-6);
    tu_tensor_free(&out);
    /* across the image: sqrt(9 + 16 + 25) */
    a[0] = KILN_ATTR_I("across_spatial", 1);
    run_ok("caffe.Normalize", a, 2, in, 2, &out);
    const double r50 = sqrt(50.0);
    assert_near(out.data,
                (const float[]){(float)(6 / r50), 0, (float)(40 / r50), (float)(50 / r50)}, 4,
                1e-6);
    tu_tensor_free(&out);
    /* defaults: across, one shared scale */
    tu_tensor_free(&in[1]);
    in[1] = f32_of(SHAPE(1), (const float[]){20});
    run_ok("caffe.Normalize", NULL, 0, in, 2, &out);
    assert_near(out.data,
                (const float[]){(float)(60 / r50), 0, (float)(80 / r50), (float)(100 / r50)}, 4,
                1e-5);
    tu_tensor_free(&out);
    free_all(in, 2);

    /* eps goes inside the root: x / sqrt(sum x^2 + eps) */
    float t[] = {3e-5f, 4e-5f};
    in[0] = f32_of(SHAPE(1, 2), t);
    in[1] = f32_of(SHAPE(1), (const float[]){1});
    kiln_attr e = KILN_ATTR_F("eps", 1e-9f);
    run_ok("caffe.Normalize", &e, 1, in, 2, &out);
    double nrm = sqrt(9e-10 + 16e-10 + (double)1e-9f);
    assert_near(out.data, (const float[]){(float)(3e-5 / nrm), (float)(4e-5 / nrm)}, 2, 1e-6);
    tu_tensor_free(&out);
    /* all zeros stay zeros (the default eps keeps the norm positive) */
    memset(in[0].data, 0, 2 * sizeof(float));
    run_ok("caffe.Normalize", NULL, 0, in, 2, &out);
    assert_near(out.data, (const float[]){0, 0}, 2, 0);
    tu_tensor_free(&out);
    free_all(in, 2);
}

/* OpenCV's NormalizeBBox way: |x|^2 into a buffer, sums, + eps, ^(-1/2), multiply. */
static void normalize_ref(const float *x, const float *scale, const int64_t *d, int32_t rank,
                          bool across, bool shared, float eps, float *y)
{
    int64_t sp = 1;
    for (int32_t i = 2; i < rank; i++) sp *= d[i];
    int64_t plane = d[1] * sp;
    double *buf = malloc(sizeof(double) * (size_t)plane),
           *inv = malloc(sizeof(double) * (size_t)sp);
    for (int64_t n = 0; n < d[0]; n++) {
        const float *xn = x + n * plane;
        for (int64_t i = 0; i < plane; i++) buf[i] = fabs((double)xn[i]) * fabs((double)xn[i]);
        if (across) {
            double s = 0;
            for (int64_t i = 0; i < plane; i++) s += buf[i];
            for (int64_t p = 0; p < sp; p++) inv[p] = pow(s + eps, -0.5);
        } else
            for (int64_t p = 0; p < sp; p++) {
                double s = 0;
                for (int64_t c = 0; c < d[1]; c++) s += buf[c * sp + p];
                inv[p] = pow(s + eps, -0.5);
            }
        for (int64_t c = 0; c < d[1]; c++)
            for (int64_t p = 0; p < sp; p++)
                y[n * plane + c * sp + p] =
                    (float)(xn[c * sp + p] * inv[p] * scale[shared ? 0 : c]);
    }
    free(buf);
    free(inv);
}

static void test_normalize_random(void **state)
{
    tu_rng r = {303};
    for (int iter = 0; iter < 200; iter++) {
        int32_t rank = (int32_t)tu_int(&r, 2, 4);
        int64_t d[4];
        for (int32_t i = 0; i < rank; i++) d[i] = tu_int(&r, 1, 5);
        bool across = tu_int(&r, 0, 1), shared = tu_int(&r, 0, 1);
        float eps = tu_int(&r, 0, 1) ? 1e-10f : tu_uniform(&r, 0.0f, 2.0f);
        ir_tensor in[2] = {tu_tensor_f32(rank, d, NULL),
                           tu_tensor_f32(1, (int64_t[]){shared ? 1 : d[1]}, NULL)};
        tu_fill(&r, in[0].data, ir_tensor_count(&in[0]), -3, 3);
        tu_fill(&r, in[1].data, ir_tensor_count(&in[1]), 0.5f, 20);
        kiln_attr a[] = {KILN_ATTR_I("across_spatial", across),
                         KILN_ATTR_I("channel_shared", shared), KILN_ATTR_F("eps", eps)};
        ir_tensor out;
        run_ok("caffe.Normalize", a, 3, in, 2, &out);
        float *want = malloc(sizeof(float) * (size_t)ir_tensor_count(&in[0]));
        normalize_ref(in[0].data, in[1].data, d, rank, across, shared, eps, want);
        tu_assert_close(out.data, want, ir_tensor_count(&in[0]), 1e-6);
        free(want);
        tu_tensor_free(&out);
        free_all(in, 2);
    }
}

static void test_normalize_errors(void **state)
{
    ir_tensor in[2] = {tu_tensor_f32(TU_DIMS(1, 3, 2, 2), NULL), tu_tensor_f32(TU_DIMS(2), NULL)};
    expect_error("caffe.Normalize", NULL, 0, in, 2, KILN_ERR_SHAPE,
                 "has 2 values, expected 1 (channel_shared=1)");
    kiln_attr cs = KILN_ATTR_I("channel_shared", 0);
    expect_error("caffe.Normalize", &cs, 1, in, 2, KILN_ERR_SHAPE,
                 "has 2 values, expected 3 (channel_shared=0)");
    kiln_attr as = KILN_ATTR_I("across_spatial", 2);
    expect_error("caffe.Normalize", &as, 1, in, 2, KILN_ERR_INVALID_GRAPH,
                 "across_spatial must be 0 or 1");
    tu_tensor_free(&in[0]);
    in[0] = tu_tensor_f32(TU_DIMS(6), NULL);
    expect_error("caffe.Normalize", NULL, 0, in, 2, KILN_ERR_SHAPE, "rank 2 or more");
    tu_tensor_free(&in[0]);
    in[0] = tu_tensor_i64(TU_DIMS(1, 2), NULL);
    expect_error("caffe.Normalize", NULL, 0, in, 2, KILN_ERR_UNSUPPORTED, "data has dtype i64");
    free_all(in, 2);
}

/* ---- caffe.PriorBox ---- */

static void test_prior_box_hand(void **state)
{
    /* A 2 x 2 feature map on a 100 x 100 image: step 50, cell centers 25 and 75.
     * min 30, max 60, aspect ratio 2 flipped: per cell the 30 x 30 box, the
     * sqrt(1800) = 42.4264 box, 42.4264 x 21.2132 and 21.2132 x 42.4264. */
    ir_tensor in[2] = {tu_tensor_f32(TU_DIMS(1, 8, 2, 2), NULL),
                       tu_tensor_f32(TU_DIMS(1, 3, 100, 100), NULL)};
    float mn[] = {30}, mx[] = {60}, ar[] = {2}, var[] = {0.1f, 0.1f, 0.2f, 0.2f};
    kiln_attr a[] = {KILN_ATTR_FS("min_size", mn, 1), KILN_ATTR_FS("max_size", mx, 1),
                     KILN_ATTR_FS("aspect_ratio", ar, 1), KILN_ATTR_FS("variance", var, 4)};
    ir_tensor out;
    run_ok("caffe.PriorBox", a, 4, in, 2, &out);
    assert_shape(&out, SHAPE(1, 2, 64));
    /* cell (0, 0), center (25, 25), as fractions of 100 */
    const float cell00[16] = {0.10f,      0.10f,      0.40f,      0.40f,       /* 30 x 30 */
                              0.0378680f, 0.0378680f, 0.4621320f, 0.4621320f,  /* 42.43 */
                              0.0378680f, 0.1439340f, 0.4621320f, 0.3560660f,  /* ratio 2 */
                              0.1439340f, 0.0378680f, 0.3560660f, 0.4621320f}; /* ratio 1/2 */
    const float *y = out.data;
    for (int cell = 0; cell < 4; cell++) {
        float dx = (cell % 2) * 0.5f, dy = (cell / 2) * 0.5f; /* row-major cells */
        float want[16];
        for (int i = 0; i < 16; i++) want[i] = cell00[i] + (i % 2 ? dy : dx);
        assert_near(y + 16 * cell, want, 16, 1e-6);
    }
    for (int i = 0; i < 64; i++) assert_true(y[64 + i] == var[i % 4]);
    tu_tensor_free(&out);

    /* clip; one variance for all; sizes truncated to int as Caffe (30.9 -> 30) */
    float mn2[] = {30.9f}, v1[] = {0.25f};
    kiln_attr b[] = {KILN_ATTR_FS("min_size", mn2, 1), KILN_ATTR_I("clip", 1),
                     KILN_ATTR_FS("variance", v1, 1),  KILN_ATTR_F("offset", 0.0f),
                     KILN_ATTR_I("img_size", 60),      KILN_ATTR_F("step", 40.0f)};
    run_ok("caffe.PriorBox", b, 6, in, 2, &out);
    assert_shape(&out, SHAPE(1, 2, 16));
    /* centers 0 and 40 on a 60-pixel image: [-15, 15] -> [0, 0.25], [25, 55] */
    const float w0[2] = {0.0f, 0.25f}, w1[2] = {25.0f / 60, 55.0f / 60};
    y = out.data;
    for (int cell = 0; cell < 4; cell++) {
        const float *wx = cell % 2 ? w1 : w0, *wy = cell / 2 ? w1 : w0;
        float want[4] = {wx[0], wy[0], wx[1], wy[1]};
        assert_near(y + 4 * cell, want, 4, 1e-6);
    }
    for (int i = 0; i < 16; i++) assert_true(y[16 + i] == 0.25f);
    tu_tensor_free(&out);

    /* several min sizes: for each, the min box, the max box, then the ratio boxes;
     * a repeated ratio and ratio 1 add nothing, without flip no inverse */
    float mn3[] = {10, 20}, mx3[] = {40, 80}, ar3[] = {1, 3, 3.0000001f};
    kiln_attr c[] = {KILN_ATTR_FS("min_size", mn3, 2), KILN_ATTR_FS("max_size", mx3, 2),
                     KILN_ATTR_FS("aspect_ratio", ar3, 3), KILN_ATTR_I("flip", 0)};
    tu_tensor_free(&in[0]);
    in[0] = tu_tensor_f32(TU_DIMS(1, 1, 1, 1), NULL);
    run_ok("caffe.PriorBox", c, 4, in, 2, &out);
    assert_shape(&out, SHAPE(1, 2, 24));
    const double s3 = sqrt(3.0);
    const double sides[6][2] = {{10, 10}, {20, 20}, {10 * s3, 10 / s3},
                                {20, 20}, {40, 40}, {20 * s3, 20 / s3}};
    float want[24];
    for (int i = 0; i < 6; i++) {
        want[4 * i + 0] = (float)((50 - sides[i][0] / 2) / 100);
        want[4 * i + 1] = (float)((50 - sides[i][1] / 2) / 100);
        want[4 * i + 2] = (float)((50 + sides[i][0] / 2) / 100);
        want[4 * i + 3] = (float)((50 + sides[i][1] / 2) / 100);
    }
    assert_near(out.data, want, 24, 1e-6);
    tu_tensor_free(&out);
    free_all(in, 2);
}

/* The reference lists box sizes first (OpenCV's way), then walks the cells. */
typedef struct prior_case {
    int64_t h, w, ih, iw;
    int32_t n_min, n_max, n_ar, n_var;
    float min[3], max[3], ar[4], var[4];
    int64_t flip, clip, img_h, img_w;
    float step_h, step_w, offset;
} prior_case;

static int64_t prior_ref(const prior_case *pc, float *y)
{
    double bw[64], bh[64];
    float ars[16];
    int32_t n_ars = 0, nb = 0;
    for (int32_t i = 0; i < pc->n_ar; i++) {
        bool dup = fabs(pc->ar[i] - 1.0) < 1e-6;
        for (int32_t j = 0; j < n_ars; j++) dup = dup || fabs(pc->ar[i] - ars[j]) < 1e-6;
        if (dup) continue;
        ars[n_ars++] = pc->ar[i];
        if (pc->flip) ars[n_ars++] = (float)(1.0 / pc->ar[i]);
    }
    for (int32_t s = 0; s < pc->n_min; s++) {
        double m = floor(pc->min[s]);
        bw[nb] = bh[nb] = m;
        nb++;
        if (pc->n_max) {
            bw[nb] = bh[nb] = sqrt(m * floor(pc->max[s]));
            nb++;
        }
        for (int32_t r = 0; r < n_ars; r++) {
            bw[nb] = m * sqrt(ars[r]);
            bh[nb] = m / sqrt(ars[r]);
            nb++;
        }
    }
    double ih = pc->img_h ? (double)pc->img_h : (double)pc->ih;
    double iw = pc->img_w ? (double)pc->img_w : (double)pc->iw;
    double sh = pc->step_h ? pc->step_h : ih / (double)pc->h;
    double sw = pc->step_w ? pc->step_w : iw / (double)pc->w;
    int64_t half = pc->h * pc->w * nb * 4, k = 0;
    for (int64_t i = 0; i < pc->h; i++)
        for (int64_t j = 0; j < pc->w; j++)
            for (int32_t b = 0; b < nb; b++) {
                double cx = (j + (double)pc->offset) * sw, cy = (i + (double)pc->offset) * sh;
                double v[4] = {(cx - bw[b] / 2) / iw, (cy - bh[b] / 2) / ih, (cx + bw[b] / 2) / iw,
                               (cy + bh[b] / 2) / ih};
                for (int t = 0; t < 4; t++, k++) {
                    y[k] = (float)(pc->clip ? fmin(fmax(v[t], 0.0), 1.0) : v[t]);
                    y[half + k] = pc->n_var == 0 ? 0.1f : pc->var[pc->n_var == 1 ? 0 : t];
                }
            }
    return half;
}

static void test_prior_box_random(void **state)
{
    tu_rng r = {404};
    float *want = malloc(sizeof(float) * 2 * 8 * 8 * 64 * 4);
    for (int iter = 0; iter < 300; iter++) {
        prior_case pc;
        memset(&pc, 0, sizeof pc);
        pc.h = tu_int(&r, 1, 8);
        pc.w = tu_int(&r, 1, 8);
        pc.ih = tu_int(&r, 16, 512);
        pc.iw = tu_int(&r, 16, 512);
        pc.n_min = (int32_t)tu_int(&r, 1, 3);
        pc.n_max = tu_int(&r, 0, 1) ? pc.n_min : 0;
        for (int32_t i = 0; i < pc.n_min; i++) {
            pc.min[i] = tu_int(&r, 0, 1) ? (float)tu_int(&r, 4, 200) : tu_uniform(&r, 1, 200);
            pc.max[i] = pc.min[i] + tu_uniform(&r, 1, 100);
        }
        pc.n_ar = (int32_t)tu_int(&r, 0, 4);
        static const float pool[] = {1.0f, 2.0f, 3.0f, 0.5f, 1.5f, 2.0f};
        for (int32_t i = 0; i < pc.n_ar; i++) pc.ar[i] = pool[tu_int(&r, 0, 5)];
        pc.flip = tu_int(&r, 0, 1);
        pc.clip = tu_int(&r, 0, 1);
        pc.n_var = (int32_t)(int64_t[]){0, 1, 4}[tu_int(&r, 0, 2)];
        for (int32_t i = 0; i < pc.n_var; i++) pc.var[i] = tu_uniform(&r, 0.05f, 0.5f);
        pc.offset = tu_int(&r, 0, 1) ? 0.5f : tu_uniform(&r, 0, 1);
        kiln_attr a[16];
        int32_t na = 0;
        a[na++] = KILN_ATTR_FS("min_size", pc.min, pc.n_min);
        if (pc.n_max) a[na++] = KILN_ATTR_FS("max_size", pc.max, pc.n_max);
        if (pc.n_ar) a[na++] = KILN_ATTR_FS("aspect_ratio", pc.ar, pc.n_ar);
        if (pc.n_var) a[na++] = KILN_ATTR_FS("variance", pc.var, pc.n_var);
        a[na++] = KILN_ATTR_I("flip", pc.flip);
        a[na++] = KILN_ATTR_I("clip", pc.clip);
        a[na++] = KILN_ATTR_F("offset", pc.offset);
        switch (tu_int(&r, 0, 2)) { /* image size from the input, one value, or two */
        case 1:
            pc.img_h = pc.img_w = tu_int(&r, 16, 512);
            a[na++] = KILN_ATTR_I("img_size", pc.img_h);
            break;
        case 2:
            pc.img_h = tu_int(&r, 16, 512);
            pc.img_w = tu_int(&r, 16, 512);
            a[na++] = KILN_ATTR_I("img_h", pc.img_h);
            a[na++] = KILN_ATTR_I("img_w", pc.img_w);
            break;
        }
        switch (tu_int(&r, 0, 2)) { /* step derived, one value, or two */
        case 1:
            pc.step_h = pc.step_w = tu_uniform(&r, 4, 64);
            a[na++] = KILN_ATTR_F("step", pc.step_h);
            break;
        case 2:
            pc.step_h = tu_uniform(&r, 4, 64);
            pc.step_w = tu_uniform(&r, 4, 64);
            a[na++] = KILN_ATTR_F("step_h", pc.step_h);
            a[na++] = KILN_ATTR_F("step_w", pc.step_w);
            break;
        }
        ir_tensor in[2] = {tu_tensor_f32(TU_DIMS(1, 2, pc.h, pc.w), NULL),
                           tu_tensor(KILN_DTYPE_U8, 4, (int64_t[]){1, 3, pc.ih, pc.iw}, NULL)};
        ir_tensor out;
        run_ok("caffe.PriorBox", a, na, in, 2, &out);
        int64_t half = prior_ref(&pc, want);
        assert_shape(&out, SHAPE(1, 2, half));
        assert_near(out.data, want, 2 * half, 2e-6);
        tu_tensor_free(&out);
        free_all(in, 2);
    }
    free(want);
}

/* Shape-only: evaluates with no input data, as the builder folds it. */
static void test_prior_box_shape_only(void **state)
{
    const ir_op *op = ir_op_find("caffe.PriorBox");
    assert_non_null(op);
    assert_true(op->flags & IR_OP_SHAPE_ONLY);
    ir_tensor in[2] = {tu_tensor_f32(TU_DIMS(1, 4, 3, 5), NULL),
                       tu_tensor_f32(TU_DIMS(1, 3, 30, 50), NULL)};
    ir_tensor bare[2] = {in[0], in[1]};
    bare[0].data = bare[1].data = NULL;
    float mn[] = {8};
    kiln_attr a = KILN_ATTR_FS("min_size", mn, 1);
    ir_tensor out, ref;
    assert_int_equal(run_net("caffe.PriorBox", &a, 1, in, bare, 2, &out), KILN_OK);
    run_ok("caffe.PriorBox", &a, 1, in, 2, &ref);
    assert_shape(&out, SHAPE(1, 2, 60));
    assert_memory_equal(out.data, ref.data, 120 * sizeof(float));
    tu_tensor_free(&out);
    tu_tensor_free(&ref);
    free_all(in, 2);
}

static void test_prior_box_errors(void **state)
{
    ir_tensor in[2] = {tu_tensor_f32(TU_DIMS(1, 4, 3, 3), NULL),
                       tu_tensor_f32(TU_DIMS(1, 3, 30, 30), NULL)};
    float mn[] = {10, 20}, mx[] = {5}, bad[] = {0}, v2[] = {0.1f, 0.2f};
    const char *op = "caffe.PriorBox";
    expect_error(op, NULL, 0, in, 2, KILN_ERR_INVALID_GRAPH, "expected at least one min_size");
    kiln_attr a[] = {KILN_ATTR_FS("min_size", mn, 2), KILN_ATTR_FS("max_size", mx, 1)};
    expect_error(op, a, 2, in, 2, KILN_ERR_INVALID_GRAPH, "one per min_size (2), got 1");
    a[0] = KILN_ATTR_FS("min_size", mn, 1);
    expect_error(op, a, 2, in, 2, KILN_ERR_INVALID_GRAPH, "max_size[0] is 5, expected above");
    a[0] = KILN_ATTR_FS("min_size", bad, 1);
    expect_error(op, a, 1, in, 2, KILN_ERR_INVALID_GRAPH, "min_size[0] is 0");
    a[0] = KILN_ATTR_FS("min_size", mn, 1);
    a[1] = KILN_ATTR_FS("aspect_ratio", bad, 1);
    expect_error(op, a, 2, in, 2, KILN_ERR_INVALID_GRAPH, "aspect_ratio[0] is 0");
    a[1] = KILN_ATTR_FS("variance", v2, 2);
    expect_error(op, a, 2, in, 2, KILN_ERR_INVALID_GRAPH, "expected 0, 1 or 4 variance values");
    kiln_attr both[] = {KILN_ATTR_FS("min_size", mn, 1), KILN_ATTR_I("img_size", 30),
                        KILN_ATTR_I("img_h", 30)};
    expect_error(op, both, 3, in, 2, KILN_ERR_INVALID_GRAPH, "img_size or img_h/img_w");
    both[1] = KILN_ATTR_I("img_w", 0);
    expect_error(op, both, 3, in, 2, KILN_ERR_INVALID_GRAPH, "expected both positive");
    kiln_attr steps[] = {KILN_ATTR_FS("min_size", mn, 1), KILN_ATTR_F("step", -2.0f)};
    expect_error(op, steps, 2, in, 2, KILN_ERR_INVALID_GRAPH, "step is -2 x -2");
    steps[1] = KILN_ATTR_F("step_h", 8.0f);
    expect_error(op, steps, 2, in, 2, KILN_ERR_INVALID_GRAPH, "step is 8 x 0");
    kiln_attr fl[] = {KILN_ATTR_FS("min_size", mn, 1), KILN_ATTR_I("flip", 3)};
    expect_error(op, fl, 2, in, 2, KILN_ERR_INVALID_GRAPH, "flip and clip must be 0 or 1");
    tu_tensor_free(&in[0]);
    in[0] = tu_tensor_f32(TU_DIMS(4, 3, 3), NULL);
    expect_error(op, a, 1, in, 2, KILN_ERR_SHAPE, "expected a 4-D feature map");
    tu_tensor_free(&in[0]);
    in[0] = tu_tensor_f32(TU_DIMS(1, 4, 0, 3), NULL);
    expect_error(op, a, 1, in, 2, KILN_ERR_SHAPE, "has no cells");
    tu_tensor_free(&in[0]);
    in[0] = tu_tensor_f32(TU_DIMS(1, 4, 3, 3), NULL);
    tu_tensor_free(&in[1]);
    in[1] = tu_tensor_f32(TU_DIMS(1, 3, 0, 30), NULL);
    expect_error(op, a, 1, in, 2, KILN_ERR_SHAPE, "image input is 0 x 30");
    free_all(in, 2);
}

/* ---- caffe.DetectionOutput ---- */

/* Priors (boxes then variances) as a [1, 2, 4P] tensor. */
static ir_tensor priors_of(const float *boxes, int64_t np, const float *var4)
{
    ir_tensor t = tu_tensor_f32(TU_DIMS(1, 2, 4 * np), NULL);
    float *p = t.data;
    memcpy(p, boxes, sizeof(float) * 4 * (size_t)np);
    for (int64_t i = 0; i < 4 * np; i++) p[4 * np + i] = var4[i % 4];
    return t;
}

static void test_detection_hand(void **state)
{
    /* Four priors; loc 0 with CORNER coding and variance in the target, so the boxes are
     * the priors. p1 overlaps p0 (and p3, its copy) with IoU 0.1225 / 0.1975 = 0.62. */
    const float boxes[] = {0.1f, 0.1f, 0.5f, 0.5f, 0.15f, 0.15f, 0.55f, 0.55f,
                           0.6f, 0.6f, 0.9f, 0.9f, 0.1f,  0.1f,  0.5f,  0.5f};
    /* per prior: background, class 1, class 2 */
    const float conf[] = {0.05f, 0.9f, 0.05f, 0.2f,  0.8f, 0.6f,
                          0.0f,  0.7f, 0.3f,  0.15f, 0.1f, 0.75f};
    const float ones[4] = {1, 1, 1, 1};
    ir_tensor in[3] = {tu_tensor_f32(TU_DIMS(1, 16), NULL), f32_of(SHAPE(1, 12), conf),
                       priors_of(boxes, 4, ones)};
    kiln_attr a[] = {
        KILN_ATTR_I("num_classes", 3),       KILN_ATTR_I("keep_top_k", 5),
        KILN_ATTR_F("nms_threshold", 0.45f), KILN_ATTR_F("confidence_threshold", 0.2f),
        KILN_ATTR_I("code_type", 1),         KILN_ATTR_I("variance_encoded_in_target", 1)};
    ir_tensor out;
    run_ok("caffe.DetectionOutput", a, 6, in, 3, &out);
    assert_shape(&out, SHAPE(1, 1, 5, 7));
    /* class 1: p0 (0.9) kept, p1 (0.8) suppressed by it, p2 (0.7) kept, p3 under the
     * threshold; class 2: p3 (0.75) kept, p1 (0.6) suppressed, p2 (0.3) kept. By score: */
    const float want[] = {0,    1,    0.9f, 0.1f, 0.1f, 0.5f, 0.5f, 0,    2,    0.75f, 0.1f, 0.1f,
                          0.5f, 0.5f, 0,    1,    0.7f, 0.6f, 0.6f, 0.9f, 0.9f, 0,     2,    0.3f,
                          0.6f, 0.6f, 0.9f, 0.9f, -1,   0,    0,    0,    0,    0,     0};
    assert_near(out.data, want, 35, 1e-7);
    tu_tensor_free(&out);
    /* keep_top_k 3 drops the weakest; two images share the priors, packed rows */
    a[1] = KILN_ATTR_I("keep_top_k", 3);
    ir_tensor two[3] = {tu_tensor_f32(TU_DIMS(2, 16), NULL), tu_tensor_f32(TU_DIMS(2, 12), NULL),
                        in[2]};
    memcpy(two[1].data, conf, sizeof conf);
    float *c2 = (float *)two[1].data + 12;
    for (int i = 0; i < 12; i++) c2[i] = 0.0f;
    c2[3 * 2 + 2] = 0.5f; /* image 1: only p2 of class 2 */
    run_ok("caffe.DetectionOutput", a, 6, two, 3, &out);
    assert_shape(&out, SHAPE(1, 1, 6, 7));
    const float want2[] = {0,    1,    0.9f, 0.1f, 0.1f, 0.5f, 0.5f, 0,    2,    0.75f, 0.1f,
                           0.1f, 0.5f, 0.5f, 0,    1,    0.7f, 0.6f, 0.6f, 0.9f, 0.9f,  1,
                           2,    0.5f, 0.6f, 0.6f, 0.9f, 0.9f, -1,   0,    0,    0,     0,
                           0,    0,    -1,   0,    0,    0,    0,    0,    0};
    assert_near(out.data, want2, 42, 1e-7);
    tu_tensor_free(&out);
    tu_tensor_free(&two[0]);
    tu_tensor_free(&two[1]);
    /* background -1 makes class 0 a class; top_k 1 keeps one candidate per class */
    kiln_attr b[] = {KILN_ATTR_I("num_classes", 3),
                     KILN_ATTR_I("keep_top_k", 4),
                     KILN_ATTR_I("background_label_id", -1),
                     KILN_ATTR_I("top_k", 1),
                     KILN_ATTR_I("code_type", 1),
                     KILN_ATTR_I("variance_encoded_in_target", 1)};
    run_ok("caffe.DetectionOutput", b, 6, in, 3, &out);
    const float want3[] = {0,     1,    0.9f, 0.1f, 0.1f, 0.5f, 0.5f, 0,     2,     0.75f,
                           0.1f,  0.1f, 0.5f, 0.5f, 0,    0,    0.2f, 0.15f, 0.15f, 0.55f,
                           0.55f, -1,   0,    0,    0,    0,    0,    0};
    assert_near(out.data, want3, 28, 1e-7);
    tu_tensor_free(&out);
    free_all(in, 3);
}

/* Adaptive NMS: eta < 1 lowers the threshold after each keep while it is above 0.5. */
static void test_detection_eta(void **state)
{
    /* p1 overlaps p0 with IoU 0.08 / 0.24 = 1/3; p2 is apart */
    const float boxes[] = {0, 0, 0.4f, 0.4f, 0.2f, 0, 0.6f, 0.4f, 0.1f, 0.6f, 0.5f, 1.0f};
    const float conf[] = {0.9f, 0.8f, 0.7f}; /* one class, no background */
    const float ones[4] = {1, 1, 1, 1};
    ir_tensor in[3] = {tu_tensor_f32(TU_DIMS(1, 12), NULL), f32_of(SHAPE(1, 3), conf),
                       priors_of(boxes, 3, ones)};
    kiln_attr a[] = {KILN_ATTR_I("num_classes", 1),
                     KILN_ATTR_I("keep_top_k", 3),
                     KILN_ATTR_I("background_label_id", -1),
                     KILN_ATTR_F("nms_threshold", 0.6f),
                     KILN_ATTR_I("variance_encoded_in_target", 1),
                     KILN_ATTR_F("eta", 1.0f)};
    ir_tensor out;
    run_ok("caffe.DetectionOutput", a, 6, in, 3, &out);
    const float *y = out.data;
    assert_true(y[2] == 0.9f && y[9] == 0.8f && y[16] == 0.7f); /* 1/3 <= 0.6: all kept */
    tu_tensor_free(&out);
    a[5] = KILN_ATTR_F("eta", 0.5f); /* 0.6 -> 0.3 after p0: p1 goes */
    run_ok("caffe.DetectionOutput", a, 6, in, 3, &out);
    y = out.data;
    assert_true(y[2] == 0.9f && y[9] == 0.7f && y[14] == -1.0f);
    tu_tensor_free(&out);
    free_all(in, 3);
}

/* The three box codings, one prior decoded by hand. */
static void test_detection_decode(void **state)
{
    const float box[] = {0.2f, 0.2f, 0.6f, 0.6f}, var[] = {0.1f, 0.1f, 0.2f, 0.2f};
    const float conf[] = {0.0f, 1.0f};
    struct {
        int64_t code;
        float loc[4], want[4];
    } cases[] = {
        /* center (0.4 + 0.1 * 1 * 0.4, 0.4 - 0.04), size (0.4 * exp(0.2 * 5 ln 2), 0.4) */
        {2, {1, -1, (float)(5 * log(2.0)), 0}, {0.04f, 0.16f, 0.84f, 0.56f}},
        /* corners moved by variance x loc x prior size */
        {3, {1, 1, -1, 0.5f}, {0.24f, 0.24f, 0.52f, 0.64f}},
        /* corners moved by variance x loc */
        {1, {1, -1, 0.5f, 2}, {0.3f, 0.1f, 0.7f, 1.0f}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        ir_tensor in[3] = {f32_of(SHAPE(1, 4), cases[k].loc), f32_of(SHAPE(1, 2), conf),
                           priors_of(box, 1, var)};
        kiln_attr a[] = {KILN_ATTR_I("num_classes", 2), KILN_ATTR_I("keep_top_k", 1),
                         KILN_ATTR_I("code_type", cases[k].code)};
        ir_tensor out;
        run_ok("caffe.DetectionOutput", a, 3, in, 3, &out);
        const float *y = out.data;
        assert_true(y[0] == 0 && y[1] == 1 && y[2] == 1.0f);
        assert_near(y + 3, cases[k].want, 4, 1e-6);
        tu_tensor_free(&out);
        free_all(in, 3);
    }
    /* without share_location each class has its own boxes; a 1-channel prior when the
     * variances are in the target */
    const float loc2[] = {9, 9, 9, 9, 0.1f, 0.2f, 0.3f, 0.4f}; /* background's boxes unused */
    ir_tensor in[3] = {f32_of(SHAPE(1, 8), loc2), f32_of(SHAPE(1, 2), conf),
                       f32_of(SHAPE(1, 1, 4), box)};
    kiln_attr a[] = {KILN_ATTR_I("num_classes", 2), KILN_ATTR_I("keep_top_k", 2),
                     KILN_ATTR_I("share_location", 0),
                     KILN_ATTR_I("variance_encoded_in_target", 1)};
    ir_tensor out;
    run_ok("caffe.DetectionOutput", a, 4, in, 3, &out);
    assert_near(out.data, (const float[]){0, 1, 1, 0.3f, 0.4f, 0.9f, 1.0f, -1, 0, 0, 0, 0, 0, 0},
                14, 1e-6);
    tu_tensor_free(&out);
    free_all(in, 3);
}

/* ---- DetectionOutput against a reference in double with its own sorts ---- */

typedef struct det_ref_hit {
    float score;
    int64_t label, prior;
} det_ref_hit;

static double area_ref(const double *b)
{
    return b[2] < b[0] || b[3] < b[1] ? 0.0 : (b[2] - b[0]) * (b[3] - b[1]);
}

static double iou_ref(const double *a, const double *b)
{
    double iw = fmin(a[2], b[2]) - fmax(a[0], b[0]), ih = fmin(a[3], b[3]) - fmax(a[1], b[1]);
    if (iw <= 0 || ih <= 0) return 0;
    return iw * ih / (area_ref(a) + area_ref(b) - iw * ih);
}

typedef struct det_case {
    int64_t num, np, nc, share, bg, code, vit, top_k, keep;
    float nms, eta, thr;
} det_case;

static void decode_ref(const det_case *dc, const float *p, const float *v, const float *l,
                       double *o)
{
    double vv[4];
    for (int k = 0; k < 4; k++) vv[k] = dc->vit ? 1.0 : v[k];
    double pw = (double)p[2] - p[0], ph = (double)p[3] - p[1];
    if (dc->code == 1)
        for (int k = 0; k < 4; k++) o[k] = p[k] + vv[k] * l[k];
    else if (dc->code == 3)
        for (int k = 0; k < 4; k++) o[k] = p[k] + vv[k] * l[k] * (k % 2 ? ph : pw);
    else {
        double cx = vv[0] * l[0] * pw + (p[0] + (double)p[2]) / 2;
        double cy = vv[1] * l[1] * ph + (p[1] + (double)p[3]) / 2;
        double w = exp(vv[2] * l[2]) * pw, h = exp(vv[3] * l[3]) * ph;
        o[0] = cx - w / 2;
        o[1] = cy - h / 2;
        o[2] = cx + w / 2;
        o[3] = cy + h / 2;
    }
}

/* Rows the op should give: per image, every class's NMS result appended by label, then
 * an insertion sort by score (stable), cut at keep. Returns the row count. */
static int64_t detection_ref(const det_case *dc, const float *loc, const float *conf,
                             const float *prior, float *rows)
{
    const int64_t nl = dc->share ? 1 : dc->nc;
    double *dec = malloc(sizeof(double) * 4 * (size_t)(dc->np * nl));
    det_ref_hit *all = malloc(sizeof *all * (size_t)(dc->np * dc->nc + 1));
    int64_t *cand = malloc(sizeof(int64_t) * (size_t)(dc->np + 1));
    int64_t n_rows = 0;
    for (int64_t i = 0; i < dc->num; i++) {
        for (int64_t p = 0; p < dc->np; p++)
            for (int64_t l = 0; l < nl; l++)
                decode_ref(dc, prior + 4 * p, prior + 4 * (dc->np + p),
                           loc + ((i * dc->np + p) * nl + l) * 4, dec + 4 * (l * dc->np + p));
        int64_t n_all = 0;
        for (int64_t c = 0; c < dc->nc; c++) {
            if (c == dc->bg) continue;
            const float *sc = conf + i * dc->np * dc->nc + c;
            int64_t m = 0;
            for (int64_t p = 0; p < dc->np; p++) {
                if (!(sc[p * dc->nc] > dc->thr)) continue;
                int64_t at = m++; /* insertion sort, stable: equal scores keep prior order */
                while (at > 0 && sc[cand[at - 1] * dc->nc] < sc[p * dc->nc]) {
                    cand[at] = cand[at - 1];
                    at--;
                }
                cand[at] = p;
            }
            if (dc->top_k >= 0 && m > dc->top_k) m = dc->top_k;
            const double *cb = dec + 4 * (dc->share ? 0 : c) * dc->np;
            float thr = dc->nms;
            int64_t first = n_all;
            for (int64_t j = 0; j < m; j++) {
                bool keep = true;
                for (int64_t k = first; k < n_all && keep; k++)
                    keep = iou_ref(cb + 4 * cand[j], cb + 4 * all[k].prior) <= thr;
                if (!keep) continue;
                all[n_all++] = (det_ref_hit){sc[cand[j] * dc->nc], c, cand[j]};
                if (dc->eta < 1 && thr > 0.5f) thr *= dc->eta;
            }
        }
        for (int64_t a = 1; a < n_all; a++) { /* stable insertion sort by score */
            det_ref_hit h = all[a];
            int64_t at = a;
            while (at > 0 && all[at - 1].score < h.score) {
                all[at] = all[at - 1];
                at--;
            }
            all[at] = h;
        }
        if (n_all > dc->keep) n_all = dc->keep;
        for (int64_t k = 0; k < n_all; k++, n_rows++) {
            float *row = rows + 7 * n_rows;
            const double *b = dec + 4 * ((dc->share ? 0 : all[k].label) * dc->np + all[k].prior);
            row[0] = (float)i;
            row[1] = (float)all[k].label;
            row[2] = all[k].score;
            for (int t = 0; t < 4; t++) row[3 + t] = (float)b[t];
        }
    }
    free(dec);
    free(all);
    free(cand);
    return n_rows;
}

static void test_detection_random(void **state)
{
    tu_rng r = {505};
    for (int iter = 0; iter < 400; iter++) {
        det_case dc = {0};
        dc.num = tu_int(&r, 1, 3);
        dc.np = tu_int(&r, 1, 40);
        dc.nc = tu_int(&r, 1, 5);
        dc.share = tu_int(&r, 0, 3) != 0;
        dc.bg = tu_int(&r, -1, dc.nc - 1);
        dc.code = tu_int(&r, 1, 3);
        dc.vit = tu_int(&r, 0, 3) == 0;
        dc.top_k = tu_int(&r, 0, 2) ? -1 : tu_int(&r, 0, dc.np);
        dc.keep = tu_int(&r, 1, dc.np * dc.nc + 2);
        dc.nms = tu_uniform(&r, 0.1f, 0.9f);
        dc.eta = tu_int(&r, 0, 1) ? 1.0f : tu_uniform(&r, 0.6f, 1.0f);
        bool has_thr = tu_int(&r, 0, 1);
        dc.thr = has_thr ? tu_uniform(&r, 0.0f, 0.6f) : -FLT_MAX;
        const int64_t nl = dc.share ? 1 : dc.nc;
        ir_tensor in[3] = {tu_tensor_f32(TU_DIMS(dc.num, dc.np * nl * 4), NULL),
                           tu_tensor_f32(TU_DIMS(dc.num, dc.np, dc.nc), NULL),
                           tu_tensor_f32(TU_DIMS(1, 2, dc.np * 4), NULL)};
        float *pr = in[2].data, *cf = in[1].data;
        for (int64_t p = 0; p < dc.np; p++) {
            float cx = tu_uniform(&r, 0, 1), cy = tu_uniform(&r, 0, 1);
            float w = tu_uniform(&r, 0.05f, 0.5f), h = tu_uniform(&r, 0.05f, 0.5f);
            float *b = pr + 4 * p, *v = pr + 4 * (dc.np + p);
            b[0] = cx - w / 2;
            b[1] = cy - h / 2;
            b[2] = cx + w / 2;
            b[3] = cy + h / 2;
            for (int k = 0; k < 4; k++) v[k] = tu_uniform(&r, 0.05f, 0.3f);
        }
        tu_fill(&r, in[0].data, ir_tensor_count(&in[0]), -1, 1);
        for (int64_t i = 0; i < ir_tensor_count(&in[1]); i++) /* some exact ties */
            cf[i] = tu_int(&r, 0, 2) ? tu_uniform(&r, 0, 1) : (float)tu_int(&r, 0, 4) / 4;
        kiln_attr a[12];
        int32_t na = 0;
        a[na++] = KILN_ATTR_I("num_classes", dc.nc);
        a[na++] = KILN_ATTR_I("share_location", dc.share);
        a[na++] = KILN_ATTR_I("background_label_id", dc.bg);
        a[na++] = KILN_ATTR_I("code_type", dc.code);
        a[na++] = KILN_ATTR_I("variance_encoded_in_target", dc.vit);
        a[na++] = KILN_ATTR_I("top_k", dc.top_k);
        a[na++] = KILN_ATTR_I("keep_top_k", dc.keep);
        a[na++] = KILN_ATTR_F("nms_threshold", dc.nms);
        a[na++] = KILN_ATTR_F("eta", dc.eta);
        if (has_thr) a[na++] = KILN_ATTR_F("confidence_threshold", dc.thr);
        ir_tensor out;
        run_ok("caffe.DetectionOutput", a, na, in, 3, &out);
        assert_shape(&out, SHAPE(1, 1, dc.num * dc.keep, 7));
        float *want = malloc(sizeof(float) * 7 * (size_t)(dc.num * dc.keep));
        int64_t valid = detection_ref(&dc, in[0].data, cf, pr, want);
        const float *y = out.data;
        for (int64_t k = 0; k < dc.num * dc.keep; k++) {
            const float *g = y + 7 * k, *w = want + 7 * k;
            if (k >= valid) {
                if (g[0] != -1 || g[1] != 0 || g[2] != 0 || g[3] != 0 || g[6] != 0)
                    fail_msg("iteration %d: row %lld should be padding", iter, (long long)k);
                continue;
            }
            if (g[0] != w[0] || g[1] != w[1] || g[2] != w[2])
                fail_msg("iteration %d: row %lld is [%g %g %g], want [%g %g %g]", iter,
                         (long long)k, g[0], g[1], g[2], w[0], w[1], w[2]);
            assert_near(g + 3, w + 3, 4, 1e-5);
        }
        free(want);
        tu_tensor_free(&out);
        free_all(in, 3);
    }
}

static void test_detection_errors(void **state)
{
    const char *op = "caffe.DetectionOutput";
    ir_tensor in[3] = {tu_tensor_f32(TU_DIMS(2, 12), NULL), tu_tensor_f32(TU_DIMS(2, 9), NULL),
                       tu_tensor_f32(TU_DIMS(1, 2, 12), NULL)};
    float *pr = in[2].data;
    for (int i = 0; i < 3; i++) { /* unit boxes */
        pr[4 * i + 2] = 1;
        pr[4 * i + 3] = 1;
    }
    kiln_attr a[] = {KILN_ATTR_I("num_classes", 3), KILN_ATTR_I("keep_top_k", 10),
                     KILN_ATTR_I("code_type", 2)};
    ir_tensor out;
    run_ok(op, a, 3, in, 3, &out);
    tu_tensor_free(&out);
    expect_error(op, a, 1, in, 3, KILN_ERR_UNSUPPORTED, "keep_top_k is -1, expected 1 or more");
    expect_error(op, a + 1, 1, in, 3, KILN_ERR_INVALID_GRAPH, "required attribute 'num_classes'");
    a[0] = KILN_ATTR_I("num_classes", 4);
    expect_error(op, a, 3, in, 3, KILN_ERR_SHAPE, "expected 3 priors x 1 x 4 and 3 priors x 4");
    a[0] = KILN_ATTR_I("num_classes", 3);
    kiln_attr bad[] = {KILN_ATTR_I("num_classes", 3), KILN_ATTR_I("keep_top_k", 10),
                       KILN_ATTR_I("code_type", 4)};
    expect_error(op, bad, 3, in, 3, KILN_ERR_UNSUPPORTED, "code_type is 4");
    bad[2] = KILN_ATTR_F("eta", 0.0f);
    expect_error(op, bad, 3, in, 3, KILN_ERR_INVALID_GRAPH, "eta is 0, expected in (0, 1]");
    bad[2] = KILN_ATTR_F("nms_threshold", -0.5f);
    expect_error(op, bad, 3, in, 3, KILN_ERR_INVALID_GRAPH, "nms_threshold is -0.5");
    bad[2] = KILN_ATTR_I("share_location", 0);
    expect_error(op, bad, 3, in, 3, KILN_ERR_SHAPE, "3 priors x 3 x 4");
    bad[2] = KILN_ATTR_I("num_classes", 0);
    bad[0] = KILN_ATTR_I("top_k", 5);
    expect_error(op, bad, 3, in, 3, KILN_ERR_INVALID_GRAPH, "num_classes is 0");
    /* a prior without area under CENTER_SIZE, known at build time */
    pr[2] = 0;
    expect_error(op, a, 3, in, 3, KILN_ERR_INVALID_GRAPH, "prior 0 is 0 x 1");
    pr[2] = 1;
    /* a 1-channel prior needs the variances in the target */
    tu_tensor_free(&in[2]);
    in[2] = tu_tensor_f32(TU_DIMS(1, 1, 12), NULL);
    expect_error(op, a, 3, in, 3, KILN_ERR_SHAPE, "expected [1, 2, priors x 4]");
    tu_tensor_free(&in[2]);
    in[2] = tu_tensor_f32(TU_DIMS(1, 2, 10), NULL);
    expect_error(op, a, 3, in, 3, KILN_ERR_SHAPE, "prior is 1x2x10");
    tu_tensor_free(&in[1]);
    in[1] = tu_tensor_f32(TU_DIMS(3, 9), NULL);
    tu_tensor_free(&in[2]);
    in[2] = tu_tensor_f32(TU_DIMS(1, 2, 12), NULL);
    expect_error(op, a, 3, in, 3, KILN_ERR_SHAPE, "must share their first dim");
    tu_tensor_free(&in[0]);
    in[0] = tu_tensor(KILN_DTYPE_I32, 2, (int64_t[]){3, 12}, NULL);
    expect_error(op, a, 3, in, 3, KILN_ERR_UNSUPPORTED, "loc has dtype i32");
    free_all(in, 3);
}

static void test_detection_alloc_failure(void **state)
{
    ir_tensor in[3] = {tu_tensor_f32(TU_DIMS(1, 8), NULL), tu_tensor_f32(TU_DIMS(1, 4), NULL),
                       tu_tensor_f32(TU_DIMS(1, 2, 8), NULL)};
    kiln_attr a[] = {KILN_ATTR_I("num_classes", 2), KILN_ATTR_I("keep_top_k", 2)};
    ir_tensor out;
    g_fail_eval_alloc = true;
    kiln_status st = run_net("caffe.DetectionOutput", a, 2, in, in, 3, &out);
    g_fail_eval_alloc = false;
    tu_tensor_free(&out);
    tu_check_op_error("caffe.DetectionOutput", st, KILN_ERR_OUT_OF_MEMORY, "no memory");
    assert_int_equal(run_net("caffe.DetectionOutput", a, 2, in, in, 3, &out), KILN_OK);
    tu_tensor_free(&out);
    free_all(in, 3);
}

/* ---- the table ---- */

static void test_table(void **state)
{
    const char *ops[] = {"caffe.Crop", "caffe.ArgMax", "caffe.Normalize", "caffe.PriorBox",
                         "caffe.DetectionOutput"};
    for (int32_t i = 0; i < N_OF(ops); i++) assert_non_null(ir_op_find(ops[i]));
    assert_int_equal(ir_ops_caffe_count, N_OF(ops));
    for (int32_t i = 0; i < ir_ops_caffe_count; i++)
        assert_true(strncmp(ir_ops_caffe[i].name, "caffe.", 6) == 0);
    const ir_op *a, *b;
    for (int32_t i = 0; (a = ir_op_at(i)) != NULL; i++)
        for (int32_t j = i + 1; (b = ir_op_at(j)) != NULL; j++)
            if (strcmp(a->name, b->name) == 0) fail_msg("op %s is defined twice", a->name);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crop_hand),
        cmocka_unit_test(test_crop_random),
        cmocka_unit_test(test_crop_errors),
        cmocka_unit_test(test_argmax_hand),
        cmocka_unit_test(test_argmax_random),
        cmocka_unit_test(test_argmax_errors),
        cmocka_unit_test(test_normalize_hand),
        cmocka_unit_test(test_normalize_random),
        cmocka_unit_test(test_normalize_errors),
        cmocka_unit_test(test_prior_box_hand),
        cmocka_unit_test(test_prior_box_random),
        cmocka_unit_test(test_prior_box_shape_only),
        cmocka_unit_test(test_prior_box_errors),
        cmocka_unit_test(test_detection_hand),
        cmocka_unit_test(test_detection_eta),
        cmocka_unit_test(test_detection_decode),
        cmocka_unit_test(test_detection_random),
        cmocka_unit_test(test_detection_errors),
        cmocka_unit_test(test_detection_alloc_failure),
        cmocka_unit_test(test_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
