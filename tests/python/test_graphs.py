"""Small multi-layer networks that the optimizer rewrites (BatchNorm folding, bias and
activation fusion, residual adds, elementwise chains, transpose/reshape elimination,
constant folding): results must equal the numpy composition of the ops, with every pass
on and with each pass switched off."""

import numpy as np
import pytest

import kiln_ctypes as K
from kiln_ctypes import Network, assert_close, build
from test_ops_nn import conv_ref

F32 = np.float32


def _r(rng, shape, lo=-1.0, hi=1.0):
    return rng.uniform(lo, hi, size=shape).astype(F32)


def _bn(x, s, b, m, v, eps=1e-5):
    sh = (1, -1) + (1,) * (x.ndim - 2)
    return (x - m.reshape(sh)) / np.sqrt(v.reshape(sh) + eps) * s.reshape(sh) + b.reshape(sh)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


# Each builder returns (network, feeds, {output: expected}).

def g_conv_bn_relu(rng):
    x, w, b = _r(rng, (2, 3, 7, 7)), _r(rng, (8, 3, 3, 3)), _r(rng, (8,))
    s, bb, m, v = _r(rng, (8,), 0.5, 1.5), _r(rng, (8,)), _r(rng, (8,)), _r(rng, (8,), 0.2, 2)
    net = Network()
    net.add_input("x", F32, x.shape)
    for n, a in [("w", w), ("b", b), ("s", s), ("bb", bb), ("m", m), ("v", v)]:
        net.add_constant(n, a)
    net.add_layer("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1])
    net.add_layer("BatchNormalization", ["c", "s", "bb", "m", "v"], ["n"], name="bn")
    net.add_layer("Relu", ["n"], ["y"], name="relu")
    net.mark_output("y")
    want = np.maximum(_bn(conv_ref(x, w, b, pads=[1, 1, 1, 1]), s, bb, m, v), 0)
    return net, {"x": x}, {"y": want}


def g_conv_residual(rng):
    # y = Relu(Conv(x) + x), plus a second consumer of x
    x, w, b = _r(rng, (1, 4, 6, 6)), _r(rng, (4, 4, 3, 3)), _r(rng, (4,))
    net = Network()
    net.add_input("x", F32, x.shape)
    net.add_constant("w", w)
    net.add_constant("b", b)
    net.add_layer("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1])
    net.add_layer("Add", ["c", "x"], ["a"], name="add")
    net.add_layer("Relu", ["a"], ["y"], name="relu")
    net.add_layer("Sigmoid", ["x"], ["z"], name="sig")
    net.mark_output("y")
    net.mark_output("z")
    c = conv_ref(x, w, b, pads=[1, 1, 1, 1])
    return net, {"x": x}, {"y": np.maximum(c + x, 0), "z": _sigmoid(x.astype(np.float64))}


def g_conv_output_also_consumed(rng):
    # the Conv result is a network output and feeds a Relu: fusion must keep it
    x, w = _r(rng, (1, 3, 5, 5)), _r(rng, (2, 3, 3, 3))
    net = Network()
    net.add_input("x", F32, x.shape)
    net.add_constant("w", w)
    net.add_layer("Conv", ["x", "w"], ["c"], name="conv")
    net.add_layer("Relu", ["c"], ["y"], name="relu")
    net.mark_output("y")
    net.mark_output("c")
    c = conv_ref(x, w)
    return net, {"x": x}, {"y": np.maximum(c, 0), "c": c}


def g_gemm_relu_softmax(rng):
    x, w, b = _r(rng, (4, 16)), _r(rng, (10, 16)), _r(rng, (10,))
    net = Network()
    net.add_input("x", F32, x.shape)
    net.add_constant("w", w)
    net.add_constant("b", b)
    net.add_layer("Gemm", ["x", "w", "b"], ["g"], name="fc", transB=1)
    net.add_layer("Relu", ["g"], ["r"], name="relu")
    net.add_layer("Softmax", ["r"], ["y"], name="sm", axis=-1)
    net.mark_output("y")
    r = np.maximum(x.astype(np.float64) @ w.T + b, 0)
    e = np.exp(r - r.max(-1, keepdims=True))
    return net, {"x": x}, {"y": e / e.sum(-1, keepdims=True)}


def g_matmul_bias_gelu(rng):
    import math

    x, w, b = _r(rng, (2, 5, 12)), _r(rng, (12, 7)), _r(rng, (7,))
    net = Network()
    net.add_input("x", F32, x.shape)
    net.add_constant("w", w)
    net.add_constant("b", b)
    net.add_layer("MatMul", ["x", "w"], ["m"], name="mm")
    net.add_layer("Add", ["m", "b"], ["a"], name="bias")
    net.add_layer("Gelu", ["a"], ["y"], name="gelu")
    net.mark_output("y")
    a = x.astype(np.float64) @ w + b
    erf = np.vectorize(math.erf)
    return net, {"x": x}, {"y": 0.5 * a * (1 + erf(a / math.sqrt(2)))}


def g_swish_chain(rng):
    # y = (x * 2 + 1) * Sigmoid(x * 2 + 1) - 0.5
    x = _r(rng, (3, 17), -3, 3)
    net = Network()
    net.add_input("x", F32, x.shape)
    net.add_constant("two", np.array(2.0, F32))
    net.add_constant("one", np.array([1.0], F32))
    net.add_constant("half", np.array(0.5, F32))
    net.add_layer("Mul", ["x", "two"], ["t"], name="mul")
    net.add_layer("Add", ["t", "one"], ["u"], name="add")
    net.add_layer("Sigmoid", ["u"], ["s"], name="sig")
    net.add_layer("Mul", ["u", "s"], ["v"], name="swish")
    net.add_layer("Sub", ["v", "half"], ["y"], name="sub")
    net.mark_output("y")
    u = x.astype(np.float64) * 2 + 1
    return net, {"x": x}, {"y": u * _sigmoid(u) - 0.5}


def g_transpose_pair_and_reshapes(rng):
    x = _r(rng, (2, 3, 4, 5))
    net = Network()
    net.add_input("x", F32, x.shape)
    net.add_layer("Transpose", ["x"], ["t1"], name="t1", perm=[0, 2, 3, 1])
    net.add_layer("Transpose", ["t1"], ["t2"], name="t2", perm=[0, 3, 1, 2])
    net.add_constant("s1", np.array([2, 60], np.int64))
    net.add_constant("s2", np.array([6, 20], np.int64))
    net.add_layer("Reshape", ["t2", "s1"], ["r1"], name="r1")
    net.add_layer("Reshape", ["r1", "s2"], ["r2"], name="r2")
    net.add_layer("Identity", ["r2"], ["i1"], name="id1")
    net.add_layer("Neg", ["i1"], ["y"], name="neg")
    net.mark_output("y")
    return net, {"x": x}, {"y": -x.reshape(6, 20)}


def g_folded_constants(rng):
    # a constant-only branch (weights * 2 then transposed) feeding a MatMul
    x, w = _r(rng, (3, 4)), _r(rng, (5, 4))
    net = Network()
    net.add_input("x", F32, x.shape)
    net.add_constant("w", w)
    net.add_constant("k", np.array(2.0, F32))
    net.add_layer("Mul", ["w", "k"], ["w2"], name="scale_w")
    net.add_layer("Transpose", ["w2"], ["wt"], name="tr_w", perm=[1, 0])
    net.add_layer("MatMul", ["x", "wt"], ["y"], name="mm")
    net.mark_output("y")
    return net, {"x": x}, {"y": x.astype(np.float64) @ (2 * w.T)}


def g_fan_out_pool(rng):
    x, w = _r(rng, (1, 3, 8, 8)), _r(rng, (4, 3, 1, 1))
    net = Network()
    net.add_input("x", F32, x.shape)
    net.add_constant("w", w)
    net.add_layer("Conv", ["x", "w"], ["c"], name="conv")
    net.add_layer("Relu", ["c"], ["r"], name="relu")
    net.add_layer("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2])
    net.add_layer("GlobalAveragePool", ["r"], ["g"], name="gap")
    net.add_layer("Mul", ["p", "g"], ["y"], name="mul")
    net.mark_output("y")
    r = np.maximum(conv_ref(x, w), 0)
    p = r.reshape(1, 4, 4, 2, 4, 2).max(axis=(3, 5))
    return net, {"x": x}, {"y": p * r.mean(axis=(2, 3), keepdims=True)}


GRAPHS = [g_conv_bn_relu, g_conv_residual, g_conv_output_also_consumed, g_gemm_relu_softmax,
          g_matmul_bias_gelu, g_swish_chain, g_transpose_pair_and_reshapes, g_folded_constants,
          g_fan_out_pool]


def _check(engine, feeds, want):
    out = engine.create_context().infer(feeds)
    assert set(out) == set(want)
    for k, v in want.items():
        assert_close(out[k], v)


@pytest.mark.parametrize("g", GRAPHS, ids=lambda g: g.__name__[2:])
def test_graph(g, rng):
    net, feeds, want = g(rng)
    _check(build(net), feeds, want)


@pytest.mark.parametrize("g", GRAPHS, ids=lambda g: g.__name__[2:])
def test_graph_every_pass_off(g, rng):
    passes = K.pass_names()
    if not passes:
        pytest.skip("no optimization passes listed")
    net, feeds, want = g(rng)
    _check(build(net, disable_passes=passes), feeds, want)


@pytest.mark.parametrize("g", GRAPHS, ids=lambda g: g.__name__[2:])
def test_graph_each_pass_off(g, rng):
    passes = K.pass_names()
    if not passes:
        pytest.skip("no optimization passes listed")
    for p in passes:
        net, feeds, want = g(np.random.default_rng(7))
        try:
            _check(build(net, disable_passes=[p]), feeds, want)
        except AssertionError as e:
            raise AssertionError(f"with pass '{p}' off: {e}") from None


@pytest.mark.parametrize("g", GRAPHS, ids=lambda g: g.__name__[2:])
def test_graph_plan_roundtrip(g, rng):
    net, feeds, want = g(rng)
    eng = K.Engine.load_memory(build(net).serialize())
    _check(eng, feeds, want)
