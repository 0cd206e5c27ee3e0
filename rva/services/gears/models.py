"""Where a gear worker gets its model: from Redis (the bytes `rva init` stored, the same on
every host), else from this host's cache (Redis restarted empty), which it then stores in
Redis for the workers after it."""

from __future__ import annotations

import logging

import redis

from rva import keys
from rva.models import manifest, store
from rva.models.store import ModelBundle

log = logging.getLogger(__name__)


def load(client: redis.Redis, name: str) -> ModelBundle:
    try:
        return store.from_redis(client, name)
    except store.ModelError:
        if client.exists(keys.model(name)):
            raise  # there, but damaged: `rva init` says which file
    return from_cache(client, name)


def from_cache(client: redis.Redis, name: str) -> ModelBundle:
    """A model that is not in Redis (Redis restarted empty, `rva init` not run again),
    from this host's cache when it has one, stored in Redis for the workers after it."""
    try:
        bundle = store.from_cache(manifest.load(name), store.cache_dir())
    except store.ModelError as exc:
        raise store.ModelError(
            f"model {name!r} is not in Redis nor in this host's cache ({exc}); "
            "run `rva init` on the appliance"
        ) from None
    store.to_redis(client, bundle)
    log.warning("model %s was not in Redis: stored it from this host's cache", name)
    return bundle
