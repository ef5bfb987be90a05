"""Bad layers: every one fails with a KilnError (never a crash, never KILN_ERR_INTERNAL)
whose message names the node, at add_layer, build or run time."""

import numpy as np
import pytest

from kiln_ctypes import KilnError, run_op

F = np.float32
I = np.int64
x = np.zeros((2, 4, 5, 5), F)

# (case, op, inputs, attrs, indices of constant inputs)
BAD = [
    ("Conv group", "Conv", [x, np.zeros((4, 3, 3, 3), F)], {"group": 3}, {1}),
    ("Conv chan", "Conv", [x, np.zeros((4, 3, 3, 3), F)], {}, {1}),
    ("Conv bias len", "Conv", [x, np.zeros((4, 4, 3, 3), F), np.zeros(3, F)], {}, {1, 2}),
    ("Conv kernel too big", "Conv", [x, np.zeros((4, 4, 7, 7), F)], {}, {1}),
    ("Conv neg pads", "Conv", [x, np.zeros((4, 4, 3, 3), F)], {"pads": [-1, 0, 0, 0]}, {1}),
    ("Conv stride 0", "Conv", [x, np.zeros((4, 4, 3, 3), F)], {"strides": [0, 1]}, {1}),
    ("Conv bad auto_pad", "Conv", [x, np.zeros((4, 4, 3, 3), F)], {"auto_pad": "SAME"}, {1}),
    ("Conv kernel_shape mismatch", "Conv", [x, np.zeros((4, 4, 3, 3), F)], {"kernel_shape": [2, 2]}, {1}),
    ("Reshape impossible", "Reshape", [x, np.array([3, -1], I)], {}, {1}),
    ("Reshape two -1", "Reshape", [x, np.array([-1, -1], I)], {}, {1}),
    ("Reshape from input", "Reshape", [x, np.array([100, 2], I)], {}, set()),
    ("Split bad sum", "Split", [x, np.array([1, 2], I)], {"axis": 1}, {1}),
    ("Gather const oob", "Gather", [x, np.array([7], I)], {"axis": 1}, {1}),
    ("Gather bad axis", "Gather", [x, np.array([0], I)], {"axis": 4}, {1}),
    ("Transpose bad perm", "Transpose", [x], {"perm": [0, 0, 1, 2]}, set()),
    ("Transpose short perm", "Transpose", [x], {"perm": [0, 1]}, set()),
    ("Slice step 0", "Slice", [x, np.array([0], I), np.array([2], I), np.array([0], I), np.array([0], I)], {}, {1, 2, 3, 4}),
    ("Slice bad axis", "Slice", [x, np.array([0], I), np.array([2], I), np.array([9], I)], {}, {1, 2, 3}),
    ("Concat bad axis", "Concat", [x, x], {"axis": 4}, set()),
    ("Concat mismatch", "Concat", [x, np.zeros((2, 4, 5, 6), F)], {"axis": 1}, set()),
    ("Squeeze non-1", "Squeeze", [x, np.array([1], I)], {}, {1}),
    ("Unsqueeze dup", "Unsqueeze", [x, np.array([1, 1], I)], {}, {1}),
    ("Expand bad", "Expand", [x, np.array([3, 5, 5], I)], {}, {1}),
    ("Tile neg", "Tile", [x, np.array([1, -1, 1, 1], I)], {}, {1}),
    ("Tile wrong len", "Tile", [x, np.array([1, 1], I)], {}, {1}),
    ("Pad wrong len", "Pad", [x, np.array([1, 1], I)], {}, {1}),
    ("Pad bad mode", "Pad", [x, np.array([0]*8, I)], {"mode": "mirror"}, {1}),
    ("MatMul mismatch", "MatMul", [np.zeros((2, 3), F), np.zeros((4, 5), F)], {}, set()),
    ("Gemm mismatch", "Gemm", [np.zeros((2, 3), F), np.zeros((4, 5), F)], {}, set()),
    ("Gemm C bad", "Gemm", [np.zeros((2, 3), F), np.zeros((3, 5), F), np.zeros((3, ), F)], {}, set()),
    ("Softmax axis", "Softmax", [x], {"axis": 4}, set()),
    ("MaxPool no kernel", "MaxPool", [x], {}, set()),
    ("MaxPool kernel too big", "MaxPool", [x], {"kernel_shape": [9, 9]}, set()),
    ("Resize neg scale", "Resize", [x, None, np.array([1, 1, -2, 2], F)], {}, {2}),
    ("Resize zero scale", "Resize", [x, None, np.array([1, 1, 0, 2], F)], {}, {2}),
    ("Resize wrong len", "Resize", [x, None, np.array([2, 2], F)], {}, {2}),
    ("Resize bad mode", "Resize", [x, None, np.array([1, 1, 2, 2], F)], {"mode": "bicubic"}, {2}),
    ("Resize scales and sizes", "Resize", [x, None, np.array([1, 1, 2, 2], F), np.array([2, 4, 10, 10], I)], {}, {2, 3}),
    ("Cast bad to", "Cast", [x], {"to": 99}, set()),
    ("BN wrong C", "BatchNormalization", [x]+[np.ones(3, F)]*4, {}, {1, 2, 3, 4}),
    ("LayerNorm bad scale", "LayerNormalization", [x, np.ones(4, F)], {}, {1}),
    ("Where bad", "Where", [np.zeros((3, ), bool), x, x], {}, set()),
    ("Add bool", "Add", [np.zeros(3, bool), np.zeros(3, bool)], {}, set()),
    ("Add mixed dtype", "Add", [np.zeros(3, F), np.zeros(3, I)], {}, set()),
    ("Reduce bad axis", "ReduceSum", [x, np.array([5], I)], {}, {1}),
    ("Reduce dup axis", "ReduceSum", [x, np.array([1, 1], I)], {}, {1}),
    ("Flatten bad axis", "Flatten", [x], {"axis": 5}, set()),
    ("LRN even size 0", "LRN", [x], {"size": 0}, set()),
    ("ConvT group", "ConvTranspose", [x, np.zeros((3, 2, 3, 3), F)], {}, {1}),
    ("Clip min not scalar", "Clip", [x, np.zeros(2, F)], {}, {1}),
]


@pytest.mark.parametrize("name,op,ins,attrs,consts", BAD, ids=[b[0] for b in BAD])
def test_bad_layer_names_node(name, op, ins, attrs, consts):
    with pytest.raises(KilnError) as e:
        run_op(op, ins, attrs, const_inputs=consts, name="bad_node")
    assert e.value.status != "KILN_ERR_INTERNAL", e.value.message
    assert "bad_node" in e.value.message, e.value.message
    assert op in e.value.message, e.value.message


@pytest.mark.parametrize("idx", [[1, 9], [-6], [5]], ids=str)
def test_gather_out_of_range_index_at_run_time(idx):
    with pytest.raises(KilnError) as e:
        run_op("Gather", [np.zeros((5, 4), F), np.array(idx, I)], {"axis": 0}, name="g_oob")
    assert "g_oob" in e.value.message and "range" in e.value.message


@pytest.mark.parametrize("mode", ["reflect", "edge", "wrap"])
def test_pad_nonconstant_mode_on_empty_axis(mode):
    with pytest.raises(KilnError) as e:
        run_op("Pad", [np.zeros((0, 3), F), np.array([1, 1, 1, 1], I)], {"mode": mode},
               const_inputs={1}, name="pad_empty")
    assert "pad_empty" in e.value.message
