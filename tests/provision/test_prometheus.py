"""A real Prometheus (Debian's package) with the scrape configuration the rva_monitoring role
installs, scraping a running `rva web`; the series read back through Prometheus' HTTP API."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import jinja2
import pytest
import yaml

from tests.conftest import RedisServer, Services, free_port, wait_for

ServicesFactory = Callable[[Path], Services]
ROLE = Path(__file__).resolve().parents[2] / "ansible/roles/rva_monitoring"


def render(template: str, **overrides: object) -> str:
    """One of the role's templates, with its defaults and these variables laid over them."""
    variables = yaml.safe_load((ROLE / "defaults/main.yml").read_text())
    variables |= {"inventory_hostname": "test-device", "ansible_managed": "Ansible managed"}
    variables |= overrides
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["comment"] = lambda text: "\n".join(f"# {line}" for line in text.splitlines())
    return env.from_string((ROLE / "templates" / template).read_text()).render(variables)


def query(port: int, promql: str) -> list[dict[str, object]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    return list(body["data"]["result"])


@pytest.fixture
def prometheus_binary() -> str:
    found = shutil.which("prometheus") or "/usr/bin/prometheus"
    if not Path(found).exists():
        pytest.fail("prometheus missing: run `scripts/install-deps.sh test`")
    return found


@pytest.fixture
def prometheus(tmp_path: Path, prometheus_binary: str) -> Iterator[Callable[[int], int]]:
    """Starts Prometheus scraping 127.0.0.1:<web port>, as the role configures it; its port."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(web_port: int) -> int:
        port = free_port()
        workdir = tmp_path / "prometheus"
        workdir.mkdir()
        # The role's files, with a 1 s scrape instead of 15 s so the test is short.
        config = workdir / "prometheus.yml"
        config.write_text(
            render(
                "prometheus.yml.j2",
                rva_monitoring_scrape_interval="1s",
                rva_monitoring_rva_target=f"127.0.0.1:{web_port}",
                rva_monitoring_prometheus_port=port,
            )
        )
        subprocess.run(["promtool", "check", "config", str(config)], check=True)
        default = render("prometheus.default.j2", rva_monitoring_prometheus_port=port)
        args = shlex.split(default.split('ARGS="', 1)[1].rsplit('"', 1)[0])
        args = [
            a.replace("--web.listen-address=:", "--web.listen-address=127.0.0.1:") for a in args
        ]
        log = (workdir / "prometheus.log").open("wb")
        procs.append(
            subprocess.Popen(
                [
                    prometheus_binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    *args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        wait_for(lambda: query(port, "up"), 30, what="Prometheus answering")
        return port

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(15)


def test_prometheus_scrapes_rva_web_with_the_roles_configuration(
    redis_ts: RedisServer,
    vtest_path: Path,
    tmp_path: Path,
    services: ServicesFactory,
    prometheus: Callable[[int], int],
) -> None:
    web_port = free_port()
    cfg = tmp_path / "rva.toml"
    cfg.write_text(
        f'[redis]\nurl = "{redis_ts.url}"\n[web]\nport = {web_port}\n'
        f'[cameras.0]\nsource = "{vtest_path}"\n'
    )
    svc = services(cfg)
    svc.pipeline()
    svc.start("web")
    port = prometheus(web_port)

    def job_up() -> bool:
        return any(r["value"][1] == "1" for r in query(port, 'up{job="rva"}'))  # type: ignore[index]

    wait_for(job_up, 30, what="the rva job up in Prometheus")
    people = wait_for(lambda: query(port, 'rva_people{camera="0"}'), 60, what="rva_people")
    assert isinstance(people, list)
    assert people[0]["metric"]["device"] == "test-device"  # the role's target label
    assert float(people[0]["value"][1]) >= 0  # type: ignore[index]

    def rates() -> dict[str, float]:
        found = query(port, 'rva_fps{camera="0"}')
        return {r["metric"]["direction"]: float(r["value"][1]) for r in found}  # type: ignore[index]

    moving = wait_for(
        lambda: (r := rates()) and set(r) == {"in", "out"} and min(r.values()) > 0 and r,
        60,
        what="rva_fps in and out above 0",
    )
    assert isinstance(moving, dict)

    # Prometheus keeps the samples: a range of people counts over the scrapes so far.
    def samples() -> float:
        found = query(port, 'count_over_time(rva_people{camera="0"}[1m])')
        return float(found[0]["value"][1]) if found else 0.0  # type: ignore[index]

    wait_for(lambda: samples() >= 3, 30, what="three scrapes of rva_people kept")
