"""Proof on real footage: `rva count` against crossings of a line labelled by hand on vtest.avi
(tests/data/vtest_crossings.toml: 12 in, 15 out, labelled by eye in two passes, frame by frame,
with no detector or tracker output in sight; its header says how)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import tomllib

from tests.conftest import DATA, rva

LABELS = DATA / "vtest_crossings.toml"
FRAME_TOLERANCE = 5  # the labels give the first frame clearly over; slow walkers stand on it


@pytest.fixture(scope="module")
def labels() -> dict[str, Any]:
    return tomllib.loads(LABELS.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def counted(
    labels: dict[str, Any], vtest_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> list[dict[str, Any]]:
    """One full `rva count --camera --json` run over every frame, with the labelled line."""
    line = labels["line"]
    cfg = tmp_path_factory.mktemp("count") / "rva.toml"
    cfg.write_text(
        f'[cameras.0]\nsource = "{vtest_path}"\n[cameras.0.lines.path]\n'
        f"points = {line['points']}\nin_side = {line['in_side']}\n"
    )
    res = rva(
        "count", str(vtest_path), "--config", str(cfg), "--camera", "0", "--json", timeout=900
    )
    assert res.returncode == 0, res.stderr
    return [json.loads(row) for row in res.stdout.splitlines()]


def test_count_summary_is_the_last_line_and_covers_every_frame(
    counted: list[dict[str, Any]], labels: dict[str, Any]
) -> None:
    summary = counted[-1]["summary"]
    assert summary["frames"] == labels["frames"] == len(counted) - 1
    assert set(summary["lines"]) == {"path"}
    assert all("tracks" in row and "events" in row for row in counted[:-1])


def test_crossings_match_the_hand_labels_within_one_per_direction(
    counted: list[dict[str, Any]], labels: dict[str, Any]
) -> None:
    got = counted[-1]["summary"]["lines"]["path"]
    want = {d: sum(c["direction"] == d for c in labels["crossing"]) for d in ("in", "out")}
    print(f"vtest.avi line 'path': counted {got}, hand-labelled {want}", file=sys.stderr)
    assert abs(got["in"] - want["in"]) <= 1
    assert abs(got["out"] - want["out"]) <= 1


def test_each_counted_crossing_is_a_labelled_one(
    counted: list[dict[str, Any]], labels: dict[str, Any]
) -> None:
    """Not only the totals: every event pairs with a labelled crossing of the same direction
    a few frames away (greedy, each label used once), at most one either way unpaired."""
    events = [
        (row["frame"], e["direction"])
        for row in counted[:-1]
        for e in row["events"]
        if e["kind"] == "line"
    ]
    unpaired = [(c["frame"], c["direction"]) for c in labels["crossing"]]
    spurious = []
    for frame, direction in events:
        match = next(
            (
                lab
                for lab in unpaired
                if lab[1] == direction and abs(lab[0] - frame) <= FRAME_TOLERANCE
            ),
            None,
        )
        if match:
            unpaired.remove(match)
        else:
            spurious.append((frame, direction))
    assert len(spurious) <= 1, f"counted but not labelled: {spurious}"
    assert len(unpaired) <= 1, f"labelled but not counted: {unpaired}"
