"""Fault 6: after Redis lost its data, the model comes back without `rva init`.

Before the fix a running worker restored the groups, series and registrations after Redis
restarted empty, but not the model hash: a worker started afterwards looped on "model is not
in Redis; run `rva init`".
"""

from __future__ import annotations

import signal
import socket
from collections.abc import Callable
from pathlib import Path

from rva import keys
from tests.conftest import wait_for
from tests.faults.conftest import (
    FaultStack,
    assert_nothing_counted_twice,
    log_text,
    stops_cleanly,
    wait_log,
)

MODEL = keys.model("yolov3-tiny")


def test_the_model_is_stored_again_by_a_running_worker_or_from_the_cache(
    fault_stack: Callable[..., FaultStack], tmp_path: Path
) -> None:
    stack = fault_stack()  # its Redis has no persistence: a restart comes back empty
    svc, server, client = stack.svc, stack.server, stack.client()
    first = svc.start("gears")
    svc.start("capture")
    wait_for(lambda: client.xlen(keys.results("0")) >= 3, 90, what="results")

    server.restart()
    client = server.client()
    assert not client.exists(MODEL)
    wait_for(lambda: client.exists(MODEL), 60, what="the model stored again by the worker")
    # The worker logs after it has stored the model: wait for the line, do not race it.
    wait_log(svc, first, "model yolov3-tiny was gone from Redis; stored it again", timeout=10)

    # A worker that starts now, with no model cache of its own, loads it from Redis.
    empty = tmp_path / "no-models"
    empty.mkdir()
    second = svc.start("gears", env={"RVA_MODEL_CACHE": str(empty)})

    def worker_results(proc: object) -> int:
        name = f"{socket.gethostname()}-{getattr(proc, 'pid', 0)}".encode()
        return sum(f.get(b"worker") == name for _i, f in client.xrange(keys.results("0")))

    wait_for(lambda: worker_results(second) >= 2, 90, what="results from the new worker")
    assert "not in Redis" not in log_text(svc, second)

    # No worker holds it and it is gone (deleted, evicted): a worker with a cache stores it.
    stops_cleanly(first, signal.SIGTERM)
    stops_cleanly(second, signal.SIGTERM)
    client.delete(MODEL)
    third = svc.start("gears")
    wait_for(lambda: worker_results(third) >= 2, 90, what="results from a worker with a cache")
    assert client.exists(MODEL)
    assert "stored it from this host's cache" in log_text(svc, third)
    assert_nothing_counted_twice(client)
