"""The GPU backends' parts that run without a GPU: the TensorRT engine cache (keys, atomic
files, a corrupt or mismatched file rebuilt), ONNX Runtime's provider choice, the refusal when
TensorRT or CUDA is absent (the real lookups, which fail on a machine without them), `auto`
never choosing the experimental backend, `rva config check` saying it is experimental, and the
tensorrt backend's own code on a stand-in for the GPU (its engine: ONNX Runtime on the CPU).
The GPU itself is exercised by the cross-backend test in test_onnx_backend.py, which runs the
GPU backends where they can run (scripts/gpu-check.sh) and says why it skips elsewhere."""

from __future__ import annotations

import ctypes
import logging
import sys
import types
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from rva import const
from rva.models import backends, engines
from rva.models.backends import onnx_runtime, tensor_rt
from rva.models.backends.onnx_runtime import CPU, CUDA, TENSORRT, providers
from rva.models.manifest import ModelError
from tests.conftest import rva

KEY = engines.EngineKey(
    model="yolov3-tiny",
    graph_sha256=engines.graph_sha256(b"graph"),
    tensorrt="10.13.3.9",
    gpu="NVIDIA H100 80GB HBM3",
    capability=(9, 0),
    width=512,
    height=512,
    precision="fp16",
)


def test_the_engine_key_changes_with_everything_the_engine_depends_on() -> None:
    changed = [
        replace(KEY, graph_sha256=engines.graph_sha256(b"other graph")),
        replace(KEY, tensorrt="10.3.0"),
        replace(KEY, gpu="Orin (nvgpu)"),
        replace(KEY, capability=(8, 7)),
        replace(KEY, width=416, height=416),
        replace(KEY, precision="fp32"),
        replace(KEY, model="nanodet"),
    ]
    digests = {k.digest() for k in changed}
    assert len(digests) == len(changed) and KEY.digest() not in digests
    assert replace(KEY).digest() == KEY.digest()  # the same inputs, the same key
    assert KEY.file_name().startswith("yolov3-tiny-512x512-fp16-")


def test_an_engine_is_stored_atomically_and_loaded_back(tmp_path: Path) -> None:
    assert engines.load(tmp_path, KEY) is None
    written = engines.store(tmp_path, KEY, b"\x00engine\nbytes")
    assert written == tmp_path / "engines" / KEY.file_name()
    assert engines.load(tmp_path, KEY) == b"\x00engine\nbytes"
    # No temporary file is left beside it.
    assert [p.name for p in (tmp_path / "engines").iterdir()] == [KEY.file_name()]


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (lambda data: data[:-3], "is cut short (9 of 12 engine bytes)"),
        (lambda data: b"garbage" + data, "is not an RVA engine file"),
        (lambda data: engines.MAGIC + b"{not json\n" + data, "has a damaged header"),
    ],
)
def test_a_corrupt_engine_file_is_rebuilt_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: object, said: str
) -> None:
    file = engines.store(tmp_path, KEY, b"engine bytes")
    assert file is not None
    file.write_bytes(damage(file.read_bytes()))  # type: ignore[operator]
    with caplog.at_level(logging.WARNING, logger="rva.models.engines"):
        assert engines.load(tmp_path, KEY) is None
    assert f"{file} {said}" in caplog.text and ": building the engine again" in caplog.text


def test_an_engine_of_another_gpu_under_this_name_is_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file copied from another board keeps its name but not its header."""
    other = replace(KEY, gpu="Orin (nvgpu)", capability=(8, 7))
    file = engines.store(tmp_path, other, b"orin engine")
    assert file is not None
    file.rename(engines.path(tmp_path, KEY))
    with caplog.at_level(logging.WARNING, logger="rva.models.engines"):
        assert engines.load(tmp_path, KEY) is None
    assert "was built for something else" in caplog.text


def test_a_cache_that_cannot_be_written_leaves_the_engine_unstored_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "not-a-folder"  # root writes into read-only folders: a file, then
    blocked.write_text("")
    with caplog.at_level(logging.WARNING, logger="rva.models.engines"):
        assert engines.store(blocked, KEY, b"engine") is None
    assert "TensorRT engine not cached" in caplog.text
    assert "built again at the next start" in caplog.text


def test_onnxruntime_provider_choice() -> None:
    folder = Path("/var/lib/rva/models/engines/onnxruntime")
    assert providers("cpu", [TENSORRT, CUDA, CPU], True, folder) == [CPU]
    assert providers("cuda", [CUDA, CPU], True, folder) == [CUDA, CPU]
    # The TensorRT provider only where TensorRT itself is installed (it loads libnvinfer).
    assert providers("cuda", [TENSORRT, CUDA, CPU], False, folder) == [CUDA, CPU]
    chosen = providers("cuda", [TENSORRT, CUDA, CPU], True, folder)
    assert chosen[1:] == [CUDA, CPU]
    name, options = chosen[0]
    assert name == TENSORRT and options == {
        "trt_fp16_enable": "True",
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(folder),
    }
    # A cache that cannot be written: engines built at each start, no cache options.
    assert providers("cuda", [TENSORRT, CUDA, CPU], True, None)[0] == (
        TENSORRT,
        {"trt_fp16_enable": "True"},
    )
    with pytest.raises(ModelError, match=r"no CUDA provider \(install onnxruntime-gpu"):
        providers("cuda", [CPU], True, folder)


def test_tensorrt_is_refused_here_with_the_reason() -> None:
    """The real lookups: no TensorRT bindings, no libcudart and no GPU on this machine."""
    if importlib_has("tensorrt"):
        pytest.skip("TensorRT is installed here: the refusal is not what this machine gives")
    missing = backends.BACKENDS["tensorrt"].runtime_missing()
    assert missing is not None and "TensorRT's Python bindings are not installed" in missing
    with pytest.raises(ModelError, match="backend tensorrt cannot run on this host: TensorRT"):
        backends.get("tensorrt")


def test_each_missing_part_of_the_gpu_runtime_is_named() -> None:
    assert "scripts/gpu-requirements.txt" in (tensor_rt.runtime_problem(False, None, []) or "")
    assert "libcudart.so.12" in (tensor_rt.runtime_problem(True, None, []) or "")
    no_gpu = tensor_rt.runtime_problem(True, "libcudart.so.12", []) or ""
    assert "no NVIDIA GPU is visible" in no_gpu and "rva_app_gpu" in no_gpu
    assert tensor_rt.runtime_problem(True, "libcudart.so.12", ["/dev/nvidia0"]) is None


def test_auto_never_chooses_an_experimental_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    """Even where TensorRT and a GPU are present (pretended here), auto stays on the CPU
    backends until the GPU backend has run the real model on a real GPU in a test."""
    assert set(const.EXPERIMENTAL_BACKENDS) <= set(backends.BACKENDS)
    assert not set(const.EXPERIMENTAL_BACKENDS) & set(backends.PREFERENCE)
    monkeypatch.setattr(tensor_rt.TensorRTBackend, "runtime_missing", classmethod(lambda c: None))
    for fmt in ("darknet", "onnx"):
        chosen = [b.type_key for b in backends.candidates("auto", fmt)]
        assert "tensorrt" not in chosen and chosen, fmt
    assert backends.get("tensorrt") is tensor_rt.TensorRTBackend


def test_tensorrt_wants_the_gpu_device(monkeypatch: pytest.MonkeyPatch) -> None:
    from rva.models import manifest
    from rva.models.store import ModelBundle

    bundle = ModelBundle(manifest.load("yolov3-tiny"), {})
    with pytest.raises(ModelError, match=r'GPU only: set gear\.device = "cuda"'):
        tensor_rt.TensorRTBackend(bundle, device="cpu")
    with pytest.raises(ModelError, match="cannot run on this host"):
        monkeypatch.setattr(tensor_rt, "runtime_problem", lambda *a: "no GPU (test)")
        tensor_rt.TensorRTBackend(bundle, device="cuda")


def test_config_check_says_the_gpu_paths_are_experimental(tmp_path: Path) -> None:
    def check(gear: str) -> tuple[int, str]:
        cfg = tmp_path / "rva.toml"
        cfg.write_text(f'[cameras.0]\nsource = "rtsp://camera.lan/stream"\n[gear]\n{gear}\n')
        done = rva("config", "check", "--config", str(cfg))
        return done.returncode, done.stdout + done.stderr

    code, out = check('backend = "tensorrt"\ndevice = "cuda"')
    assert code == 0, out
    assert (
        "gear.backend: warning: tensorrt is experimental: written, not yet run on a GPU" in out
    ), out
    assert "auto never chooses it" in out and "OK (1 camera(s))" in out
    code, out = check('backend = "tensorrt"')
    assert code == 2 and "gear.device: backend tensorrt runs on an NVIDIA GPU only" in out, out
    code, out = check('device = "cuda"')
    assert code == 0 and "gear.device: warning: cuda on ONNX Runtime" in out, out
    assert "experimental: written, not yet run on a GPU" in out
    code, out = check('backend = "onnxruntime"')
    assert code == 0 and "warning" not in out, out


def importlib_has(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def test_the_onnxruntime_engine_folder_is_under_the_model_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(const.ENV_MODEL_CACHE, str(tmp_path))
    assert onnx_runtime._engine_dir() == tmp_path / "engines" / "onnxruntime"
    own = tmp_path / "own-cache"  # a detector given its own model cache
    assert onnx_runtime._engine_dir(own) == own / "engines" / "onnxruntime"
    monkeypatch.setenv(const.ENV_MODEL_CACHE, str(tmp_path / "file"))
    (tmp_path / "file").write_text("")
    assert onnx_runtime._engine_dir() is None


# -- the tensorrt backend's plumbing, on a stand-in for the GPU ---------------------------------
# No GPU here: a stand-in for the tensorrt module and the CUDA runtime, behind the calls the
# backend makes (TensorRT 10's names), whose "engine" is the plan's ONNX graph run by ONNX
# Runtime on the CPU and whose "device memory" is host memory. What it checks is the backend's
# own code: the engine built once and loaded from the cache after a restart, a damaged cache
# rebuilt, the tensors bound by name in the graph's order and copied in and out whole.
class _FakeCuda:
    def __init__(self, library: str) -> None:
        self.blocks: list[ctypes.Array[ctypes.c_char]] = []

    def device(self) -> tuple[str, tuple[int, int]]:
        return "Stand-in GPU", (8, 7)

    def malloc(self, size: int) -> int:
        self.blocks.append(ctypes.create_string_buffer(size))
        return ctypes.addressof(self.blocks[-1])

    def free(self, ptr: int) -> None:
        pass

    def stream(self) -> int:
        return 1

    def copy(self, dst: int, src: int, size: int, kind: int, stream: int) -> None:
        ctypes.memmove(dst, src, size)

    def sync(self, stream: int) -> None:
        pass


def _fake_tensorrt(builds: list[bytes]) -> types.ModuleType:
    import onnxruntime

    trt = types.ModuleType("tensorrt")
    magic = b"STAND-IN PLAN\n"

    class Session:
        def __init__(self, graph: bytes) -> None:
            self.session = onnxruntime.InferenceSession(graph, providers=["CPUExecutionProvider"])
            self.inputs = self.session.get_inputs()
            self.outputs = self.session.get_outputs()

    class Network:
        graph = b""

        @property
        def num_inputs(self) -> int:
            return len(Session(self.graph).inputs)

        def get_input(self, i: int) -> object:
            spec = Session(self.graph).inputs[i]
            return types.SimpleNamespace(name=spec.name, shape=tuple(spec.shape))

    class Parser:
        num_errors = 0

        def __init__(self, network: Network, logger: object) -> None:
            self.network = network

        def parse(self, graph: bytes) -> bool:
            self.network.graph = graph
            return True

    class Builder:
        platform_has_fast_fp16 = True

        def __init__(self, logger: object) -> None:
            pass

        def create_network(self, flags: int) -> Network:
            return Network()

        def create_builder_config(self) -> object:
            return types.SimpleNamespace(
                set_memory_pool_limit=lambda *a: None, set_flag=lambda *a: None
            )

        def build_serialized_network(self, network: Network, config: object) -> bytes:
            builds.append(network.graph)
            return magic + network.graph

    class Context:
        def __init__(self, engine: Engine) -> None:
            self.engine, self.addresses = engine, {}

        def set_tensor_address(self, name: str, ptr: int) -> None:
            self.addresses[name] = ptr

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return self.engine.get_tensor_shape(name)

        def execute_async_v3(self, stream: int) -> bool:
            feed = {}
            for spec in self.engine.session.inputs:
                size = int(np.prod(spec.shape)) * 4
                raw = ctypes.string_at(self.addresses[spec.name], size)
                feed[spec.name] = np.frombuffer(raw, np.float32).reshape(spec.shape)
            names = [o.name for o in self.engine.session.outputs]
            for name, out in zip(names, self.engine.session.session.run(names, feed), strict=True):
                out = np.ascontiguousarray(out, dtype=np.float32)
                ctypes.memmove(self.addresses[name], out.ctypes.data, out.nbytes)
            return True

    class Engine:
        def __init__(self, graph: bytes) -> None:
            self.session = Session(graph)
            self.io = [(t, True) for t in self.session.inputs]
            self.io += [(t, False) for t in self.session.outputs]

        num_io_tensors = property(lambda self: len(self.io))

        def get_tensor_name(self, i: int) -> str:
            return str(self.io[i][0].name)

        def _spec(self, name: str) -> tuple[object, bool]:
            return next((t, is_in) for t, is_in in self.io if t.name == name)

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return tuple(self._spec(name)[0].shape)  # type: ignore[attr-defined]

        def get_tensor_dtype(self, name: str) -> type:
            return np.float32

        def get_tensor_mode(self, name: str) -> str:
            return "in" if self._spec(name)[1] else "out"

        def create_execution_context(self) -> Context:
            return Context(self)

    class Runtime:
        def __init__(self, logger: object) -> None:
            pass

        def deserialize_cuda_engine(self, plan: bytes) -> Engine | None:
            return Engine(plan[len(magic) :]) if plan.startswith(magic) else None

    trt.__version__ = "10.3.0 (stand-in)"  # type: ignore[attr-defined]
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, severity: None})  # type: ignore[attr-defined]
    trt.TensorIOMode = types.SimpleNamespace(INPUT="in", OUTPUT="out")  # type: ignore[attr-defined]
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="workspace")  # type: ignore[attr-defined]
    trt.BuilderFlag = types.SimpleNamespace(FP16="fp16")  # type: ignore[attr-defined]
    trt.nptype = np.dtype  # type: ignore[attr-defined]
    trt.Builder, trt.OnnxParser, trt.Runtime = Builder, Parser, Runtime  # type: ignore[attr-defined]
    return trt


def test_the_tensorrt_backend_builds_once_loads_from_the_cache_and_rebuilds_a_bad_one(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    model_cache: Path,
    sample_frames: dict[int, np.ndarray],
) -> None:
    from rva.models import manifest, store
    from rva.models.detector import Detector

    pytest.importorskip("onnxruntime")
    builds: list[bytes] = []
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_tensorrt(builds))
    monkeypatch.setattr(tensor_rt, "Cuda", _FakeCuda)
    monkeypatch.setattr(tensor_rt.TensorRTBackend, "runtime_missing", classmethod(lambda c: None))
    monkeypatch.setenv(const.ENV_MODEL_CACHE, str(tmp_path))
    bundle = store.from_cache(manifest.load("yolov3-tiny"), model_cache)
    caplog.set_level(logging.INFO, logger="rva.models")

    first = Detector(bundle, backend="tensorrt", device="cuda")
    assert len(builds) == 1 and first.backend.build_s > 0  # type: ignore[attr-defined]
    (plan,) = (tmp_path / "engines").glob("yolov3-tiny-512x512-fp16-*.plan")
    assert "built the fp16 engine of yolov3-tiny at 512x512 on Stand-in GPU" in caplog.text
    # The same rows as the onnxruntime backend: bound by name, copied in and out whole.
    cpu = Detector(bundle, backend="onnxruntime")
    blob, _ = cpu.preprocess(sample_frames[200])
    for a, b in zip(cpu.backend.forward(blob), first.backend.forward(blob), strict=True):
        assert a.shape == b.shape and np.array_equal(a, b)
    assert first.detect(sample_frames[200]).people == cpu.detect(sample_frames[200]).people

    restarted = Detector(bundle, backend="tensorrt", device="cuda")
    assert len(builds) == 1 and restarted.backend.build_s == 0.0  # type: ignore[attr-defined]
    assert f"loaded the cached engine {plan.name}" in caplog.text

    # An engine TensorRT cannot load (a whole file, its header right): built again, logged.
    data = plan.read_bytes()
    body = data.index(b"\n", len(engines.MAGIC)) + 1
    plan.write_bytes(data[:body] + b"X" * (len(data) - body))
    Detector(bundle, backend="tensorrt", device="cuda")
    assert len(builds) == 2
    assert "could not load the cached engine: building it again" in caplog.text
    # Another input size is another engine, beside the first.
    Detector(bundle, backend="tensorrt", device="cuda", input_size=416)
    assert len(builds) == 3 and builds[2] != builds[0]
    assert len(list((tmp_path / "engines").glob("yolov3-tiny-416x416-fp16-*.plan"))) == 1
    # A detector given its own model cache (--model-cache) keeps its engines there.
    own = tmp_path / "own-cache"
    Detector(bundle, backend="tensorrt", device="cuda", model_cache=own)
    assert len(builds) == 4
    assert len(list((own / "engines").glob("yolov3-tiny-512x512-fp16-*.plan"))) == 1
