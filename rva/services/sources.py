"""Frame sources behind one Camera interface.

The hardware choice is made once, from the source string, so the capture loop never branches:
``picamera[:N]`` (libcamera through picamera2, imported only here and only when asked for),
``/dev/videoN`` or ``N`` (V4L2 through OpenCV), ``jetson-csi[:N]`` or ``gst:<pipeline>``
(GStreamer, e.g. nvarguscamerasrc on a Jetson: needs an OpenCV built with GStreamer, such as
JetPack's), ``rtsp://``/``http(s)://`` URLs, a video file (looped), or a still image.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
# Network streams (RTSP/HTTP): how long opening and each read may take before the source counts
# as lost and is reopened with backoff. FFmpeg's own limit is 30 s, as long as the services'
# watchdog: a camera that accepts the connection but sends nothing would get the service
# restarted (and with it every other camera of the process) instead of being retried.
STREAM_OPEN_TIMEOUT_MS = 10_000
STREAM_READ_TIMEOUT_MS = 8_000


class SourceError(Exception):
    """The source cannot be opened or has stopped delivering frames."""


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
        self.description = "GStreamer pipeline" if kind == "gstreamer" else f"{kind} {target}"
        self.capture: cv2.VideoCapture | None = None
        self.file_fps = 0.0

    def open(self) -> None:
        if self.kind == "file" and not Path(str(self.target)).is_file():
            raise SourceError(f"video file not found: {self.target}")
        api = {"v4l2": cv2.CAP_V4L2, "gstreamer": cv2.CAP_GSTREAMER}.get(self.kind, cv2.CAP_ANY)
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

    def read(self) -> np.ndarray:
        if self.frame is None:
            raise SourceError(f"{self.description} is not open")
        return self.frame.copy()

    @property
    def paced(self) -> bool:
        return False


class PiCamera(Camera):
    """Raspberry Pi camera modules through libcamera (picamera2). Untested here: no Pi camera."""

    def __init__(self, index: int, width: int, height: int, fps: float) -> None:
        super().__init__(width, height, fps)
        self.index, self.description = index, f"Pi camera {index}"
        self.picam = None

    def open(self) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError as exc:
            raise SourceError(
                "source picamera needs picamera2 (Raspberry Pi OS: apt install python3-picamera2)"
            ) from exc
        try:
            picam = Picamera2(self.index)
            config = picam.create_video_configuration(
                main={"size": (self.width, self.height), "format": "RGB888"},
                controls={"FrameRate": self.fps},
                buffer_count=4,
            )
            picam.configure(config)
            picam.start()
        except (RuntimeError, IndexError, OSError) as exc:
            raise SourceError(f"cannot open {self.description}: {exc}") from exc
        self.picam = picam

    def read(self) -> np.ndarray:
        if self.picam is None:
            raise SourceError(f"{self.description} is not open")
        try:
            # libcamera's "RGB888" is B,G,R byte order in memory: already what OpenCV wants.
            return self.picam.capture_array("main")
        except RuntimeError as exc:
            raise SourceError(f"{self.description} failed: {exc}") from exc

    def close(self) -> None:
        if self.picam is not None:
            try:
                self.picam.stop()
                self.picam.close()
            finally:
                self.picam = None


def jetson_csi_pipeline(sensor: int, width: int, height: int, fps: float) -> str:
    """A CSI camera on a Jetson through Argus, converted to BGR for OpenCV; newest frame only."""
    return (
        f"nvarguscamerasrc sensor-id={sensor} ! "
        f"video/x-raw(memory:NVMM),width={width},height={height},framerate={round(fps)}/1 ! "
        "nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! "
        "appsink drop=true max-buffers=1"
    )


def open_source(
    source: str, width: int, height: int, fps: float, *, resize: bool = False
) -> Camera:
    """Build (not yet open) the Camera a source string names."""
    if m := re.fullmatch(r"picamera(?::(\d+))?", source):
        return PiCamera(int(m.group(1) or 0), width, height, fps)
    if m := re.fullmatch(r"jetson-csi(?::(\d+))?", source):
        pipeline = jetson_csi_pipeline(int(m.group(1) or 0), width, height, fps)
        return OpenCVCamera(pipeline, width, height, fps, kind="gstreamer")
    if source.startswith("gst:"):
        return OpenCVCamera(source[4:].strip(), width, height, fps, kind="gstreamer", resize=resize)
    if re.fullmatch(r"\d+", source):
        return OpenCVCamera(int(source), width, height, fps, kind="v4l2")
    if source.startswith("/dev/video"):
        return OpenCVCamera(source, width, height, fps, kind="v4l2")
    if re.match(r"^(rtsp|rtsps|http|https)://", source):
        return OpenCVCamera(source, width, height, fps, kind="stream", resize=resize)
    if Path(source).suffix.lower() in IMAGE_SUFFIXES:
        return StillImage(source, width, height, fps, resize=resize)
    return OpenCVCamera(source, width, height, fps, kind="file", resize=resize)


class Pacer:
    """Sleeps so that frames leave no faster than ``fps`` (0 = as fast as possible): for sources
    that deliver as fast as they are read (video files, still images)."""

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / fps if fps > 0 else 0.0
        self.next = time.monotonic()

    def wait(
        self, tick: Callable[[], None] | None = None, stop: threading.Event | None = None
    ) -> None:
        """Sleep until the next frame is due, calling tick() (the watchdog) at least every
        second and returning early when ``stop`` is set: a period may be minutes long."""
        if not self.period:
            return
        self.next += self.period
        delay = self.next - time.monotonic()
        if delay < -1.0:  # fell far behind (paused, slow disk): don't burst to catch up
            self.next = time.monotonic()
        while (delay := self.next - time.monotonic()) > 0:
            if tick:
                tick()
            if stop is not None:
                if stop.wait(min(delay, 1.0)):
                    return
            else:
                time.sleep(min(delay, 1.0))


class Throttle:
    """Lets at most ``fps`` frames a second through (0 = all): for live sources, which deliver
    at their own rate (an RTSP camera at 25 fps). Every frame is still read, so none queue up in
    the camera or the network; the surplus is dropped before it costs a JPEG encode and a write."""

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / fps if fps > 0 else 0.0
        self.next = 0.0

    def admit(self, now: float | None = None) -> bool:
        if not self.period:
            return True
        now = time.monotonic() if now is None else now
        if now < self.next:
            return False
        # One period on from the slot just taken (so the average rate is exact), or from now
        # when the source fell more than a period behind (no burst to catch up).
        late = now - self.next
        self.next = (self.next if late < self.period else now) + self.period
        return True
