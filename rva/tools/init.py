"""rva init: make Redis ready for the appliance. Idempotent; safe on every boot.

1. the model (manifest + file bytes) into Redis, so gear workers on any host can load it;
2. the time series of every camera, with labels (camera, __name__), retention and
   avg/min/max rollups of the people count over 1, 5 and 15 real minutes;
3. the series of the counting lines and zones of every camera that has them (their rollups:
   crossings summed per minute, hour and day; occupancy avg/max per minute and hour);
4. the gear registrations (stream, model, thresholds) in rva:gears.
Without RedisTimeSeries step 2 is skipped and the appliance runs with counts in the results
stream only; that state is recorded in rva:timeseries for `rva status` and /healthz.
"""

from __future__ import annotations

import logging

import redis

from rva import keys, schema
from rva.config import Config
from rva.gears.base import Registration
from rva.models import manifest as manifests
from rva.models import store
from rva.stages.runner import StageRunner

log = logging.getLogger(__name__)


def register_gears(client: redis.Redis, cfg: Config) -> list[Registration]:
    regs = [Registration.from_config(cam, cfg) for cam in cfg.cameras]
    pipe = client.pipeline(transaction=True)
    for reg in regs:
        pipe.hset(keys.GEARS, reg.id, reg.to_json())
    # Cameras removed from the config stop being processed.
    current = {r.id for r in regs}
    for stale in client.hkeys(keys.GEARS):
        if stale.decode() not in current:
            pipe.hdel(keys.GEARS, stale)
    pipe.execute()
    return regs


def run(client: redis.Redis, cfg: Config, model_cache: str | None = None) -> dict[str, object]:
    bundle = store.from_cache(manifests.load(cfg.gear.model), store.cache_dir(model_cache))
    wrote_model = store.to_redis(client, bundle)
    log.info(
        "model %s %s",
        bundle.manifest.name,
        "stored in Redis" if wrote_model else "already in Redis",
    )
    ts = [schema.ensure_timeseries(client, cam, cfg) for cam in cfg.cameras]
    timeseries = all(ts)
    if not timeseries:
        log.warning(
            "RedisTimeSeries is not available: time series are OFF; "
            "counts stay in camera:<id>:yolo only"
        )
    # The stages' series (counting lines and zones), for every camera that has them.
    stages = StageRunner(client, cfg)
    stages.prepare()
    regs = register_gears(client, cfg)
    for reg in regs:
        schema.ensure_group(client, reg.stream, reg.group)
    return {
        "model": bundle.manifest.name,
        "model_stored": wrote_model,
        "timeseries": timeseries,
        "gears": [r.id for r in regs],
        "stages": [slot.name for slot in stages.slots],
    }
