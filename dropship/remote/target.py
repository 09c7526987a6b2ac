"""Where remote commands connect: one SSH target, reached as different users."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_command import remote


@dataclass(frozen=True, kw_only=True)
class SshTarget:
    address: pulumi.Input[str]
    port: int
    private_key: pulumi.Output[str]
    dial_error_limit: int
    host_key: str | None = None
    host: pulumi.Resource | None = None
    """The server resource, when dropship created it: commands go with it."""
    host_id: pulumi.Input[str] = ""
    """Changes when the server is replaced, even behind a reserved IP: every step runs again."""

    def options(self, parent: pulumi.Resource, depends_on: list[pulumi.Resource] | None = None) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=parent, depends_on=depends_on or [], deleted_with=self.host)

    def as_user(self, user: str) -> remote.ConnectionArgs:
        return remote.ConnectionArgs(
            host=self.address,
            port=self.port,
            user=user,
            private_key=self.private_key,
            dial_error_limit=self.dial_error_limit,
            host_key=self.host_key,
        )
