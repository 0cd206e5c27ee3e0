"""The sections of what RVA shows and sends: the web server and MQTT."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
)

from rva.config.base import Section


class WebSection(Section):
    host: str = Field("0.0.0.0", title="Address rva web binds (127.0.0.1 keeps it local)")
    port: int = Field(5000, title="TCP port of rva web", ge=1, le=65535)
    jpeg_quality: int = Field(
        75, title="JPEG quality of the annotated /video stream", ge=10, le=100
    )
    max_fps: float = Field(15, title="Upper bound on /video frames per second", gt=0, le=60)
    max_connections: int = Field(
        256,
        title="Open connections at most; beyond it the oldest one still sending its request "
        "is closed",
        ge=16,
        le=65_536,
    )
    request_timeout_s: float = Field(
        10, title="Seconds a client has, from connecting, to send its whole request", gt=0, le=300
    )
    io_timeout_s: float = Field(
        20, title="Seconds a response waits on a client that reads nothing", gt=0, le=600
    )
    max_viewers: int = Field(
        16, title="/video streams at once (more get 503); each holds a server thread", ge=1, le=256
    )
    users_file: str = Field(
        "/etc/rva/web-users",
        title="Users and password hashes (`rva web passwd USER`); with users, everything but "
        "/healthz needs HTTP Basic credentials",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        title="Host names the page may be reached by besides IP addresses and this device's own "
        'names (host name, <host>.local, localhost); "*" for any. Other names are refused '
        "(421): DNS rebinding",
    )
    metrics_public: bool = Field(
        True, title="/metrics needs no credentials (for Prometheus) even when there are users"
    )
    video: Literal["annotated", "blurred", "off"] = Field(
        "annotated",
        title="/video: annotated, blurred (every person pixelated before encoding) or off",
    )

    @field_validator("users_file")
    @classmethod
    def _users_file_absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must be an absolute path")
        return value


def _absolute(value: str) -> str:
    if value and not value.startswith("/"):
        raise ValueError("must be an absolute path")
    return value


def _topic(value: str) -> str:
    """A topic prefix: levels joined by '/', none empty, no wildcards."""
    if value and (
        any(c in value for c in "#+\0") or any(level == "" for level in value.split("/"))
    ):
        raise ValueError("must be topic levels joined by '/', none empty, without + or #")
    return value


class MqttTlsSection(Section):
    """TLS to the broker. An empty [mqtt.tls] table: TLS checked against the system's CAs."""

    ca_file: str = Field("", title="CA certificate(s) for the broker's (empty: the system's)")
    cert_file: str = Field("", title="Client certificate, for a broker that asks for one")
    key_file: str = Field("", title="The client certificate's private key", validate_default=True)

    @field_validator("ca_file", "cert_file")
    @classmethod
    def _absolute_path(cls, value: str) -> str:
        return _absolute(value)

    @field_validator("key_file")
    @classmethod
    def _with_cert(cls, value: str, info: ValidationInfo) -> str:
        if bool(value) != bool(info.data.get("cert_file")):
            raise ValueError("cert_file and key_file go together: set both or neither")
        return _absolute(value)


class MqttSection(Section):
    """rva mqtt: counts, occupancy and crossings to an MQTT broker, announced to Home
    Assistant by MQTT discovery. Without this table (or with enabled = false) rva-mqtt exits
    at once and publishes nothing."""

    enabled: bool = Field(True, title="Publish to the broker (false: rva-mqtt does nothing)")
    host: str = Field(
        "", title="Broker host name or address (no mqtt:// in front)", validate_default=True
    )
    port: int = Field(
        0, title="Broker TCP port (0: 8883 with [mqtt.tls], else 1883)", ge=0, le=65535
    )
    username: str = Field("", title="Login name at the broker (empty: anonymous)")
    password_file: str = Field(
        "",
        title="File holding the password (empty: the systemd credential mqtt.password, which "
        "rva-mqtt.service loads from /etc/rva/credentials/mqtt-broker.secret)",
    )
    tls: MqttTlsSection | None = Field(None, title="TLS to the broker; absent: plain TCP")
    client_id: str = Field(
        "", title="MQTT client id (empty: rva-<hostname>)", pattern=r"^[A-Za-z0-9_.-]{0,64}$"
    )
    topic_prefix: str = Field("", title="Root of RVA's own topics (empty: rva/<hostname>)")
    discovery_prefix: str = Field(
        "homeassistant", title="Home Assistant's discovery prefix", min_length=1
    )
    snapshot_interval_s: float = Field(
        10.0,
        title="At most one annotated JPEG per camera this often, when the count changes "
        "(0: no camera entity)",
        ge=0,
        le=3600,
    )

    @field_validator("host")
    @classmethod
    def _host(cls, value: str, info: ValidationInfo) -> str:
        if not value and info.data.get("enabled", True):
            raise ValueError("set the broker's address (or enabled = false)")
        if value and not re.fullmatch(r"[A-Za-z0-9._:-]+|\[[0-9A-Fa-f:.]+\]", value):
            raise ValueError("a host name or address only, without a scheme, port or path")
        return value

    @field_validator("password_file")
    @classmethod
    def _password_file(cls, value: str, info: ValidationInfo) -> str:
        if value and not info.data.get("username"):
            raise ValueError("a password needs mqtt.username as well")
        return _absolute(value)

    @field_validator("topic_prefix", "discovery_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return _topic(value)
