"""image-build/lib/keycheck.py against real OpenPGP keys made here with gpg: the Raspberry Pi
archive key is refused at build time when its self-signatures are SHA-1 only (Debian 13's APT
refuses those since 2026-02-01) and accepted once re-signed, as Raspberry Pi re-signed theirs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

KEYCHECK = ROOT / "image-build/lib/keycheck.py"


def gpg(home: Path, *args: str) -> str:
    done = subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback",
         "--passphrase", "", *args],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout


@pytest.fixture
def old_key(tmp_path: Path) -> tuple[Path, str, Path]:
    """An archive key as made years ago: its user ID bound by a SHA-1 signature only."""
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    uid = "Example Archive Signing Key <archive@example.org>"
    gpg(home, "--cert-digest-algo", "SHA1", "--quick-gen-key", uid, "rsa2048", "sign", "never")
    fpr = next(
        line.split(":")[9]
        for line in gpg(home, "--with-colons", "--list-keys").splitlines()
        if line.startswith("fpr:")
    )
    key = tmp_path / "old.asc"
    key.write_text(gpg(home, "--armor", "--export", fpr))
    return key, fpr, home


def keycheck(key: Path, fpr: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["python3", str(KEYCHECK), str(key), fpr], capture_output=True, text=True)


def test_a_key_with_sha1_self_signatures_only_is_refused(old_key: tuple[Path, str, Path]) -> None:
    key, fpr, _home = old_key
    done = keycheck(key, fpr)
    assert done.returncode == 1
    assert (
        'user ID "Example Archive Signing Key <archive@example.org>": self-signed with SHA1 only'
        in done.stderr
    )
    assert "refuses SHA-1 self-signatures since 2026-02-01" in done.stderr


def test_the_same_key_re_signed_with_sha512_is_accepted(
    old_key: tuple[Path, str, Path], tmp_path: Path
) -> None:
    _key, fpr, home = old_key
    uid = "Example Archive Signing Key <archive@example.org>"
    gpg(home, "--cert-digest-algo", "SHA512", "--quick-set-primary-uid", fpr, uid)
    resigned = tmp_path / "resigned.asc"
    resigned.write_text(gpg(home, "--armor", "--export", fpr))
    done = keycheck(resigned, fpr)  # same fingerprint, new self-signature beside the old one
    assert done.returncode == 0, done.stderr
    assert f'user ID "{uid}": ' in done.stdout and "SHA512" in done.stdout


def test_another_key_or_no_key_is_refused(old_key: tuple[Path, str, Path], tmp_path: Path) -> None:
    key, _fpr, _home = old_key
    done = keycheck(key, "CF8A1AF502A2AA2D763BAE7E82B129927FA3303E")
    assert (
        done.returncode == 1
        and "not the key CF8A1AF502A2AA2D763BAE7E82B129927FA3303E" in done.stderr
    )
    html = tmp_path / "error.html"
    html.write_text("<html>404</html>\n")
    done = keycheck(html, "CF8A1AF502A2AA2D763BAE7E82B129927FA3303E")
    assert done.returncode == 1 and "(got: no key)" in done.stderr
