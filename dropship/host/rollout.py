"""Rolling one compose service at a time, each defined once (issue 12; the approach of docker-rollout).

For a service: start new containers beside the old ones (`up --detach --no-recreate --scale S=2N`),
wait until the new ones are healthy, failing fast when one exits or restarts, then stop the old
ones (their stop grace period honoured by `docker stop`) and remove them. On failure the new
containers are removed and the old ones keep serving. Standard library only: it runs on the
server with `python3`.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Run = Callable[[Sequence[str]], str]
"""Runs a docker command line and returns its stdout; raises CommandError."""

LOG_LINES = 20


class CommandError(Exception):
    def __init__(self, args: Sequence[str], code: int, stderr: str) -> None:
        super().__init__(f"{' '.join(args)} exited {code}: {stderr.strip()}")
        self.code = code


class RolloutError(Exception):
    """The new containers of a service did not become healthy; the old ones still serve."""


def run_docker(args: Sequence[str]) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise CommandError(["docker", *args], result.returncode, result.stderr)
    return result.stdout


@dataclass(frozen=True)
class State:
    status: str
    """Docker's: created, running, restarting, exited, ..."""
    health: str | None
    """starting, healthy, unhealthy; None without a healthcheck."""
    exit_code: int
    restarts: int
    last_health_output: str


@dataclass
class Compose:
    project: str
    files: Sequence[str]
    run: Run = run_docker

    def _compose(self, *args: str) -> str:
        words = ["compose", "--project-name", self.project]
        for name in self.files:
            words += ["--file", name]
        return self.run([*words, *args])

    def containers(self, service: str) -> list[str]:
        return self._compose("ps", "--all", "--quiet", service).split()

    def scale(self, service: str, count: int) -> None:
        self._compose("up", "--detach", "--no-deps", "--no-recreate", "--scale", f"{service}={count}", service)

    def state(self, container: str) -> State:
        info = json.loads(self.run(["inspect", "--format", "{{json .State}}", container]))
        health = info.get("Health")
        restarts = int(self.run(["inspect", "--format", "{{.RestartCount}}", container]).strip() or 0)
        log = (health or {}).get("Log") or []
        return State(
            status=info["Status"],
            health=health["Status"] if health else None,
            exit_code=int(info.get("ExitCode", 0)),
            restarts=restarts,
            last_health_output=(log[-1].get("Output", "") if log else "").strip(),
        )

    def logs(self, container: str) -> str:
        return self.run(["logs", "--tail", str(LOG_LINES), container])

    def stop_and_remove(self, containers: Sequence[str]) -> None:
        if containers:
            self.run(["stop", *containers])
            self.run(["rm", "--force", *containers])


def rollout(
    compose: Compose,
    service: str,
    *,
    timeout: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[str]:
    """Replaces the containers of `service`, new ones healthy before the old ones go; returns the new ids."""
    old = compose.containers(service)
    compose.scale(service, max(2 * len(old), 1))
    new = [c for c in compose.containers(service) if c not in old]
    if not new:
        raise RolloutError(f"service {service}: compose started no new container")
    deadline = clock() + timeout
    try:
        _wait_healthy(compose, service, new, deadline=deadline, clock=clock, sleep=sleep)
    except RolloutError:
        compose.stop_and_remove(new)
        raise
    compose.stop_and_remove(old)
    return new


def _wait_healthy(
    compose: Compose,
    service: str,
    containers: Sequence[str],
    *,
    deadline: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> None:
    while True:
        states = {c: compose.state(c) for c in containers}
        for container, state in states.items():
            if state.status in ("exited", "dead") or state.restarts > 0 or state.status == "restarting":
                raise RolloutError(
                    f"service {service}: container {container[:12]} {state.status} with exit code {state.exit_code}; "
                    f"its last {LOG_LINES} log lines:\n{compose.logs(container).rstrip()}"
                )
            if state.health == "unhealthy":
                raise RolloutError(
                    f"service {service}: container {container[:12]} is unhealthy; last health check: {state.last_health_output}"
                )
        if all(s.status == "running" and s.health in ("healthy", None) for s in states.values()):
            return
        if clock() >= deadline:
            waiting = ", ".join(f"{c[:12]} {s.status}/{s.health}" for c, s in states.items())
            last = next((s.last_health_output for s in states.values() if s.last_health_output), "none yet")
            raise RolloutError(f"service {service}: not healthy in time ({waiting}); last health check: {last}")
        sleep(0.5)
