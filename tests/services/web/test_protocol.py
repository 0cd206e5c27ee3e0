"""rva web's HTTP/1.x parsing, over raw sockets against a real `rva web`: malformed requests
get a status line and 400 (never an HTML body alone), smuggling shapes are refused, absolute-
form targets are served, a path that is not UTF-8 is refused instead of served as another,
Host names that are not the device's are refused (421: DNS rebinding), and a burst beyond the
server's room is told 503 + Retry-After instead of being reset."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import RedisServer, Services, free_port, wait_for, write_config

CL = b"POST /api/x HTTP/1.1\r\nHost: localhost\r\n"


def raw(port: int, request: bytes, timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


def status(answer: bytes) -> int:
    line = answer.split(b"\r\n", 1)[0]
    assert line.startswith(b"HTTP/1."), answer[:200]
    return int(line.split()[1])


@pytest.fixture
def web(
    redis_plain: RedisServer, tmp_path: Path, vtest_path: Path, services: Callable[[Path], Services]
) -> Iterator[int]:
    port = free_port()
    cfg = write_config(
        tmp_path / "rva.toml", redis_plain.url, vtest_path,
        web={"host": "127.0.0.1", "port": port, "allowed_hosts": ["counter.example.org"],
             "max_connections": 16, "max_viewers": 1},
    )  # fmt: skip
    services(cfg).start("web")
    wait_for(lambda: status(raw(port, b"GET /healthz HTTP/1.0\r\n\r\n")) == 200, 60, what="web")
    yield port


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (b"HELLO\r\n\r\n", 400),
        (b"GET / HTTP/9.9\r\nHost: localhost\r\n\r\n", 505),
        (b"POST /\r\n\r\n", 400),  # HTTP/0.9
        (b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\n\r\n", 400),  # HTTP/1.1 without Host
        (CL + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
        (CL + b"Content-Length: x\r\n\r\n", 400),
        (CL + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (CL + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501),
        (b"GET /vid%ffeo HTTP/1.1\r\nHost: localhost\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: evil.example\r\n\r\n", 421),
        (b"Bad header line\r\nHost: localhost\r\n\r\n", 400),
    ],
)
def test_malformed_requests_get_a_status_line_and_the_right_code(
    web: int, request_: bytes, code: int
) -> None:
    answer = raw(web, request_)
    assert status(answer) == code, answer[:300]
    assert b"b'" not in answer and b"<!DOCTYPE" not in answer


@pytest.mark.parametrize(
    "host", [b"localhost", b"127.0.0.1:1", b"[::1]:80", b"counter.example.org", b"10.1.2.3"]
)
def test_the_devices_names_addresses_and_allowed_hosts_are_served(web: int, host: bytes) -> None:
    assert status(raw(web, b"GET /healthz HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")) == 200


def test_an_absolute_form_target_is_served(web: int) -> None:
    answer = raw(web, b"GET http://localhost/healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert status(answer) == 200 and b'"status"' in answer


def test_a_burst_beyond_the_servers_room_is_told_to_retry_not_reset(web: int) -> None:
    """16 connections at most ([web] max_connections): 60 at once, each sending its request
    at once. Every one gets an answer with a status line: 200, or 503 with Retry-After."""
    answers: list[bytes] = []
    errors: list[str] = []

    def one() -> None:
        try:
            answers.append(raw(web, b"GET /api/summary HTTP/1.1\r\nHost: localhost\r\n\r\n", 30))
        except OSError as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=one) for _ in range(60)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:5]
    codes = [status(a) for a in answers]
    assert set(codes) <= {200, 503}, sorted(set(codes))
    assert all(b"Retry-After: 1" in a for a in answers if status(a) == 503)
