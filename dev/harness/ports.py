"""Free loopback addresses and ports, so that no two test modules (or a test and `make up`) share one.

Every test host has a loopback address of its own (127.0.0.N, like a droplet's public
address), where pasta forwards 22, 80 and 443 into the host's own network namespace. A
free port on 127.0.0.1 is for what the suite itself runs on this machine (a relay, a
stand-in service); ports come from below the kernel's ephemeral range (outgoing
connections never take them), are checked free by binding, and are never handed out
twice in one process.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_handed_out: set[int] = set()


def _range() -> tuple[int, int]:
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return 20000, max(20001, min(low, 32768)) - 1


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """One free TCP port on 127.0.0.1 that this process has not handed out before."""
    low, high = _range()
    for _ in range(1000):
        port = random.randint(low, high)
        if port not in _handed_out and _free(port):
            _handed_out.add(port)
            return port
    raise AssertionError(f"no free port on 127.0.0.1 in {low}-{high}")


_addresses_handed_out: set[str] = set()


def free_address() -> str:
    """A loopback address 127.0.0.N (N >= 2) that no test host answers at yet: a host's own, like a droplet's public one."""
    for _ in range(1000):
        address = f"127.0.0.{random.randint(2, 254)}"
        if address in _addresses_handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((address, 22))
            except OSError:
                continue
        _addresses_handed_out.add(address)
        return address
    raise AssertionError("no free loopback address in 127.0.0.2-254")
