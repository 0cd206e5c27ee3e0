"""What is drawn on a frame before anyone sees it (the web's /video and the MQTT snapshot): the
people count and boxes, people pixelated for [web] video = "blurred", and the counting lines
and zones (each line with an arrow towards its in side and today's in/out, each zone shaded
with the people in it now). The lines' and zones' labels are placed so that none covers
another or the people count, and all stay inside the frame (place_labels)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import cv2
import numpy as np

from rva.config import CameraSection

LINE_COLOUR = (0, 215, 255)  # amber, BGR
ZONE_COLOUR = (255, 160, 60)  # blue
FONT = cv2.FONT_HERSHEY_SIMPLEX
# The widest people label annotate() writes (a raw frame shown with the last count): the
# top-left corner the lines' and zones' labels keep clear of.
WIDEST_PEOPLE_LABEL = "people: 888  (counted 88 s ago)"
GAP = 2  # pixels kept between two labels

LABEL_PAD_TOP = 4  # pixels of a label's box above its text

Rect = tuple[int, int, int, int]  # left, top, right, bottom; right and bottom excluded


class Label(NamedTuple):
    text: str
    colour: tuple[int, int, int]
    rect: Rect  # its black box; the text's baseline is LABEL_PAD_TOP + text height below the top


def people_label_rect(width: int, text: str) -> Rect:
    """The black box annotate() draws in the top-left corner of a frame `width` wide."""
    (w, h), base = cv2.getTextSize(text, FONT, max(0.5, width / 900), 2)
    return (0, 0, w + 17, h + base + 15)


OBJECT_COLOUR = (255, 200, 0)  # BGR: boxes of the other classes a line or zone counts


def annotate(
    frame: np.ndarray,
    boxes: list[int],
    people: int | None,
    note: str = "",
    objects: dict[str, list[int]] | None = None,
    scene: Callable[[np.ndarray], object] | None = None,
) -> np.ndarray:
    """Person boxes in green with the people count; ``objects`` (other classes: {"car": flat
    boxes}) in blue, each with its class name. ``scene`` draws the lines and zones (draw()),
    after the boxes and before the people count, so that no line crosses the count."""
    for i in range(0, len(boxes) - 3, 4):
        x1, y1, x2, y2 = boxes[i : i + 4]
        cv2.rectangle(frame, (x1, y1), (x2, y2), (0, 255, 0), 2)
    small = max(0.4, frame.shape[1] / 1600)
    for cls, flat in (objects or {}).items():
        for i in range(0, len(flat) - 3, 4):
            x1, y1, x2, y2 = (int(v) for v in flat[i : i + 4])
            cv2.rectangle(frame, (x1, y1), (x2, y2), OBJECT_COLOUR, 2)
            cv2.putText(
                frame, cls, (x1 + 2, max(y1 - 4, 10)), FONT, small, OBJECT_COLOUR, 1, cv2.LINE_AA
            )
    if scene is not None:
        scene(frame)
    label = f"people: {people}" if people is not None else "people: -"
    if note:
        label += f"  ({note})"
    scale = max(0.5, frame.shape[1] / 900)
    (_w, h), _base = cv2.getTextSize(label, FONT, scale, 2)
    _l, _t, right, bottom = people_label_rect(frame.shape[1], label)
    cv2.rectangle(frame, (0, 0), (right - 1, bottom - 1), (0, 0, 0), -1)
    cv2.putText(frame, label, (8, h + 8), FONT, scale, (255, 255, 255), 2, cv2.LINE_AA)
    return frame


def _blocks(region: np.ndarray, block: int) -> None:
    """Replace a region, in place, by squares of its mean colour, then soften the squares'
    edges with a blur as wide as one: the detail is averaged away, so nothing can bring it
    back, and no sharp edge is left for the eye (or a Laplacian) to find."""
    h, w = region.shape[:2]
    small = cv2.resize(
        region, (max(1, w // block), max(1, h // block)), interpolation=cv2.INTER_AREA
    )
    coarse = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
    k = block | 1  # odd
    region[:] = cv2.GaussianBlur(coarse, (k, k), 0, borderType=cv2.BORDER_REPLICATE)


def pixelate(frame: np.ndarray, boxes: list[int] | None, margin: float = 0.15) -> np.ndarray:
    """[web] video = "blurred": every person's box, grown by `margin` each side, in blocks of
    a quarter of its width (12 px at least: a face is one or two blocks). boxes=None: the whole
    frame, in 24 px blocks (a frame no detection has looked at may show anybody)."""
    if boxes is None:
        _blocks(frame, 24)
        return frame
    h, w = frame.shape[:2]
    for i in range(0, len(boxes) - 3, 4):
        x1, y1, x2, y2 = (int(v) for v in boxes[i : i + 4])
        mx, my = int((x2 - x1) * margin), int((y2 - y1) * margin)
        x1, y1, x2, y2 = max(0, x1 - mx), max(0, y1 - my), min(w, x2 + mx), min(h, y2 + my)
        if x2 - x1 >= 2 and y2 - y1 >= 2:
            _blocks(frame[y1:y2, x1:x2], max(12, (x2 - x1) // 4))
    return frame


def _overlaps(a: Rect, b: Rect, gap: int = 0) -> bool:
    return a[0] < b[2] + gap and b[0] < a[2] + gap and a[1] < b[3] + gap and b[1] < a[3] + gap


def _offsets(limit: int, step: int) -> list[int]:
    """0, +step, -step, +2 step, -2 step, ... up to `limit` either way."""
    out = [0]
    for k in range(step, limit + step, step):
        out += [k, -k]
    return out


def place_labels(
    size: tuple[int, int], wanted: Sequence[Rect], taken: Sequence[Rect] = ()
) -> list[Rect]:
    """Where to draw each label's box in a frame of `size` (width, height): its wanted box
    moved inside the frame, then, in order, down or up (the nearest first; sideways as well
    only when no height will do) until it meets no box placed before it nor any in `taken`.
    A box that cannot be free anywhere keeps its place inside the frame."""
    width, height = size
    placed: list[Rect] = []
    for left, top, right, bottom in wanted:
        w, h = right - left, bottom - top
        x0 = min(max(left, 0), max(width - w, 0))
        y0 = min(max(top, 0), max(height - h, 0))
        best: Rect = (x0, y0, x0 + w, y0 + h)
        busy = [*taken, *placed]
        found = False
        for dx in _offsets(width, max(w // 2, 1)):
            x = x0 + dx
            if x < 0 or x + w > width:
                continue
            for dy in _offsets(height, 2):
                y = y0 + dy
                if y < 0 or y + h > height:
                    continue
                rect = (x, y, x + w, y + h)
                if not any(_overlaps(rect, other, GAP) for other in busy):
                    best, found = rect, True
                    break
            if found:
                break
        placed.append(best)
    return placed


def _wanted(width: int, text: str, at: tuple[float, float]) -> Rect:
    """The box of a label whose text starts at `at` on its baseline."""
    (w, h), base = cv2.getTextSize(text, FONT, _label_scale(width), 1)
    x, y = round(at[0]), round(at[1])
    return (x, y - h - LABEL_PAD_TOP, x + w + 6, y + base + 2)


def _label_scale(width: int) -> float:
    return max(0.45, width / 1400)


def wanted_labels(
    shape: tuple[int, ...], camera: CameraSection, counts: dict[str, str]
) -> list[Label]:
    """The camera's zone and line labels for a frame of `shape` (height, width, ...), each
    where it would go alone: a zone's above its topmost corner, a line's above its upper end."""
    width = shape[1]
    out: list[Label] = []
    for name, z in camera.zones.items():
        top = min(z.polygon, key=lambda p: p[1])
        what = "" if z.classes == ["person"] else f" ({','.join(z.classes)})"
        text = f"{name}{what}: {counts.get(f'zone:{name}', '-')}"
        out.append(Label(text, ZONE_COLOUR, _wanted(width, text, (top[0], top[1]))))
    for name, line in camera.lines.items():
        (x1, y1), (x2, y2) = line.points
        today_in = counts.get(f"line:{name}:in:today", "-")
        today_out = counts.get(f"line:{name}:out:today", "-")
        what = "" if line.classes == ["person"] else f" ({','.join(line.classes)})"
        text = f"{name}{what}: in {today_in} / out {today_out}"
        at = (max(x1, x2) - 10, min(y1, y2) - 8)
        out.append(Label(text, LINE_COLOUR, _wanted(width, text, at)))
    return out


def labels(shape: tuple[int, ...], camera: CameraSection, counts: dict[str, str]) -> list[Label]:
    """The wanted labels, placed: inside the frame, clear of each other and of the people
    count's corner."""
    wanted = wanted_labels(shape, camera, counts)
    reserved = [people_label_rect(shape[1], WIDEST_PEOPLE_LABEL)]
    rects = place_labels((shape[1], shape[0]), [lb.rect for lb in wanted], reserved)
    return [lb._replace(rect=r) for lb, r in zip(wanted, rects, strict=True)]


def _draw_label(frame: np.ndarray, label: Label) -> None:
    left, top, right, bottom = label.rect
    scale = _label_scale(frame.shape[1])
    (_w, h), _base = cv2.getTextSize(label.text, FONT, scale, 1)
    cv2.rectangle(frame, (left, top), (right - 1, bottom - 1), (0, 0, 0), -1)
    at = (left + 3, top + LABEL_PAD_TOP + h)
    cv2.putText(frame, label.text, at, FONT, scale, label.colour, 1, cv2.LINE_AA)


def draw(frame: np.ndarray, camera: CameraSection, counts: dict[str, str]) -> np.ndarray:
    """Draw the camera's zones and lines on the frame, then their labels (from the counts
    hash) over them, where labels() places them."""
    if camera.zones:
        shade = frame.copy()
        for z in camera.zones.values():
            cv2.fillPoly(shade, [np.array(z.polygon, dtype=np.int32)], ZONE_COLOUR)
        cv2.addWeighted(shade, 0.18, frame, 0.82, 0, dst=frame)
    for z in camera.zones.values():
        pts = np.array(z.polygon, dtype=np.int32)
        cv2.polylines(frame, [pts], True, ZONE_COLOUR, 2, cv2.LINE_AA)
    for line in camera.lines.values():
        (x1, y1), (x2, y2) = line.points
        cv2.line(frame, (round(x1), round(y1)), (round(x2), round(y2)), LINE_COLOUR, 3, cv2.LINE_AA)
        mx, my = (x1 + x2) / 2, (y1 + y2) / 2
        # The arrow points across the line, towards the in side.
        nx, ny = -(y2 - y1), x2 - x1
        norm = math.hypot(nx, ny) or 1.0
        nx, ny = nx / norm, ny / norm
        if (line.in_side[0] - mx) * nx + (line.in_side[1] - my) * ny < 0:
            nx, ny = -nx, -ny
        size = max(25.0, min(60.0, math.hypot(x2 - x1, y2 - y1) / 5))
        cv2.arrowedLine(
            frame,
            (round(mx - nx * size / 2), round(my - ny * size / 2)),
            (round(mx + nx * size / 2), round(my + ny * size / 2)),
            LINE_COLOUR,
            2,
            cv2.LINE_AA,
            tipLength=0.35,
        )
    for label in labels(frame.shape, camera, counts):
        _draw_label(frame, label)
    return frame
