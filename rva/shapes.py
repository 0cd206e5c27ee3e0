"""The counting lines and zones in use: rva.toml's, with those saved live laid over them.

Lines and zones drawn on the page (or set with `rva lines` / `rva zones`) are the appliance's own
state, kept in Redis beside the counts they produce, never written into the administrator's
rva.toml:

- ``rva:geometry`` (hash): camera id → JSON ``{"lines": {name: spec | null}, "zones": {...}}``,
  the live layer. A spec replaces rva.toml's line or zone of the same name, or adds one; null
  hides rva.toml's (a removal). ``rva lines reset CAMERA`` drops the layer: rva.toml's as written.
- ``rva:geometry:version`` (integer): raised by every change; every service polls it (one GET a
  second) and applies the new set without a restart.
- ``rva:geometry:history`` (stream, the last 1000): who changed what and when, with the layer
  before and after, so that any change can be undone (an undo is a change too).

Every saved line or zone passes the checks rva.toml's do (the schema, a usable segment or
polygon, points inside the frame). A moved line keeps its name's totals; a renamed one is a new
line (its totals start at 0; the old name's totals and series stay in Redis, as counted).
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

import redis
from pydantic import ValidationError

from rva import checks
from rva.config import CameraSection, Config, ConfigError, LineSection, ZoneSection

log = logging.getLogger(__name__)

LAYER = "rva:geometry"
VERSION = "rva:geometry:version"
HISTORY = "rva:geometry:history"
HISTORY_MAXLEN = 1000
NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
KINDS: dict[str, tuple[str, type[LineSection] | type[ZoneSection]]] = {
    "line": ("lines", LineSection),
    "zone": ("zones", ZoneSection),
}

Layer = dict[str, dict[str, dict[str, Any] | None]]  # {"lines": {...}, "zones": {...}}


def _empty() -> Layer:
    return {"lines": {}, "zones": {}}


def _decode(raw: bytes | str | None) -> Layer:
    if not raw:
        return _empty()
    data = json.loads(raw)
    return {"lines": dict(data.get("lines") or {}), "zones": dict(data.get("zones") or {})}


def layers(client: redis.Redis) -> dict[str, Layer]:
    """The live layer of every camera that has one."""
    return {k.decode(): _decode(v) for k, v in client.hgetall(LAYER).items()}


def version(client: redis.Redis) -> int:
    return int(client.get(VERSION) or 0)


def apply(section: CameraSection, layer: Layer, camera: str = "") -> CameraSection:
    """One camera's section with its live layer laid over rva.toml's lines and zones. A saved
    spec that no longer validates (rva.toml's frame size changed, say) is left out and logged."""
    merged: dict[str, dict[str, Any]] = {"lines": dict(section.lines), "zones": dict(section.zones)}
    for kind, (plural, model) in KINDS.items():
        for name, spec in layer[plural].items():
            if spec is None:
                merged[plural].pop(name, None)
                continue
            try:
                merged[plural][name] = model.model_validate(spec)
            except ValidationError as exc:
                log.warning("camera %s: saved %s %r left out: %s", camera, kind, name, exc)
    return section.model_copy(update=merged)


def effective(cfg: Config, saved: dict[str, Layer]) -> Config:
    """The config with every camera's live layer applied (layers of unknown cameras ignored)."""
    cameras = {
        cam: apply(section, saved[cam], cam) if cam in saved else section
        for cam, section in cfg.cameras.items()
    }
    return cfg.model_copy(update={"cameras": cameras})


def load(client: redis.Redis, cfg: Config) -> Config:
    return effective(cfg, layers(client))


@dataclass
class Watch:
    """The effective config, re-read when rva:geometry:version moves (checked at most every
    `every_s`). While Redis is unreachable the last one stays in use."""

    client: redis.Redis
    base: Config
    every_s: float = 1.0
    seen: int = -1
    checked: float = float("-inf")
    current: Config | None = None

    def config(self) -> Config:
        now = time.monotonic()
        if self.current is not None and now - self.checked < self.every_s:
            return self.current
        self.checked = now
        try:
            number = version(self.client)
            if self.current is None or number != self.seen:
                self.current, self.seen = load(self.client, self.base), number
        except (redis.RedisError, OSError, ValueError) as exc:
            log.debug("live lines not re-read: %s", exc)
        return self.current or self.base

    def expire(self) -> None:
        """Look at the version at the next call (this process has just changed it)."""
        self.checked = float("-inf")

    def changed(self) -> bool:
        """Whether the version moved since the last look (the new set is then in `current`);
        a first successful read after Redis was unreachable is a change too."""
        before = self.seen
        self.config()
        return self.seen != before


# -- changes -----------------------------------------------------------------------------
class ShapeError(ValueError):
    """A change that cannot be made, phrased for a person (the page shows it as it is)."""


def validate(cfg: Config, camera: str, kind: str, name: str, spec: dict[str, Any]) -> None:
    """Refuse a line or zone that rva.toml could not hold either (ShapeError says why)."""
    if kind not in KINDS:
        raise ShapeError(f"unknown kind {kind!r} (line or zone)")
    plural, model = KINDS[kind]
    try:
        section = cfg.camera(camera)
    except ConfigError as exc:
        raise ShapeError(str(exc)) from None
    if not NAME.fullmatch(name):
        raise ShapeError(
            f"cameras.{camera}.{plural}.{name}: a name is 1 to 32 letters, digits, - or _"
        )
    try:
        shape = model.model_validate(spec)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        reason = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            reason = "unknown key"
        key = f"cameras.{camera}.{plural}.{name}" + (f".{where}" if where else "")
        raise ShapeError(f"{key}: {reason}") from None
    from rva.models import manifest

    known = manifest.load(cfg.gear.model).class_names()
    if missing := [c for c in shape.classes if c not in known]:
        raise ShapeError(
            f"cameras.{camera}.{plural}.{name}.classes: gear.model {cfg.gear.model} does not "
            f"detect {missing[0]!r}"
        )
    other = "zones" if plural == "lines" else "lines"
    candidate = section.model_copy(update={plural: {name: shape}, other: {}})
    for finding in checks.geometry(camera, candidate):
        if finding.level == "error":
            raise ShapeError(f"{finding.key}: {finding.message}")


@dataclass(frozen=True)
class Change:
    version: int
    camera: str
    who: str
    action: str


def _commit(
    client: redis.Redis, camera: str, who: str, action: str, edit: Any, *, undoes: str = ""
) -> Change:
    """Apply ``edit(layer) -> layer | None`` (None: drop the layer) atomically and record it."""
    with client.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(LAYER)
                before_raw = pipe.hget(LAYER, camera)
                before = _decode(before_raw)
                after = edit(json.loads(json.dumps(before)))
                pipe.multi()
                if after is None or after == _empty():
                    pipe.hdel(LAYER, camera)
                else:
                    pipe.hset(LAYER, camera, json.dumps(after, sort_keys=True))
                pipe.incr(VERSION)
                fields = {
                    "camera": camera,
                    "who": who,
                    "action": action,
                    "before": json.dumps(before, sort_keys=True),
                    "after": json.dumps(after or _empty(), sort_keys=True),
                    "t": int(time.time() * 1000),
                }
                if undoes:
                    fields["undoes"] = undoes
                pipe.xadd(HISTORY, fields, maxlen=HISTORY_MAXLEN, approximate=True)
                _, number, _ = pipe.execute()
                break
            except redis.WatchError:
                continue
    log.info("lines and zones of camera %s, version %d: %s; by %s", camera, number, action, who)
    return Change(int(number), camera, who, action)


def set_shape(
    client: redis.Redis, cfg: Config, camera: str, kind: str, name: str, spec: dict, who: str
) -> Change:
    validate(cfg, camera, kind, name, spec)
    plural, model = KINDS[kind]
    clean = model.model_validate(spec).model_dump(mode="json")

    def edit(layer: Layer) -> Layer:
        layer[plural][name] = clean
        return layer

    existed = name in getattr(load(client, cfg).camera(camera), plural)
    return _commit(client, camera, who, f"{'moved' if existed else 'added'} {kind} {name}", edit)


def remove_shape(
    client: redis.Redis, cfg: Config, camera: str, kind: str, name: str, who: str
) -> Change:
    if kind not in KINDS:
        raise ShapeError(f"unknown kind {kind!r} (line or zone)")
    plural, _ = KINDS[kind]
    try:
        section = load(client, cfg).camera(camera)
    except ConfigError as exc:
        raise ShapeError(str(exc)) from None
    if name not in getattr(section, plural):
        known = ", ".join(sorted(getattr(section, plural))) or "none"
        raise ShapeError(f"camera {camera} has no {kind} {name!r} (its {plural}: {known})")
    in_file = name in getattr(cfg.camera(camera), plural)

    def edit(layer: Layer) -> Layer:
        if in_file:
            layer[plural][name] = None  # hides rva.toml's
        else:
            layer[plural].pop(name, None)
        return layer

    return _commit(client, camera, who, f"removed {kind} {name}", edit)


def reset(client: redis.Redis, cfg: Config, camera: str, who: str) -> Change:
    """Back to rva.toml's lines and zones for this camera (undoable too)."""
    cfg.camera(camera)
    return _commit(client, camera, who, "back to rva.toml's lines and zones", lambda _layer: None)


def history(client: redis.Redis, camera: str | None = None, count: int = 50) -> list[dict]:
    """The newest changes first: id, camera, who, action, t (ms), undoes."""
    out = []
    for entry_id, fields in client.xrevrange(HISTORY, count=HISTORY_MAXLEN):
        item = {k.decode(): v.decode() for k, v in fields.items()}
        if camera is not None and item.get("camera") != camera:
            continue
        out.append(
            {
                "id": entry_id.decode(),
                "camera": item.get("camera"),
                "who": item.get("who"),
                "action": item.get("action"),
                "t": int(item.get("t", 0)),
                **({"undoes": item["undoes"]} if "undoes" in item else {}),
                "before": json.loads(item.get("before") or "{}"),
                "after": json.loads(item.get("after") or "{}"),
            }
        )
        if len(out) >= count:
            break
    return out


def undo(client: redis.Redis, cfg: Config, camera: str, who: str) -> Change:
    """Undo the camera's newest change not undone yet (again: the one before it, and so on)."""
    cfg.camera(camera)
    undone: set[str] = set()
    for item in history(client, camera, HISTORY_MAXLEN):
        if "undoes" in item:
            undone.add(item["undoes"])
            continue
        if item["id"] in undone:
            continue
        restored = item["before"]
        return _commit(
            client,
            camera,
            who,
            f"undid {item['action']} (by {item['who']})",
            lambda _layer, restored=restored: _decode(json.dumps(restored)),
            undoes=item["id"],
        )
    raise ShapeError(f"camera {camera}: nothing to undo")
