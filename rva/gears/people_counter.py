"""The people counter: JPEG frame → person detector → boxes and a count.

Writes, per processed frame, ``camera:<id>:yolo`` {ref, boxes, people} (person boxes in the
original frame's pixels, the seed's flat "[x1, y1, x2, y2, ...]" format; ``objects``, {class:
flat boxes}, when a line or zone of the camera counts other classes) and the samples behind
``camera:<id>:people``, ``camera:<id>:motion`` and the ``prf_*`` stage timings.

With ``gear.motion_gate = "gear"`` the motion gate (rva.motion) runs here, on the decoded
frame: a still frame gets no detector pass and no result. With "capture" (the default) capture
has gated already and says how much moved in the entry's ``motion`` field.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable

import numpy as np

from rva import images, keys
from rva.gears.base import Entry, Gear, GearError, Registration, Result
from rva.models.detector import Detector
from rva.models.store import ModelBundle
from rva.motion import MotionGate

log = logging.getLogger(__name__)


def decode_frame(entry: Entry) -> np.ndarray:
    """The entry's frame; GearError (skipped and counted) for a missing, empty, oversized (by
    its header, before decoding), unsupported or corrupt image."""
    image = entry.fields.get(b"image")
    if image is None:
        raise GearError("bad_entry", f"entry {entry.id} has no image field")
    try:
        return images.decode(image, fast=True)  # for the detector: docs/performance.md, "Measured"
    except images.ImageRejected as exc:
        raise GearError(exc.kind, f"entry {entry.id}: {exc}") from None


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
        if settings.backend == "auto":
            log.info("gear %s: backend auto = %s", registration.id, self.detector.backend_name)
        if settings.precision == "int8":
            log.info("gear %s: int8 copy of %s checked and loaded", registration.id, settings.model)
        self.gate = MotionGate.from_settings(settings) if settings.motion_gate == "gear" else None

    @property
    def backend_name(self) -> str | None:
        return self.detector.backend_name

    def want_classes(self, names: set[str]) -> None:
        if set(self.detector.wanted.values()) != names | {"person"}:
            log.info(
                "gear %s: detecting %s", self.registration.id, ", ".join(sorted(names | {"person"}))
            )
            self.detector.want(names)

    def handle(self, entry: Entry, release: Callable[[], None] = lambda: None) -> Result | None:
        t0 = time.perf_counter()
        frame = decode_frame(entry)
        decode_ms = (time.perf_counter() - t0) * 1e3
        samples: dict[str, float] = {}
        if self.gate is not None:
            decision = self.gate.admit(frame, now=entry.timestamp_ms / 1000)
            if not decision.run:
                return None
            samples["motion"] = decision.motion
        elif (motion := entry.fields.get(b"motion")) is not None:
            with contextlib.suppress(ValueError):  # a malformed hint costs the sample only
                samples["motion"] = float(motion)
        found = self.detector.detect(frame, after_forward=release)
        fields: dict[str, str | int] = {
            "ref": entry.id,
            "boxes": json.dumps(found.flat_boxes()),
            "people": found.people,
        }
        if objects := found.objects():  # other classes a line or zone counts
            fields["objects"] = json.dumps(objects)
        return Result(
            fields=fields,
            samples={"people": found.people, **samples},
            timings_ms={"decode": decode_ms, **found.timings_ms},
        )
