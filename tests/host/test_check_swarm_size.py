"""check-swarm-size.sh with a stand-in docker: it refuses only a shrinking Swarm, and only without the setting."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from dropship.remote.commands import SCRIPTS

DOCKER = """#!/bin/sh
echo "$*" >>"$CALLS"
case "$1 $2" in
  "info "*) [ -n "$STATE" ] && echo "$STATE" || exit 1 ;;
  "node ls") i=0; while [ "$i" -lt "$MEMBERS" ]; do echo "node$i"; i=$((i + 1)); done ;;
  "node inspect") echo "$DATA_LABEL" ;;
esac
"""


def check(
    tmp_path: Path, servers: int, allow: bool, *, state: str = "active", members: int = 3, docker: bool = True, label: str = ""
) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("wc", "cat"):
        (bin_dir / tool).unlink(missing_ok=True)
        (bin_dir / tool).symlink_to(shutil.which(tool) or f"/usr/bin/{tool}")
    if docker:
        (bin_dir / "docker").write_text(DOCKER)
        (bin_dir / "docker").chmod(0o755)
    env = {"PATH": str(bin_dir), "STATE": state, "MEMBERS": str(members), "DATA_LABEL": label, "CALLS": str(tmp_path / "calls")}
    args = [str(servers), "true" if allow else "false", "droplet.removeNodes"]
    return subprocess.run(["/bin/bash", SCRIPTS / "check-swarm-size.sh", *args], capture_output=True, text=True, env=env, check=False)


def test_fewer_servers_than_the_swarm_has_is_refused_with_the_setting_to_set(tmp_path: Path) -> None:
    result = check(tmp_path, 1, allow=False)
    assert result.returncode == 1
    assert "the Swarm has 3 servers and the settings list 1; set droplet.removeNodes: true" in result.stderr


@pytest.mark.parametrize(
    ("servers", "allow", "state", "docker"),
    [
        (1, True, "active", True),
        (3, False, "active", True),
        (5, False, "active", True),
        (1, False, "inactive", True),
        (1, False, "", True),
        (1, False, "active", False),
    ],
)
def test_everything_else_passes(tmp_path: Path, servers: int, allow: bool, state: str, docker: bool) -> None:
    assert check(tmp_path, servers, allow, state=state, docker=docker).returncode == 0


def calls(tmp_path: Path) -> list[str]:
    return (tmp_path / "calls").read_text().splitlines() if (tmp_path / "calls").exists() else []


def test_back_to_one_server_it_leaves_dropships_swarm_first(tmp_path: Path) -> None:
    result = check(tmp_path, 1, allow=True, label="true")
    assert result.returncode == 0
    assert "back to one server: leaving the Swarm" in result.stdout
    assert calls(tmp_path)[-1] == "swarm leave --force"


@pytest.mark.parametrize(("servers", "label"), [(1, ""), (3, "true")])
def test_a_swarm_not_dropships_or_still_wanted_is_not_left(tmp_path: Path, servers: int, label: str) -> None:
    assert check(tmp_path, servers, allow=True, label=label).returncode == 0
    assert "swarm leave --force" not in calls(tmp_path)
