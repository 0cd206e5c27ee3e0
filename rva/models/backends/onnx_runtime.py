"""ONNX Runtime — the default CPU backend where it is installed (x86_64 and aarch64 wheels,
part of RVA's install), CUDA with onnxruntime-gpu.

Runs ONNX models, and Darknet models converted to ONNX in memory when the backend loads
(models/darknet_onnx.py, ~0.3 s on a 2-core x86 VM), so it returns the same rows as the OpenCV
backend and no second copy of the weights sits in the cache or in Redis. Without onnxruntime
(a 32-bit ARM system has no wheel) this backend is simply not offered and `auto` is OpenCV.
With ``gear.device = "cuda"`` and an onnxruntime that has them (onnxruntime-gpu from PyPI on
x86_64, NVIDIA's Jetson wheel on a Jetson) it runs on ONNX Runtime's TensorRT execution provider
(FP16, engines cached in <model cache>/engines/onnxruntime) where TensorRT is installed, else
its CUDA provider, the CPU taking what neither can run (``providers``). Experimental: written,
not yet run on a GPU (scripts/gpu-check.sh is the first run).
``gear.threads`` sets ONNX Runtime's intra-op threads (0 = one per core). Its threads never
spin-wait between runs: on a 2- or 4-core device a spinning pool takes the cores capture and
Redis need while the gear waits for the next frame.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from rva.models.backends.base import Backend
from rva.models.manifest import ModelError
from rva.models.store import ModelBundle

CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"

Provider = str | tuple[str, dict[str, str]]


def providers(
    device: str, available: list[str], has_tensorrt: bool, engine_dir: Path | None
) -> list[Provider]:
    """ONNX Runtime's execution providers for ``gear.device``, best first: TensorRT (FP16, its
    engines cached in ``engine_dir`` when that is writable, else built at each start) where this
    onnxruntime has the provider and TensorRT itself is installed, then CUDA, then the CPU for
    any node the others cannot run."""
    if device != "cuda":
        return [CPU]
    if CUDA not in available:
        raise ModelError(
            "gear.device = cuda, but this onnxruntime has no CUDA provider "
            "(install onnxruntime-gpu instead of onnxruntime)"
        )
    chosen: list[Provider] = []
    if TENSORRT in available and has_tensorrt:
        options = {"trt_fp16_enable": "True"}
        if engine_dir is not None:
            options |= {"trt_engine_cache_enable": "True", "trt_engine_cache_path": str(engine_dir)}
        chosen.append((TENSORRT, options))
    return [*chosen, CUDA, CPU]


def _ort() -> ModuleType:
    # Imported when a model loads, not when the registry or the config is read: onnxruntime
    # costs time to import and aborts the process where it cannot read /proc/cpuinfo (a
    # chroot without /proc, where provisioning runs `rva config check`).
    import onnxruntime

    return onnxruntime


def _engine_dir(cache: Path | None = None) -> Path | None:
    """<model cache>/engines/onnxruntime when it can be written there, else None."""
    from rva.models import engines, store

    folder = engines.folder(cache or store.cache_dir()) / "onnxruntime"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return folder if os.access(folder, os.W_OK) else None


class OnnxRuntimeBackend(Backend):
    type_key = "onnxruntime"
    formats = frozenset({"onnx", "darknet"})

    @classmethod
    def runtime_missing(cls) -> str | None:
        if importlib.util.find_spec("onnxruntime") is None:
            return "onnxruntime is not installed (pip install onnxruntime)"
        return None

    def __init__(
        self,
        bundle: ModelBundle,
        device: str = "cpu",
        threads: int = 0,
        input_size: tuple[int, int] | None = None,
        cache: Path | None = None,
    ) -> None:
        super().__init__(bundle, device, threads, input_size, cache)
        name = bundle.manifest.name
        graph = self._graph(bundle, input_size)
        ort = _ort()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(
                graph, sess_options=options, providers=self._providers(device, cache)
            )
        # onnxruntime's errors derive straight from Exception, one class per status code.
        except Exception as exc:
            raise ModelError(f"ONNX Runtime cannot load {name}: {exc}") from exc
        # A CUDA provider that fails to start (missing CUDA/cuDNN libraries) only logs a warning
        # and leaves the session on CPU; a gear configured for the GPU must not run there quietly.
        running = self.session.get_providers()
        if device == "cuda" and CUDA not in running and TENSORRT not in running:
            raise ModelError("gear.device = cuda, but ONNX Runtime could not start CUDA")
        self.input = self.session.get_inputs()[0].name
        self.outputs = [o.name for o in self.session.get_outputs()]

    @staticmethod
    def _graph(bundle: ModelBundle, input_size: tuple[int, int] | None) -> bytes:
        fmt = bundle.manifest.format
        if fmt == "onnx":
            return bundle.files["onnx"]
        if fmt == "darknet":
            from rva.models.darknet_onnx import convert

            cfg = bundle.files["cfg"].decode("utf-8")
            model = convert(cfg, bundle.files["weights"], bundle.manifest.name, input_size)
            return model.SerializeToString()
        raise ModelError(f"onnxruntime backend cannot run {fmt} models")

    @staticmethod
    def _providers(device: str, cache: Path | None = None) -> list[Any]:
        if device != "cuda":
            return [CPU]
        ort = _ort()
        available = ort.get_available_providers()
        # onnxruntime-gpu from PyPI finds CUDA and cuDNN in the nvidia-* wheels only when told
        # to (1.21 and newer); JetPack's, on the system's library path, need nothing.
        if CUDA in available and hasattr(ort, "preload_dlls"):
            ort.preload_dlls()
        return providers(
            device,
            available,
            importlib.util.find_spec("tensorrt") is not None,
            _engine_dir(cache),
        )

    def forward(self, blob: np.ndarray) -> list[np.ndarray]:
        return list(self.session.run(self.outputs, {self.input: blob}))
