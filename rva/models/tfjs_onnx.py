"""Convert a TensorFlow.js graph model (model.json, its weights manifest and .bin shards) to ONNX.

No TensorFlow anywhere: the JSON is a TensorFlow GraphDef written as JSON, the shards hold the
constants in manifest order (float16-quantized ones widened back to float32). Subgraphs of
constants only (the shape arithmetic a TF export leaves behind) are evaluated here in numpy;
every op that touches the image becomes ONNX ops, with static shapes tracked all the way, so the
graph ONNX Runtime loads has no shape computation left in it. Covered: the ops NanoDet's graph
uses (Conv2D, MaxPool, Pad/PadV2, ResizeBilinear, ConcatV2, SplitV, Reshape, Transpose, Add,
LeakyRelu, Sigmoid, Identity; SparseToDense on constants); any other op is a ModelError.

TF's NHWC ops are emitted as Transpose → NCHW op → Transpose; a Transpose that undoes the one
before it is dropped here, and ONNX Runtime's transpose optimizer removes most of the rest.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from rva.models.manifest import Manifest, ModelError

OPSET, IR_VERSION = 13, 7  # as darknet_onnx: fixed, so a newer onnx package writes the same file
TO_NCHW, TO_NHWC = (0, 3, 1, 2), (0, 2, 3, 1)
DTYPES = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}
QUANTIZED = {"float16": np.float16, "uint8": np.uint8, "uint16": np.uint16}


def read_weights(model: dict[str, Any], shards: dict[str, bytes]) -> dict[str, np.ndarray]:
    """Every constant of the weights manifest by name, float32 where the model was float32."""
    out: dict[str, np.ndarray] = {}
    for group in model.get("weightsManifest", []):
        try:
            data = b"".join(shards[path] for path in group["paths"])
        except KeyError as exc:
            raise ModelError(f"TF.js weights shard {exc.args[0]} is missing") from None
        offset = 0
        for entry in group["weights"]:
            shape, count = entry["shape"], int(np.prod(entry["shape"], dtype=np.int64))
            quant = entry.get("quantization")
            kind = quant["dtype"] if quant else entry["dtype"]
            dtype = QUANTIZED.get(kind) if quant else DTYPES.get(kind)
            if dtype is None:
                raise ModelError(f"TF.js weight {entry['name']}: dtype {kind} is not supported")
            size = count * np.dtype(dtype).itemsize
            if offset + size > len(data):
                raise ModelError("TF.js weights are shorter than the manifest says")
            value: np.ndarray = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
            offset += size
            if quant and kind != "float16":  # affine uint8/uint16: min + q * scale
                value = value * np.float32(quant["scale"]) + np.float32(quant["min"])
            target = DTYPES.get(entry["dtype"], np.float32)
            out[entry["name"]] = value.astype(target).reshape(shape)
        if offset != len(data):
            unused = len(data) - offset
            raise ModelError(f"TF.js weights have {unused} bytes the manifest never uses")
    return out


def _attr(node: dict[str, Any], key: str, default: Any = None) -> Any:
    value = node.get("attr", {}).get(key)
    if value is None:
        return default
    if "list" in value:
        return [int(i) for i in value["list"].get("i", [])]
    if "s" in value:
        return base64.b64decode(value["s"]).decode()
    if "i" in value:
        return int(value["i"])
    return value.get("f", value.get("b", value.get("type", default)))


def _ordered(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The nodes in an order where each comes after its inputs (TF.js keeps no order)."""
    by_name = {n["name"]: n for n in nodes}
    done: set[str] = set()
    order: list[dict[str, Any]] = []
    for root in nodes:
        stack: list[tuple[str, bool]] = [(root["name"], False)]
        while stack:
            name, expanded = stack.pop()
            if name in done:
                continue
            if expanded:
                done.add(name)
                order.append(by_name[name])
                continue
            stack.append((name, True))
            for ref in _inputs(by_name[name]):
                source = ref.split(":")[0]
                if source not in by_name:
                    raise ModelError(f"TF.js node {name}: input {source} does not exist")
                if source not in done:
                    stack.append((source, False))
    return order


def _inputs(node: dict[str, Any]) -> list[str]:
    return [i for i in node.get("input", []) if not i.startswith("^")]


def _ref(name: str) -> str:
    return name[:-2] if name.endswith(":0") else name


class _Graph:
    def __init__(self, consts: dict[str, np.ndarray]) -> None:
        self.consts = consts
        self.shapes: dict[str, tuple[int, ...]] = {}  # every dynamic tensor's static shape
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.alias: dict[str, str] = {}
        self.transposed: dict[str, tuple[str, tuple[int, ...]]] = {}
        self.count = 0

    def name(self, ref: str) -> str:
        ref = _ref(ref)
        return self.alias.get(ref, ref)

    def const(self, value: np.ndarray, hint: str) -> str:
        self.count += 1
        name = f"{hint}.c{self.count}"
        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def operand(self, ref: str) -> str:
        """A graph name for an input: a dynamic tensor, or a constant made an initializer."""
        ref = _ref(ref)
        if ref in self.consts:
            return self.const(self.consts[ref], ref)
        return self.name(ref)

    def emit(
        self, op: str, inputs: list[str], out: str, shape: tuple[int, ...], **attrs: Any
    ) -> str:
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        self.shapes[out] = shape
        return out

    def transpose(self, x: str, perm: tuple[int, ...], out: str) -> str:
        before = self.transposed.get(x)
        if before and tuple(before[1][p] for p in perm) == tuple(range(len(perm))):
            return before[0]  # undoes the Transpose that made x
        shape = tuple(self.shapes[x][p] for p in perm)
        self.emit("Transpose", [x], out, shape, perm=list(perm))
        self.transposed[out] = (x, perm)
        return out


def _fold(node: dict[str, Any], args: list[np.ndarray]) -> np.ndarray:
    """An op whose inputs are all constants, evaluated here."""
    op = node["op"]
    if op in ("Add", "AddV2"):
        return np.asarray(args[0] + args[1])
    if op == "Identity":
        return args[0]
    if op == "SparseToDense":
        indices, shape, values, default = args
        out = np.full(shape.astype(np.int64), default, dtype=values.dtype)
        if indices.size:
            out[tuple(indices.reshape(indices.shape[0], -1).T.astype(np.int64))] = values
        return out
    raise ModelError(f"TF.js node {node['name']}: op {op} on constants is not supported")


def _window(
    node: dict[str, Any], shape: tuple[int, ...], kernel: tuple[int, int], strides: list[int]
) -> tuple[list[int], tuple[int, int]]:
    """ONNX pads and output H, W of an NHWC conv or pool window, TF's VALID or SAME."""
    dil = _attr(node, "dilations", [1, 1, 1, 1])
    padding = _attr(node, "padding")
    pads, out = [0, 0, 0, 0], [0, 0]
    for axis in (0, 1):
        size, k, s, d = shape[1 + axis], kernel[axis], strides[1 + axis], dil[1 + axis]
        span = (k - 1) * d + 1
        if padding == "VALID":
            out[axis] = (size - span) // s + 1
        elif padding == "SAME":
            out[axis] = -(-size // s)
            total = max((out[axis] - 1) * s + span - size, 0)
            pads[axis], pads[axis + 2] = total // 2, total - total // 2
        else:
            raise ModelError(f"TF.js node {node['name']}: padding {padding} is not supported")
    return pads, (out[0], out[1])


def _nhwc(node: dict[str, Any]) -> None:
    if _attr(node, "data_format", "NHWC") != "NHWC":
        raise ModelError(f"TF.js node {node['name']}: only NHWC is supported")


def _conv(g: _Graph, node: dict[str, Any], ins: list[str], out: str) -> None:
    _nhwc(node)
    x, shape = g.name(ins[0]), g.shapes[g.name(ins[0])]
    w = g.consts.get(_ref(ins[1]))
    if w is None:
        raise ModelError(f"TF.js node {out}: a Conv2D filter must be a constant")
    kh, kw, cin, cout = w.shape
    strides = _attr(node, "strides")
    pads, (oh, ow) = _window(node, shape, (kh, kw), strides)
    dil = _attr(node, "dilations", [1, 1, 1, 1])
    t = g.transpose(x, TO_NCHW, f"{out}.nchw")
    weight = g.const(np.ascontiguousarray(w.transpose(3, 2, 0, 1)), f"{out}.w")
    y = g.emit(
        "Conv", [t, weight], f"{out}.conv", (shape[0], cout, oh, ow), kernel_shape=[kh, kw],
        strides=strides[1:3], dilations=dil[1:3], pads=pads, group=shape[3] // cin,
    )  # fmt: skip
    g.alias[out] = g.transpose(y, TO_NHWC, out)


def _maxpool(g: _Graph, node: dict[str, Any], ins: list[str], out: str) -> None:
    _nhwc(node)
    x, shape = g.name(ins[0]), g.shapes[g.name(ins[0])]
    ksize, strides = _attr(node, "ksize"), _attr(node, "strides")
    pads, (oh, ow) = _window(node, shape, (ksize[1], ksize[2]), strides)
    t = g.transpose(x, TO_NCHW, f"{out}.nchw")
    y = g.emit(
        "MaxPool", [t], f"{out}.pool", (shape[0], shape[3], oh, ow),
        kernel_shape=ksize[1:3], strides=strides[1:3], pads=pads,
    )  # fmt: skip
    g.alias[out] = g.transpose(y, TO_NHWC, out)


def _resize(g: _Graph, node: dict[str, Any], ins: list[str], out: str) -> None:
    x, shape = g.name(ins[0]), g.shapes[g.name(ins[0])]
    h, w = (int(v) for v in g.consts[_ref(ins[1])])
    if _attr(node, "align_corners", False):
        mode = "align_corners"
    elif _attr(node, "half_pixel_centers", False):
        mode = "half_pixel"
    else:
        mode = "asymmetric"
    t = g.transpose(x, TO_NCHW, f"{out}.nchw")
    sizes = g.const(np.array([shape[0], shape[3], h, w], dtype=np.int64), out)
    y = g.emit(
        "Resize", [t, "", "", sizes], f"{out}.resize", (shape[0], shape[3], h, w),
        mode="linear", coordinate_transformation_mode=mode,
    )  # fmt: skip
    g.alias[out] = g.transpose(y, TO_NHWC, out)


def _pad(g: _Graph, node: dict[str, Any], ins: list[str], out: str) -> None:
    x, shape = g.name(ins[0]), g.shapes[g.name(ins[0])]
    pairs = g.consts[_ref(ins[1])].astype(np.int64).reshape(-1, 2)
    value = g.consts[_ref(ins[2])] if len(ins) > 2 else np.zeros((), np.float32)
    pads = g.const(np.concatenate([pairs[:, 0], pairs[:, 1]]), out)
    fill = g.const(np.asarray(value, dtype=np.float32).reshape(()), out)
    new = tuple(int(s + a + b) for s, (a, b) in zip(shape, pairs, strict=True))
    g.emit("Pad", [x, pads, fill], out, new, mode="constant")


def _split(g: _Graph, node: dict[str, Any], ins: list[str], out: str) -> None:
    x, shape = g.name(ins[0]), g.shapes[g.name(ins[0])]
    axis = int(g.consts[_ref(ins[2])]) % len(shape)
    sizes = [int(v) for v in g.consts[_ref(ins[1])]]
    if -1 in sizes:
        sizes[sizes.index(-1)] = shape[axis] - sum(s for s in sizes if s != -1)
    names = [out] + [f"{out}:{i}" for i in range(1, len(sizes))]
    split = g.const(np.array(sizes, dtype=np.int64), out)
    g.nodes.append(helper.make_node("Split", [x, split], names, name=out, axis=axis))
    for name, size in zip(names, sizes, strict=True):
        g.shapes[name] = (*shape[:axis], size, *shape[axis + 1 :])


def _elementwise(g: _Graph, node: dict[str, Any], ins: list[str], out: str) -> None:
    op = node["op"]
    add = op in ("Add", "AddV2")
    names = [g.operand(i) if add else g.name(i) for i in ins]
    dynamic = [n for n, i in zip(names, ins, strict=True) if _ref(i) not in g.consts]
    if op in ("Add", "AddV2") and len(dynamic) == 1 and dynamic[0] in g.transposed:
        # A bias added after a Transpose is added before it instead, so that the Transpose
        # meets the next one that undoes it (Conv2D → BiasAdd → back to NCHW, as TF exports).
        source, perm = g.transposed[dynamic[0]]
        const = g.consts[_ref(ins[1 - names.index(dynamic[0])])]
        const = const.reshape((1,) * (len(perm) - const.ndim) + const.shape)
        moved = const.transpose(tuple(int(p) for p in np.argsort(perm)))
        shape = tuple(np.broadcast_shapes(g.shapes[source], moved.shape))
        y = g.emit("Add", [source, g.const(np.ascontiguousarray(moved), out)], f"{out}.pre", shape)
        g.alias[out] = g.transpose(y, perm, out)
    elif op in ("Add", "AddV2"):
        shapes = [
            g.shapes.get(n) or g.consts[_ref(i)].shape for n, i in zip(names, ins, strict=True)
        ]
        g.emit("Add", names, out, tuple(np.broadcast_shapes(*shapes)))
    elif op == "LeakyRelu":
        g.emit("LeakyRelu", names, out, g.shapes[names[0]], alpha=float(_attr(node, "alpha")))
    elif op == "Transpose":
        perm = tuple(int(p) for p in g.consts[_ref(ins[1])])
        g.alias[out] = g.transpose(names[0], perm, out)
    elif op == "ConcatV2":
        axis = int(g.consts[_ref(ins[-1])])
        parts = [g.shapes[n] for n in names[:-1]]
        axis %= len(parts[0])
        joined = (*parts[0][:axis], sum(p[axis] for p in parts), *parts[0][axis + 1 :])
        g.emit("Concat", names[:-1], out, joined, axis=axis)
    elif op == "Reshape":
        dims = [int(v) for v in g.consts[_ref(ins[1])]]
        if -1 in dims:
            known = int(np.prod([v for v in dims if v != -1]))
            dims[dims.index(-1)] = int(np.prod(g.shapes[names[0]])) // known
        target = g.const(np.array(dims, dtype=np.int64), out)
        g.emit("Reshape", [names[0], target], out, tuple(dims))
    else:  # Sigmoid, Identity
        g.emit(op, names[:1], out, g.shapes[names[0]])


OPS: dict[str, Callable[[_Graph, dict[str, Any], list[str], str], None]] = {
    "Conv2D": _conv,
    "MaxPool": _maxpool,
    "ResizeBilinear": _resize,
    "Pad": _pad,
    "PadV2": _pad,
    "SplitV": _split,
    **{op: _elementwise for op in ("Add", "AddV2", "LeakyRelu", "Transpose", "ConcatV2")},
    **{op: _elementwise for op in ("Reshape", "Sigmoid", "Identity")},
}


def _live(nodes: list[onnx.NodeProto], outputs: list[str]) -> list[onnx.NodeProto]:
    """The nodes the outputs depend on, in order (a Transpose that cancelled is left unused)."""
    needed, kept = set(outputs), []
    for node in reversed(nodes):
        if needed.intersection(node.output):
            needed.update(node.input)
            kept.append(node)
    return kept[::-1]


def convert(
    model_json: bytes | str,
    shards: dict[str, bytes],
    name: str = "tfjs",
    input_scale: list[float] | None = None,
) -> onnx.ModelProto:
    """The ONNX graph of a TF.js graph model. ``input_scale``: per-channel factors applied to the
    input first (NanoDet divides by a per-channel std that RVA's one-scale preprocessing lacks)."""
    model = json.loads(model_json)
    if model.get("format") != "graph-model":
        raise ModelError("not a TF.js graph model (format is not graph-model)")
    consts = read_weights(model, shards)
    g = _Graph(consts)
    placeholders: list[tuple[str, tuple[int, ...]]] = []
    for node in _ordered(model["modelTopology"]["node"]):
        op, out, ins = node["op"], node["name"], _inputs(node)
        if op == "Const":
            if out not in consts:
                raise ModelError(f"TF.js constant {out} is not in the weights manifest")
        elif op == "Placeholder":
            dims = node["attr"]["shape"]["shape"]["dim"]
            shape = tuple(int(d["size"]) for d in dims)
            if any(s <= 0 for s in shape):
                raise ModelError(f"TF.js input {out} has no fixed shape: {shape}")
            placeholders.append((out, shape))
            g.shapes[out] = shape
            if input_scale is not None:
                scale = np.array(input_scale, dtype=np.float32).reshape(1, -1, 1, 1)
                g.emit("Mul", [f"{out}.raw", g.const(scale, out)], out, shape)
        elif all(_ref(i) in consts for i in ins):
            consts[out] = _fold(node, [consts[_ref(i)] for i in ins])
        elif op in OPS:
            OPS[op](g, node, ins, out)
        else:
            raise ModelError(f"TF.js node {out}: op {op} is not supported by the converter")
    if len(placeholders) != 1:
        raise ModelError(f"TF.js graph has {len(placeholders)} inputs; one is supported")
    in_name, in_shape = placeholders[0]
    outputs = []
    for key in sorted(model["signature"]["outputs"]):
        source = g.name(key)
        out = _ref(key)
        if source != out:
            g.emit("Identity", [source], out, g.shapes[source])
        outputs.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, g.shapes[out]))
    graph_in = f"{in_name}.raw" if input_scale is not None else in_name
    nodes = _live(g.nodes, [o.name for o in outputs])
    used = {i for node in nodes for i in node.input}
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info(graph_in, TensorProto.FLOAT, in_shape)],
        outputs,
        [init for init in g.inits if init.name in used],
    )
    onnx_model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="rva.models.tfjs_onnx",
    )
    onnx.checker.check_model(onnx_model)
    return onnx_model


def derive(manifest: Manifest, folder: Path, out: Path) -> None:
    """`rva models fetch` entry point: the manifest's ``graph`` file and the shards it names
    (beside it in the cache) → the ONNX file; derive_params ``input_scale`` as in convert()."""
    text = (folder / manifest.files["graph"].name).read_bytes()
    paths = [p for group in json.loads(text).get("weightsManifest", []) for p in group["paths"]]
    shards = {p: (folder / Path(p).name).read_bytes() for p in paths}
    scale = manifest.derive_params.get("input_scale")
    model = convert(text, shards, manifest.name, scale)
    out.write_bytes(model.SerializeToString())
