"""rva.toml validation: every problem names the key and the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from rva import config
from rva.config import ConfigError
from tests.conftest import rva

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_default_config_is_valid() -> None:
    cfg = config.load(ROOT / "rootfs/etc/rva/rva.toml")
    assert cfg.gear.model == "yolov3-tiny"
    assert cfg.web.port == 5000
    assert list(cfg.cameras) == ["0"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("bogus = 1", "/etc/rva/rva.toml: bogus: unknown key"),
        ("[web]\nprot = 5000", "/etc/rva/rva.toml: web.prot: unknown key"),
        (
            "[cameras.0]\nfps = 500",
            "/etc/rva/rva.toml: cameras.0.fps: Input should be less than or equal to 120 (got 500)",
        ),
        (
            '[cameras.0]\nwidth = "wide"',
            "/etc/rva/rva.toml: cameras.0.width: Input should be a valid integer",
        ),
        ("[gear]\nscore_threshold = 1.5", "/etc/rva/rva.toml: gear.score_threshold:"),
        (
            '[gear]\nbackend = "onnx"',
            "/etc/rva/rva.toml: gear.backend: unknown backend"
            " 'onnx' (known: auto, onnxruntime, opencv, tensorrt)",
        ),
        (
            '[gear]\nmodel = "nonexistent-model"',
            "/etc/rva/rva.toml: gear.model: unknown model 'nonexistent-model'"
            " (known: nanodet, ssdlite-person, yolov3-tiny)",
        ),
        (
            '[gear]\ntype = "car_counter"',
            "/etc/rva/rva.toml: gear.type: unknown gear type 'car_counter' (known: people_counter)",
        ),
        ('[redis]\nurl = "http://x"', "/etc/rva/rva.toml: redis.url: must start with redis://"),
        (
            '[cameras.0]\nrate = "fast"',
            "/etc/rva/rva.toml: cameras.0.rate: Input should be 'native' or 'max'",
        ),
        ("cameras = {}", "/etc/rva/rva.toml: (top level): cameras: at least one camera is needed"),
        ("[web\nport = 1", "/etc/rva/rva.toml: not valid TOML"),
    ],
)
def test_bad_config_error_names_file_and_key(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        config.parse(text, "/etc/rva/rva.toml")
    assert expected in str(err.value)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        config.parse("[web]\nport = 0\n[gear]\nnms_threshold = -1", "f.toml")
    lines = str(err.value).splitlines()
    assert any(line.startswith("f.toml: web.port:") for line in lines)
    assert any(line.startswith("f.toml: gear.nms_threshold:") for line in lines)


def test_redis_url_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config.parse('[redis]\nurl = "redis://file:1/0"')
    monkeypatch.delenv("RVA_REDIS_URL", raising=False)
    assert config.redis_url(cfg) == "redis://file:1/0"
    monkeypatch.setenv("RVA_REDIS_URL", "redis://env:2/0")
    assert config.redis_url(cfg) == "redis://env:2/0"
    assert config.redis_url(cfg, "unix:///run/redis.sock") == "unix:///run/redis.sock"


def test_config_check_command(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[cameras.front]\nsource = "/dev/video0"\n')
    ok = rva("config", "check", "--config", str(good))
    assert ok.returncode == 0, ok.stderr
    assert "OK (1 camera(s))" in ok.stdout

    bad = tmp_path / "bad.toml"
    bad.write_text("[cameras.0]\nfps = -1\n")
    res = rva("config", "check", "--config", str(bad))
    assert res.returncode == 2
    assert f"{bad}: cameras.0.fps: Input should be greater than 0" in res.stderr

    missing = rva("config", "check", "--config", str(tmp_path / "nope.toml"))
    assert missing.returncode == 2
    assert "nope.toml: file not found" in missing.stderr


def test_rva_config_env_points_at_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / "env.toml"
    cfg.write_text("[web]\nport = 8080\n")

    res = rva("config", "show", env={"RVA_CONFIG": str(cfg)})
    assert res.returncode == 0, res.stderr
    assert '"port": 8080' in res.stdout


def test_command_line_model_and_backend_are_checked_like_the_file() -> None:
    res = rva("count", "x.mp4", "--backend", "openvino")
    assert res.returncode != 0
    assert "command line: --backend: unknown backend" in res.stderr
    assert "Traceback" not in res.stderr
    # A known backend whose runtime is not here: said where the detector loads, no traceback.
    res = rva("count", "x.mp4", "--backend", "tensorrt")
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert "backend tensorrt cannot run on this host: TensorRT's Python bindings" in res.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[cameras.0.lines.door]\npoints = [[1, 2]]\nin_side = [3, 4]",
            "rva.toml: cameras.0.lines.door: a line needs exactly 2 points, got 1",
        ),
        (
            "[cameras.0.lines.door]\npoints = [[5, 5], [5, 5]]\nin_side = [3, 4]",
            "rva.toml: cameras.0.lines.door: the line's two points are the same",
        ),
        (
            "[cameras.0.lines.door]\npoints = [[1, 2], [100, 2]]\nin_side = [50, 2]",
            "rva.toml: cameras.0.lines.door: in_side (50, 2) lies on the line",
        ),
        (
            "[cameras.0.lines.door]\npoints = [[1, 2], [50000, 3]]\nin_side = [3, 40]",
            "rva.toml: cameras.0.lines.door: point (50000, 3) is outside any frame",
        ),
        (
            "[cameras.0.lines.door]\npoints = [[1, 2], [9, 3]]",
            "rva.toml: cameras.0.lines.door.in_side: Field required",
        ),
        (
            "[cameras.0.zones.hall]\npolygon = [[0, 0], [10, 10]]",
            "rva.toml: cameras.0.zones.hall: a zone needs at least 3 points, got 2",
        ),
        (
            "[cameras.0.zones.hall]\npolygon = [[0, 0], [10, 10], [20, 20]]",
            "rva.toml: cameras.0.zones.hall: the zone has no area",
        ),
        (
            "[cameras.0.zones.hall]\npolygon = [[0, 0], [100, 100], [100, 0], [0, 100]]",
            "rva.toml: cameras.0.zones.hall: the zone's edges cross each other",
        ),
        (
            "[cameras.0.zones.hall]\npolygon = [[-5, 0], [100, 0], [100, 100]]",
            "rva.toml: cameras.0.zones.hall: point (-5, 0) is outside any frame",
        ),
        (
            '[cameras.0.zones."a b"]\npolygon = [[0, 0], [100, 0], [100, 100]]',
            "rva.toml: cameras.0.zones.a b.[key]: String should match pattern",
        ),
    ],
)
def test_malformed_lines_and_zones_are_errors_naming_the_key(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        config.parse('[cameras.0]\nsource = "/dev/null"\n' + text, "rva.toml")
    assert expected in str(err.value)


def test_options_before_the_command_are_used_not_ignored(tmp_path: Path) -> None:
    cfg = tmp_path / "rva.toml"
    cfg.write_text('[redis]\nurl = "redis://127.0.0.1:1/0"\n[cameras.door]\nsource = "/dev/null"\n')
    shown = rva("--config", str(cfg), "config", "show")
    assert shown.returncode == 0, shown.stderr
    assert '"door"' in shown.stdout
    status = rva("-u", "redis://127.0.0.1:2/0", "--config", str(cfg), "status")
    assert "127.0.0.1:2" in status.stdout + status.stderr


def test_config_check_loads_no_inference_runtime() -> None:
    """Provisioning runs `rva config check` in a chroot without /proc, where importing ONNX
    Runtime aborts the process (its cpuinfo cannot parse /proc/cpuinfo): backend names are
    checked without loading any runtime."""
    import subprocess
    import sys

    shipped = str(ROOT / "rootfs/etc/rva/rva.toml")
    res = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "rva", "config", "check", "--config", shipped],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in res.stderr.splitlines()}
    assert not {m for m in imported if m.split(".")[0] == "onnxruntime"}


def test_a_backend_whose_runtime_is_missing_is_said_where_the_gear_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rva.models import backends
    from rva.models.backends import onnx_runtime
    from rva.models.manifest import ModelError

    monkeypatch.setattr(onnx_runtime.importlib.util, "find_spec", lambda _name: None)
    with pytest.raises(ModelError, match="onnxruntime is not installed"):
        backends.get("onnxruntime")
    assert [b.type_key for b in backends.candidates("auto", "darknet")] == ["opencv"]


def test_config_check_refuses_line_and_zone_points_far_outside_the_frame(
    tmp_path: Path, vtest_path: Path
) -> None:
    """vtest.avi is 768x576: a point at x = 5000 is a typo `rva config check` names; one a
    little past the edge (a line drawn to the picture's border) is fine; a stream's size is
    unknown before capture, so nothing is said for it."""
    from tests.conftest import rva

    def check(
        source: str,
        line: str,
        zone: str = "[[200, 200], [460, 200], [460, 320]]",
        in_side: str = "[400, 270]",
    ) -> tuple[int, str]:
        cfg = tmp_path / "rva.toml"
        cfg.write_text(
            f'[cameras.0]\nsource = "{source}"\n'
            f"[cameras.0.lines.door]\npoints = {line}\nin_side = {in_side}\n"
            f"[cameras.0.zones.hall]\npolygon = {zone}\n"
        )
        done = rva("config", "check", "--config", str(cfg))
        return done.returncode, done.stdout + done.stderr

    code, out = check(str(vtest_path), "[[5000, 185], [330, 375]]")
    assert code == 2, out
    assert "cameras.0.lines.door.points: [5000, 185] lies outside the 768x576 frame" in out
    code, out = check(str(vtest_path), "[[330, 185], [330, 375]]", in_side="[4000, 270]")
    assert code == 2 and "cameras.0.lines.door.in_side: [4000, 270] lies outside" in out, out
    code, out = check(str(vtest_path), "[[330, 185], [330, 375]]", "[[0, 0], [900, 0], [0, 900]]")
    assert code == 2 and "cameras.0.zones.hall.polygon: [900, 0], [0, 900] lies outside" in out
    code, out = check(str(vtest_path), "[[0, 185], [790, 375]]")  # just past the edge
    assert code == 0, out
    code, out = check("rtsp://cam.local/live", "[[5000, 185], [330, 375]]")
    assert code == 0, out
    # A camera delivers the configured size (640x480 by default).
    code, out = check("/dev/video0", "[[330, 185], [330, 900]]")
    assert "lies outside the 640x480 frame" in out, out


def test_a_lines_table_alone_for_another_camera_id_is_an_error_not_a_second_camera() -> None:
    """[cameras.1.lines.door] meant for camera 0 makes TOML hold cameras = {"1": ...}: a
    camera 1 with source "auto" and no camera 0. Only camera 0 may take its source by default."""
    line = "points = [[330, 185], [330, 375]]\nin_side = [400, 270]\n"
    with pytest.raises(ConfigError) as err:
        config.parse(f"[cameras.1.lines.door]\n{line}", "rva.toml")
    assert str(err.value) == (
        "rva.toml: cameras.1.source: a [cameras.1.lines.door] table alone made a camera 1 "
        "(the camera ids configured: 1): a line or zone of camera 0 goes under "
        '[cameras.0.lines.door]; a camera 1 of its own names its source (source = "auto" '
        "takes any camera found)"
    )
    # Beside a camera 0 of its own, and for a zone: the same, with both ids named.
    with pytest.raises(ConfigError) as err:
        config.parse(
            '[cameras.0]\nsource = "/dev/null"\n'
            "[cameras.yard.zones.gate]\npolygon = [[0, 0], [10, 0], [10, 10]]\n",
            "rva.toml",
        )
    assert "rva.toml: cameras.yard.source: a [cameras.yard.zones.gate] table alone" in str(
        err.value
    )
    assert "(the camera ids configured: 0, yard)" in str(err.value)
    with pytest.raises(ConfigError) as err:
        config.parse('[cameras.0]\nsource = "/dev/null"\n[cameras.door]\nfps = 5\n', "f.toml")
    assert "f.toml: cameras.door.source: camera door names no source" in str(err.value)
    # What stays valid: camera 0 by default, its lines alone, any camera naming its source.
    assert list(config.parse(f"[cameras.0.lines.door]\n{line}").cameras) == ["0"]
    cfg = config.parse(f'[cameras.1]\nsource = "auto"\n[cameras.1.lines.door]\n{line}')
    assert list(cfg.cameras) == ["1"] and list(cfg.cameras["1"].lines) == ["door"]


def test_config_check_refuses_an_mqtt_password_file_that_is_not_there(tmp_path: Path) -> None:
    """rva mqtt stops with an error when mqtt.password_file cannot be read: config check says so
    first. Without password_file (the systemd credential) there is no file to check."""
    secret = tmp_path / "mqtt.secret"
    cfg = tmp_path / "rva.toml"
    mqtt = '[mqtt]\nhost = "127.0.0.1"\nusername = "rva"\n'
    cfg.write_text(f'[cameras.0]\nsource = "/dev/video0"\n{mqtt}password_file = "{secret}"\n')
    missing = rva("config", "check", "--config", str(cfg))
    assert missing.returncode == 2, missing.stdout + missing.stderr
    assert f"{cfg}: mqtt.password_file: no such file: {secret}" in missing.stderr

    secret.write_text("counts-people-7\n")
    there = rva("config", "check", "--config", str(cfg))
    assert there.returncode == 0, there.stderr
    assert "mqtt" not in there.stderr

    cfg.write_text(f'[cameras.0]\nsource = "/dev/video0"\n{mqtt}')  # the credential: unchecked
    credential = rva("config", "check", "--config", str(cfg))
    assert credential.returncode == 0 and "mqtt" not in credential.stderr, credential.stderr
