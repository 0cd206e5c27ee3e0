"""Frame sources behind one Camera interface (a library: capture reads cameras through it,
`rva count` files, `rva config check` asks whether a source can work).

The hardware choice is made once, from the source string, so a reader never branches:
``auto`` (a CSI camera libcamera sees, else the first V4L2 capture device, looked for again at
every open), ``picamera[:N]`` (libcamera through picamera2, imported only when asked for),
``/dev/videoN`` or ``N`` (V4L2 through OpenCV), ``jetson-csi[:N]`` or ``gst:<pipeline>``
(GStreamer through the OS's PyGObject, e.g. nvarguscamerasrc on a Jetson),
``rtsp://``/``http(s)://`` URLs, a video file (looped), or a still image.
"""

from __future__ import annotations

from rva.camera.base import (
    IMAGE_SUFFIXES,
    Camera,
    NoCameraFound,
    SourceError,
    SourceUnusable,
)
from rva.camera.sources import AutoCamera, Candidate, find_cameras, open_source

__all__ = [
    "IMAGE_SUFFIXES",
    "AutoCamera",
    "Camera",
    "Candidate",
    "NoCameraFound",
    "SourceError",
    "SourceUnusable",
    "find_cameras",
    "open_source",
]
