"""rva report: a camera's lines and zones by local hour (a day) or day (a month), as the page's
Reports view shows them: a table, or CSV / JSON for scripts (rva.reports).

    rva report                                  # camera 0, today by hour
    rva report 0 --bucket day --from 2026-03-01 --csv > march.csv
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from rva import config
from rva.cli.common import Add
from rva.config import Config

DASH = "—"


def add_parsers(add: Add, sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = add("report", "in/out per line, occupancy and dwell per zone, by local hour or day")
    p.add_argument("camera", nargs="?", help="camera id (default: the first)")
    p.add_argument("--bucket", choices=["hour", "day"], default="hour")
    p.add_argument(
        "--from",
        dest="start",
        metavar="WHEN",
        help="YYYY-MM-DD or YYYY-MM-DDTHH:MM, local time (default: today, or this month for day)",
    )
    p.add_argument(
        "--to", dest="end", metavar="WHEN", help="as --from; a date is included (default: its end)"
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument("--csv", action="store_true", help="one row per bucket and line or zone")
    out.add_argument("--json", action="store_true", help="what GET /api/report answers")


def cmd_report(args: argparse.Namespace, cfg: Config) -> int:
    from rva import shapes
    from rva.connection import TRANSIENT, connect
    from rva.reports import calendar, export, series

    camera = args.camera or next(iter(cfg.cameras))
    cfg.camera(camera)  # an unknown one is an error that names the configured ones
    tz, now_ms = calendar.local_zone(), int(time.time() * 1000)
    try:
        lo, hi = calendar.span(args.bucket, args.start, args.end, tz, now_ms)
    except calendar.ReportError as exc:
        print(f"rva report: --{exc}", file=sys.stderr)
        return 2
    client = connect(config.redis_url(cfg, args.url), name="rva-report")
    try:
        section = shapes.Watch(client, cfg).config().cameras[camera]  # live lines first
        data = series.report(
            client,
            camera,
            args.bucket,
            lo,
            hi,
            tz,
            lines=section.lines,
            zones=section.zones,
            now_ms=now_ms,
        )
    except series.NoTimeSeries as exc:
        print(f"rva report: {exc}", file=sys.stderr)
        return 1
    except TRANSIENT as exc:
        print(f"rva report: Redis unreachable: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(data, indent=2))
    elif args.csv:
        sys.stdout.write(export.to_csv(data))
    else:
        print(export.table(data))
    return 0


COMMANDS = {"report": cmd_report}
