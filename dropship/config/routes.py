"""`edge.routes`: each line parsed and checked against the compose files before anything is registered.

The host side (dropship/host/edge.py) reads the same `PATH SERVICE:PORT [HEALTH_PATH]` form from release.py's
arguments."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dropship.config.errors import Problem, flat_key, given
from dropship.config.sections import AppSettings, EdgeSettings

LINE = re.compile(r"^(?P<path>\S+)\s+(?P<service>[^\s:]+):(?P<port>\S+)(?:\s+(?P<health>\S+))?$")
SERVICE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
PATH = re.compile(r"^/[A-Za-z0-9._~!$&'()+,;=:@%/*-]*$")
EXAMPLE = "'/api/* api:8000 /api/health'"
EDGE_PORTS = ("80", "443")


@dataclass(frozen=True)
class Route:
    path: str
    service: str
    port: int
    health: str | None

    def __str__(self) -> str:
        return f"{self.path} {self.service}:{self.port}" + (f" {self.health}" if self.health else "")


def parse(line: str) -> Route | str:
    """The route, or what is wrong with the line."""
    match = LINE.fullmatch(line.strip())
    if match is None:
        return f"expected 'PATH SERVICE:PORT [HEALTH_PATH]' such as {EXAMPLE}; got {given(line)}"
    path, service, port, health = match["path"], match["service"], match["port"], match["health"]
    if not PATH.fullmatch(path) or "*" in path[:-1]:
        return f"the path must start with / and may end with * (e.g. /api/* or /*); got {given(path)}"
    if not SERVICE.fullmatch(service):
        return f"expected a compose service name before ':'; got {given(service)}"
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        return f"the port of {service} must be a number from 1 to 65535, the port its container listens on; got {given(port)}"
    if health is not None and (not PATH.fullmatch(health) or "*" in health):
        return f"the health path must start with / (e.g. /health); got {given(health)}"
    return Route(path=path, service=service, port=int(port), health=health)


def routes(edge: EdgeSettings) -> tuple[Route, ...]:
    """The parsed routes of settings that passed `check_edge`."""
    parsed = tuple(parse(line) for line in edge.routes)
    return tuple(r for r in parsed if isinstance(r, Route))


def check_edge(
    edge: EdgeSettings, app: AppSettings, services: Mapping[str, Sequence[Mapping[str, Any]]] | None, problems: list[Problem]
) -> None:
    """`services`: the compose files' services (None when a file is not YAML: only the lines are checked)."""
    seen: dict[str, int] = {}
    routed: set[str] = set()
    for i, line in enumerate(edge.routes):
        key = flat_key("edge", "routes", i)
        route = parse(line)
        if isinstance(route, str):
            problems.append(Problem(key, route))
            continue
        if route.path in seen:
            problems.append(
                Problem(key, f"edge.routes[{seen[route.path]}] routes {route.path} already; give each path one service, or remove one")
            )
            continue
        seen[route.path] = i
        routed.add(route.service)
        if services is not None and route.service not in services:
            known = ", ".join(sorted(services)) or "none"
            problems.append(
                Problem(
                    key, f"no service {given(route.service)} in {', '.join(app.compose_files)} (its services: {known}); route one of those"
                )
            )
    if not edge.routes or services is None:
        return
    for name, definitions in sorted(services.items()):
        if name in routed:
            continue
        for definition in definitions:
            for port in definition.get("ports") or ():
                published = host_port(port)
                if published in EDGE_PORTS:
                    problems.append(
                        Problem(
                            "edge.routes",
                            f"service {name} publishes host port {published}, which dropship's edge serves: route it "
                            f"(e.g. '/* {name}:{container_port(port) or published}') or remove that port from its compose file",
                        )
                    )


def host_port(port: Any) -> str | None:
    """The host port a compose `ports` entry binds, or None when Docker picks one."""
    if isinstance(port, dict):
        published = port.get("published")
        return str(published) if published not in (None, "") else None
    parts = str(port).rsplit("/", 1)[0].split(":")
    return parts[-2] if len(parts) >= 2 and parts[-2] else None


def container_port(port: Any) -> str | None:
    if isinstance(port, dict):
        target = port.get("target")
        return str(target) if target is not None else None
    return str(port).rsplit("/", 1)[0].split(":")[-1] or None
