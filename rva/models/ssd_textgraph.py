"""Build the OpenCV DNN text graph for a TF Object Detection API SSD model.

Why this file exists: OpenCV DNN cannot import a frozen TF-OD-API SSD graph
on its own. Resizing, anchor generation, box decoding and NMS are built from
``while`` loops, ``TensorArray`` ops and shape arithmetic that its TensorFlow
importer does not implement. ``readNetFromTensorflow(pb, pbtxt)`` accepts a
second, text-format graph describing the layer structure while the weights
still come from the binary graph by node name; this module writes that graph.

How it works:
1. ``cv2.dnn.writeTextGraph`` dumps the binary graph as text without weight
   payloads; we parse its node blocks.
2. Only the convolutional body is kept: everything reachable backwards from
   the twelve box-predictor heads (box encodings and class logits of each
   feature map). ``Const`` nodes are dropped because the importer resolves
   them from the binary graph, and ``Identity`` nodes are bypassed. The box
   convolutions are flagged so the importer reorders TF's (y, x, h, w)
   encodings to OpenCV's (x, y, w, h).
3. The TF preprocessing (resize loop, then ``x * 2/255 - 1``) is cut out and
   the feature extractor reads a float ``image_tensor`` placeholder. Callers
   resize and normalise in ``blobFromImage``: 300x300, ``swapRB=True``,
   ``scalefactor=1/127.5``, ``mean=127.5``. The graph's constants are
   checked so a model with different normalisation is rejected.
4. The TF post-processing is replaced by OpenCV layers that do the same job:
   ``Flatten`` + ``ConcatV2`` gather the head outputs, ``Sigmoid`` is the
   score converter, one ``PriorBox`` per feature map reproduces the TF grid
   anchors, and ``DetectionOutput`` decodes boxes and runs NMS.

The net's single output ``detection_out`` has shape ``[1, 1, N, 7]``; each
row is ``(batch, class_id, score, x_min, y_min, x_max, y_max)`` with
coordinates normalised to the network input. Unused rows are all zero, so
filter on class (0 is background) and score.

The anchor recipe is not stored in the frozen graph in usable form, so it
comes from the training pipeline config via ``SSDAnchorParams``; anchor and
class counts are checked against the predictor weight shapes so a wrong
recipe fails loudly instead of producing shifted boxes.
"""

from __future__ import annotations

import math
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2

from rva.models.manifest import Manifest

INPUT_NAME = "image_tensor"
OUTPUT_NAME = "detection_out"
INPUT_SCALE = 1 / 127.5  # blobFromImage scalefactor replacing the TF preprocessing
INPUT_MEAN = 127.5  # blobFromImage mean, per channel
_PREPROCESS_OUT = "Preprocessor/sub"


@dataclass(frozen=True)
class SSDAnchorParams:
    """Anchor and post-processing recipe of a TF-OD-API SSD pipeline config.

    ``num_classes`` counts foreground classes only, as in ``pipeline.config``;
    the background class is added by the generator. ``image_width`` and
    ``image_height`` must match the blob size fed to the net, because anchor
    sizes are computed relative to them. ``variance`` is the reciprocal of
    the box coder scales (y, x: 10; h, w: 5), in OpenCV's x-first order.
    """

    num_layers: int = 6
    min_scale: float = 0.2
    max_scale: float = 0.95
    aspect_ratios: tuple[float, ...] = (1.0, 2.0, 0.5, 3.0, 0.3333)
    interpolated_scale_aspect_ratio: float = 1.0
    reduce_boxes_in_lowest_layer: bool = True
    image_width: int = 300
    image_height: int = 300
    num_classes: int = 1  # foreground classes; this pedestrian model has one
    variance: tuple[float, float, float, float] = (0.1, 0.1, 0.2, 0.2)
    nms_threshold: float = 0.6
    # TF feeds every box scoring above 1e-8 to NMS and keeps 100; OpenCV caps
    # the NMS input, so the cap and the score floor are set generously.
    nms_top_k: int = 400
    keep_top_k: int = 100
    confidence_threshold: float = 0.01


@dataclass
class _Node:
    name: str
    op: str
    inputs: list[str] = field(default_factory=list)
    attrs: list[str] = field(default_factory=list)  # "attr {...}" text lines


def layer_box_specs(params: SSDAnchorParams) -> list[list[tuple[float, float]]]:
    """Return ``(scale, aspect_ratio)`` per anchor, per layer, in TF order."""
    n = params.num_layers
    step = (params.max_scale - params.min_scale) / max(n - 1, 1)
    scales = [params.min_scale + step * i for i in range(n)] + [1.0]
    specs: list[list[tuple[float, float]]] = []
    for i in range(n):
        if i == 0 and params.reduce_boxes_in_lowest_layer:
            # TF hard-codes 0.1 here rather than deriving it from min_scale.
            specs.append([(0.1, 1.0), (scales[0], 2.0), (scales[0], 0.5)])
            continue
        layer = [(scales[i], ar) for ar in params.aspect_ratios]
        if params.interpolated_scale_aspect_ratio > 0:
            interpolated = math.sqrt(scales[i] * scales[i + 1])
            layer.append((interpolated, params.interpolated_scale_aspect_ratio))
        specs.append(layer)
    return specs


def _parse_nodes(text: str) -> dict[str, _Node]:
    # writeTextGraph emits protobuf's canonical layout (two-space indent, one
    # field per line, TF names never contain quotes), so a line scanner is
    # enough and avoids depending on TensorFlow's protobuf classes.
    nodes: dict[str, _Node] = {}
    current: _Node | None = None
    in_attr = False
    for line in text.splitlines():
        if current is None:
            if line == "node {":
                current = _Node(name="", op="")
            continue
        if line == "}":
            nodes[current.name] = current
            current = None
        elif in_attr:
            current.attrs.append(line[2:])
            in_attr = line != "  }"
        elif line == "  attr {":
            current.attrs.append(line[2:])
            in_attr = True
        elif line.startswith("  name:"):
            current.name = line.split('"')[1]
        elif line.startswith("  op:"):
            current.op = line.split('"')[1]
        elif line.startswith("  input:"):
            current.inputs.append(line.split('"')[1])
    return nodes


def _const_text(nodes: dict[str, _Node], ref: str) -> str:
    """Attribute text of a constant: writeTextGraph keeps shapes and scalars."""
    node = nodes.get(ref.split(":")[0])
    if node is None or node.op != "Const":
        raise ValueError(f"graph has no constant {ref!r}")
    return "\n".join(node.attrs)


def _weight_channels(nodes: dict[str, _Node], const_name: str) -> int:
    return int(re.findall(r"size: (\d+)", _const_text(nodes, const_name))[-1])


def _check_preprocessing(nodes: dict[str, _Node]) -> None:
    """Insist on TF's ``x * 2/255 - 1`` so INPUT_SCALE/INPUT_MEAN reproduce it."""
    mul, sub = nodes.get("Preprocessor/mul"), nodes.get(_PREPROCESS_OUT)
    if mul is None or sub is None or (mul.op, sub.op) != ("Mul", "Sub"):
        raise ValueError("graph lacks TF-OD-API Preprocessor/mul -> Preprocessor/sub")
    factor, offset = (
        float(re.findall(r"float_val: (\S+)", _const_text(nodes, ref))[0])
        for ref in (mul.inputs[0], sub.inputs[1])
    )
    scale_ok = math.isclose(factor, INPUT_SCALE, rel_tol=1e-5)
    if not (scale_ok and math.isclose(offset, INPUT_MEAN * INPUT_SCALE)):
        raise ValueError(f"graph preprocessing is x * {factor} - {offset}, not x / 127.5 - 1")


def _check_heads(nodes: dict[str, _Node], params: SSDAnchorParams) -> None:
    classes = params.num_classes + 1
    for i, layer in enumerate(layer_box_specs(params)):
        scope = f"BoxPredictor_{i}"
        box = _weight_channels(nodes, f"{scope}/BoxEncodingPredictor/weights")
        cls = _weight_channels(nodes, f"{scope}/ClassPredictor/weights")
        want_box, want_cls = 4 * len(layer), classes * len(layer)
        if (box, cls) != (want_box, want_cls):
            raise ValueError(
                f"{scope}: graph has {box} box / {cls} class channels, "
                f"params imply {want_box} / {want_cls}"
            )
    if f"BoxPredictor_{params.num_layers}/ClassPredictor/weights" in nodes:
        raise ValueError(f"graph has more than {params.num_layers} box predictors")


def _collect_body(nodes: dict[str, _Node], heads: list[str]) -> list[_Node]:
    """Non-const nodes feeding ``heads``, inputs before consumers."""

    def resolve(ref: str) -> str:
        while ref in nodes and nodes[ref].op == "Identity":
            ref = nodes[ref].inputs[0]
        # The normalised image now comes straight from the placeholder.
        return INPUT_NAME if ref == _PREPROCESS_OUT else ref

    ordered: list[_Node] = []
    done: set[str] = {INPUT_NAME}
    # Iterative post-order DFS keeps the emitted order fixed by the head
    # order and input order, which is what makes the output reproducible.
    stack: list[tuple[str, bool]] = [(h, False) for h in reversed(heads)]
    while stack:
        name, expanded = stack.pop()
        if name in done:
            continue
        node = nodes[name]
        inputs = [resolve(i) for i in node.inputs if not i.startswith("^")]
        if expanded:
            done.add(name)
            ordered.append(_Node(name, node.op, inputs, node.attrs))
            continue
        stack.append((name, True))
        for ref in reversed(inputs):
            base = ref.split(":")[0]
            if base not in done and nodes[base].op != "Const":
                stack.append((base, False))
    return ordered


def _attr(key: str, value: list[str]) -> list[str]:
    return ["attr {", f'  key: "{key}"', "  value {", *(f"    {x}" for x in value), "  }", "}"]


def _scalar(key: str, text: str) -> list[str]:
    return _attr(key, [text])


def _float_tensor(key: str, values: list[float]) -> list[str]:
    # PriorBox reads its list parameters as tensors, not as attr lists.
    shape = ["  tensor_shape {", "    dim {", f"      size: {len(values)}", "    }", "  }"]
    floats = [f"  float_val: {v:.9g}" for v in values]
    return _attr(key, ["tensor {", "  dtype: DT_FLOAT", *shape, *floats, "}"])


def _emit(name: str, op: str, inputs: Iterable[str], attrs: Iterable[str]) -> list[str]:
    lines = ["node {", f'  name: "{name}"', f'  op: "{op}"']
    lines += [f'  input: "{i}"' for i in inputs]
    lines += [f"  {a}" for a in attrs]
    return [*lines, "}"]


def _int_const(name: str, value: int) -> list[str]:
    tensor = ["tensor {", "  dtype: DT_INT32", "  tensor_shape {}", f"  int_val: {value}", "}"]
    attrs = _scalar("dtype", "type: DT_INT32") + _attr("value", tensor)
    return _emit(name, "Const", [], attrs)


def _concat(name: str, inputs: list[str], axis_node: str) -> list[str]:
    attrs = _scalar("N", f"i: {len(inputs)}") + _scalar("T", "type: DT_FLOAT")
    attrs += _scalar("Tidx", "type: DT_INT32")
    return _emit(name, "ConcatV2", [*inputs, axis_node], attrs)


def _head_layers(params: SSDAnchorParams) -> list[str]:
    lines: list[str] = []
    lines += _int_const("ssd/axis_1", 1) + _int_const("ssd/axis_2", 2)
    boxes: list[str] = []
    logits: list[str] = []
    anchors: list[str] = []
    side = min(params.image_width, params.image_height)
    for i, layer in enumerate(layer_box_specs(params)):
        scope = f"BoxPredictor_{i}"
        for kind, bucket in (("BoxEncodingPredictor", boxes), ("ClassPredictor", logits)):
            # Flatten in OpenCV honours the NHWC origin of the conv output, so
            # the flattened order is (y, x, anchor, value) exactly as in TF.
            flat = f"{scope}/{kind}/Flatten"
            lines += _emit(flat, "Flatten", [f"{scope}/{kind}/BiasAdd"], [])
            bucket.append(flat)
        # TF anchors are in units of the shorter image side; PriorBox wants
        # pixels of the network input and divides by its width/height itself.
        prior = f"{scope}/PriorBox"
        attrs = _float_tensor("width", [s * math.sqrt(ar) * side for s, ar in layer])
        attrs += _float_tensor("height", [s / math.sqrt(ar) * side for s, ar in layer])
        attrs += _float_tensor("variance", list(params.variance))
        attrs += _scalar("offset", "f: 0.5") + _scalar("flip", "b: false")
        attrs += _scalar("clip", "b: false")
        lines += _emit(
            prior, "PriorBox", [f"{scope}/BoxEncodingPredictor/BiasAdd", INPUT_NAME], attrs
        )
        anchors.append(prior)
    lines += _concat("ssd/box_encodings", boxes, "ssd/axis_1")
    lines += _concat("ssd/class_logits", logits, "ssd/axis_1")
    lines += _emit("ssd/class_scores", "Sigmoid", ["ssd/class_logits"], [])
    lines += _concat("ssd/anchors", anchors, "ssd/axis_2")
    attrs = _scalar("num_classes", f"i: {params.num_classes + 1}")
    attrs += _scalar("share_location", "b: true") + _scalar("background_label_id", "i: 0")
    attrs += _scalar("nms_threshold", f"f: {params.nms_threshold:.9g}")
    attrs += _scalar("top_k", f"i: {params.nms_top_k}")
    attrs += _scalar("keep_top_k", f"i: {params.keep_top_k}")
    attrs += _scalar("confidence_threshold", f"f: {params.confidence_threshold:.9g}")
    attrs += _scalar("code_type", 's: "CENTER_SIZE"')
    attrs += _scalar("variance_encoded_in_target", "b: false")
    # TF leaves decoded boxes unclipped; clipping keeps every box in [0, 1].
    attrs += _scalar("clip", "b: true")
    inputs = ["ssd/box_encodings", "ssd/class_scores", "ssd/anchors"]
    return lines + _emit(OUTPUT_NAME, "DetectionOutput", inputs, attrs)


def write_ssd_text_graph(pb_path: Path, out_path: Path, params: SSDAnchorParams) -> None:
    """Write the OpenCV text graph for the frozen SSD graph at ``pb_path``."""
    if not Path(pb_path).is_file():
        raise FileNotFoundError(pb_path)
    with tempfile.TemporaryDirectory() as tmp:
        dump = Path(tmp) / "full.pbtxt"
        cv2.dnn.writeTextGraph(str(pb_path), str(dump))
        nodes = _parse_nodes(dump.read_text(encoding="utf-8"))
    _check_preprocessing(nodes)
    _check_heads(nodes, params)
    heads = [
        f"BoxPredictor_{i}/{kind}/BiasAdd"
        for i in range(params.num_layers)
        for kind in ("BoxEncodingPredictor", "ClassPredictor")
    ]
    # The TF placeholder is uint8 with a dynamic shape; OpenCV only needs a
    # float input to bind the blob to.
    lines = _emit(INPUT_NAME, "Placeholder", [], _scalar("dtype", "type: DT_FLOAT"))
    for node in _collect_body(nodes, heads):
        attrs = node.attrs
        if node.name.endswith("/BoxEncodingPredictor/Conv2D"):
            # TF encodes boxes as (ty, tx, th, tw); this flag makes the
            # importer permute the conv's output channels to OpenCV's
            # (tx, ty, tw, th) so DetectionOutput stays standard.
            attrs = attrs + _scalar("loc_pred_transposed", "b: true")
        lines += _emit(node.name, node.op, node.inputs, attrs)
    lines += _head_layers(params)
    Path(out_path).write_text("\n".join(lines) + "\n", encoding="utf-8", newline="\n")


def derive(manifest: Manifest, folder: Path, out: Path) -> None:
    """`rva models fetch` entry point: the manifest's derive_params are SSDAnchorParams fields."""
    fields: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in manifest.derive_params.items()
    }
    write_ssd_text_graph(folder / manifest.files["graph"].name, out, SSDAnchorParams(**fields))
