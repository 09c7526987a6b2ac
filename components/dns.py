"""Cloudflare A (and AAAA) records for every hostname of the stack."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_cloudflare as cloudflare


@dataclass(frozen=True, kw_only=True)
class DnsArgs:
    zone_id: pulumi.Input[str]
    hostnames: tuple[str, ...]
    ipv4: pulumi.Input[str]
    ipv6: pulumi.Input[str] | None
    """No AAAA records without it."""
    ttl: int
    proxied: bool
    comment: str
    after: tuple[pulumi.Resource, ...] = ()
    """Steps the records wait for (the Swarm size check)."""


class Dns(pulumi.ComponentResource):
    names: pulumi.Output[list[str]]
    """The records' names, as Cloudflare has them (one per hostname)."""

    def __init__(self, name: str, args: DnsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("dropship:index:Dns", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, depends_on=list(args.after))
        families: list[tuple[str, pulumi.Input[str]]] = [("A", args.ipv4)]
        if args.ipv6 is not None:
            families.append(("AAAA", args.ipv6))
        records: list[cloudflare.DnsRecord] = []
        for hostname in args.hostnames:
            for record_type, address in families:
                records.append(
                    cloudflare.DnsRecord(
                        f"{name}-{hostname}-{record_type.lower()}",
                        zone_id=args.zone_id,
                        name=hostname,
                        type=record_type,
                        content=address,
                        ttl=args.ttl,
                        proxied=args.proxied,
                        comment=args.comment,
                        opts=child,
                    )
                )
        self.names = pulumi.Output.all(*(r.name for r in records)).apply(lambda names: sorted(set(names)))
        self.register_outputs({"names": self.names})


def zone_id(*, zone_name: str | None, zone_id: str | None) -> pulumi.Output[str]:
    """The zone id as configured, or looked up by the zone's name."""
    match (zone_id, zone_name):
        case (str(known), _):
            return pulumi.Output.from_input(known)
        case (None, str(name)):
            return cloudflare.get_zone_output(filter=cloudflare.GetZoneFilterArgs(name=name, match="all")).id
        case _:
            raise ValueError("dns.zone or dns.zoneId is required")  # the settings refuse this first


def web_source_ranges(*, proxied: bool) -> pulumi.Output[list[str]]:
    """Where HTTP(S) may come from: everywhere, or only Cloudflare's proxies."""
    if not proxied:
        return pulumi.Output.from_input(["0.0.0.0/0", "::/0"])
    ranges = cloudflare.get_ip_ranges_output()
    return pulumi.Output.all(ranges.ipv4_cidrs, ranges.ipv6_cidrs).apply(lambda r: [*r[0], *r[1]])
