"""rva init: make Redis ready for the appliance. Idempotent; safe on every boot.

1. the model (manifest + file bytes) into Redis, so gear workers on any host can load it;
2. the time series of every camera, with labels (camera, __name__), retention and
   avg/min/max rollups of the people count over 1, 5 and 15 real minutes;
3. the gear registrations (stream, model, thresholds) in rva:gears.
Without RedisTimeSeries step 2 is skipped and the appliance runs with counts in the results
stream only; that state is recorded in rva:timeseries for `rva status` and /healthz.
"""

from __future__ import annotations

import logging

import redis

from rva import keys
from rva.config import Config
from rva.connection import timeseries_available
from rva.gears.base import Registration
from rva.models import manifest as manifests
from rva.models import store

log = logging.getLogger(__name__)

GEAR_TYPE = "people_counter"


def _ts_info(client: redis.Redis, key: str) -> dict[str, object] | None:
    try:
        raw = client.execute_command("TS.INFO", key)
    except redis.ResponseError:
        return None
    it = iter(raw)
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in zip(it, it, strict=False)}


def _rules_of(info: dict[str, object]) -> set[str]:
    rules: list[list[bytes]] = info.get("rules") or []  # type: ignore[assignment]
    return {r[0].decode() for r in rules}


def ensure_series(client: redis.Redis, key: str, retention_ms: int, labels: dict[str, str]) -> None:
    args: list[object] = ["RETENTION", retention_ms, "DUPLICATE_POLICY", "LAST", "LABELS"]
    for name, value in labels.items():
        args += [name, value]
    if _ts_info(client, key) is None:
        try:
            client.execute_command("TS.CREATE", key, *args)
            return
        except redis.ResponseError as exc:
            if "already exists" not in str(exc):
                raise
    # Existing series: bring retention and labels to what the config says now.
    alter = [a for a in args if a not in ("DUPLICATE_POLICY", "LAST")]
    client.execute_command("TS.ALTER", key, *alter)


def ensure_timeseries(client: redis.Redis, camera: str, cfg: Config) -> bool:
    """Create or update every series and rule of one camera. False without RedisTimeSeries."""
    if not timeseries_available(client):
        client.set(keys.TIMESERIES_FLAG, "off")
        return False
    raw_ms = int(cfg.timeseries.retention_hours * 3600_000)
    rollup_ms = int(cfg.timeseries.rollup_retention_days * 86400_000)
    for metric in keys.METRICS:
        ensure_series(
            client, keys.series(camera, metric), raw_ms, {"camera": camera, "__name__": metric}
        )
    source = keys.series(camera, "people")
    existing = _rules_of(_ts_info(client, source) or {})
    for agg in keys.ROLLUP_AGGREGATIONS:
        for minutes in keys.ROLLUP_MINUTES:
            dest = keys.rollup(camera, agg, minutes)
            ensure_series(
                client,
                dest,
                rollup_ms,
                {"camera": camera, "__name__": f"people_{agg}_{minutes}m", "aggregation": agg},
            )
            if dest not in existing:
                client.execute_command(
                    "TS.CREATERULE", source, dest, "AGGREGATION", agg, minutes * 60_000
                )
    client.set(keys.TIMESERIES_FLAG, "on")
    return True


def register_gears(client: redis.Redis, cfg: Config) -> list[Registration]:
    regs = [Registration.from_config(GEAR_TYPE, cam, cfg) for cam in cfg.cameras]
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


def ensure_group(client: redis.Redis, stream: str, group: str) -> None:
    """The consumer group starts at new frames ($): old frames on boot are not worth a pass."""
    try:
        client.xgroup_create(stream, group, id="$", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def run(client: redis.Redis, cfg: Config, model_cache: str | None = None) -> dict[str, object]:
    bundle = store.from_cache(manifests.load(cfg.gear.model), store.cache_dir(model_cache))
    wrote_model = store.to_redis(client, bundle)
    log.info(
        "model %s %s",
        bundle.manifest.name,
        "stored in Redis" if wrote_model else "already in Redis",
    )
    ts = [ensure_timeseries(client, cam, cfg) for cam in cfg.cameras]
    timeseries = all(ts)
    if not timeseries:
        log.warning(
            "RedisTimeSeries is not available: time series are OFF; "
            "counts stay in camera:<id>:yolo only"
        )
    regs = register_gears(client, cfg)
    for reg in regs:
        ensure_group(client, reg.stream, reg.group)
    return {
        "model": bundle.manifest.name,
        "model_stored": wrote_model,
        "timeseries": timeseries,
        "gears": [r.id for r in regs],
    }
