"""docs/examples/mosquitto-site-bridge.conf, as written but for its address, between two real
Debian mosquitto brokers: a site's (where a device's rva mqtt link publishes) and the central
one (where Home Assistant reads). Every discovery config RVA announces, its states and its
availability arrive centrally, retained where they were retained; Home Assistant's "online"
reaches the device once (no loop); a device cut off is "offline" centrally (its Last Will)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from rva import config
from rva.services.mqtt import discovery
from rva.services.mqtt.link import Link
from tests.conftest import ROOT, wait_for
from tests.services.mqtt.test_mqtt import Mosquitto

EXAMPLE = ROOT / "docs/examples/mosquitto-site-bridge.conf"


class Subscriber:
    """Everything a broker delivers, as Home Assistant would receive it."""

    def __init__(self, port: int) -> None:
        self.got: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"ha-{time.time()}")
        self.client.on_connect = lambda c, _u, _f, _r, _p: c.subscribe(
            [("#", 1), ("$SYS/broker/connection/#", 1)]
        )
        self.client.on_message = lambda _c, _u, m: self._add(m)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _add(self, m: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.got.append((m.topic, m.payload, bool(m.retain)))

    def on(self, topic: str) -> list[tuple[bytes, bool]]:
        with self.lock:
            return [(p, r) for t, p, r in self.got if t == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def brokers(tmp_path: Path) -> Iterator[tuple[Mosquitto, Mosquitto]]:
    central = Mosquitto(tmp_path / "central", logins=False)
    central.start()
    bridge = re.sub(
        r"^address .*$", f"address 127.0.0.1:{central.port}", EXAMPLE.read_text(), flags=re.M
    )
    site = Mosquitto(tmp_path / "site", logins=False, extra=bridge)
    try:
        site.start()
        wait_for(
            lambda: re.search(r" as \S+\.rva-site-EDIT ", central.log.read_text()),
            10,
            what=f"the bridge at the central broker: {site.log.read_text()[-2000:]}",
        )
        yield site, central
    finally:
        site.stop()
        central.stop()


def test_a_device_on_the_site_broker_is_seen_centrally(
    brokers: tuple[Mosquitto, Mosquitto],
) -> None:
    site, central = brokers
    cfg = config.parse(
        '[cameras.door]\nsource = "x.mp4"\n[cameras.door.lines.in-out]\n'
        "points = [[0, 10], [20, 10]]\nin_side = [10, 0]\n"
        "[cameras.door.zones.desk]\npolygon = [[0, 0], [10, 0], [10, 10]]\n"
        f'[mqtt]\nhost = "127.0.0.1"\nport = {site.port}\ntopic_prefix = "rva/door-1"\n'
    )
    assert cfg.mqtt is not None
    ident = discovery.identity(cfg, cfg.mqtt)
    entities = discovery.entities(cfg, ident, snapshots=True)
    assert {e.component for e in entities} == {"sensor", "binary_sensor", "event", "camera"}
    ha = Subscriber(central.port)
    link = Link(cfg.mqtt, ident, None)
    link.start()
    try:
        wait_for(link.connected.is_set, 15, what=f"the device's link: {link.detail}")
        link.resync.clear()
        wait_for(lambda: ha.on(ident.availability_topic), 15, what="availability, centrally")
        for entity in entities:
            topic = discovery.config_topic(ident, entity)
            assert link.publish(topic, b"{}", retain=True, qos=1)
        people = ident.camera_topic("door", "people")
        assert link.publish(people, "3", retain=False, qos=1)

        def configs_arrived() -> bool:
            return all(ha.on(discovery.config_topic(ident, e)) for e in entities)

        wait_for(configs_arrived, 15, what="every discovery config, centrally")
        wait_for(lambda: ha.on(people), 15, what="a state, centrally")
        assert ha.on(people) == [(b"3", False)]
        # Retained on the central broker too: Home Assistant starting later gets them all.
        late = Subscriber(central.port)
        try:
            wait_for(
                lambda: all(
                    late.on(discovery.config_topic(ident, e)) == [(b"{}", True)] for e in entities
                ),
                15,
                what="the retained configs for a late subscriber",
            )
            assert late.on(ident.availability_topic) == [(b"online", True)]
        finally:
            late.close()

        # The bridge's own state, retained centrally.
        with ha.lock:
            states = [(t, p) for t, p, _ in ha.got if t.startswith("$SYS/")]
        assert len(states) == 1 and states[0][1] == b"1", states
        assert re.fullmatch(r"\$SYS/broker/connection/[^/]+\.rva-site-EDIT/state", states[0][0])

        # Home Assistant (re)starts: its "online" reaches the device, once.
        ha.client.publish(f"{ident.discovery_prefix}/status", "online", qos=1)
        wait_for(link.resync.is_set, 15, what="homeassistant/status at the device")
        time.sleep(1)
        assert ha.on(f"{ident.discovery_prefix}/status") == [(b"online", False)]

        # The device cut off without a word: its Last Will reaches Home Assistant.
        link.client.loop_stop()
        sock = link.client.socket()
        assert sock is not None
        sock.close()
        wait_for(
            lambda: any(p == b"offline" for p, _ in ha.on(ident.availability_topic)),
            30,
            what="the device's Last Will, centrally",
        )
    finally:
        link.client.loop_stop()
        ha.close()
