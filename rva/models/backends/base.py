"""The one interface every inference backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import numpy as np

from rva.models.store import ModelBundle


class Backend(ABC):
    """Runs a model's forward pass on a preprocessed NCHW float32 blob.

    Subclasses set ``type_key`` (the name used in rva.toml, ``gear.backend``) and
    ``formats`` (the manifest formats they can load), and return the raw output tensors in the
    layout the manifest's decoder expects.
    """

    type_key: ClassVar[str]
    formats: ClassVar[frozenset[str]]

    @classmethod
    def runtime_missing(cls) -> str | None:
        """Why this backend's runtime cannot load on this host, or None when it can. Checked
        without importing the runtime: a config check must not pay for (or crash in) that."""
        return None

    def __init__(
        self,
        bundle: ModelBundle,
        device: str = "cpu",
        threads: int = 0,
        input_size: tuple[int, int] | None = None,
        cache: Path | None = None,
    ) -> None:
        self.bundle = bundle
        self.device = device
        self.threads = threads
        # (width, height) of the blobs forward() gets; None: the manifest's input size.
        self.input_size = input_size
        # The model cache this detector was given (--model-cache), for what a backend keeps
        # there (GPU engines); None: this host's, rva.models.store.cache_dir().
        self.cache = cache

    @abstractmethod
    def forward(self, blob: np.ndarray) -> list[np.ndarray]:
        """One inference; ``blob`` is 1×3×H×W float32 already scaled as the manifest says."""
