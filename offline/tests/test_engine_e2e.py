"""The plugin under the real Pulumi engine: a throwaway project using the unchanged SDK.

Runs ``pulumi up`` / ``up`` again / ``up`` with a changed trigger / ``destroy`` on a
temporary project (outside the repo, local file backend) whose program uses
``pulumi_command.remote.Command`` (secret stdin, secret private key) and
``CopyToRemote`` against the test sshd.  The engine comes from offline/pulumi-env.sh
(which builds it on first use and installs this plugin into ``$PULUMI_HOME``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .conftest import REPO, SSHServer

pytestmark = pytest.mark.system  # the real engine (built with Go on first use) and the throwaway sshd; no Docker

PROGRAM = textwrap.dedent(
    """
    import pulumi
    from pulumi_command import remote

    config = pulumi.Config()
    work = config.require("work")
    connection = remote.ConnectionArgs(
        host="127.0.0.1",
        port=config.require_int("port"),
        user=config.require("user"),
        private_key=config.require_secret("privateKey"),
    )
    cmd = remote.Command(
        "cmd",
        connection=connection,
        create=f'read -r line; echo "create $line" >> {work}/events; echo "created with $line"',
        delete=f'echo "delete $PULUMI_COMMAND_STDOUT" >> {work}/events',
        stdin=pulumi.Output.secret("the-secret-stdin\\n"),
        triggers=[config.get("trigger") or "1"],
    )
    copy = remote.CopyToRemote(
        "copy",
        connection=connection,
        source=pulumi.StringAsset("copied text\\n"),
        remote_path=f"{work}/deep/er/copied.txt",
    )
    pulumi.export("stdout", cmd.stdout)
    pulumi.export("stdin", cmd.stdin)
    """
)


def engine_env() -> dict[str, str]:
    script = f'. "{REPO}/offline/pulumi-env.sh" >&2 && env -0'
    result = subprocess.run(["bash", "-c", script], capture_output=True, cwd=REPO)
    if result.returncode != 0:
        pytest.fail(f"offline/pulumi-env.sh failed:\n{result.stderr.decode(errors='replace')[-3000:]}")
    env = dict(item.split("=", 1) for item in result.stdout.decode().split("\0") if "=" in item)
    plugin = Path(env["PULUMI_HOME"]) / "plugins" / "resource-command-v1.2.1" / "pulumi-resource-command"
    assert plugin.exists(), f"{plugin} was not installed by offline/toolchain.sh"
    return env


def test_remote_command_lifecycle_under_the_real_engine(sshd: SSHServer, tmp_path: Path) -> None:
    env = engine_env()
    project = tmp_path / "project"
    work = tmp_path / "work"
    project.mkdir()
    work.mkdir()
    venv = Path(sys.prefix)
    (project / "Pulumi.yaml").write_text(f"name: command-provider-e2e\nruntime:\n  name: python\n  options:\n    virtualenv: {venv}\n")
    (project / "__main__.py").write_text(PROGRAM)
    env.update(
        PULUMI_BACKEND_URL=f"file://{tmp_path / 'state'}",
        PULUMI_CONFIG_PASSPHRASE="e2e",
        PULUMI_SKIP_CONFIRMATIONS="true",
        NO_COLOR="1",
    )
    (tmp_path / "state").mkdir()

    def pulumi(*args: str, stdin: str | None = None) -> str:
        result = subprocess.run(
            ["pulumi", *args, "--non-interactive"],
            cwd=project,
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, f"pulumi {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def events() -> list[str]:
        path = work / "events"
        return path.read_text().splitlines() if path.exists() else []

    pulumi("stack", "init", "e2e")
    pulumi("config", "set", "work", str(work))
    pulumi("config", "set", "port", str(sshd.port))
    pulumi("config", "set", "user", sshd.user)
    pulumi("config", "set", "--secret", "privateKey", stdin=sshd.private_key)

    # 1. First up (with its preview): create runs once, stdin reaches the command.
    pulumi("up", "--yes")
    assert events() == ["create the-secret-stdin"]
    assert (work / "deep" / "er" / "copied.txt").read_text() == "copied text\n"
    outputs = json.loads(pulumi("stack", "output", "--json", "--show-secrets"))
    assert outputs["stdout"] == "created with the-secret-stdin"
    assert json.loads(pulumi("stack", "output", "--json"))["stdin"] == "[secret]"
    # Secret inputs stay secret in the state; stdout is not made secret (as with the Go
    # provider: mark it with additional_secret_outputs when it may echo secrets).
    deployment = json.loads(pulumi("stack", "export"))["deployment"]
    (command,) = [r for r in deployment["resources"] if r["type"] == "command:remote:Command"]
    for props in (command["inputs"], command["outputs"]):
        assert props["stdin"]["4dabf18193072939515e22adb298388d"] == "1b47061264138c4ac30d75fd1eb44270"
        assert props["connection"]["4dabf18193072939515e22adb298388d"] == "1b47061264138c4ac30d75fd1eb44270"
    assert command["outputs"]["stdout"] == "created with the-secret-stdin"
    assert "PRIVATE KEY" not in json.dumps(deployment)

    # 2. Nothing changed: nothing runs.
    output = pulumi("up", "--yes")
    assert events() == ["create the-secret-stdin"]
    assert "unchanged" in output

    # 3. A trigger changed: replaced (the replacement is created before the old one
    #    is deleted, as with the Go provider when delete_before_replace is not set).
    pulumi("config", "set", "trigger", "2")
    output = pulumi("up", "--yes")
    assert "replaced" in output
    assert events() == [
        "create the-secret-stdin",
        "create the-secret-stdin",
        "delete created with the-secret-stdin",
    ]

    # 4. Destroy: delete runs with the last stdout in its environment.
    pulumi("destroy", "--yes")
    assert events()[-1] == "delete created with the-secret-stdin"
    assert len(events()) == 4
    pulumi("stack", "rm", "--yes", "e2e")
