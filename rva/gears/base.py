"""What a gear is: a registration stored in Redis, and a per-entry handler."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from rva import keys
from rva.config import Config


class GearError(Exception):
    """An entry the gear refuses (corrupt, malformed, too large): skipped and counted."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Registration:
    """Everything a worker on any host needs to run one gear on one camera."""

    type: str
    camera: str
    group: str
    model: str
    backend: str = "opencv"
    device: str = "cpu"
    score_threshold: float = 0.4
    nms_threshold: float = 0.45
    claim_idle_ms: int = 10_000
    results_maxlen: int = 1000
    threads: int = 0

    @property
    def id(self) -> str:
        return keys.gear_id(self.type, self.camera)

    @property
    def stream(self) -> str:
        return keys.frames(self.camera)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Registration:
        data: dict[str, Any] = json.loads(text)
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def from_config(cls, gear_type: str, camera: str, cfg: Config) -> Registration:
        g = cfg.gear
        return cls(
            type=gear_type,
            camera=camera,
            group=g.group,
            model=g.model,
            backend=g.backend,
            device=g.device,
            score_threshold=g.score_threshold,
            nms_threshold=g.nms_threshold,
            claim_idle_ms=g.claim_idle_ms,
            results_maxlen=g.results_maxlen,
            threads=g.threads,
        )


@dataclass(frozen=True)
class Entry:
    """One input stream entry as read from Redis."""

    id: str
    fields: dict[bytes, bytes]

    @property
    def timestamp_ms(self) -> int:
        return int(self.id.split("-", 1)[0])


@dataclass
class Result:
    """What a gear produced for one entry: the results-stream fields and series samples."""

    fields: dict[str, str | int]
    samples: dict[str, float] = field(default_factory=dict)  # metric -> value
    timings_ms: dict[str, float] = field(default_factory=dict)


class Gear(ABC):
    type_key: ClassVar[str]

    def __init__(self, registration: Registration, model_loader: Any) -> None:
        self.registration = registration

    @abstractmethod
    def handle(self, entry: Entry) -> Result:
        """Process one entry; raise GearError for input that must be skipped and counted."""
