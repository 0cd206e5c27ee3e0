"""Convert a Darknet cfg + weights to an ONNX graph, for backends that cannot read Darknet.

The graph ends in the same rows OpenCV's Darknet importer produces for every [yolo] layer —
cx, cy, w, h (0..1 of the input), objectness, then the 80 class scores multiplied by
objectness with those at or below 0.2 set to 0 — so one decoder (``Detector.decode``, "yolo")
serves both backends. Covers what YOLOv3-tiny uses: convolutional (batch norm folded into
the weights), maxpool, route, upsample and yolo.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from rva.models.manifest import ModelError

# Opset 13 has every op used here and is old enough for any runtime RVA meets (checked with
# ONNX Runtime 1.23 and OpenCV 4.14's ONNX importer); IR 7 is its file version. Both fixed so
# a newer onnx package does not change the graph the backend runs.
OPSET, IR_VERSION = 13, 7
# OpenCV's Darknet importer gives every [yolo] layer thresh = 0.2 and its region layer zeroes
# class scores at or below it; matched so both backends hand the decoder the same rows.
CLASS_SCORE_CUT = 0.2
# Darknet normalises with (x - mean) / (sqrt(var) + 1e-6), not sqrt(var + eps).
BN_EPS = 1e-6


@dataclass
class Tensor:
    """One layer's output as the converter tracks it: graph name, channels, height, width."""

    name: str
    c: int
    h: int
    w: int


def parse_cfg(text: str) -> list[tuple[str, dict[str, str]]]:
    sections: list[tuple[str, dict[str, str]]] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            sections.append((line.strip("[]").strip(), {}))
        elif "=" in line and sections:
            key, value = line.split("=", 1)
            sections[-1][1][key.strip()] = value.strip()
    return sections


def _ints(value: str) -> list[int]:
    return [int(v) for v in value.split(",") if v.strip()]


class _Builder:
    def __init__(self, weights: np.ndarray) -> None:
        self.weights, self.offset = weights, 0
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []

    def take(self, count: int) -> np.ndarray:
        if self.offset + count > self.weights.size:
            raise ModelError("Darknet weights are shorter than the cfg needs")
        chunk = self.weights[self.offset : self.offset + count]
        self.offset += count
        return chunk

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def node(self, op: str, inputs: list[str], name: str, **attrs: Any) -> str:
        self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def conv(self, i: int, opts: dict[str, str], x: Tensor) -> Tensor:
        n, k = int(opts["filters"]), int(opts.get("size", 1))
        stride = int(opts.get("stride", 1))
        pad = k // 2 if int(opts.get("pad", 0)) else int(opts.get("padding", 0))
        if int(opts.get("groups", 1)) != 1:
            raise ModelError(f"Darknet layer {i}: grouped convolutions are not supported")
        # File order per layer: biases, then (with batch norm) scales, means, variances, weights.
        bias = self.take(n)
        if int(opts.get("batch_normalize", 0)):
            scale, mean, var = self.take(n), self.take(n), self.take(n)
            factor = scale / (np.sqrt(var) + np.float32(BN_EPS))
            bias = bias - mean * factor
        else:
            factor = np.ones(n, dtype=np.float32)
        kernel = self.take(n * x.c * k * k).reshape(n, x.c, k, k) * factor[:, None, None, None]
        name = f"conv_{i}"
        y = self.node(
            "Conv",
            [x.name, self.const(f"{name}.w", kernel), self.const(f"{name}.b", bias)],
            name,
            kernel_shape=[k, k],
            strides=[stride, stride],
            pads=[pad] * 4,
        )
        activation = opts.get("activation", "linear")
        if activation == "leaky":
            y = self.node("LeakyRelu", [y], f"leaky_{i}", alpha=0.1)
        elif activation != "linear":
            raise ModelError(f"Darknet layer {i}: activation {activation!r} is not supported")
        size = (x.h + 2 * pad - k) // stride + 1, (x.w + 2 * pad - k) // stride + 1
        return Tensor(y, n, *size)

    def maxpool(self, i: int, opts: dict[str, str], x: Tensor) -> Tensor:
        k = int(opts.get("size", 1))
        stride = int(opts.get("stride", k))
        # Darknet pads size-1 in total and puts the odd pixel at the end, so the size=2,
        # stride=1 pool of YOLOv3-tiny keeps 13×13 with one extra row and column at the bottom
        # and right: ONNX needs these asymmetric pads spelled out.
        total = int(opts.get("padding", k - 1))
        begin, end = total // 2, total - total // 2
        y = self.node(
            "MaxPool",
            [x.name],
            f"maxpool_{i}",
            kernel_shape=[k, k],
            strides=[stride, stride],
            pads=[begin, begin, end, end],
        )
        return Tensor(y, x.c, (x.h + total - k) // stride + 1, (x.w + total - k) // stride + 1)

    def upsample(self, i: int, opts: dict[str, str], x: Tensor) -> Tensor:
        s = int(opts.get("stride", 2))
        scales = self.const(f"upsample_{i}.scales", np.array([1, 1, s, s], dtype=np.float32))
        # asymmetric + floor: output pixel (y, x) copies input (y // s, x // s), as Darknet does.
        y = self.node(
            "Resize",
            [x.name, "", scales],
            f"upsample_{i}",
            mode="nearest",
            coordinate_transformation_mode="asymmetric",
            nearest_mode="floor",
        )
        return Tensor(y, x.c, x.h * s, x.w * s)

    def route(self, i: int, opts: dict[str, str], done: list[Tensor]) -> Tensor:
        picked = [done[j if j >= 0 else i + j] for j in _ints(opts["layers"])]
        if len(picked) == 1:
            return picked[0]
        y = self.node("Concat", [t.name for t in picked], f"route_{i}", axis=1)
        return Tensor(y, sum(t.c for t in picked), picked[0].h, picked[0].w)

    def yolo(self, i: int, opts: dict[str, str], x: Tensor, net_w: int, net_h: int) -> Tensor:
        """The region math OpenCV's importer runs after a [yolo] layer, as graph ops."""
        mask, classes = _ints(opts["mask"]), int(opts["classes"])
        anchors = np.array(_ints(opts["anchors"]), dtype=np.float32).reshape(-1, 2)[mask]
        a, cells, per_box = len(mask), x.h * x.w, 5 + classes
        if x.c != a * per_box:
            raise ModelError(f"Darknet layer {i}: {x.c} channels, [yolo] needs {a * per_box}")
        p = f"yolo_{i}"
        # NCHW → one row per (cell y, cell x, anchor), the order OpenCV emits them in.
        t = self.node("Transpose", [x.name], f"{p}.nhwc", perm=[0, 2, 3, 1])
        shape = self.const(f"{p}.shape3", np.array([cells, a, per_box], dtype=np.int64))
        t = self.node("Reshape", [t, shape], f"{p}.rows")

        def part(start: int, stop: int) -> str:
            """Channels start..stop-1 of every row."""
            s = f"{p}.{start}_{stop}"
            bounds = [
                self.const(f"{s}.{key}", np.array([v], dtype=np.int64))
                for key, v in (("starts", start), ("ends", stop), ("axes", 2))
            ]
            return self.node("Slice", [t, *bounds], s)

        gy, gx = np.mgrid[0 : x.h, 0 : x.w].astype(np.float32)
        grid = np.stack([gx, gy], axis=-1).reshape(cells, 1, 2)
        xy = self.node("Sigmoid", [part(0, 2)], f"{p}.xy_sig")
        xy = self.node("Add", [xy, self.const(f"{p}.grid", grid)], f"{p}.xy_cell")
        cells_wh = np.array([x.w, x.h], dtype=np.float32)
        xy = self.node("Div", [xy, self.const(f"{p}.cells", cells_wh)], f"{p}.xy")
        wh = self.node("Exp", [part(2, 4)], f"{p}.wh_exp")
        wh = self.node("Mul", [wh, self.const(f"{p}.anchors", anchors[None])], f"{p}.wh_px")
        net = np.array([net_w, net_h], dtype=np.float32)
        wh = self.node("Div", [wh, self.const(f"{p}.net", net)], f"{p}.wh")
        obj = self.node("Sigmoid", [part(4, 5)], f"{p}.obj")
        cls = self.node("Sigmoid", [part(5, per_box)], f"{p}.cls_sig")
        cls = self.node("Mul", [cls, obj], f"{p}.cls_obj")
        cut = self.const(f"{p}.cut", np.array(CLASS_SCORE_CUT, dtype=np.float32))
        zero = self.const(f"{p}.zero", np.array(0, dtype=np.float32))
        keep = self.node("Greater", [cls, cut], f"{p}.keep")
        cls = self.node("Where", [keep, cls, zero], f"{p}.cls")
        rows = self.node("Concat", [xy, wh, obj, cls], f"{p}.concat", axis=2)
        flat = self.const(f"{p}.shape2", np.array([cells * a, per_box], dtype=np.int64))
        # Named like OpenCV's output layers (yolo_16, yolo_23) so logs read the same.
        out = self.node("Reshape", [rows, flat], p)
        self.outputs.append(
            helper.make_tensor_value_info(out, TensorProto.FLOAT, [cells * a, per_box])
        )
        # Rows, not a feature map: in YOLO cfgs only a [route] reads past a [yolo] layer.
        return Tensor(out, per_box, cells * a, 1)


def read_weights(data: bytes) -> np.ndarray:
    """The float32 payload after Darknet's header (version, then images seen)."""
    major, minor, _revision = np.frombuffer(data, dtype=np.int32, count=3)
    seen_bytes = 8 if major * 10 + minor >= 2 and major < 1000 and minor < 1000 else 4
    return np.frombuffer(data, dtype=np.float32, offset=12 + seen_bytes)


def convert(
    cfg: str, weights: bytes, name: str = "darknet", size: tuple[int, int] | None = None
) -> onnx.ModelProto:
    """The graph for a ``size`` = (width, height) input, the cfg's own when None (a YOLO cfg
    is fully convolutional: any multiple of 32 works with the same weights, as in OpenCV)."""
    sections = parse_cfg(cfg)
    if not sections or sections[0][0] not in ("net", "network"):
        raise ModelError("Darknet cfg does not start with [net]")
    net = sections[0][1]
    net_w, net_h, channels = (int(net[k]) for k in ("width", "height", "channels"))
    if size is not None:
        net_w, net_h = size
        if net_w % 32 or net_h % 32:
            raise ModelError(f"Darknet input {net_w}x{net_h}: both sides must be multiples of 32")
    b = _Builder(read_weights(weights))
    x = Tensor("data", channels, net_h, net_w)
    done: list[Tensor] = []
    for i, (kind, opts) in enumerate(sections[1:]):
        if kind == "convolutional":
            x = b.conv(i, opts, x)
        elif kind == "maxpool":
            x = b.maxpool(i, opts, x)
        elif kind == "upsample":
            x = b.upsample(i, opts, x)
        elif kind == "route":
            x = b.route(i, opts, done)
        elif kind == "yolo":
            x = b.yolo(i, opts, x, net_w, net_h)
        else:
            raise ModelError(f"Darknet layer {i}: [{kind}] is not supported by the converter")
        done.append(x)
    if b.offset != b.weights.size:
        unused = b.weights.size - b.offset
        raise ModelError(f"Darknet weights have {unused} floats the cfg never uses")
    graph = helper.make_graph(
        b.nodes,
        name,
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, channels, net_h, net_w])],
        b.outputs,
        b.inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="rva.models.darknet_onnx",
    )
    onnx.checker.check_model(model)
    return model
