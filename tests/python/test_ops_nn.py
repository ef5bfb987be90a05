"""Convolution, pooling and normalization ops against independent numpy references:
Conv, ConvTranspose, MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool,
BatchNormalization, LRN."""

import itertools
import math

import numpy as np
import pytest

from kiln_ctypes import assert_close, assert_equal, case, run_op

F32 = np.float32


def _r(rng, shape, lo=-1.0, hi=1.0):
    return rng.uniform(lo, hi, size=shape).astype(F32)


def _sid(s):
    return "x".join(map(str, s)) or "s"


def _auto_pads(in_sp, k, s, d, auto_pad):
    """[b1, b2, ..., e1, e2, ...] for auto_pad SAME_UPPER / SAME_LOWER / VALID."""
    nd = len(in_sp)
    b, e = [0] * nd, [0] * nd
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        for i in range(nd):
            out = -(-in_sp[i] // s[i])
            total = max(0, (out - 1) * s[i] + (k[i] - 1) * d[i] + 1 - in_sp[i])
            small, big = total // 2, total - total // 2
            b[i], e[i] = (small, big) if auto_pad == "SAME_UPPER" else (big, small)
    return b + e


# ---- Conv: windows gathered im2col-style, contracted with tensordot ----

def conv_ref(x, w, b=None, strides=None, pads=None, dilations=None, group=1,
             auto_pad="NOTSET"):
    x = x.astype(np.float64)
    w = w.astype(np.float64)
    N, C = x.shape[:2]
    M = w.shape[0]
    k = w.shape[2:]
    nd = len(k)
    s = strides or [1] * nd
    d = dilations or [1] * nd
    if auto_pad != "NOTSET":
        pads = _auto_pads(x.shape[2:], k, s, d, auto_pad)
    p = pads or [0] * (2 * nd)
    xp = np.pad(x, [(0, 0), (0, 0)] + [(p[i], p[i + nd]) for i in range(nd)])
    out = [(xp.shape[2 + i] - ((k[i] - 1) * d[i] + 1)) // s[i] + 1 for i in range(nd)]
    cg, mg = C // group, M // group
    y = np.zeros((N, M, *out))
    for g in range(group):
        xg = xp[:, g * cg:(g + 1) * cg]
        cols = np.empty((N, cg, *k, *out))
        for kk in itertools.product(*[range(ki) for ki in k]):
            sl = tuple(slice(kk[i] * d[i], kk[i] * d[i] + (out[i] - 1) * s[i] + 1, s[i])
                       for i in range(nd))
            cols[(slice(None), slice(None)) + kk] = xg[(slice(None), slice(None)) + sl]
        wg = w[g * mg:(g + 1) * mg]
        axes = list(range(1, 2 + nd))
        part = np.tensordot(cols, wg, axes=(axes, axes))  # (N, *out, mg)
        y[:, g * mg:(g + 1) * mg] = np.moveaxis(part, -1, 1)
    if b is not None:
        y += b.astype(np.float64).reshape((1, M) + (1,) * nd)
    return y


CONV = [
    # x shape, w shape, attrs
    ((1, 3, 8, 8), (4, 3, 3, 3), {}),
    ((2, 3, 7, 9), (5, 3, 3, 3), {"pads": [1, 1, 1, 1]}),
    ((1, 3, 7, 9), (5, 3, 3, 3), {"pads": [1, 1, 1, 1], "strides": [2, 2]}),
    ((1, 2, 9, 9), (4, 2, 3, 3), {"strides": [2, 3]}),
    ((1, 3, 10, 11), (2, 3, 3, 3), {"dilations": [2, 2], "pads": [2, 2, 2, 2]}),
    ((1, 3, 10, 11), (2, 3, 3, 2), {"dilations": [1, 3]}),
    ((1, 4, 6, 6), (4, 2, 3, 3), {"group": 2, "pads": [1, 1, 1, 1]}),
    ((1, 6, 6, 6), (6, 1, 3, 3), {"group": 6, "pads": [1, 1, 1, 1]}),
    ((2, 8, 9, 7), (8, 1, 3, 3), {"group": 8, "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ((1, 6, 5, 5), (12, 1, 3, 3), {"group": 6}),
    ((1, 6, 7, 7), (9, 2, 3, 3), {"group": 3, "dilations": [2, 1]}),
    ((1, 3, 8, 8), (4, 3, 3, 3), {"pads": [0, 1, 2, 3]}),
    ((1, 3, 8, 8), (4, 3, 3, 3), {"pads": [2, 0, 0, 1], "strides": [2, 1]}),
    ((1, 3, 7, 8), (4, 3, 3, 3), {"auto_pad": "SAME_UPPER"}),
    ((1, 3, 7, 8), (4, 3, 3, 3), {"auto_pad": "SAME_LOWER"}),
    ((1, 3, 7, 8), (4, 3, 4, 2), {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    ((1, 3, 7, 8), (4, 3, 4, 2), {"auto_pad": "SAME_LOWER", "strides": [2, 3]}),
    ((1, 3, 9, 9), (4, 3, 2, 2), {"auto_pad": "SAME_UPPER", "dilations": [2, 2]}),
    ((1, 3, 7, 8), (4, 3, 3, 3), {"auto_pad": "VALID", "strides": [2, 2]}),
    ((1, 3, 7, 8), (4, 3, 3, 3), {"auto_pad": "NOTSET", "pads": [1, 1, 1, 1]}),
    ((1, 16, 5, 5), (8, 16, 1, 1), {}),
    ((2, 5, 1, 1), (7, 5, 1, 1), {}),
    ((1, 1, 1, 1), (1, 1, 1, 1), {}),
    ((1, 3, 5, 5), (2, 3, 5, 5), {}),
    ((1, 3, 4, 4), (2, 3, 3, 3), {"pads": [2, 2, 2, 2]}),
    ((1, 2, 6, 6), (3, 2, 3, 3), {"kernel_shape": [3, 3]}),
    ((1, 3, 13), (4, 3, 3), {"pads": [1, 2], "strides": [2]}),
    ((2, 4, 11), (4, 1, 5), {"group": 4, "dilations": [2]}),
    ((1, 2, 5, 6, 4), (3, 2, 3, 3, 2), {"pads": [1, 0, 1, 1, 1, 0]}),
    ((1, 32, 14, 14), (64, 32, 3, 3), {"pads": [1, 1, 1, 1], "strides": [2, 2]}),
]


def _cid(c):
    return f"{_sid(c[0])}-w{_sid(c[1])}-" + "-".join(
        f"{k}{'_'.join(map(str, v)) if isinstance(v, list) else v}" for k, v in c[2].items())


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("c", CONV, ids=_cid)
def test_conv(c, bias, rng):
    xs, ws, attrs = c
    x, w = _r(rng, xs), _r(rng, ws)
    b = _r(rng, (ws[0],)) if bias else None
    (y,) = run_op("Conv", [x, w] + ([b] if bias else []), attrs, const_inputs={1, 2})
    want = conv_ref(x, w, b, attrs.get("strides"), attrs.get("pads"), attrs.get("dilations"),
                    attrs.get("group", 1), attrs.get("auto_pad", "NOTSET"))
    assert_close(y, want)


def test_conv_weights_as_input(rng):
    x, w, b = _r(rng, (1, 3, 6, 6)), _r(rng, (2, 3, 3, 3)), _r(rng, (2,))
    (y,) = run_op("Conv", [x, w, b], {"pads": [1, 1, 1, 1]})
    assert_close(y, conv_ref(x, w, b, pads=[1, 1, 1, 1]))


def test_conv_explicit_absent_bias(rng):
    x, w = _r(rng, (1, 3, 6, 6)), _r(rng, (2, 3, 3, 3))
    (y,) = run_op("Conv", [x, w, None], {}, const_inputs={1})
    assert_close(y, conv_ref(x, w))


# ---- ConvTranspose: scatter-add of every input pixel, then crop by the pads ----

def conv_transpose_ref(x, w, b=None, strides=None, pads=None, dilations=None, group=1,
                       output_padding=None, output_shape=None, auto_pad="NOTSET"):
    x = x.astype(np.float64)
    w = w.astype(np.float64)
    N, C = x.shape[:2]
    in_sp = x.shape[2:]
    nd = len(in_sp)
    k = w.shape[2:]
    mg = w.shape[1]
    M = mg * group
    cg = C // group
    s = strides or [1] * nd
    d = dilations or [1] * nd
    op = output_padding or [0] * nd
    full = [(in_sp[i] - 1) * s[i] + (k[i] - 1) * d[i] + 1 + op[i] for i in range(nd)]
    if output_shape is not None or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        if output_shape is None:
            output_shape = [in_sp[i] * s[i] for i in range(nd)]
        total = [full[i] - output_shape[i] for i in range(nd)]
        if auto_pad == "SAME_UPPER":
            pb = [t // 2 for t in total]
        else:
            pb = [t - t // 2 for t in total]
        out = list(output_shape)
    else:
        p = pads or [0] * (2 * nd)
        pb = p[:nd]
        out = [full[i] - p[i] - p[i + nd] for i in range(nd)]
    # a buffer that covers the scatter and the crop window, whatever the pads
    lo = [min(0, pb[i]) for i in range(nd)]
    hi = [max(full[i], pb[i] + out[i]) for i in range(nd)]
    buf = np.zeros((N, M, *[hi[i] - lo[i] for i in range(nd)]))
    for g in range(group):
        xg = x[:, g * cg:(g + 1) * cg]
        for kk in itertools.product(*[range(ki) for ki in k]):
            wk = w[(slice(g * cg, (g + 1) * cg), slice(None)) + kk]  # (cg, mg)
            contrib = np.moveaxis(np.tensordot(xg, wk, axes=([1], [0])), -1, 1)
            sl = tuple(slice(kk[i] * d[i] - lo[i],
                             kk[i] * d[i] - lo[i] + (in_sp[i] - 1) * s[i] + 1, s[i])
                       for i in range(nd))
            buf[(slice(None), slice(g * mg, (g + 1) * mg)) + sl] += contrib
    crop = tuple(slice(pb[i] - lo[i], pb[i] - lo[i] + out[i]) for i in range(nd))
    y = buf[(slice(None), slice(None)) + crop]
    if b is not None:
        y = y + b.astype(np.float64).reshape((1, M) + (1,) * nd)
    return y


CONVT = [
    ((1, 3, 4, 4), (3, 2, 3, 3), {}),
    ((2, 3, 4, 5), (3, 4, 3, 3), {"strides": [2, 2]}),
    ((1, 3, 4, 5), (3, 4, 3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ((1, 3, 4, 5), (3, 4, 3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1],
                                  "output_padding": [1, 1]}),
    ((1, 2, 5, 5), (2, 3, 4, 4), {"strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ((1, 2, 3, 3), (2, 2, 2, 2), {"strides": [3, 2]}),
    ((1, 2, 4, 4), (2, 3, 3, 3), {"dilations": [2, 2]}),
    ((1, 2, 4, 4), (2, 3, 3, 2), {"pads": [0, 1, 2, 0]}),
    ((1, 4, 4, 4), (4, 2, 3, 3), {"group": 2, "strides": [2, 2]}),
    ((1, 4, 5, 5), (4, 1, 3, 3), {"group": 4, "pads": [1, 1, 1, 1]}),
    ((1, 3, 4, 4), (3, 2, 3, 3), {"strides": [2, 2], "output_shape": [9, 9]}),
    ((1, 3, 4, 4), (3, 2, 3, 3), {"strides": [2, 2], "output_shape": [8, 8]}),
    ((1, 3, 4, 4), (3, 2, 3, 3), {"strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ((1, 3, 4, 4), (3, 2, 3, 3), {"strides": [2, 2], "auto_pad": "SAME_LOWER"}),
    ((1, 3, 4, 4), (3, 2, 4, 4), {"strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ((1, 3, 4, 4), (3, 2, 3, 3), {"auto_pad": "VALID", "strides": [2, 2]}),
    ((1, 3, 1, 1), (3, 2, 2, 2), {}),
    ((1, 8, 7), (8, 4, 4), {"strides": [2], "pads": [1, 1]}),
    ((1, 2, 3, 3, 2), (2, 2, 2, 2, 2), {"strides": [2, 2, 1]}),
]


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("c", CONVT, ids=_cid)
def test_conv_transpose(c, bias, rng):
    xs, ws, attrs = c
    x, w = _r(rng, xs), _r(rng, ws)
    M = ws[1] * attrs.get("group", 1)
    b = _r(rng, (M,)) if bias else None
    (y,) = run_op("ConvTranspose", [x, w] + ([b] if bias else []), attrs, const_inputs={1, 2})
    want = conv_transpose_ref(x, w, b, attrs.get("strides"), attrs.get("pads"),
                              attrs.get("dilations"), attrs.get("group", 1),
                              attrs.get("output_padding"), attrs.get("output_shape"),
                              attrs.get("auto_pad", "NOTSET"))
    assert_close(y, want)


# ---- pooling: every window enumerated explicitly ----

def _pool_out(in_sp, k, s, d, pb, pe, ceil_mode):
    out = []
    for i in range(len(in_sp)):
        num = in_sp[i] + pb[i] + pe[i] - ((k[i] - 1) * d[i] + 1)
        o = (-(-num // s[i]) if ceil_mode else num // s[i]) + 1
        if ceil_mode and (o - 1) * s[i] >= in_sp[i] + pb[i]:
            o -= 1  # the last window must start inside the input or the left pad
        out.append(o)
    return out


def pool_ref(x, kind, k, strides=None, pads=None, dilations=None, ceil_mode=0,
             count_include_pad=0, auto_pad="NOTSET"):
    """kind "max" or "avg". Average windows divide by the count of window positions
    inside the input (count_include_pad=0) or inside the padded input
    (count_include_pad=1; positions past the pads that ceil_mode adds never count)."""
    x = x.astype(np.float64)
    in_sp = x.shape[2:]
    nd = len(in_sp)
    s = strides or [1] * nd
    d = dilations or [1] * nd
    if auto_pad != "NOTSET":
        pads = _auto_pads(in_sp, k, s, d, auto_pad)
    p = pads or [0] * (2 * nd)
    pb, pe = p[:nd], p[nd:]
    out = _pool_out(in_sp, k, s, d, pb, pe, ceil_mode)
    y = np.zeros(x.shape[:2] + tuple(out))
    for o in itertools.product(*[range(n) for n in out]):
        idx = [o[i] * s[i] - pb[i] + np.arange(k[i]) * d[i] for i in range(nd)]
        valid = [ix[(ix >= 0) & (ix < in_sp[i])] for i, ix in enumerate(idx)]
        win = x[(slice(None), slice(None)) + np.ix_(*valid)]
        win = win.reshape(x.shape[:2] + (-1,))
        if kind == "max":
            y[(slice(None), slice(None)) + o] = win.max(axis=-1)
        else:
            if count_include_pad:
                cnt = np.prod([((ix >= -pb[i]) & (ix < in_sp[i] + pe[i])).sum()
                               for i, ix in enumerate(idx)])
            else:
                cnt = win.shape[-1]
            y[(slice(None), slice(None)) + o] = win.sum(axis=-1) / cnt
    return y


POOL = [
    ((1, 2, 6, 6), {"kernel_shape": [2, 2], "strides": [2, 2]}),
    ((2, 3, 7, 7), {"kernel_shape": [3, 3]}),
    ((1, 3, 7, 7), {"kernel_shape": [3, 3], "strides": [2, 2]}),
    ((1, 3, 7, 7), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ((1, 2, 8, 9), {"kernel_shape": [3, 2], "strides": [2, 1], "pads": [1, 0, 1, 1]}),
    ((1, 2, 8, 9), {"kernel_shape": [3, 3], "pads": [0, 2, 1, 0]}),
    ((1, 2, 7, 7), {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}),
    ((1, 2, 8, 8), {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),
    ((1, 2, 6, 6), {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1,
                    "pads": [1, 1, 1, 1]}),
    ((1, 2, 5, 5), {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1,
                    "pads": [1, 1, 1, 1]}),
    ((1, 2, 6, 7), {"kernel_shape": [3, 3], "strides": [3, 3], "ceil_mode": 1}),
    ((1, 2, 7, 8), {"kernel_shape": [3, 3], "auto_pad": "SAME_UPPER"}),
    ((1, 2, 7, 8), {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ((1, 2, 7, 8), {"kernel_shape": [2, 2], "strides": [2, 2], "auto_pad": "SAME_LOWER"}),
    ((1, 2, 7, 8), {"kernel_shape": [4, 3], "strides": [2, 3], "auto_pad": "SAME_LOWER"}),
    ((1, 2, 7, 8), {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "VALID"}),
    ((1, 2, 9, 9), {"kernel_shape": [2, 2], "dilations": [2, 2]}),
    ((1, 2, 9, 9), {"kernel_shape": [3, 2], "dilations": [2, 3], "pads": [1, 1, 1, 1]}),
    ((1, 1, 1, 1), {"kernel_shape": [1, 1]}),
    ((1, 3, 4, 4), {"kernel_shape": [4, 4]}),
    ((1, 3, 5, 5), {"kernel_shape": [3, 3], "pads": [2, 2, 2, 2]}),
    ((2, 3, 11), {"kernel_shape": [3], "strides": [2], "pads": [1, 1]}),
    ((1, 2, 4, 5, 6), {"kernel_shape": [2, 3, 2], "strides": [2, 1, 2], "pads": [0, 1, 0, 1, 1, 0]}),
    ((1, 64, 15, 15), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
]


def _pid(c):
    return _cid((c[0], (), c[1])).replace("-w-", "-")


@pytest.mark.parametrize("c", POOL, ids=_pid)
def test_maxpool(c, rng):
    xs, attrs = c
    x = _r(rng, xs, -3, 3)
    (y,) = run_op("MaxPool", [x], attrs)
    want = pool_ref(x, "max", attrs["kernel_shape"], attrs.get("strides"), attrs.get("pads"),
                    attrs.get("dilations"), attrs.get("ceil_mode", 0), 0,
                    attrs.get("auto_pad", "NOTSET"))
    assert_close(y, want)


def test_maxpool_all_negative_with_pads(rng):
    # padding must not act as zeros: every window's max is negative
    x = _r(rng, (1, 2, 5, 5), -3, -1)
    (y,) = run_op("MaxPool", [x], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]})
    assert np.all(y < 0)
    assert_close(y, pool_ref(x, "max", [3, 3], pads=[1, 1, 1, 1]))


@pytest.mark.parametrize("cip", [0, 1], ids=["excl_pad", "incl_pad"])
@pytest.mark.parametrize("c", POOL, ids=_pid)
def test_averagepool(c, cip, rng):
    xs, attrs = c
    x = _r(rng, xs, -3, 3)
    a = dict(attrs)
    a["count_include_pad"] = cip
    (y,) = run_op("AveragePool", [x], a)
    want = pool_ref(x, "avg", attrs["kernel_shape"], attrs.get("strides"), attrs.get("pads"),
                    attrs.get("dilations"), attrs.get("ceil_mode", 0), cip,
                    attrs.get("auto_pad", "NOTSET"))
    assert_close(y, want)


@pytest.mark.parametrize("xs", [(1, 3, 5, 5), (2, 4, 1, 1), (2, 3, 7), (1, 2, 3, 4, 5),
                                (1, 64, 7, 7), (3, 1, 2, 9)], ids=_sid)
@pytest.mark.parametrize("op,ref", [("GlobalAveragePool", np.mean), ("GlobalMaxPool", np.max)])
def test_global_pool(op, ref, xs, rng):
    x = _r(rng, xs, -3, 3)
    (y,) = run_op(op, [x])
    axes = tuple(range(2, x.ndim))
    assert_close(y, ref(x.astype(np.float64), axis=axes, keepdims=True))


# ---- BatchNormalization (inference form) ----

@pytest.mark.parametrize("const_params", [True, False], ids=["const", "inputs"])
@pytest.mark.parametrize("eps", [1e-5, 1e-2])
@pytest.mark.parametrize("xs", [(2, 3, 4, 5), (1, 8, 1, 1), (3, 4), (2, 5, 7), (1, 3, 2, 2, 2)],
                         ids=_sid)
def test_batchnorm(xs, eps, const_params, rng):
    C = xs[1]
    x = _r(rng, xs, -3, 3)
    scale, bias = _r(rng, (C,), 0.5, 1.5), _r(rng, (C,))
    mean, var = _r(rng, (C,)), _r(rng, (C,), 0.1, 2.0)
    attrs = {} if eps == 1e-5 else {"epsilon": eps}
    (y,) = run_op("BatchNormalization", [x, scale, bias, mean, var], attrs,
                  const_inputs={1, 2, 3, 4} if const_params else set())
    sh = (1, C) + (1,) * (len(xs) - 2)
    f = lambda v: v.astype(np.float64).reshape(sh)  # noqa: E731
    want = (x - f(mean)) / np.sqrt(f(var) + eps) * f(scale) + f(bias)
    assert_close(y, want)


def test_batchnorm_momentum_ignored_in_inference(rng):
    x = _r(rng, (1, 2, 3, 3))
    p = [np.array([1.0, 2.0], F32), np.array([0.5, -0.5], F32), np.array([0.1, 0.2], F32),
         np.array([1.0, 4.0], F32)]
    (y,) = run_op("BatchNormalization", [x] + p, {"momentum": 0.7}, const_inputs={1, 2, 3, 4})
    sh = (1, 2, 1, 1)
    want = (x - p[2].reshape(sh)) / np.sqrt(p[3].reshape(sh) + 1e-5) * p[0].reshape(sh) + \
        p[1].reshape(sh)
    assert_close(y, want)


# ---- LRN (across channels) ----

def lrn_ref(x, size, alpha=1e-4, beta=0.75, bias=1.0):
    x = x.astype(np.float64)
    C = x.shape[1]
    sq = x * x
    acc = np.zeros_like(x)
    lo_off, hi_off = (size - 1) // 2, -(-(size - 1) // 2)
    for c in range(C):
        lo, hi = max(0, c - lo_off), min(C - 1, c + hi_off)
        acc[:, c] = sq[:, lo:hi + 1].sum(axis=1)
    return x / (bias + alpha / size * acc) ** beta


@pytest.mark.parametrize("xs,size,attrs", [
    ((1, 5, 4, 4), 3, {}), ((2, 7, 3, 3), 5, {"alpha": 0.001, "beta": 0.5, "bias": 2.0}),
    ((1, 4, 2, 2), 2, {"alpha": 0.1}), ((1, 3, 5, 5), 1, {}), ((1, 6, 3, 3), 4, {"beta": 1.0}),
    ((1, 8, 2, 3), 11, {"alpha": 0.05}), ((2, 10, 3), 3, {"alpha": 0.2, "bias": 0.5})],
    ids=lambda v: str(v).replace(" ", ""))
def test_lrn(xs, size, attrs, rng):
    x = _r(rng, xs, -3, 3)
    a = dict(attrs)
    a["size"] = size
    (y,) = run_op("LRN", [x], a)
    assert_close(y, lrn_ref(x, size, **attrs))


def maxpool_indices_ref(x, k, strides=None, pads=None, storage_order=0):
    """Index of each window's maximum in the flattened input (batch and channel
    included, padding not), row-major or, with storage_order=1, column-major spatially."""
    N, C, H, W = x.shape
    s = strides or [1, 1]
    p = pads or [0, 0, 0, 0]
    out = _pool_out((H, W), k, s, [1, 1], p[:2], p[2:], 0)
    idx = np.zeros((N, C, *out), dtype=np.int64)
    for n, c, oh, ow in itertools.product(range(N), range(C), range(out[0]), range(out[1])):
        best, bi = -np.inf, -1
        for kh, kw in itertools.product(range(k[0]), range(k[1])):
            h, w = oh * s[0] - p[0] + kh, ow * s[1] - p[1] + kw
            if 0 <= h < H and 0 <= w < W and x[n, c, h, w] > best:
                best = x[n, c, h, w]
                bi = (h * W + w) if storage_order == 0 else (h + w * H)
        idx[n, c, oh, ow] = (n * C + c) * H * W + bi
    return idx


@pytest.mark.parametrize("storage_order", [0, 1])
@pytest.mark.parametrize("xs,attrs", [
    ((1, 1, 4, 4), {"kernel_shape": [2, 2], "strides": [2, 2]}),
    ((2, 3, 5, 6), {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
    ((2, 2, 7, 5), {"kernel_shape": [2, 3], "strides": [2, 1]})],
    ids=lambda v: str(v).replace(" ", ""))
def test_maxpool_indices(xs, attrs, storage_order, rng):
    x = _r(rng, xs, -3, 3)
    a = dict(attrs)
    a["storage_order"] = storage_order
    y, ind = run_op("MaxPool", [x], a, n_outputs=2)
    assert_close(y, pool_ref(x, "max", attrs["kernel_shape"], attrs.get("strides"),
                             attrs.get("pads")))
    assert_equal(ind, maxpool_indices_ref(x, attrs["kernel_shape"], attrs.get("strides"),
                                          attrs.get("pads"), storage_order))
