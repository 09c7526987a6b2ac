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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

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


def render(config: Mapping[str, Any], *, replicas: int, rolling: Sequence[str]) -> dict[str, Any]:
    services = {name: _service(name, service, replicas=replicas, rolling=name in rolling) for name, service in config["services"].items()}
    stack: dict[str, Any] = {"version": VERSION, "services": services}
    networks = {name: _network(network) for name, network in (config.get("networks") or {"default": {}}).items()}
    stack["networks"] = networks
    volumes = {name: _volume(volume) for name, volume in (config.get("volumes") or {}).items()}
    if volumes:
        stack["volumes"] = volumes
    return stack


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


def _service(name: str, service: Mapping[str, Any], *, replicas: int, rolling: bool) -> dict[str, Any]:
    out = {k: v for k, v in service.items() if k in KEPT and v is not None}
    if "healthcheck" in out:
        out["healthcheck"] = {k: v for k, v in out["healthcheck"].items() if k in HEALTHCHECK_KEYS}
    ports = [_host_port(port) for port in service.get("ports") or []]
    volumes = [_mount(mount) for mount in service.get("volumes") or []]
    deploy = dict(service.get("deploy") or {})
    deploy.setdefault("endpoint_mode", "dnsrr")
    pinned = bool(ports or volumes)
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
    order = "start-first" if rolling else "stop-first"
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
