"""`rva` (the console script) and `python -m rva`."""

from __future__ import annotations

import os
import signal


def _leave(_signum: int, _frame: object) -> None:
    os._exit(130)  # Ctrl-C while Python is still importing: nothing to clean up yet


def run() -> int:
    """rva.cli.main, with Ctrl-C at any moment ending it quietly (130), never a traceback."""
    interactive = signal.getsignal(signal.SIGINT) is signal.default_int_handler
    if interactive:  # not when SIGINT is ignored (a background job of a script)
        signal.signal(signal.SIGINT, _leave)
    from rva.cli import main

    if interactive:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return main()
    except KeyboardInterrupt:  # before main's own handler is in place (the config's checks)
        return 130


if __name__ == "__main__":
    raise SystemExit(run())
