"""How a gears worker's result reaches Redis: one server-side script per result (STORE), sent
on a connection whose replies are read later (Deferred), so the worker never waits for it."""

from __future__ import annotations

import collections
from collections.abc import Callable

import redis

from rva.connection import TRANSIENT

# One round trip per result, checked and written at once. KEYS: input stream, results stream,
# rva:stats, camera:<id>:latest, then the time series of the samples (none when they are off).
# ARGV: group, consumer, entry id, results maxlen, the entry's ms, slack ms, stats field,
# n result fields then their field/value pairs, n latest fields then their pairs, then one value
# per series key. Returns {0} when another worker owns the entry now (nothing written), else
# {1, ms the entry is ahead of Redis's clock, TS.MADD's reply when the samples were written}.
STORE = """
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #pending == 0 or pending[1][2] ~= ARGV[2] then return {0} end
local i = 8
local n = tonumber(ARGV[i])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', unpack(ARGV, i + 1, i + 2 * n))
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
redis.call('HINCRBY', KEYS[3], ARGV[7], 1)
i = i + 2 * n + 1
n = tonumber(ARGV[i])
redis.call('HSET', KEYS[4], unpack(ARGV, i + 1, i + 2 * n))
i = i + 2 * n + 1
local now = redis.call('TIME')
local ahead = tonumber(ARGV[5]) - (tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000))
if #KEYS == 4 or ahead > tonumber(ARGV[6]) then return {1, ahead} end
local args = {}
for k = 5, #KEYS do
  args[#args + 1] = KEYS[k]
  args[#args + 1] = ARGV[5]
  args[#args + 1] = ARGV[i + k - 5]
end
return {1, ahead, redis.pcall('TS.MADD', unpack(args))}
"""


class Deferred:
    """Writes on the frame's path whose replies the worker does not wait for: sent on a
    connection of their own, their replies read later (at the start of the worker's next
    round, those that have come; all of them at a clean stop) and handed to a callback. So the
    worker asks for its next frame while Redis stores the last result, and the next-frame hint
    costs no round trip.

    If the link drops, the replies not read are lost with it: a hint is a hint (capture goes
    by the result instead); a result whose reply is lost was written or, if not, its frame is
    still pending and is taken over again after gear.claim_idle_ms (at least once)."""

    def __init__(self, client: redis.Redis) -> None:
        self.pool = client.connection_pool
        self.conn: redis.connection.AbstractConnection | None = None
        self.waiting: collections.deque[Callable[[object], None] | None] = collections.deque()

    def send(self, *args: object, on_reply: Callable[[object], None] | None = None) -> None:
        """Send a command; TRANSIENT errors are raised (the link is closed first)."""
        try:
            if self.conn is None:
                self.conn = self.pool.make_connection()
            self.conn.send_command(*args)
        except (*TRANSIENT, OSError):
            self.close()
            raise
        self.waiting.append(on_reply)

    def collect(self, wait: bool = True) -> None:
        """Read the replies that have come (all of them, with ``wait``) and hand them over."""
        try:
            while self.waiting and self.conn is not None:
                if not wait and not self.conn.can_read(timeout=0):
                    return
                try:
                    reply: object = self.conn.read_response()
                except redis.ResponseError as exc:
                    reply = exc
                callback = self.waiting.popleft()
                if callback is not None:
                    callback(reply)
        except (*TRANSIENT, OSError):
            self.close()
            raise

    def close(self) -> None:
        if self.conn is not None:
            self.conn.disconnect()
        self.conn = None
        self.waiting.clear()
