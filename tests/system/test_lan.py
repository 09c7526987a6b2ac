"""dev/harness/lan.py with two namespaces of the test's own: they reach each other over the bridge, and this
machine's namespace gains no interface and no address."""

from __future__ import annotations

import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dev.harness import machine, wait_until
from dev.harness.lan import PrivateNetwork, create_netns, delete_netns

pytestmark = pytest.mark.system  # root: network namespaces

NAMESPACES = ("dropship-lan-test-a", "dropship-lan-test-b")


def machine_links() -> list[str]:
    return machine.network()


@pytest.fixture
def namespaces() -> Iterator[tuple[str, ...]]:
    for name in NAMESPACES:
        delete_netns(name)
        create_netns(name)
    yield NAMESPACES
    for name in NAMESPACES:
        delete_netns(name)


LISTEN = """
import socket, sys
server = socket.create_server((sys.argv[1], 7000))
server.settimeout(30)
print("listening", flush=True)
connection, _ = server.accept()
connection.sendall(b"hello")
"""
CONNECT = """
import socket, sys
with socket.create_connection((sys.argv[1], 7000), timeout=2) as connection:
    print(connection.recv(5).decode())
"""


def reaches(source: str, target: str, address: str) -> bool:
    """One TCP connection from namespace `source` to a listener at `address` in namespace `target`, made once
    the listener says it listens."""
    listener = subprocess.Popen(["ip", "netns", "exec", target, sys.executable, "-c", LISTEN, address], stdout=subprocess.PIPE, text=True)
    try:
        out = listener.stdout
        assert out is not None
        wait_until(lambda: select.select([out], [], [], 0.5)[0], f"the listener at {address} in {target} to start", 30)
        assert out.readline().strip() == "listening", f"the listener at {address} in {target} did not start"
        client = subprocess.run(["ip", "netns", "exec", source, sys.executable, "-c", CONNECT, address], capture_output=True, text=True)
        if client.stdout.strip() == "hello":
            return True
        assert any(cause in client.stderr for cause in ("timed out", "unreachable", "No route to host")), client.stderr
        return False
    finally:
        listener.kill()
        listener.wait()


def run_netns_mounts() -> list[str]:
    return [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if " /run/netns " in line]


def test_attached_namespaces_reach_each_other_and_the_machine_gains_no_address(namespaces: tuple[str, ...]) -> None:
    before = machine_links()
    mounts = run_netns_mounts()
    with PrivateNetwork("dropship-lan-test", "10.114.0.0/24") as lan:
        a, b = (lan.attach(name) for name in namespaces)
        assert (a, b) == ("10.114.0.1", "10.114.0.2")
        assert machine_links() == before
        assert reaches(namespaces[0], namespaces[1], b)
        assert reaches(namespaces[1], namespaces[0], a)
        lan.detach(namespaces[1])
        assert not reaches(namespaces[0], namespaces[1], b)
    assert machine_links() == before
    assert run_netns_mounts() == mounts  # /run/netns itself is not mounted over (as `ip netns add` does)
    links = subprocess.run(["ip", "-n", namespaces[0], "-o", "link"], check=True, capture_output=True, text=True).stdout
    assert "eth1" not in links  # the pair went with the network's namespace
