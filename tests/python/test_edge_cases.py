"""Edge cases across ops: zero-size tensors, NaN and infinity, masked softmax, integer
dtypes, special values of Cast and Pow."""

import numpy as np
import pytest

from kiln_ctypes import assert_close, assert_equal, run_op

F = np.float32
I = np.int64


def _softmax(x):
    x = x.astype(np.float64)
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _log_softmax(x):
    x = x.astype(np.float64)
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


# (id, op, inputs, attrs, constant input indices, reference, exact)
EDGE = [
    ("relu_empty", "Relu", [np.zeros((0,), F)], {}, set(), lambda x: np.maximum(x, 0), True),
    ("add_empty_bcast", "Add", [np.zeros((0, 3), F), np.ones((1, 3), F)], {}, set(), np.add, True),
    ("matmul_M0", "MatMul", [np.zeros((0, 4), F), np.ones((4, 5), F)], {}, set(), np.matmul, True),
    ("matmul_K0", "MatMul", [np.zeros((3, 0), F), np.ones((0, 5), F)], {}, set(), np.matmul, True),
    ("gemm_K0", "Gemm", [np.zeros((3, 0), F), np.ones((0, 5), F), np.arange(5, dtype=F)], {},
     set(), lambda a, b, c: a @ b + c, True),
    ("concat_with_empty", "Concat", [np.ones((2, 3), F), np.zeros((0, 3), F)], {"axis": 0},
     set(), lambda a, b: np.concatenate([a, b]), True),
    ("reducesum_empty_axis", "ReduceSum", [np.zeros((3, 0), F), np.array([1], I)],
     {"keepdims": 0}, {1}, lambda x, a: x.sum(axis=1), True),
    ("reducemax_empty_axis", "ReduceMax", [np.zeros((3, 0), F), np.array([1], I)],
     {"keepdims": 0}, {1}, lambda x, a: np.full(3, -np.inf, F), True),
    ("softmax_empty", "Softmax", [np.zeros((0, 5), F)], {}, set(), lambda x: x, True),
    ("transpose_empty", "Transpose", [np.zeros((2, 0, 3), F)], {"perm": [2, 0, 1]}, set(),
     lambda x: x.transpose(2, 0, 1), True),
    ("gather_empty_indices", "Gather", [np.ones((4, 3), F), np.zeros((0,), I)], {"axis": 0},
     set(), lambda x, i: x[i], True),
    ("conv_batch0", "Conv", [np.zeros((0, 3, 5, 5), F), np.ones((2, 3, 3, 3), F)], {}, {1},
     lambda x, w: np.zeros((0, 2, 3, 3), F), True),
    ("maxpool_channels0", "MaxPool", [np.zeros((1, 0, 5, 5), F)], {"kernel_shape": [2, 2]},
     set(), lambda x: np.zeros((1, 0, 4, 4), F), True),
    ("slice_empty", "Slice", [np.ones((4, 3), F), np.array([2], I), np.array([1], I)], {},
     {1, 2}, lambda x, a, b: x[2:1], True),
    ("cast_f16_specials", "Cast",
     [np.array([np.inf, -np.inf, np.nan, 6e-8, -0.0, 65504], np.float16)], {"to": 1}, set(),
     lambda x: x.astype(F), True),
    ("cast_i64_large_to_f32", "Cast", [np.array([2**40 + 1, 2**24 + 1, -(2**53) - 3,
                                                 2**62 + 12345], I)], {"to": 1}, set(),
     lambda x: x.astype(F), True),
    ("cast_f32_specials_to_bool", "Cast", [np.array([np.nan, 0, -0.0, np.inf, -1e-45], F)],
     {"to": 9}, set(), lambda x: x.astype(bool), True),
    ("cast_f32_to_i32", "Cast", [np.array([1.9, -1.9, 2e9, -2e9, 0.5, -0.5], F)], {"to": 6},
     set(), lambda x: x.astype(np.int32), True),
    ("equal_nan_inf", "Equal", [np.array([np.nan, 1, np.inf], F), np.array([np.nan, 1, np.inf], F)],
     {}, set(), np.equal, True),
    ("less_nan", "Less", [np.array([np.nan, 1, -np.inf], F), np.array([1, np.nan, 0], F)], {},
     set(), np.less, True),
    ("greater_inf", "Greater", [np.array([np.inf, 1, -np.inf], F), np.array([1, np.inf, -np.inf], F)],
     {}, set(), np.greater, True),
    ("softmax_masked", "Softmax", [np.array([[-np.inf, 0, 1], [2, -np.inf, -np.inf]], F)], {},
     set(), _softmax, False),
    ("logsoftmax_masked", "LogSoftmax", [np.array([[-np.inf, 0, 1], [2, -np.inf, -np.inf]], F)],
     {}, set(), _log_softmax, False),
    ("matmul_i64", "MatMul", [np.arange(6, dtype=I).reshape(2, 3) - 2,
                              np.arange(6, dtype=I).reshape(3, 2) * 3], {}, set(), np.matmul, True),
    ("max_nan_propagates", "Max", [np.array([np.nan, 1], F), np.array([1, np.nan], F)], {},
     set(), np.maximum, True),
    ("relu_nan", "Relu", [np.array([np.nan, -1], F)], {}, set(),
     lambda x: np.array([np.nan, 0], F), True),
    ("pow_zero_base", "Pow", [np.array([0, 0, 0, 4], F), np.array([0, -1, 2, 0.5], F)], {},
     set(), lambda a, b: np.power(a.astype(np.float64), b), False),
    ("div_i64_truncates", "Div", [np.array([-7, 7, -7, 7, 0], I), np.array([2, -2, -2, 2, 5], I)],
     {}, set(), lambda a, b: np.trunc(a / b).astype(I), True),
    ("where_bool_values", "Where", [np.array([True, False]), np.array([True, True]),
                                    np.array([False, False])], {}, set(), np.where, True),
    ("reducesum_i64_all", "ReduceSum", [np.arange(12, dtype=I).reshape(3, 4)], {"keepdims": 0},
     set(), lambda x: np.array(x.sum()), True),
]


@pytest.mark.parametrize("name,op,ins,attrs,consts,ref,exact", EDGE, ids=[e[0] for e in EDGE])
def test_edge(name, op, ins, attrs, consts, ref, exact):
    (y,) = run_op(op, ins, attrs, const_inputs=consts)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        want = np.asarray(ref(*ins))
    if exact:
        assert_equal(y, want)
    else:
        assert_close(y, want)
