"""The Reports view in a real browser (headless Chromium over the DevTools protocol), against a
real `rva web` in Europe/Berlin on the series of tests/test_reports.py: the view opens, draws
25 hourly bars for 25 October 2026 and 31 daily ones for March, and the screenshot shows them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import redis

from tests.cdp import CHROMIUM, Browser
from tests.conftest import RedisServer
from tests.services.web.test_report import ServicesFactory, serve_seeded
from tests.test_reports import Seeded

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} not installed (apt install chromium)"
)
WINDOW = (1280, 1400)
IN_BARS = (138, 195, 76)  # #4cc38a, BGR
OUT_BARS = (213, 155, 91)  # #5b9bd5, BGR

CHARTS = """JSON.stringify([...document.querySelectorAll('#report-charts canvas')].map((c) => ({
  kind: c.dataset.kind, name: c.dataset.name, buckets: c.dataset.buckets, bars: c.dataset.bars,
  top: c.getBoundingClientRect().top, bottom: c.getBoundingClientRect().bottom})))"""


@pytest.fixture
def seeded_web(
    redis_ts: RedisServer, tmp_path: Path, services: ServicesFactory
) -> tuple[int, redis.Redis, Seeded]:
    return serve_seeded(redis_ts, tmp_path, services)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    b = Browser.start(tmp_path, window=WINDOW)
    try:
        yield b
    finally:
        b.close()


NOTE = "document.getElementById('report-note').textContent"


def charts(b: Browser, want_buckets: str) -> list[dict]:
    for _ in range(60):
        b.pump(0.25)
        found = json.loads(b.evaluate(CHARTS))
        if found and all(c["buckets"] == want_buckets for c in found):
            return list(found)
    note = b.evaluate(NOTE)
    raise AssertionError(f"no charts of {want_buckets} buckets: {found}; the note says {note!r}")


def colour_mask(img: np.ndarray, bgr: tuple[int, int, int]) -> np.ndarray:
    return np.abs(img.astype(np.int16) - np.array(bgr, np.int16)).max(axis=2) < 24


def test_the_reports_view_draws_local_hours_and_days_as_bars(
    seeded_web: tuple[int, redis.Redis, Seeded], browser: Browser, tmp_path: Path
) -> None:
    port = seeded_web[0]
    browser.open(f"http://127.0.0.1:{port}/", settle=3)
    browser.evaluate(
        "(() => { document.getElementById('report-day').value = '2026-10-25';"
        " const r = document.getElementById('reports'); r.open = true;"
        " r.scrollIntoView(); })()"
    )
    hourly = charts(browser, "25")
    assert [(c["kind"], c["name"]) for c in hourly] == [
        ("line", "door"),
        ("line", "side"),
        ("zone", "hall"),
        ("dwell", "hall"),
    ]
    door = hourly[0]
    assert int(door["bars"]) == 50  # every hour has people in and out: 25 + 25 bars
    assert int(hourly[1]["bars"]) == 25 and int(hourly[3]["bars"]) == 25  # side: in only
    note = browser.evaluate(NOTE)
    assert "2026-10-25" in note and "Europe/Berlin" in note
    csv_link = browser.evaluate("document.getElementById('report-csv').href")
    assert csv_link.endswith(
        "/api/report?camera=0&bucket=hour&from=2026-10-25&to=2026-10-25&format=csv"
    )

    shot = cv2.imread(str(browser.screenshot(tmp_path / "report-hours.png")), cv2.IMREAD_COLOR)
    assert shot is not None
    top, bottom = int(door["top"]), int(door["bottom"])
    band = shot[max(0, top) : bottom]
    assert band.size, (top, bottom)
    assert colour_mask(band, IN_BARS).sum() > 300, "no in bars in the door chart"
    assert colour_mask(band, OUT_BARS).sum() > 150, "no out bars in the door chart"

    browser.evaluate(
        "(() => { document.getElementById('report-month').value = '2026-03';"
        " const s = document.getElementById('report-bucket'); s.value = 'day';"
        " s.dispatchEvent(new Event('change')); })()"
    )
    daily = charts(browser, "31")
    assert int(daily[0]["bars"]) == 2 * 3  # 1, 15 and 29 March had crossings, in and out
    browser.screenshot(tmp_path / "report-days.png")
