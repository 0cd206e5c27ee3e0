"""Optional HTTP authentication of rva web: `rva web passwd` (real command, real files, a real
pty for the interactive case), then real `rva web` processes over real HTTP and in headless
Chromium (tests/cdp.py), against real redis-server and a real capture of vtest.avi.
"""

from __future__ import annotations

import base64
import json
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cdp import CHROMIUM, Browser, Credentials
from tests.conftest import (
    CACHE,
    MODEL_CACHE,
    RedisServer,
    Services,
    _server,
    free_port,
    wait_for,
    write_config,
)
from tests.services.web.test_web import http_get

PASSWORD = "correct horse battery"
pytestmark = pytest.mark.timeout(600)
OTHER = "tr0ub4dor&3-long"


@dataclass
class Stack:
    """Real Redis with TimeSeries, `rva init` and the parts asked for, running on vtest.avi;
    `rva web` processes are started per test with their own [web] settings."""

    tmp: Path
    server: RedisServer
    services: Services

    def config(self, name: str, **web: object) -> tuple[Path, int]:
        port = free_port()
        path = write_config(
            self.tmp / f"{name}.toml",
            self.server.url,
            CACHE / "footage" / "vtest.avi",
            web={"host": "127.0.0.1", "port": port, **web},
        )
        return path, port

    def web(self, name: str, **web: object) -> Web:
        cfg, port = self.config(name, **web)
        return self.web_from(cfg, port, name)

    def web_from(self, cfg: Path, port: int, name: str) -> Web:
        logs = self.tmp / name
        logs.mkdir()
        proc = Services(logs, cfg)
        self.services.procs.append(("web", proc.start("web"), proc.procs[-1][2]))
        wait_for(lambda: http_get(port, "/healthz", timeout=2)[0] == 200, 60, what="rva web")
        return Web(port, cfg, proc)


@dataclass
class Web:
    port: int
    config: Path
    services: Services

    def get(
        self, path: str, auth: tuple[str, str] | None = None, header: str | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        headers = {}
        if auth is not None:
            headers["Authorization"] = (
                "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            )
        if header is not None:
            headers["Authorization"] = header
        try:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            body = resp.read(200_000) if path.startswith("/video") else resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
        finally:
            conn.close()

    def passwd(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return passwd(self.config, *args, stdin=stdin)


def passwd(config: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RVA_CONFIG": str(config), "RVA_MODEL_CACHE": str(MODEL_CACHE)}
    return subprocess.run(
        [sys.executable, "-m", "rva", "web", "passwd", *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@contextmanager
def running_stack(tmp: Path, parts: tuple[str, ...] = ("capture",)) -> Iterator[Stack]:
    server_gen = _server(tmp, with_timeseries=True)
    server = next(server_gen)
    cfg = write_config(tmp / "base.toml", server.url, CACHE / "footage" / "vtest.avi")
    svc = Services(tmp, cfg)
    try:
        svc.run("init")
        for part in parts:
            svc.start(part)
        yield Stack(tmp, server, svc)
    except BaseException:
        print(svc.logs())
        raise
    finally:
        svc.stop_all()
        next(server_gen, None)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("auth-stack")) as s:
        yield s


# -- rva web passwd -------------------------------------------------------------------------


def test_passwd_reads_standard_input_and_stores_only_a_salted_scrypt_hash(tmp_path: Path) -> None:
    users = tmp_path / "etc" / "web-users"
    cfg = tmp_path / "rva.toml"
    cfg.write_text(f'[web]\nusers_file = "{users}"\n')
    done = passwd(cfg, "alice", stdin=PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    assert passwd(cfg, "bob", stdin=PASSWORD + "\n").returncode == 0
    text = users.read_text()
    assert PASSWORD not in text
    lines = {
        line.split(":")[0]: line.split(":", 1)[1]
        for line in text.splitlines()
        if not line.startswith("#")
    }
    assert set(lines) == {"alice", "bob"}
    for stored in lines.values():
        kind, log2_n, r, p, salt, key = stored.split("$")
        assert kind == "scrypt" and int(log2_n) >= 15 and (r, p) == ("8", "1")
        assert len(base64.b64decode(salt)) == 16 and len(base64.b64decode(key)) == 32
    # The same password, a different salt: different hashes.
    assert lines["alice"] != lines["bob"]
    assert users.stat().st_mode & 0o777 == 0o640

    short = passwd(cfg, "carol", stdin="short\n")
    assert short.returncode == 1 and "at least 8" in short.stderr
    bad = passwd(cfg, "no:colon", stdin=PASSWORD + "\n")
    assert bad.returncode == 1 and "user name" in bad.stderr
    assert passwd(cfg, "--delete", "bob").returncode == 0
    assert "bob:" not in users.read_text() and "alice:" in users.read_text()


def _pty_passwd(cfg: Path, answers: list[str]) -> tuple[int, str]:
    """`rva web passwd alice` on a terminal: answer each prompt, return (exit code, screen)."""
    env = {**os.environ, "RVA_CONFIG": str(cfg), "RVA_MODEL_CACHE": str(MODEL_CACHE)}
    pid, fd = pty.fork()
    if pid == 0:  # the child: a terminal on stdin/stdout/stderr
        os.execve(sys.executable, [sys.executable, "-m", "rva", "web", "passwd", "alice"], env)
    screen = b""
    pending = list(answers)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        screen += chunk
        # Answer a prompt once it is on the screen: getpass flushes what was typed before it.
        if pending and screen.endswith(b": "):
            os.write(fd, pending.pop(0).encode() + b"\n")
    reaped, status = os.waitpid(pid, os.WNOHANG)  # the child may have exited already
    if reaped == 0:
        os.kill(pid, 9)  # still waiting for input: the test fails below
        _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), screen.decode(errors="replace")


def test_passwd_print_makes_a_users_line_and_writes_nothing(tmp_path: Path) -> None:
    """For Ansible's rva_app_web_users: the line on standard output, no users file touched."""
    from rva.services.web import auth as webauth

    users = tmp_path / "web-users"
    cfg = tmp_path / "rva.toml"
    cfg.write_text(f'[web]\nusers_file = "{users}"\n')
    made = passwd(cfg, "alice", "--print", stdin=PASSWORD + "\n")
    assert made.returncode == 0, made.stderr
    name, stored = made.stdout.strip().split(":", 1)
    assert name == "alice" and webauth.verify_password(PASSWORD, stored)
    assert not webauth.verify_password("not the password", stored)
    assert not users.exists()
    assert passwd(cfg, "alice", "--print", stdin="short\n").returncode == 1
    both = passwd(cfg, "alice", "--print", "--delete")
    assert both.returncode == 2 and "do not go together" in both.stderr


def test_passwd_on_a_terminal_asks_twice_and_echoes_nothing(tmp_path: Path) -> None:
    users = tmp_path / "web-users"
    cfg = tmp_path / "rva.toml"
    cfg.write_text(f'[web]\nusers_file = "{users}"\n')
    code, screen = _pty_passwd(cfg, [PASSWORD, PASSWORD])
    assert code == 0, screen
    assert "New password for alice:" in screen and "Again:" in screen
    assert PASSWORD not in screen, "the password was echoed"
    assert "alice:scrypt$" in users.read_text()

    before = users.read_text()
    code, screen = _pty_passwd(cfg, [OTHER, OTHER + "x"])
    assert code == 1 and "differ" in screen
    assert OTHER not in screen
    assert users.read_text() == before, "a mistyped confirmation changed the password"


def test_config_check_names_the_web_keys(tmp_path: Path) -> None:
    cfg = tmp_path / "rva.toml"
    cfg.write_text('[web]\nusers_file = "web-users"\nvideo = "hidden"\nmetrics_public = "maybe"\n')
    env = {**os.environ, "RVA_CONFIG": str(cfg)}
    done = subprocess.run(
        [sys.executable, "-m", "rva", "config", "check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert f"{cfg}: web.users_file: must be an absolute path" in done.stderr
    assert f"{cfg}: web.video: Input should be 'annotated', 'blurred' or 'off'" in done.stderr
    assert f"{cfg}: web.metrics_public:" in done.stderr


# -- rva web with users, over HTTP ----------------------------------------------------------


def test_users_turn_basic_authentication_on_for_everything_but_healthz_and_metrics(
    stack: Stack,
) -> None:
    users = stack.tmp / "users-a"
    web = stack.web("auth-a", users_file=str(users))
    # No users file: open, as before.
    assert web.get("/")[0] == 200
    assert web.get("/api/cameras")[0] == 200

    assert web.passwd("alice", stdin=PASSWORD + "\n").returncode == 0
    protected = [
        "/",
        "/static/app.js",
        "/api/cameras",
        "/api/summary?camera=0",
        "/api/people?minutes=5",
        "/video?camera=0",
        "/no/such/page",
    ]
    # Picked up without a restart.
    wait_for(lambda: web.get("/")[0] == 401, 10, what="authentication on after rva web passwd")
    for path in protected:
        status, headers, body = web.get(path)
        assert status == 401, (path, status, body[:200])
        assert headers["www-authenticate"].startswith('Basic realm="RVA"'), headers
        assert json.loads(body) == {"error": "authentication required"}
        for garbage in ("Basic !!!", "Basic " + base64.b64encode(b"nocolon").decode(), "Bearer x"):
            assert web.get(path, header=garbage)[0] == 401, (path, garbage)
    # Wrong credentials: 401, three times free for an address; the fourth locks it out for a
    # second (test_auth_flood.py has the rest of the throttle).
    for wrong in (("alice", OTHER), ("mallory", PASSWORD), ("alice", ""), ("alice", "x" * 8)):
        assert web.get("/api/cameras", auth=wrong)[0] == 401, wrong
    status, headers, _body = web.get("/api/cameras", auth=("alice", OTHER))
    assert status == 429 and headers["retry-after"] == "1", (status, headers)
    assert web.get("/healthz")[0] == 200
    assert web.get("/metrics")[0] == 200
    time.sleep(1.2)

    # The right credentials: everything as before.
    good = ("alice", PASSWORD)
    status, _h, body = web.get("/", auth=good)
    assert status == 200 and b"<title>" in body
    assert web.get("/static/app.js", auth=good)[0] == 200
    status, _h, body = web.get("/api/cameras", auth=good)
    assert status == 200 and json.loads(body) == {"cameras": ["0"], "video": "annotated"}
    status, headers, body = web.get("/video?camera=0", auth=good)
    assert status == 200 and b"\xff\xd8" in body, (status, body[:100])
    assert web.get("/no/such/page", auth=good)[0] == 404

    # A new password: the old one stops working at once, without a restart.
    assert web.passwd("alice", stdin=OTHER + "\n").returncode == 0
    wait_for(lambda: web.get("/", auth=good)[0] == 401, 10, what="the old password refused")
    assert web.get("/", auth=("alice", OTHER))[0] == 200

    # The last user removed: closed (503), not open, until the file is removed.
    assert web.passwd("--delete", "alice").returncode == 0
    wait_for(lambda: web.get("/", auth=("alice", OTHER))[0] == 503, 10, what="fail closed")
    assert web.get("/healthz")[0] == 200
    users.unlink()
    wait_for(lambda: web.get("/")[0] == 200, 10, what="open again once the file is gone")


def test_an_unreadable_users_file_fails_closed(stack: Stack) -> None:
    users = stack.tmp / "users-unreadable"
    users.mkdir()  # reading a directory fails: as a file rva web may not read would
    web = stack.web("auth-unreadable", users_file=str(users))
    status, _headers, body = web.get("/")
    assert status == 503 and str(users) in json.loads(body)["error"], body
    assert web.get("/api/cameras", auth=("alice", PASSWORD))[0] == 503
    assert web.get("/healthz")[0] == 200


def test_metrics_can_need_credentials_too(stack: Stack) -> None:
    users = stack.tmp / "users-m"
    cfg, _port = stack.config("auth-m0", users_file=str(users))
    assert passwd(cfg, "prometheus", stdin=PASSWORD + "\n").returncode == 0
    web = stack.web("auth-m", users_file=str(users), metrics_public=False)
    assert web.get("/metrics")[0] == 401
    status, _h, body = web.get("/metrics", auth=("prometheus", PASSWORD))
    assert status == 200 and b"rva_redis_up" in body
    assert web.get("/healthz")[0] == 200


# -- in headless Chromium -------------------------------------------------------------------


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not installed (apt install chromium)")
    b = Browser.start(tmp_path)
    try:
        yield b
    finally:
        b.close()


@pytest.fixture(scope="module")
def protected_web(stack: Stack) -> Web:
    users = stack.tmp / "users-browser"
    cfg, _port = stack.config("auth-b0", users_file=str(users))
    assert passwd(cfg, "alice", stdin=PASSWORD + "\n").returncode == 0
    return stack.web("auth-b", users_file=str(users))


def test_the_browser_is_asked_for_credentials(protected_web: Web, browser: Browser) -> None:
    browser.open(f"http://127.0.0.1:{protected_web.port}/", settle=3)
    assert browser.auth_challenges, "the browser was never asked for credentials"
    challenge = browser.auth_challenges[0]
    assert challenge["scheme"].lower() == "basic" and challenge["realm"] == "RVA", challenge
    assert challenge["source"] == "Server"
    # The login dialog dismissed: the 401 body, nothing of the page, no video.
    text = browser.evaluate("document.body.innerText")
    assert "authentication required" in text
    assert browser.evaluate("document.getElementById('video')") is None


def test_the_page_loads_with_credentials(protected_web: Web, browser: Browser) -> None:
    browser.credentials = Credentials("alice", PASSWORD)
    browser.open(f"http://127.0.0.1:{protected_web.port}/", settle=8)
    assert browser.auth_challenges, "the browser was never asked for credentials"
    assert all(c["realm"] == "RVA" for c in browser.auth_challenges)
    # Everything the page asked for was served: page, script, API, the video.
    served = f"http://127.0.0.1:{protected_web.port}"
    statuses = {
        url.removeprefix(served): s
        for url, s in browser.responses.items()
        if url.startswith(served)
    }
    others = [url for url in browser.responses if not url.startswith(served)]
    assert all(u.startswith("data:") for u in others), others  # what the page draws itself
    assert statuses.get("/") == 200, statuses
    assert statuses.get("/static/app.js") == 200, statuses
    assert any(u.startswith("/api/summary") and s == 200 for u, s in statuses.items()), statuses
    assert not [u for u, s in statuses.items() if s == 401 and "favicon" not in u], statuses
    width = browser.evaluate("document.getElementById('video').naturalWidth")
    assert width == 768, f"the video did not load (naturalWidth {width})"
    assert browser.evaluate("document.getElementById('status').textContent") not in (
        "…",
        "unreachable",
    )
