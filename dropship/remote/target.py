"""Where remote commands connect: one SSH target, reached as its admin user or as another user."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_command import remote


@dataclass(frozen=True, kw_only=True)
class SshTarget:
    address: pulumi.Input[str]
    port: int
    private_key: pulumi.Output[str]
    """The deploy key: steps as the deploy user log in with it."""
    admin_user: str
    """The user that can become root: root on a droplet, existingHost.user otherwise."""
    admin_private_key: pulumi.Output[str]
    """The admin user's key: a droplet's own (made by dropship), or existingHost.privateKey (default: the deploy key)."""
    dial_error_limit: int
    host_key: pulumi.Input[str] | None = None
    """The host's public key, pinned in every connection."""
    host: pulumi.Resource | None = None
    """The server resource, when dropship created it: commands go with it."""
    host_id: pulumi.Input[str] = ""
    """Changes when the server is replaced, even behind a reserved IP: every step runs again."""

    def options(self, parent: pulumi.Resource, depends_on: list[pulumi.Resource] | None = None) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=parent, depends_on=depends_on or [], deleted_with=self.host)

    @property
    def admin_needs_sudo(self) -> bool:
        """Admin steps become root with `sudo -n` unless the admin user is root."""
        return self.admin_user != "root"

    def admin(self) -> remote.ConnectionArgs:
        return self._connection(self.admin_user, self.admin_private_key)

    def as_user(self, user: str) -> remote.ConnectionArgs:
        """`user`'s login with the deploy key."""
        return self._connection(user, self.private_key)

    def _connection(self, user: str, private_key: pulumi.Output[str]) -> remote.ConnectionArgs:
        return remote.ConnectionArgs(
            host=self.address,
            port=self.port,
            user=user,
            private_key=private_key,
            dial_error_limit=self.dial_error_limit,
            host_key=self.host_key,
        )
