"""Write the manifest of a built image (JSON on stdout): what is inside and how it was built.

Reads the root file system directory and the boot files from the host side (no chroot, so no
emulation for arm64): dpkg's status file, the venv's dist-info directories, the model cache.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import re
import subprocess
from pathlib import Path


def dpkg_packages(root: Path) -> dict[str, str]:
    packages: dict[str, str] = {}
    for stanza in (root / "var/lib/dpkg/status").read_text().split("\n\n"):
        fields = dict(re.findall(r"^([A-Za-z-]+): (.*)$", stanza, re.M))
        if fields.get("Status", "").endswith(" installed"):
            packages[fields["Package"]] = fields["Version"]
    return dict(sorted(packages.items()))


def python_packages(root: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for metadata in root.glob("opt/rva/venv/lib/python3*/site-packages/*.dist-info/METADATA"):
        fields = dict(
            re.findall(r"^(Name|Version): (.*)$", metadata.read_text(errors="replace"), re.M)
        )
        if "Name" in fields:
            found[fields["Name"]] = fields.get("Version", "")
    return dict(sorted(found.items(), key=lambda kv: kv[0].lower()))


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main() -> None:
    p = argparse.ArgumentParser()
    for name in (
        "root",
        "boot",
        "image",
        "sums",
        "board",
        "description",
        "version",
        "suite",
        "arch",
        "boot-dir",
        "vars",
    ):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--pi-source", default="", help="raspberrypi or debian (rpi4/rpi5 only)")
    p.add_argument("--timings", nargs="*", default=[])
    p.add_argument(
        "--root-filesystems", nargs="*", default=[], help="KIND=tarball the root came from"
    )
    a = p.parse_args()
    root, boot, image = Path(a.root), Path(a.boot), Path(a.image)
    sums = dict(line.split()[::-1] for line in Path(a.sums).read_text().splitlines())
    table = json.loads(
        subprocess.run(
            ["sfdisk", "--json", str(image)], capture_output=True, text=True, check=True
        ).stdout
    )["partitiontable"]
    kernels = sorted(p.name.removeprefix("vmlinuz-") for p in (root / "boot").glob("vmlinuz-*"))
    models = {
        str(f.relative_to(root / "var/lib/rva/models")): {
            "bytes": f.stat().st_size,
            "sha256": sha256(f),
        }
        for f in sorted((root / "var/lib/rva/models").rglob("*"))
        if f.is_file()
    }
    manifest = {
        "name": image.stem,
        "board": a.board,
        "description": a.description,
        "version": a.version,
        "debian": {"suite": a.suite, "arch": a.arch},
        "built": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "files": {
            name: {"bytes": (image.parent / name).stat().st_size, "sha256": digest}
            for name, digest in sums.items()
        },
        "partition_table": {
            "label": table["label"],
            "sector_size": table.get("sectorsize", 512),
            "partitions": [
                {k: part[k] for k in ("start", "size", "type", "name", "bootable") if k in part}
                for part in table["partitions"]
            ],
        },
        "boot_partition": {
            "mount": a.boot_dir,
            "files": sorted(str(f.relative_to(boot)) for f in boot.rglob("*") if f.is_file()),
        },
        "kernel": kernels[-1] if kernels else None,
        "build_variables": json.loads(Path(a.vars).read_text()),
        # rpi4/rpi5: where kernel, firmware and camera stack came from (build --pi-source).
        "pi_source": a.pi_source or None,
        "build_seconds": {k: int(v) for k, v in (t.split("=", 1) for t in a.timings)},
        # The cached root filesystems the image was made from: images of one architecture built
        # with the same variables share the provisioned one.
        "root_filesystems": dict(r.split("=", 1) for r in a.root_filesystems),
        "packages": dpkg_packages(root),
        "python_packages": python_packages(root),
        "models": models,
    }
    print(json.dumps(manifest, indent=2))


if __name__ == "__main__":
    main()
