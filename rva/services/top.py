"""rva top: the seed's console monitor — people, fps and stage timings, refreshed."""

from __future__ import annotations

import sys
import time

from rva import keys
from rva.connection import TRANSIENT, connect


def screen(latest: dict[str, float], camera: str, people: int | None) -> str:
    def v(name: str) -> str:
        return f"{latest[name]:8.1f}" if name in latest else "       -"

    rows = [
        f"RVA top — camera {camera} — {time.strftime('%H:%M:%S')}",
        f"people   {people if people is not None else '-':>8}",
        f"in fps   {v('in_fps')}    out fps  {v('out_fps')}",
        "stage ms " + "  ".join(f"{s} {v('prf_' + s).strip()}" for s in keys.STAGES),
    ]
    return "\n".join(rows)


def run(url: str, camera: str, *, interval: float = 1.0, once: bool = False) -> int:
    client = connect(url, name="rva-top", timeout=3)
    interactive = sys.stdout.isatty() and not once
    while True:
        try:
            raw = client.hgetall(keys.latest(camera))
            latest = {k.decode(): float(v) for k, v in raw.items()}
            newest = client.xrevrange(keys.results(camera), count=1)
            people = int(newest[0][1].get(b"people", 0)) if newest else None
            text = screen(latest, camera, people)
        except TRANSIENT as exc:
            text = f"RVA top — Redis unreachable: {exc}"
        if interactive:
            sys.stdout.write("\x1b[H\x1b[2J")
        print(text, flush=True)
        if once:
            return 0
        try:
            time.sleep(interval)
        except KeyboardInterrupt:
            return 0
