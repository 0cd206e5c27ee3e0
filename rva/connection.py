"""Redis clients built from a URL, with bounded retries, and the backoff services wait on."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)

# Errors that mean "Redis is away for now": wait and reconnect, never exit.
TRANSIENT = (redis.ConnectionError, redis.TimeoutError, ConnectionError, TimeoutError)
# What Redis answers while it refuses writes for now: memory full (maxmemory, noeviction), a
# snapshot it cannot save (stop-writes-on-bgsave-error), a read-only replica. Reads still work.
REFUSALS = ("OOM command not allowed", "MISCONF", "READONLY")


def refused_write(exc: BaseException) -> bool:
    """True when Redis refused a write for now (see REFUSALS): wait, report, never exit."""
    if isinstance(exc, (redis.exceptions.OutOfMemoryError, redis.exceptions.ReadOnlyError)):
        return True
    return isinstance(exc, redis.ResponseError) and any(r in str(exc) for r in REFUSALS)


def connect(url: str, *, name: str = "rva", timeout: float = 5.0) -> redis.Redis:
    """A client that retries a dropped connection a few times before raising.

    No PING health checks: Redis answers PING with MISCONF while it cannot save its snapshot,
    and a health check that fails makes every command on the connection fail, reads included.
    A dropped connection is noticed by the command that uses it, and retried."""
    return redis.Redis.from_url(
        url,
        client_name=name,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(ExponentialWithJitterBackoff(cap=1.0, base=0.05), 3),
    )


class Backoff:
    """Growing, jittered pauses between attempts; reset() after a success."""

    def __init__(self, base: float = 0.25, cap: float = 15.0) -> None:
        self.base, self.cap, self.failures = base, cap, 0

    def reset(self) -> None:
        self.failures = 0

    def next_delay(self) -> float:
        self.failures += 1
        ceiling = min(self.cap, self.base * 2 ** min(self.failures, 16))
        return random.uniform(ceiling / 2, ceiling)

    def wait(
        self,
        reason: str,
        *,
        tick: Callable[[], None] | None = None,
        stop: threading.Event | None = None,
    ) -> bool:
        """Sleep for the next delay, calling tick() (e.g. the watchdog) at least every second.
        Returns at once when ``stop`` is set, and then says so: True means "stop now"."""
        delay = self.next_delay()
        log.warning("%s; retrying in %.1fs (attempt %d)", reason, delay, self.failures)
        end = time.monotonic() + delay
        while (left := end - time.monotonic()) > 0:
            if tick:
                tick()
            if stop is None:
                time.sleep(min(1.0, left))
            elif stop.wait(min(1.0, left)):
                return True
        return stop is not None and stop.is_set()


def wait_for_redis(
    client: redis.Redis,
    *,
    tick: Callable[[str], None] | None = None,
    stop: threading.Event | None = None,
) -> bool:
    """Block until Redis answers PING, backing off and reporting status while it does not.
    False when ``stop`` was set first. A Redis that answers but refuses writes (MISCONF) is
    there: the writes that fail are reported where they are made."""
    backoff = Backoff()
    while stop is None or not stop.is_set():
        try:
            client.ping()
            return True
        except redis.ResponseError as exc:
            log.warning("Redis answers but refuses writes: %s", exc)
            return True
        except TRANSIENT as exc:
            if tick:
                tick(f"waiting for Redis: {exc}")
            if backoff.wait(
                f"Redis unreachable ({exc})",
                tick=(lambda: tick("waiting for Redis")) if tick else None,
                stop=stop,
            ):
                return False
    return False


def timeseries_available(client: redis.Redis) -> bool:
    """True when the server has RedisTimeSeries (Redis 8 built in, or the module loaded)."""
    try:
        client.execute_command("TS.INFO", "rva:probe:nonexistent")
    except redis.ResponseError as exc:
        # "unknown command" means no module; "key does not exist" means it is there.
        return "unknown command" not in str(exc).lower()
    return True
