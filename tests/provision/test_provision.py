"""Provisioning: ansible/ applied into a fresh Debian root filesystem, which is then booted.

1. ansible-lint (production profile) and a syntax check of ansible/site.yml.
2. A Debian bookworm amd64 root filesystem from mmdebstrap (cached in .cache/provision/, keyed by
   its package list), provisioned with `ansible-playbook -c community.general.chroot` the way an
   image build would: Redis with the real RedisTimeSeries module (module_file, from
   .cache/redis-stack), the sample video as the camera. Checked from outside: units installed and
   enabled, the rva user, the venv, `rva config check`, `systemd-analyze verify`, Redis ACLs.
   A second apply must change nothing.
3. The root booted with systemd-nspawn (private network, volatile overlay): every RVA unit must be
   active and /healthz must report people counted from real frames.

Needs root, mmdebstrap and systemd-container (scripts/install-deps.sh provision), the ansible
tools in the venv (pip install -r ansible/requirements-dev.txt), and network to the Debian mirror
and PyPI (the playbook installs the package and fetches the model like on a device).
Set RVA_KEEP_ROOT=1 to keep the root filesystem for inspection.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

pytestmark = pytest.mark.provision

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("RVA_CACHE") or REPO / ".cache")
PROVISION_CACHE = CACHE / "provision"
VENV_BIN = Path(sys.executable).parent

SUITE, ARCH = "bookworm", "amd64"
# What a freshly flashed device starts from; everything else is the playbook's job.
BASE_PACKAGES = ["systemd", "systemd-sysv", "dbus", "python3", "ca-certificates"]
RVA_UNITS = [
    "rva.target",
    "rva-init.service",
    "rva-capture.service",
    "rva-gears.service",
    "rva-web.service",
]
RVA_SERVICES = RVA_UNITS[1:]
WEB_PASSWORD = "correct horse battery"
# Run on the device: the status of /healthz, then /api/summary without credentials, as alice,
# and with a wrong password.
WEB_PROBE = f"""
import base64, urllib.error, urllib.request
def get(path, auth=""):
    req = urllib.request.Request("http://127.0.0.1:5000" + path)
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        return urllib.request.urlopen(req, timeout=10).status
    except urllib.error.HTTPError as exc:
        return exc.code
print(get("/healthz"), get("/api/summary"), get("/api/summary", "alice:{WEB_PASSWORD}"),
      get("/api/summary", "alice:not the password"))
"""
TIMINGS: dict[str, float] = {}


def _timed(name: str, started: float) -> None:
    TIMINGS[name] = round(time.monotonic() - started, 1)
    PROVISION_CACHE.mkdir(parents=True, exist_ok=True)
    (PROVISION_CACHE / "last-timings.json").write_text(json.dumps(TIMINGS, indent=2) + "\n")
    print(f"provision timing: {name} {TIMINGS[name]}s")


def _tool(name: str) -> str:
    found = VENV_BIN / name
    if found.exists():
        return str(found)
    path = shutil.which(name)
    if not path:
        pytest.skip(f"{name} not installed: pip install -r ansible/requirements-dev.txt")
    return path


@pytest.fixture(scope="session")
def can_build_roots() -> None:
    if os.geteuid() != 0:
        pytest.skip("building and booting a root filesystem needs root")
    missing = [
        t for t in ("mmdebstrap", "systemd-nspawn", "systemd-analyze") if not shutil.which(t)
    ]
    if missing:
        pytest.skip(f"missing {', '.join(missing)}: scripts/install-deps.sh provision")


# -- lint -------------------------------------------------------------------------------------
def test_ansible_lint_production_profile_is_clean() -> None:
    result = subprocess.run(
        [
            _tool("ansible-lint"),
            "-c",
            "ansible/.ansible-lint",
            "--profile",
            "production",
            "--nocolor",
            "ansible/",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


@pytest.mark.parametrize("playbook", ["site.yml", "fleet.yml", "update.yml"])
def test_playbook_passes_syntax_check(playbook: str) -> None:
    result = subprocess.run(
        [
            _tool("ansible-playbook"),
            "--syntax-check",
            "-i",
            "ansible/inventory.example.ini",
            f"ansible/{playbook}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=_ansible_env(),
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


# -- root filesystem --------------------------------------------------------------------------
@pytest.fixture(scope="session")
def base_rootfs(can_build_roots: None) -> Path:
    """The mmdebstrap tarball, rebuilt only when the package list or the build script changes."""
    script = HERE / "build-rootfs.sh"
    key = hashlib.sha256(
        "\n".join([SUITE, ARCH, *sorted(BASE_PACKAGES), script.read_text()]).encode()
    ).hexdigest()[:16]
    tarball = PROVISION_CACHE / f"{SUITE}-{ARCH}-{key}.tar"
    if not tarball.exists():
        started = time.monotonic()
        subprocess.run(
            [str(script), SUITE, ARCH, str(tarball), ",".join(BASE_PACKAGES)], check=True
        )
        _timed("mmdebstrap", started)
    return tarball


def _redis_stack() -> Path:
    stack = CACHE / "redis-stack"
    if not (stack / "redistimeseries.so").exists():
        subprocess.run([str(REPO / "scripts/get-redis-stack.sh")], check=True)
    return stack


def _footage() -> Path:
    video = CACHE / "footage" / "vtest.avi"
    if not video.exists():
        subprocess.run([str(REPO / "scripts/get-footage.sh")], check=True)
    return video


def _ansible_env() -> dict[str, str]:
    # The host's pip settings (PIP_FIND_LINKS, PIP_CERT, ...) must not leak into the target.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(
        ANSIBLE_CONFIG=str(REPO / "ansible/ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_LOCAL_TEMP=str(PROVISION_CACHE / "ansible-tmp"),
        # Per-task times at the end of each apply log (apply-*.log with RVA_KEEP_ROOT=1).
        ANSIBLE_CALLBACKS_ENABLED="ansible.posix.profile_tasks",
        PATH=f"{VENV_BIN}:{env.get('PATH', '')}",
    )
    return env


@dataclass
class Apply:
    returncode: int
    output: str
    recap: dict[str, int] = field(default_factory=dict)


@dataclass
class Provisioned:
    root: Path
    workdir: Path
    first: Apply
    inventory: Path
    extra_vars: Path


def _apply(inventory: Path, extra_vars: Path, log: Path) -> Apply:
    result = subprocess.run(
        [
            _tool("ansible-playbook"),
            "-i",
            str(inventory),
            "-e",
            f"@{extra_vars}",
            str(REPO / "ansible/site.yml"),
        ],
        cwd=REPO,
        stdin=subprocess.DEVNULL,  # ansible refuses a non-blocking stdin
        capture_output=True,
        text=True,
        env=_ansible_env(),
    )
    log.write_text(result.stdout + result.stderr)
    recap: dict[str, int] = {}
    match = re.search(r"^\S+\s+:\s+(ok=.*)$", result.stdout, re.MULTILINE)
    if match:
        recap = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))}
    return Apply(result.returncode, result.stdout + result.stderr, recap)


def _trust_host_certificates(root: Path) -> None:
    bundle = "etc/ssl/certs/ca-certificates.crt"
    pem = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)
    ours = set(pem.findall((root / bundle).read_text()))
    extra = [c for c in pem.findall(Path("/", bundle).read_text()) if c not in ours]
    if not extra:
        return
    local = root / "usr/local/share/ca-certificates"
    local.mkdir(parents=True, exist_ok=True)
    for n, cert in enumerate(extra):
        (local / f"rva-test-host-{n}.crt").write_text(cert + "\n")
    _chroot(root, "update-ca-certificates")


def _chroot(root: Path, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["chroot", str(root), *argv], capture_output=True, text=True, check=check)


@pytest.fixture(scope="module")
def provisioned(
    base_rootfs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Provisioned]:
    workdir = tmp_path_factory.mktemp("provision")
    root = workdir / "root"
    root.mkdir()
    started = time.monotonic()
    subprocess.run(
        ["tar", "--numeric-owner", "-xpf", str(base_rootfs), "-C", str(root)], check=True
    )
    _timed("extract", started)
    # The chroot resolves names through the host's resolver and trusts what the host trusts
    # (a build host behind a TLS-inspecting proxy), as an image build on that host would.
    shutil.copyfile("/etc/resolv.conf", root / "etc/resolv.conf")
    _trust_host_certificates(root)
    # The Redis Stack module links against OpenSSL 1.1 (bullseye's libssl1.1): a test-only
    # prerequisite of module_file on this bookworm root, put where redis-server may map it.
    stack = _redis_stack()
    libdir = root / "usr/lib/x86_64-linux-gnu"
    for lib in (stack / "lib").glob("lib*.so.1.1"):
        shutil.copy2(lib, libdir / lib.name)
    _chroot(root, "ldconfig")

    inventory = workdir / "inventory.ini"
    inventory.write_text(
        "[rva]\n"
        f"rva-test ansible_host={root} ansible_connection=community.general.chroot"
        " ansible_become=false ansible_python_interpreter=/usr/bin/python3\n"
    )
    extra_vars = workdir / "vars.json"
    extra_vars.write_text(
        json.dumps(
            {
                "rva_base_hostname": "rva-test",
                "rva_redis_source": "module_file",
                "rva_redis_module_file": str(stack / "redistimeseries.so"),
                "rva_camera_type": "file",
                "rva_camera_video_file": str(_footage()),
            }
        )
    )
    started = time.monotonic()
    first = _apply(inventory, extra_vars, workdir / "apply-1.log")
    _timed("first apply", started)
    try:
        yield Provisioned(root, workdir, first, inventory, extra_vars)
    finally:
        if not os.environ.get("RVA_KEEP_ROOT"):
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"provisioned root kept at {root}")


def test_first_apply_succeeds(provisioned: Provisioned) -> None:
    first = provisioned.first
    assert first.returncode == 0 and first.recap.get("failed") == 0, first.output[-6000:]
    assert first.recap.get("changed", 0) > 0


def test_units_are_installed_and_enabled_without_being_started(provisioned: Provisioned) -> None:
    root = provisioned.root
    for unit in RVA_UNITS:
        assert (root / "usr/lib/systemd/system" / unit).is_file(), unit
        assert (REPO / "rootfs/usr/lib/systemd/system" / unit).read_bytes() == (
            root / "usr/lib/systemd/system" / unit
        ).read_bytes(), f"{unit} differs from rootfs/"
    wants = root / "etc/systemd/system/rva.target.wants"
    for service in RVA_SERVICES:
        assert (wants / service).is_symlink(), f"{service} not enabled into rva.target"
    assert (root / "etc/systemd/system/multi-user.target.wants/rva.target").is_symlink()
    assert (root / "etc/systemd/system/multi-user.target.wants/redis-server.service").is_symlink()
    assert (root / "usr/lib/systemd/system/redis-server.service.d/rva.conf").is_file()
    # Nothing may have been started from inside the chroot.
    assert not list((root / "run").glob("redis*/*.pid"))


def test_rva_user_state_and_config_are_in_place(provisioned: Provisioned) -> None:
    root = provisioned.root
    passwd = _chroot(root, "getent", "passwd", "rva").stdout
    assert passwd.split(":")[5] == "/var/lib/rva" and passwd.strip().endswith("nologin")
    models = root / "var/lib/rva/models"
    assert models.is_dir() and any(models.rglob("*.weights")), "rva models fetch left no weights"
    uid = int(passwd.split(":")[2])
    assert all(p.stat().st_uid == uid for p in models.rglob("*")), "model cache not owned by rva"
    toml = (root / "etc/rva/rva.toml").read_text()
    assert 'source = "/usr/local/share/rva/footage/vtest.avi"' in toml
    assert (root / "usr/local/share/rva/footage/vtest.avi").is_file()
    assert (root / "etc/hostname").read_text().strip() == "rva-test"
    # mDNS announces the page on rva-web's port.
    announced = (root / "etc/avahi/services/rva-http.service").read_text()
    assert "<port>5000</port>" in announced and announced.endswith("</service-group>\n")


def test_venv_imports_the_package_and_the_config_checks_out(provisioned: Provisioned) -> None:
    root = provisioned.root
    _chroot(
        root,
        "/opt/rva/venv/bin/python",
        "-c",
        "import rva, rva.services.web, rva.gears, rva.models, cv2",
    )
    check = _chroot(
        root, "runuser", "-u", "rva", "--", "/usr/local/bin/rva", "config", "check", check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_units_pass_systemd_analyze_verify(provisioned: Provisioned) -> None:
    result = subprocess.run(
        ["systemd-analyze", "verify", f"--root={provisioned.root}", "--man=no", *RVA_UNITS],
        capture_output=True,
        text=True,
    )
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if "rva" in line]
    assert result.returncode == 0 and not complaints, result.stdout + result.stderr


def test_redis_users_have_least_rights_and_secret_passwords(provisioned: Provisioned) -> None:
    root = provisioned.root
    acl = (root / "etc/redis/users.acl").read_text()
    users = {line.split()[1]: line for line in acl.splitlines() if line.startswith("user ")}
    assert set(users) == {
        *("default", "rva-admin", "rva-init", "rva-capture", "rva-gears", "rva-web", "rva-mqtt")
    }
    assert "%RW~rva:mqtt" in users["rva-mqtt"] and "+@write" not in users["rva-mqtt"]
    assert "nopass" in users["default"] and "+@write" not in users["default"]
    assert "+ts.add" in users["rva-gears"] and "+ts.add" not in users["rva-web"]
    assert all("~camera:* ~rva:*" in users[u] for u in ("rva-init", "rva-capture", "rva-gears"))
    assert "%R~camera:* %R~rva:* %RW~rva:heartbeat" in users["rva-web"]
    creds = root / "etc/rva/credentials"
    assert creds.stat().st_mode & 0o777 == 0o700
    for service in RVA_SERVICES:
        env = creds / f"{service.removesuffix('.service')}.env"
        assert env.stat().st_mode & 0o777 == 0o600
        password = (creds / f"{service.removesuffix('.service')}.password").read_text().strip()
        assert password not in acl and hashlib.sha256(password.encode()).hexdigest() in acl
    conf = (root / "etc/redis/rva-local.conf").read_text()
    assert "loadmodule /usr/lib/redis/modules/redistimeseries.so" in conf


def test_second_apply_changes_nothing(provisioned: Provisioned) -> None:
    started = time.monotonic()
    second = _apply(
        provisioned.inventory, provisioned.extra_vars, provisioned.workdir / "apply-2.log"
    )
    _timed("second apply", started)
    assert second.returncode == 0, second.output[-6000:]
    changed = [line for line in second.output.splitlines() if line.startswith("changed:")]
    assert second.recap.get("changed") == 0, "\n".join(changed) or second.output[-6000:]


def _container_init(nspawn: subprocess.Popen[bytes], timeout: float = 30) -> int:
    """The host PID of the container's systemd (the child of systemd-nspawn)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == nspawn.pid and "(systemd)" in stat.read_text():
                return int(stat.parent.name)
        time.sleep(0.2)
    pytest.fail("the container's systemd did not start")


@contextmanager
def _booted(
    root: Path, log: Path, binds: tuple[str, ...] = ()
) -> Iterator[subprocess.Popen[bytes]]:
    """Boot the root with systemd-nspawn, on a private network (loopback only).

    --register=no --keep-unit: no machined and no systemd on this host to ask for a scope.
    --volatile=overlay: writes go to a tmpfs; the root stays as provisioned, every boot is a first
    boot.
    """
    with log.open("w") as console:
        nspawn = subprocess.Popen(
            [
                "systemd-nspawn",
                "--quiet",
                "--boot",
                f"--directory={root}",
                "--machine=rva-test",
                "--register=no",
                "--keep-unit",
                "--private-network",
                "--volatile=overlay",
                *(f"--bind={b}" for b in binds),
            ],
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield nspawn
        finally:
            if nspawn.poll() is None:
                nspawn.terminate()  # nspawn halts the container on SIGTERM
                try:
                    nspawn.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(nspawn.pid, 9)
                    nspawn.wait()


def _nsenter(pid: int, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["nsenter", "--ipc", "--mount", "--net", "--pid", "--uts", f"--target={pid}", "--", *argv],
        capture_output=True,
        text=True,
    )


def test_reapply_on_the_running_device_restarts_rva_and_waits_until_healthy(
    provisioned: Provisioned,
) -> None:
    """The over-SSH path: services really started and restarted by handlers, /healthz awaited.

    The booted root is reached through community.docker.nsenter (a shell in the container's
    namespaces, as SSH gives one on a device); the container stays on a private network, which
    works because everything is already installed. A changed setting must restart RVA, and a
    second run must change nothing.
    """
    root, workdir = provisioned.root, provisioned.workdir
    inventory = workdir / "inventory-running.ini"
    settings = json.loads(provisioned.extra_vars.read_text())
    settings["rva_app_config"] = {"cameras.0.fps": 8.0}
    # A web user, as its line is made on the controller: the page then asks for a password.
    made = subprocess.run(
        [sys.executable, "-m", "rva", "web", "passwd", "alice", "--print"],
        input=f"{WEB_PASSWORD}\n",
        capture_output=True,
        text=True,
        check=True,
    )
    settings["rva_app_web_users"] = [made.stdout.strip()]
    extra_vars = workdir / "vars-running.json"
    extra_vars.write_text(json.dumps(settings))
    with _booted(root, workdir / "console-running.log") as nspawn:
        pid = _container_init(nspawn)
        deadline = time.monotonic() + 90
        while (state := _nsenter(pid, "systemctl", "is-system-running").stdout.strip()) not in (
            "running",
            "degraded",
        ) and time.monotonic() < deadline:
            time.sleep(1)  # "Failed to connect to bus" until dbus is up, then "starting"
        assert state in ("running", "degraded"), state
        inventory.write_text(
            "[rva]\n"
            f"rva-test ansible_connection=community.docker.nsenter ansible_nsenter_pid={pid}"
            " ansible_become=false ansible_python_interpreter=/usr/bin/python3\n"
        )
        started = time.monotonic()
        third = _apply(inventory, extra_vars, workdir / "apply-running-1.log")
        _timed("apply on the running system", started)
        assert third.returncode == 0, third.output[-6000:]
        assert "RUNNING HANDLER [rva_app : Restart RVA]" in third.output, third.output[-6000:]
        assert "TASK [rva_app : Wait until the page reports healthy]" in third.output
        for service in ("redis-server.service", *RVA_SERVICES):
            assert _nsenter(pid, "systemctl", "is-active", service).stdout.strip() == "active", (
                service
            )
        config = tomllib.loads(_nsenter(pid, "cat", "/etc/rva/rva.toml").stdout)
        assert config["cameras"]["0"]["fps"] == 8.0, config["cameras"]
        users = _nsenter(pid, "stat", "-c", "%a %U %G", "/etc/rva/web-users").stdout.split()
        assert users == ["640", "root", "rva"], users
        answers = _nsenter(pid, "python3", "-c", WEB_PROBE).stdout.split()
        assert answers == ["200", "401", "200", "401"], answers  # healthz, none, alice, wrong
        started = time.monotonic()
        fourth = _apply(inventory, extra_vars, workdir / "apply-running-2.log")
        _timed("second apply on the running system", started)
        changed = [line for line in fourth.output.splitlines() if line.startswith("changed:")]
        assert fourth.returncode == 0 and fourth.recap.get("changed") == 0, (
            "\n".join(changed) or fourth.output[-6000:]
        )


def test_booted_root_runs_every_rva_service_and_answers_healthz(provisioned: Provisioned) -> None:
    root, workdir = provisioned.root, provisioned.workdir
    shutil.copy2(HERE / "boot-check.py", root / "usr/local/sbin/rva-boot-check")
    shutil.copy2(
        HERE / "rva-boot-check.service", root / "etc/systemd/system/rva-boot-check.service"
    )
    wants = root / "etc/systemd/system/multi-user.target.wants/rva-boot-check.service"
    wants.unlink(missing_ok=True)
    wants.symlink_to("/etc/systemd/system/rva-boot-check.service")
    results = workdir / "check"
    results.mkdir()
    started = time.monotonic()
    binds = (f"{results}:/srv/rva-check",)
    try:
        with _booted(root, workdir / "console.log", binds) as nspawn:
            # The check unit powers the container off once it has seen enough.
            deadline = time.monotonic() + 300
            while nspawn.poll() is None and time.monotonic() < deadline:
                time.sleep(1)
    finally:
        wants.unlink()
    _timed("boot and check", started)
    report = results / "result.json"
    details = "".join(
        f"\n--- {p.name}\n{p.read_text(errors='replace')[-5000:]}"
        for p in (results / "status.txt", results / "journal.txt", workdir / "console.log")
        if p.exists()
    )
    assert report.exists(), "the check unit wrote no result" + details
    result = json.loads(report.read_text())
    print(f"provision boot: {json.dumps(result)[:2000]}")
    assert all(state == "active" for state in result["units"].values()), (
        json.dumps(result["units"]) + details
    )
    assert result["healthz"]["code"] == 200, json.dumps(result["healthz"])[:3000] + details
    body = result["healthz"]["body"]
    assert body["timeseries"] == "on", json.dumps(body)[:3000]
    assert any(c.get("people") is not None for c in body["cameras"].values()), json.dumps(body)[
        :3000
    ]
    acl = result["acl"]
    for denied in (
        "web writes a frame",
        "gears flushes the database",
        "capture touches a foreign key",
        "anonymous writes",
    ):
        assert "NOPERM" in acl[denied], f"{denied}: {acl[denied]}"
    assert "NOPERM" not in acl["anonymous reads the people series"], acl
    assert acl["admin pings"] == "PONG", acl


# -- a Raspberry Pi: the camera's DMA heaps and the Pi 5's page size ---------------------------
def _apply_pi(provisioned: Provisioned, log: str, **extra: object) -> Apply:
    extra_vars = provisioned.workdir / f"{log}.json"
    extra_vars.write_text(json.dumps(extra))
    result = subprocess.run(
        [_tool("ansible-playbook"), "-i", str(provisioned.inventory), "-e", f"@{extra_vars}",
         str(HERE / "pi.yml")],
        cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=_ansible_env(),
    )  # fmt: skip
    (provisioned.workdir / f"{log}.log").write_text(result.stdout + result.stderr)
    return Apply(result.returncode, result.stdout + result.stderr)


def test_a_pi_gets_the_dma_heap_rule_and_a_pi5_the_4k_kernel(provisioned: Provisioned) -> None:
    """rva_camera installs Raspberry Pi OS's DMA-heap rules (rva/boards/raspberrypi.toml) for
    camera types that may use libcamera; rva_redis boots a Pi 5 whose kernel has 16 KiB pages
    on the 4 KiB kernel (config.txt), and refuses when told not to, naming the choices."""
    from rva import boards

    root = provisioned.root
    config_txt = root / "boot/firmware/config.txt"
    config_txt.parent.mkdir(parents=True, exist_ok=True)
    config_txt.write_text("# Raspberry Pi OS\ncamera_auto_detect=1\n\n[all]\narm_64bit=1\n")
    done = _apply_pi(provisioned, "apply-pi")
    assert done.returncode == 0, done.output[-6000:]
    rules = (root / "usr/lib/udev/rules.d/60-rva-dma-heap.rules").read_text()
    facts = boards.by_id(boards.load("raspberrypi"))
    for fid in ("dma-heap-group", "dma-heap-vidbuf-cached-pi5", "dma-heap-vidbuf-cached-cma"):
        assert facts[fid].fields["udev_rule"] in rules.splitlines(), fid
    text = config_txt.read_text()
    pi5 = facts["pi5-4k-kernel"].fields
    assert all(boards.config_txt_has(text, line, "pi5") for line in pi5["config_txt"]), text
    assert not boards.config_txt_has(text, "kernel=kernel8.img", "pi4"), text  # Pi 5 only
    assert text.startswith("# Raspberry Pi OS\ncamera_auto_detect=1\n")  # the rest kept
    again = _apply_pi(provisioned, "apply-pi-again")
    assert again.returncode == 0 and re.search(r"\bchanged=0\b", again.output), again.output[-3000:]
    refused = _apply_pi(provisioned, "apply-pi-refused", rva_redis_pi5_4k_kernel=False)
    assert refused.returncode != 0
    assert "This kernel uses 16 KiB pages; Redis from packages.redis.io needs 4 KiB ones" in (
        refused.output
    ), refused.output[-3000:]
