"""Optional HTTP Basic authentication for rva web, and the users file `rva web passwd` keeps.

The users file ([web] users_file, /etc/rva/web-users) has one line per user:
``name:scrypt$<log2 N>$<r>$<p>$<salt, base64>$<key, base64>``, a 16-byte random salt each,
scrypt from the standard library. There is no default user and no default password: with no
users file (or an empty one) the page is open, as before, and rva web says so in its log.

With users, every request but /healthz (and /metrics while [web] metrics_public) needs HTTP Basic
credentials; anything else gets 401 with ``WWW-Authenticate: Basic``, so the browser asks. A
password is checked with scrypt once per process (one at a time, so guessing costs at most one
core; a few requests may wait for it, more are told to retry; an address that keeps guessing
wrong is refused for a growing time, without scrypt, and logged); after that the same
credentials are recognised by an HMAC under a per-process key, compared in constant time, and a
changed password needs the KDF again. The file is read again
when it changes, so `rva web passwd` takes effect without a restart. A users file that exists
but cannot be read or holds no valid line shuts everything but /healthz (fail closed).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import grp
import hashlib
import hmac
import json
import logging
import math
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

USER_RE = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
LOG2_N, R, P = 15, 8, 1  # 32 MiB and about 0.4 s on a 2-core x86; stored per hash
REALM = "RVA"


class UsersFileError(Exception):
    """A problem with the users file or a user name / password, phrased for a person."""


def hash_password(password: str, *, log2_n: int = LOG2_N) -> str:
    salt = secrets.token_bytes(16)
    key = _scrypt(password, salt, log2_n, R, P)
    b64 = base64.b64encode
    return f"scrypt${log2_n}${R}${P}${b64(salt).decode()}${b64(key).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        kind, log2_n, r, p, salt, key = stored.split("$")
        if kind != "scrypt" or not (10 <= int(log2_n) <= 20 and 1 <= int(r) <= 32):
            return False
        expected = base64.b64decode(key, validate=True)
        got = _scrypt(password, base64.b64decode(salt, validate=True), int(log2_n), int(r), int(p))
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(got, expected)


def _scrypt(password: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    n = 1 << log2_n
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, dklen=32, maxmem=2 * 128 * r * n + (1 << 20)
    )


_DUMMY = hash_password("not a password: keeps unknown users as slow as known ones")


def check_user(name: str) -> str:
    if not USER_RE.match(name):
        raise UsersFileError(
            f"user name {name!r}: use 1 to 64 letters, digits, '.', '_', '@' or '-'"
        )
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise UsersFileError(f"password too short: at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise UsersFileError(f"password too long: at most {MAX_PASSWORD} characters")
    if any(c in password for c in "\r\n\0"):
        raise UsersFileError("password: no line breaks or NUL characters")
    return password


def read_users(path: Path) -> dict[str, str]:
    """name -> stored hash. A missing file is no users; an unreadable one raises OSError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    users: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, stored = line.partition(":")
        if not sep or not USER_RE.match(name) or not stored.startswith("scrypt$"):
            log.warning("%s:%d: not 'user:scrypt$...': line ignored", path, number)
            continue
        users[name] = stored
    return users


def write_users(path: Path, users: dict[str, str]) -> None:
    """Atomically, keeping an existing file's owner, group and mode (new: 0640, group rva)."""
    try:
        st: os.stat_result | None = path.stat()
    except FileNotFoundError:
        st = None
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        "# rva web users: name:scrypt$log2N$r$p$salt$key. Managed by `rva web passwd`.",
        *(f"{name}:{stored}" for name, stored in sorted(users.items())),
    ]
    fd, tmp = tempfile.mkstemp(prefix=".web-users.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write("\n".join(lines) + "\n")
            out.flush()
            os.fsync(out.fileno())
        if st is not None:
            os.chmod(tmp, st.st_mode & 0o7777)
            with contextlib.suppress(PermissionError):
                os.chown(tmp, st.st_uid, st.st_gid)
        else:
            os.chmod(tmp, 0o640)
            if os.geteuid() == 0:  # the service runs as rva: it must be able to read it
                with contextlib.suppress(KeyError):
                    os.chown(tmp, 0, grp.getgrnam("rva").gr_gid)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def set_password(path: Path, name: str, password: str) -> bool:
    """Set (or add) a user's password; True when the user is new."""
    users = read_users(path)
    new = check_user(name) not in users
    users[name] = hash_password(check_password(password))
    write_users(path, users)
    return new


def delete_user(path: Path, name: str) -> None:
    users = read_users(path)
    if name not in users:
        raise UsersFileError(f"no user {name!r} in {path}")
    del users[name]
    write_users(path, users)


# Wrong passwords: each address may guess FREE_GUESSES times; then each further wrong guess
# locks it out for 1, 2, 4 ... s (up to LOCKOUT_MAX_S), answered 429 with Retry-After at once,
# without the KDF. At most KDF_QUEUE requests wait for the KDF (one runs at a time): more are
# answered 503 with Retry-After, so that a flood from many addresses never queues every
# worker thread behind scrypt (valid users verified before skip the KDF altogether).
# Requests carrying the very credentials being checked now (a browser's first load after the
# login dialog sends the page's scripts, styles and API calls at once) wait for that check
# instead of queueing their own, up to KDF_JOIN of them.
FREE_GUESSES = 3
LOCKOUT_MAX_S = 60.0
KDF_QUEUE = 3
KDF_JOIN = 16
MAX_TRACKED = 4096  # addresses remembered; the one locked out longest ago makes room


@dataclass
class _Check:
    """One password check in flight, which requests with the same credentials wait for."""

    done: threading.Event = field(default_factory=threading.Event)
    ok: bool = False
    joined: int = 0


@dataclass(frozen=True)
class Refusal:
    status: int
    retry_s: float
    why: str

    @property
    def status_line(self) -> str:
        return "429 Too Many Requests" if self.status == 429 else "503 Service Unavailable"


class Guard:
    """WSGI middleware: Basic authentication when the users file has users."""

    def __init__(self, path: Path, open_paths: Iterable[str]) -> None:
        self.path, self.open_paths = path, frozenset(open_paths)
        self._lock, self._kdf = threading.Lock(), threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._checked = 0.0
        self._users: dict[str, str] = {}
        self._problem: str | None = None
        self._key = secrets.token_bytes(32)
        self._verified: dict[str, bytes] = {}
        self._fails: dict[str, tuple[int, float]] = {}  # address -> (wrong guesses, locked until)
        self._kdf_busy = 0  # requests running or waiting for the KDF
        self._checking: dict[bytes, _Check] = {}  # by _seen(): the checks in flight
        self.refresh(force=True)
        if self._problem:
            log.error("web users: %s: everything but /healthz refused", self._problem)
        elif self._users:
            log.info("web users: %d in %s: HTTP Basic authentication on", len(self._users), path)
        else:
            log.warning(
                "no web users in %s: the page, video and API are open to anyone who can reach "
                "them; add one with `rva web passwd USER`",
                path,
            )

    @property
    def enabled(self) -> bool:
        self.refresh()
        return bool(self._users) or self._problem is not None

    def refresh(self, force: bool = False) -> None:
        """Read the file again when it changed (looked at no more than once a second)."""
        now = time.monotonic()
        with self._lock:
            if not force and now - self._checked < 1.0:
                return
            self._checked = now
            try:
                st = self.path.stat()
                stamp: tuple[int, int, int] | None = (st.st_ino, st.st_size, st.st_mtime_ns)
            except FileNotFoundError:
                stamp = None
            except OSError as exc:
                self._problem, self._stamp = f"{self.path}: {exc.strerror}", None
                return
            if stamp == self._stamp and not force:
                return
            try:
                users = read_users(self.path)
            except (OSError, UnicodeDecodeError) as exc:
                self._problem = f"{self.path}: cannot read: {getattr(exc, 'strerror', exc)}"
                self._stamp = None
                return
            problem = None
            if stamp is not None and not users:  # on, but nobody could log in: closed
                problem = f"{self.path} has no user (remove the file to turn authentication off)"
            if (users, problem) != (self._users, self._problem):
                log.info("web users: %d in %s", len(users), self.path)
            self._users, self._problem, self._stamp = users, problem, stamp

    def _credentials(self, authorization: str) -> tuple[str, str] | None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "basic" or not token:
            return None
        try:
            decoded = base64.b64decode(token.strip(), validate=True).decode()
            name, sep, password = decoded.partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        return (name, password) if sep else None

    def _seen(self, name: str, password: str) -> bytes:
        stored = self._users.get(name)
        return hmac.new(
            self._key, f"{name}\0{password}\0{stored}".encode(), hashlib.sha256
        ).digest()

    def user(self, authorization: str, address: str = "") -> str | Refusal | None:
        """The user these Basic credentials belong to; None when they are wrong; a Refusal
        when the password cannot be checked now (this address guessed wrong too often, or the
        KDF has a queue): answered at once, so that guessing never holds a worker thread."""
        found = self._credentials(authorization)
        if found is None:
            return None
        name, password = found
        seen = self._seen(name, password)
        if name in self._users and hmac.compare_digest(seen, self._verified.get(name, b"")):
            return name  # verified before: no KDF, no throttle
        now = time.monotonic()
        with self._lock:
            until = self._fails.get(address, (0, 0.0))[1]
            if until > now:
                return Refusal(429, until - now, "too many failed logins from this address")
            check = self._checking.get(seen)
            if check is not None:  # the same credentials are being checked: wait for that
                if check.joined >= KDF_JOIN:
                    return Refusal(503, 1.0, "busy checking passwords")
                check.joined += 1
            elif self._kdf_busy >= KDF_QUEUE:
                return Refusal(503, 1.0, "busy checking passwords")
            else:
                self._kdf_busy += 1
                self._checking[seen] = _Check()
        if check is not None:
            check.done.wait()  # set in the finally below, whatever happens to the check
            return name if check.ok else None  # a wrong guess is counted once, by its check
        ok, stored = False, None
        try:
            with self._kdf:  # one scrypt at a time: wrong guesses cost one core at most
                stored = self._users.get(name)
                ok = verify_password(password, stored if stored is not None else _DUMMY)
        finally:
            with self._lock:
                self._kdf_busy -= 1
                done = self._checking.pop(seen)
                done.ok = ok and stored is not None
                if done.ok:
                    self._verified[name] = seen
                    self._fails.pop(address, None)
                else:
                    fails = self._fails.get(address, (0, 0.0))[0] + 1
                    self._failed(address, fails, time.monotonic())
            done.done.set()
        return name if done.ok else None

    def _failed(self, address: str, fails: int, now: float) -> None:
        """Count a wrong password from ``address``; past FREE_GUESSES, each further one locks
        the address out for twice as long (up to LOCKOUT_MAX_S), said once per lock-out."""
        if len(self._fails) >= MAX_TRACKED and address not in self._fails:
            oldest = min(self._fails, key=lambda a: self._fails[a][1])
            del self._fails[oldest]
        until = 0.0
        if fails > FREE_GUESSES:
            lockout = min(2.0 ** (fails - FREE_GUESSES - 1), LOCKOUT_MAX_S)
            until = now + lockout
            log.warning(
                "web: %d wrong passwords from %s: its logins refused for %.0f s",
                fails,
                address or "?",
                lockout,
            )
        self._fails[address] = (fails, until)

    def __call__(self, app: Callable[..., Any]) -> Callable[..., Any]:
        def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            if environ.get("PATH_INFO", "/") in self.open_paths or not self.enabled:
                return app(environ, start_response)
            headers: list[tuple[str, str]] = []
            if self._problem is None:
                who = self.user(
                    environ.get("HTTP_AUTHORIZATION", ""), environ.get("REMOTE_ADDR", "")
                )
                if isinstance(who, str):
                    environ["REMOTE_USER"] = who
                    return app(environ, start_response)
                if isinstance(who, Refusal):
                    status, body = who.status_line, {"error": who.why}
                    headers = [("Retry-After", str(max(1, math.ceil(who.retry_s))))]
                else:
                    status, body = "401 Unauthorized", {"error": "authentication required"}
                    headers = [("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"')]
            else:
                status, body = "503 Service Unavailable", {"error": self._problem}
            headers += [("Content-Type", "application/json"), ("Cache-Control", "no-store")]
            start_response(status, headers)
            return [json.dumps(body).encode()]

        return guarded
