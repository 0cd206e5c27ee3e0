"""rva bench: the bare detector loop and the full pipeline, measured in one run.

Its parts: bare.py (a), pipeline.py (b), still.py (c), children.py (the processes bench starts
and what they cost), load.py (what else the machine did meanwhile), run.py (the report).

(a) bare: decode + letterbox + forward + NMS over the footage, no Redis; when the analytics
    stage is installed (rva.analytics.counting), its cost per frame on the same detections;
(b) pipeline: capture → Redis → gears → results at max rate, on a private redis-server that
    this command starts (so a running appliance is neither disturbed nor counted; bench takes
    no Redis URL). (a) and (b) alternate in --slices slices each (P B B P P B B P: capture
    paused and the gears idle during a bare slice), so that the ratio compares the same
    minutes of a machine whose speed drifts, as shared and throttled machines' does;
(c) still: the whole appliance (redis-server, capture, gears, web) on a still picture of the
    footage at 10 fps, as a camera on an empty corridor sees it: what it costs, in % of one
    core, with the motion gate as configured (--motion-gate to compare).
Figures are ratios from the same run on the same machine; absolute numbers vary with load, so
the report says what else ran on the machine meanwhile, and a warning on stderr says when that
was enough to skew the ratios.
A child (redis-server, `rva init`, `rva gears`, `rva capture`) that fails ends the run with a
BenchError naming its command, its exit status and the last lines of its output.
"""

from rva.tools.bench.children import BenchError
from rva.tools.bench.load import load_report
from rva.tools.bench.run import run

__all__ = ["BenchError", "load_report", "run"]
