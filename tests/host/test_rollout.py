"""rollout.py against a fake docker: every branch of rolling one service, fast."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from dropship.host.rollout import Compose, RolloutError, rollout


@dataclass
class Container:
    id: str
    states: list[tuple[str, str | None, int, int]]
    """(status, health, exit code, restarts) per inspection; the last one repeats."""
    health_output: str = ""
    logs: str = ""
    seen: int = 0

    def state(self) -> dict[str, object]:
        status, health, code, _ = self.states[min(self.seen, len(self.states) - 1)]
        self.seen += 1
        info: dict[str, object] = {"Status": status, "ExitCode": code}
        if health is not None:
            info["Health"] = {"Status": health, "Log": [{"Output": self.health_output}] if self.health_output else []}
        return info

    def restarts(self) -> int:
        return self.states[min(self.seen - 1, len(self.states) - 1)][3]


@dataclass
class FakeDocker:
    """The service's containers before the rollout, and the ones `up --scale` will add."""

    old: list[Container]
    added: list[Container]
    calls: list[list[str]] = field(default_factory=list)
    scaled: bool = False

    def __call__(self, args: Sequence[str]) -> str:
        args = list(args)
        self.calls.append(args)
        if args[0] == "compose":
            verb = args[args.index("--file") + 2]
            if verb == "ps":
                return "".join(f"{c.id}\n" for c in self.old + (self.added if self.scaled else []))
            if verb == "up":
                self.scaled = True
                return ""
        by_id = {c.id: c for c in self.old + self.added}
        if args[0] == "inspect":
            container = by_id[args[-1]]
            return json.dumps(container.state()) if args[2] == "{{json .State}}" else f"{container.restarts()}\n"
        if args[0] == "logs":
            return by_id[args[-1]].logs
        if args[0] in ("stop", "rm"):
            return ""
        raise AssertionError(f"unexpected docker {args}")

    def removed(self) -> list[str]:
        return [c for call in self.calls if call[0] == "rm" for c in call[2:]]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def roll(docker: FakeDocker, timeout: float = 30) -> tuple[list[str], Clock]:
    clock = Clock()
    new = rollout(Compose("shop", ["compose.yaml"], run=docker), "api", timeout=timeout, clock=clock, sleep=clock.sleep)
    return new, clock


RUNNING = ("running", None, 0, 0)
STARTING = ("running", "starting", 0, 0)
HEALTHY = ("running", "healthy", 0, 0)


def test_new_containers_start_beside_the_old_ones_and_the_old_ones_go_once_they_are_healthy() -> None:
    docker = FakeDocker(old=[Container("old1", [HEALTHY])], added=[Container("new1", [STARTING, STARTING, HEALTHY])])
    new, _ = roll(docker)
    assert new == ["new1"]
    up = next(c for c in docker.calls if c[0] == "compose" and "up" in c)
    assert up[-6:] == ["--detach", "--no-deps", "--no-recreate", "--scale", "api=2", "api"]
    assert ["stop", "old1"] in docker.calls and docker.removed() == ["old1"]
    assert docker.calls.index(["stop", "old1"]) > max(i for i, c in enumerate(docker.calls) if c[-1] == "new1")


def test_a_service_without_healthcheck_counts_as_ready_when_running() -> None:
    docker = FakeDocker(old=[Container("old1", [RUNNING])], added=[Container("new1", [RUNNING])])
    assert roll(docker)[0] == ["new1"]


def test_a_first_deploy_starts_one_container() -> None:
    docker = FakeDocker(old=[], added=[Container("new1", [HEALTHY])])
    assert roll(docker)[0] == ["new1"]
    assert next(c for c in docker.calls if "up" in c)[-2] == "api=1"
    assert docker.removed() == []


def test_a_container_that_exits_fails_at_once_with_its_exit_code_and_logs_and_the_old_one_stays() -> None:
    crashing = Container("new1abcdef123456", [STARTING, ("exited", "unhealthy", 3, 0)], logs="line 1\nImportError: no module x\n")
    docker = FakeDocker(old=[Container("old1", [HEALTHY])], added=[crashing])
    with pytest.raises(RolloutError) as failure:
        roll(docker)
    assert str(failure.value) == (
        "service api: container new1abcdef12 exited with exit code 3; its last 20 log lines:\nline 1\nImportError: no module x"
    )
    assert ["logs", "--tail", "20", "new1abcdef123456"] in docker.calls
    assert docker.removed() == ["new1abcdef123456"]
    assert ["stop", "old1"] not in docker.calls


def test_a_restarting_container_fails_fast() -> None:
    docker = FakeDocker(old=[Container("old1", [HEALTHY])], added=[Container("new1", [STARTING, ("running", "starting", 0, 1)])])
    with pytest.raises(RolloutError, match="service api: container new1 running with exit code 0"):
        roll(docker)


def test_an_unhealthy_container_shows_its_last_health_check() -> None:
    sick = Container(
        "new1", [STARTING, ("running", "unhealthy", 0, 0)], health_output="curl: (7) Failed to connect to 127.0.0.1 port 8000\n"
    )
    docker = FakeDocker(old=[Container("old1", [HEALTHY])], added=[sick])
    with pytest.raises(RolloutError) as failure:
        roll(docker)
    assert (
        str(failure.value)
        == "service api: container new1 is unhealthy; last health check: curl: (7) Failed to connect to 127.0.0.1 port 8000"
    )


def test_a_container_still_starting_at_the_deadline_fails_with_what_it_waited_for() -> None:
    docker = FakeDocker(old=[Container("old1", [HEALTHY])], added=[Container("new1", [STARTING], health_output="warming up")])
    with pytest.raises(RolloutError) as failure:
        roll(docker, timeout=5)
    assert str(failure.value) == "service api: not healthy in time (new1 running/starting); last health check: warming up"
    assert docker.removed() == ["new1"]


def test_compose_starting_nothing_new_is_a_failure() -> None:
    docker = FakeDocker(old=[Container("old1", [HEALTHY])], added=[])
    with pytest.raises(RolloutError, match="compose started no new container"):
        roll(docker)
