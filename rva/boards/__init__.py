"""What a board needs, read from its vendor's own sources: one TOML file per vendor beside this
module (raspberrypi.toml; jetson.toml for JetPack 6), each fact with the repository, file and
commit it came from.

The same facts serve three readers: the image tests check every built image against them, the
provisioning tests check the Ansible roles, and `rva doctor` prints each as found on a running
device. When a fact changes upstream, its file here is where it changes.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Ubuntu 22.04 / JetPack 6
    import tomli as tomllib

# The Raspberry Pi boards RVA builds images for, by what /proc/device-tree/model starts with.
PI_MODELS = {
    "Raspberry Pi 5": "rpi5",
    "Raspberry Pi Compute Module 5": "rpi5",
    "Raspberry Pi 500": "rpi5",
    "Raspberry Pi 4": "rpi4",
    "Raspberry Pi 400": "rpi4",
    "Raspberry Pi Compute Module 4": "rpi4",
}
# What an NVIDIA Jetson's device tree calls it ("NVIDIA Jetson Orin Nano Developer Kit"); its
# JetPack release is read from /etc/nv_tegra_release (jetson.toml, l4t-release-file).
JETSON_MODEL = "NVIDIA Jetson"
# Where the kernel, firmware and camera stack come from (image-build --pi-source): Raspberry Pi's
# archive (what Raspberry Pi OS runs) or Debian's packages alone.
VARIANTS = ("raspberrypi", "debian")


@dataclass(frozen=True)
class Fact:
    id: str
    boards: tuple[str, ...]
    what: str
    repo: str
    path: str
    commit: str
    quote: str
    variants: tuple[str, ...] = VARIANTS
    kinds: tuple[str, ...] = ()  # what is checked on an image and a device ("checks")
    fields: dict[str, Any] = field(default_factory=dict)  # the typed fields (udev_rule, ...)

    @property
    def source(self) -> str:
        return f"{self.repo}: {self.path} @ {self.commit[:12]}"

    def applies(self, board: str, variant: str) -> bool:
        return board in self.boards and variant in self.variants


KNOWN = {"id", "boards", "what", "repo", "path", "commit", "quote", "variants", "checks"}


def load(vendor: str = "raspberrypi") -> list[Fact]:
    text = resources.files(__name__).joinpath(f"{vendor}.toml").read_text(encoding="utf-8")
    facts = []
    for raw in tomllib.loads(text)["fact"]:
        facts.append(
            Fact(
                id=raw["id"],
                boards=tuple(raw["boards"]),
                what=raw["what"],
                repo=raw["repo"],
                path=raw["path"],
                commit=raw["commit"],
                quote=raw["quote"],
                variants=tuple(raw.get("variants", VARIANTS)),
                kinds=tuple(raw.get("checks", ())),
                fields={k: v for k, v in raw.items() if k not in KNOWN},
            )
        )
    return facts


def by_id(facts: list[Fact]) -> dict[str, Fact]:
    return {f.id: f for f in facts}


def board_of(model: str) -> str | None:
    """rpi4, rpi5, jetson or None, from the device tree's model string."""
    model = model.strip("\0\n ")
    if model.startswith(JETSON_MODEL):
        return "jetson"
    for prefix, board in sorted(PI_MODELS.items(), key=lambda kv: -len(kv[0])):
        if model.startswith(prefix):
            return board
    return None


def l4t_release(text: str) -> tuple[int, int, int] | None:
    """(major, minor, patch) from /etc/nv_tegra_release's first line, "# R36 (release),
    REVISION: 4.3, ..." (jetson.toml, l4t-release-file); None when it is not one."""
    m = re.match(r"# R(\d+) \(release\), REVISION: (\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def config_txt_has(text: str, line: str, section: str = "all") -> bool:
    """Whether config.txt sets ``line`` where it applies to ``section``'s boards: in the
    section itself, or in [all] (also before any section header)."""
    current = "all"
    for raw in text.splitlines():
        stripped = raw.split("#", 1)[0].strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            current = stripped[1:-1].strip()
            continue
        if stripped == line and current in ("all", section):
            return True
    return False


def rules_text(root: Path) -> str:
    """Every udev rule a system has (the vendor's, the administrator's), joined."""
    parts = []
    for folder in ("usr/lib/udev/rules.d", "lib/udev/rules.d", "etc/udev/rules.d"):
        base = root / folder
        if base.is_dir():
            parts += [p.read_text(errors="replace") for p in sorted(base.glob("*.rules"))]
    return "\n".join(parts)


UNIT_DIRS = ("etc/systemd/system", "usr/lib/systemd/system", "lib/systemd/system")


def unit_file(root: Path, unit: str) -> Path | None:
    """Where a system has ``unit`` (the administrator's copy first, as systemd reads them)."""
    return next((root / d / unit for d in UNIT_DIRS if (root / d / unit).is_file()), None)


def unit_settings(text: str) -> dict[str, list[str]]:
    """Every ``Key=value`` of a unit file or drop-in, by key, in order (sections ignored)."""
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", ";", "{")):
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def drop_ins(root: Path, unit: str) -> list[Path]:
    """The drop-ins of ``unit`` (``unit.d/*.conf``) a system has, in the order systemd reads
    them: by file name, /etc's hiding /usr/lib's of the same name."""
    found: dict[str, Path] = {}
    for folder in reversed(UNIT_DIRS):
        base = root / folder / f"{unit}.d"
        if base.is_dir():
            found |= {p.name: p for p in base.glob("*.conf")}
    return [found[name] for name in sorted(found)]
