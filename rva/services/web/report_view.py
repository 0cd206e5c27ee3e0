"""GET /api/report: a camera's lines and zones by local hour or day (rva.reports), as JSON for
the page's Reports view or as a CSV file to download.

Parameters: camera (default the first), bucket=hour|day (hour), from and to (local dates
YYYY-MM-DD, a date given as `to` included, or ISO date-times; default today for hour, this
month for day), format=json|csv (json). A parameter that is wrong is a 400 that names it;
without RedisTimeSeries, a 503 that says reports need it.
"""

from __future__ import annotations

import json
import time

import redis
from bottle import Bottle, HTTPError, HTTPResponse, request

from rva.config import Config
from rva.connection import TRANSIENT
from rva.reports import calendar, export, series

FORMATS = ("json", "csv")


def _json(data: object, status: int = 200) -> HTTPResponse:
    return HTTPResponse(
        json.dumps(data),
        status=status,
        headers={"Content-Type": "application/json", "Cache-Control": "no-store"},
    )


def register(app: Bottle, client: redis.Redis, cfg: Config) -> None:
    """The route, on make_app's app (whose ``rva.live`` gives the lines and zones in use)."""

    @app.get("/api/report")
    def api_report() -> HTTPResponse:
        camera = request.query.get("camera") or next(iter(cfg.cameras))
        if camera not in cfg.cameras:
            raise HTTPError(404, f"unknown camera {camera!r}")
        bucket = request.query.get("bucket") or "hour"
        fmt = request.query.get("format") or "json"
        if fmt not in FORMATS:
            return _json(
                {"error": f"format must be json or csv (got {fmt[:20]!r})", "parameter": "format"},
                400,
            )
        tz, now_ms = calendar.local_zone(), int(time.time() * 1000)
        try:
            # the lines and zones in use (rva.toml's with those saved live) come first
            live = app.config.get("rva.live")
            section = (live() if live else cfg).cameras[camera]
            lo, hi = calendar.span(
                bucket, request.query.get("from"), request.query.get("to"), tz, now_ms
            )
            data = series.report(
                client,
                camera,
                bucket,
                lo,
                hi,
                tz,
                lines=section.lines,
                zones=section.zones,
                now_ms=now_ms,
            )
        except calendar.ReportError as exc:
            return _json({"error": str(exc), "parameter": exc.parameter}, 400)
        except series.NoTimeSeries as exc:
            return _json({"error": str(exc)}, 503)
        except TRANSIENT as exc:
            return _json({"error": f"Redis unreachable: {exc}"}, 503)
        if fmt == "json":
            return _json(data)
        return HTTPResponse(
            export.to_csv(data),
            headers={
                "Content-Type": "text/csv; charset=utf-8",
                "Content-Disposition": f'attachment; filename="{export.filename(data)}"',
                "Cache-Control": "no-store",
            },
        )
