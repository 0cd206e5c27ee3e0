"""Lines drawn on the live page and saved, in headless Chromium (real clicks on the picture),
against the running appliance (capture + gears on vtest.avi, rva web, real Redis): counted
within seconds, moved, undone, with the services never restarted; from another address only
with a web user, and only with the user's credentials.

rva.toml has no line at all: the camera's counting stage starts when the first line is saved.
"""

from __future__ import annotations

import base64
import http.client
import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rva import keys
from tests.cdp import CHROMIUM, Browser, Credentials
from tests.conftest import RedisServer, Services, free_port, wait_for
from tests.services.web.test_auth import PASSWORD, passwd

pytestmark = pytest.mark.timeout(600)


def lan_address() -> str | None:
    """One of this machine's own non-loopback IPv4 addresses (requests from it are not local)."""
    done = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True
    )
    for line in done.stdout.splitlines():
        return line.split()[3].split("/")[0]
    return None


def request(
    host: str, port: int, method: str, path: str, body: object = None, user: str | None = None
) -> tuple[int, dict]:
    conn = http.client.HTTPConnection(host, port, timeout=15)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if user:
        headers["Authorization"] = (
            "Basic " + base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()
        )
    try:
        conn.request(method, path, None if body is None else json.dumps(body), headers)
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, json.loads(raw) if raw.startswith(b"{") else {"raw": raw[:200]}
    finally:
        conn.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} missing: run `make deps` (Debian package chromium)")
    address = lan_address()
    # Chromium reaches loopback only (tests/cdp.py), and this machine's own LAN address here.
    extra = (
        (
            f"--proxy-bypass-list={address}",
            f"--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE {address}",
        )
        if address
        else ()
    )
    b = Browser.start(tmp_path, extra=extra)
    try:
        yield b
    finally:
        b.close()


def frame_to_page(b: Browser, x: float, y: float) -> tuple[float, float]:
    r = b.evaluate(
        "(() => { const i = document.getElementById('video'), r = i.getBoundingClientRect();"
        " return [r.left, r.top, r.width, r.height, i.naturalWidth, i.naturalHeight]; })()"
    )
    left, top, width, height, nw, nh = r
    return left + x * width / nw, top + y * height / nh


def until(b: Browser, expression: str, what: str, timeout: float = 30) -> object:
    """Let the page work (its requests pass through the browser's event loop) until the
    expression is truthy on it."""

    def check() -> object:
        b.pump(0.3)
        return b.evaluate(expression)

    return wait_for(check, timeout, interval=0.2, what=what)


def until_server(b: Browser, check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    def pumped() -> bool:
        b.pump(0.3)
        return check()

    wait_for(pumped, timeout, interval=0.2, what=what)


def draw_line(b: Browser, ends: list[list[int]], in_side: list[int]) -> None:
    for x, y in [*ends, in_side]:
        b.click(*frame_to_page(b, x, y))
        b.pump(0.2)


def test_draw_save_count_move_undo_on_the_live_page_then_only_signed_in_from_the_lan(
    redis_ts: RedisServer,
    vtest_path: Path,
    tmp_path: Path,
    services,
    browser: Browser,  # type: ignore[no-untyped-def]
) -> None:
    port = free_port()
    users = tmp_path / "web-users"
    cfg = tmp_path / "rva.toml"
    cfg.write_text(
        f'[redis]\nurl = "{redis_ts.url}"\n[cameras.0]\nsource = "{vtest_path}"\n'
        f'[web]\nhost = "0.0.0.0"\nport = {port}\nusers_file = "{users}"\n'
    )
    svc: Services = services(cfg)
    svc.pipeline()
    web = svc.start("web")
    procs = [p for _n, p, _l in svc.procs]
    wait_for(lambda: request("127.0.0.1", port, "GET", "/api/shapes")[0] == 200, 60, what="rva web")
    client = redis_ts.client()

    # -- from this machine (loopback): no user needed, as in the demo ----------------------
    browser.open(f"http://127.0.0.1:{port}/", settle=3)

    def video_shown() -> bool:
        browser.pump(0.5)
        return bool(browser.evaluate("document.getElementById('video').naturalWidth > 0"))

    wait_for(video_shown, 60, what="the live video on the page")
    browser.evaluate("document.getElementById('draw-line').click()")
    draw_line(browser, [[330, 185], [330, 375]], [400, 270])
    assert browser.evaluate("document.getElementById('draw-out').hidden") is False
    browser.evaluate("document.getElementById('shape-name').value = 'door'")
    browser.evaluate("document.getElementById('shape-save').click()")
    until(
        browser,
        "document.getElementById('shape-msg').textContent.includes('added line door')",
        "the page saying the line was saved",
    )
    saved = request("127.0.0.1", port, "GET", "/api/shapes?camera=0")[1]["lines"]["door"]
    assert saved["from"] == "saved"
    # Clicks land where they were meant, within a pixel or two of the frame's coordinates.
    assert all(
        abs(a - b) <= 2
        for p, q in zip(saved["points"], [[330, 185], [330, 375]], strict=True)
        for a, b in zip(p, q, strict=True)
    )

    def counted() -> int:
        browser.pump(0.3)
        line = request("127.0.0.1", port, "GET", "/api/counts?camera=0")[1]["lines"].get("door", {})
        return (line.get("in_total") or 0) + (line.get("out_total") or 0)

    wait_for(
        lambda: counted() >= 1, 120, interval=1, what="a crossing of the line drawn on the page"
    )
    before_move = counted()
    until(
        browser,
        "[...document.querySelectorAll('#shape-list li')].map(li => li.dataset.name).join()"
        " === 'door' && !!document.querySelector('#shape-list li[data-name=door] button.move')",
        "door listed under the video with its move button",
    )

    # Move it: same name, new place; its totals go on.
    browser.evaluate("document.querySelector('#shape-list li[data-name=door] button.move').click()")
    draw_line(browser, [[300, 185], [300, 375]], [400, 270])
    assert browser.evaluate("document.getElementById('shape-name').readOnly") is True
    browser.evaluate("document.getElementById('shape-save').click()")

    def door_x() -> float:
        return request("127.0.0.1", port, "GET", "/api/shapes?camera=0")[1]["lines"]["door"][
            "points"
        ][0][0]

    until_server(browser, lambda: abs(door_x() - 300) <= 2, "door moved to x=300")
    assert counted() >= before_move
    browser.screenshot(tmp_path / "moved.png")

    # Undo: back where it was drawn first.
    browser.evaluate("document.getElementById('shape-undo').click()")
    until_server(browser, lambda: abs(door_x() - 330) <= 2, "door back at x=330 after undo")
    history = request("127.0.0.1", port, "GET", "/api/shapes/0/history")[1]["history"]
    assert [h["action"].split(" (")[0] for h in history] == [
        "undid moved line door",
        "moved line door",
        "added line door",
    ]
    assert {h["who"] for h in history} == {"local"}

    # -- from the LAN: refused without users; with a user, only signed in ------------------
    address = lan_address()
    if address is None:
        pytest.fail("this machine has no non-loopback IPv4 address to test a LAN request from")
    browser.open(f"http://{address}:{port}/", settle=4)
    until(
        browser,
        "document.getElementById('shape-why').textContent.includes('rva web passwd')",
        "the page from the LAN saying how to add a user",
    )
    assert browser.evaluate("document.getElementById('shape-undo').hidden") is True
    status, answer = request(
        address,
        port,
        "POST",
        "/api/shapes",
        {
            "camera": "0",
            "kind": "line",
            "name": "x",
            "points": [[1, 1], [100, 1]],
            "in_side": [50, 50],
        },
    )
    assert status == 403 and "rva web passwd" in answer["error"], answer
    assert passwd(cfg, "owner", stdin=PASSWORD + "\n").returncode == 0
    # rva web reads the users file again when it changes (within a second or two).
    wait_for(
        lambda: request(address, port, "POST", "/api/shapes/0/undo", {})[0] == 401,
        15,
        what="writes without credentials refused with 401 once there is a user",
    )
    browser.credentials = Credentials("owner", PASSWORD)
    browser.open(f"http://{address}:{port}/", settle=4)
    wait_for(video_shown, 60, what="the live video on the page, signed in")
    until(browser, "!document.getElementById('shape-undo').hidden", "the page allowing saves")
    browser.evaluate("document.getElementById('draw-line').click()")
    draw_line(browser, [[330, 200], [330, 360]], [400, 270])
    browser.evaluate("document.getElementById('shape-name').value = 'lan'")
    browser.evaluate("document.getElementById('shape-save').click()")

    def newest() -> tuple[str, str]:
        last = request(address, port, "GET", "/api/shapes/0/history", user="owner")[1]["history"][0]
        return last["action"], last["who"]

    until_server(browser, lambda: newest() == ("added line lan", "owner"), "lan saved by owner")
    assert browser.auth_challenges, "the browser was never asked for credentials"
    # A page on another site cannot make the signed-in browser write (no CORS, Origin checked).
    status, _ = request(address, port, "DELETE", "/api/shapes/0/line/lan", user="owner")
    assert status == 200
    conn = http.client.HTTPConnection(address, port, timeout=15)
    conn.request(
        "POST",
        "/api/shapes/0/undo",
        "{}",
        {
            "Content-Type": "application/json",
            "Origin": "http://evil.example",
            "Authorization": "Basic " + base64.b64encode(f"owner:{PASSWORD}".encode()).decode(),
        },
    )
    assert conn.getresponse().status == 403
    conn.close()

    # Nothing restarted: the same processes ran throughout.
    assert all(p.poll() is None for p in procs) and web.poll() is None
    beats = {k.decode().split(":")[0] for k in client.hkeys(keys.HEARTBEAT)}
    assert {"capture", "gears", "web"} <= beats


def test_the_shapes_api_refuses_bad_writes_with_their_reason(
    redis_ts: RedisServer,
    vtest_path: Path,
    tmp_path: Path,
    services,  # type: ignore[no-untyped-def]
) -> None:
    port = free_port()
    cfg = tmp_path / "rva.toml"
    cfg.write_text(
        f'[redis]\nurl = "{redis_ts.url}"\n[cameras.0]\nsource = "{vtest_path}"\n'
        f"[web]\nport = {port}\n"
    )
    svc: Services = services(cfg)
    svc.start("web")
    wait_for(lambda: request("127.0.0.1", port, "GET", "/api/shapes")[0] == 200, 60, what="web")
    line = {"camera": "0", "kind": "line", "name": "door", "points": [[1, 1], [100, 1]]}

    status, answer = request("127.0.0.1", port, "POST", "/api/shapes", line)
    assert status == 400 and answer["error"].startswith(
        "cameras.0.lines.door.in_side: Field required"
    )
    status, answer = request(
        "127.0.0.1",
        port,
        "POST",
        "/api/shapes",
        {**line, "in_side": [50, 50], "points": [[0, 0], [9000, 0]]},
    )
    assert status == 400 and "outside any frame" in answer["error"], answer
    status, answer = request(
        "127.0.0.1", port, "POST", "/api/shapes", {**line, "camera": "9", "in_side": [5, 5]}
    )
    assert status == 404 and "unknown camera '9'" in answer["error"]
    status, answer = request("127.0.0.1", port, "DELETE", "/api/shapes/0/line/nothing")
    assert status == 400 and "no line 'nothing'" in answer["error"]
    status, answer = request("127.0.0.1", port, "POST", "/api/shapes/0/undo", {})
    assert status == 400 and "nothing to undo" in answer["error"]
    # Not JSON: a form post (what another site's page could send without asking) is refused.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    conn.request(
        "POST",
        "/api/shapes",
        "camera=0&kind=line",
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert conn.getresponse().status == 415
    conn.close()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    conn.request("POST", "/api/shapes", "{not json", {"Content-Type": "application/json"})
    assert conn.getresponse().status == 400
    conn.close()
    assert redis_ts.client().get("rva:geometry:version") is None  # nothing was written

    # Redis gone: said, not a crash; back, and the write goes through.
    redis_ts.stop()
    status, answer = request(
        "127.0.0.1", port, "POST", "/api/shapes", {**line, "in_side": [50, 50]}
    )
    assert status == 503 and "Redis unreachable" in answer["error"], answer
    redis_ts.start()
    wait_for(
        lambda: request("127.0.0.1", port, "POST", "/api/shapes", {**line, "in_side": [50, 50]})[0]
        == 200,
        30,
        what="the write once Redis is back",
    )
    assert svc.procs[0][1].poll() is None
