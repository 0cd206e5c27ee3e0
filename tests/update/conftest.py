"""Real RAUC update bundles for the update tests: made by image-build/bundle from a tiny ext4
root (mke2fs -d), signed with development keys made by the same script, plus the bundles a
device must refuse (another key, another board, altered, unsigned)."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT

BUNDLE = ROOT / "image-build/bundle"


def need(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.fail(
                f"{tool} missing: run `scripts/install-deps.sh image` (rauc, squashfs-tools)"
            )


def rootfs(base: Path, version: str, kernel_configs: tuple[str, ...] = ()) -> Path:
    """A root file system image with a kernel and initrd: random bytes, so that it does not
    compress below the size RAUC accepts (one verity block); and the kernels' build
    configurations given (/boot/config-<version>[-N])."""
    tree = base / f"tree-{version}"
    (tree / "boot").mkdir(parents=True)
    (tree / "etc").mkdir()
    (tree / f"boot/vmlinuz-{version}").write_bytes(os.urandom(64 * 1024))
    (tree / f"boot/initrd.img-{version}").write_bytes(os.urandom(64 * 1024))
    for n, config in enumerate(kernel_configs):
        (tree / f"boot/config-{version}{f'-{n}' if n else ''}").write_text(config)
    (tree / "etc/rva-version").write_text(version + "\n")
    image = base / f"root-{version}.ext4"
    subprocess.run(
        ["mke2fs", "-q", "-F", "-t", "ext4", "-d", str(tree), str(image), "8M"],
        capture_output=True,
        check=True,
    )
    return image


def make_bundle(
    out: Path, board: str, version: str, keys: Path, env: dict[str, str] | None = None
) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(
        [str(BUNDLE), "--board", board, "--rootfs", str(rootfs(out, version)),
         "--version", version, "--out", str(out), "--keys", str(keys)],
        env={**os.environ, **(env or {})}, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    return out / f"rva-{board}-{version}.raucb"


@dataclass
class Bundles:
    keys: Path  # the development CA (ca.pem: the device's keyring) and signing key
    good: Path  # rva-amd64, signed by keys
    other_key: Path  # rva-amd64, signed by another CA's key
    other_board: Path  # rva-arm64, signed by keys
    altered: Path  # good with one byte of its signed manifest changed
    unsigned: Path  # a squashfs with a manifest and no signature


@pytest.fixture(scope="session")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Bundles:
    need("rauc", "mksquashfs", "mke2fs", "openssl")
    base = tmp_path_factory.mktemp("bundles")
    keys = base / "keys"
    good = make_bundle(base, "amd64", "2.0", keys)
    other_key = make_bundle(base / "other", "amd64", "2.0", base / "other-keys")
    other_board = make_bundle(base / "arm64", "arm64", "2.0", keys)
    data = bytearray(good.read_bytes())
    at = data.rindex(b"compatible=rva-amd64")  # the manifest, inside the signed CMS data
    data[at + len("compatible=rva-")] = ord("X")
    altered = base / "altered.raucb"
    altered.write_bytes(bytes(data))
    content = base / "unsigned-content"
    content.mkdir()
    (content / "manifest.raucm").write_text("[update]\ncompatible=rva-amd64\nversion=2.0\n")
    unsigned = base / "unsigned.raucb"
    subprocess.run(["mksquashfs", str(content), str(unsigned), "-quiet", "-noappend"], check=True)
    return Bundles(keys, good, other_key, other_board, altered, unsigned)


def system_conf(path: Path, keyring: Path, board: str = "amd64") -> Path:
    """The image's system.conf (image-build/lib/ab.sh) with the test's keyring."""
    res = subprocess.run(
        ["bash", "-c", f'HERE={ROOT}/image-build; . "$HERE/lib/common.sh"; . "$HERE/lib/ab.sh"; '
         f"ab_system_conf {board}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    path.write_text(res.stdout.replace("/etc/rauc/keyring.pem", str(keyring)))
    return path
