"""A small ONNX graph builder for the generated test networks: PyTorch-export-style names,
seeded weight initializers, and BatchNormalization statistics calibrated on data (so a
random network's activations look like a trained one's: O(1), neither constant nor
exploding)."""

import contextlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8  # the IR version that goes with opset 17
F32 = np.float32


class Graph:
    """Collects nodes, initializers, inputs and outputs; names nodes the way
    torch.onnx.export does ("/layer1/layer1.0/conv1/Conv", outputs "<node>_output_0")
    and parameters like a state dict ("layer1.0.conv1.weight")."""

    def __init__(self, name, seed):
        self.name = name
        self.rng = np.random.default_rng(seed)
        self.nodes = []
        self.inits = {}  # name -> numpy array (insertion order kept)
        self.inputs = []
        self.outputs = []
        self._scope = []
        self._node_names = set()

    # ---- naming -------------------------------------------------------------------------

    @contextlib.contextmanager
    def scope(self, *parts):
        """Nests module names: parameters and nodes created inside are named after them."""
        self._scope.extend(str(p) for p in parts)
        try:
            yield
        finally:
            del self._scope[len(self._scope) - len(parts):]

    def param_name(self, leaf):
        return ".".join(self._scope + [leaf])

    def _node_name(self, op_type):
        base = "/" + "/".join(self._scope + [op_type]) if self._scope else f"/{op_type}"
        name, k = base, 0
        while name in self._node_names:
            k += 1
            name = f"{base}_{k}"
        self._node_names.add(name)
        return name

    # ---- graph contents -------------------------------------------------------------------

    def input(self, name, elem_type, shape):
        self.inputs.append(helper.make_tensor_value_info(name, elem_type, shape))
        return name

    def output(self, name, elem_type, shape):
        self.outputs.append(helper.make_tensor_value_info(name, elem_type, shape))
        return name

    def init(self, name, array):
        """An initializer; `name` is used as given."""
        if name in self.inits:
            raise ValueError(f"initializer {name} defined twice")
        self.inits[name] = np.asarray(array)
        return name

    def param(self, leaf, array):
        """An initializer named after the current scope (a module parameter)."""
        return self.init(self.param_name(leaf), np.asarray(array, dtype=F32))

    def constant(self, value, dtype=F32):
        """A Constant node holding `value`, as torch.onnx.export writes scalars."""
        arr = np.asarray(value, dtype=dtype)
        return self.op("Constant", [], value=numpy_helper.from_array(arr))

    def op(self, op_type, inputs, n_out=1, out_names=None, **attrs):
        """Adds a node; returns its output name (or a list when n_out > 1)."""
        name = self._node_name(op_type)
        outs = out_names or [f"{name}_output_{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=name, **attrs))
        return outs[0] if len(outs) == 1 else outs

    # ---- weights ----------------------------------------------------------------------------

    def normal(self, shape, std):
        return (self.rng.standard_normal(shape) * std).astype(F32)

    def uniform(self, shape, lo, hi):
        return self.rng.uniform(lo, hi, size=shape).astype(F32)

    # ---- model ------------------------------------------------------------------------------

    def make_model(self, extra_outputs=()):
        outputs = list(self.outputs)
        outputs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, None)
                    for n in extra_outputs]
        inits = [numpy_helper.from_array(a, n) for n, a in self.inits.items()]
        graph = helper.make_graph(self.nodes, self.name, self.inputs, outputs, inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="kiln-tests-gen_models", producer_version="1")
        model.ir_version = IR_VERSION
        return model


# ---- common layers ---------------------------------------------------------------------------


def conv(g, x, cin, cout, k, stride=1, pad=None, groups=1, bias=False):
    """A Conv with He-normal weights (std sqrt(2 / fan_in)), optional bias."""
    pad = (k - 1) // 2 if pad is None else pad
    fan_in = cin // groups * k * k
    w = g.param("weight", g.normal((cout, cin // groups, k, k), np.sqrt(2.0 / fan_in)))
    ins = [x, w]
    if bias:
        ins.append(g.param("bias", g.normal((cout,), 0.05)))
    return g.op("Conv", ins, dilations=[1, 1], group=groups, kernel_shape=[k, k],
                pads=[pad] * 4, strides=[stride, stride])


def batchnorm(g, x, c, gamma=(0.6, 1.4), beta_mean=0.5):
    """Eval-mode BatchNormalization. running_mean/var are placeholders that
    calibrate_batchnorm replaces with statistics measured on data. A positive mean of
    beta (for a BN followed by an activation) keeps most units of the following
    activation active, which makes the random network far less sensitive to rounding
    (ORT against itself with and without its graph optimizations: 1e-6 instead of 4e-6
    relative L2 on MobileNetV2)."""
    s = g.param("weight", g.uniform((c,), *gamma))
    b = g.param("bias", g.normal((c,), 0.1) + F32(beta_mean))
    m = g.param("running_mean", np.zeros(c, F32))
    v = g.param("running_var", np.ones(c, F32))
    return g.op("BatchNormalization", [x, s, b, m, v], epsilon=1e-5, momentum=0.9)


def linear_gemm(g, x, fin, fout):
    """nn.Linear on a 2-D input as torch exports it: Gemm with transB=1."""
    w = g.param("weight", g.normal((fout, fin), 1.0 / np.sqrt(fin)))
    b = g.param("bias", g.normal((fout,), 0.05))
    return g.op("Gemm", [x, w, b], alpha=1.0, beta=1.0, transB=1)


def linear_matmul(g, x, fin, fout):
    """nn.Linear on a 3-D input as torch exports it: MatMul by the transposed weight,
    then Add of the bias."""
    w = g.init(g.param_name("weight_t"), g.normal((fin, fout), 1.0 / np.sqrt(fin)))
    b = g.param("bias", g.normal((fout,), 0.05))
    return g.op("Add", [g.op("MatMul", [x, w]), b])


# ---- BatchNorm calibration -------------------------------------------------------------------


def _run_ort(model, feeds, outputs):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    return sess.run(outputs, feeds)


# BN statistics: the running mean is half of the per-channel mean of the data, and the
# running variance the second moment about it (plus a floor). A trained network's running
# statistics come from a whole data set, so on one image the channels keep part of their
# mean; subtracting all of it at every layer would make the random network needlessly
# sensitive to rounding (each full subtraction cancels digits).
VAR_FLOOR = 1e-2
MEAN_SHARE = 0.5


def calibrate_batchnorm(g, feeds):
    """Sets each BatchNormalization's running mean and variance from the statistics of
    its input on `feeds` (see MEAN_SHARE), as training would leave them. One run of a copy
    of the network whose BNs normalize by the statistics of the data they see (decomposed
    into ReduceMean, Sub, Mul, Sqrt, Div) measures them all at once: every BN then sees
    its input as the eval-mode network with the final statistics computes it. The
    variance floor keeps the folded scale gamma / sqrt(var + eps) moderate for channels
    that are almost constant."""
    bns = [n for n in g.nodes if n.op_type == "BatchNormalization"]
    if not bns:
        return
    nodes, extra, probe = [], {}, []
    floor = "calib.var_floor"
    extra[floor] = np.array(VAR_FLOOR + 1e-5, F32)
    share = "calib.mean_share"
    extra[share] = np.array(MEAN_SHARE, F32)
    for n in g.nodes:
        if n.op_type != "BatchNormalization":
            nodes.append(n)
            continue
        x, s, b, m, v = n.input
        c = g.inits[s].shape[0]
        t = f"calib.{n.name}"
        extra[t + ".s"] = g.inits[s].reshape(1, c, 1, 1)
        extra[t + ".b"] = g.inits[b].reshape(1, c, 1, 1)
        mk = onnx.helper.make_node
        nodes += [
            mk("ReduceMean", [x], [t + ".mean"], axes=[0, 2, 3], keepdims=1),
            mk("Mul", [t + ".mean", share], [t + ".rmean"]),
            mk("Sub", [x, t + ".rmean"], [t + ".d"]),
            mk("Mul", [t + ".d", t + ".d"], [t + ".d2"]),
            mk("ReduceMean", [t + ".d2"], [t + ".var"], axes=[0, 2, 3], keepdims=1),
            mk("Add", [t + ".var", floor], [t + ".ve"]),
            mk("Sqrt", [t + ".ve"], [t + ".sd"]),
            mk("Div", [t + ".d", t + ".sd"], [t + ".n"]),
            mk("Mul", [t + ".n", t + ".s"], [t + ".ns"]),
            mk("Add", [t + ".ns", t + ".b"], [n.output[0]]),
        ]
        probe += [t + ".rmean", t + ".var"]
    saved = g.nodes, dict(g.inits)
    g.nodes = nodes
    g.inits.update(extra)
    try:
        vals = _run_ort(g.make_model(extra_outputs=probe), feeds, probe)
    finally:
        g.nodes, g.inits = saved
    for i, n in enumerate(bns):
        mean, var = vals[2 * i].reshape(-1), vals[2 * i + 1].reshape(-1)
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(var))):
            raise RuntimeError(f"{g.name}: {n.name}: statistics are not finite")
        g.inits[n.input[3]] = mean.astype(F32)
        g.inits[n.input[4]] = (var + VAR_FLOOR).astype(F32)


def activation_report(model, feeds):
    """(node name, rms) of every float node output, for checking that a network's
    activations stay O(1)."""
    names, types = [], {}
    for vi in model.graph.value_info:
        types[vi.name] = vi.type.tensor_type.elem_type
    inferred = onnx.shape_inference.infer_shapes(model)
    for vi in inferred.graph.value_info:
        types[vi.name] = vi.type.tensor_type.elem_type
    owner = {}
    for n in model.graph.node:
        if n.op_type == "Constant":
            continue
        for o in n.output:
            if types.get(o) == TensorProto.FLOAT:
                names.append(o)
                owner[o] = n.name
    m = onnx.ModelProto()
    m.CopyFrom(model)
    known = {o.name for o in m.graph.output}
    m.graph.output.extend(helper.make_tensor_value_info(n, TensorProto.FLOAT, None)
                          for n in names if n not in known)
    vals = _run_ort(m, feeds, names)
    return [(owner[n], float(np.sqrt(np.mean(np.square(v.astype(np.float64))))))
            for n, v in zip(names, vals)]
