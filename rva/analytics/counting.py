"""Per-camera counting: line crossings and zone occupancy from one frame's person boxes at a time.

Rules (all positions are box anchors, the bottom-centre):

- Lines. Each track has a settled side per line. The side changes only after the anchor has
  been more than a margin beyond the line for `line_frames` observed frames in a row (frames in
  the margin band neither help nor hurt; a frame back on the settled side starts over). So a
  person standing on the line, a box jittering across it, or a one-frame flicker to the other
  side and back counts nothing; a real walk across counts once, in the frame it settles. The
  margin is max(`line_margin_px`, `line_margin_frac` x box height): detector jitter grows with
  the box, and a fixed pixel margin would be either too wide for far people or too narrow for
  near ones. A settled change is a crossing only when the point where the anchor's path last
  crossed the line lies on the segment (not on its extension). A track's first side, set by
  the first frame beyond the margin, is no crossing.
- Zones. A track enters after `zone_frames` observed frames in a row inside and leaves after
  as many outside; "enter" and "leave" events follow, and a leave carries dwell_s, from the
  first frame inside to the first frame outside. A track dropped while inside leaves in the
  frame it is dropped, its dwell ending at the last frame it was seen.
- Only confirmed tracks count. Tentative tracks are followed all the same, and what they did
  is reported in the frame they are confirmed, so a person who crosses in their first frames
  is still counted; a track that never gets confirmed (a two-frame ghost) reports nothing.
- Coasting tracks (missed in this frame) keep their sides and zones unchanged.

Every event carries the t_ms of the frame that reports it. The state (`to_state`) is plain
JSON; a run resumed from it at any frame gives the same events as a run never interrupted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rva.analytics.geometry import Box, Line, Point, Zone, anchor
from rva.analytics.tracker import Track, Tracker

STATE_VERSION = 1


@dataclass(frozen=True)
class Event:
    track: int
    kind: str  # "line" | "zone"
    name: str
    direction: str  # "in" | "out" for lines, "enter" | "leave" for zones
    t_ms: int  # the frame that reports it (a crossing settles a frame or two after the step)
    dwell_s: float | None = None  # zone leaves: seconds from entering to leaving


@dataclass
class FrameOutcome:
    tracks: list[Track]  # confirmed tracks, seen in this frame or coasting
    events: list[Event]
    occupancy: dict[str, int]  # zone name -> confirmed tracks inside


@dataclass
class _LineMemory:
    side: int = 0  # settled side: +1 in_side's, -1 the other, 0 not settled yet
    candidate: int = 0  # the other side the anchor has been beyond lately (0: none)
    run: int = 0  # consecutive observed frames beyond the line on `candidate`
    cross: Point | None = None  # where the anchor's path last crossed the line


@dataclass
class _ZoneMemory:
    inside: bool = False  # settled state
    run: int = 0  # consecutive observed frames that disagree with `inside`
    run_ms: int = 0  # timestamp of the first of them
    enter_ms: int = 0  # when the settled stay inside began


@dataclass
class _TrackMemory:
    anchor: Point  # where the track was last seen
    last_ms: int
    confirmed: bool = False
    lines: dict[str, _LineMemory] = field(default_factory=dict)
    zones: dict[str, _ZoneMemory] = field(default_factory=dict)
    # (kind, name, direction, dwell_s) decided while the track was tentative
    pending: list[tuple[str, str, str, float | None]] = field(default_factory=list)


class Counter:
    """Counts one camera's lines and zones; call `step` once per frame, in timestamp order."""

    def __init__(
        self,
        lines: Sequence[Line],
        zones: Sequence[Zone],
        *,
        line_margin_px: float = 3.0,
        line_margin_frac: float = 0.1,
        line_frames: int = 2,
        zone_frames: int = 3,
        **tracker_params: Any,
    ) -> None:
        """``tracker_params`` go to the Tracker as they are (max_miss_ms, min_hits, ...)."""
        for kind, names in (("line", [x.name for x in lines]), ("zone", [z.name for z in zones])):
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise ValueError(f"two {kind}s are named {duplicates[0]!r}; names must differ")
        if line_margin_px < 0 or line_margin_frac < 0 or line_frames < 1 or zone_frames < 1:
            raise ValueError("margins must be >= 0 and line_frames, zone_frames >= 1")
        self.lines = list(lines)
        self.zones = list(zones)
        self.line_margin_px = line_margin_px
        self.line_margin_frac = line_margin_frac
        self.line_frames = line_frames
        self.zone_frames = zone_frames
        self._tracker_params = tracker_params
        self.tracker = Tracker(**self._tracker_params)
        self._memory: dict[int, _TrackMemory] = {}

    def step(self, boxes: Sequence[Box], t_ms: int) -> FrameOutcome:
        """Take one frame's person boxes (x1, y1, x2, y2[, score]) taken at t_ms."""
        confirmed = self.tracker.update(boxes, t_ms)
        live = {t.id: t for t in self.tracker.tracks}
        events: list[Event] = []
        for track_id in sorted(set(self._memory) - set(live)):
            memory = self._memory.pop(track_id)
            if memory.confirmed:
                events.extend(self._dropped(track_id, memory, t_ms))
        for track_id in sorted(live):
            track = live[track_id]
            if track.misses:
                continue
            if track_id not in self._memory:
                self._memory[track_id] = _TrackMemory(anchor(track.box), t_ms)
            memory = self._memory[track_id]
            decided = self._observe(track, memory, t_ms)
            if not track.confirmed:
                memory.pending.extend(decided)
                continue
            memory.confirmed = True
            for kind, name, direction, dwell in [*memory.pending, *decided]:
                events.append(Event(track_id, kind, name, direction, t_ms, dwell))
            memory.pending.clear()
        occupancy = {zone.name: 0 for zone in self.zones}
        for track in confirmed:
            for name, zm in self._memory[track.id].zones.items():
                occupancy[name] += zm.inside
        return FrameOutcome(confirmed, events, occupancy)

    def _dropped(self, track_id: int, memory: _TrackMemory, t_ms: int) -> list[Event]:
        """Leave events for a confirmed track that vanished inside zones."""
        events = []
        for zone in self.zones:
            zm = memory.zones.get(zone.name)
            if zm is None or not zm.inside:
                continue
            left_ms = zm.run_ms if zm.run else memory.last_ms
            dwell = (left_ms - zm.enter_ms) / 1000.0
            events.append(Event(track_id, "zone", zone.name, "leave", t_ms, dwell))
        return events

    def _observe(
        self, track: Track, memory: _TrackMemory, t_ms: int
    ) -> list[tuple[str, str, str, float | None]]:
        """Move one seen track's sides and zone states on; return what it decided."""
        decided: list[tuple[str, str, str, float | None]] = []
        here, before = anchor(track.box), memory.anchor
        height = track.box[3] - track.box[1]
        margin = max(self.line_margin_px, self.line_margin_frac * height)
        for line in self.lines:
            lm = memory.lines.setdefault(line.name, _LineMemory())
            distance, previous = line.side(here), line.side(before)
            if (distance > 0) != (previous > 0):
                # Where the path from the last seen anchor to this one meets the line.
                f = previous / (previous - distance)
                lm.cross = (
                    before[0] + f * (here[0] - before[0]),
                    before[1] + f * (here[1] - before[1]),
                )
            beyond = 1 if distance > margin else -1 if distance < -margin else 0
            if beyond == 0:
                continue
            if lm.side == 0:
                # A first side is no crossing, so it needs no confirming; waiting would lose
                # the side of a person seen once before stepping across (common at 2 fps).
                lm.side = beyond
                continue
            if beyond == lm.side:
                lm.candidate, lm.run = 0, 0
                continue
            lm.run = lm.run + 1 if lm.candidate == beyond else 1
            lm.candidate = beyond
            if lm.run < self.line_frames:
                continue
            lm.side, lm.candidate, lm.run = beyond, 0, 0
            if lm.cross is not None and line.within_extent(lm.cross):
                decided.append(("line", line.name, "in" if beyond > 0 else "out", None))
        for zone in self.zones:
            zm = memory.zones.setdefault(zone.name, _ZoneMemory())
            if zone.contains(here) == zm.inside:
                zm.run = 0
                continue
            if zm.run == 0:
                zm.run_ms = t_ms
            zm.run += 1
            if zm.run < self.zone_frames:
                continue
            zm.inside, zm.run = not zm.inside, 0
            if zm.inside:
                zm.enter_ms = zm.run_ms
                decided.append(("zone", zone.name, "enter", None))
            else:
                decided.append(("zone", zone.name, "leave", (zm.run_ms - zm.enter_ms) / 1000.0))
        memory.anchor, memory.last_ms = here, t_ms
        return decided

    def to_state(self) -> dict[str, Any]:
        """Everything needed to carry on, as JSON-able lists, dicts and numbers.

        The geometry goes with it, so that `from_state` can tell a line or zone that changed
        (same name, new place) from one that did not.
        """
        return {
            "version": STATE_VERSION,
            "tracker": self.tracker.to_state(),
            "lines": {x.name: [list(x.a), list(x.b), list(x.in_side)] for x in self.lines},
            "zones": {z.name: [list(p) for p in z.polygon] for z in self.zones},
            "tracks": [
                {
                    "id": track_id,
                    "anchor": list(m.anchor),
                    "last_ms": m.last_ms,
                    "confirmed": m.confirmed,
                    "lines": {
                        name: [
                            lm.side,
                            lm.candidate,
                            lm.run,
                            None if lm.cross is None else list(lm.cross),
                        ]
                        for name, lm in m.lines.items()
                    },
                    "zones": {
                        name: [zm.inside, zm.run, zm.run_ms, zm.enter_ms]
                        for name, zm in m.zones.items()
                    },
                    "pending": [list(p) for p in m.pending],
                }
                for track_id, m in self._memory.items()
            ],
        }

    @classmethod
    def from_state(
        cls, data: dict[str, Any], lines: Sequence[Line], zones: Sequence[Zone], **params: Any
    ) -> Counter:
        """A counter that continues from `to_state()`'s output with today's lines and zones.

        Per-track memory of a line or zone that is gone or has moved is dropped (a moved one
        starts afresh, like a new one): a side remembered against the old geometry would turn
        into a false crossing against the new.
        """
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"unknown counter state version {data.get('version')!r}")
        counter = cls(lines, zones, **params)
        counter.tracker = Tracker.from_state(data["tracker"], **counter._tracker_params)
        saved = counter.to_state()  # today's geometry, in the same JSON shape
        keep_lines = {n for n, g in saved["lines"].items() if data["lines"].get(n) == g}
        keep_zones = {n for n, g in saved["zones"].items() if data["zones"].get(n) == g}
        for t in data["tracks"]:
            memory = _TrackMemory(_point(t["anchor"]), int(t["last_ms"]), bool(t["confirmed"]))
            for name, (side, candidate, run, cross) in t["lines"].items():
                if name in keep_lines:
                    point = None if cross is None else _point(cross)
                    memory.lines[name] = _LineMemory(side, candidate, run, point)
            for name, (inside, run, run_ms, enter_ms) in t["zones"].items():
                if name in keep_zones:
                    memory.zones[name] = _ZoneMemory(inside, run, run_ms, enter_ms)
            memory.pending = [
                (kind, name, direction, dwell)
                for kind, name, direction, dwell in t["pending"]
                if name in (keep_lines if kind == "line" else keep_zones)
            ]
            counter._memory[int(t["id"])] = memory
        return counter


def _point(value: Sequence[float]) -> Point:
    return (float(value[0]), float(value[1]))
