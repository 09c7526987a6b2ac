"""swarm.py against a fake docker that keeps one node's Swarm state: init, join and labels, run again."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
import swarm
from rollout import CommandError


@dataclass
class FakeNode:
    state: str = "inactive"
    calls: list[list[str]] = field(default_factory=list)
    refuse_join: bool = False

    def __call__(self, args: Sequence[str]) -> str:
        args = list(args)
        self.calls.append(args)
        match args[:2]:
            case ["info", _]:
                return f"{self.state}\n"
            case ["swarm", "init"]:
                self.state = "active"
                return "Swarm initialized\n"
            case ["swarm", "join-token"]:
                return f"SWMTKN-1-{args[-1]}\n"
            case ["swarm", "join"]:
                if self.refuse_join:
                    raise CommandError(["docker", *args], 1, "Error response from daemon: invalid join token")
                self.state = "active"
                return "This node joined a swarm as a worker.\n"
            case ["node", "update"]:
                return args[-1] + "\n"
        raise AssertionError(f"unexpected docker {args}")


def verbs(node: FakeNode) -> list[str]:
    return [" ".join(call[:2]) for call in node.calls]


def test_init_makes_a_swarm_once_and_prints_both_tokens(capsys: pytest.CaptureFixture[str]) -> None:
    node = FakeNode()
    assert swarm.main(["init", "--advertise-addr", "10.114.0.2"], docker=node) == 0
    assert json.loads(capsys.readouterr().out) == {"manager": "SWMTKN-1-manager", "worker": "SWMTKN-1-worker"}
    assert ["swarm", "init", "--advertise-addr", "10.114.0.2"] in node.calls
    node.calls.clear()
    assert swarm.main(["init", "--advertise-addr", "10.114.0.2"], docker=node) == 0
    assert "swarm init" not in verbs(node)
    assert json.loads(capsys.readouterr().out)["worker"] == "SWMTKN-1-worker"


def test_join_takes_the_token_from_stdin_and_joins_once(capsys: pytest.CaptureFixture[str]) -> None:
    node = FakeNode()
    args = ["join", "--advertise-addr", "10.114.0.3", "--manager", "10.114.0.2"]
    assert swarm.main(args, docker=node, stdin=lambda: "SWMTKN-1-worker\n") == 0
    assert ["swarm", "join", "--token", "SWMTKN-1-worker", "--advertise-addr", "10.114.0.3", "10.114.0.2:2377"] in node.calls
    node.calls.clear()
    assert swarm.main(args, docker=node, stdin=lambda: "SWMTKN-1-worker\n") == 0
    assert verbs(node) == ["info --format"]
    assert "already in the Swarm" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("state", "token", "message"), [("inactive", "", "no join token on stdin"), ("error", "t", "Swarm state is error")]
)
def test_join_refuses_what_it_cannot_do(state: str, token: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    node = FakeNode(state=state)
    args = ["join", "--advertise-addr", "10.114.0.3", "--manager", "10.114.0.2"]
    assert swarm.main(args, docker=node, stdin=lambda: token) == 1
    assert message in capsys.readouterr().err
    assert "swarm join" not in verbs(node)


def test_a_refused_join_is_dropships_short_message_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    node = FakeNode(refuse_join=True)
    args = ["join", "--advertise-addr", "10.114.0.3", "--manager", "10.114.0.2"]
    assert swarm.main(args, docker=node, stdin=lambda: "bad") == 1
    assert "invalid join token" in capsys.readouterr().err


def test_labels_are_added_in_one_update_and_must_be_key_value(capsys: pytest.CaptureFixture[str]) -> None:
    node = FakeNode(state="active")
    assert swarm.main(["label", "dropship-production", "dropship.data=true", "zone=a"], docker=node) == 0
    assert node.calls == [["node", "update", "--label-add", "dropship.data=true", "--label-add", "zone=a", "dropship-production"]]
    assert swarm.main(["label", "dropship-production", "data"], docker=node) == 1
    assert "expected KEY=VALUE; got 'data'" in capsys.readouterr().err
