"""A model's int8 copy (`rva models quantize`, rva/tools/quantize.py) and the checks made before
a detector runs it (``gear.precision = "int8"``).

The copy lives in the model cache of the host that runs the gear, beside the float files:
``<cache>/<model>/<model>.int8.onnx`` with its provenance ``<model>.int8.json``. It is refused,
with what to do, when it is missing, when it was made at another input size than the gear runs
the model at (the graph's input is fixed when it is quantized), when its bytes are not those
the provenance names, and when the float graph it was made from is not the current one (the
model was fetched again in another version, or a new release converts it differently): a
stale copy would count with the old weights.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from rva.models.manifest import FileSpec, ModelError, sha256
from rva.models.store import ModelBundle

KEY = 'gear.precision = "int8"'


def path(cache: Path, name: str) -> Path:
    """Where `rva models quantize` writes the int8 copy of model ``name``."""
    return cache / name / f"{name}.int8.onnx"


def how_to_make(name: str) -> str:
    return (
        f"make it with `rva models quantize {name} --camera ID` (the camera's own frames, "
        "people in view) or `--source VIDEO`"
    )


def float_graph(bundle: ModelBundle, size: tuple[int, int]) -> bytes:
    """The float ONNX graph ONNX Runtime runs for this model at ``size`` (a Darknet model
    converted in memory at that size; an ONNX model as it is)."""
    from rva.models.backends.onnx_runtime import OnnxRuntimeBackend

    darknet = bundle.manifest.format == "darknet"
    return OnnxRuntimeBackend._graph(bundle, size if darknet else None)


def provenance(file: Path) -> dict[str, Any]:
    """The provenance beside an int8 file, read (ModelError when it is missing or unreadable)."""
    meta = file.with_suffix(".json")
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{KEY}: {meta} is missing (the provenance of {file.name})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{KEY}: {meta} cannot be read: {exc}") from None
    if not isinstance(data, dict):
        raise ModelError(f"{KEY}: {meta} is not a provenance record (a JSON object)")
    return data


def check_file(name: str, size: tuple[int, int], cache: Path) -> tuple[Path, dict[str, Any]]:
    """The int8 file and its provenance, when both are there and it was made at ``size``
    (width, height); ModelError naming the file and what to do otherwise. Reads no model."""
    file = path(cache, name)
    if not file.is_file():
        raise ModelError(f"{KEY}: {file} is missing; {how_to_make(name)}")
    prov = provenance(file)
    made = prov.get("input_size")
    again = f"run `rva models quantize {name}` again"
    if made is None:
        raise ModelError(f"{KEY}: {file} records no input size (made by an older release); {again}")
    if list(made) != list(size):
        raise ModelError(
            f"{KEY}: {file} was made for a {made[0]}x{made[1]} input, but the gear runs {name} at "
            f"{size[0]}x{size[1]} (gear.input_size); {again} with this input size"
        )
    return file, prov


def load(bundle: ModelBundle, size: tuple[int, int], cache: Path) -> bytes:
    """The int8 graph of ``bundle``'s model at ``size``, every check passed."""
    name = bundle.manifest.name
    file, prov = check_file(name, size, cache)
    data = file.read_bytes()
    again = f"run `rva models quantize {name}` again"
    if sha256(data) != prov.get("int8_sha256"):
        raise ModelError(
            f"{KEY}: {file} does not match its provenance's sha256 (damaged?); {again}"
        )
    current = sha256(float_graph(bundle, size))
    if prov.get("float_sha256") != current:
        raise ModelError(
            f"{KEY}: {file} was made from another version of {name} (float sha256 "
            f"{str(prov.get('float_sha256'))[:12]}…, the current one is {current[:12]}…): "
            f"stale; {again}"
        )
    return data


def as_bundle(bundle: ModelBundle, graph: bytes) -> ModelBundle:
    """The int8 graph as a bundle the onnxruntime backend loads like any ONNX model (the same
    manifest otherwise: input, decoder and classes are the float model's)."""
    manifest = replace(
        bundle.manifest, format="onnx", files={"onnx": FileSpec(f"{bundle.manifest.name}.int8")}
    )
    return ModelBundle(manifest, {"onnx": graph})
