"""Clock steps and the counting stage (rva.stages.clock), with the real CountingStage: Redis's
clock a day ahead for 30 s and then set right (frames stamped tomorrow, then stuck on one
millisecond, as Redis stamps them) must not reset today's totals, freeze the tracker or grow
its state; a real midnight, and a camera that was off overnight, still start a new day."""

from __future__ import annotations

import json
import time

from rva import config
from rva.stages.clock import HOLD_MS, StageClock, local_day
from rva.stages.counting import CountingStage

DAY_MS = 86_400_000
CONFIG = """
[cameras.0]
source = "/dev/null.avi"
fps = 10
[cameras.0.lines.door]
points = [[100, 300], [700, 300]]
in_side = [400, 500]
[cameras.0.zones.hall]
polygon = [[0, 320], [768, 320], [768, 576], [0, 576]]
"""


def _noon(days_ago: int = 0) -> int:
    """Noon of a day, local time, in ms (well away from midnight)."""
    t = time.localtime(time.time() - days_ago * 86_400)
    return int(time.mktime((t.tm_year, t.tm_mon, t.tm_mday, 12, 0, 0, 0, 0, -1)) * 1000)


def _walker(frame: int) -> list[int]:
    """One person every 30 frames, walking down across the line at y=300 into the zone."""
    k, f = divmod(frame, 30)
    x, y = 150 + 40 * (k % 12), 200 + 10 * f
    return [x - 20, y - 100, x + 20, y]


def _stage() -> CountingStage:
    stage = CountingStage("0", config.parse(CONFIG))
    stage.load(None)
    return stage


def _run(stage: CountingStage, times: list[int], first_frame: int = 0) -> list[dict]:
    out = []
    for n, t_ms in enumerate(times):
        boxes = json.dumps(_walker(first_frame + n)).encode()
        result = stage.handle(t_ms, {b"boxes": boxes, b"people": b"1"})
        out.append(result.hashes["camera:0:counts"])
    return out


def test_a_day_ahead_for_30_s_then_set_right_keeps_today_and_time_flowing() -> None:
    stage = _stage()
    t0 = _noon()
    before = _run(stage, [t0 + 100 * i for i in range(600)])  # one minute at 10 fps
    today_in = before[-1]["line:door:in:today"]
    assert today_in >= 15 and before[-1]["day"] == local_day(t0)
    # Redis's clock a day ahead for 30 s: frames stamped tomorrow...
    ahead = t0 + DAY_MS + 60_000
    during = _run(stage, [ahead + 100 * i for i in range(300)], first_frame=600)
    # ...then set right: Redis keeps its ids increasing, every frame on the newest millisecond.
    stuck = _run(stage, [ahead + 30_000] * 1200, first_frame=900)  # two minutes of frames
    assert all(c["day"] == local_day(t0) for c in during + stuck)
    assert stuck[-1]["line:door:in:today"] > today_in  # not reset, and still counting
    assert stuck[-1]["line:door:in:today"] == stuck[-1]["line:door:in"]  # nothing lost
    # Time flows for the tracker on stuck frames: tracks expire, so its state stays small.
    live = [len(json.loads(c["tracks"])) for c in stuck]
    assert max(live) <= 3, max(live)
    assert len(stage.counters["person"].to_state()["tracker"]["tracks"]) <= 5


def test_dwell_grows_on_frames_stuck_on_one_millisecond() -> None:
    stage = _stage()
    t0 = _noon()
    events: list[dict] = []
    for n in range(300):
        result = stage.handle(t0, {b"boxes": json.dumps(_walker(n)).encode(), b"people": b"1"})
        events += result.events
    leaves = [e for e in events if e["direction"] == "leave"]
    assert leaves and all(e["dwell_s"] > 0 for e in leaves), leaves[:3]
    assert all(e["t"] == t0 for e in events)  # what is written keeps the frame's own time


def test_midnight_crossed_by_flowing_frames_starts_a_new_day_at_once() -> None:
    clock = StageClock(frame_ms=100)
    midnight = _noon() - 12 * 3_600_000
    _elapsed, day, new = clock.tick(midnight - 200)
    assert new and day == local_day(midnight - 1)
    _elapsed, day, new = clock.tick(midnight - 100)
    assert not new
    _elapsed, day, new = clock.tick(midnight + 100)
    assert new and day == local_day(midnight)


def test_a_camera_off_overnight_counts_the_new_day_after_some_flow() -> None:
    clock = StageClock(frame_ms=100)
    evening = _noon(1) + 9 * 3_600_000  # 21:00 yesterday
    clock.tick(evening)
    morning = _noon() - 4 * 3_600_000  # 08:00 today
    _e, day, new = clock.tick(morning)
    assert day == local_day(evening) and not new  # a jump: not yet
    t, switched_at = morning, None
    for _ in range(HOLD_MS // 100 + 10):
        t += 100
        _e, day, new = clock.tick(t)
        if new:
            switched_at = t
            break
    assert switched_at is not None and day == local_day(morning)
    assert switched_at - morning >= HOLD_MS


def test_state_from_before_the_clock_keeps_its_day() -> None:
    stage = _stage()
    stage.load({"totals": {"line:door:in": 7}, "today": {"line:door:in": 3}, "day": "2026-01-02"})
    assert stage.day == "2026-01-02" and stage.clock.frame_ms == 100.0
    assert stage.dump()["clock"]["day"] == "2026-01-02"
