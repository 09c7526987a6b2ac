"""A stand-in for `docker` (the `run` of rollout.Compose): containers whose states change as they are inspected."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from rollout import CommandError, TimedOutError

Step = tuple[str, str | None, int, int]
"""(status, health, exit code, restart count) at one inspection; the last one repeats."""

RUNNING: Step = ("running", None, 0, 0)
STARTING: Step = ("running", "starting", 0, 0)
HEALTHY: Step = ("running", "healthy", 0, 0)


@dataclass
class Container:
    id: str
    service: str
    steps: list[Step]
    tag: str = "v1"
    """Which release it was created for (a label, as compose would not say it)."""
    restart_policy: str = "unless-stopped"
    health_output: str = ""
    logs: str = ""
    seen: int = 0
    address: str = "172.30.0.9"
    """Its address on dropship's edge network."""
    mounts: tuple[str, ...] = ()
    """Host paths it bind-mounts."""
    oneoff: bool = False
    """A `docker compose run` container: compose labels it com.docker.compose.oneoff=True."""
    project: str = "shop"

    def inspect(self) -> dict[str, object]:
        status, health, code, restarts = self.steps[min(self.seen, len(self.steps) - 1)]
        self.seen += 1
        state: dict[str, object] = {"Status": status, "ExitCode": code}
        if health is not None:
            state["Health"] = {"Status": health, "Log": [{"Output": self.health_output}] if self.health_output else []}
        return {
            "State": state,
            "RestartCount": restarts,
            "Config": {"Labels": self.labels()},
            "HostConfig": {"RestartPolicy": {"Name": self.restart_policy}},
            "Name": f"/shop-{self.id}",
            "Mounts": [{"Type": "bind", "Source": source, "Destination": "/mnt"} for source in self.mounts],
            "NetworkSettings": {"Networks": {"shop_default": {"IPAddress": "172.18.0.9"}, "dropship-edge": {"IPAddress": self.address}}},
        }

    def labels(self) -> dict[str, str]:
        return {
            "com.docker.compose.project": self.project,
            "com.docker.compose.service": self.service,
            "com.docker.compose.oneoff": str(self.oneoff),
            "dropship.test/release": self.tag,
        }


@dataclass
class FakeDocker:
    """`running`: the project's containers now. `starts`: per service, the containers `up` creates next, in order.
    `fail`: compose verbs that fail."""

    running: list[Container] = field(default_factory=list)
    starts: dict[str, list[Container]] = field(default_factory=dict)
    fail: dict[str, str] = field(default_factory=dict)
    images: dict[str, list[str]] = field(default_factory=dict)
    """`config --images` per IMAGE_TAG."""
    calls: list[list[str]] = field(default_factory=list)
    image_ids: dict[str, str] = field(default_factory=dict)
    """Image reference -> the ID of the image it names here (what `docker tag` and a pull change)."""
    pulled: dict[str, str] = field(default_factory=dict)
    """What the registry's tags name: `compose pull` points those references at these IDs."""
    timeouts: dict[str, float] = field(default_factory=dict)
    """The bound of each call, by its short form (`verbs`)."""
    hang: set[str] = field(default_factory=set)
    """Compose verbs that never answer: they raise TimedOutError at their bound."""

    def __call__(self, args: Sequence[str], timeout: float = 600) -> str:
        args = list(args)
        self.calls.append(args)
        self.timeouts[self.verbs()[-1]] = timeout
        if args[0] == "compose" and _compose_verb(args)[0] in self.hang:
            raise TimedOutError(["docker", *args], timeout)
        if args[0] == "compose":
            return self._compose(args)
        by_id = {c.id: c for c in self.running}
        match args[0]:
            case "ps":
                wanted = [f.removeprefix("label=").split("=", 1) for f in args[args.index("--no-trunc") + 1 :][1::2]]
                return "".join(f"{c.id}\n" for c in self.running if all(c.labels().get(k) == v for k, v in wanted))
            case "inspect":
                return json.dumps([by_id[c].inspect() for c in args[1:]])
            case "logs":
                return by_id[args[-1]].logs
            case "stop":
                return ""
            case "rm":
                self.running = [c for c in self.running if c.id not in args[2:]]
                return ""
            case "image" if args[1] == "inspect":
                if args[-1] not in self.image_ids:
                    raise CommandError(["docker", *args], 1, f"Error: No such image: {args[-1]}")
                return f"{self.image_ids[args[-1]]}\n"
            case "image" if args[1] == "ls":
                repository = args[-1]
                return "".join(f"{ref}\n" for ref in sorted(self.image_ids) if ref.partition(":")[0] == repository)
            case "image" if args[1] == "rm":
                for ref in args[2:]:
                    self.image_ids.pop(ref, None)
                return ""
            case "image":
                return ""
            case "tag":
                self.image_ids[args[2]] = args[1]
                return ""
            case "info":  # not a Swarm manager
                return "false\n"
        raise AssertionError(f"unexpected docker {args}")

    def _compose(self, args: list[str]) -> str:
        verb, *rest = _compose_verb(args)
        if verb in self.fail:
            raise CommandError(["docker", *args], 1, self.fail[verb])
        match verb:
            case "up" if "--scale" in rest:
                service, count = rest[rest.index("--scale") + 1].split("=")
                self._start(service, int(count))
                return ""
            case "up":
                for service in list(self.starts):
                    self._start(service, 1)
                return ""
            case "config" if rest == ["--images"]:
                return "".join(f"{image}\n" for image in self.images.get(os.environ["IMAGE_TAG"], []))
            case "pull":
                self.image_ids.update(self.pulled)
                return ""
        raise AssertionError(f"unexpected docker {args}")

    def _start(self, service: str, count: int) -> None:
        """Takes the service's next containers from `starts` until it has `count`."""
        queue = self.starts.get(service, [])
        while queue and sum((c.project, c.service, c.oneoff) == ("shop", service, False) for c in self.running) < count:
            self.running.append(queue.pop(0))

    def verbs(self) -> list[str]:
        """The calls in short: compose verbs with their arguments, other docker verbs with theirs."""
        return [" ".join(["compose", *_compose_verb(call)] if call[0] == "compose" else call) for call in self.calls]


def _compose_verb(args: list[str]) -> list[str]:
    """A compose call without its project and files: the verb and its arguments."""
    words = args[args.index("--project-directory") + 2 :]
    while words and words[0] == "--file":
        words = words[2:]
    return words


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
