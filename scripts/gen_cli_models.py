#!/usr/bin/env python3
"""Writes the small ONNX models the command-line tests (tests/cli/test_cli.sh) use, so
that ctest needs neither Python nor onnx: the files are committed.

    build/venv/bin/python scripts/gen_cli_models.py   (or any python with onnx)

tests/cli/data/pair.onnx: two inputs with a symbolic batch and sequence length,
    a [batch, seq, 8] and b [batch, seq, 8] -> Add -> MatMul by w [8, 3] -> y [batch, seq, 3]
(opset 13), with fixed weights 0.125 * (i - 12) for i = 0..23, so that runs are
reproducible and the file stays tiny.
"""
import os

import onnx
from onnx import TensorProto, helper

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "cli", "data")


def pair():
    dims = ["batch", "seq", 8]
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, dims)
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, dims)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", 3])
    w = helper.make_tensor("w", TensorProto.FLOAT, [8, 3], [0.125 * (i - 12) for i in range(24)])
    nodes = [
        helper.make_node("Add", ["a", "b"], ["sum"], name="add"),
        helper.make_node("MatMul", ["sum", "w"], ["y"], name="project"),
    ]
    graph = helper.make_graph(nodes, "pair", [a, b], [y], initializer=[w])
    model = helper.make_model(graph, producer_name="kiln gen_cli_models.py",
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    return model


def main():
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "pair.onnx")
    onnx.save(pair(), path)
    print(f"{path}: {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
