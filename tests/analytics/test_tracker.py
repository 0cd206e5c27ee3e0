"""The tracker on synthetic people: ids kept through stillness, misses, gaps and passing."""

from __future__ import annotations

import json
import math

import pytest

from rva.analytics.geometry import Box
from rva.analytics.tracker import Track, Tracker, box_distance, iou


def person(x: float, y: float, w: float = 40.0, h: float = 100.0) -> Box:
    """A person's box standing at (x, y): the anchor is the bottom-centre."""
    return (x - w / 2, y - h, x + w / 2, y)


def ids(tracks: list[Track]) -> list[int]:
    return [t.id for t in tracks]


def test_iou_and_box_distance_in_numbers() -> None:
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0
    # Half a width sideways and a quarter of the height down: (0.5, 0.25) -> 0.559.
    assert box_distance(person(100, 200), person(120, 225)) == pytest.approx(0.5590, abs=1e-4)
    # Same place, twice as tall: the height ratio alone costs 1.
    assert box_distance(person(100, 200), person(100, 200, h=200)) == pytest.approx(1.0)


def test_a_track_is_returned_only_after_min_hits_matches() -> None:
    tracker = Tracker(min_hits=3)
    assert tracker.update([person(100, 300)], 0) == []
    assert tracker.update([person(105, 300)], 100) == []
    (track,) = tracker.update([person(110, 300)], 200)
    assert track.confirmed and track.hits == 3 and track.id == 1
    assert track.box == person(110, 300)


def test_a_person_standing_still_keeps_the_id() -> None:
    tracker = Tracker()
    jitter = [0, 2, -3, 1, -1, 3, -2, 0]
    seen = set()
    for frame in range(300):  # 30 s at 10 fps
        dx, dy = jitter[frame % 8], jitter[(frame + 3) % 8]
        seen.update(ids(tracker.update([person(400 + dx, 300 + dy)], frame * 100)))
    assert seen == {1}
    assert tracker.tracks[0].velocity == pytest.approx((0.0, 0.0), abs=20.0)


def test_a_person_missed_for_three_frames_keeps_the_id() -> None:
    tracker = Tracker()
    returned = []
    for frame in range(30):
        x = 100 + 15 * frame  # 150 px/s
        boxes = [] if frame in (10, 11, 12) else [person(x, 300)]
        returned.append(tracker.update(boxes, frame * 100))
    assert {i for r in returned[2:] for i in ids(r)} == {1}
    coasting = returned[11][0]
    assert coasting.misses == 2
    # While missed it is still reported, and its prediction walks on at 150 px/s.
    assert coasting.predict(1100) == pytest.approx(person(100 + 15 * 11, 300), abs=1.0)
    assert returned[13][0].misses == 0


def test_a_track_unseen_longer_than_max_miss_ms_is_dropped_and_its_id_never_reused() -> None:
    tracker = Tracker(max_miss_ms=1500)
    for frame in range(5):
        tracker.update([person(300, 300)], frame * 100)
    assert ids(tracker.update([], 1900)) == [1]  # 1500 ms since last seen at 400: kept
    assert tracker.update([], 2000) == []  # 1600 ms: dropped
    assert tracker.tracks == []
    for frame in range(21, 24):
        returned = tracker.update([person(300, 300)], frame * 100)
    assert ids(returned) == [2]


def test_a_two_frame_track_is_never_returned_and_takes_its_own_id() -> None:
    tracker = Tracker()
    returned: list[int] = []
    for frame in range(12):
        boxes = [person(200 + 10 * frame, 300)]
        if frame in (3, 4):
            boxes.append(person(600, 200))  # a ghost for two frames
        if frame in (6, 7):
            boxes.append(person(650, 450))  # another
        returned.extend(ids(tracker.update(boxes, frame * 100)))
        assert len({t.id for t in tracker.tracks}) == len(tracker.tracks)
        assert all(t.id > 0 for t in tracker.tracks)
    assert set(returned) == {1}
    # The ghosts had ids 2 and 3 while tentative; the next person gets 4.
    for frame in range(12, 15):
        returned = ids(tracker.update([person(320, 300), person(700, 300)], frame * 100))
    assert returned == [1, 4]


def test_unconfirmed_tracks_never_share_an_id() -> None:
    tracker = Tracker(min_hits=5)
    people = [person(100 + 80 * i, 300) for i in range(7)]
    for frame in range(3):
        tracker.update(people, frame * 100)
    assert sorted(t.id for t in tracker.tracks) == [1, 2, 3, 4, 5, 6, 7]
    assert not any(t.confirmed for t in tracker.tracks)


def test_variable_frame_rate_and_a_two_second_gap_keep_the_id() -> None:
    # 100 px/s, box 40 px wide: 2 fps, then 10 fps, then a 2.1 s gap with no frames at all
    # (longer than max_miss_ms: matching comes before dropping, so the next frame still
    # continues the track), then 10 fps again. Across the gap the person moved 5 box widths:
    # only the velocity prediction finds them.
    times = [0, 500, 1000, 1500, 2000, *range(2100, 3000, 100), 5000, 5100, 5200, 5300]
    tracker = Tracker(max_miss_ms=1500)
    seen = set()
    for t in times:
        seen.update(ids(tracker.update([person(100 + 0.1 * t, 300)], t)))
    assert seen == {1}
    assert tracker.tracks[0].hits == len(times)
    assert tracker.tracks[0].velocity == pytest.approx((100.0, 0.0))


def test_a_fast_walker_at_two_fps_is_followed_though_boxes_never_overlap() -> None:
    # 60 px per frame at 2 fps, box 40 px wide (a brisk 2 m/s for a 1.7 m person 100 px tall):
    # consecutive boxes do not overlap at all.
    tracker = Tracker()
    seen = []
    for frame in range(8):
        seen.extend(ids(tracker.update([person(100 + 60 * frame, 300)], frame * 500)))
    assert seen == [1] * 6
    assert tracker.tracks[0].velocity == pytest.approx((120.0, 0.0))


def test_two_people_passing_each_other_keep_their_ids() -> None:
    tracker = Tracker()
    final: list[Track] = []
    # At 5 fps, 100 px/s each: the boxes overlap for several frames, and in the frame after
    # they coincide each old box is as near to either detection; the velocity tells them apart.
    for frame in range(25):
        a = person(100 + 20 * frame, 300)  # walking right
        b = person(580 - 20 * frame, 300)  # walking left on the same path
        final = tracker.update([b, a] if frame % 2 else [a, b], frame * 200)
    assert len(final) == 2
    by_id = {t.id: t.box for t in final}
    assert by_id[1] == person(100 + 20 * 24, 300)  # a came first in the list: id 1
    assert by_id[2] == person(580 - 20 * 24, 300)
    assert tracker._next_id == 3  # no track was ever lost and restarted


def test_returned_tracks_are_copies() -> None:
    tracker = Tracker(min_hits=1)
    (track,) = tracker.update([person(100, 300)], 0)
    track.box = (0, 0, 1, 1)
    track.id = 99
    assert tracker.tracks[0].id == 1 and tracker.tracks[0].box == person(100, 300)


def test_detections_may_carry_a_score() -> None:
    tracker = Tracker(min_hits=1)
    (track,) = tracker.update([(80.0, 200.0, 120.0, 300.0, 0.93)], 0)  # type: ignore[list-item]
    assert track.box == (80.0, 200.0, 120.0, 300.0)


def test_boxes_without_area_or_with_nan_are_ignored() -> None:
    tracker = Tracker(min_hits=1)
    bad = [(10.0, 10.0, 10.0, 50.0), (30.0, 60.0, 20.0, 50.0), (0.0, 0.0, math.nan, 5.0)]
    assert tracker.update(bad, 0) == []
    assert tracker.tracks == []


def test_state_round_trip_through_json_is_exact() -> None:
    tracker = Tracker()
    for frame in range(7):
        tracker.update([person(100 + 13.7 * frame, 300 + frame / 3)], frame * 137)
    tracker.update([person(700, 100)], 7 * 137)  # one tentative track too
    state = json.loads(json.dumps(tracker.to_state(), allow_nan=False))
    resumed = Tracker.from_state(state)
    assert resumed.to_state() == tracker.to_state()
    assert resumed.tracks == tracker.tracks
    for frame in range(8, 12):
        boxes = [person(100 + 13.7 * frame, 300), person(700, 100)]
        assert resumed.update(boxes, frame * 137) == tracker.update(boxes, frame * 137)


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="min_hits"):
        Tracker(min_hits=0)
    with pytest.raises(ValueError, match="match_iou"):
        Tracker(match_iou=0)
    with pytest.raises(ValueError, match="unknown tracker state version"):
        Tracker.from_state({"version": 99})
