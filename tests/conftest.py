"""Shared fixtures: real redis-server processes, the real models and footage, rva processes.

Everything comes from the caches that `make fetch` fills (.cache/ or $RVA_CACHE):
  redis-stack/  Redis Stack 7.4 redis-server + redistimeseries.so (real RedisTimeSeries)
  models/       model files, fetched and sha256-verified by `rva models fetch`
  footage/      vtest.avi
The distro redis-server (Debian's, no TimeSeries) backs the degraded-mode tests.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import redis

ROOT = Path(__file__).resolve().parent.parent

# A run started in the background of a non-interactive shell (as a CI runner may start it)
# inherits SIGINT ignored, and so would every rva process and script the tests start: those
# that are sent a Ctrl-C (SIGINT) on purpose would never see it. The pytest process takes
# Python's usual handler, so the processes it starts begin with the default action again.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
DATA = ROOT / "tests" / "data"  # hand labels
CACHE = Path(os.environ.get("RVA_CACHE") or ROOT / ".cache")
MODEL_CACHE = Path(os.environ.get("RVA_MODEL_CACHE") or CACHE / "models")
REDIS_STACK = CACHE / "redis-stack"


SAMPLE_FRAMES = [0, 100, 200, 300, 400, 500, 600, 700]  # of vtest.avi's 795


def rva(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the real `rva` command on the test caches, with no config file unless env names one."""
    base = {**os.environ, "RVA_MODEL_CACHE": str(MODEL_CACHE), "RVA_CACHE": str(CACHE)}
    base.pop("RVA_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "rva", *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two x1, y1, x2, y2 boxes."""
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union else 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(
    check: Callable[[], object], timeout: float = 30.0, interval: float = 0.1, what: str = ""
) -> object:
    """Poll until check() returns something truthy; fail the test with `what` otherwise."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:
            last_exc = exc
        time.sleep(interval)
    pytest.fail(
        f"timed out after {timeout}s waiting for {what or check}"
        + (f" (last error: {last_exc})" if last_exc else "")
    )


@dataclass
class RedisServer:
    binary: str
    port: int
    datadir: Path
    module: str | None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.datadir),
            "--daemonize",
            "no",
            "--logfile",
            str(self.datadir / "redis.log"),
        ]
        if self.module:
            argv += ["--loadmodule", self.module]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        wait_for(client.ping, 15, what=f"redis-server on {self.port}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)


def _server(tmp_path: Path, with_timeseries: bool) -> Iterator[RedisServer]:
    if with_timeseries:
        binary, module = REDIS_STACK / "redis-server", str(REDIS_STACK / "redistimeseries.so")
        if not binary.exists():
            pytest.fail(f"{binary} missing: run `make fetch` (scripts/get-redis-stack.sh)")
    else:
        found = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(found).exists():
            pytest.fail("distro redis-server missing: run `scripts/install-deps.sh test`")
        binary, module = Path(found), None
    datadir = tmp_path / ("redis-ts" if with_timeseries else "redis-plain")
    datadir.mkdir()
    server = RedisServer(str(binary), free_port(), datadir, module)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_ts(tmp_path: Path) -> Iterator[RedisServer]:
    """A real Redis with the real RedisTimeSeries module, on its own port and data dir."""
    yield from _server(tmp_path, with_timeseries=True)


@pytest.fixture
def redis_plain(tmp_path: Path) -> Iterator[RedisServer]:
    """Debian's redis-server: no RedisTimeSeries, as on a device without the Redis APT repo."""
    yield from _server(tmp_path, with_timeseries=False)


@pytest.fixture(scope="session")
def vtest_path() -> Path:
    path = CACHE / "footage" / "vtest.avi"
    if not path.exists():
        pytest.fail(f"{path} missing: run `make fetch` (scripts/get-footage.sh)")
    return path


@pytest.fixture(scope="session")
def sample_frames(vtest_path: Path) -> dict[int, np.ndarray]:
    """The SAMPLE_FRAMES of vtest.avi, decoded once per session."""
    cap = cv2.VideoCapture(str(vtest_path))
    out, index = {}, 0
    while index <= max(SAMPLE_FRAMES):
        ok, frame = cap.read()
        assert ok, f"vtest.avi ended at frame {index}"
        if index in SAMPLE_FRAMES:
            out[index] = frame
        index += 1
    cap.release()
    return out


@pytest.fixture(scope="session")
def model_cache() -> Path:
    return MODEL_CACHE


@pytest.fixture(scope="session")
def ssdlite_graph_pb(model_cache: Path) -> Path:
    path = model_cache / "ssdlite-person" / "frozen_inference_graph.pb"
    if not path.exists():
        pytest.fail(f"{path} missing: run `make fetch`")
    return path


def write_config(
    path: Path, redis_url: str, source: str | Path, **sections: dict[str, object]
) -> Path:
    """A real rva.toml for one camera "0"; extra sections merge over the defaults."""
    camera = {"source": str(source), **sections.pop("camera", {})}
    lines = [f'[redis]\nurl = "{redis_url}"', "[cameras.0]"]
    lines += [f"{k} = {_toml(v)}" for k, v in camera.items()]
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {_toml(v)}" for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


class Services:
    """rva processes started for a test, all stopped (and their logs shown on failure) after."""

    def __init__(self, tmp_path: Path, config: Path, model_cache: Path = MODEL_CACHE) -> None:
        self.tmp_path, self.config, self.model_cache = tmp_path, config, model_cache
        self.procs: list[tuple[str, subprocess.Popen[bytes], Path]] = []

    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "RVA_CONFIG": str(self.config),
            "RVA_MODEL_CACHE": str(self.model_cache),
        }
        env.pop("RVA_REDIS_URL", None)
        env.pop("NOTIFY_SOCKET", None)
        return env

    def run(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "rva", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            pytest.fail(f"rva {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
        return proc

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = self.tmp_path / f"{args[0]}-{len(self.procs)}.log"
        handle = log.open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "rva", *args],
            env={**self.env(), **(env or {})},
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        self.procs.append((args[0], proc, log))
        return proc

    def pipeline(self) -> None:
        """`rva init`, then a gear worker and the capture: the appliance's own start order."""
        self.run("init")
        self.start("gears")
        self.start("capture")

    def stop_all(self) -> None:
        for _name, proc, _log in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _name, proc, _log in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()

    def logs(self) -> str:
        return "\n".join(
            f"--- {name} ({log.name})\n{log.read_text(errors='replace')[-3000:]}"
            for name, _p, log in self.procs
        )


@pytest.fixture
def services(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., Services]]:
    made: list[Services] = []

    def make(config: Path, model_cache: Path = MODEL_CACHE) -> Services:
        s = Services(tmp_path, config, model_cache)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop_all()
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            print(s.logs())


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep
