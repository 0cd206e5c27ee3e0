"""rva lines / rva zones: list, set, remove and undo counting lines and zones on a running
appliance, as the page does (rva.shapes keeps them in Redis; the services apply a change
within seconds, without a restart). For scripts and Ansible:

    rva lines set 0 door 330,185 330,375 --in-side 400,270
    rva zones set 0 queue 200,200 460,200 460,320 200,320
    rva lines list --json
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from rva import config
from rva.cli.common import ADMIN_ENV, Add, admin_url
from rva.config import Config, ConfigError

if TYPE_CHECKING:
    import redis


def point(text: str) -> tuple[float, float]:
    """X,Y in source-frame pixels."""
    try:
        x, y = (float(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a point X,Y: {text!r}") from None
    return x, y


def add_parsers(add: Add, sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    for kind, plural in (("line", "lines"), ("zone", "zones")):
        p = add(plural, f"list, set, remove or undo counting {plural} live (no restart)")
        actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
        a = actions.add_parser("list", help=f"the {plural} in use, with today's counts")
        a.add_argument("camera", nargs="?", help="one camera (default: all)")
        a.add_argument("--json", action="store_true")
        a = actions.add_parser("set", help=f"add a {kind}, or move one (it keeps its totals)")
        a.add_argument("camera")
        a.add_argument("name")
        if kind == "line":
            a.add_argument("points", nargs=2, type=point, metavar="X,Y", help="the two ends")
            a.add_argument(
                "--in-side",
                type=point,
                required=True,
                metavar="X,Y",
                help="any point on the side people are on after coming in",
            )
        else:
            a.add_argument("points", nargs="+", type=point, metavar="X,Y", help="the corners")
        a.add_argument(
            "--classes",
            default="person",
            metavar="C[,C...]",
            help="what it counts: COCO classes, e.g. bicycle or car,truck (default: person)",
        )
        a = actions.add_parser("rm", help=f"remove a {kind} (its counts so far are kept)")
        a.add_argument("camera")
        a.add_argument("name")
        a = actions.add_parser("undo", help="undo the newest change of a camera's lines/zones")
        a.add_argument("camera")
        a = actions.add_parser("reset", help="back to rva.toml's lines and zones (undoable)")
        a.add_argument("camera")
        a = actions.add_parser("history", help="who changed what, and when (newest first)")
        a.add_argument("camera", nargs="?")
        a.add_argument("--json", action="store_true")


def _who() -> str:
    return "shell:" + (os.environ.get("SUDO_USER") or getpass.getuser())


def _url(args: argparse.Namespace, cfg: Config, write: bool) -> str:
    return admin_url(args, cfg) if write else config.redis_url(cfg, args.url)


def cmd_shapes(args: argparse.Namespace, cfg: Config) -> int:
    import redis

    from rva import shapes
    from rva.connection import TRANSIENT, connect

    kind = "line" if args.command == "lines" else "zone"
    write = args.action in ("set", "rm", "undo", "reset")
    if getattr(args, "camera", None) is not None:
        cfg.camera(args.camera)  # an unknown one names the configured ones
    client = connect(_url(args, cfg, write), name="rva-lines")
    try:
        if args.action == "list":
            return _list(client, cfg, kind, args.camera, args.json)
        if args.action == "history":
            items = shapes.history(client, args.camera)
            if args.json:
                print(json.dumps(items, indent=2))
                return 0
            for item in items:
                who = f"({item['who']})"
                print(f"{_when(item['t'])}  camera {item['camera']}: {item['action']}  {who}")
            return 0
        if args.action == "set":
            spec: dict[str, Any]
            if kind == "line":
                spec = {"points": [list(p) for p in args.points], "in_side": list(args.in_side)}
            else:
                spec = {"polygon": [list(p) for p in args.points]}
            spec["classes"] = [c.strip() for c in args.classes.split(",") if c.strip()]
            done = shapes.set_shape(client, cfg, args.camera, kind, args.name, spec, _who())
        elif args.action == "rm":
            done = shapes.remove_shape(client, cfg, args.camera, kind, args.name, _who())
        elif args.action == "undo":
            done = shapes.undo(client, cfg, args.camera, _who())
        else:
            done = shapes.reset(client, cfg, args.camera, _who())
    except shapes.ShapeError as exc:
        raise ConfigError(str(exc)) from None
    except TRANSIENT as exc:
        print(f"rva {args.command}: Redis unreachable: {exc}", file=sys.stderr)
        return 1
    except redis.ResponseError as exc:
        if "NOPERM" in str(exc) or "NOAUTH" in str(exc):
            print(
                f"rva {args.command}: this Redis login may not change lines ({exc}); on the "
                "device run it as root (it then uses the administrator's login, "
                f"{ADMIN_ENV})",
                file=sys.stderr,
            )
            return 1
        raise
    print(f"camera {done.camera}: {done.action} (version {done.version}; applied within seconds)")
    return 0


def _when(t_ms: int) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t_ms / 1000))


def _list(client: redis.Redis, cfg: Config, kind: str, camera: str | None, as_json: bool) -> int:
    from rva import keys, shapes

    live = shapes.load(client, cfg)
    saved = shapes.layers(client)
    plural = kind + "s"
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for cam, section in live.cameras.items():
        if camera is not None and cam != camera:
            continue
        counts = {k.decode(): v.decode() for k, v in client.hgetall(keys.counts(cam)).items()}
        out[cam] = {}
        for name, shape in getattr(section, plural).items():
            item: dict[str, Any] = shape.model_dump(mode="json")
            item["from"] = "saved" if name in saved.get(cam, {}).get(plural, {}) else "rva.toml"
            if kind == "line":
                for d in keys.LINE_DIRECTIONS:
                    item[f"{d}_today"] = int(counts.get(f"line:{name}:{d}:today", 0))
                    item[f"{d}_total"] = int(counts.get(f"line:{name}:{d}", 0))
            else:
                item["occupancy"] = int(counts.get(f"zone:{name}", 0))
            out[cam][name] = item
    if as_json:
        print(json.dumps(out, indent=2))
        return 0

    def pt(p: list[float]) -> str:
        return f"{p[0]:g},{p[1]:g}"

    for cam, items in out.items():
        if not items:
            print(f"camera {cam}: no {plural}")
            continue
        print(f"camera {cam}:")
        for name, it in items.items():
            if kind == "line":
                ends = f"{pt(it['points'][0])} {pt(it['points'][1])}"
                where = f"{ends} --in-side {pt(it['in_side'])}"
                now = f"in {it['in_today']} / out {it['out_today']} today"
            else:
                where = " ".join(pt(p) for p in it["polygon"])
                now = f"{it['occupancy']} inside now"
            if it["classes"] != ["person"]:
                where += f" --classes {','.join(it['classes'])}"
            print(f"  {name:<16} {where}  ({it['from']}; {now})")
    return 0


COMMANDS = {"lines": cmd_shapes, "zones": cmd_shapes}
