"""The request head, checked once it has arrived and before a worker thread is spent on it.

wsgiref's request handler answers some malformed requests with an HTML body and no status
line, takes the first of two Content-Length headers, passes Content-Length beside
Transfer-Encoding, drops bytes of a path that are not UTF-8 (``/vid%ffeo`` served ``/video``),
answers absolute-form targets 404, and differs between Python versions. So the selector thread
checks the head against RFC 9112 itself, answers what is wrong with a proper status line, and
hands the workers only heads it vouches for (absolute-form targets rewritten to origin form).

Hosts: with no web users, any page in a browser on the LAN could read RVA through DNS rebinding
(a name of the attacker's that resolves to the device). A Host header that names neither an IP
address, the device (its host name, ``.local`` name, localhost) nor one of ``[web]
allowed_hosts`` is refused with 421.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes, urlsplit

METHOD = re.compile(rb"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
VERSION = re.compile(rb"^HTTP/(\d)\.(\d)$")
FIELD_NAME = re.compile(rb"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


@dataclass(frozen=True)
class Refused:
    status: int
    reason: str
    detail: str

    def response(self) -> bytes:
        body = f"{self.status} {self.reason}: {self.detail}\n"
        return (
            f"HTTP/1.1 {self.status} {self.reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body.encode())}\r\nConnection: close\r\n\r\n{body}"
        ).encode()


def device_names() -> set[str]:
    """The names a browser on the LAN may use for this device."""
    host = socket.gethostname().lower()
    short = host.split(".")[0]
    return {"localhost", host, short, f"{short}.local"}


def check(head: bytes, allowed_hosts: set[str]) -> bytes | Refused:
    """The head to hand on (perhaps with its target in origin form), or why it is refused."""
    text = head.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]  # the head, not the body
    line, _, rest = text.partition(b"\n")
    parts = line.split(b" ")
    if len(parts) != 3:
        return Refused(400, "Bad Request", "the request line is not METHOD TARGET HTTP/x.y")
    method, target, version = parts
    if not METHOD.match(method):
        return Refused(400, "Bad Request", "not a method")
    m = VERSION.match(version)
    if not m:
        return Refused(400, "Bad Request", "not an HTTP version")
    if m.group(1) != b"1":
        return Refused(505, "HTTP Version Not Supported", "HTTP/1.0 and HTTP/1.1 only")
    fields: dict[bytes, list[bytes]] = {}
    for raw in rest.split(b"\n"):
        if not raw:
            continue
        name, colon, value = raw.partition(b":")
        if not colon or not FIELD_NAME.match(name):
            return Refused(400, "Bad Request", "a header line is not NAME: VALUE")
        fields.setdefault(name.strip().lower(), []).append(value.strip())
    if b"transfer-encoding" in fields:
        if b"content-length" in fields:  # request smuggling's favourite (RFC 9112 6.1)
            return Refused(400, "Bad Request", "Content-Length beside Transfer-Encoding")
        return Refused(501, "Not Implemented", "no Transfer-Encoding is accepted")
    lengths = fields.get(b"content-length", [])
    if len(lengths) > 1 or any(not v.isdigit() for v in lengths):
        return Refused(400, "Bad Request", "Content-Length must be one number")
    hosts = fields.get(b"host", [])
    if len(hosts) > 1 or (m.group(2) == b"1" and not hosts):
        return Refused(400, "Bad Request", "one Host header is needed")
    if target.startswith((b"http://", b"https://")):  # absolute form (RFC 9112 3.2.2)
        parts_ = urlsplit(target.decode("latin-1"))
        origin = (parts_.path or "/") + (f"?{parts_.query}" if parts_.query else "")
        target = origin.encode("latin-1")
        head = head.replace(line, b" ".join([method, target, version]), 1)
    elif not (target.startswith(b"/") or (target == b"*" and method == b"OPTIONS")):
        return Refused(400, "Bad Request", "the target must be a path")
    path = target.split(b"?", 1)[0]
    try:
        unquote_to_bytes(path).decode("utf-8")
    except UnicodeDecodeError:
        return Refused(400, "Bad Request", "the path is not UTF-8")
    if hosts and not host_allowed(hosts[0].decode("latin-1"), allowed_hosts):
        return Refused(
            421, "Misdirected Request", "not a name of this device ([web] allowed_hosts)"
        )
    return head


def host_allowed(host: str, allowed: set[str]) -> bool:
    name = host.strip().lower()
    if name.startswith("["):  # [v6]:port
        name = name[1 : name.find("]")] if "]" in name else name
    elif name.count(":") == 1:
        name = name.rsplit(":", 1)[0]
    try:
        ipaddress.ip_address(name)
        return True  # an address: no name an attacker's DNS could point here
    except ValueError:
        pass
    name = name.rstrip(".")
    return "*" in allowed or name in allowed
