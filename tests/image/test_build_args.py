"""image-build/build's refusals of its arguments (fast: nothing is built), each naming what is
wrong, from a folder outside the repository."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.image.build import REPO

BUILD = REPO / "image-build/build"


def build(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BUILD), *args], capture_output=True, text=True, cwd=cwd, stdin=subprocess.DEVNULL,
        timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "said"),
    [
        ((), "usage: build --board "),
        (("--board",), "--board needs a value"),
        (("--board", "amd64", "--out"), "--out needs a value"),
        (("--board", "pdp11", "--out", "o"), "no board pdp11"),
        (("--board", "amd64", "--out", "o", "--compress", "lz4"), "--compress zstd|xz|none"),
        (("--board", "amd64", "--out", "o", "--overlay", "/no"), "--overlay /no: no such folder"),
        (("--board", "amd64", "--out", "o", "--frobnicate"), "unknown argument --frobnicate"),
    ],
)  # fmt: skip
def test_bad_arguments_are_refused_by_name(
    args: tuple[str, ...], said: str, tmp_path: Path
) -> None:
    res = build(*args, cwd=tmp_path)
    assert res.returncode == 1 and said in res.stderr, res.stderr
    assert list(tmp_path.iterdir()) == []  # nothing made


def test_ab_is_refused_for_the_raspberry_pi_with_the_reason(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the board checks come after the root check")
    res = build("--board", "rpi4", "--out", "o", "--ab", cwd=tmp_path)
    assert res.returncode == 1, res.stderr
    assert "--ab: only the UEFI boards (amd64, arm64) so far" in res.stderr, res.stderr


def test_help_says_how_to_call_it(tmp_path: Path) -> None:
    res = build("--help", cwd=tmp_path)
    assert res.returncode == 0 and "--board" in res.stdout and "--ab" in res.stdout, res.stdout
