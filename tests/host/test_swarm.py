"""swarm.py against a fake docker that keeps a Swarm's state: init, join, converge and leave, each run again."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
import swarm


@dataclass
class FakeNode:
    id: str
    address: str
    state: str = "ready"
    role: str = "worker"
    labels: dict[str, str] = field(default_factory=dict)
    availability: str = "active"
    tasks: int = 0


@dataclass
class FakeDocker:
    """One server's docker: its own Swarm state and, on the manager, the Swarm's node list."""

    state: str = "inactive"
    nodes: list[FakeNode] = field(default_factory=list)
    calls: list[list[str]] = field(default_factory=list)
    refuse_join: bool = False
    drain_takes: int = 0
    """node ps polls before a drained node's tasks have moved."""

    def __call__(self, args: Sequence[str], timeout: float = 600) -> str:
        args = list(args)
        self.calls.append(args)
        match args:
            case ["info", *_]:
                return f"{self.state}\n"
            case ["swarm", "init", *_]:
                self.state = "active"
                return "Swarm initialized\n"
            case ["swarm", "join-token", "--quiet", role]:
                return f"SWMTKN-1-{role}\n"
            case ["swarm", "join", *_]:
                if self.refuse_join:
                    raise swarm.SwarmError("docker swarm join failed: Error response from daemon: invalid join token")
                self.state = "active"
                return "This node joined a swarm as a worker.\n"
            case ["swarm", "leave", "--force"]:
                self.state = "inactive"
                return ""
            case ["node", "ls", "--quiet"]:
                return "".join(f"{n.id}\n" for n in self.nodes)
            case ["node", "inspect", *ids]:
                return json.dumps([self._inspect(self._node(i)) for i in ids])
            case ["node", "update", "--label-add", label, node_id]:
                key, _, value = label.partition("=")
                self._node(node_id).labels[key] = value
                return node_id
            case ["node", "update", "--label-rm", key, node_id]:
                del self._node(node_id).labels[key]
                return node_id
            case ["node", "update", "--availability", "drain", node_id]:
                self._node(node_id).availability = "drain"
                return node_id
            case ["node", "demote", node_id]:
                self._node(node_id).role = "worker"
                return ""
            case ["node", "ps", node_id, *_]:
                if self.drain_takes:
                    self.drain_takes -= 1
                    return "task1\n"
                return ""
            case ["node", "rm", "--force", node_id]:
                self.nodes.remove(self._node(node_id))
                return node_id
        raise AssertionError(f"unexpected docker {args}")

    def _node(self, node_id: str) -> FakeNode:
        return next(n for n in self.nodes if n.id == node_id)

    @staticmethod
    def _inspect(node: FakeNode) -> dict[str, object]:
        # As Docker reports a leader: Status.Addr 0.0.0.0, its address in ManagerStatus.
        leader = node.role == "manager"
        return {
            "ID": node.id,
            "Spec": {"Role": node.role, "Labels": dict(node.labels), "Availability": node.availability},
            "Status": {"State": node.state, "Addr": "0.0.0.0" if leader else node.address},
            **({"ManagerStatus": {"Addr": f"{node.address}:2377", "Leader": True}} if leader else {}),
        }


def verbs(docker: FakeDocker) -> list[str]:
    return [" ".join(call[:2]) for call in docker.calls]


def manager_of(*nodes: FakeNode) -> FakeDocker:
    return FakeDocker(state="active", nodes=list(nodes))


def converge(docker: FakeDocker, *wanted: str, remove: bool = False) -> int:
    args = ["converge", "--data", wanted[0], *(a for w in wanted for a in ("--node", w)), "--timeout", "0"]
    return swarm.main([*args, *(["--remove-nodes"] if remove else [])], docker=docker)


def test_init_makes_a_swarm_once_and_prints_both_tokens(capsys: pytest.CaptureFixture[str]) -> None:
    docker = FakeDocker()
    assert swarm.main(["init", "--advertise-addr", "10.114.0.2"], docker=docker) == 0
    assert json.loads(capsys.readouterr().out) == {"manager": "SWMTKN-1-manager", "worker": "SWMTKN-1-worker"}
    assert ["swarm", "init", "--advertise-addr", "10.114.0.2"] in docker.calls
    docker.calls.clear()
    assert swarm.main(["init", "--advertise-addr", "10.114.0.2"], docker=docker) == 0
    assert "swarm init" not in verbs(docker)
    assert json.loads(capsys.readouterr().out)["worker"] == "SWMTKN-1-worker"


def test_join_takes_the_token_from_stdin_and_joins_once(capsys: pytest.CaptureFixture[str]) -> None:
    docker = FakeDocker()
    args = ["join", "--advertise-addr", "10.114.0.3", "--manager", "10.114.0.2"]
    assert swarm.main(args, docker=docker, stdin=lambda: "SWMTKN-1-worker\n") == 0
    assert ["swarm", "join", "--token", "SWMTKN-1-worker", "--advertise-addr", "10.114.0.3", "10.114.0.2:2377"] in docker.calls
    docker.calls.clear()
    assert swarm.main(args, docker=docker, stdin=lambda: "SWMTKN-1-worker\n") == 0
    assert verbs(docker) == ["info --format"]
    assert "already in the Swarm" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("state", "token", "message"), [("inactive", "", "no join token on stdin"), ("error", "t", "Swarm state is error")]
)
def test_join_refuses_what_it_cannot_do(state: str, token: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    docker = FakeDocker(state=state)
    args = ["join", "--advertise-addr", "10.114.0.3", "--manager", "10.114.0.2"]
    assert swarm.main(args, docker=docker, stdin=lambda: token) == 1
    assert message in capsys.readouterr().err
    assert "swarm join" not in verbs(docker)


def test_a_refused_join_is_dropships_short_message_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    docker = FakeDocker(refuse_join=True)
    args = ["join", "--advertise-addr", "10.114.0.3", "--manager", "10.114.0.2"]
    assert swarm.main(args, docker=docker, stdin=lambda: "bad") == 1
    assert capsys.readouterr().err.strip() == "dropship: docker swarm join failed: Error response from daemon: invalid join token"


def test_leave_leaves_once() -> None:
    docker = FakeDocker(state="active")
    assert swarm.main(["leave"], docker=docker) == 0
    assert swarm.main(["leave"], docker=docker) == 0
    assert verbs(docker).count("swarm leave") == 1


def test_converge_labels_the_data_node_only_and_changes_nothing_the_second_time() -> None:
    leader = FakeNode("a", "10.114.0.2", role="manager")
    other = FakeNode("b", "10.114.0.3", labels={"dropship.data": "true"})  # a node that held the data before
    docker = manager_of(leader, other, FakeNode("c", "10.114.0.4"))
    assert converge(docker, "10.114.0.2", "10.114.0.3", "10.114.0.4") == 0
    assert leader.labels == {"dropship.data": "true"} and other.labels == {}
    docker.calls.clear()
    assert converge(docker, "10.114.0.2", "10.114.0.3", "10.114.0.4") == 0
    assert not [call for call in docker.calls if call[:2] == ["node", "update"]]


def test_converge_refuses_to_take_out_a_server_no_longer_listed(capsys: pytest.CaptureFixture[str]) -> None:
    docker = manager_of(FakeNode("a", "10.114.0.2", role="manager"), FakeNode("b", "10.114.0.3"), FakeNode("c", "10.114.0.4"))
    assert converge(docker, "10.114.0.2") == 1
    err = capsys.readouterr().err
    assert "the Swarm has servers that the settings no longer list: 10.114.0.3 (ready), 10.114.0.4 (ready)" in err
    assert "Set droplet.removeNodes: true" in err
    assert len(docker.nodes) == 3
    assert not [call for call in docker.calls if call[:2] in (["node", "update"], ["node", "rm"])]


def test_with_remove_nodes_a_server_is_drained_until_its_tasks_moved_then_removed() -> None:
    docker = manager_of(
        FakeNode("a", "10.114.0.2", role="manager"), FakeNode("b", "10.114.0.3"), FakeNode("c", "10.114.0.4", role="manager")
    )
    docker.drain_takes = 2
    assert converge(docker, "10.114.0.2", remove=True) == 1  # timeout 0: the drain has not finished
    docker.drain_takes = 2
    docker.calls.clear()
    args = ["converge", "--data", "10.114.0.2", "--node", "10.114.0.2", "--remove-nodes"]
    assert swarm.main(args, docker=docker) == 0
    assert [n.address for n in docker.nodes] == ["10.114.0.2"]
    rm = docker.calls.index(["node", "rm", "--force", "b"])
    assert docker.calls.index(["node", "update", "--availability", "drain", "b"]) < rm
    assert ["node", "demote", "c"] in docker.calls


def test_converge_waits_for_a_listed_server_and_names_it_when_it_never_comes(capsys: pytest.CaptureFixture[str]) -> None:
    docker = manager_of(FakeNode("a", "10.114.0.2", role="manager"))
    assert converge(docker, "10.114.0.2", "10.114.0.3") == 1
    assert "not ready in the Swarm after 0s: 10.114.0.3" in capsys.readouterr().err


def test_a_server_that_joined_again_loses_its_old_entry() -> None:
    docker = manager_of(
        FakeNode("a", "10.114.0.2", role="manager"), FakeNode("old", "10.114.0.3", state="down"), FakeNode("new", "10.114.0.3")
    )
    assert converge(docker, "10.114.0.2", "10.114.0.3") == 0
    assert [n.id for n in docker.nodes] == ["a", "new"]
