"""GET /api/report from a real `rva web` (TZ=Europe/Berlin) over HTTP: on the series of
tests/test_reports.py, JSON and CSV are the same report; bad parameters are 400s that name
them; without RedisTimeSeries a 503 says why. Then the whole appliance on vtest.avi with the
demo's line: what the report sums is what the stage counted."""

from __future__ import annotations

import csv
import io
import json
import signal
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest
import redis

from rva import keys
from rva.reports import calendar, export, series
from tests.conftest import RedisServer, Services, free_port, wait_for
from tests.services.web.test_web import http_get
from tests.test_reports import BERLIN, Seeded, seed

ServicesFactory = Callable[[Path], Services]
TZ = {"TZ": "Europe/Berlin"}


def web_config(tmp_path: Path, url: str, port: int, source: str = "/dev/null") -> Path:
    cfg = tmp_path / "rva.toml"
    cfg.write_text(
        f'[redis]\nurl = "{url}"\n[web]\nhost = "127.0.0.1"\nport = {port}\n'
        f'[cameras.0]\nsource = "{source}"\n'
        "[cameras.0.lines.door]\npoints = [[330, 185], [330, 375]]\nin_side = [400, 270]\n"
        "[cameras.0.zones.hall]\npolygon = [[200, 200], [460, 200], [460, 320], [200, 320]]\n"
    )
    return cfg


def start_web(svc: Services, port: int) -> None:
    svc.start("web", env=TZ)
    wait_for(lambda: http_get(port, "/healthz", timeout=2)[0] in (200, 503), 60, what="rva web")


def serve_seeded(
    redis_ts: RedisServer, tmp_path: Path, services: ServicesFactory
) -> tuple[int, redis.Redis, Seeded]:
    """tests/test_reports.py's series, and rva web on them in Europe/Berlin."""
    client = redis_ts.client()
    seeded = seed(client, tmp_path)
    port = free_port()
    start_web(services(web_config(tmp_path, redis_ts.url, port)), port)
    return port, client, seeded


@pytest.fixture
def seeded_web(
    redis_ts: RedisServer, tmp_path: Path, services: ServicesFactory
) -> tuple[int, redis.Redis, Seeded]:
    return serve_seeded(redis_ts, tmp_path, services)


def get(port: int, **query: str) -> tuple[int, dict[str, str], bytes]:
    return http_get(port, "/api/report?" + urlencode(query), timeout=30)


def csv_as_report(body: bytes) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(body.decode()))
    return list(reader.fieldnames or []), list(reader)


def json_as_rows(data: dict) -> list[dict[str, str]]:
    """The JSON report's values as CSV would spell them."""
    return [
        {k: "" if row.get(k) is None else str(row.get(k)) for k in export.CSV_COLUMNS}
        for row in export.rows(data)
    ]


@pytest.mark.parametrize(
    ("query", "buckets", "name"),
    [
        ({"bucket": "hour", "from": "2026-10-25"}, 25, "rva-report-0-hour-2026-10-25.csv"),
        ({"bucket": "hour", "from": "2026-03-29", "to": "2026-03-29"}, 23, None),
        ({"bucket": "day", "from": "2026-03-01"}, 31, "rva-report-0-day-2026-03-01_2026-03-31.csv"),
    ],
)
def test_json_and_csv_are_one_report_in_the_devices_local_time(
    seeded_web: tuple[int, redis.Redis, Seeded], query: dict, buckets: int, name: str | None
) -> None:
    port, client, _s = seeded_web
    status, headers, body = get(port, camera="0", **query)
    assert status == 200 and headers["content-type"] == "application/json"
    data = json.loads(body)
    assert data["timezone"] == "Europe/Berlin" and len(data["buckets"]) == buckets
    assert [line["name"] for line in data["lines"]] == ["door", "side"]  # side: its series only
    # The same as the report made here with Europe/Berlin: rva web took TZ as its zone.
    lo, hi = calendar.span(query["bucket"], query["from"], query.get("to"), BERLIN, 0)
    here = series.report(
        client,
        "0",
        query["bucket"],
        lo,
        hi,
        BERLIN,
        lines=["door"],
        zones=["hall"],
        now_ms=int(time.time() * 1000),
    )
    assert data == here
    status, headers, body = get(port, camera="0", format="csv", **query)
    assert status == 200 and headers["content-type"].startswith("text/csv")
    assert headers["content-disposition"].startswith("attachment; filename=")
    if name:
        assert headers["content-disposition"] == f'attachment; filename="{name}"'
    columns, rows = csv_as_report(body)
    assert columns == list(export.CSV_COLUMNS)
    assert rows == json_as_rows(data) and len(rows) == buckets * 3  # door, side, hall
    assert (
        sum(int(r["in"]) for r in rows if r["name"] == "door") == data["lines"][0]["totals"]["in"]
    )


def test_defaults_are_today_by_hour_and_this_month_by_day(
    seeded_web: tuple[int, redis.Redis, Seeded],
) -> None:
    port, _client, _s = seeded_web
    today = datetime.now(ZoneInfo("Europe/Berlin")).date()
    status, _h, body = get(port)
    data = json.loads(body)
    assert status == 200 and data["bucket"] == "hour" and data["camera"] == "0"
    assert data["from"][:10] == today.isoformat() and len(data["buckets"]) in (23, 24, 25)
    data = json.loads(get(port, bucket="day")[2])
    assert (
        data["from"][:10] == today.replace(day=1).isoformat() and 28 <= len(data["buckets"]) <= 31
    )


@pytest.mark.parametrize(
    ("query", "status", "parameter", "words"),
    [
        ({"bucket": "week"}, 400, "bucket", "hour or day"),
        ({"from": "tuesday"}, 400, "from", "not a date"),
        ({"to": "2026-02-30"}, 400, "to", "not a date"),
        ({"from": "2026-03-02", "to": "2026-03-01"}, 400, "to", "after from"),
        ({"from": "2026-01-01", "to": "2026-06-01"}, 400, "to", "at most 744 hourly"),
        ({"format": "xml"}, 400, "format", "json or csv"),
        ({"camera": "9"}, 404, None, "unknown camera"),
    ],
)
def test_a_wrong_parameter_is_named(
    seeded_web: tuple[int, redis.Redis, Seeded], query: dict, status: int, parameter, words: str
) -> None:
    got, headers, body = get(seeded_web[0], **query)
    answer = json.loads(body)
    assert got == status and headers["content-type"] == "application/json", body
    assert words in answer["error"] and answer.get("parameter") == parameter


def test_without_timeseries_the_report_says_it_needs_them(
    redis_plain: RedisServer, tmp_path: Path, services: ServicesFactory
) -> None:
    port = free_port()
    start_web(services(web_config(tmp_path, redis_plain.url, port)), port)
    status, _h, body = get(port)
    assert status == 503 and "reports need RedisTimeSeries" in json.loads(body)["error"]


def test_on_the_running_appliance_the_report_sums_to_the_counted_totals(
    redis_ts: RedisServer, vtest_path: Path, tmp_path: Path, services: ServicesFactory
) -> None:
    """vtest.avi with the demo's line for 30 s or more (until 3 crossings are counted): then
    capture and gears stop, and the report over the run sums to camera:0:counts' totals."""
    port = free_port()
    svc = services(web_config(tmp_path, redis_ts.url, port, str(vtest_path)))
    began = datetime.now(timezone.utc) - timedelta(minutes=2)
    svc.pipeline()
    start_web(svc, port)
    client = redis_ts.client()

    def total(direction: str) -> int:
        return int(client.hget(keys.counts("0"), f"line:door:{direction}") or 0)

    started = time.monotonic()
    wait_for(lambda: total("in") + total("out") >= 3, 150, what="three crossings counted")
    time.sleep(max(0.0, 30 - (time.monotonic() - started)))
    for name, proc, _log in svc.procs:
        if name in ("capture", "gears"):
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    totals = {d: total(d) for d in ("in", "out")}
    assert sum(totals.values()) >= 3
    ended = datetime.now(timezone.utc) + timedelta(minutes=2)
    span = {"bucket": "hour", "from": began.isoformat(), "to": ended.isoformat()}  # "+" encoded
    status, _h, body = get(port, **span)
    assert status == 200, body
    door = json.loads(body)["lines"][0]
    assert door["name"] == "door"
    assert {d: sum(v or 0 for v in door[d]) for d in totals} == door["totals"] == totals
    cli = svc.run("report", "0", "--json", "--from", span["from"], "--to", span["to"])
    assert json.loads(cli.stdout)["lines"][0]["totals"] == totals
