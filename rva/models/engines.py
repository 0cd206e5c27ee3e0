"""The on-disk cache of TensorRT engines (backends/tensor_rt.py), so a restart of rva-gears
loads the engine it built before instead of building it again (minutes on a Jetson).

An engine is only valid for the graph it was built from, the TensorRT version that built it,
the GPU it was built on (name and compute capability), the input size and the precision: the
key is a sha256 over all of them, and the file carries them again in its header, so a file that
was copied from another board, cut short by a power cut or built by another TensorRT is noticed
and rebuilt (with a log line), never loaded. Files are written to a temporary name in the same
folder and renamed into place: a reader sees a whole file or none. Nothing here needs TensorRT
or a GPU: tests/models/test_gpu_backend.py runs it on any machine.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MAGIC = b"RVA-TRT-ENGINE 1\n"
# The header is one JSON line; anything longer is not one of these files.
MAX_HEADER = 64 * 1024
FOLDER = "engines"


@dataclass(frozen=True)
class EngineKey:
    """What an engine depends on. ``graph_sha256``: the ONNX graph's bytes (for a Darknet model,
    the graph converted for this input size, as the onnxruntime backend runs it)."""

    model: str
    graph_sha256: str
    tensorrt: str
    gpu: str
    capability: tuple[int, int]
    width: int
    height: int
    precision: str

    def digest(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def file_name(self) -> str:
        return f"{self.model}-{self.width}x{self.height}-{self.precision}-{self.digest()[:16]}.plan"


def graph_sha256(graph: bytes) -> str:
    return hashlib.sha256(graph).hexdigest()


def folder(cache: Path) -> Path:
    """Where engines live: beside the models, in <model cache>/engines."""
    return cache / FOLDER


def path(cache: Path, key: EngineKey) -> Path:
    return folder(cache) / key.file_name()


def load(cache: Path, key: EngineKey) -> bytes | None:
    """The cached engine for ``key``, or None when there is none or the file is not a whole
    engine for exactly this key (then it is logged, and the caller builds and stores anew)."""
    file = path(cache, key)
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("TensorRT engine cache %s unreadable (%s): building the engine", file, exc)
        return None
    problem = _problem(data, key)
    if problem:
        log.warning("TensorRT engine cache %s %s: building the engine again", file, problem)
        return None
    return data[_body_start(data) :]


def store(cache: Path, key: EngineKey, engine: bytes) -> Path | None:
    """Write the engine under its key (atomically); None, with a log line, when the cache
    cannot be written (a read-only model cache): the engine is then rebuilt at each start."""
    target = path(cache, key)
    header = json.dumps(
        {"key": asdict(key), "digest": key.digest(), "size": len(engine)}, sort_keys=True
    ).encode()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(MAGIC + header + b"\n")
                out.write(engine)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        log.warning(
            "TensorRT engine not cached (%s: %s): it is built again at the next start",
            target.parent,
            exc.strerror or exc,
        )
        return None
    return target


def _body_start(data: bytes) -> int:
    return data.index(b"\n", len(MAGIC)) + 1


def _problem(data: bytes, key: EngineKey) -> str | None:
    """Why ``data`` is not the engine for ``key``; None when it is."""
    if not data.startswith(MAGIC):
        return "is not an RVA engine file"
    end = data.find(b"\n", len(MAGIC), len(MAGIC) + MAX_HEADER)
    if end < 0:
        return "has no header"
    try:
        header = json.loads(data[len(MAGIC) : end])
        digest, size = header["digest"], int(header["size"])
    except (ValueError, KeyError, TypeError):
        return "has a damaged header"
    if digest != key.digest():
        return "was built for something else (another graph, TensorRT, GPU or size)"
    if len(data) - end - 1 != size:
        return f"is cut short ({len(data) - end - 1} of {size} engine bytes)"
    return None
