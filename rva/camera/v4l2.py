"""What the kernel says about /dev/video* nodes (VIDIOC_QUERYCAP), without opening a stream."""

from __future__ import annotations

import errno
import fcntl
import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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
