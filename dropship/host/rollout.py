"""Compose on the server, and rolling one service at a time (the approach of docker-rollout).

For a service: start new containers beside the old ones (`up --detach --no-recreate --scale S=2N`),
wait until the new ones are healthy, failing fast when one exits or restarts, then stop the old
ones (`docker stop` honours their stop grace period) and remove them. On failure the new
containers are removed and the old ones keep serving. Standard library only: it runs on the
server with `python3`, beside release.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

DOCKER_TIMEOUT = 600.0
"""Seconds any docker command may take unless its caller gives another bound: a daemon or a registry
that hangs fails the release, which then frees the deploy lock."""


class Run(Protocol):
    """Runs a docker command line (without `docker`) and returns its stdout; raises CommandError."""

    def __call__(self, args: Sequence[str], timeout: float = DOCKER_TIMEOUT) -> str: ...


LOG_LINES = 20
SERVICE_LABEL = "com.docker.compose.service"
PROJECT_LABEL = "com.docker.compose.project"
ONEOFF_LABEL = "com.docker.compose.oneoff"


class CommandError(Exception):
    def __init__(self, args: Sequence[str], code: int, stderr: str) -> None:
        super().__init__(f"{' '.join(args)} exited {code}: {stderr.strip()}")
        self.code = code
        self.stderr = stderr


class TimedOutError(CommandError):
    """A command that did not finish within its bound."""

    def __init__(self, args: Sequence[str], timeout: float) -> None:
        super().__init__(args, 124, f"gave up after {timeout:g}s without an answer")
        self.timeout = timeout


class NotReadyError(Exception):
    """Containers did not become healthy; the message says which, and why."""


def run_docker(args: Sequence[str], timeout: float = DOCKER_TIMEOUT, data: bytes | None = None) -> str:
    merged = args[0] == "logs"  # a container's stderr is its log too: `docker logs` gives it on stderr
    stdout, stderr, code = bounded(["docker", *args], timeout, data, merge_stderr=merged)
    if code != 0:
        raise CommandError(["docker", *args], code, (stderr or stdout).decode(errors="replace"))
    return stdout.decode(errors="replace")


def bounded(argv: Sequence[str], timeout: float, data: bytes | None = None, *, merge_stderr: bool = False) -> tuple[bytes, bytes, int]:
    """Runs `argv` for at most `timeout` seconds: stdout, stderr, exit code. It runs in a session of its own, and on
    timeout the whole session is killed: `docker compose` is a plugin process of `docker`'s, which would outlive
    `docker` alone and keep the pipes open."""
    with subprocess.Popen(
        argv,
        stdin=subprocess.PIPE if data is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
        start_new_session=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(data, timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise TimedOutError(argv, timeout) from None
        return stdout, stderr or b"", process.returncode


@dataclass(frozen=True)
class State:
    service: str
    status: str
    """Docker's: created, running, restarting, exited, dead."""
    health: str | None
    """starting, healthy, unhealthy; None without a healthcheck."""
    exit_code: int
    restarts: int
    restart_policy: str
    last_health_output: str
    name: str = ""
    networks: Mapping[str, str] = field(default_factory=dict)
    """Network name -> the container's IPv4 address on it."""

    @classmethod
    def from_inspect(cls, info: Mapping[str, Any]) -> State:
        """From one container of `docker inspect`'s JSON."""
        state = info["State"]
        health = state.get("Health")
        labels = (info.get("Config") or {}).get("Labels") or {}
        log = (health or {}).get("Log") or []
        return cls(
            service=labels.get(SERVICE_LABEL, ""),
            status=state["Status"],
            health=health["Status"] if health else None,
            exit_code=int(state.get("ExitCode", 0)),
            restarts=int(info.get("RestartCount", 0)),
            restart_policy=((info.get("HostConfig") or {}).get("RestartPolicy") or {}).get("Name") or "no",
            last_health_output=(log[-1].get("Output", "") if log else "").strip(),
            name=str(info.get("Name", "")).lstrip("/"),
            networks={
                net: str(attached.get("IPAddress") or "")
                for net, attached in ((info.get("NetworkSettings") or {}).get("Networks") or {}).items()
            },
        )

    @property
    def ready(self) -> bool:
        return self.status == "running" and self.health in ("healthy", None)

    @property
    def finished(self) -> bool:
        """A one-off job (restart: no or on-failure) that has done its work."""
        return self.status == "exited" and self.exit_code == 0 and self.restart_policy in ("no", "on-failure")


@dataclass
class Compose:
    project: str
    directory: str
    files: Sequence[str]
    """Relative to `directory`."""
    run: Run = run_docker

    def __call__(self, *args: str, timeout: float = DOCKER_TIMEOUT) -> str:
        words = ["compose", "--project-name", self.project, "--project-directory", self.directory]
        for name in self.files:
            words += ["--file", f"{self.directory}/{name}"]
        return self.run([*words, *args], timeout=timeout)

    def containers(self, service: str | None = None) -> list[str]:
        """The project's (or one service's) own containers, stopped ones too. Not `compose ps`, which also
        lists the one-off containers of `docker compose run` (a hook's, an operator's shell): those are
        never rolled, counted or stopped."""
        filters = [f"label={PROJECT_LABEL}={self.project}", f"label={ONEOFF_LABEL}=False"]
        if service:
            filters.append(f"label={SERVICE_LABEL}={service}")
        return self.run(["ps", "--all", "--quiet", "--no-trunc", *(w for f in filters for w in ("--filter", f))]).split()

    def inspect(self, containers: Sequence[str]) -> dict[str, State]:
        if not containers:
            return {}
        return {c: State.from_inspect(info) for c, info in zip(containers, json.loads(self.run(["inspect", *containers])), strict=True)}

    def scale(self, service: str, count: int) -> None:
        # Not --no-deps: compose would leave depends_on out of the new containers' config hash, and
        # the `up` that follows would recreate them (and their dependents) all at once.
        self("up", "--detach", "--no-recreate", "--scale", f"{service}={count}", service)

    def logs(self, container: str) -> str:
        return self.run(["logs", "--tail", str(LOG_LINES), container])

    def stop_and_remove(self, containers: Sequence[str]) -> None:
        if containers:
            self.run(["stop", *containers])
            self.run(["rm", "--force", *containers])


@dataclass
class Waiter:
    """Polls containers until they are ready; `restarts` are the counts that were already there."""

    compose: Compose
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    restarts: dict[str, int] = field(default_factory=dict)
    unhealthy_final: bool = True
    """Docker's "unhealthy" fails at once; behind dropship's edge it is not final (no request reached the
    container), and the container is waited for until the deadline."""

    def until_ready(self, containers: Sequence[str], deadline: float) -> None:
        while True:
            states = self.compose.inspect(containers)
            for container, state in states.items():
                self.fail_fast(container, state)
            if all(s.ready or s.finished for s in states.values()):
                return
            if self.clock() >= deadline:
                waiting = ", ".join(f"{s.service} {c[:12]} {s.status}/{s.health}" for c, s in states.items() if not s.ready)
                last = next((s.last_health_output for s in states.values() if s.last_health_output), "none yet")
                raise NotReadyError(f"not healthy in time: {waiting}; last health check: {last}")
            self.sleep(0.5)

    def fail_fast(self, container: str, state: State) -> None:
        restarted = state.restarts > self.restarts.get(container, 0) or state.status == "restarting"
        if (state.status in ("exited", "dead") and not state.finished) or restarted:
            how = "restarted" if restarted and state.status != "exited" else state.status
            if state.status == "running":
                state = self._next_exit(container, state)
            raise NotReadyError(
                f"service {state.service}: container {container[:12]} {how} with exit code {state.exit_code}; "
                f"its last {LOG_LINES} log lines:\n{self.compose.logs(container).rstrip()}"
            )
        if state.health == "unhealthy" and self.unhealthy_final:
            raise NotReadyError(
                f"service {state.service}: container {container[:12]} is unhealthy; last health check: {state.last_health_output}"
            )

    def _next_exit(self, container: str, state: State, wait: float = 3) -> State:
        """A container that restarted and runs again says exit code 0: its next exit (a crash loop's) says
        the real one, which comes within seconds."""
        deadline = self.clock() + wait
        while self.clock() < deadline:
            self.sleep(0.2)
            again = self.compose.inspect([container])[container]
            if again.status != "running":
                return again
        return state


def rollout(compose: Compose, waiter: Waiter, service: str, *, deadline: float, settle: float = 0) -> bool:
    """Replaces the containers of `service`, new ones healthy before the old ones go; `settle`
    seconds between the two let the edge proxy learn the new ones (its DNS refresh).

    Every time, changed or not: compose's own `config --hash` is not the hash it labels containers
    with (compose 2.26). False when the service has no container yet (`up` starts it)."""
    old = compose.containers(service)
    if not old:
        return False
    compose.scale(service, 2 * len(old))
    new = [c for c in compose.containers(service) if c not in old]
    if not new:
        raise NotReadyError(f"service {service}: compose started no new container")
    try:
        waiter.until_ready(new, deadline)
    except NotReadyError:
        compose.stop_and_remove(new)
        raise
    waiter.sleep(settle)
    compose.stop_and_remove(old)
    return True
