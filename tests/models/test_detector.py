"""The detection path on real footage with the real models (no Redis)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from rva.models import manifest, store
from rva.models.detector import Detections, Detector, Transform
from rva.models.manifest import ModelError
from tests.conftest import SAMPLE_FRAMES, iou, rva

FRAMES = SAMPLE_FRAMES


@pytest.fixture(scope="module")
def frames(sample_frames: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    return sample_frames


@pytest.fixture(scope="module", params=["yolov3-tiny", "ssdlite-person"])
def detector(request: pytest.FixtureRequest, model_cache: Path) -> Detector:
    return Detector(store.from_cache(manifest.load(request.param), model_cache))


def test_people_found_on_every_sampled_frame_with_sane_boxes(
    detector: Detector, frames: dict[int, np.ndarray]
) -> None:
    for index, frame in frames.items():
        found = detector.detect(frame)
        h, w = frame.shape[:2]
        assert 2 <= found.people <= 15, f"frame {index}: {found.people} people"
        b = found.boxes
        assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all()
        assert (b[:, 2] <= w - 1).all() and (b[:, 3] <= h - 1).all()
        assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
        assert (found.scores >= detector.score_threshold).all()
        assert list(found.scores) == sorted(found.scores, reverse=True)
        heights, widths = b[:, 3] - b[:, 1], b[:, 2] - b[:, 0]
        # Walking people seen from above a lawn: upright boxes, 40–250 px tall in 768×576.
        assert (heights > widths).mean() >= 0.8, f"frame {index}: boxes not upright"
        assert 40 <= float(np.median(heights)) <= 250, (
            f"frame {index}: median height {np.median(heights)}"
        )


def test_detections_are_stable_across_runs(
    detector: Detector, frames: dict[int, np.ndarray]
) -> None:
    first = detector.detect(frames[200])
    again = detector.detect(frames[200].copy())
    assert np.allclose(first.boxes, again.boxes, atol=0.5)
    assert first.people == again.people


def test_two_independent_models_agree_on_where_people_are(
    model_cache: Path, frames: dict[int, np.ndarray]
) -> None:
    """Two different detectors (Darknet YOLO, TF SSD) through two different decoders: most
    confident boxes of one must be matched by some box of the other. A broken decoder fails
    this. Measured: 26 of 30 YOLO boxes (score ≥ 0.6) matched by SSD boxes (score ≥ 0.3)."""
    yolo = Detector(
        store.from_cache(manifest.load("yolov3-tiny"), model_cache), score_threshold=0.6
    )
    ssd = Detector(
        store.from_cache(manifest.load("ssdlite-person"), model_cache), score_threshold=0.3
    )
    matched = total = 0
    for frame in frames.values():
        a, b = yolo.detect(frame), ssd.detect(frame)
        for box in a.boxes:
            total += 1
            matched += any(iou(box, other) > 0.3 for other in b.boxes)
    assert total >= 15
    assert matched / total >= 0.75, f"only {matched}/{total} YOLO boxes matched by SSD"


def test_letterbox_maps_back_to_frame_pixels() -> None:
    t = Transform(scale_x=416 / 768, scale_y=416 / 768, pad_x=0, pad_y=52, frame_w=768, frame_h=576)
    net = np.array([[0, 52, 416, 364]], dtype=np.float32)  # the whole letterboxed picture
    assert np.allclose(t.to_frame(net), [[0, 0, 767, 575]], atol=1.0)


def test_seed_wire_format_of_boxes() -> None:
    d = Detections(
        np.array([[1.4, 2.6, 10.0, 20.2]], dtype=np.float32), np.array([0.9], dtype=np.float32)
    )
    assert d.flat_boxes() == [1, 3, 10, 20]
    assert json.dumps(d.flat_boxes()) == "[1, 3, 10, 20]"


def test_unknown_backend_is_a_clear_error(model_cache: Path) -> None:
    bundle = store.from_cache(manifest.load("yolov3-tiny"), model_cache)
    with pytest.raises(ModelError, match="unknown or unavailable backend 'openvino'"):
        Detector(bundle, backend="openvino")


def _count(*args: str) -> subprocess.CompletedProcess[str]:
    return rva("count", *args)


def test_rva_count_json_one_line_per_processed_frame(vtest_path: Path, model_cache: Path) -> None:
    res = _count(str(vtest_path), "--every", "100", "--json")
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["frame"] for r in rows] == FRAMES  # 0-based decode indices, every 100th of 795
    for r in rows:
        assert set(r) == {"frame", "people", "boxes"}
        assert r["people"] == len(r["boxes"]) > 0
        for x1, y1, x2, y2, score in r["boxes"]:
            assert 0 <= x1 < x2 < 768 and 0 <= y1 < y2 < 576 and 0 < score <= 1


def test_rva_count_on_a_still_image_and_a_missing_file(
    tmp_path: Path, frames: dict[int, np.ndarray], model_cache: Path
) -> None:
    still = tmp_path / "still.png"
    cv2.imwrite(str(still), frames[400])
    res = _count(str(still), "--json", "--model", "ssdlite-person")
    assert res.returncode == 0, res.stderr
    row = json.loads(res.stdout)
    assert row["frame"] == 0 and row["people"] >= 2
    missing = _count(str(tmp_path / "nope.avi"))
    assert missing.returncode == 2 and "no such file" in missing.stderr
