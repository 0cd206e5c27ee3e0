"""`rva models quantize`: refusals (too few frames, nobody in view) and a real int8 calibration
on vtest.avi whose counts stay close to the float model's."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from rva import keys
from rva.models import manifest, store
from rva.models.detector import Detector
from rva.tools import quantize
from tests.conftest import RedisServer, rva


def test_too_few_frames_or_nobody_in_view_is_refused() -> None:
    with pytest.raises(quantize.QuantizeError, match=r"only 5 calibration frames; at least 20"):
        quantize.check(5, 5)
    with pytest.raises(quantize.QuantizeError, match=r"people in only 9 of 20 calibration"):
        quantize.check(20, 9)
    quantize.check(20, 10)


def test_cli_refuses_an_empty_scene_and_a_single_image(model_cache: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.avi"
    writer = cv2.VideoWriter(str(empty), cv2.VideoWriter.fourcc(*"MJPG"), 10, (320, 240))
    for _ in range(100):
        writer.write(np.full((240, 320, 3), 90, np.uint8))
    writer.release()
    env = {"RVA_MODEL_CACHE": str(model_cache)}
    res = rva("models", "quantize", "nanodet", "--source", str(empty), "--frames", "20", env=env)
    assert res.returncode == 1
    assert "found people in only 0 of 20 calibration frames" in res.stderr
    image = tmp_path / "one.png"
    cv2.imwrite(str(image), np.full((240, 320, 3), 90, np.uint8))
    res = rva("models", "quantize", "nanodet", "--source", str(image), env=env)
    assert res.returncode == 1 and "only 1 calibration frames" in res.stderr
    assert not (model_cache / "nanodet" / "nanodet.int8.onnx").exists()


def test_int8_nanodet_counts_like_the_float_one(
    model_cache: Path, tmp_path: Path, vtest_path: Path, sample_frames: dict[int, np.ndarray]
) -> None:
    bundle = store.from_cache(manifest.load("nanodet"), model_cache)
    out = tmp_path / "nanodet.int8.onnx"
    frames = quantize.file_frames(str(vtest_path), step=37)  # 20 frames 3.7 s apart
    prov = quantize.quantize(bundle, frames, out, source="vtest", wanted=20)
    assert prov.frames == 20 and prov.frames_with_people == 20
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["float_sha256"] == manifest.sha256(bundle.files["onnx"])
    assert saved["int8_sha256"] == manifest.sha256(out.read_bytes())
    int8 = store.ModelBundle(bundle.manifest, {**bundle.files, "onnx": out.read_bytes()})
    a, b = Detector(bundle, score_threshold=0.4), Detector(int8, score_threshold=0.4)
    diffs = [abs(a.detect(f).people - b.detect(f).people) for f in sample_frames.values()]
    assert sum(diffs) <= 4, diffs


def test_quantize_from_the_live_stream(
    redis_plain: RedisServer,
    model_cache: Path,
    tmp_path: Path,
    sample_frames: dict[int, np.ndarray],
) -> None:
    """A capture process stands in: frames go into camera:0 while the command reads them."""
    client = redis_plain.client()
    jpegs = [cv2.imencode(".jpg", f)[1].tobytes() for f in sample_frames.values()]
    stop = threading.Event()

    def capture() -> None:
        n = 0
        while not stop.is_set():
            image = jpegs[n % len(jpegs)]
            client.xadd(keys.frames("0"), {"count": n, "image": image}, maxlen=20)
            n += 1
            time.sleep(0.05)

    cache = tmp_path / "models"
    shutil.copytree(model_cache / "nanodet", cache / "nanodet")
    feeder = threading.Thread(target=capture, daemon=True)
    feeder.start()
    try:
        res = rva(
            "models", "quantize", "nanodet", "--camera", "0", "--frames", "20",
            "--url", redis_plain.url, env={"RVA_MODEL_CACHE": str(cache)},
        )  # fmt: skip
    finally:
        stop.set()
        feeder.join()
    assert res.returncode == 0, res.stderr
    assert "int8 from 20 frames of camera 0 (live stream), 20 with people" in res.stdout
    prov = json.loads((cache / "nanodet" / "nanodet.int8.json").read_text())
    assert prov["source"] == "camera 0 (live stream)" and prov["frames"] == 20
