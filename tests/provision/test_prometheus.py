"""A real Prometheus (Debian's package) with the scrape configuration the rva_monitoring role
installs, scraping a running `rva web`; the series read back through Prometheus' HTTP API. And a
device behind NAT: its Prometheus in agent mode pushing (remote_write) to the fleet's Prometheus
as the rva_fleet role configures it."""

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
ROLES = Path(__file__).resolve().parents[2] / "ansible/roles"
ROLE = ROLES / "rva_monitoring"


def render(template: str, role: Path = ROLE, **overrides: object) -> str:
    """One of the role's templates, with its defaults and these variables laid over them."""
    variables = yaml.safe_load((role / "defaults/main.yml").read_text())
    variables |= {"inventory_hostname": "test-device", "ansible_managed": "Ansible managed"}
    variables |= overrides
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined, trim_blocks=True, keep_trailing_newline=True
    )
    env.filters["comment"] = lambda text: "\n".join(f"# {line}" for line in text.splitlines())
    env.filters["bool"] = lambda value: value is True or str(value).lower() in ("true", "yes", "1")
    return env.from_string((role / "templates" / template).read_text()).render(variables)


def args_of(default: str) -> list[str]:
    """ARGS= of a rendered /etc/default file, listening on 127.0.0.1 only."""
    args = shlex.split(default.split('ARGS="', 1)[1].rsplit('"', 1)[0])
    return [a.replace("--web.listen-address=:", "--web.listen-address=127.0.0.1:") for a in args]


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
        args = args_of(render("prometheus.default.j2", rva_monitoring_prometheus_port=port))
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


def test_a_device_behind_nat_pushes_to_the_fleets_prometheus_in_agent_mode(
    redis_ts: RedisServer,
    vtest_path: Path,
    tmp_path: Path,
    services: ServicesFactory,
    prometheus_binary: str,
) -> None:
    web_port, device_port, fleet_port = free_port(), free_port(), free_port()
    cfg = tmp_path / "rva.toml"
    cfg.write_text(
        f'[redis]\nurl = "{redis_ts.url}"\n[web]\nport = {web_port}\n'
        f'[cameras.0]\nsource = "{vtest_path}"\n'
    )
    svc = services(cfg)
    svc.pipeline()
    svc.start("web")

    # The fleet's Prometheus: rva_fleet's arguments with the remote_write receiver on.
    fleet_args = args_of(
        render(
            "prometheus.default.j2",
            ROLES / "rva_fleet",
            rva_fleet_prometheus_port=fleet_port,
            rva_fleet_remote_write_receiver=True,
        )
    )
    assert "--web.enable-remote-write-receiver" in fleet_args
    (tmp_path / "fleet.yml").write_text("global:\n  scrape_interval: 1s\n")
    # The device's: rva_monitoring's files in agent mode, pushing there.
    device = render(
        "prometheus.yml.j2",
        rva_monitoring_scrape_interval="1s",
        rva_monitoring_rva_target=f"127.0.0.1:{web_port}",
        rva_monitoring_prometheus_port=device_port,
        rva_monitoring_remote_write_url=f"http://127.0.0.1:{fleet_port}/api/v1/write",
        rva_monitoring_agent=True,
    )
    (tmp_path / "device.yml").write_text(device)
    subprocess.run(
        ["promtool", "check", "config", "--agent", str(tmp_path / "device.yml")], check=True
    )
    device_args = args_of(
        render(
            "prometheus.default.j2",
            rva_monitoring_prometheus_port=device_port,
            rva_monitoring_agent=True,
        )
    )
    assert "--enable-feature=agent" in device_args
    assert not [a for a in device_args if a.startswith("--storage.tsdb")]  # refused in agent mode
    procs = []
    try:
        for name, args, storage in (
            ("fleet", fleet_args, "--storage.tsdb.path"),
            ("device", device_args, "--storage.agent.path"),
        ):
            log = (tmp_path / f"{name}.log").open("wb")
            procs.append(
                subprocess.Popen(
                    [
                        prometheus_binary,
                        f"--config.file={tmp_path / name}.yml",
                        f"{storage}={tmp_path / name}-data",
                        *args,
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        # The device's samples in the fleet's Prometheus, labelled as pushed.
        people = wait_for(
            lambda: query(fleet_port, 'rva_people{camera="0"}'), 60, what="rva_people pushed"
        )
        assert isinstance(people, list)
        assert people[0]["metric"]["device"] == "test-device"
        assert people[0]["metric"]["rva_remote_write"] == "true"
        up = query(fleet_port, 'up{job="rva"}')
        assert [r["value"][1] for r in up] == ["1"]  # type: ignore[index]
    finally:
        for proc in reversed(procs):  # the device first: it sends what it holds on stopping
            proc.terminate()
            proc.wait(15)
