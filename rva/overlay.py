"""What is drawn on a frame before anyone sees it (the web's /video and the MQTT snapshot): the
people count and boxes, people pixelated for [web] video = "blurred", and the counting lines
and zones (each line with an arrow towards its in side and today's in/out, each zone shaded
with the people in it now)."""

from __future__ import annotations

import math

import cv2
import numpy as np

from rva.config import CameraSection

LINE_COLOUR = (0, 215, 255)  # amber, BGR
ZONE_COLOUR = (255, 160, 60)  # blue


def annotate(frame: np.ndarray, boxes: list[int], people: int | None, note: str = "") -> np.ndarray:
    for i in range(0, len(boxes) - 3, 4):
        x1, y1, x2, y2 = boxes[i : i + 4]
        cv2.rectangle(frame, (x1, y1), (x2, y2), (0, 255, 0), 2)
    label = f"people: {people}" if people is not None else "people: -"
    if note:
        label += f"  ({note})"
    scale = max(0.5, frame.shape[1] / 900)
    (w, h), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 2)
    cv2.rectangle(frame, (0, 0), (w + 16, h + base + 14), (0, 0, 0), -1)
    cv2.putText(
        frame, label, (8, h + 8), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 2, cv2.LINE_AA
    )
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


def _label(frame: np.ndarray, text: str, at: tuple[int, int], colour: tuple[int, int, int]) -> None:
    scale = max(0.45, frame.shape[1] / 1400)
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x = min(max(at[0], 0), max(frame.shape[1] - w - 6, 0))
    y = min(max(at[1], h + 6), frame.shape[0] - base - 2)
    cv2.rectangle(frame, (x, y - h - 4), (x + w + 6, y + base), (0, 0, 0), -1)
    cv2.putText(frame, text, (x + 3, y), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)


def draw(frame: np.ndarray, camera: CameraSection, counts: dict[str, str]) -> np.ndarray:
    """Draw the camera's zones and lines on the frame, labelled from the counts hash."""
    if camera.zones:
        shade = frame.copy()
        for z in camera.zones.values():
            cv2.fillPoly(shade, [np.array(z.polygon, dtype=np.int32)], ZONE_COLOUR)
        cv2.addWeighted(shade, 0.18, frame, 0.82, 0, dst=frame)
    for name, z in camera.zones.items():
        pts = np.array(z.polygon, dtype=np.int32)
        cv2.polylines(frame, [pts], True, ZONE_COLOUR, 2, cv2.LINE_AA)
        top = min(z.polygon, key=lambda p: p[1])
        _label(
            frame,
            f"{name}: {counts.get(f'zone:{name}', '-')}",
            (int(top[0]), int(top[1])),
            ZONE_COLOUR,
        )
    for name, line in camera.lines.items():
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
        today_in = counts.get(f"line:{name}:in:today", "-")
        today_out = counts.get(f"line:{name}:out:today", "-")
        _label(
            frame,
            f"{name}: in {today_in} / out {today_out}",
            (round(max(x1, x2) - 10), round(min(y1, y2) - 8)),
            LINE_COLOUR,
        )
    return frame
