"""(a) The bare detector loop: decode + letterbox + forward + NMS over the footage, no Redis;
and the analytics stage's cost per frame on the same detections."""

from __future__ import annotations

import importlib.util
import statistics
import sys
import time
from collections.abc import Sequence

import cv2
import numpy as np

from rva.config import ConfigError
from rva.models.detector import Detector
from rva.tools.bench.load import Others

Box = tuple[float, float, float, float]


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


class BareLoop:
    """The detector alone on the footage (decode + letterbox + forward + NMS, no Redis), run
    in slices between the pipeline's so that both see the machine in the same state."""

    def __init__(self, detector: Detector, source: str) -> None:
        self.detector = detector
        self.cap = cv2.VideoCapture(source)
        if not self.cap.isOpened():
            raise ConfigError(f"bench: cannot open {source}")
        self.size = (
            int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
        self.frame_ms = 1000.0 / (self.cap.get(cv2.CAP_PROP_FPS) or 25.0)
        self.stages: dict[str, list[float]] = {"read": [], "resize": [], "model": [], "boxes": []}
        self.detector_ms: list[float] = []  # resize + model + boxes, per frame
        self.detections: list[list[Box]] = []
        self.frames, self.elapsed, self.cpu_s = 0, 0.0, 0.0
        self.others = Others()
        for _ in range(3):
            detector.detect(self.next_frame())

    def next_frame(self) -> np.ndarray:
        ok, frame = self.cap.read()
        if not ok:
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self.cap.read()
        return frame

    def run(self, seconds: float) -> None:
        self.others.start(time.process_time())
        cpu0 = time.process_time()  # every thread of this process: the backend's pool included
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            t0 = time.perf_counter()
            frame = self.next_frame()
            self.stages["read"].append((time.perf_counter() - t0) * 1e3)
            found = self.detector.detect(frame)
            for k, v in found.timings_ms.items():
                self.stages[k].append(v)
            self.detector_ms.append(sum(found.timings_ms.values()))
            boxes = [(float(a), float(b), float(c), float(d)) for a, b, c, d in found.boxes]
            self.detections.append(boxes)
            self.frames += 1
        self.elapsed += time.perf_counter() - started
        self.cpu_s += time.process_time() - cpu0
        self.others.stop(time.process_time())

    def report(self) -> dict[str, object]:
        self.cap.release()
        return {
            "fps": self.frames / max(self.elapsed, 1e-6),
            "frames": self.frames,
            "stages_ms": {k: round(statistics.median(v), 2) for k, v in self.stages.items() if v},
            "detector_ms": statistics.median(self.detector_ms),
            "detections": self.detections,
            "frame_size": self.size,
            "frame_ms": self.frame_ms,
            "cpu_ms_per_frame": self.cpu_s * 1000 / max(self.frames, 1),
            "others_cores": self.others.cores(),
        }


def analytics_cost(
    detections: Sequence[list[Box]], frame_size: tuple[int, int], frame_ms: float
) -> float | None:
    """Median ms per frame of the counting stage (rva.analytics.counting) over the bare loop's
    detections: one line across the middle of the frame, one zone over its lower half. None
    when that stage is not installed."""
    try:
        installed = importlib.util.find_spec("rva.analytics.counting") is not None
    except ImportError:
        installed = False
    if not installed:
        return None
    try:
        from rva.analytics.counting import Counter
        from rva.analytics.geometry import Line, Zone

        w, h = float(frame_size[0]), float(frame_size[1])
        counter = Counter(
            lines=[Line("middle", (0.0, h / 2), (w, h / 2), (w / 2, h))],
            zones=[Zone("lower half", ((0.0, h / 2), (w, h / 2), (w, h), (0.0, h)))],
        )
        costs: list[float] = []
        for i, boxes in enumerate(detections):
            t0 = time.perf_counter()
            counter.step(boxes, round(i * frame_ms))
            costs.append((time.perf_counter() - t0) * 1e3)
    except Exception as exc:  # an optional figure: its failure is reported, not fatal
        print(f"rva bench: warning: analytics stage failed, not measured: {exc!r}", file=sys.stderr)
        return None
    return statistics.median(costs) if costs else None
