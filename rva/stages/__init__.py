"""Stages: per-camera work after detection (tracking and counting is the first), run by
`rva stages` and by every `rva gears` worker, one active instance per camera.

Every module here that defines a Stage subclass adds one stage type (its ``type_key``); adding a
stage means adding a module, not editing the worker. A module whose imports fail is logged and
left out.
"""

from __future__ import annotations

import logging

from rva.plugins import discover
from rva.stages.base import Stage, StageOutput

log = logging.getLogger(__name__)
unavailable: dict[str, str] = {}
STAGE_TYPES = discover(__name__, __path__, Stage, unavailable)  # type: ignore[type-abstract]
for _name, _why in unavailable.items():
    log.warning("stage module %s unavailable: %s", _name, _why)

__all__ = ["STAGE_TYPES", "Stage", "StageOutput"]
