"""rva web against the real pipeline: real redis-server (with and without RedisTimeSeries), real
rva capture / gears / web processes on vtest.avi, real HTTP.

Most tests share one pipeline (module scope) to keep the run short; the tests that break Redis
or need a Redis without TimeSeries bring up their own, and run first so that they do not
compete with the shared pipeline for the CPU.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from rva import config, keys
from rva.config import Config
from rva.connection import connect
from rva.services.web import feed as feed_module
from rva.services.web.app import BOUNDARY, make_app, make_server
from tests.conftest import CACHE, RedisServer, Services, _server, free_port, wait_for, write_config

FOOTAGE_SIZE = (768, 576)  # vtest.avi, served at its own size (resize = false)
DELIMITER = f"--{BOUNDARY}\r\n".encode()


# -- HTTP helpers ---------------------------------------------------------------------------


def http_get(port: int, path: str, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def get_json(port: int, path: str) -> tuple[int, Any]:
    status, _headers, body = http_get(port, path)
    return status, json.loads(body)


@dataclass
class Part:
    headers: dict[str, str]
    body: bytes

    def image(self) -> np.ndarray:
        img = cv2.imdecode(np.frombuffer(self.body, np.uint8), cv2.IMREAD_COLOR)
        assert img is not None, "a part's body is not a decodable JPEG"
        return img


class MjpegClient:
    """Reads /video as a browser does: the raw multipart stream, split on the boundary."""

    def __init__(self, port: int, path: str = "/video?camera=0", timeout: float = 15) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.conn.request("GET", path)
        self.resp = self.conn.getresponse()
        self.headers = {k.lower(): v for k, v in self.resp.getheaders()}
        self.buffer = b""

    def next_part(self) -> Part:
        # A part is complete when the next delimiter has arrived after it.
        while True:
            if len(self.buffer) >= len(DELIMITER):
                assert self.buffer.startswith(DELIMITER), (
                    f"a part does not start with the delimiter: {self.buffer[:80]!r}"
                )
                end = self.buffer.find(b"\r\n" + DELIMITER, len(DELIMITER))
                if end > 0:
                    raw, self.buffer = self.buffer[len(DELIMITER) : end], self.buffer[end + 2 :]
                    head, sep, body = raw.partition(b"\r\n\r\n")
                    assert sep, f"part without a blank line after its headers: {raw[:200]!r}"
                    headers = {}
                    for line in head.decode("latin-1").split("\r\n"):
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                    return Part(headers, body)
            chunk = self.resp.read1(65536)
            if not chunk:
                raise AssertionError("the /video stream ended")
            self.buffer += chunk

    def parts(self, n: int) -> list[Part]:
        return [self.next_part() for _ in range(n)]

    def close(self) -> None:
        self.resp.close()  # an HTTP/1.0 response owns the socket: closing conn alone keeps it open
        self.conn.close()


# -- image checks ---------------------------------------------------------------------------


def green_mask(img: np.ndarray) -> np.ndarray:
    """Pixels of the pure green (0, 255, 0) box outlines, allowing for JPEG blur; the grass in
    vtest.avi is far from saturated green."""
    b, g, r = (img[..., i].astype(np.int16) for i in range(3))
    return (g > 170) & (g - r > 110) & (g - b > 110)


def outline_mask(shape: tuple[int, ...], boxes: list[int], thickness: int = 2) -> np.ndarray:
    mask = np.zeros(shape[:2], np.uint8)
    for i in range(0, len(boxes) - 3, 4):
        x1, y1, x2, y2 = boxes[i : i + 4]
        cv2.rectangle(mask, (x1, y1), (x2, y2), 255, thickness)
    return mask


@dataclass
class BoxMatch:
    result_id: bytes
    ref: bytes
    precision: float  # green pixels of the served frame that lie on this result's outlines
    coverage: float  # this result's outline pixels that are green in the served frame


def match_boxes(img: np.ndarray, results: list[tuple[bytes, dict[bytes, bytes]]]) -> BoxMatch:
    """The result whose boxes best explain the green outlines of a served frame."""
    green = green_mask(img)
    assert green.sum() > 200, "no green box outlines in the served frame"
    best: BoxMatch | None = None
    for result_id, fields in results:
        boxes = json.loads(fields[b"boxes"])
        if not boxes:
            continue
        exact = outline_mask(img.shape, boxes) > 0
        near = cv2.dilate(exact.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0  # JPEG blur
        m = BoxMatch(
            result_id,
            fields[b"ref"],
            float((green & near).sum() / green.sum()),
            float(green[exact].mean()),
        )
        if best is None or m.precision + m.coverage > best.precision + best.coverage:
            best = m
    assert best is not None, "no result with boxes"
    return best


def frame_image(client: redis.Redis, entry_id: bytes) -> np.ndarray:
    found = client.xrange(keys.frames("0"), entry_id, entry_id)
    assert found, f"frame {entry_id!r} no longer in camera:0"
    return Part({}, found[0][1][b"image"]).image()


def content_difference(served: np.ndarray, raw: np.ndarray, boxes: list[int]) -> float:
    """How far a served frame is from a raw one, away from what annotation draws over it:
    the 99.5th percentile of the grey-level difference (a re-encode of the same frame stays
    under ~10, the next frame of vtest.avi is several times that where people walk)."""
    keep = cv2.dilate(outline_mask(served.shape, boxes), np.ones((9, 9), np.uint8)) == 0
    keep[:60, :260] = False  # the label
    a = cv2.cvtColor(served, cv2.COLOR_BGR2GRAY).astype(np.int16)
    b = cv2.cvtColor(raw, cv2.COLOR_BGR2GRAY).astype(np.int16)
    return float(np.percentile(np.abs(a - b)[keep], 99.5))


def label_region(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)[0:30, 0:130]


def metric_families(port: int) -> dict[str, Any]:
    status, _headers, body = http_get(port, "/metrics")
    assert status == 200
    return {m.name: m for m in text_string_to_metric_families(body.decode())}


def xread_calls(client: redis.Redis) -> int:
    return int(client.info("commandstats").get("cmdstat_xread", {}).get("calls", 0))


# -- pipelines ------------------------------------------------------------------------------


@dataclass
class Pipeline:
    server: RedisServer
    services: Services
    port: int
    config: Path

    def client(self) -> redis.Redis:
        return self.server.client()

    def get_json(self, path: str) -> tuple[int, Any]:
        return get_json(self.port, path)


def start_pipeline(
    tmp: Path,
    server: RedisServer,
    svc_factory: Callable[[Path], Services],
    vtest: Path,
    *,
    parts: tuple[str, ...] = ("capture", "gears", "web"),
) -> Pipeline:
    port = free_port()
    cfg = write_config(tmp / "rva.toml", server.url, vtest, web={"host": "127.0.0.1", "port": port})
    svc = svc_factory(cfg)
    svc.run("init")
    for part in parts:
        svc.start(part)
    pipe = Pipeline(server, svc, port, cfg)
    wait_for(
        lambda: http_get(port, "/healthz", timeout=2)[0] in (200, 503), 60, what="rva web /healthz"
    )
    return pipe


def results_flowing(pipe: Pipeline, minimum: int = 5) -> bool:
    return pipe.client().xlen(keys.results("0")) >= minimum


@contextmanager
def running_pipeline(tmp: Path) -> Iterator[Pipeline]:
    """Real Redis with TimeSeries, rva init, capture, gears and web on vtest.avi, with results
    flowing; everything stopped on exit."""
    vtest = CACHE / "footage" / "vtest.avi"
    if not vtest.exists():
        pytest.fail(f"{vtest} missing: run `make fetch` (scripts/get-footage.sh)")
    made: list[Services] = []

    def factory(cfg: Path) -> Services:
        made.append(Services(tmp, cfg))
        return made[-1]

    server_gen = _server(tmp, with_timeseries=True)
    server = next(server_gen)
    try:
        try:
            pipe = start_pipeline(tmp, server, factory, vtest)
            wait_for(lambda: results_flowing(pipe, 20), 90, what="results in camera:0:yolo")
        except BaseException:
            for s in made:
                print(s.logs())
            raise
        yield pipe
    finally:
        for s in made:
            s.stop_all()
        next(server_gen, None)  # runs its cleanup: stops redis-server


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    with running_pipeline(tmp_path_factory.mktemp("web-pipeline")) as pipe:
        yield pipe


@contextmanager
def serve_in_process(
    pipeline: Pipeline, cfg: Config, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[int, Any]]:
    """make_app served from this process (the same server as `rva web`), reading the
    shared pipeline's Redis, so that its feeds can be inspected."""
    client = connect(pipeline.server.url, name="rva-web-test")
    app = make_app(client, cfg)
    server = make_server(app, cfg, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port, app
    finally:
        server.shutdown()
        server.server_close()
        monkeypatch.setattr(feed_module, "IDLE_STOP_S", 0.0)  # let the feed threads end now
        feeds = app.config["rva.feeds"].values()
        wait_for(lambda: all(f.thread is None for f in feeds), 10, what="feed threads to stop")
        client.close()


@pytest.fixture
def in_process_web(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[int, Any]]:
    with serve_in_process(pipeline, config.load(pipeline.config), monkeypatch) as served:
        yield served


# -- tests that bring up their own Redis (first: the shared pipeline is not running yet) -----


def test_api_people_and_healthz_fall_back_to_the_stream_without_timeseries(
    tmp_path: Path, redis_plain: RedisServer, services: Callable[[Path], Services], vtest_path: Path
) -> None:
    pipe = start_pipeline(tmp_path, redis_plain, services, vtest_path)

    def people_points() -> list[list[float]] | None:
        status, data = pipe.get_json("/api/people?minutes=5")
        assert status == 200, data
        assert data["source"] == "stream", data
        return data["points"] if any(v > 0 for _t, v in data["points"]) else None

    points = wait_for(people_points, 90, what="people counted from the results stream")
    assert isinstance(points, list)
    assert all(v >= 0 for _t, v in points)
    now_ms = time.time() * 1000
    assert all(now_ms - 6 * 60_000 < t <= now_ms + 1000 for t, _v in points)

    status, health = pipe.get_json("/healthz")
    assert status == 200, health
    assert health["timeseries"] == "off"
    assert health["status"] == "degraded"
    assert any("TimeSeries" in p for p in health["problems"]), health["problems"]
    metrics = metric_families(pipe.port)
    assert metrics["rva_timeseries_enabled"].samples[0].value == 0


def test_api_and_healthz_skip_malformed_results(
    tmp_path: Path, redis_plain: RedisServer, services: Callable[[Path], Services], vtest_path: Path
) -> None:
    pipe = start_pipeline(tmp_path, redis_plain, services, vtest_path, parts=("web",))
    rc = pipe.client()
    now_ms = int(time.time() * 1000)
    results = keys.results("0")
    for i in range(3):
        rc.xadd(results, {"ref": f"{now_ms - 3000 + i * 1000}-0", "boxes": "[]", "people": 2})
    rc.xadd(results, {"ref": "garbage", "boxes": "[]", "people": 5})
    rc.xadd(results, {"ref": f"{now_ms}-0", "boxes": "[]", "people": "many"})

    status, data = pipe.get_json("/api/people?minutes=5")
    assert status == 200, data
    assert data["source"] == "stream"
    assert [v for _t, v in data["points"]] == [2, 2, 2]
    status, health = pipe.get_json("/healthz")
    assert status == 200, health
    assert health["cameras"]["0"]["people"] is None  # the newest result is malformed
    assert http_get(pipe.port, "/metrics")[0] == 200


def test_healthz_is_503_while_redis_is_down_and_recovers(
    tmp_path: Path, redis_ts: RedisServer, services: Callable[[Path], Services], vtest_path: Path
) -> None:
    pipe = start_pipeline(tmp_path, redis_ts, services, vtest_path, parts=("web",))
    status, health = pipe.get_json("/healthz")
    assert status == 200, health
    assert health["redis"] is True

    redis_ts.stop()
    status, health = pipe.get_json("/healthz")
    assert status == 503, health
    assert health["status"] == "down"
    assert health["redis"] is False
    assert "Redis unreachable" in health["problems"][0]
    metrics = metric_families(pipe.port)
    assert metrics["rva_redis_up"].samples[0].value == 0
    status, data = pipe.get_json("/api/people?minutes=5")
    assert status == 503 and "Redis unreachable" in data["error"]

    redis_ts.start()
    wait_for(lambda: pipe.get_json("/healthz")[0] == 200, 30, what="/healthz back to 200")
    status, health = pipe.get_json("/healthz")
    assert health["redis"] is True and health["timeseries"] == "on", health
    assert pipe.services.procs[-1][1].poll() is None, "rva web exited"


# -- the shared pipeline --------------------------------------------------------------------


def test_video_is_a_multipart_stream_of_annotated_footage_frames(pipeline: Pipeline) -> None:
    client = MjpegClient(pipeline.port)
    try:
        assert client.resp.status == 200
        ctype = client.headers["content-type"]
        assert ctype.split(";")[0].strip() == "multipart/x-mixed-replace"
        assert f"boundary={BOUNDARY}" in ctype.replace(" ", "")
        assert "no-cache" in client.headers.get("cache-control", "")
        parts = client.parts(6)
    finally:
        client.close()

    images = []
    for part in parts:
        assert part.headers["content-type"] == "image/jpeg"
        assert int(part.headers["content-length"]) == len(part.body)
        assert part.body[:2] == b"\xff\xd8" and part.body[-2:] == b"\xff\xd9"
        img = part.image()
        assert (img.shape[1], img.shape[0]) == FOOTAGE_SIZE
        images.append(img)

    # A live stream, not one frame repeated.
    assert len({p.body for p in parts}) == len(parts)
    diffs = [np.abs(a.astype(np.int16) - b.astype(np.int16)).mean() for a, b in pairwise(images)]
    assert min(diffs) > 0.2, diffs

    for img in images:
        # The label: a black box with white text in the top-left corner.
        label = label_region(img)
        assert (label < 40).mean() > 0.5, "label background is not black"
        assert 0.03 < (label > 200).mean() < 0.5, "no white label text"
        # Boxes: vtest.avi always has people in view.
        assert green_mask(img).sum() > 200, "no green boxes drawn"


def test_video_draws_each_result_on_the_frame_it_refers_to(pipeline: Pipeline) -> None:
    client = MjpegClient(pipeline.port)
    try:
        parts = client.parts(5)
    finally:
        client.close()
    redis_client = pipeline.client()
    recent = redis_client.xrevrange(keys.results("0"), count=150)  # ~15 s of results
    by_id = dict(recent)

    for part in parts:
        served = part.image()
        match = match_boxes(served, recent)
        # Every green pixel lies on this result's outlines, and its outlines are drawn.
        assert match.precision > 0.9, match
        assert match.coverage > 0.6, match
        boxes = json.loads(by_id[match.result_id][b"boxes"])
        # ...and the picture under them is the very frame the result names, not a neighbour.
        ref_diff = content_difference(served, frame_image(redis_client, match.ref), boxes)
        neighbours = redis_client.xrange(keys.frames("0"), match.ref, "+", count=2)
        assert len(neighbours) == 2, "no frame after the ref frame"
        next_diff = content_difference(served, frame_image(redis_client, neighbours[1][0]), boxes)
        assert ref_diff < 20, f"served frame differs from its ref frame ({ref_diff})"
        assert ref_diff * 2 < next_diff, (ref_diff, next_diff)


def test_unknown_camera_is_404(pipeline: Pipeline) -> None:
    for path in (
        "/video?camera=nope",
        "/video/nope",
        "/api/summary?camera=nope",
        "/api/people?camera=nope",
    ):
        status, _headers, body = http_get(pipeline.port, path)
        assert status == 404, (path, status, body[:200])
    status, _headers, _body = http_get(pipeline.port, "/api/summary?camera=0")
    assert status == 200


def test_metrics_parse_as_prometheus_text_with_live_values(pipeline: Pipeline) -> None:
    wait_for(
        lambda: pipeline.get_json("/healthz")[1]["cameras"]["0"]["latest"].get("out_fps"),
        30,
        what="fps in camera:0:latest",
    )
    assert http_get(pipeline.port, "/metrics")[1]["content-type"].startswith("text/plain")
    families = metric_families(pipeline.port)

    def samples(family: str, **labels: str) -> list[float]:
        return [
            s.value
            for s in families[family].samples
            if all(s.labels.get(k) == v for k, v in labels.items())
        ]

    assert samples("rva_redis_up") == [1.0]
    assert samples("rva_timeseries_enabled") == [1.0]
    assert len(samples("rva_people", camera="0")) == 1 and samples("rva_people", camera="0")[0] >= 0
    assert samples("rva_fps", camera="0", direction="in")[0] > 0
    assert samples("rva_fps", camera="0", direction="out")[0] > 0
    assert samples("rva_stage_seconds", camera="0", stage="model")[0] > 0
    assert samples("rva_frame_age_seconds", camera="0")[0] < 5
    # The parser names a counter family without "_total"; its samples keep it.
    assert families["rva_frames"].type == "counter"
    processed = [
        s
        for s in families["rva_frames"].samples
        if s.labels == {"camera": "0", "outcome": "processed"}
    ]
    assert processed and processed[0].name == "rva_frames_total" and processed[0].value > 0


def test_healthz_reports_a_healthy_pipeline(pipeline: Pipeline) -> None:
    status, health = pipeline.get_json("/healthz")
    assert status == 200, health
    assert health["status"] == "ok", health["problems"]
    assert health["redis"] is True
    assert health["timeseries"] == "on"
    cam = health["cameras"]["0"]
    assert cam["frame_age_s"] is not None and cam["frame_age_s"] < 5
    assert cam["gear_lag"] is not None and cam["gear_lag"] >= 0
    assert cam["people"] is not None and cam["people"] >= 0
    assert {name.split(":")[0] for name in health["services"]} >= {"capture", "gears", "web"}


def test_api_people_reads_the_timeseries(pipeline: Pipeline) -> None:
    def points() -> list[list[float]] | None:
        status, data = pipeline.get_json("/api/people?minutes=5")
        assert status == 200, data
        assert data["source"] == "timeseries", data
        return data["points"] if any(v > 0 for _t, v in data["points"]) else None

    found = wait_for(points, 30, what="people in the time series")
    assert isinstance(found, list)
    assert all(v >= 0 for _t, v in found)
    stamps = [t for t, _v in found]
    assert stamps == sorted(stamps)
    assert http_get(pipeline.port, "/api/people?minutes=abc")[0] == 400


def _wait_xread_quiet(client: redis.Redis) -> None:
    """Wait until nothing else XREADs (e.g. rva web's own feed, idle after an earlier test)."""

    def quiet() -> bool:
        before = xread_calls(client)
        time.sleep(1.0)
        return xread_calls(client) == before

    wait_for(quiet, 20, interval=0, what="no other XREAD client")


def test_each_frame_is_encoded_once_for_all_viewers(in_process_web: tuple[int, Any]) -> None:
    port, app = in_process_web
    feed = app.config["rva.feeds"]["0"]
    received: dict[str, list[bytes]] = {"a": [], "b": []}
    errors: list[BaseException] = []

    def watch(name: str, seconds: float) -> None:
        try:
            client = MjpegClient(port)
            try:
                deadline = time.monotonic() + seconds
                while time.monotonic() < deadline:
                    received[name].append(client.next_part().body)
            finally:
                client.close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=watch, args=(n, 3.0)) for n in received]
    for t in threads:
        t.start()
    wait_for(lambda: feed.viewers == 2, 10, what="two viewers")
    for t in threads:
        t.join(15)
    encoded = feed.encoded
    assert not errors, errors
    a, b = received["a"], received["b"]
    assert len(a) >= 10 and len(b) >= 10, (len(a), len(b))
    # One encode per frame, whoever watches: not one per viewer (that would be len(a) + len(b)).
    # The slack covers frames encoded just before and after the clients read, and a frame a
    # loaded machine may make a client skip.
    assert encoded <= 1.2 * max(len(a), len(b)) + 4, (encoded, len(a), len(b))
    # Both viewers got the same encoded bytes.
    common = set(a) & set(b)
    assert len(common) >= min(len(a), len(b)) - 3, (len(common), len(a), len(b))


def test_feed_stops_reading_redis_when_nobody_watches(
    in_process_web: tuple[int, Any], pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feed_module, "IDLE_STOP_S", 0.5)
    port, app = in_process_web
    feed = app.config["rva.feeds"]["0"]
    rc = pipeline.client()
    _wait_xread_quiet(rc)
    assert feed.thread is None, "feed reading before anybody watched"

    before = xread_calls(rc)
    client = MjpegClient(port)
    try:
        first = client.parts(4)
        assert feed.thread is not None and feed.viewers == 1
    finally:
        client.close()
    while_watching = xread_calls(rc) - before
    assert while_watching >= 3, while_watching

    wait_for(lambda: feed.thread is None, 10, what="feed thread to stop after the last viewer left")
    assert feed.viewers == 0
    left_over = feed.jpeg  # what a new viewer would get at once if the feed kept it
    idle_start, encoded = xread_calls(rc), feed.encoded
    time.sleep(1.5)
    assert xread_calls(rc) == idle_start, "Redis still read with nobody watching"
    assert feed.encoded == encoded

    # A new viewer starts it again, and gets a fresh frame, not one left from before.
    client = MjpegClient(port)
    try:
        again = client.next_part()
    finally:
        client.close()
    assert feed.encoded > encoded
    assert again.body != left_over, "a new viewer was shown a stale frame"
    assert again.body not in {p.body for p in first}


@dataclass
class HandFed:
    """Camera "9", fed by hand (no capture, no gears): one real frame of camera 0, then
    whatever results a test writes."""

    cfg: Config
    client: redis.Redis
    image: bytes  # the frame's JPEG
    ref: bytes  # its id in camera:9


@contextmanager
def hand_fed_camera(pipeline: Pipeline) -> Iterator[HandFed]:
    base = config.load(pipeline.config)
    cfg = base.model_copy(update={"cameras": {**base.cameras, "9": base.cameras["0"]}})
    rc = pipeline.client()
    rc.delete(keys.frames("9"), keys.results("9"))
    image = rc.xrevrange(keys.frames("0"), count=1)[0][1][b"image"]
    ref = rc.xadd(keys.frames("9"), {"count": 1, "image": image})
    try:
        yield HandFed(cfg, rc, image, ref)
    finally:
        rc.delete(keys.frames("9"), keys.results("9"))


def test_a_malformed_result_does_not_freeze_the_video(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Long enough that the annotated frame is not replaced by an idle raw one before a slow
    # client (a loaded CI machine) has read it.
    monkeypatch.setattr(feed_module, "RAW_AFTER_S", 2.0)
    with hand_fed_camera(pipeline) as fed:
        rc, ref = fed.client, fed.ref
        with serve_in_process(pipeline, fed.cfg, monkeypatch) as (port, app):
            feed = app.config["rva.feeds"]["9"]
            client = MjpegClient(port, "/video?camera=9", timeout=10)
            try:
                raw = client.next_part().image()  # no result yet: the raw frame, marked idle
                assert green_mask(raw).sum() < 50
                # Float coordinates: cv2.rectangle refuses them.
                rc.xadd(
                    keys.results("9"), {"ref": ref, "boxes": "[10.5, 10, 200, 300]", "people": 1}
                )
                time.sleep(1.0)  # the feed reads it at once (blocking XREAD)
                good = [100, 100, 300, 400]
                rc.xadd(keys.results("9"), {"ref": ref, "boxes": json.dumps(good), "people": 1})
                deadline = time.monotonic() + 8
                while time.monotonic() < deadline:
                    img = client.next_part().image()
                    if green_mask(img).sum() > 200:
                        break
                else:
                    pytest.fail("the good result after a malformed one was never shown")
            finally:
                client.close()
            assert feed.thread is not None and feed.thread.is_alive()
            exact = outline_mask(img.shape, good) > 0
            assert green_mask(img)[exact].mean() > 0.6


def test_a_result_written_while_the_feed_is_busy_is_still_drawn(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a slow device the feed spends most of its time drawing raw frames, not waiting in
    XREAD. A result written meanwhile must be read on the next round, not missed."""
    monkeypatch.setattr(feed_module, "RAW_AFTER_S", 0.0)  # raw frames from the first round on
    in_raw, written = threading.Event(), threading.Event()
    slow_raw = feed_module.Feed._latest_raw

    def latest_raw(self: feed_module.Feed) -> Any:
        # Hold the feed outside XREAD (as a slow CPU does) while the test writes a result.
        in_raw.set()
        written.wait(10)
        return slow_raw(self)

    monkeypatch.setattr(feed_module.Feed, "_latest_raw", latest_raw)
    good = [100, 100, 300, 400]
    with (
        hand_fed_camera(pipeline) as fed,
        serve_in_process(pipeline, fed.cfg, monkeypatch) as (port, _app),
    ):

        def write_result() -> None:
            if in_raw.wait(10):
                fed.client.xadd(
                    keys.results("9"), {"ref": fed.ref, "boxes": json.dumps(good), "people": 1}
                )
            written.set()

        # The response starts with the first frame, which waits for the result: write it
        # from another thread.
        writer = threading.Thread(target=write_result, daemon=True)
        writer.start()
        client = MjpegClient(port, "/video?camera=9", timeout=15)
        try:
            writer.join(15)
            assert in_raw.is_set(), "the feed never drew a raw frame"
            for _ in range(10):
                img = client.next_part().image()
                if green_mask(img).sum() > 200:
                    break
            else:
                pytest.fail("a result written while the feed drew a raw frame was never shown")
            assert green_mask(img)[outline_mask(img.shape, good) > 0].mean() > 0.6
            # Raw frames follow (no newer result): they keep the count and say its age,
            # rather than calling a slow detector idle.
            raw = next(
                img
                for img in map(Part.image, iter(client.next_part, None))
                if green_mask(img).sum() < 50
            )
        finally:
            client.close()
        stored = Part({}, fed.image).image()

        def label_distance(people: int | None, note: str) -> float:
            expected = feed_module.annotate(stored.copy(), [], people, note)
            a, b = (cv2.cvtColor(x[0:40, 0:420], cv2.COLOR_BGR2GRAY) for x in (raw, expected))
            return float(np.abs(a.astype(np.int16) - b).mean())

        counted = min(label_distance(1, f"counted {age} s ago") for age in range(4))
        assert counted < 5 < label_distance(None, "detector idle"), counted


def test_health_reads_a_frames_streams_length_and_newest_id_without_its_frames(
    redis_plain: RedisServer,
) -> None:
    """The snapshot behind /api/summary (asked each second by every open page) learns a frames
    stream's length and newest id from a script: XINFO STREAM's answer, without the two frames
    XINFO STREAM itself would send."""
    from rva import health

    client = redis_plain.client()
    snap = health.snapshot(client, ["0"], "rva")
    assert snap.cameras["0"].frames == 0 and snap.cameras["0"].frame_age_s is None
    assert "no frames yet (is rva-capture running?)" in snap.cameras["0"].problems
    for _ in range(3):
        client.xadd(keys.frames("0"), {"count": 0, "image": b"\xff" * 200_000})
    info = client.xinfo_stream(keys.frames("0"))
    now_ms = health.server_ms(client)
    sent_before = int(client.info("stats")["total_net_output_bytes"])
    state = health.snapshot(client, ["0"], "rva").cameras["0"]
    sent = int(client.info("stats")["total_net_output_bytes"]) - sent_before
    assert sent < 50_000, f"{sent} bytes sent for one snapshot: frames went with it"
    assert state.frames == info["length"] == 3
    newest_ms = keys.id_ms(info["last-generated-id"])
    assert state.frame_age_s is not None
    assert 0 <= state.frame_age_s - (now_ms - newest_ms) / 1000 < 5
    client.xtrim(keys.frames("0"), maxlen=0)  # emptied: length 0, the last id is kept
    state = health.snapshot(client, ["0"], "rva").cameras["0"]
    assert state.frames == 0 and state.frame_age_s is not None
