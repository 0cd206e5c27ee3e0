"""The code base stays clean under the checkers configured in pyproject.toml."""

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
    res = _run(
        str(BIN / "ruff"), "format", "--check", "rva", "services", "gears", "models", "tests"
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_mypy_finds_nothing() -> None:
    res = _run(str(BIN / "mypy"))
    assert res.returncode == 0, res.stdout + res.stderr
