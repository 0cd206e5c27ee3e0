"""Time for the stages, which must survive a clock that steps.

A stage is given each result's frame time: the millisecond of its stream id, i.e. Redis's
clock when the frame was stored. That clock can step. Set back (a Pi without a real-time clock
booting with the time it saved last), Redis keeps its ids increasing and stamps every new frame
with the newest id's millisecond, for as long as the clock is behind: all frames share one
millisecond, so a tracker sees no time pass (no track expires, no dwell grows). Set forward by
a day for a minute and back, the frames carry tomorrow's date, then stay stuck on it.

So the stages keep two readings apart:
- ``elapsed``: a clock for durations (tracks, dwell), which advances with the frame times while
  they advance plainly (0 < step <= STEP_MS), by the camera's frame period when they do not
  (stuck, or gone back), and by at most GAP_MS across a jump (tracks expire as over any gap,
  but no dwell spans a clock step);
- the day of "today"'s totals, which follows the frame times across midnight when they flow
  there plainly, and after a jump only once frames have flowed plainly in the new day for
  HOLD_MS (a camera off overnight resumes counting "today" a few minutes late; a clock that
  was a day ahead for a minute never resets today's totals).
Samples, events and hashes keep the frame's own time: they are facts about that frame.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

STEP_MS = 10 * 60_000  # a larger step between two frames is a jump (a gap or a clock step)
GAP_MS = 60_000  # what a jump adds to the elapsed clock
HOLD_MS = 10 * 60_000  # plain flow in another day after a jump before "today" moves there


def local_day(t_ms: int) -> str:
    return time.strftime("%Y-%m-%d", time.localtime(t_ms / 1000))


@dataclass
class StageClock:
    frame_ms: float = 100.0  # the camera's frame period: how far a stuck frame advances time
    elapsed_ms: float = 0.0
    last_ms: int | None = None
    day: str = ""
    pending_day: str = ""
    pending_flow_ms: float = 0.0

    def tick(self, t_ms: int) -> tuple[int, str, bool]:
        """Take the next frame's time: the elapsed clock for it, the day its counts go to, and
        whether that day just began (today's totals start from zero)."""
        step = None if self.last_ms is None else t_ms - self.last_ms
        plain = step is not None and 0 < step <= STEP_MS
        if step is None:
            self.elapsed_ms = float(t_ms)
        elif plain:
            self.elapsed_ms += step
        elif step <= 0:  # stuck on one millisecond, or gone back: a frame period passed
            self.elapsed_ms += self.frame_ms
        else:  # a gap, or the clock stepped forward
            self.elapsed_ms += GAP_MS
        self.last_ms = t_ms if self.last_ms is None else max(t_ms, self.last_ms)
        return round(self.elapsed_ms), *self._day(local_day(t_ms), plain, step or 0)

    def _day(self, day: str, plain: bool, step: int) -> tuple[str, bool]:
        if not self.day:
            self.day = day
            return day, True
        if day == self.day:
            self.pending_day, self.pending_flow_ms = "", 0.0
            return day, False
        if plain and not self.pending_day:  # midnight, crossed by frames that flow
            self.day = day
            return day, True
        if day != self.pending_day:  # a jump into another day: wait for plain flow there
            self.pending_day, self.pending_flow_ms = day, 0.0
        elif plain:
            self.pending_flow_ms += step
        if self.pending_flow_ms >= HOLD_MS:
            self.day, self.pending_day, self.pending_flow_ms = self.pending_day, "", 0.0
            return self.day, True
        return self.day, False

    def to_state(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any] | None, frame_ms: float) -> StageClock:
        clock = cls(**(state or {}))
        clock.frame_ms = frame_ms
        return clock
