/* mnist_api.c - kiln's take on TensorRT's sampleMNISTAPI: define LeNet-5 layer by layer,
 * build an engine, save it as a plan, load it back and classify a batch of four images.
 * Usage: example_mnist_api [PLAN]   (default: mnist.plan in the current directory) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln.h"

#define BATCH   4
#define SIDE    28
#define CLASSES 10

/* ---- weights ----
 * The TensorRT sample loads trained weights from a file. Here they are pseudo-random from
 * a fixed seed, so the example needs no data files; the predictions below are therefore
 * arbitrary. Real trained weights arrive with kiln's Caffe and ONNX importers
 * (kiln_caffe_parse_files, kiln_onnx_parse_file), which fill the same kind of network. */
static uint64_t g_seed = 12345;

static float next_uniform(float limit) /* in [-limit, limit) */
{
    g_seed = g_seed * 6364136223846793005ull + 1442695040888963407ull; /* Knuth's LCG */
    return limit * ((float)(g_seed >> 40) / 8388608.0f - 1.0f);
}

static kiln_status add_weights(kiln_network *net, const char *name, kiln_dims shape, float limit)
{
    size_t n = 1;
    for (int i = 0; i < shape.rank; i++) n *= (size_t)shape.d[i];
    float *w = malloc(n * sizeof *w);
    if (!w) return KILN_ERR_OUT_OF_MEMORY;
    for (size_t i = 0; i < n; i++) w[i] = next_uniform(limit);
    /* The network copies the data, so the buffer can go right away. */
    kiln_status st = kiln_network_add_constant(net, name, KILN_DTYPE_F32, &shape, w, n * sizeof *w);
    free(w);
    return st;
}

#define TRY(call)                                                                                  \
    do {                                                                                           \
        kiln_status st_ = (call);                                                                  \
        if (st_ != KILN_OK) return st_;                                                            \
    } while (0)

/* A 5x5 convolution with bias; the output tensor is named like the layer. */
static kiln_status add_conv(kiln_network *net, const char *name, const char *input, int64_t in_ch,
                            int64_t out_ch)
{
    char w[32], b[32];
    snprintf(w, sizeof w, "%s_w", name);
    snprintf(b, sizeof b, "%s_b", name);
    TRY(add_weights(net, w, (kiln_dims){4, {out_ch, in_ch, 5, 5}}, sqrtf(6.0f / (in_ch * 25))));
    TRY(add_weights(net, b, (kiln_dims){1, {out_ch}}, 0.05f));
    const int64_t kernel[2] = {5, 5};
    const kiln_attr attrs[] = {KILN_ATTR_IS("kernel_shape", kernel, 2)};
    const char *inputs[] = {input, w, b};
    return kiln_network_add_layer(net, "Conv", name, inputs, 3, &name, 1, attrs, 1);
}

/* A 2x2 max pooling with stride 2. */
static kiln_status add_pool(kiln_network *net, const char *name, const char *input)
{
    const int64_t two[2] = {2, 2};
    const kiln_attr attrs[] = {KILN_ATTR_IS("kernel_shape", two, 2),
                               KILN_ATTR_IS("strides", two, 2)};
    return kiln_network_add_layer(net, "MaxPool", name, &input, 1, &name, 1, attrs, 2);
}

/* A fully connected layer: Gemm with weights stored out x in (transB = 1). */
static kiln_status add_fc(kiln_network *net, const char *name, const char *input, int64_t in,
                          int64_t out)
{
    char w[32], b[32];
    snprintf(w, sizeof w, "%s_w", name);
    snprintf(b, sizeof b, "%s_b", name);
    TRY(add_weights(net, w, (kiln_dims){2, {out, in}}, sqrtf(6.0f / in)));
    TRY(add_weights(net, b, (kiln_dims){1, {out}}, 0.05f));
    const kiln_attr attrs[] = {KILN_ATTR_I("transB", 1)};
    const char *inputs[] = {input, w, b};
    return kiln_network_add_layer(net, "Gemm", name, inputs, 3, &name, 1, attrs, 1);
}

/* LeNet-5 as in Caffe's MNIST example: data 4x1x28x28 -> prob 4x10. */
static kiln_status define_lenet(kiln_network *net)
{
    const char *flat = "flatten", *relu = "relu1", *prob = "prob", *pool2 = "pool2";
    const char *ip1 = "ip1", *ip2 = "ip2";
    const kiln_attr axis1 = KILN_ATTR_I("axis", 1);
    const kiln_dims input = {4, {BATCH, 1, SIDE, SIDE}};
    TRY(kiln_network_add_input(net, "data", KILN_DTYPE_F32, &input));
    TRY(add_conv(net, "conv1", "data", 1, 20));   /* 20x24x24 */
    TRY(add_pool(net, "pool1", "conv1"));         /* 20x12x12 */
    TRY(add_conv(net, "conv2", "pool1", 20, 50)); /* 50x8x8 */
    TRY(add_pool(net, "pool2", "conv2"));         /* 50x4x4 */
    TRY(kiln_network_add_layer(net, "Flatten", "flatten", &pool2, 1, &flat, 1, &axis1, 1));
    TRY(add_fc(net, "ip1", "flatten", 800, 500));
    TRY(kiln_network_add_layer(net, "Relu", "relu1", &ip1, 1, &relu, 1, NULL, 0));
    TRY(add_fc(net, "ip2", "relu1", 500, CLASSES));
    TRY(kiln_network_add_layer(net, "Softmax", "prob", &ip2, 1, &prob, 1, &axis1, 1));
    return kiln_network_mark_output(net, "prob");
}

/* ---- input: four hand-drawn digits (1, 0, 7, 4), white strokes on black as in MNIST ---- */

static void plot(float *img, float x, float y)
{
    for (int dy = -1; dy <= 1; dy++)
        for (int dx = -1; dx <= 1; dx++) {
            int px = (int)lroundf(x) + dx, py = (int)lroundf(y) + dy;
            if (px >= 0 && px < SIDE && py >= 0 && py < SIDE) img[py * SIDE + px] = 1.0f;
        }
}

static void line(float *img, float x0, float y0, float x1, float y1)
{
    for (int i = 0; i <= 32; i++) plot(img, x0 + (x1 - x0) * i / 32, y0 + (y1 - y0) * i / 32);
}

static void draw_digits(float *batch)
{
    memset(batch, 0, sizeof(float) * BATCH * SIDE * SIDE);
    float *one = batch, *zero = one + SIDE * SIDE, *seven = zero + SIDE * SIDE;
    float *four = seven + SIDE * SIDE;
    line(one, 14, 5, 14, 22);
    for (int i = 0; i < 64; i++) plot(zero, 14 + 6 * cosf(i * 0.0982f), 14 + 9 * sinf(i * 0.0982f));
    line(seven, 8, 6, 20, 6);
    line(seven, 20, 6, 12, 22);
    line(four, 17, 5, 17, 22);
    line(four, 17, 5, 7, 16);
    line(four, 7, 16, 21, 16);
}

static void log_warnings(kiln_log_level level, const char *message, void *user)
{
    (void)user;
    fprintf(stderr, "kiln %s: %s\n", level == KILN_LOG_ERROR ? "error" : "warning", message);
}

#define CHECK(call)                                                                                \
    do {                                                                                           \
        kiln_status st_ = (call);                                                                  \
        if (st_ != KILN_OK) {                                                                      \
            fprintf(stderr, "%s failed: %s (%s)\n", #call, kiln_last_error(),                      \
                    kiln_status_name(st_));                                                        \
            goto done;                                                                             \
        }                                                                                          \
    } while (0)

int main(int argc, char **argv)
{
    const char *plan = argc > 1 ? argv[1] : "mnist.plan";
    static float images[BATCH * SIDE * SIDE], probs[BATCH * CLASSES];
    const char *drawn[BATCH] = {"1", "0", "7", "4"};
    kiln_network *net = NULL;
    kiln_config *config = NULL;
    kiln_engine *engine = NULL;
    kiln_context *ctx = NULL;
    int rc = 1;
    kiln_set_logger(log_warnings, NULL, KILN_LOG_WARNING);

    /* Build: network + config -> engine -> plan file. */
    CHECK(kiln_network_create(&net));
    CHECK(define_lenet(net));
    CHECK(kiln_config_create(&config));
    CHECK(kiln_build(net, config, &engine));
    CHECK(kiln_engine_save(engine, plan));
    printf("built LeNet-5 (%d layers) and saved it to %s\n", kiln_network_num_layers(net), plan);
    kiln_engine_destroy(engine);
    engine = NULL;

    /* Deploy: plan file -> engine -> context; bind tensors by name and run. */
    CHECK(kiln_engine_load(plan, &engine));
    CHECK(kiln_context_create(engine, &ctx));
    draw_digits(images);
    CHECK(kiln_context_set_tensor(ctx, "data", images));
    CHECK(kiln_context_set_tensor(ctx, "prob", probs));
    CHECK(kiln_context_run(ctx));

    for (int b = 0; b < BATCH; b++) {
        const float *p = probs + b * CLASSES;
        int best = 0;
        for (int c = 1; c < CLASSES; c++)
            if (p[c] > p[best]) best = c;
        printf("image %d (a drawn %s): class %d, probability %.4f\n", b, drawn[b], best, p[best]);
    }
    printf("(the weights are random, so these classes are arbitrary)\n");
    rc = 0;
done:
    kiln_context_destroy(ctx);
    kiln_engine_destroy(engine);
    kiln_config_destroy(config);
    kiln_network_destroy(net);
    return rc;
}
