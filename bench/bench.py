"""kiln against ONNX Runtime, side by side in one process: the networks of
tests/python/models/gen_models.py at each batch and thread count, both engines timed on
the same inputs, interleaved run by run, after their outputs were checked to agree.

    make bench                          # everything, defaults (builds kiln and the venv)
    make bench BENCH_ARGS=--quick       # one model, batch 1, 1 thread, 10 runs
    build/bench-venv/bin/python bench/bench.py --models resnet50 --threads 1,2 --runs 20

Prints a table (median ms of each engine, kiln/ORT, kiln's effective GFLOP/s and its
share of the machine's FP32 FMA limit measured by bench_fma_peak) and writes
bench-results.json and bench-results.png into --out (default build/bench).
"""

import argparse
import datetime
import gc
import json
import os
import platform
import subprocess
import sys
import time
from collections import Counter

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "python"))
sys.path.insert(0, HERE)

import flops as FL  # noqa: E402

DEFAULT_BATCHES = (1, 8)
DEFAULT_THREADS = (1, 2)
FEED_SEED = 0
QUICK_MODEL = "squeezenet1_1"


def parse_args(argv):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Timing: after a check run and --warmup runs of each engine, a row runs\n"
               "--runs timed runs of each, alternating kiln, ORT, ORT, kiln, ... A row whose\n"
               "runs would not fit --budget-s (judged by the warm-up) gets fewer, never\n"
               "fewer than --min-runs; the table prints the count used.")
    ap.add_argument("--models", nargs="+", metavar="NAME",
                    help="models of gen_models.MODELS (default: all)")
    ap.add_argument("--batches", default=None, help="comma list (default 1,8)")
    ap.add_argument("--threads", default=None, help="comma list (default 1,2)")
    ap.add_argument("--runs", type=int, default=None, help="timed runs per engine (50)")
    ap.add_argument("--min-runs", type=int, default=10,
                    help="fewest timed runs the budget may leave (10)")
    ap.add_argument("--budget-s", type=float, default=60.0,
                    help="seconds of timed runs per row, both engines together (60); "
                         "0: no limit")
    ap.add_argument("--warmup", type=int, default=None,
                    help="untimed runs of each engine after the check run (2)")
    ap.add_argument("--tol", type=float, default=1e-4,
                    help="largest relative L2 error of kiln's outputs against ORT's (1e-4)")
    ap.add_argument("--quick", action="store_true",
                    help=f"one model ({QUICK_MODEL} or the first of --models), batch 1, "
                         "1 thread, 10 runs")
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "bench"),
                    help="results folder (default build/bench)")
    ap.add_argument("--no-chart", action="store_true", help="skip the PNG (no matplotlib)")
    ap.add_argument("--lib", help="libkiln.so (default $KILN_LIB, else build/libkiln.so)")
    ap.add_argument("--fma-peak", help="bench_fma_peak (default: bench/bench_fma_peak beside "
                                       "libkiln.so)")
    ap.add_argument("--peak-seconds", type=float, default=None,
                    help="seconds per bench_fma_peak measurement (0.3; quick 0.1)")
    ap.add_argument("--ort-no-spin", action="store_true",
                    help="ORT's pool threads block instead of spinning between runs "
                         "(session.intra_op.allow_spinning=0)")
    a = ap.parse_args(argv)
    if a.quick:
        a.models = [a.models[0]] if a.models else [QUICK_MODEL]
        a.batches = a.batches or "1"
        a.threads = a.threads or "1"
        a.runs = a.runs if a.runs is not None else 10
        a.warmup = a.warmup if a.warmup is not None else 1
        a.peak_seconds = a.peak_seconds or 0.1
    a.batches = _ints(ap, "--batches", a.batches, DEFAULT_BATCHES)
    a.threads = _ints(ap, "--threads", a.threads, DEFAULT_THREADS)
    a.runs = 50 if a.runs is None else a.runs
    a.warmup = 2 if a.warmup is None else a.warmup
    a.peak_seconds = a.peak_seconds or 0.3
    if a.runs < 1 or a.min_runs < 1 or a.warmup < 0 or a.budget_s < 0:
        ap.error("--runs and --min-runs must be >= 1, --warmup and --budget-s >= 0")
    return a


def _ints(ap, flag, text, default):
    if text is None:
        return list(default)
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        vals = []
    if not vals or min(vals) < 1:
        ap.error(f"{flag} wants positive integers like 1,8 (got {text!r})")
    return vals


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---- the machine ---------------------------------------------------------------------------


def cpu_info():
    model, cores = None, set()
    phys = core = None
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                k, _, v = line.partition(":")
                k, v = k.strip(), v.strip()
                if k == "model name" and model is None:
                    model = v
                elif k == "physical id":
                    phys = v
                elif k == "core id":
                    core = v
                elif not k and phys is not None and core is not None:
                    cores.add((phys, core))
                    phys = core = None
    except OSError:
        pass
    if phys is not None and core is not None:
        cores.add((phys, core))
    return {"cpu_model": model or platform.processor() or "unknown",
            "logical_cpus": os.cpu_count(),
            "physical_cores": len(cores) or None,
            "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count(),
            "platform": platform.platform(), "python": platform.python_version()}


def fma_peak(exe, threads, seconds):
    """bench_fma_peak's JSON for these thread counts, or {"error": ...}."""
    if not exe or not os.path.isfile(exe):
        return {"error": f"bench_fma_peak not found at {exe} (build the bench_fma_peak "
                         "target)"}
    cmd = [exe, "--json", "--threads", ",".join(map(str, sorted(set(threads)))),
           "--seconds", str(seconds)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
        res = json.loads(p.stdout)
    except (subprocess.SubprocessError, OSError, ValueError) as e:
        return {"error": f"{' '.join(cmd)}: {e}"}
    res["gflops_by_threads"] = {str(r["threads"]): r["gflops"] for r in res["results"]}
    return res


# ---- engines -------------------------------------------------------------------------------


class OrtRunner:
    """An ORT session with inputs and preallocated outputs bound once (IO binding), so a
    timed run is the session's run alone, as kiln's context run is."""

    def __init__(self, ort, path, feeds, threads, spin):
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3
        if not spin:
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        self.names = [o.name for o in self.sess.get_outputs()]
        first = self.sess.run(self.names, feeds)  # output shapes and dtypes
        self.feeds = {k: np.ascontiguousarray(v) for k, v in feeds.items()}
        self.outs = {n: np.empty_like(v) for n, v in zip(self.names, first)}
        self.binding = self.sess.io_binding()
        for k, v in self.feeds.items():
            self.binding.bind_cpu_input(k, v)
        for n, o in self.outs.items():
            self.binding.bind_output(n, "cpu", 0, o.dtype, list(o.shape), o.ctypes.data)

    def run(self):
        self.sess.run_with_iobinding(self.binding)

    def outputs(self):
        self.run()
        return {n: o.copy() for n, o in self.outs.items()}


class KilnRunner:
    def __init__(self, K, path, feeds, threads):
        t = time.perf_counter()
        net = K.Network.from_onnx(path)
        try:
            self.engine = K.build(net, threads=threads,
                                  input_shapes={k: v.shape for k, v in feeds.items()})
        finally:
            net.close()
        self.build_s = time.perf_counter() - t
        # which kernels run: where fast kernels exist, the table should be read with this
        self.kernels = dict(Counter(layer["kernel"] for layer in self.engine.layers))
        info = K.lib().kiln_engine_build_info(self.engine._h)
        self.build_info = dict(line.split("=", 1) for line in
                               (info or b"").decode(errors="replace").splitlines() if "=" in line)
        self.ctx = self.engine.create_context()
        self.outs = self.ctx.infer(feeds)  # binds inputs and outputs; later runs reuse them

    def run(self):
        self.ctx.run()

    def outputs(self):
        self.run()
        return {n: o.copy() for n, o in self.outs.items()}

    def close(self):
        self.ctx.close()
        self.engine.close()


def rel_l2(got, want):
    g, w = np.asarray(got, np.float64).ravel(), np.asarray(want, np.float64).ravel()
    return float(np.linalg.norm(g - w) / max(np.linalg.norm(w), 1e-30))


def check(kiln_outs, ort_outs, tol):
    """{"outputs": {name: rel L2 or a problem}, "max_rel_l2", "ok"}."""
    res, worst, ok = {}, 0.0, True
    for name, want in ort_outs.items():
        got = kiln_outs.get(name)
        if got is None:
            res[name], ok = "missing from kiln's outputs", False
        elif got.shape != want.shape:
            res[name], ok = f"shape {list(got.shape)} != ORT's {list(want.shape)}", False
        elif not np.all(np.isfinite(got)):
            res[name], ok = f"{int(np.sum(~np.isfinite(got)))} non-finite values", False
        else:
            err = rel_l2(got, want)
            res[name], worst = err, max(worst, err)
            ok = ok and err < tol
    return {"outputs": res, "max_rel_l2": worst, "tolerance": tol, "ok": ok}


def stats(samples_s):
    ms = np.asarray(samples_s) * 1e3
    return {"median_ms": float(np.median(ms)), "p10_ms": float(np.percentile(ms, 10)),
            "p90_ms": float(np.percentile(ms, 90)), "mean_ms": float(ms.mean()),
            "min_ms": float(ms.min()), "max_ms": float(ms.max()),
            "samples_ms": [round(float(x), 4) for x in ms]}


def _timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def timed_runs(kiln, ort_r, a):
    """Warm-up, then interleaved timed runs (kiln, ORT, ORT, kiln, ...: each engine goes
    first half the time). Returns (kiln samples, ORT samples, runs, why fewer)."""
    wk, wo = [], []
    deadline = time.perf_counter() + 0.25 * a.budget_s if a.budget_s else None
    for i in range(a.warmup):
        wk.append(_timed(kiln.run))
        wo.append(_timed(ort_r.run))
        if deadline and time.perf_counter() > deadline:
            break
    runs, why = a.runs, None
    if a.budget_s and wk:
        pair = float(np.median(wk) + np.median(wo))
        fit = int(a.budget_s / max(pair, 1e-9))
        if fit < runs:
            runs = max(min(a.min_runs, a.runs), fit)
            why = f"budget {a.budget_s:g} s at {pair * 1e3:.1f} ms per pair"
    ks, os_ = [], []
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for i in range(runs):
            if i % 2 == 0:
                ks.append(_timed(kiln.run))
                os_.append(_timed(ort_r.run))
            else:
                os_.append(_timed(ort_r.run))
                ks.append(_timed(kiln.run))
    finally:
        if gc_was:
            gc.enable()
    return ks, os_, runs, why


def bench_row(K, ort, G, name, batch, threads, model_flops, a, peak):
    row = {"model": name, "batch": batch, "threads": threads,
           "flops": model_flops["flops"], "gflop": model_flops["flops"] / 1e9,
           "flops_unknown_nodes": model_flops["unknown"], "status": "ok", "error": None}
    path = G.model_path(name, batch=batch)
    feeds = G.feeds(name, FEED_SEED, batch=batch)
    row["model_file"] = os.path.basename(path)
    try:
        ort_r = OrtRunner(ort, path, feeds, threads, spin=not a.ort_no_spin)
    except Exception as e:  # onnxruntime raises its own exception types
        row.update(status="ort failed", error=f"{type(e).__name__}: {e}")
        return row
    try:
        kiln = KilnRunner(K, path, feeds, threads)
    except K.KilnError as e:
        row.update(status="kiln failed", error=str(e))
        return row
    try:
        row["kiln_build_s"] = kiln.build_s
        row["kiln_layers"], row["kiln_kernels"] = sum(kiln.kernels.values()), kiln.kernels
        row["kiln_engine_threads"] = kiln.engine.threads
        row["kiln_build_info"] = kiln.build_info
        row["check"] = check(kiln.outputs(), ort_r.outputs(), a.tol)
        if not row["check"]["ok"]:
            row["status"] = "mismatch"
        ks, os_, runs, why = timed_runs(kiln, ort_r, a)
    except K.KilnError as e:
        row.update(status="kiln failed", error=str(e))
        return row
    finally:
        kiln.close()
    row["runs"], row["runs_limited_by"] = runs, why
    row["kiln"], row["ort"] = stats(ks), stats(os_)
    km, om = row["kiln"]["median_ms"], row["ort"]["median_ms"]
    row["ratio"] = km / om
    row["kiln_gflops"] = row["flops"] / (km * 1e-3) / 1e9
    row["ort_gflops"] = row["flops"] / (om * 1e-3) / 1e9
    p = peak.get("gflops_by_threads", {}).get(str(threads))
    row["peak_gflops"] = p
    row["kiln_peak_share"] = row["kiln_gflops"] / p if p else None
    row["ort_peak_share"] = row["ort_gflops"] / p if p else None
    return row


# ---- report --------------------------------------------------------------------------------


def _f(v, spec, suffix=""):
    return "-" if v is None else format(v, spec) + suffix


def table(rows):
    head = ("model", "batch", "thr", "GFLOP", "runs", "kiln ms", "ORT ms", "kiln/ORT",
            "kiln GFLOP/s", "of FP32 peak", "ORT GFLOP/s", "check")
    lines = []
    for r in rows:
        if "check" not in r:
            chk = r["status"]
        else:
            c = r["check"]
            chk = (f"ok {c['max_rel_l2']:.1e}" if c["ok"] else
                   "MISMATCH " + "; ".join(f"{k}: {v:.2e}" if isinstance(v, float) else
                                           f"{k}: {v}" for k, v in c["outputs"].items()))
        share = r.get("kiln_peak_share")
        lines.append((r["model"], str(r["batch"]), str(r["threads"]), f"{r['gflop']:.2f}",
                      _f(r.get("runs"), "d"), _f(r.get("kiln", {}).get("median_ms"), ".1f"),
                      _f(r.get("ort", {}).get("median_ms"), ".1f"),
                      _f(r.get("ratio"), ".1f", "x"), _f(r.get("kiln_gflops"), ".1f"),
                      _f(None if share is None else 100 * share, ".1f", "%"),
                      _f(r.get("ort_gflops"), ".1f"), chk))
    widths = [max(len(x) for x in col) for col in zip(head, *lines)]
    out = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
           for row in [head] + lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    for r in rows:
        if r.get("error"):
            out.append(f"{r['model']} batch {r['batch']} threads {r['threads']}: {r['error']}")
        if r.get("runs_limited_by"):
            out.append(f"{r['model']} batch {r['batch']} threads {r['threads']}: "
                       f"{r['runs']} runs ({r['runs_limited_by']})")
    return out


def chart(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    rows = [r for r in rows if r.get("ratio")]
    if not rows:
        return False
    models = list(dict.fromkeys(r["model"] for r in rows))
    configs = list(dict.fromkeys((r["batch"], r["threads"]) for r in rows))
    width = 0.8 / len(configs)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(models) * max(1, len(configs) / 2)),
                                    4.5))
    for j, (b, t) in enumerate(configs):
        xs, ys, hatches = [], [], []
        for i, m in enumerate(models):
            r = next((r for r in rows if (r["model"], r["batch"], r["threads"]) == (m, b, t)),
                     None)
            if r:
                xs.append(i - 0.4 + width * (j + 0.5))
                ys.append(r["ratio"])
                hatches.append("//" if r["status"] != "ok" else "")
        # bars grow from parity (1.0) up when kiln is slower, down when it is faster
        bars = ax.bar(xs, [y - 1 for y in ys], width, bottom=1,
                      label=f"batch {b}, {t} thread{'s' if t > 1 else ''}")
        for bar, h, y in zip(bars, hatches, ys):
            bar.set_hatch(h)
            ax.annotate(f"{y:.2g}", (bar.get_x() + bar.get_width() / 2, y), ha="center",
                        va="bottom" if y >= 1 else "top", fontsize=7)
    ax.axhline(1.0, color="black", linewidth=1)
    ax.set_yscale("log")
    ratios = [r["ratio"] for r in rows]
    ax.set_ylim(min(min(ratios), 1) / 1.5, max(max(ratios), 1) * 1.5)
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xticks(range(len(models)))
    ax.set_xticklabels(models, rotation=20, ha="right")
    ax.set_ylabel("kiln / ONNX Runtime median time (log; < 1: kiln faster)")
    mismatch = any(r["status"] != "ok" for r in rows)
    ax.set_title("kiln vs ONNX Runtime" + (" (hatched: outputs disagree)" if mismatch else ""))
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    lib = a.lib or os.environ.get("KILN_LIB") or os.path.join(ROOT, "build", "libkiln.so")
    lib = os.path.abspath(lib)
    os.environ["KILN_LIB"] = lib  # the model cache defaults to its folder, as in the tests
    import kiln_ctypes as K
    import onnx
    import onnxruntime as ort
    from models import gen_models as G

    try:
        K.load_library(lib)
    except (RuntimeError, OSError) as e:
        log(f"bench: cannot load kiln: {e}")
        return 2
    unknown = [m for m in a.models or [] if m not in G.MODELS]
    if unknown:
        log(f"bench: unknown models {unknown}; known: {', '.join(G.MODELS)}")
        return 2
    models = a.models or list(G.MODELS)
    os.makedirs(a.out, exist_ok=True)

    machine = cpu_info()
    machine["loadavg_start"] = list(os.getloadavg())
    busy = [t for t in a.threads if t > machine["usable_cpus"]]
    if busy:
        log(f"bench: threads {busy} exceed the {machine['usable_cpus']} usable CPUs")
    exe = a.fma_peak or os.path.join(os.path.dirname(lib), "bench", "bench_fma_peak")
    log(f"bench: FP32 FMA limit ({exe})")
    peak = fma_peak(exe, a.threads, a.peak_seconds)
    if "error" in peak:
        log(f"bench: no FMA limit: {peak['error']}")
    machine.update(fma_peak=peak, kiln_version=K.version(), ort_version=ort.__version__,
                   numpy_version=np.__version__, onnx_version=onnx.__version__)
    settings = {"models": models, "batches": a.batches, "threads": a.threads, "runs": a.runs,
                "min_runs": a.min_runs, "budget_s": a.budget_s, "warmup": a.warmup,
                "tolerance": a.tol, "feed_seed": FEED_SEED, "model_cache": G.cache_dir(),
                "order": "interleaved: kiln, ORT, ORT, kiln, ... (each first half the time)",
                "kiln": "K.build(threads=T, input_shapes of the batch); context run with "
                        "tensors bound once",
                "ort": {"graph_optimization_level": "ORT_ENABLE_ALL",
                        "intra_op_num_threads": "T", "inter_op_num_threads": 1,
                        "execution_mode": "ORT_SEQUENTIAL",
                        "allow_spinning": not a.ort_no_spin,
                        "run": "run_with_iobinding, inputs and outputs bound once"}}

    rows = []
    for name in models:
        for batch in a.batches:
            t = time.perf_counter()
            path = G.model_path(name, batch=batch)
            t_gen = time.perf_counter() - t
            model_flops = FL.count(path)
            log(f"bench: {name} batch {batch}: {model_flops['flops'] / 1e9:.2f} GFLOP "
                f"({os.path.basename(path)}{f', generated in {t_gen:.0f} s' if t_gen > 1 else ''})")
            for threads in a.threads:
                t = time.perf_counter()
                row = bench_row(K, ort, G, name, batch, threads, model_flops, a, peak)
                row["wall_s"] = time.perf_counter() - t
                rows.append(row)
                log(f"  threads {threads}: " + (
                    f"kiln {row['kiln']['median_ms']:.1f} ms, ORT {row['ort']['median_ms']:.1f} "
                    f"ms, {row['runs']} runs, check {'ok' if row['check']['ok'] else 'MISMATCH'}"
                    if "kiln" in row else row["status"] + f": {row['error']}") +
                    f" ({row['wall_s']:.0f} s)")

    machine["loadavg_end"] = list(os.getloadavg())
    result = {"schema": 1, "created": datetime.datetime.now().astimezone().isoformat(),
              "machine": machine, "settings": settings, "rows": rows}
    jpath = os.path.join(a.out, "bench-results.json")
    with open(jpath + ".tmp", "w") as fh:
        json.dump(result, fh, indent=1)
    os.replace(jpath + ".tmp", jpath)
    cpath = None
    if not a.no_chart:
        cpath = os.path.join(a.out, "bench-results.png")
        if not chart(rows, cpath):
            cpath = None

    gp = peak.get("gflops_by_threads", {})
    print(f"kiln {machine['kiln_version']} vs onnxruntime {machine['ort_version']} on "
          f"{machine['cpu_model']} ({machine['usable_cpus']} usable CPUs)")
    print("FP32 FMA limit (bench_fma_peak, " + (
        f"{peak['isa']}): " + ", ".join(f"{t} thread{'s' if t != '1' else ''} "
                                        f"{v:.0f} GFLOP/s" for t, v in gp.items())
        if gp else f"not measured: {peak.get('error')})"))
    print("load average (1, 5, 15 min) at start " +
          " ".join(f"{x:.2f}" for x in machine["loadavg_start"]) + ", at end " +
          " ".join(f"{x:.2f}" for x in machine["loadavg_end"]) +
          " (other work on the machine makes the times noisy)")
    print("GFLOP: 2 x MACs of Conv/ConvTranspose/Gemm/MatMul; medians of interleaved runs; "
          "check: max rel L2 of kiln's outputs vs ORT's")
    print("\n".join(table(rows)))
    print(f"written: {jpath}" + (f", {cpath}" if cpath else ""))
    return 1 if any(r["status"].endswith("failed") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
