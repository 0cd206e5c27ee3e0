"""People-counting analytics, pure logic: track person boxes, count line crossings and zone stays.

No I/O here: a stage feeds `Counter.step` one frame's boxes at a time and persists
`Counter.to_state()` with its counts, so it can resume after a crash with `Counter.from_state`.
"""

from rva.analytics.counting import Counter, Event, FrameOutcome
from rva.analytics.geometry import Box, Line, Point, Zone, anchor, check_line, check_polygon
from rva.analytics.tracker import Track, Tracker

__all__ = [
    "Box",
    "Counter",
    "Event",
    "FrameOutcome",
    "Line",
    "Point",
    "Track",
    "Tracker",
    "Zone",
    "anchor",
    "check_line",
    "check_polygon",
]
