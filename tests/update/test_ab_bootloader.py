"""The A/B images' RAUC boot loader backend (image-build/overlays/ab/usr/lib/rva/ab/bootloader),
the real script on a directory laid out like the EFI system partition, with real renames. The
boot loader's part is played by renaming the entry as systemd-boot does before it starts one
(+1 -> +0-1) and as systemd-bless-boot does once boot-complete.target is reached (-> no
counter); how systemd-boot orders and picks entries is in docs/updates.md."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

BACKEND = ROOT / "image-build/overlays/ab/usr/lib/rva/ab/bootloader"


def _root(base: Path, version: str) -> Path:
    """A slot's root file system as far as install-kernel reads it."""
    root = base / f"root-{version}"
    (root / "boot").mkdir(parents=True)
    (root / "etc/kernel").mkdir(parents=True)
    (root / f"boot/vmlinuz-{version}").write_bytes(f"kernel {version}".encode())
    (root / f"boot/initrd.img-{version}").write_bytes(f"initrd {version}".encode())
    (root / "etc/kernel/cmdline").write_text("# the image's\nconsole=tty0 console=ttyS0,115200\n")
    return root


class Esp:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries = path / "loader/entries"

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "RVA_ESP": str(self.path), "RVA_CMDLINE": str(self.path / "cmdline")}
        res = subprocess.run(
            [str(BACKEND), *args], env=env, capture_output=True, text=True, check=False
        )
        if check:
            assert res.returncode == 0, res.stderr
        return res

    def out(self, *args: str) -> str:
        return self.run(*args).stdout.strip()

    def names(self) -> list[str]:
        return sorted(p.name for p in self.entries.iterdir())

    def boot(self, name: str) -> str:
        """systemd-boot starting an entry with a counter: one try fewer, one more done."""
        stem, counter = name.removesuffix(".conf").split("+")
        left, _, done = counter.partition("-")
        new = f"{stem}+{int(left) - 1}-{int(done or 0) + 1}.conf"
        (self.entries / name).rename(self.entries / new)
        return new

    def bless(self, name: str) -> None:
        """systemd-bless-boot after boot-complete.target: the counter goes."""
        (self.entries / name).rename(self.entries / (name.split("+")[0] + ".conf"))


@pytest.fixture
def esp(tmp_path: Path) -> Esp:
    """The ESP of a fresh A/B image: slot A installed, primary and good, slot B never written
    (what the image build does with the same script)."""
    esp = Esp(tmp_path / "esp")
    esp.path.mkdir()
    esp.run("install-kernel", "A", str(_root(tmp_path, "6.12.1-amd64")))
    esp.run("set-primary", "A")
    esp.run("set-state", "A", "good")
    return esp


def _install(esp: Esp, tmp_path: Path, slot: str, version: str) -> None:
    """What `rauc install` calls, in its order: target bad, the slot written (the bundle's hook
    puts its kernel on the ESP), target primary."""
    esp.run("set-state", slot, "bad")
    esp.run("install-kernel", slot, str(_root(tmp_path, version)))
    esp.run("set-primary", slot)


def test_fresh_image(esp: Esp) -> None:
    assert esp.names() == ["rva-a.conf"]
    assert esp.out("get-primary") == "A"
    assert esp.out("get-state", "A") == "good"
    assert esp.out("get-state", "B") == "bad"  # never installed: nothing can boot it
    entry = (esp.entries / "rva-a.conf").read_text()
    assert "linux    /rva/a/vmlinuz\n" in entry and "initrd   /rva/a/initrd.img\n" in entry
    assert "sort-key rva-0\n" in entry
    assert (
        "options  root=PARTLABEL=rva-root-a rauc.slot=A console=tty0 console=ttyS0,115200\n"
        in entry
    )
    assert (esp.path / "rva/a/vmlinuz").read_bytes() == b"kernel 6.12.1-amd64"
    assert (esp.path / "rva/a/initrd.img").read_bytes() == b"initrd 6.12.1-amd64"


def test_update_trial_boot_then_bless(esp: Esp, tmp_path: Path) -> None:
    _install(esp, tmp_path, "B", "6.12.2-amd64")
    assert esp.names() == ["rva-a.conf", "rva-b+1.conf"]
    assert "sort-key rva-0\n" in (esp.entries / "rva-b+1.conf").read_text()
    assert "sort-key rva-1\n" in (esp.entries / "rva-a.conf").read_text()
    assert (esp.path / "rva/b/vmlinuz").read_bytes() == b"kernel 6.12.2-amd64"
    assert esp.out("get-primary") == "B"
    assert esp.out("list").splitlines() == ["A good rva-a.conf", "B trial rva-b+1.conf"]

    booted = esp.boot("rva-b+1.conf")  # the trial boot
    assert booted == "rva-b+0-1.conf"
    (esp.path / "cmdline").write_text("root=PARTLABEL=rva-root-b rauc.slot=B quiet\n")
    assert esp.out("get-current") == "B"
    esp.bless(booted)  # the health check passed
    assert esp.names() == ["rva-a.conf", "rva-b.conf"]
    assert esp.out("get-state", "B") == "good"
    assert esp.out("get-primary") == "B"

    # The next update goes back to A, B stays as the fallback.
    _install(esp, tmp_path, "A", "6.12.3-amd64")
    assert esp.names() == ["rva-a+1.conf", "rva-b.conf"]
    assert esp.out("get-primary") == "A"
    assert (esp.path / "rva/a/vmlinuz").read_bytes() == b"kernel 6.12.3-amd64"


def test_failed_trial_falls_back(esp: Esp, tmp_path: Path) -> None:
    _install(esp, tmp_path, "B", "6.12.2-amd64")
    esp.boot("rva-b+1.conf")  # booted, never blessed: the health check failed and rebooted
    assert esp.names() == ["rva-a.conf", "rva-b+0-1.conf"]
    assert esp.out("get-state", "B") == "bad"
    # systemd-boot sorts an entry with no tries left last: A is the first entry again.
    assert esp.out("get-primary") == "A"
    assert esp.out("list").splitlines() == ["A good rva-a.conf", "B bad rva-b+0-1.conf"]


def test_install_interrupted_keeps_old_slot(esp: Esp, tmp_path: Path) -> None:
    """Power lost while the slot was written: the target is bad, the old slot still first."""
    _install(esp, tmp_path, "B", "6.12.2-amd64")
    esp.bless(esp.boot("rva-b+1.conf"))
    esp.run("set-state", "A", "bad")  # rauc install's first call; then the power goes
    assert esp.names() == ["rva-a+0.conf", "rva-b.conf"]
    assert esp.out("get-primary") == "B"
    assert esp.out("get-state", "A") == "bad"


def test_kernel_update_inside_a_slot_keeps_its_place(esp: Esp, tmp_path: Path) -> None:
    esp.run("install-kernel", "A", str(_root(tmp_path, "6.12.9-amd64")))
    assert esp.names() == ["rva-a.conf"]
    entry = (esp.entries / "rva-a.conf").read_text()
    assert "sort-key rva-0\n" in entry and "Linux 6.12.9-amd64" in entry


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("set-state", "B", "good"), "set-state B good: the slot has no loader entry"),
        (("set-state", "A", "maybe"), "state must be good or bad, not 'maybe'"),
        (("set-primary", "B"), "slot B has no loader entry"),
        (("get-state", "../x"), "not a slot bootname: '../x'"),
        (("get-current",), "no rauc.slot= on the kernel command line"),
        (("install-kernel", "B", "/nonexistent"), "no root file system at '/nonexistent'"),
        (("bogus",), "usage: bootloader"),
    ],
)
def test_refusals_say_why(esp: Esp, args: tuple[str, ...], message: str) -> None:
    (esp.path / "cmdline").write_text("root=LABEL=rva-root quiet\n")
    res = esp.run(*args, check=False)
    assert res.returncode == 1
    assert message in res.stderr
    assert esp.names() == ["rva-a.conf"]


def test_two_entries_for_one_slot_is_an_error(esp: Esp) -> None:
    (esp.entries / "rva-a+1.conf").write_text("title stray\n")
    res = esp.run("get-state", "A", check=False)
    assert res.returncode == 1 and "rva-a has more than one loader entry" in res.stderr
