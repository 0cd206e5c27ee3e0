"""rva doctor: what a Raspberry Pi or an NVIDIA Jetson needs for RVA to count, checked on this
device, one row per fact of rva/boards/raspberrypi.toml or jetson.toml (each with the vendor file
it came from; the Jetson's checks are in doctor_jetson.py), then the live rows: camera listed,
Redis starts on this page size and answers, frames and results flowing.

Run it first on a new device (`sudo rva doctor`: some files are root's). Exit status 1 when a row
failed. ``--root DIR`` reads another system's files (a mounted card); the live rows are then
skipped.
"""

from __future__ import annotations

import grp
import json
import os
import platform
import stat
import subprocess
from dataclasses import asdict
from pathlib import Path

from rva import boards
from rva.boards import Fact
from rva.tools import doctor_jetson
from rva.tools.doctor_rows import (
    CONFIG_TXT,
    FAIL,
    OK,
    SKIP,
    Check,
    Device,
    Row,
    capture_group,
    packages,
)


def inspect(root: Path) -> Device:
    live = root.resolve() == Path("/")
    model = (Device(root, None, "", "", 0, live).read("/proc/device-tree/model") or "").strip(
        "\0\n"
    )
    page = os.sysconf("SC_PAGE_SIZE") if live else 0
    board = boards.board_of(model)
    release = Device(root, None, "", "", 0, live).read("/etc/nv_tegra_release")
    if board == "jetson" or (board is None and release is not None):
        # JetPack writes the release file (nvidia-l4t-core): R36 is JetPack 6, the one RVA knows.
        l4t = boards.l4t_release(release or "")
        variant = "jetpack6" if l4t and l4t[0] == 36 else f"L4T R{l4t[0]}" if l4t else "no L4T"
        return Device(root, "jetson", model or "NVIDIA Jetson", variant, page, live)
    apt = root / "etc/apt/sources.list.d"
    variant = (
        "raspberrypi"
        if any((apt / n).exists() for n in ("raspi.list", "raspi.sources"))
        else "debian"
    )
    return Device(root, board, model or "neither a Raspberry Pi nor a Jetson", variant, page, live)


# -- one check per kind of fact -----------------------------------------------------------------
def _udev_rule(dev: Device, fact: Fact) -> Row:
    rule = fact.fields["udev_rule"]
    have = rule in boards.rules_text(dev.root)
    return Row(
        fact.id,
        OK if have else FAIL,
        "rule present" if have else "no such rule",
        fact.source,
        ""
        if have
        else "install /usr/lib/udev/rules.d/60-rva-dma-heap.rules "
        "(ansible/site.yml does), then `udevadm trigger -s dma_heap`",
    )


def _nodes(dev: Device, fact: Fact) -> Row:
    pattern, group, mode = fact.fields["device_glob"], fact.fields["group"], fact.fields["mode"]
    nodes = sorted(dev.root.glob(pattern.lstrip("/")))
    if not nodes:
        return Row(fact.id, SKIP, f"no {pattern} (kernel without DMA heaps)", fact.source)
    wrong = []
    for node in nodes:
        st = node.stat()
        owner = _group_name(dev, st.st_gid)
        if owner != group or stat.S_IMODE(st.st_mode) != int(mode, 8):
            wrong.append(f"{node.name} {owner} {stat.S_IMODE(st.st_mode):04o}")
    if wrong:
        return Row(
            fact.id,
            FAIL,
            "; ".join(wrong) + f" (want {group} {mode})",
            fact.source,
            "`udevadm trigger -s dma_heap` after installing the rule; reboot if unchanged",
        )
    return Row(fact.id, OK, f"{len(nodes)} heap(s) {group} {mode}", fact.source)


def _group_name(dev: Device, gid: int) -> str:
    if dev.live:
        try:
            return grp.getgrgid(gid).gr_name
        except KeyError:
            return str(gid)
    for line in (dev.read("/etc/group") or "").splitlines():  # another system's groups
        name, _pw, number, *_ = [*line.split(":"), "", "", ""][:4]
        if number == str(gid):
            return name
    return str(gid)


def _config_txt(dev: Device, fact: Fact) -> Row:
    text = next((t for p in CONFIG_TXT if (t := dev.read(p)) is not None), None)
    if text is None:
        return Row(fact.id, FAIL, "no config.txt in /boot/firmware", fact.source)
    section = fact.fields.get("config_section", "all")
    missing = [
        ln for ln in fact.fields["config_txt"] if not boards.config_txt_has(text, ln, section)
    ]
    if missing:
        return Row(
            fact.id,
            FAIL,
            "missing: " + ", ".join(missing),
            fact.source,
            f"add under [{section}] in /boot/firmware/config.txt, then reboot",
        )
    return Row(fact.id, OK, ", ".join(fact.fields["config_txt"]), fact.source)


def _boot_files(dev: Device, fact: Fact) -> Row:
    names = [fact.fields[k] for k in ("kernel_image", "initramfs") if k in fact.fields]
    missing = [n for n in names if not dev.path(f"/boot/firmware/{n}").exists()]
    state = FAIL if missing else OK
    return Row(
        fact.id, state, ("missing: " if missing else "") + ", ".join(missing or names), fact.source
    )


def _page_size(dev: Device, fact: Fact) -> Row:
    if not dev.live:
        return Row(fact.id, SKIP, "not the running system", fact.source)
    want = int(fact.fields["page_size"])
    ok = dev.page_size == want
    return Row(
        fact.id,
        OK if ok else FAIL,
        f"{dev.page_size // 1024} KiB pages",
        fact.source,
        "" if ok else "kernel=kernel8.img in [pi5] of config.txt (the 4 KiB kernel), reboot",
    )


def _cmdline_txt(dev: Device, fact: Fact) -> Row:
    text = dev.read("/boot/firmware/cmdline.txt")
    if text is None:
        return Row(fact.id, FAIL, "no /boot/firmware/cmdline.txt", fact.source)
    missing = [s for s in fact.fields["cmdline_txt"] if s not in text]
    found = "missing: " + ", ".join(missing) if missing else ", ".join(fact.fields["cmdline_txt"])
    return Row(fact.id, FAIL if missing else OK, found, fact.source)


CHECKS: dict[str, Check] = {
    "udev_rule": _udev_rule,
    "device_nodes": _nodes,
    "config_txt": _config_txt,
    "boot_files": _boot_files,
    "page_size": _page_size,
    "packages": packages,
    "capture_group": capture_group,
    "cmdline_txt": _cmdline_txt,
}


def fact_rows(dev: Device) -> list[Row]:
    """One row per check of each fact (facts without checks are for builders: a key, a file
    name); skipped where the fact is not about this board or these packages."""
    jetson = dev.board == "jetson"
    checks = doctor_jetson.CHECKS if jetson else CHECKS
    rows = []
    for fact in boards.load("jetson" if jetson else "raspberrypi"):
        for kind in fact.kinds:
            name = fact.id if len(fact.kinds) == 1 else f"{fact.id} ({kind})"
            # The release check is what says whether this Jetson runs JetPack 6 at all.
            anyway = kind == "l4t_release" and dev.board in fact.boards
            if dev.board is None or not (fact.applies(dev.board, dev.variant) or anyway):
                where = f"{dev.board}/{dev.variant}"
                why = "not a Raspberry Pi" if dev.board is None else f"not for {where}"
                rows.append(Row(name, SKIP, why, fact.source))
                continue
            row = checks[kind](dev, fact)
            row.name = name
            rows.append(row)
    return rows


# -- the live rows --------------------------------------------------------------------------------
def redis_starts() -> Row:
    """A redis-server whose jemalloc was built for 4 KiB pages aborts on a 16 KiB kernel before
    it prints anything: ask it for its version, which runs the allocator."""
    try:
        done = subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Row("redis-server", FAIL, f"cannot run redis-server: {exc}")
    if done.returncode != 0:
        why = (done.stderr or done.stdout).strip().splitlines()[:1]
        return Row(
            "redis-server",
            FAIL,
            why[0] if why else f"exit {done.returncode}",
            fix="a 4 KiB kernel (kernel=kernel8.img) or rva_redis_source=distro",
        )
    return Row("redis-server", OK, done.stdout.strip().split(" sha=")[0])


def live_rows(url: str, cameras: dict[str, str]) -> list[Row]:
    """``cameras``: each camera's configured source, by id."""
    from rva import health
    from rva.camera import find_cameras
    from rva.connection import connect

    rows = [redis_starts()]
    hardware = [s for s in cameras.values() if s == "auto" or s.startswith(("picamera", "/dev/"))]
    if hardware:
        found, notes = find_cameras()
        listed = "; ".join(c.description for c in found) or "; ".join(notes) or "none"
        fix = "" if found else "plug a camera in; on a Pi: `rpicam-hello --list-cameras`"
        rows.append(Row("camera listed", OK if found else FAIL, listed, fix=fix))
    else:
        rows.append(Row("camera listed", SKIP, "no camera configured (files or streams only)"))
    client = connect(url, name="rva-doctor")
    snap = health.snapshot(client, list(cameras), "rva-gears")
    if not snap.redis:
        rows.append(
            Row(
                "redis answers",
                FAIL,
                snap.error or "no answer",
                fix="systemctl status redis-server",
            )
        )
        return rows
    rows.append(Row("redis answers", OK, f"time series {'on' if snap.timeseries else 'OFF'}"))
    for cam, state in snap.cameras.items():
        flowing = state.frame_age_s is not None and state.frame_age_s < health.FRAME_STALE_S
        counted = state.result_age_s is not None and state.result_age_s < health.RESULT_STALE_S
        ages = f"frame {_age(state.frame_age_s)}, result {_age(state.result_age_s)}"
        rows.append(
            Row(
                f"camera {cam} flowing",
                OK if flowing and counted else FAIL,
                ages,
                fix=""
                if flowing and counted
                else "rva status; journalctl -u rva-capture -u rva-gears",
            )
        )
    return rows


def _age(seconds: float | None) -> str:
    return "none yet" if seconds is None else f"{seconds:.1f} s old"


def run(root: Path, url: str, cameras: dict[str, str], *, as_json: bool = False) -> int:
    dev = inspect(root)
    rows = fact_rows(dev) + (live_rows(url, cameras) if dev.live else [])
    failed = sum(r.state == FAIL for r in rows)
    if as_json:
        print(
            json.dumps(
                {
                    "device": asdict(dev) | {"root": str(dev.root)},
                    "rows": [asdict(r) for r in rows],
                    "failed": failed,
                },
                indent=2,
            )
        )
        return 1 if failed else 0
    kernel = platform.release() if dev.live else "(not running)"
    pages = f", {dev.page_size // 1024} KiB pages" if dev.page_size else ""
    packages = dev.variant if dev.board == "jetson" else f"{dev.variant} packages"
    print(f"RVA doctor: {dev.model} ({dev.board or 'other'}, {packages}), kernel {kernel}{pages}")
    width = max(len(r.name) for r in rows)
    for r in rows:
        print(f"  {r.state:4}  {r.name:{width}}  {r.found}")
        if r.state == FAIL and r.fix:
            print(f"  {'':4}  {'':{width}}  fix: {r.fix}")
        if r.source and r.state != SKIP:
            print(f"  {'':4}  {'':{width}}  from {r.source}")
    print(f"{failed} failed of {len(rows)}" if failed else f"all {len(rows)} rows ok or skipped")
    return 1 if failed else 0
