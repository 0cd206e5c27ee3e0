"""Counting lines and zones: signed sides, segment extent, containment, and the config checks."""

from __future__ import annotations

import math
import re

import pytest

from rva.analytics.geometry import Line, Zone, anchor, check_line, check_polygon


def test_anchor_is_the_bottom_centre_of_the_box() -> None:
    assert anchor((10.0, 20.0, 50.0, 120.0)) == (30.0, 120.0)


def test_side_is_the_signed_distance_positive_towards_in_side() -> None:
    line = Line("door", (0, 0), (100, 0), (50, 10))
    assert line.side((50, 5)) == pytest.approx(5.0)
    assert line.side((20, -3)) == pytest.approx(-3.0)
    assert line.side((500, 0)) == 0.0
    flipped = Line("door", (0, 0), (100, 0), (50, -10))
    assert flipped.side((50, 5)) == pytest.approx(-5.0)
    # The same line drawn the other way round keeps the same in side.
    reversed_points = Line("door", (100, 0), (0, 0), (50, 10))
    assert reversed_points.side((50, 5)) == pytest.approx(5.0)


def test_side_of_a_slanted_line_is_in_pixels() -> None:
    line = Line("diag", (0, 0), (30, 40), (0, 50))  # length 50
    # (40, -30) is perpendicular to the line, 50 px away, on the side away from (0, 50).
    assert line.side((40, -30)) == pytest.approx(-50.0)
    assert line.side((-40, 30)) == pytest.approx(50.0)


def test_within_extent_is_the_projection_onto_the_segment() -> None:
    line = Line("door", (0, 0), (100, 0), (50, 10))
    assert line.within_extent((50, 30))
    assert line.within_extent((0, -7))
    assert line.within_extent((100, 7))
    assert not line.within_extent((-1, 0))
    assert not line.within_extent((100.5, 3))


def test_line_and_zone_store_float_tuples_whatever_came_in() -> None:
    line = Line("door", [0, 0], [100, 0], [50, 10])  # type: ignore[arg-type]
    assert line.a == (0.0, 0.0) and line.b == (100.0, 0.0) and line.in_side == (50.0, 10.0)
    assert line == Line("door", (0.0, 0.0), (100.0, 0.0), (50.0, 10.0))
    zone = Zone("room", [[0, 0], [10, 0], [10, 10]])  # type: ignore[arg-type]
    assert zone.polygon == ((0.0, 0.0), (10.0, 0.0), (10.0, 10.0))


def test_zone_contains_with_a_concave_polygon() -> None:
    # An L: the square 0..20 minus its top-right quarter 10..20 x 0..10.
    zone = Zone("L", ((0, 0), (10, 0), (10, 10), (20, 10), (20, 20), (0, 20)))
    assert zone.contains((5, 5))
    assert zone.contains((15, 15))
    assert not zone.contains((15, 5))  # the notch
    assert not zone.contains((25, 15))
    assert not zone.contains((-1, 5))


@pytest.mark.parametrize(
    ("points", "in_side", "message"),
    [
        ([(0, 0)], (1, 1), "exactly 2 points, got 1"),
        ([(0, 0), (1, 0), (2, 0)], (1, 1), "exactly 2 points, got 3"),
        ([(5, 5), (5, 5)], (1, 1), "two points are the same"),
        ([(0, 0), (10, 0)], (5, 0), "lies on the line"),
        ([(0, 0), (10, 0)], (50, 0), "lies on the line"),  # on the extension too
        ([(0, 0), (10, math.nan)], (5, 5), "finite"),
        ([(0, 0), (math.inf, 0)], (5, 5), "finite"),
        ([(0, 0), (10, 0)], (5, math.nan), "finite"),
        ([(0, 0), (10, "a")], (5, 5), "pair of numbers"),
        ([(0, 0), (10, 0, 3)], (5, 5), "pair of numbers"),
        ("0,0,10,0", (5, 5), "list of [x, y] points"),
    ],
)
def test_check_line_rejects(points: object, in_side: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        check_line(points, in_side)


def test_line_refuses_to_be_built_wrong() -> None:
    with pytest.raises(ValueError, match="lies on the line"):
        Line("door", (0, 0), (10, 10), (5, 5))


def test_check_line_accepts_a_good_line() -> None:
    check_line([[0, 0], [10, 0]], [5, 0.5])


@pytest.mark.parametrize(
    ("points", "message"),
    [
        ([(0, 0), (10, 0)], "at least 3 points, got 2"),
        ([(0, 0), (10, 0), (20, 0)], "no area"),
        ([(0, 0), (10, 10), (20, 20), (30, 30)], "no area"),
        ([(0, 0), (10, 10), (10, 0), (0, 10)], "edges cross each other"),  # a bow tie
        ([(0, 0), (10, 0), (10, 10), (10, 5)], "edges cross each other"),  # folds back
        ([(0, 0), (10, 0), (5, 5), (10, 10), (0, 10), (5, 0)], "edges cross each other"),
        ([(0, 0), (10, 0), (10, 10), (0, 0)], "point 4 repeats point 1"),
        ([(0, 0), (10, 0), (10, 0), (0, 10)], "point 3 repeats point 2"),
        ([(0, 0), (10, 0), (10, math.nan)], "finite"),
        ([(0, 0), (10, 0), (math.inf, 10)], "finite"),
        ([(0, 0), (10, 0), None], "pair of numbers"),
        (None, "list of [x, y] points"),
    ],
)
def test_check_polygon_rejects(points: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        check_polygon(points)


def test_zone_refuses_to_be_built_wrong() -> None:
    with pytest.raises(ValueError, match="edges cross each other"):
        Zone("bowtie", ((0, 0), (10, 10), (10, 0), (0, 10)))


@pytest.mark.parametrize(
    "points",
    [
        [(0, 0), (10, 0), (0, 10)],
        [(0, 0), (10, 0), (10, 10), (0, 10)],
        [(0, 0), (0, 10), (10, 10), (10, 0)],  # clockwise is as good
        [(0, 0), (10, 0), (20, 0), (20, 10), (0, 10)],  # a straight corner is allowed
        [(0, 0), (10, 0), (10, 10), (20, 10), (20, 20), (0, 20)],  # concave
    ],
)
def test_check_polygon_accepts_simple_polygons(points: list[tuple[float, float]]) -> None:
    check_polygon(points)
