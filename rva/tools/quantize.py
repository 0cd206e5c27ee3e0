"""`rva models quantize`: an int8 copy of a model, calibrated on the device's own frames.

ONNX Runtime's static quantization (QDQ, int8 weights per channel, int8 activations with
min-max ranges) needs frames like those the model will see: they come from a video file or
image, or from the camera's live stream in Redis (one frame every ``spacing`` seconds, so that
they are not all the same moment). It refuses fewer than MIN_FRAMES frames, and frames in which
the float model finds nobody (a calibration on an empty scene sets the ranges of a scene with
no people in it): at least MIN_WITH_PEOPLE of them must have someone.

The quantized file is written next to the float one in the model cache
(``<model>.int8.onnx``), with ``<model>.int8.json`` beside it: which model and float graph it
came from (sha256), the input size it was made at, the frames' source, how many frames and how
many had people, when. A gear with ``gear.precision = "int8"`` runs it after checking those
(rva/models/int8.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import redis

from rva.config import Config
from rva.models import int8
from rva.models.detector import Detector
from rva.models.manifest import sha256
from rva.models.store import ModelBundle

MIN_FRAMES = 20
MIN_WITH_PEOPLE = 0.5  # share of the calibration frames with at least one person found


class QuantizeError(Exception):
    """Quantization refused or failed; phrased for a person."""


@dataclass(frozen=True)
class Provenance:
    model: str
    float_sha256: str
    int8_sha256: str
    input_size: list[int]  # [width, height]: the graph's input, fixed when quantized
    source: str
    frames: int
    frames_with_people: int
    method: str
    created: float


def float_graph(detector: Detector) -> bytes:
    """The float ONNX graph ONNX Runtime runs for this detector (Darknet converted in memory,
    at the detector's input size)."""
    return int8.float_graph(detector.bundle, (detector.width, detector.height))


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over prepared input blobs."""

    def __init__(self, name: str, blobs: list[np.ndarray]) -> None:
        self.name, self.blobs = name, iter(blobs)

    def get_next(self) -> dict[str, np.ndarray] | None:
        blob = next(self.blobs, None)
        return None if blob is None else {self.name: blob}


def calibration_set(
    detector: Detector, frames: Iterable[np.ndarray], wanted: int
) -> tuple[list[np.ndarray], int]:
    """Up to ``wanted`` input blobs, and how many of their frames the float model finds a
    person in."""
    blobs, with_people = [], 0
    for frame in frames:
        blob, _ = detector.preprocess(frame)
        blobs.append(blob.copy())  # the detector reuses its blob
        with_people += detector.detect(frame).people > 0
        if len(blobs) >= wanted:
            break
    return blobs, with_people


def check(frames: int, with_people: int, min_frames: int = MIN_FRAMES) -> None:
    if frames < min_frames:
        raise QuantizeError(
            f"only {frames} calibration frames; at least {min_frames} are needed "
            "(--frames, or a longer video)"
        )
    if with_people < MIN_WITH_PEOPLE * frames:
        raise QuantizeError(
            f"the model found people in only {with_people} of {frames} calibration frames; "
            "calibrate when people are in view (at least half the frames)"
        )


def quantize(
    bundle: ModelBundle,
    frames: Iterable[np.ndarray],
    out: Path,
    *,
    source: str,
    wanted: int = 50,
    min_frames: int = MIN_FRAMES,
    input_size: int = 0,
) -> Provenance:
    """Calibrate on up to ``wanted`` frames and write ``out`` (and its provenance .json)."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    detector = Detector(bundle, backend="onnxruntime", input_size=input_size)
    blobs, with_people = calibration_set(detector, frames, wanted)
    check(len(blobs), with_people, min_frames)
    graph = float_graph(detector)
    input_name = onnx.load_from_string(graph).graph.input[0].name
    with tempfile.TemporaryDirectory(prefix="rva-quantize-") as tmp:
        model_in, model_out = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        model_in.write_bytes(graph)
        quantize_static(
            str(model_in),
            str(model_out),
            _Reader(input_name, blobs),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            op_types_to_quantize=["Conv"],
        )
        data = model_out.read_bytes()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".part")
    tmp_out.write_bytes(data)
    tmp_out.replace(out)
    prov = Provenance(
        model=bundle.manifest.name,
        float_sha256=sha256(graph),
        int8_sha256=sha256(data),
        input_size=[detector.width, detector.height],
        source=source,
        frames=len(blobs),
        frames_with_people=with_people,
        method="onnxruntime static QDQ, int8 per-channel weights, int8 min-max activations, Conv",
        created=time.time(),
    )
    out.with_suffix(".json").write_text(json.dumps(asdict(prov), indent=1) + "\n")
    return prov


def file_frames(source: str, step: int = 1) -> Iterator[np.ndarray]:
    """Every ``step``-th frame of a video file (or the image)."""
    from rva.tools.count import CountError, frames

    try:
        for index, frame in frames(source):
            if index % step == 0:
                yield frame
    except CountError as exc:
        raise QuantizeError(str(exc)) from None


def stream_frames(client: redis.Redis, camera: str, spacing: float = 0.5) -> Iterator[np.ndarray]:
    """Frames from the camera's live Redis stream, newest first, one per ``spacing`` seconds;
    ends when no new frame came for 4 s."""
    from rva import images, keys

    last = "$"
    while True:
        found: Any = client.xread({keys.frames(camera): last}, count=1, block=4_000)
        if not found:
            return
        entry_id, fields = found[0][1][-1]
        last = entry_id
        try:
            yield images.decode(fields[b"image"])
        except (KeyError, images.ImageRejected):
            continue
        time.sleep(spacing)


def cli(args: argparse.Namespace, cfg: Config, cache: Path) -> int:
    """`rva models quantize`: calibrate, write, and say what was written."""
    from rva import config
    from rva.connection import connect
    from rva.models import manifest, store

    name = args.name or cfg.gear.model
    bundle = store.from_cache(manifest.load(name), cache)
    size = cfg.gear.input_size if name == cfg.gear.model else 0
    if args.input_size is not None:
        size = config.gear_settings(cfg, input_size=args.input_size).input_size
    if args.camera is not None:
        client = connect(config.redis_url(cfg, args.url), name="rva-quantize", timeout=10)
        frames: Iterable[np.ndarray] = stream_frames(client, args.camera)
        source = f"camera {args.camera} (live stream)"
    else:
        step = 5  # a frame in five: more of the scene than consecutive frames
        frames, source = file_frames(args.source, step), f"{args.source} (every {step}th frame)"
    out = int8.path(cache, name)
    try:
        prov = quantize(bundle, frames, out, source=source, wanted=args.frames, input_size=size)
    except QuantizeError as exc:
        print(f"rva models quantize: {exc}", file=sys.stderr)
        return 1
    print(
        f"{out}: int8 from {prov.frames} frames of {prov.source}, "
        f"{prov.frames_with_people} with people, for a {prov.input_size[0]}x{prov.input_size[1]} "
        f"input; provenance in {out.with_suffix('.json')}"
    )
    return 0
