#!/usr/bin/env python3
"""People-count accuracy against hand labels vs time per frame, for every detector setting.

    .venv/bin/python scripts/accuracy_table.py [--labels tests/data/vtest_people.toml]
        [--source .cache/footage/vtest.avi] [--json FILE]
        [--settings nanodet:0:onnxruntime,yolov3-tiny:512:onnxruntime:int8] [--min-height PX]

Runs every (model, input size, backend) on each labelled frame, round robin (so a load change
on a shared machine hits all settings alike), keeps each frame's detections at the lowest
score threshold of the grid, and scores every threshold from them: filtering NMS's output by a
higher threshold gives exactly what NMS run at that threshold gives (a box suppressed by
another scores no more than it). Prints a Markdown table: MAE on the even-indexed labelled
frames (the half a default is chosen on), on the odd-indexed ones (the half it is reported
on), and on all; the mean signed error; the median ms per frame (letterbox + forward + NMS)
and its ratio to the old default (opencv, 416, 0.4), or to the first setting when the old
default is not among those run. A setting ending in ``:int8`` runs the model's int8 copy from
the model cache (`rva models quantize`, made at that size; gear.precision = "int8").

Other labels work as they are when they have ``people``/``max`` per frame; street1906's object
labels (``person``/``person_max``, tests/data/street1906_objects.toml) are read as
people = person and max = person_max, and ``--min-height 50`` leaves out the boxes shorter than
the 50 px its rules start counting at.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import tomllib

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rva.models import manifest, store  # noqa: E402 - the checkout's rva, wherever run from
from rva.models.detector import Detector  # noqa: E402
from rva.tools.labels import Label, LabelsError, load  # noqa: E402

THRESHOLDS = (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6)
SETTINGS = [
    *(
        ("yolov3-tiny", size, backend)
        for size in (320, 416, 512, 608)
        for backend in ("opencv", "onnxruntime")
    ),
    ("ssdlite-person", 0, "opencv"),
    *(("nanodet", 0, backend) for backend in ("opencv", "onnxruntime")),
]
BASELINE = ("yolov3-tiny", 416, "opencv", 0.4)  # the default before this table


def frames(source: str, wanted: set[int]) -> list[tuple[int, np.ndarray]]:
    cap = cv2.VideoCapture(source)
    out, index = [], 0
    while index <= max(wanted):
        ok, frame = cap.read()
        if not ok:
            break
        if index in wanted:
            out.append((index, frame))
        index += 1
    cap.release()
    return out


def read_labels(path: str) -> dict[int, Label]:
    """people/max labels, or street1906's person/person_max object labels."""
    try:
        return load(path)
    except LabelsError:
        rows = tomllib.loads(Path(path).read_text(encoding="utf-8"))["frame"]
        return {r["frame"]: Label(r["frame"], r["person"], r["person_max"]) for r in rows}


def mae(errors: list[int]) -> float:
    return sum(abs(e) for e in errors) / len(errors)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--labels", default=str(ROOT / "tests/data/vtest_people.toml"))
    ap.add_argument("--source", default=str(ROOT / ".cache/footage/vtest.avi"))
    ap.add_argument("--model-cache", default=os.environ.get("RVA_MODEL_CACHE"))
    ap.add_argument("--json", help="also write every figure here")
    ap.add_argument("--settings", help="model:size:backend[:int8],... (default: all of SETTINGS)")
    ap.add_argument("--min-height", type=float, default=0, help="count boxes this tall or more")
    args = ap.parse_args()

    labels = read_labels(args.labels)
    settings: list[tuple] = [
        (m, int(size), b, *rest)
        for m, size, b, *rest in (s.split(":") for s in args.settings.split(","))
    ] if args.settings else SETTINGS  # fmt: skip
    order = sorted(labels)
    half = {f: ("even" if i % 2 == 0 else "odd") for i, f in enumerate(order)}
    cache = store.cache_dir(args.model_cache)
    detectors = {
        (model, size, backend, *rest): Detector(
            store.from_cache(manifest.load(model), cache),
            backend=backend,
            input_size=size,
            score_threshold=min(THRESHOLDS),
            precision=rest[0] if rest else "float",
            model_cache=cache,
        )
        for model, size, backend, *rest in settings
    }
    scores: dict[tuple, dict[int, np.ndarray]] = {k: {} for k in detectors}
    tall: dict[tuple, dict[int, np.ndarray]] = {k: {} for k in detectors}
    ms: dict[tuple, list[float]] = {k: [] for k in detectors}
    load_before = os.getloadavg()
    started = time.monotonic()
    keys = list(detectors)
    for n, (index, frame) in enumerate(frames(args.source, set(order))):
        for k in keys[n % len(keys) :] + keys[: n % len(keys)]:  # rotate who goes first
            found = detectors[k].detect(frame)
            scores[k][index] = found.scores
            tall[k][index] = (found.boxes[:, 3] - found.boxes[:, 1]) >= args.min_height
            ms[k].append(sum(found.timings_ms.values()))
    load_after = os.getloadavg()

    rows = []
    for key, per_frame in scores.items():
        model, size, backend = key[:3]
        d = detectors[key]
        median_ms = statistics.median(ms[key])
        for t in THRESHOLDS:
            kept = {f: (s >= t) & tall[key][f] for f, s in per_frame.items()}
            errors = {f: labels[f].error(int(k.sum())) for f, k in kept.items()}
            rows.append(
                {
                    "model": model,
                    "input": f"{d.width}x{d.height}",
                    "size": size,
                    "backend": backend if d.precision == "float" else f"{backend} {d.precision}",
                    "threshold": t,
                    "mae_even": mae([e for f, e in errors.items() if half[f] == "even"]),
                    "mae_odd": mae([e for f, e in errors.items() if half[f] == "odd"]),
                    "mae_all": mae(list(errors.values())),
                    "bias_all": sum(errors.values()) / len(errors),
                    "ms": median_ms,
                }
            )
    base = next(
        (
            r["ms"]
            for r in rows
            if (r["model"], r["size"], r["backend"], r["threshold"]) == BASELINE
        ),
        rows[0]["ms"],
    )
    print(
        f"{len(order)} labelled frames ({sum(1 for h in half.values() if h == 'even')} even, "
        f"{sum(1 for h in half.values() if h == 'odd')} odd), {len(settings)} settings, "
        f"{time.monotonic() - started:.0f} s; load average {load_before[0]:.2f} before, "
        f"{load_after[0]:.2f} after, on {os.cpu_count()} CPUs ({platform.machine()})\n"
    )
    print(
        "| model | input | backend | threshold | MAE even | MAE odd | MAE all | bias | ms | × old |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['model']} | {r['input']} | {r['backend']} | {r['threshold']:.2f} | "
            f"{r['mae_even']:.3f} | {r['mae_odd']:.3f} | {r['mae_all']:.3f} | "
            f"{r['bias_all']:+.3f} | {r['ms']:.1f} | {r['ms'] / base:.2f} |"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "rows": rows,
                    "load": [load_before, load_after],
                    "ms_samples": {"/".join(map(str, k)): v for k, v in ms.items()},
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
