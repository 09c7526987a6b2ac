"""CI runs each test once: no retry plugin, no re-run option, no loop around the test command."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RETRY_PLUGINS = re.compile(r"^(pytest-rerunfailures|pytest-retry|flaky|pytest-flakefinder|pytest-replay)\b", re.I | re.M)


def test_no_retry_plugin_is_installed_or_configured() -> None:
    for requirements in ("requirements.txt", "requirements-dev.txt"):
        assert not RETRY_PLUGINS.search((ROOT / requirements).read_text()), requirements
    addopts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["addopts"]
    assert not re.search(r"--(reruns|retries|flake-finder)", addopts), addopts


def test_ci_runs_the_test_command_once_without_a_loop() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    commands = [line.strip() for line in script.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert commands.count("make test") == 1, commands
    assert not [line for line in commands if re.match(r"(for|while|until)\b", line) or "||" in line], commands
