"""Frame sources behind one Camera interface.

The hardware choice is made once, from the source string, so the capture loop never branches:
``auto`` (a CSI camera libcamera sees, else the first V4L2 capture device, looked for again at
every open), ``picamera[:N]`` (libcamera through picamera2, imported only here and only when
asked for),
``/dev/videoN`` or ``N`` (V4L2 through OpenCV), ``jetson-csi[:N]`` or ``gst:<pipeline>``
(GStreamer, e.g. nvarguscamerasrc on a Jetson: needs an OpenCV built with GStreamer, such as
JetPack's), ``rtsp://``/``http(s)://`` URLs, a video file (looped), or a still image.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import importlib.util
import logging
import os
import re
import struct
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
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


class SourceUnusable(SourceError):
    """The source can never work on this system as configured (a library is missing): trying
    again will not help, so capture says so and waits for a new configuration instead."""


class NoCameraFound(SourceError):
    """``auto`` found no camera (yet); it looks again at the next open."""


PICAMERA_INSTALL = (
    "Raspberry Pi OS or an RVA image built with the Raspberry Pi archive: "
    "apt install python3-picamera2, and a venv that sees the system's packages "
    '(include-system-site-packages = true); or use source = "auto" or a /dev/videoN'
)


def picamera_missing() -> list[str]:
    """The modules ``picamera`` needs that this Python cannot import. Cheap: looks them up
    without importing them (importing picamera2 starts libcamera)."""
    return [m for m in ("picamera2", "libcamera") if importlib.util.find_spec(m) is None]


def picamera_problem() -> str | None:
    """Why ``source = "picamera"`` cannot work here, for a person; None when it may."""
    missing = picamera_missing()
    if not missing:
        return None
    return (
        f"source picamera needs {' and '.join(missing)}, which this Python cannot import: "
        f"{PICAMERA_INSTALL}"
    )


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


# The DMA heaps picamera2's default allocator (DmaAllocator) opens, in its order.
PICAMERA2_DMA_HEAPS = ("/dev/dma_heap/vidbuf_cached", "/dev/dma_heap/linux,cma")


# What makes OpenCV's BGR of picamera2's capture_array("main"), by the stream's format
# (libcamera's names). "RGB888" is B,G,R bytes in memory, as OpenCV wants: what RVA asks for and
# a Pi's ISP delivers. Other libcamera cameras may answer with another format (libcamera adjusts
# the configuration to what the camera can do: NV12 from the virtual camera, YUYV from a webcam).
PICAMERA2_TO_BGR: dict[str, int | None] = {
    "RGB888": None,
    "BGR888": cv2.COLOR_RGB2BGR,
    "XRGB8888": cv2.COLOR_BGRA2BGR,
    "XBGR8888": cv2.COLOR_RGBA2BGR,
    "YUV420": cv2.COLOR_YUV2BGR_I420,
    "YVU420": cv2.COLOR_YUV2BGR_YV12,
    "NV12": cv2.COLOR_YUV2BGR_NV12,
    "NV21": cv2.COLOR_YUV2BGR_NV21,
    "YUYV": cv2.COLOR_YUV2BGR_YUYV,
}


class PiCamera(Camera):
    """Raspberry Pi camera modules (and any camera libcamera drives) through picamera2."""

    def __init__(self, index: int, width: int, height: int, fps: float) -> None:
        super().__init__(width, height, fps)
        self.index, self.description = index, f"Pi camera {index}"
        self.picam = None
        self.to_bgr: int | None = None
        self.size = (width, height)

    def open(self) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError as exc:  # not installed, or installed but broken (ABI, libcamera)
            raise SourceUnusable(
                f"source picamera needs picamera2, which does not import ({exc}): "
                f"{PICAMERA_INSTALL}"
            ) from exc
        picam = None
        try:
            picam = Picamera2(self.index)
            if not any(os.path.exists(heap) for heap in PICAMERA2_DMA_HEAPS):
                # picamera2's default allocator takes frame buffers from a DMA heap, which a
                # Raspberry Pi kernel has and other kernels may not (Debian's: DMABUF_HEAPS is
                # off); libcamera's own allocator serves any camera libcamera drives.
                from picamera2.allocators import LibcameraAllocator

                picam.allocator = LibcameraAllocator(picam.camera)
            config = picam.create_video_configuration(
                main={"size": (self.width, self.height), "format": "RGB888"},
                controls={"FrameRate": self.fps},
                buffer_count=4,
            )
            picam.configure(config)
            main = picam.camera_configuration()["main"]
            fmt, self.size = str(main["format"]), tuple(main["size"])
            if fmt not in PICAMERA2_TO_BGR:
                raise SourceUnusable(f"{self.description} delivers {fmt}, which RVA cannot convert")
            self.to_bgr = PICAMERA2_TO_BGR[fmt]
            picam.start()
        except (RuntimeError, IndexError, OSError, SourceUnusable) as exc:
            if picam is not None:  # release the camera, or the next open finds it busy
                with contextlib.suppress(Exception):
                    picam.close()
            if isinstance(exc, SourceUnusable):
                raise
            raise SourceError(f"cannot open {self.description}: {exc}") from exc
        self.picam = picam

    def read(self) -> np.ndarray:
        if self.picam is None:
            raise SourceError(f"{self.description} is not open")
        try:
            frame = self.picam.capture_array("main")
        except RuntimeError as exc:
            raise SourceError(f"{self.description} failed: {exc}") from exc
        if self.to_bgr is None:
            return frame
        width, height = self.size  # YUV rows may be padded to the stride: crop
        return cv2.cvtColor(frame, self.to_bgr)[:height, :width]

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


# -- auto: which camera is there? --------------------------------------------------------------
# struct v4l2_capability (linux/videodev2.h): driver[16], card[32], bus_info[32], version,
# capabilities, device_caps, reserved[3] = 104 bytes; VIDIOC_QUERYCAP = _IOR('V', 0, that).
V4L2_CAPABILITY = struct.Struct("16s32s32sIII12x")
VIDIOC_QUERYCAP = (2 << 30) | (V4L2_CAPABILITY.size << 16) | (ord("V") << 8)
V4L2_CAP_VIDEO_CAPTURE = 0x00000001
V4L2_CAP_DEVICE_CAPS = 0x80000000
# Video nodes of a Raspberry Pi's own camera pipeline and codecs: the CSI receiver (raw Bayer
# straight from the sensor), the ISP and the encoders. They say "video capture" too, but only
# libcamera (which auto asks first) makes pictures out of them.
PI_PIPELINE_DRIVERS = frozenset(
    {"unicam", "rp1-cfe", "bcm2835-isp", "pispbe", "raspberrypi-pisp-be", "bcm2835-codec"}
)


@dataclass(frozen=True)
class VideoDevice:
    """What VIDIOC_QUERYCAP says about one /dev/video* node."""

    path: str
    driver: str
    card: str
    bus: str
    capture: bool  # single-planar video capture: what OpenCV's V4L2 backend reads

    @property
    def usable(self) -> bool:
        return self.capture and self.driver not in PI_PIPELINE_DRIVERS


def query_v4l2(path: str, problems: list[str] | None = None) -> VideoDevice | None:
    """VIDIOC_QUERYCAP on a device node; None when it is no V4L2 device or cannot be opened
    (why it could not be opened goes into ``problems``, unless the node is simply gone)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if problems is not None and exc.errno not in (errno.ENOENT, errno.ENODEV, errno.ENXIO):
            problems.append(f"{path}: {exc.strerror}")
        return None
    try:
        buf = bytearray(V4L2_CAPABILITY.size)
        fcntl.ioctl(fd, VIDIOC_QUERYCAP, buf)
    except OSError:
        return None  # ENOTTY: not a V4L2 device
    finally:
        os.close(fd)
    driver, card, bus, _version, caps, device_caps = V4L2_CAPABILITY.unpack(buf)
    if caps & V4L2_CAP_DEVICE_CAPS:  # the node's own capabilities, not the whole device's
        caps = device_caps

    def text(raw: bytes) -> str:
        return raw.split(b"\0", 1)[0].decode(errors="replace")

    return VideoDevice(
        path, text(driver), text(card), text(bus), bool(caps & V4L2_CAP_VIDEO_CAPTURE)
    )


def video_nodes(dev: str | Path = "/dev") -> list[str]:
    """/dev/video0, /dev/video1, ... in numeric order."""
    nodes = []
    for entry in Path(dev).glob("video*"):
        if m := re.fullmatch(r"video(\d+)", entry.name):
            nodes.append((int(m.group(1)), str(entry)))
    return [path for _, path in sorted(nodes)]


def v4l2_cameras(
    dev: str | Path = "/dev",
    query: Callable[[str, list[str]], VideoDevice | None] | None = None,
    problems: list[str] | None = None,
) -> list[VideoDevice]:
    """The V4L2 capture devices OpenCV can read, first node first; nodes that could not be
    asked (permission) are named in ``problems``."""
    problems = [] if problems is None else problems
    ask = query or query_v4l2  # looked up at call time
    found = (ask(path, problems) for path in video_nodes(dev))
    return [d for d in found if d is not None and d.usable]


def csi_cameras() -> tuple[list[tuple[int, str]], str | None]:
    """Cameras libcamera sees that are not on USB (CSI camera modules), as (N of picamera:N,
    model), and why none could be looked for (None when libcamera was asked)."""
    if missing := picamera_missing():
        return [], f"{' and '.join(missing)} not installed: CSI cameras not looked for"
    try:
        from picamera2 import Picamera2

        infos = Picamera2.global_camera_info()
    except Exception as exc:  # a broken install or libcamera failing: still try V4L2
        return [], f"libcamera failed: {exc}"
    # picamera2 numbers cameras in this list's order (USB ones last); USB cameras are read
    # through V4L2 instead.
    return [
        (n, str(info.get("Model") or "camera"))
        for n, info in enumerate(infos)
        if "/usb" not in str(info.get("Id", ""))
    ], None


@dataclass(frozen=True)
class Candidate:
    source: str  # a source string open_source() understands
    description: str  # for people: "Pi camera 0 (imx708)", "V4L2 /dev/video0 (UVC Camera)"


def find_cameras(dev: str | Path = "/dev") -> tuple[list[Candidate], list[str]]:
    """What ``auto`` may use, best first: CSI cameras through libcamera, then V4L2 capture
    devices. Also notes on what could not be looked at."""
    csi, why = csi_cameras()
    notes = [why] if why else []
    found = [Candidate(f"picamera:{n}", f"Pi camera {n} ({model})") for n, model in csi]
    found += [
        Candidate(d.path, f"V4L2 {d.path} ({d.card or d.driver})")
        for d in v4l2_cameras(dev, problems=notes)
    ]
    return found, notes


class AutoCamera(Camera):
    """``source = "auto"``: the first camera of find_cameras() that opens, looked for again at
    every open, so a camera plugged in later (or back in, at another node) is found."""

    def __init__(
        self,
        width: int,
        height: int,
        fps: float,
        *,
        camera_id: str = "0",
        resize: bool = False,
        find: Callable[[], tuple[list[Candidate], list[str]]] | None = None,
    ) -> None:
        super().__init__(width, height, fps, resize=resize)
        self.camera_id = camera_id
        self.find = find or (lambda: find_cameras())  # looked up at call time
        self.description = "auto: no camera yet"
        self.inner: Camera | None = None
        self.chosen: Candidate | None = None

    def open(self) -> None:
        self.close()
        candidates, notes = self.find()
        failed = []
        for candidate in candidates:
            camera = open_source(
                candidate.source, self.width, self.height, self.fps, resize=self.resize
            )
            try:
                camera.open()
            except SourceError as exc:
                failed.append(f"{candidate.description}: {exc}")
                continue
            self.inner, self.chosen = camera, candidate
            self.description = candidate.description
            return
        if failed:
            raise SourceError("auto: no camera opened: " + "; ".join(failed))
        extra = f" ({'; '.join(notes)})" if notes else ""
        raise NoCameraFound(
            f"no camera found: plug one in or set [cameras.{self.camera_id}] source{extra}"
        )

    def read(self) -> np.ndarray:
        if self.inner is None:
            raise SourceError("auto: no camera is open")
        return self.inner.read()

    def close(self) -> None:
        if self.inner is not None:
            try:
                self.inner.close()
            finally:
                self.inner = None

    @property
    def paced(self) -> bool:
        return self.inner.paced if self.inner else True

    @property
    def native_fps(self) -> float:
        return self.inner.native_fps if self.inner else 0.0

    @property
    def source(self) -> str:
        """The source string in use ("" before a camera was found)."""
        return self.chosen.source if self.chosen and self.inner else ""


def open_source(
    source: str,
    width: int,
    height: int,
    fps: float,
    *,
    resize: bool = False,
    camera_id: str = "0",
) -> Camera:
    """Build (not yet open) the Camera a source string names."""
    if source == "auto":
        return AutoCamera(width, height, fps, camera_id=camera_id, resize=resize)
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
