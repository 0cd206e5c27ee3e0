"""rva bench's run: the three phases in order and their report (JSON)."""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import rva
from rva import config
from rva.config import Config, ConfigError
from rva.models import manifest, store
from rva.models.detector import Detector
from rva.tools.bench.bare import BareLoop, analytics_cost
from rva.tools.bench.load import load_report, loadavg
from rva.tools.bench.pipeline import pipeline
from rva.tools.bench.still import still


def run(args: argparse.Namespace, cfg: Config) -> dict[str, object]:
    gear = config.gear_settings(
        cfg,
        model=args.model,
        backend=args.backend,
        motion_gate=args.motion_gate,
        precision=getattr(args, "precision", None),
    )
    source = args.source or next(iter(cfg.cameras.values())).source
    if not Path(source).is_file():
        raise ConfigError(f"bench needs a video file as source (got {source!r}); use --source")
    cache = store.cache_dir(args.model_cache)
    load_before = loadavg()
    detector = Detector.from_settings(
        store.from_cache(manifest.load(gear.model), cache), gear, cache
    )
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
    load = load_report(load_before, loadavg(), phases)  # type: ignore[arg-type]
    if load["warning"]:
        print(f"rva bench: warning: {load['warning']}", file=sys.stderr)
    model_ms = bare["stages_ms"]["model"]  # type: ignore[index]
    detector_ms = float(bare["detector_ms"])  # type: ignore[arg-type]
    latency = piped["latency_ms"]
    return {
        "model": gear.model,
        "backend": backend,
        "precision": gear.precision,
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
