"""What every long-running RVA service shares: stop on SIGTERM/SIGINT, sd_notify, heartbeat."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time

import redis

from rva import keys
from rva.connection import TRANSIENT, refused_write
from rva.ratelog import RateLimitedLog
from rva.systemd import Notifier

log = logging.getLogger(__name__)
warn = RateLimitedLog(log)


class Runtime:
    def __init__(self, service: str) -> None:
        self.service = service
        self.stop = threading.Event()
        self.notifier = Notifier()
        self.heartbeat_field = f"{service}:{socket.gethostname()}:{os.getpid()}"
        self._last_beat = 0.0

    def install_signals(self) -> None:
        def handler(signum: int, _frame: object) -> None:
            log.info("%s: %s received, stopping", self.service, signal.Signals(signum).name)
            self.notifier.stopping()
            self.stop.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def tick(self, status: str | None = None) -> None:
        """Call from the main loop: pings the watchdog and updates the status line."""
        self.notifier.watchdog()
        self.notifier.status(status)  # None: the newest line, if it waits to be sent

    def beat(self, client: redis.Redis, every: float = 2.0) -> None:
        """Record that this process is alive, for `rva status` and /healthz."""
        now = time.time()
        if now - self._last_beat < every:
            return
        self._last_beat = now
        # A lost Redis is noticed (and waited for) by the main loop's next real command; a
        # Redis that refuses writes (memory full, cannot save) is said, and never fatal.
        with contextlib.suppress(*TRANSIENT):
            try:
                client.hset(keys.HEARTBEAT, self.heartbeat_field, f"{now:.3f}")
            except redis.ResponseError as exc:
                if not refused_write(exc):
                    raise
                warn.warning("heartbeat", "%s: heartbeat not written: %s", self.service, exc)

    def sleep(self, seconds: float) -> bool:
        """Sleep unless asked to stop; True when it is time to stop."""
        return self.stop.wait(seconds)
