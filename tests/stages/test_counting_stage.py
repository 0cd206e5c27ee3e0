"""The counting stage against a real Redis with RedisTimeSeries: series made by `rva init`,
crossings and occupancy kept, and totals that survive a killed stage and a Redis restart
from its snapshot — nothing counted twice, nothing lost."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path

import redis

from rva import config, keys
from rva.stages.counting import CountingStage
from tests.conftest import RedisServer, Services, wait_for

ServicesFactory = Callable[[Path], Services]

LINE = "door"
ZONE = "hall"
CONFIG = f"""
[cameras.0]
source = "{{source}}"
[cameras.0.lines.{LINE}]
points = [[100, 300], [700, 300]]
in_side = [400, 500]
[cameras.0.zones.{ZONE}]
polygon = [[0, 320], [768, 320], [768, 576], [0, 576]]
"""
T0 = 1_700_000_000_000  # the frames' own times (ms): a fixed day, far inside any retention


def walkers(frames: int = 240) -> list[tuple[int, list[int]]]:
    """Synthetic results at 10 fps: people walking across the line at y=300, one after the
    other, down (in) and up (out), each box 40x100 with its feet at the anchor."""
    paths = []  # (first frame, x, y0, step per frame)
    for k in range(8):
        down = k % 3 != 2  # 2 in for every out
        paths.append((k * 25, 150 + 60 * k, 200 if down else 420, 8 if down else -8))
    results = []
    for f in range(frames):
        flat: list[int] = []
        for start, x, y0, step in paths:
            if start <= f < start + 30:
                y = y0 + step * (f - start)
                flat += [x - 20, y - 100, x + 20, y]
        results.append((T0 + f * 100, flat))
    return results


EXPECTED = {"in": 6, "out": 2}  # paths 0,1,3,4,6,7 walk down; 2 and 5 walk up


def feed(client: redis.Redis, results: list[tuple[int, list[int]]]) -> None:
    for t_ms, flat in results:
        client.xadd(
            keys.results("0"),
            {"ref": f"{t_ms}-0", "boxes": json.dumps(flat), "people": len(flat) // 4},
        )


def totals(client: redis.Redis) -> dict[str, int]:
    raw = client.hgetall(keys.counts("0"))
    return {d: int(raw.get(f"line:{LINE}:{d}".encode(), -1)) for d in ("in", "out")}


def ts_sum(client: redis.Redis, key: str) -> float:
    rows = client.execute_command("TS.RANGE", key, "-", "+")
    return sum(float(v) for _t, v in rows)


def reached(client: redis.Redis, results: list[tuple[int, list[int]]], frame: int) -> None:
    """Wait until the stage has committed the result of `frame`."""
    want = str(results[frame][0]).encode()
    wait_for(
        lambda: client.hget(keys.stage_state("0", "counting"), "ref_ms") == want,
        60,
        what=f"the stage to reach frame {frame}",
    )


def setup(tmp_path: Path, redis_ts: RedisServer, services: ServicesFactory) -> Services:
    cfg = tmp_path / "rva.toml"
    cfg.write_text(f'[redis]\nurl = "{redis_ts.url}"\n' + CONFIG.format(source="/dev/null"))
    svc = services(cfg)
    svc.run("init")
    return svc


def test_init_creates_labelled_line_and_zone_series_with_rollups(
    redis_ts: RedisServer, tmp_path: Path, services: ServicesFactory
) -> None:
    setup(tmp_path, redis_ts, services)
    client = redis_ts.client()
    info = dict(
        zip(
            *[iter(client.execute_command("TS.INFO", keys.line_series("0", LINE, "in")))] * 2,
            strict=False,
        )
    )
    labels = {k.decode(): v.decode() for k, v in info[b"labels"]}
    assert labels == {
        "camera": "0",
        "line": LINE,
        "direction": "in",
        "classes": "person",
        "__name__": "line_crossings",
    }
    rules = {r[0].decode(): (r[1], r[2].decode().lower()) for r in info[b"rules"]}
    source = keys.line_series("0", LINE, "in")
    assert rules == {
        f"{source}:sum:1m": (60_000, "sum"),
        f"{source}:sum:1h": (3_600_000, "sum"),
        f"{source}:sum:1d": (86_400_000, "sum"),
    }
    occupancy = keys.zone_series("0", ZONE, "occupancy")
    for suffix in ("avg:1m", "max:1m", "avg:1h", "max:1h"):
        assert client.exists(f"{occupancy}:{suffix}")
    assert client.exists(keys.zone_series("0", ZONE, "dwell_s"))


def test_stage_counts_crossings_and_occupancy_into_series_events_and_totals(
    redis_ts: RedisServer, tmp_path: Path, services: ServicesFactory
) -> None:
    svc = setup(tmp_path, redis_ts, services)
    client = redis_ts.client()
    feed(client, walkers())
    svc.start("stages")
    wait_for(lambda: totals(client) == EXPECTED, 60, what=f"totals {EXPECTED}")
    assert ts_sum(client, keys.line_series("0", LINE, "in")) == EXPECTED["in"]
    assert ts_sum(client, keys.line_series("0", LINE, "out")) == EXPECTED["out"]
    events = [
        {k.decode(): v.decode() for k, v in f.items()} for _i, f in client.xrange(keys.events("0"))
    ]
    crossings = [e for e in events if e["kind"] == "line"]
    assert sorted(e["direction"] for e in crossings) == ["in"] * 6 + ["out"] * 2
    assert len({e["track"] for e in crossings}) == 8  # one crossing per person
    leaves = [e for e in events if e["kind"] == "zone" and e["direction"] == "leave"]
    # The two who walked up out of the hall left it, after about 1.5 s inside.
    assert len(leaves) >= 2 and all(0.5 < float(e["dwell_s"]) < 3.5 for e in leaves[:2])
    counts = client.hgetall(keys.counts("0"))
    assert counts[f"line:{LINE}:in:today".encode()] == b"6"
    occupancy = client.execute_command(
        "TS.RANGE", keys.zone_series("0", ZONE, "occupancy"), "-", "+"
    )
    assert max(float(v) for _t, v in occupancy) >= 1


def test_stage_killed_mid_run_resumes_from_its_checkpoint_with_totals_unchanged(
    redis_ts: RedisServer, tmp_path: Path, services: ServicesFactory
) -> None:
    svc = setup(tmp_path, redis_ts, services)
    client = redis_ts.client()
    results = walkers()
    feed(client, results[:120])
    proc = svc.start("stages")
    reached(client, results, 119)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    feed(client, results[120:])
    svc.start("stages")  # waits out the dead one's lease, then resumes
    wait_for(lambda: totals(client) == EXPECTED, 60, what=f"totals {EXPECTED} after the restart")
    assert ts_sum(client, keys.line_series("0", LINE, "in")) == EXPECTED["in"]
    crossings = [f for _i, f in client.xrange(keys.events("0")) if f[b"kind"] == b"line"]
    assert len(crossings) == 8


def test_redis_restarted_from_its_snapshot_keeps_totals_and_counts_nothing_twice(
    redis_ts: RedisServer, tmp_path: Path, services: ServicesFactory
) -> None:
    svc = setup(tmp_path, redis_ts, services)
    client = redis_ts.client()
    results = walkers()
    feed(client, results[:100])
    svc.start("stages")
    reached(client, results, 99)
    before = totals(client)
    client.save()  # the snapshot a device would have taken
    feed(client, results[100:140])  # lost with Redis: never snapshotted
    wait_for(lambda: totals(client) != before, 30, what="counting after the snapshot")
    assert redis_ts.proc is not None
    redis_ts.proc.send_signal(signal.SIGKILL)  # a power cut
    redis_ts.proc.wait(10)
    redis_ts.start()  # loads dump.rdb
    client = redis_ts.client()
    assert totals(client) == before
    # The gears would now write new results: here, the rest of the walk.
    feed(client, results[100:])
    wait_for(lambda: totals(client) == EXPECTED, 90, what=f"totals {EXPECTED} after the restart")
    assert ts_sum(client, keys.line_series("0", LINE, "in")) == EXPECTED["in"]


def test_a_line_added_to_the_config_gets_its_series_at_the_next_init(
    redis_ts: RedisServer, tmp_path: Path, services: ServicesFactory
) -> None:
    svc = setup(tmp_path, redis_ts, services)
    client = redis_ts.client()
    assert not client.exists(keys.line_series("0", "gate", "in"))
    svc.config.write_text(
        svc.config.read_text()
        + "[cameras.0.lines.gate]\npoints = [[50, 100], [50, 500]]\nin_side = [10, 300]\n"
    )
    svc.run("init")
    assert (
        client.exists(keys.line_series("0", "gate", "in"), keys.line_series("0", "gate", "out"))
        == 2
    )
    # Removing a line removes nothing recorded.
    svc.config.write_text(f'[redis]\nurl = "{redis_ts.url}"\n[cameras.0]\nsource = "/dev/null"\n')
    svc.run("init")
    assert (
        client.exists(keys.line_series("0", LINE, "in"), keys.line_series("0", "gate", "in")) == 2
    )


def test_a_standing_person_on_the_line_counts_once_and_a_re_entry_counts_again() -> None:
    cfg = config.parse(CONFIG.format(source="/dev/null"))
    stage = CountingStage("0", cfg)
    stage.load(None)

    def at(y: float) -> dict[bytes, bytes]:
        return {b"boxes": json.dumps([380, y - 100, 420, y]).encode()}

    ys = [250.0 + 10 * i for i in range(12)]  # walks in: 250 → 360
    ys += [300.0 + (3 if i % 2 else -3) for i in range(40)]  # stands on the line, jittering
    ys += [340.0 - 10 * i for i in range(12)]  # walks out: 340 → 230
    ys += [230.0 + 10 * i for i in range(14)]  # and in again, 230 → 360
    for i, y in enumerate(ys):
        stage.handle(T0 + i * 100, at(y))
    assert stage.totals == {f"line:{LINE}:in": 2, f"line:{LINE}:out": 1}
