"""A QEMU (TCG) virtual machine booted from an RVA disk image, reached over forwarded ports.

The image itself is never written: the disk is a qcow2 overlay (larger than the image, so the
first boot has room to grow into) and QEMU runs with -snapshot on top of it, so every boot is a
first boot; a reboot ends QEMU. A `persistent` VM (the A/B update test) writes the overlay and
reboots in place, as a device does. User networking forwards ssh and the web port to 127.0.0.1
only; the guest reaches the host's 127.0.0.1 as 10.0.2.2.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

# Firmware from Debian's ovmf and qemu-efi-aarch64 packages.
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
AAVMF_CODE = Path("/usr/share/AAVMF/AAVMF_CODE.fd")
AAVMF_VARS = Path("/usr/share/AAVMF/AAVMF_VARS.fd")

MACHINES = {
    # q35 + OVMF (UEFI) + systemd-boot from the image's ESP. Nehalem (x86-64-v2: SSE4.2, no
    # AVX): QEMU 7.2's TCG emulates AVX2/FMA so slowly that one YOLOv3-tiny pass takes ~390 s
    # (OpenCV dispatches to them when offered); with SSE4 paths it takes ~10 s.
    "amd64": {
        "binary": "qemu-system-x86_64",
        "args": ["-machine", "q35", "-cpu", "Nehalem"],
        "firmware": (OVMF_CODE, OVMF_VARS),
    },
    # The arm64 machine; AAVMF (UEFI) + systemd-boot from the image's ESP.
    "arm64": {
        "binary": "qemu-system-aarch64",
        "args": ["-machine", "virt", "-cpu", "cortex-a72"],
        "firmware": (AAVMF_CODE, AAVMF_VARS),
    },
    # The same with the Pi 5's own core, the Cortex-A76: unlike the A72 it has the 16 KiB
    # translation granule a 16 KiB-page kernel needs (QEMU's max CPU has it too, but computes
    # pointer authentication with the real cipher: far slower under TCG).
    "arm64-16k": {
        "binary": "qemu-system-aarch64",
        "args": ["-machine", "virt", "-cpu", "cortex-a76"],
        "firmware": (AAVMF_CODE, AAVMF_VARS),
    },
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def missing_tools(arch: str) -> list[str]:
    spec = MACHINES[arch]
    missing = [t for t in (spec["binary"], "qemu-img", "ssh", "ssh-keygen") if not shutil.which(t)]
    missing += [str(f) for f in spec["firmware"] if not f.exists()]
    return missing


@dataclass
class VM:
    arch: str
    image: Path
    workdir: Path
    key: Path
    memory_mib: int = 3072
    grow_mib: int = 1024
    persistent: bool = False
    ssh_port: int = field(default_factory=free_port)
    web_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0

    @property
    def console(self) -> Path:
        return self.workdir / "console.log"

    def start(self) -> None:
        spec = MACHINES[self.arch]
        disk = self.workdir / "disk.qcow2"
        size = self.image.stat().st_size + self.grow_mib * 1024 * 1024
        subprocess.run(
            [
                "qemu-img",
                "create",
                "-q",
                "-f",
                "qcow2",
                "-F",
                "raw",
                "-b",
                str(self.image),
                str(disk),
                str(size),
            ],
            check=True,
        )
        code, vars_template = spec["firmware"]
        efivars = self.workdir / "efivars.fd"
        shutil.copyfile(vars_template, efivars)
        net = (
            f"user,id=net0,hostfwd=tcp:127.0.0.1:{self.ssh_port}-:22"
            f",hostfwd=tcp:127.0.0.1:{self.web_port}-:5000"
        )
        argv = [
            spec["binary"],
            *spec["args"],
            "-accel",
            "tcg",
            "-smp",
            "2",
            "-m",
            str(self.memory_mib),
            "-drive",
            f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
            "-drive",
            f"if=pflash,format=raw,unit=1,file={efivars}",
            "-drive",
            f"file={disk},format=qcow2,if=virtio",
            *([] if self.persistent else ["-snapshot"]),
            "-netdev",
            net,
            "-device",
            "virtio-net-pci,netdev=net0",
            # Entropy for the first boot's host keys and passwords.
            "-device",
            "virtio-rng-pci",
            "-display",
            "none",
            "-monitor",
            "none",
            "-serial",
            f"file:{self.console}",
            *([] if self.persistent else ["-no-reboot"]),
        ]
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(self.workdir / "qemu.log").open("wb"),
        )

    def elapsed(self) -> float:
        return round(time.monotonic() - self.started, 1)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ssh(self, command: str, timeout: float = 60, check: bool = True) -> str:
        result = subprocess.run(
            [
                "ssh",
                "-i",
                str(self.key),
                "-p",
                str(self.ssh_port),
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "LogLevel=ERROR",
                "-o",
                "ConnectTimeout=10",
                "root@127.0.0.1",
                command,
            ],
            stdin=subprocess.DEVNULL,  # ssh would set O_NONBLOCK on a stdin shared with the builds
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"ssh {command!r}: {result.returncode} {result.stderr.strip()}")
        return result.stdout

    def http(self, path: str, timeout: float = 10) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.web_port}{path}", timeout=timeout
            ) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def wait_for_ssh(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError("QEMU exited before ssh answered\n" + self.console_tail())
            try:
                if self.ssh("echo up", timeout=30, check=False).strip() == "up":
                    return
            except subprocess.TimeoutExpired:
                pass
            time.sleep(3)
        raise TimeoutError(f"no ssh after {timeout}s\n" + self.console_tail())

    def boot_id(self) -> str | None:
        """This boot's id (a new one after every reboot), None while ssh does not answer."""
        try:
            out = self.ssh("cat /proc/sys/kernel/random/boot_id", timeout=30, check=False)
        except subprocess.TimeoutExpired:
            return None
        return out.strip() or None

    def console_tail(self, chars: int = 6000) -> str:
        return self.console.read_text(errors="replace")[-chars:] if self.console.exists() else ""

    def poweroff(self, timeout: float = 120) -> int | None:
        """Power off from inside; return QEMU's exit code (None if it had to be killed)."""
        if not self.alive():
            return self.proc.returncode if self.proc else None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.ssh("systemctl poweroff", timeout=30, check=False)
        try:
            return self.proc.wait(timeout=timeout)  # type: ignore[union-attr]
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()  # type: ignore[union-attr]
            self.proc.wait()  # type: ignore[union-attr]
