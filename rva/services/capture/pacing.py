"""How fast frames leave capture: Pacer for sources that deliver as fast as they are read,
Throttle for live sources that deliver at their own rate."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Pacer:
    """Sleeps so that frames leave no faster than ``fps`` (0 = as fast as possible): for sources
    that deliver as fast as they are read (video files, still images)."""

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / fps if fps > 0 else 0.0
        self.next = time.monotonic()

    def wait(
        self, tick: Callable[[], None] | None = None, stop: threading.Event | None = None
    ) -> None:
        """Sleep until the next frame is due, calling tick() (the watchdog) at least every
        second and returning early when ``stop`` is set: a period may be minutes long."""
        if not self.period:
            return
        self.next += self.period
        delay = self.next - time.monotonic()
        if delay < -1.0:  # fell far behind (paused, slow disk): don't burst to catch up
            self.next = time.monotonic()
        while (delay := self.next - time.monotonic()) > 0:
            if tick:
                tick()
            if stop is not None:
                if stop.wait(min(delay, 1.0)):
                    return
            else:
                time.sleep(min(delay, 1.0))


class Throttle:
    """Lets at most ``fps`` frames a second through (0 = all): for live sources, which deliver
    at their own rate (an RTSP camera at 25 fps). Every frame is still read, so none queue up in
    the camera or the network; the surplus is dropped before it costs a JPEG encode and a write."""

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / fps if fps > 0 else 0.0
        self.next = 0.0

    def admit(self, now: float | None = None) -> bool:
        if not self.period:
            return True
        now = time.monotonic() if now is None else now
        if now < self.next:
            return False
        # One period on from the slot just taken (so the average rate is exact), or from now
        # when the source fell more than a period behind (no burst to catch up).
        late = now - self.next
        self.next = (self.next if late < self.period else now) + self.period
        return True
