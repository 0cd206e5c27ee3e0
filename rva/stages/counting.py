"""The counting stage: person boxes → tracks → line crossings and zone occupancy, kept.

Writes, for a camera with ``[cameras.<id>.lines.*]`` or ``[cameras.<id>.zones.*]``:
- ``camera:<id>:line:<name>:{in,out}``: the crossings of each frame that had any, at the
  frame's time (sum rollups per minute, hour, day);
- ``camera:<id>:zone:<name>:occupancy`` per processed frame (avg/max rollups per minute and
  hour) and ``:dwell_s``, one sample per person who left;
- ``camera:<id>:events`` (bounded) and ``camera:<id>:counts`` (totals since install and for
  today, occupancy now).
Series samples are written at the frame's own time with ON_DUPLICATE LAST, so writing a result
again (after Redis restarted from a snapshot older than the stage's last commit) changes
nothing.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from rva import keys, schema
from rva.analytics.counting import Counter, Event
from rva.analytics.geometry import Line, Zone
from rva.config import CameraSection, Config
from rva.stages.base import Stage, StageOutput
from rva.stages.clock import StageClock

Box = tuple[float, float, float, float]


def lines_of(camera: CameraSection, cls: str = "person") -> list[Line]:
    """The camera's lines that count this class."""
    return [
        Line(name, s.points[0], s.points[1], s.in_side)
        for name, s in camera.lines.items()
        if cls in s.classes
    ]


def zones_of(camera: CameraSection, cls: str = "person") -> list[Zone]:
    return [Zone(name, tuple(s.polygon)) for name, s in camera.zones.items() if cls in s.classes]


def classes_of(camera: CameraSection) -> list[str]:
    """Every class a line or zone of the camera counts, persons first."""
    named = {c for s in camera.lines.values() for c in s.classes}
    named |= {c for s in camera.zones.values() for c in s.classes}
    return sorted(named, key=lambda c: (c != "person", c))


def counter_for(
    camera: CameraSection,
    cfg: Config,
    state: dict[str, Any] | None = None,
    cls: str = "person",
) -> Counter:
    """The Counter of one camera and class (the lines and zones that count it), with the
    tracker settings of rva.toml; resumed from a state."""
    params = {"max_miss_ms": cfg.analytics.max_miss_ms, "min_hits": cfg.analytics.min_hits}
    lines, zones = lines_of(camera, cls), zones_of(camera, cls)
    if state:
        return Counter.from_state(state, lines, zones, **params)
    return Counter(lines, zones, **params)


def counters_for(
    camera: CameraSection, cfg: Config, states: dict[str, Any] | None = None
) -> dict[str, Counter]:
    """One Counter (a tracker with its lines and zones) per class the camera counts: a car is
    never matched to a person's track. States of classes no longer counted are dropped."""
    states = states or {}
    return {cls: counter_for(camera, cfg, states.get(cls), cls) for cls in classes_of(camera)}


def boxes_of(fields: dict[bytes, bytes]) -> list[Box]:
    """The results stream's flat "[x1, y1, x2, y2, ...]" as boxes."""
    return _flat_boxes(json.loads(fields.get(b"boxes", b"[]")), "boxes")


def _flat_boxes(flat: object, what: str) -> list[Box]:
    if not isinstance(flat, list) or len(flat) % 4:
        raise ValueError(f"{what} field is not a flat list of x1, y1, x2, y2: {flat!r:.80}")
    return [
        (float(flat[i]), float(flat[i + 1]), float(flat[i + 2]), float(flat[i + 3]))
        for i in range(0, len(flat), 4)
    ]


def boxes_by_class(fields: dict[bytes, bytes]) -> dict[str, list[Box]]:
    """Persons from ``boxes``; other classes from ``objects`` ({"car": [x1, y1, ...], ...},
    written when a line or zone counts them)."""
    out = {"person": boxes_of(fields)}
    objects = json.loads(fields.get(b"objects", b"{}"))
    if not isinstance(objects, dict):
        raise ValueError(f"objects field is not a JSON object: {objects!r:.80}")
    for cls, flat in objects.items():
        out[str(cls)] = _flat_boxes(flat, f"objects.{cls}")
    return out


class CountingStage(Stage):
    type_key = "counting"

    def __init__(self, camera: str, cfg: Config) -> None:
        super().__init__(camera, cfg)
        self.section = cfg.camera(camera)
        self.counters = counters_for(self.section, cfg)
        # Totals by "line:<name>:<direction>", since install and for `day` (the device's date).
        self.totals: dict[str, int] = {}
        self.today: dict[str, int] = {}
        self.clock = StageClock(frame_ms=1000.0 / self.section.fps)

    @property
    def day(self) -> str:
        return self.clock.day

    @classmethod
    def wanted(cls, camera: str, cfg: Config) -> bool:
        section = cfg.camera(camera)
        return cfg.analytics.enabled and bool(section.lines or section.zones)

    def events_maxlen(self) -> int:
        return self.cfg.analytics.events_maxlen

    def reconfigure(self, cfg: Config) -> None:
        """Lines and zones changed live: the tracks go on; a moved or new line starts afresh
        for every track (Counter.from_state), an unchanged one keeps its state, every name
        keeps its totals."""
        super().reconfigure(cfg)
        self.section = cfg.camera(self.camera)
        self.counters = counters_for(self.section, cfg, self.counter_states())

    def counter_states(self) -> dict[str, Any]:
        return {cls: counter.to_state() for cls, counter in self.counters.items()}

    # -- series ---------------------------------------------------------------------------
    def ensure(self, client: redis.Redis, timeseries: bool) -> None:
        if not timeseries:
            return
        ensure_series(client, self.camera, self.section, self.cfg)

    # -- state ----------------------------------------------------------------------------
    def load(self, state: dict[str, Any] | None) -> None:
        state = state or {}
        # States before per-class counting kept one person counter under "counter".
        counters = state.get("counters") or (
            {"person": state["counter"]} if "counter" in state else {}
        )
        self.counters = counters_for(self.section, self.cfg, counters)
        self.totals = dict(state.get("totals", {}))
        self.today = dict(state.get("today", {}))
        clock = state.get("clock") or {"day": state.get("day", "")}  # states before the clock
        self.clock = StageClock.from_state(clock, 1000.0 / self.section.fps)

    def dump(self) -> dict[str, Any]:
        return {
            "counters": self.counter_states(),
            "totals": self.totals,
            "today": self.today,
            "day": self.day,
            "clock": self.clock.to_state(),
        }

    # -- one result -----------------------------------------------------------------------
    def handle(self, t_ms: int, fields: dict[bytes, bytes]) -> StageOutput:
        # Tracks and dwell run on the stage's elapsed clock, today's totals on its day: both
        # survive a clock that steps (rva.stages.clock); what is written keeps t_ms.
        elapsed_ms, _day, new_day = self.clock.tick(t_ms)
        if new_day:
            self.today = {}
        found = boxes_by_class(fields)
        out = StageOutput()
        crossings: dict[str, int] = {}
        dwell_at: dict[str, int] = {}
        occupancy = {zone: 0 for zone in self.section.zones}
        tracks: list[list[object]] = []
        for cls, counter in self.counters.items():
            outcome = counter.step(found.get(cls, []), elapsed_ms)
            for event in outcome.events:
                out.events.append({**event_fields(event), "t": t_ms, "class": cls})
                if event.kind == "line":
                    field = f"line:{event.name}:{event.direction}"
                    self.totals[field] = self.totals.get(field, 0) + 1
                    self.today[field] = self.today.get(field, 0) + 1
                    key = keys.line_series(self.camera, event.name, event.direction)
                    crossings[key] = crossings.get(key, 0) + 1
                elif event.direction == "leave" and event.dwell_s is not None:
                    # Two leaving in one frame: 1 ms apart, so neither sample replaces the
                    # other (and a replay writes the same two again).
                    key = keys.zone_series(self.camera, event.name, "dwell_s")
                    offset = dwell_at.get(key, 0)
                    dwell_at[key] = offset + 1
                    out.samples.append((key, t_ms + offset, round(event.dwell_s, 3)))
            for zone, inside in outcome.occupancy.items():
                occupancy[zone] = occupancy.get(zone, 0) + inside
            tracks += [
                [t.id, *(round(v) for v in t.box), *([] if cls == "person" else [cls])]
                for t in outcome.tracks
                if not t.misses
            ]
        out.samples += [(key, t_ms, float(n)) for key, n in crossings.items()]
        for zone, inside in occupancy.items():
            out.samples.append((keys.zone_series(self.camera, zone, "occupancy"), t_ms, inside))
        counts: dict[str, str | int | float] = {"day": self.day, "ts": t_ms}
        for name in self.section.lines:
            for direction in keys.LINE_DIRECTIONS:
                field = f"line:{name}:{direction}"
                counts[field] = self.totals.get(field, 0)
                counts[f"{field}:today"] = self.today.get(field, 0)
        for zone, inside in occupancy.items():
            counts[f"zone:{zone}"] = inside
        counts["tracks"] = json.dumps(tracks)
        out.hashes[keys.counts(self.camera)] = counts
        return out


def event_fields(event: Event) -> dict[str, str | int | float]:
    fields: dict[str, str | int | float] = {
        "track": event.track,
        "kind": event.kind,
        "name": event.name,
        "direction": event.direction,
        "t": event.t_ms,
    }
    if event.dwell_s is not None:
        fields["dwell_s"] = round(event.dwell_s, 3)
    return fields


def ensure_series(client: redis.Redis, camera: str, section: CameraSection, cfg: Config) -> None:
    """Every series and rule of a camera's lines and zones. Series of lines or zones no longer
    in the config are left as they are: what was recorded stays."""
    raw_ms, rollup_ms = schema.retention_ms(cfg)
    for line, spec in section.lines.items():
        for direction in keys.LINE_DIRECTIONS:
            labels = {
                "camera": camera,
                "line": line,
                "direction": direction,
                "classes": ",".join(spec.classes),  # what it counts: person, or car,truck
            }
            source = keys.line_series(camera, line, direction)
            schema.ensure_series(client, source, raw_ms, {**labels, "__name__": "line_crossings"})
            schema.ensure_rules(
                client,
                source,
                [
                    (
                        f"{source}:sum:{suffix}",
                        "sum",
                        bucket,
                        {**labels, "__name__": f"line_crossings_sum_{suffix}"},
                    )
                    for suffix, bucket in keys.LINE_ROLLUPS.items()
                ],
                rollup_ms,
            )
    for zone, zspec in section.zones.items():
        labels = {"camera": camera, "zone": zone, "classes": ",".join(zspec.classes)}
        source = keys.zone_series(camera, zone, "occupancy")
        schema.ensure_series(client, source, raw_ms, {**labels, "__name__": "zone_occupancy"})
        schema.ensure_rules(
            client,
            source,
            [
                (
                    f"{source}:{agg}:{suffix}",
                    agg,
                    bucket,
                    {**labels, "__name__": f"zone_occupancy_{agg}_{suffix}", "aggregation": agg},
                )
                for agg in ("avg", "max")
                for suffix, bucket in keys.ZONE_ROLLUPS.items()
            ],
            rollup_ms,
        )
        dwell = keys.zone_series(camera, zone, "dwell_s")
        schema.ensure_series(client, dwell, raw_ms, {**labels, "__name__": "zone_dwell_s"})
        # Sum and count per minute: the mean dwell of any span once the raw samples are gone
        # (rva.reports); a series made before these rules has dwell in its raw window only.
        schema.ensure_rules(
            client,
            dwell,
            [
                (
                    f"{dwell}:{agg}:1m",
                    agg,
                    60_000,
                    {**labels, "__name__": f"zone_dwell_s_{agg}_1m", "aggregation": agg},
                )
                for agg in ("sum", "count")
            ],
            rollup_ms,
        )
