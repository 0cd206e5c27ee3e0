"""Faults 3 and 8, in rva web: frames /video must not decode, fetch again and again, or warn
about forever.

Before the fix the web decoded whatever the newest frame was: a PNG declaring 20000×20000
cost it 3.5 GB; a 50 MB field was fetched and decoded again and again (7 s of CPU every 10 s),
and a frame that would not decode was warned about every 0.6 s.
"""

from __future__ import annotations

import http.client
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2

from rva import keys
from tests.conftest import wait_for
from tests.faults.conftest import FaultStack, log_text, metric
from tests.faults.test_poison_frames import peak_rss_mb, png_declaring

WEB_RSS_BOUND_MB = 700  # rva web runs in ~100 MB; a 20000×20000 decode alone is 1200 MB


class Viewer:
    """One client of /video, counting the parts (frames) it receives."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.parts = 0
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        tail = b""
        try:
            self.conn.request("GET", "/video")  # the answer starts with the first frame
            resp = self.conn.getresponse()
            while chunk := resp.read1(65536):
                data = tail + chunk
                self.parts += data.count(b"--rvaframe")
                tail = data[-16:]
        except OSError:
            pass


@contextmanager
def viewer(port: int) -> Iterator[Viewer]:
    v = Viewer(port)
    try:
        yield v
    finally:
        v.conn.close()


def test_video_refuses_bombs_and_huge_fields_unread_once_and_says_so_once(
    fault_stack: Callable[..., FaultStack], vtest_path: Path
) -> None:
    stack = fault_stack()
    svc, port, client = stack.svc, stack.port, stack.client()
    web = stack.web()
    frames = keys.frames("0")
    good = cv2.imencode(".jpg", cv2.VideoCapture(str(vtest_path)).read()[1])[1].tobytes()

    def rejected(kind: str) -> float:
        return metric(port, "rva_web_frames_rejected_total", camera="0", kind=kind) or 0

    def looks() -> int:
        """XREVRANGE calls so far: the feed looks for a newer frame with one each round."""
        return int(client.info("commandstats").get("cmdstat_xrevrange", {}).get("calls", 0))

    wait_for(lambda: metric(port, "rva_redis_up") == 1, 60, what="rva web up")
    with viewer(port) as v:
        client.xadd(frames, {"count": 0, "image": good})
        wait_for(lambda: v.parts >= 3, 30, what="the raw frame on /video")

        client.xadd(frames, {"count": 1, "image": png_declaring(20000, 20000)})
        wait_for(lambda: rejected("oversized") == 1, 30, what="the bomb refused")
        huge = b"\xff\xd8\xff" + os.urandom(50 * 1024 * 1024)  # a 50 MB field
        client.xadd(frames, {"count": 2, "image": huge})
        wait_for(lambda: rejected("oversized") == 2, 30, what="the 50 MB field refused")

        # The feed goes on looking for newer frames without fetching that one again (each
        # fetch is looked at, so counted: the count stays).
        seen = looks()
        wait_for(lambda: looks() >= seen + 30, 30, what="30 more looks at the stream")
        assert rejected("oversized") == 2, "a refused frame was fetched and looked at again"
        assert peak_rss_mb(web.pid) < WEB_RSS_BOUND_MB, "the bomb was decoded"

        # Said once: two oversized frames, one warning (the next kind of the minute is held).
        log = log_text(svc, web)
        assert log.count("not shown") == 1 and "PNG of 20000x20000" in log, log[-3000:]

        # Recovery: the next good frame is shown, with no restart.
        shown = v.parts
        client.xadd(frames, {"count": 3, "image": good})
        wait_for(lambda: v.parts > shown + 2, 30, what="a good frame shown again")
    assert web.poll() is None
