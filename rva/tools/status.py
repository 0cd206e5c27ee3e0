"""rva status: is the appliance healthy? One screen for a person, or JSON; exit 1 if not ok."""

from __future__ import annotations

import json

from rva import health
from rva.config import Config
from rva.connection import connect


def _age(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.1f}s ago"


def describe_source(source: dict[str, str]) -> str:
    """One line, e.g. "auto -> V4L2 /dev/video0 (vivid), capturing"; a source whose description
    names it once ("/dev/video0" in use as "V4L2 /dev/video0") is shown once."""
    configured, in_use = source.get("configured", "?"), source.get("in_use", "")
    if not in_use:
        shown = configured
    else:
        shown = in_use if configured in in_use else f"{configured} -> {in_use}"
    return f"{shown}, {source.get('state', 'unknown')}"


def _people(st: health.CameraState) -> str:
    """The count with its age: stale ones say so, idle ones are not shown (as on the page)."""
    state = health.freshness(st.result_age_s if st.people is not None else None)
    if state == "none":
        return "people - (nothing counted yet)"
    counted = f"counted {_age(st.result_age_s)}"
    if state == "idle":
        return f"people - (detector idle), {counted}"
    return f"people {st.people}{' (stale)' if state == 'stale' else ''}, {counted}"


def _rates(st: health.CameraState) -> str:
    state = health.freshness(st.latest_age_s)
    fps_in, fps_out = st.latest.get("in_fps"), st.latest.get("out_fps")

    def fps(v: float | None) -> str:
        return "-" if v is None or state in ("idle", "none") else f"{v:.1f}"

    text = f"in {fps(fps_in)} fps, out {fps(fps_out)} fps"
    if state == "none":
        return text
    return f"{text}{' (stale)' if state == 'stale' else ''}, measured {_age(st.latest_age_s)}"


def render(snap: health.Snapshot) -> str:
    lines = [f"RVA: {snap.status}"]
    if not snap.redis:
        lines.append(f"  Redis: unreachable ({snap.error})")
        return "\n".join(lines)
    lines.append("  Redis: reachable")
    off = "OFF (counts kept in the results stream only)"
    lines.append(f"  time series: {'on' if snap.timeseries else off}")
    for cam, st in snap.cameras.items():
        lines.append(
            f"  camera {cam}: {_people(st)}; {_rates(st)}; last frame {_age(st.frame_age_s)}; "
            f"lag {st.gear_lag if st.gear_lag is not None else '-'}"
        )
        if st.source:
            lines.append(f"    source: {describe_source(st.source)}")
        if st.errors:
            lines.append(
                "    skipped input: " + ", ".join(f"{k} {v}" for k, v in sorted(st.errors.items()))
            )
        lines += [f"    ! {p}" for p in st.problems]
    lines += [f"  service {name}: {said}" for name, said in services(snap)]
    if snap.mqtt:
        lines.append(f"  MQTT: {mqtt(snap)}")
    lines += [f"  ! {p}" for p in snap.problems]
    return "\n".join(lines)


def services(snap: health.Snapshot) -> list[tuple[str, str]]:
    """Each service process (heartbeat field "<service>:<host>:<pid>") with what it is doing:
    running, not running (not heard from for HEARTBEAT_STALE_S: it died or hangs) or stopped
    (cleanly). A service restarted on a host shows its running process(es) only; one that is
    not running there, its newest."""
    seen: dict[str, list[tuple[float, str, str]]] = {}
    for name, age in snap.services.items():
        if age <= health.HEARTBEAT_STALE_S:
            said = f"running, heard {age:.0f}s ago"
        else:
            said = f"not running: last heard {age:.0f}s ago"
        seen.setdefault(name.rpartition(":")[0], []).append((age, name, said))
    for name, age in snap.stopped.items():
        seen.setdefault(name.rpartition(":")[0], []).append((age, name, f"stopped {age:.0f}s ago"))
    shown = []
    for procs in seen.values():
        running = [p for p in procs if p[2].startswith("running")]
        shown += running or [min(procs)]
    return [(name, said) for _age, name, said in sorted(shown, key=lambda p: p[1])]


def mqtt(snap: health.Snapshot) -> str:
    """rva mqtt's link as it last reported it (rva:mqtt), unless rva mqtt no longer runs: the
    hash keeps its last state when the process dies."""
    link = snap.mqtt
    sent = f"; {link['published']} messages sent" if "published" in link else ""
    said = f"{link.get('state', '?')}, {link.get('detail', '')}{sent}"
    if link.get("state") == "stopped":
        return said
    heard = health.last_heard(snap, "mqtt")
    if heard is not None and heard <= health.HEARTBEAT_STALE_S:
        return said
    when = "no heartbeat" if heard is None else f"last heard {heard:.0f}s ago"
    return f"rva mqtt not running ({when}); its last report: {said}"


def run(url: str, cfg: Config, *, as_json: bool = False) -> int:
    snap = health.snapshot(
        connect(url, name="rva-status", timeout=3), list(cfg.cameras), cfg.gear.group
    )
    print(json.dumps(snap.as_dict(), indent=2) if as_json else render(snap))
    return 0 if snap.status == "ok" else 1
