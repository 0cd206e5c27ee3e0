"""The HTTP server under rva web: stdlib only, built to stay up on a LAN it does not control.

wsgiref's threading server gives every TCP connection a thread that waits, with no timeout,
for a request: 1025 idle connections used all of rva web's threads and file descriptors, and
/healthz stayed down for 30 s after they closed. Here a connection costs a thread only once its
whole request head has arrived:

- one selector thread accepts connections and reads request heads without blocking;
- a head that is not complete within ``request_timeout`` gets 408 and the connection is closed
  (a slow sender cannot hold it open by trickling bytes: the deadline counts from the accept);
- at most ``max_connections`` connections are open; a new one beyond that evicts the oldest
  connection that is still sending its request (so /healthz, sent at once by its client, is
  answered however many idle connections there are); requests being answered are never evicted;
- complete requests go to a fixed pool of ``threads`` workers (stdlib's HTTP/1.0 request
  handler, one request per connection as before), where every socket read or write that stalls
  for ``io_timeout`` ends the response;
- the file descriptor limit is raised to fit the cap (systemd's default soft limit is 1024).

Long responses (the MJPEG stream) hold a worker each; the app caps them below ``threads``
(``[web] max_viewers``) so that short requests always find a worker.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import queue
import resource
import selectors
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler

from rva.services.web import requesthead

log = logging.getLogger(__name__)

MAX_HEAD = 16 * 1024  # a request head larger than this is refused (431)
SPARE_FDS = 128  # file descriptors kept for Redis, logs and the feeds beside the connections
CLOSE_S = 2.0  # an answered connection is read to its end this long at most, then closed


@dataclass
class _Waiting:
    sock: socket.socket
    addr: Any
    since: float
    head: bytearray = field(default_factory=bytearray)


class _Prefixed(io.RawIOBase):
    """The bytes the selector already read, then the socket."""

    def __init__(self, first: bytes, sock: socket.socket) -> None:
        self.first, self.sock = memoryview(first), sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.first:
            n = min(len(buffer), len(self.first))
            buffer[:n] = self.first[:n]
            self.first = self.first[n:]
            return n
        return self.sock.recv_into(buffer)


class _ServerHandler(ServerHandler):
    def run(self, application: Any) -> None:
        try:
            super().run(application)
        except OSError as exc:  # a timed-out or vanished client, found while reporting an error
            log.debug("client %s: %s", self.base_env.get("REMOTE_ADDR"), exc)

    def handle_error(self) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):  # TimeoutError, a reset: the client is gone, say no more
            log.debug("client %s: %s", self.base_env.get("REMOTE_ADDR"), exc)
            self.close()
            return
        log.error("request failed", exc_info=True)
        super().handle_error()

    def log_exception(self, exc_info: Any) -> None:
        pass  # logged by handle_error


class _Handler(WSGIRequestHandler):
    """One request on a socket whose head the selector has read already."""

    def __init__(self, sock: socket.socket, addr: Any, server: Server, head: bytes) -> None:
        self._head = head
        super().__init__(sock, addr, server)  # type: ignore[arg-type]

    def setup(self) -> None:
        self.connection = self.request
        self.rfile = io.BufferedReader(_Prefixed(self._head, self.connection))
        self.wfile = self.connection.makefile("wb", buffering=0)

    def handle(self) -> None:
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536:
            self.send_error(414)
            return
        if not self.parse_request():
            return
        handler = _ServerHandler(
            self.rfile,
            cast(Any, self.wfile),
            self.get_stderr(),
            self.get_environ(),
            multithread=True,
        )
        handler.request_handler = self  # type: ignore[attr-defined]
        handler.run(self.server.get_app())  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s " + format, self.address_string(), *args)


def raise_fd_limit(wanted: int) -> int:
    """Raise the soft limit on open files towards `wanted`; return the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return wanted
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


class Server:
    """A WSGI server: serve_forever() in one thread, shutdown() from another."""

    def __init__(
        self,
        host: str,
        port: int,
        app: Callable[..., Any],
        *,
        max_connections: int = 256,
        request_timeout: float = 10.0,
        io_timeout: float = 20.0,
        threads: int = 24,
        allowed_hosts: set[str] | None = None,
    ) -> None:
        self.app = app
        # Host names besides IP addresses (requesthead.py); None: any.
        self.allowed_hosts = {"*"} if allowed_hosts is None else allowed_hosts
        # Complete requests queued for the workers beyond this are answered 503 at once: a
        # burst is told to come back (Retry-After) instead of waiting in line or being reset.
        self.max_queued = threads * 4
        self.request_timeout, self.io_timeout = request_timeout, io_timeout
        limit = raise_fd_limit(max_connections + threads + SPARE_FDS)
        self.max_connections = max(8, min(max_connections, limit - threads - SPARE_FDS))
        if self.max_connections < max_connections:
            log.warning(
                "open file limit %d: at most %d connections (not %d)",
                limit,
                self.max_connections,
                max_connections,
            )
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.create_server((host, port), family=family, backlog=1024)
        self.socket.setblocking(False)
        self.server_address = self.socket.getsockname()[:2]
        self.server_name = host
        self.server_port = self.server_address[1]
        self.base_environ = {
            "SERVER_NAME": self.server_name,
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PORT": str(self.server_port),
            "REMOTE_HOST": "",
            "CONTENT_LENGTH": "",
            "SCRIPT_NAME": "",
        }
        self.selector = selectors.DefaultSelector()
        self.waiting: dict[int, _Waiting] = {}  # by fd, oldest first
        # Answered without a worker (503, 400...): read to the end and closed, not reset (a
        # socket closed with unread input sends RST, and the client loses the answer).
        self.closing: dict[int, tuple[socket.socket, float]] = {}
        self.ready: queue.SimpleQueue[tuple[socket.socket, Any, bytes] | None] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.busy = 0  # connections handed to the workers (queued or being answered)
        self.evicted = self.timed_out = self.shed = 0  # for tests and the status line
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._listening = False
        self._paused_until = 0.0
        self.workers = [
            threading.Thread(target=self._work, name=f"http-{i}", daemon=True)
            for i in range(threads)
        ]
        for worker in self.workers:
            worker.start()

    # -- what wsgiref's request handler asks of its server ----------------------------------
    def get_app(self) -> Callable[..., Any]:
        return self.app

    # -- the selector thread -----------------------------------------------------------------
    def serve_forever(self) -> None:
        self._listen(True)
        try:
            while not self._stop.is_set():
                if not self._listening and time.monotonic() >= self._paused_until:
                    self._listen(True)
                for key, _events in self.selector.select(timeout=0.25):
                    if key.fileobj is self.socket:
                        self._accept()
                    elif key.fd in self.closing:
                        self._drain(key.fd)
                    else:
                        self._read(key.fd)
                self._expire()
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        self._stop.set()
        self._stopped.wait(5)

    def server_close(self) -> None:
        for fd in list(self.waiting):
            self._drop(fd)
        for fd in list(self.closing):
            self._close_answered(fd)
        self.selector.close()
        self.socket.close()
        for _ in self.workers:
            self.ready.put(None)

    def open_connections(self) -> int:
        with self.lock:
            return len(self.waiting) + self.busy

    def _listen(self, on: bool) -> None:
        if on and not self._listening:
            self.selector.register(self.socket, selectors.EVENT_READ)
        elif not on and self._listening:
            self.selector.unregister(self.socket)
        self._listening = on

    def _accept(self) -> None:
        for _ in range(64):  # a batch, then the heads that arrived meanwhile
            try:
                sock, addr = self.socket.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Out of descriptors: free the oldest waiting one, or stop accepting for a
                    # moment (the listening socket would otherwise wake the loop at once).
                    if not self._evict_oldest():
                        self._listen(False)
                        self._paused_until = time.monotonic() + 0.1
                    return
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EINTR):
                    continue
                raise
            if self.open_connections() >= self.max_connections and not self._evict_oldest():
                # Every connection is being answered: no room at all. Told so, not reset.
                self.shed += 1
                self._answer(sock, BUSY)
                continue
            sock.setblocking(False)
            self.waiting[sock.fileno()] = _Waiting(sock, addr, time.monotonic())
            self.selector.register(sock, selectors.EVENT_READ)

    def _evict_oldest(self) -> bool:
        if not self.waiting:
            return False
        self._drop(next(iter(self.waiting)), BUSY)
        self.evicted += 1
        if self.evicted in (1, 10, 100) or self.evicted % 1000 == 0:
            log.warning(
                "%d connections open (limit %d): closed the oldest idle one (%d so far)",
                self.open_connections() + 1,
                self.max_connections,
                self.evicted,
            )
        return True

    def _drop(self, fd: int, reply: bytes = b"") -> None:
        waiting = self.waiting.pop(fd)
        self.selector.unregister(waiting.sock)
        if reply:
            self._answer(waiting.sock, reply)
            return
        with contextlib.suppress(OSError):
            waiting.sock.close()

    def _answer(self, sock: socket.socket, reply: bytes) -> None:
        """Send a short answer and close gracefully: what the client still sends is read and
        thrown away until it closes (or CLOSE_S passes), so that it gets the answer."""
        try:
            sock.setblocking(False)
            sock.send(reply)
            sock.shutdown(socket.SHUT_WR)
            self.selector.register(sock, selectors.EVENT_READ)
        except OSError:
            with contextlib.suppress(OSError):
                sock.close()
            return
        self.closing[sock.fileno()] = (sock, time.monotonic() + CLOSE_S)

    def _drain(self, fd: int) -> None:
        sock, _deadline = self.closing[fd]
        try:
            if sock.recv(65536):
                return
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            pass
        self._close_answered(fd)

    def _close_answered(self, fd: int) -> None:
        sock, _deadline = self.closing.pop(fd)
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(sock)
        with contextlib.suppress(OSError):
            sock.close()

    def _read(self, fd: int) -> None:
        waiting = self.waiting[fd]
        try:
            data = waiting.sock.recv(8192)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(fd)
            return
        waiting.head += data
        if b"\r\n\r\n" in waiting.head or b"\n\n" in waiting.head:
            head = requesthead.check(bytes(waiting.head), self.allowed_hosts)
            if isinstance(head, requesthead.Refused):
                self._drop(fd, head.response())
                return
            if self.busy >= self.max_queued:
                self.shed += 1
                self._drop(fd, BUSY)
                return
            self.waiting.pop(fd)
            self.selector.unregister(waiting.sock)
            with self.lock:
                self.busy += 1
            self.ready.put((waiting.sock, waiting.addr, head))
        elif len(waiting.head) > MAX_HEAD:
            self._drop(fd, _status(431, "Request Header Fields Too Large"))

    def _expire(self) -> None:
        now = time.monotonic()
        for fd in [fd for fd, (_s, until) in self.closing.items() if until <= now]:
            self._close_answered(fd)
        deadline = now - self.request_timeout
        while self.waiting:
            fd, oldest = next(iter(self.waiting.items()))
            if oldest.since > deadline:
                break
            self.timed_out += 1
            self._drop(fd, _status(408, "Request Timeout") if oldest.head else b"")

    # -- the workers -------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            job = self.ready.get()
            if job is None:
                return
            sock, addr, head = job
            try:
                sock.setblocking(True)
                sock.settimeout(self.io_timeout)
                _Handler(sock, addr, self, head)
            except Exception:
                log.exception("request from %s failed", addr)
            finally:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)
                with contextlib.suppress(OSError):
                    sock.close()
                with self.lock:
                    self.busy -= 1


BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 22\r\nConnection: close\r\n\r\nbusy: try again in 1 s"
)


def _status(code: int, reason: str) -> bytes:
    return (
        f"HTTP/1.0 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: "
        f"{len(reason) + 1}\r\nConnection: close\r\n\r\n{reason}\n"
    ).encode()
