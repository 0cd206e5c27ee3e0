"""The Redis key schema. Names follow the original RedisEdge demo so its tools still work."""

from __future__ import annotations

# Per-frame stage timings, in milliseconds (the seed's prf_* series).
STAGES = ("read", "resize", "model", "boxes", "store", "total")
# Every time series a camera owns, by metric name (the __name__ label). motion: the changed
# share of each frame the detector ran on (rva.motion), 0..1.
METRICS = ("people", "in_fps", "out_fps", "motion", *(f"prf_{s}" for s in STAGES))
# Rollups of the people count: aggregation × bucket in real minutes.
ROLLUP_AGGREGATIONS = ("avg", "min", "max")
ROLLUP_MINUTES = (1, 5, 15)

GEARS = "rva:gears"  # hash: gear id -> JSON registration
MODELS = "rva:models"  # set of model names stored in Redis
ERRORS = "rva:errors"  # hash: "<camera>:<kind>" -> count (corrupt_frame, bad_entry, oversized, ...)
ERRORS_LAST = "rva:errors:last"  # hash: "<camera>:<kind>" -> unix time of the newest one
# hash: "<camera>:<counter>" -> count (processed, skipped, reclaimed, motion_skipped: frames the
# motion gate kept from the detector, ...)
STATS = "rva:stats"
HEARTBEAT = "rva:heartbeat"  # hash: "<service>:<host>:<pid>" -> unix time of last loop
TIMESERIES_FLAG = "rva:timeseries"  # "on" / "off", written by rva init


def frames(camera: str) -> str:
    """Input stream: fields count (frame number) and image (JPEG bytes)."""
    return f"camera:{camera}"


def results(camera: str) -> str:
    """Output stream: fields ref (input id), boxes ("[x1, y1, x2, y2, ...]"), people."""
    return f"camera:{camera}:yolo"


def series(camera: str, metric: str) -> str:
    return f"camera:{camera}:{metric}"


def rollup(camera: str, aggregation: str, minutes: int) -> str:
    return f"camera:{camera}:people:{aggregation}:{minutes}m"


def next_frame(camera: str) -> str:
    """Stream (one entry kept) on which a gears worker says, once the model has run on a frame,
    that it will take the next frame: capture with rate = "max" sends it then, so that it is
    in the stream when the worker comes back for it. Field: ref (the frame just finished)."""
    return f"camera:{camera}:next"


def latest(camera: str) -> str:
    """Hash of the newest per-frame values (people, in_fps, out_fps, prf_*), with or without
    RedisTimeSeries, for /metrics, rva top and the page."""
    return f"camera:{camera}:latest"


def id_ms(entry_id: bytes | str) -> int:
    """A stream id's milliseconds part: the time Redis (or the writer) stamped the entry."""
    return id_order(entry_id)[0]


def id_order(entry_id: bytes | str) -> tuple[int, int]:
    """A stream id as (milliseconds, sequence), which compare in the stream's order."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def model(name: str) -> str:
    """Hash: manifest (JSON) and one field per model file (bytes)."""
    return f"rva:model:{name}"


def gear_id(gear: str, camera: str) -> str:
    return f"{gear}:{camera}"


# -- counting analytics (the per-camera stage after detection) ---------------------------------
LINE_DIRECTIONS = ("in", "out")
# Rollups of crossings (sums) and occupancy (avg, max): name suffix -> bucket in ms.
LINE_ROLLUPS = {"1m": 60_000, "1h": 3_600_000, "1d": 86_400_000}
ZONE_ROLLUPS = {"1m": 60_000, "1h": 3_600_000}


def line_series(camera: str, line: str, direction: str) -> str:
    """Crossings of a line in one direction: one sample per frame that had any, at its time."""
    return f"camera:{camera}:line:{line}:{direction}"


def zone_series(camera: str, zone: str, metric: str) -> str:
    """metric: occupancy (per processed frame) or dwell_s (one sample per track that left)."""
    return f"camera:{camera}:zone:{zone}:{metric}"


def events(camera: str) -> str:
    """Stream of crossings and zone enter/leave: track, kind, name, direction, t, dwell_s."""
    return f"camera:{camera}:events"


def counts(camera: str) -> str:
    """Hash: line:<name>:<dir> (since install), line:<name>:<dir>:today, day, zone:<name> (now),
    ts (the newest counted frame) — what the page, /metrics and MQTT show."""
    return f"camera:{camera}:counts"


def stage_state(camera: str, stage: str) -> str:
    """Hash: last (results-stream id processed), ref (its frame id), state (JSON)."""
    return f"camera:{camera}:stage:{stage}"


def stage_lease(camera: str, stage: str) -> str:
    """String: the one instance allowed to run this stage for this camera (expires)."""
    return f"camera:{camera}:stage:{stage}:lease"


# -- MQTT (rva mqtt) ---------------------------------------------------------------------------
# hash: the update being installed (id, version, bundle, at), written by rva update; the new
# slot's health check finds it there when Redis kept its data through the update
UPDATE = "rva:update"
MQTT = "rva:mqtt"  # hash: the broker link as rva mqtt sees it (state, detail, broker, updated, ...)
MQTT_ANNOUNCED = "rva:mqtt:announced"  # hash: discovery config topic -> its state topics (JSON)
MQTT_EVENTS = "rva:mqtt:events"  # hash: camera -> id of the last camera:<id>:events entry sent
