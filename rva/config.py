"""The one configuration file, /etc/rva/rva.toml, validated before any service starts.

Every field has a default, a title and bounds; unknown keys are errors. A problem is reported
as one line that names the file and the dotted key, e.g.
``/etc/rva/rva.toml: cameras.0.fps: Input should be less than or equal to 120 (got 500)``.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from rva import const

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Ubuntu 22.04 / JetPack 6
    import tomli as tomllib

CameraId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")]


class ConfigError(Exception):
    """A configuration problem, already phrased for a person: file, key, reason."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")]
Point = tuple[float, float]
# Coordinates are source-frame pixels; nothing RVA captures is larger (the gear refuses more).
MAX_COORDINATE = 8192


def _sane(points: list[Point]) -> None:
    for x, y in points:
        if not (0 <= x <= MAX_COORDINATE and 0 <= y <= MAX_COORDINATE):
            raise ValueError(
                f"point ({x:g}, {y:g}) is outside any frame (pixels, 0 to {MAX_COORDINATE})"
            )


class LineSection(Section):
    """A counting line: a track whose feet go from one side of the segment to the other,
    within its ends, is counted once, as `in` when it ends up on in_side's side."""

    points: list[Point] = Field(title="The segment's two ends, in source-frame pixels")
    in_side: Point = Field(title="Any point on the side people are on after coming in")

    @model_validator(mode="after")
    def _usable(self) -> LineSection:
        from rva.analytics.geometry import check_line

        _sane([*self.points, self.in_side])
        check_line(self.points, self.in_side)
        return self


class ZoneSection(Section):
    """An area: occupancy (tracks whose feet are inside) and dwell time of those who leave."""

    polygon: list[Point] = Field(title="Corners in order, in source-frame pixels")

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
            from rva.services.sources import picamera_problem

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
        "else opencv), opencv or onnxruntime",
    )
    device: Literal["cpu", "cuda"] = Field("cpu", title="Where the backend runs the model")
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
        from rva.gears import GEAR_TYPES

        return _one_of("gear type", value, list(GEAR_TYPES))

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        from rva.models import manifest

        return _one_of("model", value, manifest.available())

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        from rva.models.backends import BACKENDS

        # Names only: whether a backend's runtime is installed is a matter of the host that
        # runs the gear (a worker on another machine may have it), said there.
        return _one_of("backend", value, ["auto", *BACKENDS])


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


class WebSection(Section):
    host: str = Field("0.0.0.0", title="Address rva web binds (127.0.0.1 keeps it local)")
    port: int = Field(5000, title="TCP port of rva web", ge=1, le=65535)
    jpeg_quality: int = Field(
        75, title="JPEG quality of the annotated /video stream", ge=10, le=100
    )
    max_fps: float = Field(15, title="Upper bound on /video frames per second", gt=0, le=60)
    max_connections: int = Field(
        256,
        title="Open connections at most; beyond it the oldest one still sending its request "
        "is closed",
        ge=16,
        le=65_536,
    )
    request_timeout_s: float = Field(
        10, title="Seconds a client has, from connecting, to send its whole request", gt=0, le=300
    )
    io_timeout_s: float = Field(
        20, title="Seconds a response waits on a client that reads nothing", gt=0, le=600
    )
    max_viewers: int = Field(
        16, title="/video streams at once (more get 503); each holds a server thread", ge=1, le=256
    )
    users_file: str = Field(
        "/etc/rva/web-users",
        title="Users and password hashes (`rva web passwd USER`); with users, everything but "
        "/healthz needs HTTP Basic credentials",
    )
    metrics_public: bool = Field(
        True, title="/metrics needs no credentials (for Prometheus) even when there are users"
    )
    video: Literal["annotated", "blurred", "off"] = Field(
        "annotated",
        title="/video: annotated, blurred (every person pixelated before encoding) or off",
    )

    @field_validator("users_file")
    @classmethod
    def _users_file_absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must be an absolute path")
        return value


def _absolute(value: str) -> str:
    if value and not value.startswith("/"):
        raise ValueError("must be an absolute path")
    return value


def _topic(value: str) -> str:
    """A topic prefix: levels joined by '/', none empty, no wildcards."""
    if value and (
        any(c in value for c in "#+\0") or any(level == "" for level in value.split("/"))
    ):
        raise ValueError("must be topic levels joined by '/', none empty, without + or #")
    return value


class MqttTlsSection(Section):
    """TLS to the broker. An empty [mqtt.tls] table: TLS checked against the system's CAs."""

    ca_file: str = Field("", title="CA certificate(s) for the broker's (empty: the system's)")
    cert_file: str = Field("", title="Client certificate, for a broker that asks for one")
    key_file: str = Field("", title="The client certificate's private key", validate_default=True)

    @field_validator("ca_file", "cert_file")
    @classmethod
    def _absolute_path(cls, value: str) -> str:
        return _absolute(value)

    @field_validator("key_file")
    @classmethod
    def _with_cert(cls, value: str, info: ValidationInfo) -> str:
        if bool(value) != bool(info.data.get("cert_file")):
            raise ValueError("cert_file and key_file go together: set both or neither")
        return _absolute(value)


class MqttSection(Section):
    """rva mqtt: counts, occupancy and crossings to an MQTT broker, announced to Home
    Assistant by MQTT discovery. Without this table (or with enabled = false) rva-mqtt exits
    at once and publishes nothing."""

    enabled: bool = Field(True, title="Publish to the broker (false: rva-mqtt does nothing)")
    host: str = Field(
        "", title="Broker host name or address (no mqtt:// in front)", validate_default=True
    )
    port: int = Field(
        0, title="Broker TCP port (0: 8883 with [mqtt.tls], else 1883)", ge=0, le=65535
    )
    username: str = Field("", title="Login name at the broker (empty: anonymous)")
    password_file: str = Field(
        "",
        title="File holding the password (empty: the systemd credential mqtt.password, which "
        "rva-mqtt.service loads from /etc/rva/credentials/mqtt-broker.secret)",
    )
    tls: MqttTlsSection | None = Field(None, title="TLS to the broker; absent: plain TCP")
    client_id: str = Field(
        "", title="MQTT client id (empty: rva-<hostname>)", pattern=r"^[A-Za-z0-9_.-]{0,64}$"
    )
    topic_prefix: str = Field("", title="Root of RVA's own topics (empty: rva/<hostname>)")
    discovery_prefix: str = Field(
        "homeassistant", title="Home Assistant's discovery prefix", min_length=1
    )
    snapshot_interval_s: float = Field(
        10.0,
        title="At most one annotated JPEG per camera this often, when the count changes "
        "(0: no camera entity)",
        ge=0,
        le=3600,
    )

    @field_validator("host")
    @classmethod
    def _host(cls, value: str, info: ValidationInfo) -> str:
        if not value and info.data.get("enabled", True):
            raise ValueError("set the broker's address (or enabled = false)")
        if value and not re.fullmatch(r"[A-Za-z0-9._:-]+|\[[0-9A-Fa-f:.]+\]", value):
            raise ValueError("a host name or address only, without a scheme, port or path")
        return value

    @field_validator("password_file")
    @classmethod
    def _password_file(cls, value: str, info: ValidationInfo) -> str:
        if value and not info.data.get("username"):
            raise ValueError("a password needs mqtt.username as well")
        return _absolute(value)

    @field_validator("topic_prefix", "discovery_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return _topic(value)


class Config(Section):
    redis: RedisSection = RedisSection()
    cameras: dict[CameraId, CameraSection] = Field(
        default_factory=lambda: {"0": CameraSection()}, title="Cameras by id"
    )
    gear: GearSection = GearSection()
    timeseries: TimeSeriesSection = TimeSeriesSection()
    web: WebSection = WebSection()
    analytics: AnalyticsSection = AnalyticsSection()
    mqtt: MqttSection | None = Field(None, title="MQTT and Home Assistant ([mqtt])")
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @model_validator(mode="after")
    def _at_least_one_camera(self) -> Config:
        if not self.cameras:
            raise ValueError("cameras: at least one camera is needed")
        return self

    def camera(self, camera_id: str) -> CameraSection:
        try:
            return self.cameras[camera_id]
        except KeyError:
            known = ", ".join(sorted(self.cameras))
            raise ConfigError(f"unknown camera {camera_id!r} (configured: {known})") from None


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    if explicit:
        return Path(explicit)
    return Path(os.environ.get(const.ENV_CONFIG) or const.CONFIG_PATH)


def load(path: str | os.PathLike[str] | None = None, *, required: bool = False) -> Config:
    """Read and validate the config. A missing default file gives the defaults."""
    file = config_path(path)
    explicit = required or path is not None or bool(os.environ.get(const.ENV_CONFIG))
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"{file}: file not found") from None
        return Config()
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror}") from None
    return parse(text, file)


def parse(text: str, file: Path | str = "<config>") -> Config:
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError("\n".join(_describe(file, err) for err in exc.errors())) from None


def _describe(file: Path | str, err: Any, prefix: str = "") -> str:
    key = prefix + (".".join(str(part) for part in err["loc"]) or "(top level)")
    if err["type"] == "extra_forbidden":
        return f"{file}: {key}: unknown key"
    reason = err["msg"].removeprefix("Value error, ")
    got = err.get("input")
    shown = "" if isinstance(got, dict | list) or repr(got) in reason else f" (got {got!r})"
    return f"{file}: {key}: {reason}{shown}"


def gear_settings(cfg: Config, **options: object) -> GearSection:
    """The gear settings with command-line options (--model, --backend, ...) laid over them,
    checked like the file: a wrong name is an error that names the option."""
    given = {k: v for k, v in options.items() if v is not None}
    try:
        return GearSection.model_validate({**cfg.gear.model_dump(), **given})
    except ValidationError as exc:
        raise ConfigError(
            "\n".join(_describe("command line", e, prefix="--") for e in exc.errors())
        ) from None


def redis_url(cfg: Config, override: str | None = None) -> str:
    """-u/--url beats RVA_REDIS_URL beats the config file. A URL given either way is checked as
    the file's redis.url is: a wrong one is a ConfigError that names the option or variable."""
    for where, url in (
        ("-u/--url", override),
        (const.ENV_REDIS_URL, os.environ.get(const.ENV_REDIS_URL)),
    ):
        if url:
            try:
                RedisSection(url=url)
            except ValidationError as exc:
                reason = exc.errors()[0]["msg"].removeprefix("Value error, ")
                raise ConfigError(f"{where}: {reason} (got {url!r})") from None
            return url
    return cfg.redis.url
