"""The calendar of a report: the device's time zone, the span asked for, and its local hours
or days as buckets.

A day runs from local midnight to local midnight, so a day that changes to or from daylight
saving time has 23 or 25 hourly buckets; an hour is a local clock hour (HH:00 to the next
HH:00 on the wall clock), also in zones half an hour off UTC. Every UTC offset in use is a whole
number of quarter hours, so the boundaries are found on the quarter hours of UTC.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo
from itertools import pairwise
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

BUCKETS = ("hour", "day")
MAX_BUCKETS = {"hour": 31 * 24, "day": 366}  # a month by hour, a year by day
QUARTER_MS = 15 * 60_000


class ReportError(ValueError):
    """A report that cannot be made as asked: ``parameter`` names the input at fault."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


def local_zone() -> tzinfo:
    """The device's time zone, as the C library sees it: $TZ, else /etc/localtime, else UTC."""
    name = os.environ.get("TZ", "").lstrip(":")
    try:
        if name.startswith("/"):
            with open(name, "rb") as f:
                return ZoneInfo.from_file(f, key=name)
        if name:
            return ZoneInfo(name)
    except (OSError, ValueError, ZoneInfoNotFoundError):
        pass  # a POSIX rule string or a bad name: the system's zone, as below
    try:
        link = os.readlink("/etc/localtime")
        if "zoneinfo/" in link:
            return ZoneInfo(link.split("zoneinfo/", 1)[1])
    except (OSError, ValueError, ZoneInfoNotFoundError):
        pass
    try:
        with open("/etc/localtime", "rb") as f:
            return ZoneInfo.from_file(f, key="localtime")
    except (OSError, ValueError):
        return timezone.utc


def zone_name(tz: tzinfo) -> str:
    return str(getattr(tz, "key", None) or tz)


# -- the span and its buckets ---------------------------------------------------------------


@dataclass(frozen=True)
class Bucket:
    start_ms: int
    end_ms: int
    label: str
    start: str  # ISO 8601 with the local UTC offset
    end: str


def _local(t_ms: int, tz: tzinfo) -> datetime:
    return datetime.fromtimestamp(t_ms / 1000, tz)


def local_iso(t_ms: int, tz: tzinfo) -> str:
    """ISO 8601 in local time, with the offset: 2026-03-29T03:00:00+02:00."""
    return _local(t_ms, tz).isoformat()


def _midnight(day: date, tz: tzinfo) -> int:
    """The first instant of a local day, in ms (a midnight that does not exist: the transition)."""
    return round(datetime(day.year, day.month, day.day, tzinfo=tz).timestamp() * 1000)


def _is_hour_start(t_ms: int, tz: tzinfo) -> bool:
    local = _local(t_ms, tz)
    return local.minute == 0 and local.second == 0


def _hour_floor(t_ms: int, tz: tzinfo) -> int:
    t = t_ms - t_ms % QUARTER_MS
    while not _is_hour_start(t, tz):
        t -= QUARTER_MS
    return t


def _day_floor(t_ms: int, tz: tzinfo) -> int:
    return _midnight(_local(t_ms, tz).date(), tz)


def _ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def _month_start(day: date) -> date:
    return day.replace(day=1)


def _next_month(day: date) -> date:
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


def _parse(text: str, parameter: str, tz: tzinfo) -> tuple[datetime, bool]:
    """A local date (YYYY-MM-DD: its first instant, True) or a date and time (False); a time
    without an offset is the device's local time."""
    text = text.strip()
    if "T" in text:  # a "+" in a query string arrives as a space
        text = text.replace(" ", "+")
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=tz), True
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ReportError(
            parameter,
            f"{parameter}: not a date (YYYY-MM-DD) or a date and time (YYYY-MM-DDTHH:MM): "
            f"{text[:40]!r}",
        ) from None
    return (moment.replace(tzinfo=tz) if moment.tzinfo is None else moment), False


def span(
    bucket: str, start: str | None, end: str | None, tz: tzinfo, now_ms: int
) -> tuple[int, int]:
    """The report's [start, end) in ms, widened to whole buckets. Without from/to: today (hour)
    or this month (day); a date given as ``to`` is included; one of the two given alone: the
    day (hour) or month (day) around it."""
    if bucket not in BUCKETS:
        raise ReportError("bucket", f"bucket must be hour or day (got {bucket[:20]!r})")

    def period(day: date) -> tuple[int, int]:
        if bucket == "hour":
            return _midnight(day, tz), _midnight(day + timedelta(days=1), tz)
        return _midnight(_month_start(day), tz), _midnight(_next_month(day), tz)

    try:
        if start is None and end is None:
            lo, hi = period(_local(now_ms, tz).date())
        elif end is None:
            assert start is not None
            lo = _ms(_parse(start, "from", tz)[0])
            hi = period(_local(lo, tz).date())[1]
        else:
            moment, is_date = _parse(end, "to", tz)
            hi = _midnight(moment.date() + timedelta(days=1), tz) if is_date else _ms(moment)
            lo = (
                period(_local(hi - 1, tz).date())[0]
                if start is None
                else _ms(_parse(start, "from", tz)[0])
            )
        if hi <= lo:
            raise ReportError("to", "to must be after from")
        if hi - lo > (MAX_BUCKETS[bucket] + 1) * (3_600_000 if bucket == "hour" else 86_400_000):
            raise ReportError("to", _too_long(bucket))
        if bucket == "hour":
            lo, ceil = _hour_floor(lo, tz), _hour_floor(hi, tz)
        else:
            lo, ceil = _day_floor(lo, tz), _day_floor(hi, tz)
    except ReportError:
        raise
    except (OverflowError, OSError, ValueError) as exc:  # year 0001 or 9999 and an offset
        where = "from" if start else "to"
        raise ReportError(where, f"{where}: date out of range ({exc})") from None
    if ceil < hi:
        ceil = _next_boundary(bucket, ceil, tz)
    return lo, ceil


def _too_long(bucket: str) -> str:
    most = MAX_BUCKETS[bucket]
    if bucket == "hour":
        return f"to: at most {most} hourly buckets ({most // 24} days); bucket=day for longer"
    return f"to: at most {most} daily buckets"


def _next_boundary(bucket: str, t_ms: int, tz: tzinfo) -> int:
    if bucket == "day":
        return _midnight(_local(t_ms, tz).date() + timedelta(days=1), tz)
    t = t_ms + QUARTER_MS
    while not _is_hour_start(t, tz):
        t += QUARTER_MS
    return t


def buckets(bucket: str, lo: int, hi: int, tz: tzinfo) -> list[Bucket]:
    """The local hours or days of [lo, hi) (both on bucket boundaries, as span() gives them).
    An hour whose UTC offset differs from the hour before (a DST change) says its zone's
    abbreviation: 02:00 CEST, then 02:00 CET."""
    starts = [lo]
    while starts[-1] < hi:
        starts.append(_next_boundary(bucket, starts[-1], tz))
        if len(starts) > MAX_BUCKETS[bucket] + 1:
            raise ReportError("to", _too_long(bucket))
    out = []
    previous = None
    for a, b in pairwise(starts):
        local, local_end = _local(a, tz), _local(b, tz)
        if bucket == "day":
            label = local.strftime("%Y-%m-%d")
        else:
            changed = previous is not None and local.utcoffset() != previous
            label = local.strftime("%H:%M %Z" if changed else "%H:%M")
            previous = local.utcoffset()
        out.append(Bucket(a, b, label, local.isoformat(), local_end.isoformat()))
    return out
