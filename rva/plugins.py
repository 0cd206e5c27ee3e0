"""Find plugin classes (gears, inference backends) in the modules of a package.

A module whose imports fail (an optional runtime that is not installed) is recorded in
``unavailable`` and skipped: one missing extra never takes the others down.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Iterable
from typing import Any, TypeVar, cast

log = logging.getLogger(__name__)
T = TypeVar("T")


def discover(
    package: str, path: Iterable[str], base: type[T], unavailable: dict[str, str]
) -> dict[str, type[T]]:
    """Map each subclass's ``type_key`` to the class, over every module but ``base``'s own."""
    found: dict[str, type[T]] = {}
    for info in pkgutil.iter_modules(path):
        if info.name == "base":
            continue
        try:
            module = importlib.import_module(f"{package}.{info.name}")
        except ImportError as exc:
            unavailable[info.name] = str(exc)
            log.debug("%s.%s unavailable: %s", package, info.name, exc)
            continue
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, base) and obj is not base:
                found[cast(Any, obj).type_key] = obj
    return found
