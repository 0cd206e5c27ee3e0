"""What the page, /metrics and rva status show of the counting stage: lines with their in/out
(today and since install), zones with their occupancy now, and how old those numbers are."""

from __future__ import annotations

import time

import redis

from rva import keys
from rva.config import CameraSection, Config

STALE_S = 30.0  # counts not moved on for this long while the camera runs: shown as stale


def _decoded(raw: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in raw.items()}


def view(client: redis.Redis, camera: str, section: CameraSection) -> dict[str, object]:
    """Lines and zones of one camera, with their geometry (to draw) and numbers (to show)."""
    counts = _decoded(client.hgetall(keys.counts(camera)))
    ts = int(counts["ts"]) if "ts" in counts else None
    age = round(time.time() - ts / 1000, 1) if ts else None

    def number(field: str) -> int | None:
        return int(counts[field]) if field in counts else None

    lines = {
        name: {
            "points": line.points,
            "in_side": line.in_side,
            "classes": line.classes,
            "in_today": number(f"line:{name}:in:today"),
            "out_today": number(f"line:{name}:out:today"),
            "in_total": number(f"line:{name}:in"),
            "out_total": number(f"line:{name}:out"),
        }
        for name, line in section.lines.items()
    }
    zones = {
        name: {
            "polygon": zone.polygon,
            "classes": zone.classes,
            "occupancy": number(f"zone:{name}"),
        }
        for name, zone in section.zones.items()
    }
    return {
        "camera": camera,
        "lines": lines,
        "zones": zones,
        "day": counts.get("day"),
        "age_s": age,
        "stale": age is None or age > STALE_S,
    }


def totals(client: redis.Redis, cameras: list[str]) -> dict[str, dict[str, int]]:
    """Per camera, every line:<name>:<dir> total since install and zone:<name> occupancy, as
    the stage last wrote them (lines no longer configured included: what was counted stays)."""
    pipe = client.pipeline(transaction=False)
    for camera in cameras:
        pipe.hgetall(keys.counts(camera))
    out: dict[str, dict[str, int]] = {}
    for camera, raw in zip(cameras, pipe.execute(), strict=True):
        fields = _decoded(raw)
        out[camera] = {
            k: int(v)
            for k, v in fields.items()
            if (k.startswith("line:") and not k.endswith(":today")) or k.startswith("zone:")
        }
    return out


def classes(cfg: Config) -> dict[str, dict[str, str]]:
    """What each configured line and zone counts, per camera: {"line:door": "person", ...}."""
    return {
        cam: {
            **{f"line:{n}": ",".join(s.classes) for n, s in section.lines.items()},
            **{f"zone:{n}": ",".join(s.classes) for n, s in section.zones.items()},
        }
        for cam, section in cfg.cameras.items()
    }
