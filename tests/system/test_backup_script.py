"""dropship/host/backup.py with a real rclone (its local backend standing in for the bucket) and a `docker` that
finds no container: what it lists, and how it fails and reports. Dump, drill and restore against a real Postgres
are proven on the test hosts (tests/e2e/test_shop.py)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dev.harness.engine import go_tool
from dev.harness.receiver import PostReceiver
from dropship.remote import commands
from tests.unit.program import ROOT

pytestmark = pytest.mark.system  # rclone, built with Go on first use


@dataclass
class Box:
    """An app directory, a bucket directory and the environment the backup service gets."""

    root: Path
    env: dict[str, str]

    def run(self, verb: str, *extra: str, **env: str) -> subprocess.CompletedProcess[str]:
        command = commands.backups(verb, app_dir=str(self.root / "app"), project="shop", service="db", name=extra[0] if extra else None)
        return subprocess.run(["bash", "-c", command], env={**self.env, **env}, capture_output=True, text=True, timeout=60)

    @property
    def bucket(self) -> Path:
        return self.root / "bucket" / "shop" / "db"


@pytest.fixture(scope="module")
def rclone() -> str:
    return go_tool("rclone")


@pytest.fixture
def box(tmp_path: Path, rclone: str) -> Box:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text("#!/bin/sh\nexit 0\n")  # `docker ps` lists nothing
    (bin_dir / "docker").chmod(0o755)
    (bin_dir / "rclone").symlink_to(rclone)
    app = tmp_path / "app" / ".dropship"
    app.mkdir(parents=True)
    (app / commands.BACKUP_SCRIPT).write_text((ROOT / "dropship" / "host" / commands.BACKUP_SCRIPT).read_text())
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "RCLONE_CONFIG_DROPSHIP_TYPE": "local",
        "DROPSHIP_BACKUP_BUCKET": str(tmp_path / "bucket"),
    }
    return Box(tmp_path, env)


@pytest.fixture
def failure_url() -> Iterator[tuple[str, list[str]]]:
    with PostReceiver() as receiver:
        yield receiver.url(), receiver.received


def test_list_names_the_backups_oldest_first_and_nothing_else(box: Box) -> None:
    assert box.run("list").stdout == ""  # no bucket directory yet: no backups, no error
    box.bucket.mkdir(parents=True)
    (box.bucket / "before-restore").mkdir()
    (box.bucket / "before-restore" / "20261202T030000Z-before-20261201T030000Z.tar").write_text("safety")
    for name in ("20261201T030000Z.tar", "20261130T030000Z.dump", "notes.txt"):
        (box.bucket / name).write_text("x")
    result = box.run("list")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["20261130T030000Z.dump", "20261201T030000Z.tar"]


def test_restore_without_a_backup_says_so(box: Box) -> None:
    result = box.run("restore")
    assert result.returncode == 1
    assert f"dropship backup: no backup of service db in dropship:{box.root / 'bucket'}/shop/db/" in result.stderr


def test_a_service_without_a_running_container_fails_uploads_nothing_and_reports(box: Box, failure_url: tuple[str, list[str]]) -> None:
    url, received = failure_url
    result = box.run("backup", DROPSHIP_BACKUP_FAILURE_URL=url)
    assert result.returncode == 1
    assert "dropship backup: service db of shop has no running container on " in result.stderr
    assert not (box.root / "bucket").exists()
    (report,) = received
    assert report.startswith("backup of service db of shop failed on ")
