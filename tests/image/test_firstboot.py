"""rva-firstboot, applied to a directory shaped like a provisioned image (fast, no root): seeds
/etc/rva/rva.toml from the boot partition's rva.toml through the real `rva config check`, keeps
the shipped file when that rejects it, writes SSH keys and Wi-Fi, names the device, announces
the web port over mDNS, replaces the image's Redis passwords. The booted images run it for real
(tests/image/)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.image.build import REPO
from tests.image.conftest import FOOTAGE, FOOTAGE_ON_DEVICE, WIFI_PASSWORD

FIRSTBOOT = REPO / "rootfs/usr/lib/rva-firstboot/rva-firstboot"
VENV_RVA = Path(sys.executable).parent / "rva"


def _firstboot(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(FIRSTBOOT), "--root", str(root), "--rva", str(VENV_RVA), *args],
        capture_output=True,
        text=True,
        check=True,
    )


@pytest.fixture
def device_root(tmp_path: Path) -> Path:
    """A directory shaped like a provisioned image: shipped config, hostname, Redis credentials."""
    root = tmp_path / "root"
    (root / "etc/rva/credentials").mkdir(parents=True)
    (root / "etc/redis").mkdir()
    (root / "boot/firmware").mkdir(parents=True)
    shutil.copy(REPO / "rootfs/etc/rva/rva.toml", root / "etc/rva/rva.toml")
    (root / "etc/hostname").write_text("rva\n")
    (root / "etc/hosts").write_text("127.0.0.1\tlocalhost\n127.0.1.1\trva\n")
    (root / "etc/machine-id").write_text("0123456789abcdef0123456789abc0de\n")
    acl = []
    for user in ("rva-admin", "rva-web"):
        password = f"image-password-of-{user}"
        (root / f"etc/rva/credentials/{user}.password").write_text(password + "\n")
        (root / f"etc/rva/credentials/{user}.env").write_text(
            f"RVA_REDIS_URL=redis://{user}:{password}@127.0.0.1:6379/0\n"
        )
        acl.append(f"user {user} on #{hashlib.sha256(password.encode()).hexdigest()} ~* +@all")
    (root / "etc/redis/users.acl").write_text("\n".join(acl) + "\n")
    (root / "etc/avahi/services").mkdir(parents=True)
    shutil.copy(
        REPO / "rootfs/etc/avahi/services/rva-http.service",
        root / "etc/avahi/services/rva-http.service",
    )
    # The footage, where a provisioned image has it (`rva config check` looks for the file).
    (root / FOOTAGE_ON_DEVICE.lstrip("/")).parent.mkdir(parents=True)
    (root / FOOTAGE_ON_DEVICE.lstrip("/")).symlink_to(FOOTAGE)
    return root


BOOT_TOML = """\
# the user's own comment survives
[device]
hostname = "rva-kitchen"
ssh_authorized_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITestKeyOnly user@laptop", "not a key"]

[device.wifi]
ssid = "home \\"net\\""
password = "correct horse battery"
country = "de"

[cameras.0]
source = "/var/lib/rva/footage/vtest.avi"
fps = 10.0
"""


def test_firstboot_seeds_config_and_system_settings_from_the_boot_partition(
    device_root: Path,
) -> None:
    (device_root / "boot/firmware/rva.toml").write_text(BOOT_TOML)
    _firstboot(device_root)
    seeded = (device_root / "etc/rva/rva.toml").read_text()
    assert (
        'source = "/var/lib/rva/footage/vtest.avi"' in seeded
        and "# the user's own comment survives" in seeded
    )
    assert "[device" not in seeded and "ssid" not in seeded
    check = subprocess.run(
        [
            str(VENV_RVA),
            "config",
            "check",
            "--config",
            str(device_root / "etc/rva/rva.toml"),
            "--root",
            str(device_root),
        ],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    assert (device_root / "etc/hostname").read_text() == "rva-kitchen\n"
    assert "127.0.1.1\trva-kitchen" in (device_root / "etc/hosts").read_text()
    keys = (device_root / "etc/ssh/authorized_keys.d/root").read_text()
    assert (
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITestKeyOnly user@laptop" in keys
        and "not a key" not in keys
    )
    wifi = (device_root / "etc/wpa_supplicant/wpa_supplicant-wlan0.conf").read_text()
    assert "country=DE" in wifi and "ssid=" + b'home "net"'.hex() in wifi
    # The passphrase is stored only as the WPA key derived from it.
    assert WIFI_PASSWORD not in wifi
    assert (
        hashlib.pbkdf2_hmac("sha1", WIFI_PASSWORD.encode(), b'home "net"', 4096, 32).hex() in wifi
    )
    wants = device_root / "etc/systemd/system/sys-subsystem-net-devices-wlan0.device.wants"
    assert (wants / "wpa_supplicant@wlan0.service").is_symlink()
    assert not (device_root / "boot/firmware/rva-config-error.txt").exists()


def test_firstboot_keeps_the_shipped_config_and_says_why_when_rva_toml_is_invalid(
    device_root: Path,
) -> None:
    shipped = (device_root / "etc/rva/rva.toml").read_text()
    (device_root / "boot/firmware/rva.toml").write_text(
        '[cameras.0]\nsource = "/dev/video0"\nfps = -3\n'
    )
    result = _firstboot(device_root)
    assert (device_root / "etc/rva/rva.toml").read_text() == shipped
    error = (device_root / "boot/firmware/rva-config-error.txt").read_text()
    assert "fps" in error and "fps" in result.stdout
    # No configured name: a unique one from the machine id.
    assert (device_root / "etc/hostname").read_text() == "rva-abc0de\n"


def test_firstboot_applies_rva_toml_only_when_it_changed(device_root: Path) -> None:
    (device_root / "boot/firmware/rva.toml").write_text(BOOT_TOML)
    _firstboot(device_root)
    (device_root / "etc/rva/rva.toml").write_text(
        '# edited on the device\n[cameras.0]\nsource = "/dev/video1"\n'
    )
    (device_root / "etc/hostname").write_text("renamed-by-admin\n")
    _firstboot(device_root)
    assert "/dev/video1" in (device_root / "etc/rva/rva.toml").read_text()
    assert (device_root / "etc/hostname").read_text() == "renamed-by-admin\n"


def test_firstboot_announces_the_configured_web_port_over_mdns(device_root: Path) -> None:
    announced = device_root / "etc/avahi/services/rva-http.service"
    _firstboot(device_root)
    assert "<port>5000</port>" in announced.read_text()
    (device_root / "boot/firmware/rva.toml").write_text("[web]\nport = 8080\n")
    result = _firstboot(device_root)
    assert "port = 8080" in (device_root / "etc/rva/rva.toml").read_text()
    text = announced.read_text()
    assert "<port>8080</port>" in text and "<port>5000</port>" not in text
    assert "8080" in result.stdout
    # Back to the default when the setting goes (an edit on the device, then a reboot).
    (device_root / "etc/rva/rva.toml").write_text('[cameras.0]\nsource = "/dev/video0"\n')
    _firstboot(device_root)
    assert "<port>5000</port>" in announced.read_text()
    # The step alone, as rva-mdns-port.path runs it when rva.toml changes: nothing else is done.
    (device_root / "etc/rva/rva.toml").write_text("[web]\nport = 8081\n")
    (device_root / "boot/firmware/rva.toml").write_text("[web]\nport = 9090\n")

    def others() -> dict[Path, bytes]:
        return {f: f.read_bytes() for f in device_root.rglob("*") if f.is_file() and f != announced}

    before = others()
    _firstboot(device_root, "--announce-web-port")
    assert "<port>8081</port>" in announced.read_text()
    assert others() == before  # the card's rva.toml was not applied, nothing else was touched


def test_firstboot_replaces_the_image_redis_passwords_once(device_root: Path) -> None:
    _firstboot(device_root)
    creds = device_root / "etc/rva/credentials"
    acl = (device_root / "etc/redis/users.acl").read_text()
    for user in ("rva-admin", "rva-web"):
        password = (creds / f"{user}.password").read_text().strip()
        assert password != f"image-password-of-{user}" and len(password) == 40
        assert f"redis://{user}:{password}@" in (creds / f"{user}.env").read_text()
        assert hashlib.sha256(password.encode()).hexdigest() in acl
        assert (creds / f"{user}.env").stat().st_mode & 0o777 == 0o600
    first = (creds / "rva-web.password").read_text()
    _firstboot(device_root)
    assert (creds / "rva-web.password").read_text() == first
