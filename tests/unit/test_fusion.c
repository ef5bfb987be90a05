/* test_fusion.c - the fusion passes batchnorm-fold, activation-fusion, gelu and layernorm,
 * through the public API: the layers an engine ends with (ops, inputs, the network layers
 * each stands for), the same numbers with the pass on and off (relative L2 under 1e-5),
 * and what each pass must leave alone. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testnet.h"

#define DIMS(...) TU_DIMS(__VA_ARGS__)

#define TOL 1e-5

/* BatchNormalization `name` over `c` channels reading `x`, writing `name`, with seeded
 * parameters (variances in [0.5, 2)). */
static void batchnorm(kiln_network *net, const char *name, const char *x, int64_t c, uint64_t seed)
{
    char p[4][64];
    const char *suffix[] = {"scale", "b", "mean", "var"};
    for (int i = 0; i < 4; i++) {
        snprintf(p[i], sizeof p[i], "%s.%s", name, suffix[i]);
        tn_weights(net, p[i], 1, &c, seed + (uint64_t)i, i == 3 ? 0.5f : -1.0f,
                   i == 3 ? 2.0f : 1.0f);
    }
    tn_layer(net, "BatchNormalization", name, IN(x, p[0], p[1], p[2], p[3]), OUT(name),
             ATTRS(KILN_ATTR_F("epsilon", 1e-3f)));
}

/* ---- batchnorm-fold ---- */

static void test_bn_fold_conv(void **state)
{
    kiln_network *net = tn_net();
    tn_input(net, "x", DIMS(1, 4, 7, 7));
    tn_weights(net, "w", DIMS(6, 4, 3, 3), 1, -0.5f, 0.5f);
    tn_layer(net, "Conv", "conv", IN("x", "w"), OUT("conv"),
             ATTRS(KILN_ATTR_IS("pads", ((const int64_t[]){1, 1, 1, 1}), 4)));
    batchnorm(net, "bn", "conv", 6, 10);
    tn_output(net, "bn");
    kiln_engine *e = tn_build(net, NULL);
    assert_int_equal(kiln_engine_num_layers(e), 1);
    tn_expect_layer(e, "conv", "Conv", 3, "conv,bn");
    assert_string_equal(kiln_engine_layer_output(e, 0, 0), "bn");
    kiln_engine_destroy(e);
    e = tn_build(net, "batchnorm-fold");
    assert_int_equal(tn_count_op(e, "BatchNormalization"), 1);
    kiln_engine_destroy(e);
    tn_same_numbers(net, "batchnorm-fold", TOL);
    kiln_network_destroy(net);
}

/* Grouped Conv with its own bias, then Relu: folded, then fused. */
static void test_bn_fold_grouped_with_bias(void **state)
{
    kiln_network *net = tn_net();
    tn_input(net, "x", DIMS(2, 4, 6, 5));
    tn_weights(net, "w", DIMS(6, 2, 3, 1), 2, -0.5f, 0.5f);
    tn_weights(net, "b", DIMS(6), 3, -1, 1);
    tn_layer(net, "Conv", "conv", IN("x", "w", "b"), OUT("conv"),
             ATTRS(KILN_ATTR_I("group", 2), KILN_ATTR_IS("strides", ((const int64_t[]){2, 1}), 2)));
    batchnorm(net, "bn", "conv", 6, 20);
    tn_layer(net, "Relu", "relu", IN("bn"), OUT("y"), NO_ATTRS);
    tn_output(net, "y");
    kiln_engine *e = tn_build(net, NULL);
    assert_int_equal(kiln_engine_num_layers(e), 1);
    tn_expect_layer(e, "conv", "kiln.Conv", 3, "conv,bn,relu");
    kiln_engine_destroy(e);
    tn_same_numbers(net, "batchnorm-fold", TOL);
    tn_same_numbers(net, "activation-fusion", TOL);
    kiln_network_destroy(net);
}

static void test_bn_fold_conv_transpose(void **state)
{
    for (int64_t group = 1; group <= 2; group++) {
        kiln_network *net = tn_net();
        tn_input(net, "x", DIMS(1, 4, 5, 5));
        tn_weights(net, "w", DIMS(4, 3, 3, 3), 4, -0.5f, 0.5f); /* out channels 3 * group */
        tn_weights(net, "b", 1, (int64_t[]){3 * group}, 5, -1, 1);
        tn_layer(net, "ConvTranspose", "deconv", IN("x", "w", "b"), OUT("d"),
                 ATTRS(KILN_ATTR_I("group", group),
                       KILN_ATTR_IS("strides", ((const int64_t[]){2, 2}), 2)));
        batchnorm(net, "bn", "d", 3 * group, 30);
        tn_output(net, "bn");
        kiln_engine *e = tn_build(net, NULL);
        assert_int_equal(kiln_engine_num_layers(e), 1);
        tn_expect_layer(e, "deconv", "ConvTranspose", 3, "deconv,bn");
        kiln_engine_destroy(e);
        tn_same_numbers(net, "batchnorm-fold", TOL);
        kiln_network_destroy(net);
    }
}

/* Gemm with transB 0 or 1, with C of shape N, M x N or none, alpha and beta not 1. */
static void test_bn_fold_gemm(void **state)
{
    for (int form = 0; form < 6; form++) {
        bool tb = form % 2, c_full = form / 2 == 1, no_c = form / 2 == 2;
        kiln_network *net = tn_net();
        tn_input(net, "a", DIMS(3, 8));
        tn_weights(net, "b", 2, tb ? (int64_t[]){5, 8} : (int64_t[]){8, 5}, 6, -1, 1);
        tn_weights(net, "c", c_full ? 2 : 1, c_full ? (int64_t[]){3, 5} : (int64_t[]){5}, 7, -1, 1);
        const char *const with_c[] = {"a", "b", "c"};
        tn_layer(net, "Gemm", "fc", with_c, no_c ? 2 : 3, OUT("fc"),
                 ATTRS(KILN_ATTR_I("transB", tb), KILN_ATTR_F("alpha", 1.5f),
                       KILN_ATTR_F("beta", 0.5f)));
        batchnorm(net, "bn", "fc", 5, 40);
        tn_output(net, "bn");
        kiln_engine *e = tn_build(net, NULL);
        assert_int_equal(kiln_engine_num_layers(e), 1);
        tn_expect_layer(e, "fc", "Gemm", 3, "fc,bn");
        kiln_engine_destroy(e);
        tn_same_numbers(net, "batchnorm-fold", TOL);
        kiln_network_destroy(net);
    }
}

/* A BN whose input has two readers, one after a Conv whose output is a network output,
 * and one on a network input: all stay. */
static void test_bn_fold_leaves_alone(void **state)
{
    kiln_network *net = tn_net();
    tn_input(net, "x", DIMS(1, 3, 4, 4));
    tn_weights(net, "w", DIMS(3, 3, 1, 1), 8, -1, 1);
    tn_weights(net, "w2", DIMS(3, 3, 1, 1), 9, -1, 1);
    tn_layer(net, "Conv", "conv1", IN("x", "w"), OUT("c1"), NO_ATTRS);
    batchnorm(net, "bn1", "c1", 3, 50);
    tn_layer(net, "Sigmoid", "other", IN("c1"), OUT("s1"), NO_ATTRS); /* c1's second reader */
    tn_layer(net, "Conv", "conv2", IN("x", "w2"), OUT("c2"), NO_ATTRS);
    batchnorm(net, "bn2", "c2", 3, 60);
    batchnorm(net, "bn3", "x", 3, 70);
    tn_output(net, "bn1");
    tn_output(net, "s1");
    tn_output(net, "c2"); /* conv2's output is bound by name */
    tn_output(net, "bn2");
    tn_output(net, "bn3");
    kiln_engine *e = tn_build(net, NULL);
    assert_int_equal(tn_count_op(e, "BatchNormalization"), 3);
    assert_int_equal(tn_count_op(e, "Conv") + tn_count_op(e, "kiln.Conv"), 2);
    kiln_engine_destroy(e);
    kiln_network_destroy(net);
}

/* ---- activation-fusion ---- */

typedef struct act_form {
    const char *name;
    int layers; /* network layers the activation is written with */
} act_form;

/* Writes activation form `k` from value `x` to `y`; returns false past the last. */
static bool add_activation(kiln_network *net, int k, const char *x, const char *y, act_form *f)
{
    static const char *const plain[] = {"Relu", "Sigmoid", "Tanh", "HardSwish", "Gelu"};
    f->layers = 1;
    if (k < 5) {
        f->name = plain[k];
        tn_layer(net, plain[k], "act", IN(x), OUT(y), NO_ATTRS);
        return true;
    }
    switch (k) {
    case 5:
        f->name = "LeakyRelu";
        tn_layer(net, "LeakyRelu", "act", IN(x), OUT(y), ATTRS(KILN_ATTR_F("alpha", 0.2f)));
        return true;
    case 6:
        f->name = "Elu";
        tn_layer(net, "Elu", "act", IN(x), OUT(y), ATTRS(KILN_ATTR_F("alpha", 0.7f)));
        return true;
    case 7:
        f->name = "HardSigmoid";
        tn_layer(net, "HardSigmoid", "act", IN(x), OUT(y),
                 ATTRS(KILN_ATTR_F("alpha", 0.25f), KILN_ATTR_F("beta", 0.4f)));
        return true;
    case 8:
        f->name = "Clip (Relu6)";
        tn_scalar(net, "lo", 0.0f);
        tn_scalar(net, "hi", 6.0f);
        tn_layer(net, "Clip", "act", IN(x, "lo", "hi"), OUT(y), NO_ATTRS);
        return true;
    case 9:
        f->name = "Clip (max only)";
        tn_scalar(net, "hi", 0.5f);
        tn_layer(net, "Clip", "act", IN(x, "", "hi"), OUT(y), NO_ATTRS);
        return true;
    case 10:
        f->name = "Gelu tanh";
        tn_layer(net, "Gelu", "act", IN(x), OUT(y), ATTRS(KILN_ATTR_S("approximate", "tanh")));
        return true;
    case 11:
        f->name = "x * Sigmoid(x)";
        f->layers = 2;
        tn_layer(net, "Sigmoid", "act", IN(x), OUT("sig"), NO_ATTRS);
        tn_layer(net, "Mul", "silu", IN("sig", x), OUT(y), NO_ATTRS);
        return true;
    case 12:
        f->name = "x * 0.5 * (1 + Erf(x / sqrt 2))";
        f->layers = 5;
        tn_scalar(net, "sqrt2", 1.4142135f);
        tn_scalar(net, "one", 1.0f);
        tn_scalar(net, "half", 0.5f);
        tn_layer(net, "Div", "act", IN(x, "sqrt2"), OUT("t"), NO_ATTRS);
        tn_layer(net, "Erf", "erf", IN("t"), OUT("e"), NO_ATTRS);
        tn_layer(net, "Add", "plus1", IN("e", "one"), OUT("a"), NO_ATTRS);
        tn_layer(net, "Mul", "mx", IN(x, "a"), OUT("m"), NO_ATTRS);
        tn_layer(net, "Mul", "mhalf", IN("m", "half"), OUT(y), NO_ATTRS);
        return true;
    case 13:
        f->name = "0.5 x (1 + Tanh(sqrt(2/pi) (x + 0.044715 x^3)))";
        f->layers = 8;
        tn_scalar(net, "three", 3.0f);
        tn_scalar(net, "c1", 0.044715f);
        tn_scalar(net, "c2", 0.7978846f);
        tn_scalar(net, "one", 1.0f);
        tn_scalar(net, "half", 0.5f);
        tn_layer(net, "Mul", "act", IN(x, "half"), OUT("h"), NO_ATTRS);
        tn_layer(net, "Pow", "cube", IN(x, "three"), OUT("p"), NO_ATTRS);
        tn_layer(net, "Mul", "k", IN("c1", "p"), OUT("kp"), NO_ATTRS);
        tn_layer(net, "Add", "s", IN(x, "kp"), OUT("s"), NO_ATTRS);
        tn_layer(net, "Mul", "u", IN("c2", "s"), OUT("u"), NO_ATTRS);
        tn_layer(net, "Tanh", "th", IN("u"), OUT("th"), NO_ATTRS);
        tn_layer(net, "Add", "plus1", IN("one", "th"), OUT("a"), NO_ATTRS);
        tn_layer(net, "Mul", "prod", IN("h", "a"), OUT(y), NO_ATTRS);
        return true;
    }
    return false;
}

/* Conv + bias + each activation form: one kiln.Conv standing for all of it. */
static void test_act_every_activation(void **state)
{
    act_form f;
    for (int k = 0;; k++) {
        kiln_network *net = tn_net();
        tn_input(net, "x", DIMS(1, 3, 6, 6));
        tn_weights(net, "w", DIMS(4, 3, 3, 3), 9, -0.5f, 0.5f);
        tn_weights(net, "b", DIMS(4), 10, -1, 1);
        tn_layer(net, "Conv", "conv", IN("x", "w", "b"), OUT("c"), NO_ATTRS);
        if (!add_activation(net, k, "c", "y", &f)) {
            kiln_network_destroy(net);
            break;
        }
        tn_output(net, "y");
        kiln_engine *e = tn_build(net, NULL);
        if (kiln_engine_num_layers(e) != 1) fail_msg("%s was not fused", f.name);
        kiln_layer_info li;
        assert_int_equal(kiln_engine_layer_info(e, 0, &li), KILN_OK);
        assert_string_equal(li.op, "kiln.Conv");
        int32_t n = 0;
        while (kiln_engine_layer_fused_from(e, 0, n)) n++;
        if (n != 1 + f.layers)
            fail_msg("%s: fused from %d layers, expected %d", f.name, n, 1 + f.layers);
        kiln_engine_destroy(e);
        /* the written-out GELUs without the gelu pass: activation-fusion matches them */
        e = tn_build(net, "gelu");
        assert_int_equal(kiln_engine_num_layers(e), 1);
        kiln_engine_destroy(e);
        tn_same_numbers(net, "activation-fusion", TOL);
        kiln_network_destroy(net);
    }
}

/* ResNet's relu(bn(conv(x)) + shortcut), the Add in either operand order. */
static void test_act_residual(void **state)
{
    for (int swap = 0; swap < 2; swap++) {
        kiln_network *net = tn_net();
        tn_input(net, "x", DIMS(1, 4, 5, 5));
        tn_weights(net, "w", DIMS(4, 4, 3, 3), 11, -0.5f, 0.5f);
        tn_layer(net, "Conv", "conv", IN("x", "w"), OUT("c"),
                 ATTRS(KILN_ATTR_IS("pads", ((const int64_t[]){1, 1, 1, 1}), 4)));
        batchnorm(net, "bn", "c", 4, 80);
        if (swap)
            tn_layer(net, "Add", "add", IN("x", "bn"), OUT("sum"), NO_ATTRS);
        else
            tn_layer(net, "Add", "add", IN("bn", "x"), OUT("sum"), NO_ATTRS);
        tn_layer(net, "Relu", "relu", IN("sum"), OUT("y"), NO_ATTRS);
        tn_output(net, "y");
        kiln_engine *e = tn_build(net, NULL);
        assert_int_equal(kiln_engine_num_layers(e), 1);
        tn_expect_layer(e, "conv", "kiln.Conv", 4, "conv,bn,add,relu");
        assert_string_equal(kiln_engine_layer_input(e, 0, 3), "x");
        kiln_engine_destroy(e);
        tn_same_numbers(net, "activation-fusion", TOL);
        tn_same_numbers(net, "batchnorm-fold", TOL);
        kiln_network_destroy(net);
    }
}

/* Constant bias vectors added after a Conv (with or without its own bias) join it. */
static void test_act_conv_bias_add(void **state)
{
    for (int own = 0; own < 2; own++) {
        kiln_network *net = tn_net();
        tn_input(net, "x", DIMS(2, 3, 4, 4));
        tn_weights(net, "w", DIMS(5, 3, 1, 1), 12, -1, 1);
        tn_weights(net, "b", DIMS(5), 13, -1, 1);
        tn_weights(net, "v", own ? 3 : 4, own ? (int64_t[]){5, 1, 1} : (int64_t[]){1, 5, 1, 1}, 14,
                   -1, 1);
        const char *const conv_in[] = {"x", "w", "b"};
        tn_layer(net, "Conv", "conv", conv_in, own ? 3 : 2, OUT("c"), NO_ATTRS);
        tn_layer(net, "Add", "bias", IN("v", "c"), OUT("y"), NO_ATTRS);
        tn_output(net, "y");
        kiln_engine *e = tn_build(net, NULL);
        assert_int_equal(kiln_engine_num_layers(e), 1);
        tn_expect_layer(e, "conv", "kiln.Conv", 3, "conv,bias");
        kiln_engine_destroy(e);
        tn_same_numbers(net, "activation-fusion", TOL);
        kiln_network_destroy(net);
    }
}

/* Gemm + bias vector + Tanh; MatMul on rank-3 activations + bias + residual + Relu; a
 * transformer FFN: MatMul + bias + GELU written out. */
static void test_act_gemm_matmul(void **state)
{
    kiln_network *net = tn_net();
    tn_input(net, "a", DIMS(4, 6));
    tn_weights(net, "wb", DIMS(7, 6), 15, -1, 1);
    tn_weights(net, "v", DIMS(7), 16, -1, 1);
    tn_layer(net, "Gemm", "fc", IN("a", "wb"), OUT("g"), ATTRS(KILN_ATTR_I("transB", 1)));
    tn_layer(net, "Add", "bias", IN("g", "v"), OUT("gb"), NO_ATTRS);
    tn_layer(net, "Tanh", "tanh", IN("gb"), OUT("y"), NO_ATTRS);
    tn_output(net, "y");
    kiln_engine *e = tn_build(net, NULL);
    assert_int_equal(kiln_engine_num_layers(e), 1);
    tn_expect_layer(e, "fc", "kiln.Gemm", 3, "fc,bias,tanh");
    kiln_engine_destroy(e);
    tn_same_numbers(net, "activation-fusion", TOL);
    kiln_network_destroy(net);

    net = tn_net();
    tn_input(net, "x", DIMS(2, 5, 8));
    tn_input(net, "r", DIMS(2, 5, 12));
    tn_weights(net, "w", DIMS(8, 12), 17, -1, 1);
    tn_weights(net, "b", DIMS(12), 18, -1, 1);
    tn_layer(net, "MatMul", "mm", IN("x", "w"), OUT("m"), NO_ATTRS);
    tn_layer(net, "Add", "bias", IN("m", "b"), OUT("mb"), NO_ATTRS);
    tn_layer(net, "Add", "res", IN("r", "mb"), OUT("sum"), NO_ATTRS);
    tn_layer(net, "Relu", "relu", IN("sum"), OUT("y"), NO_ATTRS);
    tn_output(net, "y");
    e = tn_build(net, NULL);
    assert_int_equal(kiln_engine_num_layers(e), 1);
    tn_expect_layer(e, "mm", "kiln.MatMul", 4, "mm,bias,res,relu");
    assert_string_equal(kiln_engine_layer_input(e, 0, 2), "b");
    assert_string_equal(kiln_engine_layer_input(e, 0, 3), "r");
    kiln_engine_destroy(e);
    tn_same_numbers(net, "activation-fusion", TOL);
    kiln_network_destroy(net);

    net = tn_net();
    tn_input(net, "x", DIMS(1, 3, 8));
    tn_weights(net, "w", DIMS(8, 16), 19, -1, 1);
    tn_weights(net, "b", DIMS(16), 20, -1, 1);
    tn_layer(net, "MatMul", "mm", IN("x", "w"), OUT("mmo"), NO_ATTRS);
    tn_layer(net, "Add", "bias", IN("b", "mmo"), OUT("mb"), NO_ATTRS);
    act_form f;
    add_activation(net, 12, "mb", "y", &f);
    tn_output(net, "y");
    e = tn_build(net, NULL);
    assert_int_equal(kiln_engine_num_layers(e), 1);
    tn_expect_layer(e, "mm", "kiln.MatMul", 3, "mm,bias,erf,act,plus1,mx,mhalf");
    assert_string_equal(kiln_engine_layer_input(e, 0, 2), "b"); /* used as it is */
    kiln_engine_destroy(e);
    e = tn_build(net, "gelu");
    tn_expect_layer(e, "mm", "kiln.MatMul", 3, "mm,bias,erf,act,plus1,mx,mhalf");
    kiln_engine_destroy(e);
    tn_same_numbers(net, "activation-fusion", TOL);
    kiln_network_destroy(net);
}

/* An activation whose input has two readers, a Conv output that is a network output, a
 * broadcasting Add, a Clip with a bound known only at run time: nothing fuses. */
static void test_act_leaves_alone(void **state)
{
    kiln_network *net = tn_net();
    tn_input(net, "x", DIMS(1, 3, 4, 4));
    tn_input(net, "lo", DIMS(1)); /* not a constant */
    tn_input(net, "bc", DIMS(1, 3, 1, 1));
    char wn[4][8];
    for (int i = 0; i < 4; i++) { /* distinct weights: cse must not merge the Convs */
        snprintf(wn[i], sizeof wn[i], "w%d", i + 1);
        tn_weights(net, wn[i], DIMS(3, 3, 1, 1), 21 + (uint64_t)i, -1, 1);
    }
    tn_layer(net, "Conv", "conv1", IN("x", "w1"), OUT("c1"), NO_ATTRS);
    tn_layer(net, "Relu", "relu1", IN("c1"), OUT("y1"), NO_ATTRS);
    tn_layer(net, "Sigmoid", "sig1", IN("c1"), OUT("s1"), NO_ATTRS);
    tn_layer(net, "Conv", "conv2", IN("x", "w2"), OUT("c2"), NO_ATTRS);
    tn_layer(net, "Relu", "relu2", IN("c2"), OUT("y2"), NO_ATTRS);
    tn_layer(net, "Conv", "conv3", IN("x", "w3"), OUT("c3"), NO_ATTRS);
    tn_layer(net, "Add", "add3", IN("c3", "bc"), OUT("y3"), NO_ATTRS);
    tn_layer(net, "Conv", "conv4", IN("x", "w4"), OUT("c4"), NO_ATTRS);
    tn_layer(net, "Clip", "clip4", IN("c4", "lo"), OUT("y4"), NO_ATTRS);
    const char *outs[] = {"y1", "s1", "c2", "y2", "y3", "y4"};
    for (int i = 0; i < 6; i++) tn_output(net, outs[i]);
    kiln_engine *e = tn_build(net, NULL);
    assert_int_equal(kiln_engine_num_layers(e), 9);
    assert_int_equal(tn_count_op(e, "Conv"), 4);
    assert_int_equal(tn_count_op(e, "kiln.Conv"), 0);
    kiln_engine_destroy(e);
    kiln_network_destroy(net);
}

/* ---- gelu ---- */

/* GELU on a network input in the orders exporters write; `form` picks one. */
static bool gelu_net(kiln_network *net, int form, int *layers)
{
    tn_scalar(net, "sqrt2", 1.41421356f);
    tn_scalar(net, "rsqrt2", 0.70710678f);
    tn_scalar(net, "one", 1.0f);
    tn_scalar(net, "half", 0.5f);
    tn_scalar(net, "three", 3.0f);
    tn_scalar(net, "c1", 0.044715f);
    tn_scalar(net, "c2", 0.79788456f);
    switch (form) {
    case 0: /* (x * a) * 0.5, x / sqrt 2 */
    case 1: /* (x * 0.5) * a, x * (1 / sqrt 2) */
    case 2: /* x * (a * 0.5) */
        if (form == 1)
            tn_layer(net, "Mul", "pre", IN("rsqrt2", "x"), OUT("t"), NO_ATTRS);
        else
            tn_layer(net, "Div", "pre", IN("x", "sqrt2"), OUT("t"), NO_ATTRS);
        tn_layer(net, "Erf", "core", IN("t"), OUT("e"), NO_ATTRS);
        tn_layer(net, "Add", "plus1", IN("one", "e"), OUT("a"), NO_ATTRS);
        break;
    case 3: /* tanh form with Pow */
    case 4: /* tanh form with x * x * x */
        if (form == 3) {
            tn_layer(net, "Pow", "cube", IN("x", "three"), OUT("p"), NO_ATTRS);
            *layers = 1;
        } else {
            tn_layer(net, "Mul", "sq", IN("x", "x"), OUT("x2"), NO_ATTRS);
            tn_layer(net, "Mul", "cube", IN("x2", "x"), OUT("p"), NO_ATTRS);
            *layers = 2;
        }
        tn_layer(net, "Mul", "k", IN("p", "c1"), OUT("kp"), NO_ATTRS);
        tn_layer(net, "Add", "s", IN("kp", "x"), OUT("s"), NO_ATTRS);
        tn_layer(net, "Mul", "u", IN("s", "c2"), OUT("u"), NO_ATTRS);
        tn_layer(net, "Tanh", "core", IN("u"), OUT("e"), NO_ATTRS);
        tn_layer(net, "Add", "plus1", IN("e", "one"), OUT("a"), NO_ATTRS);
        *layers += 5;
        break;
    default: return false;
    }
    if (form < 3) *layers = 3;
    if (form == 0 || form == 3) {
        tn_layer(net, "Mul", "m", IN("x", "a"), OUT("m"), NO_ATTRS);
        tn_layer(net, "Mul", "y", IN("half", "m"), OUT("y"), NO_ATTRS);
    } else if (form == 1 || form == 4) {
        tn_layer(net, "Mul", "m", IN("x", "half"), OUT("m"), NO_ATTRS);
        tn_layer(net, "Mul", "y", IN("a", "m"), OUT("y"), NO_ATTRS);
    } else {
        tn_layer(net, "Mul", "m", IN("a", "half"), OUT("m"), NO_ATTRS);
        tn_layer(net, "Mul", "y", IN("m", "x"), OUT("y"), NO_ATTRS);
    }
    *layers += 2;
    return true;
}

static void test_gelu_forms(void **state)
{
    for (int form = 0;; form++) {
        kiln_network *net = tn_net();
        tn_input(net, "x", DIMS(3, 10));
        int layers = 0;
        if (!gelu_net(net, form, &layers)) {
            kiln_network_destroy(net);
            break;
        }
        tn_output(net, "y");
        kiln_engine *e = tn_build(net, NULL);
        assert_int_equal(kiln_engine_num_layers(e), 1);
        int32_t n = 0;
        while (kiln_engine_layer_fused_from(e, 0, n)) n++;
        if (n != layers)
            fail_msg("form %d: Gelu stands for %d layers, expected %d", form, n, layers);
        assert_int_equal(tn_count_op(e, "Gelu"), 1);
        assert_string_equal(kiln_engine_layer_fused_from(e, 0, 0), "core");
        kiln_engine_destroy(e);
        /* erf against tanh differ by ~1e-3: equal numbers mean the right approximation */
        tn_same_numbers(net, "gelu", TOL);
        kiln_network_destroy(net);
    }
}

/* A constant off by more than 1e-6, an intermediate that is a network output, 0.4 for
 * 0.5: no Gelu. */
static void test_gelu_leaves_alone(void **state)
{
    for (int k = 0; k < 3; k++) {
        kiln_network *net = tn_net();
        tn_input(net, "x", DIMS(2, 5));
        tn_scalar(net, "sqrt2", k == 0 ? 1.4142236f : 1.4142135f);
        tn_scalar(net, "one", 1.0f);
        tn_scalar(net, "half", k == 2 ? 0.4f : 0.5f);
        tn_layer(net, "Div", "pre", IN("x", "sqrt2"), OUT("t"), NO_ATTRS);
        tn_layer(net, "Erf", "core", IN("t"), OUT("e"), NO_ATTRS);
        tn_layer(net, "Add", "plus1", IN("e", "one"), OUT("a"), NO_ATTRS);
        tn_layer(net, "Mul", "m", IN("x", "a"), OUT("m"), NO_ATTRS);
        tn_layer(net, "Mul", "y", IN("m", "half"), OUT("y"), NO_ATTRS);
        tn_output(net, "y");
        if (k == 1) tn_output(net, "e");
        /* elementwise-chain would take what gelu leaves */
        kiln_engine *e = tn_build(net, "elementwise-chain");
        assert_int_equal(tn_count_op(e, "Gelu"), 0);
        assert_int_equal(tn_count_op(e, "Erf"), 1);
        kiln_engine_destroy(e);
        kiln_network_destroy(net);
    }
}

/* ---- layernorm ---- */

/* The Hugging Face opset-11 pattern over the trailing `n_axes` dims of x. `square`:
 * Pow(d, 2) or Mul(d, d); `axes_input`: axes as an input (opset 18) instead of the
 * attribute; `affine`: Mul gamma and Add beta. */
static void layernorm_net(kiln_network *net, int n_axes, bool square_pow, bool axes_input,
                          bool affine, const char *d_name)
{
    static const int64_t last1[] = {-1}, last2[] = {-2, -1};
    const int64_t *axes = n_axes == 1 ? last1 : last2;
    tn_scalar(net, "two", 2.0f);
    tn_scalar(net, "eps", 1e-12f);
    tn_ints(net, "axes", n_axes, axes);
    tn_weights(net, "gamma", n_axes == 1 ? 1 : 2,
               n_axes == 1 ? (int64_t[]){16} : (int64_t[]){5, 16}, 23, 0.5f, 1.5f);
    tn_weights(net, "beta", 1, (int64_t[]){16}, 24, -1, 1);
    kiln_attr ra[] = {KILN_ATTR_IS("axes", axes, n_axes), KILN_ATTR_I("keepdims", 1)};
    if (axes_input) {
        tn_layer(net, "ReduceMean", "mean", IN("x", "axes"), OUT("mean"), ra + 1, 1);
    } else {
        tn_layer(net, "ReduceMean", "mean", IN("x"), OUT("mean"), ra, 2);
    }
    tn_layer(net, "Sub", "sub", IN("x", "mean"), OUT(d_name), NO_ATTRS);
    if (square_pow)
        tn_layer(net, "Pow", "sq", IN(d_name, "two"), OUT("sq"), NO_ATTRS);
    else
        tn_layer(net, "Mul", "sq", IN(d_name, d_name), OUT("sq"), NO_ATTRS);
    if (axes_input)
        tn_layer(net, "ReduceMean", "var", IN("sq", "axes"), OUT("var"), ra + 1, 1);
    else
        tn_layer(net, "ReduceMean", "var", IN("sq"), OUT("var"), ra, 2);
    tn_layer(net, "Add", "addeps", IN("var", "eps"), OUT("ve"), NO_ATTRS);
    tn_layer(net, "Sqrt", "sqrt", IN("ve"), OUT("sd"), NO_ATTRS);
    tn_layer(net, "Div", "div", IN(d_name, "sd"), OUT(affine ? "n" : "y"), NO_ATTRS);
    if (affine) {
        tn_layer(net, "Mul", "scale", IN("n", "gamma"), OUT("g"), NO_ATTRS);
        tn_layer(net, "Add", "shift", IN("beta", "g"), OUT("y"), NO_ATTRS);
    }
}

static void test_layernorm_forms(void **state)
{
    for (int form = 0; form < 4; form++) {
        kiln_network *net = tn_net();
        tn_input(net, "x", DIMS(2, 5, 16));
        bool affine = form != 2;
        layernorm_net(net, form == 3 ? 2 : 1, form != 1, form == 2, affine, "d");
        tn_output(net, "y");
        kiln_engine *e = tn_build(net, NULL);
        assert_int_equal(kiln_engine_num_layers(e), 1);
        tn_expect_layer(e, "mean", "LayerNormalization", affine ? 3 : 2,
                        affine ? "mean,sub,sq,var,addeps,sqrt,div,scale,shift"
                               : "mean,sub,sq,var,addeps,sqrt,div");
        kiln_engine_destroy(e);
        tn_same_numbers(net, "layernorm", TOL);
        kiln_network_destroy(net);
    }
}

/* Axes not the trailing ones, and an intermediate that is a network output. */
static void test_layernorm_leaves_alone(void **state)
{
    kiln_network *net = tn_net();
    tn_input(net, "x", DIMS(2, 5, 16));
    kiln_attr ra[] = {KILN_ATTR_IS("axes", ((const int64_t[]){1}), 1)};
    tn_scalar(net, "eps", 1e-5f);
    tn_layer(net, "ReduceMean", "mean", IN("x"), OUT("mean"), ra, 1);
    tn_layer(net, "Sub", "sub", IN("x", "mean"), OUT("d"), NO_ATTRS);
    tn_layer(net, "Mul", "sq", IN("d", "d"), OUT("sq"), NO_ATTRS);
    tn_layer(net, "ReduceMean", "var", IN("sq"), OUT("var"), ra, 1);
    tn_layer(net, "Add", "addeps", IN("var", "eps"), OUT("ve"), NO_ATTRS);
    tn_layer(net, "Sqrt", "sqrt", IN("ve"), OUT("sd"), NO_ATTRS);
    tn_layer(net, "Div", "div", IN("d", "sd"), OUT("y"), NO_ATTRS);
    tn_output(net, "y");
    kiln_engine *e = tn_build(net, NULL);
    assert_int_equal(tn_count_op(e, "LayerNormalization"), 0);
    kiln_engine_destroy(e);
    kiln_network_destroy(net);

    net = tn_net();
    tn_input(net, "x", DIMS(2, 5, 16));
    layernorm_net(net, 1, true, false, true, "d");
    tn_output(net, "y");
    tn_output(net, "d");
    e = tn_build(net, "elementwise-chain"); /* which would take Add eps + Sqrt */
    assert_int_equal(tn_count_op(e, "LayerNormalization"), 0);
    assert_int_equal(tn_count_op(e, "Sqrt"), 1);
    kiln_engine_destroy(e);
    kiln_network_destroy(net);
}

/* ---- all passes ---- */

static void test_pass_names(void **state)
{
    const char *want[] = {"batchnorm-fold", "gelu", "layernorm", "activation-fusion"};
    for (int i = 0; i < 4; i++) {
        bool found = false;
        for (int32_t k = 0; kiln_pass_name(k); k++) found |= !strcmp(kiln_pass_name(k), want[i]);
        if (!found) fail_msg("pass '%s' is not listed", want[i]);
    }
}

/* conv-bn-relu, a written-out LayerNorm and GELU: one network for all four passes. */
static kiln_network *all_passes_net(void)
{
    kiln_network *net = tn_net();
    tn_input(net, "img", DIMS(1, 2, 1, 16));
    tn_weights(net, "w", DIMS(5, 2, 1, 1), 25, -1, 1);
    tn_layer(net, "Conv", "conv", IN("img", "w"), OUT("c"), NO_ATTRS);
    batchnorm(net, "bn", "c", 5, 90);
    tn_layer(net, "Relu", "relu", IN("bn"), OUT("r"), NO_ATTRS);
    tn_ints(net, "shape", 3, (int64_t[]){1, 5, 16});
    tn_layer(net, "Reshape", "reshape", IN("r", "shape"), OUT("x"), NO_ATTRS);
    layernorm_net(net, 1, true, false, true, "d");
    act_form f;
    add_activation(net, 12, "y", "z", &f);
    tn_output(net, "z");
    return net;
}

static void test_logs_and_plan_round_trip(void **state)
{
    kiln_network *net = all_passes_net();
    const char *capture_text;
    kiln_engine *e = tn_build_logged(net, &capture_text);
    const char *want[] = {
        "batchnorm-fold: 'bn' (BatchNormalization) folded into 'conv' (Conv)",
        "activation-fusion: 'conv' (Conv) + 'relu' (Relu) -> kiln.Conv (activation \"Relu\")",
        "layernorm: 9 layers from 'mean' to 'shift' -> LayerNormalization 'mean'",
        "gelu: 5 layers from 'act' to 'z' -> Gelu (erf) 'erf'"};
    for (int i = 0; i < 4; i++) tn_expect_log(capture_text, want[i]);
    assert_int_equal(tn_count_op(e, "kiln.Conv"), 1);
    assert_int_equal(tn_count_op(e, "LayerNormalization"), 1);
    assert_int_equal(tn_count_op(e, "Gelu"), 1);

    /* The fusions survive a plan round trip, numbers included. */
    void *plan = NULL;
    size_t size = 0;
    kiln_engine *loaded = NULL;
    assert_int_equal(kiln_engine_serialize(e, &plan, &size), KILN_OK);
    assert_int_equal(kiln_engine_load_memory(plan, size, &loaded), KILN_OK);
    kiln_free(plan);
    tn_expect_layer(loaded, "conv", "kiln.Conv", 3, "conv,bn,relu");
    tn_io a, b;
    tn_run(e, &a);
    tn_run(loaded, &b);
    assert_int_equal(a.n, b.n);
    for (int32_t i = 0; i < a.n; i++) assert_memory_equal(a.data[i], b.data[i], a.bytes[i]);
    tn_io_free(&a);
    tn_io_free(&b);
    kiln_engine_destroy(loaded);
    kiln_engine_destroy(e);
    const char *passes[] = {"batchnorm-fold", "gelu", "layernorm", "activation-fusion"};
    for (int i = 0; i < 4; i++) tn_same_numbers(net, passes[i], TOL);
    kiln_network_destroy(net);
}

static void test_allocation_failures(void **state)
{
    /* Each allocation of a build running all four passes fails in turn: every failure is
     * reported as such (leaks are caught by the sanitizer build). */
    kiln_network *net = all_passes_net();
    tu_build_survives_allocation_failures(net);
    kiln_network_destroy(net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bn_fold_conv),
        cmocka_unit_test(test_bn_fold_grouped_with_bias),
        cmocka_unit_test(test_bn_fold_conv_transpose),
        cmocka_unit_test(test_bn_fold_gemm),
        cmocka_unit_test(test_bn_fold_leaves_alone),
        cmocka_unit_test(test_act_every_activation),
        cmocka_unit_test(test_act_residual),
        cmocka_unit_test(test_act_conv_bias_add),
        cmocka_unit_test(test_act_gemm_matmul),
        cmocka_unit_test(test_act_leaves_alone),
        cmocka_unit_test(test_gelu_forms),
        cmocka_unit_test(test_gelu_leaves_alone),
        cmocka_unit_test(test_layernorm_forms),
        cmocka_unit_test(test_layernorm_leaves_alone),
        cmocka_unit_test(test_pass_names),
        cmocka_unit_test(test_logs_and_plan_round_trip),
        cmocka_unit_test(test_allocation_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
