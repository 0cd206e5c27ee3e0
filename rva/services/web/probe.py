"""One read of the appliance's state at a time, for everything rva web answers with it
(/healthz, /api/summary, /metrics): a Redis that stops answering (frozen, swapping, a full
network buffer) must not make every probe wait for its own timeout in turn.

A read that is running is shared: who asks meanwhile gets its answer. If none comes within
WAIT_S, the answer is at once "down: Redis not answering for N s", while the read goes on in
the background (Redis's socket timeout ends it) — so load balancers, Prometheus and the page
all hear within WAIT_S, one read in flight whatever the number of askers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from rva.health import Snapshot

WAIT_S = 2.0


class HealthProbe:
    def __init__(self, read: Callable[[], Snapshot], wait_s: float = WAIT_S) -> None:
        self.read, self.wait_s = read, wait_s
        self.lock = threading.Lock()
        self.running: threading.Event | None = None  # set when the read in flight is done
        self.since = 0.0  # monotonic start of the read in flight
        self.answer: Snapshot | None = None

    def get(self) -> Snapshot:
        with self.lock:
            if self.running is None:
                self.running, self.since = threading.Event(), time.monotonic()
                threading.Thread(target=self._read, args=(self.running,), daemon=True).start()
            done, since = self.running, self.since
        if done.wait(self.wait_s):
            assert self.answer is not None
            return self.answer
        stalled = time.monotonic() - since
        why = f"Redis not answering for {stalled:.0f} s (a read is waiting for it)"
        return Snapshot(redis=False, error=why, problems=[why])

    def _read(self, done: threading.Event) -> None:
        try:
            answer = self.read()
        except Exception as exc:  # never leave askers waiting on a read that died
            answer = Snapshot(redis=False, error=str(exc), problems=[f"health read failed: {exc}"])
        with self.lock:
            self.answer = answer
            self.running = None
        done.set()
