"""rva mqtt's link to the broker: paho's network thread keeps it (Last Will ``offline``,
reconnects with a backoff of 1 s doubling to 60 s, at most MAX_QUEUED messages held), and its
state is kept for rva status; the password comes from a file or a systemd credential."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from rva.config import ConfigError, MqttSection, config_path
from rva.services.mqtt.discovery import AVAILABLE, NOT_AVAILABLE, Identity, client_id

log = logging.getLogger(__name__)

MAX_QUEUED = 1000
KEEPALIVE_S = 30
CREDENTIAL = "mqtt.password"  # rva-mqtt.service: LoadCredential= of mqtt-broker.secret


def read_password(section: MqttSection) -> str | None:
    """The broker password: mqtt.password_file, else the systemd credential, else none."""
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if section.password_file:
        path, what = Path(section.password_file), f"{config_path()}: mqtt.password_file"
    elif creds and (Path(creds) / CREDENTIAL).is_file():
        path, what = Path(creds) / CREDENTIAL, f"the systemd credential {CREDENTIAL}"
    else:
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {path}: {exc.strerror}") from None
    password = text.split("\n", 1)[0].rstrip("\r")
    if password and not section.username:
        log.warning("%s holds a password but mqtt.username is empty: logging in anonymously", what)
        return None
    return password or None


class Link:
    """The broker connection, kept by paho's network thread; its state for rva status."""

    def __init__(self, section: MqttSection, ident: Identity, password: str | None) -> None:
        self.section, self.ident = section, ident
        self.port = section.port or (8883 if section.tls else 1883)
        self.broker = f"{section.host}:{self.port}"
        self.client_id = client_id(section)
        self.connected = threading.Event()
        self.resync = threading.Event()  # announce and send every state again
        self.stopping = False
        self.state, self.detail = "connecting", f"connecting to {self.broker}"
        self.since = time.time()
        self.published = 0
        self._lock = threading.Lock()
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        c.will_set(ident.availability_topic, NOT_AVAILABLE, qos=1, retain=True)
        c.reconnect_delay_set(min_delay=1, max_delay=60)
        c.max_queued_messages_set(MAX_QUEUED)
        if section.username:
            c.username_pw_set(section.username, password)
        if section.tls is not None:
            tls = section.tls
            try:
                c.tls_set(
                    ca_certs=tls.ca_file or None,
                    certfile=tls.cert_file or None,
                    keyfile=tls.key_file or None,
                )
            except (OSError, ValueError) as exc:
                raise ConfigError(
                    f"{config_path()}: mqtt.tls: cannot use the certificate files: {exc}"
                ) from None
        c.on_connect = self._on_connect
        c.on_connect_fail = self._on_connect_fail
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        self.client = c

    # -- paho's thread ----------------------------------------------------------------------
    def _set(self, state: str, detail: str) -> None:
        with self._lock:
            if (state, detail) == (self.state, self.detail):
                return
            self.state, self.detail, self.since = state, detail, time.time()
        level = {"connected": logging.INFO, "error": logging.ERROR}.get(state, logging.WARNING)
        log.log(level, "MQTT: %s", detail)

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            hint = ""
            if reason.value in (4, 5, 134, 135):  # bad user name or password, not authorised
                hint = " (check mqtt.username and the password)"
            self._set("error", f"the broker at {self.broker} refused the login: {reason}{hint}")
            return
        client.subscribe(f"{self.ident.discovery_prefix}/status", qos=1)
        client.publish(self.ident.availability_topic, AVAILABLE, qos=1, retain=True)
        self.connected.set()
        self.resync.set()
        self._set("connected", f"connected to {self.broker} as {self.client_id}")

    def _on_connect_fail(self, _client: mqtt.Client, _u: Any) -> None:
        self._set("down", f"cannot reach the broker at {self.broker}; retrying")

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        was_up = self.connected.is_set()
        self.connected.clear()
        if was_up and not self.stopping:
            self._set("down", f"lost the broker at {self.broker} ({reason}); reconnecting")

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.payload == b"online":  # Home Assistant (re)started: send everything again
            self.resync.set()

    # -- the main loop's side ---------------------------------------------------------------
    def start(self) -> None:
        self.client.connect_async(self.section.host, self.port, keepalive=KEEPALIVE_S)
        self.client.loop_start()

    def publish(self, topic: str, body: str | bytes, *, retain: bool, qos: int = 0) -> bool:
        """Hand one message to paho; False (nothing queued) while the link is down."""
        if not self.connected.is_set():
            return False
        info = self.client.publish(topic, body, qos=qos, retain=retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return False
        self.published += 1
        return True

    def stop(self) -> None:
        """Say offline (the Last Will is only for unclean ends) and disconnect."""
        self.stopping = True
        if self.connected.is_set():
            info = self.client.publish(
                self.ident.availability_topic, NOT_AVAILABLE, qos=1, retain=True
            )
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout=2)
        self.client.disconnect()
        self.client.loop_stop()
