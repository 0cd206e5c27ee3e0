"""rva count: the gear's detection path, offline, over a video or image — no Redis involved."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np

from rva.models.detector import Detections, Detector
from rva.services.sources import IMAGE_SUFFIXES


class CountError(Exception):
    pass


def frames(source: str) -> Iterator[tuple[int, np.ndarray]]:
    """(0-based decode index, frame) for every frame of a video, or once for an image."""
    if Path(source).suffix.lower() in IMAGE_SUFFIXES:
        frame = cv2.imread(source, cv2.IMREAD_COLOR)
        if frame is None:
            raise CountError(f"cannot read image {source}")
        yield 0, frame
        return
    if not Path(source).exists() and "://" not in source:
        raise CountError(f"no such file: {source}")
    cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        raise CountError(f"cannot open video {source}")
    try:
        index = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                return
            yield index, frame
            index += 1
    finally:
        cap.release()


def count(
    detector: Detector, source: str, *, every: int = 1, limit: int = 0
) -> Iterator[tuple[int, Detections]]:
    processed = 0
    for index, frame in frames(source):
        if index % every:
            continue
        yield index, detector.detect(frame)
        processed += 1
        if limit and processed >= limit:
            return


def run(
    detector: Detector,
    source: str,
    *,
    every: int,
    as_json: bool,
    limit: int = 0,
    out: TextIO = sys.stdout,
) -> int:
    total, n = 0, 0
    for index, found in count(detector, source, every=every, limit=limit):
        n += 1
        total += found.people
        if as_json:
            out.write(
                json.dumps({"frame": index, "people": found.people, "boxes": found.as_rows()})
                + "\n"
            )
        else:
            out.write(f"frame {index}: {found.people} people\n")
        out.flush()
    if not as_json:
        mean = total / n if n else 0.0
        out.write(f"{n} frames, {mean:.2f} people per frame on average\n")
    return n
