"""The motion gate in the running appliance (real Redis with TimeSeries, real processes): a
still picture of people is counted again every still_refresh_s and nothing in between, in
capture or in the gear; the skipped frames are counted in rva:stats and /metrics; the counting
stage keeps the tracks and zone occupancy of people standing still across the gaps."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rva import health, keys
from rva.services.web import metrics
from tests.conftest import RedisServer, Services, wait_for, write_config

ServicesFactory = Callable[[Path], Services]


@pytest.fixture
def still_picture(tmp_path: Path, sample_frames: dict[int, np.ndarray]) -> Path:
    """Frame 400 of vtest.avi as a still image: people standing still, for ever."""
    path = tmp_path / "people.png"
    cv2.imwrite(str(path), sample_frames[400])
    return path


def _results(client: object) -> list[tuple[int, int, int]]:
    """(result ms, frame ms, people) of every result."""
    return [
        (keys.id_ms(rid), keys.id_ms(f[b"ref"]), int(f[b"people"]))
        for rid, f in client.xrange(keys.results("0"))  # type: ignore[attr-defined]
    ]


@pytest.mark.parametrize("where", ["capture", "gear"])
def test_people_standing_still_are_counted_every_still_refresh_s_and_not_in_between(
    redis_ts: RedisServer,
    still_picture: Path,
    tmp_path: Path,
    services: ServicesFactory,
    where: str,
) -> None:
    cfg = write_config(
        tmp_path / "rva.toml",
        redis_ts.url,
        still_picture,
        camera={"fps": 10},
        gear={"motion_gate": where, "still_refresh_s": 1.0},
    )
    svc = services(cfg)
    svc.pipeline()
    client = redis_ts.client()
    wait_for(lambda: len(_results(client)) >= 7, 90, what="seven results of the still picture")
    results = _results(client)[1:]  # the first waited for the model to load
    frame_gaps = [b[1] - a[1] for a, b in itertools.pairwise(results)]
    # One detector pass a second (frames leave capture every 100 ms: ±1 frame, + slack for a
    # machine busy enough to pace a frame late).
    assert all(850 <= gap <= 1400 for gap in frame_gaps), frame_gaps
    people = [n for _, _, n in results]
    assert min(people) >= 2 and len(set(people)) == 1, people  # the same people every time
    stats = {k.decode(): int(v) for k, v in client.hgetall(keys.STATS).items()}
    assert stats["0:motion_skipped"] >= 5 * stats["0:processed"], stats
    if where == "capture":  # still frames never reach Redis: only those the detector ran on
        assert client.xlen(keys.frames("0")) <= stats["0:processed"] + stats.get("0:skipped", 0) + 2
    motion = client.execute_command("TS.RANGE", keys.series("0", "motion"), "-", "+")
    assert len(motion) >= 5 and max(float(v) for _, v in motion[1:]) < 0.002
    snap = health.snapshot(client, ["0"], "rva-gears")
    assert not snap.cameras["0"].problems, snap.cameras["0"].problems
    families = text_string_to_metric_families(metrics.render(lambda: snap).decode())
    frames_total = {
        s.labels["outcome"]: s.value
        for family in families
        if family.name == "rva_frames"
        for s in family.samples
        if s.name == "rva_frames_total"
    }
    assert frames_total["motion_skipped"] >= 5 * frames_total["processed"]


def test_the_counting_stage_keeps_people_standing_still_across_the_refresh_gaps(
    redis_ts: RedisServer, still_picture: Path, tmp_path: Path, services: ServicesFactory
) -> None:
    """Results come 2 s apart, longer than the tracker keeps an unseen track (max_miss_ms =
    500 here): the tracks go on all the same (each person is found where they stood), so the
    zone's occupancy holds and nobody leaves or enters twice."""
    cfg = tmp_path / "rva.toml"
    write_config(
        cfg,
        redis_ts.url,
        still_picture,
        camera={"fps": 10},
        gear={"still_refresh_s": 2.0},
        analytics={"max_miss_ms": 500},
    )
    cfg.write_text(
        cfg.read_text()
        + "[cameras.0.zones.all]\npolygon = [[0, 0], [767, 0], [767, 575], [0, 575]]\n"
    )
    svc = services(cfg)
    svc.pipeline()
    client = redis_ts.client()
    wait_for(lambda: len(_results(client)) >= 7, 90, what="seven results of the still picture")
    wait_for(
        lambda: client.hget(keys.counts("0"), "ts") == str(_results(client)[-1][1]).encode(),
        30,
        what="the counting stage up to the newest result",
    )
    people = _results(client)[-1][2]
    counts = client.hgetall(keys.counts("0"))
    assert int(counts[b"zone:all"]) == people >= 2
    events = [f for _, f in client.xrange(keys.events("0"))]
    assert {e[b"direction"] for e in events} == {b"enter"}, events
    assert len({e[b"track"] for e in events}) == len(events) == people


def test_a_still_picture_read_at_max_rate_is_looked_at_the_cameras_fps_not_flat_out(
    redis_ts: RedisServer, still_picture: Path, tmp_path: Path, services: ServicesFactory
) -> None:
    """rate = "max" sends the next frame when the gears answered the last: still frames wait
    for no answer, so they are read at cameras.<id>.fps instead of in a busy loop."""
    cfg = write_config(
        tmp_path / "rva.toml", redis_ts.url, still_picture, camera={"fps": 10, "rate": "max"}
    )
    svc = services(cfg)
    svc.run("init")
    svc.start("capture")
    client = redis_ts.client()

    def skipped() -> int:
        return int(client.hget(keys.STATS, "0:motion_skipped") or 0)

    wait_for(lambda: skipped() > 0, 60, what="still frames kept back")
    first, t0 = skipped(), time.monotonic()
    time.sleep(4)
    rate = (skipped() - first) / (time.monotonic() - t0)
    assert 5 <= rate <= 13, rate  # 10 a second, ± the once-a-second flush
