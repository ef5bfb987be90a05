/* test_caffe.c - the Caffe importer on nets built here with protobuf-c (and, through the
 * file entry point, text prototxt): every mapped layer type through a build and a run
 * against values computed here from Caffe's definitions, in-place layers, V1 layers,
 * inputs and outputs, and bad input (weights that disagree with the layer, missing
 * blobs, unknown types, broken files, failing allocations). */
#define _XOPEN_SOURCE 700 /* mkdtemp */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "caffe.pb-c.h"
#include "parsers/caffe/caffe_import.h"
#include "testutil.h"

/* ---- building NetParameter messages (the builder owns every allocation) ---- */

#define MAX_ALLOCS 8192
#define MAX_LAYERS 64

typedef struct tb {
    void *allocs[MAX_ALLOCS];
    int n;
} tb;

static void *tb_new(tb *t, size_t size)
{
    assert_true(t->n < MAX_ALLOCS);
    void *p = calloc(1, size ? size : 1);
    assert_non_null(p);
    t->allocs[t->n++] = p;
    return p;
}

static void tb_free(tb *t)
{
    for (int i = 0; i < t->n; i++) free(t->allocs[i]);
    t->n = 0;
}

static char *tb_str(tb *t, const char *s)
{
    char *p = tb_new(t, strlen(s) + 1);
    memcpy(p, s, strlen(s) + 1);
    return p;
}

/* Splits "a b c" into a string array; returns the count. */
static size_t tb_words(tb *t, const char *s, char ***out)
{
    char **v = tb_new(t, sizeof(char *) * 16);
    size_t n = 0;
    char *copy = tb_str(t, s ? s : "");
    for (char *w = strtok(copy, " "); w; w = strtok(NULL, " ")) v[n++] = w;
    *out = v;
    return n;
}

static uint32_t *tb_u32(tb *t, size_t n, const uint32_t *v)
{
    uint32_t *p = tb_new(t, sizeof *p * n);
    memcpy(p, v, sizeof *p * n);
    return p;
}

static float *tb_f32(tb *t, size_t n, const float *v)
{
    float *p = tb_new(t, sizeof *p * n);
    memcpy(p, v, sizeof *p * n);
    return p;
}

#define U32S(t, obj, field, ...)                                                                   \
    do {                                                                                           \
        const uint32_t v_[] = {__VA_ARGS__};                                                       \
        (obj)->field = tb_u32(t, sizeof v_ / sizeof *v_, v_);                                      \
        (obj)->n_##field = sizeof v_ / sizeof *v_;                                                 \
    } while (0)

static Caffe__NetParameter *tb_net(tb *t)
{
    Caffe__NetParameter *n = tb_new(t, sizeof *n);
    caffe__net_parameter__init(n);
    n->layer = tb_new(t, sizeof(Caffe__LayerParameter *) * MAX_LAYERS);
    return n;
}

static Caffe__BlobShape *tb_shape(tb *t, int rank, const int64_t *d)
{
    Caffe__BlobShape *s = tb_new(t, sizeof *s);
    caffe__blob_shape__init(s);
    s->n_dim = (size_t)rank;
    s->dim = tb_new(t, sizeof(int64_t) * (size_t)(rank ? rank : 1));
    memcpy(s->dim, d, sizeof(int64_t) * (size_t)rank);
    return s;
}

/* input: NAME with input_shape DIMS */
static void tb_input(tb *t, Caffe__NetParameter *n, const char *name, int rank, const int64_t *d)
{
    if (!n->input) {
        n->input = tb_new(t, sizeof(char *) * 8);
        n->input_shape = tb_new(t, sizeof(Caffe__BlobShape *) * 8);
    }
    n->input[n->n_input++] = tb_str(t, name);
    n->input_shape[n->n_input_shape++] = tb_shape(t, rank, d);
}

static Caffe__LayerParameter *tb_layer(tb *t, Caffe__NetParameter *n, const char *type,
                                       const char *name, const char *bottoms, const char *tops)
{
    assert_true(n->n_layer < MAX_LAYERS);
    Caffe__LayerParameter *l = tb_new(t, sizeof *l);
    caffe__layer_parameter__init(l);
    l->type = tb_str(t, type);
    l->name = tb_str(t, name);
    l->n_bottom = tb_words(t, bottoms, &l->bottom);
    l->n_top = tb_words(t, tops, &l->top);
    l->blobs = tb_new(t, sizeof(Caffe__BlobProto *) * 8);
    n->layer[n->n_layer++] = l;
    return l;
}

/* The caffemodel's layer NAME (created on first use). */
static Caffe__LayerParameter *tb_weights(tb *t, Caffe__NetParameter *model, const char *name)
{
    for (size_t i = 0; i < model->n_layer; i++)
        if (strcmp(model->layer[i]->name, name) == 0) return model->layer[i];
    return tb_layer(t, model, "", name, "", "");
}

static Caffe__BlobProto *tb_blob(tb *t, Caffe__LayerParameter *l, size_t n, const float *v,
                                 int rank, const int64_t *d)
{
    Caffe__BlobProto *b = tb_new(t, sizeof *b);
    caffe__blob_proto__init(b);
    b->n_data = n;
    b->data = tb_f32(t, n ? n : 1, v);
    if (rank > 0) b->shape = tb_shape(t, rank, d);
    l->blobs[l->n_blobs++] = b;
    return b;
}

/* Adds weight blobs of the given shapes filled from `v` (consecutive). */
static void tb_blobs(tb *t, Caffe__NetParameter *model, const char *layer, const float *v,
                     int count, int rank, const int64_t *d)
{
    tb_blob(t, tb_weights(t, model, layer), (size_t)count, v, rank, d);
}

/* A new parameter message for layer field (l)->field, initialized. */
#define NEWP(t, l, field, init) init((l)->field = tb_new(t, sizeof *(l)->field))

/* ---- import, build, run ---- */

static kiln_status import(kiln_network **net, const Caffe__NetParameter *deploy,
                          const Caffe__NetParameter *model, const char *const *outputs, int n_out)
{
    assert_int_equal(kiln_network_create(net), KILN_OK);
    kiln_status st =
        caffe_import_nets(*net, deploy, model, "deploy.prototxt", "w.caffemodel", outputs, n_out);
    if (st) {
        assert_int_equal(kiln_network_num_layers(*net), 0); /* nothing half imported */
        kiln_network_destroy(*net);
        *net = NULL;
    }
    return st;
}

static kiln_network *import_ok(const Caffe__NetParameter *deploy, const Caffe__NetParameter *model)
{
    kiln_network *net = NULL;
    kiln_status st = import(&net, deploy, model, NULL, 0);
    if (st) print_error("import failed: %s\n", kiln_last_error());
    assert_int_equal(st, KILN_OK);
    return net;
}

typedef struct binding {
    const char *name;
    void *data;
} binding;

/* Builds and runs once with the given inputs and outputs (NULL-name terminated). */
static kiln_engine *run(const kiln_network *net, const binding *in, const binding *out)
{
    kiln_engine *e = NULL;
    kiln_context *c = NULL;
    kiln_status st = kiln_build(net, NULL, &e);
    if (st) print_error("build failed: %s\n", kiln_last_error());
    assert_int_equal(st, KILN_OK);
    assert_int_equal(kiln_context_create(e, &c), KILN_OK);
    for (const binding *b = in; b->name; b++) {
        st = kiln_context_set_tensor(c, b->name, b->data);
        if (st) print_error("%s\n", kiln_last_error());
        assert_int_equal(st, KILN_OK);
    }
    for (const binding *b = out; b->name; b++) {
        st = kiln_context_set_tensor(c, b->name, b->data);
        if (st) print_error("%s\n", kiln_last_error());
        assert_int_equal(st, KILN_OK);
    }
    st = kiln_context_run(c);
    if (st) print_error("run failed: %s\n", kiln_last_error());
    assert_int_equal(st, KILN_OK);
    kiln_context_destroy(c);
    return e;
}

static void run_free(const kiln_network *net, const binding *in, const binding *out)
{
    kiln_engine_destroy(run(net, in, out));
}

static void expect_shape(const kiln_engine *e, const char *name, int rank, const int64_t *d)
{
    kiln_dims s;
    kiln_dtype dt;
    assert_int_equal(kiln_engine_tensor_info(e, name, &dt, &s), KILN_OK);
    kiln_dims want = kiln_dims_make(rank, d);
    if (!kiln_dims_equal(&s, &want)) {
        char a[KILN_DIMS_STR_MAX], b[KILN_DIMS_STR_MAX];
        print_error("'%s' is %s, expected %s\n", name, kiln_dims_str(&s, a, sizeof a),
                    kiln_dims_str(&want, b, sizeof b));
    }
    assert_true(kiln_dims_equal(&s, &want));
}

static void expect_error(kiln_status got, kiln_status want, const char *frag1, const char *frag2)
{
    const char *m = kiln_last_error();
    if (got != want || !strstr(m, frag1) || (frag2 && !strstr(m, frag2)))
        print_error("got %s: %s\n", kiln_status_name(got), m);
    assert_int_equal(got, want);
    assert_non_null(strstr(m, frag1));
    if (frag2) assert_non_null(strstr(m, frag2));
}

/* ---- references written from Caffe's definitions ---- */

/* Convolution (NCHW, cross-correlation as Caffe computes it). */
static void ref_conv(const float *x, int c, int h, int w, const float *wt, const float *b, int o,
                     int kh, int kw, int ph, int pw, int sh, int sw, int dh, int dw, int group,
                     float *y, int *oh_out, int *ow_out)
{
    int oh = (h + 2 * ph - (dh * (kh - 1) + 1)) / sh + 1;
    int ow = (w + 2 * pw - (dw * (kw - 1) + 1)) / sw + 1;
    int cg = c / group, og = o / group;
    for (int oc = 0; oc < o; oc++)
        for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j++) {
                double s = b ? b[oc] : 0.0;
                int g = oc / og;
                for (int ic = 0; ic < cg; ic++)
                    for (int u = 0; u < kh; u++)
                        for (int v = 0; v < kw; v++) {
                            int yy = i * sh - ph + u * dh, xx = j * sw - pw + v * dw;
                            if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
                            s += (double)x[((g * cg + ic) * h + yy) * w + xx] *
                                 wt[((oc * cg + ic) * kh + u) * kw + v];
                        }
                y[(oc * oh + i) * ow + j] = (float)s;
            }
    *oh_out = oh;
    *ow_out = ow;
}

/* Caffe's PoolingLayer::Reshape and Forward_cpu for one plane. */
static int ref_pool(const float *x, int h, int w, int kh, int kw, int ph, int pw, int sh, int sw,
                    bool max, bool ceil_mode, float *y, int *ow_out)
{
    int oh, ow;
    if (ceil_mode) {
        oh = (int)ceil((double)(h + 2 * ph - kh) / sh) + 1;
        ow = (int)ceil((double)(w + 2 * pw - kw) / sw) + 1;
    } else {
        oh = (h + 2 * ph - kh) / sh + 1;
        ow = (w + 2 * pw - kw) / sw + 1;
    }
    if (ph || pw) {
        if ((oh - 1) * sh >= h + ph) --oh;
        if ((ow - 1) * sw >= w + pw) --ow;
    }
    for (int i = 0; i < oh; i++)
        for (int j = 0; j < ow; j++) {
            int hs = i * sh - ph, ws = j * sw - pw;
            int he = hs + kh < h + ph ? hs + kh : h + ph, we = ws + kw < w + pw ? ws + kw : w + pw;
            int size = (he - hs) * (we - ws);
            if (hs < 0) hs = 0;
            if (ws < 0) ws = 0;
            if (he > h) he = h;
            if (we > w) we = w;
            double acc = max ? -FLT_MAX : 0.0;
            for (int u = hs; u < he; u++)
                for (int v = ws; v < we; v++) {
                    double xv = x[u * w + v];
                    if (max)
                        acc = xv > acc ? xv : acc;
                    else
                        acc += xv;
                }
            y[i * ow + j] = (float)(max ? acc : acc / size);
        }
    *ow_out = ow;
    return oh;
}

/* ---- layers ---- */

static const int64_t D1x2x1x3[] = {1, 2, 1, 3};
static const float X6[] = {-2.0f, -0.5f, 0.0f, 0.5f, 1.0f, 3.0f};

static void test_activations(void **state)
{
    tb t = {0};
    Caffe__NetParameter *d = tb_net(&t), *m = tb_net(&t);
    tb_input(&t, d, "data", 4, D1x2x1x3);
    tb_layer(&t, d, "ReLU", "relu", "data", "r");
    Caffe__LayerParameter *l = tb_layer(&t, d, "ReLU", "leaky", "data", "lk");
    NEWP(&t, l, relu_param, caffe__re_luparameter__init);
    l->relu_param->has_negative_slope = 1, l->relu_param->negative_slope = 0.1f;
    tb_layer(&t, d, "PReLU", "prelu", "data", "pr");
    const float slopes[] = {0.25f, 0.5f}, shared = 0.3f;
    tb_blobs(&t, m, "prelu", slopes, 2, 1, (int64_t[]){2});
    l = tb_layer(&t, d, "PReLU", "prelu_s", "data", "prs");
    NEWP(&t, l, prelu_param, caffe__pre_luparameter__init);
    l->prelu_param->has_channel_shared = 1, l->prelu_param->channel_shared = 1;
    tb_blobs(&t, m, "prelu_s", &shared, 1, 1, (int64_t[]){1});
    l = tb_layer(&t, d, "ELU", "elu", "data", "el");
    NEWP(&t, l, elu_param, caffe__eluparameter__init);
    l->elu_param->has_alpha = 1, l->elu_param->alpha = 0.5f;
    tb_layer(&t, d, "Sigmoid", "sig", "data", "sg");
    tb_layer(&t, d, "TanH", "tanh", "data", "th");
    tb_layer(&t, d, "AbsVal", "abs", "data", "ab");
    tb_layer(&t, d, "BNLL", "bnll", "data", "bn");
    l = tb_layer(&t, d, "Power", "power", "data", "pw");
    NEWP(&t, l, power_param, caffe__power_parameter__init);
    l->power_param->power = 2.0f, l->power_param->scale = 0.5f, l->power_param->shift = 1.0f;
    l = tb_layer(&t, d, "Exp", "exp2", "data", "ex");
    NEWP(&t, l, exp_param, caffe__exp_parameter__init);
    l->exp_param->base_ = 2.0f, l->exp_param->scale = 0.5f, l->exp_param->shift = 1.0f;
    tb_layer(&t, d, "Exp", "expe", "data", "exe");
    l = tb_layer(&t, d, "Log", "log10", "data", "lg");
    NEWP(&t, l, log_param, caffe__log_parameter__init);
    l->log_param->base_ = 10.0f, l->log_param->scale = 2.0f, l->log_param->shift = 5.0f;
    l = tb_layer(&t, d, "Power", "plus1", "ab", "abs_plus");
    NEWP(&t, l, power_param, caffe__power_parameter__init);
    l->power_param->shift = 1.0f;
    tb_layer(&t, d, "Log", "loge", "abs_plus", "lge");
    tb_layer(&t, d, "Dropout", "drop", "data", "dp");
    l = tb_layer(&t, d, "Threshold", "thr", "data", "tr");
    NEWP(&t, l, threshold_param, caffe__threshold_parameter__init);
    l->threshold_param->threshold = 0.25f;

    kiln_network *net = import_ok(d, m);
    enum { N = 16 };
    static const char *outs[N] = {"r",  "lk", "pr", "prs", "el", "sg",  "th", "ab",
                                  "bn", "pw", "ex", "exe", "lg", "lge", "dp", "tr"};
    /* Outputs default to every top no layer reads: all but ab and abs_plus. */
    assert_int_equal(kiln_network_num_outputs(net), N - 1);
    float y[N][6];
    binding in[] = {{"data", (void *)X6}, {NULL, NULL}};
    binding out[N + 1];
    int k = 0;
    for (int i = 0; i < N; i++)
        if (strcmp(outs[i], "ab") != 0) out[k++] = (binding){outs[i], y[i]};
    out[k] = (binding){NULL, NULL};
    run_free(net, in, out);
    for (int i = 0; i < 6; i++) {
        double x = X6[i], ch_slope = i < 3 ? 0.25 : 0.5;
        double want[N] = {x > 0 ? x : 0,
                          x > 0 ? x : 0.1 * x,
                          x > 0 ? x : ch_slope * x,
                          x > 0 ? x : 0.3 * x,
                          x > 0 ? x : 0.5 * (exp(x) - 1),
                          1 / (1 + exp(-x)),
                          tanh(x),
                          fabs(x),
                          log1p(exp(x)),
                          pow(1 + 0.5 * x, 2),
                          pow(2, 1 + 0.5 * x),
                          exp(x),
                          log10(5 + 2 * x),
                          log(fabs(x) + 1),
                          x,
                          x > 0.25 ? 1 : 0};
        for (int o = 0; o < N; o++) {
            if (o == 7) continue; /* ab is not an output */
            if (fabs(y[o][i] - want[o]) > 1e-5 * (1 + fabs(want[o])))
                print_error("%s[%d] = %g, expected %g\n", outs[o], i, y[o][i], want[o]);
            assert_true(fabs(y[o][i] - want[o]) <= 1e-5 * (1 + fabs(want[o])));
        }
    }
    kiln_network_destroy(net);
    tb_free(&t);
}

static void test_convolution(void **state)
{
    tb t = {0};
    Caffe__NetParameter *d = tb_net(&t), *m = tb_net(&t);
    const int64_t xd[] = {1, 4, 5, 6};
    tb_input(&t, d, "data", 4, xd);
    tu_rng r = {11};
    float x[120], w1[4 * 2 * 3 * 2], b1[4], w2[3 * 4 * 3 * 3], w3[2 * 2 * 2 * 2];
    tu_fill(&r, x, 120, -1, 1);
    tu_fill(&r, w1, 48, -1, 1);
    tu_fill(&r, b1, 4, -1, 1);
    tu_fill(&r, w2, 108, -1, 1);
    tu_fill(&r, w3, 16, -1, 1);
    /* conv1: group 2, kernel_h/_w 3x2, pad_h/_w 1x0, stride 2, bias */
    Caffe__LayerParameter *l = tb_layer(&t, d, "Convolution", "conv1", "data", "c1");
    NEWP(&t, l, convolution_param, caffe__convolution_parameter__init);
    Caffe__ConvolutionParameter *cp = l->convolution_param;
    cp->has_num_output = 1, cp->num_output = 4, cp->has_group = 1, cp->group = 2;
    cp->has_kernel_h = cp->has_kernel_w = 1, cp->kernel_h = 3, cp->kernel_w = 2;
    cp->has_pad_h = cp->has_pad_w = 1, cp->pad_h = 1, cp->pad_w = 0;
    U32S(&t, cp, stride, 2);
    tb_blobs(&t, m, "conv1", w1, 48, 4, (int64_t[]){4, 2, 3, 2});
    tb_blobs(&t, m, "conv1", b1, 4, 1, (int64_t[]){4});
    /* conv2: repeated kernel/pad/dilation per dim, no bias */
    l = tb_layer(&t, d, "Convolution", "conv2", "data", "c2");
    NEWP(&t, l, convolution_param, caffe__convolution_parameter__init);
    cp = l->convolution_param;
    cp->has_num_output = 1, cp->num_output = 3, cp->has_bias_term = 1, cp->bias_term = 0;
    U32S(&t, cp, kernel_size, 3, 3);
    U32S(&t, cp, pad, 2, 1);
    U32S(&t, cp, dilation, 2, 1);
    tb_blobs(&t, m, "conv2", w2, 108, 4, (int64_t[]){3, 4, 3, 3});
    /* deconv: 1 channel of 2x2 upsampled by a 2x2 kernel with stride 2 */
    const int64_t dd[] = {1, 2, 2, 2};
    tb_input(&t, d, "small", 4, dd);
    l = tb_layer(&t, d, "Deconvolution", "deconv", "small", "dc");
    NEWP(&t, l, convolution_param, caffe__convolution_parameter__init);
    cp = l->convolution_param;
    cp->has_num_output = 1, cp->num_output = 2, cp->has_bias_term = 1, cp->bias_term = 0;
    U32S(&t, cp, kernel_size, 2);
    U32S(&t, cp, stride, 2);
    tb_blobs(&t, m, "deconv", w3, 16, 4, (int64_t[]){2, 2, 2, 2});

    kiln_network *net = import_ok(d, m);
    float small[8] = {1, 2, 3, 4, -1, 0.5f, 2, -2}, y1[4 * 3 * 3], y2[3 * 5 * 6], y3[2 * 4 * 4];
    binding in[] = {{"data", x}, {"small", small}, {NULL, NULL}};
    binding out[] = {{"c1", y1}, {"c2", y2}, {"dc", y3}, {NULL, NULL}};
    kiln_engine *e = run(net, in, out);
    expect_shape(e, "c1", 4, (int64_t[]){1, 4, 3, 3});
    expect_shape(e, "c2", 4, (int64_t[]){1, 3, 5, 6});
    expect_shape(e, "dc", 4, (int64_t[]){1, 2, 4, 4});
    kiln_engine_destroy(e);
    float want[120];
    int oh, ow;
    ref_conv(x, 4, 5, 6, w1, b1, 4, 3, 2, 1, 0, 2, 2, 1, 1, 2, want, &oh, &ow);
    assert_int_equal(oh * ow, 9);
    tu_assert_close(y1, want, 36, 1e-5);
    ref_conv(x, 4, 5, 6, w2, NULL, 3, 3, 3, 2, 1, 1, 1, 2, 1, 1, want, &oh, &ow);
    assert_int_equal(oh * ow, 30);
    tu_assert_close(y2, want, 90, 1e-5);
    /* Deconvolution with kernel = stride: each input pixel scatters w[ic][oc] * x. */
    for (int oc = 0; oc < 2; oc++)
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++) {
                double s = 0;
                for (int ic = 0; ic < 2; ic++)
                    s += small[ic * 4 + (i / 2) * 2 + j / 2] *
                         w3[((ic * 2 + oc) * 2 + i % 2) * 2 + j % 2];
                want[(oc * 4 + i) * 4 + j] = (float)s;
            }
    tu_assert_close(y3, want, 32, 1e-6);
    kiln_network_destroy(net);
    tb_free(&t);
}

static void test_pooling(void **state)
{
    tb t = {0};
    Caffe__NetParameter *d = tb_net(&t);
    const int64_t xd[] = {1, 1, 5, 6};
    tb_input(&t, d, "data", 4, xd);
    typedef struct pcase {
        const char *name;
        bool max, ceil_mode, global, hw;
        int k, p, s, kh, kw, sh, sw;
    } pcase;
    const pcase cases[] = {
        {"max_k3s2p1", true, true, false, false, 3, 1, 2, 0, 0, 0, 0},
        {"ave_k3s2p1", false, true, false, false, 3, 1, 2, 0, 0, 0, 0},
        {"ave_k2s2", false, true, false, false, 2, 0, 2, 0, 0, 0, 0},
        {"ave_k2s2_floor", false, false, false, false, 2, 0, 2, 0, 0, 0, 0},
        {"ave_k3s3p2", false, true, false, false, 3, 2, 3, 0, 0, 0, 0},
        {"max_hw", true, true, false, true, 0, 0, 0, 2, 3, 1, 2},
        {"gave", false, true, true, false, 0, 0, 1, 0, 0, 0, 0},
        {"gmax", true, true, true, false, 0, 0, 1, 0, 0, 0, 0},
    };
    enum { NC = sizeof cases / sizeof *cases };
    for (int i = 0; i < NC; i++) {
        const pcase *pc = &cases[i];
        Caffe__LayerParameter *l = tb_layer(&t, d, "Pooling", pc->name, "data", pc->name);
        NEWP(&t, l, pooling_param, caffe__pooling_parameter__init);
        Caffe__PoolingParameter *pp = l->pooling_param;
        pp->has_pool = 1;
        pp->pool = pc->max ? CAFFE__POOLING_PARAMETER__POOL_METHOD__MAX
                           : CAFFE__POOLING_PARAMETER__POOL_METHOD__AVE;
        if (!pc->ceil_mode) pp->has_round_mode = 1, pp->round_mode = 1;
        if (pc->global) {
            pp->has_global_pooling = 1, pp->global_pooling = 1;
        } else if (pc->hw) {
            pp->has_kernel_h = pp->has_kernel_w = 1, pp->kernel_h = (uint32_t)pc->kh,
            pp->kernel_w = (uint32_t)pc->kw;
            pp->has_stride_h = pp->has_stride_w = 1, pp->stride_h = (uint32_t)pc->sh,
            pp->stride_w = (uint32_t)pc->sw;
        } else {
            pp->has_kernel_size = 1, pp->kernel_size = (uint32_t)pc->k;
            pp->pad = (uint32_t)pc->p, pp->stride = (uint32_t)pc->s;
        }
    }
    kiln_network *net = import_ok(d, NULL);
    float x[30], y[NC][30];
    for (int i = 0; i < 30; i++) x[i] = (float)((i * 7) % 11) - 3.0f;
    binding in[] = {{"data", x}, {NULL, NULL}};
    binding out[NC + 1];
    for (int i = 0; i < NC; i++) out[i] = (binding){cases[i].name, y[i]};
    out[NC] = (binding){NULL, NULL};
    kiln_engine *e = run(net, in, out);
    for (int i = 0; i < NC; i++) {
        const pcase *pc = &cases[i];
        float want[30];
        int oh, ow;
        if (pc->global)
            oh = ref_pool(x, 5, 6, 5, 6, 0, 0, 1, 1, pc->max, true, want, &ow);
        else if (pc->hw)
            oh = ref_pool(x, 5, 6, pc->kh, pc->kw, 0, 0, pc->sh, pc->sw, pc->max, true, want, &ow);
        else
            oh = ref_pool(x, 5, 6, pc->k, pc->k, pc->p, pc->p, pc->s, pc->s, pc->max, pc->ceil_mode,
                          want, &ow);
        expect_shape(e, pc->name, 4, (int64_t[]){1, 1, oh, ow});
        for (int k = 0; k < oh * ow; k++) {
            if (fabsf(y[i][k] - want[k]) > 1e-5f)
                print_error("%s[%d] = %g, expected %g\n", pc->name, k, y[i][k], want[k]);
            assert_true(fabsf(y[i][k] - want[k]) <= 1e-5f);
        }
    }
    kiln_engine_destroy(e);
    kiln_network_destroy(net);
    tb_free(&t);
}

static void test_inner_product(void **state)
{
    tb t = {0};
    Caffe__NetParameter *d = tb_net(&t), *m = tb_net(&t);
    const int64_t xd[] = {2, 3, 4};
    tb_input(&t, d, "data", 3, xd);
    tu_rng r = {5};
    float x[24], wa[2 * 12], ba[2], wb[4 * 3], bb[3];
    tu_fill(&r, x, 24, -1, 1);
    tu_fill(&r, wa, 24, -1, 1);
    tu_fill(&r, ba, 2, -1, 1);
    tu_fill(&r, wb, 12, -1, 1);
    tu_fill(&r, bb, 3, -1, 1);
    /* axis 1: 2 x 12 times 12 x 2 (stored 2 x 12) */
    Caffe__LayerParameter *l = tb_layer(&t, d, "InnerProduct", "ipa", "data", "ya");
    NEWP(&t, l, inner_product_param, caffe__inner_product_parameter__init);
    l->inner_product_param->has_num_output = 1, l->inner_product_param->num_output = 2;
    tb_blobs(&t, m, "ipa", wa, 24, 2, (int64_t[]){2, 12});
    tb_blobs(&t, m, "ipa", ba, 2, 1, (int64_t[]){2});
    /* axis 2 with transpose: weights stored K x N = 4 x 3; legacy 4-D blob shape */
    l = tb_layer(&t, d, "InnerProduct", "ipb", "data", "yb");
    NEWP(&t, l, inner_product_param, caffe__inner_product_parameter__init);
    Caffe__InnerProductParameter *ip = l->inner_product_param;
    ip->has_num_output = 1, ip->num_output = 3, ip->has_axis = 1, ip->axis = -1;
    ip->has_transpose = 1, ip->transpose = 1;
    Caffe__BlobProto *b = tb_blob(&t, tb_weights(&t, m, "ipb"), 12, wb, 0, NULL);
    b->has_num = b->has_channels = b->has_height = b->has_width = 1;
    b->num = 1, b->channels = 1, b->height = 4, b->width = 3;
    tb_blobs(&t, m, "ipb", bb, 3, 1, (int64_t[]){3});
    kiln_network *net = import_ok(d, m);
    float ya[4], yb[18], wa_[4], wb_[18];
    binding in[] = {{"data", x}, {NULL, NULL}};
    binding out[] = {{"ya", ya}, {"yb", yb}, {NULL, NULL}};
    kiln_engine *e = run(net, in, out);
    expect_shape(e, "ya", 2, (int64_t[]){2, 2});
    expect_shape(e, "yb", 3, (int64_t[]){2, 3, 3});
    kiln_engine_destroy(e);
    for (int n = 0; n < 2; n++)
        for (int o = 0; o < 2; o++) {
            double s = ba[o];
            for (int k = 0; k < 12; k++) s += (double)x[n * 12 + k] * wa[o * 12 + k];
            wa_[n * 2 + o] = (float)s;
        }
    for (int row = 0; row < 6; row++)
        for (int o = 0; o < 3; o++) {
            double s = bb[o];
            for (int k = 0; k < 4; k++) s += (double)x[row * 4 + k] * wb[k * 3 + o];
            wb_[row * 3 + o] = (float)s;
        }
    tu_assert_close(ya, wa_, 4, 1e-6);
    tu_assert_close(yb, wb_, 18, 1e-6);
    kiln_network_destroy(net);
    tb_free(&t);
}

static void test_lrn_softmax(void **state)
{
    tb t = {0};
    Caffe__NetParameter *d = tb_net(&t);
    const int64_t xd[] = {1, 5, 3, 4};
    tb_input(&t, d, "data", 4, xd);
    Caffe__LayerParameter *l = tb_layer(&t, d, "LRN", "across", "data", "ac");
    NEWP(&t, l, lrn_param, caffe__lrnparameter__init);
    l->lrn_param->local_size = 3, l->lrn_param->alpha = 0.1f, l->lrn_param->beta = 0.75f,
    l->lrn_param->k = 2.0f;
    l = tb_layer(&t, d, "LRN", "within", "data", "wi");
    NEWP(&t, l, lrn_param, caffe__lrnparameter__init);
    l->lrn_param->local_size = 3, l->lrn_param->alpha = 0.2f, l->lrn_param->beta = 0.5f;
    l->lrn_param->has_norm_region = 1;
    l->lrn_param->norm_region = CAFFE__LRNPARAMETER__NORM_REGION__WITHIN_CHANNEL;
    tb_layer(&t, d, "Softmax", "sm", "data", "sm");
    l = tb_layer(&t, d, "Softmax", "sm_last", "data", "sml");
    NEWP(&t, l, softmax_param, caffe__softmax_parameter__init);
    l->softmax_param->has_axis = 1, l->softmax_param->axis = -1;
    kiln_network *net = import_ok(d, NULL);
    float x[60], ac[60], wi[60], sm[60], sml[60], want[60];
    tu_rng r = {3};
    tu_fill(&r, x, 60, -2, 2);
    binding in[] = {{"data", x}, {NULL, NULL}};
    binding out[] = {{"ac", ac}, {"wi", wi}, {"sm", sm}, {"sml", sml}, {NULL, NULL}};
    run_free(net, in, out);
    /* ACROSS_CHANNELS: x / (k + alpha/n * sum over n channels of x^2)^beta */
    for (int c = 0; c < 5; c++)
        for (int p = 0; p < 12; p++) {
            double s = 0;
            for (int q = c - 1; q <= c + 1; q++)
                if (q >= 0 && q < 5) s += (double)x[q * 12 + p] * x[q * 12 + p];
            want[c * 12 + p] = (float)(x[c * 12 + p] / pow(2.0 + 0.1 / 3 * s, 0.75));
        }
    tu_assert_close(ac, want, 60, 1e-5);
    /* WITHIN_CHANNEL: x / (1 + alpha * mean of x^2 over the padded 3x3 window)^beta;
     * the window never leaves the padded input here, so the mean divides by 9. */
    for (int c = 0; c < 5; c++)
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 4; j++) {
                double s = 0;
                for (int u = i - 1; u <= i + 1; u++)
                    for (int v = j - 1; v <= j + 1; v++)
                        if (u >= 0 && u < 3 && v >= 0 && v < 4)
                            s += (double)x[c * 12 + u * 4 + v] * x[c * 12 + u * 4 + v];
                want[c * 12 + i * 4 + j] =
                    (float)(x[c * 12 + i * 4 + j] / pow(1.0 + 0.2 * s / 9, 0.5));
            }
    tu_assert_close(wi, want, 60, 1e-5);
    for (int p = 0; p < 12; p++) {
        double z = 0;
        for (int c = 0; c < 5; c++) z += exp(x[c * 12 + p]);
        for (int c = 0; c < 5; c++) want[c * 12 + p] = (float)(exp(x[c * 12 + p]) / z);
    }
    tu_assert_close(sm, want, 60, 1e-5);
    for (int row = 0; row < 15; row++) {
        double z = 0;
        for (int k = 0; k < 4; k++) z += exp(x[row * 4 + k]);
        for (int k = 0; k < 4; k++) want[row * 4 + k] = (float)(exp(x[row * 4 + k]) / z);
    }
    tu_assert_close(sml, want, 60, 1e-5);
    kiln_network_destroy(net);
    tb_free(&t);
}

static void test_batchnorm_scale_bias(void **state)
{
    tb t = {0};
    Caffe__NetParameter *d = tb_net(&t), *m = tb_net(&t);
    const int64_t xd[] = {1, 2, 1, 2}, sd[] = {2};
    tb_input(&t, d, "data", 4, xd);
    tb_input(&t, d, "s", 1, sd);
    /* bn: running sums (mean 2,4; var 8,18) with factor 2; then in place Scale+bias */
    Caffe__LayerParameter *l = tb_layer(&t, d, "BatchNorm", "bn", "data", "bn");
    NEWP(&t, l, batch_norm_param, caffe__batch_norm_parameter__init);
    l->batch_norm_param->eps = 1e-3f;
    const float mean[] = {2, 4}, var[] = {8, 18}, two = 2, zero = 0;
    tb_blobs(&t, m, "bn", mean, 2, 1, (int64_t[]){2});
    tb_blobs(&t, m, "bn", var, 2, 1, (int64_t[]){2});
    tb_blobs(&t, m, "bn", &two, 1, 1, (int64_t[]){1});
    l = tb_layer(&t, d, "Scale", "bn_scale", "bn", "bn");
    NEWP(&t, l, scale_param, caffe__scale_parameter__init);
    l->scale_param->has_bias_term = 1, l->scale_param->bias_term = 1;
    const float sc[] = {2, 3}, bi[] = {1, -1};
    tb_blobs(&t, m, "bn_scale", sc, 2, 1, (int64_t[]){2});
    tb_blobs(&t, m, "bn_scale", bi, 2, 1, (int64_t[]){2});
    /* bn0: a zero factor leaves mean and variance 0 */
    tb_layer(&t, d, "BatchNorm", "bn0", "data", "bn0");
    tb_blobs(&t, m, "bn0", mean, 2, 1, (int64_t[]){2});
    tb_blobs(&t, m, "bn0", var, 2, 1, (int64_t[]){2});
    tb_blobs(&t, m, "bn0", &zero, 1, 1, (int64_t[]){1});
    /* scale by the second bottom along axis 1 */
    tb_layer(&t, d, "Scale", "scale2", "data s", "s2");
    /* bias over dims 2..3 (num_axes -1) */
    l = tb_layer(&t, d, "Bias", "bias", "data", "bs");
    NEWP(&t, l, bias_param, caffe__bias_parameter__init);
    l->bias_param->axis = 2, l->bias_param->num_axes = -1;
    const float b2[] = {10, 20};
    tb_blobs(&t, m, "bias", b2, 2, 2, (int64_t[]){1, 2});
    /* scalar scale (num_axes 0) */
    l = tb_layer(&t, d, "Scale", "scalar", "data", "ss");
    NEWP(&t, l, scale_param, caffe__scale_parameter__init);
    l->scale_param->num_axes = 0;
    const float half = 0.5f;
    tb_blobs(&t, m, "scalar", &half, 1, 0, NULL);
    kiln_network *net = import_ok(d, m);
    float x[4] = {1, 3, 5, 8}, s[2] = {-1, 4}, ybn[4], ybn0[4], ys2[4], ybs[4], yss[4];
    binding in[] = {{"data", x}, {"s", s}, {NULL, NULL}};
    binding out[] = {{"bn", ybn}, {"bn0", ybn0}, {"s2", ys2},
                     {"bs", ybs}, {"ss", yss},   {NULL, NULL}};
    run_free(net, in, out);
    for (int i = 0; i < 4; i++) {
        int c = i / 2;
        double m_ = mean[c] / 2, v = var[c] / 2;
        double bn = (x[i] - m_) / sqrt(v + 1e-3) * sc[c] + bi[c];
        assert_true(fabs(ybn[i] - bn) < 1e-5);
        assert_true(fabs(ybn0[i] - x[i] / sqrt(1e-5)) < 1e-2);
        assert_true(ys2[i] == x[i] * s[c]);
        assert_true(ybs[i] == x[i] + b2[i % 2]);
        assert_true(yss[i] == x[i] * 0.5f);
    }
    kiln_network_destroy(net);
    tb_free(&t);
}

static void test_eltwise_concat_slice(void **state)
{
    tb t = {0};
    Caffe__NetParameter *d = tb_net(&t);
    const int64_t xd[] = {1, 4};
    tb_input(&t, d, "a", 2, xd);
    tb_input(&t, d, "b", 2, xd);
    tb_input(&t, d, "c", 2, xd);
    Caffe__LayerParameter *l = tb_layer(&t, d, "Eltwise", "sum", "a b", "sum");
    NEWP(&t, l, eltwise_param, caffe__eltwise_parameter__init);
    l->eltwise_param->n_coeff = 2;
    l->eltwise_param->coeff = tb_f32(&t, 2, (float[]){2.0f, -0.5f});
    l = tb_layer(&t, d, "Eltwise", "sub", "a b", "sub");
    NEWP(&t, l, eltwise_param, caffe__eltwise_parameter__init);
    l->eltwise_param->n_coeff = 2;
    l->eltwise_param->coeff = tb_f32(&t, 2, (float[]){1.0f, -1.0f});
    tb_layer(&t, d, "Eltwise", "sum3", "a b c", "sum3");
    l = tb_layer(&t, d, "Eltwise", "prod", "a b c", "prod");
    NEWP(&t, l, eltwise_param, caffe__eltwise_parameter__init);
    l->eltwise_param->operation = CAFFE__ELTWISE_PARAMETER__ELTWISE_OP__PROD;
    l = tb_layer(&t, d, "Eltwise", "max", "a b c", "max");
    NEWP(&t, l, eltwise_param, caffe__eltwise_parameter__init);
    l->eltwise_param->operation = CAFFE__ELTWISE_PARAMETER__ELTWISE_OP__MAX;
    tb_layer(&t, d, "Concat", "cat1", "a b", "cat1");
    l = tb_layer(&t, d, "Concat", "cat0", "a b c", "cat0");
    NEWP(&t, l, concat_param, caffe__concat_parameter__init);
    l->concat_param->has_concat_dim = 1, l->concat_param->concat_dim = 0;
    l = tb_layer(&t, d, "Slice", "slice", "cat1", "s1 s2 s3");
    NEWP(&t, l, slice_param, caffe__slice_parameter__init);
    l->slice_param->n_slice_point = 2;
    l->slice_param->slice_point = tb_u32(&t, 2, (uint32_t[]){1, 5});
    l = tb_layer(&t, d, "Slice", "halves", "cat0", "h1 h2 h3");
    NEWP(&t, l, slice_param, caffe__slice_parameter__init);
    l->slice_param->has_slice_dim = 1, l->slice_param->slice_dim = 0;
    tb_layer(&t, d, "Split", "split", "a", "sp1 sp2");
    kiln_network *net = import_ok(d, NULL);
    float a[4] = {1, -2, 3, 0.5f}, b[4] = {4, 5, -6, 2}, c[4] = {-1, 2, 0.5f, 3};
    float sum[4], sub[4], sum3[4], prod[4], mx[4], s1[1], s2[4], s3[3];
    float h1[4], h2[4], h3[4], sp1[4], sp2[4];
    binding in[] = {{"a", a}, {"b", b}, {"c", c}, {NULL, NULL}};
    binding out[] = {{"sum", sum}, {"sub", sub}, {"sum3", sum3}, {"prod", prod}, {"max", mx},
                     {"s1", s1},   {"s2", s2},   {"s3", s3},     {"h1", h1},     {"h2", h2},
                     {"h3", h3},   {"sp1", sp1}, {"sp2", sp2},   {NULL, NULL}};
    kiln_engine *e = run(net, in, out);
    expect_shape(e, "s2", 2, (int64_t[]){1, 4});
    expect_shape(e, "h3", 2, (int64_t[]){1, 4});
    kiln_engine_destroy(e);
    for (int i = 0; i < 4; i++) {
        assert_true(sum[i] == 2 * a[i] - 0.5f * b[i]);
        assert_true(sub[i] == a[i] - b[i]);
        assert_true(sum3[i] == a[i] + b[i] + c[i]);
        assert_true(prod[i] == a[i] * b[i] * c[i]);
        assert_true(mx[i] == fmaxf(a[i], fmaxf(b[i], c[i])));
        assert_true(h1[i] == a[i] && h2[i] == b[i] && h3[i] == c[i]);
        assert_true(sp1[i] == a[i] && sp2[i] == a[i]);
    }
    const float ab[8] = {1, -2, 3, 0.5f, 4, 5, -6, 2};
    assert_true(s1[0] == ab[0]);
    assert_memory_equal(s2, ab + 1, sizeof s2);
    assert_memory_equal(s3, ab + 5, sizeof s3);
    kiln_network_destroy(net);
    tb_free(&t);
}

static void test_flatten_reshape_permute(void **state)
{
    tb t = {0};
    Caffe__NetParameter *d = tb_net(&t);
    const int64_t xd[] = {2, 3, 2, 2};
    tb_input(&t, d, "data", 4, xd);
    tb_layer(&t, d, "Flatten", "flat", "data", "f1");
    Caffe__LayerParameter *l = tb_layer(&t, d, "Flatten", "flat2", "data", "f2");
    NEWP(&t, l, flatten_param, caffe__flatten_parameter__init);
    l->flatten_param->end_axis = 2;
    l = tb_layer(&t, d, "Reshape", "rs1", "data", "r1");
    NEWP(&t, l, reshape_param, caffe__reshape_parameter__init);
    l->reshape_param->shape = tb_shape(&t, 2, (int64_t[]){0, -1});
    l = tb_layer(&t, d, "Reshape", "rs2", "data", "r2");
    NEWP(&t, l, reshape_param, caffe__reshape_parameter__init);
    l->reshape_param->shape = tb_shape(&t, 1, (int64_t[]){6});
    l->reshape_param->axis = 1, l->reshape_param->num_axes = 2;
    l = tb_layer(&t, d, "Reshape", "rs3", "data", "r3");
    NEWP(&t, l, reshape_param, caffe__reshape_parameter__init);
    l->reshape_param->shape = tb_shape(&t, 4, (int64_t[]){0, 2, 0, -1});
    l = tb_layer(&t, d, "Reshape", "rs4", "data", "r4");
    NEWP(&t, l, reshape_param, caffe__reshape_parameter__init);
    l->reshape_param->shape = tb_shape(&t, 1, (int64_t[]){1});
    l->reshape_param->axis = -1, l->reshape_param->num_axes = 0;
    l = tb_layer(&t, d, "Permute", "perm", "data", "p");
    NEWP(&t, l, permute_param, caffe__permute_parameter__init);
    l->permute_param->n_order = 2;
    l->permute_param->order = tb_u32(&t, 2, (uint32_t[]){0, 2});
    kiln_network *net = import_ok(d, NULL);
    float x[24], f1[24], f2[24], r1[24], r2[24], r3[24], r4[24], p[24];
    for (int i = 0; i < 24; i++) x[i] = (float)i;
    binding in[] = {{"data", x}, {NULL, NULL}};
    binding out[] = {{"f1", f1}, {"f2", f2}, {"r1", r1}, {"r2", r2},
                     {"r3", r3}, {"r4", r4}, {"p", p},   {NULL, NULL}};
    kiln_engine *e = run(net, in, out);
    expect_shape(e, "f1", 2, (int64_t[]){2, 12});
    expect_shape(e, "f2", 3, (int64_t[]){2, 6, 2});
    expect_shape(e, "r1", 2, (int64_t[]){2, 12});
    expect_shape(e, "r2", 3, (int64_t[]){2, 6, 2});
    expect_shape(e, "r3", 4, (int64_t[]){2, 2, 2, 3});
    expect_shape(e, "r4", 5, (int64_t[]){2, 3, 2, 2, 1});
    expect_shape(e, "p", 4, (int64_t[]){2, 2, 3, 2}); /* order 0 2 then 1 3 */
    kiln_engine_destroy(e);
    assert_memory_equal(f1, x, sizeof x);
    assert_memory_equal(r3, x, sizeof x);
    for (int n = 0; n < 2; n++)
        for (int h = 0; h < 2; h++)
            for (int c = 0; c < 3; c++)
                for (int w = 0; w < 2; w++)
                    assert_true(p[((n * 2 + h) * 3 + c) * 2 + w] ==
                                x[((n * 3 + c) * 2 + h) * 2 + w]);
    kiln_network_destroy(net);
    tb_free(&t);
}

/* ---- structure: in-place tops, V1 layers, inputs, outputs, rules ---- */

/* data -> conv1 -> relu1 (in place) -> pool1 -> relu2 (in place) */
static void small_net(tb *t, Caffe__NetParameter **deploy, Caffe__NetParameter **model)
{
    static const float w[8] = {1, -1, 0.5f, 2, -1, 1, 1, -0.5f}, b[2] = {0.25f, -4};
    Caffe__NetParameter *d = tb_net(t), *m = tb_net(t);
    const int64_t xd[] = {1, 1, 3, 3};
    tb_input(t, d, "data", 4, xd);
    Caffe__LayerParameter *l = tb_layer(t, d, "Convolution", "conv1", "data", "conv1");
    NEWP(t, l, convolution_param, caffe__convolution_parameter__init);
    l->convolution_param->has_num_output = 1, l->convolution_param->num_output = 2;
    U32S(t, l->convolution_param, kernel_size, 2);
    tb_layer(t, d, "ReLU", "relu1", "conv1", "conv1");
    l = tb_layer(t, d, "Pooling", "pool1", "conv1", "pool1");
    NEWP(t, l, pooling_param, caffe__pooling_parameter__init);
    l->pooling_param->has_kernel_size = 1, l->pooling_param->kernel_size = 2;
    tb_layer(t, d, "ReLU", "relu2", "pool1", "pool1");
    tb_blobs(t, m, "conv1", w, 8, 4, (int64_t[]){2, 1, 2, 2});
    tb_blobs(t, m, "conv1", b, 2, 1, (int64_t[]){2});
    *deploy = d;
    *model = m;
}

static const float SMALL_X[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};

static void small_expect(const float *conv, const float *pool)
{
    static const float w[8] = {1, -1, 0.5f, 2, -1, 1, 1, -0.5f}, b[2] = {0.25f, -4};
    float want[8], mx[2] = {0, 0};
    int oh, ow;
    ref_conv(SMALL_X, 1, 3, 3, w, b, 2, 2, 2, 0, 0, 1, 1, 1, 1, 1, want, &oh, &ow);
    for (int i = 0; i < 8; i++) {
        want[i] = want[i] > 0 ? want[i] : 0;
        mx[i / 4] = fmaxf(mx[i / 4], want[i]);
    }
    if (conv) tu_assert_close(conv, want, 8, 1e-6);
    if (pool) tu_assert_close(pool, mx, 2, 1e-6);
}

static void test_in_place_and_outputs(void **state)
{
    tb t = {0};
    Caffe__NetParameter *d, *m;
    small_net(&t, &d, &m);
    kiln_network *net = import_ok(d, m);
    assert_int_equal(kiln_network_num_outputs(net), 1); /* pool1, after relu2 */
    float pool[2], conv[8];
    binding in[] = {{"data", (void *)SMALL_X}, {NULL, NULL}};
    binding out[] = {{"pool1", pool}, {NULL, NULL}};
    kiln_engine *e = run(net, in, out);
    /* The blob names the final version; earlier ones are named after the layer. */
    assert_int_equal(kiln_engine_io_mode(e, "pool1"), KILN_IO_OUTPUT);
    assert_int_equal(kiln_engine_io_mode(e, "data"), KILN_IO_INPUT);
    kiln_engine_destroy(e);
    small_expect(NULL, pool);
    kiln_network_destroy(net);
    /* Outputs by blob name get the blob's last version. */
    const char *outs[] = {"conv1", "pool1"};
    assert_int_equal(import(&net, d, m, outs, 2), KILN_OK);
    binding out2[] = {{"conv1", conv}, {"pool1", pool}, {NULL, NULL}};
    run_free(net, in, out2);
    small_expect(conv, pool);
    kiln_network_destroy(net);
    const char *bad[] = {"nope"};
    expect_error(import(&net, d, m, bad, 1), KILN_ERR_NOT_FOUND, "no blob 'nope'", NULL);
    tb_free(&t);
}

static void test_v1_layers(void **state)
{
    tb t = {0};
    Caffe__NetParameter *d, *m;
    small_net(&t, &d, &m);
    /* The same net and weights in the legacy form. */
    for (int which = 0; which < 2; which++) {
        Caffe__NetParameter *n = which ? m : d;
        n->layers = tb_new(&t, sizeof(Caffe__V1LayerParameter *) * n->n_layer);
        for (size_t i = 0; i < n->n_layer; i++) {
            Caffe__LayerParameter *l = n->layer[i];
            Caffe__V1LayerParameter *v = tb_new(&t, sizeof *v);
            caffe__v1_layer_parameter__init(v);
            v->name = l->name;
            v->n_bottom = l->n_bottom, v->bottom = l->bottom;
            v->n_top = l->n_top, v->top = l->top;
            v->n_blobs = l->n_blobs, v->blobs = l->blobs;
            v->convolution_param = l->convolution_param;
            v->pooling_param = l->pooling_param;
            v->has_type = 1;
            if (strcmp(l->type, "Convolution") == 0)
                v->type = CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__CONVOLUTION;
            else if (strcmp(l->type, "ReLU") == 0)
                v->type = CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__RELU;
            else if (strcmp(l->type, "Pooling") == 0)
                v->type = CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__POOLING;
            n->layers[i] = v;
        }
        n->n_layers = n->n_layer;
        n->n_layer = 0;
    }
    kiln_network *net = import_ok(d, m);
    float pool[2];
    binding in[] = {{"data", (void *)SMALL_X}, {NULL, NULL}};
    binding out[] = {{"pool1", pool}, {NULL, NULL}};
    run_free(net, in, out);
    small_expect(NULL, pool);
    kiln_network_destroy(net);
    /* A V1 type kiln lacks is named by its Caffe type. */
    d->layers[1]->type = CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__MVN;
    expect_error(import(&net, d, m, NULL, 0), KILN_ERR_UNSUPPORTED, "MVN (first at layer 'relu1')",
                 NULL);
    /* layer and layers together */
    d->layers[1]->type = CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__RELU;
    Caffe__NetParameter *d2 = tb_net(&t);
    small_net(&t, &d2, &m);
    d->n_layer = d2->n_layer, d->layer = d2->layer;
    expect_error(import(&net, d, m, NULL, 0), KILN_ERR_PARSE, "mixes 'layer' and legacy", NULL);
    tb_free(&t);
}

static void test_inputs(void **state)
{
    tb t = {0};
    Caffe__NetParameter *d, *m;
    small_net(&t, &d, &m);
    float pool[2];
    binding in[] = {{"data", (void *)SMALL_X}, {NULL, NULL}};
    binding out[] = {{"pool1", pool}, {NULL, NULL}};
    /* input_dim: four per input */
    d->n_input_shape = 0;
    d->n_input_dim = 4;
    d->input_dim = tb_new(&t, sizeof(int32_t) * 4);
    d->input_dim[0] = 1, d->input_dim[1] = 1, d->input_dim[2] = 3, d->input_dim[3] = 3;
    kiln_network *net = import_ok(d, m);
    run_free(net, in, out);
    small_expect(NULL, pool);
    kiln_network_destroy(net);
    d->n_input_dim = 3;
    expect_error(import(&net, d, m, NULL, 0), KILN_ERR_PARSE, "need 4 input_dim values", NULL);
    /* an Input layer instead, one shape for both of its tops */
    d->n_input = d->n_input_dim = 0;
    memmove(d->layer + 1, d->layer, sizeof *d->layer * d->n_layer);
    d->n_layer++;
    Caffe__LayerParameter *l = tb_layer(&t, d, "Input", "input", "", "data other");
    d->n_layer--;
    d->layer[0] = l;
    NEWP(&t, l, input_param, caffe__input_parameter__init);
    l->input_param->n_shape = 1;
    l->input_param->shape = tb_new(&t, sizeof(Caffe__BlobShape *));
    l->input_param->shape[0] = tb_shape(&t, 4, (int64_t[]){1, 1, 3, 3});
    net = import_ok(d, m);
    assert_int_equal(kiln_network_num_inputs(net), 2);
    float other[9];
    binding in2[] = {{"data", (void *)SMALL_X}, {"other", other}, {NULL, NULL}};
    run_free(net, in2, out);
    small_expect(NULL, pool);
    kiln_network_destroy(net);
    /* A caller may declare an input first to change its batch size. */
    assert_int_equal(kiln_network_create(&net), KILN_OK);
    kiln_dims b2 = {4, {2, 1, 3, 3}};
    assert_int_equal(kiln_network_add_input(net, "data", KILN_DTYPE_F32, &b2), KILN_OK);
    assert_int_equal(caffe_import_nets(net, d, m, "d", "m", NULL, 0), KILN_OK);
    float x2[18], pool2[4];
    memcpy(x2, SMALL_X, sizeof SMALL_X);
    memcpy(x2 + 9, SMALL_X, sizeof SMALL_X);
    binding in3[] = {{"data", x2}, {"other", other}, {NULL, NULL}};
    binding out3[] = {{"pool1", pool2}, {NULL, NULL}};
    kiln_engine *e = run(net, in3, out3);
    expect_shape(e, "pool1", 4, (int64_t[]){2, 2, 1, 1});
    kiln_engine_destroy(e);
    small_expect(NULL, pool2);
    small_expect(NULL, pool2 + 2);
    kiln_network_destroy(net);
    /* ... but only the batch size */
    assert_int_equal(kiln_network_create(&net), KILN_OK);
    kiln_dims bad = {4, {2, 2, 3, 3}};
    assert_int_equal(kiln_network_add_input(net, "data", KILN_DTYPE_F32, &bad), KILN_OK);
    expect_error(caffe_import_nets(net, d, m, "d", "m", NULL, 0), KILN_ERR_SHAPE,
                 "only the batch dimension may differ", NULL);
    assert_int_equal(kiln_network_num_inputs(net), 1); /* left as it was */
    kiln_network_destroy(net);
    assert_int_equal(kiln_network_create(&net), KILN_OK);
    assert_int_equal(kiln_network_add_input(net, "extra", KILN_DTYPE_F32, &b2), KILN_OK);
    expect_error(caffe_import_nets(net, d, m, "d", "m", NULL, 0), KILN_ERR_NOT_FOUND,
                 "declares input 'extra', which the net does not have", NULL);
    kiln_network_destroy(net);
    /* no inputs at all */
    l->input_param->n_shape = 0;
    expect_error(import(&net, d, m, NULL, 0), KILN_ERR_PARSE, "0 shapes for 2 tops", NULL);
    d->layer[0]->type = tb_str(&t, "Silence");
    expect_error(import(&net, d, m, NULL, 0), KILN_ERR_INVALID_GRAPH, "bottom 'data'", NULL);
    tb_free(&t);
}

static void test_phase_rules(void **state)
{
    tb t = {0};
    Caffe__NetParameter *d, *m;
    small_net(&t, &d, &m);
    /* A training-only layer of a type kiln lacks is left out; a test-only one stays. */
    Caffe__LayerParameter *l = tb_layer(&t, d, "SoftmaxWithLoss", "loss", "pool1", "loss");
    l->n_include = 1;
    l->include = tb_new(&t, sizeof(Caffe__NetStateRule *));
    l->include[0] = tb_new(&t, sizeof(Caffe__NetStateRule));
    caffe__net_state_rule__init(l->include[0]);
    l->include[0]->has_phase = 1, l->include[0]->phase = CAFFE__PHASE__TRAIN;
    l = tb_layer(&t, d, "Sigmoid", "sig", "pool1", "sig");
    l->n_exclude = 1;
    l->exclude = tb_new(&t, sizeof(Caffe__NetStateRule *));
    l->exclude[0] = tb_new(&t, sizeof(Caffe__NetStateRule));
    caffe__net_state_rule__init(l->exclude[0]);
    l->exclude[0]->has_phase = 1, l->exclude[0]->phase = CAFFE__PHASE__TRAIN;
    kiln_network *net = import_ok(d, m);
    assert_int_equal(kiln_network_num_outputs(net), 1); /* sig */
    kiln_network_destroy(net);
    tb_free(&t);
}

/* ---- bad input ---- */

static void test_bad_weights(void **state)
{
    tb t = {0};
    Caffe__NetParameter *d, *m;
    kiln_network *net = NULL;
    small_net(&t, &d, &m);
    Caffe__BlobProto *w = m->layer[0]->blobs[0];
    w->n_data = 5;
    expect_error(import(&net, d, m, NULL, 0), KILN_ERR_PARSE,
                 "caffemodel 'w.caffemodel': layer 'conv1' (Convolution): weights have 5 values, "
                 "expected 2x1x2x2",
                 NULL);
    w->n_data = 8;
    w->shape->dim[0] = 4;
    expect_error(import(&net, d, m, NULL, 0), KILN_ERR_PARSE, "layer 'conv1' (Convolution)",
                 "weights declare shape 4x1x2x2, expected 2x1x2x2");
    w->shape->dim[0] = 2;
    m->layer[0]->n_blobs = 1;
    expect_error(import(&net, d, m, NULL, 0), KILN_ERR_NOT_FOUND, "layer 'conv1' (Convolution)",
                 "no blob 1 (bias)");
    m->layer[0]->name = "other";
    expect_error(import(&net, d, m, NULL, 0), KILN_ERR_NOT_FOUND,
                 "caffemodel 'w.caffemodel': has no layer 'conv1' (Convolution)", NULL);
    expect_error(import(&net, d, NULL, NULL, 0), KILN_ERR_NOT_FOUND,
                 "layer 'conv1' (Convolution): needs its weights, and no caffemodel was given",
                 NULL);
    Caffe__NetParameter *empty = tb_net(&t);
    expect_error(import(&net, d, empty, NULL, 0), KILN_ERR_PARSE, "holds no layers", NULL);
    /* double-precision blobs are read too */
    m->layer[0]->name = "conv1";
    m->layer[0]->n_blobs = 2;
    w->n_double_data = 8;
    w->double_data = tb_new(&t, sizeof(double) * 8);
    for (int i = 0; i < 8; i++) w->double_data[i] = w->data[i];
    w->n_data = 0;
    net = import_ok(d, m);
    float pool[2];
    binding in[] = {{"data", (void *)SMALL_X}, {NULL, NULL}};
    binding out[] = {{"pool1", pool}, {NULL, NULL}};
    run_free(net, in, out);
    small_expect(NULL, pool);
    kiln_network_destroy(net);
    tb_free(&t);
}

static void test_bad_layers(void **state)
{
    tb t = {0};
    Caffe__NetParameter *d, *m;
    kiln_network *net = NULL;
    small_net(&t, &d, &m);
    tb_layer(&t, d, "Frobnicate", "f1", "pool1", "f1");
    tb_layer(&t, d, "Frobnicate", "f2", "f1", "f2");
    tb_layer(&t, d, "Zap", "z1", "f2", "z1");
    expect_error(import(&net, d, m, NULL, 0), KILN_ERR_UNSUPPORTED,
                 "the net uses 2 layer types kiln does not support: Frobnicate (first at layer "
                 "'f1'), Zap (first at layer 'z1')",
                 NULL);
    d->n_layer -= 3;
    /* a bottom nothing produced */
    tb_layer(&t, d, "ReLU", "r", "nope", "r");
    expect_error(import(&net, d, m, NULL, 0), KILN_ERR_INVALID_GRAPH, "layer 'r' (ReLU)",
                 "bottom 'nope' is neither an input nor a top of an earlier layer");
    d->n_layer--;
    /* wrong bottom counts, shapes that do not fit */
    tb_layer(&t, d, "Eltwise", "e", "pool1", "e");
    expect_error(import(&net, d, m, NULL, 0), KILN_ERR_PARSE, "layer 'e' (Eltwise)",
                 "has 1 bottom, expected 2 or more");
    d->n_layer--;
    Caffe__ConvolutionParameter *cp = d->layer[0]->convolution_param;
    cp->has_group = 1, cp->group = 2;
    expect_error(import(&net, d, m, NULL, 0), KILN_ERR_SHAPE, "layer 'conv1' (Convolution)",
                 "group 2 does not divide");
    cp->group = 1;
    cp->n_kernel_size = 0;
    expect_error(import(&net, d, m, NULL, 0), KILN_ERR_PARSE, "no kernel given", NULL);
    cp->n_kernel_size = 1;
    Caffe__LayerParameter *l = tb_layer(&t, d, "Concat", "cat", "pool1 data", "cat");
    expect_error(import(&net, d, m, NULL, 0), KILN_ERR_SHAPE, "layer 'cat' (Concat)", NULL);
    l->type = "Softmax";
    l->n_bottom = 1;
    NEWP(&t, l, softmax_param, caffe__softmax_parameter__init);
    l->softmax_param->axis = 4;
    expect_error(import(&net, d, m, NULL, 0), KILN_ERR_SHAPE, "layer 'cat' (Softmax)",
                 "axis 4 is out of range for rank 4");
    tb_free(&t);
}

static void test_allocation_failures(void **state)
{
    tb t = {0};
    Caffe__NetParameter *d, *m;
    small_net(&t, &d, &m);
    long k;
    for (k = 0; k < 5000; k++) {
        kiln_network *net = NULL;
        kiln_alloc_fail_after(k);
        kiln_status st = kiln_network_create(&net);
        if (!st) st = caffe_import_nets(net, d, m, "d", "m", NULL, 0);
        kiln_alloc_fail_after(-1);
        if (st == KILN_OK) assert_int_equal(kiln_network_num_outputs(net), 1);
        kiln_network_destroy(net);
        if (st == KILN_OK) break;
        if (st != KILN_ERR_OUT_OF_MEMORY) print_error("%s\n", kiln_last_error());
        assert_int_equal(st, KILN_ERR_OUT_OF_MEMORY);
    }
    assert_true(k < 5000);
    tb_free(&t);
}

/* ---- files ---- */

static char g_dir[64];

static const char *tmp_path(const char *name)
{
    static char buf[16][128];
    static int i;
    i = (i + 1) % 16;
    snprintf(buf[i], sizeof buf[i], "%s/%s", g_dir, name);
    return buf[i];
}

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

static void write_model(const Caffe__NetParameter *m, const char *path)
{
    size_t n = caffe__net_parameter__get_packed_size(m);
    uint8_t *buf = malloc(n);
    caffe__net_parameter__pack(m, buf);
    write_file(path, buf, n);
    free(buf);
}

static const char SMALL_PROTOTXT[] = "name: \"small\"\n"
                                     "input: \"data\"\n"
                                     "input_shape { dim: 1 dim: 1 dim: 3 dim: 3 }\n"
                                     "layer {\n"
                                     "  name: \"conv1\" type: \"Convolution\"\n"
                                     "  bottom: \"data\" top: \"conv1\"\n"
                                     "  param { lr_mult: 1 } param { lr_mult: 2 }\n"
                                     "  convolution_param {\n"
                                     "    num_output: 2 kernel_size: 2\n"
                                     "    weight_filler { type: \"xavier\" }\n"
                                     "  }\n"
                                     "}\n"
                                     "layer { name: \"relu1\" type: \"ReLU\" bottom: \"conv1\" "
                                     "top: \"conv1\" }\n"
                                     "layer {\n"
                                     "  name: \"pool1\" type: \"Pooling\" bottom: \"conv1\" top: "
                                     "\"pool1\"\n"
                                     "  pooling_param { pool: MAX kernel_size: 2 }\n"
                                     "}\n"
                                     "layer { name: \"relu2\" type: \"ReLU\" bottom: \"pool1\" "
                                     "top: \"pool1\" }\n";

static void test_files(void **state)
{
    tb t = {0};
    Caffe__NetParameter *d, *m;
    small_net(&t, &d, &m);
    const char *proto = tmp_path("deploy.prototxt"), *model = tmp_path("small.caffemodel");
    const char *junk = tmp_path("junk.caffemodel");
    write_model(m, model);
    write_file(proto, SMALL_PROTOTXT, strlen(SMALL_PROTOTXT));
    kiln_network *net = NULL;
    assert_int_equal(kiln_network_create(&net), KILN_OK);
    expect_error(kiln_caffe_parse_files(net, tmp_path("missing.prototxt"), model, NULL, 0),
                 KILN_ERR_IO, "cannot open prototxt", "missing.prototxt");
    kiln_status st = kiln_caffe_parse_files(net, proto, model, NULL, 0);
    if (st) print_error("%s\n", kiln_last_error());
    assert_int_equal(st, KILN_OK);
    float pool[2];
    binding in[] = {{"data", (void *)SMALL_X}, {NULL, NULL}};
    binding out[] = {{"pool1", pool}, {NULL, NULL}};
    run_free(net, in, out);
    small_expect(NULL, pool);
    /* a second import into a used network is refused */
    expect_error(kiln_caffe_parse_files(net, proto, model, NULL, 0), KILN_ERR_INVALID_ARGUMENT,
                 "the network is not empty", NULL);
    kiln_network_destroy(net);
    /* a caffemodel that is not one, truncated or garbage */
    assert_int_equal(kiln_network_create(&net), KILN_OK);
    write_file(junk, "\x0a\xff\xff\xff\xff\x0f", 6);
    expect_error(kiln_caffe_parse_files(net, proto, junk, NULL, 0), KILN_ERR_PARSE,
                 "not a valid caffemodel", "junk.caffemodel");
    expect_error(kiln_caffe_parse_files(net, proto, proto, NULL, 0), KILN_ERR_PARSE,
                 "deploy.prototxt", NULL);
    /* prototxt errors carry the line */
    const char *bad = "input: \"data\"\nlayer {\n  name: \"x\"\n  bogus_field: 3\n}\n";
    write_file(junk, bad, strlen(bad));
    expect_error(kiln_caffe_parse_files(net, junk, model, NULL, 0), KILN_ERR_PARSE,
                 "junk.caffemodel:4:", NULL);
    assert_int_equal(kiln_network_num_layers(net), 0);
    kiln_network_destroy(net);
    /* the legacy text form: layers { type: CONVOLUTION } with input_dim */
    const char *v1 = "input: \"data\"\ninput_dim: 1 input_dim: 1 input_dim: 3 input_dim: 3\n"
                     "layers { name: \"conv1\" type: CONVOLUTION bottom: \"data\" top: \"conv1\"\n"
                     "  blobs_lr: 1 blobs_lr: 2\n"
                     "  convolution_param { num_output: 2 kernel_size: 2 } }\n"
                     "layers { name: \"relu1\" type: RELU bottom: \"conv1\" top: \"conv1\" }\n"
                     "layers { name: \"pool1\" type: POOLING bottom: \"conv1\" top: \"pool1\"\n"
                     "  pooling_param { pool: MAX kernel_size: 2 } }\n"
                     "layers { name: \"relu2\" type: RELU bottom: \"pool1\" top: \"pool1\" }\n";
    const char *v1_path = tmp_path("v1.prototxt");
    write_file(v1_path, v1, strlen(v1));
    assert_int_equal(kiln_network_create(&net), KILN_OK);
    st = kiln_caffe_parse_files(net, v1_path, model, NULL, 0);
    if (st) print_error("%s\n", kiln_last_error());
    assert_int_equal(st, KILN_OK);
    run_free(net, in, out);
    small_expect(NULL, pool);
    kiln_network_destroy(net);
    /* failing allocations anywhere in reading, decoding and importing */
    long k;
    for (k = 0; k < 5000; k++) {
        net = NULL;
        kiln_alloc_fail_after(k);
        st = kiln_network_create(&net);
        if (!st) st = kiln_caffe_parse_files(net, proto, model, NULL, 0);
        kiln_alloc_fail_after(-1);
        kiln_network_destroy(net);
        if (st == KILN_OK) break;
        if (st != KILN_ERR_OUT_OF_MEMORY) print_error("%s\n", kiln_last_error());
        assert_int_equal(st, KILN_ERR_OUT_OF_MEMORY);
    }
    assert_true(k < 5000);
    remove(proto), remove(model), remove(junk), remove(v1_path);
    tb_free(&t);
}

/* SSD's layers (kiln's caffe.* ops) and Crop/ArgMax, from a text prototxt. */
static const char SSD_PROTOTXT[] =
    "input: \"feat\" input_shape { dim: 1 dim: 2 dim: 2 dim: 2 }\n"
    "input: \"image\" input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }\n"
    "input: \"loc\" input_shape { dim: 1 dim: 16 }\n"
    "input: \"conf\" input_shape { dim: 1 dim: 8 }\n"
    "input: \"big\" input_shape { dim: 1 dim: 2 dim: 4 dim: 4 }\n"
    "layer { name: \"norm\" type: \"Normalize\" bottom: \"feat\" top: \"norm\"\n"
    "  norm_param { across_spatial: false channel_shared: false\n"
    "    scale_filler { type: \"constant\" value: 20 } } }\n"
    "layer { name: \"crop\" type: \"Crop\" bottom: \"big\" bottom: \"feat\" top: \"crop\"\n"
    "  crop_param { axis: 2 offset: 1 } }\n"
    "layer { name: \"argmax\" type: \"ArgMax\" bottom: \"feat\" top: \"am\"\n"
    "  argmax_param { axis: 1 } }\n"
    "layer { name: \"prior\" type: \"PriorBox\" bottom: \"feat\" bottom: \"image\" top: \"prior\"\n"
    "  prior_box_param { min_size: 4 clip: false variance: 0.1 variance: 0.1\n"
    "    variance: 0.2 variance: 0.2 } }\n"
    "layer { name: \"det\" type: \"DetectionOutput\" bottom: \"loc\" bottom: \"conf\"\n"
    "  bottom: \"prior\" top: \"det\"\n"
    "  include { phase: TEST }\n"
    "  detection_output_param { num_classes: 2 share_location: true background_label_id: 0\n"
    "    nms_param { nms_threshold: 0.45 top_k: 10 } code_type: CENTER_SIZE keep_top_k: 4\n"
    "    confidence_threshold: 0.5\n"
    "    save_output_param { label_map_file: \"labels.prototxt\" } } }\n";

static void test_ssd_layers(void **state)
{
    tb t = {0};
    Caffe__NetParameter *m = tb_net(&t);
    const float scale[2] = {2, 3};
    tb_blobs(&t, m, "norm", scale, 2, 1, (int64_t[]){2});
    const char *proto = tmp_path("ssd.prototxt"), *model = tmp_path("ssd.caffemodel");
    write_model(m, model);
    write_file(proto, SSD_PROTOTXT, strlen(SSD_PROTOTXT));
    kiln_network *net = NULL;
    assert_int_equal(kiln_network_create(&net), KILN_OK);
    const char *outs[] = {"norm", "crop", "am", "prior", "det"};
    kiln_status st = kiln_caffe_parse_files(net, proto, model, outs, 5);
    if (st) print_error("%s\n", kiln_last_error());
    assert_int_equal(st, KILN_OK);
    float feat[8] = {1, -2, 3, 0.5f, 2, 2, -1, 4}, image[192] = {0}, loc[16] = {0}, big[32];
    const float conf[8] = {0.1f, 0.9f, 0.9f, 0.1f, 0.8f, 0.2f, 0.3f, 0.7f};
    for (int i = 0; i < 32; i++) big[i] = (float)i;
    float norm[8], crop[8], am[4], prior[32], det[28];
    binding in[] = {{"feat", feat},         {"image", image}, {"loc", loc},
                    {"conf", (void *)conf}, {"big", big},     {NULL, NULL}};
    binding out[] = {{"norm", norm},   {"crop", crop}, {"am", am},
                     {"prior", prior}, {"det", det},   {NULL, NULL}};
    kiln_engine *e = run(net, in, out);
    expect_shape(e, "am", 4, (int64_t[]){1, 1, 2, 2});
    expect_shape(e, "prior", 3, (int64_t[]){1, 2, 16});
    expect_shape(e, "det", 4, (int64_t[]){1, 1, 4, 7});
    kiln_engine_destroy(e);
    for (int p = 0; p < 4; p++) {
        double n = sqrt((double)feat[p] * feat[p] + (double)feat[4 + p] * feat[4 + p] + 1e-10);
        assert_true(fabs(norm[p] - feat[p] / n * 2) < 1e-5);
        assert_true(fabs(norm[4 + p] - feat[4 + p] / n * 3) < 1e-5);
        assert_true(am[p] == (feat[4 + p] > feat[p] ? 1.0f : 0.0f));
    }
    for (int c = 0; c < 2; c++)
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 2; j++)
                assert_true(crop[(c * 2 + i) * 2 + j] == big[(c * 4 + i + 1) * 4 + j + 1]);
    /* 2x2 cells of an 8x8 image: step 4, centers 2 and 6, boxes 4 wide. */
    const float boxes[16] = {0, 0,    0.5f, 0.5f, 0.5f, 0,    1, 0.5f,
                             0, 0.5f, 0.5f, 1,    0.5f, 0.5f, 1, 1};
    tu_assert_close(prior, boxes, 16, 1e-6);
    for (int i = 0; i < 16; i++)
        assert_true(fabsf(prior[16 + i] - (i % 4 < 2 ? 0.1f : 0.2f)) < 1e-7f);
    /* zero offsets decode to the priors; class 1 wins at priors 0 and 3 */
    const float want[28] = {0,  1, 0.9f, 0, 0, 0.5f, 0.5f, 0,  1, 0.7f, 0.5f, 0.5f, 1, 1,
                            -1, 0, 0,    0, 0, 0,    0,    -1, 0, 0,    0,    0,    0, 0};
    tu_assert_close(det, want, 28, 1e-6);
    kiln_network_destroy(net);
    remove(proto), remove(model);
    tb_free(&t);
}

static int setup(void **state)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/kiln_caffe_XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state)
{
    rmdir(g_dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_activations),
        cmocka_unit_test(test_convolution),
        cmocka_unit_test(test_pooling),
        cmocka_unit_test(test_inner_product),
        cmocka_unit_test(test_lrn_softmax),
        cmocka_unit_test(test_batchnorm_scale_bias),
        cmocka_unit_test(test_eltwise_concat_slice),
        cmocka_unit_test(test_flatten_reshape_permute),
        cmocka_unit_test(test_in_place_and_outputs),
        cmocka_unit_test(test_v1_layers),
        cmocka_unit_test(test_inputs),
        cmocka_unit_test(test_phase_rules),
        cmocka_unit_test(test_bad_weights),
        cmocka_unit_test(test_bad_layers),
        cmocka_unit_test(test_allocation_failures),
        cmocka_unit_test(test_files),
        cmocka_unit_test(test_ssd_layers),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
