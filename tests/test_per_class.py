"""Counting more than people, on real footage where bicycles and cars occur, against labels
made by eye (tests/data/street1906_objects.toml, tests/data/bikes_objects.toml; docs/footage.md).

Neither clip has a fixed camera over a path (one is filmed from a moving cable car, the other is
a montage of short shots), so crossings cannot be labelled: the detector's per-class finds are
scored frame by frame, and the running appliance is checked with zones that count bicycles and
cars: their occupancy and events carry the class, and the people count stays persons only.

YOLOv3-tiny is weak on these classes (docs/footage.md: at the default 0.2 threshold about half
the labelled cars and a third of the bicycles of street1906 are found); the bounds below sit
under what it measured, so that a regression (persons only again, a wrong class id, a broken
NMS) fails while its known weakness does not.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import pytest
import tomllib

from rva import config, keys, shapes
from rva.models import manifest, store
from rva.models.detector import Detector
from tests.conftest import CACHE, RedisServer, Services, free_port, wait_for
from tests.services.web.test_web import get_json

DATA = Path(__file__).parent / "data"
FOOTAGE = CACHE / "footage"


def labels(name: str) -> dict:
    return tomllib.loads((DATA / name).read_text())


def footage(name: str) -> Path:
    path = FOOTAGE / name
    if not path.exists():
        pytest.fail(f"{path} missing: run `make fetch` (scripts/get-footage.sh)")
    return path


@pytest.fixture(scope="module")
def detector(model_cache: Path) -> Detector:
    found = Detector(store.from_cache(manifest.load("yolov3-tiny"), model_cache))
    found.want({"bicycle", "car"})
    return found


def finds(detector: Detector, video: Path, frames: list[int]) -> dict[int, dict[str, int]]:
    """Per labelled frame, how many boxes of each class the detector returned."""
    cap = cv2.VideoCapture(str(video))
    out: dict[int, dict[str, int]] = {}
    try:
        for index in frames:
            cap.set(cv2.CAP_PROP_POS_FRAMES, index)
            ok, frame = cap.read()
            assert ok, f"{video.name}: frame {index} not read"
            got = detector.detect(frame)
            per_class: dict[str, int] = {"person": got.people}
            for cls, flat in got.objects().items():
                per_class[cls] = len(flat) // 4
            out[index] = per_class
    finally:
        cap.release()
    return out


def recall(rows: list[dict], got: dict[int, dict[str, int]], cls: str) -> float:
    labelled = sum(r[cls] for r in rows)
    found = sum(min(got[r["frame"]].get(cls, 0), r[f"{cls}_max"]) for r in rows)
    return found / labelled


def test_bicycles_and_cars_are_found_where_labelled_and_rarely_where_not(
    detector: Detector,
) -> None:
    truth = labels("street1906_objects.toml")
    rows = truth["frame"]
    got = finds(detector, footage(truth["source"]), [r["frame"] for r in rows])
    # Measured with this model at 0.2 (docs/footage.md): car 0.49, bicycle 0.38.
    assert recall(rows, got, "car") >= 0.35, got
    assert recall(rows, got, "bicycle") >= 0.2, got
    # Frames without any car or bicycle, even a partial one: a car is invented on a minority
    # of them (the model calls some cable cars and wagons cars: 6 of 25 frames measured).
    empty_car = [r for r in rows if r["car_max"] == 0]
    invented = sum(1 for r in empty_car if got[r["frame"]].get("car", 0))
    assert invented <= len(empty_car) * 0.4, (invented, len(empty_car))
    empty_bike = [r for r in rows if r["bicycle_max"] == 0]
    invented = sum(1 for r in empty_bike if got[r["frame"]].get("bicycle", 0))
    assert invented <= len(empty_bike) * 0.25, (invented, len(empty_bike))
    # The people count is persons only: asking for more classes changes no person box.
    plain = Detector(detector.bundle)
    cap = cv2.VideoCapture(str(footage(truth["source"])))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 300)
    _ok, frame = cap.read()
    cap.release()
    both, alone = detector.detect(frame), plain.detect(frame)
    assert both.flat_boxes() == alone.flat_boxes() and both.people == alone.people


def test_the_appliance_counts_bicycles_and_cars_in_zones_and_people_stay_people(
    redis_ts: RedisServer, tmp_path: Path, services: Callable[[Path], Services]
) -> None:
    truth = labels("bikes_objects.toml")
    video = footage(truth["source"])
    port = free_port()
    cfg = tmp_path / "rva.toml"
    whole = "[[0, 0], [639, 0], [639, 271], [0, 271]]"
    cfg.write_text(
        f'[redis]\nurl = "{redis_ts.url}"\n[web]\nport = {port}\n'
        f'[cameras.0]\nsource = "{video}"\nfps = 25\n'
        f'[cameras.0.zones.cycles]\npolygon = {whole}\nclasses = ["bicycle"]\n'
        f'[cameras.0.zones.road]\npolygon = {whole}\nclasses = ["car"]\n'
        f"[cameras.0.zones.all]\npolygon = {whole}\n"
    )
    svc = services(cfg)
    svc.pipeline()
    svc.start("web")
    client = redis_ts.client()

    def event_classes() -> set[tuple[str, str]]:
        return {
            (f[b"name"].decode(), f[b"class"].decode())
            for _id, f in client.xrange(keys.events("0"))
            if f[b"direction"] == b"enter"
        }

    # The clip is 10 s and loops: the cyclist astride his bicycle (76-136) and the cars behind
    # the railing (137-186) come round every loop.
    wait_for(
        lambda: {("cycles", "bicycle"), ("road", "car")} <= event_classes(),
        150,
        interval=1,
        what="a bicycle entering the cycles zone and a car entering the road zone",
    )
    assert all(cls == "person" for name, cls in event_classes() if name == "all")
    # Results: persons in boxes (the people count), the other classes beside them.
    results = client.xrevrange(keys.results("0"), count=400)
    with_objects = [json.loads(f[b"objects"]) for _id, f in results if b"objects" in f]
    assert with_objects and {c for o in with_objects for c in o} <= {"bicycle", "car"}
    for _id, f in results:
        assert int(f[b"people"]) * 4 == len(json.loads(f[b"boxes"]))
    # The series, the page's counts and the report say what each zone counts.
    info = client.execute_command("TS.INFO", keys.zone_series("0", "road", "occupancy"))
    labels_ = dict(info[info.index(b"labels") + 1])
    assert labels_[b"classes"] == b"car"
    status, counts = get_json(port, "/api/counts?camera=0")
    assert status == 200 and counts["zones"]["cycles"]["classes"] == ["bicycle"]
    status, report = get_json(port, "/api/report?camera=0&bucket=hour")
    assert status == 200
    assert {z["name"]: z["classes"] for z in report["zones"]} == {
        "cycles": "bicycle",
        "road": "car",
        "all": "person",
    }
    # A zone removed live: the gear stops keeping the class nobody counts any more (it follows
    # the live set, not only rva.toml), while the cyclists go on being kept.
    shapes.remove_shape(client, config.load(cfg), "0", "zone", "road", who="test")
    time.sleep(3)  # the gear looks at the live set once a second; frames in flight are done
    after = client.xadd(keys.results("0") + ":mark", {"x": 1})  # an id of now, on Redis' clock
    client.delete(keys.results("0") + ":mark")

    def kept_since() -> set[str]:
        return {
            c
            for _id, f in client.xrange(keys.results("0"), min=after)
            if b"objects" in f
            for c in json.loads(f[b"objects"])
        }

    wait_for(lambda: "bicycle" in kept_since(), 60, interval=1, what="bicycles kept after")
    assert "car" not in kept_since()
