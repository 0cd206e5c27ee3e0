"""What a stage is: per-camera work that runs after detection, on results in frame order.

Detection scales out: any number of gear workers share a camera's frames through a consumer
group, so results arrive from many hosts. What follows detection often cannot be split that
way — a tracker needs every result of its camera, in order — so a stage runs as exactly one
instance per camera (a lease in Redis), reads ``camera:<id>:yolo`` from its checkpoint, and
commits its outputs together with the new checkpoint and its own state in one transaction.
Killed at any point, the next instance (on this host or another) resumes where the last commit
left off, with the same state: nothing counted twice, nothing skipped.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import redis

from rva.config import Config


@dataclass
class StageOutput:
    """What a stage produced for some results; written in the stage's commit."""

    samples: list[tuple[str, int, float]] = field(default_factory=list)  # series, ms, value
    events: list[dict[str, str | int | float]] = field(default_factory=list)
    hashes: dict[str, dict[str, str | int | float]] = field(default_factory=dict)

    def extend(self, other: StageOutput) -> None:
        self.samples += other.samples
        self.events += other.events
        for key, mapping in other.hashes.items():
            self.hashes.setdefault(key, {}).update(mapping)


class Stage(ABC):
    type_key: ClassVar[str]

    def __init__(self, camera: str, cfg: Config) -> None:
        self.camera = camera
        self.cfg = cfg

    @classmethod
    @abstractmethod
    def wanted(cls, camera: str, cfg: Config) -> bool:
        """Whether this camera's configuration asks for this stage."""

    @abstractmethod
    def ensure(self, client: redis.Redis, timeseries: bool) -> None:
        """Create what the stage writes to (series, rules); idempotent."""

    @abstractmethod
    def load(self, state: dict[str, Any] | None) -> None:
        """Resume from a committed state (None: start fresh)."""

    @abstractmethod
    def dump(self) -> dict[str, Any]:
        """The state to commit with the checkpoint; JSON-able."""

    @abstractmethod
    def handle(self, t_ms: int, fields: dict[bytes, bytes]) -> StageOutput:
        """One result (its frame's time and the results-stream fields), in frame order."""

    def reconfigure(self, cfg: Config) -> None:
        """Take a new configuration (lines and zones edited live, rva.shapes) without losing
        the running state; a stage with nothing to carry over just keeps the new one."""
        self.cfg = cfg

    def events_maxlen(self) -> int:
        return 10_000
