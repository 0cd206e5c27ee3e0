"""A Raspberry Pi's files as `rva doctor --root` reads them, laid out in a directory: from a built
image (read with debugfs and mtools, nothing mounted), or from the inputs of a build that cannot
run here (--pi-source raspberrypi: Raspberry Pi's archive is out of reach), so that both are held
to rva/boards/raspberrypi.toml by the very checks a device runs."""

from __future__ import annotations

import subprocess
from pathlib import Path

from rva import boards
from rva.tools import doctor
from tests.image.build import REPO, Built

MODELS = {"rpi4": "Raspberry Pi 4 Model B Rev 1.5", "rpi5": "Raspberry Pi 5 Model B Rev 1.0"}
CAPTURE_UNIT = "usr/lib/systemd/system/rva-capture.service"
DMA_RULE = "usr/lib/udev/rules.d/60-rva-dma-heap.rules"


def _write(root: Path, relative: str, text: str) -> None:
    path = root / relative.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def from_image(built: Built, board: str, root: Path) -> Path:
    """The files the facts are about, copied out of a built image."""
    _write(root, "proc/device-tree/model", MODELS[board] + "\0")
    for name in built.root_listing("/usr/lib/udev/rules.d"):
        _write(
            root,
            f"usr/lib/udev/rules.d/{name}",
            built.root_file(f"/usr/lib/udev/rules.d/{name}") or "",
        )
    for path in (CAPTURE_UNIT, "var/lib/dpkg/status", "etc/group"):
        _write(root, path, built.root_file("/" + path) or "")
    for name in built.root_listing("/etc/apt/sources.list.d"):
        _write(root, f"etc/apt/sources.list.d/{name}", "")
    for name in built.boot_files():
        text = built.boot_file(name) if name.endswith(".txt") else ""
        _write(root, f"boot/firmware/{name}", text)
    return root


def build_inputs(board: str) -> dict[str, str]:
    """What image-build's shell files set for a --pi-source raspberrypi build of ``board``."""
    names = [
        "RPI_CONFIG_TXT", "RPI_CMDLINE", "RPI_KERNEL_PACKAGE", "RPI_KERNEL_IMAGE",
        "RPI_INITRAMFS", "RPI_ARCHIVE", "RPI_ARCHIVE_KEY_FINGERPRINT",
    ]  # fmt: skip
    script = (
        "set -eu; ROOT_PARTUUID=5256410a-02; HERE=image-build;"
        ' . image-build/base.conf; . "image-build/boards/$1.conf"; . image-build/raspberrypi.conf;'
        " for n in " + " ".join(names) + '; do printf "%s\\0%s\\0" "$n" "${!n}"; done;'
        ' printf "RPI_PACKAGES\\0%s\\0" "${RPI_PACKAGES[*]}"'
    )
    out = subprocess.run(
        ["bash", "-c", script, "inputs", board],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    return dict(zip(out[0:-1:2], out[1::2], strict=True))


def from_build_inputs(board: str, root: Path) -> Path:
    """The files a --pi-source raspberrypi build of ``board`` would write, from its inputs:
    config.txt and cmdline.txt as 30-board.sh writes them, the boot files it checks are the
    installed kernel's, the packages it installs, and RVA's own rootfs/ files."""
    inputs = build_inputs(board)
    _write(root, "proc/device-tree/model", MODELS[board] + "\0")
    _write(root, "boot/firmware/config.txt", inputs["RPI_CONFIG_TXT"] + "\n")
    _write(root, "boot/firmware/cmdline.txt", inputs["RPI_CMDLINE"] + "\n")
    for name in (inputs["RPI_KERNEL_IMAGE"], inputs["RPI_INITRAMFS"]):
        _write(root, f"boot/firmware/{name}", "")
    packages = [inputs["RPI_KERNEL_PACKAGE"], *inputs["RPI_PACKAGES"].split()]
    _write(root, "var/lib/dpkg/status", "".join(
        f"Package: {p}\nStatus: install ok installed\n\n" for p in packages
    ))  # fmt: skip
    _write(root, "etc/apt/sources.list.d/raspi.sources", "")
    for path in (CAPTURE_UNIT, DMA_RULE):
        _write(root, path, (REPO / "rootfs" / path).read_text())
    return root


def rows(root: Path) -> dict[str, doctor.Row]:
    """`rva doctor --root`'s fact rows for that directory, by name."""
    return {r.name: r for r in doctor.fact_rows(doctor.inspect(root))}


def applicable(board: str, variant: str) -> set[str]:
    """The rows a board built with ``variant`` must pass (each check of each fact about it),
    except those only a running device can show (its page size, its /dev nodes)."""
    live_only = {"page_size", "device_nodes"}
    names = set()
    for fact in boards.load("raspberrypi"):
        if not fact.applies(board, variant):
            continue
        for kind in fact.kinds:
            if kind not in live_only:
                names.add(fact.id if len(fact.kinds) == 1 else f"{fact.id} ({kind})")
    return names
