"""The detection path shared by the gear, `rva count` and `rva bench`:
letterbox/resize → backend forward → decode → NMS → keep persons (and the classes a line or
zone counts) → boxes in frame pixels.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from rva.config import GearSection
from rva.models import backends, int8, nanodet, store
from rva.models.manifest import ModelError
from rva.models.store import ModelBundle

log = logging.getLogger(__name__)

PAD = 127  # the grey of the letterbox's bars, as darknet pads


@dataclass(frozen=True)
class Transform:
    """Maps network-input pixels back to frame pixels: frame = (net - pad) / scale."""

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float
    frame_w: int
    frame_h: int

    def to_frame(self, boxes: np.ndarray) -> np.ndarray:
        out = boxes.astype(np.float32).copy()
        out[:, [0, 2]] = (out[:, [0, 2]] - self.pad_x) / self.scale_x
        out[:, [1, 3]] = (out[:, [1, 3]] - self.pad_y) / self.scale_y
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, self.frame_w - 1)
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, self.frame_h - 1)
        return out


@dataclass
class Detections:
    boxes: np.ndarray  # N×4 float32, x1 y1 x2 y2 in frame pixels
    scores: np.ndarray  # N float32
    timings_ms: dict[str, float] = field(default_factory=dict)
    # The class of each box by name; None: all persons (a detector asked for persons only).
    classes: list[str] | None = None

    @property
    def is_person(self) -> np.ndarray:
        if self.classes is None:
            return np.ones(len(self.boxes), dtype=bool)
        return np.array([c == "person" for c in self.classes], dtype=bool)

    @property
    def people(self) -> int:
        return int(self.is_person.sum())

    def flat_boxes(self) -> list[int]:
        """The persons, in the seed's wire format: [x1, y1, x2, y2, x1, ...] in whole pixels."""
        return [int(v) for v in np.rint(self.boxes[self.is_person].reshape(-1))]

    def objects(self) -> dict[str, list[int]]:
        """Boxes of the other classes asked for, by class, in the same flat format."""
        out: dict[str, list[int]] = {}
        for box, name in zip(self.boxes, self.classes or [], strict=False):
            if name != "person":
                out.setdefault(name, []).extend(int(v) for v in np.rint(box))
        return out

    def as_rows(self) -> list[list[float]]:
        return [
            [*(round(float(v), 1) for v in box), round(float(s), 3)]
            for box, s in zip(self.boxes, self.scores, strict=True)
        ]


class Detector:
    def __init__(
        self,
        bundle: ModelBundle,
        *,
        backend: str = "auto",
        device: str = "cpu",
        threads: int = 0,
        score_threshold: float = 0.2,
        nms_threshold: float = 0.45,
        input_size: int = 0,
        precision: str = "float",
        model_cache: Path | None = None,
    ) -> None:
        self.bundle = bundle
        self.manifest = bundle.manifest
        spec = self.manifest.input
        self.width, self.height = (
            (input_size, input_size) if input_size else (spec.width, spec.height)
        )
        if input_size and self.manifest.format != "darknet":
            raise ModelError(
                f"gear.input_size: {self.manifest.name} runs at its own size only "
                f"({spec.width}x{spec.height}); set 0"
            )
        # Darknet models run at any multiple of 32: the size goes to the backend (ONNX Runtime
        # converts the graph for it); other models keep their own.
        size = (self.width, self.height) if self.manifest.format == "darknet" else None
        self.precision = precision
        if precision == "int8":
            self.backend = self._int8_backend(backend, device, threads, model_cache)
        elif precision == "float":
            self.backend = self._backend(backend, device, threads, size, model_cache)
        else:
            raise ModelError(f"gear.precision: float or int8 (got {precision!r})")
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        # Class ids kept, by name: persons always; more when a line or zone counts them.
        self.wanted: dict[int, str] = {self.manifest.person_class: "person"}
        self._buffer: np.ndarray = np.empty(0, dtype=np.float32)  # the input blob, see preprocess
        self._placement: tuple[int, int, int, int] | None = None

    def _backend(
        self,
        name: str,
        device: str,
        threads: int,
        size: tuple[int, int] | None,
        cache: Path | None = None,
    ) -> backends.Backend:
        """The named backend, or for ``auto`` the first of backends.PREFERENCE that loads."""
        fmt = self.manifest.format
        tried = backends.candidates(name, fmt)
        for backend_cls in tried:
            if fmt not in backend_cls.formats and not any(
                s.derive for s in self.manifest.files.values()
            ):
                raise ModelError(f"backend {name} cannot run {fmt} models")
            try:
                return backend_cls(
                    self.bundle, device=device, threads=threads, input_size=size, cache=cache
                )
            except ModelError as exc:
                if backend_cls is tried[-1]:
                    raise
                log.warning("%s; trying the next backend", exc)
        raise ModelError(f"no backend for {self.manifest.name}")  # unreachable: tried is not empty

    def _int8_backend(
        self, name: str, device: str, threads: int, cache: Path | None
    ) -> backends.Backend:
        """ONNX Runtime on the model's int8 copy from the model cache (rva.models.int8 checks
        it: there, made at this input size, from the current float model)."""
        if name not in ("auto", "onnxruntime"):
            raise ModelError(
                f'gear.precision = "int8" runs on the onnxruntime backend only (gear.backend '
                f"is {name}: set it to auto or onnxruntime, or precision to float)"
            )
        try:
            backend_cls = backends.get("onnxruntime")
        except ModelError as exc:
            raise ModelError(f'gear.precision = "int8" needs onnxruntime: {exc}') from None
        graph = int8.load(self.bundle, (self.width, self.height), cache or store.cache_dir())
        bundle = int8.as_bundle(self.bundle, graph)
        return backend_cls(bundle, device=device, threads=threads, cache=cache)

    @property
    def backend_name(self) -> str:
        return self.backend.type_key

    @classmethod
    def from_settings(
        cls, bundle: ModelBundle, settings: GearSection, model_cache: Path | None = None
    ) -> Detector:
        """The one way services build a detector: from the gear settings of rva.toml (with
        int8, its copy from ``model_cache``, else this host's, rva.models.store.cache_dir)."""
        return cls(
            bundle,
            backend=settings.backend,
            device=settings.device,
            threads=settings.threads,
            score_threshold=settings.score_threshold,
            nms_threshold=settings.nms_threshold,
            input_size=settings.input_size,
            precision=settings.precision,
            model_cache=model_cache,
        )

    def want(self, names: set[str] | list[str]) -> None:
        """Keep these classes too (COCO names, rva.models.coco); unknown to the model: ignored
        here (the config refuses them)."""
        ids = self.manifest.class_ids(set(names) | {"person"})
        self.wanted = {i: n for n, i in ids.items()} | {self.manifest.person_class: "person"}

    def preprocess(self, frame: np.ndarray) -> tuple[np.ndarray, Transform]:
        """The frame as the network's input blob (1×3×H×W float32), letterboxed or stretched.

        The same values as cv2.dnn.blobFromImage on a canvas padded with grey 127, at a quarter
        of its cost: only the resized picture is converted, channel by channel, into a blob kept
        between frames whose padding was filled once. The blob is reused: it is valid until the
        next call (the backend has read it by then)."""
        spec, width, height = self.manifest.input, self.width, self.height
        h, w = frame.shape[:2]
        if spec.resize == "letterbox":
            scale = min(width / w, height / h)
            nw, nh = round(w * scale), round(h * scale)
            pad_x, pad_y = (width - nw) // 2, (height - nh) // 2
            transform = Transform(scale, scale, pad_x, pad_y, w, h)
        else:
            nw, nh, pad_x, pad_y = width, height, 0, 0
            transform = Transform(width / w, height / h, 0, 0, w, h)
        resized = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR)
        blob = self._blob(pad_x, pad_y, nw, nh)
        scale_f = np.float32(spec.scale)
        for channel in range(3):
            source = resized[:, :, 2 - channel if spec.swap_rb else channel]
            target = blob[0, channel, pad_y : pad_y + nh, pad_x : pad_x + nw]
            if spec.mean[channel]:
                np.subtract(source, np.float32(spec.mean[channel]), out=target, dtype=np.float32)
                target *= scale_f
            else:
                np.multiply(source, scale_f, out=target, dtype=np.float32)
        return blob, transform

    def _blob(self, pad_x: int, pad_y: int, nw: int, nh: int) -> np.ndarray:
        """The input blob for this placement of the picture, its padding already grey."""
        placement = (pad_x, pad_y, nw, nh)
        if self._placement != placement:
            spec = self.manifest.input
            blob = np.empty((1, 3, self.height, self.width), dtype=np.float32)
            for channel in range(3):
                blob[0, channel] = (np.float32(PAD) - np.float32(spec.mean[channel])) * np.float32(
                    spec.scale
                )
            self._buffer, self._placement = blob, placement
        return self._buffer

    def decode(self, outputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw outputs → boxes (net-input pixels), scores and class ids of the wanted classes,
        before NMS."""
        width, height = self.width, self.height
        wanted = np.array(sorted(self.wanted), dtype=np.int64)
        if self.manifest.decoder == "nanodet":
            reg_max = int(self.manifest.derive_params.get("reg_max", 10))
            return nanodet.decode(outputs, width, height, wanted, self.score_threshold, reg_max)
        if self.manifest.decoder == "yolo":
            # Rows: cx, cy, w, h (0..1 of the input), objectness, then per-class scores
            # already multiplied by objectness. A row may stand for two classes (a rider and
            # a bicycle share a box): one candidate per class over the threshold.
            rows = np.concatenate([o.reshape(-1, o.shape[-1]) for o in outputs])
            per_class = rows[:, 5 + wanted]
            hit_row, hit_col = np.nonzero(per_class >= self.score_threshold)
            scores, ids = per_class[hit_row, hit_col], wanted[hit_col]
            rows = rows[hit_row]
            cx, cy = rows[:, 0] * width, rows[:, 1] * height
            bw, bh = rows[:, 2] * width, rows[:, 3] * height
            boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
        else:
            # DetectionOutput rows: image, class, score, x1, y1, x2, y2 (0..1 of the input).
            rows = np.concatenate([o.reshape(-1, 7) for o in outputs])
            keep = np.isin(rows[:, 1], wanted) & (rows[:, 2] >= self.score_threshold)
            rows = rows[keep]
            scores, ids = rows[:, 2], rows[:, 1].astype(np.int64)
            size = np.array([width, height, width, height], dtype=np.float32)
            boxes = rows[:, 3:7] * size
        return (
            boxes.astype(np.float32).reshape(-1, 4),
            scores.astype(np.float32),
            ids.astype(np.int64),
        )

    def nms(
        self, boxes: np.ndarray, scores: np.ndarray, ids: np.ndarray | None = None
    ) -> np.ndarray:
        """Indices kept by non-maximum suppression, class by class (a car never hides a
        person)."""
        if len(boxes) == 0:
            return np.zeros(0, dtype=np.int64)
        if ids is None:
            ids = np.zeros(len(boxes), dtype=np.int64)
        kept = []
        for cls in np.unique(ids):
            members = np.flatnonzero(ids == cls)
            sub = boxes[members]
            xywh = np.column_stack([sub[:, :2], sub[:, 2:] - sub[:, :2]])
            idx = cv2.dnn.NMSBoxes(
                xywh.tolist(), scores[members].tolist(), self.score_threshold, self.nms_threshold
            )
            kept.append(members[np.asarray(idx, dtype=np.int64).reshape(-1)])
        return np.concatenate(kept)

    def detect(
        self, frame: np.ndarray, after_forward: Callable[[], None] | None = None
    ) -> Detections:
        """People in ``frame``; ``after_forward`` is called once the model has run, before its
        outputs are decoded (the gear releases its input then: see Gear.handle)."""
        t0 = time.perf_counter()
        blob, transform = self.preprocess(frame)
        t1 = time.perf_counter()
        outputs = self.backend.forward(blob)
        t2 = time.perf_counter()
        if after_forward is not None:
            after_forward()
        boxes, scores, ids = self.decode(outputs)
        keep = self.nms(boxes, scores, ids)
        boxes, scores, ids = transform.to_frame(boxes[keep]), scores[keep], ids[keep]
        order = np.argsort(-scores, kind="stable")
        t3 = time.perf_counter()
        names = None if len(self.wanted) == 1 else [self.wanted[int(i)] for i in ids[order]]
        return Detections(
            boxes[order],
            scores[order],
            {"resize": (t1 - t0) * 1e3, "model": (t2 - t1) * 1e3, "boxes": (t3 - t2) * 1e3},
            names,
        )
