"""bench/flops.py on a hand-made model whose multiply-accumulates are counted by hand:
Conv (plain, grouped), ConvTranspose, Gemm (transA), MatMul (batched with broadcasting,
1-D operands, behind a Reshape whose target is a Constant node) and an op not counted."""

import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
import flops  # noqa: E402

F = TensorProto.FLOAT


def _init(name, shape):
    return numpy_helper.from_array(np.zeros(shape, np.float32), name)


def _model():
    nodes = [
        # [2,3,8,8] * [4,3,3,3], pad 1 -> [2,4,8,8]: 2*4*64 outputs x 27 = 13824
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        # depthwise [4,1,3,3], group 4 -> [2,4,8,8]: 512 outputs x 9 = 4608
        helper.make_node("Conv", ["c1", "w2"], ["c2"], pads=[1, 1, 1, 1], group=4),
        helper.make_node("Relu", ["c2"], ["r"]),
        # [2,4,8,8] -> ConvTranspose [4,2,2,2] stride 2 -> [2,2,16,16]: 512 inputs x 8 = 4096
        helper.make_node("ConvTranspose", ["r", "w3"], ["t"], strides=[2, 2]),
        helper.make_node("Flatten", ["t"], ["f"], axis=1),
        # [2,512] x [512,10] -> [2,10]: 20 x 512 = 10240
        helper.make_node("Gemm", ["f", "g1"], ["gm1"]),
        # A [5,3] transposed -> [3,5] x [5,7] -> [3,7]: 21 x 5 = 105
        helper.make_node("Gemm", ["ga", "gb"], ["gm2"], transA=1),
        # [2,1,4,6] x [3,6,5] -> [2,3,4,5]: 120 x 6 = 720
        helper.make_node("MatMul", ["ma", "mb"], ["mm1"]),
        # [6] x [6,5] -> [5]: 30; [4,6] x [6] -> [4]: 24
        helper.make_node("MatMul", ["v6", "mb2"], ["mm2"]),
        helper.make_node("MatMul", ["m46", "v6"], ["mm3"]),
        # [2,12] -> Reshape to a Constant [2,3,4] -> x [4,5] -> [2,3,5]: 30 x 4 = 120
        helper.make_node("Constant", [], ["shp"],
                         value=numpy_helper.from_array(np.array([2, 3, 4], np.int64))),
        helper.make_node("Reshape", ["x2", "shp"], ["x2r"]),
        helper.make_node("MatMul", ["x2r", "w45"], ["mm4"]),
        # a dynamic dim: shapes unknown, reported and not counted
        helper.make_node("MatMul", ["dyn", "w45"], ["mm5"], name="dynamic_matmul"),
    ]
    inits = [_init("w1", (4, 3, 3, 3)), _init("w2", (4, 1, 3, 3)), _init("w3", (4, 2, 2, 2)),
             _init("g1", (512, 10)), _init("ga", (5, 3)), _init("gb", (5, 7)),
             _init("mb", (3, 6, 5)), _init("mb2", (6, 5)), _init("m46", (4, 6)),
             _init("w45", (4, 5))]
    inputs = [helper.make_tensor_value_info("x", F, [2, 3, 8, 8]),
              helper.make_tensor_value_info("ma", F, [2, 1, 4, 6]),
              helper.make_tensor_value_info("v6", F, [6]),
              helper.make_tensor_value_info("x2", F, [2, 12]),
              helper.make_tensor_value_info("dyn", F, ["n", 4])]
    outputs = [helper.make_tensor_value_info(n, F, s) for n, s in
               [("gm1", [2, 10]), ("gm2", [3, 7]), ("mm1", [2, 3, 4, 5]), ("mm2", [5]),
                ("mm3", [4]), ("mm4", [2, 3, 5]), ("mm5", ["n", 5])]]
    graph = helper.make_graph(nodes, "flops_test", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_counts_by_hand():
    model = _model()
    onnx.checker.check_model(model)
    c = flops.count(model)
    assert c["by_op"] == {"Conv": 2 * (13824 + 4608), "ConvTranspose": 2 * 4096,
                          "Gemm": 2 * (10240 + 105), "MatMul": 2 * (720 + 30 + 24 + 120)}
    assert c["flops"] == sum(c["by_op"].values())
    assert c["nodes"] == 9
    assert c["unknown"] == ["dynamic_matmul"]


def test_path_and_ops_not_counted(tmp_path):
    """A model given by path counts the same; a graph without counted ops counts 0."""
    path = tmp_path / "m.onnx"
    onnx.save(_model(), path)
    assert flops.count(str(path))["flops"] == flops.count(_model())["flops"]
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu",
                          [helper.make_tensor_value_info("x", F, [4])],
                          [helper.make_tensor_value_info("y", F, [4])])
    c = flops.count(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    assert c["flops"] == 0 and c["nodes"] == 0 and c["unknown"] == []
