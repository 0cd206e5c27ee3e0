"""What rva doctor's rows are made of: a row, the system it reads (the running one or another's
files), and the checks both boards' facts share (dpkg's packages, rva-capture's groups)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rva import boards
from rva.boards import Fact

OK, FAIL, SKIP = "ok", "FAIL", "skip"
CONFIG_TXT = ("boot/firmware/config.txt", "boot/config.txt")
CAPTURE_UNIT = "rva-capture.service"


@dataclass
class Row:
    name: str
    state: str  # ok, FAIL or skip
    found: str
    source: str = ""  # the vendor file a fact came from
    fix: str = ""


@dataclass
class Device:
    root: Path
    board: str | None
    model: str
    variant: str
    page_size: int
    live: bool

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")

    def read(self, absolute: str) -> str | None:
        try:
            return self.path(absolute).read_text(errors="replace")
        except OSError:
            return None


Check = Callable[[Device, Fact], Row]


def packages(dev: Device, fact: Fact) -> Row:
    status = dev.read("/var/lib/dpkg/status") or ""
    installed = {
        block.strip().split("\n", 1)[0].removeprefix("Package: ")
        for block in status.split("\n\n")
        if "Status: install ok installed" in block
    }
    missing = [p for p in fact.fields["packages"] if p not in installed]
    return Row(
        fact.id,
        FAIL if missing else OK,
        ("missing: " if missing else "") + " ".join(missing or fact.fields["packages"]),
        fact.source,
        "apt install " + " ".join(missing) if missing else "",
    )


def capture_group(dev: Device, fact: Fact) -> Row:
    """The groups rva-capture runs with, from its unit and drop-ins: a Pi's fact names one
    (``group``), a Jetson's each it needs (``groups``)."""
    wanted = [fact.fields["group"]] if "group" in fact.fields else fact.fields["groups"]
    unit = boards.unit_file(dev.root, CAPTURE_UNIT)
    files = ([unit] if unit else []) + boards.drop_ins(dev.root, CAPTURE_UNIT)
    settings = boards.unit_settings("\n".join(p.read_text(errors="replace") for p in files))
    have = " ".join(settings.get("SupplementaryGroups", [])).split()
    missing = [g for g in wanted if g not in have]
    if not missing:
        return Row(fact.id, OK, f"rva-capture runs with group {' '.join(wanted)}", fact.source)
    found = f"rva-capture lacks group {' '.join(missing)}" + ("" if unit else " (no unit)")
    return Row(
        fact.id,
        FAIL,
        found,
        fact.source,
        "ansible-playbook ansible/site.yml: it installs rva-capture and its drop-ins",
    )
