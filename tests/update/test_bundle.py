"""image-build/bundle with the real rauc: the bundle it makes is a verity bundle for the
board's compatible whose signature `rauc info` verifies against the keyring; a bundle signed by
another CA, one whose signed manifest was changed, and one without signature are refused; a
changed payload is refused by `rauc extract` (dm-verity's hash tree, checked as it is read)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.update.conftest import BUNDLE, Bundles, make_bundle, rootfs, system_conf


def _rauc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["rauc", *args], capture_output=True, text=True, check=False)


def test_bundle_is_signed_for_the_board(bundles: Bundles) -> None:
    res = _rauc(
        "info", "--output-format=json", f"--keyring={bundles.keys}/ca.pem", str(bundles.good)
    )
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["compatible"] == "rva-amd64" and info["version"] == "2.0"
    [image] = info["images"]
    assert image["rootfs"]["filename"] == "rootfs.ext4"
    assert image["rootfs"]["hooks"] == ["post-install"]
    assert "Verified inline signature by 'O = RVA development, CN = RVA development signing'" in (
        res.stderr
    )
    text = _rauc("info", f"--keyring={bundles.keys}/ca.pem", str(bundles.good)).stdout
    assert "Bundle Format: \tverity" in text


def test_system_conf_reads_and_verifies(bundles: Bundles, tmp_path: Path) -> None:
    """RAUC parses the image's system.conf (custom backend, slots) and takes its keyring."""
    conf = system_conf(tmp_path / "system.conf", bundles.keys / "ca.pem")
    res = _rauc(f"--conf={conf}", "info", "--output-format=json", str(bundles.good))
    assert res.returncode == 0, res.stderr
    res = _rauc(f"--conf={conf}", "info", str(bundles.other_key))
    assert res.returncode != 0


def test_refused_bundles(bundles: Bundles) -> None:
    keyring = f"--keyring={bundles.keys}/ca.pem"
    other = _rauc("info", keyring, str(bundles.other_key))
    assert other.returncode != 0 and "signature verification failed" in other.stderr
    altered = _rauc("info", keyring, str(bundles.altered))
    assert altered.returncode != 0 and "signature verification failed" in altered.stderr
    unsigned = _rauc("info", keyring, str(bundles.unsigned))
    assert unsigned.returncode != 0 and "Signature size is 0" in unsigned.stderr


def test_changed_payload_is_refused_when_read(bundles: Bundles, tmp_path: Path) -> None:
    keyring = f"--keyring={bundles.keys}/ca.pem"
    ok = _rauc("extract", keyring, str(bundles.good), str(tmp_path / "good"))
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "good/rootfs.ext4").stat().st_size == 8 << 20
    data = bytearray(bundles.good.read_bytes())
    data[len(data) // 4] ^= 0xFF  # inside the squashfs: the signature still verifies
    changed = tmp_path / "changed.raucb"
    changed.write_bytes(bytes(data))
    assert _rauc("info", keyring, str(changed)).returncode == 0
    res = _rauc("extract", keyring, str(changed), str(tmp_path / "changed"))
    assert "bundle payload is corrupted" in res.stderr


def test_production_keys_from_the_environment(bundles: Bundles, tmp_path: Path) -> None:
    """RVA_RAUC_CERT/KEY/KEYRING sign instead of the development keys; all three or none."""
    keys = bundles.keys
    env = {
        "RVA_RAUC_CERT": str(keys / "signing.pem"),
        "RVA_RAUC_KEY": str(keys / "signing.key"),
        "RVA_RAUC_KEYRING": str(keys / "ca.pem"),
    }
    made = make_bundle(tmp_path, "amd64", "3.0", tmp_path / "unused-dev-keys", env)
    assert made.is_file() and not (tmp_path / "unused-dev-keys").exists()
    res = subprocess.run(
        [str(BUNDLE), "--board", "amd64", "--rootfs", str(rootfs(tmp_path, "3.1")),
         "--version", "3.1", "--out", str(tmp_path)],
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "RVA_RAUC_CERT": str(keys / "signing.pem")},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert res.returncode == 1
    assert "RVA_RAUC_KEY is not set" in res.stderr


SQUASHFS_COMPRESSORS = {1: "gzip", 4: "xz", 6: "zstd"}
# The lines that matter of Debian's kernel config and of Raspberry Pi's bcm2711_defconfig.
DEBIAN_CONFIG = "CONFIG_SQUASHFS=m\nCONFIG_SQUASHFS_ZLIB=y\nCONFIG_SQUASHFS_ZSTD=y\n"
PI_CONFIG = "CONFIG_SQUASHFS=m\nCONFIG_SQUASHFS_LZO=y\nCONFIG_SQUASHFS_XZ=y\n"


def _compressor(bundle: Path) -> str:
    """The squashfs superblock's compression id (a RAUC bundle starts with its squashfs)."""
    with bundle.open("rb") as f:
        head = f.read(22)
    assert head[:4] == b"hsqs", head[:4]
    return SQUASHFS_COMPRESSORS.get(int.from_bytes(head[20:22], "little"), "other")


def test_compression_follows_what_the_roots_kernels_read(bundles: Bundles, tmp_path: Path) -> None:
    """zstd only when every kernel in the root reads it; gzip otherwise (no config, a kernel
    without CONFIG_SQUASHFS_ZSTD); --compression overrides. The zstd bundle verifies and
    extracts like the gzip one."""

    def bundle(name: str, configs: tuple[str, ...], *extra: str) -> tuple[Path, str]:
        out = tmp_path / name
        out.mkdir()
        res = subprocess.run(
            [str(BUNDLE), "--board", "amd64", "--rootfs", str(rootfs(out, "4.0", configs)),
             "--version", "4.0", "--out", str(out), "--keys", str(bundles.keys), *extra],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        return out / "rva-amd64-4.0.raucb", res.stderr

    debian, log = bundle("debian", (DEBIAN_CONFIG,))
    assert _compressor(debian) == "zstd" and "(zstd)" in log, log
    assert _compressor(bundles.good) == "gzip"  # a root without /boot/config-*
    assert _compressor(bundle("pi", (PI_CONFIG,))[0]) == "gzip"
    assert _compressor(bundle("mixed", (DEBIAN_CONFIG, PI_CONFIG))[0]) == "gzip"
    assert _compressor(bundle("forced", (PI_CONFIG,), "--compression", "zstd")[0]) == "zstd"
    keyring = f"--keyring={bundles.keys}/ca.pem"
    assert _rauc("info", keyring, str(debian)).returncode == 0
    res = _rauc("extract", keyring, str(debian), str(tmp_path / "extracted"))
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "extracted/rootfs.ext4").stat().st_size == 8 << 20


def test_bad_arguments_say_what(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BUNDLE), *args], capture_output=True, text=True, check=False)

    res = run("--board", "amd64", "--rootfs", str(tmp_path / "none.ext4"), "--version", "1",
              "--out", str(tmp_path))  # fmt: skip
    assert res.returncode == 1 and f"--rootfs {tmp_path}/none.ext4: no such file" in res.stderr
    res = run("--board", "pdp11", "--rootfs", "x", "--version", "1", "--out", str(tmp_path))
    assert res.returncode == 1 and "no board pdp11" in res.stderr
    image = rootfs(tmp_path, "1")
    res = run(
        "--board", "amd64", "--rootfs", str(image), "--version", "1 2", "--out", str(tmp_path)
    )
    assert res.returncode == 1 and "letters, digits and .+~_- only" in res.stderr
    res = run("--board", "amd64", "--rootfs", str(image), "--version", "1", "--out",
              str(tmp_path), "--compression", "lz4")  # fmt: skip
    assert res.returncode == 1 and "--compression lz4: auto, zstd or gzip" in res.stderr
    res = run("--board", "amd64", "--rootfs", str(image), "--version", "1", "--out",
              str(tmp_path), "--compression")  # fmt: skip
    assert res.returncode == 1 and "--compression needs a value" in res.stderr, res.stderr
