"""OpenCV DNN — the default backend: CPU everywhere, CUDA on a Jetson whose OpenCV has it.

Loads Darknet (cfg + weights) and TensorFlow (frozen graph + text graph) models straight from
memory, so the bytes can come from Redis without temporary files.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from rva.models.backends.base import Backend
from rva.models.manifest import ModelError
from rva.models.store import ModelBundle

log = logging.getLogger(__name__)


class OpenCVBackend(Backend):
    type_key = "opencv"
    formats = frozenset({"darknet", "tensorflow", "onnx"})

    def __init__(
        self,
        bundle: ModelBundle,
        device: str = "cpu",
        threads: int = 0,
        input_size: tuple[int, int] | None = None,
        cache: Path | None = None,
    ) -> None:
        # Darknet nets take their input size from the blob: nothing to change for input_size.
        super().__init__(bundle, device, threads, input_size, cache)
        self.net = self._read(bundle)
        if device == "cuda":
            if cv2.cuda.getCudaEnabledDeviceCount() == 0:
                raise ModelError("gear.device = cuda, but this OpenCV has no CUDA device")
            self.net.setPreferableBackend(cv2.dnn.DNN_BACKEND_CUDA)
            self.net.setPreferableTarget(cv2.dnn.DNN_TARGET_CUDA_FP16)
        else:
            self.net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
            self.net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        # gear.threads, else OpenCV's default (one per core; -1 also undoes the single thread
        # the gears worker sets when no gear runs this backend).
        cv2.setNumThreads(threads or -1)
        self.outputs = self.net.getUnconnectedOutLayersNames()

    @staticmethod
    def _read(bundle: ModelBundle) -> cv2.dnn.Net:
        files = {k: np.frombuffer(v, dtype=np.uint8) for k, v in bundle.files.items()}
        fmt = bundle.manifest.format
        try:
            if fmt == "darknet":
                return cv2.dnn.readNetFromDarknet(files["cfg"], files["weights"])
            if fmt == "tensorflow":
                return cv2.dnn.readNetFromTensorflow(files["graph"], files["textgraph"])
            if fmt == "onnx":
                return cv2.dnn.readNetFromONNX(files["onnx"])
        except cv2.error as exc:
            raise ModelError(f"OpenCV cannot load {bundle.manifest.name}: {exc}") from exc
        raise ModelError(f"OpenCV backend cannot load {fmt} models")

    def forward(self, blob: np.ndarray) -> list[np.ndarray]:
        self.net.setInput(blob)
        return list(self.net.forward(self.outputs))
