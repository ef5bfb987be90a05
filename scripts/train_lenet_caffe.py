#!/usr/bin/env python3
"""Trains Caffe's LeNet (examples/mnist/lenet.prototxt: conv 20 5x5, max pool 2, conv 50 5x5,
max pool 2, InnerProduct 128, ReLU, InnerProduct 10, Softmax) in numpy on scikit-learn's
bundled 8x8 digits (no download) upscaled to MNIST's 28x28 layout, and writes models/lenet/:
lenet_deploy.prototxt, lenet.caffemodel (Caffe's binary format, < 1 MB), one held-out digit
per class as digit_<label>_<index>.pgm (28x28, 8-bit binary PGM as TensorRT's sampleMNIST
reads them; <index> is the image's place in the held-out split) and metrics.json.

    python3 -m venv /tmp/train && /tmp/train/bin/pip install -r scripts/requirements-train.txt
    /tmp/train/bin/python scripts/train_lenet_caffe.py [--out models/lenet] [--seed 0]

Pixels: each 8x8 image (counts 0..16) is resized bilinearly to 20x20 and centred in a
28x28 frame, as MNIST centres its digits in a 20x20 box, then stored as 0..255 bytes. The
network sees byte / 256 (Caffe's MNIST convention `scale: 0.00390625`), so a PGM pixel of
255 is 0.996. The caffemodel is checked with OpenCV's dnn (readNetFromCaffe): its
predictions on the whole held-out split must equal numpy's. Needs protoc (Debian's
protobuf-compiler) to compile kiln's caffe.proto for Python.
"""

import argparse
import json
import os
import sys
import tempfile

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "python"))
from caffe import caffe_writer as W  # noqa: E402  (kiln's Caffe writer, shared with the tests)

SIDE, BOX = 28, 20
SCALE = 0.00390625  # 1/256, Caffe's MNIST input scale
HIDDEN = 128  # Caffe's LeNet has 500; 128 keeps the caffemodel near 0.5 MB
TEST_SIZE = 0.25
EPOCHS = 60
BATCH = 64
F32 = np.float32


# ---- data ------------------------------------------------------------------------------------


def _resize_matrix(n_in, n_out):
    """Bilinear interpolation weights [n_out, n_in], pixel centres aligned."""
    m = np.zeros((n_out, n_in))
    for o in range(n_out):
        src = min(max((o + 0.5) * n_in / n_out - 0.5, 0.0), n_in - 1.0)
        lo = int(np.floor(src))
        hi = min(lo + 1, n_in - 1)
        m[o, lo] += 1 - (src - lo)
        m[o, hi] += src - lo
    return m


def to_mnist_bytes(images8):
    """[N, 8, 8] counts 0..16 -> [N, 28, 28] uint8, the digit in the central 20x20 box."""
    r = _resize_matrix(8, BOX)
    big = np.einsum("oi,nij,pj->nop", r, images8 / 16.0, r)
    out = np.zeros((len(images8), SIDE, SIDE), np.uint8)
    off = (SIDE - BOX) // 2
    out[:, off:off + BOX, off:off + BOX] = np.clip(np.rint(big * 255), 0, 255)
    return out


def load(seed):
    d = load_digits()
    x = to_mnist_bytes(d.images)
    y = d.target.astype(np.int64)
    idx = np.arange(len(y))
    i_tr, i_te = train_test_split(idx, test_size=TEST_SIZE, stratify=y, random_state=seed)
    return x[i_tr], y[i_tr], x[i_te], y[i_te]


def net_input(bytes_images):
    return (bytes_images.astype(F32) * F32(SCALE))[:, None]


# ---- the network in numpy (float32, NCHW, Caffe's weight layouts) ------------------------------


def im2col(x, k):
    """[B, C, H, W] -> [B*OH*OW, C*k*k] (valid, stride 1), and OH, OW."""
    b, c, h, w = x.shape
    win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))
    oh, ow = h - k + 1, w - k + 1
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(b * oh * ow, c * k * k), oh, ow


def conv_forward(x, wt, bias):
    o, c, k, _ = wt.shape
    cols, oh, ow = im2col(x, k)
    y = cols @ wt.reshape(o, -1).T + bias
    return y.reshape(x.shape[0], oh, ow, o).transpose(0, 3, 1, 2), cols


def conv_backward(dy, x_shape, cols, wt, need_dx):
    o, c, k, _ = wt.shape
    b, _, oh, ow = dy.shape
    d = dy.transpose(0, 2, 3, 1).reshape(-1, o)
    dw = (d.T @ cols).reshape(wt.shape)
    db = d.sum(axis=0)
    dx = None
    if need_dx:
        dcols = (d @ wt.reshape(o, -1)).reshape(b, oh, ow, c, k, k)
        dx = np.zeros(x_shape, F32)
        for i in range(k):
            for j in range(k):
                dx[:, :, i:i + oh, j:j + ow] += dcols[..., i, j].transpose(0, 3, 1, 2)
    return dw, db, dx


def pool_forward(x):
    """2x2 max pooling, stride 2 (the sizes here divide evenly, so Caffe's rounding agrees)."""
    b, c, h, w = x.shape
    win = x.reshape(b, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(
        b, c, h // 2, w // 2, 4)
    arg = win.argmax(axis=-1)  # the first maximum, as Caffe picks
    return np.take_along_axis(win, arg[..., None], axis=-1)[..., 0], arg


def pool_backward(dy, arg, x_shape):
    b, c, h, w = x_shape
    win = np.zeros(dy.shape + (4,), F32)
    np.put_along_axis(win, arg[..., None], dy[..., None], axis=-1)
    return win.reshape(b, c, h // 2, w // 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(x_shape)


def init_params(rng):
    def xavier(shape, fan_in):  # Caffe's "xavier" filler: uniform, variance 1/fan_in
        lim = np.sqrt(3.0 / fan_in)
        return rng.uniform(-lim, lim, shape).astype(F32)

    return {"conv1": [xavier((20, 1, 5, 5), 25), np.zeros(20, F32)],
            "conv2": [xavier((50, 20, 5, 5), 500), np.zeros(50, F32)],
            "ip1": [xavier((HIDDEN, 800), 800), np.zeros(HIDDEN, F32)],
            "ip2": [xavier((10, HIDDEN), HIDDEN), np.zeros(10, F32)]}


def forward(p, x, cache=None):
    c1, cols1 = conv_forward(x, *p["conv1"])
    p1, a1 = pool_forward(c1)
    c2, cols2 = conv_forward(p1, *p["conv2"])
    p2, a2 = pool_forward(c2)
    f = p2.reshape(len(x), -1)
    h = f @ p["ip1"][0].T + p["ip1"][1]
    r = np.maximum(h, 0)
    z = r @ p["ip2"][0].T + p["ip2"][1]
    e = np.exp(z - z.max(axis=1, keepdims=True))
    prob = e / e.sum(axis=1, keepdims=True)
    if cache is not None:
        cache.update(x=x, c1=c1, cols1=cols1, p1=p1, a1=a1, c2=c2, cols2=cols2, a2=a2, f=f,
                     h=h, r=r)
    return prob


def backward(p, prob, y, c):
    n = len(y)
    dz = prob.copy()
    dz[np.arange(n), y] -= 1
    dz /= n
    g = {"ip2": [dz.T @ c["r"], dz.sum(axis=0)]}
    dr = dz @ p["ip2"][0]
    dh = dr * (c["h"] > 0)
    g["ip1"] = [dh.T @ c["f"], dh.sum(axis=0)]
    dp2 = (dh @ p["ip1"][0]).reshape(n, 50, 4, 4)
    dc2 = pool_backward(dp2, c["a2"], c["c2"].shape)
    dw2, db2, dp1 = conv_backward(dc2, c["p1"].shape, c["cols2"], p["conv2"][0], True)
    g["conv2"] = [dw2, db2]
    dc1 = pool_backward(dp1, c["a1"], c["c1"].shape)
    dw1, db1, _ = conv_backward(dc1, c["x"].shape, c["cols1"], p["conv1"][0], False)
    g["conv1"] = [dw1, db1]
    return g


def train(x, y, seed):
    """Caffe's lenet_solver: SGD, momentum 0.9, weight decay 5e-4 on weights, base_lr 0.01
    with the "inv" policy (gamma 1e-4, power 0.75)."""
    rng = np.random.default_rng(seed)
    p = init_params(rng)
    vel = {k: [np.zeros_like(a) for a in v] for k, v in p.items()}
    it = 0
    for _ in range(EPOCHS):
        order = rng.permutation(len(y))
        for s in range(0, len(y), BATCH):
            b = order[s:s + BATCH]
            cache = {}
            prob = forward(p, x[b], cache)
            g = backward(p, prob, y[b], cache)
            lr = 0.01 * (1 + 1e-4 * it) ** -0.75
            for k in p:
                for i in range(2):
                    grad = g[k][i] + (5e-4 * p[k][i] if i == 0 else 0)
                    vel[k][i] = (0.9 * vel[k][i] - lr * grad).astype(F32)
                    p[k][i] = (p[k][i] + vel[k][i]).astype(F32)
            it += 1
    return p


# ---- Caffe files ------------------------------------------------------------------------------


def caffe_net(p, batch):
    """The deploy network, written as Caffe's lenet.prototxt is."""
    n = W.NetSpec("LeNet", header=(
        "LeNet (Caffe's examples/mnist/lenet.prototxt) trained by kiln's\n"
        "scripts/train_lenet_caffe.py on scikit-learn's digits in MNIST's 28x28 layout.\n"
        "Input: pixel bytes times 0.00390625 (1/256), as Caffe's MNIST example scales them."))
    n.input("data", (batch, 1, SIDE, SIDE))
    lr = [W.Inline(lr_mult=1), W.Inline(lr_mult=2)]
    xav, const = {"type": "xavier"}, {"type": "constant"}
    n.layer("Convolution", "conv1", "data", "conv1", blobs=p["conv1"], param=lr,
            convolution_param={"num_output": 20, "kernel_size": 5, "stride": 1,
                               "weight_filler": xav, "bias_filler": const})
    n.layer("Pooling", "pool1", "conv1", "pool1",
            pooling_param={"pool": W.Enum("MAX"), "kernel_size": 2, "stride": 2})
    n.layer("Convolution", "conv2", "pool1", "conv2", blobs=p["conv2"], param=lr,
            convolution_param={"num_output": 50, "kernel_size": 5, "stride": 1,
                               "weight_filler": xav, "bias_filler": const})
    n.layer("Pooling", "pool2", "conv2", "pool2",
            pooling_param={"pool": W.Enum("MAX"), "kernel_size": 2, "stride": 2})
    n.layer("InnerProduct", "ip1", "pool2", "ip1", blobs=p["ip1"], param=lr,
            inner_product_param={"num_output": W.Note(HIDDEN, "Caffe's LeNet has 500"),
                                 "weight_filler": xav, "bias_filler": const})
    n.layer("ReLU", "relu1", "ip1", "ip1")
    n.layer("InnerProduct", "ip2", "ip1", "ip2", blobs=p["ip2"], param=lr,
            inner_product_param={"num_output": 10, "weight_filler": xav,
                                 "bias_filler": const})
    n.layer("Softmax", "prob", "ip2", "prob")
    # a snapshot Caffe writes holds the training net: its data and loss layers too
    n.model_only_layer("Data", "mnist", [], ["data", "label"],
                       include=W.Inline(phase=W.Enum("TRAIN")))
    n.model_only_layer("SoftmaxWithLoss", "loss", ["ip2", "label"], ["loss"])
    return n


def write_pgm(path, img):
    with open(path, "wb") as fh:
        fh.write(b"P5\n%d %d\n255\n" % (img.shape[1], img.shape[0]))
        fh.write(np.ascontiguousarray(img, np.uint8).tobytes())


def opencv_predict(proto, weights, x):
    import cv2

    net = cv2.dnn.readNetFromCaffe(proto, weights)
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setInput(x, "data")
    return np.asarray(net.forward("prob")).reshape(len(x), 10)


def main():
    ap = argparse.ArgumentParser(description="train and write kiln's Caffe LeNet demo model")
    ap.add_argument("--out", default=os.path.join(HERE, "..", "models", "lenet"))
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    out = os.path.abspath(a.out)

    xb_tr, y_tr, xb_te, y_te = load(a.seed)
    x_tr, x_te = net_input(xb_tr), net_input(xb_te)
    p = train(x_tr, y_tr, a.seed)
    prob = forward(p, x_te)
    pred = prob.argmax(axis=1)
    acc = float(np.mean(pred == y_te))
    train_acc = float(np.mean(forward(p, x_tr).argmax(axis=1) == y_tr))

    # one held-out digit per class: the first of each in the split's order
    picks = [int(np.flatnonzero(y_te == c)[0]) for c in range(10)]
    os.makedirs(out, exist_ok=True)
    for old in os.listdir(out):
        if old.startswith("digit_") and old.endswith(".pgm"):
            os.remove(os.path.join(out, old))
    files = []
    for i in picks:
        name = f"digit_{int(y_te[i])}_{i}.pgm"
        write_pgm(os.path.join(out, name), xb_te[i])
        files.append(name)

    with tempfile.TemporaryDirectory() as tmp:  # the schema compiled for Python
        pb2 = W.load_schema(tmp)
    proto = os.path.join(out, "lenet_deploy.prototxt")
    weights = os.path.join(out, "lenet.caffemodel")
    caffe_net(p, len(picks)).write(pb2, proto, weights)
    size = os.path.getsize(weights)
    if size >= 1 << 20:
        raise SystemExit(f"{weights} is {size} bytes, over 1 MB")

    cv_prob = opencv_predict(proto, weights, x_te)
    cv_pred = cv_prob.argmax(axis=1)
    if not np.array_equal(cv_pred, pred):
        raise SystemExit(f"OpenCV disagrees with numpy on {int(np.sum(cv_pred != pred))} "
                         f"held-out images")
    cv_acc = float(np.mean(cv_pred == y_te))
    err = float(np.linalg.norm(cv_prob - prob) / np.linalg.norm(prob))

    metrics = {
        "test_accuracy": acc, "n_test": int(len(y_te)), "n_correct": int(np.sum(pred == y_te)),
        "opencv_test_accuracy": cv_acc, "opencv_rel_l2_prob": err,
        "train_accuracy": train_acc, "n_train": int(len(y_tr)), "seed": a.seed,
        "split": f"sklearn train_test_split(test_size={TEST_SIZE}, stratify=y, "
                 f"random_state={a.seed}) of load_digits()",
        "input": "28x28 bytes (8x8 digit resized to 20x20, centred) times 0.00390625",
        "model": f"LeNet: conv 20 5x5, max pool 2, conv 50 5x5, max pool 2, ip {HIDDEN}, relu, "
                 f"ip 10, softmax",
        "training": f"SGD momentum 0.9, weight decay 5e-4, lr 0.01 inv(1e-4, 0.75), batch "
                    f"{BATCH}, {EPOCHS} epochs",
        "digits": {f: {"label": int(y_te[i]), "predicted": int(pred[i]),
                       "probability": float(prob[i, pred[i]])} for f, i in zip(files, picks)},
    }
    with open(os.path.join(out, "metrics.json"), "w") as fh:
        json.dump(metrics, fh, indent=1)
        fh.write("\n")
    print(f"test accuracy {acc:.6f} ({metrics['n_correct']}/{len(y_te)}), train accuracy "
          f"{train_acc:.4f}; OpenCV's dnn on the caffemodel: {cv_acc:.6f}, same predictions, "
          f"probabilities within relative L2 {err:.2g}; {weights}: {size} bytes")


if __name__ == "__main__":
    main()
