#!/usr/bin/env python3
"""keycheck.py KEYFILE FINGERPRINT: refuse an APT archive key that is not the expected one, or
whose self-signatures Debian 13's APT would refuse.

Debian 13 (trixie) verifies archive signatures with Sequoia (sqv), whose policy refuses SHA-1
self-signatures from 2026-02-01: a key whose user IDs or signing subkeys are bound by SHA-1
signatures only stops verifying, and `apt update` fails with "Signature ... is not bound". The
fingerprint alone cannot tell an old export of a key from its re-signed one (the Raspberry Pi
archive key was re-signed with SHA-512 on 2025-06-05: same fingerprint, new self-signatures), so
both are checked here, by reading gpg's packet dump (gpg --list-packets).

Exit 0 and one line per user ID and subkey when the key is good; exit 1 with the reason
otherwise.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

# RFC 4880 / 9580 hash algorithm ids: those Sequoia's standard policy still accepts for
# self-signatures after 2026-02-01 (MD5 = 1 and SHA-1 = 2 are refused, RIPEMD-160 = 3 too).
STRONG = {8: "SHA256", 9: "SHA384", 10: "SHA512", 11: "SHA224", 12: "SHA3-256", 14: "SHA3-512"}
WEAK = {1: "MD5", 2: "SHA1", 3: "RIPEMD160"}
CERTIFICATIONS = {0x10, 0x11, 0x12, 0x13}  # a user ID bound by its key
SUBKEY_BINDING = 0x18


@dataclass
class Bound:
    """A user ID or a subkey, and the hash algorithms of the primary key's signatures on it."""

    what: str
    digests: list[int] = field(default_factory=list)

    def verdict(self) -> str | None:
        if any(d in STRONG for d in self.digests):
            return None
        names = sorted({WEAK.get(d, str(d)) for d in self.digests}) or ["no self-signature"]
        return f"{self.what}: self-signed with {', '.join(names)} only"


def packets(key_file: str) -> str:
    with tempfile.TemporaryDirectory() as home:  # never the caller's keyring
        done = subprocess.run(
            ["gpg", "--homedir", home, "--batch", "--list-packets", key_file],
            capture_output=True,
            text=True,
        )
    if done.returncode not in (0, 2) or ":public key packet:" not in done.stdout:
        raise SystemExit(f"keycheck: {key_file} holds no OpenPGP public key: {done.stderr.strip()}")
    return done.stdout


def fingerprints(key_file: str) -> list[str]:
    with tempfile.TemporaryDirectory() as home:
        done = subprocess.run(
            ["gpg", "--homedir", home, "--batch", "--with-colons", "--show-keys", key_file],
            capture_output=True,
            text=True,
        )
    rows = [line.split(":") for line in done.stdout.splitlines()]
    found, primary = [], False
    for row in rows:  # the fpr row right after each pub row is the primary key's
        if row[0] == "pub":
            primary = True
        elif row[0] == "fpr" and primary:
            found.append(row[9])
            primary = False
        elif row[0] == "sub":
            primary = False
    return found


def bindings(dump: str) -> list[Bound]:
    """Each user ID and subkey of the first (primary) key, with its self-signatures' digests."""
    primary_id = ""
    items: list[Bound] = []
    current: Bound | None = None
    signature: dict[str, str] = {}
    for line in [*dump.splitlines(), ":end:"]:
        if line.startswith(":"):
            if signature and current is not None and signature.get("keyid") == primary_id:
                cls = int(signature.get("sigclass", "0"), 16)
                wanted = CERTIFICATIONS if current.what.startswith("user ID") else {SUBKEY_BINDING}
                if cls in wanted and "digest" in signature:
                    current.digests.append(int(signature["digest"]))
            signature = {}
            if line.startswith(":public key packet:") and primary_id:
                break  # a second key in the file: only the first is checked
            if line.startswith(":user ID packet:"):
                current = Bound("user ID " + line.split(":", 2)[2].strip())
                items.append(current)
            elif line.startswith(":public sub key packet:"):
                current = Bound("subkey")
                items.append(current)
            elif line.startswith(":signature packet:"):
                if m := re.search(r"keyid ([0-9A-F]+)", line):
                    signature["keyid"] = m.group(1)
            continue
        if m := re.search(r"\bkeyid: ([0-9A-F]+)", line):
            if not primary_id:
                primary_id = m.group(1)
            elif current is not None and current.what == "subkey":
                current.what = f"subkey {m.group(1)}"
        if m := re.search(r"sigclass 0x([0-9a-f]+)", line):
            signature["sigclass"] = m.group(1)
        if m := re.search(r"digest algo (\d+)", line):
            signature["digest"] = m.group(1)
    return items


def check(key_file: str, fingerprint: str) -> list[str]:
    """The reasons to refuse the key (empty when it is good)."""
    found = fingerprints(key_file)
    if fingerprint.upper() not in found:
        return [f"not the key {fingerprint} (got: {', '.join(found) or 'no key'})"]
    items = bindings(packets(key_file))
    if not any(b.what.startswith("user ID") for b in items):
        return ["no user ID"]
    return [v for b in items if (v := b.verdict())]


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: keycheck.py KEYFILE FINGERPRINT", file=sys.stderr)
        return 2
    problems = check(argv[0], argv[1])
    if problems:
        print(
            f"keycheck: {argv[0]}: " + "; ".join(problems) + " (Debian 13's APT refuses SHA-1 "
            "self-signatures since 2026-02-01: fetch the re-signed key)",
            file=sys.stderr,
        )
        return 1
    for b in bindings(packets(argv[0])):
        names = sorted({STRONG.get(d) or WEAK.get(d, str(d)) for d in b.digests})
        print(f"{b.what}: {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
