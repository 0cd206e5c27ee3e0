"""NanoDet's decoder (RangiLyu/nanodet, the GFL head of v0.x): per-level class scores and box
distributions → boxes, scores and class ids, before NMS.

Each output level holds one row per feature-map cell (row-major, y then x): the class scores
(already through a sigmoid in the graph) in one output, and in another 4 × (reg_max + 1) logits,
one discrete distribution each for the distances from the cell's centre to the box's left, top,
right and bottom edges, in strides. The distance is the distribution's expectation (softmax,
then Σ p·i), the cell centre is ((x + 0.5)·stride, (y + 0.5)·stride), as NanoDet's
get_single_level_center_point and distance2bbox compute them. Levels and strides are told apart
by their shapes alone: the stride of a level is sqrt(input area / rows).
"""

from __future__ import annotations

import math

import numpy as np

from rva.models.manifest import ModelError


def levels(
    outputs: list[np.ndarray], width: int, height: int, reg_max: int
) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(stride, scores rows × classes, distributions rows × 4(reg_max+1)) per level."""
    bins = 4 * (reg_max + 1)
    scores: dict[int, np.ndarray] = {}
    boxes: dict[int, np.ndarray] = {}
    for out in outputs:
        rows = out.reshape(-1, out.shape[-1])
        (boxes if rows.shape[1] == bins else scores)[rows.shape[0]] = rows
    if not scores or sorted(scores) != sorted(boxes):
        raise ModelError("NanoDet outputs: class scores and box distributions do not pair up")
    out_levels = []
    for cells in sorted(scores, reverse=True):
        stride = math.sqrt(width * height / cells)
        if stride != int(stride) or (width // int(stride)) * (height // int(stride)) != cells:
            raise ModelError(f"NanoDet output of {cells} rows fits no stride of {width}x{height}")
        out_levels.append((int(stride), scores[cells], boxes[cells]))
    return out_levels


def decode(
    outputs: list[np.ndarray],
    width: int,
    height: int,
    wanted: np.ndarray,
    threshold: float,
    reg_max: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes (x1 y1 x2 y2 in input pixels), scores and class ids of the wanted classes whose
    score reaches the threshold; a cell may give one candidate per class."""
    all_boxes, all_scores, all_ids = [], [], []
    project = np.arange(reg_max + 1, dtype=np.float32)
    for stride, scores, dist in levels(outputs, width, height, reg_max):
        per_class = scores[:, wanted]
        hit_row, hit_col = np.nonzero(per_class >= threshold)
        logits = dist[hit_row].reshape(-1, 4, reg_max + 1)
        logits = np.exp(logits - logits.max(axis=2, keepdims=True))
        edges = (logits / logits.sum(axis=2, keepdims=True)) @ project * stride
        columns = width // stride
        cx = (hit_row % columns + 0.5) * stride
        cy = (hit_row // columns + 0.5) * stride
        box = np.stack(
            [cx - edges[:, 0], cy - edges[:, 1], cx + edges[:, 2], cy + edges[:, 3]], axis=1
        )
        all_boxes.append(box.clip(0, [width, height, width, height]))
        all_scores.append(per_class[hit_row, hit_col])
        all_ids.append(wanted[hit_col])
    return (
        np.concatenate(all_boxes).astype(np.float32).reshape(-1, 4),
        np.concatenate(all_scores).astype(np.float32),
        np.concatenate(all_ids).astype(np.int64),
    )
