"""rva doctor on an NVIDIA Jetson: one check per kind of fact of rva/boards/jetson.toml, read in
a system's files (this one, or another's with ``--root``). tests/provision/test_jetson.py runs
the same checks on the root it provisions with the roles, so the facts are read one way only.

The rows about the detector on the GPU (gpu_*) apply where rva_app wrote rva-gears' GPU drop-in
(rva_app_gpu=jetson); without it the gear runs on the CPU and they are skipped, saying so.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from rva import boards
from rva.boards import Fact
from rva.tools.doctor_rows import (
    CAPTURE_UNIT,
    FAIL,
    OK,
    SKIP,
    Check,
    Device,
    Row,
    capture_group,
    packages,
)

CAPTURE_DROP_IN = f"/etc/systemd/system/{CAPTURE_UNIT}.d/jetson.conf"
GPU_DROP_IN = "/etc/systemd/system/rva-gears.service.d/gpu.conf"
VENV = "/opt/rva/venv"  # rva_app_venv
SITE = "ansible-playbook ansible/site.yml -e rva_camera_type=jetson"  # what writes the drop-in
GPU_SITE = "ansible-playbook ansible/site.yml -e rva_app_gpu=jetson"


def _settings(dev: Device, path: str) -> dict[str, list[str]] | None:
    text = dev.read(path)
    return None if text is None else boards.unit_settings(text)


def _l4t_release(dev: Device, fact: Fact) -> Row:
    path, prefix = fact.fields["release_file"], fact.fields["release_prefix"]
    fix = "flash JetPack 6 (L4T R36): RVA's Jetson path knows its device nodes alone"
    text = dev.read(path)
    if text is None:
        return Row(fact.id, FAIL, f"no {path} (not JetPack)", fact.source, fix)
    first = text.splitlines()[0] if text.strip() else ""
    release = boards.l4t_release(first)
    if release is None:
        return Row(fact.id, FAIL, f"not an L4T release line: {first[:60]!r}", fact.source, fix)
    found = "L4T R{}.{}.{}".format(*release)
    if not first.startswith(prefix):
        return Row(fact.id, FAIL, f"{found}, not JetPack 6", fact.source, fix)
    return Row(fact.id, OK, f"{found} (JetPack 6)", fact.source)


def _service(dev: Device, fact: Fact) -> Row:
    """The unit is there and enabled: a link in each ``WantedBy=`` target's .wants folder."""
    name = fact.fields["service"]
    unit = boards.unit_file(dev.root, name)
    if unit is None:
        return Row(fact.id, FAIL, f"no {name}", fact.source, "apt install nvidia-l4t-camera")
    targets = boards.unit_settings(unit.read_text(errors="replace")).get("WantedBy", [])
    wants = [f"etc/systemd/system/{t}.wants/{name}" for w in targets for t in w.split()]
    if not wants or not all(os.path.lexists(dev.root / w) for w in wants):
        return Row(
            fact.id,
            FAIL,
            f"{name} not enabled",
            fact.source,
            f"systemctl enable --now {name}",
        )
    return Row(fact.id, OK, f"{name} enabled ({', '.join(targets)})", fact.source)


def _private_tmp(dev: Device, fact: Fact) -> Row:
    settings = _settings(dev, CAPTURE_DROP_IN)
    if settings is None:
        return Row(fact.id, FAIL, f"no {CAPTURE_DROP_IN}", fact.source, SITE)
    shared = settings.get("PrivateTmp", ["yes"])[-1] == "no"
    socket = fact.fields["socket"]
    return Row(
        fact.id,
        OK if shared else FAIL,
        f"rva-capture sees the host's /tmp ({socket})"
        if shared
        else f"rva-capture's own /tmp hides {socket}",
        fact.source,
        "" if shared else SITE,
    )


def _allow(dev: Device, fact: Fact, path: str, fix: str) -> Row:
    """The drop-in's DeviceAllow= lines are exactly the fact's: none missing, none more."""
    settings = _settings(dev, path)
    if settings is None:
        return Row(fact.id, FAIL, f"no {path}", fact.source, fix)
    have, want = settings.get("DeviceAllow", []), fact.fields["device_allow"]
    missing = [n for n in want if n not in have]
    extra = [n for n in have if n not in want]
    groups = " ".join(settings.get("SupplementaryGroups", [])).split()
    lacking = [g for g in fact.fields.get("groups", []) if g not in groups]
    if missing or extra or lacking:
        found = "; ".join(
            f"{what}: {', '.join(items)}"
            for what, items in (("missing", missing), ("more", extra), ("no group", lacking))
            if items
        )
        return Row(fact.id, FAIL, f"{path}: {found}", fact.source, fix)
    return Row(fact.id, OK, f"{len(want)} DeviceAllow= lines as the fact names", fact.source)


def _device_allow(dev: Device, fact: Fact) -> Row:
    return _allow(dev, fact, CAPTURE_DROP_IN, SITE)


def _venv_link(dev: Device, fact: Fact) -> Row:
    """The venv's site-packages has a link to the OS package's folder, which is there; on the
    running system the venv's Python also imports it."""
    target = fact.fields["venv_link"]
    name = Path(target).name
    sites = sorted(dev.path(VENV).glob("lib/python3*/site-packages"))
    if not sites:
        return Row(fact.id, FAIL, f"no venv at {VENV}", fact.source, "ansible/site.yml makes it")
    link = sites[0] / name
    fix = GPU_SITE if fact.id == "tensorrt-python" else "ansible-playbook ansible/site.yml"
    if not link.is_symlink() or os.readlink(link) != target:
        return Row(fact.id, FAIL, f"{VENV}'s {name} is not a link to {target}", fact.source, fix)
    if not dev.path(target).is_dir():
        package = fact.fields["packages"][0]
        return Row(fact.id, FAIL, f"{target} is missing", fact.source, f"apt install {package}")
    if dev.live:
        python = dev.path(VENV) / "bin/python"
        try:
            done = subprocess.run(
                [str(python), "-c", f"import {name}"], capture_output=True, text=True, timeout=60
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return Row(fact.id, FAIL, f"cannot run {python}: {exc}", fact.source)
        if done.returncode != 0:
            why = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
            return Row(fact.id, FAIL, f"the venv cannot import {name}: {why}", fact.source)
        return Row(fact.id, OK, f"the venv imports {name} from {target}", fact.source)
    return Row(fact.id, OK, f"the venv links {target}", fact.source)


def _pipeline(dev: Device, fact: Fact) -> Row:
    """Live only: the elements are looked up in this system's GStreamer registry (the plugin
    files' names are NVIDIA's to change; the registry is what the capture uses)."""
    if not dev.live:
        return Row(
            fact.id, SKIP, "live only: GStreamer's registry of the running system", fact.source
        )
    from rva.camera.base import SourceUnusable
    from rva.camera.gstreamer import gst

    try:
        Gst = gst()
    except SourceUnusable as exc:
        return Row(fact.id, FAIL, str(exc), fact.source, "apt install python3-gi")
    missing = [e for e in fact.fields["elements"] if Gst.ElementFactory.find(e) is None]
    if missing:
        return Row(
            fact.id,
            FAIL,
            "no GStreamer element " + ", ".join(missing),
            fact.source,
            "apt install nvidia-l4t-gstreamer; `gst-inspect-1.0 nvarguscamerasrc`",
        )
    return Row(fact.id, OK, "elements " + ", ".join(fact.fields["elements"]), fact.source)


def _on_gpu(check: Check) -> Check:
    """A GPU row applies where rva_app opened the GPU to rva-gears."""

    def gated(dev: Device, fact: Fact) -> Row:
        if dev.read(GPU_DROP_IN) is None:
            why = "no GPU drop-in for rva-gears (rva_app_gpu=none): the detector runs on the CPU"
            return Row(fact.id, SKIP, why, fact.source)
        return check(dev, fact)

    return gated


CHECKS: dict[str, Check] = {
    "l4t_release": _l4t_release,
    "service": _service,
    "packages": packages,
    "private_tmp": _private_tmp,
    "device_allow": _device_allow,
    "capture_group": capture_group,
    "venv_link": _venv_link,
    "pipeline": _pipeline,
    "gpu_device_allow": _on_gpu(lambda dev, fact: _allow(dev, fact, GPU_DROP_IN, GPU_SITE)),
    "gpu_packages": _on_gpu(packages),
    "gpu_venv_link": _on_gpu(_venv_link),
}
