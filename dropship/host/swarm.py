"""Forms the stack's Docker Swarm, idempotently: the first server initialises it, the others join it,
and the first one keeps the membership to what the settings list.

Runs on each server as the deploy user (in the docker group), standard library only:

    swarm.py init --advertise-addr ADDR      prints {"manager": TOKEN, "worker": TOKEN} (the step's secret stdout)
    swarm.py join --advertise-addr ADDR --manager ADDR    (the manager or worker token on stdin)
    swarm.py converge --data ADDR --node ADDR... [--remove-nodes] [--setting KEY]
                                             on the manager: waits for the listed nodes, labels the data node,
                                             and takes out nodes no longer listed (only with --remove-nodes)
    swarm.py leave                           this server leaves the Swarm (a step's delete)

A server already in the Swarm is left as it is, so every step can run again.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

SWARM_PORT = 2377
DATA_LABEL = "dropship.data"
"""The label of the node that holds the data volume: services with volumes are placed there."""

Docker = Callable[[Sequence[str]], str]


class SwarmError(Exception):
    """Printed as dropship's message; the step exits 1."""


def run_docker(args: Sequence[str]) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SwarmError(f"docker {' '.join(args[:2])} failed: {(result.stderr or result.stdout).strip()}")
    return result.stdout


def log(message: str) -> None:
    print(f"dropship: {message}", file=sys.stderr, flush=True)


def node_state(docker: Docker) -> str:
    """Docker's LocalNodeState: inactive, pending, active, error or locked."""
    return docker(["info", "--format", "{{.Swarm.LocalNodeState}}"]).strip()


def init(docker: Docker, advertise_addr: str) -> dict[str, str]:
    state = node_state(docker)
    if state == "inactive":
        docker(["swarm", "init", "--advertise-addr", advertise_addr])
        log(f"initialised a Swarm at {advertise_addr}:{SWARM_PORT}")
    elif state != "active":
        raise SwarmError(f"this server's Swarm state is {state}: see `docker info`")
    return {role: docker(["swarm", "join-token", "--quiet", role]).strip() for role in ("manager", "worker")}


def join(docker: Docker, *, advertise_addr: str, manager: str, token: str) -> None:
    state = node_state(docker)
    if state == "active":
        log("already in the Swarm")
        return
    if state != "inactive":
        raise SwarmError(f"this server's Swarm state is {state}: see `docker info`")
    if not token:
        raise SwarmError("no join token on stdin")
    docker(["swarm", "join", "--token", token, "--advertise-addr", advertise_addr, f"{manager}:{SWARM_PORT}"])
    log(f"joined the Swarm of {manager}")


def leave(docker: Docker) -> None:
    if node_state(docker) in ("active", "pending", "error"):
        docker(["swarm", "leave", "--force"])
        log("left the Swarm")


@dataclass(frozen=True)
class Node:
    id: str
    address: str
    state: str
    """ready, down, unknown, disconnected."""
    role: str
    labels: dict[str, str]


def nodes(docker: Docker) -> list[Node]:
    ids = docker(["node", "ls", "--quiet"]).split()
    if not ids:
        return []
    found = []
    for item in json.loads(docker(["node", "inspect", *ids])):
        address = item["Status"].get("Addr", "")
        manager = item.get("ManagerStatus") or {}
        if address in ("", "0.0.0.0") and manager.get("Addr"):  # a leader may report 0.0.0.0
            address = manager["Addr"].rsplit(":", 1)[0]
        found.append(
            Node(
                id=item["ID"],
                address=address,
                state=item["Status"]["State"],
                role=item["Spec"]["Role"],
                labels=dict(item["Spec"].get("Labels") or {}),
            )
        )
    return found


def converge(
    docker: Docker,
    *,
    data: str,
    wanted: Sequence[str],
    remove_nodes: bool,
    setting: str,
    timeout: float = 180,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    deadline = clock() + timeout
    while True:
        current = nodes(docker)
        ready = {n.address for n in current if n.state == "ready"}
        missing = [a for a in wanted if a not in ready]
        if not missing:
            break
        if clock() >= deadline:
            raise SwarmError(f"these servers are not ready in the Swarm after {timeout:g}s: {', '.join(missing)}")
        sleep(2)
    extra = [n for n in current if n.address not in wanted]
    # A server that joined again under a new node id leaves its old entry down at the same address.
    stale = [n for n in current if n.address in wanted and n.state != "ready"]
    for node in stale:
        docker(["node", "rm", "--force", node.id])
        log(f"removed the stale entry {node.id} of {node.address}")
    if extra and not remove_nodes:
        listed = ", ".join(f"{n.address} ({n.state})" for n in extra)
        raise SwarmError(
            f"the Swarm has servers that the settings no longer list: {listed}. "
            f"Set {setting}: true to take them out (their tasks move to the others), or list them again"
        )
    for node in extra:
        take_out(docker, node, deadline=deadline, clock=clock, sleep=sleep)
    for node in (n for n in current if n not in stale):
        if node.address == data and node.labels.get(DATA_LABEL) != "true":
            docker(["node", "update", "--label-add", f"{DATA_LABEL}=true", node.id])
            log(f"{node.address} holds the data: services with volumes run there")
        elif node.address != data and DATA_LABEL in node.labels:
            docker(["node", "update", "--label-rm", DATA_LABEL, node.id])
    log(f"the Swarm has {len(wanted)} server(s): {', '.join(wanted)}")


def take_out(docker: Docker, node: Node, *, deadline: float, clock: Callable[[], float], sleep: Callable[[float], None]) -> None:
    """Drains a node (its tasks start on the others) and removes it from the Swarm."""
    if node.state == "ready":
        if node.role == "manager":
            docker(["node", "demote", node.id])
        docker(["node", "update", "--availability", "drain", node.id])
        log(f"draining {node.address}")
        while docker(["node", "ps", node.id, "--filter", "desired-state=running", "--quiet"]).split():
            if clock() >= deadline:
                raise SwarmError(f"{node.address} still runs tasks after draining; see `docker node ps {node.id}`")
            sleep(1)
    docker(["node", "rm", "--force", node.id])
    log(f"took {node.address} out of the Swarm")


def main(argv: Sequence[str] | None = None, docker: Docker = run_docker, stdin: Callable[[], str] = sys.stdin.read) -> int:
    parser = argparse.ArgumentParser(prog="swarm.py")
    verbs = parser.add_subparsers(dest="verb", required=True)
    init_args = verbs.add_parser("init")
    init_args.add_argument("--advertise-addr", required=True)
    join_args = verbs.add_parser("join")
    join_args.add_argument("--advertise-addr", required=True)
    join_args.add_argument("--manager", required=True)
    converge_args = verbs.add_parser("converge")
    converge_args.add_argument("--data", required=True)
    converge_args.add_argument("--node", action="append", required=True)
    converge_args.add_argument("--remove-nodes", action="store_true")
    converge_args.add_argument("--setting", default="droplet.removeNodes")
    converge_args.add_argument("--timeout", type=float, default=180)
    verbs.add_parser("leave")
    options = parser.parse_args(argv)
    try:
        match options.verb:
            case "init":
                print(json.dumps(init(docker, options.advertise_addr)))
            case "join":
                join(docker, advertise_addr=options.advertise_addr, manager=options.manager, token=stdin().strip())
            case "converge":
                converge(
                    docker,
                    data=options.data,
                    wanted=options.node,
                    remove_nodes=options.remove_nodes,
                    setting=options.setting,
                    timeout=options.timeout,
                )
            case "leave":
                leave(docker)
    except SwarmError as error:
        log(str(error))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
