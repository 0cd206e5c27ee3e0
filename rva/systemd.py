"""Talk to systemd: sd_notify (READY, STATUS, WATCHDOG) and journald logging.

Uses python-systemd when installed; otherwise speaks the notify datagram protocol itself.
Outside systemd (no NOTIFY_SOCKET) every call does nothing, and nothing here ever raises.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time

try:  # pragma: no cover - depends on the host
    from systemd import daemon as _sd_daemon
    from systemd import journal as _sd_journal
except ImportError:
    _sd_daemon = None
    _sd_journal = None


def notify(state: str) -> bool:
    """Send one sd_notify message; False when not under systemd or when sending failed."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    try:
        if _sd_daemon is not None:
            return bool(_sd_daemon.notify(state))
        if address.startswith("@"):
            address = "\0" + address[1:]
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
        return True
    except Exception:
        return False


STATUS_EVERY_S = 1.0


class Notifier:
    """READY once, STATUS on change but at most once a second (a gear's status changes with
    every frame: each message is work for systemd too), WATCHDOG no more often than needed."""

    def __init__(self) -> None:
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        wanted = usec and (not pid or pid == str(os.getpid()))
        self.watchdog_interval = int(usec) / 2e6 if wanted and usec else None
        self._last_ping = 0.0
        self._status = ""  # the newest status; sent when it is not the one systemd has
        self._sent, self._sent_at = "", 0.0

    def ready(self, status: str) -> None:
        self._status = self._sent = status
        notify(f"READY=1\nSTATUS={status}")

    def status(self, status: str | None = None) -> None:
        """A new status line; sent now, or with a later call (any status() or tick, the newest
        line) once STATUS_EVERY_S has passed since the last one sent."""
        if status is not None:
            self._status = status
        now = time.monotonic()
        if self._status != self._sent and now - self._sent_at >= STATUS_EVERY_S:
            self._sent, self._sent_at = self._status, now
            notify(f"STATUS={self._status}")

    def stopping(self, status: str = "stopping") -> None:
        notify(f"STOPPING=1\nSTATUS={status}")

    def watchdog(self) -> None:
        if self.watchdog_interval is None:
            return
        now = time.monotonic()
        if now - self._last_ping >= self.watchdog_interval:
            self._last_ping = now
            notify("WATCHDOG=1")


def setup_logging(level: str = "info", service: str = "rva") -> None:
    """Log to journald with structured fields under systemd, else to stderr."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    for old in list(root.handlers):
        root.removeHandler(old)
    handler: logging.Handler
    if _sd_journal is not None and os.environ.get("JOURNAL_STREAM"):
        handler = _sd_journal.JournalHandler(SYSLOG_IDENTIFIER=service)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        fmt = "%(levelname)s %(name)s: %(message)s"
        if not os.environ.get("JOURNAL_STREAM"):
            fmt = "%(asctime)s " + fmt
        handler.setFormatter(logging.Formatter(fmt))
    root.addHandler(handler)
