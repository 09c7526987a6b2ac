"""The droplet, its SSH key, and optionally a reserved IP and a data volume."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_digitalocean as digitalocean

from dropship.settings import DropletSettings


@dataclass(frozen=True)
class ServerArgs:
    droplet: DropletSettings
    public_key: str
    resource_name: str
    """The name DigitalOcean shows, e.g. dropship-staging."""
    tags: tuple[str, ...]
    protect: bool


class Server(pulumi.ComponentResource):
    ipv4: pulumi.Output[str]
    ipv6: pulumi.Output[str] | None
    droplet: digitalocean.Droplet

    def __init__(self, name: str, args: ServerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("dropship:index:Server", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        protected = pulumi.ResourceOptions(parent=self, protect=args.protect)
        settings = args.droplet

        key = digitalocean.SshKey(f"{name}-key", name=args.resource_name, public_key=args.public_key, opts=child)
        self.droplet = digitalocean.Droplet(
            f"{name}-droplet",
            name=args.resource_name,
            region=settings.region,
            size=settings.size,
            image=settings.image,
            backups=settings.backups,
            monitoring=settings.monitoring,
            ipv6=settings.ipv6,
            ssh_keys=[key.fingerprint],
            tags=list(args.tags),
            opts=protected,
        )
        self.ipv4 = self.droplet.ipv4_address
        if settings.reserved_ip:
            reserved = digitalocean.ReservedIp(f"{name}-ip", region=settings.region, opts=protected)
            digitalocean.ReservedIpAssignment(
                f"{name}-ip-assignment",
                ip_address=reserved.ip_address,
                droplet_id=self.droplet.id.apply(int),
                opts=child,
            )
            self.ipv4 = reserved.ip_address
        self.ipv6 = self.droplet.ipv6_address if settings.ipv6 else None
        if settings.volume_size_gb:
            volume = digitalocean.Volume(
                f"{name}-data",
                name=f"{args.resource_name}-data",
                region=settings.region,
                size=settings.volume_size_gb,
                initial_filesystem_type="ext4",
                description=f"data of {args.resource_name}, outlives the droplet",
                opts=protected,
            )
            digitalocean.VolumeAttachment(
                f"{name}-data-attachment",
                droplet_id=self.droplet.id.apply(int),
                volume_id=volume.id,
                opts=child,
            )
        self.register_outputs({"ipv4": self.ipv4, "ipv6": self.ipv6})
