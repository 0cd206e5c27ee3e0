"""The commands that manage what the appliance runs with: models, the config file, and the
system itself (A/B updates)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rva import config, const
from rva.cli.common import Add, admin_url
from rva.config import Config
from rva.models.manifest import ModelError


def add_parsers(add: Add, sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = add("models", "list or fetch models")
    msub = p.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    msub.add_parser("list", help="known models and whether they are cached", parents=[common])
    mf = msub.add_parser("fetch", help="download and verify model files", parents=[common])
    mf.add_argument("names", nargs="*", help="models to fetch (default: gear.model)")
    mf.add_argument("--all", action="store_true")
    mq = msub.add_parser(
        "quantize", help="an int8 copy of a model, calibrated on this camera's frames",
        parents=[common],
    )  # fmt: skip
    mq.add_argument("name", nargs="?", help="model (default: gear.model)")
    where = mq.add_mutually_exclusive_group(required=True)
    where.add_argument("--source", metavar="FILE", help="frames from a video file or image")
    where.add_argument("--camera", metavar="ID", help="frames from the camera's live stream")
    mq.add_argument("--frames", type=int, default=50, help="calibration frames (default 50)")
    mq.add_argument(
        "--input-size",
        type=int,
        default=None,
        help="the input size the int8 copy is made for (default: gear.input_size; a gear "
        "refuses a copy made at another size)",
    )
    for mp in msub.choices.values():
        mp.add_argument("--model-cache")

    p = add("config", "check or show the configuration")
    csub = p.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    cc = csub.add_parser(
        "check",
        help="validate the config file, and whether each camera's source can work here",
        parents=[common],
    )
    cc.add_argument(
        "--root",
        metavar="DIR",
        help="look up files and /dev nodes under DIR (another system's root filesystem)",
    )
    csub.add_parser("show", help="print the effective config as JSON", parents=[common])

    p = add("update", "A/B images: install a signed update bundle, show the slots, check a boot")
    p.add_argument(
        "target",
        metavar="FILE|URL|status|check",
        help="a bundle (.raucb) to install into the other slot, or from an http(s) URL; status: "
        "the slots and which boots next; check: wait until RVA counts and Redis has its data "
        "(the trial boot's health check)",
    )
    p.add_argument("--reboot", action="store_true", help="reboot into the new slot once installed")
    p.add_argument(
        "--json", action="store_true", help="status: the slots as JSON (booted, primary, slots)"
    )
    p.add_argument(
        "--timeout", type=float, default=600.0, help="check: give up after this many seconds"
    )


def cmd_models(args: argparse.Namespace, cfg: Config) -> int:
    from rva.models import fetch, manifest, store

    cache = store.cache_dir(args.model_cache)
    if args.models_command == "list":
        where = (
            "--model-cache"
            if args.model_cache
            else const.ENV_MODEL_CACHE
            if os.environ.get(const.ENV_MODEL_CACHE)
            else "the default; --model-cache or $RVA_MODEL_CACHE for another"
        )
        print(f"model cache: {cache} ({where})")
        missing = False
        for name in manifest.available():
            m = manifest.load(name)
            try:
                store.from_cache(m, cache)
                state = "cached"
            except ModelError:
                state, missing = "not fetched", True
            default = " (default)" if name == cfg.gear.model else ""
            print(f"{name:18} {m.format:11} {state:12} {m.description}{default}")
        # make fetch (make demo, make test) fills the checkout's .cache/models instead.
        checkout = Path(__file__).resolve().parents[2] / ".cache" / "models"
        if missing and checkout.is_dir() and checkout.resolve() != cache.resolve():
            print(f"(make fetched models into {checkout}: RVA_MODEL_CACHE={checkout} to use them)")
        return 0
    if args.models_command == "quantize":
        from rva.tools.quantize import cli

        return cli(args, cfg, cache)
    names = manifest.available() if args.all else (args.names or [cfg.gear.model])
    for name in names:
        bundle = fetch.fetch(manifest.load(name), cache)
        size = sum(len(b) for b in bundle.files.values())
        print(
            f"{name}: {len(bundle.files)} files, {size / 1e6:.1f} MB, verified, in {cache / name}"
        )
    return 0


def cmd_config(args: argparse.Namespace, cfg: Config) -> int:
    if args.config_command == "show":
        print(cfg.model_dump_json(indent=2))
        return 0
    from rva import checks

    file = config.config_path(args.config)
    config.redis_url(cfg, args.url)  # a URL from -u/--url or RVA_REDIS_URL is checked too
    # Beyond the schema: can each camera's source work here (rva.checks)?
    findings = checks.config(cfg, Path(args.root) if args.root else None)
    lines = [f.line(file) for f in findings]
    if any(f.level == "error" for f in findings):
        print("rva: config error:\n" + "\n".join(lines), file=sys.stderr)
        return 2
    for line in lines:  # warnings: may work later (a camera not plugged in yet)
        print(line, file=sys.stderr)
    print(f"{file}: OK ({len(cfg.cameras)} camera(s))")
    return 0


def cmd_update(args: argparse.Namespace, cfg: Config) -> int:
    from rva.tools import update

    try:
        if args.target == "status":
            return update.status(as_json=args.json)
        if args.target == "check":
            return update.check(config.redis_url(cfg, args.url), cfg, args.timeout)
        # Writing the marker needs the Redis administrator (the default user only reads).
        return update.install(args.target, admin_url(args, cfg), args.reboot)
    except update.UpdateError as exc:
        print(f"rva update: {exc}", file=sys.stderr)
        return 1


COMMANDS = {
    "models": cmd_models,
    "config": cmd_config,
    "update": cmd_update,
}
