"""rva doctor: Raspberry Pi's facts as found on a device (here: a directory laid out as a Pi's
files, `--root`), and the live rows against a real Redis and pipeline."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

from tests.conftest import RedisServer, Services, rva, wait_for, write_config
from tests.image import pi_roots


def _doctor(*args: str) -> tuple[int, str, str]:
    done = rva("doctor", *args, timeout=120)
    return done.returncode, done.stdout, done.stderr


def test_a_pi5_as_a_raspberrypi_image_makes_it_passes_every_row(tmp_path: Path) -> None:
    root = pi_roots.from_build_inputs("rpi5", tmp_path)
    code, out, err = _doctor("--root", str(root))
    assert code == 0, out + err
    assert out.startswith("RVA doctor: Raspberry Pi 5 Model B Rev 1.0 (rpi5, raspberrypi packages)")
    assert "  ok    pi5-4k-kernel " in out and "kernel=kernel8.img" in out
    # Each fact row names the vendor file it came from.
    assert "from RPi-Distro/raspberrypi-sys-mods: usr/lib/udev/rules.d/60-dma-heap.rules @" in out
    assert "rva/boards" not in err and "Traceback" not in err
    # Live rows need the running system: none with --root.
    assert "redis answers" not in out


def test_a_pi_without_the_rule_or_the_4k_kernel_fails_with_the_fix(tmp_path: Path) -> None:
    root = pi_roots.from_build_inputs("rpi5", tmp_path)
    (root / pi_roots.DMA_RULE).unlink()
    config = root / "boot/firmware/config.txt"
    config.write_text(config.read_text().replace("kernel=kernel8.img", ""))
    code, out, _err = _doctor("--root", str(root))
    assert code == 1
    assert "FAIL  dma-heap-group (udev_rule)" in out and "no such rule" in out
    assert "fix: install /usr/lib/udev/rules.d/60-rva-dma-heap.rules" in out
    assert "FAIL  pi5-4k-kernel" in out and "missing: kernel=kernel8.img" in out
    assert "fix: add under [pi5] in /boot/firmware/config.txt, then reboot" in out
    assert "\n4 failed of " in out  # the three rules of the file, and the kernel line


def test_heaps_the_capture_group_cannot_open_are_named(tmp_path: Path) -> None:
    """The nodes as the kernel makes them without the rule: root-only."""
    root = pi_roots.from_build_inputs("rpi4", tmp_path)
    heaps = root / "dev/dma_heap"
    heaps.mkdir(parents=True)
    for name in ("linux,cma", "system"):
        (heaps / name).write_text("")
        os.chmod(heaps / name, 0o600)
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc/group").write_text(f"root:x:0:\nvideo:x:{os.getgid() + 1}:\n")
    code, out, _err = _doctor("--root", str(root), "--json")
    report = json.loads(out)
    rows = {r["name"]: r for r in report["rows"]}
    assert code == 1 and report["failed"] == 1
    nodes = rows["dma-heap-group (device_nodes)"]
    assert nodes["state"] == "FAIL", nodes
    assert "linux,cma root 0600" in nodes["found"] and "(want video 0660)" in nodes["found"]
    for name in ("linux,cma", "system"):
        os.chmod(heaps / name, 0o660)
        os.chown(heaps / name, -1, os.getgid() + 1)
    code, out, _err = _doctor("--root", str(root), "--json")
    rows = {r["name"]: r for r in json.loads(out)["rows"]}
    assert rows["dma-heap-group (device_nodes)"]["state"] == "ok", rows
    assert stat.S_IMODE((heaps / "system").stat().st_mode) == 0o660


def test_not_a_pi_skips_the_facts_and_checks_redis_and_frames(
    redis_ts: RedisServer,
    tmp_path: Path,
    vtest_path: Path,
    services: Callable[[Path], Services],
) -> None:
    config = write_config(tmp_path / "rva.toml", redis_ts.url, vtest_path)
    svc = services(config)
    done = svc.run("doctor", "--json", check=False)
    report = json.loads(done.stdout)
    rows = {r["name"]: r for r in report["rows"]}
    assert done.returncode == 1  # no frames yet
    assert all(r["state"] == "skip" for r in report["rows"] if r["source"]), rows
    assert rows["redis-server"]["state"] == "ok"
    assert (
        rows["redis answers"]["state"] == "ok"
        and "time series on" in rows["redis answers"]["found"]
    )
    assert rows["camera listed"]["state"] == "skip"  # a video file: no camera to list
    assert rows["camera 0 flowing"]["state"] == "FAIL"
    svc.pipeline()

    def flowing() -> bool:
        again = json.loads(svc.run("doctor", "--json", check=False).stdout)
        return {r["name"]: r["state"] for r in again["rows"]}["camera 0 flowing"] == "ok"

    wait_for(flowing, 120, 2, what="rva doctor to see frames and results")
    done = svc.run("doctor", check=False)
    assert done.returncode == 0, done.stdout
    assert "ok    camera 0 flowing" in done.stdout


def test_a_stopped_redis_is_a_failed_row_not_a_traceback(tmp_path: Path, vtest_path: Path) -> None:
    config = write_config(tmp_path / "rva.toml", "redis://127.0.0.1:1/0", vtest_path)
    done = rva("doctor", env={"RVA_CONFIG": str(config)})
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert (
        "FAIL  redis answers" in done.stdout and "fix: systemctl status redis-server" in done.stdout
    )


def test_a_root_that_is_not_there_is_an_error_not_a_pass(tmp_path: Path) -> None:
    """A mistyped mount point of a card would otherwise pass: every row skipped, exit 0."""
    code, out, err = _doctor("--root", str(tmp_path / "sdcard-not-mounted"))
    assert code == 2 and out == "", out
    assert "--root" in err and "no such directory" in err and "Traceback" not in err
