"""What else the machine is doing while bench measures: other processes' CPU time over a window,
and the load averages before and after, with a warning when they were enough to skew the
ratios."""

from __future__ import annotations

import os
import time
from pathlib import Path

LOAD_WARN_PER_CORE = 0.5  # other processes' CPU use, in cores per core, that skews the ratios


def busy_cpu_s() -> float | None:
    """CPU seconds the whole machine has spent busy (all CPUs, /proc/stat), or None."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    except (OSError, ValueError):
        return None
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class Others:
    """CPU used by processes other than this benchmark, in cores, over the windows between
    start() and stop() (one, or a phase's slices): the machine's busy time less this process's
    and its children's."""

    def __init__(self) -> None:
        self.core_s = self.wall_s = 0.0
        self.known = True
        self.opened: tuple[float | None, float, float] | None = None

    def start(self, own_cpu_s: float) -> None:
        self.opened = (busy_cpu_s(), own_cpu_s, time.monotonic())

    def stop(self, own_cpu_s: float) -> None:
        if self.opened is None:
            return
        (busy0, own0, t0), self.opened = self.opened, None
        busy = busy_cpu_s()
        self.wall_s += time.monotonic() - t0
        if busy is None or busy0 is None:
            self.known = False
        else:
            self.core_s += max((busy - busy0) - (own_cpu_s - own0), 0.0)

    def cores(self) -> float | None:
        return round(self.core_s / max(self.wall_s, 1e-6), 2) if self.known else None


def loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def load_report(
    before: list[float] | None, after: list[float] | None, others: dict[str, float | None]
) -> dict[str, object]:
    """The machine's load around the run, and a warning when other processes used enough CPU,
    or changed their use enough between the phases, to skew the ratios."""
    cpus = os.cpu_count() or 1
    known = [v for v in others.values() if v is not None]
    warning = None
    if known:
        moved = (max(known) - min(known)) / cpus
        busiest = max(known) / cpus
        if moved > LOAD_WARN_PER_CORE or busiest > LOAD_WARN_PER_CORE:
            shares = ", ".join(f"{k} {v:.2f}" for k, v in others.items() if v is not None)
            warning = (
                f"the machine was busy: other processes used {shares} of {cpus} cores "
                f"(load average {before[0] if before else '?'} before, "
                f"{after[0] if after else '?'} after); the figures and ratios are skewed"
            )
    elif before and after and abs(after[0] - before[0]) / cpus > LOAD_WARN_PER_CORE:
        # No /proc/stat: the 1-minute load average is all there is (bench's own load included).
        warning = (
            f"the load average moved from {before[0]} to {after[0]} on {cpus} cores during the "
            "run; the figures and ratios may be skewed"
        )
    return {
        "cpus": cpus,
        "loadavg_before": before,
        "loadavg_after": after,
        "others_cores": others,
        "warning": warning,
    }
