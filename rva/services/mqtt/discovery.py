"""Home Assistant MQTT discovery: which entities RVA announces, where their states go, and the
retained config message of each.

Topics, with P the topic prefix (``rva/<hostname>``) and D the discovery prefix:

- ``P/availability``: ``online`` / ``offline`` (retained; ``offline`` is also the Last Will);
- ``P/<camera>/people``, ``/person`` (ON/OFF), ``/fps``, ``/capture_fps``, ``/result_age``;
- ``P/<camera>/line/<line>/{in,out}/{today,total}``, ``P/<camera>/zone/<zone>/occupancy``;
- ``P/<camera>/line/<line>/crossing`` (an event entity: ``{"event_type": "in", ...}``) and
  ``P/<camera>/events`` (every crossing and zone enter/leave, JSON): not retained;
- ``P/<camera>/snapshot``: the annotated JPEG (an MQTT camera entity), when enabled;
- ``D/<component>/<node_id>/<object_id>/config``: one retained config per entity.

The node id and every unique id derive from /etc/machine-id, so they survive restarts, a new
hostname and a new topic prefix; the device's name is the hostname.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rva import __version__
from rva.config import Config, MqttSection

MACHINE_ID_FILES = (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id"))
# A state not refreshed for this long shows as unavailable in Home Assistant: rva mqtt sends
# the counts again at least every REFRESH_S while the camera's results are fresh, and stops when
# they are not, so a stalled pipeline does not look like a quiet room.
EXPIRE_AFTER_S = 90
AVAILABLE, NOT_AVAILABLE = "online", "offline"


def machine_id() -> str:
    for path in MACHINE_ID_FILES:
        try:
            text = path.read_text().strip().lower()
        except OSError:
            continue
        if re.fullmatch(r"[0-9a-f]{32}", text):
            return text
    raise RuntimeError(
        "no machine id in /etc/machine-id: run systemd-machine-id-setup (Home Assistant's "
        "unique ids are made from it)"
    )


def short_hostname() -> str:
    return socket.gethostname().split(".")[0] or "rva"


@dataclass(frozen=True)
class Identity:
    """Who this device is on the broker."""

    machine_id: str
    hostname: str
    topic_prefix: str
    discovery_prefix: str
    web_url: str

    @property
    def node_id(self) -> str:
        return f"rva_{self.machine_id[:12]}"

    @property
    def availability_topic(self) -> str:
        return f"{self.topic_prefix}/availability"

    def camera_topic(self, camera: str, *rest: str) -> str:
        return "/".join((self.topic_prefix, camera, *rest))


def identity(cfg: Config, section: MqttSection) -> Identity:
    host = short_hostname()
    return Identity(
        machine_id=machine_id(),
        hostname=host,
        topic_prefix=section.topic_prefix or f"rva/{host}",
        discovery_prefix=section.discovery_prefix,
        web_url=f"http://{host}.local:{cfg.web.port}/",
    )


def client_id(section: MqttSection) -> str:
    return section.client_id or f"rva-{short_hostname()}"


@dataclass(frozen=True)
class Entity:
    component: str  # sensor | binary_sensor | event | camera
    object_id: str  # unique within the device, [A-Za-z0-9_-]
    name: str  # Home Assistant puts the device's name in front
    state_topic: str
    options: dict[str, Any] = field(default_factory=dict)


def _count(name: str, topic: str, object_id: str, *, total: bool) -> Entity:
    return Entity(
        "sensor",
        object_id,
        name,
        topic,
        {
            "state_class": "total_increasing" if total else "measurement",
            "unit_of_measurement": "people",
            "icon": "mdi:account-arrow-right" if total else "mdi:account-group",
        },
    )


def entities(cfg: Config, ident: Identity, *, snapshots: bool) -> list[Entity]:
    """Every entity of the configured cameras, lines and zones, in a stable order."""
    out: list[Entity] = []
    for cam, section in cfg.cameras.items():
        t = ident.camera_topic
        label = f"Camera {cam}"
        out += [
            _count(f"{label} people", t(cam, "people"), f"{cam}_people", total=False),
            Entity(
                "binary_sensor",
                f"{cam}_person",
                f"{label} person present",
                t(cam, "person"),
                {"device_class": "occupancy"},
            ),
            Entity(
                "sensor",
                f"{cam}_fps",
                f"{label} detection rate",
                t(cam, "fps"),
                {
                    "state_class": "measurement",
                    "unit_of_measurement": "fps",
                    "icon": "mdi:speedometer",
                    "entity_category": "diagnostic",
                },
            ),
            Entity(
                "sensor",
                f"{cam}_capture_fps",
                f"{label} capture rate",
                t(cam, "capture_fps"),
                {
                    "state_class": "measurement",
                    "unit_of_measurement": "fps",
                    "icon": "mdi:camera-timer",
                    "entity_category": "diagnostic",
                },
            ),
            Entity(
                "sensor",
                f"{cam}_result_age",
                f"{label} newest result age",
                t(cam, "result_age"),
                {
                    "device_class": "duration",
                    "state_class": "measurement",
                    "unit_of_measurement": "s",
                    "entity_category": "diagnostic",
                },
            ),
        ]
        for line, spec in section.lines.items():
            # A line that counts something else than people says what: "gate (car, truck)".
            what = "" if spec.classes == ["person"] else f" ({', '.join(spec.classes)})"
            for direction in ("in", "out"):
                for period, words in (("today", "today"), ("total", "since install")):
                    # Today's count starts again at midnight: total_increasing reads that drop
                    # as a new cycle, which is exactly what it is.
                    out.append(
                        _count(
                            f"{label} {line}{what} {direction} {words}",
                            t(cam, "line", line, direction, period),
                            f"{cam}_line_{line}_{direction}_{period}",
                            total=True,
                        )
                    )
            out.append(
                Entity(
                    "event",
                    f"{cam}_line_{line}_crossing",
                    f"{label} {line}{what} crossing",
                    t(cam, "line", line, "crossing"),
                    {"event_types": ["in", "out"], "icon": "mdi:transit-transfer"},
                )
            )
        for zone, zspec in section.zones.items():
            what = "" if zspec.classes == ["person"] else f" ({', '.join(zspec.classes)})"
            out.append(
                _count(
                    f"{label} {zone}{what} occupancy",
                    t(cam, "zone", zone, "occupancy"),
                    f"{cam}_zone_{zone}_occupancy",
                    total=False,
                )
            )
        if snapshots:
            out.append(Entity("camera", f"{cam}_snapshot", f"{label}", t(cam, "snapshot")))
    return out


def config_topic(ident: Identity, entity: Entity) -> str:
    return f"{ident.discovery_prefix}/{entity.component}/{ident.node_id}/{entity.object_id}/config"


def device(ident: Identity) -> dict[str, Any]:
    return {
        "identifiers": [f"rva_{ident.machine_id}"],
        "name": ident.hostname,
        "manufacturer": "RVA",
        "model": "RVA people counter",
        "sw_version": __version__,
        "configuration_url": ident.web_url,
    }


def payload(ident: Identity, entity: Entity) -> dict[str, Any]:
    """The retained discovery config of one entity, as Home Assistant's MQTT schemas want it."""
    body: dict[str, Any] = {
        "name": entity.name,
        "unique_id": f"{ident.node_id}_{entity.object_id}",
        "availability_topic": ident.availability_topic,
        "payload_available": AVAILABLE,
        "payload_not_available": NOT_AVAILABLE,
        "device": device(ident),
        "origin": {"name": "RVA", "sw_version": __version__},
        **entity.options,
    }
    if entity.component == "camera":
        body["topic"] = entity.state_topic
    else:
        body["state_topic"] = entity.state_topic
    if entity.component in ("sensor", "binary_sensor"):
        body["expire_after"] = EXPIRE_AFTER_S
    return body
