"""Gears: per-frame programs run by `rva gears`, registered in Redis by `rva init`.

Every module here that defines a Gear subclass adds one gear type (its ``type_key``); a gear
whose imports fail is logged and left out, never fatal for the others.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from typing import cast

from rva.gears.base import Entry, Gear, GearError, Registration, Result

log = logging.getLogger(__name__)


def _discover() -> dict[str, type[Gear]]:
    found: dict[str, type[Gear]] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name == "base":
            continue
        try:
            module = importlib.import_module(f"{__name__}.{info.name}")
        except ImportError as exc:
            log.warning("gear module %s unavailable: %s", info.name, exc)
            continue
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, Gear) and obj is not Gear:
                found[cast(type[Gear], obj).type_key] = obj
    return found


GEAR_TYPES = _discover()

__all__ = ["GEAR_TYPES", "Entry", "Gear", "GearError", "Registration", "Result"]
