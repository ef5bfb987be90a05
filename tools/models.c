/* models.c - the built-in networks (lenet, mlp, resblock), defined through kiln.h's layer
 * API with weights from a seeded generator: stand-ins for real models in tests and
 * benchmarks until the model importers exist. */
#include "models.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

typedef struct builder {
    kiln_network *net;
    cli_rng rng;
} builder;

/* The tool's own allocation failures leave no library message: clear a stale one so the
 * caller prints the status alone. */
static kiln_status no_memory(void)
{
    kiln_clear_error();
    return KILN_ERR_OUT_OF_MEMORY;
}

/* A constant of `shape` filled uniformly in [-limit, limit] (plus `offset`). */
static kiln_status add_random(builder *b, const char *name, const kiln_dims *shape, float offset,
                              float limit)
{
    size_t n = 1;
    for (int32_t i = 0; i < shape->rank; i++) n *= (size_t)shape->d[i];
    float *w = malloc(n * sizeof *w);
    if (!w) return no_memory();
    for (size_t i = 0; i < n; i++) w[i] = offset + cli_rng_uniform(&b->rng, -limit, limit);
    kiln_status st =
        kiln_network_add_constant(b->net, name, KILN_DTYPE_F32, shape, w, n * sizeof *w);
    free(w);
    return st;
}

/* "conv1" + ".weight" */
static const char *tensor_name(char *buf, size_t cap, const char *layer, const char *what)
{
    snprintf(buf, cap, "%s.%s", layer, what);
    return buf;
}

/* Conv with a k x k kernel, stride 1; He-uniform weights (limit sqrt(6 / fan_in)) keep
 * activations in a sane range through the layers. */
static kiln_status conv(builder *b, const char *name, const char *in, int64_t cin, int64_t cout,
                        int64_t k, int64_t pad, int with_bias)
{
    char w[128], bias[128];
    kiln_dims ws = {4, {cout, cin, k, k}}, bs = {1, {cout}};
    float limit = sqrtf(6.0f / (float)(cin * k * k));
    kiln_status st = add_random(b, tensor_name(w, sizeof w, name, "weight"), &ws, 0, limit);
    if (st == KILN_OK && with_bias)
        st = add_random(b, tensor_name(bias, sizeof bias, name, "bias"), &bs, 0, 0.05f);
    if (st != KILN_OK) return st;
    const int64_t kernel[2] = {k, k}, strides[2] = {1, 1}, pads[4] = {pad, pad, pad, pad};
    const kiln_attr attrs[] = {KILN_ATTR_IS("kernel_shape", kernel, 2),
                               KILN_ATTR_IS("strides", strides, 2), KILN_ATTR_IS("pads", pads, 4)};
    const char *inputs[] = {in, w, bias};
    return kiln_network_add_layer(b->net, "Conv", name, inputs, with_bias ? 3 : 2, &name, 1, attrs,
                                  3);
}

/* Fully connected as ONNX exporters write it: Gemm(A, B, C) with transB = 1, B is N x K. */
static kiln_status gemm(builder *b, const char *name, const char *in, int64_t k, int64_t n)
{
    char w[128], bias[128];
    kiln_dims ws = {2, {n, k}}, bs = {1, {n}};
    kiln_status st =
        add_random(b, tensor_name(w, sizeof w, name, "weight"), &ws, 0, sqrtf(6.0f / (float)k));
    if (st == KILN_OK)
        st = add_random(b, tensor_name(bias, sizeof bias, name, "bias"), &bs, 0, 0.05f);
    if (st != KILN_OK) return st;
    const kiln_attr attrs[] = {KILN_ATTR_I("transB", 1)};
    const char *inputs[] = {in, w, bias};
    return kiln_network_add_layer(b->net, "Gemm", name, inputs, 3, &name, 1, attrs, 1);
}

/* BatchNormalization in inference form with plausible statistics (scale near 1, variance
 * in [0.5, 1.5]) so that folding it into the conv is exercised on non-trivial numbers. */
static kiln_status batchnorm(builder *b, const char *name, const char *in, int64_t c)
{
    char scale[128], bias[128], mean[128], var[128];
    kiln_dims s = {1, {c}};
    tensor_name(scale, sizeof scale, name, "scale");
    tensor_name(bias, sizeof bias, name, "bias");
    tensor_name(mean, sizeof mean, name, "mean");
    tensor_name(var, sizeof var, name, "var");
    kiln_status st = add_random(b, scale, &s, 1, 0.1f);
    if (st == KILN_OK) st = add_random(b, bias, &s, 0, 0.1f);
    if (st == KILN_OK) st = add_random(b, mean, &s, 0, 0.1f);
    if (st == KILN_OK) st = add_random(b, var, &s, 1, 0.5f);
    if (st != KILN_OK) return st;
    const kiln_attr attrs[] = {KILN_ATTR_F("epsilon", 1e-5f)};
    const char *inputs[] = {in, scale, bias, mean, var};
    return kiln_network_add_layer(b->net, "BatchNormalization", name, inputs, 5, &name, 1, attrs,
                                  1);
}

/* A one-input layer whose output tensor is named like the layer. */
static kiln_status unary(builder *b, const char *op, const char *name, const char *in,
                         const kiln_attr *attrs, int32_t n_attrs)
{
    return kiln_network_add_layer(b->net, op, name, &in, 1, &name, 1, attrs, n_attrs);
}

static kiln_status maxpool2(builder *b, const char *name, const char *in)
{
    static const int64_t two[2] = {2, 2};
    const kiln_attr attrs[] = {KILN_ATTR_IS("kernel_shape", two, 2),
                               KILN_ATTR_IS("strides", two, 2)};
    return unary(b, "MaxPool", name, in, attrs, 2);
}

static kiln_status softmax(builder *b, const char *name, const char *in)
{
    const kiln_attr axis = KILN_ATTR_I("axis", 1);
    return unary(b, "Softmax", name, in, &axis, 1);
}

#define TRY(expr)                                                                                  \
    do {                                                                                           \
        kiln_status try_st_ = (expr);                                                              \
        if (try_st_ != KILN_OK) return try_st_;                                                    \
    } while (0)

/* LeNet-5 as in Caffe's MNIST example (and TensorRT's sampleMNISTAPI). */
static kiln_status define_lenet(builder *b, int64_t batch)
{
    kiln_dims in = {4, {batch, 1, 28, 28}};
    const kiln_attr axis1 = KILN_ATTR_I("axis", 1);
    TRY(kiln_network_add_input(b->net, "data", KILN_DTYPE_F32, &in));
    TRY(conv(b, "conv1", "data", 1, 20, 5, 0, 1));   /* 20 x 24 x 24 */
    TRY(maxpool2(b, "pool1", "conv1"));              /* 20 x 12 x 12 */
    TRY(conv(b, "conv2", "pool1", 20, 50, 5, 0, 1)); /* 50 x 8 x 8 */
    TRY(maxpool2(b, "pool2", "conv2"));              /* 50 x 4 x 4 */
    TRY(unary(b, "Flatten", "flatten", "pool2", &axis1, 1));
    TRY(gemm(b, "ip1", "flatten", 800, 500));
    TRY(unary(b, "Relu", "relu1", "ip1", NULL, 0));
    TRY(gemm(b, "ip2", "relu1", 500, 10));
    TRY(softmax(b, "prob", "ip2"));
    return kiln_network_mark_output(b->net, "prob");
}

/* A three-layer perceptron on flattened 28 x 28 images. */
static kiln_status define_mlp(builder *b, int64_t batch)
{
    kiln_dims in = {2, {batch, 784}};
    TRY(kiln_network_add_input(b->net, "data", KILN_DTYPE_F32, &in));
    TRY(gemm(b, "fc1", "data", 784, 256));
    TRY(unary(b, "Relu", "relu1", "fc1", NULL, 0));
    TRY(gemm(b, "fc2", "relu1", 256, 128));
    TRY(unary(b, "Relu", "relu2", "fc2", NULL, 0));
    TRY(gemm(b, "fc3", "relu2", 128, 10));
    TRY(softmax(b, "prob", "fc3"));
    return kiln_network_mark_output(b->net, "prob");
}

/* A ResNet basic block (conv-bn-relu, conv-bn, + identity, relu) and global pooling. */
static kiln_status define_resblock(builder *b, int64_t batch)
{
    const int64_t c = 16;
    kiln_dims in = {4, {batch, c, 32, 32}};
    TRY(kiln_network_add_input(b->net, "data", KILN_DTYPE_F32, &in));
    TRY(conv(b, "conv1", "data", c, c, 3, 1, 0)); /* no bias: the batch norm has one */
    TRY(batchnorm(b, "bn1", "conv1", c));
    TRY(unary(b, "Relu", "relu1", "bn1", NULL, 0));
    TRY(conv(b, "conv2", "relu1", c, c, 3, 1, 0));
    TRY(batchnorm(b, "bn2", "conv2", c));
    const char *sum_in[] = {"bn2", "data"}, *sum_out = "add";
    TRY(kiln_network_add_layer(b->net, "Add", "add", sum_in, 2, &sum_out, 1, NULL, 0));
    TRY(unary(b, "Relu", "relu2", "add", NULL, 0));
    TRY(unary(b, "GlobalAveragePool", "pool", "relu2", NULL, 0));
    return kiln_network_mark_output(b->net, "pool");
}

typedef struct model {
    const char *name;
    const char *summary;
    kiln_status (*define)(builder *b, int64_t batch);
} model;

static const model g_models[] = {
    {"lenet",
     "LeNet-5 for MNIST: data Nx1x28x28 -> 2x (Conv, MaxPool), Gemm,\n"
     "            Relu, Gemm, Softmax -> prob Nx10",
     define_lenet},
    {"mlp",
     "perceptron: data Nx784 -> 3x Gemm with Relu between, Softmax\n"
     "            -> prob Nx10",
     define_mlp},
    {"resblock",
     "ResNet basic block: data Nx16x32x32 -> 2x (Conv, BatchNorm, Relu),\n"
     "            residual Add, GlobalAveragePool -> pool Nx16x1x1",
     define_resblock},
};
#define N_MODELS ((int32_t)(sizeof g_models / sizeof *g_models))

static const model *find(const char *name)
{
    for (int32_t i = 0; name && i < N_MODELS; i++)
        if (strcmp(g_models[i].name, name) == 0) return &g_models[i];
    return NULL;
}

const char *models_name(int32_t i) { return i >= 0 && i < N_MODELS ? g_models[i].name : NULL; }

const char *models_summary(int32_t i)
{
    return i >= 0 && i < N_MODELS ? g_models[i].summary : NULL;
}

int models_exists(const char *name) { return find(name) != NULL; }

kiln_status models_create(const char *name, int64_t batch, kiln_network **out)
{
    *out = NULL;
    const model *m = find(name);
    if (!m || (batch < 1 && batch != -1)) {
        kiln_clear_error();
        return KILN_ERR_INVALID_ARGUMENT;
    }
    builder b;
    cli_rng_seed(&b.rng, MODELS_SEED);
    kiln_status st = kiln_network_create(&b.net);
    if (st != KILN_OK) return st;
    st = m->define(&b, batch);
    if (st != KILN_OK) {
        kiln_network_destroy(b.net);
        return st;
    }
    *out = b.net;
    return KILN_OK;
}
