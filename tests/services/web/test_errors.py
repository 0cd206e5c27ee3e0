"""Error pages over real HTTP: HTML outside /api (not a Python bytes repr), JSON inside."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tests.conftest import RedisServer, Services, free_port, wait_for, write_config
from tests.services.web.test_web import http_get


def test_error_pages_are_html_outside_the_api_and_json_inside(
    redis_plain: RedisServer, tmp_path: Path, vtest_path: Path, services: Callable[[Path], Services]
) -> None:
    svc = services(write_config(tmp_path / "rva.toml", redis_plain.url, vtest_path))
    port = free_port()
    svc.start("web", "--port", str(port))
    wait_for(lambda: http_get(port, "/healthz")[0] in (200, 503), 60, what="rva web up")
    status, headers, raw = http_get(port, "/no/such/page")
    body = raw.decode()
    assert status == 404 and headers["content-type"].startswith("text/html"), (status, headers)
    assert body.lstrip().startswith("<!DOCTYPE HTML") and "b'" not in body[:10], body[:200]
    assert "Error: 404 Not Found" in body
    status, headers, raw = http_get(port, "/api/no-such-thing")
    assert status == 404 and headers["content-type"].startswith("application/json")
    assert json.loads(raw)["status"] == 404
