"""`make demo` as a new user runs it: up on the sample video, then one Ctrl-C stops it all.

A terminal's Ctrl-C is SIGINT to its foreground process group: make, scripts/demo.sh and every
process they started. The test starts `make demo` (its deps-demo and fetch steps skipped: the
caches are filled already) in a process group of its own, on free ports and a cache of its own,
waits for the page and for counts, sends one SIGINT to the group, and checks that every process
the demo started is gone within seconds and that nothing had to be killed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CACHE, MODEL_CACHE, ROOT, free_port, wait_for
from tests.services.web.test_web import get_json, http_get

STOP_WITHIN_S = 12.0  # one Ctrl-C to nothing left; the script's own SIGKILL comes at 10 s


def _stat(pid: int) -> tuple[int, str, str] | None:
    """(ppid, state, start time) of a live process, None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[1]), fields[0], fields[19]


def descendants(root: int) -> dict[int, tuple[str, str]]:
    """Every process under root: pid -> (command line, start time)."""
    children: dict[int, list[int]] = {}
    starts: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))):
            children.setdefault(st[0], []).append(int(entry))
            starts[int(entry)] = st[2]
    found: dict[int, tuple[str, str]] = {}
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        found[pid] = (cmd.strip(), starts[pid])
        todo += children.get(pid, [])
    return found


def alive(pid: int, start: str) -> bool:
    """Still running (a zombie has ended; the same pid with another start time is another)."""
    st = _stat(pid)
    return st is not None and st[2] == start and st[1] != "Z"


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def demo_cache(tmp_path: Path) -> Path:
    """A cache of its own (the demo writes its config and Redis files there), with the real
    Redis Stack, footage and models linked in."""
    cache = tmp_path / "cache"
    cache.mkdir()
    for name, real in (
        ("redis-stack", CACHE / "redis-stack"),
        ("footage", CACHE / "footage"),
        ("models", MODEL_CACHE),
    ):
        if not real.exists():
            pytest.fail(f"{real} missing: run `make fetch`")
        (cache / name).symlink_to(real)
    return cache


@pytest.fixture
def demo(
    demo_cache: Path, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], int, int, Path]]:
    web_port, redis_port = free_port(), free_port()
    log = tmp_path / "demo.log"
    env = {
        **os.environ,
        "RVA_DEMO_REDIS_PORT": str(redis_port),
        "RVA_DEMO_WEB_PORT": str(web_port),
    }
    for name in ("RVA_CONFIG", "RVA_REDIS_URL", "NOTIFY_SOCKET", "MAKEFLAGS", "MFLAGS"):
        env.pop(name, None)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                "make",
                "--no-print-directory",
                "-o",
                "deps-demo",
                "-o",
                "fetch",
                f"CACHE={demo_cache}",
                "demo",
            ],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a terminal's foreground job
        )
    started: dict[int, tuple[str, str]] = {}
    try:
        yield proc, web_port, redis_port, log
    finally:
        started = descendants(proc.pid)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        for pid, (_cmd, start) in started.items():
            if alive(pid, start):
                os.kill(pid, signal.SIGKILL)


def using(path: Path) -> list[str]:
    """Processes whose command line or environment names path (the demo's cache: its Redis
    --dir, every rva's RVA_CONFIG): whatever the demo started, wherever it was reparented."""
    found = []
    needle = str(path).encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
            env = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if (needle in cmd or needle in env) and (_stat(int(entry)) or (0, "Z"))[1] != "Z":
            shown = cmd.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{entry}: {shown}")
    return found


@pytest.mark.parametrize("when", ["starting", "running"])
def test_make_demo_stops_on_one_ctrl_c_with_nothing_left(
    when: str, demo: tuple[subprocess.Popen[bytes], int, int, Path], demo_cache: Path
) -> None:
    """One Ctrl-C while the demo starts (Redis up, the rest coming) or once it counts."""
    proc, web_port, redis_port, log = demo

    def page_up() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"make demo exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        status, _headers, body = http_get(web_port, "/", timeout=3)
        return status == 200 and b"people" in body

    if when == "starting":
        wait_for(
            lambda: "redis-server" in " ".join(c for c, _s in descendants(proc.pid).values()),
            60,
            0.05,
            what="redis-server under make demo",
        )
    else:
        wait_for(page_up, 120, 0.5, what=f"the demo's page on port {web_port}")
        wait_for(
            lambda: get_json(web_port, "/api/summary")[1]["people"] is not None,
            120,
            0.5,
            what="the demo counting people",
        )
    procs = descendants(proc.pid)
    commands = " ".join(cmd for cmd, _start in procs.values())
    expected = ["demo.sh", "redis-server"]
    if when == "running":
        expected += ["rva capture", "rva gears", "rva web"]
    for part in expected:
        assert part in commands, f"{part} not running under make demo: {commands}"

    os.killpg(proc.pid, signal.SIGINT)  # one Ctrl-C
    sent = time.monotonic()
    deadline = sent + STOP_WITHIN_S
    while time.monotonic() < deadline and (
        proc.poll() is None or any(alive(pid, start) for pid, (_c, start) in procs.items())
    ):
        time.sleep(0.1)
    took = time.monotonic() - sent
    output = log.read_text(errors="replace")
    left = [cmd for pid, (cmd, start) in procs.items() if alive(pid, start)]
    assert not left, f"still running {took:.1f}s after one Ctrl-C: {left}\n{output[-3000:]}"
    assert proc.poll() is not None, f"make demo still running after {took:.1f}s\n{output[-3000:]}"
    assert proc.returncode != 0  # interrupted: make says so
    assert not using(demo_cache), using(demo_cache)
    # Every service stopped by itself: none had to be killed by the script's 10 s timeout.
    assert "s: killed" not in output, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert not listening(web_port) and not listening(redis_port)
