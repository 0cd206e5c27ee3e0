"""Fault 5: Redis full (maxmemory, noeviction) or unable to save its snapshot (a full disk).

Before the fix every service exited on the first refused write (the heartbeat's HSET), again
on every restart, and `rva status` crashed with a traceback; with the shipped
`stop-writes-on-bgsave-error no` counting went on but /healthz and `rva status` said "ok"
while rdb_last_bgsave_status was err.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from rva import keys
from tests.conftest import Services, wait_for
from tests.faults.conftest import (
    LINE,
    FaultStack,
    all_problems,
    assert_nothing_counted_twice,
    errors,
    healthz,
    log_text,
    metric,
    stops_cleanly,
)


def frame_numbers(client: redis.Redis) -> list[int]:
    return [int(f[b"count"]) for _id, f in client.xrange(keys.frames("0"))]


def status(svc: Services) -> subprocess.CompletedProcess[str]:
    """`rva status`: exit 1 with the reason, never a traceback."""
    done = svc.run("status", check=False, timeout=60)
    assert "Traceback" not in done.stderr, done.stderr
    return done


# The appliance's config: gears (standing in for the counting stage of a line), capture and web.
CONFIG: dict[str, dict[str, object]] = {
    "camera": {"maxlen": 5000},
    "gear": {"claim_idle_ms": 1000},
    "cameras.0.lines.path": LINE,
}


def results_grow(client: redis.Redis, by: int = 5, what: str = "counting goes on") -> None:
    start = client.xlen(keys.results("0"))
    wait_for(lambda: client.xlen(keys.results("0")) >= start + by, 90, what=what)


def test_redis_memory_full_services_stay_up_say_it_and_recover(
    fault_stack: Callable[..., FaultStack],
) -> None:
    stack = fault_stack(**CONFIG)
    procs = stack.appliance()
    svc, port, client = stack.svc, stack.port, stack.client()

    # Full: a little more than what Redis holds now, and nothing may be evicted.
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", int(client.info("memory")["used_memory"]) + 512 * 1024)

    def memory_full() -> bool:
        return any(
            "Redis memory" in p and "writes are refused" in p for p in all_problems(healthz(port))
        )

    wait_for(memory_full, 60, what="/healthz saying Redis memory is full")
    wait_for(lambda: "XADD camera:0 refused" in log_text(svc, procs["capture"]), 30)
    health = healthz(port)
    assert health["status"] == "degraded" and health["redis"] is True
    said = status(svc)
    assert said.returncode == 1 and "(maxmemory); writes are refused" in said.stdout, said.stdout
    assert all(p.poll() is None for p in procs.values()), "a service exited on a full Redis"

    # Room again: everything goes on by itself, and the frames refused meanwhile are counted.
    client.config_set("maxmemory", 0)
    results_grow(client, what="results after the memory was freed")
    wait_for(lambda: not memory_full(), 30, what="/healthz no longer saying memory is full")
    wait_for(lambda: errors(client).get("0:frames_refused", 0) > 0, 30, what="the loss counted")
    assert all(p.poll() is None for p in procs.values())
    stops_cleanly(procs["capture"], signal.SIGTERM)  # its counts are all written now
    refused = errors(client)["0:frames_refused"]
    numbers = frame_numbers(client)
    gaps = (numbers[-1] - numbers[0] + 1) - len(numbers)
    still = int(client.hget(keys.STATS, "0:motion_skipped") or 0)  # a motion gate's, if any
    assert refused <= gaps <= refused + still, (refused, gaps, still)  # each refusal counted
    assert metric(port, "rva_errors_total", camera="0", kind="frames_refused") == refused
    assert any("frames_refused" in p for p in all_problems(healthz(port)))
    assert_nothing_counted_twice(client)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real file system that fills up: a 256 MB tmpfs (mounting needs root)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode:
        pytest.skip(f"a full disk needs a tmpfs, and mounting one failed: {mounted.stderr}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path) -> Path:
    """Fill the file system up to its last byte; the file is the fault."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for size in (1 << 20, 4096, 1):  # in big blocks, then the last pages
            try:
                while os.write(fd, b"\0" * size):
                    pass
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)
    return filler


def test_redis_that_cannot_save_its_snapshot_is_said_and_counting_recovers(
    small_disk: Path, fault_stack: Callable[..., FaultStack]
) -> None:
    # A snapshot every 3 s while frames change; a failed one is tried again 5 s later.
    stack = fault_stack(
        *("--save", "3 1", "--stop-writes-on-bgsave-error", "yes"),
        *("--shutdown-on-sigterm", "nosave"),  # a last snapshot cannot be saved on a full disk
        datadir=small_disk,
        **CONFIG,
    )
    procs = stack.appliance()
    svc, port, client = stack.svc, stack.port, stack.client()

    def saving_fails() -> bool:
        return any("cannot save its snapshot" in p for p in all_problems(healthz(port)))

    # The disk fills up. stop-writes-on-bgsave-error yes: Redis refuses every write.
    filler = fill(small_disk)
    wait_for(saving_fails, 60, what="/healthz saying snapshots fail")
    wait_for(
        lambda: any("Redis refuses writes: MISCONF" in p for p in all_problems(healthz(port))),
        30,
        what="/healthz saying Redis refuses writes",
    )
    wait_for(lambda: "XADD camera:0 refused" in log_text(svc, procs["capture"]), 30)
    said = status(svc)
    assert said.returncode == 1 and "MISCONF" in said.stdout, said.stdout
    assert "cannot save its snapshot" in said.stdout
    assert all(p.poll() is None for p in procs.values()), "a service exited on MISCONF"

    # Space again: Redis saves at its next try and everything goes on by itself.
    filler.unlink()
    wait_for(lambda: not saving_fails(), 60, what="snapshots working again")
    results_grow(client, what="results after the disk was freed")
    wait_for(lambda: errors(client).get("0:frames_refused", 0) > 0, 30, what="the loss counted")

    # The shipped setting (stop-writes-on-bgsave-error no): counting goes on, and still the
    # failing snapshots are said, never "ok".
    client.config_set("stop-writes-on-bgsave-error", "no")
    filler = fill(small_disk)
    wait_for(saving_fails, 60, what="/healthz saying snapshots fail, writes allowed")
    results_grow(client, what="counting while snapshots fail")
    assert healthz(port)["status"] == "degraded"
    said = status(svc)
    assert said.returncode == 1 and "cannot save its snapshot" in said.stdout, said.stdout
    filler.unlink()
    wait_for(lambda: not saving_fails(), 60, what="snapshots working again")
    assert all(p.poll() is None for p in procs.values())
    assert_nothing_counted_twice(client)
    for name in ("gears", "capture", "web"):
        stops_cleanly(procs[name], signal.SIGTERM)
