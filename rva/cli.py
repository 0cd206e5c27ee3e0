"""The `rva` command: one entry point for the services and the tools."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rva import __version__, config, const
from rva.config import Config, ConfigError
from rva.models.manifest import ModelError

if TYPE_CHECKING:
    from rva.models.detector import Detector
    from rva.runtime import Runtime

log = logging.getLogger("rva")


def _port(text: str) -> int:
    """A TCP port number, 1 to 65535 (argparse says so when it is not)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a TCP port (1 to 65535)")
    return port


def _common(default: object = None) -> argparse.ArgumentParser:
    """The options every command takes, before or after its name. The copies in the commands
    default to SUPPRESS, so that `rva --config F status` keeps F instead of resetting it."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="FILE",
        default=default,
        help=f"config file (default {const.CONFIG_PATH}, or $RVA_CONFIG)",
    )
    common.add_argument(
        "-u", "--url", default=default, help="Redis URL (default: $RVA_REDIS_URL, then redis.url)"
    )
    common.add_argument(
        "--log-level", default=default, choices=["debug", "info", "warning", "error"]
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common(argparse.SUPPRESS)
    parser = argparse.ArgumentParser(prog="rva", description=__doc__, parents=[_common()])
    parser.add_argument("--version", action="version", version=f"rva {__version__}")
    # Not required=True: `rva --bogus` would then be told that COMMAND is missing instead of
    # which option it does not know (see parse).
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, helptext: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=helptext, description=helptext, parents=[common])

    p = add("capture", "read a camera into camera:<id>")
    p.add_argument("source", nargs="?", help="overrides cameras.<id>.source")
    p.add_argument(
        "-c",
        "--camera",
        default=None,
        help="camera id (default: every configured camera, one thread each)",
    )
    p.add_argument("-o", "--output", help="output stream, camera:<id> (same as --camera <id>)")
    p.add_argument("--fps", type=float)
    p.add_argument("--width", type=int)
    p.add_argument("--height", type=int)
    p.add_argument("--quality", type=int, dest="jpeg_quality")
    p.add_argument("--maxlen", type=int)
    p.add_argument("--rate", choices=["native", "max"])
    p.add_argument("--resize", action="store_true", default=None)
    p.add_argument("--frames", type=int, default=0, help="stop after N frames (0 = never)")

    p = add("gears", "run the registered gears (a consumer-group worker)")
    p.add_argument("--max-entries", type=int, default=0, help="stop after N processed frames")
    p.add_argument(
        "--no-stages",
        action="store_true",
        help="detect only; leave tracking and counting to other workers or `rva stages`",
    )

    add("stages", "run tracking and counting (lines, zones) for cameras that have them")

    add("mqtt", "publish counts to an MQTT broker, with Home Assistant discovery ([mqtt])")

    p = add("web", "serve the live view, /metrics and /healthz")
    p.add_argument("--host")
    p.add_argument("--port", type=_port)
    wsub = p.add_subparsers(dest="web_command", metavar="[passwd]")
    wp = wsub.add_parser(
        "passwd",
        parents=[common],
        help="set a web user's password ([web] users_file); with users, the page asks for one",
        description="Set USER's password in [web] users_file (scrypt, a salt per user). From a "
        "terminal it asks twice without echoing; otherwise it reads one line from standard "
        "input (provisioning: `printf '%%s\\n' \"$PW\" | rva web passwd USER`). rva web "
        "picks the change up within a second.",
    )
    wp.add_argument("user")
    wp.add_argument("--delete", action="store_true", help="remove USER instead")
    wp.add_argument(
        "--print",
        action="store_true",
        help="print USER's line (user:scrypt$...) instead of writing the users file: for "
        "Ansible's rva_app_web_users",
    )

    p = add("init", "prepare Redis: model, time series, gear registrations (idempotent)")
    p.add_argument(
        "--model-cache", help="model cache (default $RVA_MODEL_CACHE or /var/lib/rva/models)"
    )

    p = add("status", "one-screen health summary; exit 1 when unhealthy")
    p.add_argument("--json", action="store_true")

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

    p = add("models", "list or fetch models")
    msub = p.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    msub.add_parser("list", help="known models and whether they are cached", parents=[common])
    mf = msub.add_parser("fetch", help="download and verify model files", parents=[common])
    mf.add_argument("names", nargs="*", help="models to fetch (default: gear.model)")
    mf.add_argument("--all", action="store_true")
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
    return parser


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; a wrong option is named before a missing COMMAND is reported."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command is None:
        parser.error("the following arguments are required: COMMAND")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    from rva.systemd import setup_logging

    try:
        cfg = config.load(args.config, required=args.command == "config")
    except ConfigError as exc:
        setup_logging("info")
        print(f"rva: config error:\n{exc}", file=sys.stderr)
        return 2
    setup_logging(args.log_level or cfg.log_level, service=f"rva-{args.command}")
    handler: Callable[[argparse.Namespace, Config], int] = COMMANDS[args.command]
    try:
        return handler(args, cfg)
    except (ConfigError, ModelError) as exc:
        print(f"rva: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `rva ... | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:
        if _interrupted(exc):
            return 130
        reason = _refused_by_redis(exc)
        if reason is None:
            raise
        print(f"rva {args.command}: Redis refused a command: {reason}", file=sys.stderr)
        return 1


def _interrupted(exc: BaseException) -> bool:
    """Whether Ctrl-C caused ``exc``: a C extension interrupted while it loads (ONNX Runtime's,
    imported when the first model is) raises ImportError("initialization failed") from the
    KeyboardInterrupt."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def _refused_by_redis(exc: BaseException) -> str | None:
    """Why Redis refused a command (maxmemory reached, a read-only replica, a failed save...),
    for a one-line error instead of a traceback; None when ``exc`` is no such refusal."""
    redis = sys.modules.get("redis")  # not imported: then no Redis error can have happened
    if redis is None or not isinstance(exc, redis.ResponseError):
        return None
    return str(exc).split(" caused error: ", 1)[-1]  # not the pipeline's whole command


# -- command handlers (imports are local: each service pays only for what it uses) ----------
def cmd_capture(args: argparse.Namespace, cfg: Config) -> int:
    from rva.services import capture

    camera_id = args.camera or (args.output.removeprefix("camera:") if args.output else None)
    overrides = {
        k: getattr(args, k)
        for k in ("fps", "width", "height", "jpeg_quality", "maxlen", "rate", "resize")
        if getattr(args, k) is not None
    }
    if args.source:
        overrides["source"] = args.source

    def overridden(cam: config.CameraSection) -> config.CameraSection:
        try:
            return config.CameraSection.model_validate({**cam.model_dump(), **overrides})
        except config.ValidationError as exc:
            raise ConfigError(str(exc)) from None

    # The motion gate runs in capture unless gear.motion_gate says otherwise (rva.motion).
    gate = cfg.gear if cfg.gear.motion_gate == "capture" else None
    if camera_id is None and not args.source and len(cfg.cameras) > 1:
        # No camera named: every configured camera, one thread each, in this process.
        capture.run_all(
            config.redis_url(cfg, args.url),
            {cid: overridden(cam) for cid, cam in cfg.cameras.items()},
            frames=args.frames,
            runtime=_runtime("capture"),
            gate=gate,
        )
        return 0
    camera_id = camera_id or next(iter(cfg.cameras))
    if camera_id in cfg.cameras:
        cam = cfg.cameras[camera_id]
    elif args.source:  # an ad-hoc camera given on the command line, as the seed's capture.py
        cam = config.CameraSection()  # its source is one of the overrides, checked below
    else:
        cam = cfg.camera(camera_id)  # raises: unknown camera, naming the configured ones
    capture.run(
        config.redis_url(cfg, args.url),
        camera_id,
        overridden(cam),
        frames=args.frames,
        runtime=_runtime("capture"),
        gate=gate,
    )
    return 0


def cmd_gears(args: argparse.Namespace, cfg: Config) -> int:
    from rva.services import gears

    gears.run(
        config.redis_url(cfg, args.url),
        cfg,
        runtime=_runtime("gears"),
        max_entries=args.max_entries,
        stages=not args.no_stages,
    )
    return 0


def cmd_stages(args: argparse.Namespace, cfg: Config) -> int:
    from rva.services import stages

    stages.run(config.redis_url(cfg, args.url), cfg, runtime=_runtime("stages"))
    return 0


def cmd_mqtt(args: argparse.Namespace, cfg: Config) -> int:
    from rva.services import mqtt

    return mqtt.run(config.redis_url(cfg, args.url), cfg, runtime=_runtime("mqtt"))


def cmd_web(args: argparse.Namespace, cfg: Config) -> int:
    if getattr(args, "web_command", None) == "passwd":
        return cmd_web_passwd(args, cfg)
    from rva.services import web

    host = args.host or cfg.web.host
    port = args.port or cfg.web.port
    try:
        web.serve(config.redis_url(cfg, args.url), cfg, host, port, runtime=_runtime("web"))
    except OSError as exc:
        # A busy or forbidden port, an address not on this host, a host name that does not
        # resolve (getaddrinfo's errors are negative).
        listen = (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES)
        if exc.errno not in listen and (exc.errno or 0) >= 0:
            raise
        busy = " (another rva web?)" if exc.errno == errno.EADDRINUSE else ""
        which = "port" if exc.errno in (errno.EADDRINUSE, errno.EACCES) else "host"
        print(
            f"rva web: cannot listen on {host}:{port}: {exc.strerror}{busy}; choose another "
            f"with --{which} or [web] {which} in {config.config_path(args.config)}",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_web_passwd(args: argparse.Namespace, cfg: Config) -> int:
    import getpass
    from pathlib import Path

    from rva.services import webauth

    path = Path(cfg.web.users_file)
    if args.print and args.delete:
        print("rva web passwd: --print and --delete do not go together", file=sys.stderr)
        return 2
    try:
        webauth.check_user(args.user)
        if args.delete:
            webauth.delete_user(path, args.user)
            left = len(webauth.read_users(path))
            print(f"{args.user}: removed from {path}")
            if not left:
                print(f"no users left: everything but /healthz is refused until {path} is removed")
            return 0
        if sys.stdin.isatty():
            password = getpass.getpass(f"New password for {args.user}: ")
            if getpass.getpass("Again: ") != password:
                raise webauth.UsersFileError("the two passwords differ; nothing changed")
        else:
            password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
        if args.print:
            print(f"{args.user}:{webauth.hash_password(webauth.check_password(password))}")
            return 0
        new = webauth.set_password(path, args.user, password)
    except webauth.UsersFileError as exc:
        print(f"rva web passwd: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"rva web passwd: {path}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"{args.user}: {'added to' if new else 'password changed in'} {path}")
    return 0


def cmd_init(args: argparse.Namespace, cfg: Config) -> int:
    from rva.connection import connect, wait_for_redis
    from rva.services import init

    client = connect(config.redis_url(cfg, args.url), name="rva-init")
    wait_for_redis(client)
    summary = init.run(client, cfg, args.model_cache)
    print(json.dumps(summary))
    return 0


def cmd_status(args: argparse.Namespace, cfg: Config) -> int:
    from rva.services import status

    return status.run(config.redis_url(cfg, args.url), cfg, as_json=args.json)


def cmd_top(args: argparse.Namespace, cfg: Config) -> int:
    from rva.services import top

    camera = args.camera or next(iter(cfg.cameras))
    cfg.camera(camera)  # an unknown one is an error that names the configured ones
    return top.run(config.redis_url(cfg, args.url), camera, interval=args.interval, once=args.once)


def _detector(args: argparse.Namespace, cfg: Config) -> Detector:
    from rva.models import manifest, store
    from rva.models.detector import Detector

    settings = config.gear_settings(
        cfg,
        model=args.model,
        backend=args.backend,
        input_size=getattr(args, "input_size", None),
        score_threshold=getattr(args, "threshold", None),
    )
    bundle = store.from_cache(manifest.load(settings.model), store.cache_dir(args.model_cache))
    return Detector.from_settings(bundle, settings)


def cmd_count(args: argparse.Namespace, cfg: Config) -> int:
    from rva.services import count

    if args.every < 1:
        raise ConfigError("--every must be at least 1")
    score = None
    if args.labels:
        from rva.services import labels

        if args.every != 1:
            raise ConfigError("--labels runs the labelled frames: leave --every out")
        try:
            score = labels.Score(labels.load(args.labels))
        except labels.LabelsError as exc:
            raise ConfigError(str(exc)) from None
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
            _detector(args, cfg),
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
    from rva.services import bench

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
        checkout = Path(__file__).resolve().parent.parent / ".cache" / "models"
        if missing and checkout.is_dir() and checkout.resolve() != cache.resolve():
            print(f"(make fetched models into {checkout}: RVA_MODEL_CACHE={checkout} to use them)")
        return 0
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


def _runtime(service: str) -> Runtime:
    from rva.runtime import Runtime

    runtime = Runtime(service)
    runtime.install_signals()
    return runtime


COMMANDS: dict[str, Callable[[argparse.Namespace, Config], int]] = {
    "capture": cmd_capture,
    "gears": cmd_gears,
    "stages": cmd_stages,
    "mqtt": cmd_mqtt,
    "web": cmd_web,
    "init": cmd_init,
    "status": cmd_status,
    "top": cmd_top,
    "count": cmd_count,
    "bench": cmd_bench,
    "models": cmd_models,
    "config": cmd_config,
}
