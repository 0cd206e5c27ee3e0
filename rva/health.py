"""One read of the appliance's state from Redis, shared by /healthz, /metrics, status and top."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from rva import keys
from rva.connection import TRANSIENT, timeseries_available
from rva.redact import secrets

FRAME_STALE_S = 10.0  # no new frame for this long: the camera (or rva-capture) is down
RESULT_STALE_S = 30.0  # no new result for this long while frames arrive: rva-gears is down
# A number (people, fps, stage ms) older than this is shown as stale (greyed, with its age); one
# older than RESULT_STALE_S is not shown at all ("—", "detector idle", as the video says).
VALUE_STALE_S = 10.0
HEARTBEAT_STALE_S = 30.0  # a service not heard from for this long is not running
STOPPED = "stopped "  # a heartbeat "stopped <unix time>": the service stopped cleanly then
RECENT_ERRORS_S = 60.0  # an error counted in rva:errors this recently: status degraded
CLOCK_SLACK_S = 1.0  # the newest frame id this far ahead of Redis's clock: the clock went back
MQTT_STALE_S = 30.0  # rva mqtt writes rva:mqtt every second while it runs
MQTT_DOWN_S = 10.0  # a broker away this long is a problem (a reconnect is not)


def source_key(camera: str) -> str:
    """Hash written by rva capture: ``configured`` (the source in rva.toml), ``in_use`` (the
    camera it opened: ``auto`` resolves to one; empty while none), ``state`` (capturing,
    waiting or error), ``detail`` (why, for a person) and ``since`` (unix time)."""
    return f"camera:{camera}:source"


def _decode(raw: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in raw.items()}


def _id_ms(entry_id: bytes | str | None) -> int | None:
    if not entry_id:
        return None
    return keys.id_ms(entry_id) or None


@dataclass
class CameraState:
    camera: str
    frames: int = 0
    frame_age_s: float | None = None
    result_age_s: float | None = None
    result_id: str | None = None  # the newest result: what people comes from
    people: int | None = None
    gear_lag: int | None = None
    gear_pending: int | None = None
    latest: dict[str, float] = field(default_factory=dict)
    latest_age_s: float | None = None  # of latest's values (the frame they were measured on)
    errors: dict[str, int] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    source: dict[str, str] = field(default_factory=dict)  # see source_key()


def freshness(age_s: float | None) -> str:
    """How a number of this age is shown: live, stale (greyed, with its age), idle (not shown:
    "—") or none (there is none yet)."""
    if age_s is None:
        return "none"
    if age_s > RESULT_STALE_S:
        return "idle"
    return "stale" if age_s > VALUE_STALE_S else "live"


@dataclass
class Snapshot:
    redis: bool
    timeseries: bool = False
    cameras: dict[str, CameraState] = field(default_factory=dict)
    services: dict[str, float] = field(default_factory=dict)  # heartbeat field -> age s
    stopped: dict[str, float] = field(default_factory=dict)  # field -> s since a clean stop
    mqtt: dict[str, str] = field(default_factory=dict)  # rva:mqtt, when rva mqtt runs
    problems: list[str] = field(default_factory=list)
    error: str | None = None
    redis_time: float | None = None  # Redis's clock (TIME) at this read, in unix seconds
    # INFO persistence's rdb_last_bgsave_status, aof_enabled, aof_last_write_status (empty
    # when INFO is not allowed to this user)
    persistence: dict[str, str] = field(default_factory=dict)

    @property
    def status(self) -> str:
        if not self.redis:
            return "down"
        if self.problems or any(c.problems for c in self.cameras.values()):
            return "degraded"
        return "ok"

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status
        data["timeseries"] = "on" if self.timeseries else "off"
        return data


def server_ms(client: redis.Redis) -> int:
    """Redis's own clock in ms (one TIME call): stream ids are stamped with it."""
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


# A stream's length and newest id, without the first and last entries that XINFO STREAM also
# sends (two frames of tens of KB each, for every /api/summary an open page asks each second).
STREAM_HEAD = """
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local length, last = 0, '0-0'
for i = 1, #info, 2 do
  if info[i] == 'length' then length = info[i + 1] end
  if info[i] == 'last-generated-id' then last = info[i + 1] end
end
return {length, last}
"""


def _camera(client: redis.Redis, camera: str, group: str, now_ms: int) -> CameraState:
    state = CameraState(camera)
    try:
        try:
            length, last_id = client.register_script(STREAM_HEAD)(keys=[keys.frames(camera)])
        except redis.exceptions.NoPermissionError:
            # A user without EVAL (the device's read-only default user: `rva status` or `rva
            # doctor` as root): XINFO STREAM says the same, with two frames more on the wire.
            info = client.xinfo_stream(keys.frames(camera))
            length, last_id = info["length"], info["last-generated-id"]
        state.frames = int(length)
        last = _id_ms(last_id)
        state.frame_age_s = (now_ms - last) / 1000 if last else None
    except redis.ResponseError:
        state.problems.append("no frames yet (is rva-capture running?)")
    results = client.xrevrange(keys.results(camera), count=1)
    if results:
        ref_id, fields = results[0]
        state.result_age_s = (now_ms - (_id_ms(ref_id) or now_ms)) / 1000
        state.result_id = ref_id.decode()
        people = fields.get(b"people", b"0")
        state.people = int(people) if people.isdigit() else None  # malformed: unknown
    try:
        for g in client.xinfo_groups(keys.frames(camera)):
            if g["name"].decode() == group:
                state.gear_pending = int(g["pending"])
                lag = g.get("lag")
                state.gear_lag = int(lag) if lag is not None else None
    except redis.ResponseError:
        pass
    state.latest = {k: float(v) for k, v in _decode(client.hgetall(keys.latest(camera))).items()}
    if "ts" in state.latest:
        state.latest_age_s = max(0.0, (now_ms - state.latest["ts"]) / 1000)
    prefix = f"{camera}:"
    state.errors = {
        k.removeprefix(prefix): int(v)
        for k, v in _decode(client.hgetall(keys.ERRORS)).items()
        if k.startswith(prefix)
    }
    state.counters = {
        k.removeprefix(prefix): int(v)
        for k, v in _decode(client.hgetall(keys.STATS)).items()
        if k.startswith(prefix)
    }
    # Written without secrets by capture; redacted again for what an older capture wrote.
    state.source = {k: secrets(v) for k, v in _decode(client.hgetall(source_key(camera))).items()}
    if state.source.get("state") in ("waiting", "error"):
        state.problems.append(f"camera: {state.source.get('detail') or state.source['state']}")
    if state.frame_age_s is not None and state.frame_age_s > FRAME_STALE_S:
        state.problems.append(
            f"last frame {state.frame_age_s:.0f}s old (camera or rva-capture down)"
        )
    fresh_frames = state.frame_age_s is not None and state.frame_age_s <= FRAME_STALE_S
    if fresh_frames and (state.result_age_s is None or state.result_age_s > RESULT_STALE_S):
        state.problems.append("frames arrive but no results (is rva-gears running?)")
    behind = -min(state.frame_age_s or 0.0, state.result_age_s or 0.0)
    if behind > CLOCK_SLACK_S:  # negative ages are never "ok"
        state.problems.append(
            f"Redis's clock is {behind:.0f}s behind the newest frame (the clock went back: set "
            "back, or stale at boot): time series are held until it catches up"
        )
    return state


def last_heard(snap: Snapshot, service: str) -> float | None:
    """Seconds since any process of this service (rva <service>, on any host) last beat, if one
    beats and did not stop cleanly since."""
    ages = [age for name, age in snap.services.items() if name.split(":")[0] == service]
    return min(ages, default=None)


def mqtt_problem(link: dict[str, str], now: float) -> str | None:
    """What is wrong with the MQTT link that rva mqtt reported in rva:mqtt, if anything."""
    state = link.get("state")
    if not state or state == "stopped":
        return None
    age = now - float(link.get("updated") or 0)
    if age > MQTT_STALE_S:
        return f"MQTT: rva-mqtt has not reported for {age:.0f}s (is it running?)"
    away = now - float(link.get("since") or now)
    if state == "error" or (state in ("down", "connecting") and away > MQTT_DOWN_S):
        return f"MQTT: {link.get('detail') or state}"
    return None


def recent_errors(client: redis.Redis, now: float) -> dict[str, list[str]]:
    """The kinds of error (rva:errors) counted in the last RECENT_ERRORS_S, by camera."""
    found: dict[str, list[str]] = {}
    for name, at in sorted(_decode(client.hgetall(keys.ERRORS_LAST)).items()):
        camera, _, kind = name.partition(":")
        if now - float(at) <= RECENT_ERRORS_S:
            found.setdefault(camera, []).append(kind)
    return found


PERSISTENCE_FIELDS = ("rdb_last_bgsave_status", "aof_enabled", "aof_last_write_status")


def redis_problems(
    client: redis.Redis, now: float, persistence_seen: dict[str, str] | None = None
) -> list[str]:
    """What Redis itself says is wrong: writes refused, snapshots that fail, memory full.
    PERSISTENCE_FIELDS of INFO persistence are copied into persistence_seen, when given."""
    problems = []
    try:
        client.ping()
    except redis.ResponseError as exc:  # MISCONF: PING is refused along with every write
        problems.append(f"Redis refuses writes: {str(exc).split('. ')[0]}")
    try:
        persistence, memory = client.info("persistence"), client.info("memory")
    except redis.ResponseError:  # INFO not allowed to this user (an ACL without +info)
        return problems
    if persistence_seen is not None:
        persistence_seen |= {k: str(persistence[k]) for k in PERSISTENCE_FIELDS if k in persistence}
    if persistence.get("rdb_last_bgsave_status") == "err":
        try:  # when Redis started, on its own clock (the one rdb_last_save_time is on)
            uptime = float(client.info("server")["uptime_in_seconds"])
            started: float | None = server_ms(client) / 1000 - uptime
        except (redis.ResponseError, KeyError, ValueError):
            started = None
        problems.append(snapshot_problem(persistence, now, started))
    if persistence.get("aof_enabled") and persistence.get("aof_last_write_status") == "err":
        problems.append("Redis cannot write its append-only file (aof_last_write_status:err)")
    limit, used = int(memory.get("maxmemory") or 0), int(memory.get("used_memory") or 0)
    if limit and used >= 0.9 * limit:
        policy = memory.get("maxmemory_policy", "?")
        effect = {"noeviction": "writes are refused"}.get(policy, f"keys are evicted ({policy})")
        problems.append(
            f"Redis memory {100 * used / limit:.0f}% full: {used / 2**20:.1f} of "
            f"{limit / 2**20:.1f} MB (maxmemory); {effect} when it is full"
        )
    return problems


def snapshot_problem(persistence: dict[str, Any], now: float, started: float | None) -> str:
    """What a failing snapshot puts at risk. Redis sets rdb_last_save_time when it starts (or
    loads its snapshot) and at each good save: it is "the last good one" only when it is later
    than the start (rdb_saves counts failed saves too, so it cannot tell)."""
    saved = float(persistence.get("rdb_last_save_time") or now)
    since = now - saved
    head = "Redis cannot save its snapshot (rdb_last_bgsave_status:err: disk full or read-only?)"
    lost = "everything counted since is lost on a power cut"
    if started is None or saved > started + 1.5:  # both in whole seconds
        return f"{head}: the last good one is {since / 60:.0f} min old, and {lost}"
    loaded = int(persistence.get("rdb_last_load_keys_loaded", 0) or 0) > 0
    kept = " (the snapshot it loaded then is on disk)" if loaded else ""
    return f"{head}: none saved since Redis started {since / 60:.0f} min ago{kept}, and {lost}"


def snapshot(client: redis.Redis, cameras: list[str], group: str) -> Snapshot:
    try:
        now_ms = server_ms(client)
        snap = Snapshot(redis=True, timeseries=timeseries_available(client))
        snap.redis_time = now_ms / 1000
        for camera in cameras:
            snap.cameras[camera] = _camera(client, camera, group, now_ms)
        now = time.time()
        for camera, kinds in recent_errors(client, now).items():
            if state := snap.cameras.get(camera):
                counted = ", ".join(f"{k} ({state.errors.get(k, '?')} in all)" for k in kinds)
                state.problems.append(
                    f"errors in the last {RECENT_ERRORS_S:.0f}s: {counted} (see rva:errors)"
                )
        for name, beat in _decode(client.hgetall(keys.HEARTBEAT)).items():
            stopped = beat.startswith(STOPPED)
            try:
                age = now - float(beat.removeprefix(STOPPED))
            except ValueError:
                continue  # not a heartbeat
            if age < 24 * 3600:
                (snap.stopped if stopped else snap.services)[name] = round(age, 1)
        if not snap.timeseries:
            snap.problems.append("RedisTimeSeries not available: time series are off")
        snap.mqtt = _decode(client.hgetall(keys.MQTT))
        if problem := mqtt_problem(snap.mqtt, now):
            snap.problems.append(problem)
        snap.problems += redis_problems(client, now, snap.persistence)
        return snap
    except TRANSIENT as exc:
        return Snapshot(redis=False, error=str(exc), problems=[f"Redis unreachable: {exc}"])
    except redis.ResponseError as exc:  # never a traceback: say what Redis answered
        return Snapshot(redis=True, error=str(exc), problems=[f"Redis refused a read: {exc}"])
