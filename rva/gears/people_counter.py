"""The people counter: JPEG frame → person detector → boxes and a count.

Writes, per processed frame, ``camera:<id>:yolo`` {ref, boxes, people} (boxes in the original
frame's pixels, the seed's flat "[x1, y1, x2, y2, ...]" format) and the samples behind
``camera:<id>:people`` and the ``prf_*`` stage timings.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import cv2
import numpy as np

from rva import keys
from rva.gears.base import Entry, Gear, GearError, Registration, Result
from rva.models.detector import Detector
from rva.models.store import ModelBundle

MAX_JPEG_BYTES = 16 * 1024 * 1024
MAX_SIDE = 8192


def decode_frame(entry: Entry) -> np.ndarray:
    image = entry.fields.get(b"image")
    if image is None:
        raise GearError("bad_entry", f"entry {entry.id} has no image field")
    if len(image) > MAX_JPEG_BYTES:
        raise GearError("oversized", f"entry {entry.id}: image of {len(image)} bytes")
    frame = cv2.imdecode(np.frombuffer(image, dtype=np.uint8), cv2.IMREAD_COLOR)
    if frame is None:
        raise GearError("corrupt_frame", f"entry {entry.id}: image does not decode")
    if max(frame.shape[:2]) > MAX_SIDE:
        raise GearError("oversized", f"entry {entry.id}: {frame.shape[1]}x{frame.shape[0]} frame")
    return frame


class PeopleCounter(Gear):
    type_key = "people_counter"

    @classmethod
    def results_key(cls, camera: str) -> str:
        return keys.results(camera)  # the seed's camera:<id>:yolo, so its tools still work

    def __init__(
        self, registration: Registration, model_loader: Callable[[str], ModelBundle]
    ) -> None:
        super().__init__(registration, model_loader)
        settings = registration.settings
        self.detector = Detector.from_settings(model_loader(settings.model), settings)

    def handle(self, entry: Entry) -> Result:
        t0 = time.perf_counter()
        frame = decode_frame(entry)
        decode_ms = (time.perf_counter() - t0) * 1e3
        found = self.detector.detect(frame)
        return Result(
            fields={
                "ref": entry.id,
                "boxes": json.dumps(found.flat_boxes()),
                "people": found.people,
            },
            samples={"people": found.people},
            timings_ms={"decode": decode_ms, **found.timings_ms},
        )
