"""The amd64 image: built with Redis + the real RedisTimeSeries module, booted under QEMU
(OVMF, systemd-boot), checked from the host (see conftest.py)."""

from __future__ import annotations

import http.client
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.image.build import Built, record_timing
from tests.image.conftest import (
    FOOTAGE_ON_DEVICE,
    RVA_SERVICES,
    WIFI_PASSWORD,
    check_published,
    check_root_filesystem,
    healthz,
    people_counted,
    user_boot_toml,
    vm_states,
    wait_until_counting,
)
from tests.image.qemu import VM, missing_tools

pytestmark = pytest.mark.image
# Builds and boots: minutes each.
slow = pytest.mark.slow


# -- 2. amd64 ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def amd64_vm(
    amd64_image: Built, test_key: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VM]:
    missing = missing_tools("amd64")
    if missing:
        pytest.skip(f"missing {', '.join(missing)}: scripts/install-deps.sh image")
    check_published(amd64_image)  # before the boot partition is edited below
    workdir = tmp_path_factory.mktemp("amd64-vm")
    amd64_image.put_boot_file("rva.toml", user_boot_toml(test_key), workdir)
    vm = VM("amd64", amd64_image.image, workdir, test_key)
    vm.start()
    try:
        yield wait_until_counting(vm, "amd64", timeseries=True)
    finally:
        vm.kill()


@slow
def test_amd64_image_is_published_with_sums_and_manifest(amd64_image: Built) -> None:
    check_published(amd64_image)
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
    check_root_filesystem(amd64_image)


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


@slow
def test_amd64_healthz_reports_time_series_on_and_people_counted(amd64_vm: VM) -> None:
    health = healthz(amd64_vm)
    assert health["code"] == 200, health
    assert health["body"]["timeseries"] == "on", health
    assert people_counted(health), health


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
def test_amd64_web_protocol_checks_hold_on_debian_13s_python(amd64_vm: VM) -> None:
    """The same request-head checks as tests/services/web/test_protocol.py, against rva web
    running on the image's own Python (Debian 13's), not the test machine's."""
    import socket

    def answer(request: bytes) -> int:
        with socket.create_connection(("127.0.0.1", amd64_vm.web_port), timeout=30) as s:
            s.sendall(request)
            s.shutdown(socket.SHUT_WR)
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        assert data.startswith(b"HTTP/1."), data[:200]
        return int(data.split()[1])

    python = amd64_vm.ssh("/opt/rva/venv/bin/python -c 'import sys; print(sys.version_info[:2])'")
    assert python.strip() == "(3, 13)", python
    assert answer(b"HELLO\r\n\r\n") == 400
    assert answer(b"GET / HTTP/9.9\r\nHost: localhost\r\n\r\n") == 505
    assert answer(b"GET /vid%ffeo HTTP/1.1\r\nHost: localhost\r\n\r\n") == 400
    smuggle = (
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    assert answer(smuggle) == 400
    assert answer(b"GET /healthz HTTP/1.1\r\nHost: evil.example\r\n\r\n") == 421
    assert answer(b"GET http://localhost/healthz HTTP/1.1\r\nHost: localhost\r\n\r\n") == 200


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
