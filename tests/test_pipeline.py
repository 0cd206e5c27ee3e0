"""The whole chain on a real Redis with the real RedisTimeSeries module, real processes."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import pytest
import redis

from rva import keys
from tests.conftest import RedisServer, Services, free_port, rva, wait_for, write_config

ServicesFactory = Callable[[Path], Services]


def _ts_info(client: redis.Redis, key: str) -> dict[str, object]:
    raw = client.execute_command("TS.INFO", key)
    it = iter(raw)
    return {k.decode(): v for k, v in zip(it, it, strict=False)}


def _results(client: redis.Redis) -> list[tuple[str, dict[str, str]]]:
    return [
        (i.decode(), {k.decode(): v.decode() for k, v in f.items()})
        for i, f in client.xrange(keys.results("0"))
    ]


def _jpeg(frame_path: Path) -> bytes:
    frame = cv2.imread(str(frame_path))
    return cv2.imencode(".jpg", frame)[1].tobytes()


def test_init_is_idempotent_and_creates_labelled_series_with_minute_rollups(
    redis_ts: RedisServer, vtest_path: Path, tmp_path: Path, services: ServicesFactory
) -> None:
    svc = services(write_config(tmp_path / "rva.toml", redis_ts.url, vtest_path))
    first = json.loads(svc.run("init").stdout)
    second = json.loads(svc.run("init").stdout)
    assert first == {
        "model": "yolov3-tiny",
        "model_stored": True,
        "timeseries": True,
        "gears": ["people_counter:0"],
        "stages": [],  # no camera has counting lines or zones
    }
    assert second["model_stored"] is False and second["timeseries"] is True
    client = redis_ts.client()
    for metric in keys.METRICS:
        info = _ts_info(client, f"camera:0:{metric}")
        labels = {k.decode(): v.decode() for k, v in info["labels"]}  # type: ignore[union-attr]
        assert labels == {"camera": "0", "__name__": metric}
        assert info["retentionTime"] == 48 * 3600_000
    rules = {
        r[0].decode(): (r[1], r[2].decode().lower())
        for r in _ts_info(client, "camera:0:people")["rules"]
    }  # type: ignore[union-attr]
    assert rules == {
        f"camera:0:people:{a}:{m}m": (m * 60_000, a)
        for a in ("avg", "min", "max")
        for m in (1, 5, 15)
    }
    assert _ts_info(client, "camera:0:people:avg:15m")["retentionTime"] == 90 * 86400_000
    reg = json.loads(client.hget(keys.GEARS, "people_counter:0"))
    assert reg["model"] == "yolov3-tiny" and reg["camera"] == "0" and reg["group"] == "rva-gears"
    assert client.get(keys.TIMESERIES_FLAG) == b"on"
    assert client.xinfo_groups("camera:0")[0]["name"] == b"rva-gears"


def test_pipeline_counts_people_with_boxes_in_frame_pixels(
    redis_ts: RedisServer, vtest_path: Path, tmp_path: Path, services: ServicesFactory
) -> None:
    svc = services(write_config(tmp_path / "rva.toml", redis_ts.url, vtest_path))
    svc.pipeline()
    client = redis_ts.client()
    wait_for(lambda: client.xlen(keys.results("0")) >= 15, 90, what="15 results")
    frame_ids = {i.decode() for i, _ in client.xrange(keys.frames("0"))}
    results = _results(client)
    assert sum(1 for _, r in results if int(r["people"]) > 0) >= 10
    for rid, r in results:
        assert r["ref"] in frame_ids or r["ref"] < min(frame_ids)  # trimmed frames are older
        assert r["ref"] < rid
        boxes = json.loads(r["boxes"])
        assert len(boxes) == 4 * int(r["people"])
        for i in range(0, len(boxes), 4):
            x1, y1, x2, y2 = boxes[i : i + 4]
            assert 0 <= x1 < x2 <= 767 and 0 <= y1 < y2 <= 575
    samples = client.execute_command("TS.RANGE", "camera:0:people", "-", "+")
    assert len(samples) >= 10 and max(float(v) for _, v in samples) >= 2
    # Each worker says on camera:0:next which frame it last ran the model on (one entry kept).
    (_, hint), *rest = client.xrevrange(keys.next_frame("0"))
    assert rest == [] and hint[b"ref"].decode() in {r["ref"] for _, r in _results(client)}
    latest = {k.decode(): float(v) for k, v in client.hgetall(keys.latest("0")).items()}
    assert 5 <= latest["in_fps"] <= 15  # vtest.avi is 10 fps, paced natively
    assert latest["prf_model"] > 0 and latest["prf_total"] >= latest["prf_model"]
    for stage in keys.STAGES:
        assert client.execute_command("TS.GET", f"camera:0:prf_{stage}")


def test_bad_entries_are_skipped_and_counted_and_the_gear_keeps_going(
    redis_ts: RedisServer, vtest_path: Path, tmp_path: Path, services: ServicesFactory
) -> None:
    svc = services(write_config(tmp_path / "rva.toml", redis_ts.url, vtest_path))
    svc.run("init")
    gears = svc.start("gears")
    client = redis_ts.client()
    cap = cv2.VideoCapture(str(vtest_path))
    good = cv2.imencode(".jpg", cap.read()[1])[1].tobytes()
    bad_entries = {
        "corrupt_frame": {"count": 1, "image": b"\xff\xd8\xff this is not a JPEG"},
        "bad_entry": {"count": 2, "picture": good},
        "oversized": {"count": 3, "image": b"\xff" * (17 * 1024 * 1024)},
    }
    wait_for(lambda: client.hgetall(keys.HEARTBEAT), 60, what="gears ready")
    for kind, fields in bad_entries.items():
        client.xadd(keys.frames("0"), fields)  # one at a time: each must be looked at
        wait_for(lambda kind=kind: client.hget(keys.ERRORS, f"0:{kind}") == b"1", 30, what=kind)
    good_id = client.xadd(keys.frames("0"), {"count": 4, "image": good}).decode()
    wait_for(
        lambda: any(r["ref"] == good_id for _, r in _results(client)), 30, what="good frame result"
    )
    assert gears.poll() is None, "gears must survive bad input"
    assert client.xpending(keys.frames("0"), "rva-gears")["pending"] == 0
    assert len(_results(client)) == 1


def test_worker_killed_mid_frame_its_entry_is_reclaimed_nothing_lost_or_doubled(
    redis_ts: RedisServer, vtest_path: Path, tmp_path: Path, services: ServicesFactory
) -> None:
    cfg = write_config(
        tmp_path / "rva.toml", redis_ts.url, vtest_path, gear={"claim_idle_ms": 1500}
    )
    svc = services(cfg)
    svc.run("init")
    client = redis_ts.client()
    frame = cv2.imencode(".jpg", cv2.VideoCapture(str(vtest_path)).read()[1])[1].tobytes()
    doomed = svc.start("gears")
    wait_for(lambda: client.hgetall(keys.HEARTBEAT), 60, what="first worker ready")
    # Freeze the worker the moment it has taken the frame, then kill it: a worker dead mid-frame.
    entry = client.xadd(keys.frames("0"), {"count": 1, "image": frame}).decode()
    wait_for(
        lambda: client.xpending(keys.frames("0"), "rva-gears")["pending"] == 1,
        10,
        0.001,
        what="frame taken by the first worker",
    )
    os.kill(doomed.pid, signal.SIGSTOP)
    already = any(r["ref"] == entry for _, r in _results(client))
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait(10)
    if not already:
        assert client.xpending(keys.frames("0"), "rva-gears")["pending"] == 1
    svc.start("gears")
    wait_for(
        lambda: any(r["ref"] == entry for _, r in _results(client)),
        60,
        what="reclaimed frame processed",
    )
    wait_for(
        lambda: client.xpending(keys.frames("0"), "rva-gears")["pending"] == 0,
        10,
        what="nothing pending",
    )
    time.sleep(2)  # a second reclaim round must not process it again
    assert [r["ref"] for _, r in _results(client)] == [entry]
    if not already:
        assert client.hget(keys.STATS, "0:reclaimed") == b"1"


def test_at_max_rate_capture_sends_the_next_frame_on_a_hint_for_the_last_one(
    redis_ts: RedisServer,
) -> None:
    """rate = "max": capture waits for the worker's hint (camera:<id>:next) or the result of
    the frame it sent last; an answer about an older frame does not count; with none, it sends
    the next after its timeout."""
    import threading

    from rva.services.capture.service import ResultFollower

    client = redis_ts.client()
    follow = ResultFollower(client, "0", timeout_ms=20_000)
    follow.wait()  # the first frame goes out at once
    older = client.xadd(keys.frames("0"), {"image": b"x"})
    sent = client.xadd(keys.frames("0"), {"image": b"x"})
    follow.sent(sent)
    said: dict[str, float] = {}

    def answer() -> None:
        time.sleep(0.5)
        client.xadd(keys.results("0"), {"ref": older, "people": 0})  # late, for an older frame
        said["older"] = time.monotonic()
        time.sleep(0.5)
        said["hint"] = time.monotonic()
        client.xadd(keys.next_frame("0"), {"ref": sent}, maxlen=1)

    thread = threading.Thread(target=answer)
    thread.start()
    follow.wait()
    returned = time.monotonic()
    thread.join()
    assert said["older"] < said["hint"] <= returned < said["hint"] + 10  # not the timeout
    # The result of that frame, after its hint, is no answer for the next frame.
    client.xadd(keys.results("0"), {"ref": sent, "people": 0})
    follow.sent(client.xadd(keys.frames("0"), {"image": b"x"}))
    follow.timeout_ms = 300
    started = time.monotonic()
    follow.wait()
    assert time.monotonic() - started >= 0.3


def test_a_worker_that_lost_its_entry_cannot_write_a_second_result(
    redis_ts: RedisServer, vtest_path: Path, tmp_path: Path, services: ServicesFactory
) -> None:
    from rva.config import load
    from rva.runtime import Runtime
    from rva.services.gears.worker import Worker

    cfg_path = write_config(tmp_path / "rva.toml", redis_ts.url, vtest_path)
    services(cfg_path).run("init")
    client = redis_ts.client()
    entry = client.xadd(keys.frames("0"), {"count": 1, "image": b"x"}).decode()
    client.xreadgroup("rva-gears", "slow", {keys.frames("0"): ">"})
    client.xclaim(keys.frames("0"), "rva-gears", "fast", 0, [entry])
    worker = Worker(client, load(cfg_path), Runtime("test"), consumer="slow")
    ms = keys.id_ms(entry)
    script_keys = [keys.frames("0"), keys.results("0"), keys.STATS, keys.latest("0")]
    args = ["rva-gears", "slow", entry, 100, ms, 1000, "0:processed"]
    args += [3, "ref", entry, "boxes", "[]", "people", 0, 2, "people", 0, "ts", ms]
    assert worker.store(keys=script_keys, args=args) == [0]
    assert client.xlen(keys.results("0")) == 0 and not client.exists(keys.latest("0"))
    args[1] = "fast"
    assert worker.store(keys=script_keys, args=args)[0] == 1
    assert [r["ref"] for _, r in _results(client)] == [entry]
    assert client.hget(keys.STATS, "0:processed") == b"1"
    assert client.hgetall(keys.latest("0")) == {b"people": b"0", b"ts": str(ms).encode()}
    assert client.xpending(keys.frames("0"), "rva-gears")["pending"] == 0


def test_two_workers_share_one_camera_without_double_work(
    redis_ts: RedisServer, vtest_path: Path, tmp_path: Path, services: ServicesFactory
) -> None:
    svc = services(
        write_config(tmp_path / "rva.toml", redis_ts.url, vtest_path, camera={"fps": 10})
    )
    svc.run("init")
    svc.start("gears")
    svc.start("gears")
    client = redis_ts.client()
    wait_for(lambda: len(client.hgetall(keys.HEARTBEAT)) == 2, 60, what="two workers")
    svc.start("capture", "--frames", "80")
    wait_for(lambda: client.xlen(keys.frames("0")) >= 80, 60, what="80 frames captured")
    wait_for(
        lambda: client.xpending(keys.frames("0"), "rva-gears")["pending"] == 0
        and client.xinfo_groups(keys.frames("0"))[0]["lag"] == 0,
        30,
        what="all frames handled",
    )
    results = _results(client)
    refs = [r["ref"] for _, r in results]
    assert len(refs) == len(set(refs)), "a frame was processed twice"
    assert len({r["worker"] for _, r in results}) == 2, "both workers must have taken frames"
    stats = {k.decode(): int(v) for k, v in client.hgetall(keys.STATS).items()}
    assert stats["0:processed"] == len(refs)
    assert stats["0:processed"] + stats.get("0:skipped", 0) == 80  # every frame accounted for


def test_redis_restart_mid_run_both_services_reconnect_and_restore_state(
    redis_ts: RedisServer, vtest_path: Path, tmp_path: Path, services: ServicesFactory
) -> None:
    svc = services(write_config(tmp_path / "rva.toml", redis_ts.url, vtest_path))
    svc.run("init")
    gears, capture = svc.start("gears"), svc.start("capture")
    client = redis_ts.client()
    wait_for(lambda: client.xlen(keys.results("0")) >= 3, 90, what="results before the restart")
    redis_ts.stop()
    time.sleep(3)
    redis_ts.start()  # comes back empty: no persistence in tests
    client = redis_ts.client()
    assert client.xlen(keys.results("0")) == 0
    wait_for(lambda: client.xlen(keys.results("0")) >= 3, 90, what="results after the restart")
    assert gears.poll() is None and capture.poll() is None
    assert client.hexists(keys.GEARS, "people_counter:0"), "registration restored by the worker"
    info = _ts_info(client, "camera:0:people")
    assert {k.decode(): v.decode() for k, v in info["labels"]}["camera"] == "0"  # type: ignore[union-attr]
    assert len(info["rules"]) == 9  # type: ignore[arg-type]


def test_unknown_camera_and_unreadable_source(
    redis_ts: RedisServer, vtest_path: Path, tmp_path: Path, services: ServicesFactory
) -> None:
    svc = services(write_config(tmp_path / "rva.toml", redis_ts.url, vtest_path))
    res = svc.run("capture", "--camera", "9", check=False)
    assert res.returncode == 2
    assert "unknown camera '9' (configured: 0)" in res.stderr
    # A source that cannot be opened is retried with backoff, never a crash loop.
    missing = svc.start("capture", str(tmp_path / "gone.avi"))
    time.sleep(3)
    assert missing.poll() is None
    missing.send_signal(signal.SIGTERM)
    assert missing.wait(10) == 0
    assert "video file not found" in svc.logs()


def test_rva_top_shows_people_fps_and_stage_timings(
    redis_ts: RedisServer, vtest_path: Path, tmp_path: Path, services: ServicesFactory
) -> None:
    svc = services(write_config(tmp_path / "rva.toml", redis_ts.url, vtest_path))
    svc.pipeline()
    client = redis_ts.client()
    wait_for(lambda: client.hexists(keys.latest("0"), "in_fps"), 90, what="rates measured")
    screen = svc.run("top", "--once").stdout
    lines = screen.splitlines()
    assert lines[0].startswith("RVA top — camera 0")
    assert lines[1].split()[0] == "people" and lines[1].split()[1].isdigit()
    fps = lines[2].split()
    assert float(fps[2]) > 0  # "in fps <n> out fps <n>"
    assert "model" in lines[3] and "total" in lines[3]


def test_rva_bench_reports_every_phase_in_one_json(
    vtest_path: Path, tmp_path: Path, model_cache: Path
) -> None:
    """The benchmark's shape, not its speed: figures are for people to read, never asserted."""
    res = rva("bench", "--seconds", "3", "--source", str(vtest_path))
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    for key in ("bare_fps", "pipeline_fps", "ratio", "latency_ms", "stages_ms", "services"):
        assert key in report
    assert report["bare_fps"] > 0 and report["pipeline_fps"] > 0
    # The report rounds each figure; the ratio is of the unrounded rates.
    assert report["ratio"] == pytest.approx(report["pipeline_fps"] / report["bare_fps"], abs=0.002)
    assert 0 < report["latency_ms"]["p50"] <= report["latency_ms"]["p95"]
    assert set(report["services"]) == {"redis", "capture", "gears"}
    assert all(s["peak_rss_mb"] > 0 for s in report["services"].values())
    assert report["stages_ms"]["pipeline"]["model"] > 0
    assert report["timeseries"] is True
    assert report["backend"] in ("onnxruntime", "opencv")  # what `auto` is here
    assert report["precision"] == "float"
    cpu = report["cpu_ms_per_frame"]
    assert cpu["bare"] > 0 and cpu["pipeline"] > 0
    assert cpu["ratio"] == pytest.approx(cpu["bare"] / cpu["pipeline"], rel=0.02)
    # The third phase: the whole appliance on a still picture at 10 fps, motion gate on.
    still = report["still"]
    assert still["input_fps"] == 10 and still["motion_gate"] == "capture"
    assert set(still["services"]) == {"redis", "capture", "gears", "web"}
    assert still["total_cpu_percent"] == pytest.approx(
        sum(s["cpu_percent"] for s in still["services"].values()), abs=0.2
    )
    assert still["motion_skipped"] > still["detector_runs"] >= 0
    assert set(report["load"]["others_cores"]) == {"bare", "pipeline", "still"}
    assert report["slices"] == 4  # the bare loop and the pipeline alternated
    bad = rva("bench", "--seconds", "3", "--slices", "0", "--source", str(vtest_path))
    assert bad.returncode != 0 and "--slices must be 1 or more" in bad.stderr, bad.stderr


def _rva_video_stream(
    redis_ts: RedisServer, vtest_path: Path, tmp_path: Path, services: ServicesFactory
) -> tuple[Services, subprocess.Popen[bytes], str]:
    """An HTTP MJPEG camera to capture from: another RVA (init, capture of vtest.avi, web) and
    the URL of its /video. Returns the services, the web process and the URL."""
    port = free_port()
    svc = services(
        write_config(
            tmp_path / "rva.toml", redis_ts.url, vtest_path, web={"host": "127.0.0.1", "port": port}
        )
    )
    svc.run("init")
    svc.start("capture")
    web = svc.start("web")
    return svc, web, f"http://127.0.0.1:{port}/video"


def test_url_source_reconnects_when_the_stream_comes_back(
    redis_ts: RedisServer, vtest_path: Path, tmp_path: Path, services: ServicesFactory
) -> None:
    """An HTTP MJPEG camera (here: another RVA's /video) that goes away and comes back."""
    svc, web, url = _rva_video_stream(redis_ts, vtest_path, tmp_path, services)
    client = redis_ts.client()
    url_capture = svc.start("capture", url, "--camera", "net")
    wait_for(lambda: client.xlen("camera:net") >= 3, 60, what="frames from the URL source")
    web.send_signal(signal.SIGTERM)
    web.wait(15)
    time.sleep(4)
    assert url_capture.poll() is None, "the capture must wait for the stream, not exit"
    before = client.xlen("camera:net")
    svc.start("web")
    wait_for(
        lambda: client.xlen("camera:net") >= before + 3, 90, what="frames after the stream returned"
    )
    assert "reopening" in svc.logs()


def test_a_live_source_faster_than_the_configured_fps_is_thinned_to_it(
    redis_ts: RedisServer, vtest_path: Path, tmp_path: Path, services: ServicesFactory
) -> None:
    """A network camera streams at its own rate (here another RVA's /video, ~10 fps); capture
    keeps cameras.<id>.fps of its frames rather than encoding and storing all of them."""
    svc, _web, url = _rva_video_stream(redis_ts, vtest_path, tmp_path, services)
    client = redis_ts.client()
    wait_for(lambda: client.xlen("camera:0") >= 10, 60, what="frames of camera 0")
    svc.run("capture", url, "--camera", "net", "--fps", "2", "--frames", "5", timeout=120)
    ids = [int(entry_id.split(b"-")[0]) for entry_id, _ in client.xrange("camera:net")]
    assert len(ids) == 5
    # 2 fps: 500 ms apart (some slack); the stream itself delivers a frame every ~100 ms.
    assert min(b - a for a, b in itertools.pairwise(ids)) >= 350, ids
