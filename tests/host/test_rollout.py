"""rollout.py against a fake docker: every branch of rolling one service, fast."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from rollout import CommandError, Compose, NotReadyError, Waiter, rollout, run_docker

from tests.host.fake_docker import HEALTHY, RUNNING, STARTING, Clock, Container, FakeDocker, Step


def roll(docker: FakeDocker, timeout: float = 30, settle: float = 0) -> tuple[bool, Clock]:
    clock = Clock()
    compose = Compose("shop", "/srv/shop", ["compose.yaml"], run=docker)
    rolled = rollout(compose, Waiter(compose, clock=clock, sleep=clock.sleep), "api", deadline=timeout, settle=settle)
    return rolled, clock


def api(id: str, *steps: Step, health_output: str = "", logs: str = "") -> Container:
    return Container(id, "api", list(steps), health_output=health_output, logs=logs)


def changed(old: list[Container], new: list[Container]) -> FakeDocker:
    """A service running `old`, whose next containers will be `new`."""
    return FakeDocker(running=old, starts={"api": new})


def test_new_containers_start_beside_the_old_ones_and_the_old_ones_go_once_they_are_healthy() -> None:
    docker = changed([api("old1", HEALTHY)], [api("new1", STARTING, STARTING, HEALTHY)])
    rolled, clock = roll(docker, settle=2)
    assert rolled
    assert "compose up --detach --no-recreate --scale api=2 api" in docker.verbs()
    assert docker.verbs()[-2:] == ["stop old1", "rm --force old1"]
    assert [c.id for c in docker.running] == ["new1"]
    assert clock.now == 3  # two polls of 0.5 s while it started, then the 2 s to settle


def test_one_off_containers_of_the_service_are_neither_counted_nor_stopped() -> None:
    # A hook's `docker compose run api ...` without --rm, exited, and an operator's shell, still running.
    hook = Container("run1", "api", [("exited", None, 0, 0)], oneoff=True)
    shell = Container("run2", "api", [RUNNING], oneoff=True)
    other_project = Container("pr7api", "api", [HEALTHY], project="shop-pr-7")
    docker = changed([api("old1", HEALTHY), hook, shell, other_project], [api("new1", HEALTHY), api("new2", HEALTHY)])
    assert roll(docker)[0]
    assert "compose up --detach --no-recreate --scale api=2 api" in docker.verbs()
    assert docker.verbs()[-2:] == ["stop old1", "rm --force old1"]
    assert [c.id for c in docker.running] == ["run1", "run2", "pr7api", "new1"]


def test_every_old_container_is_doubled_then_replaced() -> None:
    docker = changed([api("old1", HEALTHY), api("old2", HEALTHY)], [api("new1", HEALTHY), api("new2", HEALTHY)])
    assert roll(docker)[0]
    assert "compose up --detach --no-recreate --scale api=4 api" in docker.verbs()
    assert docker.verbs()[-2:] == ["stop old1 old2", "rm --force old1 old2"]


def test_a_service_without_healthcheck_counts_as_ready_when_running() -> None:
    docker = changed([api("old1", RUNNING)], [api("new1", RUNNING)])
    assert roll(docker)[0]
    assert [c.id for c in docker.running] == ["new1"]


def test_a_service_not_running_yet_is_left_to_compose_up() -> None:
    docker = FakeDocker(starts={"api": [api("new1", HEALTHY)]})
    assert not roll(docker)[0]
    assert docker.verbs() == [
        "ps --all --quiet --no-trunc --filter label=com.docker.compose.project=shop"
        " --filter label=com.docker.compose.oneoff=False --filter label=com.docker.compose.service=api"
    ]


def test_a_container_that_exits_fails_at_once_with_its_exit_code_and_logs_and_the_old_one_stays() -> None:
    crashing = api("new1abcdef123456", STARTING, ("exited", "unhealthy", 3, 0), logs="line 1\nImportError: no module x\n")
    docker = changed([api("old1", HEALTHY)], [crashing])
    with pytest.raises(NotReadyError) as failure:
        roll(docker)
    assert str(failure.value) == (
        "service api: container new1abcdef12 exited with exit code 3; its last 20 log lines:\nline 1\nImportError: no module x"
    )
    assert "logs --tail 20 new1abcdef123456" in docker.verbs()
    assert docker.verbs()[-2:] == ["stop new1abcdef123456", "rm --force new1abcdef123456"]
    assert [c.id for c in docker.running] == ["old1"]


def test_a_restarting_container_fails_fast() -> None:
    docker = changed([api("old1", HEALTHY)], [api("new1", STARTING, ("running", "starting", 1, 1), logs="boom\n")])
    with pytest.raises(NotReadyError, match="service api: container new1 restarted with exit code 1; its last 20 log lines:\nboom"):
        roll(docker)


def test_an_unhealthy_container_shows_its_last_health_check() -> None:
    sick = api("new1", STARTING, ("running", "unhealthy", 0, 0), health_output="curl: (7) Failed to connect to 127.0.0.1 port 8000\n")
    docker = changed([api("old1", HEALTHY)], [sick])
    with pytest.raises(NotReadyError) as failure:
        roll(docker)
    assert (
        str(failure.value)
        == "service api: container new1 is unhealthy; last health check: curl: (7) Failed to connect to 127.0.0.1 port 8000"
    )


def test_a_container_still_starting_at_the_deadline_fails_with_what_it_waited_for() -> None:
    docker = changed([api("old1", HEALTHY)], [api("new1", STARTING, health_output="warming up")])
    with pytest.raises(NotReadyError) as failure:
        roll(docker, timeout=5)
    assert str(failure.value) == "not healthy in time: api new1 running/starting; last health check: warming up"
    assert [c.id for c in docker.running] == ["old1"]


def test_compose_starting_nothing_new_is_a_failure() -> None:
    docker = changed([api("old1", HEALTHY)], [])
    with pytest.raises(NotReadyError, match="service api: compose started no new container"):
        roll(docker)


def test_a_one_off_job_that_finished_counts_as_ready_but_not_a_service_that_exited() -> None:
    compose = Compose("shop", "/srv/shop", ["compose.yaml"], run=FakeDocker())
    done = Container("job", "migrate", [("exited", None, 0, 0)], restart_policy="no")
    stopped = Container("web", "web", [("exited", None, 0, 0)], restart_policy="unless-stopped")
    compose.run = FakeDocker(running=[done, stopped])
    Waiter(compose).until_ready(["job"], deadline=0)
    with pytest.raises(NotReadyError, match="service web: container web exited with exit code 0"):
        Waiter(compose).until_ready(["job", "web"], deadline=0)


def test_run_docker_gives_a_containers_log_from_both_its_streams(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docker = tmp_path / "docker"
    docker.write_text('#!/bin/sh\necho "to stdout"\necho "to stderr" >&2\n[ "$1" = logs ] || exit 4\n')
    docker.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    assert run_docker(["logs", "--tail", "20", "c1"]) == "to stdout\nto stderr\n"
    with pytest.raises(CommandError) as failure:
        run_docker(["ps"])
    assert failure.value.code == 4 and failure.value.stderr == "to stderr\n"


def test_a_crash_loop_seen_while_running_again_reports_the_exit_code_of_its_next_crash() -> None:
    # Docker's ExitCode is 0 while a restarted container runs; its next exit shows the 3.
    looping = api("new1", STARTING, ("running", "starting", 0, 1), ("running", None, 0, 1), ("restarting", None, 3, 1), logs="boom\n")
    docker = changed([api("old1", HEALTHY)], [looping])
    with pytest.raises(NotReadyError, match="service api: container new1 restarted with exit code 3; its last 20 log lines:\nboom"):
        roll(docker)
