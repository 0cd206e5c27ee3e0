"""The sections of what RVA does with a camera: Redis, the cameras with their lines and zones,
the gear (detector), tracking and counting, time series."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from rva import const
from rva.config.base import Name, Section


class RedisSection(Section):
    url: str = Field(
        const.DEFAULT_REDIS_URL,
        title="Redis URL: redis://[user:password@]host:port/db or unix:///path/to/socket",
    )

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not re.match(r"^(redis|rediss|unix)://", value):
            hint = f", e.g. redis://{value}" if re.fullmatch(r"[\w.-]+:\d+(/\d+)?", value) else ""
            raise ValueError(f"must start with redis://, rediss:// or unix://{hint}")
        return value


Point = tuple[float, float]
# Coordinates are source-frame pixels; nothing RVA captures is larger (the gear refuses more).
MAX_COORDINATE = 8192


def _sane(points: list[Point]) -> None:
    for x, y in points:
        if not (0 <= x <= MAX_COORDINATE and 0 <= y <= MAX_COORDINATE):
            raise ValueError(
                f"point ({x:g}, {y:g}) is outside any frame (pixels, 0 to {MAX_COORDINATE})"
            )


def _classes(value: list[str]) -> list[str]:
    from rva.models.coco import COCO

    if not value:
        raise ValueError('name at least one class, e.g. ["person"]')
    unknown = [c for c in value if c not in COCO]
    if unknown:
        raise ValueError(
            f"unknown class {unknown[0]!r} (COCO classes: {', '.join(COCO[:12])}, ...; "
            "spaces written as _, e.g. traffic_light)"
        )
    if len(set(value)) != len(value):
        raise ValueError("a class is named twice")
    return value


CLASSES_TITLE = (
    "What it counts: COCO classes (person, bicycle, car, motorcycle, bus, truck, dog, ...); "
    "each tracked on its own"
)


class LineSection(Section):
    """A counting line: a track whose feet go from one side of the segment to the other,
    within its ends, is counted once, as `in` when it ends up on in_side's side."""

    points: list[Point] = Field(title="The segment's two ends, in source-frame pixels")
    in_side: Point = Field(title="Any point on the side people are on after coming in")
    classes: list[str] = Field(default_factory=lambda: ["person"], title=CLASSES_TITLE)

    @field_validator("classes")
    @classmethod
    def _known_classes(cls, value: list[str]) -> list[str]:
        return _classes(value)

    @model_validator(mode="after")
    def _usable(self) -> LineSection:
        from rva.analytics.geometry import check_line

        _sane([*self.points, self.in_side])
        check_line(self.points, self.in_side)
        return self


class ZoneSection(Section):
    """An area: occupancy (tracks whose feet are inside) and dwell time of those who leave."""

    polygon: list[Point] = Field(title="Corners in order, in source-frame pixels")
    classes: list[str] = Field(default_factory=lambda: ["person"], title=CLASSES_TITLE)

    @field_validator("classes")
    @classmethod
    def _known_classes(cls, value: list[str]) -> list[str]:
        return _classes(value)

    @model_validator(mode="after")
    def _usable(self) -> ZoneSection:
        from rva.analytics.geometry import check_polygon

        _sane(self.polygon)
        check_polygon(self.polygon)
        return self


class CameraSection(Section):
    source: str = Field(
        "auto",
        title="auto (a CSI camera libcamera sees, else the first V4L2 capture device), "
        "picamera[:N], /dev/videoN (or a plain index), jetson-csi[:N], gst:<pipeline>, "
        "rtsp:// or http(s):// URL, "
        "a video file (looped) or a still image",
        min_length=1,
    )

    @field_validator("source")
    @classmethod
    def _source_can_work(cls, value: str) -> str:
        # A source this system can never open is a config error, not a retry loop in capture.
        if re.fullmatch(r"picamera(:\d+)?", value):
            from rva.camera.picamera import picamera_problem

            if problem := picamera_problem():
                raise ValueError(problem)
        return value

    width: int = Field(640, title="Frame width in pixels", ge=32, le=4096)
    height: int = Field(480, title="Frame height in pixels", ge=32, le=4096)
    fps: float = Field(15.0, title="Frames per second to capture", gt=0, le=120)
    jpeg_quality: int = Field(80, title="JPEG quality of stored frames", ge=10, le=100)
    maxlen: int = Field(1000, title="Frames kept in camera:<id> (approximate)", ge=10, le=100_000)
    rate: Literal["native", "max"] = Field(
        "native", title="Video files: pace to the file's fps (native) or read as fast as possible"
    )
    resize: bool = Field(
        False,
        title="Scale every frame to width x height (files and URLs keep their size otherwise)",
    )
    lines: dict[Name, LineSection] = Field(default_factory=dict, title="Counting lines by name")
    zones: dict[Name, ZoneSection] = Field(default_factory=dict, title="Zones by name")


def _one_of(kind: str, value: str, known: list[str]) -> str:
    if value not in known:
        raise ValueError(f"unknown {kind} {value!r} (known: {', '.join(sorted(known)) or 'none'})")
    return value


class GearSection(Section):
    """The gear's settings: validated here once, stored as they are in each gear's registration
    (rva:gears), and read back by every worker on any host."""

    type: str = Field(const.DEFAULT_GEAR, title="Gear type (a module of rva/gears)")
    model: str = Field(const.DEFAULT_MODEL, title="Model name from rva models list", min_length=1)
    backend: str = Field(
        "auto",
        title="Inference backend: auto (onnxruntime where installed and able to run the model, "
        "else opencv), opencv, onnxruntime or tensorrt (NVIDIA GPU, device = cuda; "
        "experimental: written, not yet run on a GPU, never chosen by auto)",
    )
    device: Literal["cpu", "cuda"] = Field("cpu", title="Where the backend runs the model")
    precision: Literal["float", "int8"] = Field(
        "float",
        title="float: the model as fetched; int8: its quantized copy that `rva models quantize` "
        "made from this camera's frames (onnxruntime backend only; faster, about the same count)",
    )
    score_threshold: float = Field(
        0.2, title="Minimum person score (measured best on labelled footage)", ge=0.0, le=1.0
    )
    nms_threshold: float = Field(0.45, title="Box overlap (IoU) above which NMS merges", ge=0, le=1)
    group: str = Field(const.DEFAULT_GROUP, title="Consumer group shared by all workers")
    claim_idle_ms: int = Field(
        10_000, title="Reclaim entries a dead worker left pending this long", ge=100, le=3_600_000
    )
    results_maxlen: int = Field(1000, title="Results kept in camera:<id>:yolo", ge=10, le=100_000)
    threads: int = Field(0, title="Inference threads (0 = backend default)", ge=0, le=64)
    input_size: int = Field(
        0,
        title="Model input side in pixels, a multiple of 32 (0 = the size the model's manifest "
        "gives: 512 for yolov3-tiny); Darknet models only",
        ge=0,
        le=1024,
    )
    motion_gate: Literal["capture", "gear", "off"] = Field(
        "capture",
        title="Run the detector only on frames with motion (and every still_refresh_s): "
        "capture (frames of a still scene are not even encoded), gear, or off (true = capture, "
        "false = off)",
    )
    still_refresh_s: float = Field(
        5.0,
        title="With the motion gate, run the detector on a still scene this often, so people "
        "standing still stay counted (under 10 s: /healthz calls a camera silent for longer down)",
        ge=0.2,
        le=8.0,
    )
    motion_threshold: int = Field(
        20, title="Grey levels a pixel must change by to count as motion", ge=1, le=255
    )
    motion_min_area: float = Field(
        0.002, title="Share of the frame that must change to count as motion", gt=0, lt=0.5
    )

    @field_validator("input_size")
    @classmethod
    def _multiple_of_32(cls, value: int) -> int:
        if value and (value % 32 or value < 128):
            raise ValueError("must be 0 (the model's own) or a multiple of 32 from 128 to 1024")
        return value

    @field_validator("motion_gate", mode="before")
    @classmethod
    def _gate_switch(cls, value: object) -> object:
        if isinstance(value, bool):
            return "capture" if value else "off"
        return value

    # Plugin names are checked when the file loads, so a typo fails `rva config check` instead
    # of leaving rva-gears waiting for a model forever.
    @field_validator("type")
    @classmethod
    def _known_gear(cls, value: str) -> str:
        return _one_of("gear type", value, list(const.GEAR_TYPES))

    @field_validator("precision")
    @classmethod
    def _int8_on_onnxruntime(cls, value: str, info: ValidationInfo) -> str:
        backend = info.data.get("backend")
        if value == "int8" and backend not in (None, "auto", "onnxruntime"):
            raise ValueError(
                f"int8 runs on the onnxruntime backend only (backend is {backend}: set it to "
                "auto or onnxruntime, or precision to float)"
            )
        return value

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        from rva.models import manifest

        return _one_of("model", value, manifest.available())

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        # Names only: whether a backend's runtime is installed is a matter of the host that
        # runs the gear (a worker on another machine may have it), said there.
        return _one_of("backend", value, ["auto", *const.BACKENDS])


class AnalyticsSection(Section):
    """Tracking, counting lines and zones, for cameras that have lines or zones."""

    enabled: bool = Field(True, title="Run the counting stage for cameras with lines or zones")
    max_miss_ms: int = Field(
        1500, title="A person missed this long keeps the track id", ge=100, le=60_000
    )
    min_hits: int = Field(3, title="Detections before a track counts", ge=1, le=30)
    events_maxlen: int = Field(
        10_000, title="Events kept in camera:<id>:events (approximate)", ge=10, le=1_000_000
    )


class TimeSeriesSection(Section):
    retention_hours: float = Field(
        48, title="How long raw samples (people, fps, stage ms) are kept", gt=0, le=24 * 366
    )
    rollup_retention_days: float = Field(
        90, title="How long the 1/5/15-minute people rollups are kept", gt=0, le=3660
    )
