"""rva-firstboot's view of the system it configures (the running one, or a directory in the
tests), and how it writes files there."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

BOOT_DIRS = ("boot/firmware", "boot/efi")
BOOT_TOML = "rva.toml"


def log(message: str) -> None:
    print(f"rva-firstboot: {message}", flush=True)


class Device:
    """The system being configured: the running one (root "/") or a directory (tests)."""

    def __init__(self, root: Path, rva: str) -> None:
        self.root = root
        self.live = root == Path("/")
        self.rva = rva

    def path(self, relative: str) -> Path:
        return self.root / relative

    def run(self, *argv: str) -> None:
        if self.live:
            subprocess.run(argv, check=False)

    def boot_dir(self) -> Path | None:
        for candidate in BOOT_DIRS:
            if (self.path(candidate) / BOOT_TOML).is_file():
                return self.path(candidate)
        return None


def write_file(path: Path, text: str, mode: int, owner: tuple[int, int] | None = None) -> None:
    """Replace a file atomically with the given mode (and owner, when running as root)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    if owner is not None and os.geteuid() == 0:
        os.chown(tmp, *owner)
    os.replace(tmp, path)
