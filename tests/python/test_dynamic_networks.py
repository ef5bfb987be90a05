"""A BERT-shaped encoder with dynamic batch and sequence (models/gen_models.py's
bert_dynamic), built once with one optimization profile, run at every (batch, seq) of a
grid inside it against ONNX Runtime on the same inputs: the relative L2 error of every
output must be under 1e-5 at each point. Also: a second profile, shapes outside the
profile, and many contexts of the engine. A table is written to
<build>/dynamic-summary.json."""

import json
import os
import threading

import numpy as np
import pytest

import kiln_ctypes as K
from models import gen_models as G

ort = pytest.importorskip("onnxruntime")

TOL = 1e-5
NAME = "bert_dynamic"
PROFILE = {"input_ids": ((1, 1), (2, 32), (8, 64)), "attention_mask": ((1, 1), (2, 32), (8, 64))}
GRID = [(1, 2), (1, 64), (8, 2), (8, 64), (2, 17), (3, 33), (5, 7), (4, 32), (1, 1)]

_rows = []


@pytest.fixture(scope="module")
def model():
    path = G.model_path(NAME)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    net = K.Network.from_onnx(path)
    try:
        engine = K.build(net, threads=1, profiles=[PROFILE])
    finally:
        net.close()
    yield path, sess, engine
    engine.close()
    out = os.path.join(os.path.dirname(os.path.abspath(os.environ["KILN_LIB"])),
                       "dynamic-summary.json")
    with open(out, "w") as fh:
        json.dump(_rows, fh, indent=1)
    print(f"\n{NAME}: relative L2 against ONNX Runtime per (batch, seq)")
    for r in _rows:
        print(f"  {r['batch']:3d} x {r['seq']:3d}  {r['output']:18s} {r['rel_l2']:.3g}")


def feeds(batch, seq, seed=0):
    return G.DYNAMIC_MODELS[NAME][2](seed, batch, seq)


def rel_l2(got, want):
    g, w = got.astype(np.float64), want.astype(np.float64)
    return float(np.linalg.norm(g - w) / max(np.linalg.norm(w), 1e-30))


def check(ctx, sess, batch, seq, seed=0, record=True):
    f = feeds(batch, seq, seed)
    want = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, f)))
    got = ctx.infer(f, shape_from="context")
    for name, w in want.items():
        assert got[name].shape == w.shape, (name, got[name].shape, w.shape)
        err = rel_l2(got[name], w)
        if record:
            _rows.append({"batch": batch, "seq": seq, "output": name, "rel_l2": err})
        assert err < TOL, (batch, seq, name, err)


@pytest.mark.parametrize("batch,seq", GRID)
def test_grid_against_onnxruntime(model, batch, seq):
    _, sess, engine = model
    ctx = engine.create_context()
    try:
        check(ctx, sess, batch, seq)
    finally:
        ctx.close()


def test_one_context_many_shapes(model):
    """One context runs shape after shape, back and forth."""
    _, sess, engine = model
    ctx = engine.create_context()
    try:
        for batch, seq in [(3, 40), (1, 5), (3, 40), (6, 9)]:
            check(ctx, sess, batch, seq, seed=batch + seq, record=False)
    finally:
        ctx.close()


def test_profile_limits(model):
    _, _, engine = model
    assert engine.num_profiles == 1
    assert engine.profile_shape(0, "input_ids", 0) == (1, 1)
    assert engine.profile_shape(0, "input_ids", 2) == (8, 64)
    ctx = engine.create_context()
    try:
        with pytest.raises(K.KilnError, match=r"input 'input_ids': dimension 1 is 65; profile 0 "
                                               r"allows 1\.\.64"):
            ctx.set_input_shape("input_ids", (2, 65))
        with pytest.raises(K.KilnError, match=r"dimension 0 is 9; profile 0 allows 1\.\.8"):
            ctx.set_input_shape("attention_mask", (9, 4))
        # the two inputs must agree (the model adds them up): the message says where
        ctx.set_input_shape("input_ids", (2, 8))
        ctx.set_input_shape("attention_mask", (2, 9))
        with pytest.raises(K.KilnError):
            ctx.tensor_shape("last_hidden_state")
    finally:
        ctx.close()


def test_contexts_on_threads(model):
    """Four contexts of one engine run different shapes at once; each result equals the
    single-context one bit for bit."""
    _, sess, engine = model
    shapes = [(1, 9), (2, 16), (3, 5), (1, 30)]
    want = []
    ctx = engine.create_context()
    for b, s in shapes:
        want.append({k: v.copy() for k, v in ctx.infer(feeds(b, s, 7), shape_from="context")
                     .items()})
    ctx.close()
    errors = []

    def work(i):
        c = engine.create_context()
        try:
            for rep in range(3):
                k = (i + rep) % len(shapes)
                got = c.infer(feeds(*shapes[k], 7), shape_from="context")
                for name, w in want[k].items():
                    if not np.array_equal(got[name], w):
                        errors.append((i, rep, name))
        except Exception as e:  # reported below, in the test's thread
            errors.append((i, repr(e)))
        finally:
            c.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_second_profile(model):
    """Two profiles: long sequences of batch 1, short ones of larger batches."""
    path, sess, _ = model
    net = K.Network.from_onnx(path)
    try:
        engine = K.build(net, threads=1, profiles=[
            {"input_ids": ((1, 32), (1, 64), (1, 96)),
             "attention_mask": ((1, 32), (1, 64), (1, 96))},
            {"input_ids": ((2, 1), (4, 8), (6, 16)),
             "attention_mask": ((2, 1), (4, 8), (6, 16))}])
    finally:
        net.close()
    try:
        assert engine.num_profiles == 2
        ctx = engine.create_context()
        check(ctx, sess, 1, 96, record=False)
        with pytest.raises(K.KilnError, match=r"dimension 0 is 4; profile 0 fixes it "
                                               r"at 1"):
            ctx.set_input_shape("input_ids", (4, 8))
        ctx.set_profile(1)
        check(ctx, sess, 5, 11, record=False)
        ctx.close()
    finally:
        engine.close()
