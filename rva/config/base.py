"""What every section of the config shares: unknown keys are errors, values are frozen."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

CameraId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")]


class ConfigError(Exception):
    """A configuration problem, already phrased for a person: file, key, reason."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
