"""A report as CSV (one row per bucket and line or zone) and as a table for a terminal."""

from __future__ import annotations

import csv
import io
from typing import Any

Report = dict[str, Any]
CSV_COLUMNS = (
    "camera",
    "start",
    "end",
    "kind",
    "name",
    "classes",
    "in",
    "out",
    "occupancy_avg",
    "occupancy_max",
    "dwell_mean_s",
)
ZONE_COLUMNS = ("occupancy_avg", "occupancy_max", "dwell_mean_s")


def rows(data: Report) -> list[Report]:
    """The report as CSV rows: one per bucket and line or zone, CSV_COLUMNS each ("" for none)."""
    out: list[Report] = []
    lines, zones = data["lines"], data["zones"]
    for i, b in enumerate(data["buckets"]):
        base = {"camera": data["camera"], "start": b["start"], "end": b["end"]}
        for line in lines:
            out.append(
                {
                    **base,
                    "kind": "line",
                    "name": line["name"],
                    "classes": line.get("classes", "person"),
                    "in": line["in"][i],
                    "out": line["out"][i],
                }
            )
        for zone in zones:
            out.append(
                {
                    **base,
                    "kind": "zone",
                    "name": zone["name"],
                    "classes": zone.get("classes", "person"),
                    **{k: zone[k][i] for k in ZONE_COLUMNS},
                }
            )
    return out


def to_csv(data: Report) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_COLUMNS, restval="", lineterminator="\r\n")
    writer.writeheader()
    for row in rows(data):
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buffer.getvalue()


def filename(data: Report) -> str:
    """rva-report-<camera>-<hour|day>-<first day>[_<last day>].csv"""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in str(data["camera"]))
    first, last = str(data["from"])[:10], _last_day(data)
    days = first if first == last else f"{first}_{last}"
    return f"rva-report-{safe}-{data['bucket']}-{days}.csv"


def _last_day(data: Report) -> str:
    bks = data["buckets"]
    return str(bks[-1]["start"])[:10] if bks else str(data["to"])[:10]


def table(data: Report) -> str:
    """The report for a terminal: a row per bucket, columns per line (in, out) and zone
    (average and peak occupancy, mean dwell), and the lines' totals last."""
    bks, lines, zones = data["buckets"], data["lines"], data["zones"]
    days = {b["start"][:10] for b in bks}
    first = "hour" if data["bucket"] == "hour" else "day"
    head = [first]
    columns: list[list[object]] = []
    for line in lines:
        for d in ("in", "out"):
            head.append(f"{line['name']} {d}")
            columns.append([*line[d], line["totals"][d]])
    for zone in zones:
        for key, title in (
            ("occupancy_avg", "avg"),
            ("occupancy_max", "max"),
            ("dwell_mean_s", "dwell s"),
        ):
            head.append(f"{zone['name']} {title}")
            columns.append([*zone[key], None])
    labels = [
        f"{b['start'][5:10]} {b['label']}" if first == "hour" and len(days) > 1 else b["label"]
        for b in bks
    ]
    body = [[label, *(c[i] for c in columns)] for i, label in enumerate([*labels, "total"])]
    if not lines:
        body.pop()  # no totals to show
    cells = [head] + [[str(v) if v is not None else "—" for v in row] for row in body]
    if lines:
        cells[-1] = [c if i <= 2 * len(lines) else "" for i, c in enumerate(cells[-1])]
    widths = [max(len(row[i]) for row in cells) for i in range(len(head))]
    title = (
        f"camera {data['camera']}, by {data['bucket']}, {data['from'][:16]} to {data['to'][:16]}"
        f" ({data['timezone']})"
    )
    if not lines and not zones:
        return f"{title}\nno lines or zones: nothing counted for this camera"
    out = [title]
    for row in cells:
        out.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    return "\n".join(out)
