"""The GPU backends measured against the CPU on one machine (run by scripts/gpu-check.sh, in its
venv): the TensorRT engine's build time and its load from the cache, ms per frame at 512x512
(forward alone, and the whole detect) for ONNX Runtime on the CPU, ONNX Runtime's CUDA/TensorRT
providers and the tensorrt backend, and each GPU backend's person count against the CPU
backend's on the hand-labelled frames of vtest.avi (tests/data/vtest_people.toml).

One JSON object per line on stdout; exit 1 when a GPU backend cannot load or a count differs
by more than one person on a labelled frame (the cross-backend test's tolerance).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rva.models import manifest, store  # noqa: E402
from rva.models.detector import Detector  # noqa: E402
from rva.models.manifest import ModelError  # noqa: E402
from rva.tools import labels  # noqa: E402

RUNS = [("onnxruntime", "cpu"), ("onnxruntime", "cuda"), ("tensorrt", "cuda")]


def frames(video: Path, wanted: set[int]) -> dict[int, np.ndarray]:
    cap = cv2.VideoCapture(str(video))
    out, index = {}, 0
    while len(out) < len(wanted):
        ok, frame = cap.read()
        if not ok:
            break
        if index in wanted:
            out[index] = frame
        index += 1
    cap.release()
    return out


def timed(call: object, blobs: list[np.ndarray], repeat: int) -> dict[str, float]:
    for blob in blobs[:10]:  # warm-up: first runs pick kernels and fill caches
        call(blob)  # type: ignore[operator]
    spent = []
    for i in range(repeat):
        blob = blobs[i % len(blobs)]
        start = time.perf_counter()
        call(blob)  # type: ignore[operator]
        spent.append((time.perf_counter() - start) * 1000)
    median, mean = statistics.median(spent), statistics.mean(spent)
    return {"ms_median": round(median, 3), "ms_mean": round(mean, 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--video", type=Path, required=True)
    parser.add_argument("--labels", type=Path, default=ROOT / "tests/data/vtest_people.toml")
    parser.add_argument("--repeat", type=int, default=300, help="timed runs per backend")
    args = parser.parse_args()
    models = store.cache_dir()
    bundle = store.from_cache(manifest.load("yolov3-tiny"), models)
    truth = labels.load(args.labels)
    shots = frames(args.video, set(truth))
    failed = False
    counts: dict[str, dict[int, int]] = {}
    with tempfile.TemporaryDirectory(prefix="rva-gpu-") as scratch:
        # A model cache of links: the engine cache starts empty, so the first load builds.
        (Path(scratch) / "yolov3-tiny").symlink_to(models / "yolov3-tiny")
        os.environ["RVA_MODEL_CACHE"] = scratch
        for backend, device in RUNS:
            name = f"{backend}/{device}"
            row: dict[str, object] = {"backend": name, "size": "512x512"}
            try:
                start = time.perf_counter()
                detector = Detector(bundle, backend=backend, device=device)
                row["load_s"] = round(time.perf_counter() - start, 2)
                if backend == "tensorrt":
                    row["engine_build_s"] = round(getattr(detector.backend, "build_s", 0.0), 2)
                    start = time.perf_counter()
                    detector = Detector(bundle, backend=backend, device=device)
                    row["cached_load_s"] = round(time.perf_counter() - start, 2)
                    row["cache_hit"] = getattr(detector.backend, "build_s", -1.0) == 0.0
            except ModelError as exc:
                row["error"] = str(exc)
                failed = failed or device == "cuda"
                print(json.dumps(row), flush=True)
                continue
            blobs = [detector.preprocess(shots[i])[0].copy() for i in sorted(shots)[:50]]
            row["forward"] = timed(detector.backend.forward, blobs, args.repeat)
            row["detect"] = timed(
                detector.detect, [shots[i] for i in sorted(shots)[:50]], args.repeat // 3
            )
            counts[name] = {i: detector.detect(shots[i]).people for i in sorted(shots)}
            print(json.dumps(row), flush=True)
    cpu = counts.get("onnxruntime/cpu", {})
    for name, got in counts.items():
        if name == "onnxruntime/cpu" or not cpu:
            continue
        differ = {i: (cpu[i], got[i]) for i in cpu if got[i] != cpu[i]}
        over = [i for i, (a, b) in differ.items() if abs(a - b) > 1]
        failed = failed or bool(over)
        print(json.dumps({
            "counts": name, "against": "onnxruntime/cpu", "labelled_frames": len(cpu),
            "equal": len(cpu) - len(differ), "differ": {str(i): v for i, v in differ.items()},
            "people_cpu": sum(cpu.values()), "people_gpu": sum(got.values()),
        }), flush=True)  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
