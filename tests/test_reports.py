"""Reports (rva.reports) against a real Redis with RedisTimeSeries: series and rules made by the
counting stage's own ensure_series, samples written with TS.MADD at chosen times around the two
DST changes of Europe/Berlin in 2026 (29 March: 23 hours; 25 October: 25 hours), and every
bucket checked against what the samples' local times say, computed here with zoneinfo alone.

The samples span March to October, with raw series kept 48 hours: by the end, March is in the
per-minute rollups only, and 25 October is read from the rollups before 06:00 and raw after.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import redis

from rva import config, keys, schema
from rva.reports import calendar, export, series
from rva.stages.counting import ensure_series
from tests.conftest import RedisServer, rva

BERLIN = ZoneInfo("Europe/Berlin")
DAYS = [date(2026, 2, 28), date(2026, 3, 1), date(2026, 3, 15), date(2026, 3, 29)]
DAYS += [date(2026, 10, 25), date(2026, 10, 26)]
LAST_DAY_UNTIL = (date(2026, 10, 27), 6)  # samples on the last day stop at 06:00 local
CONFIG = """
[cameras.0]
source = "/dev/null"
[cameras.0.lines.door]
points = [[100, 300], [700, 300]]
in_side = [400, 500]
[cameras.0.lines.side]
points = [[100, 100], [700, 100]]
in_side = [400, 200]
[cameras.0.zones.hall]
polygon = [[0, 320], [768, 320], [768, 576], [0, 576]]
[timeseries]
rollup_retention_days = 400
"""


def ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def local_day_bounds(day: date) -> tuple[int, int]:
    start = ms(datetime(day.year, day.month, day.day, tzinfo=BERLIN))
    nxt = day + timedelta(days=1)
    return start, ms(datetime(nxt.year, nxt.month, nxt.day, tzinfo=BERLIN))


def every(step_min: int, offset_min: int) -> Iterator[tuple[int, int]]:
    """(k, t) every step minutes from offset past each local midnight of DAYS, then the last
    day's morning: UTC steps, so a repeated hour gets samples twice and a skipped one none."""
    spans = [local_day_bounds(d) for d in DAYS]
    last_start = local_day_bounds(LAST_DAY_UNTIL[0])[0]
    spans.append((last_start, last_start + LAST_DAY_UNTIL[1] * 3_600_000))
    k = 0
    for lo, hi in spans:
        for t in range(lo + offset_min * 60_000, hi, step_min * 60_000):
            yield k, t
            k += 1


@dataclass
class Seeded:
    samples: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # key -> (t, v)
    now_ms: int = 0

    def expected(self, key: str, bucket_of: object, how: str) -> dict[object, float]:
        groups: dict[object, list[float]] = defaultdict(list)
        for t, v in self.samples[key]:
            groups[bucket_of(t)].append(v)  # type: ignore[operator]
        if how == "sum":
            return {b: sum(vs) for b, vs in groups.items()}
        if how == "max":
            return {b: max(vs) for b, vs in groups.items()}
        return {b: sum(vs) / len(vs) for b, vs in groups.items()}


def local_hour(t: int) -> tuple[date, int, object]:
    local = datetime.fromtimestamp(t / 1000, BERLIN)
    return local.date(), local.hour, local.utcoffset()


def local_date(t: int) -> date:
    return datetime.fromtimestamp(t / 1000, BERLIN).date()


def seed(client: redis.Redis, tmp_path: Path) -> Seeded:
    """The series of lines door and side and zone hall, as ensure_series makes them, with
    samples from every(); the counts hash with the totals the stage would have written."""
    path = tmp_path / "seed.toml"
    path.write_text(CONFIG)
    cfg = config.load(path)
    ensure_series(client, "0", cfg.camera("0"), cfg)
    s = Seeded()
    s.samples[keys.line_series("0", "door", "in")] = [(t, 1 + k % 7) for k, t in every(20, 7)]
    s.samples[keys.line_series("0", "door", "out")] = [(t, 1) for _k, t in every(25, 11)]
    s.samples[keys.line_series("0", "side", "in")] = [(t, 2) for _k, t in every(60, 45)]
    s.samples[keys.line_series("0", "side", "out")] = []
    s.samples[keys.zone_series("0", "hall", "occupancy")] = [(t, k % 7) for k, t in every(5, 2)]
    s.samples[keys.zone_series("0", "hall", "dwell_s")] = [
        (t, 10 + 2 * (k % 5)) for k, t in every(60, 50)
    ]
    writes = sorted((t, key, v) for key, pts in s.samples.items() for t, v in pts)
    for i in range(0, len(writes), 600):
        args = [x for t, key, v in writes[i : i + 600] for x in (key, t, v)]
        client.execute_command("TS.MADD", *args)
    s.now_ms = writes[-1][0] + 30 * 60_000
    today = LAST_DAY_UNTIL[0]
    counts: dict[str, str | int] = {"day": today.isoformat()}
    for name in ("door", "side"):
        for d in keys.LINE_DIRECTIONS:
            pts = s.samples[keys.line_series("0", name, d)]
            counts[f"line:{name}:{d}"] = int(sum(v for _t, v in pts))
            counts[f"line:{name}:{d}:today"] = int(sum(v for t, v in pts if local_date(t) == today))
    client.hset(keys.counts("0"), mapping=counts)
    return s


@pytest.fixture
def seeded(redis_ts: RedisServer, tmp_path: Path) -> tuple[redis.Redis, Seeded]:
    client = redis_ts.client()
    return client, seed(client, tmp_path)


def make(client: redis.Redis, s: Seeded, bucket: str, start: str | None, end: str | None):
    lo, hi = calendar.span(bucket, start, end, BERLIN, s.now_ms)
    return series.report(
        client, "0", bucket, lo, hi, BERLIN, lines=["door"], zones=["hall"], now_ms=s.now_ms
    )


# -- the calendar, on its own ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tz", "day", "hours", "first_utc_minute"),
    [
        ("Europe/Berlin", "2026-03-29", 23, 0),
        ("Europe/Berlin", "2026-10-25", 25, 0),
        ("Europe/Berlin", "2026-06-01", 24, 0),
        ("Asia/Kolkata", "2026-03-29", 24, 30),  # +05:30: local hours start at :30 UTC
        ("America/New_York", "2026-11-01", 25, 0),
    ],
)
def test_a_day_has_the_local_hours_of_its_time_zone(
    tz: str, day: str, hours: int, first_utc_minute: int
) -> None:
    zone = ZoneInfo(tz)
    lo, hi = calendar.span("hour", day, day, zone, 0)
    bks = calendar.buckets("hour", lo, hi, zone)
    assert len(bks) == hours
    assert bks[0].start == f"{day}T00:00:00{bks[0].start[-6:]}" and bks[-1].end[11:19] == "00:00:00"
    assert all(b.end_ms == n.start_ms for b, n in pairwise(bks))
    starts = [datetime.fromtimestamp(b.start_ms / 1000, zone) for b in bks]
    assert all(s.minute == 0 for s in starts)
    assert {datetime.fromtimestamp(b.start_ms / 1000, timezone.utc).minute for b in bks} == {
        first_utc_minute
    }


def test_labels_say_which_of_two_equal_hours_and_where_an_hour_was_skipped() -> None:
    lo, hi = calendar.span("hour", "2026-10-25", None, BERLIN, 0)
    labels = [b.label for b in calendar.buckets("hour", lo, hi, BERLIN)]
    assert labels[:5] == ["00:00", "01:00", "02:00", "02:00 CET", "03:00"]
    lo, hi = calendar.span("hour", "2026-03-29", None, BERLIN, 0)
    labels = [b.label for b in calendar.buckets("hour", lo, hi, BERLIN)]
    assert labels[:4] == ["00:00", "01:00", "03:00 CEST", "04:00"]


def test_the_span_defaults_to_today_or_this_month_and_widens_to_whole_buckets() -> None:
    now = ms(datetime(2026, 3, 29, 15, 10, tzinfo=BERLIN))
    assert calendar.span("hour", None, None, BERLIN, now) == local_day_bounds(date(2026, 3, 29))
    lo, hi = calendar.span("day", None, None, BERLIN, now)
    assert (lo, hi) == (
        local_day_bounds(date(2026, 3, 1))[0],
        local_day_bounds(date(2026, 4, 1))[0],
    )
    bks = calendar.buckets("day", lo, hi, BERLIN)
    assert len(bks) == 31 and bks[28].label == "2026-03-29"
    assert [b.end_ms - b.start_ms for b in bks].count(23 * 3_600_000) == 1
    lo, hi = calendar.span("hour", "2026-03-29T10:20", "2026-03-29T12:05", BERLIN, now)
    assert [b.label for b in calendar.buckets("hour", lo, hi, BERLIN)] == [
        "10:00",
        "11:00",
        "12:00",
    ]
    # A date and time with an offset ("+" arrives as a space in a query string), and Z.
    assert calendar.span("hour", "2026-03-29T08:00 00:00", "2026-03-29T09:00Z", BERLIN, now) == (
        ms(datetime(2026, 3, 29, 10, tzinfo=BERLIN)),
        ms(datetime(2026, 3, 29, 11, tzinfo=BERLIN)),
    )
    assert calendar.span("day", None, "2026-02-10", BERLIN, now) == (
        local_day_bounds(date(2026, 2, 1))[0],
        local_day_bounds(date(2026, 2, 10))[1],
    )


@pytest.mark.parametrize(
    ("bucket", "start", "end", "parameter", "words"),
    [
        ("week", None, None, "bucket", "hour or day"),
        ("hour", "yesterday", None, "from", "not a date"),
        ("hour", None, "2026-13-01", "to", "not a date"),
        ("hour", "2026-03-02", "2026-03-01", "to", "after from"),
        ("hour", "2026-01-01", "2026-03-01", "to", "at most 744 hourly"),
        ("day", "2025-01-01", "2026-03-01", "to", "at most 366 daily"),
        ("day", "0001-01-01", None, "from", "out of range"),
    ],
)
def test_a_span_that_cannot_be_made_names_its_parameter(
    bucket: str, start: str | None, end: str | None, parameter: str, words: str
) -> None:
    with pytest.raises(calendar.ReportError) as caught:
        calendar.span(bucket, start, end, BERLIN, 0)
    assert caught.value.parameter == parameter and words in str(caught.value)


# -- reports from real series ----------------------------------------------------------------


def test_ensure_series_gives_dwell_per_minute_sum_and_count_rollups(
    seeded: tuple[redis.Redis, Seeded],
) -> None:
    client, _s = seeded
    dwell = keys.zone_series("0", "hall", "dwell_s")
    info = schema.ts_info(client, dwell)
    assert info is not None
    raw_rules: list[list[bytes]] = info["rules"]  # type: ignore[assignment]
    rules = {r[0].decode(): (r[2].decode().lower(), int(r[1])) for r in raw_rules}
    assert rules == {f"{dwell}:sum:1m": ("sum", 60_000), f"{dwell}:count:1m": ("count", 60_000)}
    labels = client.execute_command("TS.QUERYINDEX", "zone=hall", "__name__=zone_dwell_s_sum_1m")
    assert [k.decode() for k in labels] == [f"{dwell}:sum:1m"]


def hour_of_bucket(b: dict) -> tuple[date, int, object]:
    start = datetime.fromisoformat(b["start"])
    return start.date(), start.hour, start.utcoffset()


def check_hours(client: redis.Redis, s: Seeded, day: str, hours: int) -> dict:
    """An hourly report of one day, every bucket equal to the samples of that local hour
    (told apart by date, hour and UTC offset: the two 02:00 of 25 October are two)."""
    data = make(client, s, "hour", day, day)
    got = [hour_of_bucket(b) for b in data["buckets"]]
    assert len(got) == hours == len(set(got))
    assert all(d.isoformat() == day for d, _h, _o in got)
    door_in = s.samples[keys.line_series("0", "door", "in")]
    assert {local_hour(t) for t, _v in door_in if local_date(t).isoformat() == day} == set(got)

    door = data["lines"][0]
    assert door["name"] == "door"
    for direction in ("in", "out"):
        want = s.expected(keys.line_series("0", "door", direction), local_hour, "sum")
        assert door[direction] == [want.get(h, 0) for h in got], direction
    hall = data["zones"][0]
    occupancy = keys.zone_series("0", "hall", "occupancy")
    avg = s.expected(occupancy, local_hour, "avg")
    assert hall["occupancy_avg"] == [round(avg[h], 2) for h in got]
    peak = s.expected(occupancy, local_hour, "max")
    assert hall["occupancy_max"] == [peak[h] for h in got]
    dwell = s.expected(keys.zone_series("0", "hall", "dwell_s"), local_hour, "avg")
    assert hall["dwell_mean_s"] == [round(dwell[h], 1) for h in got]
    return data


def test_a_spring_day_read_from_the_rollups_alone_has_23_exact_hours(
    seeded: tuple[redis.Redis, Seeded],
) -> None:
    client, s = seeded
    lo, hi = local_day_bounds(date(2026, 3, 29))
    for key in s.samples:  # the raw samples of March are gone: only the rollups hold them
        assert client.execute_command("TS.RANGE", key, lo, hi) == []
    check_hours(client, s, "2026-03-29", 23)


def test_an_autumn_day_read_from_rollups_then_raw_has_25_exact_hours(
    seeded: tuple[redis.Redis, Seeded],
) -> None:
    client, s = seeded
    lo, hi = local_day_bounds(date(2026, 10, 25))
    door_in = keys.line_series("0", "door", "in")
    raw = client.execute_command("TS.RANGE", door_in, lo, hi)
    assert raw and lo < int(raw[0][0]) < hi  # raw from the morning on: this day is split
    data = check_hours(client, s, "2026-10-25", 25)
    assert [b["label"] for b in data["buckets"][1:5]] == ["01:00", "02:00", "02:00 CET", "03:00"]


def test_days_are_local_days_and_sum_to_the_totals_since_install(
    seeded: tuple[redis.Redis, Seeded],
) -> None:
    client, s = seeded
    march = make(client, s, "day", "2026-03-01", "2026-03-31")
    days = [datetime.fromisoformat(b["start"]).date() for b in march["buckets"]]
    assert len(days) == 31 and days[0] == date(2026, 3, 1)
    door = march["lines"][0]
    for direction in ("in", "out"):
        want = s.expected(keys.line_series("0", "door", direction), local_date, "sum")
        assert door[direction] == [want.get(d, 0) for d in days]
    # The first sample of 1 March local time is on 28 February in UTC, and counts in March.
    first = min(
        t for t, _v in s.samples[keys.line_series("0", "door", "in")] if local_date(t).month == 3
    )
    assert datetime.fromtimestamp(first / 1000, timezone.utc).day == 28 and door["in"][0] > 0
    hall = march["zones"][0]
    avg = s.expected(keys.zone_series("0", "hall", "occupancy"), local_date, "avg")
    assert hall["occupancy_avg"] == [round(avg[d], 2) if d in avg else None for d in days]

    totals = {
        k.decode(): int(v) for k, v in client.hgetall(keys.counts("0")).items() if k != b"day"
    }
    year = make(client, s, "day", "2026-02-01", "2026-10-31")
    assert [line["name"] for line in year["lines"]] == ["door", "side"]  # side: from its series
    for line in year["lines"]:
        for direction in ("in", "out"):
            total = totals[f"line:{line['name']}:{direction}"]
            assert sum(v or 0 for v in line[direction]) == line["totals"][direction] == total
    assert totals["line:door:in"] > 500 and totals["line:side:in"] > 100
    today = make(client, s, "hour", None, None)  # today: 27 October, up to now
    assert today["from"].startswith("2026-10-27T00:00")
    for line in today["lines"]:
        for direction in ("in", "out"):
            assert (
                sum(v or 0 for v in line[direction])
                == totals[f"line:{line['name']}:{direction}:today"]
            )
    # Hours that have not begun yet are None, not 0; the current one has its counts.
    hour_now = [b["start_ms"] <= s.now_ms < b["end_ms"] for b in today["buckets"]].index(True)
    assert today["lines"][0]["in"][hour_now + 1 :] == [None] * (23 - hour_now)
    assert today["lines"][0]["in"][hour_now - 1] > 0


def test_a_dwell_series_from_before_its_rollups_reports_its_raw_window(
    seeded: tuple[redis.Redis, Seeded],
) -> None:
    client, s = seeded
    legacy = keys.zone_series("0", "legacy", "dwell_s")
    labels = {"camera": "0", "zone": "legacy", "__name__": "zone_dwell_s"}
    schema.ensure_series(client, legacy, 48 * 3_600_000, labels)  # no rules, as before
    t = ms(datetime(2026, 10, 26, 9, 30, tzinfo=BERLIN))
    client.execute_command("TS.MADD", legacy, t, 12.0, legacy, t + 1, 18.0)
    data = make(client, s, "day", "2026-10-25", "2026-10-26")
    zones = {z["name"]: z for z in data["zones"]}
    assert zones["legacy"]["dwell_mean_s"] == [None, 15.0]
    assert zones["legacy"]["occupancy_avg"] == [None, None]


def test_without_timeseries_a_report_says_it_needs_them(redis_plain: RedisServer) -> None:
    with pytest.raises(series.NoTimeSeries, match="need RedisTimeSeries"):
        series.report(redis_plain.client(), "0", "hour", 0, 3_600_000, BERLIN, now_ms=0)


def test_hours_of_a_half_hour_zone_are_its_local_hours(redis_ts: RedisServer) -> None:
    client, kolkata = redis_ts.client(), ZoneInfo("Asia/Kolkata")
    section_cfg = config.Config.model_validate(
        {"cameras": {"0": {"source": "/dev/null", "lines": {"gate": CONFIG_GATE}}}}
    )
    ensure_series(client, "0", section_cfg.camera("0"), section_cfg)
    door = keys.line_series("0", "gate", "in")
    at = [(9, 45), (10, 15), (10, 50), (11, 29)]  # 10:15 and 10:50 local are one hour
    for h, m in at:
        client.execute_command("TS.ADD", door, ms(datetime(2026, 5, 4, h, m, tzinfo=kolkata)), 1)
    lo, hi = calendar.span("hour", "2026-05-04", None, kolkata, 0)
    data = series.report(client, "0", "hour", lo, hi, kolkata, now_ms=hi)
    gate = data["lines"][0]
    assert gate["in"][9:12] == [1, 2, 1] and sum(gate["in"]) == 4


CONFIG_GATE = {"points": [[100, 300], [700, 300]], "in_side": [400, 500]}


def test_rva_report_prints_a_table_csv_and_json(
    seeded: tuple[redis.Redis, Seeded], redis_ts: RedisServer
) -> None:
    env = {"RVA_REDIS_URL": redis_ts.url, "TZ": "Europe/Berlin"}
    table = rva("report", "0", "--from", "2026-10-25", env=env)
    assert table.returncode == 0, table.stderr
    text = table.stdout.splitlines()
    assert "(Europe/Berlin)" in text[0] and text[1].split()[:3] == ["hour", "door", "in"]
    assert [row.split()[0] for row in text[2:]][:5] == ["00:00", "01:00", "02:00", "02:00", "03:00"]
    assert len(text) == 2 + 25 + 1 and text[-1].startswith("total")
    as_json = json.loads(rva("report", "--from", "2026-10-25", "--json", env=env).stdout)
    assert len(as_json["buckets"]) == 25 and as_json["timezone"] == "Europe/Berlin"
    door = next(line for line in as_json["lines"] if line["name"] == "door")
    assert text[-1].split()[1:3] == [str(door["totals"]["in"]), str(door["totals"]["out"])]
    as_csv = rva("report", "--from", "2026-10-25", "--csv", env=env).stdout
    assert as_csv.splitlines()[0] == ",".join(export.CSV_COLUMNS)
    assert len(as_csv.splitlines()) == 1 + 25 * 3  # door, side, hall
    bad = rva("report", "--from", "25.10.2026", env=env)
    assert bad.returncode == 2 and "--from: not a date" in bad.stderr
