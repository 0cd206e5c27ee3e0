"""What `rva config check` checks beyond the file's schema: whether each camera's source can work
on this machine, as far as that can be told without the camera itself.

An error is a source that cannot work as written (a file that is not there, an unknown kind of
source, a URL without its scheme's colon, a GStreamer pipeline that cannot be built here:
PyGObject, GStreamer or one of its elements missing); a warning is one that may work later (a
/dev/videoN not plugged in yet). Nothing here opens a camera or a network stream (a GStreamer
pipeline is built, not started); ``auto`` is not probed (that would start libcamera, even in an
image build's chroot): capture and `rva status` say what it found. The files [mqtt] names are
checked too, and [gear] for the GPU paths that are written but not yet run on a GPU.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from rva import const
from rva.config import CameraSection, Config
from rva.redact import secrets

SOURCE_KINDS = (
    "auto, picamera[:N], /dev/videoN (or N), jetson-csi[:N], gst:<pipeline>, rtsp://, "
    "http(s)://, a video file or an image"
)
STREAM_SCHEMES = ("rtsp", "rtsps", "http", "https")


@dataclass(frozen=True)
class Finding:
    level: str  # "error" or "warning"
    key: str  # the dotted key, e.g. cameras.0.source
    message: str

    def line(self, file: Path | str) -> str:
        prefix = "" if self.level == "error" else "warning: "
        return f"{file}: {self.key}: {prefix}{secrets(self.message)}"


def config(cfg: Config, root: Path | None = None) -> list[Finding]:
    """Every camera's source, in the file's order. ``root``: where the device's root filesystem
    is, when the file is checked for another system (rva-firstboot's tests); files and device
    nodes are looked up under it."""
    found: list[Finding] = []
    for camera_id, camera in cfg.cameras.items():
        key = f"cameras.{camera_id}.source"
        found += source(key, camera.source, root)
        if (camera.lines or camera.zones) and not any(
            f.key == key and f.level == "error" for f in found
        ):
            found += geometry(camera_id, camera, root)
    return found + int8_file(cfg, root) + mqtt_files(cfg, root) + gear(cfg)


def int8_file(cfg: Config, root: Path | None = None) -> list[Finding]:
    """With gear.precision = "int8": the int8 copy in this host's model cache, made at the
    input size the gear runs. Missing is a warning (`rva models quantize` needs the camera
    running, so a new device has none yet: the gear waits and says so); made at another size is
    an error. Whether it is stale (made from another float model) is checked when the gear
    loads it: that needs the float model converted."""
    gear = cfg.gear
    if gear.precision != "int8":
        return []
    from rva.models import int8, manifest, store

    cache = store.cache_dir()
    if root is not None:
        cache = root / cache.relative_to(cache.anchor)
    spec = manifest.load(gear.model).input
    size = (gear.input_size, gear.input_size) if gear.input_size else (spec.width, spec.height)
    try:
        int8.check_file(gear.model, size, cache)
    except manifest.ModelError as exc:
        level = "error" if int8.path(cache, gear.model).is_file() else "warning"
        return [Finding(level, "gear.precision", "int8: " + str(exc).removeprefix(int8.KEY + ": "))]
    return []


EXPERIMENTAL = 'written, not yet run on a GPU (docs/jetson.md, "The detector on the GPU")'


def gear(cfg: Config) -> list[Finding]:
    """The GPU paths: experimental until they have run the real model on a real GPU in a test,
    said plainly (a warning: they may well work). Whether the runtime is installed is the gear
    host's business (a LAN worker may have it), said when the gear loads the model."""
    section = cfg.gear
    if section.backend in const.EXPERIMENTAL_BACKENDS:
        if section.device != "cuda":
            return _error(
                "gear.device",
                f'backend {section.backend} runs on an NVIDIA GPU only: set device = "cuda"',
            )
        return _warning(
            "gear.backend",
            f"{section.backend} is experimental: {EXPERIMENTAL}; auto never chooses it",
        )
    if section.device == "cuda" and section.backend in ("auto", "onnxruntime"):
        return _warning(
            "gear.device",
            "cuda on ONNX Runtime (its CUDA and TensorRT providers, onnxruntime-gpu) is "
            f"experimental: {EXPERIMENTAL}",
        )
    return []


def mqtt_files(cfg: Config, root: Path | None = None) -> list[Finding]:
    """The files [mqtt] names: rva mqtt reads them when it starts and stops with an error when
    one is not there. Without mqtt.password_file the password is the systemd credential
    rva-mqtt.service loads, which is no file of this config's to check."""
    section = cfg.mqtt
    if section is None or not section.enabled:
        return []
    files = [("mqtt.password_file", section.password_file)]
    if section.tls is not None:
        tls = section.tls
        files += [(f"mqtt.tls.{k}", getattr(tls, k)) for k in ("ca_file", "cert_file", "key_file")]
    found: list[Finding] = []
    for key, name in files:
        if not name:
            continue
        there = _on(root, name)
        if not there.exists():
            found += _error(key, f"no such file: {name} (rva mqtt cannot start without it)")
        elif not there.is_file():
            found += _error(key, f"{name} is not a file")
        elif not os.access(there, os.R_OK):
            found += _warning(key, f"{name} is not readable here; rva mqtt must be able to read it")
    return found


# A point this far outside the frame (a share of its width or height) cannot be meant: a line
# drawn a little past the picture's edge is fine, one 5000 px away on a 768 px frame is a typo.
OUTSIDE_SLACK = 0.1


def frame_size(camera: CameraSection, root: Path | None = None) -> tuple[int, int] | None:
    """The size of the frames boxes are measured in, when it can be known before capture: the
    configured size for cameras (V4L2 and libcamera deliver it) and whenever resize is on, else
    the file's own; None for streams, whose size only the stream tells."""
    value = camera.source
    is_camera = value == "auto" or re.fullmatch(
        r"(picamera|jetson-csi)(:\d+)?|\d+|/dev/video\d+", value
    )
    if camera.resize or is_camera:
        return camera.width, camera.height
    if re.match(r"^[a-z][a-z0-9+.-]*:", value, re.IGNORECASE) and not value.startswith("file:"):
        return None  # a URL or a GStreamer pipeline
    import cv2

    from rva.camera import IMAGE_SUFFIXES

    path = _on(root, value)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        return None if image is None else (image.shape[1], image.shape[0])
    cap = cv2.VideoCapture(str(path))
    try:
        size = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    finally:
        cap.release()
    return size if all(size) else None


def geometry(camera_id: str, camera: CameraSection, root: Path | None = None) -> list[Finding]:
    """Lines and zones whose points lie far outside the frame they are drawn on."""
    size = frame_size(camera, root)
    if size is None:
        return []
    width, height = size
    dx, dy = width * OUTSIDE_SLACK, height * OUTSIDE_SLACK
    found: list[Finding] = []
    shapes = [(f"lines.{n}.points", s.points) for n, s in camera.lines.items()]
    shapes += [(f"lines.{n}.in_side", [s.in_side]) for n, s in camera.lines.items()]
    shapes += [(f"zones.{n}.polygon", s.polygon) for n, s in camera.zones.items()]
    for where, points in shapes:
        outside = [
            p for p in points if not (-dx <= p[0] <= width + dx and -dy <= p[1] <= height + dy)
        ]
        if outside:
            shown = ", ".join(f"[{x:g}, {y:g}]" for x, y in outside)
            found += _error(
                f"cameras.{camera_id}.{where}",
                f"{shown} lies outside the {width}x{height} frame of this camera (points are "
                "in the source frame's pixels)",
            )
    return found


def _on(root: Path | None, path: str | Path) -> Path:
    """The path as the device sees it (relative paths: from /, the services' directory)."""
    if root is None:
        return Path(path)
    return root / Path(path).relative_to("/") if Path(path).is_absolute() else root / path


def _error(key: str, message: str) -> list[Finding]:
    return [Finding("error", key, message)]


def _warning(key: str, message: str) -> list[Finding]:
    return [Finding("warning", key, message)]


def source(key: str, value: str, root: Path | None = None) -> list[Finding]:
    """Findings for one source string (the kinds are those of sources.open_source)."""
    if value == "auto":
        return []
    if re.fullmatch(r"picamera(:\d+)?", value):
        return []  # checked when the file loads (picamera2 importable)
    if re.fullmatch(r"jetson-csi(:\d+)?", value) or value.startswith("gst:"):
        if value.startswith("gst:") and "appsink" not in value:
            return _error(key, "a gst: pipeline must end in an appsink (… ! appsink)")
        from rva.camera.gstreamer import jetson_csi_pipeline, pipeline_problem

        pipeline = (
            value[4:].strip() if value.startswith("gst:") else jetson_csi_pipeline(0, 2, 2, 1)
        )
        problem = pipeline_problem(pipeline)
        return _error(key, f"{value.split(':')[0]}: {problem}") if problem else []
    if re.fullmatch(r"\d+", value) or value.startswith("/dev/video"):
        return _video_device(key, value if value.startswith("/") else f"/dev/video{value}", root)
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", value):
        return _url(key, value)
    path = Path(value)
    if _on(root, path).exists():
        return _file(key, path, root)
    # Not a file. Say what it looks like it was meant to be.
    if m := re.match(r"^(rtsps?|https?)(//|:/(?!/))", value):
        return _error(
            key,
            f"not a URL ({m.group(1)}:// is written with a colon and two slashes) and no "
            "such file either",
        )
    if m := re.match(r"^([A-Za-z][\w.+-]*):", value):
        return _error(key, f"unknown kind of source {m.group(1)!r} (known: {SOURCE_KINDS})")
    where = "" if path.is_absolute() or root else f" (relative to {os.getcwd()})"
    return _error(key, f"no such file: {value}{where}")


def _video_device(key: str, node: str, root: Path | None) -> list[Finding]:
    from rva.camera.v4l2 import query_v4l2

    try:
        mode = os.stat(_on(root, node)).st_mode
    except FileNotFoundError:
        return _warning(
            key,
            f"{node} does not exist (yet): capture waits for it, so a USB camera plugged in "
            "later is picked up",
        )
    except OSError as exc:
        return _warning(key, f"{node}: {exc.strerror}")
    if not stat.S_ISCHR(mode):
        return _warning(key, f"{node} is not a device node")
    problems: list[str] = []
    device = query_v4l2(str(_on(root, node)), problems)
    if problems:
        return _warning(key, "; ".join(problems))
    if device is None:
        return _warning(key, f"{node} is not a V4L2 device")
    if not device.usable:
        return _warning(
            key, f"{node} ({device.card or device.driver}) is not a capture node OpenCV can read"
        )
    return []


def _url(key: str, value: str) -> list[Finding]:
    parts = urlsplit(value)
    if parts.scheme.lower() not in STREAM_SCHEMES:
        scheme = parts.scheme + "://"
        return _error(key, f"unknown kind of source {scheme!r} (known: {SOURCE_KINDS})")
    try:
        parts.port  # noqa: B018 - parsing it is the check
    except ValueError:
        return _error(key, f"not a valid port in {value}")
    if not parts.hostname:
        return _error(key, f"no host in {value}")
    return []


def _file(key: str, path: Path, root: Path | None) -> list[Finding]:
    import cv2

    from rva.camera import IMAGE_SUFFIXES

    there = _on(root, path)
    if not there.is_file():
        return _error(key, f"{path} is not a file")
    if not os.access(there, os.R_OK):
        return _error(key, f"{path} is not readable")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        if cv2.imread(str(there), cv2.IMREAD_COLOR) is None:
            return _error(key, f"{path} cannot be read as an image")
    else:
        cap = cv2.VideoCapture(str(there))
        try:
            if not cap.isOpened() or not cap.read()[0]:
                return _error(key, f"{path}: OpenCV cannot read a video frame from it")
        finally:
            cap.release()
    if not path.is_absolute():
        return _warning(
            key,
            f"{path} is a relative path: the services read it from their own working "
            "directory (/ under systemd); give an absolute path",
        )
    return []
