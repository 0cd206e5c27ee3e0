"""The house (issue 11): a regular install works from the repository root, and `rva bench`
says why when one of its children fails; bench's load report and its analytics figure.

All through the real `rva` command, with the real model, footage and redis-server.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from rva.tools import bench
from tests.conftest import CACHE, MODEL_CACHE, ROOT, rva, wait_for

BENCH_RESULTS = "camera:bench:yolo"


def _no_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr


# -- a child that fails says why ------------------------------------------------------------
def test_bench_without_the_model_says_which_file_and_how_to_fetch_it(
    tmp_path: Path, vtest_path: Path
) -> None:
    res = rva(
        "bench",
        "--seconds",
        "1",
        "--source",
        str(vtest_path),
        env={"RVA_MODEL_CACHE": str(tmp_path)},
    )
    assert res.returncode == 2, res.stderr
    assert "model yolov3-tiny" in res.stderr and "rva models fetch yolov3-tiny" in res.stderr
    assert str(tmp_path) in res.stderr
    _no_traceback(res.stderr)


def test_bench_redis_server_that_cannot_start_is_shown_with_its_last_lines(
    tmp_path: Path, vtest_path: Path
) -> None:
    """A RedisTimeSeries module redis-server refuses: bench used to wait 10 s and say 'did not
    start'; now it says that redis-server exited, its command, and what redis-server said."""
    bogus = tmp_path / "redistimeseries.so"
    bogus.write_text("not a module\n")
    bogus.chmod(0o755)
    started = time.monotonic()
    res = rva(
        "bench",
        "--seconds",
        "1",
        "--source",
        str(vtest_path),
        env={"RVA_REDIS_TS_MODULE": str(bogus)},
    )
    assert res.returncode == 1, res.stderr
    err = res.stderr
    assert err.startswith("rva bench: redis-server exited with status 1\n"), err
    assert "redis-server --port 0 --unixsocket " in err, err
    assert f"--loadmodule {bogus}" in err, err
    assert "last " in err and f"Module {bogus} failed to load" in err, err
    assert "logs kept in " in err
    _no_traceback(err)
    assert time.monotonic() - started < 60
    shutil.rmtree(err.rsplit("logs kept in ", 1)[1].strip(), ignore_errors=True)


def _children(pid: int) -> dict[int, list[str]]:
    """The live children of `pid`: their pids and command lines."""
    out: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(stat[1]) == pid and stat[0] != "Z":
                argv = (entry / "cmdline").read_bytes().decode(errors="replace")
                out[int(entry.name)] = argv.rstrip("\0").split("\0")
        except (OSError, IndexError, ValueError):
            continue
    return out


def test_bench_gear_worker_killed_mid_run_is_reported_and_nothing_is_left(
    tmp_path: Path, vtest_path: Path
) -> None:
    """The gear worker dies (as under the OOM killer) while bench measures: bench stops at once
    with the worker's command, how it ended and its last lines, and stops the other children.
    The footage's name has a quote, spaces and non-ASCII: bench's own config must carry it.
    (10 s a phase: the worker is killed at its first result, 13 s before bench would finish.)"""
    footage = tmp_path / 'foot "age" ü.avi'
    shutil.copyfile(vtest_path, footage)
    env = {**os.environ, "RVA_MODEL_CACHE": str(MODEL_CACHE), "RVA_CACHE": str(CACHE)}
    env.pop("RVA_CONFIG", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "rva", "bench", "--seconds", "10", "--source", str(footage)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    work: Path | None = None
    try:

        def gears_child() -> int | None:
            for pid, argv in _children(proc.pid).items():
                if argv[-3:] == ["-m", "rva", "gears"]:
                    return pid
            if proc.poll() is not None:
                pytest.fail(f"bench ended early:\n{proc.communicate()[1]}")
            return None

        gears = wait_for(gears_child, 90, 0.2, what="bench's rva gears child")
        assert isinstance(gears, int)
        others = set(_children(proc.pid)) - {gears}
        work = Path(os.readlink(f"/proc/{gears}/cwd"))
        client = redis.Redis(unix_socket_path=str(work / "redis.sock"))
        # Results flow: the children read the config bench wrote for the odd file name.
        wait_for(lambda: client.xlen(BENCH_RESULTS), 90, 0.2, what="bench results")
        os.kill(gears, signal.SIGKILL)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, err
    assert err.startswith("rva bench: rva gears was killed by SIGKILL\n"), err
    assert f"command: {sys.executable} -m rva gears" in err, err
    assert "last " in err and "lines of its output:" in err, err
    assert f"logs kept in {work}" in err, err
    _no_traceback(err)
    assert (work / "gears.log").is_file()
    assert len(others) == 2  # redis-server and rva capture: stopped and reaped by bench
    assert not [pid for pid in others if Path(f"/proc/{pid}").exists()]
    shutil.rmtree(work, ignore_errors=True)


# -- bench's options and its load report ----------------------------------------------------
def test_bench_takes_no_redis_url_and_says_why() -> None:
    """bench runs on a private redis-server: -u is refused with a reason, wherever it is given."""
    for args in (["bench", "-u", "redis://127.0.0.1:6390/0"], ["-u", "redis://x:1/0", "bench"]):
        res = rva(*args, "--seconds", "1")
        assert res.returncode == 2, res.stderr
        assert "-u/--url is not used" in res.stderr and "private redis-server" in res.stderr
    res = rva("bench", "--help")
    assert res.returncode == 0
    assert "private redis-server" in " ".join(res.stdout.split())
    assert "--url" not in res.stdout.split("options:")[1]


def test_load_warning_only_when_other_processes_matter() -> None:
    cpus = os.cpu_count() or 1
    quiet = bench.load_report([0.1, 0.1, 0.1], [0.9, 0.3, 0.1], {"bare": 0.1, "pipeline": 0.2})
    assert quiet["warning"] is None and quiet["cpus"] == cpus
    moved = bench.load_report([0.1] * 3, [2.0] * 3, {"bare": 0.0, "pipeline": 0.6 * cpus})
    assert "other processes used bare 0.00, pipeline" in str(moved["warning"])


@pytest.fixture
def burners() -> Iterator[None]:
    """Other work on the machine: two busy processes per core."""
    procs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(2 * (os.cpu_count() or 1))
    ]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_bench_on_a_busy_machine_reports_the_load_and_warns(
    vtest_path: Path, burners: None
) -> None:
    res = rva("bench", "--seconds", "2", "--source", str(vtest_path))
    assert res.returncode == 0, res.stderr
    load = json.loads(res.stdout)["load"]
    assert len(load["loadavg_before"]) == 3 and len(load["loadavg_after"]) == 3
    assert load["others_cores"]["bare"] > 0.5 and load["others_cores"]["pipeline"] > 0.5, load
    assert load["warning"], load
    assert f"rva bench: warning: {load['warning']}" in res.stderr


# -- a regular install, run from the repository root ----------------------------------------
def _can_build_offline() -> bool:
    """The project venv has the setuptools pyproject.toml asks for (>= 77: the SPDX licence),
    which builds wheels by itself: then `pip install .` needs nothing from the network."""
    try:
        version = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        return False
    major, minor = (int(x) for x in version.split(".")[:2])
    return (major, minor) >= (77, 0)


@pytest.mark.slow
def test_pip_install_then_rva_from_the_repository_root(tmp_path: Path, vtest_path: Path) -> None:
    """`pip install .` (regular, not editable) into a fresh venv; then, in the repository root,
    where the checkout's rva/ sits next to the caller: `python -m rva --help`, `rva --help` and
    a short `rva bench` from the installed package.

    The fresh venv borrows its dependencies from the project venv (a .pth line), so nothing is
    downloaded for them; the package itself is built with the project venv's setuptools when it
    can build wheels, else in pip's build isolation (setuptools and wheel from the index or
    pip's cache)."""
    # What `pip install .` sees in a clean checkout of this tree (tracked and new files), built
    # outside it so no build/ or egg-info lands in the checkout.
    src = tmp_path / "src"
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        path = ROOT / name
        if not path.exists() and not path.is_symlink():
            continue  # deleted in the working tree
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            (src / name).symlink_to(os.readlink(path))
        else:
            shutil.copy2(path, src / name)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python, installed_rva = venv / "bin" / "python", venv / "bin" / "rva"
    purelib = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    project_libs = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (purelib / "_project_venv.pth").write_text("\n".join(sorted(project_libs)) + "\n")

    env = {**os.environ, "RVA_MODEL_CACHE": str(MODEL_CACHE), "RVA_CACHE": str(CACHE)}
    for name in ("RVA_CONFIG", "RVA_REDIS_URL", "PYTHONPATH", "PYTHONSAFEPATH", "VIRTUAL_ENV"):
        env.pop(name, None)
    pip = [str(python), "-m", "pip", "install", "--no-deps", "--quiet", "--no-input"]
    if _can_build_offline():
        pip += ["--no-build-isolation", "--no-index"]
    started = time.monotonic()
    res = subprocess.run(
        [*pip, str(src)], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    how = (
        "with the project venv's setuptools"
        if "--no-index" in pip
        else "in build isolation, which fetches setuptools and wheel from the index or pip's "
        "cache (a project venv with setuptools>=77 would build offline)"
    )
    assert res.returncode == 0, f"pip install . failed, {how}:\n{res.stdout}\n{res.stderr}"
    install_s = time.monotonic() - started

    # What ships: the page and the model manifests.
    package = purelib / "rva"
    assert package.is_dir() and not package.is_symlink()
    for folder, patterns in (
        ("services/web/static", ("*.html", "*.js", "*.css")),
        ("boards", ("*.toml",)),
        ("models", ("*.toml",)),
    ):
        want = {p.name for pat in patterns for p in (ROOT / "rva" / folder).glob(pat)}
        got = {p.name for pat in patterns for p in (package / folder).glob(pat)}
        assert want and got == want, (folder, want, got)

    def run(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )

    # `python -m` puts the current directory first: from the root that is the checkout's rva/,
    # the same shape as the installed one, so it works either way.
    for argv in ([str(python), "-m", "rva", "--help"], [str(installed_rva), "--help"]):
        res = run(*argv)
        assert res.returncode == 0, res.stderr
        assert "bench" in res.stdout and "capture" in res.stdout
    # The console script imports the installed package, whatever the directory (the report
    # says which), and bench runs its children outside the checkout.
    res = run(
        str(installed_rva), "bench", "--seconds", "3", "--source", str(vtest_path), timeout=240
    )
    assert res.returncode == 0, res.stderr
    _no_traceback(res.stderr)
    report = json.loads(res.stdout)
    assert Path(report["rva"]["path"]) == package.resolve(), report["rva"]
    assert report["bare_fps"] > 0 and report["pipeline_fps"] > 0
    assert report["timeseries"] is True
    assert set(report["load"]) >= {"loadavg_before", "loadavg_after", "others_cores", "warning"}
    # The counting stage's cost, when the installed tree has it.
    if (package / "analytics" / "counting.py").is_file():
        assert report["analytics_ms"] > 0 and 0 < report["analytics_share"] < 1, report
    else:
        assert report["analytics_ms"] is None and report["analytics_share"] is None
    print(f"pip install: {install_s:.1f} s; bench report: {json.dumps(report)}")
