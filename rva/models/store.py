"""Where model files live: the local cache (filled by `rva models fetch`) and Redis.

Redis holds each model as one hash — the manifest as JSON and one field per file — so that a
gear worker on any host of the LAN loads the same bytes without a cache of its own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import redis

from rva import const, keys
from rva.models.manifest import Manifest, ModelError, sha256


def cache_dir(override: str | os.PathLike[str] | None = None) -> Path:
    return Path(override or os.environ.get(const.ENV_MODEL_CACHE) or const.MODEL_CACHE)


@dataclass(frozen=True)
class ModelBundle:
    """A manifest together with the bytes of every file it names."""

    manifest: Manifest
    files: dict[str, bytes]

    @property
    def labels(self) -> list[str]:
        m = self.manifest
        if m.labels_file:
            text = self.files[m.labels_file].decode("utf-8")
            return [line.strip() for line in text.splitlines() if line.strip()]
        return list(m.labels)

    def digest(self) -> str:
        """One checksum over all files, to tell whether Redis already has this exact model."""
        return sha256("".join(sha256(self.files[r]) for r in sorted(self.files)).encode())

    def verify(self) -> None:
        for role, spec in self.manifest.files.items():
            if role not in self.files:
                raise ModelError(f"model {self.manifest.name}: file {spec.name} missing")
            if spec.sha256 and sha256(self.files[role]) != spec.sha256:
                raise ModelError(
                    f"model {self.manifest.name}: {spec.name} has the wrong sha256 "
                    f"(want {spec.sha256})"
                )


def from_cache(manifest: Manifest, cache: Path | None = None) -> ModelBundle:
    folder = (cache or cache_dir()) / manifest.name
    files: dict[str, bytes] = {}
    for role, spec in manifest.files.items():
        path = folder / spec.name
        try:
            files[role] = path.read_bytes()
        except FileNotFoundError:
            raise ModelError(
                f"model {manifest.name}: {path} is missing; run `rva models fetch {manifest.name}`"
            ) from None
    bundle = ModelBundle(manifest, files)
    bundle.verify()
    return bundle


def to_redis(client: redis.Redis, bundle: ModelBundle) -> bool:
    """Store the model unless Redis already has the same bytes and manifest (a new release may
    change how a model runs, its input size, with the same files). True when it wrote."""
    key = keys.model(bundle.manifest.name)
    digest = bundle.digest()
    stored = client.hmget(key, ["digest", "manifest"])
    if stored == [digest.encode(), bundle.manifest.to_json().encode()]:
        return False
    mapping: dict[str, bytes | str] = {
        "manifest": bundle.manifest.to_json(),
        "digest": digest,
        **{f"file:{role}": data for role, data in bundle.files.items()},
    }
    pipe = client.pipeline(transaction=True)
    pipe.delete(key)
    pipe.hset(key, mapping=mapping)
    pipe.sadd(keys.MODELS, bundle.manifest.name)
    pipe.execute()
    return True


def from_redis(client: redis.Redis, name: str) -> ModelBundle:
    raw = client.hgetall(keys.model(name))
    if not raw or b"manifest" not in raw:
        raise ModelError(f"model {name!r} is not in Redis; run `rva init` on the appliance")
    manifest = Manifest.from_json(raw[b"manifest"])
    files = {k.decode().removeprefix("file:"): v for k, v in raw.items() if k.startswith(b"file:")}
    bundle = ModelBundle(manifest, files)
    bundle.verify()
    if raw.get(b"digest", b"").decode() != bundle.digest():
        raise ModelError(f"model {name!r} in Redis is damaged (digest mismatch); run `rva init`")
    return bundle
