"""The SSH keys dropship makes itself for a droplet: its host key and the key root accepts (Ed25519)."""

from __future__ import annotations

import pulumi
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def new_private_key() -> str:
    """A new Ed25519 private key in OpenSSH's format."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
    return pem.decode()


def public_key(private_key: str, comment: str = "") -> str:
    """The authorized_keys line of an OpenSSH private key: 'ssh-ed25519 AAAA... comment'."""
    key = serialization.load_ssh_private_key(private_key.encode(), password=None)
    line = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return f"{line} {comment}" if comment else line


def kept_private_key(name: str, opts: pulumi.ResourceOptions | None = None) -> pulumi.Output[str]:
    """A new private key on the first `up`, the same one from the state on every later one (secret)."""
    stash = pulumi.Stash(
        name,
        input=pulumi.Output.secret(new_private_key()),
        # A Stash's output keeps its first input; ignoring the input keeps the new key made on every
        # run from showing as a change.
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(ignore_changes=["input"])),
    )
    return pulumi.Output.secret(stash.output.apply(str))
