"""The Camera interface every source implements, and the errors a source raises."""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType

import cv2
import numpy as np

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
# Network streams (RTSP/HTTP): how long opening and each read may take before the source counts
# as lost and is reopened with backoff. FFmpeg's own limit is 30 s, as long as the services'
# watchdog: a camera that accepts the connection but sends nothing would get the service
# restarted (and with it every other camera of the process) instead of being retried.
STREAM_OPEN_TIMEOUT_MS = 10_000
STREAM_READ_TIMEOUT_MS = 8_000


class SourceError(Exception):
    """The source cannot be opened or has stopped delivering frames."""


class SourceUnusable(SourceError):
    """The source can never work on this system as configured (a library is missing): trying
    again will not help, so capture says so and waits for a new configuration instead."""


class NoCameraFound(SourceError):
    """``auto`` found no camera (yet); it looks again at the next open."""


class Camera(ABC):
    """open() → read() … → close(); also a context manager."""

    description = "camera"

    def __init__(self, width: int, height: int, fps: float, *, resize: bool = False) -> None:
        self.width, self.height, self.fps, self.resize = width, height, fps, resize

    @abstractmethod
    def open(self) -> None: ...

    @abstractmethod
    def read(self) -> np.ndarray:
        """The next BGR frame; raises SourceError when the source is gone."""

    def close(self) -> None:  # noqa: B027 - optional for sources that hold nothing
        pass

    @property
    def paced(self) -> bool:
        """True when read() already waits for the next frame (live cameras)."""
        return True

    @property
    def native_fps(self) -> float:
        """The rate the source was recorded at (video files), 0 when it has none."""
        return 0.0

    def _sized(self, frame: np.ndarray) -> np.ndarray:
        if self.resize and frame.shape[1::-1] != (self.width, self.height):
            return cv2.resize(frame, (self.width, self.height), interpolation=cv2.INTER_AREA)
        return frame

    def __enter__(self) -> Camera:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
