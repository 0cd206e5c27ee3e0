"""Raspberry Pi camera modules (and any camera libcamera drives) through picamera2, which is
imported only here and only when asked for (importing it starts libcamera)."""

from __future__ import annotations

import contextlib
import importlib.util
import os

import cv2
import numpy as np

from rva.camera.base import Camera, SourceError, SourceUnusable

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
