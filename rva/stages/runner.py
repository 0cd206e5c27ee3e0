"""The stage runner: the per-camera stages after detection, one active instance per camera.

Every `rva gears` worker runs one, so the stages have as many stand-ins as there are workers;
`rva stages` runs one alone (a host of its own, or tests).

For each camera and stage:
- a lease (``SET NX PX``) names the one instance that runs it; the holder renews it with every
  commit and while idle, and another instance takes over when it expires;
- on taking the lease, the instance loads the committed state and the checkpoint (the last
  results-stream id processed) from Redis, never from its own memory: after a Redis restart
  from a snapshot, or a takeover, it goes on from what Redis holds;
- results are read from the checkpoint, in stream order; each batch's outputs, the new
  checkpoint and the new state are committed in one MULTI/EXEC that is dropped if the lease
  changed meanwhile (WATCH), so a paused instance that lost its lease writes nothing.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import dataclass, field

import redis

from rva import keys, shapes
from rva.config import Config
from rva.connection import timeseries_available
from rva.ratelog import RateLimitedLog
from rva.stages.base import Stage, StageOutput
from rva.tally import Tally

log = logging.getLogger(__name__)
warn = RateLimitedLog(log)

LEASE_MS = 10_000
RENEW_EVERY_S = 2.0
BATCH = 100
CLOCK_SLACK_MS = 1000  # a frame this far ahead of Redis's clock: its samples are held
# Renew only while we still hold it.
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


@dataclass
class Slot:
    """One stage of one camera, as this instance sees it."""

    stage: Stage
    held: bool = False
    last_id: str = "0-0"
    last_ref_ms: int = 0
    renewed_at: float = 0.0
    processed: int = 0

    @property
    def name(self) -> str:
        return f"{self.stage.type_key}:{self.stage.camera}"


@dataclass
class StageRunner:
    client: redis.Redis
    cfg: Config
    owner: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    slots: list[Slot] = field(default_factory=list)
    timeseries: bool = False

    def __post_init__(self) -> None:
        self.renew = self.client.register_script(RENEW)
        self.tally = Tally(self.client)  # rva:errors, kept while Redis refuses writes
        # rva.toml's lines and zones with those saved live over them (rva.shapes), followed.
        self.shapes = shapes.Watch(self.client, self.cfg)
        self.cfg = self.shapes.config()
        self.add_wanted()

    def add_wanted(self) -> list[Slot]:
        """A slot for every stage the config asks for that has none yet (a camera's first line
        drawn live starts its counting stage)."""
        from rva.stages import STAGE_TYPES  # the registry imports this package's modules

        have = {(s.stage.type_key, s.stage.camera) for s in self.slots}
        added = [
            Slot(stage_cls(camera, self.cfg))
            for camera in self.cfg.cameras
            for stage_cls in STAGE_TYPES.values()
            if (stage_cls.type_key, camera) not in have and stage_cls.wanted(camera, self.cfg)
        ]
        self.slots += added
        return added

    def prepare(self) -> None:
        """Series and rules of every stage; after a Redis restart without data too."""
        self.timeseries = timeseries_available(self.client)
        for slot in self.slots:
            slot.stage.ensure(self.client, self.timeseries)

    def follow_shapes(self) -> None:
        """Lines or zones changed live: every stage takes the new set at once, keeping its
        tracks and totals; a stage now wanted starts."""
        if not self.shapes.changed():
            return
        self.cfg = self.shapes.config()
        for slot in self.slots:
            slot.stage.reconfigure(self.cfg)
        self.add_wanted()
        for slot in self.slots:
            slot.stage.ensure(self.client, self.timeseries)
        log.info("lines and zones changed (version %d): applied", self.shapes.seen)

    # -- the lease ------------------------------------------------------------------------
    def hold(self, slot: Slot) -> bool:
        """Keep or take the lease; on taking it, load the committed state."""
        lease = keys.stage_lease(slot.stage.camera, slot.stage.type_key)
        now = time.monotonic()
        if slot.held:
            if now - slot.renewed_at < RENEW_EVERY_S:
                return True
            if self.renew(keys=[lease], args=[self.owner, LEASE_MS]):
                slot.renewed_at = now
                state_key = keys.stage_state(slot.stage.camera, slot.stage.type_key)
                if (self.client.hget(state_key, "last") or b"0-0").decode() != slot.last_id:
                    # Redis restarted from an older snapshot (or empty) so quickly that no
                    # command failed: go on from its checkpoint, not from ours, which its new
                    # ids may not pass for as long as its clock went back.
                    log.warning("stage %s: Redis went back to an older state; resuming", slot.name)
                    self.resume(slot)
                return True
            log.warning("stage %s: lease lost; another instance runs it", slot.name)
            slot.held = False
        if not self.client.set(lease, self.owner, nx=True, px=LEASE_MS) and not self.renew(
            keys=[lease], args=[self.owner, LEASE_MS]
        ):
            # Someone else's. (Our own from before Redis went away is ours still: after a
            # restart with the clock set back it would not expire for as long as it went back.)
            return False
        slot.held, slot.renewed_at = True, now
        self.resume(slot)
        return True

    def resume(self, slot: Slot) -> None:
        saved = self.client.hgetall(keys.stage_state(slot.stage.camera, slot.stage.type_key))
        state = json.loads(saved[b"state"]) if b"state" in saved else None
        slot.stage.load(state)
        slot.last_id = saved.get(b"last", b"0-0").decode()
        slot.last_ref_ms = int(saved.get(b"ref_ms", b"0"))
        results = keys.results(slot.stage.camera)
        oldest = self.client.xrange(results, count=1)
        if oldest and slot.last_id != "0-0" and oldest[0][0].decode() > slot.last_id:
            # Trimmed before this stage saw them (it was down longer than the stream keeps).
            log.warning("stage %s: results after %s were trimmed unseen", slot.name, slot.last_id)
            self.tally.add(keys.ERRORS, f"{slot.stage.camera}:stage_gap")
        log.info("stage %s: running here from %s", slot.name, slot.last_id)

    def lost_redis(self) -> None:
        """Redis went away: hold nothing until it is back (then resume from what it has)."""
        for slot in self.slots:
            slot.held = False

    def release(self) -> None:
        """Give the leases up at a clean stop, so another instance need not wait them out."""
        for slot in self.slots:
            if slot.held:
                lease = keys.stage_lease(slot.stage.camera, slot.stage.type_key)
                self.renew(keys=[lease], args=[self.owner, 1])
                slot.held = False

    # -- the work -------------------------------------------------------------------------
    def step(self, block_ms: int = 0) -> int:
        """Process what is new for every stage this instance holds. Returns results handled."""
        self.follow_shapes()
        held = [s for s in self.slots if self.hold(s)]
        if not held:
            if block_ms:
                time.sleep(min(block_ms, 1000) / 1000)
            return 0
        streams = {keys.results(s.stage.camera): s.last_id for s in held}
        reply = self.client.xread(streams, count=BATCH, block=block_ms or None)
        done = 0
        by_stream = {keys.results(s.stage.camera): s for s in held}
        for stream, entries in reply or []:
            slot = by_stream[stream.decode()]
            done += self.process(slot, entries)
        return done

    def process(self, slot: Slot, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> int:
        out, last_id, last_ref, handled = StageOutput(), slot.last_id, slot.last_ref_ms, 0
        camera = slot.stage.camera
        for entry_id, fields in entries:
            last_id = entry_id.decode()
            ref_ms = keys.id_ms(fields.get(b"ref", entry_id))
            if ref_ms < last_ref:
                # Another worker finished an older frame late: the tracker has moved past it.
                self.client.hincrby(keys.STATS, f"{camera}:stage_late", 1)
                continue
            try:
                out.extend(slot.stage.handle(ref_ms, fields))
            except (ValueError, KeyError) as exc:
                log.warning("stage %s: result %s skipped: %s", slot.name, last_id, exc)
                self.tally.add(keys.ERRORS, f"{camera}:stage_bad_result")
                continue
            last_ref, handled = ref_ms, handled + 1
        verdict = self.commit(slot, out, last_id, last_ref)
        if verdict == "committed":
            slot.last_id, slot.last_ref_ms = last_id, last_ref
            slot.processed += handled
            return handled
        if verdict == "diverged":
            # Redis holds another checkpoint than ours: it restarted from an older snapshot.
            # Its state is the truth (the series and events went back with it): go on from there.
            log.warning("stage %s: Redis went back to an older state; resuming from it", slot.name)
            self.resume(slot)
        else:
            # Lost the lease: whoever holds it now resumes from the committed state.
            slot.held = False
        return 0

    def commit(self, slot: Slot, out: StageOutput, last_id: str, last_ref: int) -> str:
        """Write the outputs, checkpoint and state at once, provided the lease is still ours and
        Redis still holds the checkpoint we went on from: "committed", "lost" or "diverged"."""
        stage, camera = slot.stage, slot.stage.camera
        lease = keys.stage_lease(camera, stage.type_key)
        state_key = keys.stage_state(camera, stage.type_key)
        samples, held = (out.samples if self.timeseries else []), 0
        if samples:
            # Redis's clock behind the frames (it went back): their ids are not their times,
            # and their samples are held, never written at a wrong time (see rva gears).
            seconds, micros = self.client.time()
            latest = int(seconds) * 1000 + int(micros) // 1000 + CLOCK_SLACK_MS
            kept = [s for s in samples if s[1] <= latest]
            held, samples = len(samples) - len(kept), kept
        with self.client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(lease, state_key)
                if pipe.get(lease) != self.owner.encode():
                    return "lost"
                if (pipe.hget(state_key, "last") or b"0-0").decode() != slot.last_id:
                    return "diverged"
                pipe.multi()
                for key, t_ms, value in samples:
                    pipe.execute_command("TS.ADD", key, t_ms, value, "ON_DUPLICATE", "LAST")
                for event in out.events:
                    pipe.xadd(
                        keys.events(camera), event, maxlen=stage.events_maxlen(), approximate=True
                    )
                for key, mapping in out.hashes.items():
                    pipe.hset(key, mapping=mapping)
                pipe.hset(
                    state_key,
                    mapping={
                        "last": last_id,
                        "ref_ms": last_ref,
                        "state": json.dumps(stage.dump()),
                    },
                )
                pipe.pexpire(lease, LEASE_MS)
                replies = pipe.execute(raise_on_error=False)
            except redis.WatchError:
                return "lost"
        slot.renewed_at = time.monotonic()
        rejected = [r for r in replies if isinstance(r, redis.ResponseError)]
        if rejected:
            # A sample older than the series' retention (a clock far off), say: the counts and
            # events are kept all the same; the loss is counted and said.
            warn.warning(
                "refused", "stage %s: %d samples refused: %s", slot.name, len(rejected), rejected[0]
            )
            self.tally.add(keys.ERRORS, f"{camera}:stage_sample_refused", len(rejected))
        if held:
            warn.warning(
                "held", "stage %s: Redis's clock is behind the frames; samples held", slot.name
            )
            self.tally.add(keys.ERRORS, f"{camera}:stage_samples_held", held)
        return "committed"

    def status_line(self) -> str:
        held = [f"{s.name} ({s.processed})" for s in self.slots if s.held]
        return f"stages here: {', '.join(held)}" if held else "no stage held here"
