"""Backend registry: every module here that defines a Backend subclass is one backend.

A backend whose runtime is not installed (onnxruntime on a bare Pi, say) is logged and left
out; it is never fatal for the others.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from typing import cast

from rva.models.backends.base import Backend
from rva.models.manifest import ModelError

log = logging.getLogger(__name__)
_unavailable: dict[str, str] = {}


def _discover() -> dict[str, type[Backend]]:
    found: dict[str, type[Backend]] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name == "base":
            continue
        try:
            module = importlib.import_module(f"{__name__}.{info.name}")
        except ImportError as exc:
            _unavailable[info.name] = str(exc)
            log.debug("backend module %s unavailable: %s", info.name, exc)
            continue
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, Backend) and obj is not Backend:
                found[cast(type[Backend], obj).type_key] = obj
    return found


BACKENDS = _discover()


def get(type_key: str) -> type[Backend]:
    try:
        return BACKENDS[type_key]
    except KeyError:
        why = "; ".join(f"{k}: {v}" for k, v in _unavailable.items())
        known = ", ".join(sorted(BACKENDS))
        raise ModelError(
            f"unknown or unavailable backend {type_key!r} (available: {known})"
            + (f" [not loaded: {why}]" if why else "")
        ) from None


__all__ = ["BACKENDS", "Backend", "get"]
