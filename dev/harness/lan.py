"""A private network between test hosts, as the droplets of one region share a VPC: a bridge inside a network
namespace of its own, and a veth pair per host whose ends are made directly in the host's namespace and in
the bridge's. Nothing of it appears in this machine's own namespace."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import time
from pathlib import Path
from types import TracebackType

NETNS_DIR = Path("/run/netns")
BRIDGE = "br0"
LINK = "eth1"
"""The host's end: its second interface, as a droplet's VPC interface."""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def create_netns(name: str) -> None:
    """A named network namespace, made as dev/testhost.sh makes a host's: a bind mount of a process's namespace
    on a file in /run/netns. Not `ip netns add`, which bind-mounts /run/netns over itself on first use and so
    hides the namespaces of test hosts already running (their `stop` can no longer unmount them)."""
    NETNS_DIR.mkdir(parents=True, exist_ok=True)
    path = NETNS_DIR / name
    path.touch()
    ours = os.stat("/proc/self/ns/net").st_ino
    holder = subprocess.Popen(["unshare", "--net", "sleep", "30"])
    try:
        # Popen returns before `unshare` has made the namespace: until then the holder's is this machine's.
        deadline = time.monotonic() + 10
        while os.stat(f"/proc/{holder.pid}/ns/net").st_ino == ours:
            if time.monotonic() > deadline or holder.poll() is not None:
                raise RuntimeError(f"unshare --net made no namespace for {name}")
            time.sleep(0.01)
        subprocess.run(["mount", "--bind", f"/proc/{holder.pid}/ns/net", str(path)], check=True, capture_output=True, text=True)
    finally:
        holder.kill()
        holder.wait()
    if os.stat(path).st_ino == ours:  # never build the network in this machine's namespace
        delete_netns(name)
        raise RuntimeError(f"{path} is this machine's namespace")
    _ip("-n", name, "link", "set", "lo", "up")


def delete_netns(name: str) -> None:
    path = NETNS_DIR / name
    if not path.exists():
        return
    subprocess.run(["umount", str(path)], capture_output=True)
    path.unlink()


class PrivateNetwork:
    """`with PrivateNetwork("dropship-e2e-swarm-lan", "10.114.0.0/24") as lan: lan.attach("<host netns>")`
    gives each attached namespace the next address of `subnet` on its `eth1`."""

    def __init__(self, name: str, subnet: str) -> None:
        self.name = name
        self.network = ipaddress.ip_network(subnet)
        self._hosts = self.network.hosts()
        self.addresses: dict[str, str] = {}
        """netns name -> its address on the network."""

    def create(self) -> None:
        self.remove()
        create_netns(self.name)
        _ip("-n", self.name, "link", "add", BRIDGE, "type", "bridge")
        _ip("-n", self.name, "link", "set", BRIDGE, "up")

    def attach(self, netns: str) -> str:
        """Connects the namespace `netns` (a name under /run/netns) and returns its address."""
        address = str(next(self._hosts))
        peer = f"v-{len(self.addresses)}"
        # Both ends are created where they live: neither is ever in this machine's namespace.
        _ip("link", "add", LINK, "netns", netns, "type", "veth", "peer", "name", peer, "netns", self.name)
        _ip("-n", self.name, "link", "set", peer, "master", BRIDGE, "up")
        _ip("-n", netns, "addr", "add", f"{address}/{self.network.prefixlen}", "dev", LINK)
        _ip("-n", netns, "link", "set", LINK, "up")
        self.addresses[netns] = address
        return address

    def detach(self, netns: str) -> None:
        """Cuts the namespace off the network (a host that fails): its link goes down, its address stays."""
        _ip("-n", netns, "link", "set", LINK, "down")

    def reattach(self, netns: str) -> None:
        """Brings a detached namespace's link up again (the host is back)."""
        _ip("-n", netns, "link", "set", LINK, "up")

    def remove(self) -> None:
        """Removes the hosts' links (the kernel deletes a namespace's interfaces lazily), then the bridge's namespace."""
        for netns in self.addresses:
            if (NETNS_DIR / netns).exists():
                subprocess.run(["ip", "-n", netns, "link", "delete", LINK], capture_output=True)
        delete_netns(self.name)
        self.addresses.clear()
        self._hosts = self.network.hosts()

    def __enter__(self) -> PrivateNetwork:
        self.create()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.remove()
