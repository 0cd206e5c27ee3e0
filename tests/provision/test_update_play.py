"""ansible/update.yml's refusals, which happen on this machine before any device is touched (the
whole play, install to blessed and a fallback that stops it, runs against a booted A/B image in
tests/image/test_ab.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.provision.test_provision import REPO, _ansible_env, _tool

pytestmark = pytest.mark.provision


def _play(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    # A device that is never reached: the refusals come first.
    (tmp_path / "inventory.ini").write_text(
        "[rva_ab]\nunreached ansible_host=192.0.2.1 ansible_connection=ssh "
        "ansible_ssh_common_args='-o ConnectTimeout=1'\n"
    )
    return subprocess.run(
        [_tool("ansible-playbook"), "-i", str(tmp_path / "inventory.ini"),
         str(REPO / "ansible/update.yml"), *extra],
        # PWD as a shell sets it for the commands it runs.
        cwd=tmp_path, capture_output=True, text=True, env={**_ansible_env(), "PWD": str(tmp_path)},
        timeout=120,
    )  # fmt: skip


def test_without_a_bundle_or_url_it_says_what_to_give(tmp_path: Path) -> None:
    done = _play(tmp_path)
    assert done.returncode != 0
    assert "give one of -e rva_update_bundle=FILE" in done.stdout, done.stdout[-3000:]
    assert "unreached" in done.stdout and "UNREACHABLE" not in done.stdout


def test_a_missing_bundle_is_named_with_where_it_was_looked_for(tmp_path: Path) -> None:
    done = _play(tmp_path, "-e", "rva_update_bundle=out/rva-amd64-2.raucb")
    assert done.returncode != 0
    # A relative path is from where ansible-playbook runs, as a user types it.
    wanted = f"rva_update_bundle: {tmp_path}/out/rva-amd64-2.raucb: no such file on this machine"
    assert wanted in done.stdout, done.stdout[-3000:]
    assert "UNREACHABLE" not in done.stdout


def test_a_bundle_that_is_there_goes_on_to_the_device(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out/rva-amd64-2.raucb").write_bytes(b"not read on this machine")
    done = _play(tmp_path, "-e", "rva_update_bundle=out/rva-amd64-2.raucb")
    assert done.returncode != 0
    assert "no such file" not in done.stdout
    assert "UNREACHABLE" in done.stdout, done.stdout[-3000:]  # the next step is the device
