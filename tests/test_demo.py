"""`make demo` as a new user runs it: up on the sample video, then one Ctrl-C stops it all.

A terminal's Ctrl-C is SIGINT to its foreground process group: make, scripts/demo.sh and every
process they started. The test starts `make demo` (its deps-demo and fetch steps skipped: the
caches are filled already) in a process group of its own, on free ports and a cache of its own,
waits for the page and for counts, sends one SIGINT to the group, and checks that every process
the demo started is gone within seconds and that nothing had to be killed. A restarted demo
finds what Redis held and an edited config again, until `make demo-reset`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from tests.conftest import CACHE, MODEL_CACHE, ROOT, free_port, wait_for
from tests.services.web.test_web import get_json, http_get

# make without its install steps (deps-demo, fetch): the caches are filled already.
MAKE = ["make", "--no-print-directory", "-o", "deps-demo", "-o", "fetch"]
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


def demo_env(redis_port: int, web_port: int, mqtt_port: int) -> dict[str, str]:
    env = {
        **os.environ,
        "RVA_DEMO_REDIS_PORT": str(redis_port),
        "RVA_DEMO_WEB_PORT": str(web_port),
        "RVA_DEMO_MQTT_PORT": str(mqtt_port),  # not 1884: other demos may run beside this one
    }
    for name in ("RVA_CONFIG", "RVA_REDIS_URL", "NOTIFY_SOCKET", "MAKEFLAGS", "MFLAGS"):
        env.pop(name, None)
    return env


def make(cache: Path, target: str, env: dict[str, str], out: IO[bytes]) -> subprocess.Popen[bytes]:
    """`make <target>` as a user types it, in a terminal's foreground."""
    return subprocess.Popen(
        [*MAKE, f"CACHE={cache}", target],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )


def end(proc: subprocess.Popen[bytes]) -> None:
    """Kill whatever a demo left (only after a failed test: a passing one stopped it all)."""
    started = descendants(proc.pid)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    for pid, (_cmd, start) in started.items():
        if alive(pid, start):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def demo(
    demo_cache: Path, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], int, int, Path]]:
    web_port, redis_port = free_port(), free_port()
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        proc = make(demo_cache, "demo", demo_env(redis_port, web_port, free_port()), out)
    try:
        yield proc, web_port, redis_port, log
    finally:
        end(proc)


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


def ctrl_c(proc: subprocess.Popen[bytes], log: Path) -> str:
    """One Ctrl-C to a demo; everything it started has ended within STOP_WITHIN_S (Redis too:
    its snapshot is written). Returns what the demo printed."""
    procs = descendants(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)
    deadline = time.monotonic() + STOP_WITHIN_S
    while time.monotonic() < deadline and (
        proc.poll() is None or any(alive(pid, start) for pid, (_c, start) in procs.items())
    ):
        time.sleep(0.1)
    output = log.read_text(errors="replace")
    left = [cmd for pid, (cmd, start) in procs.items() if alive(pid, start)]
    assert proc.poll() is not None and not left, f"left running: {left}\n{output[-3000:]}"
    assert "s: killed" not in output, output[-3000:]
    return output


def test_a_restarted_demo_keeps_its_redis_data_and_an_edited_config_until_demo_reset(
    demo_cache: Path, tmp_path: Path
) -> None:
    """Each start waits only for `rva init` (the line's series made), then stops: what is kept
    lies in Redis's snapshot and in .cache/demo/, not in what the services do meanwhile."""
    import redis

    redis_port, mqtt_port = free_port(), free_port()
    run = demo_cache / "demo"
    config, generated, data = run / "rva.toml", run / "rva.toml.generated.sha256", run / "dump.rdb"
    client = redis.Redis(port=redis_port)
    series = "camera:0:line:path:in"  # the line's crossings, made by rva init
    started: list[subprocess.Popen[bytes]] = []

    def start(n: int, web_port: int, **extra: str) -> tuple[subprocess.Popen[bytes], Path]:
        log = tmp_path / f"demo-{n}.log"
        with log.open("wb") as out:
            proc = make(
                demo_cache, "demo", {**demo_env(redis_port, web_port, mqtt_port), **extra}, out
            )
        started.append(proc)

        def initialised() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"make demo exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            return bool(client.exists(series))

        wait_for(initialised, 120, 0.2, what=f"rva init of demo {n}")
        return proc, log

    def reset() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*MAKE, f"CACHE={demo_cache}", "demo-reset"],
            cwd=ROOT,
            env=demo_env(redis_port, free_port(), mqtt_port),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    try:
        # 1: written into Redis (a total of the line, a key of the kind the page saves
        # lines and zones under); mosquitto is announced before it starts.
        proc, log = start(1, web_port=free_port())
        at_ms = int(time.time() * 1000) - 60_000
        client.execute_command("TS.ADD", series, at_ms, 7)
        client.hset("rva:geometry:0", "lines", '{"door": [[1, 2], [3, 4]]}')
        announced = (
            f"demo: starting mosquitto, an MQTT broker for rva mqtt, on 127.0.0.1:{mqtt_port} "
            "(RVA_DEMO_MQTT=0 leaves it out)"
        )
        wait_for(lambda: announced in log.read_text(), 30, 0.2, what="mosquitto announced")
        ctrl_c(proc, log)
        assert data.is_file(), "Redis saved nothing into .cache/demo/ on its way down"

        # 2: another web port: the config, as the demo wrote it, is written again with it;
        # Redis has kept what was written. demo-reset is refused while the demo runs.
        web_port = free_port()
        proc, log = start(2, web_port=web_port, RVA_DEMO_MQTT="0")
        assert f"port = {web_port}" in config.read_text()
        assert client.execute_command("TS.RANGE", series, at_ms, at_ms) == [[at_ms, b"7"]]
        assert client.hget("rva:geometry:0", "lines") == b'{"door": [[1, 2], [3, 4]]}'
        refused = reset()
        assert refused.returncode != 0
        assert (
            f"demo-reset: refused: a demo is running (its Redis answers on 127.0.0.1:{redis_port})"
            in refused.stdout + refused.stderr
        )
        assert config.is_file() and data.is_file()
        edited = config.read_text().replace('host = "0.0.0.0"', 'host = "127.0.0.1"')
        assert edited != config.read_text()
        config.write_text(edited)
        output = ctrl_c(proc, log)
        assert "mosquitto" not in output  # RVA_DEMO_MQTT=0

        # 3: the edited config is kept, and said so in one line.
        proc, log = start(3, web_port=free_port())
        assert config.read_text() == edited
        assert client.hget("rva:geometry:0", "lines") is not None
        output = ctrl_c(proc, log)
        kept = f"demo: keeping {config} as changed by hand (make demo-reset starts afresh)"
        assert kept in output.splitlines(), output[-3000:]

        # demo-reset says what it removes, removes it, and keeps a copy of the hand edit.
        done = reset()
        assert done.returncode == 0, done.stdout + done.stderr
        assert (
            f"demo-reset: removing the demo's Redis data and config: {data} {config} {generated}"
            in done.stdout
        )
        assert not data.exists() and not config.exists() and not generated.exists()
        assert (run / "rva.toml.bak").read_text() == edited
    finally:
        for proc in started:
            end(proc)
