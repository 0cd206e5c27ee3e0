#!/usr/bin/python3
"""Runs inside the booted test container (rva-boot-check.service).

Waits until every RVA unit is active and /healthz reports people counted from real frames, writes
what it saw to /srv/rva-check (result.json, status.txt, journal.txt), then powers the container off.
Uses the OS's python3 only: it checks the appliance, it is not part of it.
"""

import json
import os
import subprocess
import time
import urllib.error
import urllib.request

OUT = "/srv/rva-check"
UNITS = [
    "redis-server.service",
    "rva-init.service",
    "rva-capture.service",
    "rva-gears.service",
    "rva-web.service",
]
PORT = int(os.environ.get("RVA_CHECK_PORT", "5000"))
TIMEOUT = float(os.environ.get("RVA_CHECK_TIMEOUT", "150"))


def systemctl(*args: str) -> str:
    return subprocess.run(["systemctl", *args], capture_output=True, text=True).stdout.strip()


def healthz() -> dict:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/healthz", timeout=5) as resp:
            return {"code": resp.status, "body": json.loads(resp.read())}
    except urllib.error.HTTPError as exc:
        return {"code": exc.code, "body": exc.read().decode(errors="replace")}
    except Exception as exc:
        return {"code": 0, "body": str(exc)}


def people_counted(health: dict) -> bool:
    cameras = (
        health.get("body", {}).get("cameras", {}) if isinstance(health.get("body"), dict) else {}
    )
    return any(isinstance(c, dict) and c.get("people") is not None for c in cameras.values())


def redis_as(user: str | None, *command: str) -> str:
    """Run one command through redis-cli as an RVA ACL user (None: the default user)."""
    env = dict(os.environ)
    argv = ["redis-cli", "--no-raw"]
    if user:
        with open(f"/etc/rva/credentials/{user}.password") as f:
            env["REDISCLI_AUTH"] = f.read().strip()
        argv += ["--user", user]
    done = subprocess.run([*argv, *command], capture_output=True, text=True, env=env)
    return (done.stdout + done.stderr).strip()


# Each ACL user may do its job and nothing more.
ACL_PROBES = {
    "web writes a frame": ("rva-web", "XADD", "camera:0", "*", "probe", "1"),
    "gears flushes the database": ("rva-gears", "FLUSHALL"),
    "capture touches a foreign key": ("rva-capture", "SET", "elsewhere", "1"),
    "anonymous writes": (None, "SET", "camera:probe", "1"),
    "anonymous reads the people series": (None, "TS.GET", "camera:0:people"),
    "admin pings": ("rva-admin", "PING"),
}

start = time.monotonic()
while True:
    active = {u: systemctl("is-active", u) for u in UNITS}
    health = healthz()
    done = (
        all(s == "active" for s in active.values())
        and health["code"] == 200
        and people_counted(health)
    )
    # "failed" is final: between restarts a unit reads "activating"; failed means its start
    # limit is spent.
    given_up = any(s == "failed" for s in active.values())
    if done or given_up or time.monotonic() - start > TIMEOUT:
        break
    time.sleep(2)

result = {
    "seconds": round(time.monotonic() - start, 1),
    "units": active,
    "enabled": {u: systemctl("is-enabled", u) for u in ["rva.target", *UNITS]},
    "healthz": health,
    "system": systemctl("is-system-running"),
    "acl": {name: redis_as(*probe) for name, probe in ACL_PROBES.items()},
}
with open(f"{OUT}/result.json.part", "w") as f:
    json.dump(result, f, indent=2)
os.rename(f"{OUT}/result.json.part", f"{OUT}/result.json")
with open(f"{OUT}/status.txt", "w") as f:
    subprocess.run(["systemctl", "status", "--no-pager", "--lines=0", *UNITS], stdout=f, stderr=f)
    subprocess.run(["systemctl", "--failed", "--no-pager"], stdout=f, stderr=f)
with open(f"{OUT}/journal.txt", "w") as f:
    subprocess.run(
        [
            "journalctl",
            "-b",
            "--no-pager",
            "-o",
            "short-monotonic",
            "-u",
            "rva-*",
            "-u",
            "redis-server.service",
        ],
        stdout=f,
        stderr=f,
    )
subprocess.run(["systemctl", "poweroff"])
