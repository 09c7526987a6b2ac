"""The stack's Docker Swarm: the first server initialises it, the others join it (managers first), and the
first one keeps its membership to the servers listed, the data node labelled."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import cast

import pulumi
from pulumi_command import remote

from dropship.remote import commands
from dropship.remote.target import SshTarget


@dataclass(frozen=True, kw_only=True)
class SwarmMember:
    name: str
    """Names its steps: `swarm-<name>-...`."""
    target: SshTarget
    private_address: pulumi.Input[str]
    """Where the other servers reach it: the Swarm's advertise address."""
    ready: pulumi.Resource
    """Its bootstrap's last step."""


@dataclass(frozen=True, kw_only=True)
class SwarmArgs:
    members: tuple[SwarmMember, ...]
    """Every server, the first one first: it holds the data volume and is a manager."""
    managers: int
    user: str
    """The deploy user, in the docker group on every server: it runs swarm.py."""
    app_dir: str
    remove_nodes: bool
    """Whether servers no longer listed may be taken out."""
    removal_setting: str
    """The setting that allows it, named in the refusal."""


class Swarm(pulumi.ComponentResource):
    formed: remote.Command
    """Done when every member is ready in the Swarm and the data node is labelled."""

    def __init__(self, name: str, args: SwarmArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("dropship:index:Swarm", name, None, opts)
        code = commands.swarm_code_path(args.app_dir)
        leader, *others = args.members

        def uploaded(member: SwarmMember) -> remote.CopyToRemote:
            return remote.CopyToRemote(
                f"{name}-{member.name}-code",
                connection=member.target.as_user(args.user),
                source=pulumi.FileAsset(str(commands.SCRIPTS / "swarm.py")),
                remote_path=code,
                triggers=[member.target.host_id],
                opts=member.target.options(self, [member.ready]),
            )

        init = remote.Command(
            f"{name}-init",
            add_previous_output_in_env=False,
            connection=leader.target.as_user(args.user),
            create=pulumi.Output.from_input(leader.private_address).apply(
                lambda address: commands.swarm(args.app_dir, "init", "--advertise-addr", address)
            ),
            delete=commands.swarm(args.app_dir, "leave"),
            logging=remote.Logging.STDERR,  # stdout holds the join tokens
            triggers=[leader.target.host_id],
            opts=pulumi.ResourceOptions.merge(
                leader.target.options(self, [uploaded(leader)]),
                # Leave before joining again: the replacement of a running step would otherwise leave after it.
                pulumi.ResourceOptions(additional_secret_outputs=["stdout"], delete_before_replace=True),
            ),
        )
        parsed: pulumi.Output[dict[str, str]] = init.stdout.apply(_tokens)
        tokens = cast("pulumi.Output[dict[str, str]]", pulumi.Output.secret(parsed))  # mypy cannot infer the type
        joined: list[pulumi.Resource] = []
        for number, member in enumerate(others, start=1):
            role = "manager" if number < args.managers else "worker"
            joined.append(
                remote.Command(
                    f"{name}-{member.name}-join",
                    add_previous_output_in_env=False,
                    connection=member.target.as_user(args.user),
                    create=pulumi.Output.all(member.private_address, leader.private_address).apply(
                        lambda a: commands.swarm(args.app_dir, "join", "--advertise-addr", a[0], "--manager", a[1])
                    ),
                    delete=commands.swarm(args.app_dir, "leave"),
                    stdin=tokens.apply(functools.partial(_token, role)),
                    logging=remote.Logging.STDOUT_AND_STDERR,
                    triggers=[member.target.host_id, leader.target.host_id, role],
                    opts=pulumi.ResourceOptions.merge(
                        member.target.options(self, [uploaded(member), init]),
                        pulumi.ResourceOptions(additional_secret_outputs=["stdin"], delete_before_replace=True),
                    ),
                )
            )
        addresses = pulumi.Output.all(*(m.private_address for m in args.members))
        self.formed = remote.Command(
            f"{name}-members",
            add_previous_output_in_env=False,
            connection=leader.target.as_user(args.user),
            create=addresses.apply(
                lambda a: commands.swarm_converge(
                    args.app_dir, data=a[0], nodes=a, remove_nodes=args.remove_nodes, setting=args.removal_setting
                )
            ),
            triggers=[*(m.target.host_id for m in args.members)],
            opts=leader.target.options(self, [init, *joined]),
        )
        self.register_outputs({})


def _tokens(stdout: str) -> dict[str, str]:
    """`swarm.py init`'s stdout: the join token of each role."""
    return {str(role): str(token) for role, token in json.loads(stdout).items()}


def _token(role: str, tokens: dict[str, str]) -> str:
    return tokens[role]
