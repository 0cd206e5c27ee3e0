"""The code base stays clean under the checkers configured in pyproject.toml, and its shell
scripts under shellcheck."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)


def test_ruff_finds_nothing() -> None:
    res = _run(str(BIN / "ruff"), "check", "--output-format", "concise", ".")
    assert res.returncode == 0, res.stdout + res.stderr


def test_code_is_ruff_formatted() -> None:
    res = _run(str(BIN / "ruff"), "format", "--check", ".")
    assert res.returncode == 0, res.stdout + res.stderr


def test_mypy_finds_nothing() -> None:
    res = _run(str(BIN / "mypy"))
    assert res.returncode == 0, res.stdout + res.stderr


def _shell_scripts() -> tuple[list[str], list[str]]:
    """Executables with a sh/bash shebang, and the bash files image-build sources."""
    executables, sourced = [], []
    for name in _run("git", "ls-files").stdout.split():
        path = ROOT / name
        if not path.is_file():
            continue
        with path.open("rb") as f:
            first = f.readline()
        if first.startswith((b"#!/bin/sh", b"#!/bin/bash", b"#!/usr/bin/env bash")):
            executables.append(name)
        elif (
            name.startswith("image-build/")
            and not name.startswith("image-build/overlays/")
            and name.endswith((".sh", ".conf"))
        ):
            sourced.append(name)
    return executables, sourced


def test_shell_scripts_pass_shellcheck() -> None:
    executables, sourced = _shell_scripts()
    assert "image-build/build" in executables and ".ci/run" in executables
    assert "image-build/steps/20-provision.sh" in sourced
    shellcheck = (str(BIN / "shellcheck"), "--severity=warning", "-x", "--source-path=SCRIPTDIR")
    res = _run(*shellcheck, *executables)
    assert res.returncode == 0, res.stdout + res.stderr
    # Sourced files have no shebang: they are bash, like the build that sources them.
    res = _run(*shellcheck, "--shell=bash", *sourced)
    assert res.returncode == 0, res.stdout + res.stderr
