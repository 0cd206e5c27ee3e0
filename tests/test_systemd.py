"""sd_notify as systemd sees it: READY only when the service can serve, STATUS, WATCHDOG."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rva import keys
from tests.conftest import RedisServer, Services, free_port, wait_for, write_config


class NotifySocket:
    """The datagram socket systemd would listen on ($NOTIFY_SOCKET)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[str] = []

    def drain(self) -> list[str]:
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                return self.messages

    def seen(self, prefix: str) -> bool:
        return any(line.startswith(prefix) for m in self.drain() for line in m.splitlines())

    @property
    def env(self) -> dict[str, str]:
        """A service's environment under systemd with this socket and WatchdogSec=1s."""
        return {"NOTIFY_SOCKET": str(self.path), "WATCHDOG_USEC": "1000000"}


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    ns = NotifySocket(tmp_path / "notify.sock")
    yield ns
    ns.sock.close()


def test_services_report_ready_status_and_feed_the_watchdog(
    redis_ts: RedisServer,
    vtest_path: Path,
    tmp_path: Path,
    notify: NotifySocket,
    services: Callable[[Path], Services],
) -> None:
    port = free_port()
    cfg = write_config(
        tmp_path / "rva.toml", redis_ts.url, vtest_path, web={"host": "127.0.0.1", "port": port}
    )
    svc = services(cfg)
    env = notify.env
    # Before `rva init` the gear worker has nothing to run: it must say so and not claim READY.
    svc.start("gears", env=env)
    wait_for(lambda: notify.seen("STATUS=waiting for `rva init`"), 60, what="waiting status")
    assert not notify.seen("READY=1")
    svc.run("init")
    wait_for(lambda: notify.seen("READY=1"), 60, what="gears READY after init")
    notify.messages.clear()
    svc.start("capture", env=env)
    wait_for(lambda: notify.seen("STATUS=capturing file"), 60, what="capture READY status")
    assert any("READY=1" in m for m in notify.messages)
    notify.messages.clear()
    time.sleep(2.5)  # WatchdogSec=1s: pings at least every half interval
    messages = notify.drain()
    assert sum(m.count("WATCHDOG=1") for m in messages) >= 4
    # The gear's status changes with every frame (10 a second here), capture's every 5 s:
    # systemd is told at most once a second by each.
    statuses = [m for m in messages if "STATUS=" in m]
    assert 1 <= len(statuses) <= 2 * 4, statuses
    notify.messages.clear()
    svc.start("web", env=env)
    wait_for(lambda: notify.seen(f"STATUS=serving http://127.0.0.1:{port}/"), 60, what="web READY")


def _two_cameras(path: Path, redis_url: str, first: Path, second: Path) -> Path:
    path.write_text(
        f'[redis]\nurl = "{redis_url}"\n\n'
        f'[cameras.0]\nsource = "{first}"\n\n'
        f'[cameras.door]\nsource = "{second}"\nfps = 5.0\n',
        encoding="utf-8",
    )
    return path


def test_capture_without_a_camera_named_captures_every_configured_camera(
    redis_ts: RedisServer, vtest_path: Path, tmp_path: Path, services: Callable[[Path], Services]
) -> None:
    svc = services(_two_cameras(tmp_path / "rva.toml", redis_ts.url, vtest_path, vtest_path))
    svc.run("capture", "--frames", "4", timeout=120)
    client = redis_ts.client()
    assert client.xlen(keys.frames("0")) == 4
    assert client.xlen(keys.frames("door")) == 4


def test_one_lost_camera_holds_up_neither_ready_nor_the_others_nor_the_watchdog(
    redis_ts: RedisServer,
    vtest_path: Path,
    tmp_path: Path,
    notify: NotifySocket,
    services: Callable[[Path], Services],
) -> None:
    gone = tmp_path / "unplugged.avi"
    svc = services(_two_cameras(tmp_path / "rva.toml", redis_ts.url, vtest_path, gone))
    env = notify.env
    proc = svc.start("capture", env=env)
    wait_for(lambda: notify.seen("READY=1"), 60, what="READY with one camera capturing")
    client = redis_ts.client()
    wait_for(lambda: client.xlen(keys.frames("0")) >= 5, 60, what="frames of camera 0")
    status = [line for m in notify.drain() for line in m.splitlines() if line.startswith("STATUS=")]
    assert any("camera door: waiting for camera" in line for line in status), status
    notify.messages.clear()
    time.sleep(2.5)  # WatchdogSec=1s: fed while both loops report (the lost one from backoff)
    assert sum(m.count("WATCHDOG=1") for m in notify.drain()) >= 4
    # The camera comes back: its frames flow without a restart.
    gone.symlink_to(vtest_path)
    wait_for(lambda: client.xlen(keys.frames("door")) >= 3, 90, what="frames of camera door")
    assert proc.poll() is None
    assert client.xlen(keys.frames("0")) > 5
