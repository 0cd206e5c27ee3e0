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
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from rva import const
from rva.config.base import CameraId, ConfigError, Name, Section
from rva.config.outputs import MqttSection, MqttTlsSection, WebSection
from rva.config.sections import (
    AnalyticsSection,
    CameraSection,
    GearSection,
    LineSection,
    RedisSection,
    TimeSeriesSection,
    ZoneSection,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Ubuntu 22.04 / JetPack 6
    import tomli as tomllib


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

    @model_validator(mode="after")
    def _classes_the_model_detects(self) -> Config:
        """A line or zone counting bicycles needs a model that finds them (ssdlite-person
        finds persons only)."""
        from rva.models import manifest

        known = manifest.load(self.gear.model).class_names()
        for camera_id, camera in self.cameras.items():
            shapes = [("lines", n, s.classes) for n, s in camera.lines.items()]
            shapes += [("zones", n, s.classes) for n, s in camera.zones.items()]
            for plural, name, classes in shapes:
                missing = [c for c in classes if c not in known]
                if missing:
                    raise ValueError(
                        f"cameras.{camera_id}.{plural}.{name}.classes: gear.model "
                        f"{self.gear.model} does not detect {missing[0]!r} (it detects: "
                        f"{', '.join(c for c in known if c != 'background')})"
                    )
        return self

    @model_validator(mode="after")
    def _cameras_name_their_source(self) -> Config:
        """Only camera 0 may take source = "auto" by default. A table such as
        [cameras.1.lines.door] written for camera 0's picture makes a camera 1 of its own
        (with an "auto" source that grabs the next camera) and, as TOML then holds only
        cameras.1, takes the default camera 0 away: said here instead of done silently."""
        ids = ", ".join(self.cameras)
        problems = []
        for camera_id, camera in self.cameras.items():
            if camera_id == "0" or "source" in camera.model_fields_set:
                continue
            shapes = [f"lines.{n}" for n in camera.lines] + [f"zones.{n}" for n in camera.zones]
            if shapes and camera.model_fields_set <= {"lines", "zones"}:
                why = (
                    f"a [cameras.{camera_id}.{shapes[0]}] table alone made a camera {camera_id} "
                    f"(the camera ids configured: {ids}): a line or zone of camera 0 goes under "
                    f"[cameras.0.{shapes[0]}]; a camera {camera_id} of its own names its source"
                )
            else:
                why = (
                    f"camera {camera_id} names no source (the camera ids configured: {ids}): "
                    "every camera other than 0 needs one"
                )
            problems.append(
                InitErrorDetails(
                    type=PydanticCustomError(
                        "source_missing",
                        '{why} (source = "auto" takes any camera found)',
                        {"why": why},
                    ),
                    loc=("cameras", camera_id, "source"),
                    input=camera.model_dump(exclude_unset=True),
                )
            )
        if problems:
            # Raised as a ValidationError so that each problem names its camera's key.
            raise ValidationError.from_exception_data("Config", problems)
        return self

    def camera(self, camera_id: str) -> CameraSection:
        try:
            return self.cameras[camera_id]
        except KeyError:
            known = ", ".join(sorted(self.cameras))
            raise ConfigError(f"unknown camera {camera_id!r} (configured: {known})") from None


_loaded: Path | None = None  # the file load() read (or found missing), for messages


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The config file in use: the one given, else the one this process loaded (--config
    included), else $RVA_CONFIG or /etc/rva/rva.toml. A message that tells a person to edit the
    config names this file: in the demo it is .cache/demo/rva.toml, not /etc/rva/rva.toml."""
    if explicit:
        return Path(explicit)
    return _loaded or _default_path()


def _default_path() -> Path:
    return Path(os.environ.get(const.ENV_CONFIG) or const.CONFIG_PATH)


def load(path: str | os.PathLike[str] | None = None, *, required: bool = False) -> Config:
    """Read and validate the config. A missing default file gives the defaults."""
    global _loaded
    file = _loaded = Path(path) if path else _default_path()
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
    if not err["loc"] and re.match(r"^[\w-]+(\.[\w-]+)+: ", reason):
        return f"{file}: {reason}"  # a cross-field check that names its key itself
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


__all__ = [
    "AnalyticsSection",
    "CameraId",
    "CameraSection",
    "Config",
    "ConfigError",
    "GearSection",
    "LineSection",
    "MqttSection",
    "MqttTlsSection",
    "Name",
    "RedisSection",
    "Section",
    "TimeSeriesSection",
    "ValidationError",
    "WebSection",
    "ZoneSection",
    "config_path",
    "gear_settings",
    "load",
    "parse",
    "redis_url",
]
