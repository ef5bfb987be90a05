#!/usr/bin/env python3
"""Reports what kiln's optimizer and memory planner do to each test model, beside ONNX
Runtime: ONNX nodes, kiln engine layers (every pass on), ORT's nodes after ORT_ENABLE_ALL,
kiln's arena against the sum of its activations, and the relative L2 error of kiln's
outputs against ORT's. A report, not a test: it asserts nothing.

    KILN_LIB=build/libkiln.so python scripts/opt_report.py [MODEL ...] [--json FILE]

Models are the .onnx files in $KILN_MODEL_CACHE (default build/onnx-models), as
tests/python/models/gen_models.py writes them (it generates them when the folder has
none). Needs the test virtualenv (onnx, onnxruntime, numpy). Writes build/opt-report.json.

ORT's count is of the model it saves with SessionOptions.optimized_model_filepath: its
fusions appear as contrib ops (FusedConv, FusedGemm, SkipLayerNormalization, ...), and at
ORT_ENABLE_ALL its NCHWc layout pass adds ReorderInput/ReorderOutput nodes, so the two
counts measure similar but not identical things.
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "python"))
import kiln_ctypes as K  # noqa: E402
from models import gen_models as G  # noqa: E402

FEED_SEED = 0
NP_OF_ORT = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32,
             "tensor(bool)": np.bool_, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8}


def model_files(cache, names):
    # the static test models (not dynamic ones, nor the benchmarks' batch copies NAME.bB)
    found = sorted(f[:-5] for f in os.listdir(cache)
                   if f.endswith(".onnx") and f[:-5] not in G.DYNAMIC_MODELS
                   and ".b" not in f[:-5]) if os.path.isdir(cache) else []
    if not found:  # an empty cache: generate the test models
        found = list(G.MODELS)
        for name in found:
            G.model_path(name, cache)
    if names:
        missing = [n for n in names if n not in found]
        if missing:
            sys.exit(f"opt_report: no model {', '.join(missing)} in {cache}")
        found = [n for n in found if n in names]
    return [(n, os.path.join(cache, n + ".onnx")) for n in found]


def feeds_for(name, sess):
    """The test inputs of a generated model; seeded random inputs for any other."""
    if name in G.MODELS:
        return G.feeds(name, FEED_SEED)
    rng = np.random.default_rng(FEED_SEED)
    out = {}
    for i in sess.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in i.shape]
        dt = NP_OF_ORT.get(i.type, np.float32)
        out[i.name] = rng.random(shape).astype(dt) if dt == np.float32 else np.zeros(shape, dt)
    return out


def run_ort(path, feeds, saved):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.optimized_model_filepath = saved
    so.log_severity_level = 3
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    outs = dict(zip(names, sess.run(names, feeds)))
    optimized = onnx.load(saved, load_external_data=False)
    return sess, outs, len(optimized.graph.node)


def run_kiln(path, feeds):
    net = K.Network.from_onnx(path)
    try:
        t = time.perf_counter()
        engine = K.build(net, threads=os.cpu_count() or 1)
        build_s = time.perf_counter() - t
    finally:
        net.close()
    ctx = engine.create_context()
    outs = {k: v.copy() for k, v in ctx.infer(feeds).items()}
    ctx.close()
    stats = {"kiln_layers": engine.num_layers, "arena_bytes": engine.arena_bytes,
             "activation_bytes": engine.activation_bytes, "weight_bytes": engine.weight_bytes,
             "kiln_build_s": round(build_s, 3)}
    engine.close()
    return outs, stats


def rel_l2(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        return float("inf")
    den = np.linalg.norm(want)
    return float(np.linalg.norm(got - want) / (den if den > 0 else 1.0))


def report(name, path, tmp):
    row = {"model": name, "onnx_nodes": len(onnx.load(path, load_external_data=False).graph.node)}
    try:
        saved = os.path.join(tmp, name + ".ort.onnx")
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        feeds = feeds_for(name, sess)
        del sess
        _, want, row["ort_nodes"] = run_ort(path, feeds, saved)
        got, stats = run_kiln(path, feeds)
        row.update(stats)
        row["arena_ratio"] = (stats["arena_bytes"] / stats["activation_bytes"]
                              if stats["activation_bytes"] else None)
        row["rel_l2"] = max(rel_l2(got[k], want[k]) for k in want)
    except Exception as e:  # a model kiln cannot build yet is reported, not fatal
        row["error"] = f"{type(e).__name__}: {e}"
    return row


def mib(n):
    return f"{n / 2**20:.1f}"


def print_table(rows):
    head = ("model", "onnx nodes", "kiln layers", "ort nodes", "arena MiB", "act. MiB",
            "arena/act", "rel L2 vs ORT")
    lines = []
    for r in rows:
        if "error" in r:
            lines.append((r["model"], str(r["onnx_nodes"]), "-", str(r.get("ort_nodes", "-")),
                          "-", "-", "-", r["error"][:60]))
            continue
        lines.append((r["model"], str(r["onnx_nodes"]), str(r["kiln_layers"]), str(r["ort_nodes"]),
                      mib(r["arena_bytes"]), mib(r["activation_bytes"]),
                      f"{r['arena_ratio']:.3f}" if r["arena_ratio"] is not None else "-",
                      f"{r['rel_l2']:.2e}"))
    widths = [max(len(x[i]) for x in [head] + lines) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    print(fmt.format(*head))
    for line in lines:
        print(fmt.format(*line))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", help="model names (default: every .onnx in the cache)")
    ap.add_argument("--json", default=os.path.join(ROOT, "build", "opt-report.json"),
                    help="where to write the JSON report (default build/opt-report.json)")
    a = ap.parse_args(argv)
    if not os.environ.get("KILN_LIB"):
        os.environ["KILN_LIB"] = os.path.join(ROOT, "build", "libkiln.so")
    cache = os.environ.get("KILN_MODEL_CACHE") or os.path.join(ROOT, "build", "onnx-models")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in model_files(cache, a.models):
            t = time.perf_counter()
            rows.append(report(name, path, tmp))
            print(f"{name}: {time.perf_counter() - t:.1f} s", file=sys.stderr)
    print_table(rows)
    os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
    with open(a.json, "w") as fh:
        json.dump({"kiln": K.version(), "onnxruntime": ort.__version__, "models": rows}, fh,
                  indent=1)
        fh.write("\n")
    print(f"wrote {a.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
