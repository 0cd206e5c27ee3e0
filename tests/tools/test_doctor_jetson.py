"""rva doctor on an NVIDIA Jetson: rva/boards/jetson.toml's facts as found in a directory laid out
as a provisioned JetPack 6 system's files (`--root`), written here from the roles' own templates
and the facts' quotes; each kind of check is then broken once and must fail with its fix. The
root the roles really provision is checked by tests/provision/test_jetson.py."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import jinja2
import pytest
import yaml

from rva import boards
from rva.boards import Fact
from rva.tools import doctor, doctor_jetson
from tests.conftest import rva

REPO = Path(__file__).resolve().parents[2]
FACTS = boards.by_id(boards.load("jetson"))
MODEL = "NVIDIA Jetson Orin Nano Developer Kit"
# As JetPack writes it (jetson.toml, l4t-release-file).
R36 = "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64\n"
PACKAGES = ["nvidia-l4t-camera", "nvidia-l4t-gstreamer", "python3-gi", "python3-libnvinfer"]
WANTS = "etc/systemd/system/multi-user.target.wants/nvargus-daemon.service"
GPU_CONF = "etc/systemd/system/rva-gears.service.d/gpu.conf"
CAPTURE_CONF = "etc/systemd/system/rva-capture.service.d/jetson.conf"
STATUS = "var/lib/dpkg/status"
SITE = "opt/rva/venv/lib/python3.10/site-packages"


def _write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _template(role: str, name: str, **values: object) -> str:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["comment"] = lambda text: f"# {text}"
    source = (REPO / f"ansible/roles/{role}/templates/{name}").read_text()
    return env.from_string(source).render(ansible_managed="Ansible managed", **values)


def status_stanza(package: str) -> str:
    return f"Package: {package}\nStatus: install ok installed\nArchitecture: arm64\n"


def jetson_root(root: Path) -> Path:
    """What ansible/site.yml leaves on a JetPack 6 board with rva_camera_type=jetson and
    rva_app_gpu=jetson: NVIDIA's files as the facts quote them, the roles' drop-ins from their
    templates, the venv's links."""
    _write(root, "proc/device-tree/model", MODEL + "\0")
    _write(root, "etc/nv_tegra_release", R36)
    _write(root, STATUS, "".join(status_stanza(p) + "\n" for p in PACKAGES))
    unit = FACTS["nvargus-daemon-unit"].quote
    _write(root, "usr/lib/systemd/system/nvargus-daemon.service", f"[Unit]\n\n{unit}\n")
    (root / WANTS).parent.mkdir(parents=True)
    (root / WANTS).symlink_to("/usr/lib/systemd/system/nvargus-daemon.service")
    capture = (REPO / "rootfs/usr/lib/systemd/system/rva-capture.service").read_text()
    _write(root, "usr/lib/systemd/system/rva-capture.service", capture)
    _write(root, CAPTURE_CONF, _template("rva_camera", "jetson.conf.j2"))
    role_vars = yaml.safe_load((REPO / "ansible/roles/rva_app/vars/main.yml").read_text())
    gpu = _template("rva_app", "gpu.conf.j2", rva_app_gpu="jetson", **role_vars)
    _write(root, GPU_CONF, gpu)
    for fact in ("gstreamer-python", "tensorrt-python"):
        target = FACTS[fact].fields["venv_link"]
        (root / target.lstrip("/")).mkdir(parents=True)
        (root / SITE).mkdir(parents=True, exist_ok=True)
        (root / SITE / Path(target).name).symlink_to(target)
    return root


def rows(root: Path) -> dict[str, doctor.Row]:
    return {r.name: r for r in doctor.fact_rows(doctor.inspect(root))}


def _drop_line(root: Path, relative: str, line: str) -> None:
    path = root / relative
    text = path.read_text()
    assert f"{line}\n" in text, (relative, line)
    path.write_text(text.replace(f"{line}\n", ""))


def test_a_provisioned_jetson_passes_every_row_but_the_live_one(tmp_path: Path) -> None:
    done = rva("doctor", "--root", str(jetson_root(tmp_path)), "--json", timeout=120)
    report = json.loads(done.stdout)
    states = {r["name"]: r["state"] for r in report["rows"]}
    assert done.returncode == 0 and report["failed"] == 0, done.stdout + done.stderr
    assert report["device"]["board"] == "jetson" and report["device"]["variant"] == "jetpack6"
    kinds = {f"{f.id} ({k})" if len(f.kinds) > 1 else f.id for f in FACTS.values() for k in f.kinds}
    assert set(states) == kinds  # one row per check of each fact
    assert states.pop("csi-pipeline") == "skip"  # Gst's registry: the running system's alone
    assert states.pop("pc-gpu-device-nodes") == "skip"  # a PC's GPU
    assert set(states.values()) == {"ok"}, states


def _no_release(root: Path) -> None:
    (root / "etc/nv_tegra_release").write_text(R36.replace("R36", "R35").replace("4.3", "3.1"))


# One way to break each kind of check, as a board could be found: the row, what it says, its fix.
BROKEN: dict[str, tuple[Callable[[Path], None], str, str, str]] = {
    "l4t_release": (_no_release, "l4t-release-file", "L4T R35.3.1, not JetPack 6", "flash"),
    "service": (
        lambda root: (root / WANTS).unlink(),
        "nvargus-daemon-unit",
        "nvargus-daemon.service not enabled",
        "systemctl enable --now nvargus-daemon.service",
    ),
    "packages": (
        lambda root: _drop_line(root, STATUS, status_stanza("nvidia-l4t-camera")),
        "nvargus-daemon-package",
        "missing: nvidia-l4t-camera",
        "apt install nvidia-l4t-camera",
    ),
    "private_tmp": (
        lambda root: _drop_line(root, CAPTURE_CONF, "PrivateTmp=no"),
        "argus-socket",
        "rva-capture's own /tmp hides /tmp/argus_socket",
        "rva_camera_type=jetson",
    ),
    "device_allow": (
        lambda root: _drop_line(root, CAPTURE_CONF, "DeviceAllow=/dev/nvsciipc rw"),
        "container-device-nodes",
        "missing: /dev/nvsciipc rw",
        "rva_camera_type=jetson",
    ),
    "capture_group": (
        lambda root: _drop_line(root, CAPTURE_CONF, "SupplementaryGroups=render"),
        "render-group",
        "rva-capture lacks group render",
        "ansible/site.yml",
    ),
    "venv_link": (
        lambda root: (root / SITE / "gi").unlink(),
        "gstreamer-python (venv_link)",
        "/opt/rva/venv's gi is not a link to /usr/lib/python3/dist-packages/gi",
        "ansible/site.yml",
    ),
    "gpu_device_allow": (
        lambda root: _drop_line(root, GPU_CONF, "DeviceAllow=/dev/nvgpu/igpu0/ctrl rw"),
        "gpu-device-nodes",
        "missing: /dev/nvgpu/igpu0/ctrl rw",
        "rva_app_gpu=jetson",
    ),
    "gpu_packages": (
        lambda root: _drop_line(root, STATUS, status_stanza("python3-libnvinfer")),
        "tensorrt-python (gpu_packages)",
        "missing: python3-libnvinfer",
        "apt install python3-libnvinfer",
    ),
    "gpu_venv_link": (
        lambda root: (root / "usr/lib/python3.10/dist-packages/tensorrt").rmdir(),
        "tensorrt-python (gpu_venv_link)",
        "/usr/lib/python3.10/dist-packages/tensorrt is missing",
        "apt install python3-libnvinfer",
    ),
}


def test_every_kind_but_the_live_one_is_broken_once_below() -> None:
    assert set(BROKEN) | {"pipeline"} == set(doctor_jetson.CHECKS)


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_each_check_fails_with_its_fix(kind: str, tmp_path: Path) -> None:
    breaks, name, found, fix = BROKEN[kind]
    root = jetson_root(tmp_path)
    breaks(root)
    failed = {n: r for n, r in rows(root).items() if r.state == "FAIL"}
    assert list(failed) == [name], failed
    assert found in failed[name].found and fix in failed[name].fix, failed[name]


def test_a_failed_row_prints_its_fix_and_source_and_exits_1(tmp_path: Path) -> None:
    root = jetson_root(tmp_path)
    _drop_line(root, CAPTURE_CONF, "DeviceAllow=/dev/nvmap rw")
    done = rva("doctor", "--root", str(root), timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stdout.startswith(f"RVA doctor: {MODEL} (jetson, jetpack6)"), done.stdout
    assert "FAIL  container-device-nodes " in done.stdout
    assert "missing: /dev/nvmap rw" in done.stdout
    assert "fix: ansible-playbook ansible/site.yml -e rva_camera_type=jetson" in done.stdout
    assert "from OE4T/meta-tegra: recipes-bsp/tegra-binaries/tegra-configs/devices.csv @" in (
        done.stdout
    )
    assert "\n1 failed of " in done.stdout


def test_one_device_allow_line_more_than_the_fact_fails(tmp_path: Path) -> None:
    root = jetson_root(tmp_path)
    conf = root / GPU_CONF
    conf.write_text(conf.read_text() + "DeviceAllow=/dev/nvhost-dbg-gpu rw\n")
    row = rows(root)["gpu-device-nodes"]
    assert row.state == "FAIL" and "more: /dev/nvhost-dbg-gpu rw" in row.found, row


def test_without_the_gpu_drop_in_the_gpu_rows_are_skipped_saying_why(tmp_path: Path) -> None:
    root = jetson_root(tmp_path)
    (root / GPU_CONF).unlink()
    found = rows(root)
    gpu = [r for n, r in found.items() if FACTS[n.split(" ")[0]].kinds[-1].startswith("gpu_")]
    assert len(gpu) == 4 and all(r.state == "skip" for r in gpu), gpu
    assert "rva_app_gpu=none" in found["gpu-device-nodes"].found
    assert not [r for r in found.values() if r.state == "FAIL"]


def test_a_board_without_jetpack_6_is_still_a_jetson_and_fails_its_release(tmp_path: Path) -> None:
    root = jetson_root(tmp_path)
    (root / "etc/nv_tegra_release").unlink()
    dev = doctor.inspect(root)
    assert (dev.board, dev.variant) == ("jetson", "no L4T")
    found = rows(root)
    assert found["l4t-release-file"].state == "FAIL"
    assert "no /etc/nv_tegra_release" in found["l4t-release-file"].found
    # The other facts are JetPack 6's: not checked on another release.
    assert {r.state for n, r in found.items() if n != "l4t-release-file"} == {"skip"}
    # The release file alone (no device tree model, a container) is a Jetson too.
    _no_release(root)
    (root / "proc/device-tree/model").unlink()
    assert (doctor.inspect(root).board, doctor.inspect(root).variant) == ("jetson", "L4T R35")


def test_the_pipeline_elements_are_looked_up_in_the_running_gstreamer(tmp_path: Path) -> None:
    """Live only: the real registry here has videotestsrc, not NVIDIA's elements."""
    fact = FACTS["csi-pipeline"]
    live = doctor.Device(tmp_path, "jetson", MODEL, "jetpack6", 4096, live=True)
    assert doctor_jetson.CHECKS["pipeline"](doctor.inspect(tmp_path), fact).state == "skip"
    row = doctor_jetson.CHECKS["pipeline"](live, fact)
    assert row.state == "FAIL" and row.found == "no GStreamer element nvarguscamerasrc, nvvidconv"
    assert "apt install nvidia-l4t-gstreamer" in row.fix
    here = Fact(**{**fact.__dict__, "fields": {**fact.fields, "elements": ["videotestsrc"]}})
    assert doctor_jetson.CHECKS["pipeline"](live, here).state == "ok"


def test_live_the_venv_must_import_what_it_links(tmp_path: Path) -> None:
    """On the running system the venv's Python is asked too. A real venv here, linked as
    rva_app links it: the host's PyGObject is imported; the TensorRT link points at a folder
    the host lacks (its copy in the root is empty), and fails."""
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", tmp_path / "opt/rva/venv"], check=True
    )
    (site,) = (tmp_path / "opt/rva/venv/lib").glob("python3*/site-packages")
    for fact in ("gstreamer-python", "tensorrt-python"):
        target = FACTS[fact].fields["venv_link"]
        (tmp_path / target.lstrip("/")).mkdir(parents=True)
        (site / Path(target).name).symlink_to(target)
    _write(tmp_path, GPU_CONF, "[Service]\n")  # the GPU rows apply
    live = doctor.Device(tmp_path, "jetson", MODEL, "jetpack6", 4096, live=True)
    row = doctor_jetson.CHECKS["venv_link"](live, FACTS["gstreamer-python"])
    assert row.state == "ok" and row.found.startswith("the venv imports gi from "), row
    row = doctor_jetson.CHECKS["gpu_venv_link"](live, FACTS["tensorrt-python"])
    assert row.state == "FAIL" and "the venv cannot import tensorrt" in row.found, row


def test_drop_ins_are_read_as_systemd_reads_them(tmp_path: Path) -> None:
    """/etc's drop-in hides /usr/lib's of the same name; drop-ins of other names add up."""
    root = jetson_root(tmp_path)
    vendor = "usr/lib/systemd/system/rva-capture.service.d"
    _write(root, f"{vendor}/jetson.conf", (root / CAPTURE_CONF).read_text())
    _drop_line(root, CAPTURE_CONF, "SupplementaryGroups=render")
    assert rows(root)["render-group"].state == "FAIL"
    _write(root, f"{vendor}/render.conf", "[Service]\nSupplementaryGroups=render\n")
    assert rows(root)["render-group"].state == "ok"
