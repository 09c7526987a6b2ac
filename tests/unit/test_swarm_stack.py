"""A production-like stack of 3 droplets (`droplet.count: 3`) under Pulumi's mocks: the droplets, the load
balancer, the firewall and DNS, with their exact inputs."""

from __future__ import annotations

import json

import pytest

from components.server import cloud_config
from dropship.config.errors import SettingsError
from dropship.config.flat_keys import load
from tests.unit.program import (
    CANARY,
    CLOUDFLARE_IPV4,
    CLOUDFLARE_IPV6,
    DROPLET_IPV4,
    LOAD_BALANCER_IPV4,
    ROOT,
    ZONE_ID,
    Run,
    run_program,
    stack_config,
    without_secrets,
)
from tests.unit.test_settings import STAGING_SECRETS, problems_of
from tests.unit.test_stacks import LOCAL_SECRETS, local_config

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


def test_the_first_droplet_initialises_the_swarm_and_the_others_join_it_with_a_secret_token(swarm: Run) -> None:
    code = "/srv/shop/.dropship/swarm.py"
    init = swarm.named("swarm-init")
    assert init.inputs["create"] == f"python3 {code} init --advertise-addr 10.114.0.2"
    assert init.inputs["delete"] == f"python3 {code} leave"
    assert init.inputs["logging"] == "stderr"  # its stdout is the join tokens
    assert "stdout" in init.additional_secret_outputs
    for number, address in ((2, "10.114.0.3"), (3, "10.114.0.4")):
        join = swarm.named(f"swarm-node-{number}-join")
        assert join.inputs["create"] == f"python3 {code} join --advertise-addr {address} --manager 10.114.0.2"
        assert join.inputs["stdin"] == f"SWMTKN-1-worker-{CANARY}"
        assert join.wire["stdin"] != join.inputs["stdin"]  # sent as a secret
        assert join.inputs["connection"]["host"] == f"203.0.113.{10 + number}"
        assert join.inputs["connection"]["user"] == "deploy"
    assert swarm.named("swarm-members").inputs["create"] == (
        f"python3 {code} converge --data 10.114.0.2 --node 10.114.0.2 --node 10.114.0.3 --node 10.114.0.4 --setting droplet.removeNodes"
    )
    assert "--swarm-replicas 3" in swarm.named("app-release").inputs["create"]
    # Docker refuses live-restore in swarm mode: every server's daemon.json goes without.
    for step in ("host-docker", "host-node-2-docker", "host-node-3-docker"):
        assert swarm.named(step).inputs["create"].endswith("install-docker.sh docker-apt 10m 3 false"), step
    assert CANARY not in json.dumps([without_secrets(r.wire) for r in swarm.resources])


def test_three_managers_are_the_first_three_droplets() -> None:
    five = run_program("production", {**stack_config("production"), **SWARM, "dropship:droplet.count": "5"}, STAGING_SECRETS)
    roles = {n: five.named(f"swarm-node-{n}-join").inputs["stdin"].split("-")[2] for n in range(2, 6)}
    assert roles == {2: "manager", 3: "manager", 4: "worker", 5: "worker"}


def test_before_anything_else_the_first_droplet_checks_that_the_swarm_does_not_shrink_unless_allowed(swarm: Run) -> None:
    check = swarm.named("swarm-size")
    assert check.inputs["create"] == "bash -c '. /dev/stdin' check-swarm-size.sh 3 false droplet.removeNodes"
    assert check.inputs["connection"]["user"] == "root"
    for name in ("host-wait", "host-node-2-wait", "host-node-3-wait", "dns-app.example.com-a"):
        assert any(urn.endswith("::swarm-size") for urn in swarm.named(name).depends_on), name
    # The firewall comes before every droplet (each is born behind it); it names the stack's tag and the load
    # balancer, not droplets, so the number of droplets never changes it.
    for droplet in swarm.of_type("digitalocean:index/droplet:Droplet"):
        assert any(urn.endswith("::firewall-firewall") for urn in droplet.depends_on), droplet.name
    allowed = run_program("production", {**stack_config("production"), "dropship:droplet.removeNodes": "true"}, STAGING_SECRETS)
    assert allowed.named("swarm-size").inputs["create"].endswith("check-swarm-size.sh 1 true droplet.removeNodes")
    assert allowed.of_type("dropship:index:Swarm") == []


NODES = [
    {
        "address": "127.0.0.72",
        "privateAddress": "10.77.0.3",
        "id": "two",
        "hostKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILRTlJluG84RZ/ZWSRx+YejDu1TzAdF92pltCSO4IgY7 two",
    },
    {"address": "127.0.0.73", "privateAddress": "10.77.0.4"},
]


def test_existing_servers_form_a_swarm_led_by_the_first() -> None:
    swarm = {"existingHost.privateAddress": "10.77.0.2", "existingHost.nodes": json.dumps(NODES)}
    run = run_program("local", {**local_config(**swarm)}, LOCAL_SECRETS)
    join = run.named("swarm-node-2-join")
    assert join.inputs["connection"]["host"] == "127.0.0.72"
    assert join.inputs["connection"]["hostKey"] == NODES[0]["hostKey"]
    assert join.inputs["triggers"] == ["two", "", "worker"]
    assert run.named("host-node-3-deploy-user").inputs["connection"]["host"] == "127.0.0.73"
    assert (
        run.named("swarm-members")
        .inputs["create"]
        .endswith("--data 10.77.0.2 --node 10.77.0.2 --node 10.77.0.3 --node 10.77.0.4 --setting existingHost.removeNodes")
    )
    assert run.named("swarm-size").inputs["create"].endswith("check-swarm-size.sh 3 false existingHost.removeNodes")


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"existingHost.nodes": json.dumps(NODES)}, "existingHost.privateAddress: required with existingHost.nodes"),
        (
            {"existingHost.privateAddress": "10.77.0.3", "existingHost.nodes": json.dumps(NODES)},
            "existingHost.nodes[0].privateAddress: 10.77.0.3 is already existingHost.privateAddress",
        ),
        (
            {"existingHost.privateAddress": "10.77.0.2", "existingHost.nodes": json.dumps([{**NODES[1], "address": "127.0.0.2"}])},
            "existingHost.nodes[0].address: 127.0.0.2:22 is already existingHost.address",
        ),
        (
            {
                "existingHost.privateAddress": "10.77.0.2",
                "existingHost.nodes": json.dumps([{"address": "127.0.0.9", "privateAddress": "10.77"}]),
            },
            "expected an IPv4 address such as 10.114.0.2",
        ),
        (
            {
                "existingHost.privateAddress": "10.77.0.2",
                "existingHost.nodes": json.dumps([{"address": f"127.0.0.{9 + i}", "privateAddress": f"10.77.0.{9 + i}"} for i in range(9)]),
            },
            "existingHost.nodes: at most 8 more servers (a Swarm of 9); got 9",
        ),
    ],
)
def test_bad_existing_swarm_settings_are_refused(changes: dict[str, str], expected: str) -> None:
    config = {**local_config(**changes), **{f"dropship:{k}": v for k, v in LOCAL_SECRETS.items()}}
    with pytest.raises(SettingsError) as err:
        load("dropship", "local", config, frozenset(LOCAL_SECRETS), ROOT)
    assert expected in str(err.value)
