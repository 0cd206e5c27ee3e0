"""rva-firstboot's [device.wifi]: a wpa_supplicant configuration for the on-board (or a USB)
Wi-Fi interface, with the passphrase stored only as its PSK."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from firstboot_device import Device, log, write_file

WIFI_IFACE = "wlan0"


def wpa_psk(passphrase: str, ssid: str) -> str:
    """What wpa_passphrase computes: the 256-bit PSK, so the passphrase itself is not stored."""
    return hashlib.pbkdf2_hmac("sha1", passphrase.encode(), ssid.encode(), 4096, 32).hex()


def apply_wifi(dev: Device, device: dict) -> None:
    conf = dev.path(f"etc/wpa_supplicant/wpa_supplicant-{WIFI_IFACE}.conf")
    wants = dev.path(f"etc/systemd/system/sys-subsystem-net-devices-{WIFI_IFACE}.device.wants")
    unit = f"wpa_supplicant@{WIFI_IFACE}.service"
    wifi = device.get("wifi")
    if not isinstance(wifi, dict) or not wifi.get("ssid"):
        if conf.exists():
            conf.unlink()
            (wants / unit).unlink(missing_ok=True)
            log("Wi-Fi turned off (no [device.wifi] ssid in rva.toml)")
        return
    ssid = str(wifi["ssid"])
    password = wifi.get("password", wifi.get("psk"))
    country = str(wifi.get("country", "")).upper()
    lines = [
        "# Written by rva-firstboot from [device.wifi] in rva.toml on the boot partition.",
        "ctrl_interface=DIR=/run/wpa_supplicant",
        "update_config=0",
    ]
    if re.fullmatch(r"[A-Z]{2}", country):
        lines.append(f"country={country}")
    elif country:
        log(f"ignoring [device.wifi] country {country!r}: expected two letters like DE or US")
    lines += ["network={", f"    ssid={ssid.encode().hex()}"]
    if password is None or password == "":
        lines.append("    key_mgmt=NONE")
    elif re.fullmatch(r"[0-9a-fA-F]{64}", str(password)):
        lines.append(f"    psk={password}")
    elif 8 <= len(str(password)) <= 63:
        lines.append(f"    psk={wpa_psk(str(password), ssid)}")
    else:
        log("ignoring [device.wifi]: password must be 8 to 63 characters (or 64 hex digits)")
        return
    if wifi.get("hidden"):
        lines.append("    scan_ssid=1")
    lines.append("}")
    write_file(conf, "\n".join(lines) + "\n", 0o600, (0, 0))
    # Started whenever the interface appears (a USB adapter, or the on-board one once its
    # firmware has loaded), not waited for at boot when there is none.
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / unit
    if not link.is_symlink():
        link.symlink_to("/usr/lib/systemd/system/wpa_supplicant@.service")
    log(f"Wi-Fi: joining {ssid!r} on {WIFI_IFACE}")
    if dev.live and Path(f"/sys/class/net/{WIFI_IFACE}").exists():
        dev.run("systemctl", "start", "--no-block", unit)
