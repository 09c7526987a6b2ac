"""Releases that never break (real engine, real test host): health-gated, rolled back, locked, zero downtime."""

from __future__ import annotations

import json
import re
import secrets
import shutil
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from dev.harness import REGISTRY, Load, Project, TestHost, build_images, sh, wait_until

SECRETS = {"env.APP_SECRET": "release-tests"}
APP_DIR = "/srv/example"
HOST = TestHost.for_module(__name__)
HEALTH_TIMEOUT = 90


def serving() -> str:
    with urllib.request.urlopen(HOST.url("/health"), timeout=5) as response:
        return str(json.loads(response.read())["release"])


def new_project(path: Path, host: TestHost, bin_dir: str) -> Project:
    project = Project(path, bin_dir)
    # Far above what Docker takes to call the unhealthy release unhealthy (3 checks, 2 s apart): the release
    # fails on Docker's verdict, which the tests assert, not on the deadline.
    project.init_local(host, {"app.healthTimeout": str(HEALTH_TIMEOUT)}, SECRETS)
    return project


@pytest.fixture(scope="module")
def host(registry: None) -> Iterator[TestHost]:
    """This module's own test host, removed afterwards with its Docker volume."""
    with HOST.fresh() as test_host:
        yield test_host


@pytest.fixture(scope="module")
def project(host: TestHost, bin_dir: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    build_images("v3-unhealthy")
    build_images("v4-crash")
    project = new_project(tmp_path_factory.mktemp("releases"), host, bin_dir)
    project.up()
    assert serving() == "v1"
    yield project
    project.pulumi("destroy", "--yes", "--skip-preview", check=False)


def test_zero_failed_requests_across_a_release(project: Project) -> None:
    project.set("app.imageTag", "v2")
    with Load(HOST.url("/health"), rate=50) as load:
        project.up()
    print(f"\nacross the release: {load}")
    assert serving() == "v2"
    assert load.sent >= 100, str(load)
    assert load.failed == 0, str(load)


def test_unhealthy_release_is_rolled_back_and_up_fails_clearly(project: Project, host: TestHost) -> None:
    project.set("app.imageTag", "v3-unhealthy")
    result = project.pulumi("up", "--yes", "--skip-preview", check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "release v3-unhealthy failed and was rolled back" in output
    assert "Release v2 serves again" in output
    # The unhealthy service is named, with its last health answer.
    assert re.search(r"service web: container \w{12} is unhealthy; last health check: .*503", output), output[-3000:]
    assert serving() == "v2"
    assert host.run(f"readlink {APP_DIR}/releases/current").stdout.strip().endswith("-v2")


def test_a_crashing_release_fails_fast_names_its_exit_and_logs_and_the_outputs_name_what_serves(project: Project) -> None:
    project.set("app.imageTag", "v4-crash")
    started = time.monotonic()
    result = project.pulumi("up", "--yes", "--skip-preview", check=False)
    print(f"\n`pulumi up` of a crashing release, rolled back: {time.monotonic() - started:.1f} s (app.healthTimeout {HEALTH_TIMEOUT} s)")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert re.search(
        r"release v4-crash failed and was rolled back: service web: container \w{12} (exited|restarted) with exit code 3", output
    )
    assert "web: cannot start: release v4-crash is built to crash" in output  # from its last 20 log lines
    assert "Release v2 serves again." in output
    assert serving() == "v2"
    assert project.outputs()["release"] == "v2"


def test_a_failed_up_shows_the_short_command_and_dropships_lines_not_a_script(project: Project) -> None:
    project.set("app.imageTag", "v3-unhealthy")
    result = project.pulumi("up", "--yes", "--skip-preview", check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f'running "python3 {APP_DIR}/.dropship/host-' in output
    for body in ("import argparse", "def main", "set -eu", "#!/usr/bin/env"):
        assert body not in output, body
    errors = [line for line in output.splitlines() if "error:" in line]
    assert errors and all(len(line) < 600 for line in errors), errors
    assert project.outputs()["release"] == "v2"


def test_failing_post_deploy_hook_restores_the_previous_release(project: Project) -> None:
    project.set("app.imageTag", "v1")
    project.set("app.postDeploy", '["echo migrating; exit 3"]')
    result = project.pulumi("up", "--yes", "--skip-preview", check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "post-deploy hook failed: echo migrating; exit 3" in output
    assert "Release v2 serves again" in output
    assert serving() == "v2"


def test_failing_pre_deploy_hook_changes_nothing(project: Project) -> None:
    project.pulumi("config", "rm", "app.postDeploy")
    project.set("app.preDeploy", '["false"]')
    result = project.pulumi("up", "--yes", "--skip-preview", check=False)
    assert result.returncode != 0
    assert "pre-deploy hook failed: false; nothing was changed, the previous release still serves" in result.stdout + result.stderr
    assert serving() == "v2"
    project.pulumi("config", "rm", "app.preDeploy")


def test_rolling_back_by_config_needs_no_pull(project: Project, host: TestHost) -> None:
    """The host's Docker records no image pull between the test's two clock readings around `up`."""
    project.set("app.imageTag", "v1")
    since = host.run("date +%s.%N").stdout.strip()
    project.up()
    until = host.run("date +%s.%N").stdout.strip()
    assert serving() == "v1"
    pulls = host.run(f"docker events --since {since} --until {until} --filter type=image --filter event=pull --format '{{{{.Actor.ID}}}}'")
    assert pulls.stdout.strip() == "", pulls.stdout


def release_processes(host: TestHost) -> list[int]:
    return [pid for pid, (_, args) in host.processes().items() if args.startswith("python3 ") and "/release.py " in args]


def test_concurrent_ups_serialise(project: Project, host: TestHost, bin_dir: str, tmp_path: Path) -> None:
    """Two `up`s of one stack made to overlap: b's pre-deploy hook holds its release (inside the deploy lock)
    until the test has seen a's release wait for that lock (asleep in its wait loop), then lets go."""
    # A second copy of the same stack (as two CI jobs would have): same state, its own checkout.
    state = tmp_path / "state.json"
    project.pulumi("stack", "export", "--file", str(state))
    other = Project(tmp_path / "other", bin_dir)
    shutil.copy2(project.dir / "Pulumi.local.yaml", other.dir / "Pulumi.local.yaml")
    other.pulumi("stack", "init", "local")
    other.pulumi("stack", "import", "--file", str(state))
    holds, go = f"{APP_DIR}/.test-b-holds", f"{APP_DIR}/.test-b-go"
    host.run(f"rm -f {holds} {go}")
    project.set("app.imageTag", "v2")
    other.set("app.imageTag", "v2")
    other.set("app.preDeploy", json.dumps([f"touch {holds} && timeout 600 sh -c 'until [ -e {go} ]; do sleep 0.2; done'"]))
    results: dict[str, str] = {}

    def up(name: str, p: Project) -> None:
        r = p.pulumi("up", "--yes", "--skip-preview", check=False)
        results[name] = f"{r.returncode}\n{r.stdout}{r.stderr}"

    threads = {n: threading.Thread(target=up, args=(n, p), daemon=True) for n, p in (("a", project), ("b", other))}
    lines_before = int(host.run(f"wc -l < {APP_DIR}/releases.log").stdout)
    try:
        threads["b"].start()
        wait_until(
            lambda: host.run(f"test -e {holds}", check=False).returncode == 0 or "b" in results,
            "b's release to hold the lock in its hook",
            600,
            lambda: results.get("b", "")[-3000:],
        )
        assert "b" not in results, results["b"][-3000:]
        holder = release_processes(host)
        threads["a"].start()

        def a_waits() -> bool:
            return any(host.asleep(pid) for pid in release_processes(host) if pid not in holder)

        wait_until(
            lambda: a_waits() or "a" in results, "a's release to wait for the deploy lock", 600, lambda: results.get("a", "")[-3000:]
        )
        assert "a" not in results, results["a"][-3000:]
    finally:
        host.run(f"touch {go}")
        for thread in threads.values():
            thread.join(timeout=1200)
        host.run(f"rm -f {holds} {go}")
    assert results.keys() == {"a", "b"}
    assert all(r.startswith("0\n") for r in results.values()), results
    assert "for the deploy lock, held by deploy from 127.0.0.1" in results["a"], results["a"][-3000:]
    log = host.run(f"tail -n +{lines_before + 1} {APP_DIR}/releases.log").stdout.splitlines()
    assert [line.split()[-1] for line in log] == ["live", "live"], log
    assert serving() == "v2"


def test_lock_held_too_long_fails_naming_the_holder(project: Project, host: TestHost) -> None:
    """The test holds the deploy lock (a process group of its own, until it lets go) for the whole `up`."""
    holder = host.run(
        f"cd {APP_DIR} && echo 'ci-job-7 from 192.0.2.7, pid 1, since 2026-01-01T00:00:00Z' > .deploy.lock.holder"
        " && { setsid flock .deploy.lock sleep 900 >/dev/null 2>&1 & echo $!; }"
    ).stdout.strip()
    try:
        wait_until(
            lambda: host.run(f"flock -n {APP_DIR}/.deploy.lock true", check=False).returncode != 0,
            "the test's holder to take the deploy lock",
            30,
        )
        before = serving()
        project.set("app.lockTimeout", "2")
        project.set("app.imageTag", "v1")
        result = project.pulumi("up", "--yes", "--skip-preview", check=False)
        assert result.returncode != 0
        assert (
            f"another deploy holds the lock of {APP_DIR}: ci-job-7 from 192.0.2.7, pid 1, since 2026-01-01T00:00:00Z; gave up after 2s"
            in result.stdout + result.stderr
        )
        assert serving() == before
    finally:
        host.run(f"kill -- -{holder}", check=False)


def test_one_off_containers_of_a_service_are_left_alone_and_releases_go_on(project: Project, host: TestHost) -> None:
    """A hook's `docker compose run` without --rm (exited) and a shell left running (`--detach`) are compose's one-off
    containers of web: releases neither count them as web's nor stop them."""
    oneoffs = "docker ps --all --filter label=com.docker.compose.project=example --filter label=com.docker.compose.oneoff=True"
    project.pulumi("config", "rm", "app.lockTimeout", check=False)  # the lock test's
    wait_until(lambda: host.run(f"flock -n {APP_DIR}/.deploy.lock true", check=False).returncode == 0, "the lock test's holder to go", 30)
    project.set("app.imageTag", "v1")
    project.set("app.preDeploy", json.dumps(["docker compose run web true", "docker compose run --detach web sleep 600"]))
    try:
        project.up()
        assert serving() == "v1"
        project.pulumi("config", "rm", "app.preDeploy")
        project.set("app.imageTag", "v2")
        with Load(HOST.url("/health"), rate=50) as load:
            project.up()
        assert serving() == "v2"
        assert load.failed == 0, str(load)
        left = host.run(f"{oneoffs} --format '{{{{.Command}}}} {{{{.State}}}}'").stdout.splitlines()
        assert sorted(left) == ['"sleep 600" running', '"true" exited'], left
        assert (
            len(
                host.run(
                    "docker ps --quiet --filter label=com.docker.compose.service=web --filter label=com.docker.compose.oneoff=False"
                ).stdout.split()
            )
            == 1
        )
    finally:
        project.pulumi("config", "rm", "app.preDeploy", check=False)
        host.run(f"{oneoffs} --quiet | xargs -r docker rm --force", check=False)


def test_a_hook_and_a_registry_that_never_finish_fail_the_release_at_their_bounds_and_free_the_lock(
    project: Project, host: TestHost
) -> None:
    """app.hookTimeout and app.pullTimeout: a migration that hangs, then a registry that accepts connections and never
    answers (a listener inside the host), each fail their release; the next `up` takes the lock at once."""
    before = serving()
    project.set("app.imageTag", "v1")
    project.set("app.hookTimeout", "3")
    project.set("app.preDeploy", json.dumps(["echo migrating; sleep 601"]))
    try:
        result = project.pulumi("up", "--yes", "--skip-preview", check=False)
        assert result.returncode != 0
        output = result.stdout + result.stderr
        assert "pre-deploy hook did not finish in 3s (app.hookTimeout) and was stopped: echo migrating; sleep 601" in output
        assert "nothing was changed, the previous release still serves" in output
        assert serving() == before
        assert host.run("pgrep -f '^sleep 601$'", check=False).stdout == ""  # the hook went with its children
    finally:
        project.pulumi("config", "rm", "app.preDeploy", check=False)
        project.pulumi("config", "rm", "app.hookTimeout", check=False)

    host.run(
        "systemd-run --quiet --unit dropship-test-hung-registry python3 -c"
        " 'import socket\nserver = socket.create_server((\"127.0.0.1\", 5999))\nheld = []\nwhile True: held.append(server.accept())'"
    )
    try:
        wait_until(lambda: host.run("bash -c 'exec 3<>/dev/tcp/127.0.0.1/5999'", check=False).returncode == 0, "the hung registry", 30)
        # Below the engine's own TLS handshake timeout (10 s): the bound that ends the pull is dropship's.
        project.set("app.pullTimeout", "5")
        project.set("env.REGISTRY", "127.0.0.1:5999", secret=True)  # compose reads the image names' registry from .env
        result = project.pulumi("up", "--yes", "--skip-preview", check=False)
        assert result.returncode != 0
        output = result.stdout + result.stderr
        assert (
            "pulling images did not finish in 5s (app.pullTimeout): is the registry answering? The previous release still serves" in output
        )
        assert serving() == before
        assert host.run(f"flock -n {APP_DIR}/.deploy.lock true", check=False).returncode == 0
    finally:
        host.run("systemctl stop dropship-test-hung-registry", check=False)
        project.pulumi("config", "rm", "env.REGISTRY", check=False)
        project.pulumi("config", "rm", "app.pullTimeout", check=False)
    project.set("app.imageTag", before)
    project.set("app.lockTimeout", "0")
    try:
        project.up()
    finally:
        project.pulumi("config", "rm", "app.lockTimeout", check=False)
    assert serving() == before


def test_a_rollback_runs_the_image_the_release_ran_though_its_moving_tag_has_gone_on(project: Project) -> None:
    """app.pullPolicy always and a tag that moves (`main`): the registry's tag now names a build that crashes at start;
    the rollback runs the image the previous release ran, not the tag's new one."""
    moving = f"{REGISTRY}/dropship-example/web:moving-{secrets.token_hex(3)}"

    def point(tag: str) -> None:
        sh("docker", "tag", f"{REGISTRY}/dropship-example/web:{tag}", moving)
        sh("docker", "push", "--quiet", moving)

    point("v1")
    project.set("app.pullPolicy", "always")
    project.set("app.imageTag", moving.rsplit(":", 1)[1])
    try:
        project.up()
        assert serving() == "v1"
        point("v4-crash")
        project.set("app.healthRetries", "29")  # a moving tag changes nothing Pulumi sees: a setting makes the release
        result = project.pulumi("up", "--yes", "--skip-preview", check=False)
        assert result.returncode != 0
        output = result.stdout + result.stderr
        assert "failed and was rolled back: service web" in output, output[-3000:]
        assert "names another image since release" in output
        assert serving() == "v1"
    finally:
        project.pulumi("config", "rm", "app.pullPolicy", check=False)
        project.pulumi("config", "rm", "app.healthRetries", check=False)
        project.set("app.imageTag", "v2")
        sh("docker", "image", "rm", moving, check=False)
    project.up()
    assert serving() == "v2"
