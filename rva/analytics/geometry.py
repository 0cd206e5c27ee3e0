"""Counting lines and zones in source-frame pixels, and the checks that keep them well formed.

A person's position is the bottom-centre of their box (`anchor`): the feet are on the floor,
where lines and zones are drawn, while the box centre floats at different heights for near and
far people.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

Point = tuple[float, float]
Box = tuple[float, float, float, float]  # x1, y1, x2, y2 in source-frame pixels

# Relative tolerance for "exactly on": coordinates are pixels, so 1e-9 of a segment is far below
# anything a detector or a person drawing a line can express.
_EPS = 1e-9


def anchor(box: Box) -> Point:
    """The bottom-centre of a box: where the person stands."""
    x1, _, x2, y2 = box
    return ((x1 + x2) / 2.0, y2)


def _cross(o: Point, a: Point, b: Point) -> float:
    """z of (a - o) x (b - o): > 0 when b is counter-clockwise of a seen from o."""
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _as_point(value: Any, what: str) -> Point:
    """One (x, y) pair of finite numbers, or a ValueError that says which point is wrong."""
    try:
        x, y = value
        point = (float(x), float(y))
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a pair of numbers [x, y], got {value!r}") from None
    if not all(math.isfinite(c) for c in point):
        raise ValueError(f"{what} must be finite numbers, got {value!r}")
    return point


def _as_points(points: Any, what: str) -> list[Point]:
    if isinstance(points, (str, bytes)) or not isinstance(points, Sequence):
        raise ValueError(f"{what} must be a list of [x, y] points, got {points!r}")
    return [_as_point(p, f"{what} point {i + 1}") for i, p in enumerate(points)]


def check_line(points: Any, in_side: Any) -> None:
    """Raise ValueError, phrased for a person, unless `points` is a usable counting line."""
    pts = _as_points(points, "line")
    if len(pts) != 2:
        raise ValueError(f"a line needs exactly 2 points, got {len(pts)}")
    a, b = pts
    length = math.dist(a, b)
    if length == 0:
        raise ValueError(f"the line's two points are the same ({a[0]:g}, {a[1]:g})")
    inside = _as_point(in_side, "in_side")
    if abs(_cross(a, b, inside)) <= _EPS * length * length:
        raise ValueError(
            f"in_side ({inside[0]:g}, {inside[1]:g}) lies on the line; "
            "it must be a point on the side that counts as 'in'"
        )


def _on_segment(p: Point, a: Point, b: Point) -> bool:
    """p lies on segment ab (p already known to be collinear with it)."""
    return min(a[0], b[0]) <= p[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= p[1] <= max(a[1], b[1])


def _segments_touch(p1: Point, p2: Point, q1: Point, q2: Point) -> bool:
    """Segments p1p2 and q1q2 share at least one point (crossing, touching or overlapping)."""
    d1, d2 = _cross(q1, q2, p1), _cross(q1, q2, p2)
    d3, d4 = _cross(p1, p2, q1), _cross(p1, p2, q2)
    if ((d1 > 0 and d2 < 0) or (d1 < 0 and d2 > 0)) and (
        (d3 > 0 and d4 < 0) or (d3 < 0 and d4 > 0)
    ):
        return True
    return (
        (d1 == 0 and _on_segment(p1, q1, q2))
        or (d2 == 0 and _on_segment(p2, q1, q2))
        or (d3 == 0 and _on_segment(q1, p1, p2))
        or (d4 == 0 and _on_segment(q2, p1, p2))
    )


def _area(pts: Sequence[Point]) -> float:
    """Signed shoelace area."""
    return 0.5 * sum(_cross((0.0, 0.0), pts[i - 1], pts[i]) for i in range(len(pts)))


def check_polygon(points: Any) -> None:
    """Raise ValueError, phrased for a person, unless `points` is a simple polygon with area."""
    pts = _as_points(points, "zone")
    n = len(pts)
    if n < 3:
        raise ValueError(f"a zone needs at least 3 points, got {n}")
    for i in range(n):
        for j in range(i):
            if pts[i] == pts[j]:
                raise ValueError(
                    f"zone point {i + 1} repeats point {j + 1}; list each corner once "
                    "(the polygon closes by itself)"
                )
    far = max(pts, key=lambda p: math.dist(pts[0], p))
    reach = math.dist(pts[0], far)
    if all(abs(_cross(pts[0], far, p)) <= _EPS * reach * reach for p in pts):
        raise ValueError("the zone has no area: its points are all on one line")
    edges = [(pts[i], pts[(i + 1) % n]) for i in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            p1, p2 = edges[i]
            q1, q2 = edges[j]
            if j == i + 1 or (i == 0 and j == n - 1):
                # Neighbours share a corner; they only go wrong by folding back onto each other.
                shared = p2 if j == i + 1 else p1
                far_p = p1 if shared == p2 else p2
                far_q = q2 if shared == q1 else q1
                folded = (_cross(p1, p2, far_q) == 0 and _on_segment(far_q, p1, p2)) or (
                    _cross(q1, q2, far_p) == 0 and _on_segment(far_p, q1, q2)
                )
                if not folded:
                    continue
            elif not _segments_touch(p1, p2, q1, q2):
                continue
            raise ValueError(
                f"the zone's edges cross each other (edge {i + 1} and edge {j + 1}); "
                "list the corners in order around the zone"
            )
    if _area(pts) == 0:  # cannot happen for a simple polygon off one line; a last guard
        raise ValueError("the zone has no area")


@dataclass(frozen=True)
class Line:
    """A counting line from `a` to `b`; crossing towards `in_side` counts as "in"."""

    name: str
    a: Point
    b: Point
    in_side: Point
    _sign: float = field(init=False, repr=False, compare=False)
    _length: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_line([self.a, self.b], self.in_side)
        # Store plain float tuples whatever came in (lists, ints), so lines compare and hash alike.
        for name in ("a", "b", "in_side"):
            object.__setattr__(self, name, _as_point(getattr(self, name), name))
        object.__setattr__(self, "_length", math.dist(self.a, self.b))
        object.__setattr__(self, "_sign", math.copysign(1.0, _cross(self.a, self.b, self.in_side)))

    def side(self, p: Point) -> float:
        """Signed distance in px from the (infinite) line: > 0 on in_side's side."""
        return self._sign * _cross(self.a, self.b, p) / self._length

    def within_extent(self, p: Point) -> bool:
        """p's perpendicular projection falls on the segment, not on its extension."""
        ax, ay = self.a
        dx, dy = self.b[0] - ax, self.b[1] - ay
        t = ((p[0] - ax) * dx + (p[1] - ay) * dy) / (self._length * self._length)
        return -_EPS <= t <= 1 + _EPS


@dataclass(frozen=True)
class Zone:
    """A polygonal zone; a person is in it when their anchor is."""

    name: str
    polygon: tuple[Point, ...]

    def __post_init__(self) -> None:
        check_polygon(self.polygon)
        object.__setattr__(self, "polygon", tuple(_as_point(p, "zone point") for p in self.polygon))

    def contains(self, p: Point) -> bool:
        """Even-odd ray casting; a point exactly on an edge may fall either way."""
        x, y = p
        inside = False
        pts = self.polygon
        for i in range(len(pts)):
            (x1, y1), (x2, y2) = pts[i - 1], pts[i]
            if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
                inside = not inside
        return inside
