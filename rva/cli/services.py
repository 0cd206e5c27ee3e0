"""The commands that run the appliance's programs (each a systemd unit on a device), and
`rva init`, which prepares Redis for them."""

from __future__ import annotations

import argparse
import errno
import json
import sys

from rva import config
from rva.cli.common import Add, port, runtime
from rva.config import Config, ConfigError


def add_parsers(add: Add, sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
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
    p.add_argument("--port", type=port)
    wsub = p.add_subparsers(dest="web_command", metavar="[passwd]")
    wp = wsub.add_parser(
        "passwd",
        parents=[common],
        help="set a web user's password ([web] users_file); with users, the page asks for one",
        # Shown as written (argparse does no %-formatting of a description): the example is
        # shell text to copy, on a line of its own.
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Set USER's password in [web] users_file (scrypt, a salt per user).\n"
        "From a terminal it asks twice without echoing; otherwise it reads one line from\n"
        "standard input, as when provisioning:\n\n"
        "  printf '%s\\n' \"$PW\" | rva web passwd USER\n\n"
        "rva web picks the change up within a second.",
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
        with runtime("capture") as rt:
            capture.run_all(
                config.redis_url(cfg, args.url),
                {cid: overridden(cam) for cid, cam in cfg.cameras.items()},
                frames=args.frames,
                runtime=rt,
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
    with runtime("capture") as rt:
        capture.run(
            config.redis_url(cfg, args.url),
            camera_id,
            overridden(cam),
            frames=args.frames,
            runtime=rt,
            gate=gate,
        )
    return 0


def cmd_gears(args: argparse.Namespace, cfg: Config) -> int:
    from rva.services import gears

    with runtime("gears") as rt:
        gears.run(
            config.redis_url(cfg, args.url),
            cfg,
            runtime=rt,
            max_entries=args.max_entries,
            stages=not args.no_stages,
        )
    return 0


def cmd_stages(args: argparse.Namespace, cfg: Config) -> int:
    from rva.services import stages

    with runtime("stages") as rt:
        stages.run(config.redis_url(cfg, args.url), cfg, runtime=rt)
    return 0


def cmd_mqtt(args: argparse.Namespace, cfg: Config) -> int:
    from rva.services import mqtt

    with runtime("mqtt") as rt:
        return mqtt.run(config.redis_url(cfg, args.url), cfg, runtime=rt)


def cmd_web(args: argparse.Namespace, cfg: Config) -> int:
    if getattr(args, "web_command", None) == "passwd":
        return cmd_web_passwd(args, cfg)
    from rva.services import web

    host = args.host or cfg.web.host
    port = args.port or cfg.web.port
    try:
        with runtime("web") as rt:
            web.serve(config.redis_url(cfg, args.url), cfg, host, port, runtime=rt)
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

    from rva.services.web import auth as webauth

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
    from rva.tools import init

    client = connect(config.redis_url(cfg, args.url), name="rva-init")
    wait_for_redis(client)
    summary = init.run(client, cfg, args.model_cache)
    print(json.dumps(summary))
    return 0


COMMANDS = {
    "capture": cmd_capture,
    "gears": cmd_gears,
    "stages": cmd_stages,
    "mqtt": cmd_mqtt,
    "web": cmd_web,
    "init": cmd_init,
}
