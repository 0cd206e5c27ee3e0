"""Counting on synthetic people: line crossings with hysteresis, zone stays, and crash resumes.

People are 40 x 100 px boxes, so the default line margin is max(3, 0.1 x 100) = 10 px.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from rva.analytics.counting import Counter, Event, FrameOutcome
from rva.analytics.geometry import Box, Line, Zone

# A vertical door at x = 300 from y = 100 to 500; walking right (+x) is "in".
DOOR = Line("door", (300, 100), (300, 500), (400, 300))
# A room: x 100..300, y 100..400.
ROOM = Zone("room", ((100, 100), (300, 100), (300, 400), (100, 400)))


def person(x: float, y: float = 300.0, w: float = 40.0, h: float = 100.0) -> Box:
    """A person's box standing at (x, y): the anchor is the bottom-centre."""
    return (x - w / 2, y - h, x + w / 2, y)


Frame = tuple[list[Box], int]


def walk(xs: Sequence[float], y: float = 300.0, t0: int = 0, dt: int = 100) -> list[Frame]:
    """One person through the given x positions, one frame each, dt ms apart."""
    return [([person(x, y)], t0 + i * dt) for i, x in enumerate(xs)]


def run(counter: Counter, frames: Sequence[Frame]) -> list[FrameOutcome]:
    return [counter.step(boxes, t) for boxes, t in frames]


def events(outcomes: Sequence[FrameOutcome]) -> list[Event]:
    return [e for o in outcomes for e in o.events]


def crossings(outcomes: Sequence[FrameOutcome]) -> list[tuple[int, str]]:
    return [(e.track, e.direction) for e in events(outcomes) if e.kind == "line"]


def test_walking_across_counts_one_in_when_the_side_settles() -> None:
    outcomes = run(Counter([DOOR], []), walk(range(200, 420, 10)))
    # x = 310 is not beyond the 10 px margin; 320 is the first frame beyond, 330 the second.
    assert events(outcomes) == [Event(1, "line", "door", "in", 1300)]


def test_walking_back_counts_out() -> None:
    outcomes = run(Counter([DOOR], []), walk(range(400, 180, -10)))
    assert events(outcomes) == [Event(1, "line", "door", "out", 1300)]


def test_in_out_and_in_again_counts_three_times() -> None:
    xs = [*range(200, 400, 10), *range(400, 200, -10), *range(200, 410, 10)]
    outcomes = run(Counter([DOOR], []), walk(xs))
    assert crossings(outcomes) == [(1, "in"), (1, "out"), (1, "in")]


def test_standing_on_the_line_with_jitter_counts_nothing_then_one_when_leaving() -> None:
    jitter = [0, 7, -6, 9, -9, 4, -2, 8, -8, 1]  # always within the 10 px margin
    xs = [250, 260, 270, *[300 + jitter[i % 10] for i in range(200)]]
    outcomes = run(Counter([DOOR], []), walk(xs))
    assert crossings(outcomes) == []
    more = run(Counter([DOOR], []), walk([*xs, *range(310, 400, 10)]))
    assert crossings(more) == [(1, "in")]


def test_a_far_away_person_on_the_line_gets_the_minimum_margin() -> None:
    # 20 px tall: 10% would be a 2 px margin, line_margin_px keeps 3; the feet wobble 2.5 px.
    xs = [290, 292, 294, *[300 + (2.5, 2.5, -2.5, -2.5)[i % 4] for i in range(80)]]
    frames = [([person(x, w=8, h=20)], i * 100) for i, x in enumerate(xs)]
    assert crossings(run(Counter([DOOR], []), frames)) == []


def test_a_one_frame_flicker_across_and_back_counts_nothing() -> None:
    # supervision #2598: A,A,A,B,A,A,A must count neither B nor the return to A.
    # Settled at x = 285 (15 px out), one frame at 315 (15 px in), back to 285.
    xs = [285] * 5 + ([285] * 6 + [315] + [285] * 6) * 3
    outcomes = run(Counter([DOOR], []), walk(xs))
    assert crossings(outcomes) == []
    # With line_frames=1 the same flicker is two crossings each time: the setting matters.
    flicker = run(Counter([DOOR], [], line_frames=1), walk(xs))
    assert crossings(flicker) == [(1, "in"), (1, "out")] * 3


def test_a_person_seen_once_before_stepping_across_at_two_fps_counts() -> None:
    # One frame out (x = 270), then in: the first frame beyond the margin sets the first side.
    outcomes = run(Counter([DOOR], []), walk(range(270, 700, 60), dt=500))
    assert events(outcomes) == [Event(1, "line", "door", "in", 1000)]


def test_a_crossing_beyond_the_end_of_the_segment_is_not_counted() -> None:
    short_door = Line("door", (300, 100), (300, 200), (400, 150))
    beside = run(Counter([short_door], []), walk(range(200, 420, 10), y=400))
    assert crossings(beside) == []
    through = run(Counter([short_door], []), walk(range(200, 420, 10), y=180))
    assert crossings(through) == [(1, "in")]


def test_a_track_first_seen_on_one_side_does_not_count_until_it_changes_side() -> None:
    outcomes = run(Counter([DOOR], []), walk(range(330, 500, 10)))
    assert crossings(outcomes) == []
    back = run(Counter([DOOR], []), walk([*range(330, 500, 10), *range(500, 200, -10)]))
    assert crossings(back) == [(1, "out")]


def test_a_crossing_while_tentative_is_reported_when_the_track_is_confirmed() -> None:
    # 25 px a frame: 270 settles the out side, 320 and 345 are beyond the line, so the side
    # settles in the 4th frame; the track is confirmed in the 5th (min_hits=5) and reports then.
    outcomes = run(Counter([DOOR], [], min_hits=5), walk(range(270, 500, 25)))
    assert events(outcomes) == [Event(1, "line", "door", "in", 400)]


def test_a_track_seen_for_two_frames_only_counts_nothing() -> None:
    frames = [([person(270)], 0), ([person(330)], 100), ([], 200), ([], 300)]
    outcomes = run(Counter([DOOR], [ROOM]), frames)
    assert events(outcomes) == []
    assert all(o.tracks == [] for o in outcomes)


def test_seven_people_crossing_count_seven_with_seven_ids() -> None:
    # supervision #2578: unconfirmed tracks sharing id -1 were counted as one. Seven people in
    # a queue, 60 px apart, plus a two-frame ghost on the line every few frames.
    frames: list[Frame] = []
    for frame in range(60):
        boxes = [person(200 + 20 * (frame - 3 * i)) for i in range(7) if 3 * i <= frame]
        if frame % 7 in (0, 1):
            boxes.append(person(300, 480))
        frames.append((boxes, frame * 100))
    outcomes = run(Counter([DOOR], []), frames)
    found = crossings(outcomes)
    assert [d for _, d in found] == ["in"] * 7
    assert len({track for track, _ in found}) == 7


def test_two_people_passing_each_other_on_the_line_count_one_each_way() -> None:
    frames = [
        ([person(200 + 20 * f), person(400 - 20 * f)], f * 200) for f in range(11)
    ]  # they meet at x = 300 in frame 5
    outcomes = run(Counter([DOOR], []), frames)
    assert sorted(crossings(outcomes)) == [(1, "in"), (2, "out")]


def test_a_person_missed_for_three_frames_on_the_line_counts_once_with_one_id() -> None:
    frames = [
        ([] if x in (290, 300, 310) else [person(x)], i * 100)
        for i, x in enumerate(range(200, 420, 10))
    ]
    outcomes = run(Counter([DOOR], []), frames)
    assert crossings(outcomes) == [(1, "in")]
    assert {t.id for o in outcomes for t in o.tracks} == {1}


def test_variable_frame_intervals_count_once() -> None:
    times = [0, 500, 1000, 1500, 1600, 1700, 1800, 3300, 3400, 3500, 4500, 4600]
    frames = [([person(150 + 0.06 * t)], t) for t in times]  # 60 px/s, crossing near 2.5 s
    outcomes = run(Counter([DOOR], []), frames)
    assert events(outcomes) == [Event(1, "line", "door", "in", 3400)]


def test_zone_enter_and_leave_with_dwell_and_occupancy() -> None:
    # Walk left through the room: inside (x < 300) from x = 290 at t = 1100 until x = 90 at
    # t = 3100 is the first frame outside (x < 100).
    outcomes = run(Counter([], [ROOM]), walk(range(400, 0, -10)))
    assert events(outcomes) == [
        Event(1, "zone", "room", "enter", 1300),  # third frame inside
        Event(1, "zone", "room", "leave", 3300, dwell_s=2.0),
    ]
    occupancy = [o.occupancy["room"] for o in outcomes]
    assert occupancy[:13] == [0] * 13 and occupancy[13:33] == [1] * 20
    assert occupancy[33:] == [0] * 7


def test_zone_edge_flicker_does_not_enter_or_leave() -> None:
    # Standing at the room's right edge (x = 300), the anchor flips in and out every frame
    # or two: never three frames in a row on the other side.
    pattern = [295, 305, 295, 295, 305, 305]
    xs = [320, 320, 320, *(pattern[i % 6] for i in range(60))]
    outcomes = run(Counter([], [ROOM]), walk(xs))
    assert events(outcomes) == []
    assert {o.occupancy["room"] for o in outcomes} == {0}


def test_first_seen_inside_a_zone_enters() -> None:
    outcomes = run(Counter([], [ROOM]), walk([200] * 5))
    assert events(outcomes) == [Event(1, "zone", "room", "enter", 200)]
    assert [o.occupancy for o in outcomes] == [{"room": 0}] * 2 + [{"room": 1}] * 3


def test_a_track_dropped_inside_a_zone_leaves_with_its_dwell() -> None:
    frames = [*walk([200] * 10), *[([], t) for t in range(1000, 3000, 100)]]
    outcomes = run(Counter([], [ROOM], max_miss_ms=1500), frames)
    # Inside from t = 0, last seen at 900, dropped at 2500 (1600 ms unseen).
    assert events(outcomes) == [
        Event(1, "zone", "room", "enter", 200),
        Event(1, "zone", "room", "leave", 2500, dwell_s=0.9),
    ]
    # A missed person is still there: occupancy holds while the track coasts.
    assert [o.occupancy["room"] for o in outcomes][9:16] == [1] * 7
    assert outcomes[25].occupancy == {"room": 0}


def mixed_scenario() -> list[Frame]:
    """Several people, lines and zones, misses, a ghost, variable intervals and a long gap."""
    frames: list[Frame] = []
    t = 0
    for f in range(70):
        boxes = []
        if f < 40:
            boxes.append(person(150 + 0.12 * t, 300))  # a: right through door and room edge
        if 10 <= f < 60 and f not in (16, 17, 18):
            boxes.append(person(700 - 0.08 * t, 250))  # b: left, missed while on the door
        if f >= 5:
            boxes.append(person(200 + (f % 3), 200))  # c: stands in the room, jittering
        if f in (30, 31):
            boxes.append(person(305, 450))  # a ghost on the line
        if 45 <= f < 52:
            boxes.append(person(298 + 8 * (f % 2), 380))  # d: hovers on the line
        if 40 <= f < 65:
            boxes.append(person(500, 0.06 * t - 200))  # e: walks down, across "low" in the gap
        frames.append((boxes, t))
        t += 500 if f < 8 else 2000 if f == 50 else 100
    return frames


LINES = [DOOR, Line("low", (0, 350), (600, 350), (300, 600))]
ZONES = [ROOM, Zone("right", ((310, 150), (600, 150), (600, 400), (310, 400)))]


def outcome_record(outcomes: Sequence[FrameOutcome]) -> list[object]:
    return [(o.events, o.occupancy, [(t.id, t.box, t.misses) for t in o.tracks]) for o in outcomes]


def test_resuming_from_the_state_at_any_frame_gives_the_same_events() -> None:
    frames = mixed_scenario()
    whole = run(Counter(LINES, ZONES), frames)
    # a is 1, b 3 (crossing the door while missed), e 5 (crossing "low" in the 2 s gap);
    # c (2) only enters the room, and the ghost (4) and the hovering d (6) count nothing.
    assert [(e.track, e.name, e.direction) for e in events(whole)] == [
        (1, "room", "enter"),
        (1, "door", "in"),
        (1, "room", "leave"),
        (1, "right", "enter"),
        (2, "room", "enter"),
        (1, "right", "leave"),
        (3, "right", "enter"),
        (3, "door", "out"),
        (3, "room", "enter"),
        (3, "right", "leave"),
        (5, "right", "enter"),
        (3, "room", "leave"),
        (5, "low", "in"),
        (5, "right", "leave"),
    ]
    for cut in range(len(frames) + 1):
        first = Counter(LINES, ZONES)
        head = run(first, frames[:cut])
        state = json.loads(json.dumps(first.to_state(), allow_nan=False))
        resumed = Counter.from_state(state, LINES, ZONES)
        tail = run(resumed, frames[cut:])
        assert outcome_record(head + tail) == outcome_record(whole), f"cut at frame {cut}"


def test_the_state_survives_a_removed_and_an_added_line_and_zone() -> None:
    frames = walk(range(200, 420, 10))
    counter = Counter(LINES, ZONES)
    run(counter, frames[:9])  # at x = 280: out side of the door, inside the room
    state = json.loads(json.dumps(counter.to_state()))
    new_line = Line("new", (250, 0), (250, 500), (0, 250))  # already crossed: no event
    resumed = Counter.from_state(state, [new_line, DOOR], [])
    tail = run(resumed, frames[9:])
    assert crossings(tail) == [(1, "in")]
    assert all(o.occupancy == {} for o in tail)


def test_a_moved_line_under_the_same_name_starts_afresh() -> None:
    frames = walk(range(200, 420, 10))
    counter = Counter([DOOR], [])
    assert crossings(run(counter, frames[:15])) == [(1, "in")]  # through x = 300, now at 340
    state = json.loads(json.dumps(counter.to_state()))
    # The door moved to x = 380. Remembered against the old door, "in since crossing at
    # x = 300" would turn into a false "out" at x = 360; afresh, x = 350 is a first side.
    moved = Line("door", (380, 100), (380, 500), (480, 300))
    tail = run(Counter.from_state(state, [moved], []), frames[15:])
    assert crossings(tail) == [(1, "in")]


def test_names_must_differ_and_parameters_make_sense() -> None:
    with pytest.raises(ValueError, match="two lines are named 'door'"):
        Counter([DOOR, DOOR], [])
    with pytest.raises(ValueError, match="line_frames"):
        Counter([DOOR], [], line_frames=0)
    with pytest.raises(ValueError, match="unknown counter state version"):
        Counter.from_state({"version": 0}, [DOOR], [])
