"""Counting in the running appliance: capture → gears (which stand in for the counting stage)
→ web, on vtest.avi with the hand-labelled line and a zone, over real HTTP."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tomllib
from prometheus_client.parser import text_string_to_metric_families

from rva import keys
from tests.conftest import RedisServer, Services, free_port, wait_for
from tests.services.web.test_web import MjpegClient, get_json, http_get

ServicesFactory = Callable[[Path], Services]
ROOT = Path(__file__).resolve().parent.parent
LABELS = tomllib.loads((Path(__file__).parent / "data" / "vtest_crossings.toml").read_text())


def amber_mask(img: np.ndarray) -> np.ndarray:
    """The counting line's colour (BGR 0, 215, 255), allowing for JPEG blur."""
    b, g, r = (img[..., i].astype(np.int16) for i in range(3))
    return (r > 200) & (g > 150) & (b < 90)


def test_the_appliance_counts_crossings_and_occupancy_and_shows_them(
    redis_ts: RedisServer, vtest_path: Path, tmp_path: Path, services: ServicesFactory
) -> None:
    line = LABELS["line"]
    port = free_port()
    cfg = tmp_path / "rva.toml"
    cfg.write_text(
        f'[redis]\nurl = "{redis_ts.url}"\n[web]\nport = {port}\n'
        f'[cameras.0]\nsource = "{vtest_path}"\n'
        f"[cameras.0.lines.path]\npoints = {line['points']}\nin_side = {line['in_side']}\n"
        "[cameras.0.zones.plaza]\npolygon = [[0, 180], [767, 180], [767, 575], [0, 575]]\n"
    )
    svc = services(cfg)
    svc.pipeline()
    svc.start("web")
    client = redis_ts.client()

    def crossed() -> int:
        raw = client.hgetall(keys.counts("0"))
        return sum(int(raw.get(f"line:path:{d}".encode(), 0)) for d in ("in", "out"))

    # The labels have 5 crossings in the first 20 s of the clip (frames 10 to 187).
    wait_for(lambda: crossed() >= 3, 90, what="three crossings counted by the running appliance")
    status, counts = get_json(port, "/api/counts?camera=0")
    assert status == 200
    assert counts["lines"]["path"]["points"] == line["points"]
    assert counts["lines"]["path"]["in_today"] + counts["lines"]["path"]["out_today"] >= 3
    assert counts["zones"]["plaza"]["occupancy"] >= 1 and counts["stale"] is False

    _status, _h, body = http_get(port, "/metrics")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }
    total = sum(
        v
        for (name, labels), v in samples.items()
        if name == "rva_line_crossings_total" and dict(labels)["line"] == "path"
    )
    assert total >= 3
    assert (
        samples[("rva_zone_occupancy", (("camera", "0"), ("classes", "person"), ("zone", "plaza")))]
        >= 0
    )

    # Every series the provisioned Grafana dashboard queries is one RVA exports.
    dashboard = (ROOT / "ansible/roles/rva_monitoring/files/rva-dashboard.json").read_text()
    queried = set(re.findall(r"\b(rva_[a-z_]+)\{", dashboard))
    exported = {name for name, _labels in samples}
    assert queried and queried <= exported, queried - exported

    # The series: crossings kept in RedisTimeSeries with their labels.
    found = client.execute_command("TS.QUERYINDEX", "line=path")
    assert {k.decode() for k in found} >= {keys.line_series("0", "path", d) for d in ("in", "out")}

    # The video shows the line (amber) along x = 330 between y 185 and 375.
    video = MjpegClient(port)
    try:
        img = video.next_part().image()
    finally:
        video.close()
    strip = amber_mask(img)[200:360, 325:336]
    assert strip.mean() > 0.3, "the counting line is not drawn on /video"
