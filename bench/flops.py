"""The arithmetic work of an ONNX model: 2 x the multiply-accumulates of its Conv,
ConvTranspose, Gemm and MatMul nodes (attention's MatMuls included), with shapes from
onnx.shape_inference. Elementwise ops, pooling and normalization are not counted: the
number is what a GEMM-bound runtime has to compute, the usual basis of GFLOP/s figures.

    python bench/flops.py MODEL.onnx     # prints the total and the share of each op type
"""

import sys
from math import prod

import onnx
from onnx import shape_inference

COUNTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def _shapes(model):
    """name -> list of dims (None where unknown) for every tensor shape inference knows."""
    inferred = shape_inference.infer_shapes(model, data_prop=True)
    g = inferred.graph
    shapes = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        t = vi.type.tensor_type
        if t.HasField("shape"):
            shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None
                               for d in t.shape.dim]
    for init in g.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


def _known(*shapes):
    return all(s is not None and all(d is not None for d in s) for s in shapes)


def _attr(node, name, default):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def node_macs(node, shapes):
    """Multiply-accumulates of one node, or None when a shape it needs is unknown."""
    get = shapes.get
    if node.op_type == "Conv":
        w, y = get(node.input[1]), get(node.output[0])
        # each output element sums C/group x kernel products
        return prod(y) * prod(w[1:]) if _known(w, y) else None
    if node.op_type == "ConvTranspose":
        x, w = get(node.input[0]), get(node.input[1])
        # each input element scatters into M/group x kernel outputs
        return prod(x) * prod(w[1:]) if _known(x, w) else None
    if node.op_type == "Gemm":
        a, y = get(node.input[0]), get(node.output[0])
        if not _known(a, y):
            return None
        k = a[0] if _attr(node, "transA", 0) else a[1]
        return prod(y) * k
    if node.op_type == "MatMul":
        a, y = get(node.input[0]), get(node.output[0])
        # numpy matmul semantics: K is A's last dim also when A is 1-D; broadcasting and
        # the dims that 1-D operands drop are already in the output's shape
        return prod(y) * a[-1] if _known(a, y) and a else None
    return 0


def count(model):
    """{"flops": 2 x MACs of the counted nodes, "by_op": {op: flops}, "nodes": count,
    "unknown": [names of counted nodes whose shapes inference left open]}. `model` is a
    ModelProto or a path. Nodes inside subgraphs (If, Loop) are not visited."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(model)
    shapes = _shapes(model)
    by_op = {op: 0 for op in COUNTED}
    unknown, nodes = [], 0
    for node in model.graph.node:
        if node.op_type not in COUNTED:
            continue
        macs = node_macs(node, shapes)
        if macs is None:
            unknown.append(node.name or node.output[0])
            continue
        by_op[node.op_type] += 2 * macs
        nodes += 1
    return {"flops": sum(by_op.values()), "by_op": by_op, "nodes": nodes, "unknown": unknown}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    for path in argv:
        c = count(path)
        parts = ", ".join(f"{op} {v / 1e9:.3f}" for op, v in c["by_op"].items() if v)
        print(f"{path}: {c['flops'] / 1e9:.3f} GFLOP over {c['nodes']} nodes ({parts})")
        if c["unknown"]:
            print(f"  shapes unknown for {len(c['unknown'])} nodes: {c['unknown'][:5]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
