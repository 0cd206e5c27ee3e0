"""/metrics: the appliance's state in Prometheus text format, read from Redis at scrape time,
with rva web's own build and process metrics."""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rva import __version__, keys
from rva.health import Snapshot

# Every kind of bad input or refused write counted in rva:errors ("<camera>:<kind>"), exported
# as 0 for each camera until it happens, so that rate() and alerts on rva_errors_total work
# from the first scrape. Kinds found in Redis but not listed here are exported too.
ERROR_KINDS = (
    # a frame the gear cannot decode (rva.images.ImageRejected) or an entry without one
    "empty_frame",
    "oversized",
    "unsupported_format",
    "corrupt_frame",
    "bad_entry",
    # the gear worker: a failed entry, samples RedisTimeSeries refused or held back
    "gear_failed",
    "sample_refused",
    "samples_held",
    # capture: frames Redis refused
    "frames_refused",
    # the counting stage
    "stage_gap",
    "stage_bad_result",
    "stage_sample_refused",
    "stage_samples_held",
)


class BuildCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "rva_build_info",
            "1, labelled with the running rva and Python versions",
            labels=["version", "python"],
        )
        info.add_metric([__version__, platform.python_version()], 1.0)
        yield info


class RvaCollector(Collector):
    def __init__(
        self,
        take_snapshot: Callable[[], Snapshot],
        take_counts: Callable[[], dict[str, dict[str, int]]] | None = None,
        take_rejected: Callable[[], dict[str, dict[str, int]]] | None = None,
        take_classes: Callable[[], dict[str, dict[str, str]]] | None = None,
    ) -> None:
        self.take_snapshot = take_snapshot
        self.take_counts = take_counts
        self.take_rejected = take_rejected
        # camera -> {"line:<name>" | "zone:<name>": "person" or "car,truck"}: the label
        # `classes` of the counting metrics ("" for a line no longer configured).
        self.take_classes = take_classes

    def collect(self) -> Iterator[Metric]:
        snap = self.take_snapshot()
        up = GaugeMetricFamily("rva_redis_up", "1 when Redis answers")
        up.add_metric([], 1.0 if snap.redis else 0.0)
        yield up
        ts = GaugeMetricFamily("rva_timeseries_enabled", "1 when RedisTimeSeries is available")
        ts.add_metric([], 1.0 if snap.timeseries else 0.0)
        yield ts
        yield from self.redis_state(snap)
        people = GaugeMetricFamily(
            "rva_people", "People in the newest processed frame", labels=["camera"]
        )
        fps = GaugeMetricFamily(
            "rva_fps", "Frames per second into and out of the gear", labels=["camera", "direction"]
        )
        stage = GaugeMetricFamily(
            "rva_stage_seconds",
            "Seconds per stage for the newest frame",
            labels=["camera", "stage"],
        )
        frame_age = GaugeMetricFamily(
            "rva_frame_age_seconds", "Age of the newest captured frame", labels=["camera"]
        )
        result_age = GaugeMetricFamily(
            "rva_result_age_seconds", "Age of the newest result", labels=["camera"]
        )
        lag = GaugeMetricFamily(
            "rva_gear_lag_entries", "Frames not yet delivered to a worker", labels=["camera"]
        )
        pending = GaugeMetricFamily(
            "rva_gear_pending_entries", "Frames delivered, not yet acknowledged", labels=["camera"]
        )
        frames = CounterMetricFamily(
            "rva_frames", "Frames by outcome", labels=["camera", "outcome"]
        )
        errors = CounterMetricFamily(
            "rva_errors", "Bad input skipped, by kind", labels=["camera", "kind"]
        )
        for cam, st in snap.cameras.items():
            if st.people is not None:
                people.add_metric([cam], st.people)
            for direction in ("in", "out"):
                if f"{direction}_fps" in st.latest:
                    fps.add_metric([cam, direction], st.latest[f"{direction}_fps"])
            for name in keys.STAGES:
                if f"prf_{name}" in st.latest:
                    # camera:<id>:latest keeps the gear's prf_* in milliseconds
                    stage.add_metric([cam, name], st.latest[f"prf_{name}"] / 1000.0)
            if st.frame_age_s is not None:
                frame_age.add_metric([cam], st.frame_age_s)
            if st.result_age_s is not None:
                result_age.add_metric([cam], st.result_age_s)
            if st.gear_lag is not None:
                lag.add_metric([cam], st.gear_lag)
            if st.gear_pending is not None:
                pending.add_metric([cam], st.gear_pending)
            for outcome, n in sorted(st.counters.items()):
                frames.add_metric([cam, outcome], n)
            for kind, n in sorted((dict.fromkeys(ERROR_KINDS, 0) | st.errors).items()):
                errors.add_metric([cam, kind], n)
        yield from (people, fps, stage, frame_age, result_age, lag, pending, frames, errors)
        if self.take_counts and snap.redis:
            yield from self.counting(
                self.take_counts(), self.take_classes() if self.take_classes else {}
            )
        if self.take_rejected:
            rejected = CounterMetricFamily(
                "rva_web_frames_rejected",
                "Frames rva web did not decode for /video (oversized, corrupt, ...), by kind",
                labels=["camera", "kind"],
            )
            for cam, kinds in self.take_rejected().items():
                for kind, n in sorted(kinds.items()):
                    rejected.add_metric([cam, kind], n)
            yield rejected

    @staticmethod
    def redis_state(snap: Snapshot) -> Iterator[Metric]:
        """Redis's clock (against the scrape's time: clock skew) and whether it can persist."""
        if snap.redis_time is not None:
            clock = GaugeMetricFamily(
                "rva_redis_time_seconds",
                "Redis's clock (TIME) at the scrape, unix seconds: what frames are stamped with",
            )
            clock.add_metric([], snap.redis_time)
            yield clock
        saved = snap.persistence.get("rdb_last_bgsave_status")
        if saved:
            rdb = GaugeMetricFamily(
                "rva_redis_rdb_last_bgsave_ok",
                "1 when Redis's last snapshot (RDB) was saved, 0 when it failed",
            )
            rdb.add_metric([], 1.0 if saved == "ok" else 0.0)
            yield rdb
        written = snap.persistence.get("aof_last_write_status")
        if snap.persistence.get("aof_enabled") == "1" and written:
            aof = GaugeMetricFamily(
                "rva_redis_aof_last_write_ok",
                "1 when Redis's last append-only file write succeeded, 0 when it failed",
            )
            aof.add_metric([], 1.0 if written == "ok" else 0.0)
            yield aof

    @staticmethod
    def counting(
        totals: dict[str, dict[str, int]], classes: dict[str, dict[str, str]]
    ) -> Iterator[Metric]:
        crossings = CounterMetricFamily(
            "rva_line_crossings",
            "People (or the line's classes) who crossed a counting line, since install",
            labels=["camera", "line", "direction", "classes"],
        )
        occupancy = GaugeMetricFamily(
            "rva_zone_occupancy",
            "People (or the zone's classes) in a zone now",
            labels=["camera", "zone", "classes"],
        )
        for cam, fields in totals.items():
            what = classes.get(cam, {})
            for field, n in sorted(fields.items()):
                kind, name, *rest = field.split(":")
                if kind == "line" and rest:
                    crossings.add_metric([cam, name, rest[0], what.get(f"line:{name}", "")], n)
                elif kind == "zone":
                    occupancy.add_metric([cam, name, what.get(f"zone:{name}", "")], n)
        yield from (crossings, occupancy)


def render(
    take_snapshot: Callable[[], Snapshot],
    take_counts: Callable[[], dict[str, dict[str, int]]] | None = None,
    take_rejected: Callable[[], dict[str, dict[str, int]]] | None = None,
    take_classes: Callable[[], dict[str, dict[str, str]]] | None = None,
) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RvaCollector(take_snapshot, take_counts, take_rejected, take_classes))
    registry.register(BuildCollector())
    ProcessCollector(registry=registry)  # process_*: this rva web process, from /proc/self
    return generate_latest(registry)
