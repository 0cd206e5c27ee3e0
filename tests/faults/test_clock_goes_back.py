"""Fault 4: time going backwards, with a real redis-server under libfaketime.

A Raspberry Pi has no real-time clock: offline, it boots with the time it saved last, which
can be before the newest frame id in the snapshot Redis loads. Redis then stamps every new
frame with that one millisecond (…636-67, …636-316): before the fix the series got 0 samples
for 302 results, out_fps read 9000, and /healthz and `rva status` said ok with frame_age_s
-567.7. And a time series refusing samples (older than its retention) went unnoticed: TS.MADD's
per-sample errors were ignored.

The policy: while Redis's clock is behind the newest frame id, the ids are not the frames'
times, so samples are held (counted as samples_held, never written at a wrong time); results
and counts go on; /healthz and `rva status` say so; when the clock has caught up (or is set
right), samples are written again by themselves.
"""

from __future__ import annotations

import glob
import json
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from rva import keys
from tests.conftest import wait_for
from tests.faults.conftest import (
    LINE,
    FaultStack,
    all_problems,
    assert_nothing_counted_twice,
    errors,
    healthz,
    metric,
    stops_cleanly,
    wait_log,
)

ZONE = {"polygon": [[200, 200], [460, 200], [460, 320], [200, 320]]}  # occupancy per frame
BEHIND = "Redis's clock is"


def libfaketime() -> str:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))
    if not found:
        pytest.fail("libfaketime missing: run `scripts/install-deps.sh test`")
    return found[0]


def samples(client: redis.Redis, key: str) -> int:
    info = client.execute_command("TS.INFO", key)
    return int(info[info.index(b"totalSamples") + 1])


def server_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def faked_clock_stack(fault_stack: Callable[..., FaultStack], clock: Path) -> FaultStack:
    """A Redis whose clock is shifted by what ``clock`` says (libfaketime reads it every
    second; "+0" to start), with a line and a zone on vtest.avi."""
    clock.write_text("+0\n")
    return fault_stack(
        env={
            "LD_PRELOAD": libfaketime(),
            "FAKETIME_TIMESTAMP_FILE": str(clock),
            "FAKETIME_CACHE_DURATION": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        },
        camera={"maxlen": 5000},
        **{"cameras.0.lines.path": LINE, "cameras.0.zones.path": ZONE},
    )


def test_time_going_back_holds_the_series_says_so_and_recovers(
    fault_stack: Callable[..., FaultStack], tmp_path: Path
) -> None:
    clock = tmp_path / "faketime"  # what libfaketime adds to Redis's clock, read every second
    stack = faked_clock_stack(fault_stack, clock)
    procs = stack.appliance()
    svc, server, port, client = stack.svc, stack.server, stack.port, stack.client()
    people, occupancy = keys.series("0", "people"), keys.zone_series("0", "path", "occupancy")

    def results_grow(by: int = 5) -> None:
        start = client.xlen(keys.results("0"))
        wait_for(lambda: client.xlen(keys.results("0")) >= start + by, 60, what="results")

    # (a) A series holding a sample 3 days ahead (written while a clock ran fast): the frames'
    # samples are older than its retention, and refused one by one inside TS.MADD.
    prf_total = keys.series("0", "prf_total")
    ahead = server_ms(client) + 72 * 3600_000
    client.execute_command("TS.ADD", prf_total, ahead, 0)
    wait_for(lambda: errors(client).get("0:sample_refused", 0) > 0, 30, what="refusals counted")
    wait_log(svc, procs["gears"], re.escape("the time series refused 1 of"), timeout=10)
    assert any("sample_refused" in p for p in all_problems(healthz(port)))
    assert (metric(port, "rva_errors_total", camera="0", kind="sample_refused") or 0) > 0
    client.execute_command("TS.DEL", prf_total, ahead, ahead)  # the fault gone
    written = samples(client, prf_total)
    wait_for(lambda: samples(client, prf_total) > written + 3, 30, what="samples accepted again")

    # (b) Redis restarts from its snapshot with its clock 10 minutes behind: every new frame
    # gets the newest id's millisecond.
    client.save()
    server.stop()
    clock.write_text("-600\n")
    server.start()
    client = server.client()
    assert server_ms(client) < keys.id_ms(
        client.xinfo_stream(keys.frames("0"))["last-generated-id"]
    )
    wait_for(lambda: errors(client).get("0:samples_held", 0) > 0, 60, what="samples held")
    wait_for(
        lambda: errors(client).get("0:stage_samples_held", 0) > 0, 60, what="stage samples held"
    )
    held_at = {key: samples(client, key) for key in (people, occupancy)}
    results_grow()  # detection, results and counts go on
    assert {key: samples(client, key) for key in held_at} == held_at, "a sample at a wrong time"
    health = healthz(port)
    assert health["status"] == "degraded" and health["cameras"]["0"]["frame_age_s"] < 0
    assert any(BEHIND in p for p in all_problems(health)), all_problems(health)
    said = svc.run("status", check=False)
    assert said.returncode == 1 and BEHIND in said.stdout and "Traceback" not in said.stderr
    latest = {k.decode(): float(v) for k, v in client.hgetall(keys.latest("0")).items()}
    assert latest.get("out_fps", 0) < 100, latest  # not 9000 from ids on one millisecond
    wait_log(svc, procs["gears"], re.escape("time series held until it catches up"), timeout=10)

    # (c) The clock is set right (NTP): samples are written again, with no restart.
    clock.write_text("+0\n")
    wait_for(lambda: not any(BEHIND in p for p in all_problems(healthz(port))), 30)
    wait_for(lambda: samples(client, people) > held_at[people] + 3, 60, what="samples again")
    wait_for(lambda: samples(client, occupancy) > held_at[occupancy] + 3, 60)
    assert healthz(port)["cameras"]["0"]["frame_age_s"] >= 0
    caught_up = re.escape("clock caught up; time series written again")
    wait_log(svc, procs["gears"], caught_up, timeout=10)
    assert_nothing_counted_twice(client)
    for name, proc in procs.items():
        assert proc.poll() is None, name
        stops_cleanly(proc, signal.SIGTERM)


def test_a_day_ahead_for_30_s_then_set_right_keeps_today_and_the_tracker(
    fault_stack: Callable[..., FaultStack], tmp_path: Path
) -> None:
    """The probe's reproduction: Redis's clock +1 day for 30 s, then corrected. Before, the day
    rolled over (in:today 184 -> 5), then every frame shared one millisecond: zone dwell 0.0,
    tracks never expired (40 -> 52 tracks). Now today's totals stay and the tracker keeps only
    the people in view."""
    clock = tmp_path / "faketime"
    stack = faked_clock_stack(fault_stack, clock)
    procs = stack.appliance()
    client = stack.client()
    counts = keys.counts("0")

    def today_total() -> int:
        fields = {k.decode(): v.decode() for k, v in client.hgetall(counts).items()}
        return sum(int(v) for k, v in fields.items() if k.endswith(":today"))

    wait_for(lambda: today_total() >= 2, 180, what="crossings counted today")
    day = client.hget(counts, "day")
    before = today_total()
    clock.write_text("+1d\n")
    time.sleep(30)
    clock.write_text("+0\n")
    start = client.xlen(keys.results("0"))
    wait_for(lambda: client.xlen(keys.results("0")) >= start + 40, 240, what="results after")
    assert client.hget(counts, "day") == day, "the day rolled over"
    assert today_total() >= before, (today_total(), before)
    # The tracker's state (the stage's checkpoint): only the people in view, not every track
    # since the clock stepped.
    state = json.loads(client.hget(keys.stage_state("0", "counting"), "state") or b"{}")
    tracks = state["counters"]["person"]["tracker"]["tracks"]
    assert len(tracks) < 30, f"{len(tracks)} tracks kept: the tracker stopped expiring them"
    assert_nothing_counted_twice(client)
    for name, proc in procs.items():
        assert proc.poll() is None, name
        stops_cleanly(proc, signal.SIGTERM)
