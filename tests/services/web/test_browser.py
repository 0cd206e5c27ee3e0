"""The live page in a real browser (Debian's headless chromium) against the real pipeline.

Chromium only ever talks to 127.0.0.1: every other host goes to a dead proxy and resolves to
nothing. The MJPEG stream never ends, so the page never finishes loading; a virtual time budget
makes chromium take the DOM / screenshot once the budget is spent, with the stream running.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.cdp import CHROMIUM, chromium_argv
from tests.services.web.test_web import Pipeline, green_mask, running_pipeline

WINDOW = (1280, 1100)  # tall enough for the chart under the video
BUDGET_MS = 6000  # virtual time: several summary refreshes, a chart, the video playing

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} not installed (apt install chromium)"
)

PAGE_BG = (24, 20, 16)  # --bg #101418, BGR
CHART_LINE = (138, 195, 76)  # --accent #4cc38a, BGR


def chromium(
    tmp: Path, url: str, *args: str, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    profile = tmp / "chromium-profile"
    profile.mkdir(exist_ok=True)
    argv = [
        *chromium_argv(profile),
        f"--virtual-time-budget={BUDGET_MS}",
        *args,
        url,
    ]
    env = {"HOME": str(tmp), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    assert proc.returncode == 0, f"chromium exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc


class _Texts(HTMLParser):
    """Text content of the elements that have an id."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: dict[str, str] = {}
        self.attrs_by_id: dict[str, dict[str, str | None]] = {}
        self.open: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        elem_id = found.get("id")
        if elem_id:
            self.attrs_by_id[elem_id] = found
            self.texts.setdefault(elem_id, "")
        if tag not in ("img", "meta", "link", "br", "input", "option"):
            self.open.append(elem_id)

    def handle_endtag(self, tag: str) -> None:
        if self.open and tag not in ("img", "meta", "link", "br", "input", "option"):
            self.open.pop()

    def handle_data(self, data: str) -> None:
        for elem_id in self.open:
            if elem_id:
                self.texts[elem_id] += data


def dom_texts(html: str) -> _Texts:
    parser = _Texts()
    parser.feed(html)
    return parser


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    with running_pipeline(tmp_path_factory.mktemp("browser-pipeline")) as pipe:
        yield pipe


def test_page_shows_the_count_and_time_series_state(pipeline: Pipeline, tmp_path: Path) -> None:
    dom = chromium(tmp_path, f"http://127.0.0.1:{pipeline.port}/", "--dump-dom").stdout
    page = dom_texts(dom)
    people = page.texts["people"].strip()
    assert re.fullmatch(r"\d+", people), f"#people is {people!r}"
    assert int(people) >= 0
    assert page.texts["timeseries"].strip() == "on"
    assert page.texts["status"].strip() == "ok"
    assert page.texts["in_fps"].strip() not in ("", "–", "—")
    assert page.texts["chart-source"].strip() == ""  # a plain title, unless time series are off
    # The camera's source, named once: "file …/vtest.avi", not "…/vtest.avi → file …/vtest.avi".
    source = page.texts["source"].strip()
    assert source.count("vtest.avi") == 1 and "→" not in source, source
    assert page.attrs_by_id["video"]["src"] == "/video?camera=0"


def _video_rect(shot: np.ndarray) -> tuple[int, int, int, int]:
    """Bounding box (x, y, w, h) of the largest area in the left column that is not page
    background: the <img id=video> (or its black placeholder when nothing was drawn)."""
    h, w = shot.shape[:2]
    differs = np.abs(shot.astype(np.int16) - np.array(PAGE_BG, np.int16)).max(axis=2) > 6
    differs[: h // 20] = False  # the header bar
    differs[:, int(w * 0.74) :] = False  # the side panel
    n, _labels, stats, _centroids = cv2.connectedComponentsWithStats(differs.astype(np.uint8))
    assert n > 1, "nothing drawn in the video column"
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, bw, bh = (int(v) for v in stats[biggest, :4])
    return x, y, bw, bh


def test_page_screenshot_shows_annotated_video_and_chart(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    # The chart spans its whole range (10 minutes) up to now, with gaps where nothing was
    # counted: give the series the last five minutes a device would have, one sample every 2 s,
    # so that the line has a length to see beside the few seconds this pipeline has run.
    client, now_ms = pipeline.client(), int(time.time() * 1000)
    history = []
    for t in range(now_ms - 300_000, now_ms - 30_000, 2000):
        history += ["camera:0:people", t, 3 + (t // 2000) % 3]
    client.execute_command("TS.MADD", *history)
    path = tmp_path / "page.png"
    chromium(
        tmp_path,
        f"http://127.0.0.1:{pipeline.port}/",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        f"--screenshot={path}",
    )
    shot = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert shot is not None, "no screenshot written"
    assert (shot.shape[1], shot.shape[0]) == WINDOW

    x, y, w, h = _video_rect(shot)
    # The footage (768x576) fills the column at its own aspect ratio: a placeholder would be a
    # 200 px high black strip.
    assert w > WINDOW[0] * 0.6, (x, y, w, h)
    assert abs(w / h - 768 / 576) < 0.03, (x, y, w, h)
    video = shot[y : y + h, x : x + w]
    grey = cv2.cvtColor(video, cv2.COLOR_BGR2GRAY)
    assert grey.std() > 25, f"video area is flat (std {grey.std():.1f})"
    assert 40 < grey.mean() < 200, f"video area mean {grey.mean():.1f}"
    # Annotated: green boxes, and the label's black box with white text in its top-left corner.
    assert green_mask(video).sum() > 300, "no green boxes in the video"
    scale = w / 768
    label = grey[: int(30 * scale), : int(130 * scale)]
    assert (label < 40).mean() > 0.5, "no black label box"
    assert (label > 200).mean() > 0.03, "no white label text"

    # The chart under the video has drawn its line.
    below = shot[y + h :]
    line = np.abs(below.astype(np.int16) - np.array(CHART_LINE, np.int16)).max(axis=2) < 30
    assert line.sum() > 100, "no chart line"
