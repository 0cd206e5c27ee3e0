"""[web] video = "blurred" | "off": real rva web processes over real HTTP and in headless
Chromium, against real redis-server, capture and gears on vtest.avi.

blurred: in every JPEG /video serves, each person the detector found (the box drawn, grown by
the margin pixelate() adds) has lost its detail (Laplacian variance far below the same region
of the stored frame), and everything else is the stored frame; a frame no result covers is
pixelated whole. off: no /video at all, and the page shows the counts with no image.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from rva import keys
from tests.cdp import CHROMIUM, Browser
from tests.services.web.test_auth import Stack, Web, running_stack
from tests.services.web.test_web import MjpegClient, frame_image, match_boxes, outline_mask

MARGIN = 0.15  # rva.overlay.pixelate's

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("privacy"), ("capture", "gears")) as s:
        yield s


def sharpness(img: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Laplacian variance of the grey image (within mask): detail left in it."""
    lap = cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.CV_64F)
    return float(lap[mask].var() if mask is not None else lap.var())


def grown(box: list[int], shape: tuple[int, ...], margin: float, pad: int) -> list[int]:
    x1, y1, x2, y2 = box
    mx, my = int((x2 - x1) * margin) + pad, int((y2 - y1) * margin) + pad
    return [max(0, x1 - mx), max(0, y1 - my), min(shape[1], x2 + mx), min(shape[0], y2 + my)]


def test_blurred_video_pixelates_every_person_before_encoding(stack: Stack) -> None:
    web = stack.web("blurred", video="blurred")
    rc = stack.server.client()
    client = MjpegClient(web.port)
    try:
        parts = [p.image() for p in client.parts(6)]
    finally:
        client.close()
    recent = rc.xrevrange(keys.results("0"), count=200)
    by_id = dict(recent)
    checked_people = 0
    for served in parts:
        match = match_boxes(served, recent)  # the green outlines say which result it is
        assert match.precision > 0.9 and match.coverage > 0.6, match
        original = frame_image(rc, match.ref)
        flat = json.loads(by_id[match.result_id][b"boxes"])
        boxes = [flat[i : i + 4] for i in range(0, len(flat) - 3, 4)]
        assert boxes
        outlines = cv2.dilate(outline_mask(served.shape, flat), np.ones((7, 7), np.uint8)) > 0
        for box in boxes:
            x1, y1, x2, y2 = box
            if (x2 - x1) < 12 or (y2 - y1) < 24:
                continue  # too small to measure detail in
            inside = np.zeros(served.shape[:2], bool)
            inside[y1:y2, x1:x2] = True
            inside &= ~outlines
            inside[:60, :420] = False  # the label
            if inside.sum() < 200:
                continue
            before, after = sharpness(original, inside), sharpness(served, inside)
            assert after < 0.2 * before, f"box {box}: detail {after:.0f} of {before:.0f} left"
            checked_people += 1
        # Outside every grown box (and away from outlines and label): the stored frame.
        outside = np.ones(served.shape[:2], bool)
        for box in boxes:
            gx1, gy1, gx2, gy2 = grown(box, served.shape, MARGIN, 4)
            outside[gy1:gy2, gx1:gx2] = False
        outside &= ~outlines
        outside[:60, :420] = False
        a = cv2.cvtColor(served, cv2.COLOR_BGR2GRAY).astype(np.int16)
        b = cv2.cvtColor(original, cv2.COLOR_BGR2GRAY).astype(np.int16)
        assert float(np.percentile(np.abs(a - b)[outside], 99.5)) < 20, "outside boxes changed"
        assert sharpness(served, outside) > 0.6 * sharpness(original, outside)
    assert checked_people >= 6, f"only {checked_people} people measured"


def test_blurred_frames_without_a_result_are_pixelated_whole(stack: Stack) -> None:
    """A camera whose frames no detector has looked at (here: camera 9, fed by hand, no gear):
    the raw frames the feed shows meanwhile may show anybody, so all of it is pixelated."""
    cfg, port = stack.config("blurred-raw", video="blurred")
    cfg.write_text(cfg.read_text() + '[cameras.9]\nsource = "/dev/null"\n')
    rc = stack.server.client()
    image = rc.xrevrange(keys.frames("0"), count=1)[0][1][b"image"]
    ref = rc.xadd(keys.frames("9"), {"count": 1, "image": image})
    try:
        web = stack.web_from(cfg, port, "blurred-raw")
        client = MjpegClient(web.port, "/video?camera=9")
        try:
            served = client.next_part().image()
        finally:
            client.close()
        original = frame_image_of(rc, "9", ref)
        body = np.ones(served.shape[:2], bool)
        body[:60, :420] = False
        assert sharpness(served, body) < 0.1 * sharpness(original, body)
        # Still the same scene, coarsely: the mean colour per region is kept.
        small = cv2.resize(served, (32, 24), interpolation=cv2.INTER_AREA).astype(np.int16)
        small_o = cv2.resize(original, (32, 24), interpolation=cv2.INTER_AREA).astype(np.int16)
        assert np.median(np.abs(small - small_o)) < 12
    finally:
        rc.delete(keys.frames("9"), keys.results("9"))


def frame_image_of(rc: object, camera: str, entry_id: bytes) -> np.ndarray:
    found = rc.xrange(keys.frames(camera), entry_id, entry_id)  # type: ignore[attr-defined]
    data = np.frombuffer(found[0][1][b"image"], np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    assert img is not None
    return img


def test_video_off_serves_no_picture(stack: Stack) -> None:
    web = stack.web("off", video="off")
    for path in ("/video", "/video?camera=0", "/video/0"):
        status, headers, body = web.get(path)
        assert status == 404, (path, status)
        assert headers["content-type"] == "application/json"
        assert "video is off" in json.loads(body)["error"]
    status, _h, body = web.get("/api/cameras")
    assert status == 200 and json.loads(body) == {"cameras": ["0"], "video": "off"}
    status, _h, body = web.get("/api/summary?camera=0")
    assert status == 200 and "people" in json.loads(body)
    assert web.get("/healthz")[0] == 200


# -- in headless Chromium -------------------------------------------------------------------


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not installed (apt install chromium)")
    b = Browser.start(tmp_path)
    try:
        yield b
    finally:
        b.close()


def _page(browser: Browser, web: Web) -> dict[str, object]:
    browser.open(f"http://127.0.0.1:{web.port}/", settle=8)
    state = browser.evaluate(
        """(() => {
          const img = document.getElementById('video');
          const stage = document.querySelector('.stage');
          const broken = [...document.images].filter((i) =>
            i.offsetParent !== null && (!i.complete || i.naturalWidth === 0));
          return {
            people: document.getElementById('people').textContent.trim(),
            note: document.getElementById('video-note').textContent,
            noteHidden: document.getElementById('video-note').hidden,
            src: img.getAttribute('src'),
            width: img.naturalWidth,
            stage: getComputedStyle(stage).display,
            broken: broken.length,
          };
        })()"""
    )
    assert isinstance(state, dict)
    return state


def test_page_with_video_off_shows_counts_and_no_image(stack: Stack, browser: Browser) -> None:
    cfg, port = stack.config("off-page", video="off")
    cfg.write_text(
        cfg.read_text()
        + "[cameras.0.lines.door]\npoints = [[330, 185], [330, 375]]\nin_side = [400, 270]\n"
    )
    web = stack.web_from(cfg, port, "off-page")
    state = _page(browser, web)
    assert state["people"].isdigit(), state  # type: ignore[union-attr]
    assert "Video is off" in str(state["note"]) and not state["noteHidden"], state
    assert state["src"] is None and state["stage"] == "none", state
    assert state["broken"] == 0, state
    asked = [u for u in browser.responses if "/video" in u]
    assert not asked, f"the page asked for {asked}"
    # The line is listed and can be deleted; moving it is drawn on the picture, so not offered.
    buttons = browser.evaluate(
        "[...document.querySelectorAll('#shape-list li[data-name=door] button')]"
        ".map((b) => b.textContent)"
    )
    assert buttons == ["delete"], buttons


def test_page_with_blurred_video_says_so_and_plays(stack: Stack, browser: Browser) -> None:
    web = stack.web("blurred-page", video="blurred")
    state = _page(browser, web)
    assert state["width"] == 768 and state["broken"] == 0, state
    assert "pixelated" in str(state["note"]) and not state["noteHidden"], state
    assert state["people"].isdigit(), state  # type: ignore[union-attr]
