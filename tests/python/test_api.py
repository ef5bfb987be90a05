"""The public API through ctypes: errors name the node, engines round-trip through plan
files and memory, I/O introspection, contexts, multi-layer networks."""

import numpy as np
import pytest

import kiln_ctypes as K
from kiln_ctypes import KilnError, Network, assert_close, assert_equal, build, run_op

F32 = np.float32


def _small_net(rng):
    """x (2,3,4,4) -> Conv(w, b) -> Relu -> GlobalAveragePool -> Flatten -> y."""
    w = rng.uniform(-1, 1, size=(5, 3, 3, 3)).astype(F32)
    b = rng.uniform(-1, 1, size=(5,)).astype(F32)
    net = Network()
    net.add_input("x", F32, (2, 3, 4, 4))
    net.add_constant("w", w)
    net.add_constant("b", b)
    net.add_layer("Conv", ["x", "w", "b"], ["c"], name="conv0", pads=[1, 1, 1, 1])
    net.add_layer("Relu", ["c"], ["r"], name="relu0")
    net.add_layer("GlobalAveragePool", ["r"], ["g"], name="gap0")
    net.add_layer("Flatten", ["g"], ["y"], name="flat0")
    net.mark_output("y")
    return net, w, b


def _small_ref(x, w, b):
    from test_ops_nn import conv_ref

    c = conv_ref(x, w, b, pads=[1, 1, 1, 1])
    return np.maximum(c, 0).mean(axis=(2, 3))


def test_version():
    assert K.version().count(".") == 2
    assert K.lib().kiln_version_number() >= 100


@pytest.mark.parametrize("op", ["Conv", "Relu", "Gemm", "MatMul", "Resize", "Slice", "Where"])
def test_op_supported(op):
    assert K.op_supported(op)


def test_op_not_supported():
    assert not K.op_supported("NoSuchOp")
    assert not K.op_supported("relu")


def test_network_counts():
    net = Network()
    net.add_input("x", F32, (2, 3))
    net.add_layer("Relu", ["x"], ["y"])
    net.mark_output("y")
    assert (net.num_inputs, net.num_layers, net.num_outputs) == (1, 1, 1)


def test_unsupported_op_names_the_node():
    net = Network()
    net.add_input("x", F32, (2, 3))
    with pytest.raises(KilnError) as e:
        net.add_layer("FrobnicateV9", ["x"], ["y"], name="frob_node")
    assert e.value.status == "KILN_ERR_UNSUPPORTED"
    assert "frob_node" in e.value.message
    assert "FrobnicateV9" in e.value.message


def test_unknown_attribute_names_the_node():
    net = Network()
    net.add_input("x", F32, (2, 3))
    with pytest.raises(KilnError) as e:
        net.add_layer("Relu", ["x"], ["y"], name="relu_bad", bogus=3)
    assert "relu_bad" in e.value.message and "bogus" in e.value.message


def test_wrong_attribute_type_names_the_node():
    net = Network()
    net.add_input("x", F32, (2, 3))
    with pytest.raises(KilnError) as e:
        net.add_layer("Softmax", ["x"], ["y"], name="sm", axis=1.5)
    assert e.value.status == "KILN_ERR_INVALID_ARGUMENT"
    assert "sm" in e.value.message and "axis" in e.value.message


def test_bad_arity_names_the_node():
    net = Network()
    net.add_input("x", F32, (2, 3))
    with pytest.raises(KilnError) as e:
        net.add_layer("Add", ["x"], ["y"], name="add_one_input")
    assert "add_one_input" in e.value.message


def test_shape_mismatch_at_build_names_the_node():
    net = Network()
    net.add_input("a", F32, (2, 3))
    net.add_input("b", F32, (4, 5))
    net.add_layer("Add", ["a", "b"], ["y"], name="bad_add")
    net.mark_output("y")
    with pytest.raises(KilnError) as e:
        build(net)
    assert e.value.status == "KILN_ERR_SHAPE"
    assert "bad_add" in e.value.message


def test_conv_weight_rank_mismatch_names_the_node(rng):
    net = Network()
    net.add_input("x", F32, (1, 3, 5, 5))
    net.add_constant("w", np.ones((4, 3), F32))
    net.add_layer("Conv", ["x", "w"], ["y"], name="conv_bad")
    net.mark_output("y")
    with pytest.raises(KilnError) as e:
        build(net)
    assert "conv_bad" in e.value.message


def test_matmul_inner_dim_mismatch_names_the_node():
    net = Network()
    net.add_input("a", F32, (2, 3))
    net.add_input("b", F32, (4, 5))
    net.add_layer("MatMul", ["a", "b"], ["y"], name="mm_bad")
    net.mark_output("y")
    with pytest.raises(KilnError) as e:
        build(net)
    assert e.value.status == "KILN_ERR_SHAPE" and "mm_bad" in e.value.message


def test_dangling_input_is_invalid_graph():
    net = Network()
    net.add_input("x", F32, (2, 3))
    with pytest.raises(KilnError) as e:
        net.add_layer("Add", ["x", "nowhere"], ["y"], name="dangling")
        net.mark_output("y")
        build(net)
    assert "dangling" in e.value.message or "nowhere" in e.value.message


def test_duplicate_output_name_rejected():
    net = Network()
    net.add_input("x", F32, (2, 3))
    net.add_layer("Relu", ["x"], ["y"], name="r1")
    with pytest.raises(KilnError):
        net.add_layer("Relu", ["x"], ["y"], name="r2")


def test_mark_unknown_output():
    net = Network()
    net.add_input("x", F32, (2, 3))
    with pytest.raises(KilnError) as e:
        net.mark_output("nope")
        build(net)
    assert "nope" in e.value.message


def test_constant_size_mismatch_rejected():
    net = Network()
    a = np.ones((2, 3), F32)
    with pytest.raises(KilnError) as e:
        K.lib()  # loaded
        import ctypes

        K._check(K.lib().kiln_network_add_constant(
            net._h, b"c", 1, ctypes.byref(K.Dims.of((2, 4))), ctypes.c_void_p(a.ctypes.data),
            a.nbytes))
    assert e.value.status in ("KILN_ERR_INVALID_ARGUMENT", "KILN_ERR_SHAPE")


def test_last_error_cleared():
    K.lib().kiln_clear_error()
    assert K.last_error() == ""


def test_status_names():
    assert K.status_name(0) == "KILN_OK"
    assert K.status_name(7) == "KILN_ERR_SHAPE"


# ---- engine introspection and runs ----

def test_engine_io_and_info(rng):
    net, w, b = _small_net(rng)
    eng = build(net)
    assert eng.io_names == ["x", "y"]
    assert eng.inputs == ["x"] and eng.outputs == ["y"]
    assert eng.io_mode("x") == K.IO_INPUT and eng.io_mode("y") == K.IO_OUTPUT
    assert eng.io_mode("c") == K.IO_NONE
    assert eng.io_name(2) is None and eng.io_name(-1) is None
    assert eng.tensor_info("x") == (np.dtype(F32), (2, 3, 4, 4))
    assert eng.tensor_info("y") == (np.dtype(F32), (2, 5))
    with pytest.raises(KilnError) as e:
        eng.tensor_info("no_such_tensor")
    assert e.value.status == "KILN_ERR_NOT_FOUND"
    assert 1 <= eng.num_layers <= 4
    for i in range(eng.num_layers):
        li = eng.layer_info(i)
        assert li["name"] and li["op"] and li["kernel"] and li["precision"]
    assert eng.arena_bytes > 0
    # the arena rounds each buffer up to 64 bytes; the activation sum does not
    n_acts = sum(len(eng.layer_info(i)["outputs"]) for i in range(eng.num_layers))
    assert eng.arena_bytes <= eng.activation_bytes + 64 * n_acts
    assert eng.weight_bytes >= w.nbytes + b.nbytes
    assert eng.device == "cpu"
    assert eng.threads == 1


def test_engine_runs_multilayer(rng):
    net, w, b = _small_net(rng)
    eng = build(net)
    x = rng.uniform(-1, 1, size=(2, 3, 4, 4)).astype(F32)
    out = eng.create_context().infer({"x": x})
    assert_close(out["y"], _small_ref(x, w, b))


def test_network_destroyed_after_build(rng):
    net, w, b = _small_net(rng)
    eng = build(net)
    net.close()
    x = rng.uniform(-1, 1, size=(2, 3, 4, 4)).astype(F32)
    assert_close(eng.create_context().infer({"x": x})["y"], _small_ref(x, w, b))


def test_save_load_roundtrip(rng, tmp_path):
    net, w, b = _small_net(rng)
    eng = build(net)
    x = rng.uniform(-1, 1, size=(2, 3, 4, 4)).astype(F32)
    want = eng.create_context().infer({"x": x})["y"].copy()
    path = tmp_path / "small.plan"
    eng.save(path)
    assert path.stat().st_size > 0
    eng2 = K.Engine.load(path)
    assert eng2.io_names == eng.io_names
    assert eng2.num_layers == eng.num_layers
    assert eng2.tensor_info("y") == eng.tensor_info("y")
    assert_equal(eng2.create_context().infer({"x": x})["y"], want)


def test_serialize_load_memory_roundtrip(rng):
    net, w, b = _small_net(rng)
    eng = build(net)
    blob = eng.serialize()
    assert len(blob) > 0
    eng2 = K.Engine.load_memory(blob)
    x = rng.uniform(-1, 1, size=(2, 3, 4, 4)).astype(F32)
    assert_equal(eng2.create_context().infer({"x": x})["y"],
                 eng.create_context().infer({"x": x})["y"])
    # serializing a loaded engine gives the same plan
    assert eng2.serialize() == blob


def test_load_missing_file(tmp_path):
    with pytest.raises(KilnError) as e:
        K.Engine.load(tmp_path / "missing.plan")
    assert e.value.status == "KILN_ERR_IO"


@pytest.mark.parametrize("blob", [b"", b"KILN", b"\0" * 64, b"garbage" * 100])
def test_load_garbage_memory(blob):
    with pytest.raises(KilnError) as e:
        K.Engine.load_memory(blob)
    assert e.value.status in ("KILN_ERR_CORRUPT_PLAN", "KILN_ERR_VERSION",
                              "KILN_ERR_INVALID_ARGUMENT", "KILN_ERR_PARSE")


def test_load_truncated_and_flipped_plans(rng):
    net, _, _ = _small_net(rng)
    blob = build(net).serialize()
    for cut in (len(blob) // 2, len(blob) - 1, 16):
        with pytest.raises(KilnError):
            K.Engine.load_memory(blob[:cut])
    bad = bytearray(blob)
    bad[len(bad) // 2] ^= 0xFF
    with pytest.raises(KilnError) as e:
        K.Engine.load_memory(bytes(bad))
    assert e.value.status == "KILN_ERR_CORRUPT_PLAN"


def test_run_before_binding_is_state_error(rng):
    net, _, _ = _small_net(rng)
    ctx = build(net).create_context()
    with pytest.raises(KilnError) as e:
        ctx.run()
    assert e.value.status == "KILN_ERR_STATE"


def test_bind_unknown_name(rng):
    net, _, _ = _small_net(rng)
    ctx = build(net).create_context()
    with pytest.raises(KilnError) as e:
        ctx.set_tensor("c", np.zeros((2, 5, 4, 4), F32))  # an activation, not I/O
    assert e.value.status in ("KILN_ERR_NOT_FOUND", "KILN_ERR_INVALID_ARGUMENT")


def test_wrong_input_shape_rejected(rng):
    net, _, _ = _small_net(rng)
    ctx = build(net).create_context()
    with pytest.raises(KilnError) as e:
        ctx.set_input_shape("x", (2, 3, 5, 5))
    assert e.value.status in ("KILN_ERR_SHAPE", "KILN_ERR_INVALID_ARGUMENT")
    assert "x" in e.value.message


def test_context_tensor_shape(rng):
    net, _, _ = _small_net(rng)
    ctx = build(net).create_context()
    assert ctx.tensor_shape("y") == (2, 5)
    assert ctx.tensor_shape("x") == (2, 3, 4, 4)


def test_context_reused_and_rebound(rng):
    net, w, b = _small_net(rng)
    eng = build(net)
    ctx = eng.create_context()
    for _ in range(3):
        x = rng.uniform(-1, 1, size=(2, 3, 4, 4)).astype(F32)
        assert_close(ctx.infer({"x": x})["y"], _small_ref(x, w, b))


def test_two_contexts_one_engine(rng):
    net, w, b = _small_net(rng)
    eng = build(net)
    c1, c2 = eng.create_context(), eng.create_context()
    x1 = rng.uniform(-1, 1, size=(2, 3, 4, 4)).astype(F32)
    x2 = rng.uniform(-1, 1, size=(2, 3, 4, 4)).astype(F32)
    y1 = c1.infer({"x": x1})["y"]
    y2 = c2.infer({"x": x2})["y"]
    assert_close(y1, _small_ref(x1, w, b))
    assert_close(y2, _small_ref(x2, w, b))


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_threads_give_same_result(threads, rng):
    x = rng.uniform(-1, 1, size=(2, 16, 12, 12)).astype(F32)
    w = rng.uniform(-1, 1, size=(24, 16, 3, 3)).astype(F32)
    (y,) = run_op("Conv", [x, w], {"pads": [1, 1, 1, 1]}, const_inputs={1}, threads=threads)
    from test_ops_nn import conv_ref

    assert_close(y, conv_ref(x, w, pads=[1, 1, 1, 1]))


def test_two_outputs_and_intermediate_output(rng):
    net = Network()
    net.add_input("x", F32, (3, 4))
    net.add_layer("Relu", ["x"], ["r"], name="relu")
    net.add_layer("Neg", ["r"], ["n"], name="neg")
    net.mark_output("n")
    net.mark_output("r")
    eng = build(net)
    assert eng.outputs == ["n", "r"]
    x = rng.uniform(-1, 1, size=(3, 4)).astype(F32)
    out = eng.create_context().infer({"x": x})
    assert_equal(out["r"], np.maximum(x, 0))
    assert_equal(out["n"], -np.maximum(x, 0))


def test_input_marked_as_output_through_identity(rng):
    net = Network()
    net.add_input("x", F32, (5,))
    net.add_layer("Identity", ["x"], ["y"], name="id")
    net.mark_output("y")
    x = rng.uniform(-1, 1, size=(5,)).astype(F32)
    assert_equal(build(net).create_context().infer({"x": x})["y"], x)


def test_two_inputs_order(rng):
    net = Network()
    net.add_input("b_second", F32, (3,))
    net.add_input("a_first", F32, (3,))
    net.add_layer("Sub", ["a_first", "b_second"], ["y"])
    net.mark_output("y")
    eng = build(net)
    assert eng.io_names == ["b_second", "a_first", "y"]
    a, b = np.arange(3, dtype=F32), np.ones(3, F32)
    assert_equal(eng.create_context().infer({"a_first": a, "b_second": b})["y"], a - b)


def test_constant_folded_subgraph(rng):
    # Shape -> Gather -> Unsqueeze -> Concat -> Reshape: a typical exported flatten
    net = Network()
    net.add_input("x", F32, (2, 3, 4))
    net.add_layer("Shape", ["x"], ["s"], name="shape")
    net.add_constant("i0", np.array(0, np.int64))
    net.add_layer("Gather", ["s", "i0"], ["n"], name="gather", axis=0)
    net.add_constant("ax", np.array([0], np.int64))
    net.add_layer("Unsqueeze", ["n", "ax"], ["n1"], name="unsq")
    net.add_constant("m1", np.array([-1], np.int64))
    net.add_layer("Concat", ["n1", "m1"], ["shp"], name="cat", axis=0)
    net.add_layer("Reshape", ["x", "shp"], ["y"], name="reshape")
    net.mark_output("y")
    eng = build(net)
    assert eng.tensor_info("y") == (np.dtype(F32), (2, 12))
    x = rng.uniform(-1, 1, size=(2, 3, 4)).astype(F32)
    assert_equal(eng.create_context().infer({"x": x})["y"], x.reshape(2, 12))


def test_pass_names_listed():
    names = K.pass_names()
    assert isinstance(names, list)
    assert len(set(names)) == len(names)


# ---- dynamic dimensions fixed by the config ----

def _dyn_net():
    net = Network()
    net.add_input("x", F32, (-1, 3))
    net.add_constant("w", np.arange(12, dtype=F32).reshape(3, 4))
    net.add_layer("MatMul", ["x", "w"], ["y"], name="mm")
    net.mark_output("y")
    return net


@pytest.mark.parametrize("batch", [1, 5])
def test_dynamic_batch_set_in_config(batch, rng):
    eng = build(_dyn_net(), input_shapes={"x": (batch, 3)})
    assert eng.tensor_info("y") == (np.dtype(F32), (batch, 4))
    x = rng.uniform(-1, 1, size=(batch, 3)).astype(F32)
    assert_close(eng.create_context().infer({"x": x})["y"],
                 x.astype(np.float64) @ np.arange(12).reshape(3, 4))


def test_dynamic_dim_without_shape_names_the_input():
    with pytest.raises(KilnError) as e:
        build(_dyn_net())
    assert "x" in e.value.message


def test_config_shape_that_contradicts_static_dim():
    with pytest.raises(KilnError) as e:
        build(_dyn_net(), input_shapes={"x": (2, 5)})
    assert "x" in e.value.message


def test_config_shape_for_unknown_input():
    with pytest.raises(KilnError):
        build(_dyn_net(), input_shapes={"x": (2, 3), "nope": (1,)})
