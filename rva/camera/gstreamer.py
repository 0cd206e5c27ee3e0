"""GStreamer pipelines read through PyGObject: ``gst:<pipeline>`` and ``jetson-csi[:N]``.

GStreamer and its Python bindings are the operating system's (python3-gi, gir1.2-gstreamer-1.0
and the plugin packages), seen by the venv through a link to the OS's ``gi`` package; OpenCV's
own build plays no part. Frames leave the pipeline through its appsink, which is set here to
hand over BGR (or BGRx/BGRA, cut to BGR) and to hold one buffer: a live pipeline (a camera)
drops the older frame for the newer one (``drop=true max-buffers=1``), a pipeline that is not
live (a file) waits for the reader, so every frame is read. A pipeline that fails or stops
delivering raises SourceError, and capture reopens it with backoff, as it does every source; one
that can never work here (no PyGObject, no such element, a syntax error) raises SourceUnusable.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from rva.camera.base import (
    STREAM_OPEN_TIMEOUT_MS,
    STREAM_READ_TIMEOUT_MS,
    Camera,
    SourceError,
    SourceUnusable,
)

# What the appsink accepts: the converter before it (videoconvert, nvvidconv) picks one.
APPSINK_CAPS = "video/x-raw,format={ BGR, BGRx, BGRA }"
CHANNELS = {"BGR": 3, "BGRx": 4, "BGRA": 4}
# Which package has an element, for the message when one is missing (Debian/Ubuntu names;
# nvarguscamerasrc and nvvidconv come with JetPack).
ELEMENT_PACKAGES = {
    "nvarguscamerasrc": "nvidia-l4t-gstreamer (JetPack)",
    "nvvidconv": "nvidia-l4t-gstreamer (JetPack)",
    "videotestsrc": "gstreamer1.0-plugins-base",
    "videoconvert": "gstreamer1.0-plugins-base",
    "decodebin": "gstreamer1.0-plugins-base",
    "appsink": "gstreamer1.0-plugins-base",
    "v4l2src": "gstreamer1.0-plugins-good",
    "rtspsrc": "gstreamer1.0-plugins-good",
    "avidemux": "gstreamer1.0-plugins-good",
    "jpegdec": "gstreamer1.0-plugins-good",
}
NS_PER_MS = 1_000_000

_gst: Any = None


class EndOfStream(SourceError):
    """The pipeline reached its end (a file played through)."""


def gst() -> Any:
    """The initialised Gst module, or SourceUnusable saying what to install."""
    global _gst
    if _gst is None:
        try:
            import gi

            gi.require_version("Gst", "1.0")
            from gi.repository import Gst
        except (ImportError, ValueError) as exc:
            raise SourceUnusable(
                f"GStreamer sources need PyGObject and GStreamer from the OS ({exc}): install "
                "python3-gi and gir1.2-gstreamer-1.0, and let the venv see the OS's gi package "
                "(docs/jetson.md)"
            ) from None
        Gst.init(None)
        _gst = Gst
    return _gst


def jetson_csi_pipeline(sensor: int, width: int, height: int, fps: float) -> str:
    """A CSI camera on a Jetson through Argus: nvvidconv copies the frame out of NVMM memory as
    BGRx, which read() cuts to BGR (no CPU colour conversion in the pipeline)."""
    return (
        f"nvarguscamerasrc sensor-id={sensor} ! "
        f"video/x-raw(memory:NVMM),width={width},height={height},framerate={round(fps)}/1 ! "
        "nvvidconv ! video/x-raw,format=BGRx ! appsink drop=true max-buffers=1"
    )


def pipeline_problem(description: str) -> str:
    """Why this pipeline cannot work here ("" when it can be built): GStreamer or PyGObject
    missing, an element that is not installed, a syntax error, no appsink. Builds the pipeline
    without starting it, so no device is opened."""
    try:
        pipeline = _parse(description)
    except SourceUnusable as exc:
        return str(exc)
    pipeline.set_state(gst().State.NULL)
    return ""


def _parse(description: str) -> Any:
    Gst = gst()
    from gi.repository import GLib

    try:
        pipeline = Gst.parse_launch_full(description, None, Gst.ParseFlags.FATAL_ERRORS)
    except GLib.Error as exc:
        if exc.code == Gst.ParseError.NO_SUCH_ELEMENT:
            m = re.search(r'"([^"]+)"', exc.message)
            name = m.group(1) if m else "?"
            package = ELEMENT_PACKAGES.get(name)
            where = f"it comes with {package}" if package else f"gst-inspect-1.0 {name}"
            raise SourceUnusable(f"no GStreamer element {name!r} here ({where})") from None
        raise SourceUnusable(f"GStreamer cannot build the pipeline: {exc.message}") from None
    if _appsink(pipeline) is None:
        raise SourceUnusable("a gst: pipeline must end in an appsink (… ! appsink)")
    return pipeline


def _appsink(pipeline: Any) -> Any:
    Gst = gst()
    if not isinstance(pipeline, Gst.Bin):
        return pipeline if _factory(pipeline) == "appsink" else None
    it = pipeline.iterate_recurse()
    while True:
        result, element = it.next()
        if result == Gst.IteratorResult.RESYNC:
            it.resync()
            continue
        if result != Gst.IteratorResult.OK:
            return None
        if _factory(element) == "appsink":
            return element


def _factory(element: Any) -> str:
    factory = element.get_factory()
    return factory.get_name() if factory else ""


class GstCamera(Camera):
    """Frames from a GStreamer pipeline that ends in an appsink."""

    def __init__(
        self,
        pipeline: str,
        width: int,
        height: int,
        fps: float,
        *,
        resize: bool = False,
        description: str = "GStreamer pipeline",
    ) -> None:
        super().__init__(width, height, fps, resize=resize)
        self.pipeline_text = pipeline
        self.description = description
        self.pipeline: Any = None
        self.sink: Any = None
        self.live = True
        self.caps_fps = 0.0  # the frame rate the last frame's caps said
        self.pts_ns = -1  # the last frame's presentation time in the pipeline (-1: none)
        self.error = ""  # the error the pipeline posted, told at the read that finds no frame

    def open(self) -> None:
        self.close()
        Gst = gst()
        pipeline = _parse(self.pipeline_text)
        sink = _appsink(pipeline)
        if sink.get_property("caps") is None:
            sink.set_property("caps", Gst.Caps.from_string(APPSINK_CAPS))
        sink.set_property("max-buffers", 1)
        sink.set_property("sync", False)  # as fast as the source gives (files) or the reader asks
        self.pipeline, self.sink = pipeline, sink
        try:
            state = pipeline.set_state(Gst.State.PAUSED)
            if state == Gst.StateChangeReturn.FAILURE:
                raise SourceError(f"cannot start {self.description}: {self._bus_error()}")
            self.live = state == Gst.StateChangeReturn.NO_PREROLL
            if not self.live:
                timeout = STREAM_OPEN_TIMEOUT_MS * NS_PER_MS
                state, _, _ = pipeline.get_state(timeout)
                if state == Gst.StateChangeReturn.FAILURE:
                    raise SourceError(f"cannot start {self.description}: {self._bus_error()}")
                if state == Gst.StateChangeReturn.ASYNC:
                    raise SourceError(
                        f"{self.description} did not start in {STREAM_OPEN_TIMEOUT_MS // 1000} s"
                    )
            # Live: the newest frame only. Not live (a file): every frame, at the reader's pace.
            sink.set_property("drop", self.live)
            if pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
                raise SourceError(f"cannot start {self.description}: {self._bus_error()}")
        except SourceError:
            self.close()
            raise

    def read(self) -> np.ndarray:
        if self.sink is None:
            raise SourceError(f"{self.description} is not open")
        sample = self.sink.emit("try-pull-sample", STREAM_READ_TIMEOUT_MS * NS_PER_MS)
        # Also empties the bus of every other message, which nobody reads: a pipeline running
        # for months must not pile them up.
        error = self.error or self._bus_error(wait=False)
        self.error = error
        if sample is None:
            if error:
                raise SourceError(f"{self.description} failed: {error}")
            if self.sink.get_property("eos"):
                raise EndOfStream(f"{self.description} ended (end of stream)")
            raise SourceError(
                f"{self.description} delivered no frame in {STREAM_READ_TIMEOUT_MS // 1000} s"
            )
        return self._sized(self._frame(sample))

    def _frame(self, sample: Any) -> np.ndarray:
        structure = sample.get_caps().get_structure(0)
        fmt = structure.get_value("format")
        width, height = structure.get_value("width"), structure.get_value("height")
        ok, num, den = structure.get_fraction("framerate")
        self.caps_fps = num / den if ok and den and num else 0.0
        channels = CHANNELS.get(fmt)
        if channels is None:
            raise SourceUnusable(f"{self.description} delivers {fmt}; end it in BGR or BGRx")
        buffer = sample.get_buffer()
        self.pts_ns = -1 if buffer.pts == gst().CLOCK_TIME_NONE else buffer.pts
        data = np.frombuffer(buffer.extract_dup(0, buffer.get_size()), dtype=np.uint8)
        stride = data.size // height  # rows may be padded (to 4 bytes for BGR)
        rows = data[: stride * height].reshape(height, stride)
        frame = rows[:, : width * channels].reshape(height, width, channels)
        if channels == 4:
            return np.ascontiguousarray(frame[:, :, :3])
        return frame

    def _bus_error(self, wait: bool = True) -> str:
        """The first error the pipeline posted ("" when none); the other messages before it
        are dropped."""
        if self.pipeline is None:
            return ""
        Gst = gst()
        bus = self.pipeline.get_bus()
        timeout = NS_PER_MS * 100 if wait else 0
        message = bus.timed_pop_filtered(timeout, Gst.MessageType.ERROR)
        if message is None:
            return "" if not wait else "no reason given"
        error, _debug = message.parse_error()
        return f"{error.message} ({message.src.get_name()})"

    def close(self) -> None:
        if self.pipeline is not None:
            self.pipeline.set_state(gst().State.NULL)
            self.pipeline = self.sink = None
        self.error = ""

    @property
    def paced(self) -> bool:
        return self.live

    @property
    def native_fps(self) -> float:
        return 0.0 if self.live else self.caps_fps
