"""(c) A still scene: the whole appliance (redis-server, capture, gears, web) on a still picture
of the footage at STILL_FPS, as a camera on an empty corridor sees it."""

from __future__ import annotations

import socket
import tempfile
import time
from pathlib import Path

import cv2

from rva import keys
from rva.config import ConfigError, GearSection
from rva.tools.bench.children import WARMUP_S, bench_config, children, start
from rva.tools.bench.load import Others

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def still(source: str, gear: GearSection, seconds: float, model_cache: Path) -> dict[str, object]:
    """The whole appliance on a still picture at STILL_FPS: CPU of every process, in % of one
    core, and how many frames the detector ran on."""
    work = Path(tempfile.mkdtemp(prefix="rva-bench-still-"))
    url = f"unix://{work / 'redis.sock'}"
    picture = still_picture(source, work / "still.png")
    config_text = bench_config(url, str(picture), gear, fps=STILL_FPS, web_port=free_port())
    (work / "rva.toml").write_text(config_text, "utf-8")
    with children(work) as procs:
        client, _module = start(work, gear, model_cache, ("gears", "capture", "web"), procs)
        # Past the start (the first frames, a re-baseline) into the steady still state.
        time.sleep(WARMUP_S + 2)

        def counters() -> dict[str, int]:
            return {k.decode(): int(v) for k, v in client.hgetall(keys.STATS).items()}

        before = counters()
        for p in procs.values():
            p.mark()

        def own_cpu() -> float:
            return time.process_time() + sum(p.cpu_seconds() for p in procs.values())

        others = Others()
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
