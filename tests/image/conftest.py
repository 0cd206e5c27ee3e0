"""What the image tests share: the builds (amd64 alone; arm64, then rpi4 and rpi5 reusing its
provisioned root, in the background), the checks every image must pass, and how a booted VM is
waited for and read. The tests themselves: test_amd64.py, test_arm64.py, test_raspberrypi.py,
test_pagesize.py.

(rva-firstboot's own fast tests, on a directory, are in tests/image/test_firstboot.py.)
1. amd64: built with Redis + the real RedisTimeSeries module (rva_redis_source=module_file from
   .cache/redis-stack; its bullseye libssl1.1 and vtest.avi go in through --overlay). The test
   edits rva.toml on the image's boot partition with mtools, as a user would on a laptop (SSH
   key, Wi-Fi, camera source = the footage), and boots the disk image alone: OVMF (UEFI) ->
   systemd-boot -> Debian, QEMU TCG, -snapshot, ssh and the page forwarded to 127.0.0.1 only.
   Checked from the host: every RVA unit active, nothing failed, /healthz ok with time series on,
   /video streams annotated frames, camera:0:people has samples, first-boot steps happened (new
   host keys, root grown into the larger disk, hostname rva-xxxxxx, Wi-Fi and keys from rva.toml,
   Redis passwords unlike the image's); then a clean power-off.
2. arm64: built with the distribution's Redis (no arm64 TimeSeries module here), booted with
   qemu-system-aarch64 -M virt -cpu cortex-a72 (AAVMF, systemd-boot): RVA units active, /healthz
   answers with a counted frame.
3. rpi4, rpi5: built (sharing arm64's provisioned root; rpi5 with trixie-backports' kernel);
   partition table, boot files, the SD controller's driver inside the initrd, one kernel only.
   No Raspberry Pi can boot here (QEMU 7.2 has no Pi 4/5 machine).

Images go to .cache/image-build/test-images/<board>/ (replaced on each run), timings to
.cache/image-build/test-timings.json. Needs root and scripts/install-deps.sh image; cached root
file systems make a second run much faster (.cache/image-build/).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.image.build import CACHE, REPO, BuildQueue, Built, build, record_timing
from tests.image.qemu import VM

# Builds and boots: minutes each.
slow = pytest.mark.slow

FOOTAGE = CACHE / "footage" / "vtest.avi"
REDIS_STACK = CACHE / "redis-stack"
FOOTAGE_ON_DEVICE = "/var/lib/rva/footage/vtest.avi"
RVA_SERVICES = [
    "redis-server.service",
    "rva-init.service",
    "rva-capture.service",
    "rva-gears.service",
    "rva-web.service",
]
BOOT_TIMEOUT = float(os.environ.get("RVA_IMAGE_BOOT_TIMEOUT", "900"))
WIFI_PASSWORD = "correct horse battery"


# -- builds -----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def can_build_images() -> None:
    if os.geteuid() != 0:
        pytest.skip("building images needs root")
    tools = ["mmdebstrap", "mkfs.vfat", "mcopy", "sfdisk", "mke2fs", "debugfs", "zstd", "arch-test"]
    missing = [t for t in tools if not shutil.which(t)]
    if missing:
        pytest.skip(f"missing {', '.join(missing)}: scripts/install-deps.sh image")
    if not (REPO / ".venv/bin/ansible-playbook").exists() and not shutil.which("ansible-playbook"):
        pytest.skip("ansible-playbook missing: pip install -r ansible/requirements-dev.txt")
    for script, path in (
        ("get-footage.sh", FOOTAGE),
        ("get-redis-stack.sh", REDIS_STACK / "redistimeseries.so"),
    ):
        if not path.exists():
            subprocess.run([str(REPO / "scripts" / script)], check=True)


@pytest.fixture(scope="session")
def test_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    key = tmp_path_factory.mktemp("ssh") / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "rva-image-test", "-f", str(key)],
        check=True,
    )
    return key


def footage_overlay(tmp: Path, with_redis_libs: bool) -> Path:
    overlay = tmp / "overlay"
    (overlay / FOOTAGE_ON_DEVICE.lstrip("/")).parent.mkdir(parents=True)
    shutil.copy(FOOTAGE, overlay / FOOTAGE_ON_DEVICE.lstrip("/"))
    if with_redis_libs:
        # Test only: Redis Stack's module links against OpenSSL 1.1 (bullseye's libssl1.1).
        libdir = overlay / "usr/lib/x86_64-linux-gnu"
        libdir.mkdir(parents=True)
        for lib in (REDIS_STACK / "lib").glob("lib*.so.1.1"):
            shutil.copy2(lib, libdir / lib.name)
    # Test only: under QEMU TCG one YOLOv3-tiny pass takes 10-60 s (a real device: well under a
    # second), longer than rva-gears' watchdog (30 s, pinged between frames) allows.
    dropin = overlay / "etc/systemd/system/rva-gears.service.d/zz-test-emulated-cpu.conf"
    dropin.parent.mkdir(parents=True)
    dropin.write_text(
        "# tests/image/conftest.py: QEMU TCG is far slower than any real device.\n"
        "[Service]\nWatchdogSec=15min\nTimeoutStartSec=15min\n"
    )
    return overlay


def user_boot_toml(key: Path) -> str:
    return (
        "# Written by tests/image/conftest.py the way a user edits the card.\n"
        "[device]\n"
        f'ssh_authorized_keys = ["{key.with_suffix(".pub").read_text().strip()}"]\n\n'
        "[device.wifi]\n"
        f'ssid = "rva-test"\npassword = "{WIFI_PASSWORD}"\ncountry = "DE"\n\n'
        "[cameras.0]\n"
        f'source = "{FOOTAGE_ON_DEVICE}"\n'
        # Settings a user may choose, light for an emulated CPU (under QEMU TCG one detector
        # pass takes seconds): the file read as fast as the detector takes frames (rate = max:
        # no frames decoded only to be skipped), one inference thread, a smaller detector
        # input. Measured on the amd64 VM: 1.2 host cores busy instead of 2.0 (the file at its
        # own 10 fps, two threads), so the arm64 builds running meanwhile get the other core.
        'width = 320\nheight = 240\nfps = 4\nrate = "max"\n\n'
        "[gear]\ninput_size = 256\nthreads = 1\n"
    )


@pytest.fixture(scope="session")
def amd64_image(
    can_build_images: None, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Built:
    # When arm64 images are wanted too, their long chain builds in the background meanwhile.
    if any(
        {"arm64_image", "raspi_images", "arm64_16k_image"} & set(item.fixturenames)
        for item in request.session.items
    ):
        request.getfixturevalue("arm_builds")
    return build("amd64", *amd64_build_args(tmp_path_factory.mktemp("amd64-build")))


def amd64_build_args(tmp: Path) -> tuple[str, ...]:
    """The amd64 test images' variables and overlay: Redis with the real RedisTimeSeries module,
    the footage. Images built with the same variables share one provisioned root."""
    return (
        "--var",
        "rva_redis_source=module_file",
        "--var",
        f"rva_redis_module_file={REDIS_STACK / 'redistimeseries.so'}",
        "--overlay",
        str(footage_overlay(tmp, with_redis_libs=True)),
    )


@pytest.fixture(scope="session")
def arm_builds(
    can_build_images: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BuildQueue]:
    """arm64, then arm64 on the 16 KiB kernel, rpi4 and rpi5 (which reuse arm64's provisioned
    root: same variables), in the background from the first image test on that needs them."""
    tmp = tmp_path_factory.mktemp("arm64-build")
    overlay = str(footage_overlay(tmp, with_redis_libs=False))
    distro = ("--var", "rva_redis_source=distro")
    # The Pis from Debian's packages: Raspberry Pi's archive (the default) is out of reach here.
    debian_pi = (*distro, "--pi-source", "debian")
    # arm64:16k: the arm64 image on Debian's 16 KiB-page kernel, the page size of a Pi 5 under
    # Raspberry Pi OS's own kernel (test_pagesize.py).
    # Not compressed: only booted, never published.
    sixteen_k = (*distro, "--overlay", overlay, "--kernel", "linux-image-arm64-16k")
    sixteen_k += ("--compress", "none")
    queue = BuildQueue(
        [
            ("arm64", (*distro, "--overlay", overlay)),
            ("arm64:16k", sixteen_k),  # booted while the Pis build
            ("rpi4", debian_pi),
            ("rpi5", debian_pi),
        ]
    )
    queue.start()
    yield queue
    queue.stop()


@pytest.fixture(scope="session")
def arm64_image(arm_builds: BuildQueue) -> Built:
    return arm_builds.result("arm64")


@pytest.fixture(scope="session")
def arm64_16k_image(arm_builds: BuildQueue) -> Built:
    return arm_builds.result("arm64:16k")


@pytest.fixture(scope="session")
def raspi_images(arm_builds: BuildQueue) -> dict[str, Built]:
    return {board: arm_builds.result(board) for board in ("rpi4", "rpi5")}


# -- what every image must be ---------------------------------------------------------------
def check_published(built: Built) -> None:
    files = sorted(p.name for p in built.out.glob("rva-*"))
    name = built.image.stem
    assert re.fullmatch(rf"rva-{built.board}-[\w.+-]+", name)
    assert files == sorted(
        f"{name}{s}" for s in (".img", ".img.zst", ".sha256", ".manifest.json")
    ), files
    check = subprocess.run(
        ["sha256sum", "-c", f"{name}.sha256"], cwd=built.out, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    zst = built.out / f"{name}.img.zst"
    assert zst.stat().st_size < built.image.stat().st_size / 2
    manifest = built.manifest
    packages, python = manifest["packages"], manifest["python_packages"]
    for needed in (
        "systemd",
        "openssh-server",
        "avahi-daemon",
        "redis-server",
        "python3",
        "cloud-guest-utils",
    ):
        assert needed in packages, needed
    assert any(re.fullmatch(r"linux-image-\d.*", p) for p in packages)
    # No compilers or build tools in the image.
    for absent in ("gcc", "g++", "make", "build-essential", "python3-dev", "libc6-dev", "ansible"):
        assert absent not in packages, absent
    for needed in ("rva", "opencv-python-headless", "numpy", "redis", "bottle"):
        assert needed in python, needed
    assert any(m.endswith(".weights") for m in manifest["models"]), manifest["models"]


def check_root_filesystem(built: Built) -> None:
    """What must never ship, read from the image's ext4 without mounting it."""
    assert built.probe(2).get("LABEL") == "rva-root" and built.probe(2).get("TYPE") == "ext4"
    assert built.probe(1).get("LABEL") == "RVA-BOOT" and built.probe(1).get("TYPE") == "vfat"
    assert [f for f in built.root_listing("/etc/ssh") if f.startswith("ssh_host_")] == []
    assert (built.root_file("/etc/machine-id") or "").strip() == "uninitialized"
    shadow = built.root_file("/etc/shadow") or ""
    root_line = next(line for line in shadow.splitlines() if line.startswith("root:"))
    assert root_line.split(":")[1] in ("*", "!", "!*"), "root must have no password"
    assert all(line.split(":")[1] in ("*", "!", "!*", "!!") for line in shadow.splitlines() if line)
    assert built.root_listing("/var/lib/apt/lists") in (
        [],
        ["auxfiles"],
        ["partial"],
        ["auxfiles", "partial"],
    )
    assert built.root_listing("/usr/share/man") == []
    assert ".cache" not in built.root_listing("/root")
    # The build host's CA bundle was lent for provisioning only.
    assert (built.root_file("/etc/ssl/certs/ca-certificates.crt") or "x") != Path(
        "/etc/ssl/certs/ca-certificates.crt"
    ).read_text()
    fstab = built.root_file("/etc/fstab") or ""
    assert "LABEL=rva-root" in fstab and "LABEL=RVA-BOOT" in fstab


def healthz(vm: VM) -> dict:
    status, body = vm.http("/healthz")
    return {
        "code": status,
        "body": json.loads(body) if body.startswith(b"{") else body.decode(errors="replace"),
    }


def people_counted(health: dict) -> bool:
    body = health.get("body")
    cameras = body.get("cameras", {}) if isinstance(body, dict) else {}
    return any(isinstance(c, dict) and c.get("people") is not None for c in cameras.values())


def wait_until_counting(vm: VM, board: str, timeseries: bool) -> VM:
    try:
        vm.wait_for_ssh(BOOT_TIMEOUT)
        ssh_s = vm.elapsed()
        deadline = time.monotonic() + BOOT_TIMEOUT - ssh_s
        health: dict = {}
        while time.monotonic() < deadline:
            try:
                health = healthz(vm)
            except OSError as exc:
                health = {"code": 0, "body": str(exc)}
            if health["code"] == 200 and people_counted(health):
                break
            time.sleep(5)
        else:
            pytest.fail(f"/healthz never reported counted people: {health}\n{diagnostics(vm)}")
        record_timing(f"boot {board}", {"ssh_s": ssh_s, "healthz_counting_s": vm.elapsed()})
        return vm
    except BaseException:
        print(diagnostics(vm))
        vm.kill()
        raise


def diagnostics(vm: VM) -> str:
    out = "--- console\n" + vm.console_tail()
    if vm.alive():
        try:
            out += "\n--- units\n" + vm.ssh(
                "systemctl --failed --no-pager; systemctl status --no-pager --lines=5 "
                + "rva-firstboot rva-grow-root "
                + " ".join(RVA_SERVICES)
                + "; journalctl -b --no-pager -n 80 -u 'rva-*' -u redis-server",
                timeout=60,
                check=False,
            )
        except Exception as exc:
            out += f"\n(ssh failed: {exc})"
    return out


def vm_states(vm: VM, units: list[str]) -> dict[str, str]:
    return dict(
        zip(
            units,
            vm.ssh(f"systemctl is-active {' '.join(units)}", check=False).split(),
            strict=True,
        )
    )


def camera_source(vm: VM) -> dict:
    body = healthz(vm)["body"]
    return body["cameras"]["0"].get("source", {}) if isinstance(body, dict) else {}


def ref_ms(entry: list) -> int:
    """The millisecond part of the frame id a camera:<id>:yolo result refers to (its `ref`)."""
    fields = dict(zip(entry[1][::2], entry[1][1::2], strict=True))
    return int(fields.get("ref", "0-0").split("-")[0])
