"""Generates the whole-network ONNX models kiln is tested on (opset 17, float32, static
shapes, batch 1 (other batches for bench/), seeded weights) into a cache folder, regenerating a model only when this
generator changes. Run alone to fill the cache and print each model's output statistics:

    python tests/python/models/gen_models.py [--out DIR] [--probe] [NAME ...]

The cache is $KILN_MODEL_CACHE, else <dir of $KILN_LIB>/onnx-models.
"""

import argparse
import hashlib
import os
import sys
import time

import numpy as np
import onnx
from onnx import TensorProto

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import onnx_builder as B
else:
    from . import onnx_builder as B

F32 = np.float32
I64 = np.int64
HERE = os.path.dirname(os.path.abspath(__file__))


# ---- ResNet-50 (torchvision structure, Conv+BN+Relu unfused as exported) -----------------


def _conv_bn(g, x, cin, cout, k, stride=1, conv_name="conv", bn_name="bn", gamma=(0.6, 1.4),
             beta_mean=0.5):
    with g.scope(conv_name):
        x = B.conv(g, x, cin, cout, k, stride)
    with g.scope(bn_name):
        return B.batchnorm(g, x, cout, gamma, beta_mean)


def _bottleneck(g, x, cin, width, stride):
    cout = width * 4
    y = g.op("Relu", [_conv_bn(g, x, cin, width, 1, 1, "conv1", "bn1")])
    y = g.op("Relu", [_conv_bn(g, y, width, width, 3, stride, "conv2", "bn2")])
    # the last BN of a residual branch has small gammas, as in trained ResNets: the
    # residual sum then stays O(1) through 16 blocks
    y = _conv_bn(g, y, width, cout, 1, 1, "conv3", "bn3", gamma=(0.15, 0.4), beta_mean=0.0)
    if stride != 1 or cin != cout:
        with g.scope("downsample"):
            x = _conv_bn(g, x, cin, cout, 1, stride, "0", "1", beta_mean=0.0)
    return g.op("Relu", [g.op("Add", [y, x])])


def resnet50(g, batch=1):
    x = g.input("input", TensorProto.FLOAT, [batch, 3, 224, 224])
    y = g.op("Relu", [_conv_bn(g, x, 3, 64, 7, 2, "conv1", "bn1")])
    with g.scope("maxpool"):
        y = g.op("MaxPool", [y], ceil_mode=0, dilations=[1, 1], kernel_shape=[3, 3],
                 pads=[1, 1, 1, 1], strides=[2, 2])
    cin = 64
    for i, (width, blocks, stride) in enumerate([(64, 3, 1), (128, 4, 2), (256, 6, 2),
                                                 (512, 3, 2)]):
        for b in range(blocks):
            with g.scope(f"layer{i + 1}", b):
                y = _bottleneck(g, y, cin, width, stride if b == 0 else 1)
            cin = width * 4
    with g.scope("avgpool"):
        y = g.op("GlobalAveragePool", [y])
    y = g.op("Flatten", [y], axis=1)
    with g.scope("fc"):
        g.op("Gemm", [y, g.param("weight", g.normal((1000, 2048), 1 / np.sqrt(2048))),
                      g.param("bias", g.normal((1000,), 0.05))],
             out_names=["output"], alpha=1.0, beta=1.0, transB=1)
    g.output("output", TensorProto.FLOAT, [batch, 1000])


# ---- MobileNetV2 -----------------------------------------------------------------------------


def _relu6(g, x):
    return g.op("Clip", [x, "clip_min", "clip_max"])


def _conv_bn_act(g, x, cin, cout, k, stride, groups, act):
    """torchvision's Conv2dNormActivation: children 0 (conv), 1 (bn), 2 (activation)."""
    with g.scope(0):
        x = B.conv(g, x, cin, cout, k, stride, groups=groups)
    with g.scope(1):
        x = B.batchnorm(g, x, cout)
    with g.scope(2):
        return act(g, x)


def mobilenet_v2(g, batch=1):
    x = g.input("input", TensorProto.FLOAT, [batch, 3, 224, 224])
    g.init("clip_min", np.array(0.0, F32))
    g.init("clip_max", np.array(6.0, F32))
    with g.scope("features", 0):
        y = _conv_bn_act(g, x, 3, 32, 3, 2, 1, _relu6)
    cin, idx = 32, 1
    for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = cin * t
            with g.scope("features", idx, "conv"):
                z, k = y, 0
                if t != 1:
                    with g.scope(k):
                        z = _conv_bn_act(g, z, cin, hidden, 1, 1, 1, _relu6)
                    k += 1
                with g.scope(k):
                    z = _conv_bn_act(g, z, hidden, hidden, 3, stride, hidden, _relu6)
                with g.scope(k + 1):
                    z = B.conv(g, z, hidden, c, 1)
                with g.scope(k + 2):
                    z = B.batchnorm(g, z, c, gamma=(0.3, 0.8), beta_mean=0.0)
                if stride == 1 and cin == c:
                    z = g.op("Add", [y, z])
            y, cin, idx = z, c, idx + 1
    with g.scope("features", idx):
        y = _conv_bn_act(g, y, cin, 1280, 1, 1, 1, _relu6)
    y = g.op("GlobalAveragePool", [y])
    y = g.op("Flatten", [y], axis=1)
    with g.scope("classifier", 1):
        w = g.param("weight", g.normal((1000, 1280), 1 / np.sqrt(1280)))
        b = g.param("bias", g.normal((1000,), 0.05))
        g.op("Gemm", [y, w, b], out_names=["output"], alpha=1.0, beta=1.0, transB=1)
    g.output("output", TensorProto.FLOAT, [batch, 1000])


# ---- SqueezeNet 1.1 ----------------------------------------------------------------------------


def _conv_relu(g, x, cin, cout, k, scope, stride=1, pad=None):
    with g.scope(scope):
        y = B.conv(g, x, cin, cout, k, stride, pad=pad, bias=True)
    with g.scope(scope + "_activation"):
        return g.op("Relu", [y])


def _fire(g, x, cin, squeeze, e1, e3):
    s = _conv_relu(g, x, cin, squeeze, 1, "squeeze")
    a = _conv_relu(g, s, squeeze, e1, 1, "expand1x1")
    b = _conv_relu(g, s, squeeze, e3, 3, "expand3x3")
    return g.op("Concat", [a, b], axis=1)


def squeezenet1_1(g, batch=1):
    x = g.input("input", TensorProto.FLOAT, [batch, 3, 224, 224])

    def pool(y, idx):
        with g.scope("features", idx):
            return g.op("MaxPool", [y], ceil_mode=1, kernel_shape=[3, 3], pads=[0, 0, 0, 0],
                        strides=[2, 2])

    with g.scope("features", 0):
        y = B.conv(g, x, 3, 64, 3, 2, pad=0, bias=True)
    with g.scope("features", 1):
        y = g.op("Relu", [y])
    y = pool(y, 2)
    fires = {3: (64, 16, 64, 64), 4: (128, 16, 64, 64), 6: (128, 32, 128, 128),
             7: (256, 32, 128, 128), 9: (256, 48, 192, 192), 10: (384, 48, 192, 192),
             11: (384, 64, 256, 256), 12: (512, 64, 256, 256)}
    for idx in range(3, 13):
        if idx in (5, 8):
            y = pool(y, idx)
            continue
        with g.scope("features", idx):
            y = _fire(g, y, *fires[idx])
    with g.scope("classifier", 1):
        y = B.conv(g, y, 512, 1000, 1, bias=True)
    with g.scope("classifier", 2):
        y = g.op("Relu", [y])
    with g.scope("classifier", 3):
        y = g.op("GlobalAveragePool", [y])
    g.op("Flatten", [y], out_names=["output"], axis=1)
    g.output("output", TensorProto.FLOAT, [batch, 1000])


# ---- EfficientNet-B0 --------------------------------------------------------------------------


def _silu(g, x):
    """SiLU as torch.onnx exports it: x * Sigmoid(x)."""
    return g.op("Mul", [x, g.op("Sigmoid", [x])])


def _mbconv(g, x, cin, cout, expand, k, stride):
    hidden = cin * expand
    y, i = x, 0
    with g.scope("block"):
        if expand != 1:
            with g.scope(i):
                y = _conv_bn_act(g, y, cin, hidden, 1, 1, 1, _silu)
            i += 1
        with g.scope(i):
            y = _conv_bn_act(g, y, hidden, hidden, k, stride, hidden, _silu)
        with g.scope(i + 1):  # squeeze-excitation
            sq = max(1, cin // 4)
            with g.scope("avgpool"):
                s = g.op("GlobalAveragePool", [y])
            with g.scope("fc1"):
                s = B.conv(g, s, hidden, sq, 1, bias=True)
            with g.scope("activation"):
                s = _silu(g, s)
            with g.scope("fc2"):
                s = B.conv(g, s, sq, hidden, 1, bias=True)
            with g.scope("scale_activation"):
                s = g.op("Sigmoid", [s])
            y = g.op("Mul", [s, y])
        with g.scope(i + 2):
            with g.scope(0):
                y = B.conv(g, y, hidden, cout, 1)
            with g.scope(1):
                y = B.batchnorm(g, y, cout, gamma=(0.3, 0.8), beta_mean=0.0)
    if stride == 1 and cin == cout:
        y = g.op("Add", [y, x])
    return y


def efficientnet_b0(g, batch=1):
    x = g.input("input", TensorProto.FLOAT, [batch, 3, 224, 224])
    with g.scope("features", 0):
        y = _conv_bn_act(g, x, 3, 32, 3, 2, 1, _silu)
    cin = 32
    stages = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
              (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]
    for si, (e, k, s, c, n) in enumerate(stages):
        for b in range(n):
            with g.scope("features", si + 1, b):
                y = _mbconv(g, y, cin, c, e, k, s if b == 0 else 1)
            cin = c
    with g.scope("features", 8):
        y = _conv_bn_act(g, y, cin, 1280, 1, 1, 1, _silu)
    with g.scope("avgpool"):
        y = g.op("GlobalAveragePool", [y])
    y = g.op("Flatten", [y], axis=1)
    with g.scope("classifier", 1):
        w = g.param("weight", g.normal((1000, 1280), 1 / np.sqrt(1280)))
        b = g.param("bias", g.normal((1000,), 0.05))
        g.op("Gemm", [y, w, b], out_names=["output"], alpha=1.0, beta=1.0, transB=1)
    g.output("output", TensorProto.FLOAT, [batch, 1000])


# ---- transformer encoder -------------------------------------------------------------------------


def _gelu_erf(g, x):
    """GELU as torch.onnx exports it: x * 0.5 * (1 + erf(x / sqrt(2)))."""
    e = g.op("Erf", [g.op("Div", [x, g.constant(1.4142135381698608)])])
    return g.op("Mul", [g.op("Mul", [x, g.op("Add", [e, g.constant(1.0)])]), g.constant(0.5)])


def _attention(g, x, d, heads, seq, split_shape, merge_shape, mask_bias=None):
    """Multi-head self-attention: projections, heads by Reshape/Transpose,
    MatMul-Div-(Add mask)-Softmax-MatMul, heads merged, output projection."""
    dk = d // heads

    def proj(name, perm):
        with g.scope(name):
            y = B.linear_matmul(g, x, d, d)
            y = g.op("Reshape", [y, g.constant(split_shape, I64)])
            return g.op("Transpose", [y], perm=perm)

    q = proj("query", [0, 2, 1, 3])
    k = proj("key", [0, 2, 3, 1])
    v = proj("value", [0, 2, 1, 3])
    s = g.op("Div", [g.op("MatMul", [q, k]), g.constant(np.sqrt(dk))])
    if mask_bias is not None:
        s = g.op("Add", [s, mask_bias])
    p = g.op("Softmax", [s], axis=-1)
    y = g.op("Transpose", [g.op("MatMul", [p, v])], perm=[0, 2, 1, 3])
    return g.op("Reshape", [y, g.constant(merge_shape, I64)])


def _layernorm_op(g, x, d):
    s = g.param("weight", g.uniform((d,), 0.8, 1.2))
    b = g.param("bias", g.normal((d,), 0.05))
    return g.op("LayerNormalization", [x, s, b], axis=-1, epsilon=1e-5)


def transformer_encoder(g, layers=4, d=256, heads=4, seq=128, ffn=1024, batch=1):
    x = g.input("x", TensorProto.FLOAT, [batch, seq, d])
    for i in range(layers):
        with g.scope("layers", i):
            with g.scope("self_attn"):
                a = _attention(g, x, d, heads, seq, [batch, seq, heads, d // heads],
                               [batch, seq, d])
                with g.scope("out_proj"):
                    a = B.linear_matmul(g, a, d, d)
            with g.scope("norm1"):
                x = _layernorm_op(g, g.op("Add", [x, a]), d)
            with g.scope("linear1"):
                h = B.linear_matmul(g, x, d, ffn)
            with g.scope("activation"):
                h = _gelu_erf(g, h)
            with g.scope("linear2"):
                h = B.linear_matmul(g, h, ffn, d)
            with g.scope("norm2"):
                out = ["y"] if i == layers - 1 else None
                s = g.param("weight", g.uniform((d,), 0.8, 1.2))
                b = g.param("bias", g.normal((d,), 0.05))
                x = g.op("LayerNormalization", [g.op("Add", [x, h]), s, b], out_names=out,
                         axis=-1, epsilon=1e-5)
    g.output("y", TensorProto.FLOAT, [batch, seq, d])


# ---- BERT-base-shaped encoder ---------------------------------------------------------------------


def _layernorm_decomposed(g, x, d, eps=1e-12):
    """LayerNorm as the Hugging Face export at opset 11 writes it: ReduceMean, Sub, Pow,
    ReduceMean, Add eps, Sqrt, Div, Mul gamma, Add beta."""
    s = g.param("weight", g.uniform((d,), 0.8, 1.2))
    b = g.param("bias", g.normal((d,), 0.05))
    m = g.op("ReduceMean", [x], axes=[-1], keepdims=1)
    c = g.op("Sub", [x, m])
    v = g.op("ReduceMean", [g.op("Pow", [c, g.constant(2.0)])], axes=[-1], keepdims=1)
    n = g.op("Div", [c, g.op("Sqrt", [g.op("Add", [v, g.constant(eps)])])])
    return g.op("Add", [g.op("Mul", [n, s]), b])


BERT_VOCAB = 30522


def bert_base(g, layers=12, d=768, heads=12, seq=128, ffn=3072, batch=1, dynamic=False):
    """With `dynamic`, batch and sequence are the symbolic dims "batch" and "seq", and
    the position and token-type ids are sliced to the sequence as Hugging Face's export
    does it (Shape -> Slice of a 512-long buffer)."""
    dims = ["batch", "seq"] if dynamic else [batch, seq]
    ids = g.input("input_ids", TensorProto.INT64, dims)
    mask = g.input("attention_mask", TensorProto.INT64, dims)
    # mask [B, S] -> additive bias [B, 1, 1, S]: 0 where attended, float32 min where not
    with g.scope("bert"):
        m = g.op("Unsqueeze", [mask, g.constant([1], I64)])
        m = g.op("Unsqueeze", [m, g.constant([2], I64)])
        m = g.op("Cast", [m], to=TensorProto.FLOAT)
        m = g.op("Sub", [g.constant(1.0), m])
        bias = g.op("Mul", [m, g.constant(np.finfo(F32).min)])
        with g.scope("embeddings"):
            we = g.param("word_embeddings.weight", g.normal((BERT_VOCAB, d), 1.0))
            pe = g.param("position_embeddings.weight", g.normal((512, d), 0.5))
            te = g.param("token_type_embeddings.weight", g.normal((2, d), 0.5))
            if dynamic:
                n = g.op("Slice", [g.op("Shape", [ids]), g.constant([1], I64),
                                   g.constant([2], I64), g.constant([0], I64)])
                zero, one = g.constant([0], I64), g.constant([1], I64)
                pos = g.op("Slice", [g.init("bert.embeddings.position_ids",
                                            np.arange(512, dtype=I64)[None, :]), zero, n, one])
                tt = g.op("Slice", [g.init("bert.embeddings.token_type_ids",
                                           np.zeros((1, 512), I64)), zero, n, one])
            else:
                pos = g.init("bert.embeddings.position_ids", np.arange(seq, dtype=I64)[None, :])
                tt = g.init("bert.embeddings.token_type_ids", np.zeros((1, seq), I64))
            e = g.op("Add", [g.op("Gather", [we, ids], axis=0),
                             g.op("Gather", [te, tt], axis=0)])
            e = g.op("Add", [e, g.op("Gather", [pe, pos], axis=0)])
            with g.scope("LayerNorm"):
                x = _layernorm_decomposed(g, e, d)
        for i in range(layers):
            with g.scope("encoder", "layer", i):
                with g.scope("attention"):
                    with g.scope("self"):
                        a = _attention(g, x, d, heads, seq, [0, 0, heads, d // heads],
                                       [0, 0, d], mask_bias=bias)
                    with g.scope("output"):
                        with g.scope("dense"):
                            a = B.linear_matmul(g, a, d, d)
                        with g.scope("LayerNorm"):
                            x = _layernorm_decomposed(g, g.op("Add", [a, x]), d)
                with g.scope("intermediate"):
                    with g.scope("dense"):
                        h = B.linear_matmul(g, x, d, ffn)
                    h = _gelu_erf(g, h)
                with g.scope("output"):
                    with g.scope("dense"):
                        h = B.linear_matmul(g, h, ffn, d)
                    with g.scope("LayerNorm"):
                        x = _layernorm_decomposed(g, g.op("Add", [h, x]), d)
        g.op("Identity", [x], out_names=["last_hidden_state"])
        with g.scope("pooler"):
            first = g.op("Gather", [x, g.constant(0, I64)], axis=1)
            with g.scope("dense"):
                p = B.linear_gemm(g, first, d, d)
            g.op("Tanh", [p], out_names=["pooler_output"])
    g.output("last_hidden_state", TensorProto.FLOAT, dims + [d])
    g.output("pooler_output", TensorProto.FLOAT, dims[:1] + [d])


def bert_dynamic(g, batch=1):
    """A BERT-shaped encoder (4 layers, d 256, 4 heads, FFN 1024) with dynamic batch and
    sequence: one model for every (batch, seq) of a profile (`batch` is not used)."""
    bert_base(g, layers=4, d=256, heads=4, ffn=1024, dynamic=True)


# ---- YOLO-style detector -----------------------------------------------------------------------

YOLO_ANCHORS = [[(10, 13), (16, 30), (33, 23)], [(30, 61), (62, 45), (59, 119)],
                [(116, 90), (156, 198), (373, 326)]]
YOLO_CLASSES = 80


def _cbs(g, x, cin, cout, k, stride, scope):
    """YOLOv5's Conv: Conv + BatchNorm + SiLU."""
    with g.scope(scope):
        with g.scope("conv"):
            x = B.conv(g, x, cin, cout, k, stride)
        with g.scope("bn"):
            x = B.batchnorm(g, x, cout)
        with g.scope("act"):
            return _silu(g, x)


def _upsample(g, x):
    """nn.Upsample(scale_factor=2, mode='nearest') as exported at opset 13+."""
    scales = g.constant([1.0, 1.0, 2.0, 2.0])
    return g.op("Resize", [x, "", scales], coordinate_transformation_mode="asymmetric",
                cubic_coeff_a=-0.75, mode="nearest", nearest_mode="floor")


def _detect(g, x, cin, level, h, w, stride, batch):
    no = 5 + YOLO_CLASSES
    na = len(YOLO_ANCHORS[level])
    with g.scope("m", level):
        wt = g.param("weight", g.normal((na * no, cin, 1, 1), 1.0 / np.sqrt(cin)))
        # objectness and class biases as YOLOv5 initializes them (rare positives)
        b = np.zeros((na, no), F32)
        b[:, 4] = np.log(8 / (640 / stride) ** 2)
        b[:, 5:] = np.log(0.6 / (YOLO_CLASSES - 0.99))
        b = g.param("bias", b.reshape(-1) + g.normal((na * no,), 0.1))
        y = g.op("Conv", [x, wt, b], kernel_shape=[1, 1], pads=[0, 0, 0, 0], strides=[1, 1])
    y = g.op("Reshape", [y, g.constant([batch, na, no, h, w], I64)])
    y = g.op("Sigmoid", [g.op("Transpose", [y], perm=[0, 1, 3, 4, 2])])
    xy, wh, conf = g.op("Split", [y, g.constant([2, 2, no - 4], I64)], n_out=3, axis=4)
    gy, gx = np.meshgrid(np.arange(h, dtype=F32), np.arange(w, dtype=F32), indexing="ij")
    grid = np.broadcast_to(np.stack([gx, gy], -1)[None, None] - 0.5, (1, na, h, w, 2))
    anchor = np.broadcast_to(np.array(YOLO_ANCHORS[level], F32).reshape(1, na, 1, 1, 2),
                             (1, na, h, w, 2))
    grid = g.init(f"grid.{level}", np.ascontiguousarray(grid, F32))
    anchor = g.init(f"anchor_grid.{level}", np.ascontiguousarray(anchor, F32))
    xy = g.op("Mul", [g.op("Add", [g.op("Mul", [xy, g.constant(2.0)]), grid]),
                      g.constant(float(stride))])
    wh = g.op("Mul", [g.op("Pow", [g.op("Mul", [wh, g.constant(2.0)]), g.constant(2.0)]),
                      anchor])
    y = g.op("Concat", [xy, wh, conf], axis=4)
    return g.op("Reshape", [y, g.constant([batch, na * h * w, no], I64)])


def yolo_detector(g, size=256, batch=1):
    x = g.input("images", TensorProto.FLOAT, [batch, 3, size, size])
    with g.scope("model"):
        y = _cbs(g, x, 3, 16, 3, 2, 0)          # 1/2
        y = _cbs(g, y, 16, 32, 3, 2, 1)         # 1/4
        y = _cbs(g, y, 32, 32, 3, 1, 2)
        p3 = _cbs(g, y, 32, 64, 3, 2, 3)        # 1/8
        p4 = _cbs(g, p3, 64, 128, 3, 2, 4)      # 1/16
        p5 = _cbs(g, p4, 128, 256, 3, 2, 5)     # 1/32
        p5 = _cbs(g, p5, 256, 128, 1, 1, 6)
        with g.scope(7):
            u = _upsample(g, p5)
        with g.scope(8):
            n4 = g.op("Concat", [u, p4], axis=1)     # 256 channels
        n4 = _cbs(g, n4, 256, 128, 3, 1, 9)
        n4s = _cbs(g, n4, 128, 64, 1, 1, 10)
        with g.scope(11):
            u = _upsample(g, n4s)
        with g.scope(12):
            n3 = g.op("Concat", [u, p3], axis=1)     # 128 channels
        n3 = _cbs(g, n3, 128, 64, 3, 1, 13)
        with g.scope(14):
            outs = [_detect(g, n3, 64, 0, size // 8, size // 8, 8, batch),
                    _detect(g, n4, 128, 1, size // 16, size // 16, 16, batch),
                    _detect(g, p5, 128, 2, size // 32, size // 32, 32, batch)]
            g.op("Concat", outs, out_names=["output"], axis=1)
    n = 3 * sum((size // s) ** 2 for s in (8, 16, 32))
    g.output("output", TensorProto.FLOAT, [batch, n, 5 + YOLO_CLASSES])


# ---- inputs -------------------------------------------------------------------------------------


# A batch of B draws its first sample as the batch of 1 does (numpy fills arrays in order).
def image_feeds(name, shape):
    def feeds(seed, batch=1):
        return {name: np.random.default_rng(seed).random((batch, *shape[1:]), dtype=F32)}
    return feeds


def transformer_feeds(seed, batch=1):
    # an embedding-like input: standard normal
    return {"x": np.random.default_rng(seed).standard_normal((batch, 128, 256)).astype(F32)}


def bert_feeds(seed, seq=128, valid=100, batch=1):
    """Token ids [CLS] ... [SEP] then padding, `valid` long in the first sequence (and
    shorter in later ones), with the attention mask to match."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, BERT_VOCAB, size=(batch, seq), dtype=I64)
    mask = np.zeros((batch, seq), I64)
    for b in range(batch):
        v = max(1, min(seq, valid - 3 * b))
        ids[b, v - 1], ids[b, 0], ids[b, v:] = 102, 101, 0  # [CLS] ... [SEP] [PAD]...
        mask[b, :v] = 1  # trailing zeros: padding
    return {"input_ids": ids, "attention_mask": mask}


# name -> (builder(g, batch=1), seed, feeds(seed, batch=1) -> {input: array})
MODELS = {
    "resnet50": (resnet50, 50, image_feeds("input", (1, 3, 224, 224))),
    "mobilenet_v2": (mobilenet_v2, 2, image_feeds("input", (1, 3, 224, 224))),
    "squeezenet1_1": (squeezenet1_1, 11, image_feeds("input", (1, 3, 224, 224))),
    "efficientnet_b0": (efficientnet_b0, 0, image_feeds("input", (1, 3, 224, 224))),
    "transformer_encoder": (transformer_encoder, 4, transformer_feeds),
    "bert_base": (bert_base, 12, bert_feeds),
    "yolo_detector": (yolo_detector, 5, image_feeds("images", (1, 3, 256, 256))),
}

# Models with dynamic input dims: name -> (builder, seed, feeds(seed, batch, seq)). Not in
# MODELS (whose tests run one static shape); tests/python/test_dynamic_networks.py runs
# them at a grid of shapes.
DYNAMIC_MODELS = {
    "bert_dynamic": (bert_dynamic, 21,
                     lambda seed, batch=2, seq=32: bert_feeds(seed, seq, seq - 2, batch)),
}

CALIBRATION_SEED = 9999  # BN statistics come from an input other than the tests' ones


def _built(name, batch):
    fn, seed, _ = MODELS[name] if name in MODELS else DYNAMIC_MODELS[name]
    g = B.Graph(name, seed)
    fn(g, batch=batch)
    return g


def generate(name, batch=1):
    """The ModelProto of model `name` for a fixed batch size, checked by onnx.checker. A
    batch other than 1 (for benchmarks) gets the batch-1 model's weights and BatchNorm
    statistics: the same network, the same numbers per sample."""
    g = _built(name, 1)
    B.calibrate_batchnorm(g, feeds(name, CALIBRATION_SEED))
    if batch != 1:
        gb = _built(name, batch)
        if list(gb.inits) != list(g.inits):
            raise RuntimeError(f"{name}: the batch-{batch} graph has other initializers")
        gb.inits = g.inits
        g = gb
    model = g.make_model()
    onnx.checker.check_model(model, full_check=True)
    return model


# ---- cache ---------------------------------------------------------------------------------------


def generator_hash():
    """Changes whenever this generator (any .py file beside it) or the versions that
    shape its output change."""
    h = hashlib.sha256()
    for f in sorted(os.listdir(HERE)):
        if f.endswith(".py"):
            h.update(f.encode())
            with open(os.path.join(HERE, f), "rb") as fh:
                h.update(fh.read())
    h.update(f"numpy {np.__version__} onnx {onnx.__version__}".encode())
    return h.hexdigest()


def cache_dir():
    d = os.environ.get("KILN_MODEL_CACHE")
    if d:
        return d
    lib = os.environ.get("KILN_LIB")
    if not lib:
        raise RuntimeError("set KILN_MODEL_CACHE or KILN_LIB to place the model cache")
    return os.path.join(os.path.dirname(os.path.abspath(lib)), "onnx-models")


def model_path(name, directory=None, batch=1):
    """The path of model `name` (for `batch`: NAME.onnx for 1, NAME.bB.onnx otherwise) in
    the cache, generated first if it is missing or was made by another version of this
    generator."""
    directory = directory or cache_dir()
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{name}.onnx" if batch == 1 else f"{name}.b{batch}.onnx")
    stamp = path + ".stamp"
    want = generator_hash()
    try:
        with open(stamp) as fh:
            fresh = fh.read().strip() == want and os.path.isfile(path)
    except OSError:
        fresh = False
    if not fresh:
        model = generate(name, batch)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(model.SerializeToString())
        os.replace(tmp, path)
        with open(stamp + ".tmp", "w") as fh:
            fh.write(want + "\n")
        os.replace(stamp + ".tmp", stamp)
    return path


def feeds(name, seed, batch=1):
    return (MODELS[name] if name in MODELS else DYNAMIC_MODELS[name])[2](seed, batch=batch)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help=f"models (default all): {', '.join(MODELS)}")
    ap.add_argument("--out", help="cache folder (default: $KILN_MODEL_CACHE, else next to "
                                  "$KILN_LIB)")
    ap.add_argument("--probe", action="store_true",
                    help="also print the smallest and largest activation RMS")
    a = ap.parse_args(argv)
    import onnxruntime as ort

    for name in a.names or MODELS:
        t0 = time.perf_counter()
        path = model_path(name, a.out)
        t1 = time.perf_counter()
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        f = feeds(name, 0)
        outs = sess.run(None, f)
        print(f"{name}: {path} ({os.path.getsize(path) / 2**20:.1f} MiB, {t1 - t0:.1f} s)")
        for o, v in zip(sess.get_outputs(), outs):
            print(f"  {o.name} {list(v.shape)}: mean {v.mean():.4g} std {v.std():.4g} "
                  f"min {v.min():.4g} max {v.max():.4g}")
        if a.probe:
            rep = B.activation_report(onnx.load(path), f)
            lo, hi = min(rep, key=lambda r: r[1]), max(rep, key=lambda r: r[1])
            print(f"  activation rms: min {lo[1]:.3g} ({lo[0]}), max {hi[1]:.3g} ({hi[0]})")


if __name__ == "__main__":
    main()
