"""Counters in rva:errors / rva:stats that survive Redis refusing writes.

While Redis is full (maxmemory, noeviction), cannot save its snapshot (MISCONF) or is away, a
HINCRBY fails like every other write. What could not be added is kept here and added with the
next write that works, so the loss a fault caused is still counted once it is over.
"""

from __future__ import annotations

import time

import redis

from rva import keys
from rva.connection import TRANSIENT, refused_write


class Tally:
    """HINCRBY now or, while Redis refuses, later; an rva:errors count also stamps
    rva:errors:last, from which /healthz and `rva status` tell a fault of the last minute."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.unsaved: dict[tuple[str, str], int] = {}

    def add(self, key: str, field: str, n: int = 1) -> bool:
        """HINCRBY key field n, now or later. True when everything is written."""
        self.unsaved[(key, field)] = self.unsaved.get((key, field), 0) + n
        return self.flush()

    def flush(self) -> bool:
        """Write what is kept; True when nothing is left. Other errors are raised."""
        if not self.unsaved:
            return True
        items, self.unsaved = self.unsaved, {}
        pipe = self.client.pipeline(transaction=True)
        for (key, field), n in items.items():
            pipe.hincrby(key, field, n)
            if key == keys.ERRORS:  # when it last happened: /healthz says it for a while
                pipe.hset(keys.ERRORS_LAST, field, f"{time.time():.3f}")
        try:
            pipe.execute()
            return True
        except (*TRANSIENT, redis.ResponseError) as exc:
            if isinstance(exc, redis.ResponseError) and not refused_write(exc):
                raise  # not a passing refusal (a key of the wrong type?): said, not kept
            for item, n in items.items():
                self.unsaved[item] = self.unsaved.get(item, 0) + n
            return False
