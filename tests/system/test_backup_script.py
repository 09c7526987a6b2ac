"""dropship/host/backup.sh with a real rclone (its local backend standing in for the bucket) and a recording
`docker` whose one container, found by compose's labels, plays Postgres: pg_dump prints a dump, pg_restore
keeps what it is given."""

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

FAKE_DOCKER = """#!/bin/sh
printf '%s\\n' "$*" >>"$FAKE_DOCKER_LOG"
case "$*" in
  "ps --quiet --filter label=com.docker.compose.project=shop --filter label=com.docker.compose.service=db")
    [ -n "${FAKE_NO_CONTAINER:-}" ] || echo c0ffee ;;
  ps*) ;;
  *"pg_dump"*) [ -z "${FAKE_DUMP_FAILS:-}" ] || { echo "pg_dump: connection refused" >&2; exit 1; }; printf 'PGDMP %s' "$FAKE_DUMP" ;;
  *"pg_restore"*) cat >"$FAKE_RESTORED" ;;
esac
"""


@dataclass
class Box:
    """An app directory, a bucket directory and the environment the backup service gets."""

    root: Path
    env: dict[str, str]

    def run(self, verb: str, *extra: str, **env: str) -> subprocess.CompletedProcess[str]:
        command = commands.backups(verb, app_dir=str(self.root / "app"), project="shop", service="db", name=extra[0] if extra else None)
        return subprocess.run(["bash", "-c", command], env={**self.env, **env}, capture_output=True, text=True, timeout=60)

    def docker_calls(self) -> list[str]:
        log = self.root / "docker.log"
        return log.read_text().splitlines() if log.exists() else []


@pytest.fixture(scope="module")
def rclone() -> str:
    return go_tool("rclone")


@pytest.fixture
def box(tmp_path: Path, rclone: str) -> Box:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    (bin_dir / "rclone").symlink_to(rclone)
    app = tmp_path / "app" / ".dropship"
    app.mkdir(parents=True)
    (app / "backup.sh").write_text((ROOT / "dropship" / "host" / "backup.sh").read_text())
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_DOCKER_LOG": str(tmp_path / "docker.log"),
        "FAKE_RESTORED": str(tmp_path / "restored"),
        "FAKE_DUMP": "first",
        "RCLONE_CONFIG_DROPSHIP_TYPE": "local",
        "DROPSHIP_BACKUP_BUCKET": str(tmp_path / "bucket"),
    }
    return Box(tmp_path, env)


@pytest.fixture
def failure_url() -> Iterator[tuple[str, list[str]]]:
    with PostReceiver() as receiver:
        yield receiver.url(), receiver.received


def test_a_backup_dumps_in_the_service_and_uploads_it_under_a_sortable_name(box: Box) -> None:
    result = box.run("backup")
    assert result.returncode == 0, result.stderr
    (dump,) = (box.root / "bucket" / "shop" / "db").iterdir()
    assert dump.read_text() == "PGDMP first"
    assert dump.name.endswith("Z.dump") and len(dump.name) == len("20261201T033000Z.dump")
    ps, call = box.docker_calls()
    assert ps.startswith("ps ")
    assert call.startswith("exec --interactive c0ffee ")
    assert " sh -c exec pg_dump --format=custom " in call
    assert box.run("list").stdout.split() == [dump.name]


def test_restore_latest_feeds_the_newest_backup_to_pg_restore(box: Box) -> None:
    bucket = box.root / "bucket" / "shop" / "db"
    bucket.mkdir(parents=True)
    (bucket / "20261130T030000Z.dump").write_text("PGDMP older")
    (bucket / "20261201T030000Z.dump").write_text("PGDMP newest")
    result = box.run("restore", "latest")
    assert result.returncode == 0, result.stderr
    assert (box.root / "restored").read_text() == "PGDMP newest"
    assert "exec pg_restore --clean --if-exists --no-owner --exit-on-error" in box.docker_calls()[-1]
    assert box.run("restore", "20261130T030000Z.dump").returncode == 0
    assert (box.root / "restored").read_text() == "PGDMP older"


def test_restore_without_a_backup_says_so(box: Box) -> None:
    result = box.run("restore")
    assert result.returncode == 1
    assert f"dropship backup: no backup of service db in dropship:{box.root / 'bucket'}/shop/db/" in result.stderr


def test_a_failed_dump_uploads_nothing_exits_non_zero_and_reports_the_failure(box: Box, failure_url: tuple[str, list[str]]) -> None:
    url, received = failure_url
    result = box.run("backup", FAKE_DUMP_FAILS="1", DROPSHIP_BACKUP_FAILURE_URL=url)
    assert result.returncode == 1
    assert "dropship backup: pg_dump of service db failed" in result.stderr
    assert not (box.root / "bucket").exists()
    (report,) = received
    assert report.startswith("backup of service db of shop failed on ")


def test_a_failed_upload_is_a_failed_backup(box: Box, failure_url: tuple[str, list[str]]) -> None:
    url, received = failure_url
    (box.root / "blocked").write_text("a file where the bucket's directory would be")
    result = box.run("backup", DROPSHIP_BACKUP_BUCKET=str(box.root / "blocked" / "bucket"), DROPSHIP_BACKUP_FAILURE_URL=url)
    assert result.returncode == 1
    assert "dropship backup: upload of " in result.stderr
    assert len(received) == 1


def test_a_service_without_a_running_container_is_a_failed_backup(box: Box) -> None:
    result = box.run("backup", FAKE_NO_CONTAINER="1")
    assert result.returncode == 1
    assert "dropship backup: service db of shop has no running container" in result.stderr
    assert not (box.root / "bucket").exists()
