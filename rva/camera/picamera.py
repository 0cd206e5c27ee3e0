"""Raspberry Pi camera modules (and any camera libcamera drives) through picamera2, which is
imported only here and only when asked for (importing it starts libcamera)."""

from __future__ import annotations

import concurrent.futures
import glob
import importlib.util
import logging
import os

import cv2
import numpy as np

from rva.camera.base import Camera, SourceError, SourceUnusable

log = logging.getLogger(__name__)

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


# The DMA heaps picamera2's default allocator (DmaAllocator) opens, in its order
# (tests/data/raspberrypi_facts.toml, "picamera2-dma-heaps").
PICAMERA2_DMA_HEAPS = ("/dev/dma_heap/vidbuf_cached", "/dev/dma_heap/linux,cma")
# How long one frame may take before the camera counts as stalled: picamera2's
# capture_array() waits forever unless given wait= (a stalled camera would otherwise only be
# noticed by the service watchdog). A frame comes every 1/fps s; at 1 fps and below, longer.
CAPTURE_TIMEOUT_S = 5.0
# The autofocus mode the camera is put in when it has one (libcamera's AfModeEnum.Continuous):
# Camera Module 3 starts in manual focus at a fixed lens position otherwise.
AF_MODE_CONTINUOUS = 2
DMA_HEAP_DENIED = (
    "camera found but cannot open its buffers (permissions of /dev/dma_heap: {heaps}); "
    "RVA installs /usr/lib/udev/rules.d/60-rva-dma-heap.rules giving them to group video, "
    "which rva-capture runs in: re-run the playbook or `udevadm trigger -s dma_heap`, "
    "and see `rva doctor`"
)


def dma_heaps(paths: tuple[str, ...] | None = None) -> tuple[list[str], list[str]]:
    """The DMA heaps that exist, and those of them this process may not open read-write."""
    present = [h for h in (PICAMERA2_DMA_HEAPS if paths is None else paths) if os.path.exists(h)]
    return present, [h for h in present if not os.access(h, os.R_OK | os.W_OK)]


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
        heaps, denied = dma_heaps(PICAMERA2_DMA_HEAPS)
        if heaps and len(denied) == len(heaps):
            # Checked before Picamera2() acquires the camera: a failed start after acquiring
            # it left it "busy" for every later try of this process.
            raise SourceError(
                f"{self.description}: " + DMA_HEAP_DENIED.format(heaps=", ".join(denied))
            )
        try:
            picam = Picamera2(self.index)
            if not heaps:
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
            if "AfMode" in picam.camera_controls:  # Camera Module 3: keep people in focus
                picam.set_controls({"AfMode": AF_MODE_CONTINUOUS})
        except (RuntimeError, IndexError, OSError, SourceUnusable) as exc:
            if picam is not None:  # release the camera, or the next open finds it busy
                _release(picam)
            if isinstance(exc, SourceUnusable):
                raise
            if isinstance(exc, PermissionError) and heaps:
                raise SourceError(
                    f"{self.description}: " + DMA_HEAP_DENIED.format(heaps=", ".join(heaps))
                ) from exc
            raise SourceError(f"cannot open {self.description}: {exc}") from exc
        self.picam = picam

    def read(self) -> np.ndarray:
        if self.picam is None:
            raise SourceError(f"{self.description} is not open")
        wait = max(CAPTURE_TIMEOUT_S, 3.0 / self.fps) if self.fps > 0 else CAPTURE_TIMEOUT_S
        try:
            frame = self.picam.capture_array("main", wait=wait)
        except (TimeoutError, concurrent.futures.TimeoutError) as exc:  # one class from 3.11 on
            raise SourceError(f"{self.description} delivered no frame in {wait:.0f} s") from exc
        except RuntimeError as exc:
            raise SourceError(f"{self.description} failed: {exc}") from exc
        if self.to_bgr is None:
            return frame
        width, height = self.size  # YUV rows may be padded to the stride: crop
        return cv2.cvtColor(frame, self.to_bgr)[:height, :width]

    def close(self) -> None:
        if self.picam is not None:
            picam, self.picam = self.picam, None
            _release(picam)


def _release(picam: object) -> None:
    """Stop and close a Picamera2, closing it even when stopping fails: a camera left open is
    "busy" for every later open, in this process and others."""
    try:
        picam.stop()  # type: ignore[attr-defined]
    except Exception as exc:  # a camera that failed mid-stream may refuse to stop
        log.warning("stopping the camera failed: %s", exc)
    finally:
        try:
            picam.close()  # type: ignore[attr-defined]
        except Exception as exc:
            log.warning("closing the camera failed: %s", exc)


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
    if not infos:
        # On a Pi 4, libcamera's vc4 pipeline lists no camera when it cannot allocate from
        # the DMA heaps: say so instead of a bare "no camera found".
        _, denied = dma_heaps(tuple(sorted(glob.glob("/dev/dma_heap/*"))))
        if denied:
            return [], "libcamera lists no camera; " + DMA_HEAP_DENIED.format(
                heaps=", ".join(denied)
            )
    # picamera2 numbers cameras in this list's order (USB ones last); USB cameras are read
    # through V4L2 instead.
    return [
        (n, str(info.get("Model") or "camera"))
        for n, info in enumerate(infos)
        if "/usb" not in str(info.get("Id", ""))
    ], None
