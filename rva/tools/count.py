"""rva count: the gear's detection path, offline, over a video or image — no Redis involved.

With labels (rva.tools.labels) only the labelled frames are run, and each is scored; with
``--precision both`` the float model and its int8 copy are run on each labelled frame in turn
and scored side by side (`compare`)."""

from __future__ import annotations

import itertools
import json
import statistics
import sys
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np

from rva.analytics.counting import Counter, FrameOutcome
from rva.camera import IMAGE_SUFFIXES
from rva.models.detector import Detections, Detector
from rva.tools.labels import Label, Score


class CountError(Exception):
    pass


def frames(source: str) -> Iterator[tuple[int, np.ndarray]]:
    """(0-based decode index, frame) for every frame of a video, or once for an image."""
    if source.startswith("gst:"):
        yield from _pipeline_frames(source[4:].strip())
        return
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


def _pipeline_frames(pipeline: str) -> Iterator[tuple[int, np.ndarray]]:
    """A GStreamer pipeline's frames, to its end (a live one: until stopped or --limit)."""
    from rva.camera import SourceError
    from rva.camera.gstreamer import EndOfStream, GstCamera

    camera = GstCamera(pipeline, 0, 0, 0)
    try:
        camera.open()
        for index in itertools.count():
            try:
                frame = camera.read()
            except EndOfStream:
                return
            yield index, frame
    except SourceError as exc:
        raise CountError(str(exc)) from None
    finally:
        camera.close()


def video_fps(source: str) -> float:
    """The file's own frame rate (10 if it does not say), for the frames' timestamps."""
    if Path(source).suffix.lower() in IMAGE_SUFFIXES:
        return 10.0
    if source.startswith("gst:"):
        fps = _pipeline_fps(source[4:].strip())
        return fps if 1.0 <= fps <= 240.0 else 10.0
    cap = cv2.VideoCapture(source)
    fps = cap.get(cv2.CAP_PROP_FPS) if cap.isOpened() else 0.0
    cap.release()
    return fps if 1.0 <= fps <= 240.0 else 10.0


def _pipeline_fps(pipeline: str) -> float:
    """The frame rate a GStreamer pipeline's first frame says (0 when it cannot be read)."""
    from rva.camera import SourceError
    from rva.camera.gstreamer import GstCamera

    camera = GstCamera(pipeline, 0, 0, 0)
    try:
        camera.open()
        camera.read()
        return camera.caps_fps
    except SourceError:
        return 0.0  # frames() says why
    finally:
        camera.close()


def count(
    detector: Detector,
    source: str,
    *,
    every: int = 1,
    limit: int = 0,
    only: Collection[int] | None = None,
) -> Iterator[tuple[int, Detections]]:
    """Detections of every ``every``-th frame, or of the frames in ``only``."""
    processed = 0
    last = max(only, default=-1) if only is not None else None
    for index, frame in frames(source):
        if last is not None and index > last:
            return
        if index % every or (only is not None and index not in only):
            continue
        yield index, detector.detect(frame)
        processed += 1
        if limit and processed >= limit:
            return


@dataclass
class Summary:
    """What a run counted: crossings per line, occupancy per zone."""

    frames: int = 0
    lines: dict[str, dict[str, int]] = field(default_factory=dict)
    occupancy: dict[str, list[int]] = field(default_factory=dict)

    def add(self, outcome: FrameOutcome) -> None:
        for event in outcome.events:
            if event.kind == "line":
                self.lines[event.name][event.direction] += 1
        for zone, n in outcome.occupancy.items():
            self.occupancy[zone].append(n)

    def as_dict(self) -> dict[str, object]:
        zones = {
            name: {"max": max(v, default=0), "mean": round(sum(v) / len(v), 3) if v else 0.0}
            for name, v in self.occupancy.items()
        }
        return {"frames": self.frames, "lines": self.lines, "zones": zones}


def run(
    detector: Detector,
    source: str,
    *,
    every: int,
    as_json: bool,
    limit: int = 0,
    counter: Counter | None = None,
    score: Score | None = None,
    out: TextIO = sys.stdout,
) -> Summary:
    """Print one line per processed frame; with a counter, tracks and events too, and the
    summary (as JSON, the last line) at the end. With a score, only the labelled frames are
    run, each line gives its label and error, and the score comes last."""
    summary = Summary()
    if counter:
        summary.lines = {line.name: {"in": 0, "out": 0} for line in counter.lines}
        summary.occupancy = {zone.name: [] for zone in counter.zones}
    frame_ms = 1000.0 / video_fps(source)
    total = 0
    only = set(score.labels) if score else None
    for index, found in count(detector, source, every=every, limit=limit, only=only):
        summary.frames += 1
        total += found.people
        row: dict[str, object] = {"frame": index, "people": found.people}
        row["boxes"] = found.as_rows()
        label = ""
        if score:
            error = score.add(index, found.people)
            truth = score.labels[index]
            row["label"], row["error"] = [truth.people, truth.max], error
            span = f"{truth.people}-{truth.max}" if truth.max != truth.people else truth.people
            label = f" (labelled {span}, error {error:+d})"
        if counter:
            boxes = [tuple(float(v) for v in box) for box in found.boxes]
            outcome = counter.step(boxes, round(index * frame_ms))  # type: ignore[arg-type]
            summary.add(outcome)
            row["tracks"] = [
                [t.id, *(round(v, 1) for v in t.box)] for t in outcome.tracks if not t.misses
            ]
            row["events"] = [
                {k: v for k, v in vars(e).items() if v is not None} for e in outcome.events
            ]
            row["occupancy"] = outcome.occupancy
        if as_json:
            out.write(json.dumps(row) + "\n")
        else:
            extra = (
                "".join(f", {e.name} {e.direction}" for e in outcome.events if e.kind == "line")
                if counter
                else ""
            )
            out.write(f"frame {index}: {found.people} people{label}{extra}\n")
        out.flush()
    if as_json:
        if counter:
            out.write(json.dumps({"summary": summary.as_dict()}) + "\n")
        if score:
            out.write(json.dumps({"score": score.as_dict()}) + "\n")
    else:
        mean = total / summary.frames if summary.frames else 0.0
        out.write(f"{summary.frames} frames, {mean:.2f} people per frame on average\n")
        for name, dirs in summary.lines.items():
            out.write(f"line {name}: {dirs['in']} in, {dirs['out']} out\n")
        for name, z in summary.as_dict()["zones"].items():  # type: ignore[attr-defined]
            out.write(f"zone {name}: at most {z['max']}, {z['mean']:.2f} on average\n")
        if score:
            out.write(score.summary() + "\n")
    return summary


def compare(
    detectors: dict[str, Detector],
    source: str,
    labels: dict[int, Label],
    *,
    as_json: bool,
    out: TextIO = sys.stdout,
) -> dict[str, Score]:
    """Every detector on each labelled frame, in turn (so that a change of load on the machine
    hits them alike), each scored against the labels; one row each: MAE, mean signed error,
    frames off, and the median ms per frame (letterbox + forward + NMS)."""
    scores = {name: Score(labels) for name in detectors}
    times: dict[str, list[float]] = {name: [] for name in detectors}
    last = max(labels)
    for index, frame in frames(source):
        if index > last:
            break
        if index not in labels:
            continue
        for name, detector in detectors.items():
            t0 = time.perf_counter()
            found = detector.detect(frame)
            times[name].append((time.perf_counter() - t0) * 1e3)
            scores[name].add(index, found.people)
    ms = {name: statistics.median(t) if t else 0.0 for name, t in times.items()}
    first = next(iter(detectors))
    if as_json:
        for name, score in scores.items():
            row = {"precision": name, "ms_per_frame": round(ms[name], 2), "score": score.as_dict()}
            out.write(json.dumps(row) + "\n")
        return scores
    sample = detectors[first]
    out.write(
        f"{len(scores[first].errors)} labelled frames, {sample.manifest.name} "
        f"{sample.width}x{sample.height} on {sample.backend_name}:\n"
        f"{'precision':<10} {'MAE':>6} {'signed':>7} {'off':>5} {'ms/frame':>9}\n"
    )
    for name, score in scores.items():
        ratio = f" ({ms[name] / ms[first]:.2f}x {first})" if name != first and ms[first] else ""
        out.write(
            f"{name:<10} {score.mae:>6.3f} {score.bias:>+7.3f} {len(score.misses()):>5} "
            f"{ms[name]:>9.1f}{ratio}\n"
        )
    unseen = sorted(set(labels) - set(scores[first].errors))
    if unseen:
        out.write(f"{len(unseen)} labelled frames never processed: {unseen[:10]}\n")
    return scores
