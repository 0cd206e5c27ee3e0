"""Error pages over real HTTP: HTML outside /api (not a Python bytes repr), JSON inside."""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable
from pathlib import Path

from tests.conftest import RedisServer, Services, free_port, wait_for, write_config


def _get(port: int, path: str) -> tuple[int, str, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type") or "", resp.read().decode()
    finally:
        conn.close()


def test_error_pages_are_html_outside_the_api_and_json_inside(
    redis_plain: RedisServer, tmp_path: Path, vtest_path: Path, services: Callable[[Path], Services]
) -> None:
    svc = services(write_config(tmp_path / "rva.toml", redis_plain.url, vtest_path))
    port = free_port()
    svc.start("web", "--port", str(port))
    wait_for(lambda: _get(port, "/healthz")[0] in (200, 503), 60, what="rva web up")
    status, kind, body = _get(port, "/no/such/page")
    assert status == 404 and kind.startswith("text/html"), (status, kind)
    assert body.lstrip().startswith("<!DOCTYPE HTML") and "b'" not in body[:10], body[:200]
    assert "Error: 404 Not Found" in body
    status, kind, body = _get(port, "/api/no-such-thing")
    assert status == 404 and kind.startswith("application/json")
    assert json.loads(body)["status"] == 404
