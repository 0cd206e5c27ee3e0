"""Which Camera a source string names, and ``auto``: the camera that is there."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rva.camera import v4l2
from rva.camera.base import IMAGE_SUFFIXES, Camera, NoCameraFound, SourceError
from rva.camera.gstreamer import GstCamera, jetson_csi_pipeline
from rva.camera.opencv import OpenCVCamera, StillImage
from rva.camera.picamera import PiCamera, csi_cameras


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
        for d in v4l2.v4l2_cameras(dev, problems=notes)
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
        from rva.config import config_path

        extra = f" ({'; '.join(notes)})" if notes else ""
        raise NoCameraFound(
            f"no camera found: plug one in or set [cameras.{self.camera_id}] source in "
            f"{config_path()}{extra}"
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
        sensor = int(m.group(1) or 0)
        pipeline = jetson_csi_pipeline(sensor, width, height, fps)
        return GstCamera(pipeline, width, height, fps, description=f"Jetson CSI camera {sensor}")
    if source.startswith("gst:"):
        return GstCamera(source[4:].strip(), width, height, fps, resize=resize)
    if re.fullmatch(r"\d+", source):
        return OpenCVCamera(int(source), width, height, fps, kind="v4l2")
    if source.startswith("/dev/video"):
        return OpenCVCamera(source, width, height, fps, kind="v4l2")
    if re.match(r"^(rtsp|rtsps|http|https)://", source):
        return OpenCVCamera(source, width, height, fps, kind="stream", resize=resize)
    if Path(source).suffix.lower() in IMAGE_SUFFIXES:
        return StillImage(source, width, height, fps, resize=resize)
    return OpenCVCamera(source, width, height, fps, kind="file", resize=resize)
