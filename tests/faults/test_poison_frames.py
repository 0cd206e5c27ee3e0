"""Faults 2 and 3, in the gears: frames no worker may die of, nor spend gigabytes on.

Before the fix an empty `image` field made cv2.imdecode assert: the worker exited, the next
one reclaimed the same entry and exited too, until no worker was left (a poison message). A
48 KB PNG declaring 20000×20000 pixels was decoded (1.2 GB) before it was found too large.
"""

from __future__ import annotations

import struct
import zlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import cv2

from rva import keys
from tests.conftest import wait_for
from tests.faults.conftest import (
    FaultStack,
    all_problems,
    assert_nothing_counted_twice,
    errors,
    get_json,
    log_text,
    metric,
)

PEAK_RSS_BOUND_MB = 1000  # a worker runs in ~400 MB; a 20000×20000 decode alone is 1200 MB


def png_declaring(width: int, height: int) -> bytes:
    """A small, valid PNG whose header declares width × height: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    rows = zlib.compress(b"\x00" * (width * 3 + 1) * 200, 9)  # 200 black rows; the rest missing
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def jpeg_declaring(real: bytes, width: int, height: int) -> bytes:
    """A real JPEG whose frame header (SOF0) is rewritten to declare width × height."""
    at = real.index(b"\xff\xc0")
    return real[: at + 5] + struct.pack(">HH", height, width) + real[at + 9 :]


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for {pid}")


def test_empty_garbage_and_bomb_frames_are_skipped_once_and_no_worker_dies(
    fault_stack: Callable[..., FaultStack], vtest_path: Path
) -> None:
    stack = fault_stack(
        camera={"maxlen": 5000},
        gear={"claim_idle_ms": 1000},  # a worker that died would be taken over in 1 s
    )
    svc, web_port, client = stack.svc, stack.port, stack.client()
    workers = [svc.start("gears") for _ in range(3)]
    stack.web()

    def workers_ready() -> bool:
        return sum(f.startswith(b"gears:") for f in client.hkeys(keys.HEARTBEAT)) == 3

    wait_for(workers_ready, 90, what="three gear workers")

    real = cv2.imencode(".jpg", cv2.VideoCapture(str(vtest_path)).read()[1])[1].tobytes()
    poison = [
        ("empty_frame", b""),
        ("unsupported_format", b"\x00\x01 not an image at all"),
        ("corrupt_frame", real[:300]),  # a JPEG's headers, cut before its first scan
        ("oversized", png_declaring(20000, 20000)),  # 12 KB declaring 1.2 GB of pixels
        ("oversized", jpeg_declaring(real, 60000, 60000)),
    ]
    expected: Counter[str] = Counter()
    for count, (kind, image) in enumerate(poison):  # one at a time: each must reach a worker
        client.xadd(keys.frames("0"), {"count": count, "image": image})
        expected[kind] += 1

        def skipped(kind: str = kind) -> bool:
            pending = client.xpending(keys.frames("0"), "rva-gears")["pending"]
            return errors(client).get(f"0:{kind}") == expected[kind] and pending == 0

        wait_for(skipped, 30, what=f"{kind} frame skipped, acknowledged and counted")

    # Real frames afterwards: every worker still counts, and by the time results flow any
    # reclaim of a poison entry (claim_idle_ms = 1 s) would have happened.
    svc.start("capture")
    wait_for(lambda: client.xlen(keys.results("0")) >= 10, 90, what="results after the poison")
    for worker in workers:
        assert worker.poll() is None, f"a worker died:\n{log_text(svc, worker)[-2000:]}"
        assert peak_rss_mb(worker.pid) < PEAK_RSS_BOUND_MB, "a bomb was decoded"
    # Each counted exactly once: no worker took over an entry another had died of.
    assert {k: v for k, v in errors(client).items() if k.startswith("0:")} == {
        f"0:{kind}": n for kind, n in expected.items()
    }
    assert client.xpending(keys.frames("0"), "rva-gears")["pending"] <= 3  # in flight only
    assert_nothing_counted_twice(client)
    # Reported: the workers' logs, /metrics, and /healthz not "ok" while it is recent.
    logs = "".join(log_text(svc, w) for w in workers)
    assert "empty image field; skipped" in logs and "20000x20000" in logs
    assert metric(web_port, "rva_errors_total", camera="0", kind="oversized") == 2
    status, health = get_json(web_port, "/healthz")
    assert status == 200 and health["status"] == "degraded"
    assert any("oversized (2 in all)" in p for p in all_problems(health)), health
