"""The compose app as a Swarm stack: `docker compose config --format json` in, the file `docker stack
deploy` takes out. Standard library only: it runs on the Swarm's first server, beside release.py.

What dropship adds, unless the app's own `deploy:` says otherwise:
- every service is found by DNS round robin (`endpoint_mode: dnsrr`): no virtual IP, so no IPVS;
- a service with a published port or a volume runs on the data node (the server with the data volume,
  labelled `dropship.data`), once, its ports published on that server (`mode: host`): a volume lives on
  one server, and the load balancer sends traffic where the edge answers;
- a rolling service (app.rollingServices) runs `replicas` tasks spread over the servers, and an update
  starts each new task first and stops the old one once the new one is healthy;
- every update rolls back by itself when a new task fails (`failure_action: rollback`);
- the networks are attachable, so that a pre-deploy hook's one-off container can join them;
- what the Swarm ignores or refuses (depends_on, restart, container_name, pull_policy) is left out,
  `restart: "no"` and `on-failure` becoming the restart policy.

With `edge.routes`, dropship's edge (Caddy) is a service of the stack, `dropship-edge`, on the data node
with ports 80 and 443, certificates in the volume `dropship-edge-data` (the one-server edge's). Routed
services publish no port; they roll as rolling services do (start-first), or, when a volume pins them to the
data node, start-first too if their only mounts are read-only binds (files of the app).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edge import CONFIG_VOLUME, DATA_VOLUME, ENVIRONMENT, LABEL, START_SCRIPT

DATA_LABEL = "dropship.data"
VERSION = "3.8"

KEPT = (
    "image",
    "command",
    "entrypoint",
    "environment",
    "healthcheck",
    "stop_grace_period",
    "stop_signal",
    "user",
    "working_dir",
    "labels",
    "cap_add",
    "cap_drop",
    "init",
    "tmpfs",
    "ulimits",
    "hostname",
    "extra_hosts",
    "sysctls",
    "logging",
    "configs",
    "secrets",
)
"""Service keys that mean the same on a Swarm."""


class StackError(Exception):
    """The app cannot run on a Swarm as it is; the message says why and what to change."""


EDGE_SERVICE = "dropship-edge"


@dataclass(frozen=True)
class EdgeService:
    """dropship's edge as a service of the stack: its image, and the services it routes to."""

    image: str
    routed: tuple[str, ...]


def render(config: Mapping[str, Any], *, replicas: int, rolling: Sequence[str], edge: EdgeService | None = None) -> dict[str, Any]:
    routed = edge.routed if edge is not None else ()
    services = {
        name: _service(name, service, replicas=replicas, rolling=name in rolling, routed=name in routed)
        for name, service in config["services"].items()
    }
    if edge is not None:
        if EDGE_SERVICE in services:
            raise StackError(f"the app has a service named {EDGE_SERVICE}, the name of dropship's edge: rename it")
        edge_networks = sorted({n for name in routed for n in services[name]["networks"]}) or ["default"]
        services[EDGE_SERVICE] = _edge_service(edge.image, edge_networks)
    stack: dict[str, Any] = {"version": VERSION, "services": services}
    networks = {name: _network(network) for name, network in (config.get("networks") or {"default": {}}).items()}
    stack["networks"] = networks
    volumes = {name: _volume(volume) for name, volume in (config.get("volumes") or {}).items()}
    if edge is not None:
        volumes.update({CONFIG_VOLUME: {"name": CONFIG_VOLUME}, DATA_VOLUME: {"name": DATA_VOLUME}})
    if volumes:
        stack["volumes"] = volumes
    return stack


def _edge_service(image: str, networks: list[str]) -> dict[str, Any]:
    """The one-server edge container's command, environment and volumes (edge.py), as a Swarm service."""
    # `docker stack deploy` interpolates the file as compose does: `$$` leaves the shell one `$`.
    assert all("$" not in value for value in ENVIRONMENT.values())
    return {
        "image": image,
        "entrypoint": ["/bin/sh", "-c", START_SCRIPT.replace("$", "$$")],
        "environment": dict(ENVIRONMENT),
        "labels": {LABEL: "true"},
        "ports": [{"target": port, "published": port, "protocol": "tcp", "mode": "host"} for port in (80, 443)],
        "volumes": [
            {"type": "volume", "source": CONFIG_VOLUME, "target": "/etc/caddy"},
            {"type": "volume", "source": DATA_VOLUME, "target": "/data"},
        ],
        "networks": networks,
        "deploy": {
            "endpoint_mode": "dnsrr",
            "replicas": 1,
            "placement": {"constraints": [f"node.labels.{DATA_LABEL} == true"]},
            # It holds the host's ports: the new task can only start once the old one stopped.
            "update_config": {"parallelism": 1, "order": "stop-first", "failure_action": "rollback", "monitor": "10s"},
            "rollback_config": {"parallelism": 1, "order": "stop-first", "failure_action": "pause"},
            "restart_policy": {"condition": "any", "delay": "2s"},
        },
    }


def hook_compose_file(config: Mapping[str, Any], *, project: str) -> dict[str, Any]:
    """The compose file a pre-deploy hook's `docker compose run` sees: the app's services without their
    dependencies (they run on the Swarm already) on the stack's own networks (attachable overlays)."""
    services = {name: {k: v for k, v in service.items() if k != "depends_on"} for name, service in config["services"].items()}
    networks = {
        name: {"name": f"{project}_{name}", "external": True} for name, network in (config.get("networks") or {"default": {}}).items()
    }
    return {**{k: v for k, v in config.items() if k not in ("services", "networks")}, "services": services, "networks": networks}


HEALTHCHECK_KEYS = ("test", "interval", "timeout", "retries", "start_period", "disable")
"""What stack files of version 3.8 know of a healthcheck (not compose's newer start_interval)."""


def _service(name: str, service: Mapping[str, Any], *, replicas: int, rolling: bool, routed: bool = False) -> dict[str, Any]:
    out = {k: v for k, v in service.items() if k in KEPT and v is not None}
    if "healthcheck" in out:
        out["healthcheck"] = {k: v for k, v in out["healthcheck"].items() if k in HEALTHCHECK_KEYS}
    # A routed service's ports are the edge's to hold.
    ports = [] if routed else [_host_port(port) for port in service.get("ports") or []]
    volumes = [_mount(mount) for mount in service.get("volumes") or []]
    deploy = dict(service.get("deploy") or {})
    deploy.setdefault("endpoint_mode", "dnsrr")
    pinned = bool(ports or volumes)
    if routed and not pinned:
        rolling = True
    if pinned:
        if rolling:
            raise StackError(
                f"service {name} is in app.rollingServices but publishes ports or mounts volumes, which pin it to the data "
                "server; remove it from app.rollingServices or give it neither"
            )
        if int(deploy.get("replicas", 1)) != 1:
            raise StackError(
                f"service {name} publishes ports or mounts volumes, so it runs once, on the data server: remove its deploy.replicas"
            )
        placement = dict(deploy.get("placement") or {})
        placement["constraints"] = [*placement.get("constraints", []), f"node.labels.{DATA_LABEL} == true"]
        deploy["placement"] = placement
    deploy.setdefault("replicas", replicas if rolling else 1)
    # A published port on one server is held by one task: the new one can only start after the old one stopped.
    # A routed service that only reads files of the app can run twice for a moment.
    reads_only = routed and not ports and all(m["type"] == "bind" and m.get("read_only") for m in volumes)
    order = "start-first" if rolling or reads_only else "stop-first"
    deploy["update_config"] = {
        "parallelism": 1,
        "order": order,
        "failure_action": "rollback",
        "monitor": "10s",
        **(deploy.get("update_config") or {}),
    }
    deploy["rollback_config"] = {"parallelism": 1, "order": order, "failure_action": "pause", **(deploy.get("rollback_config") or {})}
    deploy.setdefault("restart_policy", _restart_policy(service.get("restart")))
    out["deploy"] = deploy
    if ports:
        out["ports"] = ports
    if volumes:
        out["volumes"] = volumes
    networks = service.get("networks")
    out["networks"] = sorted(networks) if networks else ["default"]
    return out


def _host_port(port: Mapping[str, Any]) -> dict[str, Any]:
    if "published" not in port or port.get("published") in ("", None):
        raise StackError(f"port {port.get('target')} has no published port: a Swarm publishes only the ports you name")
    return {"target": int(port["target"]), "published": int(port["published"]), "protocol": port.get("protocol", "tcp"), "mode": "host"}


def _mount(mount: Mapping[str, Any]) -> dict[str, Any]:
    kind = mount.get("type", "volume")
    if kind not in ("volume", "bind", "tmpfs"):
        raise StackError(f"a {kind} mount cannot run on a Swarm: {mount.get('target')}")
    out: dict[str, Any] = {"type": kind, "target": mount["target"]}
    if kind != "tmpfs":
        out["source"] = mount["source"]
    if mount.get("read_only"):
        out["read_only"] = True
    return out


def _restart_policy(restart: str | None) -> dict[str, str]:
    if restart == "no":
        return {"condition": "none"}
    if restart is not None and restart.startswith("on-failure"):
        return {"condition": "on-failure"}
    return {"condition": "any", "delay": "2s"}


def _network(network: Mapping[str, Any] | None) -> dict[str, Any]:
    network = network or {}
    if network.get("external"):
        return {"external": True, "name": network.get("name")}
    return {"driver": "overlay", "attachable": True}


def _volume(volume: Mapping[str, Any] | None) -> dict[str, Any]:
    volume = volume or {}
    if volume.get("external"):
        return {"external": True, "name": volume.get("name")}
    # Named as compose names them (<project>_<volume>), so that a stack grown from one server keeps its data.
    return {k: v for k, v in volume.items() if k in ("driver", "driver_opts", "labels")}
