"""apt.sh: apt-get update waits while another apt holds the package lists lock, and fails on anything else."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from dropship.remote import commands

LOCKED = (
    "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 133 (apt-get)\nE: Unable to lock directory /var/lib/apt/lists/"
)

# Fails with $FAKE_APT_ERROR for the first $FAKE_APT_FAILURES calls, then succeeds; records each call.
FAKE_APT_GET = """#!/bin/sh
printf '%s\\n' "$*" >>"$FAKE_APT_LOG"
calls=$(wc -l <"$FAKE_APT_LOG")
if [ "$calls" -le "${FAKE_APT_FAILURES:-0}" ]; then printf '%s\\n' "$FAKE_APT_ERROR" >&2; exit 100; fi
echo "Reading package lists... Done"
"""


def run_update(tmp_path: Path, failures: int, error: str = LOCKED) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "apt-get").write_text(FAKE_APT_GET)
    (bin_dir / "apt-get").chmod(0o755)
    log = tmp_path / "apt.log"
    log.touch()
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_APT_LOG": str(log),
        "FAKE_APT_FAILURES": str(failures),
        "FAKE_APT_ERROR": error,
    }
    script = (commands.SCRIPTS / "apt.sh").read_text() + "\nset -eu\napt_update\n"
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=60)
    return result, log.read_text().splitlines()


def test_update_waits_for_the_lists_lock_then_succeeds(tmp_path: Path) -> None:
    result, calls = run_update(tmp_path, failures=2)
    assert result.returncode == 0, result.stderr
    assert len(calls) == 3
    assert result.stdout.splitlines()[0] == "waiting for apt's package lists lock (held by process 133 (apt-get))"
    assert result.stdout.count("waiting for") == 1
    assert "Reading package lists... Done" in result.stdout


def test_update_passes_the_lock_timeout_and_retries(tmp_path: Path) -> None:
    _, calls = run_update(tmp_path, failures=0)
    assert calls == ["-o DPkg::Lock::Timeout=900 -o Acquire::Retries=5 update -q"]


def test_another_failure_is_not_waited_on(tmp_path: Path) -> None:
    error = "E: Failed to fetch http://mirror.invalid/dists/trixie/InRelease  Temporary failure resolving 'mirror.invalid'"
    result, calls = run_update(tmp_path, failures=5, error=error)
    assert result.returncode != 0
    assert len(calls) == 1
    assert "Temporary failure resolving" in result.stderr
