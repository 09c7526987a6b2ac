"""install-docker.sh's daemon.json: dropship's keys set, the host's own kept, rewritten only when a value differs."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from dropship.remote import commands


def merge(daemon_json: Path, live_restore: str = "true", max_file: str = "3") -> subprocess.CompletedProcess[str]:
    script = (commands.SCRIPTS / "install-docker.sh").read_text()
    assert script.rstrip().endswith('main "$@"')
    functions = script.rstrip().removesuffix('main "$@"')
    call = f"{functions}\nmerge_daemon_json 10m {max_file} {live_restore}\n"
    env = {**os.environ, "DROPSHIP_DAEMON_JSON": str(daemon_json)}
    return subprocess.run(["bash", "-c", call], capture_output=True, text=True, env=env, timeout=60)


def test_a_fresh_host_gets_dropships_keys(tmp_path: Path) -> None:
    target = tmp_path / "docker" / "daemon.json"
    target.parent.mkdir()
    assert merge(target).stdout == "changed\n"
    assert json.loads(target.read_text()) == {
        "live-restore": True,
        "log-driver": "json-file",
        "log-opts": {"max-file": "3", "max-size": "10m"},
    }
    assert merge(target).stdout == "same\n"


def test_a_hosts_own_keys_are_kept_and_its_json_file_options_too(tmp_path: Path) -> None:
    target = tmp_path / "daemon.json"
    foreign = {
        "registry-mirrors": ["https://mirror.example.com"],
        "log-driver": "json-file",
        "log-opts": {"compress": "true", "max-size": "1g"},
    }
    target.write_text(json.dumps(foreign))
    assert merge(target).stdout == "changed\n"
    assert json.loads(target.read_text()) == {
        "registry-mirrors": ["https://mirror.example.com"],
        "live-restore": True,
        "log-driver": "json-file",
        "log-opts": {"compress": "true", "max-file": "3", "max-size": "10m"},
    }


def test_another_log_drivers_options_go_with_it(tmp_path: Path) -> None:
    target = tmp_path / "daemon.json"
    target.write_text(json.dumps({"log-driver": "journald", "log-opts": {"tag": "{{.Name}}"}, "debug": True}))
    merge(target)
    assert json.loads(target.read_text()) == {
        "debug": True,
        "live-restore": True,
        "log-driver": "json-file",
        "log-opts": {"max-file": "3", "max-size": "10m"},
    }


def test_a_swarm_host_goes_without_live_restore_even_when_its_own_file_had_it(tmp_path: Path) -> None:
    target = tmp_path / "daemon.json"
    target.write_text(json.dumps({"live-restore": True, "bip": "10.99.0.1/24"}))
    merge(target, live_restore="false")
    config = json.loads(target.read_text())
    assert "live-restore" not in config and config["bip"] == "10.99.0.1/24"


def test_the_same_values_spelled_differently_are_not_a_change(tmp_path: Path) -> None:
    target = tmp_path / "daemon.json"
    target.write_text('{"log-opts":{"max-size":"10m","max-file":"3"},"log-driver":"json-file","live-restore":true}')
    before = target.read_text()
    assert merge(target).stdout == "same\n"
    assert target.read_text() == before


@pytest.mark.parametrize("text", ["{not json", "[1, 2]"])
def test_a_broken_daemon_json_stops_with_dropships_message_and_is_left_alone(tmp_path: Path, text: str) -> None:
    target = tmp_path / "daemon.json"
    target.write_text(text)
    result = merge(target)
    assert result.returncode != 0
    assert f"dropship: {target} is not" in result.stderr and "fix it or remove it, then run pulumi up again" in result.stderr
    assert target.read_text() == text
