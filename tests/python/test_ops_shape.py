"""Data-movement and shape ops against numpy: Concat, Split, Slice, Gather, Reshape,
Flatten, Transpose, Squeeze, Unsqueeze, Expand, Tile, Pad, Shape. Results must match
exactly."""

import numpy as np
import pytest

from kiln_ctypes import assert_equal, case, run_op

F32 = np.float32
I64 = np.int64
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)


def _r(rng, shape, dtype=F32):
    if dtype == F32:
        return rng.standard_normal(size=shape).astype(F32)
    return rng.integers(-1000, 1000, size=shape).astype(dtype)


def _sid(s):
    return "x".join(map(str, s)) or "s"


def _i64(v):
    return np.array(v, dtype=I64)


# ---- Concat ----

CONCAT = [([(2, 3), (2, 5)], 1), ([(2, 3), (4, 3)], 0), ([(2, 3), (2, 5)], -1),
          ([(1, 2, 3), (1, 2, 3), (1, 2, 3)], 0), ([(2, 1, 3), (2, 4, 3), (2, 2, 3)], -2),
          ([(7,)], 0), ([(3,), (1,), (5,)], 0), ([(2, 3, 4, 1), (2, 3, 4, 2)], 3),
          ([(1, 3, 5, 5)] * 4, 1)]


@pytest.mark.parametrize("dtype", [F32, I64], ids=["f32", "i64"])
@pytest.mark.parametrize("shapes,axis", CONCAT,
                         ids=[f"{'+'.join(map(_sid, s))}-ax{a}" for s, a in CONCAT])
def test_concat(shapes, axis, dtype, rng):
    xs = [_r(rng, s, dtype) for s in shapes]
    (y,) = run_op("Concat", xs, {"axis": axis})
    assert_equal(y, np.concatenate(xs, axis=axis))


def test_concat_with_constant(rng):
    a, b = _r(rng, (2, 3)), _r(rng, (2, 2))
    (y,) = run_op("Concat", [a, b], {"axis": 1}, const_inputs={1})
    assert_equal(y, np.concatenate([a, b], axis=1))


# ---- Split ----

SPLIT = [
    # shape, axis, split sizes (None: equal parts or num_outputs), n outputs, num_outputs attr
    ((6, 4), 0, None, 2, None), ((6, 4), 0, None, 3, None), ((2, 9), 1, None, 3, None),
    ((2, 9), -1, [2, 3, 4], 3, None), ((5, 2), 0, [1, 4], 2, None), ((5, 2), 0, [5], 1, None),
    ((3, 4, 5), 2, [1, 1, 3], 3, None), ((3, 4, 5), -2, [0, 4], 2, None),
    ((7, 3), 0, None, 3, 3), ((8,), 0, None, 4, 4), ((10, 2), 0, None, 4, 4),
]


def _split_ref(x, axis, split, n, num_outputs):
    d = x.shape[axis]
    if split is None:
        if num_outputs is not None:
            chunk = -(-d // num_outputs)
            split = [min(chunk, d - k * chunk) for k in range(num_outputs)]
        else:
            split = [d // n] * n
    idx = np.cumsum(split)[:-1]
    return np.split(x, idx, axis=axis)


@pytest.mark.parametrize("c", SPLIT, ids=lambda c: f"{_sid(c[0])}-ax{c[1]}-"
                         f"{'eq' if c[2] is None else '_'.join(map(str, c[2]))}-n{c[3]}"
                         f"{'-num' if c[4] else ''}")
def test_split(c, rng):
    shape, axis, split, n, num = c
    x = _r(rng, shape)
    ins = [x] if split is None else [x, _i64(split)]
    attrs = {"axis": axis}
    if num is not None:
        attrs["num_outputs"] = num
    ys = run_op("Split", ins, attrs, n_outputs=n, const_inputs={1})
    wants = _split_ref(x, axis, split, n, num)
    assert len(ys) == len(wants)
    for y, w in zip(ys, wants):
        assert_equal(y, w)


def test_split_i64(rng):
    x = _r(rng, (4, 6), I64)
    ys = run_op("Split", [x], {"axis": 1}, n_outputs=2)
    for y, w in zip(ys, np.split(x, 2, axis=1)):
        assert_equal(y, w)


# ---- Slice (starts, ends, axes, steps are i64 inputs) ----

def _slice_ref(x, starts, ends, axes=None, steps=None):
    n = len(starts)
    axes = list(range(n)) if axes is None else axes
    steps = [1] * n if steps is None else steps
    sl = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        a = a % x.ndim
        d = x.shape[a]
        s = s + d if s < 0 else s
        e = e + d if e < 0 else e
        if st > 0:
            s, e = min(max(s, 0), d), min(max(e, 0), d)
        else:
            s, e = min(max(s, 0), d - 1), min(max(e, -1), d - 1)
        sl[a] = slice(s, None if e < 0 else e, st)
    return x[tuple(sl)]


SLICE = [
    ((5, 6), [1, 2], [4, 5], None, None),
    ((5, 6), [0], [3], [1], None),
    ((5, 6), [-3], [-1], [0], None),
    ((5, 6), [1], [INT64_MAX], [-1], None),
    ((5, 6), [0, 0], [100, 100], [0, 1], [2, 3]),
    ((5, 6), [-1], [INT64_MIN], [0], [-1]),
    ((5, 6), [4], [0], [1], [-2]),
    ((5, 6), [10], [-10], [1], [-1]),
    ((5, 6), [-100], [100], [1], [4]),
    ((5, 6), [3], [3], [0], None),
    ((5, 6), [4], [1], [0], None),
    ((2, 3, 4, 5), [1, -4], [3, -1], [-1, 2], [1, 1]),
    ((2, 3, 4, 5), [0], [1], [0], None),
    ((2, 3, 4, 5), [2, 3], [0, 0], [2, 1], [-1, -2]),
    ((7,), [-1], [-8], [0], [-3]),
    ((7,), [0], [-1], None, None),
    ((1, 9, 1), [1, 0], [8, 1], [1, 2], [3, 1]),
]


@pytest.mark.parametrize("dtype", [F32, I64], ids=["f32", "i64"])
@pytest.mark.parametrize("c", SLICE, ids=lambda c: f"{_sid(c[0])}-s{c[1]}-e{c[2]}-a{c[3]}-st{c[4]}"
                         .replace(str(INT64_MAX), "MAX").replace(str(INT64_MIN), "MIN"))
def test_slice(c, dtype, rng):
    shape, starts, ends, axes, steps = c
    x = _r(rng, shape, dtype)
    ins = [x, _i64(starts), _i64(ends)]
    if axes is not None or steps is not None:
        ins.append(None if axes is None else _i64(axes))
    if steps is not None:
        ins.append(_i64(steps))
    (y,) = run_op("Slice", ins, const_inputs={1, 2, 3, 4})
    assert_equal(y, _slice_ref(x, starts, ends, axes, steps))


def test_slice_i32_params(rng):
    x = _r(rng, (6, 4))
    (y,) = run_op("Slice", [x, np.array([1], np.int32), np.array([5], np.int32),
                            np.array([0], np.int32), np.array([2], np.int32)],
                  const_inputs={1, 2, 3, 4})
    assert_equal(y, x[1:5:2])


# ---- Gather ----

GATHER = [((5, 4), [0, 2, 4], 0), ((5, 4), [[1, 3], [0, 0]], 0), ((5, 4), [-1, -5, 2], 0),
          ((5, 4), [3, -1], 1), ((5, 4), [1], -1), ((5, 4), 2, 0), ((5, 4), -1, 1),
          ((2, 3, 4), [[2, 0, 1]], 1), ((2, 3, 4), [1, 0], -3), ((7,), [6, 0, -7, 3], 0),
          ((3, 1, 2), [0, 0, 0], 1)]


@pytest.mark.parametrize("idt", [I64, np.int32], ids=["i64idx", "i32idx"])
@pytest.mark.parametrize("dtype", [F32, I64], ids=["f32", "i64"])
@pytest.mark.parametrize("const_idx", [True, False], ids=["constidx", "inputidx"])
@pytest.mark.parametrize("c", GATHER, ids=lambda c: f"{_sid(c[0])}-i{c[1]}-ax{c[2]}".replace(" ", ""))
def test_gather(c, const_idx, dtype, idt, rng):
    shape, idx, axis = c
    x = _r(rng, shape, dtype)
    ind = np.array(idx, dtype=idt)
    (y,) = run_op("Gather", [x, ind], {"axis": axis}, const_inputs={1} if const_idx else set())
    assert_equal(y, np.take(x, ind, axis=axis))


def test_gather_constant_table(rng):
    # an embedding lookup: the table is a constant, the indices are the input
    table = _r(rng, (10, 6))
    ind = np.array([[3, 9, 0], [-1, 2, 2]], dtype=I64)
    (y,) = run_op("Gather", [table, ind], {"axis": 0}, const_inputs={0})
    assert_equal(y, table[ind])


# ---- Reshape ----

RESHAPE = [((2, 3, 4), [4, 6]), ((2, 3, 4), [-1]), ((2, 3, 4), [0, -1]), ((2, 3, 4), [0, 0, 2, 2]),
           ((2, 3, 4), [2, -1, 3]), ((24,), [1, 2, 1, 12, 1]), ((1, 1), []),
           ((6, 2), [3, 0, -1]), ((2, 3, 4), [-1, 0, 1])]


@pytest.mark.parametrize("dtype", [F32, I64], ids=["f32", "i64"])
@pytest.mark.parametrize("shape,target", RESHAPE, ids=lambda v: str(v).replace(" ", ""))
def test_reshape(shape, target, dtype, rng):
    x = _r(rng, shape, dtype)
    (y,) = run_op("Reshape", [x, _i64(target).reshape(-1)], const_inputs={1})
    want = [x.shape[i] if t == 0 else t for i, t in enumerate(target)]
    assert_equal(y, x.reshape(want))


def test_reshape_allowzero_no_zero(rng):
    x = _r(rng, (2, 6))
    (y,) = run_op("Reshape", [x, _i64([3, 4])], {"allowzero": 1}, const_inputs={1})
    assert_equal(y, x.reshape(3, 4))


# ---- Flatten ----

@pytest.mark.parametrize("shape,axis", [((2, 3, 4), 1), ((2, 3, 4), 0), ((2, 3, 4), 2),
                                        ((2, 3, 4), 3), ((2, 3, 4), -1), ((2, 3, 4), -3),
                                        ((5,), 0), ((5,), 1), ((1, 3, 1, 1), 1), ((2, 3, 4), None)],
                         ids=str)
def test_flatten(shape, axis, rng):
    x = _r(rng, shape)
    (y,) = run_op("Flatten", [x], {} if axis is None else {"axis": axis})
    a = 1 if axis is None else axis + x.ndim if axis < 0 else axis
    assert_equal(y, x.reshape(int(np.prod(shape[:a])), int(np.prod(shape[a:]))))


# ---- Transpose ----

TRANSPOSE = [((2, 3), None), ((2, 3), [1, 0]), ((2, 3, 4), [0, 2, 1]), ((2, 3, 4), [2, 0, 1]),
             ((2, 3, 4), None), ((2, 3, 4, 5), [0, 2, 3, 1]), ((2, 3, 4, 5), [0, 3, 1, 2]),
             ((1, 5, 1, 3), [3, 2, 1, 0]), ((7,), [0]), ((2, 1, 3, 1, 2), [4, 2, 0, 3, 1]),
             ((33, 17), [1, 0])]


@pytest.mark.parametrize("dtype", [F32, I64], ids=["f32", "i64"])
@pytest.mark.parametrize("shape,perm", TRANSPOSE, ids=lambda v: str(v).replace(" ", ""))
def test_transpose(shape, perm, dtype, rng):
    x = _r(rng, shape, dtype)
    (y,) = run_op("Transpose", [x], {} if perm is None else {"perm": perm})
    assert_equal(y, np.ascontiguousarray(np.transpose(x, perm)))


# ---- Squeeze / Unsqueeze (axes are i64 inputs) ----

@pytest.mark.parametrize("shape,axes", [((1, 3, 1, 5), [0]), ((1, 3, 1, 5), [0, 2]),
                                        ((1, 3, 1, 5), [-2]), ((1, 3, 1, 5), None),
                                        ((1, 1, 1), None), ((4, 1), [1]), ((1,), [0]),
                                        ((3, 1, 1, 2), [2, -3])], ids=str)
def test_squeeze(shape, axes, rng):
    x = _r(rng, shape)
    ins = [x] if axes is None else [x, _i64(axes)]
    (y,) = run_op("Squeeze", ins, const_inputs={1})
    want = np.squeeze(x) if axes is None else np.squeeze(x, axis=tuple(axes))
    assert_equal(y, want)


def _unsqueeze_ref(x, axes):
    r = x.ndim + len(axes)
    axes = sorted(a % r for a in axes)
    y = x
    for a in axes:
        y = np.expand_dims(y, a)
    return y


@pytest.mark.parametrize("shape,axes", [((3, 4), [0]), ((3, 4), [1]), ((3, 4), [2]),
                                        ((3, 4), [-1]), ((3, 4), [0, 3]), ((3, 4), [3, 0]),
                                        ((3, 4), [-1, -4]), ((), [0]), ((5,), [0, 1, 2]),
                                        ((2, 3), [1, -2])], ids=str)
def test_unsqueeze(shape, axes, rng):
    x = _r(rng, shape)
    (y,) = run_op("Unsqueeze", [x, _i64(axes)], const_inputs={1})
    assert_equal(y, _unsqueeze_ref(x, axes))


# ---- Expand (bidirectional broadcast with a shape input) ----

@pytest.mark.parametrize("dtype", [F32, I64], ids=["f32", "i64"])
@pytest.mark.parametrize("shape,target", [((3, 1), [2, 3, 4]), ((1,), [5]), ((3, 1), [3, 1]),
                                          ((2, 3, 4), [3, 1]), ((3, 4), [1, 1]),
                                          ((1, 4), [3, 1]), ((), [2, 3]), ((2, 1, 1), [1, 1, 5]),
                                          ((4,), [2, 1, 4])], ids=lambda v: str(v).replace(" ", ""))
def test_expand(shape, target, dtype, rng):
    x = _r(rng, shape, dtype)
    (y,) = run_op("Expand", [x, _i64(target)], const_inputs={1})
    out = np.broadcast_shapes(x.shape, tuple(target))
    assert_equal(y, np.ascontiguousarray(np.broadcast_to(x, out)))


# ---- Tile ----

@pytest.mark.parametrize("dtype", [F32, I64], ids=["f32", "i64"])
@pytest.mark.parametrize("shape,reps", [((2, 3), [1, 1]), ((2, 3), [2, 1]), ((2, 3), [1, 3]),
                                        ((2, 3), [3, 2]), ((4,), [5]), ((1, 2, 1), [2, 1, 3]),
                                        ((2, 3), [0, 2])], ids=lambda v: str(v).replace(" ", ""))
def test_tile(shape, reps, dtype, rng):
    x = _r(rng, shape, dtype)
    (y,) = run_op("Tile", [x, _i64(reps)], const_inputs={1})
    assert_equal(y, np.tile(x, reps))


# ---- Pad (pads, constant_value, axes are inputs) ----

def _pad_ref(x, pads, mode, value=0.0, axes=None):
    r = x.ndim
    axes = list(range(r)) if axes is None else [a % r for a in axes]
    n = len(axes)
    begin = [0] * r
    end = [0] * r
    for k, a in enumerate(axes):
        begin[a], end[a] = pads[k], pads[k + n]
    pos = [(max(b, 0), max(e, 0)) for b, e in zip(begin, end)]
    if mode == "constant":
        y = np.pad(x, pos, mode="constant", constant_values=value)
    else:
        y = np.pad(x, pos, mode=mode)
    sl = tuple(slice(-min(b, 0), y.shape[i] + min(e, 0)) for i, (b, e) in
               enumerate(zip(begin, end)))
    return y[sl]


PADS = [((3, 4), [1, 2, 1, 2]), ((3, 4), [0, 0, 0, 0]), ((3, 4), [2, 0, 0, 3]),
        ((2, 3, 4, 5), [0, 0, 1, 2, 0, 0, 2, 1]), ((5,), [4, 3]),
        ((1, 3, 4, 4), [0, 0, 3, 3, 0, 0, 3, 3]), ((4, 5), [0, 1, 3, 0])]
MODES = ["constant", "reflect", "edge", "wrap"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape,pads", PADS, ids=lambda v: str(v).replace(" ", ""))
def test_pad_modes(shape, pads, mode, rng):
    x = _r(rng, shape)
    ins = [x, _i64(pads)]
    attrs = {} if mode == "constant" else {"mode": mode}
    (y,) = run_op("Pad", ins, attrs, const_inputs={1})
    assert_equal(y, _pad_ref(x, pads, mode))


@pytest.mark.parametrize("value", [0.0, 1.5, -7.25])
def test_pad_constant_value(value, rng):
    x = _r(rng, (2, 3))
    (y,) = run_op("Pad", [x, _i64([1, 0, 2, 1]), np.array(value, F32)], {"mode": "constant"},
                  const_inputs={1, 2})
    assert_equal(y, _pad_ref(x, [1, 0, 2, 1], "constant", value))


@pytest.mark.parametrize("pads", [[-1, 0, 0, -2], [-1, 2, 1, -1], [0, -3, 0, 0]],
                         ids=str)
def test_pad_negative_crops(pads, rng):
    x = _r(rng, (4, 5))
    (y,) = run_op("Pad", [x, _i64(pads)], const_inputs={1})
    assert_equal(y, _pad_ref(x, pads, "constant"))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("axes,pads", [([1], [1, 2]), ([-1], [2, 0]), ([0, 2], [1, 1, 0, 2])],
                         ids=str)
def test_pad_axes(axes, pads, mode, rng):
    x = _r(rng, (3, 4, 5))
    (y,) = run_op("Pad", [x, _i64(pads), None, _i64(axes)], {"mode": mode},
                  const_inputs={1, 3})
    assert_equal(y, _pad_ref(x, pads, mode, axes=axes))


def test_pad_i64_constant(rng):
    x = _r(rng, (2, 3), I64)
    (y,) = run_op("Pad", [x, _i64([1, 1, 0, 2]), np.array(-9, I64)], const_inputs={1, 2})
    assert_equal(y, _pad_ref(x, [1, 1, 0, 2], "constant", -9))


# ---- Shape ----

@pytest.mark.parametrize("start,end", [(None, None), (1, None), (None, -1), (-2, None),
                                       (1, 3), (0, 100), (-100, 2), (3, 1), (4, None)], ids=str)
def test_shape(start, end, rng):
    x = _r(rng, (2, 3, 4, 5))
    attrs = {}
    if start is not None:
        attrs["start"] = start
    if end is not None:
        attrs["end"] = end
    (y,) = run_op("Shape", [x], attrs)
    r = x.ndim
    s = 0 if start is None else start
    e = r if end is None else end
    s = min(max(s + r if s < 0 else s, 0), r)
    e = min(max(e + r if e < 0 else e, 0), r)
    assert_equal(y, np.array(x.shape[s:e], dtype=I64))


def test_shape_of_scalar():
    (y,) = run_op("Shape", [np.array(3.0, F32)])
    assert_equal(y, np.zeros((0,), I64))
