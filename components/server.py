"""The droplet (a Swarm's first, and its other droplets), the SSH keys they are born with, and optionally a
reserved IP and a data volume (the first droplet's)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_digitalocean as digitalocean
import yaml

from dropship import keys


@dataclass(frozen=True, kw_only=True)
class ServerArgs:
    resource_name: str
    """The name DigitalOcean shows, e.g. dropship-staging."""
    region: str
    size: str
    image: str
    backups: bool
    monitoring: bool
    ipv6: bool
    reserved_ip: bool
    """Keep a reserved IP: DNS points at it and survives a droplet replacement."""
    volume_size_gb: int | None
    volume_name: str
    tags: tuple[str, ...]
    protect: bool
    count: int = 1
    """Droplets: the first one keeps its resources as a single droplet has them, so that a stack grows in place."""
    after: tuple[pulumi.Resource, ...] = ()
    """What the droplets are created after: the firewall of their tag, so that each boots behind it."""


@dataclass(frozen=True)
class Node:
    """One droplet of the stack."""

    name: str
    droplet: digitalocean.Droplet
    host_key: pulumi.Output[str]
    """Its public SSH host key, pinned by every connection to it."""

    @property
    def id(self) -> pulumi.Output[str]:
        return self.droplet.id

    @property
    def ipv4(self) -> pulumi.Output[str]:
        return self.droplet.ipv4_address

    @property
    def private_ipv4(self) -> pulumi.Output[str]:
        """Its address in the region's VPC, where the Swarm's nodes talk."""
        return self.droplet.ipv4_address_private


class Server(pulumi.ComponentResource):
    id: pulumi.Output[str]
    """The droplet's id: changes when the droplet is replaced."""
    ipv4: pulumi.Output[str]
    """The address to reach it at: the reserved IP if there is one."""
    ipv6: pulumi.Output[str] | None
    host_key: pulumi.Output[str]
    """The droplet's public SSH host key (Ed25519), installed by cloud-init before sshd first starts."""
    admin_private_key: pulumi.Output[str]
    """The key root accepts (secret): made by dropship, kept only in the stack's state."""
    droplet: digitalocean.Droplet
    volume_attachment: digitalocean.VolumeAttachment | None
    """Done once the data volume is attached; none without a volume."""
    nodes: list[Node]
    """Every droplet, the first one first."""

    def __init__(self, name: str, args: ServerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("dropship:index:Server", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        protected = pulumi.ResourceOptions(parent=self, protect=args.protect)

        # Made once and kept in the state (a Stash keeps its first value): neither a rotated deploy key nor
        # a new dropship version changes what the droplet was born with, which would replace it.
        host_private_key = keys.kept_private_key(f"{name}-host-key", child)
        self.admin_private_key = keys.kept_private_key(f"{name}-admin-key", child)
        self.host_key = pulumi.Output.unsecret(host_private_key.apply(keys.public_key))
        comment = f"dropship {args.resource_name}"
        admin_public_key = pulumi.Output.unsecret(self.admin_private_key.apply(lambda k: keys.public_key(k, comment)))
        key = digitalocean.SshKey(f"{name}-key", name=args.resource_name, public_key=admin_public_key, opts=child)

        def droplet(resource: str, droplet_name: str, host_private_key: pulumi.Output[str]) -> digitalocean.Droplet:
            return digitalocean.Droplet(
                resource,
                name=droplet_name,
                region=args.region,
                size=args.size,
                image=args.image,
                backups=args.backups,
                monitoring=args.monitoring,
                ipv6=args.ipv6,
                ssh_keys=[key.fingerprint],
                user_data=host_private_key.apply(cloud_config),  # secret, as the key it holds
                tags=list(args.tags),
                opts=pulumi.ResourceOptions.merge(protected, pulumi.ResourceOptions(depends_on=list(args.after))),
            )

        self.droplet = droplet(f"{name}-droplet", args.resource_name, host_private_key)
        self.nodes = [Node(args.resource_name, self.droplet, self.host_key)]
        for number in range(2, args.count + 1):
            node_key = keys.kept_private_key(f"{name}-node-{number}-host-key", child)
            node_name = f"{args.resource_name}-{number}"
            node = droplet(f"{name}-node-{number}", node_name, node_key)
            self.nodes.append(Node(node_name, node, pulumi.Output.unsecret(node_key.apply(keys.public_key))))
        self.id = self.droplet.id
        self.ipv4 = self.droplet.ipv4_address
        if args.reserved_ip:
            reserved = digitalocean.ReservedIp(f"{name}-ip", region=args.region, opts=protected)
            digitalocean.ReservedIpAssignment(
                f"{name}-ip-assignment",
                ip_address=reserved.ip_address,
                droplet_id=self.droplet.id.apply(int),
                opts=child,
            )
            self.ipv4 = reserved.ip_address
        self.ipv6 = self.droplet.ipv6_address if args.ipv6 else None
        self.volume_attachment = None
        if args.volume_size_gb is not None:
            volume = digitalocean.Volume(
                f"{name}-data",
                name=args.volume_name,
                region=args.region,
                size=args.volume_size_gb,
                initial_filesystem_type="ext4",
                description=f"data of {args.resource_name}, outlives the droplet",
                opts=protected,
            )
            self.volume_attachment = digitalocean.VolumeAttachment(
                f"{name}-data-attachment",
                droplet_id=self.droplet.id.apply(int),
                volume_id=volume.id,
                opts=child,
            )
        self.register_outputs({"id": self.id, "ipv4": self.ipv4, "ipv6": self.ipv6})


def cloud_config(host_private_key: str) -> str:
    """cloud-init user data that makes `host_private_key` the droplet's only SSH host key from its first boot."""
    config = {
        "ssh_deletekeys": True,
        "ssh_genkeytypes": ["ed25519"],  # generated only if missing, and it is given; [] is refused
        "ssh_keys": {"ed25519_private": host_private_key, "ed25519_public": keys.public_key(host_private_key)},
    }
    return "#cloud-config\n" + yaml.safe_dump(config, sort_keys=False)
