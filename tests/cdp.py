"""Headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe: JSON
messages ending in NUL on fds 3 and 4), standard library only.

Used where --dump-dom is not enough: to see the browser being asked for credentials (the
Fetch.authRequired event is what makes a desktop browser show its login dialog) and to answer
as a person typing them in would; to watch every request the page makes and its status.
Chromium only ever talks to 127.0.0.1, as in tests/services/web/test_browser.py.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")


def chromium_argv(profile: Path) -> list[str]:
    """Headless Chromium as root on this closed machine, reaching loopback only: loopback
    bypasses the proxy, everything else hits a closed port; no background traffic."""
    return [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-default-apps",
        "--mute-audio",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--proxy-server=http://127.0.0.1:9",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    ]


@dataclass
class Credentials:
    username: str
    password: str


@dataclass
class Browser:
    proc: subprocess.Popen[bytes]
    to_browser: int
    from_browser: int
    session: str = ""
    next_id: int = 0
    buffer: bytes = b""
    events: list[dict[str, Any]] = field(default_factory=list)
    auth_challenges: list[dict[str, Any]] = field(default_factory=list)
    credentials: Credentials | None = None
    responses: dict[str, int] = field(default_factory=dict)  # url -> last HTTP status
    failed: dict[str, str] = field(default_factory=dict)  # url -> network error

    @classmethod
    def start(
        cls, tmp: Path, window: tuple[int, int] = (1280, 1100), extra: tuple[str, ...] = ()
    ) -> Browser:
        """``extra``: more Chromium switches (e.g. --proxy-bypass-list for this machine's own
        LAN address, which the page is then opened on)."""
        profile = tmp / "chromium-cdp-profile"
        profile.mkdir(exist_ok=True)
        cmd_r, cmd_w = os.pipe()  # we write commands, chromium reads fd 3
        ev_r, ev_w = os.pipe()  # chromium writes fd 4, we read

        def fds() -> None:
            # Move the pipe ends out of the way, then onto 3 and 4.
            a, b = os.dup(cmd_r), os.dup(ev_w)
            os.dup2(a, 3)
            os.dup2(b, 4)
            os.set_inheritable(3, True)
            os.set_inheritable(4, True)

        argv = [
            *chromium_argv(profile),
            f"--window-size={window[0]},{window[1]}",
            "--remote-debugging-pipe",
            *extra,
            "about:blank",
        ]
        env = {"HOME": str(tmp), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
        proc = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(tmp / "chromium-cdp.log").open("wb"),
            preexec_fn=fds,
            pass_fds=(3, 4),  # kept open by number: fds() put the pipe ends there
        )
        os.close(cmd_r)
        os.close(ev_w)
        browser = cls(proc, cmd_w, ev_r)
        target = browser.call("Target.createTarget", url="about:blank")["targetId"]
        browser.session = browser.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        browser.call("Page.enable")
        browser.call("Network.enable")
        browser.call("Runtime.enable")
        # Every request pauses here, so that authentication challenges reach us.
        browser.call("Fetch.enable", handleAuthRequests=True, patterns=[{"urlPattern": "*"}])
        return browser

    # -- the protocol ---------------------------------------------------------------------
    def send(self, method: str, session: bool = True, **params: Any) -> int:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self.to_browser, json.dumps(message).encode() + b"\0")
        return self.next_id

    def call(self, method: str, timeout: float = 30, **params: Any) -> dict[str, Any]:
        wanted = self.send(method, **params)
        deadline = time.monotonic() + timeout
        while True:
            message = self._read(deadline - time.monotonic())
            if message is None:
                raise TimeoutError(f"no answer to {method} in {timeout} s")
            if message.get("id") == wanted:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))

    def pump(self, seconds: float) -> None:
        """Handle events (paused requests, auth challenges) for this long."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._read(deadline - time.monotonic())

    def _read(self, timeout: float) -> dict[str, Any] | None:
        while b"\0" not in self.buffer:
            ready, _, _ = select.select([self.from_browser], [], [], max(timeout, 0))
            if not ready:
                return None
            chunk = os.read(self.from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError(f"chromium closed the pipe (exit {self.proc.poll()})")
            self.buffer += chunk
        raw, _, self.buffer = self.buffer.partition(b"\0")
        message: dict[str, Any] = json.loads(raw)
        if "method" in message:
            self._event(message)
        return message

    def _event(self, message: dict[str, Any]) -> None:
        method, params = message["method"], message.get("params", {})
        self.events.append(message)
        if method == "Fetch.requestPaused":
            self.send("Fetch.continueRequest", requestId=params["requestId"])
        elif method == "Fetch.authRequired":
            self.auth_challenges.append(params["authChallenge"])
            if self.credentials is None:
                answer: dict[str, Any] = {"response": "CancelAuth"}  # the dialog dismissed
            else:
                answer = {
                    "response": "ProvideCredentials",
                    "username": self.credentials.username,
                    "password": self.credentials.password,
                }
            self.send(
                "Fetch.continueWithAuth",
                requestId=params["requestId"],
                authChallengeResponse=answer,
            )
        elif method == "Network.responseReceived":
            self.responses[params["response"]["url"]] = params["response"]["status"]
        elif method == "Network.loadingFailed":
            self.failed[params.get("requestId", "")] = params.get("errorText", "")

    # -- what a test does -------------------------------------------------------------------
    def open(self, url: str, settle: float = 6.0) -> None:
        self.send("Page.navigate", url=url)
        self.pump(settle)

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def click(self, x: float, y: float) -> None:
        """A real left click at the page's CSS pixel (x, y): press and release."""
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self.send("Browser.close", session=False)
            self.proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(10)
        finally:
            for fd in (self.to_browser, self.from_browser):
                with contextlib.suppress(OSError):
                    os.close(fd)
