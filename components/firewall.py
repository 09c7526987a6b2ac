"""The DigitalOcean cloud firewall: SSH from known ranges, web from everywhere (a Swarm's: from its load
balancer only, and Swarm's ports between its own droplets), all outbound.

It covers the stack's droplets by their tag and is made before them, so that each droplet is behind it from
its first boot (a firewall attached by droplet id comes after the droplet, which boots open meanwhile)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_digitalocean as digitalocean

ANYWHERE = ["0.0.0.0/0", "::/0"]
SWARM_PORTS = (("tcp", "2377"), ("tcp", "7946"), ("udp", "7946"), ("udp", "4789"))
"""Swarm's cluster management, node gossip and overlay network (VXLAN)."""


@dataclass(frozen=True, kw_only=True)
class SwarmPeers:
    load_balancer_id: pulumi.Input[str]
    """The only source of HTTP(S)."""


@dataclass(frozen=True, kw_only=True)
class FirewallArgs:
    droplet_tag: str
    """The stack's own tag, on each of its droplets from birth: the firewall covers them (and lets a Swarm's talk)."""
    resource_name: str
    ssh_port: int
    ssh_source_ranges: tuple[str, ...]
    web_source_ranges: pulumi.Input[list[str]]
    """Everywhere, or only Cloudflare's ranges when the DNS records are proxied."""
    swarm: SwarmPeers | None = None
    """A Swarm of droplets: web comes from the load balancer only."""


class Firewall(pulumi.ComponentResource):
    def __init__(self, name: str, args: FirewallArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("dropship:index:Firewall", name, None, opts)
        swarm = args.swarm
        if swarm is None:
            web = [
                digitalocean.FirewallInboundRuleArgs(protocol="tcp", port_range=port, source_addresses=args.web_source_ranges)
                for port in ("80", "443")
            ]
        else:
            web = [
                digitalocean.FirewallInboundRuleArgs(protocol="tcp", port_range=port, source_load_balancer_uids=[swarm.load_balancer_id])
                for port in ("80", "443")
            ]
            web += [
                digitalocean.FirewallInboundRuleArgs(protocol=protocol, port_range=port, source_tags=[args.droplet_tag])
                for protocol, port in SWARM_PORTS
            ]
        self.firewall = digitalocean.Firewall(
            f"{name}-firewall",
            name=args.resource_name,
            tags=[args.droplet_tag],
            inbound_rules=[
                digitalocean.FirewallInboundRuleArgs(
                    protocol="tcp", port_range=str(args.ssh_port), source_addresses=list(args.ssh_source_ranges)
                ),
                *web,
                digitalocean.FirewallInboundRuleArgs(protocol="icmp", source_addresses=ANYWHERE),
            ],
            # A cloud firewall blocks outbound traffic that no rule allows: apt, DNS and image pulls need these.
            outbound_rules=[
                digitalocean.FirewallOutboundRuleArgs(protocol="tcp", port_range="1-65535", destination_addresses=ANYWHERE),
                digitalocean.FirewallOutboundRuleArgs(protocol="udp", port_range="1-65535", destination_addresses=ANYWHERE),
                digitalocean.FirewallOutboundRuleArgs(protocol="icmp", destination_addresses=ANYWHERE),
            ],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.id = self.firewall.id
        self.register_outputs({"id": self.id})
