"""Elementwise ops against numpy: activations, unary math, broadcasting binary
arithmetic, comparisons, Where, Clip, Cast, Identity."""

import math

import numpy as np
import pytest

from kiln_ctypes import assert_close, assert_equal, case, run_op

F32 = np.float32
SHAPES = [(), (1,), (7,), (1, 1, 1), (3, 1, 5), (2, 3, 4, 5), (3, 17, 9)]

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def _gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def _uniform(rng, shape, lo, hi):
    return rng.uniform(lo, hi, size=shape).astype(F32)


def _away_from_zero(rng, shape, lo=0.25, hi=3.0):
    mag = rng.uniform(lo, hi, size=shape)
    sign = np.where(rng.random(size=shape) < 0.5, -1.0, 1.0)
    return (mag * sign).astype(F32)


# (op, attrs, reference on float64, input domain (lo, hi) or "nonzero")
UNARY = [
    ("Relu", {}, lambda x: np.maximum(x, 0), (-3, 3)),
    ("LeakyRelu", {}, lambda x: np.where(x >= 0, x, 0.01 * x), (-3, 3)),
    ("LeakyRelu", {"alpha": 0.2}, lambda x: np.where(x >= 0, x, 0.2 * x), (-3, 3)),
    ("LeakyRelu", {"alpha": -1.5}, lambda x: np.where(x >= 0, x, -1.5 * x), (-3, 3)),
    ("Sigmoid", {}, _sigmoid, (-8, 8)),
    ("Tanh", {}, np.tanh, (-4, 4)),
    ("HardSigmoid", {}, lambda x: np.clip(0.2 * x + 0.5, 0, 1), (-5, 5)),
    ("HardSigmoid", {"alpha": 0.5, "beta": 0.25}, lambda x: np.clip(0.5 * x + 0.25, 0, 1),
     (-4, 4)),
    ("HardSwish", {}, lambda x: x * np.clip(x / 6.0 + 0.5, 0, 1), (-6, 6)),
    # below -3 Gelu's value is tiny and f32 1+erf(x) cancels; test_gelu_tail covers it
    ("Gelu", {}, _gelu, (-3, 5)),
    ("Gelu", {"approximate": "none"}, _gelu, (-3, 5)),
    ("Gelu", {"approximate": "tanh"}, _gelu_tanh, (-3, 5)),
    ("Erf", {}, _erf, (-3, 3)),
    ("Elu", {}, lambda x: np.where(x > 0, x, np.exp(x) - 1), (-4, 4)),
    ("Elu", {"alpha": 0.5}, lambda x: np.where(x > 0, x, 0.5 * (np.exp(x) - 1)), (-4, 4)),
    ("Softplus", {}, lambda x: np.log1p(np.exp(x)), (-10, 10)),
    ("Sqrt", {}, np.sqrt, (0, 9)),
    ("Exp", {}, np.exp, (-6, 6)),
    ("Log", {}, np.log, (0.01, 50)),
    ("Neg", {}, np.negative, (-5, 5)),
    ("Abs", {}, np.abs, (-5, 5)),
    ("Reciprocal", {}, lambda x: 1.0 / x, "nonzero"),
    ("Identity", {}, lambda x: x, (-5, 5)),
]


def _unary_id(u):
    op, attrs = u[0], u[1]
    return op + "".join(f"-{k}={v}" for k, v in attrs.items())


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)) or "scalar")
@pytest.mark.parametrize("u", UNARY, ids=_unary_id)
def test_unary_f32(u, shape, rng):
    op, attrs, ref, dom = u
    x = _away_from_zero(rng, shape) if dom == "nonzero" else _uniform(rng, shape, *dom)
    (y,) = run_op(op, [x], attrs)
    assert_close(y, ref(x.astype(np.float64)))


@pytest.mark.parametrize("attrs,ref", [({"approximate": "none"}, _gelu),
                                       ({"approximate": "tanh"}, _gelu_tanh)], ids=["erf", "tanh"])
def test_gelu_tail(attrs, ref):
    # only tail values: each output is tiny, so f32 1+erf(x) cancellation would show
    x = np.linspace(-6.0, -3.5, 11).astype(F32)
    (y,) = run_op("Gelu", [x], attrs)
    assert_close(y, ref(x.astype(np.float64)))


def test_relu_exact_zero_and_negative_zero():
    x = np.array([-0.0, 0.0, -1e-30, 1e-30, -np.inf, np.inf], dtype=F32)
    (y,) = run_op("Relu", [x])
    assert_equal(y, np.array([0, 0, 0, 1e-30, 0, np.inf], dtype=F32))


EXTREMES = np.array([-100, -30, -10, -1e-3, -0.0, 0, 1e-3, 10, 30, 88, 100], dtype=F32)


@pytest.mark.parametrize("u", [u for u in UNARY if u[3] != "nonzero" and u[3][0] < 0],
                         ids=_unary_id)
def test_unary_extremes(u):
    # large magnitudes: overflow, saturation and cancellation in naive formulas
    # (log(1+exp(x)) overflows at x=100, exp(x)-1 at x=-100 is fine, ...)
    op, attrs, ref, _ = u
    (y,) = run_op(op, [EXTREMES], attrs)
    with np.errstate(over="ignore"):
        want = ref(EXTREMES.astype(np.float64)).astype(F32)
    assert_close(y, want)


def test_special_values_div_log_sqrt():
    x = np.array([1.0, -1.0, 0.0, 2.0], dtype=F32)
    z = np.array([0.0, 0.0, 0.0, -0.0], dtype=F32)
    (d,) = run_op("Div", [x, z])
    with np.errstate(divide="ignore", invalid="ignore"):
        assert_close(d, x / z)
        (lg,) = run_op("Log", [np.array([0.0, -1.0, 1.0, np.inf], F32)])
        assert_close(lg, np.log(np.array([0.0, -1.0, 1.0, np.inf], F32)))
        (sq,) = run_op("Sqrt", [np.array([-1.0, 0.0, 4.0, np.inf], F32)])
        assert_close(sq, np.sqrt(np.array([-1.0, 0.0, 4.0, np.inf], F32)))
        (rc,) = run_op("Reciprocal", [np.array([0.0, -0.0, 4.0, np.inf], F32)])
        assert_close(rc, 1 / np.array([0.0, -0.0, 4.0, np.inf], F32))


@pytest.mark.parametrize("op,ref", [("Neg", np.negative), ("Abs", np.abs),
                                    ("Identity", lambda x: x)])
def test_unary_i64(op, ref, rng):
    x = rng.integers(-2**40, 2**40, size=(3, 5)).astype(np.int64)
    (y,) = run_op(op, [x])
    assert_equal(y, ref(x))


@pytest.mark.parametrize("dtype", [np.bool_, np.int32, np.uint8, np.int8])
def test_identity_dtypes(dtype, rng):
    x = rng.integers(0, 2 if dtype == np.bool_ else 100, size=(4, 3)).astype(dtype)
    (y,) = run_op("Identity", [x])
    assert_equal(y, x)


# ---- PRelu: slope broadcasts to X (unidirectional) ----

PRELU = [((2, 3, 4, 5), (3, 1, 1)), ((2, 3, 4, 5), (1,)), ((2, 3, 4, 5), (5,)),
         ((2, 3, 4, 5), (2, 3, 4, 5)), ((4, 7), (7,)), ((1, 3, 1, 1), (3, 1, 1)), ((6,), ())]


@pytest.mark.parametrize("xs,ss", PRELU, ids=str)
@pytest.mark.parametrize("const_slope", [True, False], ids=["const", "input"])
def test_prelu(xs, ss, const_slope, rng):
    x = _uniform(rng, xs, -3, 3)
    s = _uniform(rng, ss, -1, 1)
    (y,) = run_op("PRelu", [x, s], const_inputs={1} if const_slope else set())
    assert_close(y, np.where(x >= 0, x, x * s))


# ---- binary arithmetic with numpy broadcasting ----

BCAST = [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((2, 1, 4), (3, 1)), ((1,), (5,)),
         ((), (2, 3)), ((2, 3), ()), ((5, 1, 3), (1, 4, 1)), ((2, 3, 1, 5), (3, 7, 1)),
         ((1, 1), (1, 1)), ((4, 1, 1, 1, 2), (3, 1, 2)), ((13,), (1,))]


def _pair_id(p):
    return "_".join("x".join(map(str, s)) or "s" for s in p)


BINARY = [
    ("Add", np.add), ("Sub", np.subtract), ("Mul", np.multiply), ("Div", np.divide),
    ("Max", np.maximum), ("Min", np.minimum),
]


@pytest.mark.parametrize("shapes", BCAST, ids=_pair_id)
@pytest.mark.parametrize("op,ref", BINARY, ids=[b[0] for b in BINARY])
def test_binary_f32(op, ref, shapes, rng):
    a = _uniform(rng, shapes[0], -3, 3)
    b = _away_from_zero(rng, shapes[1]) if op == "Div" else _uniform(rng, shapes[1], -3, 3)
    (y,) = run_op(op, [a, b])
    assert_close(y, ref(a.astype(np.float64), b.astype(np.float64)))


@pytest.mark.parametrize("op,ref", BINARY[:3], ids=[b[0] for b in BINARY[:3]])
@pytest.mark.parametrize("const_b", [False, True], ids=["input", "const"])
def test_binary_second_operand_constant(op, ref, const_b, rng):
    a = _uniform(rng, (2, 5, 3), -3, 3)
    b = _uniform(rng, (5, 1), -3, 3)
    (y,) = run_op(op, [a, b], const_inputs={1} if const_b else set())
    assert_close(y, ref(a.astype(np.float64), b))


def test_binary_same_tensor_twice(rng):
    x = _uniform(rng, (3, 4), -2, 2)
    from kiln_ctypes import Network, build

    net = Network()
    net.add_input("x", F32, x.shape)
    net.add_layer("Mul", ["x", "x"], ["y"], name="square")
    net.mark_output("y")
    out = build(net).create_context().infer({"x": x})
    assert_close(out["y"], x.astype(np.float64) ** 2)


I64_BINARY = [("Add", np.add), ("Sub", np.subtract), ("Mul", np.multiply),
              ("Max", np.maximum), ("Min", np.minimum)]


@pytest.mark.parametrize("shapes", [((3, 4), (3, 4)), ((2, 1, 4), (3, 1)), ((), (5,)),
                                    ((6,), (1,))], ids=_pair_id)
@pytest.mark.parametrize("op,ref", I64_BINARY, ids=[b[0] for b in I64_BINARY])
def test_binary_i64(op, ref, shapes, rng):
    a = rng.integers(-2**31, 2**31, size=shapes[0]).astype(np.int64) * 3
    b = rng.integers(-2**20, 2**20, size=shapes[1]).astype(np.int64)
    (y,) = run_op(op, [a, b])
    assert_equal(y, ref(a, b))


def test_add_i64_beyond_f32_precision():
    # values that a float path would round: 2**53 + 1 is not a double either
    a = np.array([2**53 + 1, -(2**62), 123456789012345678], dtype=np.int64)
    b = np.array([2, 5, 1], dtype=np.int64)
    (y,) = run_op("Add", [a, b])
    assert_equal(y, a + b)


def test_div_i64_positive(rng):
    a = rng.integers(0, 1000, size=(4, 5)).astype(np.int64)
    b = rng.integers(1, 17, size=(5,)).astype(np.int64)
    (y,) = run_op("Div", [a, b])
    assert_equal(y, a // b)


# ---- Pow ----

@pytest.mark.parametrize("shapes", [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((5,), ()),
                                    ((), (2, 2)), ((2, 1, 3), (4, 1))], ids=_pair_id)
def test_pow_f32(shapes, rng):
    a = _uniform(rng, shapes[0], 0.1, 3)
    b = _uniform(rng, shapes[1], -2, 2)
    (y,) = run_op("Pow", [a, b])
    assert_close(y, np.power(a.astype(np.float64), b.astype(np.float64)))


def test_pow_negative_base_integer_exponent(rng):
    a = _uniform(rng, (3, 5), -3, 3)
    b = np.array([0, 1, 2, 3, -1], dtype=F32)
    (y,) = run_op("Pow", [a, b])
    assert_close(y, np.power(a.astype(np.float64), b.astype(np.float64)))


@pytest.mark.parametrize("e", [2.0, 0.5, 3.0, -1.0])
def test_pow_const_scalar_exponent(e, rng):
    a = _uniform(rng, (4, 6), 0.2, 3)
    (y,) = run_op("Pow", [a, np.array(e, dtype=F32)], const_inputs={1})
    assert_close(y, np.power(a.astype(np.float64), e))


def test_pow_i64_exponent(rng):
    # Pow(T, T1): the exponent may be an integer tensor; the output has X's type
    a = _uniform(rng, (2, 3), -2, 2)
    b = np.array([0, 2, 3], dtype=np.int64)
    (y,) = run_op("Pow", [a, b])
    assert_close(y, np.power(a.astype(np.float64), b))


# ---- variadic Max/Min ----

@pytest.mark.parametrize("op,ref", [("Max", np.maximum), ("Min", np.minimum)])
@pytest.mark.parametrize("shapes", [[(3, 4)], [(3, 4), (4,), (3, 1)],
                                    [(2, 1, 5), (1, 3, 1), (5,), ()]],
                         ids=["one", "three", "four"])
def test_max_min_variadic(op, ref, shapes, rng):
    xs = [_uniform(rng, s, -3, 3) for s in shapes]
    (y,) = run_op(op, xs)
    want = xs[0].astype(np.float64)
    for x in xs[1:]:
        want = ref(want, x)
    assert_close(y, want)


# ---- comparisons -> bool ----

CMP = [("Equal", np.equal), ("Less", np.less), ("Greater", np.greater)]


@pytest.mark.parametrize("shapes", [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((2, 1, 4), (3, 1)),
                                    ((), (5,)), ((7,), ())], ids=_pair_id)
@pytest.mark.parametrize("dtype", [F32, np.int64], ids=["f32", "i64"])
@pytest.mark.parametrize("op,ref", CMP, ids=[c[0] for c in CMP])
def test_compare(op, ref, dtype, shapes, rng):
    # few distinct values, so that equal pairs occur
    a = rng.integers(-3, 3, size=shapes[0]).astype(dtype)
    b = rng.integers(-3, 3, size=shapes[1]).astype(dtype)
    if dtype == F32:
        a = a * F32(0.5)
        b = b * F32(0.5)
    (y,) = run_op(op, [a, b])
    assert_equal(y, ref(a, b), dtype=np.bool_)


def test_equal_bool_inputs():
    a = np.array([True, False, True, False])
    b = np.array([True, True, False, False])
    (y,) = run_op("Equal", [a, b])
    assert_equal(y, a == b)


# ---- Where ----

WHERE = [((3, 4), (3, 4), (3, 4)), ((4,), (3, 4), (3, 1)), ((2, 1, 4), (3, 1), ()),
         ((), (2, 3), (2, 3)), ((1, 5), (4, 1), (1,))]


@pytest.mark.parametrize("shapes", WHERE, ids=lambda p: "_".join("x".join(map(str, s)) or "s"
                                                            for s in p))
@pytest.mark.parametrize("dtype", [F32, np.int64], ids=["f32", "i64"])
def test_where(shapes, dtype, rng):
    c = rng.random(size=shapes[0]) < 0.5
    x = rng.integers(-100, 100, size=shapes[1]).astype(dtype)
    y = rng.integers(-100, 100, size=shapes[2]).astype(dtype)
    (out,) = run_op("Where", [c, x, y])
    assert_equal(out, np.where(c, x, y), dtype=dtype)


# ---- Clip (min and max are optional inputs) ----

CLIP = [(-0.5, 0.7), (None, 0.3), (-0.2, None), (None, None), (1.0, 1.0), (0.0, 6.0)]


@pytest.mark.parametrize("lo,hi", CLIP, ids=str)
@pytest.mark.parametrize("shape", [(2, 3, 4), (7,), ()], ids=str)
def test_clip(lo, hi, shape, rng):
    x = _uniform(rng, shape, -2, 2)
    ins = [x, None if lo is None else np.array(lo, F32), None if hi is None else np.array(hi, F32)]
    while ins[-1] is None and len(ins) > 1:
        ins.pop()
    (y,) = run_op("Clip", ins, const_inputs={1, 2})
    want = x.astype(np.float64)
    if lo is not None:
        want = np.maximum(want, lo)
    if hi is not None:
        want = np.minimum(want, hi)
    assert_close(y, want)


def test_clip_explicit_absent_min(rng):
    x = _uniform(rng, (3, 3), -2, 2)
    (y,) = run_op("Clip", [x, None, np.array(0.5, F32)], const_inputs={2})
    assert_close(y, np.minimum(x, 0.5))


def test_clip_i64(rng):
    x = rng.integers(-50, 50, size=(4, 5)).astype(np.int64)
    (y,) = run_op("Clip", [x, np.array(-7, np.int64), np.array(9, np.int64)],
                  const_inputs={1, 2})
    assert_equal(y, np.clip(x, -7, 9))


# ---- Cast ----

TO = {np.float32: 1, np.uint8: 2, np.int8: 3, np.int32: 6, np.int64: 7, np.bool_: 9,
      np.float16: 10}


def _cast_input(rng, src, dst):
    if src == np.float32:
        if dst in (np.uint8,):
            return rng.uniform(0, 250, size=(3, 7)).astype(F32)
        if dst in (np.int8,):
            return rng.uniform(-120, 120, size=(3, 7)).astype(F32)
        if dst == np.bool_:
            x = rng.uniform(-2, 2, size=(3, 7)).astype(F32)
            x[0, :3] = [0.0, -0.0, 1e-30]
            return x
        return rng.uniform(-1000, 1000, size=(3, 7)).astype(F32)
    if src == np.bool_:
        return rng.random(size=(3, 7)) < 0.5
    if src == np.int64:
        if dst in (np.uint8,):
            return rng.integers(0, 255, size=(3, 7)).astype(np.int64)
        if dst in (np.int8,):
            return rng.integers(-128, 127, size=(3, 7)).astype(np.int64)
        if dst == np.float16:
            return rng.integers(-2048, 2048, size=(3, 7)).astype(np.int64)
        return rng.integers(-2**24, 2**24, size=(3, 7)).astype(np.int64)
    if src == np.int32:
        return rng.integers(-1000, 1000, size=(3, 7)).astype(np.int32)
    if src == np.uint8:
        return rng.integers(0, 255, size=(3, 7)).astype(np.uint8)
    if src == np.int8:
        return rng.integers(-128, 127, size=(3, 7)).astype(np.int8)
    if src == np.float16:
        return rng.uniform(-100, 100, size=(3, 7)).astype(np.float16)
    raise AssertionError(src)


CASTS = [(np.float32, np.int64), (np.float32, np.int32), (np.float32, np.bool_),
         (np.float32, np.uint8), (np.float32, np.int8), (np.float32, np.float32),
         (np.int64, np.float32), (np.int64, np.int32), (np.int64, np.bool_),
         (np.int64, np.uint8), (np.int64, np.int8), (np.int32, np.int64),
         (np.int32, np.float32), (np.bool_, np.float32), (np.bool_, np.int64),
         (np.uint8, np.float32), (np.int8, np.float32), (np.uint8, np.int64),
         (np.float32, np.float16), (np.float16, np.float32), (np.int64, np.float16)]


@pytest.mark.parametrize("src,dst", CASTS,
                         ids=[f"{np.dtype(s).name}->{np.dtype(d).name}" for s, d in CASTS])
def test_cast(src, dst, rng):
    x = _cast_input(rng, src, dst)
    (y,) = run_op("Cast", [x], {"to": TO[dst]})
    # numpy's astype truncates floats toward zero and rounds to nearest even for f16,
    # as ONNX Cast does
    assert_equal(y, x.astype(dst), dtype=dst)


def test_cast_f32_to_i64_truncates_toward_zero():
    x = np.array([-2.7, -2.5, -0.5, 0.5, 2.5, 2.7, 1e10, -1e10], dtype=F32)
    (y,) = run_op("Cast", [x], {"to": 7})
    assert_equal(y, np.array([-2, -2, 0, 0, 2, 2, 10000000000, -10000000000], np.int64))


def test_cast_f32_to_f16_rounding():
    # ties round to even; overflow saturates to inf
    x = np.array([1.0 + 2**-11, 1.0 + 3 * 2**-11, 65504.0, 70000.0, -1e6, 6e-8, 1e-9],
                 dtype=F32)
    (y,) = run_op("Cast", [x], {"to": 10})
    with np.errstate(over="ignore"):
        want = x.astype(np.float16)
    assert_equal(y, want, dtype=np.float16)
