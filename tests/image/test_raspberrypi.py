"""The Raspberry Pi images (--pi-source debian: Raspberry Pi's archive is out of reach here):
partition table, boot files, the SD controller's driver inside the initrd, one kernel only."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.image import pi_roots
from tests.image.build import Built
from tests.image.conftest import (
    check_published,
    check_root_filesystem,
)

pytestmark = pytest.mark.image
# Builds and boots: minutes each.
slow = pytest.mark.slow


# -- 4. Raspberry Pi --------------------------------------------------------------------------
@slow
@pytest.mark.parametrize(
    ("board", "dtb", "config_line", "console", "sd_driver"),
    [
        ("rpi4", "bcm2711-rpi-4-b.dtb", "core_freq=360", "console=ttyS1,115200", "sdhci-iproc"),
        ("rpi5", "bcm2712-rpi-5-b.dtb", "os_check=0", "console=ttyAMA10,115200", "sdhci-brcmstb"),
    ],
)
def test_raspberry_pi_image_has_an_mbr_and_the_boot_files_the_firmware_reads(
    raspi_images: dict[str, Built],
    board: str,
    dtb: str,
    config_line: str,
    console: str,
    sd_driver: str,
) -> None:
    built = raspi_images[board]
    check_published(built)
    check_root_filesystem(built)
    parts = built.partitions()
    assert built.manifest["partition_table"]["label"] == "dos" and len(parts) == 2
    assert parts[0]["type"] == "c" and parts[0].get("bootable") is True
    assert parts[1]["type"] == "83" and int(parts[0]["start"]) == 2048
    files = built.boot_files()
    kernel = next(f for f in files if f.startswith("vmlinuz-"))
    initrd = next(f for f in files if f.startswith("initrd.img-"))
    assert (
        kernel.removeprefix("vmlinuz-")
        == initrd.removeprefix("initrd.img-")
        == built.manifest["kernel"]
    )
    assert dtb in files and "rva.toml" in files and "config.txt" in files and "cmdline.txt" in files
    if board == "rpi4":
        assert {"start4.elf", "fixup4.dat"} <= set(files)
    config = built.boot_file("config.txt")
    assert (
        "arm_64bit=1" in config and f"kernel={kernel}" in config and f"initramfs {initrd}" in config
    )
    assert config_line in config
    cmdline = built.boot_file("cmdline.txt")
    # The root partition by the card's disk identifier, as pi-gen does (rva/boards/raspberrypi.toml,
    # "pigen-partuuid"): found by the kernel itself, initramfs or not.
    disk_id = built.disk_id()
    assert f"root=PARTUUID={disk_id}-02 " in cmdline, (disk_id, cmdline)
    assert console in cmdline and "net.ifnames=0" in cmdline
    assert 'source = "auto"' in built.boot_file("rva.toml")
    assert built.manifest["pi_source"] == "debian"
    # Debian's packages: no Raspberry Pi archive, no picamera2 (README, "Camera").
    assert built.root_file("/etc/apt/sources.list.d/raspi.sources") is None
    assert "python3-picamera2" not in built.manifest["packages"]
    # The initramfs can reach the root file system on the board's SD card (MODULES=list).
    modules = built.initrd_modules(initrd)
    assert {sd_driver, "ext4"} <= set(modules), modules
    kernels = [p for p in built.manifest["packages"] if re.fullmatch(r"linux-image-\d.*", p)]
    assert kernels == [f"linux-image-{built.manifest['kernel']}"], kernels
    if board == "rpi5":
        # trixie-backports' kernel, with the drivers of the RP1 south bridge (Ethernet, USB,
        # camera connectors), which Debian 13's 6.12 lacks; its suite stays in the sources.
        drivers = f"/usr/lib/modules/{built.manifest['kernel']}/kernel/drivers"
        assert "rp1_pci.ko.xz" in built.root_listing(f"{drivers}/misc/rp1")
        assert "macb.ko.xz" in built.root_listing(f"{drivers}/net/ethernet/cadence")
        backports = built.root_file("/etc/apt/sources.list.d/trixie-backports.list") or ""
        assert " trixie-backports " in backports, backports


@slow
def test_raspberry_pi_images_reuse_the_provisioned_arm64_root(
    arm64_image: Built, raspi_images: dict[str, Built]
) -> None:
    """One emulated ansible run per architecture and set of variables, not one per board."""
    provisioned = arm64_image.manifest["root_filesystems"]["provisioned"]
    assert provisioned.startswith("provisioned-trixie-arm64-"), provisioned
    for board, built in raspi_images.items():
        assert built.manifest["root_filesystems"]["provisioned"] == provisioned, board


@slow
@pytest.mark.parametrize("board", ["rpi4", "rpi5"])
def test_raspberry_pi_image_meets_every_fact_about_its_board(
    raspi_images: dict[str, Built], board: str, tmp_path: Path
) -> None:
    """Checked by the rows `rva doctor` prints on a device, against Raspberry Pi's own facts
    (rva/boards/raspberrypi.toml): the DMA-heap rules, cmdline.txt by PARTUUID, rva-capture in
    group video. The facts about Raspberry Pi's own kernel and packages do not apply to the
    --pi-source debian variant built here; test_raspberrypi_inputs.py holds that variant's inputs
    to them. Debian's arm64 kernel runs on 4 KiB pages."""
    built = raspi_images[board]
    rows = pi_roots.rows(pi_roots.from_image(built, board, tmp_path))
    failed = {n: r.found for n, r in rows.items() if r.state == "FAIL"}
    assert not failed, failed
    expected = pi_roots.applicable(board, "debian")
    assert expected and expected <= {n for n, r in rows.items() if r.state == "ok"}, rows
    config = built.root_file(f"/boot/config-{built.manifest['kernel']}") or ""
    assert "CONFIG_ARM64_4K_PAGES=y" in config
