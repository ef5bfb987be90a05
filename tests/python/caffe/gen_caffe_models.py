"""Generates the Caffe networks kiln's importer is tested on (deploy .prototxt written by
hand-style text, .caffemodel with seeded random blobs) into a cache folder, regenerating a
model only when this folder's code, kiln's caffe.proto or the versions that shape the
output change. Run alone to fill the cache and print what OpenCV's dnn makes of each:

    python tests/python/caffe/gen_caffe_models.py [--out DIR] [NAME ...]

The cache is $KILN_MODEL_CACHE/caffe, else <dir of $KILN_LIB>/caffe-models.
"""

import argparse
import hashlib
import os
import sys

import numpy as np

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import caffe_writer as W
else:
    from . import caffe_writer as W

HERE = os.path.dirname(os.path.abspath(__file__))
E, Note, Colon, Inline = W.Enum, W.Note, W.Colon, W.Inline

# what training-time files carry and deploy files keep: ignored by importers
LR = [Inline(lr_mult=1, decay_mult=1), Inline(lr_mult=2, decay_mult=0)]
XAVIER = {"type": "xavier"}


# ---- building blocks -------------------------------------------------------------------------


def conv(n, bottom, name, cin, cout, k, stride=1, pad=0, group=1, bias=True, top=None,
         std=None, kind="Convolution", **extra):
    """Convolution (or Deconvolution) with seeded He-style weights."""
    p = {"num_output": cout}
    if not bias:
        p["bias_term"] = False
    if pad:
        p["pad"] = pad
    p["kernel_size"] = k
    if stride != 1:
        p["stride"] = stride
    if group != 1:
        p["group"] = group
    p.update(extra)
    p["weight_filler"] = XAVIER
    if kind == "Deconvolution":
        shape = (cin, cout // group, k, k)
        fan_in = cin // group * k * k // max(stride * stride, 1)
    else:
        shape = (cout, cin // group, k, k)
        fan_in = cin // group * k * k
    w = n.normal(shape, std) if std else n.he(shape, fan_in)
    blobs = [w] + ([n.normal((cout,), 0.1)] if bias else [])
    return n.layer(kind, name, bottom, top or name, blobs=blobs,
                   param=LR[:2 if bias else 1], convolution_param=p)


def ip(n, bottom, name, cin, cout, std=None, **extra):
    w = n.normal((cout, cin), std) if std else n.he((cout, cin), cin)
    return n.layer("InnerProduct", name, bottom, name, blobs=[w, n.normal((cout,), 0.1)],
                   param=LR, inner_product_param={"num_output": cout, **extra,
                                                  "weight_filler": XAVIER})


def relu(n, x, name):
    return n.layer("ReLU", name, x, x)  # in place, as Caffe nets do


BN_SCALE_FACTOR = 999.982  # what Caffe's moving-average normalizer grows to in training


def bn_scale(n, x, c, bn_name, scale_name, gamma=(0.6, 1.4), eps=None):
    """BatchNorm (mean, variance, scale factor: the statistics are stored multiplied by the
    factor, as Caffe keeps them) then Scale with a bias, both in place."""
    mean = n.normal((c,), 0.3)
    var = n.uniform((c,), 0.5, 1.5)
    p = {"use_global_stats": True}
    if eps is not None:
        p["eps"] = eps
    n.layer("BatchNorm", bn_name, x, x, batch_norm_param=p,
            blobs=[mean * BN_SCALE_FACTOR, var * BN_SCALE_FACTOR,
                   np.array([BN_SCALE_FACTOR], np.float32)])
    n.layer("Scale", scale_name, x, x, scale_param={"bias_term": True},
            blobs=[n.uniform((c,), *gamma), n.normal((c,), 0.2)])
    return x


# ---- LeNet (Caffe's examples/mnist/lenet.prototxt, deploy form) ------------------------------


def lenet(seed=1):
    n = W.NetSpec("LeNet", seed, header="LeNet, as in Caffe's examples/mnist (deploy form);\n"
                                        "random weights for kiln's tests")
    n.input("data", (2, 1, 28, 28))
    x = conv(n, "data", "conv1", 1, 20, 5)
    x = n.layer("Pooling", "pool1", x, "pool1",
                pooling_param={"pool": E("MAX"), "kernel_size": 2, "stride": 2})
    x = conv(n, x, "conv2", 20, 50, 5)
    x = n.layer("Pooling", "pool2", x, "pool2",
                pooling_param={"pool": E("MAX"), "kernel_size": 2, "stride": 2})
    x = ip(n, x, "ip1", 800, 500)
    relu(n, x, "relu1")
    x = ip(n, x, "ip2", 500, 10)
    n.layer("Softmax", "prob", x, "prob")
    n.model_only_layer("Data", "mnist", [], ["data", "label"],
                       include=Inline(phase=E("TRAIN")))
    n.model_only_layer("SoftmaxWithLoss", "loss", ["ip2", "label"], ["loss"])
    return n


# ---- AlexNet-shaped --------------------------------------------------------------------------


def alexnet(seed=2):
    n = W.NetSpec("AlexNet-small", seed, header=(
        "AlexNet's structure (bvlc_alexnet deploy.prototxt) at a smaller size: LRN across\n"
        "channels, grouped convolutions, overlapping 3x3/2 max pooling with Caffe's ceil\n"
        "output size (30 -> 15 after conv1), InnerProduct, Dropout, Softmax"))
    n.input("data", (1, 3, 127, 127), form="layer")
    x = conv(n, "data", "conv1", 3, 24, 11, stride=4, std=0.01)
    relu(n, x, "relu1")
    lrn = {"local_size": 5, "alpha": 0.0001, "beta": 0.75}
    x = n.layer("LRN", "norm1", x, "norm1", lrn_param=lrn)
    x = n.layer("Pooling", "pool1", x, "pool1",
                pooling_param={"pool": E("MAX"), "kernel_size": 3, "stride": 2})
    x = conv(n, x, "conv2", 24, 64, 5, pad=2, group=2)
    relu(n, x, "relu2")
    x = n.layer("LRN", "norm2", x, "norm2", lrn_param=lrn)
    x = n.layer("Pooling", "pool2", x, "pool2",
                pooling_param={"pool": E("MAX"), "kernel_size": 3, "stride": 2})
    x = conv(n, x, "conv3", 64, 96, 3, pad=1)
    relu(n, x, "relu3")
    x = conv(n, x, "conv4", 96, 96, 3, pad=1, group=2)
    relu(n, x, "relu4")
    x = conv(n, x, "conv5", 96, 64, 3, pad=1, group=2)
    relu(n, x, "relu5")
    x = n.layer("Pooling", "pool5", x, "pool5",
                pooling_param={"pool": E("MAX"), "kernel_size": 3, "stride": 2})
    x = ip(n, x, "fc6", 64 * 3 * 3, 256)
    relu(n, x, "relu6")
    n.layer("Dropout", "drop6", x, x, dropout_param={"dropout_ratio": 0.5})
    x = ip(n, x, "fc7", 256, 256)
    relu(n, x, "relu7")
    n.layer("Dropout", "drop7", x, x, dropout_param={"dropout_ratio": 0.5})
    x = ip(n, x, "fc8", 256, 100, std=0.005)
    n.layer("Softmax", "prob", x, "prob")
    return n


# ---- ResNet-shaped ---------------------------------------------------------------------------


def _res_block(n, x, cin, width, cout, stride, tag):
    """A bottleneck block named as in Kaiming He's ResNet-50 deploy file."""
    if stride != 1 or cin != cout:
        sc = conv(n, x, f"res{tag}_branch1", cin, cout, 1, stride=stride, bias=False)
        bn_scale(n, sc, cout, f"bn{tag}_branch1", f"scale{tag}_branch1")
    else:
        sc = x
    y = conv(n, x, f"res{tag}_branch2a", cin, width, 1, stride=stride, bias=False)
    bn_scale(n, y, width, f"bn{tag}_branch2a", f"scale{tag}_branch2a")
    relu(n, y, f"res{tag}_branch2a_relu")
    y = conv(n, y, f"res{tag}_branch2b", width, width, 3, pad=1, bias=False)
    bn_scale(n, y, width, f"bn{tag}_branch2b", f"scale{tag}_branch2b", eps=1e-3)
    relu(n, y, f"res{tag}_branch2b_relu")
    y = conv(n, y, f"res{tag}_branch2c", width, cout, 1, bias=False)
    # small gammas on the residual branch keep the sums O(1), as in trained ResNets
    bn_scale(n, y, cout, f"bn{tag}_branch2c", f"scale{tag}_branch2c", gamma=(0.15, 0.4))
    s = n.layer("Eltwise", f"res{tag}", [sc, y], f"res{tag}")
    relu(n, s, f"res{tag}_relu")
    return s


def resnet(seed=3):
    n = W.NetSpec("ResNet-small", seed, header=(
        "ResNet-50's structure (Convolution without bias, BatchNorm, Scale, ReLU in place,\n"
        "Eltwise SUM, projection shortcuts) with fewer blocks and channels"))
    n.input("data", (1, 3, 64, 64), form="layer")
    x = conv(n, "data", "conv1", 3, 16, 7, stride=2, pad=3, bias=False)
    bn_scale(n, x, 16, "bn_conv1", "scale_conv1")
    relu(n, x, "conv1_relu")
    x = n.layer("Pooling", "pool1", x, "pool1",
                pooling_param={"kernel_size": 3, "stride": 2, "pool": E("MAX")},
                comment="32x32 -> 16x16: Caffe rounds the output size up")
    x = _res_block(n, x, 16, 8, 32, 1, "2a")
    x = _res_block(n, x, 32, 8, 32, 1, "2b")
    x = _res_block(n, x, 32, 16, 64, 2, "3a")
    x = _res_block(n, x, 64, 16, 64, 1, "3b")
    x = n.layer("Pooling", "pool5", x, "pool5",
                pooling_param={"pool": E("AVE"), "global_pooling": True})
    x = ip(n, x, "fc10", 64, 10, std=0.3)
    n.layer("Softmax", "prob", x, "prob")
    return n


# ---- MobileNet-SSD-shaped --------------------------------------------------------------------

SSD_CLASSES = 5


def _dw_pw(n, x, cin, cout, stride, tag):
    """A depthwise-separable pair as in MobileNet-SSD: conv<tag>/dw (group = channels) and
    conv<tag> (1x1), each with BatchNorm, Scale and ReLU."""
    y = conv(n, x, f"conv{tag}/dw", cin, cin, 3, stride=stride, pad=1, group=cin, bias=False)
    bn_scale(n, y, cin, f"conv{tag}/dw/bn", f"conv{tag}/dw/scale")
    relu(n, y, f"conv{tag}/dw/relu")
    y = conv(n, y, f"conv{tag}", cin, cout, 1, bias=False)
    bn_scale(n, y, cout, f"conv{tag}/bn", f"conv{tag}/scale")
    relu(n, y, f"conv{tag}/relu")
    return y


def _ssd_head(n, x, cin, name, prior):
    """loc and conf convolutions, permuted to NHWC and flattened, and the PriorBox."""
    ar = prior.get("aspect_ratio", [])
    num = 1 + ("max_size" in prior) + len(ar) * (2 if prior.get("flip", True) else 1)
    outs = []
    for kind, per in (("loc", 4), ("conf", SSD_CLASSES)):
        y = conv(n, x, f"{name}_mbox_{kind}", cin, num * per, 3, pad=1,
                 std=0.02 if kind == "loc" else 0.03)
        y = n.layer("Permute", f"{name}_mbox_{kind}_perm", y, f"{name}_mbox_{kind}_perm",
                    permute_param={"order": [0, 2, 3, 1]})
        outs.append(n.layer("Flatten", f"{name}_mbox_{kind}_flat", y,
                            f"{name}_mbox_{kind}_flat", flatten_param={"axis": 1}))
    p = dict(prior)
    p["variance"] = [0.1, 0.1, 0.2, 0.2]
    pb = n.layer("PriorBox", f"{name}_mbox_priorbox", [x, "data"], f"{name}_mbox_priorbox",
                 prior_box_param=p)
    return outs[0], outs[1], pb


def mobilenet_ssd(seed=4):
    n = W.NetSpec("MobileNet-SSD-small", seed, header=(
        "MobileNet-SSD's structure (chuanqi305's deploy file) at 96x96 with three feature\n"
        "maps (12x12 normalized, 6x6, 3x3) and 5 classes"))
    n.input("data", (1, 3, 96, 96))
    x = conv(n, "data", "conv0", 3, 16, 3, stride=2, pad=1, bias=False)  # 48
    bn_scale(n, x, 16, "conv0/bn", "conv0/scale")
    relu(n, x, "conv0/relu")
    x = _dw_pw(n, x, 16, 32, 1, "1")
    x = _dw_pw(n, x, 32, 48, 2, "2")  # 24
    f1 = _dw_pw(n, x, 48, 64, 2, "3")  # 12
    f2 = _dw_pw(n, f1, 64, 96, 2, "4")  # 6
    y = conv(n, f2, "conv5_1", 96, 32, 1)
    relu(n, y, "conv5_1/relu")
    f3 = conv(n, y, "conv5_2", 32, 64, 3, stride=2, pad=1)  # 3
    relu(n, f3, "conv5_2/relu")
    norm = n.layer("Normalize", "conv3_norm", f1, "conv3_norm",
                   blobs=[n.uniform((64,), 10.0, 30.0)],
                   norm_param={"across_spatial": False, "channel_shared": False,
                               "scale_filler": {"type": "constant", "value": 20}},
                   comment="SSD's L2 normalization of the first feature map")
    heads = [
        _ssd_head(n, norm, 64, "conv3_norm",
                  {"min_size": 15.0, "aspect_ratio": [2.0], "flip": True, "clip": False,
                   "step": 8.0, "offset": 0.5}),
        _ssd_head(n, f2, 96, "conv4",
                  {"min_size": 30.0, "max_size": 55.0, "aspect_ratio": [2.0, 3.0],
                   "flip": True, "clip": False, "step": 16.0}),
        _ssd_head(n, f3, 64, "conv5_2",
                  {"min_size": 55.0, "max_size": 85.0, "aspect_ratio": [2.0],
                   "flip": True, "clip": True}),
    ]
    loc = n.layer("Concat", "mbox_loc", [h[0] for h in heads], "mbox_loc",
                  concat_param={"axis": 1})
    cf = n.layer("Concat", "mbox_conf", [h[1] for h in heads], "mbox_conf",
                 concat_param={"axis": 1})
    pb = n.layer("Concat", "mbox_priorbox", [h[2] for h in heads], "mbox_priorbox",
                 concat_param={"axis": 2})
    cf = n.layer("Reshape", "mbox_conf_reshape", cf, "mbox_conf_reshape",
                 reshape_param={"shape": {"dim": [0, -1, SSD_CLASSES]}})
    cf = n.layer("Softmax", "mbox_conf_softmax", cf, "mbox_conf_softmax",
                 softmax_param={"axis": 2})
    cf = n.layer("Flatten", "mbox_conf_flatten", cf, "mbox_conf_flatten",
                 flatten_param={"axis": 1})
    n.layer("DetectionOutput", "detection_out", [loc, cf, pb], "detection_out",
            include=Inline(phase=E("TEST")),
            detection_output_param={
                "num_classes": SSD_CLASSES, "share_location": True,
                "background_label_id": 0,
                "nms_param": {"nms_threshold": 0.45, "top_k": 100},
                "code_type": E("CENTER_SIZE"), "keep_top_k": 40,
                "confidence_threshold": Note(0.35, "random weights: keep the strong ones")})
    return n


# ---- small networks, a few layers each -------------------------------------------------------


def _stem(n, shape=(1, 3, 8, 8), cout=6, form="input_shape"):
    n.input("data", shape, form=form)
    return conv(n, "data", "conv", shape[1], cout, 3, pad=1)


def act_elu_prelu(seed=10):
    n = W.NetSpec("act_elu_prelu", seed)
    x = _stem(n, form="input_dim")
    n.layer("ELU", "elu", x, "elu", elu_param={"alpha": 0.7})
    n.layer("PReLU", "prelu", x, "prelu", blobs=[n.uniform((6,), -0.5, 0.5)])
    n.layer("PReLU", "prelu_shared", x, "prelu_shared", blobs=[np.array([0.25], np.float32)],
            prelu_param={"channel_shared": True})
    n.layer("ReLU", "leaky", x, "leaky", relu_param={"negative_slope": 0.1})
    return n


def act_power_abs(seed=11):
    n = W.NetSpec("act_power_abs", seed)
    x = _stem(n)
    a = n.layer("AbsVal", "abs", x, "abs")
    n.layer("Power", "pow_frac", a, "pow_frac",
            power_param={"power": 1.5, "scale": 0.5, "shift": 1.0})
    n.layer("Power", "pow_sq", x, "pow_sq",
            power_param={"power": 2, "scale": -1.0, "shift": 0.5})
    n.layer("Power", "pow_affine", x, "pow_affine", power_param={"scale": 2.0, "shift": -0.25})
    return n


def act_exp_log(seed=12):
    n = W.NetSpec("act_exp_log", seed)
    x = _stem(n)
    n.layer("Exp", "exp", x, "exp", exp_param={"scale": 0.5, "shift": 0.1})
    n.layer("Exp", "exp2", x, "exp2", exp_param={"base": 2.0})
    a = n.layer("AbsVal", "abs", x, "abs")
    n.layer("Log", "log", a, "log", log_param={"shift": 1.0})
    n.layer("Log", "log10", a, "log10", log_param={"base": 10.0, "scale": 2.0, "shift": 0.5})
    return n


def act_bnll_tanh_sigmoid(seed=13):
    n = W.NetSpec("act_bnll_tanh_sigmoid", seed)
    x = _stem(n)
    n.layer("BNLL", "bnll", x, "bnll")
    n.layer("TanH", "tanh", x, "tanh")
    n.layer("Sigmoid", "sigmoid", x, "sigmoid")
    return n


def lrn(seed=14):
    n = W.NetSpec("lrn", seed)
    x = _stem(n, (1, 3, 9, 9), cout=8)
    n.layer("LRN", "lrn_across", x, "lrn_across",
            lrn_param={"local_size": 3, "alpha": 0.5, "beta": 0.75, "k": 2.0})
    n.layer("LRN", "lrn_within", x, "lrn_within",
            lrn_param={"norm_region": E("WITHIN_CHANNEL"), "local_size": 3, "alpha": 0.5,
                       "beta": 0.75})
    return n


def eltwise(seed=15):
    n = W.NetSpec("eltwise", seed)
    n.input("data", (1, 3, 6, 6))
    a = conv(n, "data", "a", 3, 4, 3, pad=1)
    b = conv(n, "data", "b", 3, 4, 1)
    c = conv(n, "data", "c", 3, 4, 3, pad=1)
    n.layer("Eltwise", "prod", [a, b, c], "prod", eltwise_param={"operation": E("PROD")})
    n.layer("Eltwise", "max", [a, b, c], "max", eltwise_param={"operation": E("MAX")})
    n.layer("Eltwise", "sum", [a, b, c], "sum",
            eltwise_param={"operation": E("SUM"), "coeff": [1.0, -0.5, 2.0]})
    n.layer("Eltwise", "diff", [a, b], "diff", eltwise_param={"coeff": [1, -1]})
    return n


def threshold(seed=26):
    n = W.NetSpec("threshold", seed)
    x = _stem(n)
    n.layer("Threshold", "step", x, "step", threshold_param={"threshold": 0.25})
    n.layer("Threshold", "step0", x, "step0")
    return n


def slice_split_concat(seed=16):
    n = W.NetSpec("slice_split_concat", seed)
    x = _stem(n, (1, 3, 6, 8), cout=6)
    s = n.layer("Slice", "slice_c", x, ["s0", "s1", "s2"],
                slice_param={"axis": 1, "slice_point": [2, 5]})
    n.layer("Split", "split", s[1], ["s1_a", "s1_b"])
    n.layer("Concat", "concat", ["s2", "s1_a", "s0"], "concat")
    n.layer("Eltwise", "twice", ["s1_a", "s1_b"], "twice")
    n.layer("Slice", "slice_h", x, ["top_half", "bottom_half"],
            slice_param={"axis": 2, "slice_point": 2})
    return n


def crop(seed=17):
    n = W.NetSpec("crop", seed)
    n.input("data", (1, 3, 10, 12))
    big = conv(n, "data", "big", 3, 4, 3, pad=1)  # 1x4x10x12
    ref = conv(n, "data", "ref", 3, 4, 3)  # 1x4x8x10
    ref2 = conv(n, "data", "ref2", 3, 2, 5)  # 1x2x6x8
    n.layer("Crop", "crop_hw", [big, ref], "crop_hw", crop_param={"axis": 2, "offset": [1, 2]})
    n.layer("Crop", "crop_chw", [big, ref2], "crop_chw",
            crop_param={"axis": 1, "offset": [1, 2, 3]})
    n.layer("Crop", "crop_one", [big, ref], "crop_one", crop_param={"offset": 1},
            comment="one offset for every cropped axis")
    return n


def reshape_flatten(seed=18):
    n = W.NetSpec("reshape_flatten", seed)
    x = _stem(n, (1, 3, 4, 6), cout=6)
    n.layer("Reshape", "reshape", x, "reshape",
            reshape_param={"shape": Colon(dim=[0, 2, -1])})
    n.layer("Reshape", "reshape_c", x, "reshape_c",
            reshape_param={"shape": {"dim": [3, 2]}, "axis": 1, "num_axes": 1})
    n.layer("Flatten", "flatten2", x, "flatten2", flatten_param={"axis": 2})
    n.layer("Flatten", "flatten_mid", x, "flatten_mid",
            flatten_param={"axis": 1, "end_axis": 2})
    n.layer("Flatten", "flatten", x, "flatten")
    return n


def bias_scale(seed=19):
    n = W.NetSpec("bias_scale", seed)
    x = _stem(n, (1, 3, 5, 5), cout=4)
    n.layer("Bias", "bias", x, "bias", blobs=[n.normal((4,), 0.5)])
    n.layer("Scale", "scale", x, "scale", blobs=[n.normal((4,), 1.0)])
    n.layer("Scale", "scale_b", x, "scale_b", scale_param={"bias_term": True},
            blobs=[n.normal((4,), 1.0), n.normal((4,), 0.5)])
    g = n.layer("Pooling", "gap", x, "gap", pooling_param={"pool": E("AVE"),
                                                           "global_pooling": True})
    g = n.layer("Flatten", "gap_flat", g, "gap_flat")
    n.layer("Scale", "scale_2in", [x, g], "scale_2in", scale_param={"axis": 0},
            comment="squeeze-and-excitation style: a per-channel factor from a second bottom")
    n.layer("Bias", "bias_2in", [x, g], "bias_2in", bias_param={"axis": 0})
    return n


def argmax(seed=20):
    n = W.NetSpec("argmax", seed)
    x = _stem(n, (1, 3, 4, 4), cout=7)
    n.layer("ArgMax", "argmax_c", x, "argmax_c", argmax_param={"axis": 1})
    n.layer("ArgMax", "argmax_top2", x, "argmax_top2",
            argmax_param={"axis": 1, "top_k": 2, "out_max_val": True})
    f = n.layer("InnerProduct", "fc", x, "fc", blobs=[n.he((10, 112), 112),
                                                      n.normal((10,), 0.1)],
                inner_product_param={"num_output": 10})
    n.layer("ArgMax", "argmax_flat", f, "argmax_flat", argmax_param={"top_k": 3})
    return n


def deconv(seed=21):
    n = W.NetSpec("deconv", seed)
    x = _stem(n, (1, 3, 5, 5), cout=4)
    conv(n, x, "up", 4, 6, 4, stride=2, pad=1, kind="Deconvolution")
    conv(n, x, "deconv_g", 4, 4, 3, pad=1, group=2, bias=False, kind="Deconvolution")
    return n


def conv_variants(seed=22):
    n = W.NetSpec("conv_variants", seed)
    n.input("data", (1, 4, 11, 13))
    conv(n, "data", "dilated", 4, 5, 3, pad=2, dilation=2)
    n.layer("Convolution", "rect", "data", "rect",
            blobs=[n.he((6, 4, 3, 5), 60)],
            convolution_param={"num_output": 6, "bias_term": False, "kernel_h": 3,
                               "kernel_w": 5, "pad_h": 1, "pad_w": 2, "stride_h": 2,
                               "stride_w": 1})
    n.layer("InnerProduct", "fc_t", "data", "fc_t",
            blobs=[n.he((572, 7), 572), n.normal((7,), 0.1)],
            inner_product_param={"num_output": 7, "transpose": True},
            comment="weights stored [input, output]")
    return n


def pooling(seed=23):
    n = W.NetSpec("pooling", seed)
    n.input("data", (1, 3, 10, 11))
    for name, p in (
            ("max_pad", {"pool": E("MAX"), "kernel_size": 3, "stride": 2, "pad": 1}),
            ("ave_pad", {"pool": E("AVE"), "kernel_size": 3, "stride": 2, "pad": 1}),
            ("ave_ceil", {"pool": E("AVE"), "kernel_size": 3, "stride": 3}),
            ("max_rect", {"pool": E("MAX"), "kernel_h": 2, "kernel_w": 3, "stride_h": 2,
                          "stride_w": 3}),
            # the last window would start in the padding: Caffe drops it (5 -> 4)
            ("max_clip", {"pool": E("MAX"), "kernel_size": 2, "stride": 3, "pad": 1}),
            ("ave_clip", {"pool": E("AVE"), "kernel_size": 2, "stride": 3, "pad": 1}),
            ("global_max", {"pool": E("MAX"), "global_pooling": True}),
            ("global_ave", {"pool": E("AVE"), "global_pooling": True})):
        n.layer("Pooling", name, "data", name, pooling_param=p)
    return n


def normalize_permute(seed=24):
    n = W.NetSpec("normalize_permute", seed)
    x = _stem(n, (1, 3, 5, 6), cout=4)
    n.layer("Normalize", "norm_all", x, "norm_all", blobs=[np.array([3.0], np.float32)],
            norm_param={"across_spatial": True, "channel_shared": True})
    n.layer("Normalize", "norm_c", x, "norm_c", blobs=[n.uniform((4,), 1.0, 5.0)],
            norm_param={"across_spatial": False, "channel_shared": False})
    n.layer("Permute", "perm", x, "perm", permute_param={"order": [0, 3, 1, 2]})
    return n


def v1_caffenet(seed=25):
    """The legacy V1 form (`layers { type: CONVOLUTION }`), as the first Caffe model zoo files
    were written, with 4-D legacy blob shapes and the old blobs_lr/weight_decay fields."""
    n = W.NetSpec("CaffeNet-v1-small", seed, legacy=True,
                  header="legacy V1 layer format (Caffe before 2015)")
    n.input("data", (1, 3, 35, 35), form="input_dim")
    old = {"blobs_lr": [1, 2], "weight_decay": [1, 0]}

    def cv(x, name, cin, cout, k, **p):
        return n.layer("CONVOLUTION", name, x, name, **old,
                       blobs=[n.he((cout, cin // p.get("group", 1), k, k),
                                   cin // p.get("group", 1) * k * k),
                              n.normal((cout,), 0.1)],
                       convolution_param={"num_output": cout, "kernel_size": k, **p})

    x = cv("data", "conv1", 3, 16, 5, stride=2)  # 16
    n.layer("RELU", "relu1", x, x)
    x = n.layer("POOLING", "pool1", x, "pool1",
                pooling_param={"pool": E("MAX"), "kernel_size": 3, "stride": 2})  # 8
    x = n.layer("LRN", "norm1", x, "norm1", lrn_param={"local_size": 3, "alpha": 0.01})
    x = cv(x, "conv2", 16, 16, 3, pad=1, group=2)
    n.layer("RELU", "relu2", x, x)
    a = n.layer("POOLING", "pool2", x, "pool2",
                pooling_param={"pool": E("AVE"), "kernel_size": 2, "stride": 2})  # 4
    x = n.layer("INNER_PRODUCT", "fc6", a, "fc6", **old,
                blobs=[n.he((32, 256), 256), n.normal((32,), 0.1)],
                inner_product_param={"num_output": 32})
    n.layer("DROPOUT", "drop6", x, x, dropout_param={"dropout_ratio": 0.5})
    n.layer("TANH", "tanh6", x, x)
    x = n.layer("INNER_PRODUCT", "fc7", x, "fc7", **old,
                blobs=[n.he((10, 32), 32), n.normal((10,), 0.1)],
                inner_product_param={"num_output": 10})
    n.layer("SOFTMAX", "prob", x, "prob")
    return n


# name -> (builder, outputs compared)
MODELS = {
    "lenet": (lenet, ["prob"]),
    "alexnet": (alexnet, ["prob"]),
    "resnet": (resnet, ["prob"]),
    "mobilenet_ssd": (mobilenet_ssd,
                      ["detection_out", "mbox_loc", "mbox_conf_flatten", "mbox_priorbox"]),
    "act_elu_prelu": (act_elu_prelu, ["elu", "prelu", "prelu_shared", "leaky"]),
    "act_power_abs": (act_power_abs, ["abs", "pow_frac", "pow_sq", "pow_affine"]),
    "act_exp_log": (act_exp_log, ["exp", "exp2", "log", "log10"]),
    "act_bnll_tanh_sigmoid": (act_bnll_tanh_sigmoid, ["bnll", "tanh", "sigmoid"]),
    "lrn": (lrn, ["lrn_across", "lrn_within"]),
    "eltwise": (eltwise, ["prod", "max", "sum", "diff"]),
    "threshold": (threshold, ["step", "step0"]),
    "slice_split_concat": (slice_split_concat,
                           ["concat", "twice", "s0", "top_half", "bottom_half"]),
    "crop": (crop, ["crop_hw", "crop_chw", "crop_one"]),
    "reshape_flatten": (reshape_flatten,
                        ["reshape", "reshape_c", "flatten2", "flatten_mid", "flatten"]),
    "bias_scale": (bias_scale, ["bias", "scale", "scale_b", "scale_2in", "bias_2in"]),
    "argmax": (argmax, ["argmax_c", "argmax_top2", "argmax_flat"]),
    "deconv": (deconv, ["up", "deconv_g"]),
    "conv_variants": (conv_variants, ["dilated", "rect", "fc_t"]),
    "pooling": (pooling, ["max_pad", "ave_pad", "ave_ceil", "max_rect", "max_clip",
                          "ave_clip", "global_max", "global_ave"]),
    "normalize_permute": (normalize_permute, ["norm_all", "norm_c", "perm"]),
    "v1_caffenet": (v1_caffenet, ["prob"]),
}

# per-input scale of the random test inputs (default 1): AlexNet sees mean-subtracted
# pixels, large enough that LRN's sum of squares matters
INPUT_STD = {"alexnet": 40.0}


def spec(name):
    return MODELS[name][0]()


def outputs(name):
    return list(MODELS[name][1])


def inputs(name):
    """[(input name, shape)] of a model."""
    return [(i, s) for i, s, _ in spec(name).inputs]


def feeds(name, seed):
    """Seeded random inputs: {name: float32 array}."""
    h = int(hashlib.sha256(f"{name}/{seed}".encode()).hexdigest()[:8], 16)
    rng = np.random.default_rng(h)
    std = INPUT_STD.get(name, 1.0)
    return {i: (std * rng.standard_normal(s)).astype(np.float32) for i, s in inputs(name)}


# ---- cache -----------------------------------------------------------------------------------


def generator_hash():
    """Changes whenever this folder's code, kiln's caffe.proto or the versions that shape
    the output change."""
    import google.protobuf

    h = hashlib.sha256()
    for f in sorted(os.listdir(HERE)):
        if f.endswith(".py"):
            h.update(f.encode())
            with open(os.path.join(HERE, f), "rb") as fh:
                h.update(fh.read())
    h.update(W.schema_hash().encode())
    h.update(f"numpy {np.__version__} protobuf {google.protobuf.__version__}".encode())
    return h.hexdigest()


def cache_dir():
    d = os.environ.get("KILN_MODEL_CACHE")
    if d:
        return os.path.join(d, "caffe")
    lib = os.environ.get("KILN_LIB")
    if not lib:
        raise RuntimeError("set KILN_MODEL_CACHE or KILN_LIB to place the model cache")
    return os.path.join(os.path.dirname(os.path.abspath(lib)), "caffe-models")


def schema(directory=None):
    directory = directory or cache_dir()
    os.makedirs(directory, exist_ok=True)
    return W.load_schema(directory)


def model_paths(name, directory=None):
    """(prototxt, caffemodel) of model `name` in the cache, generated first if missing or
    made by another version of this generator."""
    directory = directory or cache_dir()
    pb2 = schema(directory)
    proto = os.path.join(directory, f"{name}.prototxt")
    weights = os.path.join(directory, f"{name}.caffemodel")
    stamp = os.path.join(directory, f"{name}.stamp")
    want = generator_hash()
    try:
        with open(stamp) as fh:
            fresh = (fh.read().strip() == want and os.path.isfile(proto)
                     and os.path.isfile(weights))
    except OSError:
        fresh = False
    if not fresh:
        spec(name).write(pb2, proto, weights)
        with open(stamp + ".tmp", "w") as fh:
            fh.write(want + "\n")
        os.replace(stamp + ".tmp", stamp)
    return proto, weights


def _producers(spec, outs):
    """{top: (layer name, output index)} of the last layer writing each top (the blob's
    final value when layers work in place)."""
    where = {}
    for lay in spec.layers:
        for k, t in enumerate(lay["top"]):
            where[t] = (lay["name"], k)
    return {o: where[o] for o in outs}


def opencv_forward(proto, weights, feed, outs, spec=None):
    """OpenCV dnn's outputs {top name: array} (CPU, its own backend, Winograd off so 3x3
    convolutions are computed directly). OpenCV names outputs by layer, so tops are found
    through `spec`'s layers."""
    import cv2

    net = cv2.dnn.readNetFromCaffe(proto, weights)
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    if hasattr(net, "enableWinograd"):
        net.enableWinograd(False)
    for k, v in feed.items():
        net.setInput(v, k)
    where = _producers(spec, outs)
    layers = sorted({lay for lay, _ in where.values()})
    res = dict(zip(layers, net.forwardAndRetrieve(layers)))
    return {o: np.array(res[where[o][0]][where[o][1]]) for o in outs}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help=f"models (default all): {', '.join(MODELS)}")
    ap.add_argument("--out", help="cache folder (default: $KILN_MODEL_CACHE/caffe, else next "
                                  "to $KILN_LIB)")
    ap.add_argument("--no-opencv", action="store_true", help="only write the files")
    a = ap.parse_args(argv)
    for name in a.names or MODELS:
        proto, weights = model_paths(name, a.out)
        print(f"{name}: {proto} ({os.path.getsize(weights) / 1024:.0f} KiB of weights)")
        if a.no_opencv:
            continue
        try:
            res = opencv_forward(proto, weights, feeds(name, 0), outputs(name), spec(name))
        except Exception as e:  # noqa: BLE001 - report and go on
            print(f"  opencv: {type(e).__name__}: {str(e).strip().splitlines()[-1]}")
            continue
        for o, v in res.items():
            print(f"  {o} {list(v.shape)}: mean {v.mean():.4g} std {v.std():.4g} "
                  f"min {v.min():.4g} max {v.max():.4g}")


if __name__ == "__main__":
    main()
