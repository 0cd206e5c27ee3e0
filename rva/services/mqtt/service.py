"""rva mqtt: people, counts, occupancy and crossings on an MQTT broker, announced to Home
Assistant by MQTT discovery (topics: rva.services.mqtt.discovery).

A process of its own (rva-mqtt.service) that only reads Redis: a broker that is down, slow or
refusing the login never touches capture, detection or counting. paho's network thread keeps
the link (Last Will ``offline``, reconnects with a backoff of 1 s doubling to 60 s, at most
MAX_QUEUED messages held: rva.services.mqtt.link); this main loop reads Redis once a second and
publishes only while the link is up:

- on every (re)connection, and when Home Assistant says it is back (``<discovery>/status``
  ``online``): the discovery configs, an empty retained config for each entity announced
  before but no longer configured (rva:mqtt:announced keeps the list), then every state;
- states (retained) when they change, and again every REFRESH_S while the camera's results are
  fresh; fps and ages at most every SLOW_S;
- crossings and zone events (not retained) from camera:<id>:events, in order, from a checkpoint
  in rva:mqtt:events, so none is skipped or sent twice across a broker outage or a restart;
  events older than EVENT_MAX_AGE_S when the link comes back are counted, not sent.

The link's state goes into rva:mqtt every second, for /healthz and `rva status`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from typing import Any

import cv2
import numpy as np
import redis

from rva import health, keys, overlay, shapes
from rva.config import Config, config_path
from rva.connection import TRANSIENT, connect, wait_for_redis
from rva.overlay import annotate, pixelate
from rva.runtime import Runtime
from rva.services.mqtt.discovery import (
    Identity,
    config_topic,
    entities,
    identity,
    payload,
)
from rva.services.mqtt.link import Link, read_password

log = logging.getLogger(__name__)

LOOP_S = 1.0
REFRESH_S = 30.0  # every state again this often while fresh (Home Assistant's expire_after: 90)
SLOW_S = 10.0  # fps and ages change all the time: sent at most this often
FRESH_S = 30.0  # a camera's counts are sent only while its newest result is younger than this
EVENT_MAX_AGE_S = 300.0
EVENT_BATCH = 100


class Publisher:
    """Reads the appliance's state from Redis and publishes what changed."""

    def __init__(self, client: redis.Redis, cfg: Config, link: Link, ident: Identity) -> None:
        section = cfg.mqtt
        assert section is not None
        self.redis, self.cfg, self.link, self.ident = client, cfg, link, ident
        # [web] video = "off" means no picture leaves the device: no snapshot entity either.
        # One announced before is withdrawn at the next announce (an empty retained config),
        # and its retained JPEG with it (an empty retained payload on its topic).
        self.snapshot_s = section.snapshot_interval_s if cfg.web.video != "off" else 0
        self.entities = entities(cfg, ident, snapshots=self.snapshot_s > 0)
        self.sent: dict[str, tuple[str, float]] = {}  # topic -> (payload, when)
        self.events_sent = self.events_skipped = 0
        self.people: dict[str, int] = {}  # fresh counts of the last step, for snapshots
        self.snapped: dict[str, tuple[int, float]] = {}  # camera -> (people, when) of the JPEG
        # Lines and zones saved live (rva.shapes): a change re-announces the entities.
        self.shapes = shapes.Watch(client, cfg)
        self.follow_shapes()

    def follow_shapes(self) -> None:
        if self.shapes.changed():
            self.cfg = self.shapes.config()
            self.entities = entities(self.cfg, self.ident, snapshots=self.snapshot_s > 0)
            self.link.resync.set()

    def step(self) -> None:
        self.follow_shapes()
        if self.link.resync.is_set() and self.link.connected.is_set():
            self.link.resync.clear()
            self.sent.clear()
            self.snapped.clear()
            self.announce()
        if not self.link.connected.is_set():
            return
        self.publish_states()
        self.publish_events()
        if self.snapshot_s > 0:
            self.publish_snapshots()

    # -- discovery --------------------------------------------------------------------------
    def announce(self) -> None:
        current = {config_topic(self.ident, e): e for e in self.entities}
        announced = {
            k.decode(): v.decode() for k, v in self.redis.hgetall(keys.MQTT_ANNOUNCED).items()
        }
        for topic in sorted(set(announced) - set(current)):
            # Removed from rva.toml: an empty retained config deletes the entity; the empty
            # retained state clears what the broker kept for it.
            if not self.link.publish(topic, "", retain=True, qos=1):
                self.link.resync.set()  # not all sent: again at the next step
                return
            for state_topic in json.loads(announced[topic]):
                self.link.publish(state_topic, "", retain=True, qos=1)
            self.redis.hdel(keys.MQTT_ANNOUNCED, topic)
            log.info("MQTT: %s removed (no longer configured)", topic)
        for topic, entity in current.items():
            if not self.link.publish(
                topic, json.dumps(payload(self.ident, entity)), retain=True, qos=1
            ):
                self.link.resync.set()
                return
            retained = [] if entity.component == "event" else [entity.state_topic]
            self.redis.hset(keys.MQTT_ANNOUNCED, topic, json.dumps(retained))
        log.info(
            "MQTT: %d entities announced under %s/+/%s",
            len(current),
            self.ident.discovery_prefix,
            self.ident.node_id,
        )

    # -- states -----------------------------------------------------------------------------
    def send(self, topic: str, value: str, min_period: float = 0.0) -> None:
        now = time.monotonic()
        last = self.sent.get(topic)
        if last is not None:
            age = now - last[1]
            if age < (REFRESH_S if value == last[0] else min_period):
                return
        if self.link.publish(topic, value, retain=True):
            self.sent[topic] = (value, now)

    def publish_states(self) -> None:
        cameras = list(self.cfg.cameras)
        snap = health.snapshot(self.redis, cameras, self.cfg.gear.group)
        if not snap.redis:
            raise redis.ConnectionError(snap.error or "Redis unreachable")
        self.people = {}
        for cam, section in self.cfg.cameras.items():
            st, t = snap.cameras[cam], self.ident.camera_topic
            if st.result_age_s is not None:
                self.send(t(cam, "result_age"), f"{max(st.result_age_s, 0):.0f}", SLOW_S)
            if st.result_age_s is None or st.result_age_s > FRESH_S:
                continue  # stalled: let Home Assistant's expire_after show it
            if st.people is not None:
                self.people[cam] = st.people
                self.send(t(cam, "people"), str(st.people))
                self.send(t(cam, "person"), "ON" if st.people else "OFF")
            self.send(t(cam, "fps"), f"{st.latest.get('out_fps', 0.0):.1f}", SLOW_S)
            self.send(t(cam, "capture_fps"), f"{st.latest.get('in_fps', 0.0):.1f}", SLOW_S)
            if not (section.lines or section.zones):
                continue
            counts = {
                k.decode(): v.decode() for k, v in self.redis.hgetall(keys.counts(cam)).items()
            }
            for line in section.lines:
                for direction in keys.LINE_DIRECTIONS:
                    field = f"line:{line}:{direction}"
                    for period, name in (("total", field), ("today", f"{field}:today")):
                        if name in counts:
                            self.send(t(cam, "line", line, direction, period), counts[name])
            for zone in section.zones:
                if f"zone:{zone}" in counts:
                    self.send(t(cam, "zone", zone, "occupancy"), counts[f"zone:{zone}"])

    # -- events -----------------------------------------------------------------------------
    def publish_events(self) -> None:
        checkpoints = {
            k.decode(): v.decode() for k, v in self.redis.hgetall(keys.MQTT_EVENTS).items()
        }
        streams: dict[str, str] = {}
        for cam, section in self.cfg.cameras.items():
            if not (section.lines or section.zones):
                continue
            last = checkpoints.get(cam)
            if last is None:
                # First run: from what is newest now, not the history since install.
                newest = self.redis.xrevrange(keys.events(cam), count=1)
                last = newest[0][0].decode() if newest else "0-0"
                self.redis.hset(keys.MQTT_EVENTS, cam, last)
            streams[keys.events(cam)] = last
        if not streams:
            return
        for stream, entries in self.redis.xread(streams, count=EVENT_BATCH) or []:
            cam = stream.decode().removeprefix("camera:").removesuffix(":events")
            done = None
            for entry_id, fields in entries:
                if not self.publish_event(cam, {k.decode(): v.decode() for k, v in fields.items()}):
                    break
                done = entry_id
            if done is not None:
                self.redis.hset(keys.MQTT_EVENTS, cam, done)

    def publish_event(self, cam: str, fields: dict[str, str]) -> bool:
        """True when sent (or too old to send); False when the link dropped."""
        try:
            event: dict[str, Any] = {
                "camera": cam,
                "track": int(fields["track"]),
                "kind": fields["kind"],
                "name": fields["name"],
                "direction": fields["direction"],
                "t": int(fields["t"]),
            }
            event["class"] = fields.get("class", "person")  # what crossed or entered
            if "dwell_s" in fields:
                event["dwell_s"] = float(fields["dwell_s"])
        except (KeyError, ValueError) as exc:
            log.warning("MQTT: malformed event on camera %s skipped: %s", cam, exc)
            return True
        if time.time() - event["t"] / 1000 > EVENT_MAX_AGE_S:
            self.events_skipped += 1
            return True
        t = self.ident.camera_topic
        if not self.link.publish(t(cam, "events"), json.dumps(event), retain=False, qos=1):
            return False
        if event["kind"] == "line":
            crossing = {
                "event_type": event["direction"],
                "track": event["track"],
                "class": event["class"],
                "t": event["t"],
            }
            if not self.link.publish(
                t(cam, "line", event["name"], "crossing"), json.dumps(crossing), retain=False, qos=1
            ):
                return False
        self.events_sent += 1
        return True

    # -- snapshots --------------------------------------------------------------------------
    def publish_snapshots(self) -> None:
        now = time.monotonic()
        for cam, people in self.people.items():
            last = self.snapped.get(cam)
            if last is not None and (last[0] == people or now - last[1] < self.snapshot_s):
                continue
            jpeg = self.annotated(cam)
            if jpeg is not None and self.link.publish(
                self.ident.camera_topic(cam, "snapshot"), jpeg, retain=True
            ):
                self.snapped[cam] = (people, now)

    def annotated(self, cam: str) -> bytes | None:
        """The newest result's frame with its boxes, lines and zones, as a JPEG; people
        pixelated, or no picture at all, as on /video ([web] video)."""
        if self.cfg.web.video == "off":
            return None
        newest = self.redis.xrevrange(keys.results(cam), count=1)
        if not newest:
            return None
        fields = newest[0][1]
        ref = fields.get(b"ref", b"0-0")
        found = self.redis.xrange(keys.frames(cam), ref, ref, count=1)
        if not found or b"image" not in found[0][1]:
            return None
        frame = cv2.imdecode(np.frombuffer(found[0][1][b"image"], np.uint8), cv2.IMREAD_COLOR)
        if frame is None:
            return None
        try:
            boxes = [round(float(v)) for v in json.loads(fields.get(b"boxes", b"[]"))]
            if self.cfg.web.video == "blurred":
                pixelate(frame, boxes)
            objects = json.loads(fields.get(b"objects", b"{}"))
            people = int(fields.get(b"people", 0))
        except (ValueError, TypeError):
            return None
        section = self.cfg.cameras[cam]

        def scene(image: np.ndarray) -> None:
            if section.lines or section.zones:
                raw = self.redis.hgetall(keys.counts(cam))
                overlay.draw(image, section, {k.decode(): v.decode() for k, v in raw.items()})

        annotate(frame, boxes, people, objects=objects, scene=scene)
        ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 75])
        return jpeg.tobytes() if ok else None

    # -- for rva status ---------------------------------------------------------------------
    def record(self) -> None:
        link = self.link
        self.redis.hset(
            keys.MQTT,
            mapping={
                "state": link.state,
                "detail": link.detail,
                "broker": link.broker,
                "client_id": link.client_id,
                "topic_prefix": self.ident.topic_prefix,
                "discovery_prefix": self.ident.discovery_prefix,
                "entities": len(self.entities),
                "since": f"{link.since:.3f}",
                "updated": f"{time.time():.3f}",
                "published": link.published,
                "events": self.events_sent,
                "events_skipped": self.events_skipped,
            },
        )


def run(url: str, cfg: Config, *, runtime: Runtime) -> int:
    section = cfg.mqtt
    client = connect(url, name="rva-mqtt")
    if section is None or not section.enabled:
        where = config_path()
        why = (
            f"no [mqtt] table in {where}" if section is None else f"mqtt.enabled = false in {where}"
        )
        log.info("rva mqtt: %s: nothing to publish, exiting", why)
        with contextlib.suppress(*TRANSIENT):
            client.delete(keys.MQTT)  # no stale link state for rva status
        runtime.notifier.ready(f"MQTT off ({why}); nothing to do")
        return 0
    password = read_password(section)
    ident = identity(cfg, section)
    link = Link(section, ident, password)
    if not wait_for_redis(client, tick=runtime.tick, stop=runtime.stop):
        return 0  # asked to stop while Redis was away
    publisher = Publisher(client, cfg, link, ident)
    link.start()
    log.info(
        "rva mqtt: publishing to %s under %s (Home Assistant discovery under %s)",
        link.broker,
        ident.topic_prefix,
        ident.discovery_prefix,
    )
    runtime.notifier.ready(f"publishing to {link.broker} under {ident.topic_prefix}")
    try:
        while not runtime.stop.is_set():
            try:
                publisher.step()
                publisher.record()
                runtime.beat(client)
            except TRANSIENT as exc:
                log.warning("rva mqtt: Redis unreachable (%s)", exc)
                wait_for_redis(client, tick=runtime.tick, stop=runtime.stop)
            runtime.tick(
                f"MQTT {link.state}: {link.detail}; {link.published} messages, "
                f"{publisher.events_sent} events"
            )
            runtime.sleep(LOOP_S)
    finally:
        link.stop()
        with contextlib.suppress(*TRANSIENT):
            client.hset(
                keys.MQTT,
                mapping={"state": "stopped", "detail": "rva mqtt stopped", "updated": time.time()},
            )
    return 0
