"""The `rva` command: one entry point for the services and the tools.

Each command's parser sits next to its handler: rva.cli.services (the programs and init),
rva.cli.tools (status, top, count, bench), rva.cli.shapes (lines, zones), rva.cli.admin (models,
config, update). Handlers import what they run only when they run it: each service pays only
for what it uses.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from rva import __version__, config
from rva.cli import admin, report, services, shapes, tools
from rva.cli.common import Handler, common_options
from rva.config import ConfigError
from rva.models.manifest import ModelError

log = logging.getLogger("rva")

COMMANDS: dict[str, Handler] = {
    **services.COMMANDS,
    **tools.COMMANDS,
    **shapes.COMMANDS,
    **report.COMMANDS,
    **admin.COMMANDS,
}


def build_parser() -> argparse.ArgumentParser:
    common = common_options(argparse.SUPPRESS)
    parser = argparse.ArgumentParser(
        prog="rva", description=__doc__.split("\n", 1)[0], parents=[common_options()]
    )
    parser.add_argument("--version", action="version", version=f"rva {__version__}")
    # Not required=True: `rva --bogus` would then be told that COMMAND is missing instead of
    # which option it does not know (see parse).
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, helptext: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=helptext, description=helptext, parents=[common])

    for module in (services, tools, shapes, report, admin):
        module.add_parsers(add, sub, common)
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
    handler = COMMANDS[args.command]
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
