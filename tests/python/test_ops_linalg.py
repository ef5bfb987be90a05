"""MatMul, Gemm, Softmax, LogSoftmax, LayerNormalization and the Reduce* ops against
numpy."""

import numpy as np
import pytest

from kiln_ctypes import assert_close, assert_equal, case, run_op

F32 = np.float32


def _r(rng, shape, lo=-1.0, hi=1.0):
    return rng.uniform(lo, hi, size=shape).astype(F32)


def _sid(s):
    return "x".join(map(str, s)) or "s"


# ---- MatMul: numpy matmul semantics (1-D promotion, batch broadcasting) ----

MATMUL = [((3, 4), (4, 5)), ((1, 1), (1, 1)), ((7, 13), (13, 1)), ((1, 9), (9, 11)),
          ((2, 3, 4), (4, 5)), ((3, 4), (2, 4, 5)), ((2, 3, 4), (2, 4, 5)),
          ((2, 1, 3, 4), (5, 4, 6)), ((1, 3, 4), (2, 4, 5)), ((4,), (4, 5)), ((3, 4), (4,)),
          ((4,), (4,)), ((2, 3, 4), (4,)), ((5,), (2, 5, 3)), ((2, 2, 2, 3, 4), (4, 2)),
          ((33, 65), (65, 17)), ((64, 64), (64, 64))]


@pytest.mark.parametrize("sa,sb", MATMUL, ids=lambda s: _sid(s))
@pytest.mark.parametrize("const_b", [False, True], ids=["input", "constB"])
def test_matmul(sa, sb, const_b, rng):
    a, b = _r(rng, sa), _r(rng, sb)
    (y,) = run_op("MatMul", [a, b], const_inputs={1} if const_b else set())
    assert_close(y, np.matmul(a.astype(np.float64), b.astype(np.float64)))


# ---- Gemm: Y = alpha * A' * B' + beta * C, C broadcast to (M, N) ----

GEMM = [
    # (M, K, N, transA, transB, alpha, beta, C shape or None)
    (3, 4, 5, 0, 0, 1.0, 1.0, (5,)),
    (3, 4, 5, 1, 0, 1.0, 1.0, (3, 5)),
    (3, 4, 5, 0, 1, 1.0, 1.0, (1, 5)),
    (3, 4, 5, 1, 1, 0.5, 2.0, (3, 1)),
    (3, 4, 5, 0, 0, 1.0, 1.0, None),
    (1, 7, 1, 0, 1, 1.0, 1.0, ()),
    (6, 1, 9, 0, 0, -1.5, 0.0, (6, 9)),
    (2, 9, 3, 1, 0, 1.0, -0.5, (1, 1)),
    (17, 33, 10, 0, 1, 0.25, 1.0, (10,)),
    (1, 64, 10, 0, 1, 1.0, 1.0, (10,)),
]


@pytest.mark.parametrize("const_bc", [True, False], ids=["constBC", "inputs"])
@pytest.mark.parametrize("g", GEMM, ids=lambda g: "M{}K{}N{}tA{}tB{}a{}b{}C{}".format(
    *g[:7], _sid(g[7]) if g[7] is not None else "none"))
def test_gemm(g, const_bc, rng):
    M, K, N, ta, tb, alpha, beta, cs = g
    a = _r(rng, (K, M) if ta else (M, K))
    b = _r(rng, (N, K) if tb else (K, N))
    c = _r(rng, cs) if cs is not None else None
    attrs = {"transA": ta, "transB": tb}
    if alpha != 1.0:
        attrs["alpha"] = alpha
    if beta != 1.0:
        attrs["beta"] = beta
    ins = [a, b] + ([c] if c is not None else [])
    (y,) = run_op("Gemm", ins, attrs, const_inputs={1, 2} if const_bc else set())
    A = a.astype(np.float64).T if ta else a.astype(np.float64)
    B = b.astype(np.float64).T if tb else b.astype(np.float64)
    want = alpha * (A @ B)
    if c is not None:
        want = want + beta * c
    assert_close(y, want)


def test_gemm_defaults_only(rng):
    a, b, c = _r(rng, (4, 6)), _r(rng, (6, 3)), _r(rng, (3,))
    (y,) = run_op("Gemm", [a, b, c])
    assert_close(y, a.astype(np.float64) @ b + c)


# ---- Softmax / LogSoftmax (opset 13: along one axis, default -1) ----

def _softmax(x, axis):
    x = x.astype(np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _log_softmax(x, axis):
    x = x.astype(np.float64)
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


SOFTMAX = [((2, 3, 4), None), ((2, 3, 4), 0), ((2, 3, 4), 1), ((2, 3, 4), -2), ((5,), 0),
           ((1, 1), -1), ((3, 1, 7), 1), ((2, 1000), -1), ((4, 3, 2, 5), 2)]


@pytest.mark.parametrize("shape,axis", SOFTMAX, ids=lambda v: str(v))
@pytest.mark.parametrize("op,ref", [("Softmax", _softmax), ("LogSoftmax", _log_softmax)])
def test_softmax(op, ref, shape, axis, rng):
    x = _r(rng, shape, -5, 5)
    attrs = {} if axis is None else {"axis": axis}
    (y,) = run_op(op, [x], attrs)
    assert_close(y, ref(x, -1 if axis is None else axis))


@pytest.mark.parametrize("op,ref", [("Softmax", _softmax), ("LogSoftmax", _log_softmax)])
def test_softmax_large_values_stable(op, ref):
    x = np.array([[1000.0, 1001.0, 1002.0], [-1000.0, -1000.0, -999.0]], dtype=F32)
    (y,) = run_op(op, [x])
    assert np.all(np.isfinite(y))
    assert_close(y, ref(x, -1))


# ---- LayerNormalization: over axes [axis, rank) ----

def _layernorm(x, scale, bias, axis, eps):
    x = x.astype(np.float64)
    axes = tuple(range(axis % x.ndim, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    inv = 1.0 / np.sqrt(var + eps)
    y = (x - mean) * inv * scale
    if bias is not None:
        y = y + bias
    return y, mean, inv


LAYERNORM = [((2, 3, 8), -1, (8,), True), ((2, 3, 8), 2, (8,), False),
             ((2, 3, 8), 1, (3, 8), True), ((2, 3, 8), -2, (3, 8), True),
             ((4, 5), 1, (5,), True), ((1, 7), -1, (7,), True), ((3, 4, 5, 6), 2, (5, 6), True),
             ((2, 3, 8), 1, (1, 8), True), ((2, 768), -1, (768,), True)]


@pytest.mark.parametrize("eps", [1e-5, 1e-3])
@pytest.mark.parametrize("const_w", [True, False], ids=["constW", "inputW"])
@pytest.mark.parametrize("shape,axis,ss,has_bias", LAYERNORM, ids=str)
def test_layernorm(shape, axis, ss, has_bias, const_w, eps, rng):
    x = _r(rng, shape, -3, 3) + F32(0.5)
    s = _r(rng, ss, 0.5, 1.5)
    b = _r(rng, ss) if has_bias else None
    attrs = {"axis": axis}
    if eps != 1e-5:
        attrs["epsilon"] = eps
    ins = [x, s] + ([b] if has_bias else [])
    (y,) = run_op("LayerNormalization", ins, attrs, const_inputs={1, 2} if const_w else set())
    want, _, _ = _layernorm(x, s, b, axis, eps)
    assert_close(y, want)


def test_layernorm_mean_and_invstddev_outputs(rng):
    x = _r(rng, (2, 3, 6), -2, 2)
    s, b = _r(rng, (6,), 0.5, 1.5), _r(rng, (6,))
    y, mean, inv = run_op("LayerNormalization", [x, s, b], {"axis": -1}, n_outputs=3,
                          const_inputs={1, 2})
    want, wm, wi = _layernorm(x, s, b, -1, 1e-5)
    assert_close(y, want)
    assert_close(mean, wm)
    assert_close(inv, wi)


def test_layernorm_constant_row(rng):
    # zero variance: y = bias exactly up to eps
    x = np.full((2, 5), 3.0, dtype=F32)
    s, b = _r(rng, (5,), 0.5, 1.5), _r(rng, (5,))
    (y,) = run_op("LayerNormalization", [x, s, b], {}, const_inputs={1, 2})
    assert_close(y, np.broadcast_to(b.astype(np.float64), (2, 5)))


# ---- Reduce* (axes is an optional i64 input, opset 18) ----

REDUCE = [("ReduceMean", np.mean), ("ReduceSum", np.sum), ("ReduceMax", np.max),
          ("ReduceMin", np.min)]

RCASES = [
    ((2, 3, 4), [1], 1), ((2, 3, 4), [1], 0), ((2, 3, 4), [-1], 1), ((2, 3, 4), [0, 2], 0),
    ((2, 3, 4), [2, 0], 1), ((2, 3, 4), None, 1), ((2, 3, 4), None, 0),
    ((2, 3, 4), [-3, -1], 0), ((5,), [0], 0), ((5,), [0], 1), ((1, 1, 1), [1], 0),
    ((3, 1, 5), [1], 0), ((2, 3, 4, 5), [2, 3], 1), ((2, 3, 4, 5), [0, 1, 2, 3], 0),
    ((7, 9), [0], 1), ((4, 300), [1], 0),
]


def _rid(c):
    return f"{_sid(c[0])}-axes{'all' if c[1] is None else '_'.join(map(str, c[1]))}-k{c[2]}"


@pytest.mark.parametrize("c", RCASES, ids=_rid)
@pytest.mark.parametrize("op,ref", REDUCE, ids=[r[0] for r in REDUCE])
def test_reduce_f32(op, ref, c, rng):
    shape, axes, keep = c
    x = _r(rng, shape, -3, 3)
    ins = [x] if axes is None else [x, np.array(axes, np.int64)]
    (y,) = run_op(op, ins, {"keepdims": keep}, const_inputs={1})
    want = ref(x.astype(np.float64), axis=None if axes is None else tuple(axes),
               keepdims=bool(keep))
    assert_close(y, np.asarray(want))


@pytest.mark.parametrize("op,ref", REDUCE, ids=[r[0] for r in REDUCE])
def test_reduce_default_keepdims(op, ref, rng):
    x = _r(rng, (3, 4, 5))
    (y,) = run_op(op, [x, np.array([1], np.int64)], const_inputs={1})
    assert_close(y, ref(x.astype(np.float64), axis=1, keepdims=True))


@pytest.mark.parametrize("op", [r[0] for r in REDUCE])
def test_reduce_empty_axes_noop(op, rng):
    # noop_with_empty_axes=1 with an empty axes tensor: the input passes through
    x = _r(rng, (3, 4))
    (y,) = run_op(op, [x, np.zeros((0,), np.int64)], {"noop_with_empty_axes": 1},
                  const_inputs={1})
    assert_equal(y, x)


@pytest.mark.parametrize("op,ref", REDUCE, ids=[r[0] for r in REDUCE])
def test_reduce_empty_axes_reduces_all(op, ref, rng):
    x = _r(rng, (3, 4))
    (y,) = run_op(op, [x, np.zeros((0,), np.int64)], {"keepdims": 0}, const_inputs={1})
    assert_close(y, np.asarray(ref(x.astype(np.float64))))


@pytest.mark.parametrize("op,ref", [("ReduceSum", np.sum), ("ReduceMax", np.max),
                                    ("ReduceMin", np.min)])
def test_reduce_i64(op, ref, rng):
    x = rng.integers(-1000, 1000, size=(3, 4, 5)).astype(np.int64)
    (y,) = run_op(op, [x, np.array([1], np.int64)], {"keepdims": 0}, const_inputs={1})
    assert_equal(y, ref(x, axis=1))
