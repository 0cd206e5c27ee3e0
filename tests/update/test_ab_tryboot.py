"""The Raspberry Pi's RAUC boot loader backend over the firmware's tryboot
(image-build/overlays/ab-rpi/usr/lib/rva/ab/bootloader-tryboot), the real script on directories
laid out like the autoboot partition and the slots' boot partitions. The firmware's part is
played by the test as Raspberry Pi's documentation describes it (rva/boards/raspberrypi.toml):
it reads autoboot.txt ([all], and [tryboot] over it when the one-shot flag is set), clears the
flag before the OS starts, and tells the OS the partition and the flag in
/chosen/bootloader/{partition,tryboot}. The reboot is a recorder of its argument. Never run on
a Pi: QEMU has no tryboot (docs/updates.md)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from rva import boards
from tests.conftest import ROOT

BACKEND = ROOT / "image-build/overlays/ab-rpi/usr/lib/rva/ab/bootloader-tryboot"
FACTS = boards.by_id(boards.load("raspberrypi"))
# The backend's default slots: bootname, boot partition, root partition (MBR, p4 extended).
PARTS = {2: "A", 3: "B"}
RECORDER = '#!/bin/sh\necho "$#:$*" >>"$REBOOT_LOG"\n'


def _root(base: Path, version: str) -> Path:
    """A slot's root file system as far as install-kernel reads it: the boot files that
    raspi-firmware's hooks keep in /boot/firmware, the root named as pi-gen does."""
    root = base / f"root-{version}"
    fw = root / "boot/firmware"
    (fw / "overlays").mkdir(parents=True)
    (fw / "kernel8.img").write_bytes(f"kernel {version}".encode())
    (fw / "overlays/imx708.dtbo").write_bytes(b"overlay")
    (fw / "config.txt").write_text("[all]\narm_64bit=1\nauto_initramfs=1\n")
    (fw / "cmdline.txt").write_text(
        "console=serial0,115200 console=tty1 root=PARTUUID=5256410a-02 rootfstype=ext4 rootwait\n"
    )
    return root


class Pi:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.autoboot = path / "autoboot"
        self.slot_boot = path / "slot"
        self.dt = path / "dt"
        self.reboots = path / "reboots.log"
        for d in (self.autoboot, self.slot_boot / "a", self.slot_boot / "b", self.dt):
            d.mkdir(parents=True)
        recorder = path / "reboot"
        recorder.write_text(RECORDER)
        recorder.chmod(0o755)
        self.env = {
            **os.environ,
            "RVA_AUTOBOOT_DIR": str(self.autoboot),
            "RVA_SLOT_BOOT_DIR": str(self.slot_boot),
            "RVA_BOOTLOADER_DT": str(self.dt),
            "RVA_REBOOT": str(recorder),
            "REBOOT_LOG": str(self.reboots),
        }
        self.flag = False  # the firmware's one-shot tryboot flag

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            [str(BACKEND), *args], env=self.env, capture_output=True, text=True, check=False
        )
        if check:
            assert res.returncode == 0, res.stderr
        return res

    def out(self, *args: str) -> str:
        return self.run(*args).stdout.strip()

    def autoboot_txt(self) -> str:
        return (self.autoboot / "autoboot.txt").read_text()

    def files(self) -> dict[str, str]:
        return {p.name: p.read_text() for p in sorted(self.autoboot.iterdir())}

    def reboot(self) -> str:
        """`bootloader-tryboot reboot`; what reached reboot(8), as 'argc:args'."""
        self.run("reboot")
        said = self.reboots.read_text().splitlines()[-1]
        # The kernel sets the flag when the argument holds " tryboot" (kernel-reboot-tryboot).
        self.flag = " tryboot" in said
        return said

    def boot(self) -> str:
        """The firmware starting the OS: autoboot.txt picks the partition, the flag is cleared,
        the device tree tells the OS."""
        data = (self.autoboot / "autoboot.txt").read_bytes()
        assert len(data) <= FACTS["autoboot-txt"].fields["max_bytes"]
        values: dict[str, str] = {}
        section = "all"
        for line in data.decode().splitlines():
            if line.startswith("["):
                section = line.strip("[]")
            elif section == "all" or (section == "tryboot" and self.flag):
                key, _, value = line.partition("=")
                values[key] = value
        assert values.get("tryboot_a_b") == "1"
        part = int(values["boot_partition"])
        (self.dt / "partition").write_bytes(part.to_bytes(4, "big"))
        (self.dt / "tryboot").write_bytes(int(self.flag).to_bytes(4, "big"))
        self.flag = False  # cleared before the firmware starts the OS
        return PARTS[part]


@pytest.fixture
def pi(tmp_path: Path) -> Pi:
    """A fresh A/B image: slot A written, committed and good, slot B never written (what the
    image build would do with the same script); booted."""
    pi = Pi(tmp_path / "pi")
    pi.run("install-kernel", "A", str(_root(tmp_path, "6.12.1-v8")))
    pi.run("set-primary", "A")
    pi.run("set-state", "A", "good")
    assert pi.boot() == "A"
    return pi


def _install(pi: Pi, tmp_path: Path, slot: str, version: str) -> None:
    """What `rauc install` calls, in its order: target bad, the slot written (the bundle's hook
    puts its boot files on the slot's boot partition), target primary."""
    pi.run("set-state", slot, "bad")
    pi.run("install-kernel", slot, str(_root(tmp_path, version)))
    pi.run("set-primary", slot)


def _documented(committed: int, tried: int) -> str:
    return f"[all]\ntryboot_a_b=1\nboot_partition={committed}\n[tryboot]\nboot_partition={tried}\n"


def test_fresh_image(pi: Pi) -> None:
    assert pi.autoboot_txt() == _documented(2, 2)  # a stray tryboot boot tries nothing
    assert pi.out("get-primary") == "A"
    assert pi.out("get-current") == "A"
    assert pi.out("get-state", "A") == "good"
    assert pi.out("get-state", "B") == "bad"  # never written: nothing can boot it
    assert pi.out("list").splitlines() == ["A good 2 5 committed", "B none 3 6 -"]
    a = pi.slot_boot / "a"
    assert (a / "kernel8.img").read_bytes() == b"kernel 6.12.1-v8"
    assert (a / "overlays/imx708.dtbo").read_bytes() == b"overlay"
    # Slot A's boot partition boots slot A's root (partition 5), on the image's disk id.
    assert "root=PARTUUID=5256410a-05 rootfstype=ext4" in (a / "cmdline.txt").read_text()
    assert pi.run("is-trial", check=False).returncode == 1


def test_update_trial_boot_then_commit(pi: Pi, tmp_path: Path) -> None:
    _install(pi, tmp_path, "B", "6.12.2-v8")
    # Exactly the documented A/B autoboot.txt: A committed, B on a tryboot boot.
    assert pi.autoboot_txt() == _documented(2, 3)
    assert pi.autoboot_txt() in FACTS["autoboot-a-b-update-flow"].quote
    assert "root=PARTUUID=5256410a-06" in (pi.slot_boot / "b/cmdline.txt").read_text()
    assert pi.out("get-primary") == "B"
    assert pi.out("get-state", "B") == "good"  # may still boot: RAUC's good
    assert pi.out("list").splitlines() == ["A good 2 5 committed", "B trial 3 6 tryboot"]

    # A plain reboot (a power cut, or a reboot not through the backend) keeps booting A.
    assert pi.boot() == "A"
    assert pi.out("get-primary") == "B"

    said = pi.reboot()
    assert said == "1:" + FACTS["tryboot-one-shot-flag"].fields["reboot_argument"]
    assert said == "1:0 tryboot" and '" tryboot"' in FACTS["kernel-reboot-tryboot"].quote
    assert pi.out("list").splitlines() == ["A good 2 5 committed", "B tried 3 6 tryboot"]
    assert pi.boot() == "B"  # the trial boot
    assert pi.out("get-current") == "B"
    assert pi.out("is-trial") == "B"  # the health check runs
    pi.run("set-state", "B", "good")  # it passed: rauc status mark-good booted
    assert pi.autoboot_txt() == _documented(3, 3)  # committed
    assert pi.out("list").splitlines() == ["A good 2 5 -", "B good 3 6 committed"]
    assert pi.run("is-trial", check=False).returncode == 1
    assert pi.boot() == "B"  # every boot from now on
    assert pi.out("get-primary") == "B"

    # The next update goes to A; B stays committed until A's trial passes.
    _install(pi, tmp_path, "A", "6.12.3-v8")
    assert pi.autoboot_txt() == _documented(3, 2)
    assert pi.out("get-primary") == "A"
    assert (pi.slot_boot / "a/kernel8.img").read_bytes() == b"kernel 6.12.3-v8"


def test_failed_trial_falls_back(pi: Pi, tmp_path: Path) -> None:
    _install(pi, tmp_path, "B", "6.12.2-v8")
    pi.reboot()
    assert pi.boot() == "B"
    assert pi.out("is-trial") == "B"
    # The health check failed: its unit reboots plainly, and the flag is gone.
    assert pi.boot() == "A"
    assert pi.autoboot_txt() == _documented(2, 3)  # nothing was committed
    assert pi.out("get-primary") == "A"
    assert pi.out("get-state", "B") == "bad"
    assert pi.out("list").splitlines() == ["A good 2 5 committed", "B tried 3 6 tryboot"]
    assert pi.run("is-trial", check=False).returncode == 1
    assert pi.reboot() == "0:"  # no trial pending: a plain reboot
    assert pi.boot() == "A"


def test_power_cut_during_the_trial(pi: Pi, tmp_path: Path) -> None:
    """Power lost while the new slot boots, before its check: the flag does not survive, so
    the next power-on is the committed slot, and the tried slot counts as bad."""
    _install(pi, tmp_path, "B", "6.12.2-v8")
    pi.reboot()
    assert pi.boot() == "B"
    # power cut here
    assert pi.boot() == "A"
    assert pi.out("get-primary") == "A"
    assert pi.out("get-state", "B") == "bad"
    # A later set-state B good from the booted A commits nothing: A is what booted.
    pi.run("set-state", "B", "good")
    assert pi.autoboot_txt() == _documented(2, 3)


def test_booting_the_new_slot_without_the_flag_is_no_trial(pi: Pi, tmp_path: Path) -> None:
    """`reboot 3` starts partition 3 (a partition given to reboot wins over autoboot.txt,
    fact autoboot-txt) without the tryboot flag: no health check, nothing committed."""
    _install(pi, tmp_path, "B", "6.12.2-v8")
    pi.reboot()
    (pi.dt / "partition").write_bytes((3).to_bytes(4, "big"))
    (pi.dt / "tryboot").write_bytes((0).to_bytes(4, "big"))
    assert pi.out("get-current") == "B"
    assert pi.run("is-trial", check=False).returncode == 1
    pi.run("set-state", "B", "good")
    assert pi.autoboot_txt() == _documented(2, 3)


def test_install_interrupted_keeps_old_slot(pi: Pi, tmp_path: Path) -> None:
    """Power lost while a slot with a trial pending is written again: set-state bad has taken
    the trial back first, so no tryboot boot can start a half-written slot."""
    _install(pi, tmp_path, "B", "6.12.2-v8")
    pi.run("set-state", "B", "bad")  # the next rauc install's first call; then the power goes
    assert pi.autoboot_txt() == _documented(2, 2)
    assert pi.out("get-primary") == "A"
    assert pi.reboot() == "0:"
    pi.flag = True  # even a tryboot by hand
    assert pi.boot() == "A"


def test_marking_the_committed_slot_bad_commits_the_other_good_one(pi: Pi, tmp_path: Path) -> None:
    _install(pi, tmp_path, "B", "6.12.2-v8")
    pi.reboot()
    pi.boot()
    pi.run("set-state", "B", "good")
    pi.run("set-state", "B", "bad")  # rauc status mark-bad booted
    assert pi.autoboot_txt() == _documented(2, 2)
    assert pi.boot() == "A"
    pi.run("set-state", "A", "bad")  # no good slot left: A stays the one that boots
    assert pi.autoboot_txt() == _documented(2, 2)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("set-state", "B", "good"), "set-state B good: the slot was never written"),
        (("set-state", "A", "maybe"), "state must be good or bad, not 'maybe'"),
        (("set-primary", "B"), "slot B was never written"),
        (("get-state", "../x"), "not a slot bootname: '../x'"),
        (("get-state", "C"), "no slot 'C' in RVA_TRYBOOT_SLOTS (A:2:5 B:3:6)"),
        (("install-kernel", "B", "/nonexistent"), "no root file system at '/nonexistent'"),
        (("bogus",), "usage: bootloader-tryboot"),
    ],
)
def test_refusals_say_why(pi: Pi, args: tuple[str, ...], message: str) -> None:
    before = pi.files()
    res = pi.run(*args, check=False)
    assert res.returncode == 1
    assert message in res.stderr
    assert pi.files() == before


def test_install_kernel_refuses_a_root_without_boot_files(pi: Pi, tmp_path: Path) -> None:
    root = tmp_path / "bare"
    (root / "boot").mkdir(parents=True)
    res = pi.run("install-kernel", "B", str(root), check=False)
    assert res.returncode == 1
    assert f"no boot files in {root}/boot/firmware (config.txt, cmdline.txt)" in res.stderr
    root = _root(tmp_path, "6.12.2-v8")
    (root / "boot/firmware/cmdline.txt").write_text("root=/dev/mmcblk0p2 rootwait\n")
    res = pi.run("install-kernel", "B", str(root), check=False)
    assert "does not name its root as root=PARTUUID=<disk id>-<partition>" in res.stderr
    assert pi.out("get-state", "B") == "bad" and not any((pi.slot_boot / "b").iterdir())


def test_get_current_needs_the_firmwares_word(pi: Pi) -> None:
    (pi.dt / "partition").unlink()
    res = pi.run("get-current", check=False)
    assert res.returncode == 1
    assert f"no {pi.dt}/partition: not booted by the Raspberry Pi firmware" in res.stderr
    (pi.dt / "partition").write_bytes(b"\0\0\0\x07")
    res = pi.run("get-current", check=False)
    assert "booted from partition 7, which is no slot's boot partition" in res.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[all]\nboot_partition=2\n", "[all] has no tryboot_a_b=1"),
        ("[all]\ntryboot_a_b=1\nboot_partition=7\n", "[all] boot_partition=7 is no slot's"),
        (_documented(2, 9), "[tryboot] boot_partition=9 is no slot's"),
    ],
)
def test_an_autoboot_txt_it_cannot_follow_is_refused(pi: Pi, text: str, message: str) -> None:
    (pi.autoboot / "autoboot.txt").write_text(text)
    res = pi.run("get-primary", check=False)
    assert res.returncode == 1
    assert f"{pi.autoboot}/autoboot.txt: {message}" in res.stderr
    assert pi.run("reboot", check=False).returncode == 1 and not pi.reboots.exists()


def test_the_check_unit_runs_on_the_trial_boot_only_and_commits(pi: Pi, tmp_path: Path) -> None:
    """rva-tryboot-check.service's own command lines, run against the overlay's backend: its
    condition skips every boot but the trial (systemd skips a unit whose ExecCondition exits
    1-254), and its post-step commits; a failure reboots plainly, which is the fallback."""
    overlay = ROOT / "image-build/overlays/ab-rpi"
    unit = boards.unit_settings(
        (overlay / "usr/lib/systemd/system/rva-tryboot-check.service").read_text()
    )
    assert unit["ExecStart"] == ["/opt/rva/venv/bin/rva update check --timeout 600"]
    assert unit["FailureAction"] == ["reboot"] and unit["JobTimeoutAction"] == ["reboot"]

    def run(line: str) -> subprocess.CompletedProcess[str]:
        program, *args = line.split()
        return subprocess.run(
            [str(overlay / program.lstrip("/")), *args],
            env=pi.env, capture_output=True, text=True, check=False,
        )  # fmt: skip

    [condition], [post] = unit["ExecCondition"], unit["ExecStartPost"]
    assert run(condition).returncode == 1  # an ordinary boot: skipped
    res = run(post)
    assert res.returncode == 1 and "commit: not a tryboot boot of the slot on trial" in res.stderr
    _install(pi, tmp_path, "B", "6.12.2-v8")
    pi.reboot()
    assert pi.boot() == "B"
    assert run(condition).returncode == 0
    assert run(post).returncode == 0
    assert pi.autoboot_txt() == _documented(3, 3)
    assert run(condition).returncode == 1  # committed: no trial any more


def test_making_the_other_good_slot_primary_gives_it_a_trial(pi: Pi, tmp_path: Path) -> None:
    """rauc status mark-active other, with B good from an earlier update: B is tried once,
    like any new primary, before it is committed again."""
    _install(pi, tmp_path, "B", "6.12.2-v8")
    pi.reboot()
    pi.boot()
    pi.run("commit")
    _install(pi, tmp_path, "A", "6.12.3-v8")
    pi.reboot()
    pi.boot()
    pi.run("commit")  # A committed, B good
    pi.run("set-primary", "B")
    assert pi.autoboot_txt() == _documented(2, 3)
    assert pi.out("get-primary") == "B"
    pi.run("set-primary", "A")  # and back before any reboot: no trial
    assert pi.autoboot_txt() == _documented(2, 2)
    assert pi.out("list").splitlines()[0] == "A good 2 5 committed"
    assert pi.reboot() == "0:"
    pi.run("set-primary", "B")
    assert pi.reboot() == "1:0 tryboot"
    assert pi.boot() == "B"
