"""Resize (nearest and linear) against a numpy reference written from the ONNX
formulas: output size, coordinate transformation modes, nearest rounding modes.
roi, scales and sizes are constant inputs."""

import math

import numpy as np
import pytest

from kiln_ctypes import assert_close, assert_equal, run_op

F32 = np.float32


def _orig_coord(o, scale, length_in, length_out, ctm, roi=None):
    """x_original of output index `o` along one axis, ONNX Resize formulas."""
    if ctm == "half_pixel":
        return (o + 0.5) / scale - 0.5
    if ctm == "half_pixel_symmetric":
        adjustment = length_out / (scale * length_in)
        center = length_in / 2.0
        offset = center * (1.0 - adjustment)
        return offset + (o + 0.5) / scale - 0.5
    if ctm == "pytorch_half_pixel":
        return (o + 0.5) / scale - 0.5 if length_out > 1 else 0.0
    if ctm == "align_corners":
        return 0.0 if length_out == 1 else o * (length_in - 1) / (length_out - 1)
    if ctm == "asymmetric":
        return o / scale
    if ctm == "tf_crop_and_resize":
        start, end = roi
        if length_out > 1:
            return start * (length_in - 1) + o * (end - start) * (length_in - 1) / (length_out - 1)
        return 0.5 * (start + end) * (length_in - 1)
    raise ValueError(ctm)


def _nearest(xo, mode):
    if mode == "round_prefer_floor":
        return math.floor(xo) if xo == math.floor(xo) + 0.5 else round(xo)
    if mode == "round_prefer_ceil":
        return math.ceil(xo) if xo == math.floor(xo) + 0.5 else round(xo)
    if mode == "floor":
        return math.floor(xo)
    if mode == "ceil":
        return math.ceil(xo)
    raise ValueError(mode)


def _resize_axis(x, axis, n_out, scale, mode, ctm, nearest_mode, roi, extrap):
    L = x.shape[axis]
    xm = np.moveaxis(x, axis, -1)
    y = np.empty(xm.shape[:-1] + (n_out,))
    for o in range(n_out):
        xo = _orig_coord(o, scale, L, n_out, ctm, roi)
        if ctm == "tf_crop_and_resize" and (xo < 0 or xo > L - 1):
            y[..., o] = extrap
            continue
        if mode == "nearest":
            i = min(max(_nearest(xo, nearest_mode), 0), L - 1)
            y[..., o] = xm[..., i]
        else:
            xc = min(max(xo, 0.0), L - 1.0)
            i0 = int(math.floor(xc))
            i1 = min(i0 + 1, L - 1)
            t = xc - i0
            y[..., o] = xm[..., i0] * (1 - t) + xm[..., i1] * t
    return np.moveaxis(y, -1, axis)


def resize_ref(x, scales=None, sizes=None, mode="nearest", ctm="half_pixel",
               nearest_mode="round_prefer_floor", axes=None, roi=None, extrap=0.0,
               policy="stretch"):
    x = x.astype(np.float64)
    r = x.ndim
    axes = list(range(r)) if axes is None else [a % r for a in axes]
    sc = [1.0] * r
    out = list(x.shape)
    if scales is not None:
        for a, s in zip(axes, scales):
            sc[a] = float(s)
            out[a] = int(math.floor(x.shape[a] * float(s)))
    else:
        if policy == "stretch":
            for a, n in zip(axes, sizes):
                out[a] = int(n)
                sc[a] = n / x.shape[a]
        else:
            ratios = [n / x.shape[a] for a, n in zip(axes, sizes)]
            s = min(ratios) if policy == "not_larger" else max(ratios)
            for a in axes:
                sc[a] = s
                out[a] = int(math.floor(s * x.shape[a] + 0.5))
    rois = [(0.0, 1.0)] * r
    if roi is not None:
        k = len(axes)
        for j, a in enumerate(axes):
            rois[a] = (float(roi[j]), float(roi[j + k]))
    y = x
    for a in range(r):
        if a in axes:
            y = _resize_axis(y, a, out[a], sc[a], mode, ctm, nearest_mode, rois[a], extrap)
    return y


CTMS = ["half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
        "asymmetric"]
NEAREST_MODES = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]

SCALES = [((1, 2, 4, 4), [1, 1, 2, 2]), ((1, 2, 4, 6), [1, 1, 0.5, 0.5]),
          ((2, 1, 3, 5), [1, 1, 1.5, 2.0]), ((1, 3, 8, 8), [1, 1, 0.75, 0.25]),
          ((1, 1, 5, 3), [1, 1, 3.0, 1.0]), ((1, 1, 1, 4), [1, 1, 4.0, 0.5])]
SIZES = [((1, 2, 4, 4), [1, 2, 8, 8]), ((1, 2, 6, 6), [1, 2, 3, 9]),
         ((1, 1, 5, 7), [1, 1, 7, 5]), ((1, 1, 4, 4), [1, 1, 1, 6]), ((1, 1, 3, 3), [1, 1, 3, 1])]


def _sid(s):
    return "x".join(str(v) for v in s)


@pytest.mark.parametrize("nearest_mode", NEAREST_MODES)
@pytest.mark.parametrize("ctm", CTMS)
@pytest.mark.parametrize("xs,scales", SCALES, ids=lambda v: _sid(v))
def test_resize_nearest_scales(xs, scales, ctm, nearest_mode, rng):
    x = rng.standard_normal(size=xs).astype(F32)
    attrs = {"mode": "nearest", "coordinate_transformation_mode": ctm,
             "nearest_mode": nearest_mode}
    (y,) = run_op("Resize", [x, None, np.array(scales, F32)], attrs, const_inputs={1, 2, 3})
    assert_equal(y, resize_ref(x, scales=scales, ctm=ctm, nearest_mode=nearest_mode)
                 .astype(F32))


@pytest.mark.parametrize("ctm", CTMS)
@pytest.mark.parametrize("xs,scales", SCALES, ids=lambda v: _sid(v))
def test_resize_linear_scales(xs, scales, ctm, rng):
    x = rng.standard_normal(size=xs).astype(F32)
    attrs = {"mode": "linear", "coordinate_transformation_mode": ctm}
    (y,) = run_op("Resize", [x, None, np.array(scales, F32)], attrs, const_inputs={1, 2, 3})
    assert_close(y, resize_ref(x, scales=scales, mode="linear", ctm=ctm))


@pytest.mark.parametrize("mode", ["nearest", "linear"])
@pytest.mark.parametrize("ctm", CTMS)
@pytest.mark.parametrize("xs,sizes", SIZES, ids=lambda v: _sid(v))
def test_resize_sizes(xs, sizes, ctm, mode, rng):
    x = rng.standard_normal(size=xs).astype(F32)
    attrs = {"mode": mode, "coordinate_transformation_mode": ctm}
    (y,) = run_op("Resize", [x, None, None, np.array(sizes, np.int64)], attrs,
                  const_inputs={1, 2, 3})
    want = resize_ref(x, sizes=sizes, mode=mode, ctm=ctm)
    if mode == "nearest":
        assert_equal(y, want.astype(F32))
    else:
        assert_close(y, want)


def test_resize_defaults_are_nearest_half_pixel_round_prefer_floor(rng):
    x = rng.standard_normal(size=(1, 1, 3, 5)).astype(F32)
    (y,) = run_op("Resize", [x, None, np.array([1, 1, 2.0, 0.6], F32)], {}, const_inputs={2})
    assert_equal(y, resize_ref(x, scales=[1, 1, 2.0, 0.6]).astype(F32))


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_resize_empty_roi_input(mode, rng):
    # an empty roi constant, as older exporters write, means "no roi"
    x = rng.standard_normal(size=(1, 2, 3, 3)).astype(F32)
    (y,) = run_op("Resize", [x, np.zeros((0,), F32), np.array([1, 1, 2, 2], F32)],
                  {"mode": mode}, const_inputs={1, 2})
    assert_close(y, resize_ref(x, scales=[1, 1, 2, 2], mode=mode))


@pytest.mark.parametrize("mode", ["nearest", "linear"])
@pytest.mark.parametrize("axes,scales", [([2, 3], [2.0, 0.5]), ([-1], [3.0]), ([-2, -1], [1.5, 2])],
                         ids=str)
def test_resize_axes_attribute(axes, scales, mode, rng):
    x = rng.standard_normal(size=(1, 2, 4, 4)).astype(F32)
    (y,) = run_op("Resize", [x, None, np.array(scales, F32)], {"mode": mode, "axes": axes},
                  const_inputs={2})
    assert_close(y, resize_ref(x, scales=scales, mode=mode, axes=axes))


@pytest.mark.parametrize("policy", ["not_larger", "not_smaller"])
def test_resize_keep_aspect_ratio(policy, rng):
    x = rng.standard_normal(size=(1, 1, 4, 6)).astype(F32)
    (y,) = run_op("Resize", [x, None, None, np.array([8, 8], np.int64)],
                  {"mode": "linear", "axes": [2, 3], "keep_aspect_ratio_policy": policy},
                  const_inputs={3})
    assert_close(y, resize_ref(x, sizes=[8, 8], mode="linear", axes=[2, 3], policy=policy))


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_resize_tf_crop_and_resize(mode, rng):
    x = rng.standard_normal(size=(1, 1, 5, 5)).astype(F32)
    roi = [0, 0, 0.2, 0.1, 1, 1, 0.9, 1.3]
    (y,) = run_op("Resize", [x, np.array(roi, F32), None, np.array([1, 1, 4, 6], np.int64)],
                  {"mode": mode, "coordinate_transformation_mode": "tf_crop_and_resize",
                   "extrapolation_value": 7.5}, const_inputs={1, 3})
    assert_close(y, resize_ref(x, sizes=[1, 1, 4, 6], mode=mode, ctm="tf_crop_and_resize",
                               roi=roi, extrap=7.5))


def test_resize_linear_3d_and_1d(rng):
    x = rng.standard_normal(size=(2, 3, 5)).astype(F32)
    (y,) = run_op("Resize", [x, None, np.array([1, 2, 1.5], F32)], {"mode": "linear"},
                  const_inputs={2})
    assert_close(y, resize_ref(x, scales=[1, 2, 1.5], mode="linear"))
