"""dropship.keys.kept_private_key under the real engine: made on the first `up`, the same on every later one,
a secret in the state, and no change shown (a Stash whose input, new on every run, is ignored)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from offline.tests.test_engine_e2e import engine_env
from tests.unit.program import ROOT

pytestmark = pytest.mark.system  # the real engine (built with Go on first use)

PROGRAM = textwrap.dedent(
    """
    import pulumi
    from dropship import keys

    private_key = keys.kept_private_key("host-key")
    pulumi.export("publicKey", pulumi.Output.unsecret(private_key.apply(keys.public_key)))
    pulumi.export("privateKey", private_key)
    """
)


def test_a_kept_key_is_made_once_kept_secret_and_changes_nothing(tmp_path: Path) -> None:
    env = engine_env()
    project = tmp_path / "project"
    project.mkdir()
    (project / "Pulumi.yaml").write_text(f"name: kept-keys\nruntime:\n  name: python\n  options:\n    virtualenv: {sys.prefix}\n")
    (project / "__main__.py").write_text(PROGRAM)
    (tmp_path / "state").mkdir()
    env.update(
        PULUMI_BACKEND_URL=f"file://{tmp_path / 'state'}",
        PULUMI_CONFIG_PASSPHRASE="system",
        PYTHONPATH=str(ROOT),
        NO_COLOR="1",
    )

    def pulumi(*args: str) -> str:
        result = subprocess.run(["pulumi", *args, "--non-interactive"], cwd=project, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"pulumi {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    pulumi("stack", "init", "system")
    pulumi("up", "--yes", "--skip-preview")
    first = json.loads(pulumi("stack", "output", "--json", "--show-secrets"))
    assert first["publicKey"].startswith("ssh-ed25519 AAAA")
    assert json.loads(pulumi("stack", "output", "--json"))["privateKey"] == "[secret]"

    pulumi("preview", "--expect-no-changes")
    pulumi("up", "--yes", "--skip-preview")
    assert json.loads(pulumi("stack", "output", "--json", "--show-secrets")) == first
    history = json.loads(pulumi("stack", "history", "--json"))
    assert history[0]["resourceChanges"] == {"same": 2}

    deployment = pulumi("stack", "export")
    assert "PRIVATE KEY" not in deployment and first["privateKey"] not in deployment
