"""ONNX's backend node tests through kiln's ONNX importer, builder and runtime.

One test per case of onnx.backend.test.case.node (materialized by onnx_node_cases.py).
A case runs when kiln claims every (domain, op) of its model at the model's opset
(kiln_onnx_op_supported); otherwise, and for features kiln deliberately lacks, it is
skipped with the reason. Explicit skips of claimed ops live in onnx_node_skips.txt.
Inputs are bound by graph input name; when kiln's build asks for an input that sets a
shape (Reshape's shape, Reduce axes, ...) as a constant, the graph inputs it depends on
are frozen into initializers with the data set's values (see CONST_SLOTS). Outputs are
compared the way ONNX's backend runner does: assert_allclose with the case's rtol/atol
for floating types, exact for bool and integers, dtype and shape equal.

At the end one line gives the counts, and <build>/onnx-node-summary.json (next to
$KILN_LIB) holds them with per-op (by the op each case tests) and per-case outcomes,
when the whole module ran.
"""

import ctypes
import json
import os

import numpy as np
import pytest

import kiln_ctypes as K
import onnx_node_cases as C

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = C.ensure_cache()
INDEX = C.load_index(CACHE)
NAMES = sorted(INDEX)


def _read_skips(path):
    """onnx_node_skips.txt: `case_name  # reason` per line; blank and # lines ignored."""
    skips = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            name, _, reason = text.partition("#")
            skips[name.strip()] = (reason.strip(), n)
    return skips


SKIPS = _read_skips(os.path.join(HERE, "onnx_node_skips.txt"))
RESULTS = {}  # case -> (outcome, reason)


def _bf16():
    import ml_dtypes  # an onnx dependency: numpy's bfloat16

    return np.dtype(ml_dtypes.bfloat16)


def _np_dtype(code):
    return _bf16() if code == 16 else K.numpy_dtype(code)


def _tensor_info(engine, name):
    """(numpy dtype, shape) of an engine tensor; bfloat16 included (kiln_ctypes lacks it)."""
    dt, d = ctypes.c_int(), K.Dims()
    K._check(K.lib().kiln_engine_tensor_info(engine._h, name.encode(), ctypes.byref(dt),
                                             ctypes.byref(d)))
    return _np_dtype(dt.value), d.tuple()


def _unclaimed(facts):
    missing = []
    for domain, op in facts["nodes"]:
        opset = facts["opsets"].get(domain)
        if opset is None or not K.onnx_op_supported(op, domain, opset):
            missing.append(f"op {op} ({domain or 'ai.onnx'}, opset {opset}) not claimed")
    return "; ".join(missing) or None


def _skip_reason(name, facts):
    reason = C.unsupported_features(facts)
    if reason:
        return f"kiln lacks {reason} by design"
    reason = _unclaimed(facts)
    if reason:
        return reason
    if name in SKIPS:
        return f"onnx_node_skips.txt: {SKIPS[name][0]}"
    return None


def _infer(engine, feeds):
    """Binds feeds by name (dtypes must match the engine's), allocates every output,
    runs once, returns {output name: array}."""
    ctx = engine.create_context()
    try:
        for name, arr in feeds.items():
            dt, shape = _tensor_info(engine, name)
            assert arr.dtype == dt, f"input '{name}': engine wants {dt}, the data is {arr.dtype}"
            assert arr.shape == shape, f"input '{name}': engine shape {shape}, data {arr.shape}"
            ctx.set_tensor(name, np.array(arr, order="C", copy=True))
        outs = {}
        for name in engine.outputs:
            dt, shape = _tensor_info(engine, name)
            o = np.empty(shape, dtype=dt)
            if dt.kind == "f" or dt == _bf16():
                o.fill(np.nan)  # what kiln never wrote stands out
            elif dt.kind in "iu":
                o.fill(np.iinfo(dt).min + 7)
            ctx.set_tensor(name, o)
            outs[name] = o
        ctx.run()
        return outs
    finally:
        ctx.close()


def _compare(name, got, want, rtol, atol):
    assert got.dtype == want.dtype, f"output '{name}': dtype {got.dtype}, expected {want.dtype}"
    assert got.shape == want.shape, f"output '{name}': shape {got.shape}, expected {want.shape}"
    msg = f"output '{name}'"
    if want.dtype.kind in "biu":
        np.testing.assert_array_equal(got, want, err_msg=msg)
    elif want.dtype == _bf16():
        np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), rtol=rtol,
                                   atol=atol, err_msg=msg)
    else:
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=msg)


# Op inputs kiln needs as build-time constants (axes, shapes, sizes, pads, ...: they
# decide output shapes; docs/ARCHITECTURE.md, "The op table"). Node tests often feed them
# as graph inputs, directly or through a chain of ops (the _expanded cases); when kiln's
# build asks for a constant, the graph inputs those slots depend on are turned into
# initializers holding the data set's values (as a user freezes shape inputs for
# TensorRT) and the case runs again. Shape and Size read only shapes, which kiln knows
# at build time, so the walk stops there.
CONST_SLOTS = {
    "Reshape": {1}, "Squeeze": {1}, "Unsqueeze": {1}, "Split": {1}, "Expand": {1},
    "Tile": {1}, "ConstantOfShape": {0}, "Range": {0, 1, 2}, "Slice": {1, 2, 3, 4},
    "Pad": {1, 3}, "CumSum": {1}, "TopK": {1}, "Resize": {1, 2, 3}, "Upsample": {1},
    "OneHot": {1},
    **{op: {1} for op in ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd",
                          "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp",
                          "ReduceSumSquare")},
}
SHAPE_READERS = {"Shape", "Size"}
NEEDS_CONSTANT = "must be a constant known at build time"


def _frozen_model(model_path, feeds):
    """The model with the graph inputs that CONST_SLOTS depend on made initializers;
    returns (serialized model, names of the frozen inputs)."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(model_path)
    g = m.graph
    producer = {o: n for n in g.node for o in n.output if o}
    todo = [n.input[i] for n in g.node if n.op_type in CONST_SLOTS
            for i in CONST_SLOTS[n.op_type] if i < len(n.input) and n.input[i]]
    seen = set()
    while todo:
        t = todo.pop()
        if t in seen:
            continue
        seen.add(t)
        n = producer.get(t)
        if n is not None and n.op_type not in SHAPE_READERS:
            todo.extend(x for x in n.input if x)
    frozen = [v.name for v in g.input if v.name in seen and v.name in feeds]
    for name in frozen:
        g.initializer.append(numpy_helper.from_array(feeds[name], name))
    keep = [v for v in g.input if v.name not in frozen]
    del g.input[:]
    g.input.extend(keep)
    return m.SerializeToString(), frozen


def _build(model_path, case_dir, feeds):
    """(engine, feeds to bind): the model as it is, or with its shape inputs frozen."""
    net = K.Network.from_onnx(model_path)
    try:
        return K.build(net, threads=1, input_shapes={n: a.shape for n, a in feeds.items()}), feeds
    except K.KilnError as e:
        if NEEDS_CONSTANT not in e.message:
            raise
        why = e.message
    finally:
        net.close()
    data, frozen = _frozen_model(model_path, feeds)
    if not frozen:
        raise AssertionError(f"kiln needs a constant input the test cannot freeze: {why}")
    feeds = {n: a for n, a in feeds.items() if n not in frozen}
    net = K.Network.from_onnx_bytes(data, case_dir)
    try:
        return K.build(net, threads=1, input_shapes={n: a.shape for n, a in feeds.items()}), feeds
    finally:
        net.close()


def _run_case(name, facts):
    case_dir = os.path.join(CACHE, name)
    model_path = os.path.join(case_dir, "model.onnx")
    for k in range(facts["data_sets"]):
        ins, outs = C.load_data_set(case_dir, k, facts["n_inputs"], len(facts["outputs"]))
        engine, feeds = _build(model_path, case_dir, {nm: ins[i] for i, nm in facts["inputs"]})
        try:
            missing = sorted(set(facts["outputs"]) - set(engine.outputs))
            assert not missing, f"engine lacks outputs {missing} (has {engine.outputs})"
            got = _infer(engine, feeds)
        finally:
            engine.close()
        for i, out_name in enumerate(facts["outputs"]):
            _compare(out_name, got[out_name], outs[i], facts["rtol"], facts["atol"])


# ---- the summary line and JSON ------------------------------------------------------------


def _claimed_ops():
    """ONNX ops (any domain onnx.defs knows) kiln claims at one opset at least: where one
    of their versions begins, or at the domain's newest opset."""
    import onnx.defs

    versions, newest = {}, {}
    for s in onnx.defs.get_all_schemas_with_history():
        if s.deprecated:
            continue
        versions.setdefault((s.domain, s.name), set()).add(s.since_version)
        newest[s.domain] = max(newest.get(s.domain, 0), s.since_version)
    return sorted(f"{d + '.' if d else ''}{op}" for (d, op), vs in versions.items()
                  if any(K.onnx_op_supported(op, d, v) for v in vs | {newest[d]}))


def _op_key(domain, op):
    return f"{domain + '.' if domain else ''}{op}"


def _tested_ops(name):
    """The op(s) a case tests: its model's one op; for an _expanded case (the op's function
    body spelled out) the op of the case it expands; otherwise every op of the model."""
    base = name.split("_expanded")[0]
    for case in (base, name):
        nodes = INDEX.get(case, {}).get("nodes", [])
        if len(nodes) == 1:
            return [_op_key(*nodes[0])]
    return [_op_key(*n) for n in INDEX[name]["nodes"]]


def _summarize():
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    per_op = {}
    for name, (outcome, _) in RESULTS.items():
        counts[outcome] += 1
        for key in _tested_ops(name):
            per_op.setdefault(key, {"passed": 0, "failed": 0, "skipped": 0})[outcome] += 1
    claimed = _claimed_ops()
    line = (f"onnx node tests: {counts['passed']} passed, {counts['failed']} failed, "
            f"{counts['skipped']} skipped; kiln claims {len(claimed)} ops")
    if len(RESULTS) < len(INDEX):
        return line + f" (a subset of {len(INDEX)} cases ran: summary JSON not written)"
    import onnx

    summary = dict(counts, onnx=onnx.__version__, kiln=K.version(), claimed_ops=len(claimed),
                   claimed=claimed, per_op=per_op,
                   cases={n: {"outcome": o, "reason": r, "ops": _tested_ops(n)}
                          for n, (o, r) in sorted(RESULTS.items())})
    lib_dir = os.path.dirname(os.path.abspath(os.environ["KILN_LIB"]))
    path = os.path.join(lib_dir, "onnx-node-summary.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(summary, f, indent=1, sort_keys=True)
    os.replace(tmp, path)
    return line + f" ({path})"


class _SummaryPrinter:
    """Prints the line in pytest's terminal summary (registered at run time: a test module
    cannot define hooks itself)."""

    def __init__(self):
        self.line = None

    def pytest_terminal_summary(self, terminalreporter):
        if self.line:
            terminalreporter.write_line(self.line)


@pytest.fixture(scope="module", autouse=True)
def _node_summary(request):
    printer = _SummaryPrinter()
    pm = request.config.pluginmanager
    if not pm.has_plugin("kiln-onnx-node-summary"):
        pm.register(printer, "kiln-onnx-node-summary")
    else:
        printer = pm.get_plugin("kiln-onnx-node-summary")
    yield
    if RESULTS:
        printer.line = _summarize()


# ---- the tests ------------------------------------------------------------------------------


def test_skip_list_names_real_cases():
    bad = [f"line {n}: {name}" for name, (reason, n) in SKIPS.items()
           if name not in INDEX or not reason]
    assert not bad, f"onnx_node_skips.txt entries without a case or a reason: {bad}"


def _first_line(e):
    text = str(e).strip().splitlines()
    return (f"{type(e).__name__}: {text[0]}" if text else type(e).__name__)[:300]


@pytest.mark.parametrize("name", NAMES)
def test_node(name):
    facts = INDEX[name]
    try:
        reason = _skip_reason(name, facts)
        if reason:
            pytest.skip(reason)
        _run_case(name, facts)
    except pytest.skip.Exception as e:
        RESULTS[name] = ("skipped", str(e.msg))
        raise
    except BaseException as e:
        RESULTS[name] = ("failed", _first_line(e))
        raise
    RESULTS[name] = ("passed", None)
