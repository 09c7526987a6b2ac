"""This machine's own network namespace, which the suite must leave as it found it.

Test hosts have namespaces of their own; in this one nothing but loopback addresses may
ever appear (no docker0, no veth, no bridge). `network()` is what the e2e tier compares
before and after the session, `foreign_links()` what must never be there at all.
"""

from __future__ import annotations

import json
from typing import Any

from dev.harness.engine import sh

FOREIGN_KINDS = ("bridge", "veth", "vxlan", "macvlan", "ipvlan", "tun", "tap")
FOREIGN_PREFIXES = ("docker", "veth", "br-")


def network() -> list[str]:
    """This machine's interfaces with their addresses, one sorted 'name kind address/prefix' line each."""
    return describe(json.loads(sh("ip", "-j", "-d", "addr").stdout))


def describe(links: list[dict[str, Any]]) -> list[str]:
    lines = []
    for link in links:
        kind = link.get("linkinfo", {}).get("info_kind", link.get("link_type", ""))
        addresses = [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])] or ["-"]
        lines += [f"{link['ifname']} {kind} {address}" for address in addresses]
    return sorted(lines)


def foreign_links(lines: list[str]) -> list[str]:
    """Interfaces that only a container network (a leaked engine, a bridge) would have made here."""
    return [line for line in lines if line.split()[1] in FOREIGN_KINDS or line.startswith(FOREIGN_PREFIXES)]
