"""Forms the stack's Docker Swarm, idempotently: the first droplet initialises it, the others join it.

Runs on each droplet as its admin (standard library only, for the `python3` every droplet has):

    swarm.py init --advertise-addr ADDR     prints {"manager": TOKEN, "worker": TOKEN} (the step's secret stdout)
    swarm.py join --advertise-addr ADDR --manager ADDR   (the manager or worker token on stdin)
    swarm.py label NODE KEY=VALUE...        on a manager: node labels that placement constraints use

A node already in a Swarm is left as it is, so every step can run again.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from rollout import CommandError, run_docker

SWARM_PORT = 2377

Docker = Callable[[Sequence[str]], str]


class SwarmError(Exception):
    """Printed as dropship's message; the step exits 1."""


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
        raise SwarmError(f"this node's Swarm state is {state}: see `docker info`")
    return {role: docker(["swarm", "join-token", "--quiet", role]).strip() for role in ("manager", "worker")}


def join(docker: Docker, *, advertise_addr: str, manager: str, token: str) -> None:
    state = node_state(docker)
    if state == "active":
        log("already in the Swarm")
        return
    if state != "inactive":
        raise SwarmError(f"this node's Swarm state is {state}: see `docker info`")
    if not token:
        raise SwarmError("no join token on stdin")
    docker(["swarm", "join", "--token", token, "--advertise-addr", advertise_addr, f"{manager}:{SWARM_PORT}"])
    log(f"joined the Swarm of {manager}")


def label(docker: Docker, node: str, labels: Sequence[str]) -> None:
    for item in labels:
        if "=" not in item:
            raise SwarmError(f"expected KEY=VALUE; got {item!r}")
    args = [arg for item in labels for arg in ("--label-add", item)]
    docker(["node", "update", *args, node])


def main(argv: Sequence[str] | None = None, docker: Docker = run_docker, stdin: Callable[[], str] = sys.stdin.read) -> int:
    parser = argparse.ArgumentParser(prog="swarm.py")
    verbs = parser.add_subparsers(dest="verb", required=True)
    init_args = verbs.add_parser("init")
    init_args.add_argument("--advertise-addr", required=True)
    join_args = verbs.add_parser("join")
    join_args.add_argument("--advertise-addr", required=True)
    join_args.add_argument("--manager", required=True)
    label_args = verbs.add_parser("label")
    label_args.add_argument("node")
    label_args.add_argument("labels", nargs="+")
    options = parser.parse_args(argv)
    try:
        match options.verb:
            case "init":
                print(json.dumps(init(docker, options.advertise_addr)))
            case "join":
                join(docker, advertise_addr=options.advertise_addr, manager=options.manager, token=stdin().strip())
            case "label":
                label(docker, options.node, options.labels)
    except SwarmError as error:
        log(str(error))
        return 1
    except CommandError as error:
        log(f"{error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
