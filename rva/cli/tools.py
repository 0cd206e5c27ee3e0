"""The commands a person runs to look and measure: status, top, count, bench."""

from __future__ import annotations

import argparse
import json
import sys

from rva import config, const
from rva.cli.common import Add, detector
from rva.config import Config, ConfigError


def add_parsers(add: Add, sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = add("status", "one-screen health summary; exit 1 when unhealthy")
    p.add_argument("--json", action="store_true")

    p = add("doctor", "check this device against its board's facts (Raspberry Pi, Jetson), live")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--root", metavar="DIR", help="check another system's files (a mounted card); no live rows"
    )

    p = add("top", "live console monitor: people, fps, stage timings")
    p.add_argument("-c", "--camera", default=None)
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--once", action="store_true", help="print one screen and exit")

    p = add("count", "run the detector offline over a video or image")
    p.add_argument("source")
    p.add_argument(
        "--model", default=None, help=f"model name (default: gear.model, {const.DEFAULT_MODEL})"
    )
    p.add_argument("--backend", default=None)
    p.add_argument(
        "--precision",
        choices=["float", "int8", "both"],
        default=None,
        help="overrides gear.precision; both (with --labels): float and int8 on the same "
        "labelled frames, scored side by side",
    )
    p.add_argument("--every", type=int, default=1, help="process every Nth frame")
    p.add_argument("--limit", type=int, default=0, help="stop after N processed frames")
    p.add_argument("--json", action="store_true", help="one JSON object per processed frame")
    p.add_argument(
        "-c",
        "--camera",
        default=None,
        help="count this camera's lines and zones (tracks, crossings, occupancy; a summary last)",
    )
    p.add_argument(
        "--labels",
        metavar="FILE",
        help="score the count against hand labels (TOML, [[frame]] frame/people/max, as "
        "tests/data/vtest_people.toml): runs the labelled frames only; MAE and misses last",
    )
    p.add_argument("--input-size", type=int, default=None, help="overrides gear.input_size")
    p.add_argument("--threshold", type=float, default=None, help="overrides gear.score_threshold")
    p.add_argument("--model-cache")

    # bench starts a private redis-server of its own: every common option but -u/--url.
    bench_common = argparse.ArgumentParser(add_help=False)
    for action in common._actions:
        if action.dest != "url":
            bench_common._add_action(action)
    bench_help = "measure the bare detector loop and the full Redis pipeline in one run"
    p = sub.add_parser(
        "bench",
        help=bench_help,
        parents=[bench_common],
        description=f"{bench_help}. The pipeline runs on a private redis-server that bench "
        "starts and removes ($RVA_REDIS_SERVER, else redis-server on PATH or in $RVA_CACHE, "
        "with $RVA_REDIS_TS_MODULE or the redistimeseries.so beside it), so a running "
        "appliance is neither disturbed nor counted; bench takes no Redis URL (-u/--url, "
        "$RVA_REDIS_URL). The JSON report also gives the machine's load before and after, and "
        "a warning on stderr says when other processes used enough CPU to skew the figures.",
    )
    # Refused with a message, not ignored, before or after "bench" (SUPPRESS: no default here
    # to hide the one given before the command).
    p.add_argument("-u", "--url", help=argparse.SUPPRESS, default=argparse.SUPPRESS)
    p.add_argument("--seconds", type=float, default=20.0, help="duration of each phase")
    p.add_argument(
        "--slices",
        type=int,
        default=4,
        help="the bare loop and the pipeline alternate in this many slices each (so that both "
        "are measured in the same minutes of a machine whose speed drifts)",
    )
    p.add_argument("--model", default=None)
    p.add_argument("--backend", default=None)
    p.add_argument(
        "--precision", choices=["float", "int8"], default=None, help="overrides gear.precision"
    )
    p.add_argument("--source", default=None, help="video (default: cameras.<first>.source)")
    p.add_argument(
        "--motion-gate",
        choices=["capture", "gear", "off"],
        default=None,
        help="overrides gear.motion_gate, to compare where the gate lives",
    )
    p.add_argument(
        "--no-still",
        action="store_true",
        help="skip the third phase (the whole appliance on a still picture at 10 fps)",
    )
    p.add_argument("--model-cache")


def cmd_status(args: argparse.Namespace, cfg: Config) -> int:
    from rva.tools import status

    return status.run(config.redis_url(cfg, args.url), cfg, as_json=args.json)


def cmd_doctor(args: argparse.Namespace, cfg: Config) -> int:
    from pathlib import Path

    from rva.tools import doctor

    root = Path(args.root or "/")
    if not root.is_dir():
        print(f"rva: error: --root {root}: no such directory", file=sys.stderr)
        return 2
    return doctor.run(
        root,
        config.redis_url(cfg, args.url),
        {cid: cam.source for cid, cam in cfg.cameras.items()},
        as_json=args.json,
    )


def cmd_top(args: argparse.Namespace, cfg: Config) -> int:
    from rva.tools import top

    camera = args.camera or next(iter(cfg.cameras))
    cfg.camera(camera)  # an unknown one is an error that names the configured ones
    return top.run(config.redis_url(cfg, args.url), camera, interval=args.interval, once=args.once)


def cmd_count(args: argparse.Namespace, cfg: Config) -> int:
    from rva.tools import count

    if args.every < 1:
        raise ConfigError("--every must be at least 1")
    score = None
    if args.labels:
        from rva.tools import labels

        if args.every != 1:
            raise ConfigError("--labels runs the labelled frames: leave --every out")
        try:
            score = labels.Score(labels.load(args.labels))
        except labels.LabelsError as exc:
            raise ConfigError(str(exc)) from None
    if args.precision == "both":
        if score is None or args.camera is not None:
            raise ConfigError(
                "--precision both scores float against int8 on labelled frames: give --labels "
                "(and no --camera)"
            )
        detectors = {p: detector(args, cfg, precision=p) for p in ("float", "int8")}
        try:
            count.compare(detectors, args.source, score.labels, as_json=args.json)
        except count.CountError as exc:
            print(f"rva: error: {exc}", file=sys.stderr)
            return 2
        return 0
    counter = None
    if args.camera is not None:
        from rva.stages.counting import counter_for

        section = cfg.camera(args.camera)
        if not (section.lines or section.zones):
            raise ConfigError(
                f"{config.config_path(args.config)}: cameras.{args.camera} has no lines or zones"
            )
        counter = counter_for(section, cfg)
    try:
        count.run(
            detector(args, cfg),
            args.source,
            every=args.every,
            as_json=args.json,
            limit=args.limit,
            counter=counter,
            score=score,
        )
    except count.CountError as exc:
        print(f"rva: error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_bench(args: argparse.Namespace, cfg: Config) -> int:
    from rva.tools import bench

    if getattr(args, "url", None):
        print(
            "rva bench: -u/--url is not used: bench runs the pipeline on a private redis-server "
            "of its own (see rva bench --help)",
            file=sys.stderr,
        )
        return 2
    try:
        report = bench.run(args, cfg)
    except bench.BenchError as exc:
        print(f"rva bench: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2))
    return 0


COMMANDS = {
    "status": cmd_status,
    "doctor": cmd_doctor,
    "top": cmd_top,
    "count": cmd_count,
    "bench": cmd_bench,
}
