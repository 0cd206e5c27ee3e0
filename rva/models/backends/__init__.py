"""Backend registry: every module here that defines a Backend subclass is one backend.

A backend whose runtime is not installed (onnxruntime on a 32-bit ARM system, say) is logged
and left out; it is never fatal for the others. ``auto`` (the default of gear.backend) is the
first of PREFERENCE that is installed and can run the model, decided on each worker's host.
"""

from __future__ import annotations

import logging

from rva.models.backends.base import Backend
from rva.models.manifest import ModelError
from rva.plugins import discover

log = logging.getLogger(__name__)
_unavailable: dict[str, str] = {}
BACKENDS = discover(__name__, __path__, Backend, _unavailable)  # type: ignore[type-abstract]


# Fastest first, as measured on the default model (docs/models.md, "Backends"): ONNX Runtime runs
# YOLOv3-tiny in about half the time OpenCV DNN needs on x86_64, with the same boxes.
# TensorRT (tensor_rt.py) is left out until it has run the real model on a real GPU in a test:
# auto must not pick a backend nobody has seen work (const.EXPERIMENTAL_BACKENDS).
PREFERENCE = ("onnxruntime", "opencv")


def candidates(type_key: str, fmt: str) -> list[type[Backend]]:
    """The backends to try, in order, for ``gear.backend = type_key`` and a model format."""
    if type_key != "auto":
        return [get(type_key)]
    found = [
        BACKENDS[k]
        for k in PREFERENCE
        if k in BACKENDS and fmt in BACKENDS[k].formats and BACKENDS[k].runtime_missing() is None
    ]
    if not found:
        raise ModelError(f"no installed backend can run {fmt} models")
    return found


def get(type_key: str) -> type[Backend]:
    """The backend of that name, when its runtime can load on this host."""
    try:
        backend = BACKENDS[type_key]
    except KeyError:
        why = "; ".join(f"{k}: {v}" for k, v in _unavailable.items())
        known = ", ".join(sorted(BACKENDS))
        raise ModelError(
            f"unknown or unavailable backend {type_key!r} (available: {known})"
            + (f" [not loaded: {why}]" if why else "")
        ) from None
    missing = backend.runtime_missing()
    if missing:
        raise ModelError(f"backend {type_key} cannot run on this host: {missing}")
    return backend


__all__ = ["BACKENDS", "PREFERENCE", "Backend", "candidates", "get"]
