"""A/B updates booted (docs/updates.md): the amd64 image built with `--ab` (version 1, from the
provisioned root the amd64 image test already made), booted under QEMU with a disk that keeps
what is written and reboots in place, as a device does. Version 2 is the same root in a bundle
of its own; version 3 is that root with RVA broken (rva-gears runs /bin/false) and, to keep the
test short, its trial's health check given 60 s instead of 600. The bundles are served over
HTTP from the host, as an update server would.

1. v1 counts on slot A, its data on the data partition; a bundle signed by another key is
   refused and nothing changes.
2. ansible/update.yml installs v2 (the fleet path, from a URL): the device reboots into slot B,
   the health check passes, systemd-bless-boot keeps B; it is the same device (host key,
   machine id, hostname) and Redis has its data (first sample, the update marker).
3. `rva update URL --reboot` installs the broken v3 into A: the trial boot fails its check,
   reboots by itself, and the device is back on v2, counting, with its data and passwords.
Timings (install, reboot to blessed, fallback) go to the image timings file.
"""

from __future__ import annotations

import concurrent.futures
import functools
import http.server
import json
import os
import re
import shutil
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.image.build import REPO, Built, build, record_timing
from tests.image.conftest import (
    BOOT_TIMEOUT,
    amd64_build_args,
    diagnostics,
    user_boot_toml,
    wait_until_counting,
)
from tests.image.qemu import VM, free_port, missing_tools

pytestmark = [pytest.mark.image, pytest.mark.slow]

# The guest's address for the host's 127.0.0.1 (QEMU user networking).
HOST_FROM_GUEST = "10.0.2.2"
# The trial boot of the broken version: its health check's timeout (the image's is 600 s).
BROKEN_CHECK_TIMEOUT_S = 60


def _root_fs(image: Path, tmp: Path) -> Path:
    """Slot A's ext4 file system out of the image, its own size (the slot is larger)."""
    table = json.loads(
        subprocess.run(
            ["sfdisk", "--json", str(image)], capture_output=True, text=True, check=True
        ).stdout
    )["partitiontable"]["partitions"]
    start = int(table[1]["start"]) * 512
    with image.open("rb") as f:
        f.seek(start + 1024)
        sb = f.read(1024)
    blocks, log_size = struct.unpack_from("<I", sb, 4)[0], struct.unpack_from("<I", sb, 24)[0]
    assert struct.unpack_from("<H", sb, 56)[0] == 0xEF53, "no ext4 in slot A"
    size = blocks * (1024 << log_size)
    out = tmp / "root.ext4"
    subprocess.run(
        ["dd", f"if={image}", f"of={out}", "bs=1M", f"skip={start}", f"count={size}",
         "iflag=skip_bytes,count_bytes", "conv=sparse", "status=none"],
        check=True,
    )  # fmt: skip
    return out


def _break(root: Path, work: Path) -> None:
    """v3: RVA's detector never starts, and the trial's check gives up after 60 s."""
    gears = work / "zz-test-broken.conf"
    gears.write_text("# tests/image/test_ab.py: a release whose detector never starts\n"
                     "[Service]\nExecStart=\nExecStart=/bin/false\n")  # fmt: skip
    check = work / "zz-test-short-check.conf"
    check.write_text(
        "# tests/image/test_ab.py: the trial decided sooner than the image's 600 s\n[Service]\n"
        "ExecStart=\nExecStart=/opt/rva/venv/bin/rva update check "
        f"--timeout {BROKEN_CHECK_TIMEOUT_S}\n"
    )
    script = work / "debugfs.txt"
    script.write_text(
        "mkdir /etc/systemd/system/rva-gears.service.d\n"
        f"write {gears} /etc/systemd/system/rva-gears.service.d/zz-test-broken.conf\n"
        "mkdir /etc/systemd/system/rva-health-check.service.d\n"
        f"write {check} /etc/systemd/system/rva-health-check.service.d/zz-test-short-check.conf\n"
    )
    subprocess.run(["debugfs", "-w", "-f", str(script), str(root)], capture_output=True, check=True)
    listing = subprocess.run(
        ["debugfs", "-R", "ls /etc/systemd/system/rva-health-check.service.d", str(root)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "zz-test-short-check.conf" in listing, listing


def _bundle(root: Path, version: str, out: Path, keys: Path | None = None) -> Path:
    cmd = [str(REPO / "image-build/bundle"), "--board", "amd64", "--rootfs", str(root),
           "--version", version, "--out", str(out)]  # fmt: skip
    if keys is not None:
        cmd += ["--keys", str(keys)]
    done = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-3000:]
    return out / f"rva-amd64-{version}.raucb"


@dataclass
class Device:
    vm: VM
    url: str  # where the host serves the bundles, as the guest sees it
    served: Path  # and where they are on the host
    before: dict[str, str] = field(default_factory=dict)

    def play(self, *extra: str) -> subprocess.CompletedProcess[str]:
        """ansible-playbook ansible/update.yml against this device, from the bundles' folder."""
        inventory = self.vm.workdir / "inventory.ini"
        inventory.write_text(
            "[rva_ab]\n"
            f"device ansible_host=127.0.0.1 ansible_port={self.vm.ssh_port} ansible_user=root "
            f"ansible_become=false ansible_ssh_private_key_file={self.vm.key} "
            "ansible_ssh_common_args='-o StrictHostKeyChecking=no "
            "-o UserKnownHostsFile=/dev/null'\n"
        )
        return subprocess.run(
            [str(REPO / ".venv/bin/ansible-playbook"), "-i", str(inventory),
             str(REPO / "ansible/update.yml"), *extra],
            capture_output=True, text=True, stdin=subprocess.DEVNULL, cwd=self.served,
            timeout=BOOT_TIMEOUT + 1200,
            env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible/ansible.cfg"),
                 "ANSIBLE_NOCOLOR": "1", "PWD": str(self.served),
                 # Each task's time, at the end of the play's output.
                 "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks"},
        )  # fmt: skip

    def ssh(self, command: str, timeout: float = 120) -> str:
        return self.vm.ssh(command, timeout=timeout)

    def status(self) -> dict:
        return json.loads(self.ssh("rva update status --json"))

    def slot(self) -> str:
        match = re.search(r"\brauc\.slot=(\w+)", self.ssh("cat /proc/cmdline"))
        assert match, "no rauc.slot= on the kernel command line"
        return match.group(1)

    def identity(self) -> dict[str, str]:
        return {
            "host key": self.ssh("cat /etc/ssh/ssh_host_ed25519_key.pub").split()[1],
            "machine id": self.ssh("cat /etc/machine-id").strip(),
            "hostname": self.ssh("hostname").strip(),
        }

    def samples(self) -> tuple[int, int]:
        """camera:0:people's first timestamp and sample count."""
        info = self.ssh("redis-cli --no-auth-warning TS.INFO camera:0:people").split("\n")
        return int(info[info.index("firstTimestamp") + 1]), int(
            info[info.index("totalSamples") + 1]
        )

    def wait_for_new_boot(self, old: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.vm.alive(), self.vm.console_tail()
            booted = self.vm.boot_id()
            if booted and booted != old:
                return booted
            time.sleep(5)
        raise AssertionError(f"no new boot within {timeout}s\n{self.vm.console_tail()}")

    def wait_until_counted(self, timeout: float) -> None:
        """RVA's own check: frames flowing and counted (and no pending update marker)."""
        out = self.vm.ssh(f"rva update check --timeout {timeout:.0f}", timeout=timeout + 60,
                          check=False)  # fmt: skip
        assert out.startswith("healthy"), out + diagnostics(self.vm)


def task_seconds(play_output: str) -> dict[str, float]:
    """The play's slowest tasks and their seconds, from profile_tasks' summary (a name too long
    for the line keeps one dash or none before its time)."""
    recap = play_output.rpartition("TASKS RECAP")[2]
    return {
        m.group(1).strip(): float(m.group(2))
        for m in re.finditer(r"^(\S.*?) -*\s(\d+\.\d+)s$", recap, re.M)
    }


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    root = tmp_path_factory.mktemp("ab-served")
    port = free_port()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", port), functools.partial(_Quiet, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, port
    server.shutdown()


@pytest.fixture(scope="module")
def ab_image(amd64_image: Built, tmp_path_factory: pytest.TempPathFactory) -> Built:
    """v1 with --ab, from the provisioned root amd64_image made (same variables)."""
    tmp = tmp_path_factory.mktemp("amd64-ab-build")
    return build(
        "amd64:ab",
        "--ab",
        "--version",
        "1",
        "--compress",
        "none",
        *amd64_build_args(tmp),
    )


@pytest.fixture(scope="module")
def device(
    ab_image: Built,
    served: tuple[Path, int],
    test_key: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Device]:
    missing = missing_tools("amd64") + [t for t in ("rauc", "debugfs") if not shutil.which(t)]
    if missing:
        pytest.skip(f"missing {', '.join(missing)}: scripts/install-deps.sh image")
    names = sorted(p.name for p in ab_image.out.glob("rva-*"))
    assert "rva-amd64-1.raucb" in names and "rva-amd64-ab-1.img" in names, names
    work = tmp_path_factory.mktemp("amd64-ab-vm")
    ab_image.put_boot_file("rva.toml", user_boot_toml(test_key), work)
    vm = VM("amd64", ab_image.image, work, test_key, grow_mib=2048, persistent=True)
    vm.start()
    # The bundles are made while v1 boots.
    served_dir, port = served

    def bundles() -> None:
        root = _root_fs(ab_image.image, work)
        _bundle(root, "2", served_dir)
        _break(root, work)
        _bundle(root, "3", served_dir)
        root.unlink()
        other = work / "other"
        (other / "root").mkdir(parents=True)
        (other / "root/payload").write_bytes(os.urandom(64 * 1024))  # RAUC wants > 4 KiB
        tiny = other / "tiny.ext4"
        subprocess.run(["mke2fs", "-q", "-t", "ext4", "-d", str(other / "root"), str(tiny), "8M"],
                       check=True)  # fmt: skip
        (_bundle(tiny, "9", other, keys=other / "keys")).rename(served_dir / "other-key.raucb")

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        made = pool.submit(bundles)
        wait_until_counting(vm, "amd64 A/B", timeseries=True)
        made.result(timeout=900)
        yield Device(vm, f"http://{HOST_FROM_GUEST}:{port}", served_dir)
    except BaseException:
        print(diagnostics(vm))
        raise
    finally:
        pool.shutdown(wait=True)
        vm.kill()


def test_v1_counts_on_slot_a_with_its_data_on_the_data_partition(device: Device) -> None:
    assert device.slot() == "A"
    st = device.status()
    assert st["compatible"] == "rva-amd64" and st["booted"] == "A", st
    assert st["slots"]["A"]["good"] and not st["slots"]["B"]["good"], st
    mounts = device.ssh(
        "for m in /data /etc/rva /var/lib/redis; do findmnt -n -o TARGET,SOURCE -M $m; done"
    )
    assert re.search(r"^/data\s+/dev/vda4$", mounts, re.M), mounts
    assert re.search(r"^/var/lib/redis\s+/dev/vda4\[/redis\]$", mounts, re.M), mounts
    assert re.search(r"^/etc/rva\s+/dev/vda4\[/etc/rva\]$", mounts, re.M), mounts
    # The ESP as systemd-boot sees it: slot A's entry, blessed, no default in loader.conf.
    assert device.ssh("/usr/lib/rva/ab/bootloader list").split() == ["A", "good", "rva-a.conf"]
    device.before = device.identity()
    first, count = device.samples()
    device.before |= {"first sample": str(first), "samples": str(count)}


def test_a_bundle_signed_by_another_key_is_refused(device: Device) -> None:
    # One call (a Python start under TCG takes tens of seconds): its exit status, then stderr.
    out = device.vm.ssh(
        f"rva update {device.url}/other-key.raucb 2>/tmp/refused >/dev/null; echo rc=$?; "
        "cat /tmp/refused",
        timeout=300,
        check=False,
    )
    assert out.startswith("rc=1\n"), out
    assert "does not verify against /etc/rauc/keyring.pem" in out, out
    st = device.status()
    assert st["primary"] == "A" and not st["slots"]["B"]["good"], st
    assert device.ssh("ls /data/rva 2>/dev/null || true").strip() == ""  # no download left


def test_the_fleet_play_installs_v2_from_a_url_and_its_trial_boot_is_kept(
    device: Device,
) -> None:
    vm = device.vm
    started = time.monotonic()
    play = device.play("-e", f"rva_update_url={device.url}/rva-amd64-2.raucb")
    seconds = round(time.monotonic() - started, 1)
    assert play.returncode == 0, play.stdout[-6000:] + play.stderr[-3000:] + diagnostics(vm)
    assert "runs slot B, marked good" in play.stdout, play.stdout[-3000:]
    record_timing("A/B update amd64 (TCG): fleet play, download to blessed", seconds)
    record_timing("A/B update amd64 (TCG): v2 play's tasks", task_seconds(play.stdout))

    assert device.slot() == "B"
    st = device.status()
    assert st["booted"] == "B" and st["primary"] == "B", st
    assert st["slots"]["B"]["good"] and st["slots"]["B"]["version"] == "2", st
    assert st["slots"]["A"]["good"], st  # the fallback
    assert device.ssh("systemctl is-active rva-health-check.service").strip() == "active"
    assert device.ssh("/usr/lib/rva/ab/bootloader list").split() == [
        "A", "good", "rva-a.conf", "B", "good", "rva-b.conf"
    ]  # fmt: skip
    # The same device: what its first boot made came along; the counts are the ones of v1.
    now = device.identity()
    assert now == {k: device.before[k] for k in now}, (now, device.before)
    first, count = device.samples()
    assert str(first) == device.before["first sample"]
    assert count > int(device.before["samples"])
    assert device.ssh("ls /data/rva").split() == ["update-checked.json"]


def test_a_broken_v3_falls_back_to_v2_by_itself_and_stops_the_fleet_play(
    device: Device,
) -> None:
    """v3 through the play from a bundle on this machine, named relative to where the play
    runs: copied, installed into A, tried; its check fails, the device reboots into B by itself,
    and the play fails for the device (by its assert, or as unreachable when the fallback's
    reboot comes while it asks)."""
    vm = device.vm
    console_from = len(vm.console.read_bytes())
    old_boot = vm.boot_id()
    assert old_boot
    started = time.monotonic()
    play = device.play("-e", "rva_update_bundle=rva-amd64-3.raucb")
    play_s = round(time.monotonic() - started, 1)
    assert play.returncode != 0, play.stdout[-4000:]
    recap = re.search(r"^device\s*:.*$", play.stdout, re.M)
    assert recap and re.search(r"(failed|unreachable)=1", recap.group(0)), play.stdout[-4000:]
    assert "Install the bundle into the other slot" in play.stdout, play.stdout[-4000:]
    assert "did not keep slot A" in play.stdout or "UNREACHABLE" in play.stdout, play.stdout[-4000:]
    # The trial of A: up, its check gives up, it reboots; then B again, by itself.
    deadline = time.monotonic() + 2 * BOOT_TIMEOUT + BROKEN_CHECK_TIMEOUT_S
    boot = old_boot
    while True:
        boot = device.wait_for_new_boot(boot, deadline - time.monotonic())
        if device.slot() == "B":
            break
    back_s = round(time.monotonic() - started, 1)
    console = vm.console.read_bytes()[console_from:].decode(errors="replace")
    # Every kernel start prints its command line: A (the trial), then B.
    slots = re.findall(r"Command line: .*?rauc\.slot=(\w+)", console)
    assert slots == ["A", "B"], (slots, console[-4000:])
    st = device.status()
    assert st["booted"] == "B" and st["slots"]["B"]["version"] == "2", st
    assert not st["slots"]["A"]["good"] and st["slots"]["A"]["version"] == "3", st
    assert device.ssh("/usr/lib/rva/ab/bootloader list").split() == [
        "A", "bad", "rva-a+0-1.conf", "B", "good", "rva-b.conf"
    ]  # fmt: skip
    # Back on v2: the same device, counting, with its data (Redis's passwords still match:
    # the failed slot made none of its own).
    device.wait_until_counted(BOOT_TIMEOUT)
    assert device.identity() == {k: device.before[k] for k in device.identity()}
    first, _ = device.samples()
    assert str(first) == device.before["first sample"]
    assert ".raucb" not in device.ssh("ls /data/rva")  # the copied bundle went once installed
    record_timing(
        "A/B update amd64 (TCG): broken v3",
        {"fleet_play_s": play_s, "from_the_play_back_on_v2_s": back_s},
    )
    record_timing("A/B update amd64 (TCG): v3 play's tasks", task_seconds(play.stdout))


def test_after_the_updates_the_device_powers_off_cleanly(device: Device) -> None:
    assert device.vm.poweroff(timeout=240) == 0, device.vm.console_tail()
