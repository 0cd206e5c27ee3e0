"""Password guessing against a real `rva web` with users: it must never take the server down.
Every client address gets a few guesses, then is refused at once (429, Retry-After) for a
growing time without the KDF; at most a few requests wait for the KDF, the rest are told to
retry (503); /healthz and an already verified user are never held up. Clients come from
distinct loopback addresses (127.0.0.2 ...), as guessers on a LAN would."""

from __future__ import annotations

import base64
import http.client
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import RedisServer, Services, free_port, wait_for, write_config

PASSWORD = "correct horse battery"
PROBE_TIMEOUT_S = 5.0  # what the unprotected server missed: /healthz timing out under a flood


def _get(
    port: int, path: str, auth: str | None = None, source: str = "127.0.0.1"
) -> tuple[int, dict[str, str]]:
    conn = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=PROBE_TIMEOUT_S, source_address=(source, 0)
    )
    try:
        headers = (
            {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()} if auth else {}
        )
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


def _web(
    tmp_path: Path, redis_plain: RedisServer, vtest_path: Path, services: Callable[[Path], Services]
) -> tuple[int, Services]:
    users = tmp_path / "web-users"
    port = free_port()
    cfg = write_config(
        tmp_path / "rva.toml", redis_plain.url, vtest_path,
        web={"host": "127.0.0.1", "port": port, "users_file": str(users)},
    )  # fmt: skip
    subprocess.run(
        [sys.executable, "-m", "rva", "--config", str(cfg), "web", "passwd", "alice"],
        input=PASSWORD + "\n", text=True, check=True, capture_output=True,
    )  # fmt: skip
    assert users.exists()
    svc = services(cfg)
    svc.start("web")
    wait_for(lambda: _get(port, "/healthz")[0] in (200, 503), 60, what="rva web up")
    return port, svc


def test_an_address_that_keeps_guessing_is_refused_at_once_and_logged(
    redis_plain: RedisServer, tmp_path: Path, vtest_path: Path, services: Callable[[Path], Services]
) -> None:
    port, svc = _web(tmp_path, redis_plain, vtest_path, services)
    wrong = "alice:not the password"
    statuses = [_get(port, "/api/summary", wrong, "127.0.0.9")[0] for _ in range(4)]
    assert statuses == [401, 401, 401, 401], statuses  # the 4th locks the address out for 1 s
    status, headers = _get(port, "/api/summary", wrong, "127.0.0.9")
    assert status == 429 and int(headers["retry-after"]) >= 1, (status, headers)
    # Another address is not affected, and the right password works there at once.
    assert _get(port, "/api/summary", f"alice:{PASSWORD}", "127.0.0.10")[0] == 200
    time.sleep(1.2)  # the lock-out has passed: the right password works again from there
    assert _get(port, "/api/summary", f"alice:{PASSWORD}", "127.0.0.9")[0] == 200
    log = next(p for name, _proc, p in svc.procs if name == "web").read_text()
    assert "wrong passwords from 127.0.0.9: its logins refused for 1 s" in log, log[-2000:]


def test_a_flood_of_wrong_passwords_never_holds_up_healthz_or_a_known_user(
    redis_plain: RedisServer, tmp_path: Path, vtest_path: Path, services: Callable[[Path], Services]
) -> None:
    port, _svc = _web(tmp_path, redis_plain, vtest_path, services)
    assert _get(port, "/api/summary", f"alice:{PASSWORD}", "127.0.0.250")[0] == 200  # verified
    answers: list[int] = []
    failures: list[str] = []
    stop = threading.Event()

    def guesser(n: int) -> None:
        source = f"127.0.0.{2 + n}"
        for _ in range(4):
            try:
                status, headers = _get(port, "/api/summary", f"alice:guess{n}", source)
                answers.append(status)
                if status in (429, 503) and "retry-after" not in headers:
                    failures.append(f"{status} without Retry-After")
            except OSError as exc:  # a reset or a timeout: what the flood did before
                failures.append(f"guesser {source}: {exc!r}")

    def probe(what: str, path: str, auth: str | None, source: str, want: int) -> None:
        while not stop.is_set():
            try:
                status, _ = _get(port, path, auth, source)
                if status != want:
                    failures.append(f"{what}: {status}")
            except OSError as exc:
                failures.append(f"{what}: {exc!r}")
            time.sleep(0.2)

    known = ("alice", "/api/summary", f"alice:{PASSWORD}", "127.0.0.250", 200)
    probes = [
        threading.Thread(target=probe, args=("/healthz", "/healthz", None, "127.0.0.1", 200)),
        threading.Thread(target=probe, args=known),
    ]
    guessers = [threading.Thread(target=guesser, args=(n,)) for n in range(60)]
    for t in probes + guessers:
        t.start()
    for t in guessers:
        t.join(120)
    stop.set()
    for t in probes:
        t.join(30)
    assert not failures, failures[:10]
    assert len(answers) == 240 and set(answers) <= {401, 429, 503}, sorted(set(answers))
    assert answers.count(503) > 0  # the KDF's queue was full: told to retry, not queued


def test_a_browsers_first_load_after_the_login_dialog_is_not_refused(
    redis_plain: RedisServer, tmp_path: Path, vtest_path: Path, services: Callable[[Path], Services]
) -> None:
    """A browser that has just been given the password sends the page's scripts, styles and API
    calls at once, all with credentials not yet verified: they wait for one check of them (one
    KDF), instead of filling the KDF's queue and getting 503s (the page then broke: its camera
    list was refused and it never started)."""
    port, _svc = _web(tmp_path, redis_plain, vtest_path, services)
    paths = ["/", "/static/app.js", "/static/shapes.js", "/static/reports.js", "/static/style.css"]
    paths += ["/api/cameras", "/api/summary", "/api/counts", "/api/shapes?camera=0"] * 2

    def burst(auth: str, source: str) -> list[tuple[str, int]]:
        answers: list[tuple[str, int]] = []
        start = threading.Barrier(len(paths))

        def load(path: str) -> None:
            start.wait()
            answers.append((path, _get(port, path, auth, source)[0]))

        threads = [threading.Thread(target=load, args=(p,)) for p in paths]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(answers) == len(paths)
        return sorted(answers)

    answers = burst(f"alice:{PASSWORD}", "127.0.0.77")
    assert all(status == 200 for _p, status in answers), answers
    # The same, all at once with a wrong password: every one told 401, none 503, and counted as
    # one wrong guess (the address is not locked out by one mistyped dialog).
    answers = burst("alice:mistyped", "127.0.0.78")
    assert {status for _p, status in answers} == {401}, answers
    assert _get(port, "/api/summary", f"alice:{PASSWORD}", "127.0.0.78")[0] == 200
