"""Secrets out of what RVA shows and logs: one function for every place a camera's source (or
any text that may hold one) reaches a log line, Redis, /healthz, `rva status` or an error.

A camera URL may carry a password (``rtsp://admin:secret@cam/live``, ``?password=secret``);
/healthz answers without authentication, and logs go to the journal any local user in group
adm may read. The user name stays (it tells which account is meant), the password becomes
``***``.
"""

from __future__ import annotations

import re

# scheme://user:password@host  →  scheme://user:***@host (the password may hold anything but
# '@', '/' and whitespace; a user name without a password is kept as it is).
_USERINFO = re.compile(
    r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:@/\s]*):(?P<pw>[^@/\s]+)@"
)
# ?password=... &pwd=... &token=... (cameras take them in the query too)
_QUERY = re.compile(
    r"(?P<key>[?&;](?:pass(?:word)?|pwd|passwd|token|auth|key|secret|api_?key)=)(?P<value>[^&;#\s]+)",
    re.IGNORECASE,
)


def secrets(text: str) -> str:
    """``text`` with the passwords and tokens of any URL in it replaced by ``***``."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    return _QUERY.sub(lambda m: f"{m['key']}***", text)
