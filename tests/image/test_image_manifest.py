"""image-build/lib/manifest.py on a small root made here (fast, no root, no image build): what
an image's manifest says it holds — Debian and Python packages, models with their sha256, the
partition table, the boot files — is what is there."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.image.build import REPO

MANIFEST = REPO / "image-build/lib/manifest.py"

DPKG_STATUS = """\
Package: redis-server
Status: install ok installed
Version: 5:8.0.2-3

Package: old-thing
Status: deinstall ok config-files
Version: 1.0

Package: python3
Status: install ok installed
Architecture: arm64
Version: 3.13.5-1
"""


@pytest.fixture
def made(tmp_path: Path) -> dict[str, Path]:
    if not shutil.which("sfdisk"):
        pytest.skip("sfdisk missing: scripts/install-deps.sh image")
    root, boot = tmp_path / "root", tmp_path / "boot"
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text(DPKG_STATUS)
    site = root / "opt/rva/venv/lib/python3.13/site-packages"
    for name, version in (("numpy", "2.2.6"), ("rva", "0.1.0")):
        info = site / f"{name}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    model = root / "var/lib/rva/models/yolov3-tiny/yolov3-tiny.weights"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"weights" * 100)
    (root / "boot").mkdir()
    (root / "boot/vmlinuz-6.12.1-arm64").write_bytes(b"k")
    (boot / "overlays").mkdir(parents=True)
    (boot / "config.txt").write_text("camera_auto_detect=1\n")
    (boot / "overlays/imx708.dtbo").write_bytes(b"o")
    image = tmp_path / "rva-rpi4-0.1.0.img"
    with image.open("wb") as f:
        f.truncate(16 << 20)
    subprocess.run(
        ["sfdisk", "--quiet", str(image)],
        input="label: dos\nstart=2048, size=8192, type=c, bootable\nstart=10240, type=83\n",
        text=True,
        check=True,
    )
    sums = tmp_path / "rva-rpi4-0.1.0.sha256"
    sums.write_text(f"{hashlib.sha256(image.read_bytes()).hexdigest()}  {image.name}\n")
    variables = tmp_path / "vars.json"
    variables.write_text('{"rva_camera_type": "auto"}')
    return {"root": root, "boot": boot, "image": image, "sums": sums, "vars": variables}


def test_manifest_lists_what_the_root_and_the_image_hold(made: dict[str, Path]) -> None:
    res = subprocess.run(
        [
            sys.executable,
            str(MANIFEST),
            *("--root", str(made["root"]), "--boot", str(made["boot"])),
            *("--image", str(made["image"]), "--sums", str(made["sums"])),
            *("--board", "rpi4", "--description", "Raspberry Pi 4", "--version", "0.1.0"),
            *("--suite", "trixie", "--arch", "arm64", "--boot-dir", "/boot/firmware"),
            *("--vars", str(made["vars"]), "--pi-source", "debian"),
            *("--timings", "10-rootfs=300", "--root-filesystems", "base=b.tar.zst"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    m = json.loads(res.stdout)
    assert m["name"] == "rva-rpi4-0.1.0" and m["board"] == "rpi4" and m["pi_source"] == "debian"
    assert m["packages"] == {"python3": "3.13.5-1", "redis-server": "5:8.0.2-3"}  # not removed ones
    assert m["python_packages"] == {"numpy": "2.2.6", "rva": "0.1.0"}
    weights = made["root"] / "var/lib/rva/models/yolov3-tiny/yolov3-tiny.weights"
    assert m["models"] == {
        "yolov3-tiny/yolov3-tiny.weights": {
            "bytes": 700,
            "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        }
    }
    assert m["kernel"] == "6.12.1-arm64"
    assert m["boot_partition"] == {
        "mount": "/boot/firmware",
        "files": ["config.txt", "overlays/imx708.dtbo"],
    }
    table = m["partition_table"]
    assert table["label"] == "dos"
    assert [(p["start"], p["size"], p["type"]) for p in table["partitions"]] == [
        (2048, 8192, "c"),
        (10240, 32768 - 10240, "83"),
    ]
    assert m["files"]["rva-rpi4-0.1.0.img"]["bytes"] == 16 << 20
    assert m["build_variables"] == {"rva_camera_type": "auto"}
    assert m["build_seconds"] == {"10-rootfs": 300}
    assert m["root_filesystems"] == {"base": "b.tar.zst"}
