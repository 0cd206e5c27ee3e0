"""rva update check, the trial boot's health gate (rva-health-check.service), on the real
pipeline: rva capture and rva gears on vtest.avi with a real Redis. It passes once frames are
counted and Redis still holds the marker rva update wrote before the update; it fails, saying
what is missing, when the detector does not run or Redis lost its data."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from rva import keys
from tests.conftest import RedisServer, Services, write_config

MARKER = {"id": "0f1e2d3c", "version": "2.0", "bundle": "rva-amd64-2.0.raucb", "at": "0"}


def _check(svc: Services, data: Path, timeout: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rva", "update", "check", "--timeout", str(timeout)],
        env={**svc.env(), "RVA_UPDATE_DIR": str(data)},
        capture_output=True,
        text=True,
        timeout=timeout + 60,
        check=False,
    )


def test_check_passes_when_counting_with_the_data_kept(
    redis_ts: RedisServer,
    tmp_path: Path,
    vtest_path: Path,
    services: Callable[[Path], Services],
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "update.json").write_text(json.dumps(MARKER))
    redis_ts.client().hset(keys.UPDATE, mapping=MARKER)
    svc = services(write_config(tmp_path / "rva.toml", redis_ts.url, vtest_path))
    svc.pipeline()
    res = _check(svc, data, 240)
    assert res.returncode == 0, res.stderr
    assert "healthy: 1 camera(s) counting, Redis has its data" in res.stdout
    # Checked once: a later boot of the same slot does not look for the marker again.
    assert not (data / "update.json").exists()
    assert json.loads((data / "update-checked.json").read_text()) == MARKER


def test_check_fails_saying_what_is_missing(
    redis_ts: RedisServer,
    tmp_path: Path,
    vtest_path: Path,
    services: Callable[[Path], Services],
) -> None:
    """Frames but no detector, and a Redis that lost the data it had (no marker)."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "update.json").write_text(json.dumps(MARKER))
    svc = services(write_config(tmp_path / "rva.toml", redis_ts.url, vtest_path))
    svc.run("init")
    svc.start("capture")
    res = _check(svc, data, 20)
    assert res.returncode == 1
    assert "not healthy after 20s: " in res.stderr
    assert "camera 0: " in res.stderr  # no fresh frames yet, or frames not counted
    assert (
        "Redis does not have the data it had before the update (no rva:update marker 0f1e2d3c "
        "of version 2.0)" in res.stderr
    )
    assert (data / "update.json").exists()


def test_check_without_pending_update_needs_counting_only(
    tmp_path: Path, services: Callable[[Path], Services]
) -> None:
    """No update.json (a trial boot after `rauc status mark-active`): no marker asked for;
    with Redis down the check fails naming it."""
    svc = services(write_config(tmp_path / "rva.toml", "redis://127.0.0.1:1/0", "none.avi"))
    res = _check(svc, tmp_path / "data", 6)
    assert res.returncode == 1
    assert "not healthy after 6s: Redis unreachable" in res.stderr, res.stderr
    assert "marker" not in res.stderr
