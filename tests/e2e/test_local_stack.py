"""`pulumi up` of the local stack with the real engine against a real test host, step by step.

The tests run in file order and share this module's deployment (its own test host,
address and project copy): fresh up, then no-op, release, secret rotation and destroy.
"""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from dev.harness import Project, TestHost, machine, sh
from dropship.remote.commands import render_env

APP_DIR = "/srv/example"
WEB = "$(docker ps -q --filter label=com.docker.compose.service=web)"
"""The web service's container, whatever its number (a release rolls it)."""
TRICKY = "sp ace 'single' \"double\" $HOME ${X} # not a comment = eq \\back\\slash ünïcødé €"
SECRETS = {
    "env.APP_SECRET": "e2e-secret-1",
    "env.TRICKY": TRICKY,
}


def page(host: TestHost, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(host.url(path), timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""


def health(host: TestHost) -> dict[str, str]:
    with urllib.request.urlopen(host.url("/health"), timeout=5) as response:
        assert response.status == 200
        return dict(json.loads(response.read()))


@pytest.fixture(scope="module")
def host(registry: None) -> Iterator[TestHost]:
    """This module's own test host, removed afterwards with its Docker volume."""
    with TestHost.for_module(__name__).fresh() as test_host:
        yield test_host


@pytest.fixture(scope="module")
def project(host: TestHost, bin_dir: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    project = Project(tmp_path_factory.mktemp("local-stack"), bin_dir)
    project.init_local(host, secrets=SECRETS)
    yield project
    project.pulumi("destroy", "--yes", "--skip-preview", check=False)


def current_env(project: Project) -> dict[str, str]:
    config = json.loads(project.pulumi("config", "--show-secrets", "--json").stdout)
    return {k.removeprefix("dropship:env."): v["value"] for k, v in config.items() if k.startswith("dropship:env.")}


def test_fresh_up_serves_the_app_through_the_proxy(project: Project, host: TestHost) -> None:
    result = project.up()
    assert "error" not in result.stdout.lower().split("resources:")[-1]
    answer = health(host)
    assert answer["status"] == "ok"
    assert answer["release"] == "v1"
    assert answer["secret_sha256"] == hashlib.sha256(b"e2e-secret-1").hexdigest()
    outputs = project.outputs()
    assert outputs["release"] == "v1"
    assert outputs["sshCommand"] == f"ssh deploy@{host.address}"


MACHINE_BEFORE = machine.network()


def test_docker_runs_with_its_defaults_inside_and_nothing_appears_on_this_machine(host: TestHost) -> None:
    assert host.run("ip -o -4 addr show docker0").stdout.split()[3] == "172.17.0.1/16"
    networks = host.ssh("deploy", "docker network ls --format '{{.Name}} {{.Driver}}'").stdout.split("\n")
    assert "example_default bridge" in networks
    assert host.ssh("deploy", "docker port example-edge-1 80").stdout.splitlines()[0] == "0.0.0.0:80"
    assert machine.network() == MACHINE_BEFORE
    assert machine.foreign_links(MACHINE_BEFORE) == []


def test_env_file_is_exact_private_and_owned_by_the_deploy_user(project: Project, host: TestHost) -> None:
    on_host = host.run(f"cat {APP_DIR}/.env").stdout
    assert on_host == render_env(current_env(project))
    assert host.run(f"stat -c '%U %G %a' {APP_DIR}/.env").stdout.split() == ["deploy", "deploy", "600"]
    # The app sees every value exactly as configured.
    environment = json.loads(host.ssh("deploy", f"docker inspect -f '{{{{json .Config.Env}}}}' {WEB}").stdout)
    assert f"TRICKY={TRICKY}" in environment


def test_deploy_user_runs_docker_without_sudo(host: TestHost) -> None:
    assert "example-web-" in host.ssh("deploy", "docker ps --format '{{.Names}}'").stdout
    refused = host.ssh("deploy", "sudo -n true", False)
    assert (refused.returncode, "a password is required" in refused.stderr) == (1, True), refused
    assert "docker" in host.ssh("deploy", "id -nG").stdout.split()


def test_compose_by_hand_sees_what_dropship_saw(host: TestHost) -> None:
    # As the README says: release.env holds the project, the files and the variables.
    listed = host.ssh("deploy", f"cd {APP_DIR} && docker compose --env-file .env --env-file release.env ps --format '{{{{.Service}}}}'")
    assert sorted(listed.stdout.split()) == ["edge", "web"]
    config = host.ssh("deploy", f"cd {APP_DIR} && docker compose --env-file .env --env-file release.env config --images").stdout
    assert f"/dropship-example/web:{host.run(f'cat {APP_DIR}/RELEASE').stdout.strip()}" in config


def test_sshd_refuses_passwords_and_root_but_with_its_key(host: TestHost) -> None:
    effective = host.run("sshd -T | grep -Ei '^(permitrootlogin|passwordauthentication|kbdinteractiveauthentication) '").stdout
    assert sorted(effective.lower().split("\n")[:-1]) == [
        "kbdinteractiveauthentication no",
        "passwordauthentication no",
        "permitrootlogin without-password",  # sshd -T's name for prohibit-password: the bootstrap can run again
    ]
    assert host.ssh("root", "true", False).returncode == 0  # with the admin's key
    for user in ("root", "deploy"):
        password = host.ssh(
            user, "true", False, "-o", "PreferredAuthentications=password,keyboard-interactive", "-o", "PubkeyAuthentication=no"
        )
        assert password.returncode == 255
        assert "Permission denied (publickey)" in password.stderr


def test_second_up_changes_nothing_and_runs_no_command(project: Project, host: TestHost) -> None:
    assert project.preview_steps() == {}
    logins = host.logins()
    project.up()
    assert set(project.last_update_changes()) == {"same"}
    assert host.logins() == logins


def test_release_changes_only_the_app(project: Project, host: TestHost) -> None:
    project.set("app.imageTag", "v2")
    assert project.preview_steps() == {"app-release": "update"}
    project.up()
    assert health(host)["release"] == "v2"
    assert project.outputs()["release"] == "v2"


def test_a_directory_uploads_with_its_paths(project: Project, host: TestHost) -> None:
    assert page(host, "/site/")[1] == (project.dir / "examples/local/site/index.html").read_text()
    assert page(host, "/site/about/")[1] == (project.dir / "examples/local/site/about/index.html").read_text()
    assert host.run(f"test -f {APP_DIR}/site/about/index.html").returncode == 0


def test_a_changed_directory_reuploads_and_redeploys_nothing_else(project: Project, host: TestHost) -> None:
    site = project.dir / "examples/local/site"
    (site / "index.html").write_text("<h1>changed</h1>\n")
    (site / "about/index.html").unlink()
    (site / "new.html").write_text("<p>new</p>\n")
    steps = project.preview_steps()
    assert set(steps) == {"app-dir-site-empty", "app-dir-site", "app-release"}, steps
    assert steps["app-release"] == "update"
    project.up()
    assert page(host, "/site/") == (200, "<h1>changed</h1>\n")
    assert page(host, "/site/new.html") == (200, "<p>new</p>\n")
    assert page(host, "/site/about/")[0] == 404  # deleted here, gone there
    assert health(host)["release"] == "v2"
    assert project.preview_steps() == {}


def test_changed_secret_rewrites_env_and_restarts_the_app_only(project: Project, host: TestHost) -> None:
    started = host.ssh("deploy", f"docker inspect -f '{{{{.State.StartedAt}}}}' {WEB}").stdout
    project.set("env.APP_SECRET", "e2e-secret-2", secret=True)
    steps = project.preview_steps()
    assert set(steps) == {"env-write", "app-release"}
    project.up()
    assert health(host)["secret_sha256"] == hashlib.sha256(b"e2e-secret-2").hexdigest()
    assert host.run(f"cat {APP_DIR}/.env").stdout == render_env(current_env(project))
    assert host.ssh("deploy", f"docker inspect -f '{{{{.State.StartedAt}}}}' {WEB}").stdout != started


def test_destroy_leaves_no_app_container(project: Project, host: TestHost) -> None:
    project.pulumi("destroy", "--yes", "--skip-preview")
    assert host.run("docker ps -aq").stdout.strip() == ""
    assert host.run(f"ls -A {APP_DIR}").stdout.strip() == ""
    assert sh("curl", "-s", "--max-time", "5", "-o", "/dev/null", host.url("/health"), check=False).returncode != 0
