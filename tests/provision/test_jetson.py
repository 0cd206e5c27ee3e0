"""The Jetson path of the roles against rva/boards/jetson.toml: each fact with `checks` is
checked in the role's files (fast), and the roles are applied into a Debian root that carries
the parts of JetPack 6 they look at (provision: the capture drop-in, nvargus-daemon enabled, the
L4T release refused when it is not R36, the OS's PyGObject alone in the venv), and `rva doctor
--root` runs the facts' checks on what they left. No Jetson here: NVIDIA's packages are not
installed, so what runs on a board is left to docs/jetson.md's self-check (`sudo rva doctor`)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from rva import boards
from rva.camera.gstreamer import jetson_csi_pipeline
from tests.conftest import rva
from tests.provision.test_provision import (
    _ansible_env,
    _chroot,
    _tool,
    _trust_host_certificates,
    base_rootfs,  # noqa: F401 - a fixture
    can_build_roots,  # noqa: F401 - a fixture
)

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CAMERA = REPO / "ansible/roles/rva_camera"
FACTS = boards.load("jetson")
R36 = "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64\n"


def checked(kind: str) -> list[boards.Fact]:
    found = [f for f in FACTS if kind in f.kinds]
    assert found, f"no jetson fact checks {kind}"
    return found


drop_in = boards.unit_settings  # how rva doctor reads a unit's settings


def test_every_fact_has_its_source_and_known_checks() -> None:
    kinds = {"l4t_release", "service", "packages", "private_tmp", "device_allow"}
    kinds |= {"capture_group", "venv_link", "pipeline"}
    kinds |= {"gpu_device_allow", "gpu_packages", "gpu_venv_link"}
    for fact in FACTS:
        assert re.fullmatch(r"[0-9a-f]{40}", fact.commit) and fact.repo and fact.path, fact.id
        assert fact.quote.strip() and set(fact.kinds) <= kinds, fact.id
    assert {k for f in FACTS for k in f.kinds} == kinds


def test_the_role_installs_the_packages_the_facts_name() -> None:
    ubuntu = yaml.safe_load((CAMERA / "vars/Ubuntu.yml").read_text())["rva_camera_packages"]
    for fact in checked("packages"):
        assert set(fact.fields["packages"]) <= set(ubuntu["jetson"]), fact.id


def test_the_drop_in_gives_capture_what_the_facts_say() -> None:
    template = (CAMERA / "templates/jetson.conf.j2").read_text()
    settings = drop_in(template)
    (allow,) = checked("device_allow")
    assert sorted(settings["DeviceAllow"]) == sorted(allow.fields["device_allow"])
    assert all(f.fields["socket"].startswith("/tmp/") for f in checked("private_tmp"))
    assert settings["PrivateTmp"] == ["no"]
    unit = (REPO / "rootfs/usr/lib/systemd/system/rva-capture.service").read_text()
    groups = set(
        " ".join(drop_in(unit)["SupplementaryGroups"] + settings["SupplementaryGroups"]).split()
    )
    for fact in checked("capture_group"):
        assert set(fact.fields["groups"]) <= groups, fact.id


def test_the_role_enables_the_argus_daemon_and_refuses_other_releases() -> None:
    tasks = yaml.safe_load((CAMERA / "tasks/configure.yml").read_text())
    enabled = [
        t["ansible.builtin.systemd_service"]["name"]
        for t in tasks
        if "ansible.builtin.systemd_service" in t
    ]
    for fact in checked("service"):
        assert fact.fields["service"] in enabled, fact.id
    (release,) = checked("l4t_release")
    preflight = (CAMERA / "tasks/preflight.yml").read_text()
    assert f"src: {release.fields['release_file']}" in preflight
    assert boards.l4t_release(R36) == (36, 4, 3)
    assert R36.startswith(release.fields["release_prefix"])
    defaults = yaml.safe_load((CAMERA / "defaults/main.yml").read_text())
    assert defaults["rva_camera_jetson_l4t_releases"] == [36]


def test_the_venv_link_is_the_facts_and_the_csi_pipeline_uses_its_elements() -> None:
    (link,) = checked("venv_link")
    gi = yaml.safe_load((REPO / "ansible/roles/rva_app/tasks/gi.yml").read_text())
    sources = [t["ansible.builtin.file"]["src"] for t in gi if "ansible.builtin.file" in t]
    assert sources == [link.fields["venv_link"]]
    assert link.fields["venv_link"] in (REPO / "Makefile").read_text()
    pipeline = jetson_csi_pipeline(1, 1280, 720, 30).replace(" ", "")
    for fact in checked("pipeline"):
        assert pipeline.startswith("nvarguscamerasrcsensor-id=1!")
        for part in fact.fields["elements"] + fact.fields["caps"]:
            assert part.replace(" ", "") in pipeline, part


APP = REPO / "ansible/roles/rva_app"


def test_the_gears_gpu_drop_in_opens_exactly_the_nodes_the_facts_name() -> None:
    """rva_app's lists per GPU are the facts' lists, and its template writes them all; the
    rva-gears unit it amends keeps its sandbox otherwise."""
    role_vars = yaml.safe_load((APP / "vars/main.yml").read_text())
    gpus = checked("gpu_device_allow")
    assert {f.fields["gpu"] for f in gpus} == set(role_vars["rva_app_gpu_device_allow"])
    for fact in gpus:
        kind = fact.fields["gpu"]
        assert role_vars["rva_app_gpu_device_allow"][kind] == fact.fields["device_allow"], kind
        assert role_vars["rva_app_gpu_groups"][kind] == fact.fields["groups"], kind
        # Device nodes only; never a whole class such as char-* of another driver.
        assert all(re.fullmatch(r"/dev/[\w/.-]+ rw", n) for n in fact.fields["device_allow"])
    jetson = boards.by_id(FACTS)["gpu-device-nodes"].fields["device_allow"]
    assert not [n for n in jetson if re.search(r"dbg|prof|nvdla|pva|nvsciipc|fb|dri", n)]
    template = (APP / "templates/gpu.conf.j2").read_text()
    assert "PrivateDevices=no" in template and "DevicePolicy=closed" in template
    assert "DeviceAllow={{ node }}" in template
    unit = drop_in((REPO / "rootfs/usr/lib/systemd/system/rva-gears.service").read_text())
    assert unit["PrivateDevices"] == ["yes"] and unit["DevicePolicy"] == ["closed"]


def test_the_gpu_tasks_install_and_link_what_the_facts_say() -> None:
    defaults = (APP / "defaults/main.yml").read_text()
    role_vars = yaml.safe_load((APP / "vars/main.yml").read_text())
    for fact in checked("gpu_packages"):
        for package in fact.fields["packages"]:
            assert f"['{package}'] if rva_app_gpu == 'jetson'" in defaults, fact.id
    (link,) = checked("gpu_venv_link")
    assert role_vars["rva_app_gpu_tensorrt_python"] == link.fields["venv_link"]
    assert yaml.safe_load(defaults)["rva_app_gpu"] == "none"
    # The Jetson wheel of onnxruntime-gpu is the user's to name: nothing by default.
    assert yaml.safe_load(defaults)["rva_app_gpu_onnxruntime_url"] == ""
    assert "jetson-ai-lab.io" in boards.by_id(FACTS)["onnxruntime-gpu-index"].quote


# -- applied into a root ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def jetson_root(base_rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:  # noqa: F811
    """The Debian root with python3-gi and Gst from Debian, a venv, and the two JetPack files
    the roles read: the release line and nvargus-daemon's unit (as meta-tegra ships it); for
    `rva doctor`, dpkg's record of NVIDIA's packages and rva-capture's unit (rva_app's)."""
    workdir = tmp_path_factory.mktemp("jetson")
    root = workdir / "root"
    root.mkdir()
    subprocess.run(
        ["tar", "--numeric-owner", "-xpf", str(base_rootfs), "-C", str(root)], check=True
    )
    shutil.copyfile("/etc/resolv.conf", root / "etc/resolv.conf")
    _trust_host_certificates(root)
    _chroot(root, "apt-get", "update", "-qq")
    packages = ["python3-gi", "gir1.2-gstreamer-1.0", "gstreamer1.0-plugins-base", "python3-venv"]
    _chroot(root, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages)
    _chroot(root, "python3", "-m", "venv", "--without-pip", "/opt/rva/venv")
    (root / "etc/nv_tegra_release").write_text(R36)
    unit = boards.by_id(FACTS)["nvargus-daemon-unit"].quote
    (root / "usr/lib/systemd/system/nvargus-daemon.service").write_text(
        "[Unit]\nDescription=NVIDIA Argus daemon\n\n" + unit + "\n"
    )
    # JetPack's TensorRT bindings (python3-libnvinfer comes from NVIDIA's repository) and the
    # rva user that rva_app's install makes.
    (root / "usr/lib/python3.10/dist-packages/tensorrt").mkdir(parents=True)
    _chroot(root, "useradd", "--system", "--no-create-home", "rva")
    # NVIDIA's packages as dpkg records them once installed from NVIDIA's repository (their
    # files are not here), and the capture unit rva_app's install puts in place.
    status = root / "var/lib/dpkg/status"
    records = [
        f"Package: {package}\nStatus: install ok installed\nPriority: optional\nSection: libs\n"
        "Maintainer: NVIDIA Corporation\nArchitecture: all\nVersion: 36.4.3-20250107174145\n"
        f"Description: {package} (recorded by the test)\n"
        for package in ("nvidia-l4t-camera", "nvidia-l4t-gstreamer", "python3-libnvinfer")
    ]
    status.write_text("\n".join([status.read_text().rstrip("\n") + "\n", *records]))
    shutil.copyfile(
        REPO / "rootfs/usr/lib/systemd/system/rva-capture.service",
        root / "usr/lib/systemd/system/rva-capture.service",
    )
    (workdir / "inventory.ini").write_text(
        "[rva]\n"
        f"rva-jetson ansible_host={root} ansible_connection=community.general.chroot"
        " ansible_become=false ansible_python_interpreter=/usr/bin/python3\n"
    )
    try:
        yield root
    finally:
        if not os.environ.get("RVA_KEEP_ROOT"):
            shutil.rmtree(workdir, ignore_errors=True)


def _apply(root: Path, **extra: object) -> subprocess.CompletedProcess[str]:
    extra_vars = root.parent / "vars.json"
    extra_vars.write_text(json.dumps(extra))
    return subprocess.run(
        [_tool("ansible-playbook"), "-i", str(root.parent / "inventory.ini"), "-e",
         f"@{extra_vars}", str(HERE / "jetson.yml")],
        cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=_ansible_env(),
    )  # fmt: skip


@pytest.mark.provision
def test_applied_to_a_jetson_root_the_roles_do_what_the_facts_say(jetson_root: Path) -> None:
    root = jetson_root
    done = _apply(root)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    settings = drop_in((root / "etc/systemd/system/rva-capture.service.d/jetson.conf").read_text())
    (allow,) = checked("device_allow")
    assert sorted(settings["DeviceAllow"]) == sorted(allow.fields["device_allow"])
    assert settings["PrivateTmp"] == ["no"] and settings["SupplementaryGroups"] == ["render"]
    wants = root / "etc/systemd/system/multi-user.target.wants/nvargus-daemon.service"
    assert wants.is_symlink()
    probe = (
        "import sys, gi; gi.require_version('Gst', '1.0'); from gi.repository import Gst; "
        "Gst.init(None); print(Gst.ElementFactory.find('videotestsrc') is not None, "
        "any('dist-packages' in p for p in sys.path))"
    )
    seen = _chroot(root, "/opt/rva/venv/bin/python", "-c", probe, check=False)
    assert seen.stdout.split() == ["True", "False"], seen.stderr  # gi alone, not the OS's rest
    gpu = drop_in((root / "etc/systemd/system/rva-gears.service.d/gpu.conf").read_text())
    nodes = boards.by_id(FACTS)["gpu-device-nodes"].fields
    assert gpu["DeviceAllow"] == nodes["device_allow"]
    assert gpu["PrivateDevices"] == ["no"] and gpu["DevicePolicy"] == ["closed"]
    assert gpu["SupplementaryGroups"] == nodes["groups"]
    assert gpu["ReadWritePaths"] == ["-/var/lib/rva/models/engines"]
    assert (root / "var/lib/rva/models/engines").is_dir()
    venv_site = next((root / "opt/rva/venv/lib").glob("python3*/site-packages"))
    assert os.readlink(venv_site / "tensorrt") == checked("gpu_venv_link")[0].fields["venv_link"]
    # rva doctor's checks of each fact on what the roles left: every row ok but the live one.
    doctor = rva("doctor", "--root", str(root), "--json", timeout=120)
    report = json.loads(doctor.stdout)
    states = {r["name"]: r["state"] for r in report["rows"]}
    assert doctor.returncode == 0 and report["device"]["variant"] == "jetpack6", doctor.stdout
    assert states.pop("csi-pipeline") == "skip" and states.pop("pc-gpu-device-nodes") == "skip"
    assert set(states.values()) == {"ok"}, states
    again = _apply(root)
    assert again.returncode == 0 and re.search(r"\bchanged=0\b", again.stdout), again.stdout[-3000:]
    # Undone by hand (the next apply puts them back): doctor names each with its fix.
    wants.unlink()
    conf = root / "etc/systemd/system/rva-capture.service.d/jetson.conf"
    conf.write_text(conf.read_text().replace("DeviceAllow=/dev/nvmap rw\n", ""))
    doctor = rva("doctor", "--root", str(root), timeout=120)
    assert doctor.returncode == 1 and "\n2 failed of " in doctor.stdout, doctor.stdout
    assert "FAIL  nvargus-daemon-unit " in doctor.stdout and "FAIL  container-device-nodes " in (
        doctor.stdout
    )
    assert "fix: systemctl enable --now nvargus-daemon.service" in doctor.stdout
    assert "missing: /dev/nvmap rw" in doctor.stdout
    pc = _apply(root, rva_app_gpu="pc")
    assert pc.returncode == 0, pc.stdout[-3000:]
    gpu = drop_in((root / "etc/systemd/system/rva-gears.service.d/gpu.conf").read_text())
    pc_nodes = boards.by_id(FACTS)["pc-gpu-device-nodes"].fields
    assert gpu["DeviceAllow"] == pc_nodes["device_allow"] and "SupplementaryGroups" not in gpu
    none = _apply(root, rva_app_gpu="none")
    assert none.returncode == 0, none.stdout[-3000:]
    assert not (root / "etc/systemd/system/rva-gears.service.d/gpu.conf").exists()
    (root / "etc/nv_tegra_release").write_text(R36.replace("R36", "R35"))
    refused = _apply(root)
    assert refused.returncode != 0
    assert "rva_camera_type=jetson needs JetPack 6 (L4T R36): /etc/nv_tegra_release says # R35" in (
        refused.stdout
    ), refused.stdout[-3000:]
