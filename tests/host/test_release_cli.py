"""release.py as the release step runs it (`python3 <host code>/release.py ...`), with a recording `docker` on PATH."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from release import parse

from dropship.remote import commands
from tests.host.conftest import FAKE_DOCKER, Host

OFFICIAL_PLUGIN_LINE_LIMIT = 64 * 1024  # bufio.Scanner's MaxScanTokenSize in pulumi-command


def deploy(host: Host, **overrides: object) -> str:
    return deploy_command(str(host.app_dir), **overrides)


def deploy_command(app_dir: str = "/srv/app", **overrides: object) -> str:
    args: dict[str, object] = {"app_dir": app_dir, "project": "app", "image_tag": "v7", "compose_files": ["compose.yaml"]}
    args.update(overrides)
    return commands.deploy(**args)  # type: ignore[arg-type]


def releases_log(app_dir: Path) -> list[list[str]]:
    return [line.split()[1:] for line in (app_dir / "releases.log").read_text().splitlines()]


def test_long_hook_output_lines_are_folded_below_the_plugin_limit(host: Host) -> None:
    hook = "python3 -c \"import sys; print('a' * 200000); print('b' * 100000, file=sys.stderr); sys.exit(4)\""
    result = host.run(deploy(host, pre_deploy=[hook]))
    assert result.returncode != 0
    for stream in (result.stdout, result.stderr):
        assert max(len(line.encode()) for line in stream.splitlines()) < OFFICIAL_PLUGIN_LINE_LIMIT
    # folded, not cut: every byte is still there, and each stream kept its own output
    assert "".join(line for line in result.stdout.splitlines() if set(line) == {"a"}) == "a" * 200000
    assert "".join(line for line in result.stderr.splitlines() if set(line) == {"b"}) == "b" * 100000
    assert "pre-deploy hook failed" in result.stderr


def test_failing_pre_deploy_hook_changes_nothing(host: Host) -> None:
    result = host.run(deploy(host, pre_deploy=["echo checking; exit 3"]))
    assert result.returncode == 1
    assert "dropship: release v7: pre-deploy hook failed: echo checking; exit 3; nothing was changed" in result.stderr
    assert "checking" in result.stdout
    assert not (host.app_dir / "releases" / "current").exists()
    assert not (host.app_dir / "compose.yaml").exists()  # the live directory was not touched
    assert [entry[1:] for entry in releases_log(host.app_dir)] == [["v7", "pre-deploy-failed"]]
    assert list((host.app_dir / "releases").iterdir()) == []  # the failed snapshot is discarded


def test_a_failed_pull_keeps_the_previous_release(host: Host) -> None:
    result = host.run(deploy(host), fail="pull")
    assert result.returncode == 1
    assert "dropship: release v7: pulling images failed; the previous release still serves" in result.stderr
    pulls = [c for c in host.docker_calls() if " pull " in f" {c} "]
    assert len(pulls) == 1
    assert f"--project-name app --project-directory {host.app_dir}/releases/" in pulls[0]
    assert pulls[0].endswith("compose.yaml pull --policy missing --quiet")
    assert [entry[1:] for entry in releases_log(host.app_dir)] == [["v7", "pull-failed"]]


def test_a_pull_that_never_answers_fails_at_app_pull_timeout_and_frees_the_lock(host: Host) -> None:
    # Were the hung `docker` killed alone, its child would hold the pipes for 300 s, past host.run's 60 s.
    result = host.run(deploy(host, pull_timeout=2), hang="pull")
    assert result.returncode == 1
    assert "dropship: release v7: pulling images did not finish in 2s (app.pullTimeout)" in result.stderr
    assert [entry[1:] for entry in releases_log(host.app_dir)] == [["v7", "pull-timed-out"]]
    again = host.run(deploy(host, lock_timeout=0))
    assert again.returncode == 0, again.stderr
    assert "waiting" not in again.stdout


def test_the_release_reads_the_hook_and_pull_bounds_from_its_command() -> None:
    words = shlex.split(deploy_command(hook_timeout=1800, pull_timeout=120))
    assert (parse(words[2:]).hook_timeout, parse(words[2:]).pull_timeout) == (1800, 120)
    defaults = parse(shlex.split(deploy_command())[2:])
    assert (defaults.hook_timeout, defaults.pull_timeout) == (600, 600)


def test_a_held_lock_names_its_holder_and_gives_up(host: Host) -> None:
    (host.app_dir / ".deploy.lock.holder").write_text("ci from 203.0.113.9, pid 1, since 2026-12-01T08:00:00Z\n")
    holder = subprocess.Popen(["flock", str(host.app_dir / ".deploy.lock"), "sleep", "30"])
    try:
        result = host.run(deploy(host, lock_timeout=1))
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 1
    assert "waiting up to 1s for the deploy lock, held by ci from 203.0.113.9" in result.stdout
    assert f"another deploy holds the lock of {host.app_dir}: ci from 203.0.113.9, pid 1" in result.stderr
    assert host.docker_calls() == []


def test_an_unknown_option_is_refused_before_anything_happens(host: Host) -> None:
    result = host.run(deploy(host) + " --colour blue")
    assert result.returncode == 2
    assert result.stderr.strip().endswith("release.py: error: unrecognized arguments: --colour blue")
    assert not (host.app_dir / "releases").exists()


def test_files_keep_their_paths_in_the_snapshot_and_the_live_directory(host: Host) -> None:
    incoming = host.app_dir / "incoming"
    (incoming / "deploy").mkdir()
    (incoming / "deploy" / "compose.prod.yaml").write_text("services: {}\n")
    (incoming / "site" / "css").mkdir(parents=True)
    (incoming / "site" / "index.html").write_text("<h1>shop</h1>\n")
    (incoming / "site" / "css" / "app.css").write_text("h1 {}\n")
    result = host.run(deploy(host, compose_files=["compose.yaml", "deploy/compose.prod.yaml"], uploads=["site"]))
    assert result.returncode == 0, result.stderr
    release = (host.app_dir / "releases" / "current").resolve()
    for where in (release, host.app_dir):
        assert (where / "site" / "css" / "app.css").read_text() == "h1 {}\n"
        assert (where / "site" / "index.html").read_text() == "<h1>shop</h1>\n"
        assert (where / "deploy" / "compose.prod.yaml").exists()
    assert oct(release.stat().st_mode & 0o777) == "0o700"
    live = f"--project-directory {host.app_dir} --file {host.app_dir}/compose.yaml --file {host.app_dir}/deploy/compose.prod.yaml up"
    assert any(live in call for call in host.docker_calls()), host.docker_calls()


def test_compose_and_hooks_see_the_stacks_hostnames_and_data_directory(host: Host) -> None:
    hook = 'printf "%s|%s|%s\\n" "$IMAGE_TAG" "$DROPSHIP_HOSTNAMES" "$DROPSHIP_DATA_DIR" > ../../seen; false'
    host.run(deploy(host, pre_deploy=[hook], hostnames=["app.example.com", "www.example.com"], data_dir="/mnt/data"))
    assert (host.app_dir / "seen").read_text() == "v7|app.example.com www.example.com|/mnt/data\n"


def test_removing_the_app_of_a_replaced_machine_leaves_the_new_machines_app(host: Host) -> None:
    (host.app_dir / "releases").mkdir()
    host.run(commands.claim_app_directory(str(host.app_dir), "second"))
    old = host.run(commands.remove_app(str(host.app_dir), "app", "first"))
    assert old.returncode == 0, old.stderr
    assert old.stdout.strip() == f"dropship: {host.app_dir} is the app of machine 'second' now, not of 'first': nothing removed"
    assert (host.app_dir / "releases").is_dir()
    assert host.docker_calls() == []
    same = host.run(commands.remove_app(str(host.app_dir), "app", "second"))
    assert same.returncode == 0, same.stderr
    assert list(host.app_dir.iterdir()) == []
    # No edge runs here (the recording docker lists no container): no site of dropship's edge to remove.
    assert host.docker_calls() == ["compose --project-name app down --remove-orphans", "ps --quiet --filter name=^dropship-edge$"]


def test_the_release_command_is_one_short_line_and_earlier_host_code_goes(host: Host) -> None:
    command = deploy(host)
    assert "\n" not in command and len(command.replace(str(host.app_dir), "/srv/app")) < 300, command
    assert command.startswith(f"python3 {commands.host_code_directory(str(host.app_dir))}/release.py --dir {host.app_dir} ")
    earlier = host.app_dir / ".dropship" / "host-0123456789abcdef"
    earlier.mkdir()
    result = host.run(command)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "dropship: release v7 is live"
    assert not earlier.exists()
    assert (host.app_dir / ".dropship").is_dir() and Path(commands.host_code_directory(str(host.app_dir))).is_dir()


def test_the_registry_password_comes_on_stdin_and_goes_with_the_deploy(host: Host) -> None:
    logins = host.bin_dir / "logins"
    # A docker that also records what `login` reads on stdin, and where its config is.
    (host.bin_dir / "docker").write_text(
        FAKE_DOCKER.replace("exit 0\n", "") + f'case "$1" in login) {{ cat; echo " $DOCKER_CONFIG"; }} >>{logins} ;; esac\nexit 0\n'
    )
    result = host.run(deploy(host, registry="registry.example.com", registry_user="ci"), stdin="s3cret-token\n")
    assert result.returncode == 0, result.stderr
    assert "s3cret-token" not in "\n".join(host.docker_calls()) + result.stdout + result.stderr
    assert "login registry.example.com --username ci --password-stdin" in host.docker_calls()
    password, config = logins.read_text().split()
    assert password == "s3cret-token"
    assert not Path(config).exists()  # the credential did not stay on the host


def test_a_failed_registry_login_keeps_the_previous_release(host: Host) -> None:
    result = host.run(deploy(host, registry="registry.example.com", registry_user="ci"), stdin="wrong\n", fail="login")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "dropship: release v7: registry login to registry.example.com failed; the previous release still serves",
        "dropship: docker: login failed",
    ]
    assert [entry[1:] for entry in releases_log(host.app_dir)] == [["v7", "login-failed"]]


def test_a_directory_without_dropships_mark_is_not_emptied_on_destroy(host: Host) -> None:
    (host.app_dir / "notes.txt").write_text("someone's\n")
    result = host.run(commands.remove_app(str(host.app_dir), "app", ""))
    assert result.returncode == 0, result.stderr
    assert "has no mark of dropship's (.dropship-machine): its files are not dropship's to remove; nothing removed" in result.stdout
    assert (host.app_dir / "notes.txt").read_text() == "someone's\n"
    assert host.docker_calls() == []
