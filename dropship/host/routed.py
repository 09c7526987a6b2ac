"""The services behind dropship's edge (`edge.routes`): their compose override, and the switch of a release.

The override (`dropship-edge.yaml`, rendered from compose's own config) attaches each routed service to the
edge's network and drops its host ports and container_name: the edge reaches it by container name, and its
old and new containers run side by side during a release.

The switch, for one routed service: start new containers beside the old ones (the edge does not know them
yet); wait for Docker's health status and for the route's health path answering at the container's own
address; only then point the edge at them, wait until the old ones have no request in flight (at most
`drain` seconds), and stop the old ones with their stop grace period. On failure the new containers go and
the edge never sent them a request.
"""

from __future__ import annotations

import http.client
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edge import NETWORK, Edge, Route, Site
from rollout import Compose, NotReadyError, Waiter

OVERRIDE = "dropship-edge.yaml"
PROBE_TIMEOUT = 3


def override(config: Mapping[str, Any], routes: Sequence[Route]) -> str:
    """The compose override of the routed services, from `docker compose config --format json`.

    YAML for compose's `!reset`, written by hand: its values are names only."""
    services = config.get("services") or {}
    lines = ["# dropship: the routed services behind the edge (edge.routes); rendered by each release", "services:"]
    for name in dict.fromkeys(r.service for r in routes):
        service = services.get(name)
        if service is None:
            raise NotReadyError(f"edge.routes names service {name}, which the compose files do not define")
        lines.append(f"  {_quote(name)}:")
        if service.get("ports"):
            lines.append("    ports: !reset []")
        if service.get("container_name"):
            lines.append("    container_name: !reset null")
        lines.append("    networks:")
        for network in (*(service.get("networks") or {"default": None}), NETWORK):
            lines.append(f"      {_quote(network)}: {{}}")
    lines += ["networks:", f"  {NETWORK}:", f"    name: {NETWORK}", "    external: true"]
    return "\n".join(lines) + "\n"


def _quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def probe(address: str, port: int, path: str | None) -> str | None:
    """None when the container answers at its own address (2xx or 3xx at `path`, or accepts a connection
    without one); otherwise why not."""
    try:
        if path is None:
            socket.create_connection((address, port), PROBE_TIMEOUT).close()
            return None
        connection = http.client.HTTPConnection(address, port, timeout=PROBE_TIMEOUT)
        try:
            connection.request("GET", path, headers={"User-Agent": "dropship-edge-check"})
            response = connection.getresponse()
            body = " ".join(response.read(200).decode(errors="replace").split())
        finally:
            connection.close()
    except (OSError, http.client.HTTPException) as error:
        return f"no answer at {address}:{port}{path or ''}: {error}"
    return None if 200 <= response.status < 400 else f"GET {path} answered {response.status}: {body}"


@dataclass
class Switch:
    """Routes a stack's services through the edge, one service at a time."""

    compose: Compose
    waiter: Waiter
    edge: Edge
    site: Site
    drain: float
    check: Callable[[str, int, str | None], str | None] = probe
    upstreams: dict[str, list[str]] = field(default_factory=dict)
    """Service -> the container names the edge sends its requests to."""

    def __post_init__(self) -> None:
        self.upstreams = {r.service: self.names(self.compose.containers(r.service)) for r in self.site.routes}

    def names(self, containers: Sequence[str]) -> list[str]:
        return sorted(s.name for s in self.compose.inspect(containers).values())

    def publish(self, draining: Sequence[str] = ()) -> None:
        self.edge.publish(self.site.project, self.site.render(self.upstreams, draining))

    def roll(self, service: str, deadline: float) -> None:
        route = next(r for r in self.site.routes if r.service == service)
        old = self.compose.containers(service)
        if old:
            self.compose.scale(service, 2 * len(old))
        else:
            self.compose("up", "--detach", "--no-recreate", service)
        new = [c for c in self.compose.containers(service) if c not in old]
        if not new:
            raise NotReadyError(f"service {service}: compose started no new container")
        try:
            self.waiter.until_ready(new, deadline)
            self.until_answering(service, route, new, deadline)
        except NotReadyError:
            self.compose.stop_and_remove(new)
            raise
        old_names = self.upstreams.get(service, [])
        self.upstreams[service] = self.names(new)
        draining = [f"{name}:{route.port}" for name in old_names]
        self.publish(draining)
        self.wait_drained(draining)
        self.compose.stop_and_remove(old)
        if draining:
            self.publish()

    def until_answering(self, service: str, route: Route, containers: Sequence[str], deadline: float) -> None:
        pending = list(containers)
        while True:
            states = self.compose.inspect(pending)
            reasons = {}
            for container, state in states.items():
                self.waiter.fail_fast(container, state)
                address = state.networks.get(NETWORK, "")
                reason = self.check(address, route.port, route.health) if address else f"not on the network {NETWORK}"
                if reason is not None:
                    reasons[container] = reason
            pending = [c for c in pending if c in reasons]
            if not pending:
                return
            if self.waiter.clock() >= deadline:
                container, reason = next(iter(reasons.items()))
                raise NotReadyError(f"service {service}: container {container[:12]} does not answer its route {route}: {reason}")
            self.waiter.sleep(0.5)

    def wait_drained(self, draining: Sequence[str]) -> None:
        if not draining:
            return
        deadline = self.waiter.clock() + self.drain
        while self.edge.in_flight(draining) and self.waiter.clock() < deadline:
            self.waiter.sleep(0.2)
