"""Lines and zones edited from the page: read, save, remove, undo (rva.shapes keeps them).

Who may write: with web users ([web] users_file), every request is already signed in (the
Guard) and the user's name goes into the history. Without users, only the device itself may
write (a request from loopback: the demo on a laptop, a shell on the device); any other
address is refused with how to add a user. A write must be JSON (``Content-Type:
application/json``) or a DELETE, and an ``Origin`` header, when sent, must be this server: a
page elsewhere cannot make a browser write here (those requests need a CORS preflight, which
rva web never grants).
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import redis
from bottle import Bottle, HTTPResponse, request

from rva import shapes
from rva.config import Config
from rva.connection import TRANSIENT

log = logging.getLogger(__name__)

NO_USERS = (
    "saving lines and zones from another computer needs a web user: on the device run "
    "`sudo rva web passwd NAME`, then reload this page and sign in (without users only the "
    "device itself, http://localhost, may save)"
)


def _loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def writer() -> str | None:
    """Who this write is by, or None when it may not be made (see the module's docstring)."""
    user = request.environ.get("REMOTE_USER")
    if user:
        return str(user)
    if _loopback(request.environ.get("REMOTE_ADDR", "")):
        return "local"
    return None


def same_origin() -> bool:
    origin = request.headers.get("Origin")
    if not origin:
        return True
    host = request.headers.get("Host", "")
    return urlsplit(origin).netloc.lower() == host.lower()


def install(
    app: Bottle,
    client: redis.Redis,
    cfg: Config,
    live: Callable[[], Config],
    as_json: Callable[..., HTTPResponse],
    after_change: Callable[[], None] = lambda: None,
) -> None:
    """The routes: GET/POST /api/shapes, DELETE /api/shapes/<camera>/<kind>/<name>,
    POST /api/shapes/<camera>/undo, GET /api/shapes/<camera>/history."""

    def known(camera: str) -> str:
        if camera not in cfg.cameras:
            raise as_json({"error": f"unknown camera {camera!r}"}, 404)
        return camera

    def view(camera: str) -> dict[str, Any]:
        section, base = live().cameras[camera], cfg.cameras[camera]
        saved = shapes.layers(client).get(camera, {"lines": {}, "zones": {}})

        def origin(plural: str, name: str) -> str:
            return "saved" if name in saved[plural] else "rva.toml"

        return {
            "camera": camera,
            "version": shapes.version(client),
            "lines": {
                n: {**s.model_dump(mode="json"), "from": origin("lines", n)}
                for n, s in section.lines.items()
            },
            "zones": {
                n: {**s.model_dump(mode="json"), "from": origin("zones", n)}
                for n, s in section.zones.items()
            },
            "hidden": {
                "lines": sorted(n for n in base.lines if n not in section.lines),
                "zones": sorted(n for n in base.zones if n not in section.zones),
            },
            "can_save": writer() is not None,
            "why_not": None if writer() is not None else NO_USERS,
        }

    def guarded(change: Callable[[str], shapes.Change]) -> HTTPResponse:
        who = writer()
        if who is None:
            return as_json({"error": NO_USERS}, 403)
        if not same_origin():
            return as_json({"error": "refused: the request came from another site's page"}, 403)
        try:
            done = change(who)
            after_change()  # what this process shows follows its own change at once
        except shapes.ShapeError as exc:
            return as_json({"error": str(exc)}, 400)
        except TRANSIENT as exc:
            return as_json({"error": f"Redis unreachable: {exc}"}, 503)
        except redis.ResponseError as exc:  # an ACL without the right, a full Redis
            log.warning("lines and zones not saved: Redis refused: %s", exc)
            return as_json({"error": f"not saved: Redis refused the write: {exc}"}, 503)
        return as_json({"ok": True, "version": done.version, "action": done.action, "by": who})

    def body() -> dict[str, Any]:
        if request.content_type.split(";")[0].strip().lower() != "application/json":
            raise as_json({"error": "send JSON (Content-Type: application/json)"}, 415)
        try:
            data = json.loads(request.body.read(65536) or b"{}")
        except ValueError:
            raise as_json({"error": "the body is not valid JSON"}, 400) from None
        if not isinstance(data, dict):
            raise as_json({"error": "the body must be a JSON object"}, 400)
        return data

    @app.get("/api/shapes")
    def get_shapes() -> HTTPResponse:
        camera = known(request.query.get("camera") or next(iter(cfg.cameras)))
        try:
            return as_json(view(camera))
        except TRANSIENT as exc:
            return as_json({"error": f"Redis unreachable: {exc}"}, 503)

    @app.post("/api/shapes")
    def save_shape() -> HTTPResponse:
        data = body()
        camera = known(str(data.get("camera", next(iter(cfg.cameras)))))
        kind, name = str(data.get("kind", "")), str(data.get("name", ""))
        spec = {k: v for k, v in data.items() if k not in ("camera", "kind", "name")}
        return guarded(lambda who: shapes.set_shape(client, cfg, camera, kind, name, spec, who))

    @app.delete("/api/shapes/<camera>/<kind>/<name>")
    def remove_shape(camera: str, kind: str, name: str) -> HTTPResponse:
        known(camera)
        return guarded(lambda who: shapes.remove_shape(client, cfg, camera, kind, name, who))

    @app.post("/api/shapes/<camera>/undo")
    def undo(camera: str) -> HTTPResponse:
        known(camera)
        body()
        return guarded(lambda who: shapes.undo(client, cfg, camera, who))

    @app.get("/api/shapes/<camera>/history")
    def history(camera: str) -> HTTPResponse:
        known(camera)
        try:
            items = shapes.history(client, camera, 50)
        except TRANSIENT as exc:
            return as_json({"error": f"Redis unreachable: {exc}"}, 503)
        return as_json({"camera": camera, "history": items})
