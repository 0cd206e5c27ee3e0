"""/metrics of a real `rva web` process over HTTP, on a real redis-server: stage times in
seconds, every error kind of every camera exported from the start, build info and the web
process's own process_* metrics. And the list of error kinds checked against the code that
counts them."""

from __future__ import annotations

import os
import platform
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

import rva
from rva import keys
from rva.services.web.metrics import ERROR_KINDS
from tests.conftest import ROOT, RedisServer, Services, free_port, wait_for, write_config
from tests.services.web.test_web import http_get


def scrape(port: int) -> dict[str, Any]:
    status, headers, body = http_get(port, "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain"), (status, body)
    return {m.name: m for m in text_string_to_metric_families(body.decode())}


def values(families: dict[str, Any], family: str, sample: str | None = None) -> dict[tuple, float]:
    """{sorted label items: value} of a family's samples (named `sample`, when given)."""
    return {
        tuple(sorted(s.labels.items())): s.value
        for s in families[family].samples
        if sample is None or s.name == sample
    }


def start_time(pid: int) -> float:
    """A process's start, in Unix seconds, from /proc as Prometheus' process collector reads it."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    ticks = int(stat.rpartition(")")[2].split()[19])
    boot = next(
        float(line.split()[1])
        for line in Path("/proc/stat").read_text().splitlines()
        if line.startswith("btime ")
    )
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def test_metrics_of_a_real_rva_web(
    redis_ts: RedisServer, tmp_path: Path, vtest_path: Path, services: Callable[[Path], Services]
) -> None:
    client = redis_ts.client()
    # What the gear and the stage leave in Redis: the newest frame's stage times (ms), one
    # known kind of error and one this version does not know.
    client.hset(keys.latest("0"), mapping={"prf_model": "12.5", "prf_total": "40"})
    client.hset(keys.ERRORS, mapping={"0:corrupt_frame": 2, "1:from_a_newer_rva": 3})
    second: dict[str, object] = {"source": str(vtest_path)}
    config = write_config(
        tmp_path / "rva.toml",
        redis_ts.url,
        vtest_path,
        **{"cameras.1": second},
    )
    svc = services(config)
    port = free_port()
    web = svc.start("web", "--port", str(port))
    wait_for(lambda: http_get(port, "/healthz")[0] == 200, 60, what="rva web up")

    families = scrape(port)
    stages = values(families, "rva_stage_seconds")
    assert stages == {
        (("camera", "0"), ("stage", "model")): 0.0125,
        (("camera", "0"), ("stage", "total")): 0.04,
    }
    assert "rva_stage_milliseconds" not in families
    assert families["rva_stage_seconds"].type == "gauge"

    # Every kind for both configured cameras, 0 until it happens; the unknown kind kept.
    errors = values(families, "rva_errors", "rva_errors_total")
    expected = {
        (("camera", cam), ("kind", kind)): 0.0 for cam in ("0", "1") for kind in ERROR_KINDS
    }
    expected[(("camera", "0"), ("kind", "corrupt_frame"))] = 2.0
    expected[(("camera", "1"), ("kind", "from_a_newer_rva"))] = 3.0
    assert errors == expected
    client.hincrby(keys.ERRORS, "1:stage_gap", 1)  # a counter that goes up from 0, not from none
    assert (
        values(scrape(port), "rva_errors", "rva_errors_total")[
            (("camera", "1"), ("kind", "stage_gap"))
        ]
        == 1.0
    )

    assert values(families, "rva_build_info") == {
        (("python", platform.python_version()), ("version", rva.__version__)): 1.0
    }

    # process_*: the rva web process's own, not any other's.
    def one(name: str) -> float:
        found = [s.value for m in families.values() for s in m.samples if s.name == name]
        assert len(found) == 1, (name, found)
        return found[0]

    assert abs(one("process_start_time_seconds") - start_time(web.pid)) < 0.05
    assert one("process_start_time_seconds") <= time.time()
    vmrss = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{web.pid}/status").read_text())
    assert vmrss is not None
    rss = int(vmrss[1])
    assert 0.5 < one("process_resident_memory_bytes") / (rss * 1024) < 2
    assert one("process_resident_memory_bytes") > 20e6  # Python with OpenCV and numpy loaded
    assert 3 <= one("process_open_fds") <= len(os.listdir(f"/proc/{web.pid}/fd")) + 5
    assert one("process_cpu_seconds_total") > 0
    assert families["process_cpu_seconds"].type == "counter"

    # Redis gone: what rva web knows of itself is still there, the Redis-backed counters are not
    # made up (no errors at 0 that would read as a counter reset).
    redis_ts.stop()

    def scrape_when_down() -> dict[str, Any] | None:
        found = scrape(port)
        return found if values(found, "rva_redis_up") == {(): 0.0} else None

    wait_for(scrape_when_down, 30, what="rva_redis_up 0")
    down = scrape_when_down()
    assert down is not None
    assert values(down, "rva_build_info")
    assert [s for s in down["process_start_time_seconds"].samples]
    assert not down["rva_errors"].samples


# Where rva:errors is written, and the literal kinds each place writes.
KIND_PATTERNS = (
    r'ImageRejected\(\s*"(\w+)"',
    r'GearError\(\s*"(\w+)"',
    r'keys\.ERRORS,\s*[\w.]+,\s*"(\w+)"',  # worker.count(keys.ERRORS, camera, "kind")
    r'keys\.ERRORS,\s*f"\{[^}]+\}:(\w+)"',  # tally.add(keys.ERRORS, f"{camera}:kind")
)


def test_error_kinds_are_all_the_kinds_the_code_counts() -> None:
    found: set[str] = set()
    for path in (ROOT / "rva").rglob("*.py"):
        text = path.read_text()
        for pattern in KIND_PATTERNS:
            found |= set(re.findall(pattern, text))
        # A write whose kind is not a literal must be the gear's exc.kind (the exceptions'
        # literal kinds are found above); anything else would hide kinds from this list.
        for line in text.splitlines():
            if "keys.ERRORS," in line and not any(re.search(p, line) for p in KIND_PATTERNS):
                assert re.search(r"keys\.ERRORS,\s*[\w.]+,\s*exc\.kind\)", line), (path, line)
    assert len(found) >= 10, found
    assert found == set(ERROR_KINDS), (found - set(ERROR_KINDS), set(ERROR_KINDS) - found)
    assert len(ERROR_KINDS) == len(set(ERROR_KINDS))


def test_redis_clock_and_snapshot_failures_are_exported(
    redis_ts: RedisServer, tmp_path: Path, vtest_path: Path, services: Callable[[Path], Services]
) -> None:
    """rva_redis_time_seconds against the scrape's own time is the fleet's clock-skew alert;
    rva_redis_rdb_last_bgsave_ok its "Redis persistence failing" one (a snapshot that really
    fails: its directory is gone)."""
    svc = services(write_config(tmp_path / "rva.toml", redis_ts.url, vtest_path))
    port = free_port()
    svc.start("web", "--port", str(port))
    wait_for(lambda: http_get(port, "/healthz")[0] == 200, 60, what="rva web up")

    before = time.time()
    families = scrape(port)
    (clock,) = values(families, "rva_redis_time_seconds").values()
    assert before - 1 <= clock <= time.time() + 1
    assert values(families, "rva_redis_rdb_last_bgsave_ok") == {(): 1.0}
    assert "rva_redis_aof_last_write_ok" not in families  # AOF off, as on the devices

    # Redis's working directory removed: its next snapshot cannot be written.
    for path in redis_ts.datadir.iterdir():
        path.unlink()
    redis_ts.datadir.rmdir()
    redis_ts.client().bgsave()
    wait_for(
        lambda: values(scrape(port), "rva_redis_rdb_last_bgsave_ok") == {(): 0.0},
        30,
        what="rva_redis_rdb_last_bgsave_ok 0",
    )
