"""People-count labels for a video, and a run's score against them (`rva count --labels`).

The labels file is TOML: one ``[[frame]]`` table per labelled frame, with ``frame`` (0-based
decode index), ``people`` (persons clearly visible) and ``max`` (people plus persons a detector
could still fairly count: half out of frame, mostly hidden); ``note`` is free text. Top-level
keys (``source``, ``frames``, comments) are for people. tests/data/vtest_people.toml is one.

A count within [people, max] has an error of 0, else the distance to the nearer bound. The
score is the mean of those errors (MAE), their signed mean (below 0: the detector misses
people), and the frames off, each with its count and range.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Ubuntu 22.04 / JetPack 6
    import tomli as tomllib


class LabelsError(Exception):
    """A labels file that cannot be read; the message names the file and the entry."""


@dataclass(frozen=True)
class Label:
    frame: int
    people: int
    max: int

    def error(self, counted: int) -> int:
        """0 within [people, max], else the distance to the nearer bound (signed: < 0 when
        fewer were counted than people)."""
        if counted < self.people:
            return counted - self.people
        if counted > self.max:
            return counted - self.max
        return 0


def load(path: str | Path) -> dict[int, Label]:
    """The labels of a file, by frame index."""
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LabelsError(f"{file}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelsError(f"{file}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise LabelsError(f"{file}: not valid TOML: {exc}") from None
    entries = data.get("frame")
    if not isinstance(entries, list) or not entries:
        raise LabelsError(f"{file}: no [[frame]] tables")
    labels: dict[int, Label] = {}
    for n, entry in enumerate(entries, 1):
        where = f"{file}: [[frame]] #{n}"
        values = {k: entry.get(k) for k in ("frame", "people", "max")}
        bad = [k for k, v in values.items() if not isinstance(v, int) or isinstance(v, bool)]
        if bad:
            raise LabelsError(f"{where}: {', '.join(bad)} must be whole numbers")
        label = Label(values["frame"], values["people"], values["max"])
        if label.frame < 0 or label.people < 0:
            raise LabelsError(f"{where}: frame and people must be 0 or more")
        if label.max < label.people:
            raise LabelsError(f"{where}: max ({label.max}) is below people ({label.people})")
        if label.frame in labels:
            raise LabelsError(f"{where}: frame {label.frame} is labelled twice")
        labels[label.frame] = label
    return labels


@dataclass
class Score:
    """A run scored against labels, one frame at a time (`add`)."""

    labels: dict[int, Label]
    errors: dict[int, int] = field(default_factory=dict)  # frame -> signed error
    counted: dict[int, int] = field(default_factory=dict)

    def add(self, frame: int, counted: int) -> int | None:
        """Score one processed frame; its signed error, or None when it has no label."""
        label = self.labels.get(frame)
        if label is None:
            return None
        self.counted[frame] = counted
        self.errors[frame] = label.error(counted)
        return self.errors[frame]

    @property
    def mae(self) -> float:
        return sum(abs(e) for e in self.errors.values()) / len(self.errors) if self.errors else 0.0

    @property
    def bias(self) -> float:
        return sum(self.errors.values()) / len(self.errors) if self.errors else 0.0

    def misses(self) -> list[dict[str, int]]:
        return [
            {
                "frame": f,
                "counted": self.counted[f],
                "people": self.labels[f].people,
                "max": self.labels[f].max,
                "error": e,
            }
            for f, e in sorted(self.errors.items())
            if e
        ]

    def as_dict(self) -> dict[str, object]:
        return {
            "frames": len(self.errors),
            "mae": round(self.mae, 4),
            "bias": round(self.bias, 4),
            "exact": sum(1 for e in self.errors.values() if not e),
            "misses": self.misses(),
            "unseen": sorted(set(self.labels) - set(self.errors)),
        }

    def summary(self) -> str:
        """The score in words, for a person."""
        lines = [
            f"{len(self.errors)} labelled frames: people-count MAE {self.mae:.3f} "
            f"(mean signed error {self.bias:+.3f}), {len(self.misses())} frames off"
        ]
        lines += [
            f"  frame {m['frame']}: counted {m['counted']}, labelled {m['people']}"
            + (f"-{m['max']}" if m["max"] != m["people"] else "")
            + f" (error {m['error']:+d})"
            for m in self.misses()
        ]
        unseen = sorted(set(self.labels) - set(self.errors))
        if unseen:
            lines.append(f"  {len(unseen)} labelled frames never processed: {unseen[:10]}")
        return "\n".join(lines)
