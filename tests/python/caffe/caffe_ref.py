"""A small numpy interpreter of Caffe layers, written from Caffe's layer definitions, run
on a NetSpec (gen_caffe_models.py): the oracle for outputs of layers OpenCV's dnn lacks
(Bias, ArgMax, Threshold) or computes differently from Caffe (Log ignores base, scale and
shift; LRN ignores k; InnerProduct ignores transpose), and a check of OpenCV on the rest.
Float64 throughout; no PriorBox or DetectionOutput."""

import numpy as np


def _f(fields, key):
    return fields.get(key, {}) or {}


def _val(v):
    return getattr(v, "value", v)  # unwraps caffe_writer.Note


def _list(v):
    v = _val(v)
    if v is None:
        return []
    return [_val(x) for x in v] if isinstance(v, (list, tuple)) else [v]


def _hw(p, key, default=None):
    """(h, w) of a convolution/pooling size field: key_h/key_w, else key (one or two)."""
    short = "kernel" if key == "kernel_size" else key
    if f"{short}_h" in p or f"{short}_w" in p:
        return int(_val(p.get(f"{short}_h", default))), int(_val(p.get(f"{short}_w", default)))
    v = _list(p.get(key, default))
    if not v:
        return default, default
    return (int(v[0]), int(v[-1]))


def _pad_hw(p):
    if "pad_h" in p or "pad_w" in p:
        return int(_val(p.get("pad_h", 0))), int(_val(p.get("pad_w", 0)))
    v = _list(p.get("pad", 0))
    return int(v[0]), int(v[-1])


def conv2d(x, w, b, stride, pad, dil, group):
    n, c, h, wd = x.shape
    co, cg, kh, kw = w.shape
    sh, sw = stride
    ph, pw = pad
    dh, dw = dil
    oh = (h + 2 * ph - (dh * (kh - 1) + 1)) // sh + 1
    ow = (wd + 2 * pw - (dw * (kw - 1) + 1)) // sw + 1
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    y = np.zeros((n, co, oh, ow))
    og = co // group
    for g in range(group):
        xs = xp[:, g * cg:(g + 1) * cg]
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh,
                           j * dw:j * dw + sw * (ow - 1) + 1:sw]
                y[:, g * og:(g + 1) * og] += np.einsum("nchw,oc->nohw", patch,
                                                       w[g * og:(g + 1) * og, :, i, j])
    if b is not None:
        y += b.reshape(1, -1, 1, 1)
    return y


def deconv2d(x, w, b, stride, pad, dil, group):
    n, c, h, wd = x.shape
    _, og, kh, kw = w.shape  # [in, out/group, kh, kw]
    sh, sw = stride
    ph, pw = pad
    dh, dw = dil
    oh = (h - 1) * sh + dh * (kh - 1) + 1
    ow = (wd - 1) * sw + dw * (kw - 1) + 1
    y = np.zeros((n, og * group, oh, ow))
    cg = c // group
    for g in range(group):
        xs = x[:, g * cg:(g + 1) * cg]
        for i in range(kh):
            for j in range(kw):
                y[:, g * og:(g + 1) * og, i * dh:i * dh + sh * (h - 1) + 1:sh,
                  j * dw:j * dw + sw * (wd - 1) + 1:sw] += np.einsum(
                      "nchw,co->nohw", xs, w[g * cg:(g + 1) * cg, :, i, j])
    y = y[:, :, ph:oh - ph, pw:ow - pw]
    if b is not None:
        y = y + b.reshape(1, -1, 1, 1)
    return y


def pool2d(x, p):
    n, c, h, w = x.shape
    method = str(_val(p.get("pool", "MAX")))
    if _val(p.get("global_pooling", False)):
        kh, kw, sh, sw, ph, pw = h, w, 1, 1, 0, 0
    else:
        kh, kw = _hw(p, "kernel_size")
        s = _hw(p, "stride", 1)
        sh, sw = s
        ph, pw = _pad_hw(p)
    # Caffe rounds up, then drops a last window that would start in the padding
    oh = -(-(h + 2 * ph - kh) // sh) + 1
    ow = -(-(w + 2 * pw - kw) // sw) + 1
    if ph or pw:
        if (oh - 1) * sh >= h + ph:
            oh -= 1
        if (ow - 1) * sw >= w + pw:
            ow -= 1
    y = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            hs, ws = i * sh - ph, j * sw - pw
            if method == "MAX":
                he, we = min(hs + kh, h), min(ws + kw, w)
                hs, ws = max(hs, 0), max(ws, 0)
                y[:, :, i, j] = x[:, :, hs:he, ws:we].max(axis=(2, 3))
            else:
                he, we = min(hs + kh, h + ph), min(ws + kw, w + pw)
                size = (he - hs) * (we - ws)
                hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
                y[:, :, i, j] = x[:, :, hs:he, ws:we].sum(axis=(2, 3)) / size
    return y


def _axis(a, nd):
    return a + nd if a < 0 else a


def _broadcast_shape(x, axis, shape):
    """`shape` placed at `axis` of x's rank, ones elsewhere."""
    return (1,) * axis + tuple(shape) + (1,) * (x.ndim - axis - len(shape))


def layer_forward(kind, fields, blobs, xs, ntop):
    """Outputs of one Caffe layer (as a list)."""
    x = xs[0] if xs else None
    v1 = {"CONVOLUTION": "Convolution", "POOLING": "Pooling", "RELU": "ReLU",
          "INNER_PRODUCT": "InnerProduct", "SOFTMAX": "Softmax", "DROPOUT": "Dropout",
          "TANH": "TanH", "LRN": "LRN", "SIGMOID": "Sigmoid", "CONCAT": "Concat",
          "ELTWISE": "Eltwise", "SPLIT": "Split", "SLICE": "Slice", "FLATTEN": "Flatten",
          "POWER": "Power", "EXP": "Exp", "ABSVAL": "AbsVal", "BNLL": "BNLL",
          "DECONVOLUTION": "Deconvolution", "ARGMAX": "ArgMax"}
    kind = v1.get(kind, kind)
    if kind in ("Convolution", "Deconvolution"):
        p = _f(fields, "convolution_param")
        k = _hw(p, "kernel_size")
        args = (_hw(p, "stride", 1), _pad_hw(p), _hw(p, "dilation", 1),
                int(_val(p.get("group", 1))))
        bias = blobs[1] if _val(p.get("bias_term", True)) else None
        fn = conv2d if kind == "Convolution" else deconv2d
        w = blobs[0].reshape(blobs[0].shape[:2] + k) if blobs[0].ndim != 4 else blobs[0]
        return [fn(x, w, bias, *args)]
    if kind == "InnerProduct":
        p = _f(fields, "inner_product_param")
        a = _axis(int(_val(p.get("axis", 1))), x.ndim)
        flat = x.reshape(x.shape[:a] + (-1,))
        w = blobs[0].reshape(-1, flat.shape[-1]) if not _val(p.get("transpose", False)) \
            else blobs[0].reshape(flat.shape[-1], -1).T
        y = flat @ w.T
        if _val(p.get("bias_term", True)):
            y = y + blobs[1].ravel()
        return [y]
    if kind == "Pooling":
        return [pool2d(x, _f(fields, "pooling_param"))]
    if kind == "ReLU":
        s = float(_val(_f(fields, "relu_param").get("negative_slope", 0.0)))
        return [np.where(x > 0, x, s * x)]
    if kind == "ELU":
        a = float(_val(_f(fields, "elu_param").get("alpha", 1.0)))
        return [np.where(x > 0, x, a * (np.exp(x) - 1))]
    if kind == "PReLU":
        s = blobs[0].ravel()
        s = s[0] if s.size == 1 and _val(_f(fields, "prelu_param").get("channel_shared")) \
            else s.reshape(_broadcast_shape(x, 1, s.shape))
        return [np.where(x > 0, x, s * x)]
    if kind == "Threshold":
        t = float(_val(_f(fields, "threshold_param").get("threshold", 0.0)))
        return [(x > t).astype(np.float64)]
    if kind == "AbsVal":
        return [np.abs(x)]
    if kind == "Power":
        p = _f(fields, "power_param")
        return [(float(_val(p.get("shift", 0))) + float(_val(p.get("scale", 1))) * x)
                ** float(_val(p.get("power", 1)))]
    if kind in ("Exp", "Log"):
        p = _f(fields, "exp_param" if kind == "Exp" else "log_param")
        base = float(_val(p.get("base", -1.0)))
        lnb = 1.0 if base == -1 else np.log(base)
        z = float(_val(p.get("shift", 0))) + float(_val(p.get("scale", 1))) * x
        return [np.exp(lnb * z) if kind == "Exp" else np.log(z) / lnb]
    if kind == "BNLL":
        return [np.where(x > 0, x + np.log1p(np.exp(-x)), np.log1p(np.exp(x)))]
    if kind == "TanH":
        return [np.tanh(x)]
    if kind == "Sigmoid":
        return [1 / (1 + np.exp(-x))]
    if kind == "LRN":
        p = _f(fields, "lrn_param")
        size = int(_val(p.get("local_size", 5)))
        alpha, beta = float(_val(p.get("alpha", 1.0))), float(_val(p.get("beta", 0.75)))
        if str(_val(p.get("norm_region", "ACROSS_CHANNELS"))) == "WITHIN_CHANNEL":
            # Caffe builds it from layers: 1 + alpha * AVE-pool(x^2) (padded windows)
            pad = (size - 1) // 2
            avg = pool2d(x * x, {"pool": "AVE", "kernel_size": size, "stride": 1, "pad": pad})
            return [x * (1 + alpha * avg) ** -beta]
        k = float(_val(p.get("k", 1.0)))
        sq = np.pad(x * x, ((0, 0), ((size - 1) // 2, size // 2), (0, 0), (0, 0)))
        s = sum(sq[:, i:i + x.shape[1]] for i in range(size))
        return [x * (k + alpha / size * s) ** -beta]
    if kind == "Eltwise":
        p = _f(fields, "eltwise_param")
        op = str(_val(p.get("operation", "SUM")))
        if op == "PROD":
            return [np.prod(xs, axis=0)]
        if op == "MAX":
            return [np.max(xs, axis=0)]
        coeff = [float(c) for c in _list(p.get("coeff"))] or [1.0] * len(xs)
        return [sum(c * t for c, t in zip(coeff, xs))]
    if kind == "Split":
        return [x] * ntop
    if kind == "Concat":
        return [np.concatenate(xs, axis=int(_val(_f(fields, "concat_param").get("axis", 1))))]
    if kind == "Slice":
        p = _f(fields, "slice_param")
        a = _axis(int(_val(p.get("axis", 1))), x.ndim)
        pts = [int(s) for s in _list(p.get("slice_point"))]
        return np.split(x, pts, axis=a) if pts else np.split(x, ntop, axis=a)
    if kind == "Crop":
        p = _f(fields, "crop_param")
        a = _axis(int(_val(p.get("axis", 2))), x.ndim)
        off = [int(o) for o in _list(p.get("offset"))]
        idx = []
        for d in range(x.ndim):
            if d < a:
                idx.append(slice(None))
            else:
                o = off[0] if len(off) == 1 else off[d - a] if off else 0
                idx.append(slice(o, o + xs[1].shape[d]))
        return [x[tuple(idx)]]
    if kind == "Reshape":
        p = _f(fields, "reshape_param")
        dims = [int(d) for d in _list(_f(p, "shape").get("dim"))]
        a = int(_val(p.get("axis", 0)))
        na = int(_val(p.get("num_axes", -1)))
        a = _axis(a, x.ndim + 1) if a < 0 else a
        end = x.ndim if na == -1 else a + na
        mid = [x.shape[a + i] if d == 0 else d for i, d in enumerate(dims)]
        return [x.reshape(x.shape[:a] + tuple(mid) + x.shape[end:])]
    if kind == "Flatten":
        p = _f(fields, "flatten_param")
        a = _axis(int(_val(p.get("axis", 1))), x.ndim)
        e = _axis(int(_val(p.get("end_axis", -1))), x.ndim)
        return [x.reshape(x.shape[:a] + (-1,) + x.shape[e + 1:])]
    if kind in ("Bias", "Scale"):
        p = _f(fields, "bias_param" if kind == "Bias" else "scale_param")
        a = _axis(int(_val(p.get("axis", 1))), x.ndim)
        if len(xs) > 1:
            other, rest = xs[1], list(blobs)
        else:
            other, rest = blobs[0], list(blobs[1:])
            na = int(_val(p.get("num_axes", 1)))
            other = other.reshape(x.shape[a:] if na == -1 else x.shape[a:a + na])
        o = other.reshape(_broadcast_shape(x, a, other.shape))
        y = x + o if kind == "Bias" else x * o
        if kind == "Scale" and _val(p.get("bias_term", False)):
            y = y + rest[0].reshape(o.shape)
        return [y]
    if kind == "ArgMax":
        p = _f(fields, "argmax_param")
        k = int(_val(p.get("top_k", 1)))
        mv = bool(_val(p.get("out_max_val", False)))
        if "axis" in p:
            a = _axis(int(_val(p["axis"])), x.ndim)
            order = np.flip(np.argsort(x, axis=a, kind="stable"), axis=a)
            idx = np.take(order, np.arange(k), axis=a)
            return [np.take_along_axis(x, idx, axis=a) if mv else idx.astype(np.float64)]
        flat = x.reshape(x.shape[0], -1)
        idx = np.flip(np.argsort(flat, axis=1, kind="stable"), axis=1)[:, :k]
        out = [idx.astype(np.float64)]
        if mv:
            out.append(np.take_along_axis(flat, idx, axis=1))
        return [np.stack(out, axis=1)]
    if kind == "Softmax":
        a = _axis(int(_val(_f(fields, "softmax_param").get("axis", 1))), x.ndim)
        e = np.exp(x - x.max(axis=a, keepdims=True))
        return [e / e.sum(axis=a, keepdims=True)]
    if kind == "Dropout":
        return [x]
    if kind == "BatchNorm":
        sf = float(blobs[2].ravel()[0])
        f = 0.0 if sf == 0 else 1.0 / sf
        eps = float(_val(_f(fields, "batch_norm_param").get("eps", 1e-5)))
        shp = _broadcast_shape(x, 1, (x.shape[1],))
        return [(x - f * blobs[0].reshape(shp)) / np.sqrt(f * blobs[1].reshape(shp) + eps)]
    if kind == "Normalize":
        p = _f(fields, "norm_param")
        eps = float(_val(p.get("eps", 1e-10)))
        if _val(p.get("across_spatial", True)):
            nrm = np.sqrt((x * x).reshape(x.shape[0], -1).sum(axis=1) + eps)
            y = x / nrm.reshape((-1,) + (1,) * (x.ndim - 1))
        else:
            y = x / np.sqrt((x * x).sum(axis=1, keepdims=True) + eps)
        s = blobs[0].ravel()
        return [y * (s[0] if _val(p.get("channel_shared", True))
                     else s.reshape(_broadcast_shape(x, 1, s.shape)))]
    if kind == "Permute":
        return [np.transpose(x, [int(o) for o in _list(_f(fields, "permute_param")["order"])])]
    raise NotImplementedError(f"caffe_ref: no {kind} layer")


def forward(spec, feeds):
    """Every blob of a NetSpec's forward pass {top name: float64 array} (in-place layers
    overwrite their blob, as in Caffe)."""
    blobs = {k: np.asarray(v, np.float64) for k, v in feeds.items()}
    for lay in spec.layers:
        if lay["kind"] == "Input":
            continue
        xs = [blobs[b] for b in lay["bottom"]]
        outs = layer_forward(lay["kind"], lay["fields"],
                             [np.asarray(b, np.float64) for b in lay["blobs"]], xs,
                             len(lay["top"]))
        for t, o in zip(lay["top"], outs):
            blobs[t] = o
    return blobs
