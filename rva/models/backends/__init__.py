"""Backend registry: every module here that defines a Backend subclass is one backend.

A backend whose runtime is not installed (onnxruntime on a bare Pi, say) is logged and left
out; it is never fatal for the others.
"""

from __future__ import annotations

import logging

from rva.models.backends.base import Backend
from rva.models.manifest import ModelError
from rva.plugins import discover

log = logging.getLogger(__name__)
_unavailable: dict[str, str] = {}
BACKENDS = discover(__name__, __path__, Backend, _unavailable)  # type: ignore[type-abstract]


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
