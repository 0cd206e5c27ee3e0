"""What rva prints for a person to act on: help text meant to be copied into a shell, and messages
that send the reader to the config file, which name the file actually in use."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from rva.services.web.auth import read_users, verify_password
from tests.conftest import ROOT, rva


def test_web_passwd_help_shows_the_provisioning_example_as_shell_text(tmp_path: Path) -> None:
    """The example in `rva web passwd --help`, copied as printed, sets the password it is given
    (it once printed '%%s\\n', and a copy set the password '%s')."""
    shown = rva("web", "passwd", "--help", env={"COLUMNS": "60"})
    assert shown.returncode == 0, shown.stderr
    examples = [ln.strip() for ln in shown.stdout.splitlines() if "printf" in ln]
    assert examples == ["printf '%s\\n' \"$PW\" | rva web passwd USER"], shown.stdout

    users = tmp_path / "web-users"
    cfg = tmp_path / "rva.toml"
    cfg.write_text(f'[web]\nusers_file = "{users}"\n')
    password = "two words %s 100%"
    env = {
        **os.environ,
        "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}",
        "RVA_CONFIG": str(cfg),
        "PW": password,
    }
    done = subprocess.run(
        ["bash", "-c", examples[0].replace("USER", "alice")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    stored = read_users(users)["alice"]
    assert verify_password(password, stored)
    assert not verify_password("%s", stored)


def test_an_unreadable_mqtt_password_file_names_the_config_in_use(tmp_path: Path) -> None:
    """In the demo the config is $RVA_CONFIG (.cache/demo/rva.toml): a key's error names that
    file, or the one --config gives, never /etc/rva/rva.toml."""
    cfg = tmp_path / "demo" / "rva.toml"
    cfg.parent.mkdir()
    secret = tmp_path / "mqtt.secret"
    cfg.write_text(
        '[redis]\nurl = "redis://127.0.0.1:1/0"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nusername = "rva"\npassword_file = "{secret}"\n'
    )
    expected = f"rva: error: {cfg}: mqtt.password_file: cannot read {secret}: No such file"
    for done in (
        rva("mqtt", env={"RVA_CONFIG": str(cfg)}, timeout=60),
        rva("--config", str(cfg), "mqtt", timeout=60),
    ):
        assert done.returncode == 2, done.stdout + done.stderr
        assert expected in done.stderr, done.stderr
        assert "/etc/rva" not in done.stderr


def test_the_config_option_help_names_the_file_in_use(tmp_path: Path) -> None:
    cfg = tmp_path / "demo" / "rva.toml"
    shown = rva("status", "--help", env={"RVA_CONFIG": str(cfg), "COLUMNS": "200"})
    assert shown.returncode == 0, shown.stderr
    assert f"(default: $RVA_CONFIG, here {cfg})" in shown.stdout, shown.stdout


def test_rva_mqtt_without_an_mqtt_table_names_the_file_in_use(tmp_path: Path) -> None:
    cfg = tmp_path / "rva.toml"
    cfg.write_text('[redis]\nurl = "redis://127.0.0.1:1/0"\n')
    done = rva("--config", str(cfg), "mqtt")
    assert done.returncode == 0, done.stderr
    assert f"no [mqtt] table in {cfg}: nothing to publish" in done.stderr + done.stdout
