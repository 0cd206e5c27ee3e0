"""The TF.js → ONNX converter, against a reference written here from TensorFlow's documented op
semantics in plain numpy (NHWC convolutions as sums of shifted slices, TF's half-pixel bilinear
resize, its own reading of the weight shards): the converted NanoDet graph run by ONNX Runtime
must give every LeakyReLU activation and every output the reference gives, on a real frame."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from rva.models import manifest, store, tfjs_onnx
from rva.models.detector import Detector
from rva.models.manifest import ModelError


def reference_weights(model: dict[str, Any], folder: Path) -> dict[str, np.ndarray]:
    group = model["weightsManifest"][0]
    data = b"".join((folder / p).read_bytes() for p in group["paths"])
    out, offset = {}, 0
    for w in group["weights"]:
        n = int(np.prod(w["shape"]))
        if w.get("quantization", {}).get("dtype") == "float16":
            v = np.frombuffer(data, np.float16, n, offset).astype(np.float32)
            offset += 2 * n
        else:
            v = np.frombuffer(data, np.dtype(w["dtype"]), n, offset)
            offset += 4 * n
        out[w["name"]] = v.reshape(w["shape"])
    assert offset == len(data)
    return out


def conv_nhwc(x: np.ndarray, w: np.ndarray, stride: int) -> np.ndarray:
    kh, kw = w.shape[:2]
    oh, ow = (x.shape[1] - kh) // stride + 1, (x.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], oh, ow, w.shape[3]), np.float64)
    for a in range(kh):
        for b in range(kw):
            patch = x[:, a : a + stride * oh : stride, b : b + stride * ow : stride, :]
            out += patch.astype(np.float64) @ w[a, b].astype(np.float64)
    return out.astype(np.float32)


def maxpool_nhwc(x: np.ndarray, k: int, stride: int) -> np.ndarray:
    oh, ow = (x.shape[1] - k) // stride + 1, (x.shape[2] - k) // stride + 1
    views = [
        x[:, a : a + stride * oh : stride, b : b + stride * ow : stride, :]
        for a in range(k)
        for b in range(k)
    ]
    return np.max(views, axis=0)


def resize_half_pixel(x: np.ndarray, h: int, w: int) -> np.ndarray:
    """TF ResizeBilinear, half_pixel_centers: in = (out + 0.5)·scale − 0.5, edges clamped."""

    def weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        lo = np.floor(pos)
        return (
            np.maximum(lo, 0).astype(int),
            np.minimum(np.ceil(pos), n_in - 1).astype(int),
            (pos - lo).astype(np.float32),
        )

    y0, y1, fy = weights(x.shape[1], h)
    x0, x1, fx = weights(x.shape[2], w)
    rows = x[:, y0] * (1 - fy)[None, :, None, None] + x[:, y1] * fy[None, :, None, None]
    return rows[:, :, x0] * (1 - fx)[None, None, :, None] + rows[:, :, x1] * fx[None, None, :, None]


def run_reference(model: dict[str, Any], consts: dict[str, np.ndarray], x: np.ndarray) -> dict:
    nodes = {n["name"]: n for n in model["modelTopology"]["node"]}
    values: dict[str, Any] = {}

    def get(ref: str) -> Any:
        name, _, index = ref.partition(":")
        value = evaluate(name)
        return value[int(index)] if index else (value[0] if isinstance(value, list) else value)

    def attr(node: dict[str, Any], key: str) -> Any:
        return node["attr"][key]

    def evaluate(name: str) -> Any:
        if name in values:
            return values[name]
        node = nodes[name]
        op, ins = node["op"], [get(i) for i in node.get("input", [])]
        if op == "Const":
            v: Any = consts[name]
        elif op == "Placeholder":
            v = x
        elif op in ("Add", "AddV2"):
            v = ins[0] + ins[1]
        elif op == "SparseToDense":
            v = np.full(ins[1], ins[3])
        elif op == "Transpose":
            v = ins[0].transpose(ins[1])
        elif op in ("Pad", "PadV2"):
            fill = float(ins[2]) if op == "PadV2" else 0.0
            v = np.pad(ins[0], ins[1], constant_values=fill)
        elif op == "Conv2D":
            assert base64.b64decode(attr(node, "padding")["s"]) == b"VALID"
            v = conv_nhwc(ins[0], ins[1], int(attr(node, "strides")["list"]["i"][1]))
        elif op == "MaxPool":
            k = int(attr(node, "ksize")["list"]["i"][1])
            v = maxpool_nhwc(ins[0], k, int(attr(node, "strides")["list"]["i"][1]))
        elif op == "LeakyRelu":
            v = np.where(ins[0] >= 0, ins[0], ins[0] * attr(node, "alpha")["f"])
        elif op == "ConcatV2":
            v = np.concatenate(ins[:-1], axis=int(ins[-1]))
        elif op == "ResizeBilinear":
            assert attr(node, "half_pixel_centers")["b"]
            v = resize_half_pixel(ins[0], int(ins[1][0]), int(ins[1][1]))
        elif op == "SplitV":
            v = np.split(ins[0], np.cumsum(ins[1])[:-1], axis=int(ins[2]))
        elif op == "Sigmoid":
            v = 1 / (1 + np.exp(-ins[0]))
        elif op == "Reshape":
            v = ins[0].reshape(ins[1])
        elif op == "Identity":
            v = ins[0]
        else:
            raise AssertionError(f"reference has no {op}")
        values[name] = v
        return v

    for key in model["signature"]["outputs"]:
        get(key)
    return values


@pytest.fixture(scope="module")
def nanodet_bundle(model_cache: Path) -> store.ModelBundle:
    return store.from_cache(manifest.load("nanodet"), model_cache)


def test_converted_nanodet_matches_a_numpy_reference_layer_by_layer(
    nanodet_bundle: store.ModelBundle, model_cache: Path, sample_frames: dict[int, np.ndarray]
) -> None:
    folder = model_cache / "nanodet"
    model = json.loads(nanodet_bundle.files["graph"])
    blob, _ = Detector(nanodet_bundle).preprocess(sample_frames[200])
    scale = np.array(nanodet_bundle.manifest.derive_params["input_scale"], np.float32)
    ref = run_reference(model, reference_weights(model, folder), blob * scale.reshape(1, 3, 1, 1))
    converted = onnx.load_from_string(nanodet_bundle.files["onnx"])
    activations = [n["name"] for n in model["modelTopology"]["node"] if n["op"] == "LeakyRelu"]
    assert len(activations) == 28
    known = {v for node in converted.graph.node for v in node.output}
    assert set(activations) <= known  # each activation is a tensor of the converted graph
    converted.graph.output.extend(onnx.ValueInfoProto(name=a) for a in activations)
    session = ort.InferenceSession(
        converted.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(None, {session.get_inputs()[0].name: blob}), strict=True))
    for name in activations + [f"Identity{s}" for s in ("", "_1", "_2", "_3", "_4", "_5")]:
        want = ref[name]
        assert got[name].shape == want.shape, name
        tol = 1e-4 * max(1.0, float(np.abs(want).max()))
        assert np.abs(got[name] - want).max() <= tol, f"{name}: {np.abs(got[name] - want).max()}"
    # The frame has people: the reference's own person scores say so, and the graph agrees.
    assert ref["Identity"][0, :, 0].max() > 0.5


def test_conversion_is_deterministic_and_pinned(nanodet_bundle: store.ModelBundle) -> None:
    again = tfjs_onnx.convert(
        nanodet_bundle.files["graph"],
        {"nanodet.bin": nanodet_bundle.files["weights"]},
        "nanodet",
        nanodet_bundle.manifest.derive_params["input_scale"],
    )
    assert (
        manifest.sha256(again.SerializeToString()) == nanodet_bundle.manifest.files["onnx"].sha256
    )
    ops = {n.op_type for n in again.graph.node}
    assert sum(n.op_type == "Transpose" for n in again.graph.node) <= 6  # NHWC round trips gone
    assert ops <= {"Mul", "Pad", "Conv", "Add", "LeakyRelu", "MaxPool", "Concat", "Resize"} | {
        "Split", "Sigmoid", "Reshape", "Transpose", "Identity"
    }  # fmt: skip


def tiny_model(op: str, extra: dict[str, Any] | None = None) -> bytes:
    """A one-op TF.js graph model: input 1×2×2×1, a float16-quantized 1×1 filter."""
    nodes = [
        {"name": "x", "op": "Placeholder", "attr": {"shape": {"shape": {"dim": [
            {"size": "1"}, {"size": "2"}, {"size": "2"}, {"size": "1"}]}}}},
        {"name": "w", "op": "Const"},
        {"name": "y", "op": op, "input": ["x", "w"], "attr": {
            "padding": {"s": base64.b64encode(b"VALID").decode()},
            "strides": {"list": {"i": ["1", "1", "1", "1"]}}, **(extra or {})}},
    ]  # fmt: skip
    return json.dumps({
        "format": "graph-model",
        "modelTopology": {"node": nodes},
        "signature": {"outputs": {"y:0": {}}},
        "weightsManifest": [{"paths": ["w.bin"], "weights": [{
            "name": "w", "shape": [1, 1, 1, 1], "dtype": "float32",
            "quantization": {"dtype": "float16", "original_dtype": "float32"}}]}],
    }).encode()  # fmt: skip


def test_tiny_graph_converts_with_float16_weights() -> None:
    model = tfjs_onnx.convert(tiny_model("Conv2D"), {"w.bin": np.float16(3).tobytes()})
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.arange(4, dtype=np.float32).reshape(1, 2, 2, 1)
    assert np.array_equal(session.run(None, {"x": x})[0], x * 3)


def test_unsupported_op_and_bad_weights_are_clear_errors() -> None:
    w = np.float16(1).tobytes()
    with pytest.raises(ModelError, match=r"op Conv3D is not supported by the converter"):
        tfjs_onnx.convert(tiny_model("Conv3D"), {"w.bin": w})
    with pytest.raises(ModelError, match=r"padding EXPLICIT is not supported"):
        extra = {"padding": {"s": base64.b64encode(b"EXPLICIT").decode()}}
        tfjs_onnx.convert(tiny_model("Conv2D", extra), {"w.bin": w})
    with pytest.raises(ModelError, match=r"shard w\.bin is missing"):
        tfjs_onnx.convert(tiny_model("Conv2D"), {})
    with pytest.raises(ModelError, match=r"shorter than the manifest"):
        tfjs_onnx.convert(tiny_model("Conv2D"), {"w.bin": b"\0"})
    with pytest.raises(ModelError, match=r"2 bytes the manifest never uses"):
        tfjs_onnx.convert(tiny_model("Conv2D"), {"w.bin": w * 2})
    with pytest.raises(ModelError, match=r"not a TF\.js graph model"):
        tfjs_onnx.convert(b'{"format": "layers-model"}', {})
