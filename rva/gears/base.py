"""What a gear is: a registration stored in Redis, and a per-entry handler."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from rva import keys
from rva.config import Config, GearSection


class GearError(Exception):
    """An entry the gear refuses (corrupt, malformed, too large): skipped and counted."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Registration:
    """Everything a worker on any host needs to run one gear on one camera: the camera and the
    gear settings of rva.toml, stored in rva:gears as one flat JSON object."""

    camera: str
    settings: GearSection

    @property
    def type(self) -> str:
        return self.settings.type

    @property
    def group(self) -> str:
        return self.settings.group

    @property
    def id(self) -> str:
        return keys.gear_id(self.type, self.camera)

    @property
    def stream(self) -> str:
        return keys.frames(self.camera)

    def to_json(self) -> str:
        return json.dumps({"camera": self.camera, **self.settings.model_dump()}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Registration:
        """Read a registration; keys this version does not know (a newer worker wrote it) are
        ignored, and the settings are validated like the config file."""
        data: dict[str, Any] = json.loads(text)
        camera = str(data.pop("camera"))
        known = {k: v for k, v in data.items() if k in GearSection.model_fields}
        return cls(camera, GearSection.model_validate(known))

    @classmethod
    def from_config(cls, camera: str, cfg: Config) -> Registration:
        return cls(camera, cfg.gear)


@dataclass(frozen=True)
class Entry:
    """One input stream entry as read from Redis."""

    id: str
    fields: dict[bytes, bytes]

    @property
    def timestamp_ms(self) -> int:
        return keys.id_ms(self.id)


@dataclass
class Result:
    """What a gear produced for one entry: the results-stream fields and series samples."""

    fields: dict[str, str | int]
    samples: dict[str, float] = field(default_factory=dict)  # metric -> value
    timings_ms: dict[str, float] = field(default_factory=dict)


class Gear(ABC):
    type_key: ClassVar[str]

    @classmethod
    def results_key(cls, camera: str) -> str:
        """The stream this gear type writes its results to: camera:<id>:<type>."""
        return keys.series(camera, cls.type_key)

    def __init__(self, registration: Registration, model_loader: Any) -> None:
        self.registration = registration

    @property
    def backend_name(self) -> str | None:
        """The inference backend this gear runs its model on, when it runs one."""
        return None

    def want_classes(self, names: set[str]) -> None:
        """The object classes the camera's lines and zones count, besides persons (a gear
        with a detector keeps their boxes too); others ignore it."""
        return None

    @abstractmethod
    def handle(self, entry: Entry, release: Callable[[], None] = lambda: None) -> Result | None:
        """Process one entry; raise GearError for input that must be skipped and counted.
        None: the entry needs no result (the motion gate found nothing new in it).

        ``release``: call it once the entry's heavy work is done, before the last small steps
        (decoding the model's outputs, say): the next frame may be sent then, to be in the
        stream when the worker comes back for it. The worker calls it after handle when the
        gear did not."""
