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
        self._client: redis.Redis | None = None  # the one the last beat was written with

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_rest: object) -> None:
        # A clean end (asked to stop, or done: --frames, --max-entries) says so; after a crash
        # the heartbeat is left to age, and rva status says when it was last heard.
        if kind is None or issubclass(kind, KeyboardInterrupt):
            self.mark_stopped()

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
        self._client = None  # set again once Redis answers: a stop waits for no lost Redis
        with contextlib.suppress(*TRANSIENT):
            try:
                client.hset(keys.HEARTBEAT, self.heartbeat_field, f"{now:.3f}")
                self._client = client
            except redis.ResponseError as exc:
                if not refused_write(exc):
                    raise
                warn.warning("heartbeat", "%s: heartbeat not written: %s", self.service, exc)

    def mark_stopped(self) -> None:
        """Replace this process's heartbeat by "stopped <unix time>" (health.STOPPED), so that
        rva status tells a service that stopped from one that died. An HSET, as the beat: the
        least right every service's Redis user has."""
        if self._client is None:
            return  # never beat: nothing to mark
        with contextlib.suppress(*TRANSIENT, redis.ResponseError):
            self._client.hset(keys.HEARTBEAT, self.heartbeat_field, f"stopped {time.time():.3f}")

    def sleep(self, seconds: float) -> bool:
        """Sleep unless asked to stop; True when it is time to stop."""
        return self.stop.wait(seconds)
