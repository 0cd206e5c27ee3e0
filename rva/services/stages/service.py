"""rva stages: run tracking and counting (rva/stages) for the cameras that have lines or zones,
without detecting. Every `rva gears` worker runs the same stages between frames; whichever
instance holds a camera's lease does the work (rva.stages.runner).
"""

from __future__ import annotations

import contextlib
import logging

import redis

from rva.config import Config
from rva.connection import TRANSIENT, Backoff, connect, refused_write, wait_for_redis
from rva.runtime import Runtime
from rva.stages.runner import StageRunner

log = logging.getLogger(__name__)


def run(url: str, cfg: Config, *, runtime: Runtime | None = None) -> int:
    """Run the stages until stopped (`rva stages`)."""
    runtime = runtime or Runtime("stages")
    client = connect(url, name="rva-stages")
    if not wait_for_redis(client, tick=runtime.tick, stop=runtime.stop):
        return 0
    runner = StageRunner(client, cfg)
    if not runner.slots:
        log.warning("no camera has lines or zones: no stage to run")
    backoff = Backoff()
    runtime.notifier.ready(runner.status_line())
    prepared = False
    processed = 0
    try:
        while not runtime.stop.is_set():
            try:
                if not prepared:
                    runner.prepare()
                    prepared = True
                processed += runner.step(block_ms=1000)
                backoff.reset()
                runtime.tick(runner.status_line())
                runtime.beat(client)
            except TRANSIENT as exc:
                prepared = False
                runner.lost_redis()
                runtime.tick(f"Redis unreachable: {exc}")
                if backoff.wait(f"Redis unreachable ({exc})", tick=runtime.tick, stop=runtime.stop):
                    break
            except redis.ResponseError as exc:
                if not refused_write(exc):
                    raise
                # Memory full, a snapshot it cannot save: nothing was committed, the same
                # results are read again from the checkpoint when Redis takes writes again.
                runtime.tick(f"Redis refuses writes: {exc}")
                if backoff.wait(
                    f"Redis refuses writes ({exc})", tick=runtime.tick, stop=runtime.stop
                ):
                    break
    finally:
        with contextlib.suppress(*TRANSIENT, redis.ResponseError):
            runner.release()
    return processed
