"""Larger, odd-sized cases run with 1 and 4 threads: the sizes where blocked and
vectorized kernels have remainders and where work is split between threads."""

import numpy as np
import pytest

from kiln_ctypes import assert_close, assert_equal, run_op
from test_ops_linalg import _layernorm, _softmax
from test_ops_nn import conv_ref, conv_transpose_ref, pool_ref
from test_ops_resize import resize_ref

F32 = np.float32
THREADS = [1, 4]


def _r(rng, shape, lo=-1.0, hi=1.0):
    return rng.uniform(lo, hi, size=shape).astype(F32)


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("sa,sb", [((127, 259), (259, 131)), ((3, 65, 33), (33, 70)),
                                   ((1, 1000), (1000, 17)), ((2, 4, 31, 64), (2, 4, 64, 9)),
                                   ((129, 16), (16, 257))], ids=str)
def test_matmul_large(sa, sb, threads, rng):
    a, b = _r(rng, sa), _r(rng, sb)
    (y,) = run_op("MatMul", [a, b], const_inputs={1}, threads=threads)
    assert_close(y, a.astype(np.float64) @ b)


@pytest.mark.parametrize("threads", THREADS)
def test_gemm_large(threads, rng):
    a, b, c = _r(rng, (67, 300)), _r(rng, (129, 300)), _r(rng, (129,))
    (y,) = run_op("Gemm", [a, b, c], {"transB": 1}, const_inputs={1, 2}, threads=threads)
    assert_close(y, a.astype(np.float64) @ b.T + c)


CONVS = [((2, 32, 17, 19), (48, 32, 3, 3), {"pads": [1, 1, 1, 1]}),
         ((1, 32, 17, 19), (48, 32, 3, 3), {"pads": [1, 1, 1, 1], "strides": [2, 2]}),
         ((1, 64, 15, 13), (64, 1, 3, 3), {"pads": [1, 1, 1, 1], "group": 64}),
         ((1, 128, 9, 11), (64, 128, 1, 1), {}),
         ((1, 3, 57, 61), (16, 3, 7, 7), {"pads": [3, 3, 3, 3], "strides": [2, 2]}),
         ((1, 24, 10, 10), (36, 8, 3, 3), {"group": 3, "dilations": [2, 2], "pads": [2, 2, 2, 2]}),
         ((1, 17, 8, 9), (5, 17, 5, 3), {"pads": [2, 1, 2, 1]})]


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("c", CONVS, ids=lambda c: f"{c[0]}-{c[1]}".replace(" ", ""))
def test_conv_large(c, threads, rng):
    xs, ws, attrs = c
    x, w, b = _r(rng, xs), _r(rng, ws), _r(rng, (ws[0],))
    (y,) = run_op("Conv", [x, w, b], attrs, const_inputs={1, 2}, threads=threads)
    want = conv_ref(x, w, b, attrs.get("strides"), attrs.get("pads"), attrs.get("dilations"),
                    attrs.get("group", 1))
    assert_close(y, want)


@pytest.mark.parametrize("threads", THREADS)
def test_conv_transpose_large(threads, rng):
    x, w, b = _r(rng, (1, 32, 9, 9)), _r(rng, (32, 16, 4, 4)), _r(rng, (16,))
    attrs = {"strides": [2, 2], "pads": [1, 1, 1, 1]}
    (y,) = run_op("ConvTranspose", [x, w, b], attrs, const_inputs={1, 2}, threads=threads)
    assert_close(y, conv_transpose_ref(x, w, b, strides=[2, 2], pads=[1, 1, 1, 1]))


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("op,kind", [("MaxPool", "max"), ("AveragePool", "avg")])
def test_pool_large(op, kind, threads, rng):
    x = _r(rng, (2, 64, 33, 31))
    attrs = {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}
    (y,) = run_op(op, [x], attrs, threads=threads)
    assert_close(y, pool_ref(x, kind, [3, 3], [2, 2], [1, 1, 1, 1]))


@pytest.mark.parametrize("threads", THREADS)
def test_softmax_large(threads, rng):
    x = _r(rng, (8, 1001), -5, 5)
    (y,) = run_op("Softmax", [x], {"axis": -1}, threads=threads)
    assert_close(y, _softmax(x, -1))


@pytest.mark.parametrize("threads", THREADS)
def test_layernorm_large(threads, rng):
    x, s, b = _r(rng, (4, 37, 768)), _r(rng, (768,), 0.5, 1.5), _r(rng, (768,))
    (y,) = run_op("LayerNormalization", [x, s, b], {"axis": -1}, const_inputs={1, 2},
                  threads=threads)
    assert_close(y, _layernorm(x, s, b, -1, 1e-5)[0])


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("op,ref", [("Add", np.add), ("Mul", np.multiply), ("Sub", np.subtract)])
def test_binary_broadcast_large(op, ref, threads, rng):
    a, b = _r(rng, (8, 64, 33, 33)), _r(rng, (64, 1, 1))
    (y,) = run_op(op, [a, b], threads=threads)
    assert_close(y, ref(a.astype(np.float64), b))


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("op,ref", [("Sigmoid", lambda x: 1 / (1 + np.exp(-x))), ("Tanh", np.tanh),
                                    ("Relu", lambda x: np.maximum(x, 0)), ("Exp", np.exp)])
def test_unary_large(op, ref, threads, rng):
    x = _r(rng, (1031, 67), -4, 4)
    (y,) = run_op(op, [x], threads=threads)
    assert_close(y, ref(x.astype(np.float64)))


@pytest.mark.parametrize("threads", THREADS)
def test_reduce_large(threads, rng):
    x = _r(rng, (16, 1024, 7))
    (y,) = run_op("ReduceMean", [x, np.array([1], np.int64)], {"keepdims": 0},
                  const_inputs={1}, threads=threads)
    assert_close(y, x.astype(np.float64).mean(axis=1))


@pytest.mark.parametrize("threads", THREADS)
def test_transpose_large(threads, rng):
    x = _r(rng, (8, 64, 33, 17))
    (y,) = run_op("Transpose", [x], {"perm": [0, 2, 3, 1]}, threads=threads)
    assert_equal(y, np.ascontiguousarray(x.transpose(0, 2, 3, 1)))


@pytest.mark.parametrize("threads", THREADS)
def test_resize_large(threads, rng):
    x = _r(rng, (1, 16, 33, 31))
    (y,) = run_op("Resize", [x, None, np.array([1, 1, 2, 2], F32)], {"mode": "linear"},
                  const_inputs={2}, threads=threads)
    assert_close(y, resize_ref(x, scales=[1, 1, 2, 2], mode="linear"))
