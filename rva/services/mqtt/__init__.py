"""rva mqtt (rva-mqtt.service): counts to an MQTT broker, with Home Assistant discovery."""

from rva.services.mqtt.service import run

__all__ = ["run"]
