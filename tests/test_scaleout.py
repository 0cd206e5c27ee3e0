"""Scale-out across hosts: a gear worker in its own network namespace (another "host": its own
interfaces, reaching Redis only over a veth pair in a private /30 made here) with its own Redis
ACL user, beside a local worker, sharing one camera. Every frame is processed by exactly one
worker, every result is written once, and the remote worker can do nothing its ACL user may not.

Real parts: redis-server with RedisTimeSeries bound to 127.0.0.1 and the veth address, the ACL
rules the ansible role gives rva-gears (read from ansible/roles/rva_redis), `rva init`, two `rva
gears`, `rva capture` on vtest.avi. Needs root and `ip netns` (skipped otherwise).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import yaml

from rva import keys
from tests.conftest import (
    REDIS_STACK,
    ROOT,
    Services,
    free_port,
    wait_for,
    write_config,
)

ROLE = ROOT / "ansible" / "roles" / "rva_redis"
# A private /30 that exists only between the root namespace and the one made here.
HOST_ADDR, NS_ADDR, PREFIX = "10.254.213.1", "10.254.213.2", 30

pytestmark = pytest.mark.timeout(600)


def _can_make_namespaces() -> str | None:
    if os.geteuid() != 0:
        return "needs root (ip netns add, veth pairs)"
    if shutil.which("ip") is None:
        return "iproute2's ip is not installed"
    probe = f"rvaprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"ip netns add fails here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], check=False)
    return None


def ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"ip {' '.join(args)}: {done.stderr}"


@pytest.fixture
def netns() -> Iterator[str]:
    """A namespace with one veth to the root namespace: HOST_ADDR here, NS_ADDR there."""
    why = _can_make_namespaces()
    if why:
        pytest.skip(why)
    existing = subprocess.run(["ip", "-br", "addr"], capture_output=True, text=True).stdout
    if HOST_ADDR in existing:
        pytest.skip(f"{HOST_ADDR} is already in use on this machine")
    tag = f"{os.getpid() % 100000}"
    ns, host_if, ns_if = f"rvat{tag}", f"rvah{tag}", f"rvan{tag}"
    ip("netns", "add", ns)
    try:
        ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        ip("link", "set", ns_if, "netns", ns)
        ip("addr", "add", f"{HOST_ADDR}/{PREFIX}", "dev", host_if)
        ip("link", "set", host_if, "up")
        ip("netns", "exec", ns, "ip", "addr", "add", f"{NS_ADDR}/{PREFIX}", "dev", ns_if)
        ip("netns", "exec", ns, "ip", "link", "set", ns_if, "up")
        ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)  # takes its veth end along
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, check=False)


def role_rules(user: str) -> str:
    """The ACL rules the ansible role writes for `user`, TS.* write access included (as in
    ansible/roles/rva_redis/templates/users.acl.j2 with RedisTimeSeries present)."""
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    variables = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
    spec = defaults["rva_redis_acl_users"][user]
    ts = {
        "none": [],
        "read": variables["rva_redis_ts_read_commands"],
        "write": variables["rva_redis_ts_read_commands"] + variables["rva_redis_ts_write_commands"],
    }[spec.get("timeseries", "none")]
    keys_ = spec.get("key_patterns", defaults["rva_redis_acl_keys"])
    return " ".join([keys_, "resetchannels -@all", spec["rules"], *(f"+{c}" for c in ts)])


@dataclass
class AclRedis:
    port: int
    admin: str  # password of rva-admin
    passwords: dict[str, str]
    proc: subprocess.Popen[bytes]

    def url(self, user: str, host: str = "127.0.0.1") -> str:
        password = self.admin if user == "rva-admin" else self.passwords[user]
        return f"redis://{user}:{password}@{host}:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url("rva-admin"))


@pytest.fixture
def acl_redis(netns: str, tmp_path: Path) -> Iterator[AclRedis]:
    binary, module = REDIS_STACK / "redis-server", REDIS_STACK / "redistimeseries.so"
    if not binary.exists():
        pytest.fail(f"{binary} missing: run `make fetch`")
    port = free_port()
    data = tmp_path / "redis"
    data.mkdir()
    proc = subprocess.Popen(
        [
            str(binary),
            *("--port", str(port), "--bind", "127.0.0.1", HOST_ADDR, "--save", ""),
            *("--appendonly", "no", "--dir", str(data), "--loadmodule", str(module)),
            *("--logfile", str(data / "redis.log"), "--protected-mode", "no"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        plain = redis.Redis(port=port)
        wait_for(plain.ping, 15, what="redis-server")
        admin = secrets.token_hex(16)
        passwords = {u: secrets.token_hex(16) for u in ("rva-gears", "rva-gears-remote")}
        plain.execute_command("ACL", "SETUSER", "rva-admin", "on", f">{admin}", "~*", "&*", "+@all")
        rules = role_rules("rva-gears").split()
        for user, password in passwords.items():
            plain.execute_command("ACL", "SETUSER", user, "reset", "on", f">{password}", *rules)
        # As the role does in LAN mode: no password-less default user.
        plain.execute_command("ACL", "SETUSER", "default", "off", "resetkeys", "-@all")
        yield AclRedis(port, admin, passwords, proc)
    finally:
        proc.terminate()
        proc.wait(10)


def in_namespace(ns: str, code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )


def test_a_worker_in_another_namespace_shares_frames_without_double_work(
    netns: str,
    acl_redis: AclRedis,
    tmp_path: Path,
    services: object,
    vtest_path: Path,
) -> None:
    # The other "host" reaches Redis over the veth only, and only as its own ACL user.
    probe = in_namespace(
        netns,
        "import redis, json\n"
        f"r = redis.Redis(host='{HOST_ADDR}', port={acl_redis.port}, socket_timeout=5)\n"
        "out = {}\n"
        "try:\n    r.ping(); out['anonymous'] = 'PONG'\n"
        "except redis.RedisError as e:\n    out['anonymous'] = str(e)\n"
        f"r = redis.Redis.from_url('{acl_redis.url('rva-gears-remote', HOST_ADDR)}')\n"
        "out['ping'] = r.ping()\n"
        "for name, cmd in [('flushall', ['FLUSHALL']), ('config', ['CONFIG', 'GET', 'dir']),\n"
        "                  ('other key', ['SET', 'secrets', 'x']), ('acl', ['ACL', 'LIST'])]:\n"
        "    try:\n        r.execute_command(*cmd); out[name] = 'allowed'\n"
        "    except redis.RedisError as e:\n        out[name] = str(e)\n"
        "try:\n"
        "    redis.Redis(host='127.0.0.1', port="
        f"{acl_redis.port}, socket_connect_timeout=2).ping(); out['loopback'] = 'reached'\n"
        "except redis.RedisError as e:\n    out['loopback'] = type(e).__name__\n"
        "print(json.dumps(out))\n",
    )
    assert probe.returncode == 0, probe.stderr
    seen = json.loads(probe.stdout)
    assert seen["ping"] is True
    assert "NOAUTH" in seen["anonymous"] or "Authentication" in seen["anonymous"], seen
    for denied in ("flushall", "config", "other key", "acl"):
        assert "no permissions" in seen[denied].lower(), (denied, seen)
    # Its own loopback has no Redis: it really is another host, as far as the network goes.
    assert seen["loopback"] == "ConnectionError", seen

    cfg = write_config(
        tmp_path / "rva.toml", acl_redis.url("rva-admin"), vtest_path, camera={"fps": 10}
    )
    svc: Services = services(cfg)  # type: ignore[operator]
    svc.run("init")
    local = svc.start("gears", env={"RVA_REDIS_URL": acl_redis.url("rva-gears")})
    # The remote worker: no model cache of its own (it loads the model from Redis), its own
    # user, Redis at the veth address.
    empty_cache = tmp_path / "remote-models"
    empty_cache.mkdir()
    log = tmp_path / "remote-gears.log"
    with log.open("wb") as out:
        remote = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, "-m", "rva", "gears"],
            env={
                **svc.env(),
                "RVA_REDIS_URL": acl_redis.url("rva-gears-remote", HOST_ADDR),
                "RVA_MODEL_CACHE": str(empty_cache),
            },
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    svc.procs.append(("gears (namespace)", remote, log))
    client = acl_redis.client()
    names = {f"{os.uname().nodename}-{p.pid}" for p in (local, remote)}

    def both_in_group() -> bool:
        try:
            consumers = client.xinfo_consumers(keys.frames("0"), "rva-gears")
        except redis.ResponseError:
            return False
        return {
            c["name"].decode() if isinstance(c["name"], bytes) else c["name"] for c in consumers
        } >= names

    wait_for(both_in_group, 120, what="both workers in the consumer group")
    clients = client.client_list()
    remote_clients = [c for c in clients if c["addr"].startswith(NS_ADDR + ":")]
    assert remote_clients and all(c["user"] == "rva-gears-remote" for c in remote_clients), clients

    svc.start("capture", "--frames", "80")
    wait_for(lambda: client.xlen(keys.frames("0")) >= 80, 90, what="80 frames captured")
    wait_for(
        lambda: client.xpending(keys.frames("0"), "rva-gears")["pending"] == 0
        and client.xinfo_groups(keys.frames("0"))[0]["lag"] == 0,
        60,
        what="all frames handled",
    )
    results = client.xrange(keys.results("0"))
    refs = [fields[b"ref"] for _id, fields in results]
    workers = [fields[b"worker"].decode() for _id, fields in results]
    assert len(refs) == len(set(refs)), "a frame was processed twice"
    assert set(workers) == names, f"both workers must have taken frames: {set(workers)}"
    frames = {entry_id for entry_id, _f in client.xrange(keys.frames("0"))}
    assert set(refs) <= frames, "a result for a frame that was never captured"
    stats = {k.decode(): int(v) for k, v in client.hgetall(keys.STATS).items()}
    assert stats["0:processed"] == len(refs), stats  # written once: one result per processing
    assert stats["0:processed"] + stats.get("0:skipped", 0) == 80, stats
    assert remote.poll() is None and local.poll() is None
    counts = {w: workers.count(w) for w in names}
    print(f"results per worker: {counts}")
