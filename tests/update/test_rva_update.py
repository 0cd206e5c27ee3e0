"""rva update FILE|URL on an A/B system laid out in a directory: the real rauc checks the
bundle's signature against the keyring of the image's system.conf and rva update its
compatible; only `rauc install` and `rauc status`, which need RAUC's D-Bus service,
device-mapper (verity) and the slots' block devices, are answered by a stand-in that records
the call (the QEMU test in docs/updates.md runs them for real). Redis is a real redis-server."""

from __future__ import annotations

import functools
import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from rva import keys
from tests.conftest import RedisServer
from tests.update.conftest import Bundles, system_conf

# `rauc install` / `rauc status` recorded and answered; everything else the real rauc.
RAUC_STANDIN = """#!/bin/sh
for arg; do
    case $arg in
        install) echo "$*" >>"$RAUC_LOG"; exit "${RAUC_INSTALL_EXIT:-0}" ;;
        status) cat "$RAUC_STATUS_JSON"; exit 0 ;;
    esac
done
exec rauc "$@"
"""


class Device:
    def __init__(self, tmp_path: Path, bundles: Bundles, redis_url: str) -> None:
        self.tmp_path = tmp_path
        self.conf = system_conf(tmp_path / "system.conf", bundles.keys / "ca.pem")
        self.data = tmp_path / "data"
        self.log = tmp_path / "rauc.log"
        self.standin = tmp_path / "rauc-standin"
        self.standin.write_text(RAUC_STANDIN)
        self.standin.chmod(0o755)
        self.redis_url = redis_url
        self.env = {
            **os.environ,
            "RVA_RAUC": str(self.standin),
            "RVA_RAUC_CONF": str(self.conf),
            "RVA_UPDATE_DIR": str(self.data),
            "RAUC_LOG": str(self.log),
            "RAUC_STATUS_JSON": str(tmp_path / "status.json"),
        }
        self.env.pop("RVA_CONFIG", None)

    def update(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            [sys.executable, "-m", "rva", "update", "-u", self.redis_url, *args],
            env={**self.env, **env}, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert "Traceback" not in res.stderr, res.stderr
        return res

    def installs(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture
def device(tmp_path: Path, bundles: Bundles, redis_plain: RedisServer) -> Device:
    return Device(tmp_path, bundles, redis_plain.url)


def test_install_checks_then_installs_and_marks_redis(
    device: Device, bundles: Bundles, redis_plain: RedisServer
) -> None:
    res = device.update(str(bundles.good))
    assert res.returncode == 0, res.stderr
    assert f"{bundles.good}: signature OK, compatible rva-amd64, version 2.0" in res.stdout
    assert "the next boot tries it once" in res.stdout
    [call] = device.installs()
    assert call == f"--conf={device.conf} install {bundles.good}"
    marker = json.loads((device.data / "update.json").read_text())
    assert marker["version"] == "2.0" and marker["bundle"] == str(bundles.good)
    stored = redis_plain.client().hgetall(keys.UPDATE)
    assert stored[b"id"].decode() == marker["id"]
    # SAVE wrote it to disk: a Redis that restarts (the reboot) still has it.
    redis_plain.restart()
    assert redis_plain.client().hget(keys.UPDATE, "id").decode() == marker["id"]


@pytest.fixture
def http_dir(bundles: Bundles) -> Iterator[str]:
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(bundles.good.parent)
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_install_from_url(device: Device, bundles: Bundles, http_dir: str) -> None:
    url = f"{http_dir}/{bundles.good.name}"
    res = device.update(url)
    assert res.returncode == 0, res.stderr
    assert f"downloading {url}" in res.stdout and "compatible rva-amd64, version 2.0" in res.stdout
    [call] = device.installs()
    downloaded = call.split(" install ")[1]
    assert downloaded.startswith(f"{device.data}/download-") and downloaded.endswith(".raucb")
    assert not Path(downloaded).exists()  # removed once installed
    assert json.loads((device.data / "update.json").read_text())["bundle"] == url

    res = device.update(f"{http_dir}/no-such.raucb")
    assert res.returncode == 1
    assert (
        f"rva update: {http_dir}/no-such.raucb: cannot download: HTTP 404 File not found"
        in res.stderr
    )
    assert [p.name for p in device.data.iterdir()] == ["update.json"]


@pytest.mark.parametrize(
    ("which", "message"),
    [
        ("other_key", "refused: its signature does not verify against {keyring}"),
        ("altered", "refused: its signature does not verify against {keyring}"),
        ("unsigned", "refused: it is not signed: Invalid bundle format: Signature size is 0"),
        ("other_board", "refused: it is made for 'rva-arm64', this device is 'rva-amd64'"),
    ],
)
def test_refused_bundles_are_not_installed(
    device: Device, bundles: Bundles, redis_plain: RedisServer, which: str, message: str
) -> None:
    bundle = getattr(bundles, which)
    res = device.update(str(bundle))
    assert res.returncode == 1
    expected = f"rva update: {bundle}: " + message.format(keyring=bundles.keys / "ca.pem")
    assert expected in res.stderr, res.stderr
    assert device.installs() == []
    assert not redis_plain.client().exists(keys.UPDATE)
    assert not (device.data / "update.json").exists()


def test_reboot_on_a_raspberry_pi_is_a_tryboot_boot(
    device: Device, bundles: Bundles, tmp_path: Path
) -> None:
    """`rva update --reboot` with the Pi's backend (system.conf names bootloader-tryboot):
    the reboot is the backend's, `reboot '0 tryboot'`, so the new slot gets its trial. The
    stand-in `rauc install` does not call the backend: the test makes RAUC's calls itself."""
    from tests.update.test_ab_tryboot import BACKEND, Pi, _install, _root

    pi = Pi(tmp_path / "pi")
    pi.run("install-kernel", "A", str(_root(tmp_path, "6.12.1-v8")))
    pi.run("set-primary", "A")
    pi.run("set-state", "A", "good")
    _install(pi, tmp_path, "B", "6.12.2-v8")
    conf = device.conf.read_text()
    assert "bootloader-custom-backend=/usr/lib/rva/ab/bootloader\n" in conf
    device.conf.write_text(conf.replace("/usr/lib/rva/ab/bootloader\n", f"{BACKEND}\n"))
    # A plain `systemctl reboot` would be recorded here, not reboot the machine running this.
    stand_ins = tmp_path / "bin"
    stand_ins.mkdir()
    (stand_ins / "systemctl").write_text('#!/bin/sh\necho "systemctl $*" >>"$REBOOT_LOG"\n')
    (stand_ins / "systemctl").chmod(0o755)
    env = {k: v for k, v in pi.env.items() if k.startswith(("RVA_", "REBOOT_"))}
    env["PATH"] = f"{stand_ins}:{os.environ['PATH']}"
    res = device.update(str(bundles.good), "--reboot", **env)
    assert res.returncode == 0, res.stderr
    assert pi.reboots.read_text() == "1:0 tryboot\n"
    assert pi.out("list").splitlines()[1] == "B tried 3 6 tryboot"


def test_failed_install_leaves_no_pending_update(device: Device, bundles: Bundles) -> None:
    res = device.update(str(bundles.good), RAUC_INSTALL_EXIT="1")
    assert res.returncode == 1
    assert f"rva update: rauc install {bundles.good} failed (exit 1, above)" in res.stderr
    assert not (device.data / "update.json").exists()


def test_not_an_ab_image_no_file(device: Device, bundles: Bundles, tmp_path: Path) -> None:
    res = device.update(str(bundles.good), RVA_RAUC_CONF=str(tmp_path / "none.conf"))
    assert res.returncode == 1
    assert f"this system is not an A/B image (no {tmp_path}/none.conf)" in res.stderr
    res = device.update(str(tmp_path / "none.raucb"))
    assert res.returncode == 1 and f"{tmp_path}/none.raucb: no such file" in res.stderr
    assert device.installs() == []


def test_not_root(
    device: Device,
    bundles: Bundles,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """In-process with another user id: the venv's packages need not be readable by one."""
    from rva import cli
    from rva.tools import update

    monkeypatch.setattr(update, "SYSTEM_CONF", device.conf)
    monkeypatch.setattr(update, "RAUC", str(device.standin))
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("RAUC_LOG", str(device.log))
    assert cli.main(["update", "-u", device.redis_url, str(bundles.good)]) == 1
    assert "rva update: run as root (sudo rva update ...)" in capsys.readouterr().err
    assert device.installs() == []


def test_redis_unreachable_refuses(device: Device, bundles: Bundles) -> None:
    device.redis_url = "redis://127.0.0.1:1/0"
    res = device.update(str(bundles.good))
    assert res.returncode == 1
    assert "Redis (redis://127.0.0.1:1/0) is not reachable" in res.stderr
    assert device.installs() == []


def test_status(device: Device, tmp_path: Path) -> None:
    """rauc status's JSON (the fields RAUC's r_status_formatter_json writes) as lines."""
    slot = {"class": "rootfs", "type": "ext4", "parent": None, "mountpoint": None}
    status = {
        "compatible": "rva-amd64", "variant": "", "system_version": None, "booted": "A",
        "boot_primary": "rootfs.1",
        "slots": [
            {"rootfs.0": {**slot, "device": "/dev/sda2", "bootname": "A", "state": "booted",
                          "boot_status": "good",
                          "slot_status": {"bundle": {"compatible": "rva-amd64", "version": "1.0"},
                                          "installed": {"timestamp": "2026-12-01T10:00:00Z"}}}},
            {"rootfs.1": {**slot, "device": "/dev/sda3", "bootname": "B", "state": "inactive",
                          "boot_status": "good",
                          "slot_status": {"bundle": {"compatible": "rva-amd64", "version": "2.0"},
                                          "installed": {"timestamp": "2026-12-06T05:00:00Z"}}}},
        ],
    }  # fmt: skip
    (tmp_path / "status.json").write_text(json.dumps(status))
    res = device.update("status")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        "compatible rva-amd64, booted A, next boot B (rootfs.1)",
        "rootfs.0 (A, /dev/sda2): booted, good, version 1.0, installed 2026-12-01T10:00:00Z",
        "rootfs.1 (B, /dev/sda3): inactive, good, version 2.0, installed 2026-12-06T05:00:00Z",
    ]
    res = device.update("status", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {
        "compatible": "rva-amd64",
        "booted": "A",
        "primary": "B",
        "slots": {
            "A": {"slot": "rootfs.0", "device": "/dev/sda2", "booted": True, "good": True,
                  "version": "1.0"},
            "B": {"slot": "rootfs.1", "device": "/dev/sda3", "booted": False, "good": True,
                  "version": "2.0"},
        },
    }  # fmt: skip
