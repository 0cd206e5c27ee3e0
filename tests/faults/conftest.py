"""Helpers of the fault suite: a redis-server started the way a fault needs it (extra settings,
a data dir of its own, an environment such as libfaketime's), the set-up every fault test
shares (fault_stack: that Redis, an rva.toml, `rva init`, rva web on a port of its own), the
services' logs, HTTP, and the checks every fault test makes (stopped within 5 s, nothing
counted twice)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from rva import keys
from tests.conftest import REDIS_STACK, RedisServer, Services, free_port, wait_for, write_config

STOP_BOUND_S = 5.0  # the bound for a clean stop, whatever the fault
# The line of the hand-labelled crossings on vtest.avi: makes the counting stage run.
LINE = {"points": [[330, 185], [330, 375]], "in_side": [400, 270]}


@dataclass
class FaultRedis(RedisServer):
    """A real redis-server (Redis Stack + RedisTimeSeries) with extra arguments and environment;
    its log lives outside the data dir, which a test may fill up."""

    extra: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    logfile: Path = Path("/dev/null")

    def start(self) -> None:
        argv = [
            self.binary,
            *("--port", str(self.port), "--bind", "127.0.0.1", "--daemonize", "no"),
            *("--dir", str(self.datadir), "--logfile", str(self.logfile)),
            *("--save", "", "--appendonly", "no"),
            *(("--loadmodule", self.module) if self.module else ()),
            *self.extra,
        ]
        self.proc = subprocess.Popen(
            argv,
            env={**os.environ, **self.env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        wait_for(client.ping, 15, what=f"redis-server on {self.port}")

    def log(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""


@pytest.fixture
def fault_redis(tmp_path: Path) -> Iterator[Callable[..., FaultRedis]]:
    """make(*extra_args, env=..., datadir=...) starts a Redis Stack server; all are stopped
    after the test."""
    made: list[FaultRedis] = []

    def make(
        *extra: str, env: dict[str, str] | None = None, datadir: Path | None = None
    ) -> FaultRedis:
        n = len(made)
        folder = datadir or tmp_path / f"redis-{n}"
        folder.mkdir(exist_ok=True)
        server = FaultRedis(
            str(REDIS_STACK / "redis-server"),
            free_port(),
            folder,
            str(REDIS_STACK / "redistimeseries.so"),
            extra=list(extra),
            env=env or {},
            logfile=tmp_path / f"redis-{n}.log",
        )
        made.append(server)
        server.start()
        return server

    yield make
    for server in made:
        server.stop()


# -- the shared set-up: Redis, rva.toml, `rva init`, the services --------------------------
@dataclass
class FaultStack:
    """One camera's appliance for a fault test: its Redis (none when the test gave a URL where
    nothing listens), its rva.toml, the rva processes it starts, and the port of rva web."""

    redis_server: FaultRedis | None
    svc: Services
    port: int  # rva web's, once web() starts it
    config: Path

    @property
    def server(self) -> FaultRedis:
        assert self.redis_server is not None, "no Redis of its own: the test gave redis_url"
        return self.redis_server

    def client(self) -> redis.Redis:
        return self.server.client()

    def web(self, *args: str, wait: bool = True) -> subprocess.Popen[bytes]:
        """Start rva web on this stack's port; with ``wait``, return once /healthz answers 200."""
        proc = self.svc.start("web", "--port", str(self.port), *args)
        if wait:
            wait_for(lambda: get(self.port, "/healthz")[0] == 200, 60, what="rva web up")
        return proc

    def appliance(self) -> dict[str, subprocess.Popen[bytes]]:
        """Gears, capture and web, in the appliance's order; returned once results flow and
        /healthz says ok."""
        procs = {"gears": self.svc.start("gears"), "capture": self.svc.start("capture")}
        procs["web"] = self.web()
        client = self.client()
        wait_for(lambda: client.xlen(keys.results("0")) >= 5, 90, what="results")
        wait_for(lambda: healthz(self.port).get("status") == "ok", 30, what="/healthz ok at first")
        return procs


@pytest.fixture
def fault_stack(
    fault_redis: Callable[..., FaultRedis],
    tmp_path: Path,
    vtest_path: Path,
    services: Callable[[Path], Services],
) -> Callable[..., FaultStack]:
    """make(*redis_extra, env=..., datadir=..., redis_url=..., init=True, **sections): a Redis
    started by fault_redis(*redis_extra, env=..., datadir=...) (none when ``redis_url`` is given),
    an rva.toml for camera "0" on vtest.avi with ``sections`` merged in (write_config), and
    `rva init` run on it unless ``init`` is false. Nothing else is started."""
    made: list[FaultStack] = []

    def make(
        *redis_extra: str,
        env: dict[str, str] | None = None,
        datadir: Path | None = None,
        redis_url: str | None = None,
        init: bool = True,
        **sections: dict[str, object],
    ) -> FaultStack:
        server = None
        if redis_url is None:
            server = fault_redis(*redis_extra, env=env, datadir=datadir)
            redis_url = server.url
        name = "rva.toml" if not made else f"rva-{len(made)}.toml"
        config = write_config(tmp_path / name, redis_url, vtest_path, **sections)
        stack = FaultStack(server, services(config), free_port(), config)
        made.append(stack)
        if init:
            stack.svc.run("init")
        return stack

    return make


# -- the services' logs ---------------------------------------------------------------------
def log_path(svc: Services, proc: subprocess.Popen[bytes]) -> Path:
    return next(log for _name, p, log in svc.procs if p is proc)


def log_text(svc: Services, proc: subprocess.Popen[bytes]) -> str:
    return log_path(svc, proc).read_text(errors="replace")


def log_size(svc: Services, proc: subprocess.Popen[bytes]) -> int:
    return len(log_text(svc, proc))


def wait_log(
    svc: Services,
    proc: subprocess.Popen[bytes],
    pattern: str,
    *,
    after: int = 0,
    timeout: float = 60,
) -> re.Match[str]:
    """Wait until the service's log, past offset ``after``, matches ``pattern``."""

    def found() -> re.Match[str] | None:
        return re.search(pattern, log_text(svc, proc)[after:])

    match = wait_for(found, timeout, 0.2, what=f"{pattern!r} in the log of {proc.args!r}")
    assert isinstance(match, re.Match)
    return match


def stops_cleanly(proc: subprocess.Popen[bytes], sig: signal.Signals) -> float:
    """Send ``sig``; the process must exit with status 0 within STOP_BOUND_S. Returns seconds."""
    assert proc.poll() is None, f"{proc.args!r} had already exited ({proc.returncode})"
    start = time.monotonic()
    proc.send_signal(sig)
    try:
        code = proc.wait(STOP_BOUND_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        pytest.fail(f"{proc.args!r} did not stop within {STOP_BOUND_S}s of {sig.name}")
    took = time.monotonic() - start
    assert code == 0, f"{proc.args!r} exited {code} on {sig.name}"
    return took


# -- HTTP -----------------------------------------------------------------------------------
def get(port: int, path: str, timeout: float = 10) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def get_json(port: int, path: str) -> tuple[int, Any]:
    status, body = get(port, path)
    return status, json.loads(body)


def healthz(port: int) -> dict[str, Any]:
    data: dict[str, Any] = get_json(port, "/healthz")[1]
    return data


def all_problems(health: dict[str, Any]) -> list[str]:
    """Every problem /healthz or `rva status --json` lists, the cameras' included."""
    found = list(health.get("problems", []))
    for camera in (health.get("cameras") or {}).values():
        found += camera.get("problems", [])
    return found


def metric(port: int, name: str, **labels: str) -> float | None:
    """One sample of /metrics, by name and labels; None when absent."""
    text = get(port, "/metrics")[1].decode()
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        got = dict(re.findall(r'(\w+)="([^"]*)"', head))
        if head.split("{")[0] == name and all(got.get(k) == v for k, v in labels.items()):
            return float(value)
    return None


# -- what every fault test checks -----------------------------------------------------------
def result_refs(client: redis.Redis, camera: str = "0") -> list[str]:
    return [f[b"ref"].decode() for _id, f in client.xrange(keys.results(camera)) if b"ref" in f]


def assert_nothing_counted_twice(client: redis.Redis, camera: str = "0") -> list[str]:
    """Each frame has at most one result; the events of the counting stage are unique too."""
    refs = result_refs(client, camera)
    doubled = {r for r in refs if refs.count(r) > 1}
    assert not doubled, f"frames with two results: {sorted(doubled)[:5]}"
    events = [tuple(sorted(f.items())) for _id, f in client.xrange(keys.events(camera))]
    assert len(events) == len(set(events)), "an event was written twice"
    return refs


def errors(client: redis.Redis) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in client.hgetall(keys.ERRORS).items()}
