"""Redis frozen (SIGSTOP): /healthz must never queue behind it. Before, one /healthz answered
503 after 5 s (the socket timeout) and three at once took about 20 s each. Now one read is in
flight and everyone else is answered from it, or told at once that Redis is not answering."""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from tests.conftest import wait_for
from tests.faults.conftest import FaultStack

ANSWER_WITHIN_S = 4.0  # under the 5 s socket timeout one read used to wait for


def _healthz(port: int) -> tuple[int, dict, float]:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=30) as r:
            return r.status, json.loads(r.read()), time.monotonic() - started
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), time.monotonic() - started


def test_healthz_never_queues_behind_a_frozen_redis(fault_stack: Callable[..., FaultStack]) -> None:
    stack = fault_stack()
    stack.web()
    assert _healthz(stack.port)[0] == 200
    redis_proc = stack.server.proc
    assert redis_proc is not None
    redis_proc.send_signal(signal.SIGSTOP)
    try:
        answers: list[tuple[int, dict, float]] = []
        askers = [
            threading.Thread(target=lambda: answers.append(_healthz(stack.port))) for _ in range(3)
        ]
        for t in askers:
            t.start()
        for t in askers:
            t.join(60)
        assert len(answers) == 3
        for status, body, took in answers:
            assert status == 503 and body["status"] == "down", body
            assert any("Redis not answering for" in p for p in body["problems"]), body
            assert took < ANSWER_WITHIN_S, f"/healthz took {took:.1f} s"
        # Later askers while it is still frozen: answered the same way, at once.
        status, body, took = _healthz(stack.port)
        assert status == 503 and took < ANSWER_WITHIN_S, (status, took)
    finally:
        redis_proc.send_signal(signal.SIGCONT)
    wait_for(lambda: _healthz(stack.port)[0] == 200, 30, what="/healthz ok once Redis thaws")
