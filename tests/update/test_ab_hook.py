"""The update bundle's hook (image-build/ab/hook) as RAUC runs it after writing a root slot: the
real script and the real boot loader backend, on directories laid out as the running root, the
new slot and the EFI system partition. The booted proof (same host key, same machine id, Redis
logging in after the update and after a fallback) is tests/image/test_ab.py."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import ROOT

HOOK = ROOT / "image-build/ab/hook"
BACKEND = ROOT / "image-build/overlays/ab/usr/lib/rva/ab/bootloader"
MACHINE_ID = "0123456789abcdef0123456789abcdef"


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _running(base: Path) -> Path:
    """The running slot after this device's first boot."""
    root = base / "running"
    _write(root / "etc/machine-id", MACHINE_ID + "\n")
    _write(root / "etc/hostname", "rva-abcdef\n")
    _write(root / "etc/hosts", "127.0.0.1\tlocalhost\n127.0.1.1\trva-abcdef\n")
    _write(root / "etc/ssh/ssh_host_ed25519_key", "device key\n", 0o600)
    _write(root / "etc/ssh/ssh_host_ed25519_key.pub", "ssh-ed25519 AAAA device\n")
    _write(root / "etc/ssh/sshd_config", "# the running slot's\n")
    _write(root / "etc/ssh/authorized_keys.d/root", "ssh-ed25519 AAAA owner\n")
    _write(root / "etc/redis/users.acl", "user rva-gears on #devicehash\n", 0o640)
    _write(root / "etc/redis/redis.conf", "# the running slot's\n")
    _write(root / "var/lib/rva-firstboot/redis-passwords", "")
    _write(root / "var/lib/rva-firstboot/applied-rva-toml.sha256", "abc\n")
    _write(root / "etc/wpa_supplicant/wpa_supplicant-wlan0.conf", "network={}\n", 0o600)
    _write(root / "var/lib/rva/models/yolov3-tiny/yolov3-tiny.int8.onnx", "int8 graph")
    _write(root / "var/lib/rva/models/yolov3-tiny/yolov3-tiny.int8.json", "{}\n")
    _write(root / "var/lib/rva/models/yolov3-tiny/yolov3-tiny.weights", "v1's float weights")
    wants = root / "etc/systemd/system/sys-subsystem-net-devices-wlan0.device.wants"
    wants.mkdir(parents=True)
    (wants / "wpa_supplicant@wlan0.service").symlink_to(
        "/usr/lib/systemd/system/wpa_supplicant@.service"
    )
    return root


def _new_slot(base: Path) -> Path:
    """A root slot as RAUC wrote it from the bundle: the image's files, before any first boot."""
    slot = base / "slot-b"
    _write(slot / "etc/machine-id", "uninitialized\n")
    _write(slot / "etc/hostname", "rva\n")
    _write(slot / "etc/ssh/sshd_config", "# the new version's\n")
    _write(slot / "etc/ssh/ssh_host_rsa_key", "the image's stale key\n", 0o600)
    _write(slot / "etc/redis/users.acl", "user rva-gears on #imagehash\n", 0o640)
    _write(slot / "etc/redis/redis.conf", "# the new version's\n")
    (slot / "var/lib/rva-firstboot").mkdir(parents=True)
    _write(slot / "etc/kernel/cmdline", "# the image's\nconsole=tty0 console=ttyS0,115200\n")
    _write(slot / "var/lib/rva/models/yolov3-tiny/yolov3-tiny.weights", "v2's float weights")
    _write(slot / "boot/vmlinuz-6.12.9-amd64", "kernel 6.12.9")
    _write(slot / "boot/initrd.img-6.12.9-amd64", "initrd 6.12.9")
    return slot


def _hook(running: Path, slot: Path, esp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "RVA_AB_FROM": f"{running}/",
        "RVA_AB_BOOTLOADER": str(BACKEND),
        "RVA_ESP": str(esp),
        "RAUC_SLOT_CLASS": "rootfs",
        "RAUC_SLOT_BOOTNAME": "B",
        "RAUC_SLOT_MOUNT_POINT": str(slot),
    }
    return subprocess.run(
        [str(HOOK), *(args or ("slot-post-install",))],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_new_slot_is_this_device_with_the_new_versions_files(tmp_path: Path) -> None:
    running, slot, esp = _running(tmp_path), _new_slot(tmp_path), tmp_path / "esp"
    esp.mkdir()
    done = _hook(running, slot, esp)
    assert done.returncode == 0, done.stderr

    # The device's identity, with modes kept.
    for kept in (
        "etc/hostname",
        "etc/hosts",
        "etc/ssh/ssh_host_ed25519_key",
        "etc/ssh/ssh_host_ed25519_key.pub",
        "etc/ssh/authorized_keys.d/root",
        "etc/redis/users.acl",
        "var/lib/rva-firstboot/redis-passwords",
        "var/lib/rva-firstboot/applied-rva-toml.sha256",
        "etc/wpa_supplicant/wpa_supplicant-wlan0.conf",
        "var/lib/rva/models/yolov3-tiny/yolov3-tiny.int8.onnx",
        "var/lib/rva/models/yolov3-tiny/yolov3-tiny.int8.json",
    ):
        assert (slot / kept).read_bytes() == (running / kept).read_bytes(), kept
        assert (slot / kept).stat().st_mode == (running / kept).stat().st_mode, kept
    assert (slot / "etc/ssh/ssh_host_ed25519_key").stat().st_mode & 0o777 == 0o600
    link = slot / "etc/systemd/system/sys-subsystem-net-devices-wlan0.device.wants"
    assert os.readlink(link / "wpa_supplicant@wlan0.service") == (
        "/usr/lib/systemd/system/wpa_supplicant@.service"
    )
    # The new version's own files stay; so does the first-boot state of systemd.
    assert (slot / "etc/ssh/sshd_config").read_text() == "# the new version's\n"
    assert (slot / "etc/redis/redis.conf").read_text() == "# the new version's\n"
    weights = slot / "var/lib/rva/models/yolov3-tiny/yolov3-tiny.weights"
    assert weights.read_text() == "v2's float weights"
    assert (slot / "etc/machine-id").read_text() == "uninitialized\n"
    # The machine id on the new slot's command line, and so in its loader entry.
    cmdline = (slot / "etc/kernel/cmdline").read_text().splitlines()
    assert cmdline[-1] == f"console=tty0 console=ttyS0,115200 systemd.machine_id={MACHINE_ID}"
    entries = list((esp / "loader/entries").iterdir())
    assert [e.name for e in entries] == ["rva-b+0.conf"]  # bad until RAUC makes it primary
    options = [ln for ln in entries[0].read_text().splitlines() if ln.startswith("options")]
    assert options == [
        "options  root=PARTLABEL=rva-root-b rauc.slot=B console=tty0 console=ttyS0,115200 "
        f"systemd.machine_id={MACHINE_ID}"
    ]
    assert (esp / "rva/b/vmlinuz").read_text() == "kernel 6.12.9"


def test_a_second_update_does_not_repeat_the_machine_id(tmp_path: Path) -> None:
    running, slot, esp = _running(tmp_path), _new_slot(tmp_path), tmp_path / "esp"
    esp.mkdir()
    # The running slot was itself installed by an update: its command line has the id already.
    _write(running / "etc/kernel/cmdline", f"quiet systemd.machine_id={MACHINE_ID}\n")
    _write(slot / "etc/kernel/cmdline", f"quiet systemd.machine_id={MACHINE_ID}\n")
    assert _hook(running, slot, esp).returncode == 0
    line = (slot / "etc/kernel/cmdline").read_text().splitlines()[-1]
    assert line == f"quiet systemd.machine_id={MACHINE_ID}"


def test_a_device_without_a_machine_id_keeps_the_rest(tmp_path: Path) -> None:
    running, slot, esp = _running(tmp_path), _new_slot(tmp_path), tmp_path / "esp"
    esp.mkdir()
    (running / "etc/machine-id").write_text("uninitialized\n")
    done = _hook(running, slot, esp)
    assert done.returncode == 0, done.stderr
    assert "no machine id" in done.stderr
    assert "machine_id" not in (slot / "etc/kernel/cmdline").read_text()
    assert (slot / "etc/redis/users.acl").read_text() == "user rva-gears on #devicehash\n"


def test_other_hooks_and_slot_classes_do_nothing(tmp_path: Path) -> None:
    running, slot, esp = _running(tmp_path), _new_slot(tmp_path), tmp_path / "esp"
    esp.mkdir()
    assert _hook(running, slot, esp, "install-check").returncode == 0
    assert (slot / "etc/hostname").read_text() == "rva\n"
    assert not (esp / "loader").exists()


def test_a_slot_without_a_kernel_fails_the_install(tmp_path: Path) -> None:
    running, slot, esp = _running(tmp_path), _new_slot(tmp_path), tmp_path / "esp"
    esp.mkdir()
    for kernel in (slot / "boot").iterdir():
        kernel.unlink()
    done = _hook(running, slot, esp)
    assert done.returncode != 0
    assert "no kernel" in done.stderr


def test_owners_are_kept_by_name_as_the_new_slot_numbers_them(tmp_path: Path) -> None:
    """Redis's ACL file belongs to user redis; a new release may give redis another uid."""
    running, slot, esp = _running(tmp_path), _new_slot(tmp_path), tmp_path / "esp"
    esp.mkdir()
    acl = running / "etc/redis/users.acl"
    os.chown(acl, 65534, 65534)  # nobody:nogroup on the machine running the test
    assert subprocess.run(["stat", "-c", "%U", str(acl)], capture_output=True, text=True,
                          check=True).stdout.strip() == "nobody"  # fmt: skip
    _write(slot / "etc/passwd", "root:x:0:0::/root:/bin/sh\nnobody:x:4321:4322::/:/bin/false\n")
    _write(slot / "etc/group", "root:x:0:\nnogroup:x:4322:\n")
    assert _hook(running, slot, esp).returncode == 0
    st = (slot / "etc/redis/users.acl").stat()
    assert (st.st_uid, st.st_gid) == (4321, 4322)
    host_key = (slot / "etc/ssh/ssh_host_ed25519_key").stat()
    assert (host_key.st_uid, host_key.st_gid) == (0, 0)
