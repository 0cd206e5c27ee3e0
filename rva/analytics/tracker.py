"""A small SORT-style multi-object tracker for person boxes, on the frames' own timestamps.

Each track predicts its box with a constant-velocity model, so frames may arrive at any rate
(2 fps, then 10 fps, with 1-2 s gaps). Predicted boxes are matched to the frame's detections by
IoU, with a fallback on bottom-centre distance scaled by box size for people who moved further
than their box width between frames (the measure Frigate uses with norfair). Unmatched
detections start tentative tracks; a track is confirmed after `min_hits` matches, and only then
is it returned. Ids come from one counter and are never reused, tentative tracks included.

The whole state is plain JSON (`to_state`/`from_state`) so a stage can persist it with each
frame and resume after a crash exactly where it stopped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from rva.analytics.geometry import Box, anchor

STATE_VERSION = 1


@dataclass
class Track:
    """One person being followed. `box` is the last detection matched to it."""

    id: int
    box: Box
    velocity: tuple[float, float]  # of the box, px per second (a moving average)
    hits: int  # detections matched, the first included
    misses: int  # frames since the last match (0: seen in the latest frame)
    first_ms: int
    last_ms: int  # timestamp of the frame that last matched
    confirmed: bool

    def predict(self, t_ms: int) -> Box:
        """Where the box should be at t_ms if the person kept walking the same way."""
        dt = max(t_ms - self.last_ms, 0) / 1000.0
        dx, dy = self.velocity[0] * dt, self.velocity[1] * dt
        x1, y1, x2, y2 = self.box
        return (x1 + dx, y1 + dy, x2 + dx, y2 + dy)


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes; 0 for no overlap or empty boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def box_distance(predicted: Box, detected: Box) -> float:
    """How far a detection is from a prediction, in box sizes (0: the same box).

    The length of (dx / width, dy / height, width ratio - 1, height ratio - 1) over the
    bottom-centres, like Frigate's norfair distance: one box width of sideways movement costs
    1.0, as does a box twice as tall.
    """
    pw, ph = predicted[2] - predicted[0], predicted[3] - predicted[1]
    dw, dh = detected[2] - detected[0], detected[3] - detected[1]
    if min(pw, ph, dw, dh) <= 0:
        return math.inf
    (px, py), (dx, dy) = anchor(predicted), anchor(detected)
    width_ratio = max(pw, dw) / min(pw, dw) - 1.0
    height_ratio = max(ph, dh) / min(ph, dh) - 1.0
    return math.hypot((dx - px) / pw, (dy - py) / ph, width_ratio, height_ratio)


class Tracker:
    """Follows people from frame to frame; `update` once per frame, in timestamp order.

    max_miss_ms: a track unmatched for longer than this is dropped (checked after matching,
        so a frame after a long gap can still continue tracks).
    min_hits: matches before a track is confirmed (returned, counted).
    match_iou: least IoU between a prediction and a detection to pair them on overlap.
    match_distance: otherwise the most `box_distance` to pair them, for a track seen just now;
        it grows by distance_growth_per_s for every second since the track was last seen
        (by new_track_distance_growth_per_s for a track seen once, which has no velocity yet),
        so a frame after a gap or at 2 fps can still continue tracks, while at 10 fps a track
        cannot jump to a neighbour.
    velocity_tau_ms: time constant of the velocity average; detections jitter a few px, which
        at 10 fps is as fast as walking, so one frame pair alone is a poor velocity estimate.
    """

    def __init__(
        self,
        *,
        max_miss_ms: int = 1500,
        min_hits: int = 3,
        match_iou: float = 0.2,
        match_distance: float = 1.0,
        velocity_tau_ms: int = 500,
        distance_growth_per_s: float = 1.0,
        new_track_distance_growth_per_s: float = 2.0,
    ) -> None:
        if max_miss_ms < 0 or min_hits < 1 or not 0 < match_iou <= 1 or match_distance < 0:
            raise ValueError(
                "tracker needs max_miss_ms >= 0, min_hits >= 1, 0 < match_iou <= 1 "
                "and match_distance >= 0"
            )
        if velocity_tau_ms <= 0 or distance_growth_per_s < 0 or new_track_distance_growth_per_s < 0:
            raise ValueError("tracker needs velocity_tau_ms > 0 and distance growths >= 0")
        self.max_miss_ms = max_miss_ms
        self.min_hits = min_hits
        self.match_iou = match_iou
        self.match_distance = match_distance
        self.velocity_tau_ms = velocity_tau_ms
        self.distance_growth_per_s = distance_growth_per_s
        self.new_track_distance_growth_per_s = new_track_distance_growth_per_s
        self.tracks: list[Track] = []  # all live tracks, tentative too, oldest first
        self._next_id = 1

    def update(self, boxes: Sequence[Box], t_ms: int) -> list[Track]:
        """Take one frame's detections; return the confirmed tracks, seen now or coasting.

        The returned tracks are copies: changing them does not change the tracker.
        """
        # A box with no area or a NaN matches nothing and would poison the JSON state.
        detections = [b for b in map(_as_box, boxes) if _usable(b)]
        matches = self._match(detections, t_ms)
        matched_dets = set(matches.values())
        survivors: list[Track] = []
        for index, track in enumerate(self.tracks):
            det = matches.get(index)
            if det is not None:
                self._absorb(track, detections[det], t_ms)
            else:
                track.misses += 1
                # Tentative tracks go at their first miss (as in SORT): a detector's one-off
                # false positives rarely last min_hits frames in a row, real people usually do.
                if not track.confirmed or t_ms - track.last_ms > self.max_miss_ms:
                    continue
            survivors.append(track)
        for index, box in enumerate(detections):
            if index not in matched_dets:
                survivors.append(self._new_track(box, t_ms))
        self.tracks = survivors
        return [replace(t) for t in self.tracks if t.confirmed]

    def _match(self, detections: list[Box], t_ms: int) -> dict[int, int]:
        """Greedy assignment, best pair first: track index -> detection index.

        Overlapping pairs (IoU) always beat distance-only pairs. A handful of people per frame
        makes greedy as good as optimal in practice, and it is easy to reason about.
        """
        candidates: list[tuple[float, int, int]] = []
        for ti, track in enumerate(self.tracks):
            predicted = track.predict(t_ms)
            # The longer since the track was seen, the less sure its prediction: widen the gate.
            # A track seen once has no velocity yet, and a walker covers 2-3 widths a second.
            growth = (
                self.new_track_distance_growth_per_s
                if track.hits == 1
                else self.distance_growth_per_s
            )
            gate = self.match_distance + growth * max(t_ms - track.last_ms, 0) / 1000.0
            for di, det in enumerate(detections):
                overlap = iou(predicted, det)
                if overlap >= self.match_iou:
                    candidates.append((1.0 - overlap, ti, di))
                    continue
                distance = box_distance(predicted, det)
                if distance <= gate:
                    candidates.append((1.0 + distance, ti, di))
        # Ties go to the older track (lower index), then to the earlier detection.
        candidates.sort()
        matches: dict[int, int] = {}
        taken: set[int] = set()
        for _, ti, di in candidates:
            if ti not in matches and di not in taken:
                matches[ti] = di
                taken.add(di)
        return matches

    def _absorb(self, track: Track, box: Box, t_ms: int) -> None:
        dt_ms = t_ms - track.last_ms
        if dt_ms > 0:
            (ox, oy), (nx, ny) = _centre(track.box), _centre(box)
            measured = ((nx - ox) * 1000.0 / dt_ms, (ny - oy) * 1000.0 / dt_ms)
            if track.hits == 1:
                track.velocity = measured
            else:
                # Weight by elapsed time, so a 1 s gap moves the average more than 0.1 s does.
                weight = 1.0 - math.exp(-dt_ms / self.velocity_tau_ms)
                vx, vy = track.velocity
                track.velocity = (
                    vx + weight * (measured[0] - vx),
                    vy + weight * (measured[1] - vy),
                )
        track.box = box
        track.hits += 1
        track.misses = 0
        track.last_ms = t_ms
        track.confirmed = track.confirmed or track.hits >= self.min_hits

    def _new_track(self, box: Box, t_ms: int) -> Track:
        track = Track(
            id=self._next_id,
            box=box,
            velocity=(0.0, 0.0),
            hits=1,
            misses=0,
            first_ms=t_ms,
            last_ms=t_ms,
            confirmed=self.min_hits <= 1,
        )
        self._next_id += 1
        return track

    def to_state(self) -> dict[str, Any]:
        """Everything needed to carry on, as JSON-able lists, dicts and numbers."""
        return {
            "version": STATE_VERSION,
            "next_id": self._next_id,
            "tracks": [asdict(t) for t in self.tracks],
        }

    @classmethod
    def from_state(cls, data: dict[str, Any], **params: Any) -> Tracker:
        """A tracker that continues from `to_state()`'s output (after a JSON round trip too)."""
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"unknown tracker state version {data.get('version')!r}")
        tracker = cls(**params)
        tracker._next_id = int(data["next_id"])
        tracker.tracks = [
            Track(
                id=int(t["id"]),
                box=_as_box(t["box"]),
                velocity=(float(t["velocity"][0]), float(t["velocity"][1])),
                hits=int(t["hits"]),
                misses=int(t["misses"]),
                first_ms=int(t["first_ms"]),
                last_ms=int(t["last_ms"]),
                confirmed=bool(t["confirmed"]),
            )
            for t in data["tracks"]
        ]
        return tracker


def _as_box(box: Sequence[float]) -> Box:
    # Detections may carry a score as a fifth number; the tracker only needs the corners.
    return (float(box[0]), float(box[1]), float(box[2]), float(box[3]))


def _usable(box: Box) -> bool:
    return all(math.isfinite(c) for c in box) and box[2] > box[0] and box[3] > box[1]


def _centre(box: Box) -> tuple[float, float]:
    return ((box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0)
