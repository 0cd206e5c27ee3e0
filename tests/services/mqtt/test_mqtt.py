"""rva mqtt against a real mosquitto (Debian's) with a password file and an ACL, a paho
subscriber that collects everything, and the real pipeline on vtest.avi with the hand-labelled
line and a zone: what a Home Assistant would discover and see, and the faults around it."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest
import tomllib
from paho.mqtt.enums import CallbackAPIVersion

from rva import config, keys
from rva.services.mqtt import discovery as mqtt_discovery
from tests.conftest import DATA, ROOT, RedisServer, Services, free_port, wait_for
from tests.services.web.test_web import get_json

ServicesFactory = Callable[[Path], Services]
LABELS = tomllib.loads((DATA / "vtest_crossings.toml").read_text())
RVA_PASSWORD = "counts-people-7"
WATCHER_PASSWORD = "only-looks-3"
DISCOVERY = "homeassistant"
PREFIX = "rva/test-device"


@dataclass
class Mosquitto:
    """Debian's mosquitto on a free loopback port: logins from a password file, topics by ACL
    (or, with logins=False, anyone); `extra` is appended to its configuration."""

    workdir: Path
    logins: bool = True
    extra: str = ""
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            pytest.fail("mosquitto missing: run `scripts/install-deps.sh test`")
        self.binary = binary
        self.workdir.mkdir(parents=True, exist_ok=True)
        access = "allow_anonymous true\n"
        if self.logins:
            passwd = self.workdir / "passwd"
            passwd.touch(mode=0o600)
            for user, password in (("rva", RVA_PASSWORD), ("watcher", WATCHER_PASSWORD)):
                subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, password], check=True)
            acl = self.workdir / "acl"
            acl.write_text(
                "user rva\n"
                f"topic readwrite {PREFIX}/#\n"
                f"topic readwrite {DISCOVERY}/#\n"
                "user watcher\n"
                "topic read #\n"
            )
            acl.chmod(0o600)
            access = f"allow_anonymous false\npassword_file {passwd}\nacl_file {acl}\n"
        self.log = self.workdir / "mosquitto.log"
        (self.workdir / "mosquitto.conf").write_text(
            # As root in CI: stay root, so the files in the test's directory stay readable.
            "user root\n"
            f"listener {self.port} 127.0.0.1\n"
            + access
            # Like many home brokers: retained messages are forgotten on a restart.
            + "persistence false\n"
            f"log_dest file {self.log}\n"
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n" + self.extra
        )

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.workdir / "mosquitto.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self._listening, 10, what=f"mosquitto on {self.port}")

    def _listening(self) -> bool:
        import socket

        assert self.proc and self.proc.poll() is None, (
            self.log.read_text()[-3000:] if self.log.exists() else "mosquitto exited, no log"
        )
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    workdir = tmp_path / "mosquitto"
    workdir.mkdir()
    server = Mosquitto(workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Message:
    topic: str
    payload: bytes
    retained: bool
    at: float


class Collector:
    """A subscriber to everything, as the watcher user: what a Home Assistant would receive."""

    def __init__(self, port: int) -> None:
        self.messages: list[Message] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"watcher-{time.time()}")
        self.client.username_pw_set("watcher", WATCHER_PASSWORD)
        self.client.on_connect = lambda c, _u, _f, _r, _p: c.subscribe("#", qos=1)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append(Message(msg.topic, msg.payload, bool(msg.retain), time.time()))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def on(self, topic: str, since: float = 0.0) -> list[Message]:
        with self.lock:
            return [m for m in self.messages if m.topic == topic and m.at >= since]

    def values(self, topic: str, since: float = 0.0) -> list[str]:
        return [m.payload.decode() for m in self.on(topic, since)]

    def configs(self, since: float = 0.0) -> dict[str, dict[str, object]]:
        """The newest non-empty discovery config per topic."""
        with self.lock:
            found = [m for m in self.messages if m.topic.startswith(f"{DISCOVERY}/")]
        return {m.topic: json.loads(m.payload) for m in found if m.payload and m.at >= since}


# -- what Home Assistant's MQTT discovery accepts (its schemas, for the parts RVA uses) -------
COMMON_KEYS = {
    "name", "unique_id", "availability_topic", "payload_available", "payload_not_available",
    "device", "origin", "icon", "entity_category", "qos",
}  # fmt: skip
KEYS_BY_COMPONENT = {
    "sensor": COMMON_KEYS
    | {"state_topic", "state_class", "unit_of_measurement", "device_class", "expire_after"},
    "binary_sensor": COMMON_KEYS | {"state_topic", "device_class", "expire_after"},
    "event": COMMON_KEYS | {"state_topic", "event_types", "device_class"},
    "camera": COMMON_KEYS | {"topic", "image_encoding"},
}
TOPIC_RE = re.compile(
    rf"^{DISCOVERY}/(sensor|binary_sensor|event|camera)/[A-Za-z0-9_-]+/[A-Za-z0-9_-]+/config$"
)


def ha_problems(topic: str, cfg: dict[str, object]) -> list[str]:
    match = TOPIC_RE.match(topic)
    if not match:
        return [f"{topic}: not <prefix>/<component>/<node_id>/<object_id>/config"]
    component = match.group(1)
    problems = [f"{topic}: unknown key {k}" for k in cfg if k not in KEYS_BY_COMPONENT[component]]
    need = {"name", "unique_id", "availability_topic", "device"}
    need |= {"topic"} if component == "camera" else {"state_topic"}
    problems += [f"{topic}: {k} missing" for k in sorted(need - set(cfg))]
    device = cfg.get("device")
    if not (isinstance(device, dict) and device.get("identifiers") and device.get("name")):
        problems.append(f"{topic}: device needs identifiers and a name")
    elif not {"model", "sw_version"} <= set(device):
        problems.append(f"{topic}: device without model or sw_version")
    if component == "sensor":
        if cfg.get("state_class") not in ("measurement", "total", "total_increasing"):
            problems.append(f"{topic}: state_class {cfg.get('state_class')!r}")
        if not isinstance(cfg.get("unit_of_measurement"), str):
            problems.append(f"{topic}: no unit_of_measurement")
    if component in ("sensor", "binary_sensor"):
        expire = cfg.get("expire_after")
        if not (isinstance(expire, int) and expire > 0):
            problems.append(f"{topic}: expire_after must be a positive integer")
    if component == "event" and not cfg.get("event_types"):
        problems.append(f"{topic}: event_types missing")
    if cfg.get("entity_category") not in (None, "diagnostic", "config"):
        problems.append(f"{topic}: entity_category {cfg.get('entity_category')!r}")
    return problems


def mqtt_config(tmp_path: Path, broker: Mosquitto, password: str, **extra: object) -> str:
    secret = tmp_path / f"mqtt-{password}.password"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    lines = [
        "[mqtt]",
        'host = "127.0.0.1"',
        f"port = {broker.port}",
        'username = "rva"',
        f'password_file = "{secret}"',
        f'topic_prefix = "{PREFIX}"',
        *(f"{k} = {json.dumps(v)}" for k, v in extra.items()),
    ]
    return "\n".join(lines) + "\n"


def appliance_config(path: Path, redis_url: str, source: Path, web_port: int, tail: str) -> Path:
    line = LABELS["line"]
    path.write_text(
        f'[redis]\nurl = "{redis_url}"\n[web]\nport = {web_port}\n'
        f'[cameras.0]\nsource = "{source}"\n'
        f"[cameras.0.lines.path]\npoints = {line['points']}\nin_side = {line['in_side']}\n"
        "[cameras.0.zones.plaza]\npolygon = [[0, 180], [767, 180], [767, 575], [0, 575]]\n" + tail
    )
    return path


def results_per_second(client: object, seconds: float) -> float:
    """Results the gears wrote in the next `seconds`, per second."""
    import redis as redis_py

    assert isinstance(client, redis_py.Redis)
    before = client.xrevrange(keys.results("0"), count=1)
    start = keys.id_ms(before[0][0]) if before else 0
    time.sleep(seconds)
    return len(client.xrange(keys.results("0"), min=f"{start + 1}-0", max="+")) / seconds


def test_mqtt_config_errors_name_the_key(tmp_path: Path) -> None:
    cases = {
        "[mqtt]\nport = 1883\n": "mqtt.host: set the broker's address (or enabled = false)",
        '[mqtt]\nhost = "mqtt://hub"\n': "mqtt.host: a host name or address only",
        '[mqtt]\nhost = "hub"\npassword_file = "/x"\n': "mqtt.password_file: a password needs",
        '[mqtt]\nhost = "hub"\nusername = "u"\npassword_file = "pw"\n': "mqtt.password_file: must"
        " be an absolute path",
        '[mqtt]\nhost = "hub"\ntopic_prefix = "rva/#"\n': "mqtt.topic_prefix: must be topic",
        '[mqtt]\nhost = "hub"\n[mqtt.tls]\ncert_file = "/c.pem"\n': "mqtt.tls.key_file: cert_file"
        " and key_file go together",
        '[mqtt]\nhost = "hub"\nport = 70000\n': "mqtt.port: Input should be less than or equal",
        '[mqtt]\nhost = "hub"\nqos = 1\n': "mqtt.qos: unknown key",
    }
    for text, expected in cases.items():
        with pytest.raises(config.ConfigError) as err:
            config.parse(text, "/etc/rva/rva.toml")
        assert f"/etc/rva/rva.toml: {expected}" in str(err.value), str(err.value)
    assert config.parse("[mqtt]\nenabled = false\n").mqtt is not None
    assert config.parse('[mqtt]\nhost = "hub"\n[mqtt.tls]\n').mqtt.tls is not None  # type: ignore[union-attr]


def test_every_entity_is_valid_for_home_assistant_and_ids_derive_from_the_machine() -> None:
    line = LABELS["line"]
    cfg = config.parse(
        f'[cameras.door]\nsource = "x.mp4"\n[cameras.door.lines.in-out]\npoints = '
        f"{line['points']}\nin_side = {line['in_side']}\n"
        "[cameras.door.zones.desk]\npolygon = [[0, 0], [10, 0], [10, 10]]\n"
        '[mqtt]\nhost = "hub"\n'
    )
    assert cfg.mqtt is not None
    ident = mqtt_discovery.identity(cfg, cfg.mqtt)
    machine = Path("/etc/machine-id").read_text().strip()
    assert ident.node_id == f"rva_{machine[:12]}"
    assert ident.topic_prefix == f"rva/{mqtt_discovery.short_hostname()}"
    found = mqtt_discovery.entities(cfg, ident, snapshots=True)
    assert len(found) == 5 + 4 + 1 + 1 + 1  # camera, line counts, crossing, zone, snapshot
    uids = set()
    for entity in found:
        body = mqtt_discovery.payload(ident, entity)
        topic = mqtt_discovery.config_topic(ident, entity)
        assert not ha_problems(topic, body), ha_problems(topic, body)
        uids.add(body["unique_id"])
        assert body["device"]["identifiers"] == [f"rva_{machine}"]
    assert len(uids) == len(found)


def test_home_assistant_discovers_the_counts_and_they_survive_kills_and_broker_restarts(
    redis_ts: RedisServer,
    vtest_path: Path,
    tmp_path: Path,
    services: ServicesFactory,
    broker: Mosquitto,
) -> None:
    web_port = free_port()
    tail = mqtt_config(tmp_path, broker, RVA_PASSWORD, snapshot_interval_s=2)
    cfg_path = appliance_config(tmp_path / "rva.toml", redis_ts.url, vtest_path, web_port, tail)
    collector = Collector(broker.port)
    svc = services(cfg_path)
    svc.pipeline()
    svc.start("web")
    mqtt_proc = svc.start("mqtt")
    client = redis_ts.client()
    t = f"{PREFIX}/0"
    try:
        # Discovery: one valid retained config per entity, all on one device.
        wait_for(lambda: len(collector.configs()) >= 12, 60, what="12 discovery configs")
        configs = collector.configs()
        problems = [p for topic, body in configs.items() for p in ha_problems(topic, body)]
        assert not problems, problems
        uids = {str(body["unique_id"]) for body in configs.values()}
        assert len(uids) == 12
        assert {json.dumps(b["device"]) for b in configs.values()} == {
            json.dumps(next(iter(configs.values()))["device"])
        }
        availability = f"{PREFIX}/availability"
        wait_for(lambda: collector.values(availability)[-1:] == ["online"], 10, what="online")

        # States move with the count; crossings arrive as events, as they happen.
        wait_for(lambda: len(set(collector.values(f"{t}/people"))) >= 2, 60, what="people moving")
        assert set(collector.values(f"{t}/person")) <= {"ON", "OFF"}
        wait_for(lambda: collector.on(f"{t}/line/path/crossing"), 90, what="a crossing event")
        crossing = json.loads(collector.on(f"{t}/line/path/crossing")[0].payload)
        assert crossing["event_type"] in ("in", "out") and crossing["track"] >= 0
        event = json.loads(collector.on(f"{t}/events")[0].payload)
        assert {"camera", "track", "kind", "name", "direction", "t"} <= set(event)
        totals = wait_for(
            lambda: [
                int(v) for d in ("in", "out") for v in collector.values(f"{t}/line/path/{d}/total")
            ],
            30,
            what="line totals",
        )
        assert isinstance(totals, list) and max(totals) >= 1
        assert collector.values(f"{t}/zone/plaza/occupancy")
        wait_for(
            lambda: any(float(v) > 0 for v in collector.values(f"{t}/fps")), 30, what="fps > 0"
        )
        jpeg = collector.on(f"{t}/snapshot")[-1].payload
        picture = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert picture is not None and picture.shape[:2] == (576, 768)
        status = svc.run("status", check=False).stdout
        assert "MQTT: connected, connected to 127.0.0.1" in status, status

        # SIGKILL: the broker says offline for it (the Last Will).
        killed_at = time.time()
        mqtt_proc.send_signal(signal.SIGKILL)
        mqtt_proc.wait(10)
        wait_for(lambda: "offline" in collector.values(availability, killed_at), 15, what="will")
        restarted_at = time.time()
        mqtt_proc = svc.start("mqtt")
        wait_for(lambda: len(collector.configs(restarted_at)) >= 12, 30, what="configs again")
        again = {str(b["unique_id"]) for b in collector.configs(restarted_at).values()}
        assert again == uids, "unique ids changed across a restart"
        assert collector.values(availability, restarted_at)[-1:] == ["online"]
        collector.close()

        # The broker restarts and forgets everything: rva mqtt says so, counting goes on at
        # the same rate, and everything is there again once the broker is back.
        up_rate = results_per_second(client, 6)
        broker.stop()
        wait_for(lambda: client.hget(keys.MQTT, "state") == b"down", 15, what="rva:mqtt state down")
        down_rate = results_per_second(client, 6)
        assert down_rate >= 0.8 * up_rate, (up_rate, down_rate)
        counted = int(client.hget(keys.counts("0"), "ts") or 0)
        newest = keys.id_ms(client.xrevrange(keys.results("0"), count=1)[0][1][b"ref"])
        assert newest - counted < 3000, "the counting stage fell behind with the broker down"

        def healthz_problems() -> list[str]:
            return list(get_json(web_port, "/healthz")[1]["problems"])

        wait_for(
            lambda: any(p.startswith("MQTT:") and "broker" in p for p in healthz_problems()),
            20,
            what="/healthz naming the lost broker",
        )
        broker.start()
        fresh = Collector(broker.port)
        wait_for(lambda: len(fresh.configs()) >= 12, 90, what="configs after the broker restart")
        wait_for(lambda: fresh.values(f"{t}/people"), 30, what="states after the broker restart")
        fresh.close()
        # Kept by the broker again: a subscriber that comes now gets them at once.
        retained = Collector(broker.port)
        wait_for(lambda: retained.on(f"{t}/people"), 10, what="the retained people count")
        assert retained.on(f"{t}/people")[0].retained
        assert [m.payload for m in retained.on(availability)][:1] == [b"online"]
        retained.close()

        # The line leaves rva.toml: its entities are removed (empty retained configs).
        mqtt_proc.send_signal(signal.SIGTERM)
        mqtt_proc.wait(15)
        text = cfg_path.read_text()
        cut = slice(text.index("[cameras.0.lines.path]"), text.index("[cameras.0.zones"))
        cfg2 = tmp_path / "lineless.toml"
        cfg2.write_text(text.replace(text[cut], ""))
        watcher = Collector(broker.port)
        services(cfg2).start("mqtt")
        line_topics = [topic for topic in configs if "_line_path_" in topic]
        assert len(line_topics) == 5
        wait_for(
            lambda: all(any(not m.payload for m in watcher.on(topic)) for topic in line_topics),
            30,
            what="empty configs for the removed line",
        )
        late = Collector(broker.port)
        wait_for(lambda: len(late.configs()) >= 7, 15, what="the remaining retained configs")
        time.sleep(1)
        assert not [topic for topic in late.configs() if "_line_path_" in topic]
        assert not late.on(f"{t}/line/path/in/total"), "the removed line's state is still kept"
        late.close()
        watcher.close()
    finally:
        collector.close()


def test_a_wrong_password_is_reported_clearly_without_a_crash_loop(
    redis_plain: RedisServer, tmp_path: Path, services: ServicesFactory, broker: Mosquitto
) -> None:
    web_port = free_port()
    tail = mqtt_config(tmp_path, broker, "not-the-password")
    cfg_path = appliance_config(
        tmp_path / "rva.toml", redis_plain.url, tmp_path / "none.mp4", web_port, tail
    )
    svc = services(cfg_path)
    svc.start("web")
    proc = svc.start("mqtt")
    client = redis_plain.client()
    wait_for(lambda: client.hget(keys.MQTT, "state") == b"error", 20, what="state error")
    detail = client.hget(keys.MQTT, "detail").decode()
    assert "refused the login" in detail and "check mqtt.username and the password" in detail
    # rva web may still be starting when rva mqtt has already failed: wait for it to answer.
    body = wait_for(lambda: get_json(web_port, "/healthz")[1], 30, what="rva web")
    assert isinstance(body, dict) and body["mqtt"]["state"] == "error", body
    assert any("refused the login" in p for p in body["problems"]), body["problems"]
    time.sleep(8)
    assert proc.poll() is None, "rva mqtt exited"
    log = svc.procs[-1][2].read_text()
    assert "Bad user name or password" in log or "Not authorized" in log, log[-2000:]
    assert log.count("refused the login") == 1, "the same error logged again and again"
    # Backoff: a few attempts in ~10 s (1, 2, 4, 8 s apart), not one per loop.
    attempts = broker.log.read_text().count("New connection from")
    assert 1 <= attempts <= 6, attempts


def test_without_mqtt_configured_rva_mqtt_exits_at_once(
    redis_plain: RedisServer, tmp_path: Path, services: ServicesFactory
) -> None:
    cfg_path = tmp_path / "rva.toml"
    cfg_path.write_text(f'[redis]\nurl = "{redis_plain.url}"\n')
    done = services(cfg_path).run("mqtt", timeout=30)
    assert done.returncode == 0
    assert "nothing to publish" in done.stderr
    cfg_path.write_text(f'[redis]\nurl = "{redis_plain.url}"\n[mqtt]\nenabled = false\n')
    done = services(cfg_path).run("mqtt", timeout=30)
    assert done.returncode == 0 and "mqtt.enabled = false" in done.stderr


def test_the_boot_partition_sets_mqtt_and_its_password_goes_to_a_root_only_file(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    (root / "etc/rva/credentials").mkdir(parents=True, mode=0o700)
    (root / "boot/firmware").mkdir(parents=True)
    repo = ROOT
    shutil.copy(repo / "rootfs/etc/rva/rva.toml", root / "etc/rva/rva.toml")
    (root / "etc/hostname").write_text("rva-hall\n")
    secret = "s3cret with spaces"
    (root / "boot/firmware/rva.toml").write_text(
        '# my broker\n[mqtt]\nhost = "hub.lan"\nusername = "rva"\n'
        f'password = "{secret}"\ntopic_prefix = "home/hall"\n'
    )
    done = subprocess.run(
        [
            sys.executable,
            str(repo / "rootfs/usr/lib/rva-firstboot/rva-firstboot"),
            "--root",
            str(root),
            "--rva",
            str(Path(sys.executable).parent / "rva"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    stored = root / "etc/rva/credentials/mqtt-broker.secret"
    assert stored.read_text() == secret + "\n"
    assert stored.stat().st_mode & 0o777 == 0o600
    seeded = (root / "etc/rva/rva.toml").read_text()
    assert secret not in seeded and secret not in done.stdout + done.stderr
    assert "# my broker" in seeded
    cfg = config.parse(seeded)
    assert cfg.mqtt is not None and cfg.mqtt.host == "hub.lan" and cfg.mqtt.password_file == ""
    assert cfg.mqtt.topic_prefix == "home/hall"


def test_the_password_comes_from_the_systemd_credential_when_no_file_is_named(
    redis_plain: RedisServer, tmp_path: Path, services: ServicesFactory, broker: Mosquitto
) -> None:
    creds = tmp_path / "credentials"
    creds.mkdir(mode=0o700)
    (creds / "mqtt.password").write_text(RVA_PASSWORD + "\n")  # as LoadCredential= leaves it
    cfg_path = tmp_path / "rva.toml"
    cfg_path.write_text(
        f'[redis]\nurl = "{redis_plain.url}"\n[mqtt]\nhost = "127.0.0.1"\n'
        f'port = {broker.port}\nusername = "rva"\ntopic_prefix = "{PREFIX}"\n'
    )
    services(cfg_path).start("mqtt", env={"CREDENTIALS_DIRECTORY": str(creds)})
    client = redis_plain.client()
    wait_for(lambda: client.hget(keys.MQTT, "state") == b"connected", 20, what="connected")


def test_switching_video_off_withdraws_the_retained_snapshot_and_the_camera_entity(
    redis_ts: RedisServer,
    vtest_path: Path,
    tmp_path: Path,
    services: ServicesFactory,
    broker: Mosquitto,
) -> None:
    """Privacy: after `video = "off"`, a new subscriber must receive no picture: the retained
    snapshot is replaced by an empty retained payload and the camera entity's discovery config
    by an empty one (Home Assistant deletes the entity)."""
    web_port = free_port()
    tail = mqtt_config(tmp_path, broker, RVA_PASSWORD, snapshot_interval_s=1)
    cfg_path = appliance_config(tmp_path / "rva.toml", redis_ts.url, vtest_path, web_port, tail)
    svc = services(cfg_path)
    svc.pipeline()
    snapshot = f"{PREFIX}/0/snapshot"
    collector = Collector(broker.port)
    try:
        mqtt_proc = svc.start("mqtt")
        wait_for(lambda: collector.on(snapshot), 90, what="a retained snapshot")
        camera_configs = [t for t in collector.configs() if t.startswith(f"{DISCOVERY}/camera/")]
        assert len(camera_configs) == 1, camera_configs
        mqtt_proc.terminate()
        mqtt_proc.wait(15)
    finally:
        collector.close()
    cfg_path.write_text(
        cfg_path.read_text().replace(
            f"[web]\nport = {web_port}\n", f'[web]\nport = {web_port}\nvideo = "off"\n'
        )
    )
    assert 'video = "off"' in cfg_path.read_text()
    svc.start("mqtt")
    time.sleep(5)  # announced and cleared by then (the link is up within a second)

    late = Collector(broker.port)  # a new subscriber: gets what the broker retains now
    try:
        time.sleep(3)
        retained = {m.topic: m.payload for m in late.messages if m.retained}
        assert not retained.get(snapshot), "a picture is still retained after video = off"
        assert not retained.get(camera_configs[0]), "the camera entity is still announced"
        assert any(retained.get(t) for t in retained if t.startswith(f"{DISCOVERY}/sensor/"))
    finally:
        late.close()
