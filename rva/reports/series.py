"""Reading a report from the counting stage's series (rva.stages.counting).

Every bucket is aggregated by RedisTimeSeries itself: TS.RANGE … ALIGN <bucket start>
AGGREGATION <agg> <bucket length>, one range per run of equally long buckets (a month by day
with a DST change is three runs). A series is read raw where its raw samples are all still kept
(the last ``retention`` before its newest sample) and from its per-minute rollup before that:
the rollup holds every minute but the newest (a rollup bucket is written once the next one gets
a sample), the raw series every sample of its window, so a sum over a report equals the stage's
totals for the same span. Rollups read: ``:sum:1m`` of a line's crossings, ``:avg:1m`` and
``:max:1m`` of a zone's occupancy, ``:sum:1m`` and ``:count:1m`` of its dwell times (those two
exist since the dwell rollups were added: before them, dwell is in the raw window only).
Average occupancy is the mean, over the minutes that had frames, of each minute's average (what
the rollup holds; the raw part is averaged per minute the same way).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from dataclasses import asdict
from datetime import tzinfo
from typing import Any

import redis

from rva import keys
from rva.connection import timeseries_available
from rva.reports.calendar import Bucket, buckets, local_iso, zone_name

MINUTE_MS = 60_000
Values = list[float | None]  # one per bucket; None: nothing there
Report = dict[str, Any]


class NoTimeSeries(RuntimeError):
    """The Redis has no RedisTimeSeries: there is nothing to report from."""


def find_names(
    client: redis.Redis, camera: str, lines: Iterable[str] = (), zones: Iterable[str] = ()
) -> tuple[list[str], list[str]]:
    """The lines and zones to report: those given (the configured ones, in their order), then
    any other whose series exist for this camera (found by their labels)."""
    found_lines, found_zones = list(lines), list(zones)
    prefix = f"camera:{camera}:"
    for metric, kind, names in (
        ("line_crossings", "line", found_lines),
        ("zone_occupancy", "zone", found_zones),
        ("zone_dwell_s", "zone", found_zones),
    ):
        raw = client.execute_command("TS.QUERYINDEX", f"camera={camera}", f"__name__={metric}")
        extra = set()
        for key in raw:
            text = key.decode() if isinstance(key, bytes) else str(key)
            if text.startswith(f"{prefix}{kind}:"):
                extra.add(text[len(prefix) + len(kind) + 1 :].rsplit(":", 1)[0])
        names += sorted(extra - set(names))
    return found_lines, found_zones


def _info(client: redis.Redis, key: str) -> dict[bytes, Any] | None:
    """TS.INFO of key as a dict (None when the series does not exist)."""
    try:
        raw = client.execute_command("TS.INFO", key)
    except redis.ResponseError:
        return None
    return dict(zip(raw[::2], raw[1::2], strict=False))


def classes_of(info: dict[bytes, Any] | None) -> str:
    """What a line's or zone's series counts, from its `classes` label (TS.INFO as _info gives
    it; "person" for series made before per-class counting)."""
    labels = {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in (info or {}).get(b"labels") or []
    }
    return str(labels.get("classes", "person"))


def _cut(info: dict[bytes, Any] | None) -> int | None:
    """Where a raw series starts to hold every sample (a minute boundary): the rollup is read
    before it. None when the series does not exist."""
    if info is None:
        return None
    last, retention = int(info[b"lastTimestamp"]), int(info[b"retentionTime"])
    if not retention:
        return 0
    kept_from = -(-(last - retention) // MINUTE_MS) * MINUTE_MS
    return min(kept_from, last - last % MINUTE_MS)  # the newest minute is in the raw series only


def _runs(bks: list[Bucket]) -> list[tuple[int, int, int]]:
    """Runs of contiguous buckets of one length: (start ms, length ms, end ms)."""
    runs: list[list[int]] = []
    for b in bks:
        length = b.end_ms - b.start_ms
        if runs and runs[-1][1] == length and runs[-1][2] == b.start_ms:
            runs[-1][2] = b.end_ms
        else:
            runs.append([b.start_ms, length, b.end_ms])
    return [(a, n, z) for a, n, z in runs]


class _Reader:
    """Queues TS.RANGE per run of buckets in one pipeline; results go by bucket start."""

    def __init__(self, client: redis.Redis, bks: list[Bucket]) -> None:
        self.pipe = client.pipeline(transaction=False)
        self.runs = _runs(bks)
        self.starts = [b.start_ms for b in bks]
        self.lo, self.hi = bks[0].start_ms, bks[-1].end_ms
        # per query: where its values go, and whether they merge by max (else by sum);
        # a second target counts the minutes (per_minute_avg).
        self.queued: list[tuple[Values, Values | None, bool]] = []

    def per_bucket(self, key: str, agg: str, lo: int, hi: int, into: Values) -> None:
        """``agg`` of key's samples in [lo, hi), per bucket, merged into ``into``."""
        lo, hi = max(lo, self.lo), min(hi, self.hi)
        for start, length, end in self.runs:
            a, b = max(lo, start), min(hi, end)
            if a < b:
                self.pipe.execute_command(
                    "TS.RANGE", key, a, b - 1, "ALIGN", start, "AGGREGATION", agg, length
                )
                self.queued.append((into, None, agg == "max"))

    def per_minute_avg(self, key: str, lo: int, hi: int, sums: Values, minutes: Values) -> None:
        """Each minute's average of key's samples in [lo, hi), summed per bucket, with the
        number of those minutes: what a per-minute avg rollup holds."""
        lo, hi = max(lo, self.lo), min(hi, self.hi)
        if lo < hi:
            self.pipe.execute_command("TS.RANGE", key, lo, hi - 1, "AGGREGATION", "avg", MINUTE_MS)
            self.queued.append((sums, minutes, False))

    def run(self) -> None:
        results = self.pipe.execute(raise_on_error=False)
        for (into, minutes, by_max), result in zip(self.queued, results, strict=True):
            if isinstance(result, redis.ResponseError):
                continue  # a rollup that does not exist (dwell before its rules): nothing there
            for t, v in result:
                i = bisect.bisect_right(self.starts, int(t)) - 1
                _merge(into, i, float(v), by_max)
                if minutes is not None:
                    _merge(minutes, i, 1.0, False)


def _merge(into: Values, i: int, v: float, by_max: bool) -> None:
    old = into[i]
    into[i] = v if old is None else (max(old, v) if by_max else old + v)


def report(
    client: redis.Redis,
    camera: str,
    bucket: str,
    lo: int,
    hi: int,
    tz: tzinfo,
    *,
    lines: Iterable[str] = (),
    zones: Iterable[str] = (),
    now_ms: int,
) -> Report:
    """The report of [lo, hi) (from span()) as a dict: buckets, and per line and zone one
    value per bucket (None for buckets that start after now, and where nothing was measured)."""
    if not timeseries_available(client):
        raise NoTimeSeries(
            "reports need RedisTimeSeries: this Redis has none, so counts are kept in the "
            "results stream only (see docs/redis-schema.md)"
        )
    bks = buckets(bucket, lo, hi, tz)
    names_lines, names_zones = find_names(client, camera, lines, zones)
    reader = _Reader(client, bks)
    n = len(bks)

    def empty() -> Values:
        return [None] * n

    infos: dict[str, dict[bytes, Any] | None] = {}

    def info(key: str) -> dict[bytes, Any] | None:
        if key not in infos:
            infos[key] = _info(client, key)
        return infos[key]

    def both(raw: str, rollup: str, agg: str, rollup_agg: str, into: Values) -> None:
        cut = _cut(info(raw))
        if cut is None:
            return
        reader.per_bucket(raw, agg, cut, hi, into)
        reader.per_bucket(rollup, rollup_agg, lo, cut, into)

    line_values = []
    for name in names_lines:
        values = {}
        for direction in keys.LINE_DIRECTIONS:
            source = keys.line_series(camera, name, direction)
            values[direction] = empty()
            both(source, f"{source}:sum:1m", "sum", "sum", values[direction])
        line_values.append((name, values))
    zone_values = []
    for name in names_zones:
        occupancy = keys.zone_series(camera, name, "occupancy")
        dwell = keys.zone_series(camera, name, "dwell_s")
        parts = {k: empty() for k in ("avg_sum", "avg_n", "max", "dwell_sum", "dwell_n")}
        cut = _cut(info(occupancy))
        if cut is not None:
            reader.per_minute_avg(occupancy, cut, hi, parts["avg_sum"], parts["avg_n"])
            reader.per_bucket(f"{occupancy}:avg:1m", "sum", lo, cut, parts["avg_sum"])
            reader.per_bucket(f"{occupancy}:avg:1m", "count", lo, cut, parts["avg_n"])
            reader.per_bucket(occupancy, "max", cut, hi, parts["max"])
            reader.per_bucket(f"{occupancy}:max:1m", "max", lo, cut, parts["max"])
        both(dwell, f"{dwell}:sum:1m", "sum", "sum", parts["dwell_sum"])
        both(dwell, f"{dwell}:count:1m", "count", "sum", parts["dwell_n"])
        zone_values.append((name, parts))
    reader.run()

    future = [b.start_ms > now_ms for b in bks]

    def counts(values: Values) -> list[int | None]:
        return [None if f else int(v or 0) for v, f in zip(values, future, strict=True)]

    def ratio(top: Values, bottom: Values, digits: int) -> list[float | None]:
        return [
            round(t / d, digits) if t is not None and d else None
            for t, d in zip(top, bottom, strict=True)
        ]

    out_lines = []
    for name, values in line_values:
        per_direction = {d: counts(v) for d, v in values.items()}
        totals = {d: sum(v or 0 for v in per_direction[d]) for d in per_direction}
        what = classes_of(info(keys.line_series(camera, name, "in")))
        out_lines.append({"name": name, "classes": what, **per_direction, "totals": totals})
    out_zones = [
        {
            "name": name,
            "classes": classes_of(info(keys.zone_series(camera, name, "occupancy"))),
            "occupancy_avg": ratio(p["avg_sum"], p["avg_n"], 2),
            "occupancy_max": [None if v is None else _number(v) for v in p["max"]],
            "dwell_mean_s": ratio(p["dwell_sum"], p["dwell_n"], 1),
        }
        for name, p in zone_values
    ]
    return {
        "camera": camera,
        "bucket": bucket,
        "timezone": zone_name(tz),
        "from": local_iso(lo, tz),
        "to": local_iso(hi, tz),
        "buckets": [asdict(b) for b in bks],
        "lines": out_lines,
        "zones": out_zones,
    }


def _number(v: float) -> float | int:
    return int(v) if math.isfinite(v) and v == int(v) else round(v, 2)
