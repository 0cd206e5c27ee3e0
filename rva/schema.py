"""The Redis schema made real: idempotent ``ensure_*`` functions every service may call.

`rva init` calls them on every boot; running services call them again after Redis lost its data
(restarted without persistence), so the appliance heals without a restart. Key names live in
``rva.keys``; this module only creates and updates what those names point at.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis

from rva import keys
from rva.config import Config
from rva.connection import timeseries_available


def ts_info(client: redis.Redis, key: str) -> dict[str, object] | None:
    """TS.INFO as a dict, or None when the series does not exist."""
    try:
        raw = client.execute_command("TS.INFO", key)
    except redis.ResponseError:
        return None
    it = iter(raw)
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in zip(it, it, strict=False)}


def _rules_of(info: dict[str, object]) -> set[str]:
    rules: list[list[bytes]] = info.get("rules") or []  # type: ignore[assignment]
    return {r[0].decode() for r in rules}


def ensure_series(
    client: redis.Redis,
    key: str,
    retention_ms: int,
    labels: dict[str, str],
    *,
    duplicate_policy: str = "LAST",
) -> None:
    """Create a series, or bring an existing one's retention and labels to these."""
    labelled: list[object] = ["RETENTION", retention_ms, "LABELS"]
    for name, value in labels.items():
        labelled += [name, value]
    if ts_info(client, key) is None:
        try:
            client.execute_command(
                "TS.CREATE", key, "DUPLICATE_POLICY", duplicate_policy, *labelled
            )
            return
        except redis.ResponseError as exc:
            if "already exists" not in str(exc):
                raise
    client.execute_command("TS.ALTER", key, *labelled)


def ensure_rules(
    client: redis.Redis,
    source: str,
    rollups: Iterable[tuple[str, str, int, dict[str, str]]],
    retention_ms: int,
) -> None:
    """Compaction rules ``source → dest`` (dest, aggregation, bucket ms, labels); existing ones
    are kept as they are."""
    existing = _rules_of(ts_info(client, source) or {})
    for dest, aggregation, bucket_ms, labels in rollups:
        ensure_series(client, dest, retention_ms, labels)
        if dest not in existing:
            client.execute_command(
                "TS.CREATERULE", source, dest, "AGGREGATION", aggregation, bucket_ms
            )


def retention_ms(cfg: Config) -> tuple[int, int]:
    """(raw samples, rollups) retention in milliseconds, from the config."""
    return (
        int(cfg.timeseries.retention_hours * 3600_000),
        int(cfg.timeseries.rollup_retention_days * 86400_000),
    )


def ensure_timeseries(client: redis.Redis, camera: str, cfg: Config) -> bool:
    """Create or update every series and rule of one camera. False without RedisTimeSeries."""
    if not timeseries_available(client):
        client.set(keys.TIMESERIES_FLAG, "off")
        return False
    raw_ms, rollup_ms = retention_ms(cfg)
    for metric in keys.METRICS:
        ensure_series(
            client, keys.series(camera, metric), raw_ms, {"camera": camera, "__name__": metric}
        )
    ensure_rules(
        client,
        keys.series(camera, "people"),
        [
            (
                keys.rollup(camera, agg, minutes),
                agg,
                minutes * 60_000,
                {"camera": camera, "__name__": f"people_{agg}_{minutes}m", "aggregation": agg},
            )
            for agg in keys.ROLLUP_AGGREGATIONS
            for minutes in keys.ROLLUP_MINUTES
        ],
        rollup_ms,
    )
    client.set(keys.TIMESERIES_FLAG, "on")
    return True


def ensure_group(client: redis.Redis, stream: str, group: str) -> None:
    """The consumer group starts at new frames ($): old frames on boot are not worth a pass."""
    try:
        client.xgroup_create(stream, group, id="$", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
