"""Writes Caffe models the way people and Caffe do: a deploy .prototxt in hand-written text
style (comments, `field: value`, `field { }` and `field: { }`) and a binary .caffemodel
(NetParameter with each layer's blobs), both checked against kiln's own schema.

The Python protobuf module is generated from src/parsers/caffe/caffe.proto with protoc
(Debian's protobuf-compiler) into a cache folder on first use, so the writer and the C
importer always share one schema. Used by gen_caffe_models.py and
scripts/train_lenet_caffe.py.
"""

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
SCHEMA = os.path.join(REPO, "src", "parsers", "caffe", "caffe.proto")


# ---- the schema as a Python module -----------------------------------------------------------


def schema_hash():
    with open(SCHEMA, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def find_protoc():
    """protoc from $PROTOC, PATH, or grpcio-tools' bundled compiler; None when absent."""
    exe = os.environ.get("PROTOC") or shutil.which("protoc")
    if exe:
        return [exe]
    if importlib.util.find_spec("grpc_tools") is not None:
        return [sys.executable, "-m", "grpc_tools.protoc"]
    return None


_pb2 = None


def load_schema(workdir):
    """caffe_pb2 generated from kiln's caffe.proto into `workdir` (once per schema version
    and process)."""
    global _pb2
    if _pb2 is not None:
        return _pb2
    protoc = find_protoc()
    if protoc is None:
        raise RuntimeError("no protoc to compile src/parsers/caffe/caffe.proto for Python: "
                           "install Debian's protobuf-compiler (scripts/install-deps.sh) or "
                           "set $PROTOC")
    out = os.path.join(workdir, f"caffe_pb_{schema_hash()[:16]}")
    mod = os.path.join(out, "caffe_pb2.py")
    if not os.path.isfile(mod):
        tmp = f"{out}.{os.getpid()}.tmp"
        os.makedirs(tmp, exist_ok=True)
        subprocess.run(protoc + [f"--python_out={tmp}", f"-I{os.path.dirname(SCHEMA)}",
                                 SCHEMA], check=True)
        try:
            os.replace(tmp, out)
        except OSError:  # another process won the race: its copy is the same
            shutil.rmtree(tmp, ignore_errors=True)
    spec = importlib.util.spec_from_file_location("kiln_caffe_pb2", mod)
    pb2 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pb2)
    _pb2 = pb2
    return pb2


# ---- prototxt text ---------------------------------------------------------------------------


class Enum(str):
    """An enum value, written bare (pool: MAX)."""


class Note:
    """A value with a trailing comment: Note(5, "5x5 kernel") -> `kernel_size: 5  # 5x5 kernel`."""

    def __init__(self, value, comment):
        self.value, self.comment = value, comment


class Colon(dict):
    """A message written with a colon, as some people do: `shape: { dim: 1 }`."""


class Inline(dict):
    """A message written on one line: `param { lr_mult: 1 decay_mult: 1 }`."""


class ColonInline(Colon, Inline):
    """Both: `shape: { dim: 1 dim: 3 dim: 224 dim: 224 }`."""


def _scalar(v):
    if isinstance(v, Enum):
        return str(v)
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return str(np.float32(v))  # the shortest text that reads back as this float32
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise TypeError(f"no text form for {v!r}")


def _emit(lines, key, value, indent):
    pad = "  " * indent
    comment = ""
    if isinstance(value, Note):
        comment = f"  # {value.comment}"
        value = value.value
    if isinstance(value, (list, tuple)):
        for v in value:
            _emit(lines, key, v, indent)
        return
    if isinstance(value, dict):
        colon = ":" if isinstance(value, Colon) else ""
        if isinstance(value, Inline):
            body = " ".join(f"{k}: {_scalar(x)}" for k, v in value.items()
                            for x in (v if isinstance(v, (list, tuple)) else [v]))
            lines.append(f"{pad}{key}{colon} {{ {body} }}{comment}")
            return
        lines.append(f"{pad}{key}{colon} {{{comment}")
        for k, v in value.items():
            _emit(lines, k, v, indent + 1)
        lines.append(f"{pad}}}")
        return
    lines.append(f"{pad}{key}: {_scalar(value)}{comment}")


# ---- a network under construction ------------------------------------------------------------


class NetSpec:
    """Layers in order, each with its text fields and its blobs (numpy float32 arrays).

        n = NetSpec("lenet", seed=0)
        n.input("data", (1, 1, 28, 28))
        n.layer("Convolution", "conv1", ["data"], ["conv1"],
                convolution_param={"num_output": 20, "kernel_size": 5},
                blobs=[w, b])
        text, model_bytes = n.prototxt(), n.caffemodel(pb2)

    `legacy=True` writes the V1 form (`layers { type: CONVOLUTION }`) with 4-D legacy blob
    shapes (num, channels, height, width) as old Caffe did."""

    def __init__(self, name, seed=0, legacy=False, header=None):
        self.name = name
        self.rng = np.random.default_rng(seed)
        self.legacy = legacy
        self.header = header
        self.inputs = []  # (name, shape, form)
        self.layers = []  # dicts: kind, name, fields, blobs, comment
        self.extra_model_layers = []  # in the caffemodel only (training layers)

    # inputs
    def input(self, name, shape, form="input_shape"):
        """form: "input_shape" (input: + input_shape { dim }), "input_dim" (four
        input_dim lines) or "layer" (an Input layer with input_param)."""
        self.inputs.append((name, tuple(int(s) for s in shape), form))
        if form == "layer":
            self.layer("Input", name, [], [name],
                       input_param={"shape": ColonInline(dim=[int(s) for s in shape])})
        return name

    def layer(self, kind, name, bottom, top, blobs=(), comment=None, **fields):
        """Adds a layer; `fields` are the LayerParameter (or V1LayerParameter) fields past
        name/type/bottom/top, as nested dicts and lists."""
        if isinstance(bottom, str):
            bottom = [bottom]
        if isinstance(top, str):
            top = [top]
        self.layers.append({"kind": kind, "name": name, "bottom": list(bottom),
                            "top": list(top), "fields": fields,
                            "blobs": [np.ascontiguousarray(b, np.float32) for b in blobs],
                            "comment": comment})
        return top[0] if len(top) == 1 else top

    def model_only_layer(self, kind, name, bottom, top, **fields):
        """A layer the caffemodel carries but the deploy file does not (a training-time data
        or loss layer, as in a snapshot Caffe wrote): importers match blobs by layer name and
        must skip it."""
        self.extra_model_layers.append({"kind": kind, "name": name, "bottom": list(bottom),
                                        "top": list(top), "fields": fields, "blobs": [],
                                        "comment": None})

    # seeded weights
    def normal(self, shape, std=1.0, mean=0.0):
        return (mean + std * self.rng.standard_normal(shape)).astype(np.float32)

    def uniform(self, shape, lo, hi):
        return self.rng.uniform(lo, hi, shape).astype(np.float32)

    def he(self, shape, fan_in, gain=2.0):
        return self.normal(shape, np.sqrt(gain / fan_in))

    # text
    def _layer_lines(self, lay):
        lines = []
        if lay["comment"]:
            lines += [f"# {c}" for c in lay["comment"].split("\n")]
        key = "layers" if self.legacy else "layer"
        lines.append(f"{key} {{")
        lines.append(f"  name: {_scalar(lay['name'])}")
        kind = lay["kind"]
        lines.append(f"  type: {kind}" if self.legacy else f"  type: {_scalar(kind)}")
        for b in lay["bottom"]:
            lines.append(f"  bottom: {_scalar(b)}")
        for t in lay["top"]:
            lines.append(f"  top: {_scalar(t)}")
        for k, v in lay["fields"].items():
            _emit(lines, k, v, 1)
        lines.append("}")
        return lines

    def prototxt(self):
        lines = []
        if self.header:
            lines += [f"# {c}" if c else "#" for c in self.header.split("\n")]
        lines.append(f"name: {_scalar(self.name)}")
        for name, shape, form in self.inputs:
            if form == "input_shape":
                lines.append(f"input: {_scalar(name)}")
                lines.append("input_shape {")
                lines += [f"  dim: {d}" for d in shape]
                lines.append("}")
            elif form == "input_dim":
                lines.append(f"input: {_scalar(name)}")
                lines += [f"input_dim: {d}" for d in shape]
        for lay in self.layers:
            lines += self._layer_lines(lay)
        return "\n".join(lines) + "\n"

    # binary
    def _fill_blob(self, bp, arr):
        if self.legacy:
            # old Caffe: every blob 4-D (num, channels, height, width), padded in front
            dims = (1,) * (4 - arr.ndim) + arr.shape if arr.ndim <= 4 else None
            if dims is None:
                raise ValueError("a legacy blob has at most 4 dimensions")
            bp.num, bp.channels, bp.height, bp.width = (int(d) for d in dims)
        else:
            bp.shape.dim.extend(int(d) for d in arr.shape)
        bp.data.extend(arr.ravel().tolist())

    def caffemodel(self, pb2):
        """The binary NetParameter as Caffe's Net::ToProto writes it: the deploy layers'
        parameters with their blobs, no input fields, plus any model-only layers."""
        from google.protobuf import text_format

        deploy = text_format.Parse(self.prototxt(), pb2.NetParameter())
        model = pb2.NetParameter()
        model.name = deploy.name
        extra = pb2.NetParameter()
        if self.extra_model_layers:
            text = "\n".join(line for lay in self.extra_model_layers
                             for line in self._layer_lines(lay))
            text_format.Parse(text, extra)
        src = deploy.layers if self.legacy else deploy.layer
        dst = model.layers if self.legacy else model.layer
        for lp in (extra.layers if self.legacy else extra.layer):
            dst.add().CopyFrom(lp)
        for lp, lay in zip(src, self.layers):
            m = dst.add()
            m.CopyFrom(lp)
            for arr in lay["blobs"]:
                self._fill_blob(m.blobs.add(), arr)
        return model.SerializeToString()

    def check_text(self, pb2):
        """Parses the prototxt with the schema (raises on any field the schema lacks)."""
        from google.protobuf import text_format

        return text_format.Parse(self.prototxt(), pb2.NetParameter())

    def write(self, pb2, prototxt_path, caffemodel_path):
        text = self.prototxt()
        self.check_text(pb2)
        data = self.caffemodel(pb2)
        for path, payload, mode in ((prototxt_path, text, "w"), (caffemodel_path, data, "wb")):
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, mode) as fh:
                fh.write(payload)
            os.replace(tmp, path)
