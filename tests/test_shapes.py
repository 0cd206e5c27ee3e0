"""Lines and zones saved live (rva.shapes) on a real Redis: laid over rva.toml's, checked like
rva.toml's, recorded with who and when, undone; applied by a running stage runner without
losing a track or a total; and allowed to rva web's Redis user as the role writes it."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from rva import config, keys, shapes
from rva.stages.runner import StageRunner
from tests.conftest import RedisServer
from tests.test_scaleout import role_rules

FILE = """
[cameras.0]
source = "{source}"
fps = 10
[cameras.0.lines.path]
points = [[330, 185], [330, 375]]
in_side = [400, 270]
"""
DOOR = {"points": [[100, 300], [700, 300]], "in_side": [400, 500]}


@pytest.fixture
def cfg(vtest_path: Path) -> config.Config:
    return config.parse(FILE.format(source=vtest_path))


def test_a_saved_line_is_laid_over_rva_toml_recorded_and_undone_step_by_step(
    redis_ts: RedisServer, cfg: config.Config
) -> None:
    client = redis_ts.client()
    assert shapes.load(client, cfg).cameras["0"].lines.keys() == {"path"}
    first = shapes.set_shape(client, cfg, "0", "line", "door", DOOR, "anna")
    assert first.action == "added line door" and first.version == 1
    live = shapes.load(client, cfg).cameras["0"]
    assert set(live.lines) == {"path", "door"} and live.lines["door"].points == [
        (100, 300),
        (700, 300),
    ]
    # Moving rva.toml's own line: the saved one replaces it, by name.
    moved = shapes.set_shape(
        client, cfg, "0", "line", "path", {**DOOR, "points": [[300, 185], [300, 375]]}, "ben"
    )
    assert moved.action == "moved line path"
    assert shapes.load(client, cfg).cameras["0"].lines["path"].points[0] == (300, 185)
    # Removing rva.toml's line hides it; rva.toml itself is never written.
    shapes.remove_shape(client, cfg, "0", "line", "path", "anna")
    assert set(shapes.load(client, cfg).cameras["0"].lines) == {"door"}
    assert json.loads(client.hget(shapes.LAYER, "0"))["lines"]["path"] is None
    history = shapes.history(client, "0")
    assert [h["action"] for h in history] == [
        "removed line path",
        "moved line path",
        "added line door",
    ]
    assert [h["who"] for h in history] == ["anna", "ben", "anna"]
    # Undo walks back one change at a time, undo entries included in the history.
    shapes.undo(client, cfg, "0", "carl")
    assert shapes.load(client, cfg).cameras["0"].lines["path"].points[0] == (300, 185)
    shapes.undo(client, cfg, "0", "carl")
    assert shapes.load(client, cfg).cameras["0"].lines["path"].points[0] == (330, 185)
    shapes.undo(client, cfg, "0", "carl")
    assert set(shapes.load(client, cfg).cameras["0"].lines) == {"path"}
    with pytest.raises(shapes.ShapeError, match="nothing to undo"):
        shapes.undo(client, cfg, "0", "carl")
    assert shapes.history(client, "0")[0]["action"].startswith("undid added line door (by anna)")
    assert shapes.version(client) == 6
    # reset: rva.toml's as written, and undoable too.
    shapes.set_shape(
        client, cfg, "0", "zone", "hall", {"polygon": [[0, 320], [767, 320], [767, 575]]}, "x"
    )
    shapes.reset(client, cfg, "0", "x")
    assert client.hget(shapes.LAYER, "0") is None
    shapes.undo(client, cfg, "0", "x")
    assert set(shapes.load(client, cfg).cameras["0"].zones) == {"hall"}


@pytest.mark.parametrize(
    ("kind", "name", "spec", "message"),
    [
        (
            "line",
            "door",
            {"points": [[10, 10], [10, 10]], "in_side": [50, 50]},
            "cameras.0.lines.door",
        ),
        (
            "line",
            "door",
            {"points": [[10, 10]], "in_side": [50, 50]},
            "cameras.0.lines.door: a line needs exactly 2 points",
        ),
        (
            "line",
            "door",
            {"points": [[0, 0], [4000, 0]], "in_side": [5, 50]},
            "outside the 768x576 frame",
        ),
        ("zone", "hall", {"polygon": [[0, 0], [10, 10], [20, 20]]}, "cameras.0.zones.hall"),
        (
            "zone",
            "hall",
            {"polygon": [[0, 0], [100, 0], [0, 100]], "extra": 1},
            "cameras.0.zones.hall.extra: unknown key",
        ),
        ("line", "no space", DOOR, "a name is 1 to 32 letters"),
        ("gate", "door", DOOR, "unknown kind 'gate'"),
    ],
)
def test_a_shape_rva_toml_could_not_hold_is_refused_with_the_key(
    redis_ts: RedisServer, cfg: config.Config, kind: str, name: str, spec: dict, message: str
) -> None:
    client = redis_ts.client()
    with pytest.raises(shapes.ShapeError) as err:
        shapes.set_shape(client, cfg, "0", kind, name, spec, "anna")
    assert message in str(err.value), str(err.value)
    assert shapes.version(client) == 0 and not client.exists(shapes.HISTORY)


def test_unknown_camera_and_unknown_name_are_refused(
    redis_ts: RedisServer, cfg: config.Config
) -> None:
    client = redis_ts.client()
    with pytest.raises(shapes.ShapeError, match=r"unknown camera '1' \(configured: 0\)"):
        shapes.set_shape(client, cfg, "1", "line", "door", DOOR, "anna")
    with pytest.raises(shapes.ShapeError, match=r"no line 'door' \(its lines: path\)"):
        shapes.remove_shape(client, cfg, "0", "line", "door", "anna")


def _results(client: redis.Redis, start_ms: int, frames: range, x: float) -> None:
    """One person walking down at x (10 px a frame from y=200), as gear results at 10 fps."""
    for f in frames:
        y = 200 + 10 * f
        client.xadd(
            keys.results("0"),
            {
                "ref": f"{start_ms + 100 * f}-0",
                "boxes": json.dumps([x - 20, y - 100, x + 20, y]),
                "people": 1,
            },
            id=f"{start_ms + 100 * f}-0",
        )


def test_a_running_stage_takes_a_moved_line_at_once_keeping_its_track_and_totals(
    redis_ts: RedisServer, cfg: config.Config
) -> None:
    client = redis_ts.client()
    shapes.set_shape(client, cfg, "0", "line", "door", DOOR, "anna")
    runner = StageRunner(client, cfg)
    runner.shapes.every_s = 0  # look at every step (the services look once a second)
    runner.prepare()
    t0 = int(client.time()[0]) * 1000 - 60_000
    _results(client, t0, range(0, 20), x=400)  # walks from y=200 to 390: crosses door at 300
    while runner.step():
        pass
    counts = client.hgetall(keys.counts("0"))
    assert counts[b"line:door:in"] == b"1"
    stage = runner.slots[0].stage
    track_ids = {t.id for t in stage.counters["person"].tracker.tracks}  # type: ignore[attr-defined]
    assert track_ids
    # The line moves below the walker, who goes on walking down: the same track crosses the
    # moved line once more, and door's total goes on from 1 (not from 0).
    shapes.set_shape(
        client,
        cfg,
        "0",
        "line",
        "door",
        {"points": [[100, 450], [700, 450]], "in_side": [400, 600]},
        "ben",
    )
    _results(client, t0, range(20, 36), x=400)  # y 400 → 550
    while runner.step():
        pass
    assert {t.id for t in stage.counters["person"].tracker.tracks} >= track_ids  # type: ignore[attr-defined]
    counts = client.hgetall(keys.counts("0"))
    assert counts[b"line:door:in"] == b"2", counts
    assert counts[b"line:path:in"] == b"0" and counts[b"line:path:out"] == b"0"
    # Removed live: no longer counted, its totals stay in Redis.
    shapes.remove_shape(client, cfg, "0", "line", "door", "ben")
    runner.step()
    assert b"line:door:in" in client.hgetall(keys.counts("0"))
    assert [line.name for line in stage.counters["person"].lines] == ["path"]  # type: ignore[attr-defined]


def test_a_camera_without_lines_starts_counting_when_its_first_line_is_saved(
    redis_ts: RedisServer,
    vtest_path,
) -> None:
    bare = config.parse(f'[cameras.0]\nsource = "{vtest_path}"\nfps = 10\n')
    client = redis_ts.client()
    runner = StageRunner(client, bare)
    runner.shapes.every_s = 0
    runner.prepare()
    assert runner.slots == []
    shapes.set_shape(client, bare, "0", "line", "door", DOOR, "anna")
    runner.step()
    assert [s.name for s in runner.slots] == ["counting:0"]
    assert client.exists(keys.line_series("0", "door", "in"))  # its series and rollups made


def test_rva_webs_redis_user_may_save_lines_and_nothing_else_new(
    redis_ts: RedisServer, cfg: config.Config
) -> None:
    admin = redis_ts.client()
    password = secrets.token_hex(16)
    admin.execute_command(
        "ACL", "SETUSER", "rva-web", "reset", "on", f">{password}", *role_rules("rva-web").split()
    )
    web = redis.Redis.from_url(f"redis://rva-web:{password}@127.0.0.1:{redis_ts.port}/0")
    shapes.set_shape(web, cfg, "0", "line", "door", DOOR, "anna")
    shapes.remove_shape(web, cfg, "0", "line", "door", "anna")
    shapes.undo(web, cfg, "0", "anna")
    assert "door" in shapes.load(web, cfg).cameras["0"].lines
    with pytest.raises(redis.exceptions.NoPermissionError):
        web.hset(keys.counts("0"), "line:door:in", 99)


def test_rva_lines_from_a_shell(redis_ts: RedisServer, cfg: config.Config, tmp_path: Path) -> None:
    conf = tmp_path / "rva.toml"
    conf.write_text(
        f'[redis]\nurl = "{redis_ts.url}"\n' + FILE.format(source=cfg.cameras["0"].source)
    )

    def rva(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "rva", "--config", str(conf), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    done = rva("lines", "set", "0", "door", "100,300", "700,300", "--in-side", "400,500")
    assert done.returncode == 0, done.stderr
    assert "camera 0: added line door (version 1" in done.stdout
    listed = json.loads(rva("lines", "list", "--json").stdout)
    assert (
        listed["0"]["door"]["points"] == [[100, 300], [700, 300]]
        and listed["0"]["door"]["from"] == "saved"
    )
    assert listed["0"]["path"]["from"] == "rva.toml" and listed["0"]["path"]["in_today"] == 0
    assert "door" in rva("lines", "list").stdout
    assert rva("zones", "set", "0", "hall", "0,320", "767,320", "767,575").returncode == 0
    assert "hall" in json.loads(rva("zones", "list", "0", "--json").stdout)["0"]
    cycles = rva("zones", "set", "0", "path", "0,0", "767,0", "767,575", "--classes", "bicycle")
    assert cycles.returncode == 0, cycles.stderr
    assert json.loads(rva("zones", "list", "--json").stdout)["0"]["path"]["classes"] == ["bicycle"]
    assert "--classes bicycle" in rva("zones", "list").stdout
    wrong = rva("zones", "set", "0", "x", "0,0", "9,0", "9,9", "--classes", "unicorn")
    assert (
        wrong.returncode == 2
        and "cameras.0.zones.x.classes: unknown class 'unicorn'" in wrong.stderr
    )
    bad = rva("lines", "set", "0", "door", "100,300", "100,300", "--in-side", "400,500")
    assert bad.returncode == 2 and "cameras.0.lines.door" in bad.stderr
    assert rva("lines", "set", "0", "door", "100;300", "1,2", "--in-side", "4,5").returncode == 2
    unknown = rva("lines", "rm", "7", "door")
    assert unknown.returncode == 2 and "unknown camera '7'" in unknown.stderr
    assert rva("lines", "rm", "0", "door").returncode == 0
    assert rva("lines", "undo", "0").returncode == 0
    hist = rva("lines", "history", "0")
    assert "undid removed line door" in hist.stdout and "shell:" in hist.stdout
    redis_ts.stop()
    down = rva("lines", "set", "0", "door", "100,300", "700,300", "--in-side", "400,500")
    assert down.returncode == 1 and "Redis unreachable" in down.stderr


def test_classes_the_model_cannot_detect_are_refused_in_rva_toml_and_live(
    redis_ts: RedisServer, vtest_path: Path
) -> None:
    text = f'[gear]\nmodel = "ssdlite-person"\n[cameras.0]\nsource = "{vtest_path}"\n'
    with pytest.raises(config.ConfigError) as err:
        config.parse(
            text
            + '[cameras.0.zones.road]\npolygon = [[0, 0], [9, 0], [9, 9]]\nclasses = ["car"]\n',
            "rva.toml",
        )
    assert str(err.value) == (
        "rva.toml: cameras.0.zones.road.classes: gear.model ssdlite-person does not detect 'car' "
        "(it detects: person)"
    )
    cfg = config.parse(text)
    with pytest.raises(shapes.ShapeError, match="ssdlite-person does not detect 'bicycle'"):
        shapes.set_shape(
            redis_ts.client(), cfg, "0", "line", "bikes", {**DOOR, "classes": ["bicycle"]}, "anna"
        )
