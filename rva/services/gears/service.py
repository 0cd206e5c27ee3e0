"""rva gears' main loop: wait for the registrations and the model, then work frames (and the
stages this worker stands in for) until stopped, riding out Redis restarts and refusals."""

from __future__ import annotations

import contextlib
import logging
import time

import redis

from rva.config import Config
from rva.connection import TRANSIENT, Backoff, connect, refused_write, wait_for_redis
from rva.models import store
from rva.runtime import Runtime
from rva.services.gears.worker import STAGES_EVERY_S, Worker
from rva.stages.runner import StageRunner

log = logging.getLogger(__name__)


def run(
    url: str,
    cfg: Config,
    *,
    runtime: Runtime | None = None,
    max_entries: int = 0,
    stages: bool = True,
) -> int:
    """Work until stopped (or after ``max_entries`` processed entries, for tests and bench).

    With ``stages``, the worker also stands in for the per-camera stages (tracking, counting)
    and runs those whose lease it holds between frames."""
    runtime = runtime or Runtime("gears")
    client = connect(url, name="rva-gears")
    if not wait_for_redis(client, tick=runtime.tick, stop=runtime.stop):
        return 0
    worker = Worker(client, cfg, runtime)
    runner = StageRunner(client, cfg) if stages else None
    backoff = Backoff()
    while not runtime.stop.is_set():  # wait for registrations (rva init) and the model
        try:
            worker.prepare()
            if worker.gears:
                break
            runtime.tick("waiting for `rva init` to register gears")
        except TRANSIENT as exc:
            runtime.tick(f"waiting for Redis: {exc}")
        except store.ModelError as exc:
            runtime.tick(f"waiting for the model: {exc}")
            log.warning("%s", exc)
        except redis.ResponseError as exc:
            if not refused_write(exc):
                raise
            runtime.tick(f"Redis refuses writes: {exc}")
        if backoff.wait("gears not ready", tick=runtime.tick, stop=runtime.stop):
            break
    if runtime.stop.is_set():
        return 0
    backoff.reset()
    runtime.notifier.ready(worker.status_line())
    if not worker.timeseries:
        log.warning("RedisTimeSeries is not available: time series are OFF")
    processed, last_refresh, stages_ready, stages_at = 0, time.monotonic(), False, 0.0
    reachable = True  # Redis answered the last round (else a stop leaves without goodbyes)
    # Redis refusing writes (memory full, a snapshot it cannot save): wait a little, say it,
    # read on when it lets us; what could not be counted is counted when it can (the tally).
    refusals = Backoff(base=0.5, cap=5.0)
    while not runtime.stop.is_set() and not (max_entries and processed >= max_entries):
        try:
            done = worker.step()
            processed += done
            if runner and (not done or time.monotonic() - stages_at >= STAGES_EVERY_S):
                if not stages_ready:
                    runner.prepare()
                    stages_ready = True
                runner.step()
                stages_at = time.monotonic()
            if time.monotonic() - last_refresh > 10:
                worker.prepare()
                if runner:
                    runner.prepare()
                last_refresh = time.monotonic()
            worker.tally.flush()
            backoff.reset()
            refusals.reset()
            reachable = True
            runtime.tick(worker.status_line() + (f"; {runner.status_line()}" if runner else ""))
            runtime.beat(client)
        except TRANSIENT as exc:
            reachable = False
            if runner:
                runner.lost_redis()
            runtime.tick(f"Redis unreachable: {exc}")
            if backoff.wait(f"Redis unreachable ({exc})", tick=runtime.tick, stop=runtime.stop):
                break
            try:
                if not wait_for_redis(client, tick=runtime.tick, stop=runtime.stop):
                    break
                worker.prepare()
            except TRANSIENT:
                continue
            except redis.ResponseError as again:
                if not refused_write(again):
                    raise
        except redis.ResponseError as exc:
            if refused_write(exc):
                runtime.tick(f"Redis refuses writes: {exc}")
                if refusals.wait(
                    f"Redis refuses writes ({exc})", tick=runtime.tick, stop=runtime.stop
                ):
                    break
                continue
            if "NOGROUP" not in str(exc):
                raise
            log.warning("consumer group missing (Redis restarted empty?); recreating")
            try:
                worker.prepare()
            except redis.ResponseError as again:
                if not refused_write(again):
                    raise
    if not reachable:  # nothing to tidy in a Redis that is not there: each try is retried
        log.info("stopping while Redis is unreachable: pending entries stay for the group")
        return processed
    with contextlib.suppress(*TRANSIENT, redis.ResponseError):
        worker.leave()
    if runner:
        with contextlib.suppress(*TRANSIENT, redis.ResponseError):
            if stages_ready:
                runner.step()  # the results written since the stages' last round
            runner.release()
    return processed
