"""Gears: per-frame programs run by `rva gears`, registered in Redis by `rva init`.

Every module here that defines a Gear subclass adds one gear type (its ``type_key``); a gear
whose imports fail is logged and left out, never fatal for the others.
"""

from __future__ import annotations

import logging

from rva.gears.base import Entry, Gear, GearError, Registration, Result
from rva.plugins import discover

log = logging.getLogger(__name__)
unavailable: dict[str, str] = {}
GEAR_TYPES = discover(__name__, __path__, Gear, unavailable)  # type: ignore[type-abstract]
for _name, _why in unavailable.items():
    log.warning("gear module %s unavailable: %s", _name, _why)

__all__ = ["GEAR_TYPES", "Entry", "Gear", "GearError", "Registration", "Result"]
