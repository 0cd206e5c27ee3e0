"""Fault 8: the small ones. `/api/people?minutes=nan` was a 500; every worker restart left a
consumer behind in the group, forever. (Rate-limited warnings: test_web_bad_frames.py.)"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable

from rva import keys
from tests.conftest import wait_for
from tests.faults.conftest import (
    FaultStack,
    assert_nothing_counted_twice,
    get,
    log_text,
    stops_cleanly,
)


def test_api_people_answers_400_json_to_minutes_that_are_not_a_number(
    fault_stack: Callable[..., FaultStack],
) -> None:
    stack = fault_stack()
    web, port = stack.web(), stack.port
    for bad in ("nan", "NaN", "inf", "-inf", "abc"):
        status, body = get(port, f"/api/people?minutes={bad}")
        assert status == 400, (bad, status, body[:200])
        assert "minutes must be a number" in json.loads(body)["error"]
    status, body = get(port, "/api/people?minutes=5")
    assert status == 200 and json.loads(body)["camera"] == "0"
    assert web.poll() is None


def test_consumers_of_workers_that_are_gone_leave_the_group(
    fault_stack: Callable[..., FaultStack],
) -> None:
    stack = fault_stack(gear={"claim_idle_ms": 1000})
    svc, client = stack.svc, stack.client()
    frames = keys.frames("0")

    def consumers() -> set[str]:
        return {c["name"].decode() for c in client.xinfo_consumers(frames, "rva-gears")}

    killed = svc.start("gears")
    svc.start("capture")
    wait_for(lambda: client.xlen(keys.results("0")) >= 3, 90, what="results from the first")
    killed.send_signal(signal.SIGKILL)  # a crash: its consumer (maybe with a frame) stays
    killed.wait(10)
    wait_for(lambda: len(consumers()) == 1, 10, what="the dead worker's consumer")
    (dead,) = consumers()

    stopped = svc.start("gears")  # a worker stopped cleanly leaves the group itself
    name = f"-{stopped.pid}"
    wait_for(lambda: any(c.endswith(name) for c in consumers()), 60, what="the second worker")
    stops_cleanly(stopped, signal.SIGTERM)
    assert not any(c.endswith(name) for c in consumers())

    # A worker takes over what the crashed one left pending, then removes its consumer.
    survivor = svc.start("gears")
    wait_for(
        lambda: consumers() == {f"{dead.rpartition('-')[0]}-{survivor.pid}"},
        60,
        what="only the running worker in the group",
    )
    stats = {k.decode(): int(v) for k, v in client.hgetall(keys.STATS).items()}
    assert stats["0:consumers_removed"] == 1
    said = log_text(svc, stopped) + log_text(svc, survivor)
    assert f"removed gone consumers from rva-gears: {dead}" in said
    wait_for(lambda: client.xpending(frames, "rva-gears")["pending"] <= 1, 30, what="no backlog")
    before = client.xlen(keys.results("0"))
    wait_for(lambda: client.xlen(keys.results("0")) > before + 3, 60, what="counting goes on")
    assert_nothing_counted_twice(client)
    assert survivor.poll() is None
