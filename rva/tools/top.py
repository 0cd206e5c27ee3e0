"""rva top: the seed's console monitor — people, fps and stage timings, refreshed."""

from __future__ import annotations

import os
import select
import sys
import termios
import time
import tty

from rva import health, keys
from rva.connection import TRANSIENT, connect

HINT = "q quits"


def screen(
    latest: dict[str, float], camera: str, people: int | None, age_s: float | None = None
) -> str:
    """One screen; numbers older than health.RESULT_STALE_S are not shown, older ones than
    health.VALUE_STALE_S are marked, as on the page."""
    state = health.freshness(age_s)
    if state == "idle":
        latest, people = {}, None

    def v(name: str) -> str:
        return f"{latest[name]:8.1f}" if name in latest else "       -"

    measured = "" if age_s is None else f"   measured {age_s:.0f} s ago"
    rows = [
        f"RVA top — camera {camera} — {time.strftime('%H:%M:%S')}",
        f"people   {people if people is not None else '-':>8}{measured}"
        + {"stale": " (stale)", "idle": " (detector idle)"}.get(state, ""),
        f"in fps   {v('in_fps')}    out fps  {v('out_fps')}",
        "stage ms " + "  ".join(f"{s} {v('prf_' + s).strip()}" for s in keys.STAGES),
    ]
    return "\n".join(rows)


class _Keys:
    """The terminal's keys one at a time (cbreak: Ctrl-C still interrupts), restored after."""

    def __init__(self) -> None:
        self.fd = sys.stdin.fileno()
        self.saved = termios.tcgetattr(self.fd)
        tty.setcbreak(self.fd)

    def quit_within(self, seconds: float) -> bool:
        """Wait up to seconds for a key; True when it was q."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready and os.read(self.fd, 1) in (b"q", b"Q"):
                return True
        return False

    def restore(self) -> None:
        termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)


def run(url: str, camera: str, *, interval: float = 1.0, once: bool = False) -> int:
    client = connect(url, name="rva-top", timeout=3)
    interactive = sys.stdout.isatty() and not once
    keyboard = _Keys() if interactive and sys.stdin.isatty() else None
    try:
        while True:
            try:
                raw = client.hgetall(keys.latest(camera))
                latest = {k.decode(): float(v) for k, v in raw.items()}
                newest = client.xrevrange(keys.results(camera), count=1)
                people = int(newest[0][1].get(b"people", 0)) if newest else None
                age = None
                if "ts" in latest:
                    age = max(0.0, (health.server_ms(client) - latest["ts"]) / 1000)
                text = screen(latest, camera, people, age)
            except TRANSIENT as exc:
                text = f"RVA top — Redis unreachable: {exc}"
            if interactive:
                sys.stdout.write("\x1b[H\x1b[2J")
                text += f"\n\n{HINT if keyboard else 'Ctrl-C quits'}"
            print(text, flush=True)
            if once:
                return 0
            if keyboard:
                if keyboard.quit_within(interval):
                    return 0
            else:
                time.sleep(interval)
    except KeyboardInterrupt:
        return 0
    finally:
        if keyboard:
            keyboard.restore()
