"""A camera URL's password never shows: not on /healthz (which answers without authentication),
not in `rva status`, capture's log, its systemd status line, `rva config check`'s findings or
Redis. One function does it (rva.redact.secrets); tested here through the real processes."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from rva.health import source_key
from rva.redact import secrets
from tests.conftest import RedisServer, Services, free_port, rva, wait_for, write_config

PASSWORD = "Sup3rSecret"
# Port 9 (discard) on loopback: refused at once, so capture reports and retries.
SOURCE = f"rtsp://admin:{PASSWORD}@127.0.0.1:9/live?token=T0ken{PASSWORD}"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("rtsp://admin:pw@192.0.2.1:554/live", "rtsp://admin:***@192.0.2.1:554/live"),
        (
            "http://cam/snap.jpg?user=a&password=x&x=1",
            "http://cam/snap.jpg?user=a&password=***&x=1",
        ),
        (
            "cannot open stream rtsp://u:p@h/x: refused",
            "cannot open stream rtsp://u:***@h/x: refused",
        ),
        (
            "gst:rtspsrc location=rtsp://a:b@c/d ! fakesink",
            "gst:rtspsrc location=rtsp://a:***@c/d ! fakesink",
        ),
        ("rtsp://cam/live", "rtsp://cam/live"),
        ("rtsp://user@cam/x", "rtsp://user@cam/x"),
        ("/dev/video0", "/dev/video0"),
    ],
)
def test_secrets_hides_passwords_and_tokens_of_urls(text: str, shown: str) -> None:
    assert secrets(text) == shown


def test_a_camera_password_shows_nowhere(
    redis_plain: RedisServer,
    tmp_path: Path,
    services: Callable[[Path], Services],
) -> None:
    config = write_config(tmp_path / "rva.toml", redis_plain.url, SOURCE)
    svc = services(config)
    svc.run("init")
    capture = svc.start("capture")
    client = redis_plain.client()
    source = source_key("0")
    wait_for(lambda: client.hget(source, "state") == b"waiting", 60, what="capture to report")
    port = free_port()
    svc.start("web", "--port", str(port))

    def healthz() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return r.read().decode()

    body = wait_for(healthz, 60, what="rva web up")
    shown = json.loads(body)["cameras"]["0"]["source"]
    assert shown["configured"].startswith("rtsp://admin:***@127.0.0.1:9/live?token=***"), shown
    status = svc.run("status", check=False).stdout
    stored = json.dumps({k.decode(): v.decode() for k, v in client.hgetall(source).items()})
    check = rva("config", "check", "--config", str(config))
    capture.terminate()
    capture.wait(15)
    log = next(p for name, _proc, p in svc.procs if name == "capture").read_text()
    assert "rtsp://admin:***@" in log, log[-2000:]
    for where, text in {
        "/healthz": body,
        "rva status": status,
        "Redis": stored,
        "capture's log": log,
        "rva config check": check.stdout + check.stderr,
    }.items():
        assert PASSWORD not in text, f"{where}: {text[-2000:]}"
