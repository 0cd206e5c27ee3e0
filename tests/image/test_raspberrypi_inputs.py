"""The --pi-source raspberrypi images (the default for rpi4/rpi5) cannot be built here: Raspberry
Pi's archive is out of reach. What such a build would write is held to Raspberry Pi's own facts
(rva/boards/raspberrypi.toml) through its inputs instead — config.txt, cmdline.txt, the kernel
package and the boot file names, the package list, the archive and its key, RVA's udev rule and
capture unit — by the checks `rva doctor` runs on a device. Fast: no build, no root."""

from __future__ import annotations

from pathlib import Path

import pytest

from rva import boards
from rva.camera import picamera
from tests.image import pi_roots

FACTS = boards.by_id(boards.load("raspberrypi"))


@pytest.mark.parametrize("board", ["rpi4", "rpi5"])
def test_a_raspberrypi_build_meets_every_fact_about_its_board(board: str, tmp_path: Path) -> None:
    root = pi_roots.from_build_inputs(board, tmp_path)
    rows = pi_roots.rows(root)
    expected = pi_roots.applicable(board, "raspberrypi")
    failed = {n: r.found for n, r in rows.items() if r.state == "FAIL"}
    assert not failed, failed
    assert expected <= {n for n, r in rows.items() if r.state == "ok"}, (expected, rows)
    if board == "rpi5":  # the 4 KiB kernel: Redis 8 from packages.redis.io runs
        assert rows["pi5-4k-kernel"].state == "ok"


@pytest.mark.parametrize("board", ["rpi4", "rpi5"])
def test_a_raspberrypi_build_boots_the_4k_kernel_under_the_names_the_hooks_give_it(
    board: str,
) -> None:
    inputs = pi_roots.build_inputs(board)
    v8, initramfs = FACTS["kernel-image-v8"].fields, FACTS["initramfs-v8"].fields
    assert inputs["RPI_KERNEL_PACKAGE"] == v8["kernel_package"] == initramfs["kernel_package"]
    assert inputs["RPI_KERNEL_IMAGE"] == v8["kernel_image"]
    assert inputs["RPI_INITRAMFS"] == initramfs["initramfs"]
    assert FACTS["page-size-v8"].fields["kernel_package"] == inputs["RPI_KERNEL_PACKAGE"]
    assert FACTS["page-size-v8"].fields["page_size"] == 4096
    assert FACTS["kernel-image-2712"].fields["kernel_package"] != inputs["RPI_KERNEL_PACKAGE"]


def test_the_archive_and_its_key_are_raspberry_pis() -> None:
    inputs = pi_roots.build_inputs("rpi4")
    assert inputs["RPI_ARCHIVE"].rstrip("/") == FACTS["pigen-apt-source"].fields["apt_uri"].rstrip(
        "/"
    )
    assert inputs["RPI_ARCHIVE_KEY_FINGERPRINT"] == FACTS["archive-key"].fields["fingerprint"]
    assert "raspberrypi-archive-keyring" in inputs["RPI_PACKAGES"].split()


def test_the_cmdline_names_the_root_partition_by_partuuid_as_pi_gen_does() -> None:
    cmdline = pi_roots.build_inputs("rpi5")["RPI_CMDLINE"]
    assert "root=PARTUUID=5256410a-02 " in cmdline
    for needed in FACTS["pigen-cmdline-txt"].fields["cmdline_txt"]:
        assert needed in cmdline, needed


def test_picamera_looks_for_the_heaps_picamera2_opens_in_its_order() -> None:
    assert list(picamera.PICAMERA2_DMA_HEAPS) == FACTS["picamera2-heap-order"].fields["paths"]


def test_a_raspberrypi_build_missing_a_fact_fails_the_check(tmp_path: Path) -> None:
    """The check can fail: a config.txt without the Pi 5's kernel line, a rule file without
    the heap rule, and cmdline.txt by label are each named."""
    root = pi_roots.from_build_inputs("rpi5", tmp_path)
    config = root / "boot/firmware/config.txt"
    config.write_text(config.read_text().replace("kernel=kernel8.img", ""))
    rule = root / pi_roots.DMA_RULE
    rule.write_text(
        rule.read_text().replace('SUBSYSTEM=="dma_heap", GROUP="video", MODE="0660"', "")
    )
    cmdline = root / "boot/firmware/cmdline.txt"
    cmdline.write_text(
        cmdline.read_text().replace("root=PARTUUID=5256410a-02", "root=LABEL=rva-root")
    )
    rows = pi_roots.rows(root)
    failed = {n for n, r in rows.items() if r.state == "FAIL"}
    assert failed == {"pi5-4k-kernel", "dma-heap-group (udev_rule)", "pigen-partuuid"}, failed
