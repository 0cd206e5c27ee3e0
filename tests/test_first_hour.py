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


# -- item 4: rva config check catches what cannot work -----------------------------------------


def config_check(tmp_path: Path, toml: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    cfg = tmp_path / "rva.toml"
    cfg.write_text(toml)
    proc = rva("config", "check", "--config", str(cfg), timeout=120)
    no_traceback(proc)
    return proc, cfg


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("/nonexistent/entrance.mp4", "no such file: /nonexistent/entrance.mp4"),
        (
            "bogus-camera-type:7",
            "unknown kind of source 'bogus-camera-type' (known: auto, picamera[:N], "
            "/dev/videoN (or N), jetson-csi[:N], gst:<pipeline>, rtsp://, http(s)://, "
            "a video file or an image)",
        ),
        (
            "rtsp//missing-colon/stream",
            "not a URL (rtsp:// is written with a colon and two slashes) and no such file",
        ),
        ("rtsp:///stream", "no host in rtsp:///stream"),
        ("ftp://cam/stream", "unknown kind of source 'ftp://'"),
        ("gst:videotestsrc ! videoconvert", "a gst: pipeline must end in an appsink"),
    ],
)
def test_config_check_refuses_a_source_that_cannot_work(
    source: str, message: str, tmp_path: Path
) -> None:
    proc, cfg = config_check(
        tmp_path, f'[cameras.door]\nsource = "{VTEST}"\n[cameras.yard]\nsource = "{source}"\n'
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"{cfg}: cameras.yard.source: {message}" in proc.stderr, proc.stderr
    assert "cameras.door" not in proc.stderr  # the good one is not blamed
    assert "OK" not in proc.stdout


def test_config_check_refuses_a_file_opencv_cannot_read(tmp_path: Path) -> None:
    fake = tmp_path / "clip.mp4"
    fake.write_text("not a video\n")
    proc, cfg = config_check(tmp_path, f'[cameras.0]\nsource = "{fake}"\n')
    assert proc.returncode == 2
    assert f"{cfg}: cameras.0.source: {fake}: OpenCV cannot read a video frame" in proc.stderr


def test_config_check_warns_about_a_camera_not_plugged_in_yet(tmp_path: Path) -> None:
    node = "/dev/video9"
    if Path(node).exists():
        pytest.skip(f"{node} exists here")
    for source in (node, "9"):
        proc, cfg = config_check(tmp_path, f'[cameras.0]\nsource = "{source}"\n')
        assert proc.returncode == 0, proc.stderr  # a USB camera may be plugged in later
        assert (
            f"{cfg}: cameras.0.source: warning: {node} does not exist (yet): capture waits "
            "for it, so a USB camera plugged in later is picked up"
        ) in proc.stderr
        assert proc.stdout.strip() == f"{cfg}: OK (1 camera(s))"


def test_config_check_passes_a_good_file_quietly(tmp_path: Path) -> None:
    proc, cfg = config_check(tmp_path, f'[cameras.0]\nsource = "{VTEST}"\n')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{cfg}: OK (1 camera(s))"
    assert proc.stderr == ""


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            '[gear]\nmodel = "nonexistent-model"\n',
            "gear.model: unknown model 'nonexistent-model' (known: ssdlite-person, yolov3-tiny)",
        ),
        ('[gear]\nbackend = "tensorrt"\n', "gear.backend: unknown backend"),
    ],
)
def test_config_check_refuses_unknown_model_and_backend(
    toml: str, message: str, tmp_path: Path
) -> None:
    proc, cfg = config_check(tmp_path, f'[cameras.0]\nsource = "{VTEST}"\n{toml}')
    assert proc.returncode == 2
    assert f"{cfg}: {message}" in proc.stderr, proc.stderr


def test_config_check_checks_the_redis_url_from_the_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "rva.toml"
    cfg.write_text(f'[cameras.0]\nsource = "{VTEST}"\n')
    proc = rva("config", "check", "--config", str(cfg), env={"RVA_REDIS_URL": "localhost:6390"})
    no_traceback(proc)
    assert proc.returncode == 2
    assert "RVA_REDIS_URL: must start with redis://" in proc.stderr


def test_config_check_looks_under_another_root(tmp_path: Path) -> None:
    """rva-firstboot checks a device's config from outside it (its tests): --root DIR."""
    root = tmp_path / "root"
    (root / "var/lib/rva/footage").mkdir(parents=True)
    (root / "var/lib/rva/footage/vtest.avi").symlink_to(VTEST)
    cfg = tmp_path / "rva.toml"
    cfg.write_text('[cameras.0]\nsource = "/var/lib/rva/footage/vtest.avi"\n')
    here = rva("config", "check", "--config", str(cfg))
    assert here.returncode == 2
    assert "no such file: /var/lib/rva/footage/vtest.avi" in here.stderr
    there = rva("config", "check", "--config", str(cfg), "--root", str(root))
    assert there.returncode == 0, there.stderr
