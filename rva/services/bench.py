"""rva bench: the bare detector loop and the full pipeline, measured in one run.

(a) bare: decode + letterbox + forward + NMS over the footage, no Redis;
(b) pipeline: capture → Redis → gears → results at max rate, on a private redis-server that
    this command starts (so a running appliance is neither disturbed nor counted).
Figures are ratios from the same run on the same machine; absolute numbers vary with load.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import redis

from rva import const, keys
from rva.config import Config, ConfigError
from rva.connection import connect
from rva.models import manifest, store
from rva.models.detector import Detector
from rva.services.health import server_ms

WARMUP_S = 3.0


def _percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def bare_loop(detector: Detector, source: str, seconds: float) -> dict[str, object]:
    cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        raise ConfigError(f"bench: cannot open {source}")
    stages: dict[str, list[float]] = {"read": [], "resize": [], "model": [], "boxes": []}

    def next_frame() -> np.ndarray:
        ok, frame = cap.read()
        if not ok:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = cap.read()
        return frame

    for _ in range(3):
        detector.detect(next_frame())
    frames, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        t0 = time.perf_counter()
        frame = next_frame()
        stages["read"].append((time.perf_counter() - t0) * 1e3)
        found = detector.detect(frame)
        for k, v in found.timings_ms.items():
            stages[k].append(v)
        frames += 1
    elapsed = time.perf_counter() - started
    cap.release()
    return {
        "fps": frames / elapsed,
        "frames": frames,
        "stages_ms": {k: round(statistics.median(v), 2) for k, v in stages.items() if v},
    }


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


class _Proc:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.handle = log.open("wb")
        self.popen = subprocess.Popen(argv, env=env, stdout=self.handle, stderr=subprocess.STDOUT)
        self.cpu0 = self.t0 = 0.0

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
        self.cpu0, self.t0 = self.cpu_seconds(), time.monotonic()

    def usage(self) -> dict[str, float]:
        wall = max(time.monotonic() - self.t0, 1e-6)
        return {
            "cpu_percent": round((self.cpu_seconds() - self.cpu0) / wall * 100, 1),
            "peak_rss_mb": round(self.peak_rss_mb(), 1),
        }

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
        self.handle.close()


def pipeline(
    source: str, model: str, backend: str, seconds: float, model_cache: Path
) -> dict[str, object]:
    server, module = _redis_server()
    work = Path(tempfile.mkdtemp(prefix="rva-bench-"))
    sock = work / "redis.sock"
    url = f"unix://{sock}"
    (work / "rva.toml").write_text(
        f'[redis]\nurl = "{url}"\n[cameras.bench]\nsource = "{source}"\nrate = "max"\n'
        f'maxlen = 200\n[gear]\nmodel = "{model}"\nbackend = "{backend}"\n',
        encoding="utf-8",
    )
    env = {
        **os.environ,
        const.ENV_CONFIG: str(work / "rva.toml"),
        const.ENV_MODEL_CACHE: str(model_cache),
    }
    env.pop(const.ENV_REDIS_URL, None)
    rva = [sys.executable, "-m", "rva"]
    redis_argv = [
        server,
        "--port",
        "0",
        "--unixsocket",
        str(sock),
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(work),
    ]
    if module:
        redis_argv += ["--loadmodule", module]
    procs = {"redis": _Proc("redis", redis_argv, env, work / "redis.log")}
    failed = True
    try:
        client = connect(url, name="rva-bench")
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except (redis.ConnectionError, FileNotFoundError):
                if time.monotonic() > deadline:
                    raise ConfigError(
                        f"bench: redis-server did not start; see {work / 'redis.log'}"
                    ) from None
                time.sleep(0.05)
        subprocess.run([*rva, "init"], env=env, check=True, capture_output=True)
        procs["gears"] = _Proc("gears", [*rva, "gears"], env, work / "gears.log")
        procs["capture"] = _Proc("capture", [*rva, "capture"], env, work / "capture.log")
        results = keys.results("bench")
        deadline = time.monotonic() + 60
        while not client.xlen(results):
            if time.monotonic() > deadline:
                raise ConfigError(f"bench: no results within 60 s; logs in {work}")
            time.sleep(0.1)
        time.sleep(WARMUP_S)
        start_ms = server_ms(client)
        for p in procs.values():
            p.mark()
        stage_samples: dict[str, list[float]] = {}
        seen_ts: set[str] = set()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            latest = {
                k.decode(): v.decode() for k, v in client.hgetall(keys.latest("bench")).items()
            }
            if latest.get("ts") not in seen_ts:
                seen_ts.add(latest.get("ts", ""))
                for k, v in latest.items():
                    if k.startswith("prf_"):
                        stage_samples.setdefault(k[4:], []).append(float(v))
            time.sleep(0.05)
        usage = {name: p.usage() for name, p in procs.items()}
        end_ms = server_ms(client)
        window = client.xrange(results, min=f"{start_ms}-0", max=f"{end_ms}-0")
        latencies = [
            int(rid.split(b"-")[0]) - int(fields[b"ref"].split(b"-")[0]) for rid, fields in window
        ]
        stats = {k.decode(): int(v) for k, v in client.hgetall(keys.STATS).items()}
        failed = False
        return {
            "fps": len(window) * 1000 / max(end_ms - start_ms, 1),
            "frames": len(window),
            "latency_ms": {"p50": _percentile(latencies, 50), "p95": _percentile(latencies, 95)},
            "stages_ms": {k: round(statistics.median(v), 2) for k, v in stage_samples.items()},
            "services": usage,
            "counters": stats,
            "timeseries": module is not None,
        }
    finally:
        for p in reversed(list(procs.values())):
            p.stop()
        if failed:
            print(f"rva bench: logs kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, cfg: Config, _url: str) -> dict[str, object]:
    model = args.model or cfg.gear.model
    backend = args.backend or cfg.gear.backend
    source = args.source or next(iter(cfg.cameras.values())).source
    if not Path(source).is_file():
        raise ConfigError(f"bench needs a video file as source (got {source!r}); use --source")
    cache = store.cache_dir(args.model_cache)
    detector = Detector(
        store.from_cache(manifest.load(model), cache),
        backend=backend,
        threads=cfg.gear.threads,
        score_threshold=cfg.gear.score_threshold,
        nms_threshold=cfg.gear.nms_threshold,
    )
    bare = bare_loop(detector, source, args.seconds)
    del detector  # free its threads and memory before the pipeline runs
    piped = pipeline(str(Path(source).resolve()), model, backend, args.seconds, cache.resolve())
    model_ms = bare["stages_ms"]["model"]  # type: ignore[index]
    latency = piped["latency_ms"]
    return {
        "model": model,
        "backend": backend,
        "source": source,
        "seconds": args.seconds,
        "bare_fps": round(float(bare["fps"]), 2),  # type: ignore[arg-type]
        "pipeline_fps": round(float(piped["fps"]), 2),  # type: ignore[arg-type]
        "ratio": round(float(piped["fps"]) / float(bare["fps"]), 3),  # type: ignore[arg-type]
        "latency_ms": latency,
        "latency_p50_over_model_ms": round(latency["p50"] / model_ms, 3),  # type: ignore[index]
        "stages_ms": {"bare": bare["stages_ms"], "pipeline": piped["stages_ms"]},
        "services": piped["services"],
        "counters": piped["counters"],
        "timeseries": piped["timeseries"],
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
    }
