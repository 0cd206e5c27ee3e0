"""TensorRT — NVIDIA GPUs (a Jetson's, or a PC's): an FP16 engine built from the same ONNX
graph the onnxruntime backend runs (for a Darknet model, converted in memory by
models/darknet_onnx.py for the input size), cached on disk by models/engines.py so a restart
loads it instead of building it again.

Experimental: written, not yet run on a GPU. ``auto`` never chooses it (backends.PREFERENCE
leaves it out) and `rva config check` says so when gear.backend names it; the first run on a GPU
is scripts/gpu-check.sh. Runs on the GPU only: gear.device = "cuda".

Device memory is handled through the CUDA runtime library (libcudart, loaded with ctypes: no
second CUDA binding to install); on x86_64 it comes with the pinned wheels of
scripts/gpu-requirements.txt, on a Jetson with JetPack. TensorRT's Python bindings come from
the same wheels, or on a Jetson from JetPack's python3-libnvinfer (linked into the venv by
rva_app when rva_app_gpu is set). The TensorRT calls are those of TensorRT 10
(build_serialized_network, named I/O tensors, execute_async_v3).
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from rva.models import engines, store
from rva.models.backends.base import Backend
from rva.models.backends.onnx_runtime import OnnxRuntimeBackend
from rva.models.manifest import ModelError
from rva.models.store import ModelBundle

log = logging.getLogger(__name__)

PRECISION = "fp16"
# Where a GPU shows itself: a PC's driver (/dev/nvidia0) or a Jetson's integrated GPU (nvgpu,
# L4T R36: rva/boards/jetson.toml, gpu-device-nodes). Neither visible: no GPU here, or
# rva-gears' sandbox hides it (rva_app_gpu in the Ansible role opens it).
GPU_NODES = ("/dev/nvidia0", "/dev/nvgpu/igpu0/ctrl", "/dev/nvhost-ctrl-gpu")
CUDART = ("libcudart.so.12", "libcudart.so")
# Builder workspace: enough for YOLOv3-tiny's tactics at 1024 px; a Jetson Orin Nano has 8 GB.
WORKSPACE = 1 << 30
H2D, D2H = 1, 2  # cudaMemcpyKind
ATTR_CC_MAJOR, ATTR_CC_MINOR = 75, 76  # cudaDeviceAttr


def cudart_path() -> str | None:
    """The CUDA runtime library this backend loads: the system's (JetPack, a CUDA install), else
    the one pip puts in site-packages/nvidia/cuda_runtime/lib (nvidia-cuda-runtime-cu12)."""
    for name in CUDART:
        if _loads(name):
            return name
    for base in [*sys.path, "/usr/local/cuda/lib64"]:
        for sub in ("nvidia/cuda_runtime/lib", ""):
            candidate = Path(base) / sub / CUDART[0]
            if candidate.is_file():
                return str(candidate)
    return None


def _loads(name: str) -> bool:
    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


def runtime_problem(
    has_tensorrt: bool, cudart: str | None, nodes: tuple[str, ...] | list[str]
) -> str | None:
    """Why TensorRT cannot run here, from what was found (a pure function: tested without a GPU)."""
    if not has_tensorrt:
        return (
            "TensorRT's Python bindings are not installed (x86_64: pip install -r "
            "scripts/gpu-requirements.txt; Jetson: JetPack's python3-libnvinfer, which rva_app_gpu "
            "in the Ansible role links into the venv)"
        )
    if cudart is None:
        return "the CUDA runtime library (libcudart.so.12) is not installed"
    if not nodes:
        return (
            f"no NVIDIA GPU is visible ({', '.join(GPU_NODES)} missing): no GPU here, or the "
            "service's sandbox hides it (rva_app_gpu in the Ansible role)"
        )
    return None


def _trt() -> ModuleType:
    import tensorrt

    return tensorrt


class Cuda:
    """The few CUDA runtime calls the backend needs, through ctypes."""

    def __init__(self, library: str) -> None:
        try:
            self.lib = ctypes.CDLL(library)
        except OSError as exc:
            raise ModelError(f"cannot load the CUDA runtime {library}: {exc}") from exc
        self.lib.cudaGetErrorString.restype = ctypes.c_char_p
        self.lib.cudaMemcpyAsync.argtypes = [
            ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_void_p,
        ]  # fmt: skip
        self.lib.cudaStreamSynchronize.argtypes = [ctypes.c_void_p]
        self.lib.cudaFree.argtypes = [ctypes.c_void_p]

    def check(self, rc: int, what: str) -> None:
        if rc:
            text = self.lib.cudaGetErrorString(rc).decode(errors="replace")
            raise ModelError(f"CUDA {what} failed: {text} ({rc})")

    def device(self) -> tuple[str, tuple[int, int]]:
        """The current GPU's name and compute capability."""
        count = ctypes.c_int(0)
        self.check(self.lib.cudaGetDeviceCount(ctypes.byref(count)), "cudaGetDeviceCount")
        if count.value == 0:
            raise ModelError("CUDA sees no GPU")
        major, minor = ctypes.c_int(0), ctypes.c_int(0)
        self.check(
            self.lib.cudaDeviceGetAttribute(ctypes.byref(major), ATTR_CC_MAJOR, 0), "attribute"
        )
        self.check(
            self.lib.cudaDeviceGetAttribute(ctypes.byref(minor), ATTR_CC_MINOR, 0), "attribute"
        )
        # cudaDeviceProp starts with char name[256] in every CUDA release; the rest of the
        # struct (about 1 KB, longer in newer releases) lands in the spare room.
        props = ctypes.create_string_buffer(8192)
        get = getattr(self.lib, "cudaGetDeviceProperties_v2", None) or (
            self.lib.cudaGetDeviceProperties
        )
        self.check(get(props, 0), "cudaGetDeviceProperties")
        return props.raw[:256].split(b"\0", 1)[0].decode(errors="replace"), (
            major.value,
            minor.value,
        )

    def malloc(self, size: int) -> int:
        ptr = ctypes.c_void_p()
        self.check(self.lib.cudaMalloc(ctypes.byref(ptr), ctypes.c_size_t(size)), "cudaMalloc")
        return int(ptr.value or 0)

    def free(self, ptr: int) -> None:
        self.lib.cudaFree(ctypes.c_void_p(ptr))

    def stream(self) -> int:
        handle = ctypes.c_void_p()
        self.check(self.lib.cudaStreamCreate(ctypes.byref(handle)), "cudaStreamCreate")
        return int(handle.value or 0)

    def copy(self, dst: int, src: int, size: int, kind: int, stream: int) -> None:
        self.check(self.lib.cudaMemcpyAsync(dst, src, size, kind, stream), "cudaMemcpyAsync")

    def sync(self, stream: int) -> None:
        self.check(self.lib.cudaStreamSynchronize(ctypes.c_void_p(stream)), "synchronize")


class TensorRTBackend(Backend):
    type_key = "tensorrt"
    formats = frozenset({"onnx", "darknet"})

    @classmethod
    def runtime_missing(cls) -> str | None:
        return runtime_problem(
            importlib.util.find_spec("tensorrt") is not None,
            cudart_path(),
            [n for n in GPU_NODES if Path(n).exists()],
        )

    def __init__(
        self,
        bundle: ModelBundle,
        device: str = "cpu",
        threads: int = 0,
        input_size: tuple[int, int] | None = None,
        cache: Path | None = None,
    ) -> None:
        super().__init__(bundle, device, threads, input_size, cache)
        if device != "cuda":
            raise ModelError(
                'backend tensorrt runs on an NVIDIA GPU only: set gear.device = "cuda"'
            )
        missing = self.runtime_missing()
        if missing:
            raise ModelError(f"backend tensorrt cannot run on this host: {missing}")
        trt = _trt()
        self.cuda = Cuda(cudart_path() or CUDART[0])
        gpu, capability = self.cuda.device()
        graph = OnnxRuntimeBackend._graph(bundle, input_size)
        spec = bundle.manifest.input
        width, height = input_size or (spec.width, spec.height)
        key = engines.EngineKey(
            model=bundle.manifest.name,
            graph_sha256=engines.graph_sha256(graph),
            tensorrt=str(trt.__version__),
            gpu=gpu,
            capability=capability,
            width=width,
            height=height,
            precision=PRECISION,
        )
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.build_s = 0.0  # seconds spent building the engine; 0: loaded from the cache
        self.engine: Any = self._engine(trt, cache or store.cache_dir(), key, graph)
        self.context = self.engine.create_execution_context()
        self.stream = self.cuda.stream()
        self._bind(trt)

    def _engine(self, trt: Any, cache: Path, key: engines.EngineKey, graph: bytes) -> Any:
        """The cached engine for ``key``, else one built now (and cached)."""
        plan = engines.load(cache, key)
        if plan is not None:
            engine = self.runtime.deserialize_cuda_engine(plan)
            if engine is not None:
                log.info("TensorRT: loaded the cached engine %s", engines.path(cache, key).name)
                return engine
            log.warning("TensorRT could not load the cached engine: building it again")
        started = time.monotonic()
        plan = self._build(trt, graph, key.width, key.height)
        self.build_s = time.monotonic() - started
        log.info(
            "TensorRT %s: built the %s engine of %s at %dx%d on %s in %.1f s",
            key.tensorrt, key.precision, key.model, key.width, key.height, key.gpu, self.build_s,
        )  # fmt: skip
        engines.store(cache, key, plan)
        engine = self.runtime.deserialize_cuda_engine(plan)
        if engine is None:
            raise ModelError(f"TensorRT could not load the engine it built for {key.model}")
        return engine

    def _build(self, trt: Any, graph: bytes, width: int, height: int) -> bytes:
        builder = trt.Builder(self.logger)
        network = builder.create_network(0)  # explicit batch: the only kind in TensorRT 10
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse(graph):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise ModelError(f"TensorRT cannot parse the ONNX graph: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE)
        if getattr(builder, "platform_has_fast_fp16", True):
            config.set_flag(trt.BuilderFlag.FP16)
        # A graph whose input has free dimensions gets one profile: this input size alone.
        profile = None
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            if any(d < 0 for d in tensor.shape):
                profile = profile or builder.create_optimization_profile()
                shape = (1, tensor.shape[1] if tensor.shape[1] > 0 else 3, height, width)
                profile.set_shape(tensor.name, shape, shape, shape)
        if profile is not None:
            config.add_optimization_profile(profile)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise ModelError("TensorRT could not build an engine (its log above says why)")
        return bytes(plan)

    def _bind(self, trt: Any) -> None:
        """Device buffers for every input and output, in the engine's (the graph's) order."""
        self.inputs: list[tuple[str, int, int]] = []
        self.outputs: list[tuple[str, int, tuple[int, ...], np.dtype[Any]]] = []
        self.buffers: list[int] = []
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            shape = tuple(self.engine.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                if any(d < 0 for d in shape):
                    spec = self.bundle.manifest.input
                    width, height = self.input_size or (spec.width, spec.height)
                    shape = (1, shape[1] if shape[1] > 0 else 3, height, width)
                    self.context.set_input_shape(name, shape)
            else:
                shape = tuple(self.context.get_tensor_shape(name))
            size = int(np.prod(shape)) * dtype.itemsize
            ptr = self.cuda.malloc(size)
            self.buffers.append(ptr)
            self.context.set_tensor_address(name, ptr)
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self.inputs.append((name, ptr, size))
            else:
                self.outputs.append((name, ptr, shape, dtype))

    def forward(self, blob: np.ndarray) -> list[np.ndarray]:
        (name, ptr, size), *_ = self.inputs
        blob = np.ascontiguousarray(blob, dtype=np.float32)
        if blob.nbytes != size:
            raise ModelError(f"TensorRT input {name}: {blob.nbytes} bytes, engine wants {size}")
        self.cuda.copy(ptr, blob.ctypes.data, size, H2D, self.stream)
        if not self.context.execute_async_v3(self.stream):
            raise ModelError("TensorRT inference failed (its log above says why)")
        results = []
        for _, out_ptr, shape, dtype in self.outputs:
            host = np.empty(shape, dtype=dtype)
            self.cuda.copy(host.ctypes.data, out_ptr, host.nbytes, D2H, self.stream)
            results.append(host)
        self.cuda.sync(self.stream)
        return [r.astype(np.float32, copy=False) for r in results]

    def __del__(self) -> None:
        for ptr in getattr(self, "buffers", []):
            self.cuda.free(ptr)
