"""rva web: the live page, the annotated MJPEG stream, /metrics, /healthz and a small JSON API.

Everything the page needs is served from here (no CDN: the LAN may be offline).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import redis
from bottle import Bottle, HTTPError, HTTPResponse, request, response, static_file

from rva import health, keys, shapes
from rva.config import Config
from rva.connection import TRANSIENT, connect, timeseries_available, wait_for_redis
from rva.runtime import Runtime
from rva.services.web import counting_view, metrics, report_view, requesthead, shapes_api
from rva.services.web.auth import Guard
from rva.services.web.feed import Feed
from rva.services.web.httpserver import Server
from rva.services.web.probe import HealthProbe

log = logging.getLogger(__name__)
BOUNDARY = "rvaframe"
STATIC = resources.files("rva.services.web").joinpath("static")


def make_app(client: redis.Redis, cfg: Config) -> Bottle:
    app = Bottle()
    feeds = {
        cam: Feed(client, cam, cfg.web.jpeg_quality, cfg.web.max_fps, section, cfg.web.video)
        for cam, section in cfg.cameras.items()
    }
    app.config["rva.feeds"] = feeds
    cameras = list(cfg.cameras)
    # Each stream holds a server thread: capped below the server's threads (make_server).
    streams = threading.BoundedSemaphore(cfg.web.max_viewers)

    # rva.toml's lines and zones with those saved live over them (rva.shapes): what the video,
    # the counts and the page show follows a change within a second or two.
    watch = shapes.Watch(client, cfg)

    def live() -> Config:
        current = watch.config()
        if app.config.get("rva.shapes_version") != watch.seen:
            app.config["rva.shapes_version"] = watch.seen
            for cam, feed in feeds.items():
                section = current.cameras[cam]
                feed.shapes = section if section.lines or section.zones else None
        return current

    app.config["rva.live"] = live

    # One read in flight at a time, shared; never a wait on a stuck Redis (probe.py).
    probe = HealthProbe(lambda: health.snapshot(client, cameras, cfg.gear.group))

    def snapshot() -> health.Snapshot:
        return probe.get()

    def camera_arg(in_path: str | None = None) -> str:
        cam = in_path or request.query.get("camera") or cameras[0]
        if cam not in feeds:
            raise HTTPError(404, f"unknown camera {cam!r}")
        return cam

    def as_json(data: object, status: int = 200) -> HTTPResponse:
        return HTTPResponse(
            json.dumps(data),
            status=status,
            headers={"Content-Type": "application/json", "Cache-Control": "no-store"},
        )

    def error_page(res: HTTPError) -> str:
        """/api/* errors as JSON with the message (unknown path, camera, method, a crash);
        bottle's HTML page elsewhere."""
        if not request.path.startswith("/api/"):
            page = Bottle.default_error_handler(app, res)  # bytes: str() would show b'...'
            return page.decode() if isinstance(page, bytes) else str(page)
        response.content_type = "application/json"
        return json.dumps({"error": str(res.body or res.status_line), "status": res.status_code})

    app.default_error_handler = error_page

    @app.get("/")
    def index() -> object:
        return static_file("index.html", root=str(STATIC))

    @app.get("/static/<name:re:[a-z0-9_.-]+>")
    def static(name: str) -> object:
        return static_file(name, root=str(STATIC))

    @app.get("/video")
    @app.get("/video/<cam>")
    def video(cam: str | None = None) -> Iterator[bytes]:
        if cfg.web.video == "off":  # privacy: no picture leaves this process
            raise as_json({"error": 'video is off ([web] video = "off"): counts only'}, 404)
        feed = feeds[camera_arg(cam)]
        response.content_type = f"multipart/x-mixed-replace; boundary={BOUNDARY}"
        response.set_header("Cache-Control", "no-cache, no-store, must-revalidate")
        response.set_header("Pragma", "no-cache")
        return mjpeg(feed, streams)

    @app.get("/healthz")
    def healthz() -> HTTPResponse:
        snap = snapshot()
        return as_json(snap.as_dict(), 503 if snap.status == "down" else 200)

    @app.get("/metrics")
    def metrics_route() -> HTTPResponse:
        return HTTPResponse(
            metrics.render(
                snapshot,
                lambda: counting_view.totals(client, cameras),
                lambda: {cam: dict(feed.rejected) for cam, feed in feeds.items()},
                lambda: counting_view.classes(live()),
            ),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )

    @app.get("/api/cameras")
    def api_cameras() -> HTTPResponse:
        return as_json({"cameras": cameras, "video": cfg.web.video})

    @app.get("/api/summary")
    def api_summary() -> HTTPResponse:
        cam = camera_arg()
        snap = snapshot()
        state = snap.cameras.get(cam)
        return as_json(
            {
                "camera": cam,
                "status": snap.status,
                "timeseries": "on" if snap.timeseries else "off",
                "problems": snap.problems + (state.problems if state else []),
                **numbers(state, feeds[cam]),
                "latest": state.latest if state else {},
                "frame_age_s": state.frame_age_s if state else None,
                "source": state.source if state else {},
                "services": snap.services,
            }
        )

    @app.get("/api/counts")
    def api_counts() -> HTTPResponse:
        cam = camera_arg()
        try:
            return as_json(counting_view.view(client, cam, live().cameras[cam]))
        except TRANSIENT as exc:
            return as_json({"error": f"Redis unreachable: {exc}"}, 503)

    @app.get("/api/people")
    def api_people() -> HTTPResponse:
        cam = camera_arg()
        try:
            asked = float(request.query.get("minutes") or 10)
        except ValueError:
            asked = math.nan
        if not math.isfinite(asked):  # nan and inf pass float() and every comparison fails
            return as_json({"error": "minutes must be a number (1 to 1440)"}, 400)
        minutes = min(max(asked, 1), 24 * 60)
        try:
            return as_json(people_history(client, cam, minutes))
        except TRANSIENT as exc:
            return as_json({"error": f"Redis unreachable: {exc}"}, 503)

    shapes_api.install(app, client, cfg, live, as_json, after_change=watch.expire)
    report_view.register(app, client, cfg)
    return app


def mjpeg(feed: Feed, streams: threading.BoundedSemaphore) -> Iterator[bytes]:
    # Runs up to its first frame inside the route (bottle looks at the first item), so the
    # 503 below is the response.
    if not streams.acquire(blocking=False):
        raise HTTPResponse(
            json.dumps({"error": "too many /video viewers ([web] max_viewers)"}),
            status=503,
            headers={"Content-Type": "application/json", "Retry-After": "10"},
        )
    feed.join()
    try:
        seq = 0
        while True:
            seq, jpeg = feed.wait_next(seq)
            if jpeg is None:
                continue
            yield (
                (
                    f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                    f"Content-Length: {len(jpeg)}\r\n\r\n"
                ).encode()
                + jpeg
                + b"\r\n"
            )
    finally:
        feed.leave()
        streams.release()


def numbers(state: health.CameraState | None, feed: Feed) -> dict[str, object]:
    """The page's numbers with their ages and how to show them (health.freshness: live, stale,
    idle, none). The count is the one on the video's label while somebody watches it."""
    if state is None:
        return {"people": None, "people_state": "none", "values_state": "none"}
    people, result_id, age = state.people, state.result_id, state.result_age_s
    if feed.viewers and feed.shown and result_id and age is not None:
        shown_id, people = feed.shown
        age += (keys.id_ms(result_id) - keys.id_ms(shown_id)) / 1000
        result_id = shown_id
    return {
        "people": people,
        "result_id": result_id,
        "people_age_s": age,
        "people_state": health.freshness(age if people is not None else None),
        "values_age_s": state.latest_age_s,
        "values_state": health.freshness(state.latest_age_s),
    }


def people_history(client: redis.Redis, camera: str, minutes: float) -> dict[str, object]:
    """The people count over the last minutes: from the time series when there is one,
    otherwise from the results stream (RedisTimeSeries off)."""
    now_ms = int(time.time() * 1000)
    start = now_ms - int(minutes * 60_000)
    bucket = max(1000, int(minutes * 60_000 / 300))  # about 300 points whatever the range
    # The chart's span, and the spacing of its points: a wider space is a gap, drawn as one.
    span = {"start_ms": start, "end_ms": now_ms, "step_ms": bucket}
    if timeseries_available(client):
        key = keys.series(camera, "people")
        if minutes > 6 * 60:
            key, bucket, span["step_ms"] = keys.rollup(camera, "avg", 15), 0, 15 * 60_000
        elif minutes > 60:
            key, bucket, span["step_ms"] = keys.rollup(camera, "avg", 1), 0, 60_000
        args: list[object] = ["TS.RANGE", key, start, "+"]
        if bucket:
            args += ["AGGREGATION", "avg", bucket]
        try:
            raw = client.execute_command(*args)
            points = [[int(t), round(float(v), 2)] for t, v in raw]
            return {"camera": camera, "source": "timeseries", "points": points, **span}
        except redis.ResponseError:
            pass  # series not created yet: fall through to the stream
    entries = client.xrevrange(keys.results(camera), min=f"{start}-0", count=5000)
    bucket = max(1000, int(minutes * 60_000 / 300))  # not a rollup's 0
    buckets: dict[int, list[int]] = {}
    for _id, fields in entries:
        try:
            t = keys.id_ms(fields.get(b"ref", _id))
            people = int(fields.get(b"people", 0))
        except (ValueError, UnicodeDecodeError):
            continue  # a malformed entry: skipped, as the gears skip bad input
        buckets.setdefault(t - t % bucket, []).append(people)
    points = [[t, round(sum(v) / len(v), 2)] for t, v in sorted(buckets.items())]
    return {"camera": camera, "source": "stream", "points": points, **span, "step_ms": bucket}


def make_server(app: Bottle, cfg: Config, host: str, port: int) -> Server:
    """The HTTP server with [web]'s limits: threads for every stream and 8 more, so that
    /healthz and the API always find one (rva.services.web.httpserver); behind HTTP Basic
    authentication when [web] users_file has users (rva.services.web.auth)."""
    public = ["/healthz", *(["/metrics"] if cfg.web.metrics_public else [])]
    return Server(
        host,
        port,
        Guard(Path(cfg.web.users_file), public)(app),
        max_connections=cfg.web.max_connections,
        request_timeout=cfg.web.request_timeout_s,
        io_timeout=cfg.web.io_timeout_s,
        threads=cfg.web.max_viewers + 8,
        allowed_hosts=requesthead.device_names() | {h.lower() for h in cfg.web.allowed_hosts},
    )


def serve(url: str, cfg: Config, host: str, port: int, *, runtime: Runtime | None = None) -> None:
    runtime = runtime or Runtime("web")
    client = connect(url, name="rva-web")
    if not wait_for_redis(client, tick=runtime.tick, stop=runtime.stop):
        return
    app = make_app(client, cfg)
    server = make_server(app, cfg, host, port)
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    log.info("serving on http://%s:%d/", host, server.server_port)
    runtime.notifier.ready(f"serving http://{host}:{server.server_port}/")
    cams = list(cfg.cameras)
    try:
        while not runtime.stop.is_set():
            snap = health.snapshot(client, cams, cfg.gear.group)
            feeds = app.config["rva.feeds"]
            app.config["rva.live"]()  # the video's lines follow a change with nobody on the page
            viewers = sum(f.viewers for f in feeds.values())
            runtime.tick(
                f"{snap.status}; {viewers} viewer(s); "
                f"{server.open_connections()} connection(s); time series "
                f"{'on' if snap.timeseries else 'OFF'}"
            )
            runtime.beat(client)
            runtime.sleep(2.0)
    finally:
        server.shutdown()
        server.server_close()
