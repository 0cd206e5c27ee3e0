"""The generated text graph makes the SSDLite person detector usable in OpenCV DNN.

The fixtures ``ssdlite_graph_pb`` (the frozen TF graph) and ``vtest_path``
(OpenCV's vtest.avi walking-people clip) come from conftest.py.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from rva.models.ssd_textgraph import SSDAnchorParams, write_ssd_text_graph

PERSON_CLASS_ID = 1
SCORE_THRESHOLD = 0.5
FRAMES = (50, 200, 400)


@pytest.fixture
def ssdlite_net(ssdlite_graph_pb: Path, tmp_path: Path) -> cv2.dnn.Net:
    pbtxt = tmp_path / "ssdlite.pbtxt"
    write_ssd_text_graph(ssdlite_graph_pb, pbtxt, SSDAnchorParams())
    return cv2.dnn.readNetFromTensorflow(str(ssdlite_graph_pb), str(pbtxt))


def _read_frame(video: Path, index: int) -> np.ndarray:
    capture = cv2.VideoCapture(str(video))
    try:
        capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, frame = capture.read()
    finally:
        capture.release()
    assert ok, f"cannot read frame {index} of {video}"
    return frame


def _confident_detections(net: cv2.dnn.Net, frame: np.ndarray) -> np.ndarray:
    # The generated graph starts after TF's preprocessing, so the blob must
    # redo it: stretch to 300x300, BGR -> RGB, (x - 127.5) / 127.5.
    blob = cv2.dnn.blobFromImage(
        frame, 1 / 127.5, (300, 300), (127.5, 127.5, 127.5), swapRB=True, crop=False
    )
    net.setInput(blob)
    out = net.forward()
    assert out.ndim == 4 and out.shape[:2] == (1, 1) and out.shape[3] == 7
    rows = out[0, 0]
    return rows[rows[:, 2] >= SCORE_THRESHOLD]


@pytest.mark.parametrize("index", FRAMES)
def test_detects_a_plausible_number_of_people_in_vtest(
    ssdlite_net: cv2.dnn.Net, vtest_path: Path, index: int
) -> None:
    people = _confident_detections(ssdlite_net, _read_frame(vtest_path, index))

    assert 1 <= len(people) <= 30


@pytest.mark.parametrize("index", FRAMES)
def test_confident_detections_are_people_with_normalised_boxes(
    ssdlite_net: cv2.dnn.Net, vtest_path: Path, index: int
) -> None:
    detections = _confident_detections(ssdlite_net, _read_frame(vtest_path, index))

    assert len(detections) > 0
    assert set(detections[:, 1].tolist()) == {PERSON_CLASS_ID}
    boxes = detections[:, 3:7]
    assert np.all((boxes >= 0.0) & (boxes <= 1.0))
    assert np.all(boxes[:, 2] > boxes[:, 0])
    assert np.all(boxes[:, 3] > boxes[:, 1])


@pytest.mark.parametrize("index", FRAMES)
def test_person_boxes_are_upright_like_walking_people(
    ssdlite_net: cv2.dnn.Net, vtest_path: Path, index: int
) -> None:
    # Swapped x/y in the box decoding or misaligned anchors would show up as
    # wide or scattered boxes; pedestrians are taller than wide.
    frame = _read_frame(vtest_path, index)
    height, width = frame.shape[:2]
    boxes = _confident_detections(ssdlite_net, frame)[:, 3:7]

    box_w = (boxes[:, 2] - boxes[:, 0]) * width
    box_h = (boxes[:, 3] - boxes[:, 1]) * height
    assert np.all(box_h > box_w)


def test_generation_is_byte_identical_across_runs(ssdlite_graph_pb: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "first.pbtxt", tmp_path / "second.pbtxt"

    write_ssd_text_graph(ssdlite_graph_pb, first, SSDAnchorParams())
    write_ssd_text_graph(ssdlite_graph_pb, second, SSDAnchorParams())

    assert first.read_bytes() == second.read_bytes()


@pytest.mark.parametrize(
    "params",
    [
        replace(SSDAnchorParams(), num_classes=90),
        replace(SSDAnchorParams(), reduce_boxes_in_lowest_layer=False),
        replace(SSDAnchorParams(), num_layers=5),
    ],
    ids=["coco-classes", "full-lowest-layer", "too-few-layers"],
)
def test_rejects_anchor_params_that_disagree_with_the_graph(
    ssdlite_graph_pb: Path, tmp_path: Path, params: SSDAnchorParams
) -> None:
    with pytest.raises(ValueError):
        write_ssd_text_graph(ssdlite_graph_pb, tmp_path / "graph.pbtxt", params)
