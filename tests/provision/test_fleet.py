"""ansible/fleet.yml: one monitoring host for every RVA device of the inventory.

1. The alert rules with the role's defaults, rendered and unit-tested with `promtool test rules`
   (tests/provision/fleet-rules.test.yml: made-up series of two devices, each alert firing on
   the right one after its `for:`, and not before).
2. The playbook applied for real with `ansible-playbook -i <inventory> ansible/fleet.yml` to this
   machine as the monitoring host (connection local; the files go to a temporary directory, no
   service is started by it); two RVA systems (Redis with TimeSeries, rva capture, gears and web
   on the sample video) are then monitored by Debian's Prometheus and Alertmanager started with
   the written files, the targets found from the inventory alone. One system's capture stops:
   RvaCameraStalled naming it goes pending, then firing, reaches Alertmanager and its webhook;
   then its web stops: RvaDeviceDown. The other device never alerts. Every query of the Grafana
   dashboards runs against that Prometheus.

Needs root (the files are owned by the user prometheus), Debian's prometheus and
prometheus-alertmanager (scripts/install-deps.sh test provision) and the ansible tools in the venv.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import jinja2
import pytest
import tomllib
import yaml

from tests.conftest import REDIS_STACK, RedisServer, Services, free_port, wait_for
from tests.provision.test_provision import _ansible_env, _tool

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
ROLE = REPO / "ansible/roles/rva_fleet"
DASHBOARDS = REPO / "ansible/roles/rva_monitoring/files"
LINE = tomllib.loads((REPO / "tests/data/vtest_crossings.toml").read_text())["line"]


def _binary(name: str) -> str:
    found = shutil.which(name) or f"/usr/bin/{name}"
    if not Path(found).exists():
        pytest.fail(f"{name} missing: run `scripts/install-deps.sh test provision`")
    return found


# -- the rules, unit-tested ---------------------------------------------------------------------
def render(template: str, **overrides: object) -> str:
    """One of the role's templates with its defaults, as Ansible renders it (trim_blocks)."""
    variables = yaml.safe_load((ROLE / "defaults/main.yml").read_text())
    variables |= {"ansible_managed": "Ansible managed"} | overrides
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined, trim_blocks=True, keep_trailing_newline=True
    )
    env.filters["comment"] = lambda text: "\n".join(f"# {line}" for line in text.splitlines())
    return env.from_string((ROLE / "templates" / template).read_text()).render(variables)


def test_alert_rules_fire_on_the_right_device_after_their_for(tmp_path: Path) -> None:
    rules = tmp_path / "rva-alerts.yml"
    rules.write_text(render("rva-alerts.yml.j2"))
    tests = yaml.safe_load((HERE / "fleet-rules.test.yml").read_text())
    tests["rule_files"] = [str(rules)]
    (tmp_path / "test.yml").write_text(yaml.safe_dump(tests, allow_unicode=True))
    promtool = _binary("promtool")
    checked = subprocess.run(
        [promtool, "check", "rules", str(rules)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [promtool, "test", "rules", "test.yml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    # Every alert of the file is tested there.
    defined = {r["alert"] for g in yaml.safe_load(rules.read_text())["groups"] for r in g["rules"]}
    exercised = {t["alertname"] for case in tests["tests"] for t in case["alert_rule_test"]}
    assert defined == exercised, defined ^ exercised


# -- the playbook applied, two devices monitored --------------------------------------------------
@pytest.fixture
def as_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the monitoring host's files are owned by the user prometheus: needs root")


@dataclass
class Device:
    name: str
    port: int
    redis: RedisServer
    svc: Services

    def stop(self, service: str) -> None:
        for name, proc, _log in self.svc.procs:
            if name == service and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)


@pytest.fixture
def devices(
    tmp_path: Path, vtest_path: Path, request: pytest.FixtureRequest
) -> Iterator[dict[str, Device]]:
    """Two RVA systems counting the sample video, each with its own Redis and web port."""
    binary, module = REDIS_STACK / "redis-server", REDIS_STACK / "redistimeseries.so"
    if not binary.exists():
        pytest.fail(f"{binary} missing: run `make fetch` (scripts/get-redis-stack.sh)")
    made: dict[str, Device] = {}
    try:
        for name, fps in (("rva-hall", 10), ("rva-door", 5)):
            home = tmp_path / name
            (home / "redis").mkdir(parents=True)
            redis = RedisServer(str(binary), free_port(), home / "redis", str(module))
            redis.start()
            port = free_port()
            config = home / "rva.toml"
            config.write_text(
                f'[redis]\nurl = "{redis.url}"\n[web]\nport = {port}\n'
                f'[cameras.0]\nsource = "{vtest_path}"\nfps = {fps}\n'
                f"[cameras.0.lines.path]\npoints = {LINE['points']}\nin_side = {LINE['in_side']}\n"
                "[cameras.0.zones.plaza]\npolygon = [[0, 180], [767, 180], [767, 575], [0, 575]]\n"
            )
            svc = Services(home, config)
            made[name] = Device(name, port, redis, svc)
            svc.pipeline()
            svc.start("web")
        yield made
    finally:
        failed = getattr(request.node, "rep_call", None)
        for device in made.values():
            device.svc.stop_all()
            if failed is not None and failed.failed:
                print(device.svc.logs())
            device.redis.stop()


class Webhook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """An HTTP server that keeps what Alertmanager posts to it."""
    handler = type("Received", (Webhook,), {"received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/alerts", handler.received
    server.shutdown()


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def query(port: int, promql: str) -> list[dict[str, Any]]:
    body = get(f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def prometheus_alerts(port: int) -> list[dict[str, Any]]:
    return list(get(f"http://127.0.0.1:{port}/api/v1/alerts")["data"]["alerts"])


def args_of(default_file: Path) -> list[str]:
    """ARGS= of a /etc/default file, listening on 127.0.0.1 only."""
    text = default_file.read_text()
    args = shlex.split(text.split('ARGS="', 1)[1].rsplit('"', 1)[0])
    return [a.replace("--web.listen-address=:", "--web.listen-address=127.0.0.1:") for a in args]


def apply(inventory: Path, extra: dict[str, object], log: Path) -> dict[str, int]:
    """ansible-playbook -i inventory ansible/fleet.yml; the monitoring host's recap."""
    done = subprocess.run(
        [
            _tool("ansible-playbook"),
            "-i",
            str(inventory),
            "-e",
            json.dumps(extra),
            "ansible/fleet.yml",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=_ansible_env() | {"ANSIBLE_LOCAL_TEMP": str(log.parent / "ansible-tmp")},
        timeout=300,
    )
    log.write_text(done.stdout + done.stderr)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    recap = re.search(r"^monitor\s*:\s*(.*)$", done.stdout, re.M)
    assert recap, done.stdout[-2000:]
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", recap[1])}


@pytest.mark.provision
def test_fleet_playbook_monitors_the_inventory_and_alerts_on_the_device_that_stops(
    as_root: None,
    tmp_path: Path,
    devices: dict[str, Device],
    webhook: tuple[str, list[dict[str, Any]]],
) -> None:
    prometheus_bin, alertmanager_bin = _binary("prometheus"), _binary("prometheus-alertmanager")
    hall, door = devices["rva-hall"], devices["rva-door"]
    webhook_url, received = webhook

    # The inventory: this machine monitors; the devices as a user writes them. rva-attic pushes
    # (remote_write, behind NAT) and is not scraped.
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(
        "[rva_monitor]\n"
        "monitor ansible_connection=local ansible_python_interpreter=/usr/bin/python3\n"
        "[rva_debian]\n"
        f"rva-hall ansible_host=127.0.0.1 rva_app_config='{{\"web.port\": {hall.port}}}'\n"
        "rva-attic ansible_host=192.0.2.13 rva_fleet_scrape=false\n"
        "[rva_raspberrypi]\n"
        f"rva-door ansible_host=127.0.0.1 rva_app_config='{{\"web.port\": {door.port}}}'\n"
        "[rva:children]\nrva_debian\nrva_raspberrypi\n"
        "[rva:vars]\nansible_connection=local\n"
    )
    etc = tmp_path / "etc"
    prom_port, am_port = free_port(), free_port()
    extra = {
        "rva_fleet_prometheus_dir": str(etc / "prometheus"),
        "rva_fleet_defaults_dir": str(etc / "default"),
        "rva_fleet_start_services": False,
        "rva_fleet_prometheus_port": prom_port,
        "rva_fleet_alertmanager_port": am_port,
        # Seconds where production has minutes, so that the test is short.
        "rva_fleet_scrape_interval": "1s",
        "rva_fleet_evaluation_interval": "1s",
        "rva_fleet_alert_for": "3s",
        "rva_fleet_frame_stale_seconds": 4,
        "rva_fleet_result_stale_seconds": 20,
        "rva_fleet_alertmanager_group_wait": "1s",
        "rva_fleet_webhook_url": webhook_url,
    }
    first = apply(inventory, extra, tmp_path / "apply-1.log")
    assert first["failed"] == 0 and first["changed"] > 0, first
    again = apply(inventory, extra, tmp_path / "apply-2.log")
    assert again["changed"] == 0, again  # a second run changes nothing

    targets = yaml.safe_load((etc / "prometheus/rva-targets.yml").read_text())
    assert targets == [
        {
            "targets": [f"127.0.0.1:{door.port}"],
            "labels": {"device": "rva-door", "groups": ",rva,rva_raspberrypi,"},
        },
        {
            "targets": [f"127.0.0.1:{hall.port}"],
            "labels": {"device": "rva-hall", "groups": ",rva,rva_debian,"},
        },
    ]
    assert yaml.safe_load((etc / "prometheus/rva-node-targets.yml").read_text()) == []

    # Both counting before Prometheus looks (no alert for a start-up).
    for device in devices.values():
        health = f"http://127.0.0.1:{device.port}/healthz"
        wait_for(lambda h=health: get(h)["status"] == "ok", 120, what="/healthz ok")  # type: ignore[misc]

    work = tmp_path / "monitor"
    work.mkdir()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for argv, name in (
            (
                [
                    alertmanager_bin,
                    f"--config.file={etc / 'prometheus/alertmanager.yml'}",
                    f"--storage.path={work / 'alertmanager'}",
                    *args_of(etc / "default/prometheus-alertmanager"),
                ],
                "alertmanager",
            ),
            (
                [
                    prometheus_bin,
                    f"--config.file={etc / 'prometheus/prometheus.yml'}",
                    f"--storage.tsdb.path={work / 'prometheus'}",
                    *args_of(etc / "default/prometheus"),
                ],
                "prometheus",
            ),
        ):
            log = (work / f"{name}.log").open("wb")
            procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT))
        monitored(prom_port, am_port, hall, door, received)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(20)


def monitored(
    prom: int, am: int, hall: Device, door: Device, received: list[dict[str, Any]]
) -> None:
    def up() -> dict[str, str]:
        return {r["metric"]["device"]: r["value"][1] for r in query(prom, 'up{job="rva"}')}

    wait_for(lambda: up() == {"rva-hall": "1", "rva-door": "1"}, 60, what="both devices up")
    groups = {r["metric"]["device"]: r["metric"]["groups"] for r in query(prom, "rva_redis_up")}
    assert groups == {"rva-hall": ",rva,rva_debian,", "rva-door": ",rva,rva_raspberrypi,"}

    # Every query of both dashboards answers from these series.
    wait_for(lambda: query(prom, "rva_line_crossings_total"), 60, what="crossings scraped")
    wait_for(lambda: query(prom, "rva_fps"), 60, what="fps scraped")
    dashboards_answer(prom)

    def states(alertname: str) -> dict[str, str]:
        return {
            a["labels"]["device"]: a["state"]
            for a in prometheus_alerts(prom)
            if a["labels"]["alertname"] == alertname
        }

    time.sleep(3)  # a few evaluations of a healthy fleet
    assert prometheus_alerts(prom) == []

    # rva-door's camera stops: its alert goes pending, then fires; rva-hall's counting goes on.
    door.stop("capture")
    seen: list[str] = []

    def firing(alertname: str) -> bool:
        state = states(alertname).get("rva-door")
        if state and (not seen or seen[-1] != state):
            seen.append(state)
        return state == "firing"

    wait_for(lambda: firing("RvaCameraStalled"), 60, interval=0.2, what="RvaCameraStalled")
    assert seen == ["pending", "firing"], seen
    (stalled,) = [a for a in prometheus_alerts(prom) if a["state"] == "firing"]
    assert stalled["labels"]["device"] == "rva-door" and stalled["labels"]["camera"] == "0"
    assert "rva-door" in stalled["annotations"]["summary"]

    def in_alertmanager(alertname: str) -> list[dict[str, Any]]:
        found = get(f"http://127.0.0.1:{am}/api/v2/alerts")
        return [a for a in found if a["labels"]["alertname"] == alertname]

    (managed,) = wait_for(  # type: ignore[misc]
        lambda: in_alertmanager("RvaCameraStalled"), 30, what="the alert in Alertmanager"
    )
    assert managed["labels"]["device"] == "rva-door" and managed["status"]["state"] == "active"
    assert managed["annotations"]["summary"] == (
        "Camera 0 of RVA device rva-door delivers no frames"
    )

    def posted(alertname: str) -> list[dict[str, Any]]:
        return [
            a
            for message in received
            for a in message["alerts"]
            if a["labels"]["alertname"] == alertname and a["status"] == "firing"
        ]

    (sent,) = wait_for(lambda: posted("RvaCameraStalled"), 30, what="the webhook called")  # type: ignore[misc]
    assert sent["labels"]["device"] == "rva-door"

    # rva-door's web stops too: the device is down.
    door.stop("web")
    seen.clear()
    wait_for(lambda: firing("RvaDeviceDown"), 60, interval=0.2, what="RvaDeviceDown")
    assert seen == ["pending", "firing"], seen
    wait_for(lambda: in_alertmanager("RvaDeviceDown"), 30, what="RvaDeviceDown in Alertmanager")
    wait_for(lambda: posted("RvaDeviceDown"), 30, what="RvaDeviceDown posted")

    # rva-hall counted on all along, and nothing ever named it.
    assert get(f"http://127.0.0.1:{hall.port}/healthz")["status"] == "ok"
    assert not [a for a in prometheus_alerts(prom) if a["labels"]["device"] == "rva-hall"]
    everything = get(f"http://127.0.0.1:{am}/api/v2/alerts")
    assert {a["labels"]["device"] for a in everything} == {"rva-door"}
    assert all(a["labels"]["device"] == "rva-door" for m in received for a in m["alerts"])


def dashboards_answer(prom: int) -> None:
    """Every expression of both dashboards, with their variables set to all devices, is valid
    and finds series (ALERTS aside: there are none yet)."""
    for path in (DASHBOARDS / "rva-fleet-dashboard.json", DASHBOARDS / "rva-dashboard.json"):
        dashboard = json.loads(path.read_text())
        variables = {v["name"] for v in dashboard["templating"]["list"]}
        assert "device" in variables, path
        exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
        assert exprs, path
        for expr in exprs:
            promql = expr.replace("$__range", "1h")
            for name in variables:
                promql = promql.replace(f"${name}", ".*")
            if "ALERTS" in expr:
                query(prom, promql)  # valid; there are none yet
            else:  # increase() needs two scrapes
                wait_for(lambda q=promql: query(prom, q), 15, what=f"{path.name}: {expr}")
