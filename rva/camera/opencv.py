"""Sources read through cv2.VideoCapture (V4L2 devices, network streams, video files) and still
images. GStreamer pipelines go through PyGObject instead (rva.camera.gstreamer)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from rva.camera.base import (
    STREAM_OPEN_TIMEOUT_MS,
    STREAM_READ_TIMEOUT_MS,
    Camera,
    SourceError,
)
from rva.redact import secrets


class OpenCVCamera(Camera):
    """V4L2 devices, network streams and video files through cv2.VideoCapture."""

    def __init__(
        self,
        target: str | int,
        width: int,
        height: int,
        fps: float,
        *,
        kind: str,
        resize: bool = False,
    ) -> None:
        super().__init__(width, height, fps, resize=resize or kind == "v4l2")
        self.target, self.kind = target, kind
        # Shown in logs, the status line and /healthz: never a URL's password.
        shown = secrets(str(target))
        self.description = f"{kind} {shown}"
        self.capture: cv2.VideoCapture | None = None
        self.file_fps = 0.0

    def open(self) -> None:
        if self.kind == "file" and not Path(str(self.target)).is_file():
            raise SourceError(f"video file not found: {self.target}")
        api = cv2.CAP_V4L2 if self.kind == "v4l2" else cv2.CAP_ANY
        if self.kind == "stream":
            timeouts = [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                STREAM_OPEN_TIMEOUT_MS,
                cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                STREAM_READ_TIMEOUT_MS,
            ]
            cap = cv2.VideoCapture(self.target, api, timeouts)
        else:
            cap = cv2.VideoCapture(self.target, api)
        if not cap.isOpened():
            raise SourceError(f"cannot open {self.description}")
        if self.kind == "v4l2":
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            cap.set(cv2.CAP_PROP_FPS, self.fps)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # newest frame, not a queue of stale ones
        self.file_fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
        self.capture = cap

    def read(self) -> np.ndarray:
        if self.capture is None:
            raise SourceError(f"{self.description} is not open")
        ok, frame = self.capture.read()
        if not ok and self.kind == "file":  # end of file: loop
            self.capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self.capture.read()
        if not ok or frame is None:
            raise SourceError(f"{self.description} delivered no frame")
        return self._sized(frame)

    def close(self) -> None:
        if self.capture is not None:
            self.capture.release()
            self.capture = None

    @property
    def paced(self) -> bool:
        return self.kind != "file"

    @property
    def native_fps(self) -> float:
        return self.file_fps


class StillImage(Camera):
    """One image, delivered again and again (tests, demos, a fixed scene)."""

    def __init__(self, path: str, width: int, height: int, fps: float, *, resize: bool = False):
        super().__init__(width, height, fps, resize=resize)
        self.path, self.description = path, f"image {path}"
        self.frame: np.ndarray | None = None

    def open(self) -> None:
        frame = cv2.imread(self.path, cv2.IMREAD_COLOR)
        if frame is None:
            raise SourceError(f"cannot read image {self.path}")
        self.frame = self._sized(frame)
        # The same frame every time, read-only: no 1 MB copy per frame (a still scene should
        # cost next to nothing), and a caller that tried to draw on it would fail loudly.
        self.frame.setflags(write=False)

    def read(self) -> np.ndarray:
        if self.frame is None:
            raise SourceError(f"{self.description} is not open")
        return self.frame

    @property
    def paced(self) -> bool:
        return False
