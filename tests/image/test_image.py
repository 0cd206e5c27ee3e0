"""Appliance images: image-build/build for every board; the generic ones booted under QEMU (TCG).

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

import http.client
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
from tests.image.qemu import VM, missing_tools

pytestmark = pytest.mark.image
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


def _footage_overlay(tmp: Path, with_redis_libs: bool) -> Path:
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
        "# tests/image/test_image.py: QEMU TCG is far slower than any real device.\n"
        "[Service]\nWatchdogSec=15min\nTimeoutStartSec=15min\n"
    )
    return overlay


def _user_boot_toml(key: Path) -> str:
    return (
        "# Written by tests/image/test_image.py the way a user edits the card.\n"
        "[device]\n"
        f'ssh_authorized_keys = ["{key.with_suffix(".pub").read_text().strip()}"]\n\n'
        "[device.wifi]\n"
        f'ssid = "rva-test"\npassword = "{WIFI_PASSWORD}"\ncountry = "DE"\n\n'
        "[cameras.0]\n"
        f'source = "{FOOTAGE_ON_DEVICE}"\n'
    )


@pytest.fixture(scope="session")
def amd64_image(
    can_build_images: None, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Built:
    # When arm64 images are wanted too, their long chain builds in the background meanwhile.
    if any(
        {"arm64_image", "raspi_images"} & set(item.fixturenames) for item in request.session.items
    ):
        request.getfixturevalue("arm_builds")
    tmp = tmp_path_factory.mktemp("amd64-build")
    return build(
        "amd64",
        "--var",
        "rva_redis_source=module_file",
        "--var",
        f"rva_redis_module_file={REDIS_STACK / 'redistimeseries.so'}",
        "--overlay",
        str(_footage_overlay(tmp, with_redis_libs=True)),
    )


@pytest.fixture(scope="session")
def arm_builds(
    can_build_images: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BuildQueue]:
    """arm64, then rpi4 and rpi5 (which reuse arm64's provisioned root: same variables), in the
    background from the first image test on that needs them."""
    tmp = tmp_path_factory.mktemp("arm64-build")
    overlay = str(_footage_overlay(tmp, with_redis_libs=False))
    distro = ("--var", "rva_redis_source=distro")
    # The Pis from Debian's packages: Raspberry Pi's archive (the default) is out of reach here.
    debian_pi = (*distro, "--pi-source", "debian")
    queue = BuildQueue(
        [("arm64", (*distro, "--overlay", overlay)), ("rpi4", debian_pi), ("rpi5", debian_pi)]
    )
    queue.start()
    yield queue
    queue.stop()


@pytest.fixture(scope="session")
def arm64_image(arm_builds: BuildQueue) -> Built:
    return arm_builds.result("arm64")


@pytest.fixture(scope="session")
def raspi_images(arm_builds: BuildQueue) -> dict[str, Built]:
    return {board: arm_builds.result(board) for board in ("rpi4", "rpi5")}


# -- what every image must be ---------------------------------------------------------------
def _check_published(built: Built) -> None:
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


def _check_root_filesystem(built: Built) -> None:
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


# -- 2. amd64 ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def amd64_vm(
    amd64_image: Built, test_key: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VM]:
    missing = missing_tools("amd64")
    if missing:
        pytest.skip(f"missing {', '.join(missing)}: scripts/install-deps.sh image")
    _check_published(amd64_image)  # before the boot partition is edited below
    workdir = tmp_path_factory.mktemp("amd64-vm")
    amd64_image.put_boot_file("rva.toml", _user_boot_toml(test_key), workdir)
    vm = VM("amd64", amd64_image.image, workdir, test_key)
    vm.start()
    try:
        yield _wait_until_counting(vm, "amd64", timeseries=True)
    finally:
        vm.kill()


def _healthz(vm: VM) -> dict:
    status, body = vm.http("/healthz")
    return {
        "code": status,
        "body": json.loads(body) if body.startswith(b"{") else body.decode(errors="replace"),
    }


def _people_counted(health: dict) -> bool:
    body = health.get("body")
    cameras = body.get("cameras", {}) if isinstance(body, dict) else {}
    return any(isinstance(c, dict) and c.get("people") is not None for c in cameras.values())


def _wait_until_counting(vm: VM, board: str, timeseries: bool) -> VM:
    try:
        vm.wait_for_ssh(BOOT_TIMEOUT)
        ssh_s = vm.elapsed()
        deadline = time.monotonic() + BOOT_TIMEOUT - ssh_s
        health: dict = {}
        while time.monotonic() < deadline:
            try:
                health = _healthz(vm)
            except OSError as exc:
                health = {"code": 0, "body": str(exc)}
            if health["code"] == 200 and _people_counted(health):
                break
            time.sleep(5)
        else:
            pytest.fail(f"/healthz never reported counted people: {health}\n{_diagnostics(vm)}")
        record_timing(f"boot {board}", {"ssh_s": ssh_s, "healthz_counting_s": vm.elapsed()})
        return vm
    except BaseException:
        print(_diagnostics(vm))
        vm.kill()
        raise


def _diagnostics(vm: VM) -> str:
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


@slow
def test_amd64_image_is_published_with_sums_and_manifest(amd64_image: Built) -> None:
    _check_published(amd64_image)
    assert amd64_image.manifest["partition_table"]["label"] == "gpt"
    boot = amd64_image.manifest["boot_partition"]["files"]
    assert {
        "EFI/BOOT/BOOTX64.EFI",
        "loader/entries/rva.conf",
        "rva/vmlinuz",
        "rva/initrd.img",
        "rva.toml",
    } <= set(boot)


@slow
def test_amd64_image_ships_no_keys_ids_passwords_or_caches(amd64_image: Built) -> None:
    _check_root_filesystem(amd64_image)


@slow
def test_amd64_boots_to_every_rva_unit_active_and_nothing_failed(amd64_vm: VM) -> None:
    states = vm_states(
        amd64_vm,
        [
            *RVA_SERVICES,
            "rva-firstboot.service",
            "rva-grow-root.service",
            "rva-mdns-port.path",
            "avahi-daemon.service",
            "ssh.service",
            "systemd-networkd.service",
        ],
    )
    assert set(states.values()) == {"active"}, states
    assert amd64_vm.ssh("systemctl --failed --no-legend --plain").strip() == ""
    assert amd64_vm.ssh("systemctl is-enabled rva.target").strip() == "enabled"


def vm_states(vm: VM, units: list[str]) -> dict[str, str]:
    return dict(
        zip(
            units,
            vm.ssh(f"systemctl is-active {' '.join(units)}", check=False).split(),
            strict=True,
        )
    )


@slow
def test_amd64_healthz_reports_time_series_on_and_people_counted(amd64_vm: VM) -> None:
    health = _healthz(amd64_vm)
    assert health["code"] == 200, health
    assert health["body"]["timeseries"] == "on", health
    assert _people_counted(health), health


@slow
def test_amd64_people_time_series_fills_with_samples(amd64_vm: VM) -> None:
    deadline = time.monotonic() + 120
    samples = 0
    while time.monotonic() < deadline:
        info = amd64_vm.ssh(
            "redis-cli --no-auth-warning TS.INFO camera:0:people", check=False
        ).split("\n")
        if "totalSamples" in info:
            samples = int(info[info.index("totalSamples") + 1])
            if samples > 0:
                break
        time.sleep(5)
    assert samples > 0, "camera:0:people has no samples"


@slow
def test_amd64_video_streams_annotated_frames(amd64_vm: VM) -> None:
    import cv2
    import numpy as np

    conn = http.client.HTTPConnection("127.0.0.1", amd64_vm.web_port, timeout=60)
    conn.request("GET", "/video?camera=0")
    resp = conn.getresponse()
    try:
        assert resp.status == 200 and resp.getheader("Content-Type", "").startswith(
            "multipart/x-mixed-replace"
        )
        frames, buffer, deadline = [], b"", time.monotonic() + 120
        boxed = False
        while time.monotonic() < deadline and not (len(frames) >= 3 and boxed):
            buffer += resp.read1(65536)
            while (start := buffer.find(b"\xff\xd8")) >= 0 and (
                end := buffer.find(b"\xff\xd9", start)
            ) >= 0:
                jpeg, buffer = buffer[start : end + 2], buffer[end + 2 :]
                img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
                if img is None:
                    continue
                frames.append(img)
                b, g, r = (img[..., i].astype(np.int16) for i in range(3))
                boxed = boxed or int(((g > 170) & (g - r > 110) & (g - b > 110)).sum()) > 200
    finally:
        resp.close()
        conn.close()
    assert len(frames) >= 3, f"{len(frames)} frames from /video"
    assert all((f.shape[1], f.shape[0]) == (768, 576) for f in frames)
    # The label: a black box with white text in the top-left corner of every frame.
    for img in frames:
        label = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)[0:30, 0:130]
        assert (label < 40).mean() > 0.5 and 0.03 < (label > 200).mean() < 0.5
    if not boxed:
        state = amd64_vm.ssh(
            "redis-cli --no-auth-warning XREVRANGE camera:0:yolo + - COUNT 3 | head -c 2000; "
            "redis-cli --no-auth-warning HGETALL camera:0:latest; "
            "journalctl -b --no-pager -n 30 -u rva-web",
            check=False,
        )
        pytest.fail(f"no frame with green person boxes in {len(frames)} frames\n{state}")


@slow
def test_amd64_first_boot_made_the_image_this_devices_own(amd64_vm: VM, amd64_image: Built) -> None:
    vm = amd64_vm
    hostname = vm.ssh("hostname").strip()
    assert re.fullmatch(r"rva-[0-9a-f]{6}", hostname), hostname
    assert vm.ssh("cat /etc/machine-id").strip().endswith(hostname[-6:])
    avahi = vm.ssh("journalctl -b --no-pager -u avahi-daemon")
    assert f"Host name is {hostname}.local" in avahi
    assert f"RVA people counter on {hostname}" in avahi
    # Host keys were made on this boot (the image has none).
    boot_epoch = int(vm.ssh("stat -c %Y /proc/1").strip())
    key_epoch = int(vm.ssh("stat -c %Y /etc/ssh/ssh_host_ed25519_key").strip())
    assert key_epoch >= boot_epoch - 5
    # The root file system grew into the disk, which is 1 GiB larger than the image.
    root_bytes = int(vm.ssh("df -B1 --output=size / | tail -n 1").strip())
    image_root = int(amd64_image.partitions()[1]["size"]) * 512
    assert root_bytes > image_root + 900 * 1024 * 1024, (root_bytes, image_root)
    # rva.toml from the boot partition: camera, Wi-Fi (no adapter here, so not started), SSH key.
    assert f'source = "{FOOTAGE_ON_DEVICE}"' in vm.ssh("cat /etc/rva/rva.toml")
    wifi = vm.ssh("cat /etc/wpa_supplicant/wpa_supplicant-wlan0.conf")
    assert f"ssid={b'rva-test'.hex()}" in wifi and WIFI_PASSWORD not in wifi
    assert "rva-image-test" in vm.ssh("cat /etc/ssh/authorized_keys.d/root")
    # Password login is off, and root has none.
    sshd = vm.ssh("sshd -T")
    assert "passwordauthentication no" in sshd and "kbdinteractiveauthentication no" in sshd
    assert vm.ssh("passwd -S root").split()[1] == "L"
    # The Redis passwords are this device's, not the image's.
    image_password = amd64_image.root_file("/etc/rva/credentials/rva-web.password")
    assert (
        image_password
        and vm.ssh("cat /etc/rva/credentials/rva-web.password").strip() != image_password.strip()
    )


@slow
def test_amd64_mdns_follows_a_web_port_edited_on_the_device(amd64_vm: VM) -> None:
    vm = amd64_vm
    service = "/etc/avahi/services/rva-http.service"

    def announced() -> str:
        return vm.ssh(f"grep -o '<port>[0-9]*</port>' {service}").strip()

    def wait_for_port(port: int) -> None:
        deadline = time.monotonic() + 60
        while announced() != f"<port>{port}</port>" and time.monotonic() < deadline:
            time.sleep(2)
        assert announced() == f"<port>{port}</port>", vm.ssh(
            "systemctl status --no-pager rva-mdns-port.path rva-mdns-port.service", check=False
        )

    assert announced() == "<port>5000</port>"
    config = "/etc/rva/rva.toml"
    assert "[web]" not in vm.ssh(f"cat {config}")  # the port is the default
    # A new file renamed over the old one, as most editors save.
    vm.ssh(
        f"cp -p {config} /root/rva.toml.saved && "
        f"{{ cat {config}; printf '\\n[web]\\nport = 8080\\n'; }} > {config}.new && "
        f"mv {config}.new {config}"
    )
    try:
        wait_for_port(8080)
        # avahi-daemon noticed the file and reloaded it.
        deadline = time.monotonic() + 30
        while (
            "Files changed, reloading."
            not in (log := vm.ssh("journalctl -b --no-pager -u avahi-daemon"))
            and time.monotonic() < deadline
        ):
            time.sleep(2)
        assert "Files changed, reloading." in log, log[-2000:]
    finally:
        vm.ssh(f"cp -p /root/rva.toml.saved {config}")  # written in place this time
    wait_for_port(5000)


@slow
def test_amd64_rva_stops_promptly_while_redis_is_down(amd64_vm: VM) -> None:
    """With Redis stopped, `systemctl stop rva.target` must not wait out the units' stop
    timeouts: every service leaves its backoff loop when asked (docs/faults.md)."""
    since = amd64_vm.ssh("date '+%Y-%m-%d %H:%M:%S'").strip()
    amd64_vm.ssh("systemctl stop redis-server.service")
    units = ["rva-capture.service", "rva-gears.service", "rva-web.service"]
    # Under TCG one detector pass takes 10-20 s, and a signal is handled only once the pass in
    # hand is done: wait until the gear has met the stopped Redis (it is in its backoff loop
    # then, as docs/faults.md says), so that the time below is the services' own.
    deadline = time.monotonic() + 120
    while "Redis unreachable" not in amd64_vm.ssh(
        f"journalctl -u rva-gears.service --since '{since}' --no-pager -o cat"
    ):
        assert time.monotonic() < deadline, "the gear never noticed Redis stopped"
        time.sleep(2)
    # The target's own stop job ends first (it is ordered after its services, so it stops
    # before them): the time that counts is until every service has left "deactivating".
    took = (
        int(
            amd64_vm.ssh(
                "s=$(date +%s%N); systemctl stop rva.target; "
                f"for i in $(seq 300); do systemctl is-active {' '.join(units)}"
                " | grep -qx -e active -e activating -e deactivating -e reloading || break;"
                " sleep 0.1; done; "
                "e=$(date +%s%N); echo $(( (e - s) / 1000000 ))",
                timeout=120,
            ).strip()
        )
        / 1000
    )
    record_timing("stop rva.target, Redis down, amd64 (TCG)", round(took, 1))
    states = vm_states(amd64_vm, units)
    assert set(states.values()) == {"inactive"}, states  # stopped, not failed or killed
    # The units' stop timeout is 20 s: a service that waited out its backoff would take that.
    assert took < 15.0, f"the RVA services took {took:.1f} s to stop with Redis down"
    # Back up for the power-off test; not waited for (READY takes minutes under TCG).
    amd64_vm.ssh("systemctl start --no-block redis-server.service rva.target")


@slow
def test_amd64_powers_off_cleanly(amd64_vm: VM) -> None:
    started = time.monotonic()
    code = amd64_vm.poweroff(timeout=180)
    record_timing("poweroff amd64", round(time.monotonic() - started, 1))
    assert code == 0, f"QEMU exit {code}\n{amd64_vm.console_tail()}"
    assert "reboot: Power down" in amd64_vm.console_tail(20000)


# -- 3. arm64 ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def arm64_vm(
    arm64_image: Built, test_key: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VM]:
    missing = missing_tools("arm64")
    if missing:
        pytest.skip(f"missing {', '.join(missing)}: scripts/install-deps.sh image")
    _check_published(arm64_image)
    _check_root_filesystem(arm64_image)
    assert {"EFI/BOOT/BOOTAA64.EFI", "rva/vmlinuz", "rva/initrd.img"} <= set(
        arm64_image.manifest["boot_partition"]["files"]
    )
    workdir = tmp_path_factory.mktemp("arm64-vm")
    arm64_image.put_boot_file("rva.toml", _user_boot_toml(test_key), workdir)
    vm = VM("arm64", arm64_image.image, workdir, test_key)
    vm.start()
    try:
        yield _wait_until_counting(vm, "arm64", timeseries=False)
    finally:
        vm.kill()


@slow
def test_arm64_image_boots_under_qemu_virt_and_answers_healthz(arm64_vm: VM) -> None:
    states = vm_states(arm64_vm, [*RVA_SERVICES, "rva-firstboot.service"])
    assert set(states.values()) == {"active"}, states
    health = _healthz(arm64_vm)
    assert health["code"] == 200 and _people_counted(health), health
    # The distribution's Redis has no TimeSeries: RVA runs and says so.
    assert health["body"]["timeseries"] != "on", health
    source = health["body"]["cameras"]["0"]["source"]
    assert source["configured"] == FOOTAGE_ON_DEVICE and source["state"] == "capturing", source


def _camera_source(vm: VM) -> dict:
    body = _healthz(vm)["body"]
    return body["cameras"]["0"].get("source", {}) if isinstance(body, dict) else {}


def _ref_ms(entry: list) -> int:
    """The millisecond part of the frame id a camera:<id>:yolo result refers to (its `ref`)."""
    fields = dict(zip(entry[1][::2], entry[1][1::2], strict=True))
    return int(fields.get("ref", "0-0").split("-")[0])


@slow
def test_arm64_auto_waits_for_a_camera_then_counts_from_a_v4l2_one(arm64_vm: VM) -> None:
    """source = "auto" on the booted image: no camera at first (a clear status, rva-capture
    running, READY), then Debian's vivid virtual V4L2 camera is loaded, auto picks its capture
    node among vivid's other nodes, frames reach camera:0 and rva-gears writes results for them."""
    vm = arm64_vm
    assert "/dev/video" not in vm.ssh("ls /dev", check=False)
    vm.ssh(
        "sed -i 's|^source = .*|source = \"auto\"|' /etc/rva/rva.toml"
        " && rva config check && systemctl restart rva-capture",
        timeout=180,
    )
    assert vm.ssh("systemctl is-active rva-capture", check=False).strip() == "active"
    waiting: dict = {}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and waiting.get("state") != "waiting":
        waiting = _camera_source(vm)
        time.sleep(2)
    assert waiting.get("configured") == "auto" and waiting.get("state") == "waiting", waiting
    assert waiting["detail"].startswith("no camera found: plug one in or set [cameras.0] source"), (
        waiting
    )
    assert "no camera found" in vm.ssh("systemctl show -p StatusText rva-capture")
    assert "no camera found" in vm.ssh("rva status", check=False)
    before = int(vm.ssh("date +%s%3N").strip())
    # Plugged in: vivid's default nodes are a video capture, a video output, VBI, radio, SDR,
    # touch and metadata devices; auto must take the capture one.
    vm.ssh("modprobe vivid && udevadm settle", timeout=120)
    started = time.monotonic()
    in_use: dict = {}
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and in_use.get("state") != "capturing":
        in_use = _camera_source(vm)
        time.sleep(2)
    record_timing("arm64 vivid found", round(time.monotonic() - started, 1))
    assert in_use.get("state") == "capturing", f"{in_use}\n{_diagnostics(vm)}"
    assert in_use["in_use"].startswith("V4L2 /dev/video"), in_use
    node = in_use["in_use"].split()[1]
    assert "Video Capture" in vm.ssh(f"v4l2-ctl -d {node} --info"), node
    assert "auto -> V4L2 /dev/video" in vm.ssh("rva status", check=False)
    # Frames from the camera, then results for them (under TCG a detection takes 10-60 s).
    newest: list = []
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        newest = json.loads(
            vm.ssh(
                "redis-cli --json XREVRANGE camera:0:yolo + - COUNT 1 2>/dev/null || echo '[]'",
                check=False,
            ).strip()
            or "[]"
        )
        # A result written after `before` may still be for a footage frame from the backlog
        # (under TCG the gear runs far behind capture): wait for one whose frame is newer.
        if newest and _ref_ms(newest[0]) > before:
            break
        time.sleep(5)
    else:
        pytest.fail(f"no result for a vivid frame: {newest}\n{_diagnostics(vm)}")
    record_timing("arm64 vivid counted", round(time.monotonic() - started, 1))
    fields = dict(zip(newest[0][1][::2], newest[0][1][1::2], strict=True))
    # The result is for a frame stored after the footage was replaced by auto: a vivid frame.
    assert int(fields["ref"].split("-")[0]) > before and fields["people"].isdigit(), fields


@slow
def test_arm64_picamera_is_refused_with_what_to_install(arm64_vm: VM) -> None:
    """The Debian variant has no picamera2: `rva config check` says so and what to install."""
    out = arm64_vm.ssh(
        "printf '[cameras.0]\\nsource = \"picamera\"\\n' >/tmp/pi.toml;"
        " rva config check --config /tmp/pi.toml 2>&1; echo rc=$?",
        check=False,
    )
    assert "rc=2" in out and "cameras.0.source" in out and "python3-picamera2" in out, out


@slow
def test_arm64_powers_off_cleanly(arm64_vm: VM) -> None:
    assert arm64_vm.poweroff(timeout=240) == 0, arm64_vm.console_tail()


# -- 4. Raspberry Pi --------------------------------------------------------------------------
@slow
@pytest.mark.parametrize(
    ("board", "dtb", "config_line", "console", "sd_driver"),
    [
        ("rpi4", "bcm2711-rpi-4-b.dtb", "core_freq=360", "console=ttyS1,115200", "sdhci-iproc"),
        ("rpi5", "bcm2712-rpi-5-b.dtb", "os_check=0", "console=ttyAMA10,115200", "sdhci-brcmstb"),
    ],
)
def test_raspberry_pi_image_has_an_mbr_and_the_boot_files_the_firmware_reads(
    raspi_images: dict[str, Built],
    board: str,
    dtb: str,
    config_line: str,
    console: str,
    sd_driver: str,
) -> None:
    built = raspi_images[board]
    _check_published(built)
    _check_root_filesystem(built)
    parts = built.partitions()
    assert built.manifest["partition_table"]["label"] == "dos" and len(parts) == 2
    assert parts[0]["type"] == "c" and parts[0].get("bootable") is True
    assert parts[1]["type"] == "83" and int(parts[0]["start"]) == 2048
    files = built.boot_files()
    kernel = next(f for f in files if f.startswith("vmlinuz-"))
    initrd = next(f for f in files if f.startswith("initrd.img-"))
    assert (
        kernel.removeprefix("vmlinuz-")
        == initrd.removeprefix("initrd.img-")
        == built.manifest["kernel"]
    )
    assert dtb in files and "rva.toml" in files and "config.txt" in files and "cmdline.txt" in files
    if board == "rpi4":
        assert {"start4.elf", "fixup4.dat"} <= set(files)
    config = built.boot_file("config.txt")
    assert (
        "arm_64bit=1" in config and f"kernel={kernel}" in config and f"initramfs {initrd}" in config
    )
    assert config_line in config
    cmdline = built.boot_file("cmdline.txt")
    assert "root=LABEL=rva-root" in cmdline and console in cmdline and "net.ifnames=0" in cmdline
    assert 'source = "auto"' in built.boot_file("rva.toml")
    assert built.manifest["pi_source"] == "debian"
    # Debian's packages: no Raspberry Pi archive, no picamera2 (README, "Camera").
    assert built.root_file("/etc/apt/sources.list.d/raspi.sources") is None
    assert "python3-picamera2" not in built.manifest["packages"]
    # The initramfs can reach the root file system on the board's SD card (MODULES=list).
    modules = built.initrd_modules(initrd)
    assert {sd_driver, "ext4"} <= set(modules), modules
    kernels = [p for p in built.manifest["packages"] if re.fullmatch(r"linux-image-\d.*", p)]
    assert kernels == [f"linux-image-{built.manifest['kernel']}"], kernels
    if board == "rpi5":
        # trixie-backports' kernel, with the drivers of the RP1 south bridge (Ethernet, USB,
        # camera connectors), which Debian 13's 6.12 lacks; its suite stays in the sources.
        drivers = f"/usr/lib/modules/{built.manifest['kernel']}/kernel/drivers"
        assert "rp1_pci.ko.xz" in built.root_listing(f"{drivers}/misc/rp1")
        assert "macb.ko.xz" in built.root_listing(f"{drivers}/net/ethernet/cadence")
        backports = built.root_file("/etc/apt/sources.list.d/trixie-backports.list") or ""
        assert " trixie-backports " in backports, backports


@slow
def test_raspberry_pi_images_reuse_the_provisioned_arm64_root(
    arm64_image: Built, raspi_images: dict[str, Built]
) -> None:
    """One emulated ansible run per architecture and set of variables, not one per board."""
    provisioned = arm64_image.manifest["root_filesystems"]["provisioned"]
    assert provisioned.startswith("provisioned-trixie-arm64-"), provisioned
    for board, built in raspi_images.items():
        assert built.manifest["root_filesystems"]["provisioned"] == provisioned, board
