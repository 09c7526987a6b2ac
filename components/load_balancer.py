"""The DigitalOcean load balancer in front of a Swarm's droplets: TLS passes through to the edge proxy."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_digitalocean as digitalocean

HTTP_PORT = 80
HTTPS_PORT = 443


@dataclass(frozen=True, kw_only=True)
class LoadBalancerArgs:
    resource_name: str
    region: str
    droplet_tag: str
    """The stack's own tag: every droplet of the Swarm, the ones added later too."""
    source_ranges: pulumi.Input[list[str]] | None = None
    """Only these may connect (Cloudflare's ranges when the DNS records are proxied); none: everyone."""


class LoadBalancer(pulumi.ComponentResource):
    id: pulumi.Output[str]
    ip: pulumi.Output[str]

    def __init__(self, name: str, args: LoadBalancerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("dropship:index:LoadBalancer", name, None, opts)
        self.load_balancer = digitalocean.LoadBalancer(
            f"{name}-lb",
            name=args.resource_name,
            region=args.region,
            droplet_tag=args.droplet_tag,
            # The edge proxy (Caddy, Traefik) holds the certificates and answers ACME's HTTP-01 on port 80;
            # Swarm's routing mesh takes either port to it from any droplet.
            forwarding_rules=[
                digitalocean.LoadBalancerForwardingRuleArgs(
                    entry_protocol="http", entry_port=HTTP_PORT, target_protocol="http", target_port=HTTP_PORT
                ),
                digitalocean.LoadBalancerForwardingRuleArgs(
                    entry_protocol="https", entry_port=HTTPS_PORT, target_protocol="https", target_port=HTTPS_PORT, tls_passthrough=True
                ),
            ],
            healthcheck=digitalocean.LoadBalancerHealthcheckArgs(
                protocol="tcp",
                port=HTTPS_PORT,
                check_interval_seconds=5,
                response_timeout_seconds=3,
                healthy_threshold=2,
                unhealthy_threshold=2,
            ),
            firewall=None
            if args.source_ranges is None
            else digitalocean.LoadBalancerFirewallArgs(
                allows=pulumi.Output.from_input(args.source_ranges).apply(lambda ranges: [f"cidr:{r}" for r in ranges])
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.id = self.load_balancer.id
        self.ip = self.load_balancer.ip
        self.register_outputs({"id": self.id, "ip": self.ip})
