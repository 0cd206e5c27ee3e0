"""(b) The pipeline: capture → Redis → gears → results at max rate on a private redis-server,
alternating with the bare loop in slices (P B B P P B B P) so both are measured in the same
minutes."""

from __future__ import annotations

import signal
import statistics
import tempfile
import time
from pathlib import Path

import redis

from rva import keys
from rva.config import GearSection
from rva.gears import GEAR_TYPES
from rva.health import server_ms
from rva.tools.bench.bare import BareLoop, percentile
from rva.tools.bench.children import WARMUP_S, Proc, bench_config, children, start
from rva.tools.bench.load import Others

PAUSE_TIMEOUT_S = 30.0  # for the gears to answer capture's last frame before a bare slice
RESUME_S = 1.0  # after capture resumes, before the next pipeline window


def pause(capture: Proc, client: redis.Redis, gear: GearSection) -> None:
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
    (work / "rva.toml").write_text(bench_config(url, source, gear), "utf-8")
    with children(work) as procs:
        client, module = start(work, gear, model_cache, ("gears", "capture"), procs)
        results = GEAR_TYPES[gear.type].results_key("bench")
        time.sleep(WARMUP_S)
        slice_s = seconds / slices

        def own_cpu() -> float:
            return time.process_time() + sum(p.cpu_seconds() for p in procs.values())

        others = Others()
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
                    pause(procs["capture"], client, gear)
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
            "p95": percentile(latencies, 95),
        },
        "stages_ms": {k: round(statistics.median(v), 2) for k, v in stage_samples.items()},
        "services": usage,
        "counters": stats,
        "timeseries": module is not None,
        "cpu_ms_per_frame": cpu_s * 1000 / max(len(window), 1),
        "others_cores": others.cores(),
    }
