"""bench/bench.py end to end in its quick mode on SqueezeNet 1.1 (3 timed runs): the JSON
it writes has the expected keys and kiln's outputs agreed with ONNX Runtime's. Speed is
not judged."""

import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BENCH = os.path.join(ROOT, "bench", "bench.py")

pytest.importorskip("onnxruntime")


def test_quick_run(tmp_path):
    out = tmp_path / "results"
    p = subprocess.run([sys.executable, BENCH, "--quick", "--models", "squeezenet1_1",
                        "--runs", "3", "--no-chart", "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert re.search(r"^squeezenet1_1\s+1\s+1\s", p.stdout, re.M), p.stdout
    assert not (out / "bench-results.png").exists()
    res = json.loads((out / "bench-results.json").read_text())

    assert res["schema"] == 1
    m = res["machine"]
    for key in ("cpu_model", "logical_cpus", "usable_cpus", "fma_peak", "kiln_version",
                "ort_version"):
        assert key in m, key
    exe = os.path.join(os.path.dirname(os.path.abspath(os.environ["KILN_LIB"])), "bench",
                       "bench_fma_peak")
    if os.path.isfile(exe):  # built with KILN_BUILD_BENCH
        assert m["fma_peak"]["gflops_by_threads"]["1"] > 0, m["fma_peak"]
    assert res["settings"]["batches"] == [1] and res["settings"]["threads"] == [1]

    (row,) = res["rows"]
    assert (row["model"], row["batch"], row["threads"]) == ("squeezenet1_1", 1, 1)
    assert row["status"] == "ok", row
    assert row["check"]["ok"] and row["check"]["max_rel_l2"] < 1e-4, row["check"]
    assert row["runs"] == 3
    for engine in ("kiln", "ort"):
        s = row[engine]
        assert len(s["samples_ms"]) == 3
        assert 0 < s["p10_ms"] <= s["median_ms"] <= s["p90_ms"], s
    for key in ("ratio", "kiln_gflops", "ort_gflops", "kiln_peak_share", "kiln_build_s",
                "kiln_kernels"):
        assert key in row, key
    assert row["ratio"] > 0 and row["kiln_gflops"] > 0
    # SqueezeNet 1.1 at 224x224 is 0.35 GMACs (its published figure)
    assert 0.34e9 < row["flops"] / 2 < 0.36e9, row["flops"]


def _pins(path):
    pins = {}
    with open(path) as fh:
        for line in fh:
            line = line.split("#")[0].strip()
            if "==" in line:
                name, version = line.split("==")
                pins[name.strip().lower()] = version.strip()
    return pins


def test_bench_requirements_follow_the_tests():
    """The bench virtualenv pins the test suite's versions of what both use."""
    bench = _pins(os.path.join(ROOT, "bench", "requirements.txt"))
    tests = _pins(os.path.join(ROOT, "tests", "python", "requirements.txt"))
    shared = {k: v for k, v in bench.items() if k in tests}
    assert set(shared) >= {"numpy", "onnx", "onnxruntime"}
    assert shared == {k: tests[k] for k in shared}
    assert "matplotlib" in bench


@pytest.mark.parametrize("name", ["squeezenet1_1", "transformer_encoder", "yolo_detector"])
def test_batch_variant_is_the_same_network(name):
    """gen_models' batch-B models (bench.py's batch 8) are the batch-1 network per
    sample: each sample of a batch-2 run through ONNX Runtime gives what the batch-1
    model gives on it alone. Covers the Reshape targets that bake in the batch."""
    import numpy as np
    import onnxruntime as ort
    from models import gen_models as G

    def run(model, feeds):
        so = ort.SessionOptions()
        so.log_severity_level = 3
        sess = ort.InferenceSession(model.SerializeToString(), so,
                                    providers=["CPUExecutionProvider"])
        return sess.run(None, feeds)

    two = G.feeds(name, 3, batch=2)
    assert all(v.shape[0] == 2 for v in two.values())
    one = G.feeds(name, 3)
    for k, v in one.items():  # a batch's first sample is the batch-1 draw
        np.testing.assert_array_equal(two[k][:1], v)
    got = run(G.generate(name, 2), two)
    want0 = run(G.generate(name), one)
    want1 = run(G.generate(name), {k: v[1:] for k, v in two.items()})
    for g, w0, w1 in zip(got, want0, want1):
        np.testing.assert_allclose(g[:1], w0, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(g[1:], w1, rtol=1e-5, atol=1e-5)
