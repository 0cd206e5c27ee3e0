"""Fault 1: asked to stop while Redis is down, every service exits cleanly within 5 s.

Before the fix the backoff loops (wait_for_redis, Backoff.wait) never looked at the stop flag:
`rva gears` logged "SIGTERM received, stopping" and went on retrying for minutes.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

from rva import keys
from tests.conftest import free_port, wait_for
from tests.faults.conftest import (
    LINE,
    FaultStack,
    assert_nothing_counted_twice,
    get,
    log_size,
    stops_cleanly,
    wait_log,
)

RETRYING = r"Redis unreachable.*retrying in|XADD camera:0 failed.*retrying in"


def test_every_service_stops_within_5s_when_redis_was_never_up(
    fault_stack: Callable[..., FaultStack],
) -> None:
    stack = fault_stack(
        redis_url=f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
        init=False,
        **{"cameras.0.lines.path": LINE},
        mqtt={"host": "127.0.0.1", "port": free_port()},  # no broker there either
    )
    svc = stack.svc
    procs = {
        "capture": svc.start("capture"),
        "gears": svc.start("gears"),
        "web": stack.web(wait=False),  # /healthz answers once Redis does
        "stages": svc.start("stages"),
        "mqtt": svc.start("mqtt"),
    }
    for proc in procs.values():  # each is in its backoff loop, waiting for Redis
        wait_log(svc, proc, RETRYING, timeout=60)
    for name, proc in procs.items():
        assert proc.poll() is None, f"{name} gave up instead of waiting for Redis"
    # systemd stops with SIGTERM, a terminal with SIGINT (Ctrl-C): both, each within 5 s.
    stops_cleanly(procs["capture"], signal.SIGTERM)
    stops_cleanly(procs["gears"], signal.SIGTERM)
    stops_cleanly(procs["web"], signal.SIGINT)
    stops_cleanly(procs["stages"], signal.SIGINT)
    stops_cleanly(procs["mqtt"], signal.SIGTERM)


def test_every_service_stops_within_5s_when_redis_dies_mid_run_and_recovers_before(
    fault_stack: Callable[..., FaultStack],
) -> None:
    stack = fault_stack(**{"cameras.0.lines.path": LINE})
    svc, server, web_port, client = stack.svc, stack.server, stack.port, stack.client()
    procs = {
        "gears": svc.start("gears"),
        "capture": svc.start("capture"),
        "web": stack.web(),
        "stages": svc.start("stages"),
    }
    stage_state = keys.stage_state("0", "counting")
    wait_for(lambda: client.xlen(keys.results("0")) >= 3, 90, what="results")
    wait_for(lambda: client.hget(stage_state, "last"), 60, what="the counting stage at work")

    def redis_dies() -> None:
        offsets = {name: log_size(svc, proc) for name, proc in procs.items()}
        server.stop()
        for name in ("gears", "capture", "stages"):
            wait_log(svc, procs[name], RETRYING, after=offsets[name], timeout=30)
        wait_for(lambda: get(web_port, "/healthz")[0] == 503, 30, what="/healthz 503")

    # Redis goes away and comes back (empty): the services wait, then go on by themselves.
    redis_dies()
    assert all(p.poll() is None for p in procs.values()), "a service exited on a lost Redis"
    server.start()
    client = server.client()
    wait_for(lambda: client.xlen(keys.results("0")) >= 3, 90, what="results after the restart")
    wait_for(lambda: get(web_port, "/healthz")[0] == 200, 30, what="/healthz back to 200")
    assert_nothing_counted_twice(client)

    # Redis goes away again, and this time the services are asked to stop meanwhile.
    redis_dies()
    stops_cleanly(procs["gears"], signal.SIGTERM)
    stops_cleanly(procs["capture"], signal.SIGINT)
    stops_cleanly(procs["web"], signal.SIGTERM)
    stops_cleanly(procs["stages"], signal.SIGTERM)
