"""rva update: A/B updates of an RVA image with RAUC (docs/updates.md).

``rva update FILE|URL`` checks a bundle (RAUC's signature check against the device's keyring,
and its compatible against the device's), then ``rauc install`` writes it into the other root
slot and makes that slot the one to try on the next boot. ``rva update status`` shows the slots
as RAUC and the boot loader see them. ``rva update check`` is the health gate of a trial boot
(rva-health-check.service, before boot-complete.target): it passes when every camera's frames
arrive and are counted, and Redis holds the data it held before the update (a marker written
into Redis when the update was installed); systemd-bless-boot then keeps the new slot.
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from rva import health, keys
from rva.config import Config
from rva.connection import connect

# The environment names other places, for tests and for systems laid out differently.
SYSTEM_CONF = Path(os.environ.get("RVA_RAUC_CONF", "/etc/rauc/system.conf"))
# On the data partition, which updates keep: the pending update's marker, downloaded bundles.
STATE_DIR = Path(os.environ.get("RVA_UPDATE_DIR", "/data/rva"))
RAUC = os.environ.get("RVA_RAUC", "rauc")
CHECK_EVERY_S = 5.0


class UpdateError(Exception):
    """Why an update is refused or failed, for a person: printed without a traceback."""


def _rauc(*args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [RAUC, f"--conf={SYSTEM_CONF}", *args], capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        raise UpdateError(f"{RAUC} is not installed: this is not an A/B image") from None


def system() -> configparser.ConfigParser:
    """The device's RAUC system.conf; refused when there is none (not an A/B image)."""
    if not SYSTEM_CONF.is_file():
        raise UpdateError(
            f"this system is not an A/B image (no {SYSTEM_CONF}): update it with "
            "ansible/site.yml, or flash an A/B image (image-build/build --ab)"
        )
    conf = configparser.ConfigParser(interpolation=None)
    try:
        conf.read(SYSTEM_CONF)
    except configparser.Error as exc:
        raise UpdateError(f"{SYSTEM_CONF}: {exc}") from None
    if not conf.get("system", "compatible", fallback=""):
        raise UpdateError(f"{SYSTEM_CONF}: no compatible= in [system]")
    return conf


def _refusal(stderr: str, bundle: Path, keyring: str) -> str:
    """RAUC's reason in a sentence; its own last line after it."""
    last = [line for line in stderr.splitlines() if line.strip()][-1:] or ["(no output)"]
    text = stderr.lower()
    if "signature size is 0" in text:
        why = "it is not signed"
    elif "signature" in text or "cms" in text or "certificate" in text:
        why = f"its signature does not verify against {keyring} (another key, or altered)"
    elif "invalid bundle" in text or "squashfs" in text or "too small" in text:
        why = "it is not a RAUC bundle"
    else:
        why = "RAUC cannot read it"
    return f"{bundle}: refused: {why}: {last[0].strip()}"


def check_bundle(bundle: Path) -> dict[str, Any]:
    """RAUC's own verification of the bundle's signature, and its compatible against this
    device's: its info (compatible, version, images) when both pass."""
    conf = system()
    keyring = conf.get("keyring", "path", fallback="(no keyring in system.conf)")
    if not bundle.is_file():
        raise UpdateError(f"{bundle}: no such file")
    done = _rauc("info", "--output-format=json", str(bundle))
    if done.returncode != 0:
        raise UpdateError(_refusal(done.stderr, bundle, keyring))
    info: dict[str, Any] = json.loads(done.stdout)
    mine = conf.get("system", "compatible")
    if info.get("compatible") != mine:
        raise UpdateError(
            f"{bundle}: refused: it is made for {info.get('compatible')!r}, this device is "
            f"{mine!r} ({SYSTEM_CONF})"
        )
    return info


def download(url: str, into: Path) -> Path:
    """The bundle at an http(s) URL, into a file on the data partition."""
    into.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="download-", suffix=".raucb", dir=into)
    print(f"downloading {url}", flush=True)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            shutil.copyfileobj(response, out, 1 << 20)
    except (urllib.error.URLError, OSError) as exc:
        Path(name).unlink(missing_ok=True)
        if isinstance(exc, urllib.error.HTTPError):
            reason = f"HTTP {exc.code} {exc.reason}"
        else:
            reason = str(getattr(exc, "reason", exc))
        raise UpdateError(f"{url}: cannot download: {reason}") from None
    return Path(name)


def _mark_redis(client: Any, marker: dict[str, str]) -> None:
    """The marker the trial boot's check looks for: the data in Redis survived the update."""
    client.hset(keys.UPDATE, mapping=marker)
    try:
        client.save()  # on disk now, not at the next save point
    except Exception as exc:  # a save in progress, or persistence off: said, not fatal
        print(f"rva update: Redis did not save now ({exc}); it saves as it stops", file=sys.stderr)


def _reboot(conf: configparser.ConfigParser) -> None:
    """Into the slot RAUC made primary. The Raspberry Pi's backend (bootloader-tryboot) tries a
    slot only on a boot with the firmware's tryboot flag, `reboot '0 tryboot'`: its own reboot
    command gives that (docs/updates.md); systemd-boot's counting needs a plain reboot."""
    backend = conf.get("handlers", "bootloader-custom-backend", fallback="")
    if Path(backend).name == "bootloader-tryboot":
        subprocess.run([backend, "reboot"], check=False)
    else:
        subprocess.run(["systemctl", "reboot"], check=False)


def install(target: str, redis_url: str, reboot: bool) -> int:
    conf = system()  # not an A/B image: said before anything else
    if os.geteuid() != 0:
        raise UpdateError("run as root (sudo rva update ...): RAUC writes the other root slot")
    url = target.startswith(("http://", "https://"))
    bundle = download(target, STATE_DIR) if url else Path(target)
    try:
        info = check_bundle(bundle)
        print(
            f"{bundle}: signature OK, compatible {info['compatible']}, version {info['version']}",
            flush=True,
        )
        marker = {
            "id": uuid.uuid4().hex,
            "version": str(info["version"]),
            "bundle": target,
            "at": str(int(time.time())),
        }
        try:
            _mark_redis(connect(redis_url, name="rva-update", timeout=5), marker)
        except Exception as exc:
            raise UpdateError(
                f"Redis ({redis_url}) is not reachable ({exc}): the new slot's health check "
                "compares Redis's data before and after, so the update waits for Redis"
            ) from None
        done = subprocess.run([RAUC, f"--conf={SYSTEM_CONF}", "install", str(bundle)], check=False)
        if done.returncode != 0:
            raise UpdateError(f"rauc install {bundle} failed (exit {done.returncode}, above)")
    finally:
        if url:
            bundle.unlink(missing_ok=True)
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    (STATE_DIR / "update.json").write_text(json.dumps(marker) + "\n")
    print(
        f"installed {info['version']}: the next boot tries it once; it stays only when RVA "
        "counts and Redis has its data (rva update check), else the device boots the old slot"
    )
    if reboot:
        _reboot(conf)
    return 0


def slots(st: dict[str, Any]) -> dict[str, Any]:
    """rauc status's JSON as scripts want it (`rva update status --json`, ansible/update.yml):
    slots by bootname, the primary as a bootname too."""
    out: dict[str, Any] = {"compatible": st.get("compatible"), "booted": st.get("booted")}
    out["primary"], out["slots"] = None, {}
    for entry in st.get("slots", []):
        for name, slot in entry.items():
            if slot.get("class") != "rootfs":
                continue
            bundle = (slot.get("slot_status") or {}).get("bundle") or {}
            boot = slot.get("bootname")
            out["slots"][boot] = {
                "slot": name,
                "device": slot.get("device"),
                "booted": slot.get("state") == "booted",
                "good": slot.get("boot_status") == "good",
                "version": bundle.get("version"),
            }
            if name == st.get("boot_primary"):
                out["primary"] = boot
    return out


def status(as_json: bool = False) -> int:
    system()
    done = _rauc("status", "--detailed", "--output-format=json")
    if done.returncode != 0:
        raise UpdateError(f"rauc status failed: {done.stderr.strip()}")
    st = json.loads(done.stdout)
    if as_json:
        print(json.dumps(slots(st), indent=2))
        return 0
    primary = slots(st)["primary"]
    print(f"compatible {st.get('compatible')}, booted {st.get('booted')}, "
          f"next boot {primary or '?'} ({st.get('boot_primary')})")  # fmt: skip
    for entry in st.get("slots", []):
        for name, slot in entry.items():
            bundle = (slot.get("slot_status") or {}).get("bundle") or {}
            installed = ((slot.get("slot_status") or {}).get("installed") or {}).get("timestamp")
            print(
                f"{name} ({slot.get('bootname')}, {slot.get('device')}): {slot.get('state')}, "
                f"{slot.get('boot_status')}, version {bundle.get('version') or '-'}"
                + (f", installed {installed}" if installed else "")
            )
    return 0


def _healthy(client: Any, cfg: Config, marker: dict[str, str] | None) -> list[str]:
    """What still keeps this boot from being good (empty: healthy)."""
    snap = health.snapshot(client, list(cfg.cameras), cfg.gear.group)
    if not snap.redis:
        return snap.problems or ["Redis unreachable"]
    missing = []
    for cam in snap.cameras.values():
        if cam.frame_age_s is None or cam.frame_age_s > health.FRAME_STALE_S:
            missing.append(f"camera {cam.camera}: no fresh frames")
        elif cam.result_age_s is None or cam.result_age_s > health.RESULT_STALE_S:
            missing.append(f"camera {cam.camera}: frames arrive but are not counted")
    if marker is not None:
        seen = client.hget(keys.UPDATE, "id")
        if (seen or b"").decode() != marker.get("id"):
            missing.append(
                f"Redis does not have the data it had before the update (no {keys.UPDATE} "
                f"marker {marker.get('id')} of version {marker.get('version')})"
            )
    return missing


def check(redis_url: str, cfg: Config, timeout: float) -> int:
    state = STATE_DIR / "update.json"
    marker = json.loads(state.read_text()) if state.is_file() else None
    deadline = time.monotonic() + timeout
    client = connect(redis_url, name="rva-update-check", timeout=3)
    while True:
        try:
            problems = _healthy(client, cfg, marker)
        except Exception as exc:  # Redis starting, loading its data: asked again
            problems = [f"Redis: {exc}"]
        if not problems:
            print(f"healthy: {len(cfg.cameras)} camera(s) counting, Redis has its data")
            if marker is not None:
                state.rename(state.with_name("update-checked.json"))
            return 0
        if time.monotonic() >= deadline:
            print(f"not healthy after {timeout:.0f}s: " + "; ".join(problems), file=sys.stderr)
            return 1
        time.sleep(CHECK_EVERY_S)
