"""Counting lines and zones drawn on the annotated video: each line with an arrow towards its
in side and today's in/out, each zone shaded with the people in it now."""

from __future__ import annotations

import math

import cv2
import numpy as np

from rva.config import CameraSection

LINE_COLOUR = (0, 215, 255)  # amber, BGR
ZONE_COLOUR = (255, 160, 60)  # blue


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
