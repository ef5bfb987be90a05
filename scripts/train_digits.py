#!/usr/bin/env python3
"""Trains the demo model: a small MLP on scikit-learn's bundled 8x8 handwritten digits (no
download), exports it to ONNX with onnx.helper, and writes models/digits/: digits.onnx, the
held-out split (test_x.npy, test_y.npy) and metrics.json with the test accuracy.

    python3 -m venv /tmp/train && /tmp/train/bin/pip install -r scripts/requirements-train.txt
    /tmp/train/bin/python scripts/train_digits.py [--out models/digits] [--seed 0]

The model's input "pixels" is [N, 64] float32, each pixel scaled from 0..16 to 0..1 as in
training; its output "probabilities" is [N, 10] (Softmax). N is symbolic, so an engine is
built for an explicit batch (kiln build ... --shapes pixels:450x64).
"""

import argparse
import json
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

PIXEL_MAX = 16.0  # load_digits pixels are counts 0..16
HIDDEN = (128, 64)
TEST_SIZE = 0.25
OPSET = 17


def train(seed):
    digits = load_digits()
    x = (digits.data / PIXEL_MAX).astype(np.float32)
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=TEST_SIZE, stratify=y,
                                              random_state=seed)
    clf = MLPClassifier(hidden_layer_sizes=HIDDEN, activation="relu", solver="adam",
                        alpha=1e-4, batch_size=64, learning_rate_init=1e-3, max_iter=500,
                        tol=1e-4, n_iter_no_change=10, random_state=seed)
    clf.fit(x_tr, y_tr)
    return clf, x_tr, y_tr, x_te, y_te


def layers(clf):
    """(weight [in, out], bias [out]) per layer, float32."""
    return [(w.astype(np.float32), b.astype(np.float32))
            for w, b in zip(clf.coefs_, clf.intercepts_)]


def forward(params, x):
    """The exported network in numpy float32: Gemm, Relu, ..., Gemm, Softmax."""
    h = x.astype(np.float32)
    for i, (w, b) in enumerate(params):
        h = h @ w + b
        if i < len(params) - 1:
            h = np.maximum(h, 0)
    e = np.exp(h - h.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def export(params, seed):
    nodes, inits = [], []
    cur = "pixels"
    for i, (w, b) in enumerate(params):
        wn, bn = f"fc{i + 1}.weight", f"fc{i + 1}.bias"
        inits += [numpy_helper.from_array(w, wn), numpy_helper.from_array(b, bn)]
        out = f"fc{i + 1}"
        nodes.append(helper.make_node("Gemm", [cur, wn, bn], [out], name=f"fc{i + 1}",
                                      alpha=1.0, beta=1.0, transA=0, transB=0))
        cur = out
        if i < len(params) - 1:
            nodes.append(helper.make_node("Relu", [cur], [f"relu{i + 1}"], name=f"relu{i + 1}"))
            cur = f"relu{i + 1}"
    nodes.append(helper.make_node("Softmax", [cur], ["probabilities"], name="softmax", axis=1))
    graph = helper.make_graph(
        nodes, "digits_mlp",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="kiln scripts/train_digits.py",
                              doc_string=f"MLP {HIDDEN} relu on sklearn load_digits, pixels/16, "
                                         f"seed {seed}")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description="train and export the kiln digits demo model")
    ap.add_argument("--out", default=os.path.join(here, "..", "models", "digits"))
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    clf, x_tr, y_tr, x_te, y_te = train(a.seed)
    params = layers(clf)
    probs = forward(params, x_te)
    pred = probs.argmax(axis=1)
    n_correct = int(np.sum(pred == y_te))
    acc = n_correct / len(y_te)
    top2 = np.sort(probs, axis=1)[:, -2:]
    margin = float(np.min(top2[:, 1] - top2[:, 0]))
    sk_acc = float(np.mean(clf.predict(x_te) == y_te))
    train_acc = float(np.mean(forward(params, x_tr).argmax(axis=1) == y_tr))

    model = export(params, a.seed)
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, "digits.onnx")
    onnx.save(model, path)
    np.save(os.path.join(a.out, "test_x.npy"), np.ascontiguousarray(x_te, np.float32))
    np.save(os.path.join(a.out, "test_y.npy"), np.ascontiguousarray(y_te, np.int64))

    # the exported file must classify the held-out split exactly as numpy did
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    ort_pred = sess.run(["probabilities"], {"pixels": x_te})[0].argmax(axis=1)
    if not np.array_equal(ort_pred, pred):
        raise SystemExit(f"onnxruntime disagrees with numpy on "
                         f"{int(np.sum(ort_pred != pred))} test images")

    metrics = {"test_accuracy": acc, "n_test": len(y_te), "n_correct": n_correct, "seed": a.seed,
               "n_train": len(y_tr), "train_accuracy": train_acc,
               "min_top2_margin": margin, "input": "pixels = load_digits().data / 16",
               "model": f"MLP {HIDDEN[0]}-{HIDDEN[1]} relu, softmax over 10"}
    with open(os.path.join(a.out, "metrics.json"), "w") as fh:
        json.dump(metrics, fh, indent=1)
        fh.write("\n")
    print(f"test accuracy {acc:.6f} ({n_correct}/{len(y_te)}; scikit-learn's predict: "
          f"{sk_acc:.6f}), train accuracy {train_acc:.4f}, smallest top-2 probability margin "
          f"{margin:.3g}, onnxruntime agrees; {path}: {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
