"""Annotated MJPEG frames, made once per result and fanned out to every viewer of a camera.

A camera's feed thread runs only while somebody watches: the first viewer starts it, and it
stops reading Redis a few seconds after the last one leaves. Boxes are drawn on the very frame
they were computed from (the result's ``ref``), never on a newer one.
"""

from __future__ import annotations

import json
import logging
import threading
import time

import cv2
import numpy as np
import redis

from rva import images, keys, overlay
from rva.config import CameraSection
from rva.connection import TRANSIENT, Backoff
from rva.health import server_ms
from rva.overlay import annotate, pixelate
from rva.ratelog import RateLimitedLog

log = logging.getLogger(__name__)

IDLE_STOP_S = 5.0  # keep reading this long after the last viewer left
RAW_AFTER_S = 2.0  # no result this long: show raw frames, marked, so the view stays live
IDLE_AFTER_S = 30.0  # no result this long: the raw frames say the detector is idle


class Feed:
    """The newest annotated JPEG of one camera, with a condition viewers wait on."""

    def __init__(
        self,
        client: redis.Redis,
        camera: str,
        quality: int,
        max_fps: float,
        shapes: CameraSection | None = None,
        privacy: str = "annotated",
    ) -> None:
        self.client, self.camera = client, camera
        # "blurred": people pixelated before any frame is encoded (pixelate()).
        self.blurred = privacy == "blurred"
        # The camera's counting lines and zones, drawn on every frame with their counts.
        self.shapes = shapes if shapes and (shapes.lines or shapes.zones) else None
        self.quality, self.min_period = quality, 1.0 / max_fps
        self.cond = threading.Condition()
        self.jpeg: bytes | None = None
        self.seq = 0
        self.viewers = 0
        self.last_viewer = time.monotonic()
        self.thread: threading.Thread | None = None
        self.encoded = 0  # frames encoded, for tests and /metrics
        self.rejected: dict[str, int] = {}  # frames not shown, by kind (oversized, ...), /metrics
        self.warn = RateLimitedLog(log)
        # The newest raw frame, decoded once: redrawn while no newer one comes, and one that
        # would not decode is neither fetched nor decoded again.
        self.raw_id: bytes | None = None
        self.raw_frame: np.ndarray | None = None
        # The result the picture's label counts (id, people): the page's count reads it, so
        # the number beside the video is the one on it.
        self.shown: tuple[str, int] | None = None

    # -- viewers ------------------------------------------------------------------------
    def join(self) -> None:
        with self.cond:
            self.viewers += 1
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self._run, name=f"feed-{self.camera}", daemon=True
                )
                self.thread.start()

    def leave(self) -> None:
        with self.cond:
            self.viewers -= 1
            self.last_viewer = time.monotonic()

    def wait_next(self, after: int, timeout: float = 5.0) -> tuple[int, bytes | None]:
        with self.cond:
            self.cond.wait_for(lambda: self.seq != after, timeout=timeout)
            return self.seq, self.jpeg

    def _idle(self) -> bool:
        """True (and the thread slot freed, atomically with the check) when nobody watches."""
        with self.cond:
            if self.viewers <= 0 and time.monotonic() - self.last_viewer > IDLE_STOP_S:
                self.thread = None
                self.jpeg = None  # stale by the time anybody comes back: they wait for a fresh one
                self.raw_id, self.raw_frame = None, None
                return True
            return False

    # -- the feed thread ----------------------------------------------------------------
    def _scene(self, frame: np.ndarray) -> None:
        """The lines and zones with their counts (annotate() draws them under the people count)."""
        if self.shapes is not None:
            raw = self.client.hgetall(keys.counts(self.camera))
            overlay.draw(frame, self.shapes, {k.decode(): v.decode() for k, v in raw.items()})

    def _publish(self, frame: np.ndarray) -> None:
        ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            return
        with self.cond:
            self.jpeg = jpeg.tobytes()
            self.seq += 1
            self.encoded += 1
            self.cond.notify_all()

    def _frame(self, entry_id: bytes | str) -> np.ndarray | None:
        found = self.client.xrange(keys.frames(self.camera), entry_id, entry_id, count=1)
        if not found or b"image" not in found[0][1]:
            return None  # trimmed already
        return self._decode(found[0][0], found[0][1][b"image"])

    def _decode(self, entry_id: bytes, data: bytes) -> np.ndarray | None:
        """The frame, or None (counted, and said at most once a minute per kind) when its
        header says it cannot be one worth decoding: empty, oversized, unsupported, corrupt."""
        try:
            return images.decode(data)
        except images.ImageRejected as exc:
            with self.cond:
                self.rejected[exc.kind] = self.rejected.get(exc.kind, 0) + 1
            self.warn.warning(
                exc.kind, "feed %s: frame %s not shown: %s", self.camera, entry_id.decode(), exc
            )
            return None

    def _latest_raw(self) -> np.ndarray | None:
        newer = self.client.xrevrange(
            keys.frames(self.camera),
            "+",
            b"(" + self.raw_id if self.raw_id else "-",
            count=1,
        )
        if newer:
            entry_id, fields = newer[0]
            image = fields.get(b"image")
            self.raw_id = entry_id
            self.raw_frame = None if image is None else self._decode(entry_id, image)
        return None if self.raw_frame is None else self.raw_frame.copy()

    def _raw_annotated(self, frame: np.ndarray, people: int | None, result_at: float) -> np.ndarray:
        """A frame newer than the last result: no boxes, and the count said to be old. A slow
        detector (seconds per frame) is not called idle."""
        age = time.monotonic() - result_at
        if people is None or age > IDLE_AFTER_S:
            return annotate(frame, [], None, "detector idle", scene=self._scene)
        return annotate(frame, [], people, f"counted {age:.0f} s ago", scene=self._scene)

    def _run(self) -> None:
        results = keys.results(self.camera)
        # Read on from the newest result there is, by id. Not "$": that means "whatever is
        # newest when XREAD is called", so results written while this thread draws a raw
        # frame (most of the time, on a slow CPU) would never be seen.
        last_id: bytes | str | None = None
        last_result = time.monotonic()
        last_people: int | None = None
        backoff = Backoff()
        log.info("feed %s: started", self.camera)
        while not self._idle():
            started = time.monotonic()
            try:
                if last_id is None:
                    newest = self.client.xrevrange(results, count=1)
                    last_id = newest[0][0] if newest else "0-0"
                    if newest:  # the label counts from it, with its age, until a newer one
                        last_people = int(newest[0][1].get(b"people", 0))
                        age_ms = server_ms(self.client) - keys.id_ms(newest[0][0])
                        last_result = time.monotonic() - max(0, age_ms) / 1000
                        self.shown = (newest[0][0].decode(), last_people)
                idle = time.monotonic() - last_result > RAW_AFTER_S
                # Idle detector: wake at the frame rate to show raw frames, not twice a second.
                wait_ms = int(self.min_period * 1000) if idle else 500
                reply = self.client.xread({results: last_id}, count=16, block=max(wait_ms, 1))
                if reply:
                    entries = reply[0][1]
                    last_id = entries[-1][0]
                    for _id, fields in reversed(entries):  # newest that can still be drawn
                        frame = self._frame(fields.get(b"ref", b"0-0"))
                        if frame is None:
                            continue
                        boxes = json.loads(fields.get(b"boxes", b"[]"))
                        last_people = int(fields.get(b"people", 0))
                        objects = json.loads(fields.get(b"objects", b"{}"))
                        if self.blurred:
                            pixelate(frame, boxes)
                        self._publish(
                            annotate(frame, boxes, last_people, objects=objects, scene=self._scene)
                        )
                        self.shown = (_id.decode(), last_people)
                        last_result = time.monotonic()
                        break
                elif idle:
                    frame = self._latest_raw()
                    if frame is not None:
                        if self.blurred:  # no boxes for this frame: nobody may be shown
                            pixelate(frame, None)
                        self._publish(self._raw_annotated(frame, last_people, last_result))
                backoff.reset()
            except TRANSIENT as exc:
                backoff.wait(f"feed {self.camera}: Redis unreachable ({exc})")
                continue
            except (redis.ResponseError, ValueError, TypeError, cv2.error) as exc:
                # A malformed result (e.g. boxes that are not integers) is skipped, never
                # allowed to end the thread: that would freeze every viewer's picture.
                self.warn.warning(type(exc).__name__, "feed %s: %s", self.camera, exc)
                time.sleep(0.5)
            spare = self.min_period - (time.monotonic() - started)
            if spare > 0:
                time.sleep(spare)
        log.info("feed %s: no viewers, stopped reading", self.camera)
