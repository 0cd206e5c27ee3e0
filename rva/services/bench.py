"""rva bench: the bare detector loop and the full pipeline, measured in one run.

(a) bare: decode + letterbox + forward + NMS over the footage, no Redis; when the analytics
    stage is installed (rva.analytics.counting), its cost per frame on the same detections;
(b) pipeline: capture → Redis → gears → results at max rate, on a private redis-server that
    this command starts (so a running appliance is neither disturbed nor counted; bench takes
    no Redis URL). (a) and (b) alternate in --slices slices each (P B B P P B B P: capture
    paused and the gears idle during a bare slice), so that the ratio compares the same
    minutes of a machine whose speed drifts, as shared and throttled machines' does;
(c) still: the whole appliance (redis-server, capture, gears, web) on a still picture of the
    footage at 10 fps, as a camera on an empty corridor sees it: what it costs, in % of one
    core, with the motion gate as configured (--motion-gate to compare).
Figures are ratios from the same run on the same machine; absolute numbers vary with load, so
the report says what else ran on the machine meanwhile, and a warning on stderr says when that
was enough to skew the ratios.
A child (redis-server, `rva init`, `rva gears`, `rva capture`) that fails ends the run with a
BenchError naming its command, its exit status and the last lines of its output.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import shlex
import shutil
import signal
import site
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import redis

import rva
from rva import config, const, keys
from rva.config import Config, ConfigError, GearSection
from rva.connection import connect
from rva.gears import GEAR_TYPES
from rva.models import manifest, store
from rva.models.detector import Detector
from rva.services.health import server_ms

WARMUP_S = 3.0
TAIL_LINES = 20  # of a failed child's output, in the error
INIT_TIMEOUT_S = 120.0
RESULTS_TIMEOUT_S = 60.0
PAUSE_TIMEOUT_S = 30.0  # for the gears to answer capture's last frame before a bare slice
RESUME_S = 1.0  # after capture resumes, before the next pipeline window
LOAD_WARN_PER_CORE = 0.5  # other processes' CPU use, in cores per core, that skews the ratios

Box = tuple[float, float, float, float]


class BenchError(Exception):
    """The benchmark could not run; the message says which step failed, why, and where the
    logs are."""


def _status(code: int | None) -> str:
    if code is None:
        return "did not finish"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def child_failed(what: str, argv: Sequence[str], code: int | None, output: str) -> BenchError:
    """The error for a child that failed: its command, exit status and last lines of output."""
    lines = output.rstrip().splitlines()[-TAIL_LINES:]
    tail = "\n".join(f"  | {line}" for line in lines) if lines else "  (it printed nothing)"
    return BenchError(
        f"{what} {_status(code)}\n  command: {shlex.join(argv)}\n"
        f"  last {len(lines)} lines of its output:\n{tail}"
    )


def _percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


# -- what else the machine is doing ---------------------------------------------------------
def _busy_cpu_s() -> float | None:
    """CPU seconds the whole machine has spent busy (all CPUs, /proc/stat), or None."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    except (OSError, ValueError):
        return None
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class _Others:
    """CPU used by processes other than this benchmark, in cores, over the windows between
    start() and stop() (one, or a phase's slices): the machine's busy time less this process's
    and its children's."""

    def __init__(self) -> None:
        self.core_s = self.wall_s = 0.0
        self.known = True
        self.opened: tuple[float | None, float, float] | None = None

    def start(self, own_cpu_s: float) -> None:
        self.opened = (_busy_cpu_s(), own_cpu_s, time.monotonic())

    def stop(self, own_cpu_s: float) -> None:
        if self.opened is None:
            return
        (busy0, own0, t0), self.opened = self.opened, None
        busy = _busy_cpu_s()
        self.wall_s += time.monotonic() - t0
        if busy is None or busy0 is None:
            self.known = False
        else:
            self.core_s += max((busy - busy0) - (own_cpu_s - own0), 0.0)

    def cores(self) -> float | None:
        return round(self.core_s / max(self.wall_s, 1e-6), 2) if self.known else None


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def load_report(
    before: list[float] | None, after: list[float] | None, others: dict[str, float | None]
) -> dict[str, object]:
    """The machine's load around the run, and a warning when other processes used enough CPU,
    or changed their use enough between the phases, to skew the ratios."""
    cpus = os.cpu_count() or 1
    known = [v for v in others.values() if v is not None]
    warning = None
    if known:
        moved = (max(known) - min(known)) / cpus
        busiest = max(known) / cpus
        if moved > LOAD_WARN_PER_CORE or busiest > LOAD_WARN_PER_CORE:
            shares = ", ".join(f"{k} {v:.2f}" for k, v in others.items() if v is not None)
            warning = (
                f"the machine was busy: other processes used {shares} of {cpus} cores "
                f"(load average {before[0] if before else '?'} before, "
                f"{after[0] if after else '?'} after); the figures and ratios are skewed"
            )
    elif before and after and abs(after[0] - before[0]) / cpus > LOAD_WARN_PER_CORE:
        # No /proc/stat: the 1-minute load average is all there is (bench's own load included).
        warning = (
            f"the load average moved from {before[0]} to {after[0]} on {cpus} cores during the "
            "run; the figures and ratios may be skewed"
        )
    return {
        "cpus": cpus,
        "loadavg_before": before,
        "loadavg_after": after,
        "others_cores": others,
        "warning": warning,
    }


# -- (a) the bare loop ----------------------------------------------------------------------
class BareLoop:
    """The detector alone on the footage (decode + letterbox + forward + NMS, no Redis), run
    in slices between the pipeline's so that both see the machine in the same state."""

    def __init__(self, detector: Detector, source: str) -> None:
        self.detector = detector
        self.cap = cv2.VideoCapture(source)
        if not self.cap.isOpened():
            raise ConfigError(f"bench: cannot open {source}")
        self.size = (
            int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
        self.frame_ms = 1000.0 / (self.cap.get(cv2.CAP_PROP_FPS) or 25.0)
        self.stages: dict[str, list[float]] = {"read": [], "resize": [], "model": [], "boxes": []}
        self.detector_ms: list[float] = []  # resize + model + boxes, per frame
        self.detections: list[list[Box]] = []
        self.frames, self.elapsed, self.cpu_s = 0, 0.0, 0.0
        self.others = _Others()
        for _ in range(3):
            detector.detect(self.next_frame())

    def next_frame(self) -> np.ndarray:
        ok, frame = self.cap.read()
        if not ok:
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self.cap.read()
        return frame

    def run(self, seconds: float) -> None:
        self.others.start(time.process_time())
        cpu0 = time.process_time()  # every thread of this process: the backend's pool included
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            t0 = time.perf_counter()
            frame = self.next_frame()
            self.stages["read"].append((time.perf_counter() - t0) * 1e3)
            found = self.detector.detect(frame)
            for k, v in found.timings_ms.items():
                self.stages[k].append(v)
            self.detector_ms.append(sum(found.timings_ms.values()))
            boxes = [(float(a), float(b), float(c), float(d)) for a, b, c, d in found.boxes]
            self.detections.append(boxes)
            self.frames += 1
        self.elapsed += time.perf_counter() - started
        self.cpu_s += time.process_time() - cpu0
        self.others.stop(time.process_time())

    def report(self) -> dict[str, object]:
        self.cap.release()
        return {
            "fps": self.frames / max(self.elapsed, 1e-6),
            "frames": self.frames,
            "stages_ms": {k: round(statistics.median(v), 2) for k, v in self.stages.items() if v},
            "detector_ms": statistics.median(self.detector_ms),
            "detections": self.detections,
            "frame_size": self.size,
            "frame_ms": self.frame_ms,
            "cpu_ms_per_frame": self.cpu_s * 1000 / max(self.frames, 1),
            "others_cores": self.others.cores(),
        }


def analytics_cost(
    detections: Sequence[list[Box]], frame_size: tuple[int, int], frame_ms: float
) -> float | None:
    """Median ms per frame of the counting stage (rva.analytics.counting) over the bare loop's
    detections: one line across the middle of the frame, one zone over its lower half. None
    when that stage is not installed."""
    try:
        installed = importlib.util.find_spec("rva.analytics.counting") is not None
    except ImportError:
        installed = False
    if not installed:
        return None
    try:
        from rva.analytics.counting import Counter
        from rva.analytics.geometry import Line, Zone

        w, h = float(frame_size[0]), float(frame_size[1])
        counter = Counter(
            lines=[Line("middle", (0.0, h / 2), (w, h / 2), (w / 2, h))],
            zones=[Zone("lower half", ((0.0, h / 2), (w, h / 2), (w, h), (0.0, h)))],
        )
        costs: list[float] = []
        for i, boxes in enumerate(detections):
            t0 = time.perf_counter()
            counter.step(boxes, round(i * frame_ms))
            costs.append((time.perf_counter() - t0) * 1e3)
    except Exception as exc:  # an optional figure: its failure is reported, not fatal
        print(f"rva bench: warning: analytics stage failed, not measured: {exc!r}", file=sys.stderr)
        return None
    return statistics.median(costs) if costs else None


# -- (b) the pipeline -----------------------------------------------------------------------
def _redis_server() -> tuple[str, str | None]:
    """A redis-server binary and, when one is found, the RedisTimeSeries module beside it."""
    candidates = [os.environ.get("RVA_REDIS_SERVER"), shutil.which("redis-server")]
    if os.environ.get("RVA_CACHE"):  # a development checkout: Redis Stack with TimeSeries
        candidates.insert(1, str(Path(os.environ["RVA_CACHE"]) / "redis-stack" / "redis-server"))
    found = next((c for c in candidates if c and Path(c).is_file()), None)
    if found is None:
        raise ConfigError("bench: no redis-server found (set RVA_REDIS_SERVER)")
    # Absolute (redis-server chdirs to --dir first), but not resolved: Debian's redis-server is
    # a symlink whose target's name selects what the binary does.
    server = str(Path(found).absolute())
    module = os.environ.get("RVA_REDIS_TS_MODULE")
    beside = Path(server).parent / "redistimeseries.so"
    if not module and beside.is_file():
        module = str(beside)
    if module:
        module = str(Path(module).absolute())
    return server, module


def _child_env(work: Path) -> dict[str, str]:
    """The children's environment: bench's private config and, whatever the current directory
    was, the very rva package this process runs (children run in `work`, so a checkout's rva/
    cannot shadow an installed one, nor an installed one the checkout being run)."""
    env = {**os.environ, const.ENV_CONFIG: str(work / "rva.toml")}
    env.pop(const.ENV_REDIS_URL, None)
    env.pop("NOTIFY_SOCKET", None)  # bench's children are no service of systemd's
    root = str(Path(rva.__file__).resolve().parent.parent)
    sites = {str(Path(p).resolve()) for p in site.getsitepackages()}
    if root not in sites:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return env


def _toml(value: object) -> str:
    # JSON's strings, numbers and booleans are TOML's (without \u escapes of non-ASCII).
    return json.dumps(value, ensure_ascii=False)


def _bench_config(
    url: str, source: str, gear: GearSection, *, fps: float = 0, web_port: int = 0
) -> str:
    """The children's rva.toml: one camera on the footage at max rate (or at ``fps``), the gear
    settings of the bare loop (so every phase runs the same detector), the private Redis."""
    camera = f'rate = "native"\nfps = {fps}' if fps else 'rate = "max"'
    lines = [
        f"[redis]\nurl = {_toml(url)}",
        f"[cameras.bench]\nsource = {_toml(source)}\n{camera}\nmaxlen = 200",
        "[gear]",
        *(f"{k} = {_toml(v)}" for k, v in gear.model_dump().items()),
    ]
    if web_port:
        lines.append(f'[web]\nhost = "127.0.0.1"\nport = {web_port}')
    return "\n".join(lines) + "\n"


class _Proc:
    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], log: Path, cwd: Path
    ) -> None:
        self.name, self.argv, self.log = name, argv, log
        self.handle = log.open("wb")
        self.popen = subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=self.handle, stderr=subprocess.STDOUT
        )
        self.cpu_s = self.wall_s = 0.0  # over the measured windows (mark() ... unmark())
        self.opened: tuple[float, float] | None = None

    def check(self) -> None:
        """Raise a BenchError, with its last lines, when this child has ended."""
        code = self.popen.poll()
        if code is not None:
            self.handle.flush()
            raise child_failed(self.name, self.argv, code, self.output())

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def cpu_seconds(self) -> float:
        try:
            fields = Path(f"/proc/{self.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError):
            return 0.0

    def peak_rss_mb(self) -> float:
        try:
            for line in Path(f"/proc/{self.popen.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def mark(self) -> None:
        """Start a measured window."""
        self.opened = (self.cpu_seconds(), time.monotonic())

    def unmark(self) -> None:
        """End the measured window, adding its CPU and wall time to the totals."""
        if self.opened is not None:
            (cpu0, t0), self.opened = self.opened, None
            self.cpu_s += self.cpu_seconds() - cpu0
            self.wall_s += time.monotonic() - t0

    def usage(self) -> dict[str, float]:
        """CPU over the measured windows (the open one included), in % of one core."""
        self.unmark()
        return {
            "cpu_percent": round(self.cpu_s / max(self.wall_s, 1e-6) * 100, 1),
            "peak_rss_mb": round(self.peak_rss_mb(), 1),
        }

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            self.popen.send_signal(signal.SIGCONT)  # a child paused by bench must see it
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.handle.close()


def _run_init(rva_argv: list[str], env: dict[str, str], work: Path) -> None:
    argv = [*rva_argv, "init"]
    try:
        proc = subprocess.run(
            argv,
            env=env,
            cwd=work,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            timeout=INIT_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.output.decode(errors="replace") if isinstance(exc.output, bytes) else ""
        raise child_failed("rva init", argv, None, out) from None
    (work / "init.log").write_text(proc.stdout, encoding="utf-8")
    if proc.returncode != 0:
        raise child_failed("rva init", argv, proc.returncode, proc.stdout)


def _start(
    work: Path,
    gear: GearSection,
    model_cache: Path,
    services: Sequence[str],
    procs: dict[str, _Proc],
) -> tuple[redis.Redis, str | None]:
    """A private redis-server, `rva init`, then the services (rva <name>) on work/rva.toml,
    running until the first result is written; each process goes into ``procs`` as it starts
    (redis first), and the caller stops them, also on error. Returns a client and the
    TimeSeries module (None without)."""
    server, module = _redis_server()
    sock = work / "redis.sock"
    env = {**_child_env(work), const.ENV_MODEL_CACHE: str(model_cache)}
    rva_argv = [sys.executable, "-m", "rva"]
    redis_argv = [server, "--port", "0", "--unixsocket", str(sock), "--save", ""]
    redis_argv += ["--appendonly", "no", "--dir", str(work)]
    if module:
        redis_argv += ["--loadmodule", module]
    procs["redis"] = _Proc("redis-server", redis_argv, env, work / "redis.log", work)
    client = connect(f"unix://{sock}", name="rva-bench")
    deadline = time.monotonic() + 10
    while True:
        procs["redis"].check()
        try:
            client.ping()
            break
        except (redis.ConnectionError, FileNotFoundError):
            if time.monotonic() > deadline:
                raise child_failed(
                    "redis-server (no answer within 10 s)",
                    redis_argv,
                    None,
                    procs["redis"].output(),
                ) from None
            time.sleep(0.05)
    _run_init(rva_argv, env, work)
    for name in services:
        procs[name] = _Proc(f"rva {name}", [*rva_argv, name], env, work / f"{name}.log", work)
    results = GEAR_TYPES[gear.type].results_key("bench")
    deadline = time.monotonic() + RESULTS_TIMEOUT_S
    while not client.xlen(results):
        for p in procs.values():
            p.check()
        if time.monotonic() > deadline:
            tails = "\n".join(
                str(child_failed(p.name, p.argv, None, p.output()))
                for p in procs.values()
                if p.name != "redis-server"
            )
            raise BenchError(f"no results in {results} within {RESULTS_TIMEOUT_S:.0f} s\n{tails}")
        time.sleep(0.1)
    return client, module


@contextlib.contextmanager
def _children(work: Path) -> Iterator[dict[str, _Proc]]:
    """The processes of one phase: all stopped (last started first) however the phase ends; the
    work directory removed after a clean end, kept (and named) after a failure."""
    procs: dict[str, _Proc] = {}
    try:
        yield procs
    except BenchError as exc:
        raise BenchError(f"{exc}\nlogs kept in {work}") from None
    except BaseException:
        print(f"rva bench: logs kept in {work}", file=sys.stderr)
        raise
    finally:
        for p in reversed(list(procs.values())):
            p.stop()
    shutil.rmtree(work, ignore_errors=True)


def _pause(capture: _Proc, client: redis.Redis, gear: GearSection) -> None:
    """Stop capture (SIGSTOP) and wait until the gears have answered the frames it wrote, so
    that a bare slice has the machine to itself."""
    capture.popen.send_signal(signal.SIGSTOP)
    stream = keys.frames("bench")
    deadline = time.monotonic() + PAUSE_TIMEOUT_S
    while time.monotonic() < deadline:
        newest = client.xrevrange(stream, count=1)
        groups = {g["name"].decode(): g for g in client.xinfo_groups(stream)}
        mine = groups.get(gear.group)
        if mine is None or not newest:
            break
        delivered = mine["last-delivered-id"]
        if mine["pending"] == 0 and delivered == newest[0][0]:
            break
        time.sleep(0.02)


def pipeline(
    source: str,
    gear: GearSection,
    seconds: float,
    model_cache: Path,
    bare: BareLoop,
    slices: int,
) -> dict[str, object]:
    """(b) The pipeline at max rate over ``seconds``, in ``slices`` windows; the bare loop runs
    as long between them (capture paused, the gears idle), in the order
    P B B P P B B P ..., so that a machine whose speed drifts during the run weighs on both
    alike: the ratio is of the same minutes."""
    work = Path(tempfile.mkdtemp(prefix="rva-bench-"))
    url = f"unix://{work / 'redis.sock'}"
    (work / "rva.toml").write_text(_bench_config(url, source, gear), "utf-8")
    with _children(work) as procs:
        client, module = _start(work, gear, model_cache, ("gears", "capture"), procs)
        results = GEAR_TYPES[gear.type].results_key("bench")
        time.sleep(WARMUP_S)
        slice_s = seconds / slices

        def own_cpu() -> float:
            return time.process_time() + sum(p.cpu_seconds() for p in procs.values())

        others = _Others()
        window: list = []
        window_ms = 0
        stage_samples: dict[str, list[float]] = {}
        seen_ts: set[str] = set()

        def measure() -> None:
            nonlocal window_ms
            start_ms = server_ms(client)
            for p in procs.values():
                p.mark()
            others.start(own_cpu())
            end = time.monotonic() + slice_s
            while time.monotonic() < end:
                for p in procs.values():
                    p.check()
                latest = {
                    k.decode(): v.decode() for k, v in client.hgetall(keys.latest("bench")).items()
                }
                if latest.get("ts") not in seen_ts:
                    seen_ts.add(latest.get("ts", ""))
                    for k, v in latest.items():
                        if k.startswith("prf_"):
                            stage_samples.setdefault(k[4:], []).append(float(v))
                time.sleep(0.05)
            others.stop(own_cpu())
            for p in procs.values():
                p.unmark()
            end_ms = server_ms(client)
            window.extend(client.xrange(results, min=f"{start_ms}-0", max=f"{end_ms}-0"))
            window_ms += max(end_ms - start_ms, 1)

        for i in range(slices):
            for part in ("pipeline", "bare") if i % 2 == 0 else ("bare", "pipeline"):
                if part == "pipeline":
                    measure()
                else:
                    _pause(procs["capture"], client, gear)
                    try:
                        bare.run(slice_s)
                    finally:
                        procs["capture"].popen.send_signal(signal.SIGCONT)
                    time.sleep(RESUME_S)  # the chain flowing again before the next window
        usage = {name: p.usage() for name, p in procs.items()}
        cpu_s = sum(p.cpu_s for p in procs.values())
        latencies = [keys.id_ms(rid) - keys.id_ms(fields[b"ref"]) for rid, fields in window]
        stats = {k.decode(): int(v) for k, v in client.hgetall(keys.STATS).items()}
    return {
        "fps": len(window) * 1000 / window_ms,
        "frames": len(window),
        # Stream ids are whole milliseconds: the median is interpolated within its 1 ms class
        # (a p50 of 31 could be anything from 30.5 to 31.5, a 3 % step at a 30 ms model).
        "latency_ms": {
            "p50": round(statistics.median_grouped(latencies), 2) if latencies else float("nan"),
            "p95": _percentile(latencies, 95),
        },
        "stages_ms": {k: round(statistics.median(v), 2) for k, v in stage_samples.items()},
        "services": usage,
        "counters": stats,
        "timeseries": module is not None,
        "cpu_ms_per_frame": cpu_s * 1000 / max(len(window), 1),
        "others_cores": others.cores(),
    }


# -- (c) a still scene ----------------------------------------------------------------------
STILL_FPS = 10


def still_picture(source: str, path: Path) -> Path:
    """The middle frame of the footage, as a still image: people who never move."""
    cap = cv2.VideoCapture(source)
    cap.set(cv2.CAP_PROP_POS_FRAMES, int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 2) // 2)
    ok, frame = cap.read()
    cap.release()
    if not ok:
        raise ConfigError(f"bench: cannot read a frame of {source}")
    cv2.imwrite(str(path), frame)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def still(source: str, gear: GearSection, seconds: float, model_cache: Path) -> dict[str, object]:
    """The whole appliance on a still picture at STILL_FPS: CPU of every process, in % of one
    core, and how many frames the detector ran on."""
    work = Path(tempfile.mkdtemp(prefix="rva-bench-still-"))
    url = f"unix://{work / 'redis.sock'}"
    picture = still_picture(source, work / "still.png")
    config_text = _bench_config(url, str(picture), gear, fps=STILL_FPS, web_port=_free_port())
    (work / "rva.toml").write_text(config_text, "utf-8")
    with _children(work) as procs:
        client, _module = _start(work, gear, model_cache, ("gears", "capture", "web"), procs)
        # Past the start (the first frames, a re-baseline) into the steady still state.
        time.sleep(WARMUP_S + 2)

        def counters() -> dict[str, int]:
            return {k.decode(): int(v) for k, v in client.hgetall(keys.STATS).items()}

        before = counters()
        for p in procs.values():
            p.mark()

        def own_cpu() -> float:
            return time.process_time() + sum(p.cpu_seconds() for p in procs.values())

        others = _Others()
        others.start(own_cpu())
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for p in procs.values():
                p.check()
            time.sleep(0.2)
        others.stop(own_cpu())
        others_cores = others.cores()
        usage = {name: p.usage() for name, p in procs.items()}
        after = counters()

    def delta(name: str) -> int:
        return after.get(f"bench:{name}", 0) - before.get(f"bench:{name}", 0)

    return {
        "input_fps": STILL_FPS,
        "seconds": seconds,
        "motion_gate": gear.motion_gate,
        "still_refresh_s": gear.still_refresh_s,
        "total_cpu_percent": round(sum(u["cpu_percent"] for u in usage.values()), 1),
        "services": usage,
        "detector_runs": delta("processed"),
        "motion_skipped": delta("motion_skipped"),
        "others_cores": others_cores,
    }


def run(args: argparse.Namespace, cfg: Config) -> dict[str, object]:
    gear = config.gear_settings(
        cfg, model=args.model, backend=args.backend, motion_gate=args.motion_gate
    )
    source = args.source or next(iter(cfg.cameras.values())).source
    if not Path(source).is_file():
        raise ConfigError(f"bench needs a video file as source (got {source!r}); use --source")
    cache = store.cache_dir(args.model_cache)
    load_before = _loadavg()
    detector = Detector.from_settings(store.from_cache(manifest.load(gear.model), cache), gear)
    backend = detector.backend_name  # what `auto` is on this machine
    slices = args.slices
    if slices < 1:
        raise ConfigError(f"bench: --slices must be 1 or more (got {slices})")
    loop = BareLoop(detector, source)
    piped = pipeline(str(Path(source).resolve()), gear, args.seconds, cache.resolve(), loop, slices)
    bare = loop.report()
    del detector, loop  # free its threads and memory before the still phase
    analytics_ms = analytics_cost(
        bare["detections"],  # type: ignore[arg-type]
        bare["frame_size"],  # type: ignore[arg-type]
        float(bare["frame_ms"]),  # type: ignore[arg-type]
    )
    quiet = None if args.no_still else still(source, gear, args.seconds, cache.resolve())
    phases = {"bare": bare["others_cores"], "pipeline": piped["others_cores"]}
    if quiet:
        phases["still"] = quiet["others_cores"]
    load = load_report(load_before, _loadavg(), phases)  # type: ignore[arg-type]
    if load["warning"]:
        print(f"rva bench: warning: {load['warning']}", file=sys.stderr)
    model_ms = bare["stages_ms"]["model"]  # type: ignore[index]
    detector_ms = float(bare["detector_ms"])  # type: ignore[arg-type]
    latency = piped["latency_ms"]
    return {
        "model": gear.model,
        "backend": backend,
        "source": source,
        "seconds": args.seconds,
        "slices": slices,
        "bare_fps": round(float(bare["fps"]), 2),  # type: ignore[arg-type]
        "pipeline_fps": round(float(piped["fps"]), 2),  # type: ignore[arg-type]
        "ratio": round(float(piped["fps"]) / float(bare["fps"]), 3),  # type: ignore[arg-type]
        "latency_ms": latency,
        "latency_p50_over_model_ms": round(latency["p50"] / model_ms, 3),  # type: ignore[index]
        # CPU of every process per frame (all the redis-server, capture and gears processes in
        # the pipeline): what other processes' load skews least, unlike the fps.
        "cpu_ms_per_frame": {
            "bare": round(float(bare["cpu_ms_per_frame"]), 1),  # type: ignore[arg-type]
            "pipeline": round(float(piped["cpu_ms_per_frame"]), 1),  # type: ignore[arg-type]
            "ratio": round(
                float(bare["cpu_ms_per_frame"]) / float(piped["cpu_ms_per_frame"]),  # type: ignore[arg-type]
                3,
            ),
        },
        "stages_ms": {"bare": bare["stages_ms"], "pipeline": piped["stages_ms"]},
        "analytics_ms": None if analytics_ms is None else round(analytics_ms, 3),
        "analytics_share": None if analytics_ms is None else round(analytics_ms / detector_ms, 4),
        "services": piped["services"],
        "counters": piped["counters"],
        "timeseries": piped["timeseries"],
        "still": quiet,
        "load": load,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "rva": {"version": rva.__version__, "path": str(Path(rva.__file__).resolve().parent)},
    }
