"""A production-like stack of 3 droplets (`droplet.count: 3`) under Pulumi's mocks: the droplets, the load
balancer, the firewall and DNS, with their exact inputs."""

from __future__ import annotations

import json

import pytest

from components.server import cloud_config
from tests.unit.program import CLOUDFLARE_IPV4, CLOUDFLARE_IPV6, DROPLET_IPV4, LOAD_BALANCER_IPV4, ZONE_ID, Run, run_program, stack_config
from tests.unit.test_settings import STAGING_SECRETS, problems_of

SWARM = {"dropship:droplet.count": "3", "dropship:droplet.reservedIp": "false"}
TAG = "dropship-production"
ANYWHERE = ["0.0.0.0/0", "::/0"]


@pytest.fixture(scope="module")
def swarm() -> Run:
    return run_program("production", {**stack_config("production"), **SWARM}, STAGING_SECRETS)


def test_three_droplets_the_first_as_a_single_droplet_has_it_all_born_with_their_own_host_key(swarm: Run) -> None:
    droplets = {r.name: r for r in swarm.of_type("digitalocean:index/droplet:Droplet")}
    assert set(droplets) == {"server-droplet", "server-node-2", "server-node-3"}
    host_keys = {
        "server-droplet": swarm.stashed("server-host-key"),
        "server-node-2": swarm.stashed("server-node-2-host-key"),
        "server-node-3": swarm.stashed("server-node-3-host-key"),
    }
    assert len(set(host_keys.values())) == 3
    for resource, name in (
        ("server-droplet", "dropship-production"),
        ("server-node-2", "dropship-production-2"),
        ("server-node-3", "dropship-production-3"),
    ):
        assert droplets[resource].inputs == {
            "name": name,
            "region": "fra1",
            "size": "s-2vcpu-4gb",
            "image": "ubuntu-24-04-x64",
            "backups": True,
            "monitoring": True,
            "ipv6": True,
            "sshKeys": ["3b:16:bf:e4:8b:00:8b:b8:59:8c:a9:d3:f0:19:45:fa"],
            "tags": ["dropship", TAG],
            "userData": cloud_config(host_keys[resource]),
        }, resource
        assert droplets[resource].protect is True
    # The volume stays the first droplet's; a Swarm has no reserved IP.
    (attachment,) = swarm.of_type("digitalocean:index/volumeAttachment:VolumeAttachment")
    assert attachment.inputs["dropletId"] == 424242
    assert swarm.of_type("digitalocean:index/reservedIp:ReservedIp") == []


def test_a_load_balancer_passes_tls_through_to_every_droplet_of_the_stack(swarm: Run) -> None:
    assert swarm.named("lb-lb").inputs == {
        "name": "dropship-production",
        "region": "fra1",
        "dropletTag": TAG,
        "forwardingRules": [
            {"entryProtocol": "http", "entryPort": 80, "targetProtocol": "http", "targetPort": 80},
            {"entryProtocol": "https", "entryPort": 443, "targetProtocol": "https", "targetPort": 443, "tlsPassthrough": True},
        ],
        "healthcheck": {
            "protocol": "tcp",
            "port": 443,
            "checkIntervalSeconds": 5,
            "responseTimeoutSeconds": 3,
            "healthyThreshold": 2,
            "unhealthyThreshold": 2,
        },
        # production's records are proxied: only Cloudflare reaches the load balancer.
        "firewall": {"allows": [f"cidr:{r}" for r in [*CLOUDFLARE_IPV4, *CLOUDFLARE_IPV6]]},
    }
    staging = run_program("staging", {**stack_config("staging"), "dropship:droplet.count": "2"}, STAGING_SECRETS)
    assert "firewall" not in staging.named("lb-lb").inputs


def test_the_firewall_admits_web_from_the_load_balancer_and_swarm_only_between_the_stacks_droplets(swarm: Run) -> None:
    firewall = swarm.named("firewall-firewall").inputs
    assert firewall["tags"] == [TAG]
    assert "dropletIds" not in firewall
    ssh_ranges = stack_config("production")["dropship:ssh.sourceRanges"]
    assert firewall["inboundRules"] == [
        {"protocol": "tcp", "portRange": "22", "sourceAddresses": json.loads(ssh_ranges)},
        {"protocol": "tcp", "portRange": "80", "sourceLoadBalancerUids": ["lb-lb-id"]},
        {"protocol": "tcp", "portRange": "443", "sourceLoadBalancerUids": ["lb-lb-id"]},
        {"protocol": "tcp", "portRange": "2377", "sourceTags": [TAG]},
        {"protocol": "tcp", "portRange": "7946", "sourceTags": [TAG]},
        {"protocol": "udp", "portRange": "7946", "sourceTags": [TAG]},
        {"protocol": "udp", "portRange": "4789", "sourceTags": [TAG]},
        {"protocol": "icmp", "sourceAddresses": ANYWHERE},
    ]


def test_dns_points_at_the_load_balancer(swarm: Run) -> None:
    records = {r.name: r.inputs for r in swarm.of_type("cloudflare:index/dnsRecord:DnsRecord")}
    assert records == {
        f"dns-{name}-a": {
            "zoneId": ZONE_ID,
            "name": name,
            "type": "A",
            "content": LOAD_BALANCER_IPV4,
            "ttl": 1,
            "proxied": True,
            "comment": "managed by dropship, stack dropship/production",
        }
        for name in ("app.example.com", "www.example.com")
    }
    assert swarm.outputs["ipv4"] == LOAD_BALANCER_IPV4
    assert swarm.outputs["nodes"] == [
        {"name": "dropship-production", "ipv4": DROPLET_IPV4},
        {"name": "dropship-production-2", "ipv4": "203.0.113.12"},
        {"name": "dropship-production-3", "ipv4": "203.0.113.13"},
    ]


def test_one_droplet_has_no_load_balancer() -> None:
    single = run_program("production", stack_config("production"), STAGING_SECRETS)
    assert single.of_type("digitalocean:index/loadBalancer:LoadBalancer") == []
    assert "nodes" not in single.outputs


def test_a_preview_of_a_swarm_staging_is_one_droplet() -> None:
    preview = run_program("pr-7", {**stack_config("staging"), "dropship:droplet.count": "3"}, STAGING_SECRETS)
    assert [r.name for r in preview.of_type("digitalocean:index/droplet:Droplet")] == ["server-droplet"]
    assert preview.of_type("digitalocean:index/loadBalancer:LoadBalancer") == []


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"droplet__count": "10"}, "dropship:droplet.count: Input should be less than or equal to 9; got '10'"),
        ({"droplet__count": "0"}, "dropship:droplet.count: Input should be greater than or equal to 1; got '0'"),
        (
            {"droplet__count": "3", "droplet__managers": "2"},
            "dropship:droplet.managers: expected 1 or 3 (a Swarm needs a majority of its managers); got 2",
        ),
        ({"droplet__count": "2", "droplet__managers": "3"}, "dropship:droplet.managers: 3 managers need droplet.count 3 or more; it is 2"),
        (
            {"droplet__count": "3", "droplet__reservedIp": "true"},
            "dropship:droplet.reservedIp: a Swarm's address is its load balancer's (droplet.count is above 1); remove droplet.reservedIp",
        ),
    ],
)
def test_bad_swarm_settings_are_refused(changes: dict[str, str], expected: str) -> None:
    assert expected in problems_of("staging", None, "staging", **changes)
