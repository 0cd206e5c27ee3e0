"""gear.precision = "int8": the gear running the default model's int8 copy end to end on a real
Redis, the refusals (missing, made at another input size, stale, damaged, opencv), and
`rva count --precision both`.

The copy is made once for the module by `rva models quantize`'s own code, into a model cache of
its own, at a 320×320 input and from 20 frames (about 5 s on the development machine, where
512² and 50 frames take about 10 s): what is tested is how the gear and the tools find, check and
run it, not int8's accuracy (docs/accuracy.md measures that at the default's 512²).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from rva import keys
from rva.config import Config, ConfigError, GearSection, gear_settings, load
from rva.gears.base import Entry
from rva.gears.people_counter import decode_frame
from rva.models import int8, manifest, store
from rva.models.detector import Detector
from rva.models.manifest import ModelError
from rva.tools import quantize
from tests.conftest import RedisServer, Services, rva, wait_for, write_config

MODEL, SIZE = "yolov3-tiny", 320
LABELS = """\
[[frame]]
frame = 0
people = 3
max = 4

[[frame]]
frame = 60
people = 4
max = 5

[[frame]]
frame = 120
people = 3
max = 3
"""


@pytest.fixture(scope="module")
def int8_cache(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Iterator[Path]:
    """A model cache with the float model (links to the test cache's files) and its int8 copy."""
    cache = float_only(model_cache, tmp_path_factory.mktemp("cache") / "models")
    bundle = store.from_cache(manifest.load(MODEL), cache)
    vtest = model_cache.parent / "footage" / "vtest.avi"
    frames = quantize.file_frames(str(vtest), step=37)  # 20 frames 3.7 s apart
    prov = quantize.quantize(
        bundle, frames, int8.path(cache, MODEL), source="vtest", wanted=20, input_size=SIZE
    )
    assert prov.input_size == [SIZE, SIZE] and prov.frames == 20
    yield cache


def float_only(model_cache: Path, into: Path) -> Path:
    """A model cache with the float model only (links to the test cache's files)."""
    (into / MODEL).mkdir(parents=True)
    for file in (model_cache / MODEL).iterdir():
        if ".int8." not in file.name:
            (into / MODEL / file.name).symlink_to(file.resolve())
    return into


def copy_of(cache: Path, into: Path) -> Path:
    """The same cache, its int8 files copied (a test changes them) and the rest linked."""
    (into / MODEL).mkdir(parents=True)
    for file in (cache / MODEL).iterdir():
        target = into / MODEL / file.name
        if ".int8." in file.name:
            target.write_bytes(file.read_bytes())
        else:
            target.symlink_to(file.resolve())
    return into


def detector(cache: Path, **options: object) -> Detector:
    bundle = store.from_cache(manifest.load(MODEL), cache)
    settings: dict[str, object] = {"input_size": SIZE, "precision": "int8", **options}
    return Detector(bundle, model_cache=cache, **settings)  # type: ignore[arg-type]


def test_the_gear_counts_people_with_the_int8_copy(
    redis_ts: RedisServer,
    tmp_path: Path,
    vtest_path: Path,
    int8_cache: Path,
    sample_frames: dict[int, np.ndarray],
    services: Callable[..., Services],
) -> None:
    gear = {"precision": "int8", "input_size": SIZE}
    cfg = write_config(tmp_path / "rva.toml", redis_ts.url, vtest_path, gear=gear)
    svc = services(cfg, int8_cache)
    svc.run("init")
    svc.start("gears")
    client = redis_ts.client()
    registration = json.loads(client.hget(keys.GEARS, "people_counter:0"))
    assert registration["precision"] == "int8"
    mine = detector(int8_cache)
    plain = detector(int8_cache, precision="float")
    results, differ, off = [], 0, 0
    for n, frame in enumerate(sample_frames.values()):
        jpeg = cv2.imencode(".jpg", frame)[1].tobytes()
        ref = client.xadd(keys.frames("0"), {"count": n, "image": jpeg}).decode()

        def result(ref: str = ref) -> dict[bytes, bytes] | None:
            rows = client.xrange(keys.results("0"), "-", "+")
            return next((f for _i, f in rows if f[b"ref"].decode() == ref), None)

        got = wait_for(result, timeout=60, what=f"the gear's result for {ref}")
        assert isinstance(got, dict)
        decoded = decode_frame(Entry(ref, {b"image": jpeg}))
        want, fl = mine.detect(decoded), plain.detect(decoded)
        # The gear ran the int8 graph: its boxes are the int8 detector's, to the pixel.
        assert json.loads(got[b"boxes"]) == want.flat_boxes()
        assert int(got[b"people"]) == want.people
        results.append(want.people)
        differ += want.flat_boxes() != fl.flat_boxes()
        off += abs(want.people - fl.people)
    assert sum(results) >= 20, results  # 3 to 6 people in each of vtest's frames
    assert differ, "the int8 boxes are the float ones: the float model ran"
    assert off <= 4, off  # and it counts about as the float model does
    log = (tmp_path / "gears-0.log").read_text()
    assert "model yolov3-tiny on auto/cpu, int8" in log
    assert "int8 copy of yolov3-tiny checked and loaded" in log


def test_a_missing_copy_says_how_to_make_one_in_config_check_and_at_gear_start(
    redis_ts: RedisServer,
    tmp_path: Path,
    vtest_path: Path,
    model_cache: Path,
    services: Callable[..., Services],
) -> None:
    cache = float_only(model_cache, tmp_path / "models")
    cfg = write_config(tmp_path / "rva.toml", redis_ts.url, vtest_path, gear={"precision": "int8"})
    wanted = int8.path(cache, MODEL)
    svc = services(cfg, cache)
    check = svc.run("config", "check")  # a warning: quantizing needs the camera running
    assert f"gear.precision: warning: int8: {wanted} is missing" in check.stderr
    assert f"`rva models quantize {MODEL} --camera ID`" in check.stderr
    svc.run("init")
    svc.start("gears")
    log = tmp_path / "gears-0.log"
    wait_for(
        lambda: f'gears.service: gear.precision = "int8": {wanted} is missing' in log.read_text(),
        what="the gear saying the int8 file is missing",
    )
    assert redis_ts.client().xlen(keys.results("0")) == 0


def test_a_copy_made_at_another_size_stale_or_damaged_is_refused(
    int8_cache: Path, tmp_path: Path
) -> None:
    file = int8.path(int8_cache, MODEL)
    with pytest.raises(
        ModelError, match=rf"{file} was made for a 320x320 input, but the gear runs "
    ):
        detector(int8_cache, input_size=416)
    stale = copy_of(int8_cache, tmp_path / "stale")
    meta = int8.path(stale, MODEL).with_suffix(".json")
    prov = json.loads(meta.read_text())
    meta.write_text(json.dumps({**prov, "float_sha256": "0" * 64}))  # made from another model
    with pytest.raises(ModelError, match=r"was made from another version of yolov3-tiny .*stale"):
        detector(stale)
    damaged = copy_of(int8_cache, tmp_path / "damaged")
    data = bytearray(int8.path(damaged, MODEL).read_bytes())
    data[-100] ^= 0xFF
    int8.path(damaged, MODEL).write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"does not match its provenance's sha256"):
        detector(damaged)
    older = copy_of(int8_cache, tmp_path / "older")
    meta = int8.path(older, MODEL).with_suffix(".json")
    meta.write_text(json.dumps({k: v for k, v in prov.items() if k != "input_size"}))
    with pytest.raises(ModelError, match=r"records no input size .* quantize yolov3-tiny` again"):
        detector(older)
    # `rva config check` says the size mismatch too, as an error that names the key.
    cfg = tmp_path / "rva.toml"
    cfg.write_text(
        f'[cameras.0]\nsource = "{tmp_path}"\n[gear]\ninput_size = 416\nprecision = "int8"\n'
    )
    res = rva("config", "check", env={"RVA_CONFIG": str(cfg), "RVA_MODEL_CACHE": str(int8_cache)})
    assert res.returncode == 2
    assert f"gear.precision: int8: {file} was made for a 320x320 input" in res.stderr


def test_int8_runs_on_onnxruntime_only(int8_cache: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r'"int8" runs on the onnxruntime backend only'):
        detector(int8_cache, backend="opencv")
    assert detector(int8_cache, backend="auto").backend_name == "onnxruntime"
    with pytest.raises(ValueError, match=r"int8 runs on the onnxruntime backend only"):
        GearSection(backend="opencv", precision="int8")
    cfg = tmp_path / "rva.toml"
    cfg.write_text(
        '[cameras.0]\nsource = "x.avi"\n[gear]\nbackend = "opencv"\nprecision = "int8"\n'
    )
    with pytest.raises(ConfigError, match=r"gear\.precision: int8 runs on the onnxruntime backend"):
        load(cfg)
    with pytest.raises(ConfigError, match=r"--precision: int8 runs on the onnxruntime"):
        gear_settings(Config(), backend="opencv", precision="int8")


def test_rva_count_precision_both_scores_float_and_int8_side_by_side(
    int8_cache: Path, tmp_path: Path, vtest_path: Path, model_cache: Path
) -> None:
    labels = tmp_path / "labels.toml"
    labels.write_text(LABELS)
    both = ("--labels", str(labels), "--precision", "both", "--input-size", str(SIZE))
    cache = ("--model-cache", str(int8_cache))
    res = rva("count", str(vtest_path), *both, *cache)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == f"3 labelled frames, {MODEL} {SIZE}x{SIZE} on onnxruntime:"
    assert lines[1].split() == ["precision", "MAE", "signed", "off", "ms/frame"]
    assert lines[2].split()[0] == "float" and lines[3].split()[0] == "int8"
    assert lines[3].endswith("x float)")
    res = rva("count", str(vtest_path), *both, *cache, "--json")
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["precision"] for r in rows] == ["float", "int8"]
    for row in rows:
        assert row["score"]["frames"] == 3 and row["ms_per_frame"] > 0
    assert abs(rows[0]["score"]["mae"] - rows[1]["score"]["mae"]) <= 1.0
    # Without an int8 copy: what to run to make one. Without labels: what both needs.
    res = rva("count", str(vtest_path), "--labels", str(labels), "--precision", "both",
              "--model-cache", str(float_only(model_cache, tmp_path / "none")))  # fmt: skip
    assert res.returncode == 2 and "rva models quantize" in res.stderr
    res = rva("count", str(vtest_path), "--precision", "both", *cache)
    assert res.returncode == 2 and "--precision both scores float against int8" in res.stderr
