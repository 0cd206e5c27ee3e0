"""What every command shares: the common options, argument types, and the service runtime."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rva import config, const
from rva.config import Config

if TYPE_CHECKING:
    from rva.models.detector import Detector
    from rva.runtime import Runtime

Handler = Callable[[argparse.Namespace, Config], int]
# add(name, help) -> the command's parser, with the common options (see rva.cli.build_parser)
Add = Callable[[str, str], argparse.ArgumentParser]


def port(text: str) -> int:
    """A TCP port number, 1 to 65535 (argparse says so when it is not)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a TCP port (1 to 65535)")
    return port


def _config_help() -> str:
    """The --config help, naming the file $RVA_CONFIG gives (the demo's) when it is set."""
    env = os.environ.get(const.ENV_CONFIG)
    if env:
        return f"config file (default: $RVA_CONFIG, here {env})".replace("%", "%%")
    return f"config file (default {const.CONFIG_PATH}, or $RVA_CONFIG)"


def common_options(default: object = None) -> argparse.ArgumentParser:
    """The options every command takes, before or after its name. The copies in the commands
    default to SUPPRESS, so that `rva --config F status` keeps F instead of resetting it."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="FILE",
        default=default,
        help=_config_help(),
    )
    common.add_argument(
        "-u", "--url", default=default, help="Redis URL (default: $RVA_REDIS_URL, then redis.url)"
    )
    common.add_argument(
        "--log-level", default=default, choices=["debug", "info", "warning", "error"]
    )
    return common


# On a device, the services' Redis users are least-privilege and the default user reads only;
# root may use the administrator's login, which provisioning writes here.
ADMIN_ENV = Path("/etc/rva/credentials/rva-admin.env")


def admin_url(args: argparse.Namespace, cfg: Config) -> str:
    """The Redis URL of a command that writes what the services only read: -u/--url or
    RVA_REDIS_URL when given, else the administrator's login when this user may read it (root
    on a device), else the config's."""
    url = config.redis_url(cfg, args.url)
    if not args.url and not os.environ.get(const.ENV_REDIS_URL) and os.access(ADMIN_ENV, os.R_OK):
        for line in ADMIN_ENV.read_text().splitlines():
            if line.startswith("RVA_REDIS_URL="):
                return line.split("=", 1)[1].strip()
    return url


def runtime(service: str) -> Runtime:
    from rva.runtime import Runtime

    runtime = Runtime(service)
    runtime.install_signals()
    return runtime


def detector(args: argparse.Namespace, cfg: Config, precision: str | None = None) -> Detector:
    from rva.models import manifest, store
    from rva.models.detector import Detector

    settings = config.gear_settings(
        cfg,
        model=args.model,
        backend=args.backend,
        input_size=getattr(args, "input_size", None),
        score_threshold=getattr(args, "threshold", None),
        precision=precision or getattr(args, "precision", None),
    )
    cache = store.cache_dir(args.model_cache)
    return Detector.from_settings(
        store.from_cache(manifest.load(settings.model), cache), settings, cache
    )
