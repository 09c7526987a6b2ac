"""Free loopback ports, so that no two test modules (or a test and `make up`) share one.

Test hosts and the example app share the machine's network namespace (`--network host`), so
every sshd and every app listener needs a port of its own. Ports come from below the kernel's
ephemeral range (outgoing connections never take them), are checked free by binding
127.0.0.1, and are never handed out twice in one process.
"""

from __future__ import annotations

import random
import socket
from dataclasses import dataclass
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


def free_ports(count: int) -> list[int]:
    return [free_port() for _ in range(count)]


@dataclass(frozen=True)
class AppPorts:
    """The example app's ports (examples/local/compose.yaml reads them from its .env)."""

    edge: int
    web: int
    web2: int
    admin: int

    @classmethod
    def allocate(cls) -> AppPorts:
        return cls(*free_ports(4))

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.edge}/health"

    def all(self) -> tuple[int, int, int, int]:
        return (self.edge, self.web, self.web2, self.admin)

    def secrets(self) -> dict[str, str]:
        """The env.* settings that move the app onto these ports."""
        return {
            "env.EDGE_PORT": str(self.edge),
            "env.WEB_PORT": str(self.web),
            "env.WEB2_PORT": str(self.web2),
            "env.ADMIN_PORT": str(self.admin),
        }


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
