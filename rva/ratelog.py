"""Warnings that repeat (a frame that will not decode, Redis refusing writes) logged once a
period per kind, with how many were held back, so a fault that lasts does not flood the journal."""

from __future__ import annotations

import logging
import threading
import time


class RateLimitedLog:
    """``warning(kind, msg, *args)`` logs the first of a kind at once, then at most one per
    ``every`` seconds, saying how many of that kind were not logged meanwhile."""

    def __init__(self, logger: logging.Logger, every: float = 60.0) -> None:
        self.logger, self.every = logger, every
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def log(self, level: int, kind: str, msg: str, *args: object) -> bool:
        """Log unless this kind was logged less than ``every`` seconds ago; True when logged."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self.every:
                self._held[kind] = self._held.get(kind, 0) + 1
                return False
            held = self._held.pop(kind, 0)
            self._last[kind] = now
        if held:
            msg += f" (and {held} more like this in the last {now - (last or now):.0f} s)"
        self.logger.log(level, msg, *args)
        return True

    def warning(self, kind: str, msg: str, *args: object) -> bool:
        return self.log(logging.WARNING, kind, msg, *args)

    def error(self, kind: str, msg: str, *args: object) -> bool:
        return self.log(logging.ERROR, kind, msg, *args)
