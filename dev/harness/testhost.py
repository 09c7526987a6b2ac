"""Test hosts: dev/testhost.sh's Debian 13 containers that behave like fresh droplets, each at its own address."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from dev.harness.engine import DEV, sh
from dev.harness.ports import free_address

DEV_KEY = DEV / "dev_ed25519"
"""The `local` stack's development key (Pulumi.local.yaml's ssh.privateKey), authorized for root."""


def host_name(module: str, suffix: str = "") -> str:
    """The test host of a test module: `tests.e2e.test_faults` -> `dropship-e2e-faults` (+ `-suffix`)."""
    base = module.rsplit(".", 1)[-1].removeprefix("test_").replace("_", "-")
    return f"dropship-e2e-{base}" + (f"-{suffix}" if suffix else "")


@dataclass
class TestHost:
    __test__ = False  # a helper, not a test class

    name: str
    address: str
    """Its own loopback address: SSH on 22, HTTP on 80, HTTPS on 443, as a droplet's public address."""
    forward: tuple[int, ...] = (5000,)
    """Ports of this machine's loopback that 127.0.0.1:<port> reaches from inside (the registry)."""
    apt_busy: int | Literal["held"] = 5
    """Seconds the first-boot unit holds apt's lists lock, and then dpkg's, as apt-daily does on a new droplet;
    "held": each until the test lets go (`release_apt_lock`)."""
    volume: str | None = None
    """A data volume's name: attached at /dev/disk/by-id/scsi-0DO_Volume_<name>, kept when the host goes."""

    @classmethod
    def for_module(cls, module: str, suffix: str = "", forward: tuple[int, ...] = (5000,)) -> TestHost:
        """The host of one test module: a name derived from the module, an address of its own."""
        return cls(host_name(module, suffix), free_address(), forward)

    def url(self, path: str = "/") -> str:
        """The app through the host's published port 80, from this machine."""
        return f"http://{self.address}{path}"

    def __post_init__(self) -> None:
        DEV_KEY.chmod(0o600)  # a git checkout leaves it world-readable, which ssh refuses

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "TESTHOST_NAME": self.name,
            "TESTHOST_ADDRESS": self.address,
            "TESTHOST_FORWARD": ",".join(str(p) for p in self.forward),
            "TESTHOST_KEY": str(DEV_KEY),
            "TESTHOST_APT_BUSY": str(self.apt_busy),
            **({"TESTHOST_VOLUME": self.volume} if self.volume else {}),
        }

    def start(self) -> None:
        sh("bash", str(DEV / "testhost.sh"), "start", env=self.env())

    @contextmanager
    def fresh(self) -> Iterator[TestHost]:
        """A new host for the block (any old one of this name is removed first), removed afterwards with its volume."""
        self.stop()
        self.start()
        try:
            yield self
        finally:
            self.stop()

    def stop(self) -> None:
        sh("bash", str(DEV / "testhost.sh"), "stop", env=self.env(), check=False)

    def remove_volume(self) -> None:
        """Deletes the data volume for good (the host must be stopped)."""
        sh("bash", str(DEV / "testhost.sh"), "volume-rm", env=self.env())

    def run(self, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A command inside the host, as root, without SSH (so that it is not counted as a login)."""
        return sh("docker", "exec", self.name, "bash", "-c", command, check=check)

    def host_key(self) -> str:
        """Its sshd's Ed25519 public host key (made at its first boot), read inside it: what `ssh.hostKey` pins."""
        return self.run("cat /etc/ssh/ssh_host_ed25519_key.pub").stdout.strip()

    def network_address(self) -> str:
        """The host's own address on its network (pasta gives the namespace a copy of this machine's):
        a client sent from its namespace (`/run/netns/<name>`) reaches the edge as a droplet's IPv4 clients do."""
        out = self.run("ip -4 -o addr show scope global").stdout.split()
        return out[out.index("inet") + 1].split("/")[0]

    def ssh(self, user: str, command: str, check: bool = True, *extra: str) -> subprocess.CompletedProcess[str]:
        return sh(
            "ssh", "-i", str(DEV_KEY),
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
            "-o", "LogLevel=ERROR", *extra, f"{user}@{self.address}", command,
            check=check,
        )  # fmt: skip

    def processes(self) -> dict[int, tuple[int, str]]:
        """pid -> (parent pid, command line) inside the host."""
        table: dict[int, tuple[int, str]] = {}
        for line in self.run("ps -eo pid=,ppid=,args=", check=False).stdout.splitlines():
            parts = line.split(None, 2)
            if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
                table[int(parts[0])] = (int(parts[1]), parts[2] if len(parts) > 2 else "")
        return table

    def asleep(self, pid: int) -> bool:
        """Whether the process is in a sleep(3) (a wait loop's pause): the kernel function it waits in."""
        return "nanosleep" in self.run(f"cat /proc/{pid}/wchan 2>/dev/null || true").stdout

    def release_apt_lock(self, name: Literal["lists", "dpkg"]) -> None:
        """Lets the first-boot unit of a host started with apt_busy="held" let go of apt's lists lock or dpkg's."""
        self.run(f"touch /run/testhost-apt/release-{name}")

    def logins(self) -> int:
        """SSH logins accepted so far: every remote command of pulumi-command is one."""
        # --sync first: every line sshd sent before is in the journal when it is counted
        out = self.run("journalctl --sync && journalctl -u ssh --no-pager -o cat | grep -c 'Accepted publickey' || true").stdout
        return int(out.strip() or 0)
