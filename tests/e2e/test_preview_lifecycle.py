"""CI's preview environments and policy pack, rehearsed with the real engine (existing-host mode).

The rehearsal drives ci/preview-env.sh, the script the preview-env workflow
runs, in a temp copy of the project with its own file backend. A stack
`rehearsal-staging` (the local stack's settings, `environment: staging`,
aimed at this module's own test host) stands in for staging. The tests run
in file order: destroy of a stack that never existed, up (init with copied
config), up again from a fresh checkout, destroy + stack rm. Then the policy
pack: `pulumi preview --policy-pack policy` of the local stack passes, and a
throwaway program whose .env command may log is refused.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from dev.harness import ROOT, Project, TestHost, engine_env

SOURCE = "rehearsal-staging"
PR = "7"
STACK = f"pr-{PR}"
SECRETS = {"env.APP_SECRET": "preview-lifecycle"}
APP_DIR = f"/srv/example-{STACK}"
"""On staging's host, a preview's app has a directory (and a compose project) of its own."""
HOST = TestHost.for_module(__name__)


def release_served() -> str:
    with urllib.request.urlopen(HOST.url("/health"), timeout=5) as response:
        return str(json.loads(response.read())["release"])


@pytest.fixture(scope="module")
def ci_host(registry: None) -> Iterator[TestHost]:
    """This module's own test host, so that it never collides with another module's or another checkout's."""
    with HOST.fresh() as test_host:
        yield test_host


class Rehearsal:
    """The project copy with ci/ and policy/, and a way to run ci/preview-env.sh in it."""

    def __init__(self, project: Project) -> None:
        self.project = project
        for name in ("ci", "policy"):
            shutil.copytree(ROOT / name, project.dir / name, ignore=shutil.ignore_patterns("__pycache__"))

    def script(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(self.project.dir / "ci" / "preview-env.sh"), *args],
            cwd=self.project.dir,
            env={**self.project.env, "PREVIEW_SOURCE_STACK": SOURCE, **env},
            capture_output=True,
            text=True,
            timeout=1200,
        )

    def stacks(self) -> set[str]:
        return {s["name"] for s in json.loads(self.project.pulumi("stack", "ls", "--json").stdout)}


@pytest.fixture(scope="module")
def rehearsal(ci_host: TestHost, bin_dir: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rehearsal]:
    project = Project(tmp_path_factory.mktemp("preview-lifecycle"), bin_dir)
    rehearsal = Rehearsal(project)
    # "staging": the local stack's settings (and its passphrase secrets), on this module's host and ports.
    shutil.copy2(project.dir / "Pulumi.local.yaml", project.dir / f"Pulumi.{SOURCE}.yaml")
    project.pulumi("stack", "init", SOURCE)
    project.set("environment", "staging")
    project.set("existingHost.address", ci_host.address)
    project.set("ssh.hostKey", ci_host.host_key())  # required outside local
    project.set("app.urls", f'["{ci_host.url()}"]')
    project.set("app.healthTimeout", "30")
    for key, value in SECRETS.items():
        project.set(key, value, secret=True)
    yield rehearsal
    if STACK in rehearsal.stacks():
        rehearsal.script("destroy", PR)


def output_of(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n{result.stdout[-6000:]}\n{result.stderr[-4000:]}"


def test_destroy_of_a_stack_that_never_existed_succeeds(rehearsal: Rehearsal) -> None:
    before = rehearsal.stacks()
    result = rehearsal.script("destroy", "8")
    assert result.returncode == 0, output_of(result)
    assert "stack pr-8 does not exist; nothing to destroy" in result.stderr
    assert rehearsal.stacks() == before == {SOURCE}


def test_up_creates_the_preview_from_the_source_config_and_deploys(rehearsal: Rehearsal, ci_host: TestHost) -> None:
    result = rehearsal.script("up", PR, IMAGE_TAG="v2")
    assert result.returncode == 0, output_of(result)
    assert f"creating stack {STACK} from {SOURCE}'s configuration" in result.stderr
    # The workflow's --policy-pack ran, and passed.
    assert "dropship@v1.0.0" in result.stdout, output_of(result)
    assert STACK in rehearsal.stacks()
    config = json.loads(rehearsal.project.pulumi("config", "--json", "-s", STACK).stdout)
    # Copied: the host, the secrets (still secret); dropped: `environment`, so pr-7 is a preview.
    assert config["dropship:existingHost.address"]["value"] == ci_host.address
    assert config["dropship:env.APP_SECRET"]["secret"] is True
    assert "dropship:environment" not in config
    assert config["dropship:app.imageTag"]["value"] == "v2"
    assert release_served() == "v2"
    # On staging's host its app is a compose project of its own.
    projects = ci_host.run("docker ps --format '{{.Label \"com.docker.compose.project\"}}'").stdout.split()
    assert set(projects) == {f"example-{STACK}"}, projects


def test_up_again_from_a_fresh_checkout_copies_the_config_again_and_changes_nothing(rehearsal: Rehearsal) -> None:
    # A CI runner's checkout has no Pulumi.pr-7.yaml: the stack is in the backend, its config file is not.
    (rehearsal.project.dir / f"Pulumi.{STACK}.yaml").unlink()
    result = rehearsal.script("up", PR, IMAGE_TAG="v2")
    assert result.returncode == 0, output_of(result)
    assert f"stack {STACK} exists; copying {SOURCE}'s configuration again" in result.stderr
    history = json.loads(rehearsal.project.pulumi("stack", "history", "--json", "-s", STACK).stdout)
    assert set(history[0]["resourceChanges"]) == {"same"}, history[0]
    assert release_served() == "v2"


def test_destroy_removes_the_app_and_the_stack(rehearsal: Rehearsal, ci_host: TestHost) -> None:
    result = rehearsal.script("destroy", PR)
    assert result.returncode == 0, output_of(result)
    assert STACK not in rehearsal.stacks()
    assert not (rehearsal.project.dir / f"Pulumi.{STACK}.yaml").exists()
    # The app is gone from the host: no container, an empty app directory, nothing on port 80.
    assert ci_host.run("docker ps -aq").stdout.strip() == ""
    assert ci_host.run(f"ls -A {APP_DIR}").stdout.strip() == ""
    with pytest.raises(OSError):
        release_served()
    # And again: nothing left to destroy is not an error.
    again = rehearsal.script("destroy", PR)
    assert again.returncode == 0, output_of(again)
    assert f"stack {STACK} does not exist; nothing to destroy" in again.stderr


def test_a_backend_failure_is_not_taken_for_a_missing_stack(rehearsal: Rehearsal) -> None:
    # A Pulumi Cloud URL without a token (nothing listens there): the script must fail, not report "nothing to destroy".
    result = rehearsal.script("destroy", "9", PULUMI_BACKEND_URL="https://127.0.0.1:9", PULUMI_ACCESS_TOKEN="")
    assert result.returncode != 0, output_of(result)
    assert "cannot tell whether stack pr-9 exists" in result.stderr
    assert "nothing to destroy" not in result.stderr


# --- the policy pack with the real engine ------------------------------------------------


def test_preview_of_the_local_stack_passes_the_policy_pack(bin_dir: str, tmp_path: Path) -> None:
    project = Project(tmp_path / "local", bin_dir, app="shop")  # Pulumi.local.yaml as committed
    project.pulumi("stack", "init", "local")
    result = project.pulumi("preview", "--policy-pack", str(ROOT / "policy"))
    assert "dropship@v1.0.0" in result.stdout
    assert "mandatory" not in result.stdout


def test_an_env_command_that_may_log_is_refused(bin_dir: str, tmp_path: Path) -> None:
    # A throwaway program: one remote command that runs write-env.sh with the default logging. Preview only.
    program = tmp_path / "leaky"
    program.mkdir()
    (program / "venv").symlink_to(ROOT / "venv")
    (program / "Pulumi.yaml").write_text("name: leaky\nruntime:\n  name: python\n  options:\n    virtualenv: venv\n")
    (program / "__main__.py").write_text(
        textwrap.dedent(
            """
            from pulumi_command import remote

            remote.Command(
                "env-write",
                connection=remote.ConnectionArgs(host="127.0.0.1", port=22, user="deploy"),
                create="bash -c 'umask 077 && cat > .env' write-env.sh /srv/app/incoming",
                stdin="APP_SECRET=x\\n",
            )
            """
        )
    )
    state = tmp_path / "state"
    state.mkdir()
    env = engine_env(bin_dir, state, passphrase="throwaway")
    subprocess.run(["pulumi", "stack", "init", "local", "--non-interactive"], cwd=program, env=env, check=True, capture_output=True)
    result = subprocess.run(
        ["pulumi", "preview", "--non-interactive", "--policy-pack", str(ROOT / "policy")],
        cwd=program,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "env-file-never-logged" in output
    assert "command 'env-write' of stack local writes the .env (write-env.sh) with logging None; it must be 'none'" in output
