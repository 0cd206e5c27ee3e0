"""rva gears: run the registered gears as members of a Redis consumer group.

- At-least-once: an entry leaves the group's pending list only when its result is written,
  and both happen in one server-side script that first checks this worker still owns the
  entry — so a result is never written twice, even when a slow worker's entry was reclaimed.
- Entries left pending by a dead worker are taken over with XAUTOCLAIM after claim_idle_ms.
- Any number of workers, on this host or others, share a camera through the group.
- Adaptive downsampling: of the frames waiting when a worker comes back for more, only the
  newest is processed; the older ones are acknowledged as skipped. The pipeline thus runs at
  its own speed with the least latency, whatever the camera's rate.
- With the motion gate in the gear (gear.motion_gate = "gear"), a still frame is acknowledged
  without a result and counted as motion_skipped in rva:stats.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from dataclasses import dataclass, field

import cv2
import redis

from rva import keys, schema, shapes
from rva.config import Config
from rva.connection import TRANSIENT, timeseries_available
from rva.gears import GEAR_TYPES, Entry, Gear, GearError, Registration, Result
from rva.models import store
from rva.models.store import ModelBundle
from rva.ratelog import RateLimitedLog
from rva.runtime import Runtime
from rva.services.gears import models
from rva.services.gears.store import STORE, Deferred
from rva.stages.counting import classes_of
from rva.tally import Tally

log = logging.getLogger(__name__)
warn = RateLimitedLog(log)  # per kind: a stream of bad frames is said once a minute

# Consumers of the group that are gone: idle this long (and at least 2 × claim_idle_ms) with
# nothing pending. KEYS: stream. ARGV: group, this consumer, idle ms. Returns the names removed.
PRUNE = """
local removed = {}
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
  if info['name'] ~= ARGV[2] and info['pending'] == 0 and info['idle'] >= tonumber(ARGV[3]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    removed[#removed + 1] = info['name']
  end
end
return removed
"""
PRUNE_AFTER_MS = 5000
# A frame id this far ahead of Redis's own clock: the clock went back (set back, or a stale
# clock at boot with the data of a later time); ids then stay on one millisecond.
CLOCK_SLACK_MS = 1000
READ_BATCH = 32
OUT_RATE_EVERY_S = 1.0  # out_fps reads the results stream; once a second is plenty
# While frames keep coming, the stages this worker stands in for (tracking, counting) run once
# this often on the results written meanwhile, not after every frame: their reads and their
# commit are round trips to Redis the next frame would wait for. Counts are this much later.
STAGES_EVERY_S = 0.2


@dataclass
class GearState:
    registration: Registration
    gear: Gear
    last_count: tuple[int, int] | None = None  # (frame count, ms) of the last processed entry
    last_claim: float = 0.0
    last_out_rate: float = 0.0  # monotonic time out_fps was last measured
    store_ms: float = 0.0  # the last result's store on this worker's path (build and send)
    processed: int = 0
    skipped: int = 0
    still: int = 0  # frames the motion gate (in this worker) kept from the detector


@dataclass
class Worker:
    client: redis.Redis
    cfg: Config
    runtime: Runtime
    consumer: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    gears: dict[str, GearState] = field(default_factory=dict)  # by input stream
    timeseries: bool = False
    models: dict[str, ModelBundle] = field(default_factory=dict)
    clock_held: bool = False  # series held: Redis's clock is behind the frame ids

    def __post_init__(self) -> None:
        self.store = self.client.register_script(STORE)
        self.prune = self.client.register_script(PRUNE)
        self.tally = Tally(self.client)  # counts kept while Redis refuses writes
        self.deferred = Deferred(self.client)  # the hint and the results: see Deferred
        # Which classes each camera's lines and zones count (rva.toml's and those saved live).
        self.shapes = shapes.Watch(self.client, self.cfg)
        self._classes_for: tuple[int, list[GearState]] | None = None

    # -- set-up -------------------------------------------------------------------------
    def load_model(self, name: str) -> ModelBundle:
        if name not in self.models:
            self.models[name] = models.load(self.client, name)
        return self.models[name]

    def registrations(self) -> list[Registration]:
        raw = self.client.hgetall(keys.GEARS)
        if not raw and self.gears:
            # The registry is gone as a whole: Redis restarted without its data. Keep working
            # with what we know (restore() writes it back); removing a camera is done by
            # `rva init`, which leaves the others registered.
            return [s.registration for s in self.gears.values()]
        regs = []
        for gear_id, text in raw.items():
            try:
                regs.append(Registration.from_json(text))
            except (ValueError, KeyError) as exc:  # pydantic's ValidationError is a ValueError
                log.error("gear %s cannot run on this worker: %s", gear_id.decode(), exc)
        return sorted(regs, key=lambda r: r.id)

    def prepare(self) -> None:
        """(Re)build gears from the registrations; idempotent, cheap when nothing changed."""
        regs = self.registrations()
        for reg in regs:
            state = self.gears.get(reg.stream)
            if state is None or state.registration != reg:
                gear_cls = GEAR_TYPES.get(reg.type)
                if gear_cls is None:
                    log.error("gear %s: unknown type %s; skipped", reg.id, reg.type)
                    continue
                g = reg.settings
                what = f"{g.model} on {g.backend}/{g.device}, {g.precision}"
                log.info("gear %s: model %s", reg.id, what)
                self.gears[reg.stream] = GearState(reg, gear_cls(reg, self.load_model))
        for stream in set(self.gears) - {r.stream for r in regs}:
            log.info("gear on %s unregistered; stopping it", stream)
            del self.gears[stream]
        if not any(s.gear.backend_name == "opencv" for s in self.gears.values()):
            # OpenCV only resizes here (ONNX Runtime runs the model): one thread, so that its
            # pool's idle workers do not compete with ONNX Runtime's for the same cores.
            cv2.setNumThreads(1)
        self.restore()

    def restore(self) -> None:
        """After Redis lost its data (restart without persistence): groups, series, registry."""
        self.timeseries = timeseries_available(self.client)
        for name, bundle in self.models.items():
            # The model too, so that a worker starting now does not wait for `rva init`.
            if not self.client.exists(keys.model(name)):
                store.to_redis(self.client, bundle)
                log.warning("model %s was gone from Redis; stored it again from memory", name)
        for state in self.gears.values():
            reg = state.registration
            schema.ensure_group(self.client, reg.stream, reg.group)
            self.client.hsetnx(keys.GEARS, reg.id, reg.to_json())
            if self.timeseries and not self.client.exists(keys.series(reg.camera, "people")):
                schema.ensure_timeseries(self.client, reg.camera, self.cfg)

    def follow_classes(self) -> None:
        """Each gear detects the classes its camera's lines and zones count (again only when
        the live set or the gear states change; the list holds them, so no id is reused)."""
        live, states = self.shapes.config(), list(self.gears.values())
        if self._classes_for == (self.shapes.seen, states):
            return
        self._classes_for = (self.shapes.seen, states)
        for state in self.gears.values():
            section = live.cameras.get(state.registration.camera)
            if section is not None:
                state.gear.want_classes(set(classes_of(section)) - {"person"})

    # -- the loop -------------------------------------------------------------------------
    def step(self, block_ms: int = 1000) -> int:
        """One round: reclaim, read, downsample, process. Returns entries processed."""
        self.deferred.collect(wait=False)  # the last round's writes: see Deferred
        self.follow_classes()
        done = 0
        for state in list(self.gears.values()):
            done += self.reclaim(state)
        if not self.gears:
            return done
        group = next(iter(self.gears.values())).registration.group
        streams = {stream: ">" for stream in self.gears}
        batches: dict[str, list[Entry]] = {}
        reply = self.client.xreadgroup(
            group, self.consumer, streams, count=READ_BATCH, block=block_ms
        )
        read_at = time.perf_counter()
        for stream, entries in reply or []:
            name = stream.decode()
            batches[name] = [Entry(i.decode(), f) for i, f in entries]
            # Drain what else is waiting without blocking: only the newest is worth a pass.
            while len(entries) == READ_BATCH:
                more = self.client.xreadgroup(group, self.consumer, {name: ">"}, count=READ_BATCH)
                entries = more[0][1] if more else []
                batches[name] += [Entry(i.decode(), f) for i, f in entries]
        read_ms = (time.perf_counter() - read_at) * 1e3
        for name, entries in batches.items():
            state = self.gears[name]
            *older, newest = entries
            if older:
                self.skip(state, older)
            done += self.process(state, newest, read_ms)
        return done

    def reclaim(self, state: GearState) -> int:
        reg = state.registration
        now = time.monotonic()
        if now - state.last_claim < reg.settings.claim_idle_ms / 2000:
            return 0
        state.last_claim = now
        _next, claimed, deleted = self.client.xautoclaim(
            reg.stream,
            reg.group,
            self.consumer,
            min_idle_time=reg.settings.claim_idle_ms,
            start_id="0-0",
            count=READ_BATCH,
        )
        if deleted:
            # Trimmed from the stream before anyone processed them: nothing left to do.
            self.client.xack(reg.stream, reg.group, *deleted)
            self.count(keys.STATS, reg.camera, "trimmed", len(deleted))
        done = 0
        for entry_id, fields in claimed:
            log.info("gear %s: reclaimed %s from a dead worker", reg.id, entry_id.decode())
            self.count(keys.STATS, reg.camera, "reclaimed")
            done += self.process(state, Entry(entry_id.decode(), fields), 0.0)
        # Workers that restarted left their consumer behind (the name carries the pid): once
        # idle with nothing pending (taken over above), they are removed from the group.
        idle_ms = max(2 * reg.settings.claim_idle_ms, PRUNE_AFTER_MS)
        removed = self.prune(keys=[reg.stream], args=[reg.group, self.consumer, idle_ms])
        if removed:
            names = ", ".join(r.decode() for r in removed)
            log.info("gear %s: removed gone consumers from %s: %s", reg.id, reg.group, names)
            self.count(keys.STATS, reg.camera, "consumers_removed", len(removed))
        return done

    def leave(self) -> None:
        """At a clean stop: this worker's consumer leaves the group unless entries are pending
        for it (those stay, for another worker to take over)."""
        self.deferred.collect()  # the last writes done first
        for state in self.gears.values():
            reg = state.registration
            for c in self.client.xinfo_consumers(reg.stream, reg.group):
                if c["name"].decode() == self.consumer and c["pending"] == 0:
                    self.client.xgroup_delconsumer(reg.stream, reg.group, self.consumer)

    def skip(self, state: GearState, entries: list[Entry]) -> None:
        reg = state.registration
        self.client.xack(reg.stream, reg.group, *(e.id for e in entries))
        state.skipped += len(entries)
        self.count(keys.STATS, reg.camera, "skipped", len(entries))

    def process(self, state: GearState, entry: Entry, read_ms: float) -> int:
        reg = state.registration
        released = False

        def release() -> None:  # the next frame can come now (capture with rate = "max")
            nonlocal released
            if not released:
                released = True
                with contextlib.suppress(*TRANSIENT):  # a hint lost: capture waits for the result
                    self.deferred.send(
                        "XADD", keys.next_frame(reg.camera), "MAXLEN", 1, "*", "ref", entry.id
                    )

        try:
            result = state.gear.handle(entry, release)
        except GearError as exc:
            warn.warning(exc.kind, "gear %s: %s; skipped", reg.id, exc)
            self.client.xack(reg.stream, reg.group, entry.id)
            self.count(keys.ERRORS, reg.camera, exc.kind)
            return 0
        except Exception as exc:
            if isinstance(exc, redis.RedisError):
                raise
            # An entry the gear cannot handle must not end the worker: the next one would
            # reclaim it and end too (a poison message). Skipped, counted, said.
            warn.error(
                "gear_failed",
                "gear %s: entry %s failed (%s: %s); skipped",
                reg.id,
                entry.id,
                type(exc).__name__,
                exc,
            )
            self.client.xack(reg.stream, reg.group, entry.id)
            self.count(keys.ERRORS, reg.camera, "gear_failed")
            return 0
        finally:  # done with this entry whatever came of it (a no-op when the gear released it)
            release()
        if result is None:  # a still frame, by the motion gate: nothing new to detect
            pipe = self.client.pipeline(transaction=False)
            pipe.xack(reg.stream, reg.group, entry.id)
            pipe.hincrby(keys.STATS, f"{reg.camera}:motion_skipped", 1)
            pipe.execute()
            state.still += 1
            return 0
        self.write(state, entry, result, read_ms)
        state.processed += 1  # taken back when the store's reply says another worker owns it
        return 1

    def write(self, state: GearState, entry: Entry, result: Result, read_ms: float) -> None:
        """The result, the entry's acknowledgement, rva:stats, camera:<id>:latest and the
        samples, in one script, sent without waiting for its reply (Deferred): nothing is
        written unless this worker still owns the entry (see stored)."""
        reg, ts = state.registration, entry.timestamp_ms
        timings = dict(result.timings_ms)
        timings["read"] = read_ms + timings.pop("decode", 0.0)  # Redis read + JPEG decode
        samples = dict(result.samples)
        for stage in keys.STAGES:
            if stage in timings:
                samples[f"prf_{stage}"] = timings[stage]
        # The store's own time is known once it is done: the previous result's is written.
        samples["prf_store"] = state.store_ms
        samples["prf_total"] = sum(timings.get(s, 0.0) for s in keys.STAGES) + state.store_ms
        in_fps = self.input_rate(state, entry)
        if in_fps is not None:
            samples["in_fps"] = in_fps
        out_fps = self.output_rate(state)
        if out_fps is not None:
            samples["out_fps"] = out_fps
        store_at = time.perf_counter()
        samples = {k: round(float(v), 3) for k, v in samples.items()}
        fields = {**result.fields, "worker": self.consumer}
        latest = {**samples, "ts": ts}
        series = [keys.series(reg.camera, m) for m in samples] if self.timeseries else []
        args: list[str | int | float] = [
            *(reg.group, self.consumer, entry.id, reg.settings.results_maxlen),
            *(ts, CLOCK_SLACK_MS, f"{reg.camera}:processed"),
        ]
        for mapping in (fields, latest):
            args.append(len(mapping))
            for name, value in mapping.items():
                args += [name, value]
        if series:
            args += samples.values()
        script_keys = [reg.stream, state.gear.results_key(reg.camera), keys.STATS]
        script_keys += [keys.latest(reg.camera), *series]

        def stored(reply: object) -> None:
            if isinstance(reply, redis.exceptions.NoScriptError):  # Redis restarted empty
                reply = self.store(keys=script_keys, args=args)  # loads it, then runs it
            self.stored(state, entry, len(samples), len(series), reply)

        self.deferred.send(
            "EVALSHA", self.store.sha, len(script_keys), *script_keys, *args, on_reply=stored
        )
        state.store_ms = (time.perf_counter() - store_at) * 1e3

    def stored(
        self, state: GearState, entry: Entry, n_samples: int, n_series: int, reply: object
    ) -> None:
        """The store script's reply for ``entry``: [0] when another worker owns the entry now
        (nothing written), else [1, ms the entry is ahead of Redis's clock, TS.MADD's reply
        when the samples were written]."""
        reg = state.registration
        if isinstance(reply, redis.ResponseError):
            raise reply  # Redis refuses writes, say: the run loop waits, the entry stays pending
        assert isinstance(reply, list), reply
        if not reply[0]:
            state.processed -= 1
            log.warning(
                "gear %s: %s was reclaimed by another worker; result dropped", reg.id, entry.id
            )
            return
        held = bool(n_series) and self.clock_behind(reg, entry, int(reply[1]))
        if len(reply) > 2:  # TS.MADD's reply: a timestamp or an error per sample, or one error
            madd = reply[2]
            if isinstance(madd, Exception):
                failed = [madd] * n_series
            else:
                failed = [r for r in madd if isinstance(r, Exception)]
            if failed:
                warn.warning(
                    "sample_refused",
                    "gear %s: the time series refused %d of %d samples of frame %s: %s",
                    reg.id,
                    len(failed),
                    n_series,
                    entry.id,
                    failed[0],
                )
                self.count(keys.ERRORS, reg.camera, "sample_refused", len(failed))
        if held:
            self.count(keys.ERRORS, reg.camera, "samples_held", n_samples)

    def clock_behind(self, reg: Registration, entry: Entry, ahead_ms: int) -> bool:
        """Whether Redis's clock is behind this frame's id (``ahead_ms``, by the store script).
        Then the ids are not the frames' times (they stay on the newest id's millisecond): the
        samples are held, never written at a wrong time, until the clock has caught up (results
        are written all the same)."""
        if ahead_ms > CLOCK_SLACK_MS:
            warn.warning(
                "clock",
                "gear %s: Redis's clock is %.0f s behind frame %s (the clock went back); "
                "time series held until it catches up",
                reg.id,
                ahead_ms / 1000,
                entry.id,
            )
            self.clock_held = True
        elif self.clock_held:
            log.warning("gear %s: Redis's clock caught up; time series written again", reg.id)
            self.clock_held = False
        return self.clock_held

    @staticmethod
    def input_rate(state: GearState, entry: Entry) -> float | None:
        try:
            count = int(entry.fields.get(b"count", b""))
        except ValueError:
            return None
        last, state.last_count = state.last_count, (count, entry.timestamp_ms)
        if last is None or count <= last[0] or entry.timestamp_ms <= last[1]:
            return None
        return (count - last[0]) * 1000.0 / (entry.timestamp_ms - last[1])

    def output_rate(self, state: GearState, window: int = 10) -> float | None:
        """Results per second over the last few results, whichever worker wrote them; measured
        at most once every OUT_RATE_EVERY_S (None in between: no sample)."""
        now = time.monotonic()
        if now - state.last_out_rate < OUT_RATE_EVERY_S:
            return None
        state.last_out_rate = now
        results = state.gear.results_key(state.registration.camera)
        recent = self.client.xrevrange(results, count=window)
        if len(recent) < 2:
            return None
        newest, oldest = (keys.id_ms(r[0]) for r in (recent[0], recent[-1]))
        if newest <= oldest:  # ids on one millisecond: the clock went back (clock_behind)
            return None
        return (len(recent) - 1) * 1000.0 / (newest - oldest)

    def count(self, key: str, camera: str, what: str, n: int = 1) -> None:
        self.tally.add(key, f"{camera}:{what}", n)

    def status_line(self) -> str:
        parts = [
            f"{s.registration.camera}: {s.processed} done, {s.skipped} skipped"
            + (f", {s.still} still" if s.still else "")
            for s in self.gears.values()
        ]
        ts = "time series on" if self.timeseries else "time series OFF"
        return f"{'; '.join(parts) or 'no gears registered'} ({ts})"
