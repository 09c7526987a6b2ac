"""The e2e tier's check of this machine's network finds what a leaked container network leaves."""

from dev.harness import machine

LOOPBACK = {"ifname": "lo", "link_type": "loopback", "addr_info": [{"local": "127.0.0.1", "prefixlen": 8}]}
ETH = {"ifname": "eth0", "link_type": "ether", "addr_info": [{"local": "192.0.2.2", "prefixlen": 24}]}


def test_describe_lists_each_address_of_each_interface_sorted() -> None:
    two = {**LOOPBACK, "addr_info": [{"local": "127.0.0.1", "prefixlen": 8}, {"local": "::1", "prefixlen": 128}]}
    assert machine.describe([ETH, two]) == ["eth0 ether 192.0.2.2/24", "lo loopback 127.0.0.1/8", "lo loopback ::1/128"]


def test_an_interface_without_address_is_still_listed() -> None:
    assert machine.describe([{"ifname": "ifb0", "link_type": "ether", "addr_info": []}]) == ["ifb0 ether -"]


def test_the_machines_own_interfaces_are_not_foreign() -> None:
    assert machine.foreign_links(machine.describe([LOOPBACK, ETH])) == []


def test_a_bridge_a_veth_and_docker0_are_foreign() -> None:
    docker0 = {
        "ifname": "docker0",
        "link_type": "ether",
        "linkinfo": {"info_kind": "bridge"},
        "addr_info": [{"local": "172.17.0.1", "prefixlen": 16}],
    }
    veth = {"ifname": "vethab12", "link_type": "ether", "linkinfo": {"info_kind": "veth"}, "addr_info": []}
    found = machine.foreign_links(machine.describe([LOOPBACK, ETH, docker0, veth]))
    assert found == ["docker0 bridge 172.17.0.1/16", "vethab12 veth -"]
