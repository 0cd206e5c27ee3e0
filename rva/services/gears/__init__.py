"""rva gears (rva-gears.service): run the registered gears (rva.gears) as members of a Redis
consumer group, on this host or any other on the LAN."""

from rva.services.gears.service import run

__all__ = ["run"]
