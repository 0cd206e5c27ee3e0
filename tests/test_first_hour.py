"""What a new user trips over in the first hour, through the real `rva` command and the real
page: messages instead of tracebacks, a config check that catches what cannot work, numbers
that say how old they are, and the small things (issue 13).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import CACHE, MODEL_CACHE, RedisServer, free_port, rva, write_config

VTEST = CACHE / "footage" / "vtest.avi"


def no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def rva_env(config: Path | None = None, **extra: str) -> dict[str, str]:
    env = {**os.environ, "RVA_MODEL_CACHE": str(MODEL_CACHE), "RVA_CACHE": str(CACHE), **extra}
    for name in ("RVA_CONFIG", "RVA_REDIS_URL", "NOTIFY_SOCKET"):
        if name not in extra:
            env.pop(name, None)
    if config is not None:
        env["RVA_CONFIG"] = str(config)
    return env


# -- item 3: messages, not tracebacks ----------------------------------------------------------


def test_rva_web_on_a_busy_port_says_so(redis_plain: RedisServer, tmp_path: Path) -> None:
    port = free_port()
    cfg = write_config(tmp_path / "rva.toml", redis_plain.url, VTEST)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        proc = rva(
            "web",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            env={"RVA_CONFIG": str(cfg)},
            timeout=120,
        )
    no_traceback(proc)
    assert proc.returncode == 1, proc.stderr
    assert f"rva web: cannot listen on 127.0.0.1:{port}: Address already in use" in proc.stderr
    assert "--port or [web] port in" in proc.stderr


@pytest.mark.parametrize("command", [["status"], ["init"], ["web"], ["top", "--once"], ["gears"]])
def test_a_redis_url_without_its_scheme_is_a_message(command: list[str], tmp_path: Path) -> None:
    reason = (
        "must start with redis://, rediss:// or unix://, e.g. redis://localhost:6390 "
        "(got 'localhost:6390')"
    )
    for args, env in (
        (["-u", "localhost:6390", *command], {}),
        ([*command, "-u", "localhost:6390"], {}),
        (command, {"RVA_REDIS_URL": "localhost:6390"}),
    ):
        proc = rva(*args, env=env, timeout=60)
        no_traceback(proc)
        assert proc.returncode == 2, (args, env, proc.stderr)
        where = "-u/--url" if "-u" in args else "RVA_REDIS_URL"
        assert f"{where}: {reason}" in proc.stderr, proc.stderr
    # The same mistake in the config file: the same reason.
    cfg = tmp_path / "rva.toml"
    cfg.write_text('[redis]\nurl = "localhost:6390"\n')
    proc = rva(*command, env={"RVA_CONFIG": str(cfg)}, timeout=60)
    assert proc.returncode == 2
    assert f"{cfg}: redis.url: {reason}" in proc.stderr, proc.stderr


def test_commands_against_a_stopped_redis_say_so(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    cfg = write_config(tmp_path / "rva.toml", url, VTEST)
    env = {"RVA_CONFIG": str(cfg)}
    status = rva("status", env=env, timeout=60)
    no_traceback(status)
    assert status.returncode == 1
    assert "Redis: unreachable" in status.stdout, status.stdout
    top = rva("top", "--once", env=env, timeout=60)
    no_traceback(top)
    assert "Redis unreachable" in top.stdout, top.stdout


@pytest.mark.parametrize("command", ["init", "web", "gears", "capture", "stages"])
def test_waiting_for_a_stopped_redis_ends_on_one_ctrl_c(command: str, tmp_path: Path) -> None:
    """Services wait for Redis, saying so, and a Ctrl-C while they wait ends them at once."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    cfg = write_config(tmp_path / "rva.toml", url, VTEST, web={"port": free_port()})
    proc = subprocess.Popen(
        [sys.executable, "-m", "rva", command],
        env=rva_env(cfg),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        seen = ""
        assert proc.stdout is not None
        while "Redis unreachable" not in seen and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen += line
        assert "Redis unreachable" in seen, seen
        time.sleep(1.0)  # into the backoff's sleep
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=5)  # "at once": the backoff is up to 15 s
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in seen + out, seen + out
    assert proc.returncode in (0, 130), seen + out


def _loaded(pid: int, library: str) -> bool:
    try:
        return library in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


@pytest.mark.parametrize("delay", [0.0, 0.1, 0.3, 0.6, 1.0, 2.0])
def test_ctrl_c_at_any_moment_of_a_start_is_quiet(delay: float) -> None:
    """Ctrl-C while rva is still importing its libraries and reading its config (a user who
    changed their mind) ends the command without a traceback. The clock starts once pydantic's
    core is loaded: before that Python itself is starting (its site module), which no code of
    RVA's can guard."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "rva", "count", str(VTEST)],
        env=rva_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not _loaded(proc.pid, "_pydantic_core") and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert "Traceback" not in err and "Error" not in err, err
    assert proc.returncode == 130, (proc.returncode, err)
