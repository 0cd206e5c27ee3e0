"""What a new user trips over in the first hour, through the real `rva` command and the real
page: messages instead of tracebacks, a config check that catches what cannot work, numbers
that say how old they are, and the small things (issue 13).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import (
    CACHE,
    MODEL_CACHE,
    ROOT,
    RedisServer,
    Services,
    free_port,
    rva,
    write_config,
)

VTEST = CACHE / "footage" / "vtest.avi"


def no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def rva_env(config: Path | None = None, **extra: str) -> dict[str, str]:
    env = {**os.environ, "RVA_MODEL_CACHE": str(MODEL_CACHE), "RVA_CACHE": str(CACHE), **extra}
    for name in ("RVA_CONFIG", "RVA_REDIS_URL", "NOTIFY_SOCKET"):
        if name not in extra:
            env.pop(name, None)
    if config is not None:
        env["RVA_CONFIG"] = str(config)
    return env


# -- item 3: messages, not tracebacks ----------------------------------------------------------


def test_rva_web_on_a_busy_port_says_so(redis_plain: RedisServer, tmp_path: Path) -> None:
    port = free_port()
    cfg = write_config(tmp_path / "rva.toml", redis_plain.url, VTEST)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        proc = rva(
            "web",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            env={"RVA_CONFIG": str(cfg)},
            timeout=120,
        )
    no_traceback(proc)
    assert proc.returncode == 1, proc.stderr
    assert f"rva web: cannot listen on 127.0.0.1:{port}: Address already in use" in proc.stderr
    assert "--port or [web] port in" in proc.stderr


def test_rva_web_on_a_host_that_does_not_resolve_says_so(
    redis_plain: RedisServer, tmp_path: Path
) -> None:
    cfg = write_config(tmp_path / "rva.toml", redis_plain.url, VTEST)
    proc = rva(
        "web",
        "--host",
        "nosuchhost.invalid",
        "--port",
        str(free_port()),
        env={"RVA_CONFIG": str(cfg)},
        timeout=120,
    )
    no_traceback(proc)
    assert proc.returncode == 1, proc.stderr
    assert "rva web: cannot listen on nosuchhost.invalid:" in proc.stderr
    assert "--host or [web] host in" in proc.stderr


def test_rva_web_port_out_of_range_is_a_usage_error() -> None:
    proc = rva("web", "--port", "99999", timeout=60)
    no_traceback(proc)
    assert proc.returncode == 2
    assert "argument --port: 99999 is not a TCP port (1 to 65535)" in proc.stderr


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--bogus", "status"], "unrecognized arguments: --bogus"),
        (["status", "--bogus"], "unrecognized arguments: --bogus"),
        (["bogus"], "argument COMMAND: invalid choice: 'bogus'"),
        ([], "the following arguments are required: COMMAND"),
        (["models"], "the following arguments are required: ACTION"),
    ],
)
def test_a_wrong_command_line_names_what_is_wrong(args: list[str], said: str) -> None:
    proc = rva(*args, timeout=60)
    no_traceback(proc)
    assert proc.returncode == 2, proc.stderr
    assert said in proc.stderr, proc.stderr
    assert "usage: rva" in proc.stderr


@pytest.mark.parametrize("command", [["status"], ["init"], ["web"], ["top", "--once"], ["gears"]])
def test_a_redis_url_without_its_scheme_is_a_message(command: list[str], tmp_path: Path) -> None:
    reason = (
        "must start with redis://, rediss:// or unix://, e.g. redis://localhost:6390 "
        "(got 'localhost:6390')"
    )
    for args, env in (
        (["-u", "localhost:6390", *command], {}),
        ([*command, "-u", "localhost:6390"], {}),
        (command, {"RVA_REDIS_URL": "localhost:6390"}),
    ):
        proc = rva(*args, env=env, timeout=60)
        no_traceback(proc)
        assert proc.returncode == 2, (args, env, proc.stderr)
        where = "-u/--url" if "-u" in args else "RVA_REDIS_URL"
        assert f"{where}: {reason}" in proc.stderr, proc.stderr
    # The same mistake in the config file: the same reason.
    cfg = tmp_path / "rva.toml"
    cfg.write_text('[redis]\nurl = "localhost:6390"\n')
    proc = rva(*command, env={"RVA_CONFIG": str(cfg)}, timeout=60)
    assert proc.returncode == 2
    assert f"{cfg}: redis.url: {reason}" in proc.stderr, proc.stderr


def test_commands_against_a_stopped_redis_say_so(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    cfg = write_config(tmp_path / "rva.toml", url, VTEST)
    env = {"RVA_CONFIG": str(cfg)}
    status = rva("status", env=env, timeout=60)
    no_traceback(status)
    assert status.returncode == 1
    assert "Redis: unreachable" in status.stdout, status.stdout
    top = rva("top", "--once", env=env, timeout=60)
    no_traceback(top)
    assert "Redis unreachable" in top.stdout, top.stdout


def test_rva_init_on_a_redis_that_refuses_writes_says_why(
    redis_plain: RedisServer, tmp_path: Path
) -> None:
    """A full Redis (maxmemory, noeviction) and a read-only replica: one line that says why,
    not a traceback, and a failing exit status."""
    cfg = write_config(tmp_path / "rva.toml", redis_plain.url, VTEST)
    env = {"RVA_CONFIG": str(cfg)}
    client = redis_plain.client()
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", "2mb")
    full = rva("init", env=env, timeout=120)
    no_traceback(full)
    assert full.returncode == 1
    assert "rva init: Redis refused a command: command not allowed when used memory" in full.stderr
    client.config_set("maxmemory", "0")
    client.replicaof("127.0.0.1", str(free_port()))  # a primary that is not there
    replica = rva("init", env=env, timeout=120)
    no_traceback(replica)
    assert replica.returncode == 1
    assert "Redis refused a command: You can't write against a read only replica" in (
        replica.stderr
    )
    client.replicaof("NO", "ONE")
    assert rva("init", env=env, timeout=120).returncode == 0  # and once writable, it works


@pytest.mark.parametrize("command", ["init", "web", "gears", "capture", "stages"])
def test_waiting_for_a_stopped_redis_ends_on_one_ctrl_c(command: str, tmp_path: Path) -> None:
    """Services wait for Redis, saying so, and a Ctrl-C while they wait ends them at once."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    cfg = write_config(tmp_path / "rva.toml", url, VTEST, web={"port": free_port()})
    proc = subprocess.Popen(
        [sys.executable, "-m", "rva", command],
        env=rva_env(cfg),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        seen = ""
        assert proc.stdout is not None
        while "Redis unreachable" not in seen and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen += line
        assert "Redis unreachable" in seen, seen
        time.sleep(1.0)  # into the backoff's sleep
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=5)  # "at once": the backoff is up to 15 s
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in seen + out, seen + out
    assert proc.returncode in (0, 130), seen + out


def _loaded(pid: int, library: str) -> bool:
    try:
        return library in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


@pytest.mark.parametrize("delay", [0.0, 0.1, 0.3, 0.6, 1.0, 2.0])
def test_ctrl_c_at_any_moment_of_a_start_is_quiet(delay: float) -> None:
    """Ctrl-C while rva is still importing its libraries and reading its config (a user who
    changed their mind) ends the command without a traceback. The clock starts once pydantic's
    core is loaded: before that Python itself is starting (its site module), which no code of
    RVA's can guard."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "rva", "count", str(VTEST)],
        env=rva_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not _loaded(proc.pid, "_pydantic_core") and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert "Traceback" not in err and "Error" not in err, err
    assert proc.returncode == 130, (proc.returncode, err)


# -- item 4: rva config check catches what cannot work -----------------------------------------


def config_check(tmp_path: Path, toml: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    cfg = tmp_path / "rva.toml"
    cfg.write_text(toml)
    proc = rva("config", "check", "--config", str(cfg), timeout=120)
    no_traceback(proc)
    return proc, cfg


def test_ctrl_c_inside_a_c_extensions_import_is_a_ctrl_c(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """ONNX Runtime is imported when the first model loads; Ctrl-C then surfaces as
    ImportError("initialization failed") raised from the KeyboardInterrupt: 130, no traceback."""
    from rva import cli

    def interrupted_import(_args: object, _cfg: object) -> int:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as exc:
            raise ImportError("initialization failed") from exc

    monkeypatch.setitem(cli.COMMANDS, "status", interrupted_import)
    assert cli.main(["status"]) == 130
    assert capsys.readouterr().err == ""

    def broken_import(_args: object, _cfg: object) -> int:
        raise ImportError("a real one")

    monkeypatch.setitem(cli.COMMANDS, "status", broken_import)
    with pytest.raises(ImportError, match="a real one"):  # not hidden as a Ctrl-C
        cli.main(["status"])


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("/nonexistent/entrance.mp4", "no such file: /nonexistent/entrance.mp4"),
        (
            "bogus-camera-type:7",
            "unknown kind of source 'bogus-camera-type' (known: auto, picamera[:N], "
            "/dev/videoN (or N), jetson-csi[:N], gst:<pipeline>, rtsp://, http(s)://, "
            "a video file or an image)",
        ),
        (
            "rtsp//missing-colon/stream",
            "not a URL (rtsp:// is written with a colon and two slashes) and no such file",
        ),
        ("rtsp:///stream", "no host in rtsp:///stream"),
        ("ftp://cam/stream", "unknown kind of source 'ftp://'"),
        ("gst:videotestsrc ! videoconvert", "a gst: pipeline must end in an appsink"),
    ],
)
def test_config_check_refuses_a_source_that_cannot_work(
    source: str, message: str, tmp_path: Path
) -> None:
    proc, cfg = config_check(
        tmp_path, f'[cameras.door]\nsource = "{VTEST}"\n[cameras.yard]\nsource = "{source}"\n'
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"{cfg}: cameras.yard.source: {message}" in proc.stderr, proc.stderr
    assert "cameras.door" not in proc.stderr  # the good one is not blamed
    assert "OK" not in proc.stdout


def test_config_check_refuses_a_file_opencv_cannot_read(tmp_path: Path) -> None:
    fake = tmp_path / "clip.mp4"
    fake.write_text("not a video\n")
    proc, cfg = config_check(tmp_path, f'[cameras.0]\nsource = "{fake}"\n')
    assert proc.returncode == 2
    assert f"{cfg}: cameras.0.source: {fake}: OpenCV cannot read a video frame" in proc.stderr


def test_config_check_warns_about_a_camera_not_plugged_in_yet(tmp_path: Path) -> None:
    node = "/dev/video9"
    if Path(node).exists():
        pytest.skip(f"{node} exists here")
    for source in (node, "9"):
        proc, cfg = config_check(tmp_path, f'[cameras.0]\nsource = "{source}"\n')
        assert proc.returncode == 0, proc.stderr  # a USB camera may be plugged in later
        assert (
            f"{cfg}: cameras.0.source: warning: {node} does not exist (yet): capture waits "
            "for it, so a USB camera plugged in later is picked up"
        ) in proc.stderr
        assert proc.stdout.strip() == f"{cfg}: OK (1 camera(s))"


def test_config_check_passes_a_good_file_quietly(tmp_path: Path) -> None:
    proc, cfg = config_check(tmp_path, f'[cameras.0]\nsource = "{VTEST}"\n')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{cfg}: OK (1 camera(s))"
    assert proc.stderr == ""


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            '[gear]\nmodel = "nonexistent-model"\n',
            "gear.model: unknown model 'nonexistent-model'"
            " (known: nanodet, ssdlite-person, yolov3-tiny)",
        ),
        ('[gear]\nbackend = "openvino"\n', "gear.backend: unknown backend"),
    ],
)
def test_config_check_refuses_unknown_model_and_backend(
    toml: str, message: str, tmp_path: Path
) -> None:
    proc, cfg = config_check(tmp_path, f'[cameras.0]\nsource = "{VTEST}"\n{toml}')
    assert proc.returncode == 2
    assert f"{cfg}: {message}" in proc.stderr, proc.stderr


def test_config_check_checks_the_redis_url_from_the_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "rva.toml"
    cfg.write_text(f'[cameras.0]\nsource = "{VTEST}"\n')
    proc = rva("config", "check", "--config", str(cfg), env={"RVA_REDIS_URL": "localhost:6390"})
    no_traceback(proc)
    assert proc.returncode == 2
    assert "RVA_REDIS_URL: must start with redis://" in proc.stderr


def test_config_check_looks_under_another_root(tmp_path: Path) -> None:
    """rva-firstboot checks a device's config from outside it (its tests): --root DIR."""
    root = tmp_path / "root"
    (root / "var/lib/rva/footage").mkdir(parents=True)
    (root / "var/lib/rva/footage/vtest.avi").symlink_to(VTEST)
    cfg = tmp_path / "rva.toml"
    cfg.write_text('[cameras.0]\nsource = "/var/lib/rva/footage/vtest.avi"\n')
    here = rva("config", "check", "--config", str(cfg))
    assert here.returncode == 2
    assert "no such file: /var/lib/rva/footage/vtest.avi" in here.stderr
    there = rva("config", "check", "--config", str(cfg), "--root", str(root))
    assert there.returncode == 0, there.stderr


# -- item 5: the page and rva status never show stale numbers as live -----------------------


def _page(tmp: Path, port: int, *args: str) -> str:
    from tests.services.web.test_browser import chromium

    return chromium(tmp, f"http://127.0.0.1:{port}/", *args).stdout


def _line_columns(shot_path: Path) -> list[tuple[int, int]]:
    """Runs of screenshot columns (start, end) that hold the chart's line, under the video."""
    import cv2
    import numpy as np

    from tests.services.web.test_browser import CHART_LINE, _video_rect

    shot = cv2.imread(str(shot_path), cv2.IMREAD_COLOR)
    assert shot is not None
    _x, y, _w, h = _video_rect(shot)
    below = shot[y + h :]
    line = np.abs(below.astype(np.int16) - np.array(CHART_LINE, np.int16)).max(axis=2) < 40
    columns = line.sum(axis=0) > 0
    runs, start = [], None
    for i, on in enumerate([*columns.tolist(), False]):
        if on and start is None:
            start = i
        elif not on and start is not None:
            runs.append((start, i))
            start = None
    return runs


def test_page_and_status_show_a_stopped_gear_numbers_as_stale(tmp_path: Path) -> None:
    """rva gears frozen with SIGSTOP: the page's count greys out with its age and then shows
    "—", as the video's label says "detector idle"; so do the rates; rva status says the same;
    the chart leaves the stop as a gap once counting resumes."""
    import re

    from tests.services.web.test_browser import CHROMIUM, WINDOW, dom_texts
    from tests.services.web.test_web import results_flowing, running_pipeline

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not installed")
    with running_pipeline(tmp_path) as pipe:
        client = pipe.client()
        gears = next(p for name, p, _log in pipe.services.procs if name == "gears")

        def status() -> str:
            proc = pipe.services.run("status", check=False)
            no_traceback(proc)
            return proc.stdout

        # Live: plain numbers, counted now.
        page = dom_texts(_page(tmp_path, pipe.port, "--dump-dom"))
        assert re.fullmatch(r"\d+", page.texts["people"].strip()), page.texts["people"]
        assert "stale" not in (page.attrs_by_id["people"].get("class") or "")
        assert re.fullmatch(r"counted (now|1 s ago)", page.texts["people-age"].strip())
        assert re.fullmatch(r"\d+\.\d", page.texts["out_fps"].strip())
        assert re.fullmatch(r"updated \S+.*", page.texts["updated"].strip()), page.texts["updated"]
        live = status()
        assert re.search(r"camera 0: people \d+, counted \d+\.\ds ago; in \d", live), live
        assert "(stale)" not in live

        gears.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            time.sleep(1.0)  # whatever was being written is written
            last_id, fields = client.xrevrange("camera:0:yolo", count=1)[0]
            last_people = fields[b"people"].decode()

            # 12 s later: the same number, greyed, with its age.
            time.sleep(max(0.0, stopped + 12 - time.monotonic()))
            page = dom_texts(_page(tmp_path, pipe.port, "--dump-dom"))
            assert page.texts["people"].strip() == last_people
            assert page.attrs_by_id["people"]["data-result"] == last_id.decode()
            assert "stale" in (page.attrs_by_id["people"].get("class") or "")
            assert re.fullmatch(r"counted 1\d s ago", page.texts["people-age"].strip())
            assert "stale" in (page.attrs_by_id["rates"].get("class") or "")
            assert re.fullmatch(r"1\d s ago", page.texts["values-age"].strip())
            text = status()
            assert re.search(
                rf"people {last_people} \(stale\), counted 1\d\.\ds ago; in \d+\.\d fps, "
                r"out \d+\.\d fps \(stale\), measured 1\d\.\ds ago",
                text,
            ), text

            # 35 s later: no number at all, as the video says "detector idle".
            time.sleep(max(0.0, stopped + 35 - time.monotonic()))
            page = dom_texts(_page(tmp_path, pipe.port, "--dump-dom"))
            assert page.texts["people"].strip() == "—"
            assert re.fullmatch(
                r"detector idle: last count 3\d s ago", page.texts["people-age"].strip()
            )
            for name in ("in_fps", "out_fps", "prf_model", "prf_total"):
                assert page.texts[name].strip() == "—", (name, page.texts[name])
            text = status()
            assert re.search(
                r"people - \(detector idle\), counted 3\d\.\ds ago; in - fps, out - fps, "
                r"measured 3\d\.\ds ago",
                text,
            ), text
        finally:
            gears.send_signal(signal.SIGCONT)

        # Counting again: the chart shows the stop as a gap, not a line across it.
        before = client.xlen("camera:0:yolo")
        from tests.conftest import wait_for

        wait_for(lambda: results_flowing(pipe, before + 15), 90, what="results after SIGCONT")
        time.sleep(max(0.0, stopped + 35 + 12 - time.monotonic()))  # a visible stretch after
        shot = tmp_path / "page.png"
        dom = _page(tmp_path, pipe.port, f"--window-size={WINDOW[0]},{WINDOW[1]}", "--dump-dom")
        chart = dom_texts(dom).attrs_by_id["chart"]
        assert int(chart.get("data-segments") or 0) >= 2, chart
        ticks = [int(t) for t in (chart.get("data-ticks") or "").split()]
        assert ticks[0] == 0 and len(ticks) >= 2, chart
        _page(tmp_path, pipe.port, f"--window-size={WINDOW[0]},{WINDOW[1]}", f"--screenshot={shot}")
        runs = [r for r in _line_columns(shot) if r[1] - r[0] >= 3]
        assert len(runs) >= 2, runs
        widest_gap = max(b[0] - a[1] for a, b in itertools.pairwise(runs))
        # 35 s of a 10-minute chart about 1180 px wide: about 70 px.
        assert widest_gap > 35, runs


# -- item 6: make demo installs what a demo needs, and never upgrades --------------------------


def _make_n(target: str) -> list[str]:
    proc = subprocess.run(
        ["make", "-n", "--no-print-directory", target],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS")},
    )
    return [line for line in proc.stdout.splitlines() if "install-deps.sh" in line]


def test_make_demo_asks_for_the_demo_packages_only() -> None:
    assert _make_n("demo") == ["scripts/install-deps.sh demo"]
    assert _make_n("test") == ["scripts/install-deps.sh demo test provision image"]
    assert _make_n("test-core") == ["scripts/install-deps.sh demo test"]


HOOK = """\
set -eu
root=$1 out=$2
cp "$out/install-deps.sh" "$out/python3_3.0-1_all.deb" "$root/tmp/"
run() {  # run NAME ARGS...: install-deps.sh in the root, its output and status kept
    name=$1; shift
    # Without the caller's RVA_DEPS_UPGRADE (.ci/run sets it for the CI machine itself).
    rc=0; chroot "$root" env -u RVA_DEPS_UPGRADE sh /tmp/install-deps.sh "$@" \
        >"$out/$name.out" 2>&1 || rc=$?
    echo "$rc" >"$out/$name.rc"
    chroot "$root" dpkg-query -W -f '${Package} ${Status}\\n' >"$out/$name.installed"
}
# A python3 older than the archive's: python3-venv would need it upgraded.
chroot "$root" dpkg -i /tmp/python3_3.0-1_all.deb >/dev/null
run old-python demo
chroot "$root" dpkg --purge python3 >/dev/null
run fresh demo
run again demo
"""


def _installed(path: Path) -> set[str]:
    return {
        line.split()[0] for line in path.read_text().splitlines() if "install ok installed" in line
    }


@pytest.mark.provision
def test_install_deps_on_a_fresh_debian_installs_the_demo_group_only(tmp_path: Path) -> None:
    """A Debian with nothing of RVA's (mmdebstrap --variant=apt): `install-deps.sh demo` says
    what it installs and why, installs only that, and nothing when it would have to upgrade a
    package that is already installed."""
    import shutil

    if os.geteuid() != 0 or not shutil.which("mmdebstrap"):
        pytest.skip("needs root and mmdebstrap (scripts/install-deps.sh provision)")
    suite = next(
        line.split("=", 1)[1].strip().strip('"')
        for line in Path("/etc/os-release").read_text().splitlines()
        if line.startswith("VERSION_CODENAME=")
    )
    mirror = subprocess.run(
        [str(ROOT / "scripts/debian-mirror.sh")], capture_output=True, text=True, check=True
    ).stdout.strip()
    out = tmp_path / "out"
    (out / "old/DEBIAN").mkdir(parents=True)
    (out / "old/DEBIAN/control").write_text(
        "Package: python3\nVersion: 3.0-1\nArchitecture: all\n"
        "Maintainer: RVA tests <tests@localhost>\nDescription: an old python3\n"
    )
    subprocess.run(
        [
            "dpkg-deb",
            "--root-owner-group",
            "--build",
            str(out / "old"),
            str(out / "python3_3.0-1_all.deb"),
        ],
        check=True,
        capture_output=True,
    )
    shutil.copy(ROOT / "scripts/install-deps.sh", out / "install-deps.sh")
    (out / "hook.sh").write_text(HOOK)
    build = subprocess.run(
        [
            "mmdebstrap",
            "--quiet",
            "--variant=apt",
            "--format=null",
            f'--customize-hook=sh {out}/hook.sh "$1" {out}',
            suite,
            "/dev/null",
            mirror,
        ],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert build.returncode == 0, build.stderr[-3000:]

    # Refused, saying which package would be upgraded, and nothing installed.
    old = (out / "old-python.out").read_text()
    assert (out / "old-python.rc").read_text().strip() == "1", old
    assert "would upgrade packages already installed" in old and "python3 3.0-1 -> " in old, old
    assert "python3-venv" not in _installed(out / "old-python.installed")

    # From nothing: the demo's packages, each with its reason, and nothing else of RVA's.
    fresh = (out / "fresh.out").read_text()
    assert (out / "fresh.rc").read_text().strip() == "0", fresh
    assert "python3-venv: the project venv (python3 -m venv .venv) (demo)" in fresh, fresh
    installed = _installed(out / "fresh.installed")
    assert "python3-venv" in installed and "ca-certificates" in installed
    for other in (
        "chromium",
        "redis-server",
        "mosquitto",
        "libsystemd-dev",
        "gcc",
        "systemd-container",
        "mmdebstrap",
        "qemu-system-x86",
        "ovmf",
        "systemd",
    ):
        assert other not in installed, other
    # Again: nothing to do, nothing said.
    assert (out / "again.rc").read_text().strip() == "0"
    assert (out / "again.out").read_text() == ""


# -- item 7: the small things ------------------------------------------------------------------


def test_api_errors_are_json_with_a_message(
    redis_plain: RedisServer, tmp_path: Path, services: Callable[[Path], Services]
) -> None:
    import http.client
    import json

    from tests.conftest import wait_for

    port = free_port()
    cfg = write_config(
        tmp_path / "rva.toml", redis_plain.url, VTEST, web={"host": "127.0.0.1", "port": port}
    )
    services(cfg).start("web")

    def get(path: str, method: str = "GET") -> tuple[int, str, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request(method, path)
            resp = conn.getresponse()
            return resp.status, resp.getheader("Content-Type") or "", resp.read()
        finally:
            conn.close()

    wait_for(lambda: get("/healthz")[0] in (200, 503), 60, what="rva web")
    for path, method, status, message in (
        ("/api/nope", "GET", 404, "Not found: '/api/nope'"),
        ("/api/summary?camera=nope", "GET", 404, "unknown camera 'nope'"),
        ("/api/people?minutes=abc", "GET", 400, "minutes must be"),
        ("/api/summary", "POST", 405, "Method not allowed"),
    ):
        got, kind, body = get(path, method)
        assert got == status, (path, got, body[:200])
        assert kind.startswith("application/json"), (path, kind, body[:200])
        error = json.loads(body)
        assert message in error["error"], (path, error)
    # The page's own paths keep their HTML error page.
    got, kind, _body = get("/nope")
    assert got == 404 and kind.startswith("text/html")


def test_rva_top_quits_on_q_and_says_so(redis_plain: RedisServer, tmp_path: Path) -> None:
    import pty
    import select

    cfg = write_config(tmp_path / "rva.toml", redis_plain.url, VTEST)
    pid, fd = pty.fork()
    if pid == 0:  # the child: rva top on the terminal
        os.execve(
            sys.executable,
            [sys.executable, "-m", "rva", "top", "--interval", "0.5"],
            rva_env(cfg, TERM="xterm"),
        )
    seen = b""
    deadline = time.monotonic() + 60
    try:
        while b"q quits" not in seen and time.monotonic() < deadline:
            if select.select([fd], [], [], 1)[0]:
                seen += os.read(fd, 4096)
        assert b"q quits" in seen, seen[-500:]
        assert b"RVA top" in seen
        os.write(fd, b"q")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if select.select([fd], [], [], 0.2)[0]:
                with contextlib.suppress(OSError):  # the terminal closed with the child
                    seen += os.read(fd, 4096)
        else:
            pytest.fail(f"rva top still running 10 s after q:\n{seen[-500:]!r}")
        assert os.waitstatus_to_exitcode(status) == 0
        assert b"Traceback" not in seen
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)


def test_rva_top_with_an_unknown_camera_is_an_error(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "rva.toml", "redis://127.0.0.1:1/0", VTEST)
    proc = rva("top", "-c", "nope", "--once", env={"RVA_CONFIG": str(cfg)})
    no_traceback(proc)
    assert proc.returncode == 2
    assert "unknown camera 'nope' (configured: 0)" in proc.stderr


def test_rva_models_list_says_which_cache_it_reads(tmp_path: Path) -> None:
    empty = tmp_path / "models"
    empty.mkdir()
    proc = rva("models", "list", env={"RVA_MODEL_CACHE": str(empty)})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"model cache: {empty} (RVA_MODEL_CACHE)"
    assert "not fetched" in lines[1]
    proc = rva("models", "list", "--model-cache", str(MODEL_CACHE))
    assert proc.stdout.splitlines()[0] == f"model cache: {MODEL_CACHE} (--model-cache)"
    assert "not fetched" not in proc.stdout


@pytest.mark.slow
def test_the_package_builds_without_a_licence_warning(tmp_path: Path) -> None:
    """pip builds the wheel in build isolation with the setuptools pyproject.toml asks for; the
    licence is an SPDX expression, so setuptools has nothing to warn about."""
    import shutil
    import zipfile

    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "rva", src / "rva", ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-v",
            "-w",
            str(tmp_path / "out"),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert "project.license" not in output and "License classifiers" not in output, output
    (wheel,) = (tmp_path / "out").glob("rva-*.whl")
    with zipfile.ZipFile(wheel) as z:
        metadata = z.read(next(n for n in z.namelist() if n.endswith("METADATA"))).decode()
    assert "License-Expression: Apache-2.0" in metadata, metadata[:1000]
