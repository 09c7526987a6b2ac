"""Host-side scripts run on this machine, as the server runs them, with a stand-in `docker` on PATH."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from dropship.remote.commands import HOST_CODE, SCRIPTS, host_code_directory

FAKE_DOCKER = """#!/bin/sh
# Records every call; fails the calls whose arguments contain $FAKE_DOCKER_FAIL; the calls with
# $FAKE_DOCKER_HANG never answer (a child of its own holds the pipes, as `docker compose`, a plugin, does).
printf '%s\\n' "$*" >>"$FAKE_DOCKER_LOG"
case " $* " in *" ${FAKE_DOCKER_FAIL:-<none>} "*) echo "docker: $FAKE_DOCKER_FAIL failed" >&2; exit 1 ;; esac
case " $* " in *" ${FAKE_DOCKER_HANG:-<none>} "*) sleep 300; exit 0 ;; esac
exit 0
"""


@dataclass
class Host:
    """An app directory as `pulumi up` leaves it in incoming/, and a PATH whose docker is a recorder."""

    app_dir: Path
    bin_dir: Path
    docker_log: Path

    def run(self, command: str, *, stdin: str = "", fail: str | None = None, hang: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PATH": f"{self.bin_dir}:{os.environ['PATH']}", "FAKE_DOCKER_LOG": str(self.docker_log)}
        if fail is not None:
            env["FAKE_DOCKER_FAIL"] = fail
        if hang is not None:
            env["FAKE_DOCKER_HANG"] = hang
        return subprocess.run(["sh", "-c", command], input=stdin, capture_output=True, text=True, env=env, timeout=60)

    def docker_calls(self) -> list[str]:
        return self.docker_log.read_text().splitlines() if self.docker_log.exists() else []


@pytest.fixture
def host(tmp_path: Path) -> Host:
    app_dir = tmp_path / "srv" / "app"
    (app_dir / "incoming").mkdir(parents=True)
    (app_dir / "incoming" / "compose.yaml").write_text("services:\n  web:\n    image: web:${IMAGE_TAG}\n")
    (app_dir / "incoming" / ".env").write_text("SECRET='x'\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(FAKE_DOCKER)
    docker.chmod(0o755)
    # The release's code where `pulumi up` uploads it.
    code = Path(host_code_directory(str(app_dir)))
    code.mkdir(parents=True)
    for module in HOST_CODE:
        shutil.copy2(SCRIPTS / module, code / module)
    return Host(app_dir=app_dir, bin_dir=bin_dir, docker_log=tmp_path / "docker.log")


# The release's modules import each other by name, as python3 runs release.py on the server.
sys.path.insert(0, str(SCRIPTS))
