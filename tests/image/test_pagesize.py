"""16 KiB pages: the page size of a Raspberry Pi 5 under Raspberry Pi OS's own kernel
(linux-image-rpi-2712; rva/boards/raspberrypi.toml, "pi5-page-size"). The arm64 image, built with
Debian's 16 KiB-page kernel (linux-image-arm64-16k) in place of its own, booted with
qemu-system-aarch64 -M virt -cpu cortex-a76 (the Pi 5's core): the kernel runs on 16 KiB pages,
Redis (the distribution's, which the arm64 test image uses), capture, the detector and the web
server come up, and a frame is counted. A Redis whose allocator was built for 4 KiB pages would
abort here before its first line ("<jemalloc>: Unsupported system page size"); `rva doctor`
shows that row."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.image.build import Built
from tests.image.conftest import (
    RVA_SERVICES,
    diagnostics,
    healthz,
    people_counted,
    user_boot_toml,
    vm_states,
    wait_until_counting,
)
from tests.image.qemu import VM, missing_tools

pytestmark = pytest.mark.image
slow = pytest.mark.slow


@pytest.fixture(scope="module")
def arm64_16k_vm(
    arm64_16k_image: Built, test_key: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VM]:
    missing = missing_tools("arm64-16k")
    if missing:
        pytest.skip(f"missing {', '.join(missing)}: scripts/install-deps.sh image")
    kernels = [p for p in arm64_16k_image.manifest["packages"] if p.startswith("linux-image-")]
    assert all("16k" in k for k in kernels), kernels  # the 4 KiB kernel was replaced
    workdir = tmp_path_factory.mktemp("arm64-16k-vm")
    arm64_16k_image.put_boot_file("rva.toml", user_boot_toml(test_key), workdir)
    vm = VM("arm64-16k", arm64_16k_image.image, workdir, test_key)
    vm.start()
    try:
        yield wait_until_counting(vm, "arm64-16k", timeseries=False)
    finally:
        vm.kill()


@slow
def test_on_16k_pages_redis_and_every_rva_service_run_and_a_frame_is_counted(
    arm64_16k_vm: VM,
) -> None:
    vm = arm64_16k_vm
    assert vm.ssh("getconf PAGESIZE").strip() == "16384"
    assert vm.ssh("uname -r").strip().endswith("-arm64-16k")
    states = vm_states(vm, RVA_SERVICES)
    assert set(states.values()) == {"active"}, states
    health = healthz(vm)
    assert health["code"] == 200 and people_counted(health), health
    version = vm.ssh("redis-server --version")
    assert version.startswith("Redis server v="), version


@slow
def test_rva_doctor_on_16k_pages_says_redis_starts_and_frames_flow(arm64_16k_vm: VM) -> None:
    # Under TCG emulation a detector pass takes seconds and a Python start tens of them, so a
    # result can pass doctor's 30 s "flowing" bound on a loaded machine while the gear still
    # counts; doctor is asked again (a new result each time) for up to three minutes.
    deadline = time.monotonic() + 180
    while True:
        out = arm64_16k_vm.ssh("rva doctor --json", timeout=120, check=False)
        report = json.loads(out)
        rows = {r["name"]: r for r in report["rows"]}
        if rows["camera 0 flowing"]["state"] == "ok" or time.monotonic() > deadline:
            break
        time.sleep(10)
    assert report["device"]["page_size"] == 16384, report["device"]
    assert rows["redis-server"]["state"] == "ok", rows["redis-server"]
    assert rows["redis answers"]["state"] == "ok", rows
    flowing = rows["camera 0 flowing"]
    assert flowing["state"] == "ok", f"{flowing}\n{diagnostics(arm64_16k_vm)}"
    # Not a Raspberry Pi: the Pi's facts are listed as skipped, none failed.
    facts = [r for r in report["rows"] if r["source"]]
    assert facts and all(r["state"] == "skip" for r in facts), facts


@slow
def test_arm64_16k_powers_off_cleanly(arm64_16k_vm: VM) -> None:
    assert arm64_16k_vm.poweroff(timeout=240) == 0, arm64_16k_vm.console_tail()
