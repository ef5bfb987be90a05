"""onnx_node_cases - ONNX's backend node test cases, materialized for kiln's tests.

The onnx wheel ships the scripts that make its node tests, not their data. This module
runs them once (onnx.backend.test.case.node.collect_testcases) and writes every case in
the standard layout of onnx/backend/test/data/node:

    <cache>/<case>/model.onnx
    <cache>/<case>/test_data_set_N/input_I.pb, output_I.pb     (TensorProto and friends)

plus <cache>/index.json, the facts about each case the tests select and skip by (ops and
opsets, tensor dtypes, non-tensor types, subgraphs, training mode, random ops), so test
collection needs neither onnx nor the model files. <cache>/stamp names the onnx version
and this file's hash; the cache is rebuilt only when either changes.

The cache is $KILN_NODE_CACHE, or the folder onnx-node-tests next to $KILN_LIB (the build
tree). Run as a script to (re)build it: python onnx_node_cases.py [--force]
"""

import contextlib
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
import warnings

FORMAT = 1  # bump when the layout or index.json changes

# The TensorProto.DataType values kiln has (include/kiln.h: kiln_dtype).
KILN_DTYPES = {1: "float", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 9: "bool",
               10: "float16", 16: "bfloat16"}
DTYPE_NAMES = {
    0: "undefined", 1: "float", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32",
    7: "int64", 8: "string", 9: "bool", 10: "float16", 11: "double", 12: "uint32",
    13: "uint64", 14: "complex64", 15: "complex128", 16: "bfloat16", 17: "float8e4m3fn",
    18: "float8e4m3fnuz", 19: "float8e5m2", 20: "float8e5m2fnuz", 21: "uint4", 22: "int4",
    23: "float4e2m1", 24: "float8e8m0", 25: "uint2", 26: "int2",
}
RANDOM_OPS = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
              "Multinomial", "Bernoulli"}
# Integer attributes holding a TensorProto.DataType (Cast 'to', EyeLike/Random* 'dtype',
# Quantize/DequantizeLinear 'output_dtype').
DTYPE_ATTRS = {"to", "dtype", "output_dtype"}


def default_cache_dir():
    env = os.environ.get("KILN_NODE_CACHE")
    if env:
        return os.path.abspath(env)
    lib = os.environ.get("KILN_LIB")
    if not lib:
        raise RuntimeError("set KILN_NODE_CACHE or KILN_LIB (the cache lives next to the library)")
    return os.path.join(os.path.dirname(os.path.abspath(lib)), "onnx-node-tests")


def _stamp_text():
    import onnx

    with open(os.path.abspath(__file__), "rb") as f:
        own = hashlib.sha256(f.read()).hexdigest()[:16]
    return f"onnx {onnx.__version__}\ngenerator {own} format {FORMAT}\n"


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def ensure_cache(cache=None, force=False):
    """Builds the cache unless its stamp is current; returns its path."""
    cache = cache or default_cache_dir()
    stamp = _stamp_text()
    if not force and _read(os.path.join(cache, "stamp")) == stamp and \
            os.path.isfile(os.path.join(cache, "index.json")):
        return cache
    parent = os.path.dirname(cache) or "."
    os.makedirs(parent, exist_ok=True)
    # Built aside and renamed in, so an interrupted or concurrent run never leaves a
    # half-written cache that looks complete.
    tmp = tempfile.mkdtemp(prefix=os.path.basename(cache) + ".tmp-", dir=parent)
    try:
        _generate(tmp)
        with open(os.path.join(tmp, "stamp"), "w") as f:
            f.write(stamp)
        old = None
        if os.path.exists(cache):
            old = tempfile.mkdtemp(prefix=os.path.basename(cache) + ".old-", dir=parent)
            os.rename(cache, os.path.join(old, "c"))
        os.rename(tmp, cache)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return cache


def _collect():
    """onnx's node cases, with the scripts' numpy warnings and prints silenced."""
    import numpy as np

    sink = io.StringIO()
    with warnings.catch_warnings(), np.errstate(all="ignore"), \
            contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        warnings.simplefilter("ignore")
        from onnx.backend.test.case.node import collect_testcases

        return collect_testcases(None)


def _proto_of(value, vinfo):
    """A data set value -> the proto the standard layout stores, by the graph's type."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    kind = vinfo.type.WhichOneof("value")
    if kind == "map_type":
        return numpy_helper.from_dict(value, vinfo.name)
    if kind == "sequence_type":
        return numpy_helper.from_list(value, vinfo.name)
    if kind == "optional_type":
        return numpy_helper.from_optional(value, vinfo.name)
    if isinstance(value, onnx.TensorProto):
        t = onnx.TensorProto()
        t.CopyFrom(value)
        t.name = vinfo.name
        return t
    return numpy_helper.from_array(np.asarray(value), vinfo.name)


def _type_facts(tp, elems, kinds):
    """Walks a TypeProto: tensor elem types into `elems`, other kinds into `kinds`."""
    kind = tp.WhichOneof("value")
    if kind == "tensor_type":
        elems.add(tp.tensor_type.elem_type)
    elif kind == "sequence_type":
        kinds.add("sequence")
        _type_facts(tp.sequence_type.elem_type, elems, kinds)
    elif kind == "optional_type":
        kinds.add("optional")
        _type_facts(tp.optional_type.elem_type, elems, kinds)
    elif kind == "map_type":
        kinds.add("map")
        elems.add(tp.map_type.key_type)
        _type_facts(tp.map_type.value_type, elems, kinds)
    elif kind == "sparse_tensor_type":
        kinds.add("sparse tensor")
        elems.add(tp.sparse_tensor_type.elem_type)
    elif kind is not None:
        kinds.add(kind)


def _facts(case):
    """What index.json records about one case."""
    import numpy as np
    import onnx

    m, g = case.model, case.model.graph
    A = onnx.AttributeProto
    opsets = {(o.domain if o.domain != "ai.onnx" else ""): int(o.version) for o in m.opset_import}
    elems, kinds = set(), set()
    for v in list(g.input) + list(g.output) + list(g.value_info):
        _type_facts(v.type, elems, kinds)
    for t in g.initializer:
        elems.add(t.data_type)
    if len(g.sparse_initializer):
        kinds.add("sparse tensor")
    nodes, subgraph, training = [], set(), False
    inputs = [v.name for v in g.input]
    data_inputs = case.data_sets[0][0] if case.data_sets else []
    for n in g.node:
        key = [n.domain if n.domain != "ai.onnx" else "", n.op_type]
        if key not in nodes:
            nodes.append(key)
        for a in n.attribute:
            if a.type in (A.GRAPH, A.GRAPHS):
                subgraph.add(n.op_type)
            elif a.type == A.TENSOR:
                elems.add(a.t.data_type)
            elif a.type == A.SPARSE_TENSOR:
                kinds.add("sparse tensor")
            elif a.type == A.INT and a.name in DTYPE_ATTRS:
                elems.add(int(a.i))
            elif a.type == A.INT and a.name == "training_mode" and a.i:
                training = True
        # Dropout's training_mode is an input (opset 12+): training when it holds True.
        if n.op_type == "Dropout" and len(n.input) > 2 and n.input[2]:
            if n.input[2] in inputs and inputs.index(n.input[2]) < len(data_inputs):
                training = training or bool(np.asarray(data_inputs[inputs.index(n.input[2])]).any())
            else:
                training = True  # computed or constant: assume the worst, as kiln would
    inits = {t.name for t in g.initializer}
    return {
        "opsets": opsets,
        "nodes": nodes,
        # [position in graph.input, name] of each input the caller binds
        "inputs": [[i, v.name] for i, v in enumerate(g.input) if v.name not in inits],
        "n_inputs": len(g.input),
        "outputs": [v.name for v in g.output],
        "data_sets": len(case.data_sets),
        "elem_types": sorted(elems - {0}),
        "kinds": sorted(kinds),
        "subgraph": sorted(subgraph),
        "training": training,
        "rtol": float(case.rtol),
        "atol": float(case.atol),
    }


def _generate(root):
    import numpy as np

    cases = _collect()
    index = {}
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        for case in cases:
            d = os.path.join(root, case.name)
            os.makedirs(d)
            g = case.model.graph
            with open(os.path.join(d, "model.onnx"), "wb") as f:
                f.write(case.model.SerializeToString())
            for k, (ins, outs) in enumerate(case.data_sets):
                ds = os.path.join(d, f"test_data_set_{k}")
                os.makedirs(ds)
                for prefix, values, infos in (("input", ins, g.input), ("output", outs, g.output)):
                    for i, v in enumerate(values):
                        with open(os.path.join(ds, f"{prefix}_{i}.pb"), "wb") as f:
                            f.write(_proto_of(v, infos[i]).SerializeToString())
            index[case.name] = _facts(case)
    with open(os.path.join(root, "index.json"), "w") as f:
        json.dump(index, f, indent=0, sort_keys=True)


def load_index(cache):
    with open(os.path.join(cache, "index.json")) as f:
        return json.load(f)


def unsupported_features(facts):
    """Why kiln cannot run a case by design (features it deliberately lacks), or None."""
    if facts["kinds"]:
        return f"{'/'.join(facts['kinds'])} types"
    if facts["subgraph"]:
        return f"subgraphs ({', '.join(facts['subgraph'])})"
    random = sorted({op for _, op in facts["nodes"] if op in RANDOM_OPS})
    if random:
        return f"random op {', '.join(random)}"
    if facts["training"]:
        return "training mode"
    lacking = [DTYPE_NAMES.get(t, f"dtype {t}") for t in facts["elem_types"] if t not in KILN_DTYPES]
    if lacking:
        return f"{', '.join(lacking)} tensors"
    return None


def read_tensor(path):
    """One input_I.pb / output_I.pb of a tensor -> a numpy array."""
    import onnx
    from onnx import numpy_helper

    t = onnx.TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return numpy_helper.to_array(t)


def load_data_set(case_dir, k, n_inputs, n_outputs):
    """(inputs, outputs): lists of numpy arrays of data set k."""
    ds = os.path.join(case_dir, f"test_data_set_{k}")
    ins = [read_tensor(os.path.join(ds, f"input_{i}.pb")) for i in range(n_inputs)]
    outs = [read_tensor(os.path.join(ds, f"output_{i}.pb")) for i in range(n_outputs)]
    return ins, outs


if __name__ == "__main__":
    path = ensure_cache(force="--force" in sys.argv[1:])
    print(f"{len(load_index(path))} ONNX node cases in {path}")
