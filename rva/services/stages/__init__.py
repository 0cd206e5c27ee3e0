"""rva stages: tracking and counting for cameras with lines or zones,
for deployments where no rva gears worker stands in for them (`rva gears --no-stages`)."""

from rva.services.stages.service import run

__all__ = ["run"]
