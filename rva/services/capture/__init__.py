"""rva capture (rva-capture.service): read a camera into the camera:<id> stream."""

from rva.services.capture.service import run, run_all

__all__ = ["run", "run_all"]
