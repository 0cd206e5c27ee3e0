"""rva status on real processes: a service that stopped cleanly says "stopped", one that was
killed says when it was last heard, and the MQTT line stops repeating the link state a killed
rva mqtt left behind in rva:mqtt."""

from __future__ import annotations

import re
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

from rva import health
from tests.conftest import RedisServer, Services, wait_for, write_config
from tests.services.mqtt.test_mqtt import RVA_PASSWORD, Mosquitto, broker, mqtt_config

__all__ = ["broker"]  # the broker fixture of the MQTT tests, which pytest finds by name here

HOST = socket.gethostname()


def test_status_says_stopped_for_a_clean_stop_and_not_running_for_a_killed_service(
    redis_ts: RedisServer,
    broker: Mosquitto,
    tmp_path: Path,
    vtest_path: Path,
    services: Callable[[Path], Services],
) -> None:
    cfg = write_config(tmp_path / "rva.toml", redis_ts.url, vtest_path)
    cfg.write_text(cfg.read_text() + mqtt_config(tmp_path, broker, RVA_PASSWORD))
    svc = services(cfg)
    capture = svc.start("capture")
    mqtt = svc.start("mqtt")

    def status() -> str:
        done = svc.run("status", check=False)
        assert "Traceback" not in done.stderr, done.stderr
        return done.stdout

    def connected() -> str | None:
        text = status()
        return text if "MQTT: connected, connected to 127.0.0.1" in text else None

    running = str(wait_for(connected, 60, 0.5, what="rva mqtt connected"))
    assert re.search(rf"service capture:{HOST}:{capture.pid}: running, heard \d+s ago", running)
    assert f"service mqtt:{HOST}:{mqtt.pid}: running" in running, running

    # A clean stop (SIGTERM, as systemctl stop): "stopped", not "alive N s ago".
    capture.send_signal(signal.SIGTERM)
    assert capture.wait(15) == 0
    text = status()
    assert re.search(rf"service capture:{HOST}:{capture.pid}: stopped \d+s ago", text), text

    # A killed rva mqtt: rva:mqtt still says connected; once its heartbeat is older than the
    # liveness limit, status says it is not running and when it was last heard.
    mqtt.send_signal(signal.SIGKILL)
    mqtt.wait(10)
    killed = time.monotonic()
    assert "MQTT: connected, connected to 127.0.0.1" in status()  # within the limit
    time.sleep(max(0.0, killed + health.HEARTBEAT_STALE_S + 1 - time.monotonic()))
    text = status()
    said = re.search(
        r"MQTT: rva mqtt not running \(last heard (\d+)s ago\); its last report: connected, "
        "connected to 127.0.0.1",
        text,
    )
    assert said and int(said[1]) > health.HEARTBEAT_STALE_S, text
    assert re.search(rf"service mqtt:{HOST}:{mqtt.pid}: not running: last heard \d+s ago", text)

    # Started again and stopped cleanly: the link says stopped, and so does the service; the
    # killed process is no longer listed beside it.
    again = svc.start("mqtt")
    wait_for(connected, 60, 0.5, what="rva mqtt connected again")
    again.send_signal(signal.SIGTERM)
    assert again.wait(15) == 0
    text = status()
    assert "MQTT: stopped, rva mqtt stopped" in text, text
    assert re.search(rf"service mqtt:{HOST}:{again.pid}: stopped \d+s ago", text), text
    assert f"mqtt:{HOST}:{mqtt.pid}" not in text, text
