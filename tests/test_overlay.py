"""Labels of lines and zones on the video: placed inside the frame, none over another nor over
the people count, on real geometry (the README's door line and hall zone on vtest.avi's
768x576 frames) and on a crowded one; checked as rectangles and as pixels of a drawn frame."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest

from rva import overlay
from rva.config import CameraSection
from rva.overlay import Label, Rect

SIZE = (768, 576)  # vtest.avi
DOOR = {"points": [[330, 185], [330, 375]], "in_side": [400, 270]}
HALL = {"polygon": [[200, 200], [460, 200], [460, 320], [200, 320]]}
COUNTS = {
    "line:door:in:today": "12",
    "line:door:out:today": "15",
    "zone:hall": "3",
    "zone:queue": "11",
    "line:gate:in:today": "104",
    "line:gate:out:today": "98",
    "line:exit:in:today": "7",
    "line:exit:out:today": "0",
}
DEMO = {"lines": {"door": DOOR}, "zones": {"hall": HALL}}
# A zone whose top corner is where the door's label would go, a line whose label would fall on
# the people count, and a second line beside the door: each wanted box meets another.
CROWDED = {
    "lines": {
        "door": DOOR,
        "gate": {"points": [[150, 50], [150, 160]], "in_side": [190, 100]},
        "exit": {"points": [[345, 190], [345, 380]], "in_side": [400, 270]},
    },
    "zones": {"hall": HALL, "queue": {"polygon": [[320, 170], [420, 170], [420, 260], [320, 260]]}},
}


def overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def inside(r: Rect, size: tuple[int, int] = SIZE) -> bool:
    return 0 <= r[0] < r[2] <= size[0] and 0 <= r[1] < r[3] <= size[1]


def colour_mask(img: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    """Pixels near a label colour (anti-aliased text keeps the hue, not always the value)."""
    diff = np.abs(img.astype(np.int16) - np.array(colour, dtype=np.int16)).max(axis=2)
    return diff < 70


def check_placed(placed: list[Label]) -> None:
    people = overlay.people_label_rect(SIZE[0], overlay.WIDEST_PEOPLE_LABEL)
    for label in placed:
        assert inside(label.rect), label
        assert not overlaps(label.rect, people), label
    for a, b in combinations(placed, 2):
        assert not overlaps(a.rect, b.rect), (a, b)


def check_pixels(frame: np.ndarray, placed: list[Label]) -> None:
    """Each label box is black with text in its own colour only: no other label, shape or
    arrow drawn over it; the people count is still white on black in its corner."""
    for label in placed:
        left, top, right, bottom = label.rect
        box = frame[top:bottom, left:right]
        other = overlay.ZONE_COLOUR if label.colour == overlay.LINE_COLOUR else overlay.LINE_COLOUR
        assert (box.max(axis=2) < 40).mean() > 0.6, ("box not black", label)
        assert colour_mask(box, label.colour).sum() > 40, ("no text in its colour", label)
        assert colour_mask(box, other).sum() == 0, ("another label's colour in it", label)
    _l, _t, right, bottom = overlay.people_label_rect(SIZE[0], "people: 3")
    corner = frame[0:bottom, 0:right]
    assert (corner > 200).all(axis=2).sum() > 100, "the people count is covered"
    for colour in (overlay.LINE_COLOUR, overlay.ZONE_COLOUR):
        assert colour_mask(corner, colour).sum() == 0, "a label over the people count"


@pytest.mark.parametrize("geometry", [DEMO, CROWDED], ids=["demo", "crowded"])
def test_labels_are_inside_the_frame_and_apart_on_a_drawn_frame(
    geometry: dict[str, object], sample_frames: dict[int, np.ndarray]
) -> None:
    camera = CameraSection.model_validate(geometry)
    frame = sample_frames[300].copy()
    assert (frame.shape[1], frame.shape[0]) == SIZE
    placed = overlay.labels(frame.shape, camera, COUNTS)
    assert [lb.text for lb in placed] == [
        lb.text for lb in overlay.wanted_labels(frame.shape, camera, COUNTS)
    ]
    assert len(placed) == len(camera.lines) + len(camera.zones)
    check_placed(placed)

    overlay.annotate(frame, [], 3)  # the web's order: the count first, then lines and zones
    overlay.draw(frame, camera, COUNTS)
    check_pixels(frame, placed)


def test_the_crowded_geometry_needs_moving_and_the_demo_keeps_its_places() -> None:
    shape = (SIZE[1], SIZE[0], 3)
    crowded = CameraSection.model_validate(CROWDED)
    wanted = overlay.wanted_labels(shape, crowded, COUNTS)
    people = overlay.people_label_rect(SIZE[0], overlay.WIDEST_PEOPLE_LABEL)
    # Without placing, labels would cover each other and the people count.
    assert any(overlaps(a.rect, b.rect) for a, b in combinations(wanted, 2))
    assert any(overlaps(w.rect, people) for w in wanted)
    moved = [
        w.text
        for w, p in zip(wanted, overlay.labels(shape, crowded, COUNTS), strict=True)
        if w.rect != p.rect
    ]
    assert len(moved) >= 2, moved
    # Labels already apart stay where they were wanted, next to their line and zone.
    demo = CameraSection.model_validate(DEMO)
    assert overlay.labels(shape, demo, COUNTS) == overlay.wanted_labels(shape, demo, COUNTS)


def test_place_labels_moves_up_or_down_to_the_nearest_free_place_inside_the_frame() -> None:
    size = (200, 100)
    box: Rect = (50, 40, 110, 60)
    placed = overlay.place_labels(size, [box, box, box])
    assert placed[0] == box
    assert all(p[0] == 50 and p[2] == 110 for p in placed), placed  # vertical moves first
    assert {p[1] for p in placed[1:]} == {40 + 20 + overlay.GAP, 40 - 20 - overlay.GAP}
    for a, b in combinations(placed, 2):
        assert not overlaps(a, b)
    # Wanted partly outside: moved in; near the bottom edge: moved up, not out.
    edge = overlay.place_labels(size, [(-30, -5, 30, 15), (170, 90, 230, 110), (160, 85, 220, 105)])
    assert all(inside(r, size) for r in edge), edge
    assert edge[0] == (0, 0, 60, 20) and edge[1] == (140, 80, 200, 100)
    assert edge[2][1] < edge[1][1], edge
    # Clear of what is taken already.
    assert not overlaps(overlay.place_labels(size, [box], [(0, 30, 200, 55)])[0], (0, 30, 200, 55))
    # More than fits (6 boxes of 60x20 with their gaps, found from there): each stays inside the
    # frame; those with no free place left keep their wanted one.
    many = overlay.place_labels(size, [box] * 9)
    assert all(inside(r, size) for r in many)
    assert not any(overlaps(a, b) for a, b in combinations(many[:6], 2)), many
    assert many[6:] == [box] * 3


def test_a_line_through_the_corner_passes_under_the_people_count() -> None:
    """The people count is drawn last: a line or zone across the top-left corner does not cross
    it (the feed and the MQTT camera give draw() to annotate() as its ``scene``)."""
    camera = CameraSection.model_validate(
        {
            "source": "0",
            "lines": {"top": {"points": [[0, 12], [700, 12]], "in_side": [300, 100]}},
            "zones": {"corner": {"polygon": [[0, 0], [200, 0], [200, 60], [0, 60]]}},
        }
    )
    frame = np.full((SIZE[1], SIZE[0], 3), 90, np.uint8)
    overlay.annotate(frame, [], 3, "counted 2 s ago", scene=lambda f: overlay.draw(f, camera, {}))
    left, top, right, bottom = overlay.people_label_rect(SIZE[0], "people: 3  (counted 2 s ago)")
    box = frame[top:bottom, left:right]
    assert not colour_mask(box, overlay.LINE_COLOUR).any()
    assert not colour_mask(box, overlay.ZONE_COLOUR).any()
    # ...and the line is there beside it.
    assert colour_mask(frame[:, right + 5 :], overlay.LINE_COLOUR).any()
