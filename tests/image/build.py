"""Running image-build/build for the tests, and reading what it made without mounting anything."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("RVA_CACHE") or REPO / ".cache")
IMAGES = CACHE / "image-build" / "test-images"
TIMINGS_FILE = CACHE / "image-build" / "test-timings.json"
# Fast enough for CI on two cores; releases use the build's default level (README).
TEST_ZSTD_LEVEL = "6"


def record_timing(name: str, value: object) -> None:
    TIMINGS_FILE.parent.mkdir(parents=True, exist_ok=True)
    timings = json.loads(TIMINGS_FILE.read_text()) if TIMINGS_FILE.exists() else {}
    timings[name] = value
    TIMINGS_FILE.write_text(json.dumps(timings, indent=2) + "\n")
    print(f"image timing: {name} = {value}")


def _cpio_names(data: bytes) -> list[str]:
    """Member names of concatenated newc cpio archives (the initramfs format)."""
    names, i = [], 0
    while i + 110 <= len(data):
        if data[i : i + 6] not in (b"070701", b"070702"):
            i += 4  # the zero padding between concatenated archives
            continue
        size, name_size = int(data[i + 54 : i + 62], 16), int(data[i + 94 : i + 102], 16)
        names.append(data[i + 110 : i + 110 + name_size - 1].decode(errors="replace"))
        i = (i + 110 + name_size + 3) & ~3
        i = (i + size + 3) & ~3
    return names


@dataclass
class Built:
    board: str
    out: Path
    seconds: float

    @property
    def manifest(self) -> dict:
        return json.loads(next(self.out.glob("rva-*.manifest.json")).read_text())

    @property
    def image(self) -> Path:
        return next(self.out.glob("rva-*.img"))

    def partitions(self) -> list[dict]:
        return json.loads(
            subprocess.run(
                ["sfdisk", "--json", str(self.image)], capture_output=True, text=True, check=True
            ).stdout
        )["partitiontable"]["partitions"]

    def disk_id(self) -> str:
        """The MBR disk identifier (sfdisk's label-id, 0x-prefixed), as 8 hex digits."""
        table = json.loads(
            subprocess.run(
                ["sfdisk", "--json", str(self.image)], capture_output=True, text=True, check=True
            ).stdout
        )["partitiontable"]
        return str(table["id"]).removeprefix("0x").lower().rjust(8, "0")

    def offset(self, number: int) -> int:
        return int(self.partitions()[number - 1]["start"]) * 512

    def probe(self, number: int) -> dict[str, str]:
        """blkid of partition `number`: TYPE, LABEL, ..."""
        out = subprocess.run(
            ["blkid", "-p", "-o", "export", "-O", str(self.offset(number)), str(self.image)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def boot_files(self) -> list[str]:
        out = subprocess.run(
            ["mdir", "-/", "-b", "-i", f"{self.image}@@{self.offset(1)}", "::/"],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "MTOOLS_SKIP_CHECK": "1"},
        ).stdout
        return sorted(line.removeprefix("::/") for line in out.split() if not line.endswith("/"))

    def boot_file(self, name: str) -> str:
        return self.boot_file_bytes(name).decode()

    def boot_file_bytes(self, name: str) -> bytes:
        return subprocess.run(
            ["mtype", "-i", f"{self.image}@@{self.offset(1)}", f"::/{name}"],
            capture_output=True,
            check=True,
            env={**os.environ, "MTOOLS_SKIP_CHECK": "1"},
        ).stdout

    def initrd_modules(self, name: str) -> list[str]:
        """The kernel modules inside initrd `name` of the boot partition.

        initramfs-tools writes the modules (already xz-compressed) into leading uncompressed
        cpio archives and the rest into a zstd-compressed one; both are read here.
        """
        raw = self.boot_file_bytes(name)
        split = raw.find(b"\x28\xb5\x2f\xfd")  # the zstd frame magic
        main = subprocess.run(
            ["zstd", "-dc"], input=raw[split:], capture_output=True, check=True
        ).stdout
        names = _cpio_names(raw[:split]) + _cpio_names(main)
        return sorted(
            n.rsplit("/", 1)[-1].split(".ko")[0] for n in names if re.search(r"\.ko(\.\w+)?$", n)
        )

    def put_boot_file(self, name: str, content: str, workdir: Path) -> None:
        """What a user does on a laptop: replace a file on the boot partition."""
        src = workdir / name
        src.write_text(content)
        subprocess.run(
            ["mcopy", "-o", "-i", f"{self.image}@@{self.offset(1)}", str(src), f"::/{name}"],
            check=True,
            env={**os.environ, "MTOOLS_SKIP_CHECK": "1"},
        )

    def root_file(self, path: str) -> str | None:
        """A file of the ext4 root partition, read with debugfs (None if it does not exist)."""
        result = subprocess.run(
            ["debugfs", "-R", f"cat {path}", f"{self.image}?offset={self.offset(2)}"],
            capture_output=True,
            text=True,
        )
        if "File not found" in result.stderr or result.returncode != 0:
            return None
        return result.stdout

    def root_listing(self, path: str) -> list[str]:
        result = subprocess.run(
            ["debugfs", "-R", f"ls -p {path}", f"{self.image}?offset={self.offset(2)}"],
            capture_output=True,
            text=True,
            check=True,
        )
        # ls -p: /inode/mode/uid/gid/name/size/
        return sorted(
            fields[5]
            for fields in (line.split("/") for line in result.stdout.splitlines())
            if len(fields) > 6 and fields[5] not in (".", "..")
        )


RUNNING: set[subprocess.Popen[str]] = set()


def build(name: str, *args: str, timeout: float = 3600) -> Built:
    """Build the board ``name`` names ("arm64", or "arm64:16k": a variant of that board, built
    with other arguments into a folder of its own)."""
    board = name.split(":")[0]
    out = IMAGES / name.replace(":", "-")
    subprocess.run(["rm", "-rf", str(out)], check=True)
    out.mkdir(parents=True)
    started = time.monotonic()
    env = {
        **os.environ,
        "RVA_ZSTD_LEVEL": TEST_ZSTD_LEVEL,
        "PATH": f"{REPO / '.venv/bin'}:{os.environ['PATH']}",
    }
    with (out / "build.log").open("w") as log:
        proc = subprocess.Popen(
            [str(REPO / "image-build/build"), "--board", board, "--out", str(out), *args],
            # Not pytest's stdin: the VM tests' ssh clients make that non-blocking while they run.
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )
        RUNNING.add(proc)
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            cancel(proc)
            raise
        finally:
            RUNNING.discard(proc)
    if returncode != 0:
        tail = (out / "build.log").read_text()[-6000:]
        raise AssertionError(f"image-build/build --board {board} failed ({returncode}):\n{tail}")
    seconds = round(time.monotonic() - started, 1)
    built = Built(board, out, seconds)
    sizes = {f.name: f.stat().st_size for f in out.glob("rva-*.img*")}
    record_timing(
        f"build {name}",
        {"seconds": seconds, "steps": built.manifest["build_seconds"], "bytes": sizes},
    )
    return built


def cancel(proc: subprocess.Popen[str]) -> None:
    """Stop a build: SIGTERM lets it unmount and remove its work directory."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@dataclass
class BuildQueue:
    """Builds run one after another in a background thread, so that a long arm64 chain (the root
    file system runs through qemu-user) overlaps the amd64 build and boot: two cores, but
    emulated dpkg mostly keeps one busy."""

    jobs: list[tuple[str, tuple[str, ...]]]
    results: dict[str, Built | BaseException] = field(default_factory=dict)
    done: dict[str, threading.Event] = field(default_factory=dict)
    thread: threading.Thread | None = None

    def start(self) -> None:
        if self.thread is None:
            self.done = {board: threading.Event() for board, _ in self.jobs}
            self.thread = threading.Thread(target=self._run, name="image-builds", daemon=True)
            self.thread.start()

    def _run(self) -> None:
        failed: str | None = None
        for board, args in list(self.jobs):
            if not self.jobs:
                break
            if failed is not None:
                # The later boards reuse the first one's provisioned root: building them from
                # scratch would only repeat the failure, at the cost of another long emulation.
                self.results[board] = AssertionError(f"not built: the {failed} build failed first")
            else:
                try:
                    self.results[board] = build(board, *args)
                except BaseException as exc:  # handed to the test that waits for this board
                    self.results[board], failed = exc, board
            self.done[board].set()

    def stop(self) -> None:
        """Cancel what is still building (at the end of the session)."""
        self.jobs.clear()
        for proc in list(RUNNING):
            cancel(proc)
        if self.thread is not None:
            self.thread.join(timeout=180)

    def result(self, board: str, timeout: float = 3600) -> Built:
        self.start()
        if not self.done[board].wait(timeout):
            raise TimeoutError(f"the {board} image was not built within {timeout}s")
        outcome = self.results[board]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome
