"""The app's .env, written from secrets through stdin only."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_command import remote

from dropship.remote import commands
from dropship.remote.target import SshTarget


@dataclass(frozen=True, kw_only=True)
class EnvFileArgs:
    target: SshTarget
    user: str
    app_dir: str
    content: pulumi.Output[str]
    """The rendered .env, already marked secret."""
    after: tuple[pulumi.Resource, ...] = ()


class EnvFile(pulumi.ComponentResource):
    command: remote.Command

    def __init__(self, name: str, args: EnvFileArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("dropship:index:EnvFile", name, None, opts)
        self.command = remote.Command(
            f"{name}-write",
            add_previous_output_in_env=False,
            connection=args.target.as_user(args.user),
            create=commands.write_env(args.app_dir),
            stdin=args.content,
            logging=remote.Logging.NONE,
            triggers=[args.target.host_id],
            opts=pulumi.ResourceOptions.merge(
                args.target.options(self, list(args.after)), pulumi.ResourceOptions(additional_secret_outputs=["stdin", "stdout", "stderr"])
            ),
        )
        self.register_outputs({})
