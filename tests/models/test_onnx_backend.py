"""The onnxruntime backend on the real YOLOv3-tiny (converted from the real Darknet weights)
and real footage, checked against the OpenCV backend running the Darknet files directly."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rva import keys
from rva.models import backends, manifest, store
from rva.models.detector import Detector
from rva.models.manifest import ModelError
from tests.conftest import RedisServer, Services, iou, rva, wait_for, write_config

# The only reason to skip: the onnx extra is not installed (CI installs it: `make venv`).
ort = pytest.importorskip("onnxruntime")

from rva.models import darknet_onnx  # noqa: E402 - needs onnx, which comes with the same extra


@pytest.fixture(scope="module")
def frames(sample_frames: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    return sample_frames


@pytest.fixture(scope="module")
def bundle(model_cache: Path) -> store.ModelBundle:
    return store.from_cache(manifest.load("yolov3-tiny"), model_cache)


@pytest.fixture(scope="module")
def detectors(bundle: store.ModelBundle) -> dict[str, Detector]:
    return {name: Detector(bundle, backend=name) for name in ("opencv", "onnxruntime")}


def test_onnxruntime_is_a_registered_backend_for_darknet_models() -> None:
    cls = backends.get("onnxruntime")
    assert {"darknet", "onnx"} <= cls.formats


def test_converter_is_deterministic_and_names_heads_like_opencv(bundle: store.ModelBundle) -> None:
    cfg, weights = bundle.files["cfg"].decode(), bundle.files["weights"]
    model = darknet_onnx.convert(cfg, weights, bundle.manifest.name)
    again = darknet_onnx.convert(cfg, weights, bundle.manifest.name)
    assert model.SerializeToString() == again.SerializeToString()
    # Two heads as OpenCV names them: 13×13 and 26×26 cells × 3 anchors, 5 + 80 values each.
    shapes = {
        o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in model.graph.output
    }
    assert shapes == {"yolo_16": [507, 85], "yolo_23": [2028, 85]}


def test_converter_refuses_weights_that_do_not_fit_the_cfg(bundle: store.ModelBundle) -> None:
    cfg, weights = bundle.files["cfg"].decode(), bundle.files["weights"]
    with pytest.raises(ModelError, match="shorter than the cfg needs"):
        darknet_onnx.convert(cfg, weights[:-4])
    with pytest.raises(ModelError, match="4 floats the cfg never uses"):
        darknet_onnx.convert(cfg, weights + bytes(16))


def test_raw_outputs_match_opencv(
    detectors: dict[str, Detector], frames: dict[int, np.ndarray]
) -> None:
    """Same rows, same order. Measured max abs diff: 1.4e-5 (frames 0–700)."""
    blob, _ = detectors["opencv"].preprocess(frames[200])
    ocv = detectors["opencv"].backend.forward(blob)
    onx = detectors["onnxruntime"].backend.forward(blob)
    # 512×512 (the manifest's run size): 16×16 and 32×32 cells × 3 anchors.
    assert [o.shape for o in onx] == [o.shape for o in ocv] == [(768, 85), (3072, 85)]
    for a, b in zip(ocv, onx, strict=True):
        diff = np.abs(a - b)
        # A class score a hair from the 0.2 cut may be zeroed on one side only.
        on_the_cut = (np.minimum(a, b) == 0) & (np.abs(np.maximum(a, b) - 0.2) < 1e-3)
        assert float(diff[~on_the_cut].max()) < 1e-3
    # Not a comparison of zeros: the 26×26 head has person scores above the cut here.
    assert (onx[1][:, 5] > 0.2).sum() >= 3


def test_same_people_as_opencv_on_real_footage(
    detectors: dict[str, Detector], frames: dict[int, np.ndarray]
) -> None:
    """Measured: same count and boxes within 0.001 px on all eight frames."""
    for index, frame in frames.items():
        a, b = detectors["opencv"].detect(frame), detectors["onnxruntime"].detect(frame)
        assert a.people >= 2, f"frame {index}: opencv found {a.people}"
        assert abs(a.people - b.people) <= 1, f"frame {index}: {a.people} vs {b.people}"
        fewer, more = (a, b) if a.people <= b.people else (b, a)
        for box in fewer.boxes:
            best = max(iou(box, other) for other in more.boxes)
            assert best >= 0.9, f"frame {index}: box {box.round(1)} best IoU {best:.2f}"


# The GPU backends against OpenCV on the CPU. FP16 (TensorRT, ONNX Runtime's TensorRT provider)
# keeps about three significant digits: the stated tolerance is 0.02 on every raw value (box
# fractions and scores are 0..1), a person count within one per frame (a score at the cut may
# fall either side) and each box of the smaller set matched at IoU 0.9 or more. Not yet
# measured on a GPU: scripts/gpu-check.sh runs this first, and prints the largest difference.
GPU_RAW_TOLERANCE = 0.02
GPU_BACKENDS = {"tensorrt": ("tensorrt", "cuda"), "onnxruntime-cuda": ("onnxruntime", "cuda")}


def _gpu_detector(bundle: store.ModelBundle, kind: str) -> Detector:
    """The GPU backend, or a skip that says why it cannot run here (a failure instead where
    $RVA_GPU_REQUIRED is set: scripts/gpu-check.sh, on a machine with a GPU)."""
    backend, device = GPU_BACKENDS[kind]
    missing = backends.BACKENDS[backend].runtime_missing()
    if backend == "onnxruntime" and "CUDAExecutionProvider" not in ort.get_available_providers():
        missing = "this onnxruntime has no CUDA provider (onnxruntime-gpu is not installed)"
    if missing:
        (pytest.fail if os.environ.get("RVA_GPU_REQUIRED") else pytest.skip)(
            f"no GPU backend here ({kind}: {missing})"
        )
    return Detector(bundle, backend=backend, device=device)


@pytest.mark.parametrize("kind", sorted(GPU_BACKENDS))
def test_a_gpu_backend_gives_the_people_the_cpu_backend_gives(
    bundle: store.ModelBundle,
    detectors: dict[str, Detector],
    frames: dict[int, np.ndarray],
    kind: str,
) -> None:
    gpu = _gpu_detector(bundle, kind)
    blob, _ = detectors["opencv"].preprocess(frames[200])
    ocv, got = detectors["opencv"].backend.forward(blob), gpu.backend.forward(blob)
    assert [o.shape for o in got] == [o.shape for o in ocv]
    worst = 0.0
    for a, b in zip(ocv, got, strict=True):
        on_the_cut = (np.minimum(a, b) == 0) & (np.abs(np.maximum(a, b) - 0.2) < GPU_RAW_TOLERANCE)
        worst = max(worst, float(np.abs(a - b)[~on_the_cut].max()))
    print(f"{kind}: largest raw difference from opencv {worst:.2g}")
    assert worst < GPU_RAW_TOLERANCE
    for index, frame in frames.items():
        a, b = detectors["opencv"].detect(frame), gpu.detect(frame)
        assert abs(a.people - b.people) <= 1, f"frame {index}: {a.people} vs {b.people}"
        fewer, more = (a, b) if a.people <= b.people else (b, a)
        for box in fewer.boxes:
            best = max(iou(box, other) for other in more.boxes)
            assert best >= 0.9, f"frame {index}: box {box.round(1)} best IoU {best:.2f}"


@pytest.mark.parametrize("size", [320, 416, 608])
def test_every_input_size_gives_the_same_people_on_both_backends(
    bundle: store.ModelBundle, frames: dict[int, np.ndarray], size: int
) -> None:
    """gear.input_size: OpenCV takes the size from the blob, ONNX Runtime gets a graph
    converted for it; the boxes agree to a thousandth of a pixel."""
    pair = [Detector(bundle, backend=b, input_size=size) for b in ("opencv", "onnxruntime")]
    assert (pair[1].width, pair[1].height) == (size, size)
    for index in (0, 400, 700):
        a, b = (d.detect(frames[index]) for d in pair)
        assert a.people == b.people, f"frame {index} at {size}: {a.people} vs {b.people}"
        assert np.abs(a.boxes - b.boxes).max(initial=0) < 1e-3


def test_auto_is_onnxruntime_for_darknet_and_opencv_for_tensorflow(
    bundle: store.ModelBundle, model_cache: Path
) -> None:
    assert Detector(bundle).backend_name == "onnxruntime"
    ssd = store.from_cache(manifest.load("ssdlite-person"), model_cache)
    assert Detector(ssd).backend_name == "opencv"


def test_cuda_without_a_cuda_provider_is_a_clear_error(bundle: store.ModelBundle) -> None:
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(ModelError, match="no CUDA provider"):
        Detector(bundle, backend="onnxruntime", device="cuda")


def test_a_tensorflow_model_is_refused_by_onnxruntime(model_cache: Path) -> None:
    ssd = store.from_cache(manifest.load("ssdlite-person"), model_cache)
    with pytest.raises(ModelError, match="onnxruntime backend cannot run tensorflow models"):
        Detector(ssd, backend="onnxruntime")


def _count(vtest_path: Path, backend: str) -> list[dict[str, Any]]:
    args = [str(vtest_path), "--every", "200", "--limit", "3", "--json", "--backend", backend]
    res = rva("count", *args)
    assert res.returncode == 0, res.stderr
    return [json.loads(line) for line in res.stdout.splitlines()]


def test_rva_count_with_the_onnxruntime_backend(vtest_path: Path, model_cache: Path) -> None:
    rows = _count(vtest_path, "onnxruntime")
    assert [r["frame"] for r in rows] == [0, 200, 400]
    reference = _count(vtest_path, "opencv")
    for got, want in zip(rows, reference, strict=True):
        assert got["people"] == len(got["boxes"]) > 0
        assert abs(got["people"] - want["people"]) <= 1


def test_the_gear_runs_onnxruntime_on_the_model_stored_in_redis(
    redis_ts: RedisServer, vtest_path: Path, tmp_path: Path, services: Callable[[Path], Services]
) -> None:
    cfg = write_config(
        tmp_path / "rva.toml", redis_ts.url, vtest_path, gear={"backend": "onnxruntime"}
    )
    svc = services(cfg)
    svc.run("init")
    svc.start("gears")
    svc.start("capture")
    client = redis_ts.client()
    wait_for(lambda: client.xlen(keys.results("0")) >= 5, 90, what="results from onnxruntime")
    people = [int(f[b"people"]) for _, f in client.xrange(keys.results("0"))]
    assert max(people) >= 2
    assert "on onnxruntime/cpu" in svc.logs()
