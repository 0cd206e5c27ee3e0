"""The Jetson path of the roles against rva/boards/jetson.toml: each fact with `checks` is
checked in the role's files. No Jetson here: what runs on a board is left to docs/jetson.md's
self-check."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from rva import boards
from rva.camera.gstreamer import jetson_csi_pipeline

REPO = Path(__file__).resolve().parents[2]
CAMERA = REPO / "ansible/roles/rva_camera"
FACTS = boards.load("jetson")
R36 = "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64\n"


def checked(kind: str) -> list[boards.Fact]:
    found = [f for f in FACTS if kind in f.kinds]
    assert found, f"no jetson fact checks {kind}"
    return found


def drop_in(text: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "{")):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def test_every_fact_has_its_source_and_known_checks() -> None:
    kinds = {"l4t_release", "service", "packages", "private_tmp", "device_allow"}
    kinds |= {"capture_group", "venv_link", "pipeline"}
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
