"""Debian's own redis-server has no RedisTimeSeries: RVA still runs, and says so everywhere."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from rva import keys
from tests.conftest import RedisServer, Services, wait_for, write_config


def test_without_timeseries_counts_flow_and_every_surface_says_series_are_off(
    redis_plain: RedisServer, vtest_path: Path, tmp_path: Path, services: Callable[[Path], Services]
) -> None:
    svc = services(write_config(tmp_path / "rva.toml", redis_plain.url, vtest_path))
    summary = json.loads(svc.run("init").stdout)
    assert summary["timeseries"] is False
    client = redis_plain.client()
    assert client.get(keys.TIMESERIES_FLAG) == b"off"
    svc.start("gears")
    svc.start("capture")
    wait_for(lambda: client.xlen(keys.results("0")) >= 5, 90, what="results without TimeSeries")
    assert client.exists("camera:0:people") == 0  # no series, no stray plain keys either
    latest = {k.decode(): float(v) for k, v in client.hgetall(keys.latest("0")).items()}
    assert latest["prf_model"] > 0 and "people" in latest

    status = svc.run("status", check=False)
    assert status.returncode == 1  # degraded is not "ok"
    assert "time series: OFF" in status.stdout
    assert "camera 0: people" in status.stdout
    as_json = json.loads(svc.run("status", "--json", check=False).stdout)
    assert as_json["timeseries"] == "off" and as_json["status"] == "degraded"
    assert "RedisTimeSeries not available: time series are off" in as_json["problems"]
    assert "time series are OFF" in svc.logs()


def test_status_with_redis_down_exits_nonzero_with_a_reason(
    tmp_path: Path, vtest_path: Path, services: Callable[[Path], Services]
) -> None:
    svc = services(write_config(tmp_path / "rva.toml", "redis://127.0.0.1:1/0", vtest_path))
    res = svc.run("status", check=False, timeout=60)
    assert res.returncode == 1
    assert "RVA: down" in res.stdout and "Redis: unreachable" in res.stdout
