"""The DigitalOcean cloud firewall: SSH from known ranges, web from everywhere, all outbound."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_digitalocean as digitalocean

ANYWHERE = ["0.0.0.0/0", "::/0"]


@dataclass(frozen=True, kw_only=True)
class FirewallArgs:
    droplet_id: pulumi.Input[str]
    resource_name: str
    ssh_port: int
    ssh_source_ranges: tuple[str, ...]
    web_source_ranges: pulumi.Input[list[str]]
    """Everywhere, or only Cloudflare's ranges when the DNS records are proxied."""


class Firewall(pulumi.ComponentResource):
    def __init__(self, name: str, args: FirewallArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("dropship:index:Firewall", name, None, opts)
        web = [
            digitalocean.FirewallInboundRuleArgs(protocol="tcp", port_range=port, source_addresses=args.web_source_ranges)
            for port in ("80", "443")
        ]
        self.firewall = digitalocean.Firewall(
            f"{name}-firewall",
            name=args.resource_name,
            droplet_ids=[pulumi.Output.from_input(args.droplet_id).apply(int)],
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
