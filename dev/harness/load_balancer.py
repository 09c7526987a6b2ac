"""HAProxy on this machine's loopback, standing in for a Swarm's DigitalOcean load balancer: ports 80 and 443
passed through (TCP, TLS untouched) to every server, each checked as dropship sets DigitalOcean's check (every
5 s, 3 s to answer, out after 2 failures, back after 2 successes), so traffic goes only where the edge answers.

DigitalOcean's check is a TCP connect to 443, which a droplet without the edge refuses. A test host's port is
pasta's, which accepts first and only then finds the host's port closed: here the check asks for an HTTP
answer on port 80 instead, which only the edge gives."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from dev.harness.ports import free_address

# The health check as components/load_balancer.py sets DigitalOcean's: every 5 s, 3 s to answer, 2 to
# go down or up again; state changes are logged to haproxy.log.
CONFIG = """global
  maxconn 4000
  log stdout format raw local0

defaults
  mode tcp
  log global
  option log-health-checks
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  timeout check 3s
  default-server check inter 5s fall 2 rise 2
  option tcp-check
  tcp-check connect port 80
  tcp-check send "HEAD / HTTP/1.0\\r\\n\\r\\n"
  tcp-check expect string HTTP/

{sections}"""


class LoadBalancer:
    """`with LoadBalancer([host.address for host in hosts]) as lb:` serves lb.address:80 and :443."""

    def __init__(self, backends: Sequence[str], address: str | None = None) -> None:
        self.backends = list(backends)
        self.address = address or free_address()
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def config(self) -> str:
        sections = []
        for port in (80, 443):
            servers = "".join(f"  server node-{n} {backend}:{port}\n" for n, backend in enumerate(self.backends, start=1))
            sections.append(f"listen port-{port}\n  bind {self.address}:{port}\n  balance roundrobin\n{servers}")
        return CONFIG.format(sections="\n".join(sections))

    def __enter__(self) -> LoadBalancer:
        binary = shutil.which("haproxy")
        if binary is None:
            raise RuntimeError("haproxy is not installed: bash dev/apt-deps.sh")
        self._dir = Path(tempfile.mkdtemp(prefix="dropship-lb-"))
        (self._dir / "haproxy.cfg").write_text(self.config())
        subprocess.run([binary, "-c", "-q", "-f", str(self._dir / "haproxy.cfg")], check=True)
        with (self._dir / "haproxy.log").open("wb") as log:
            self._proc = subprocess.Popen(
                [binary, "-db", "-f", str(self._dir / "haproxy.cfg")], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 30
        while not self._listening():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"haproxy did not listen on {self.address}:80 and :443: {(self._dir / 'haproxy.log').read_text()}")
            time.sleep(0.1)
        return self

    def _listening(self) -> bool:
        for port in (80, 443):
            try:
                socket.create_connection((self.address, port), timeout=1).close()
            except OSError:
                return False
        return True

    def log(self) -> str:
        """haproxy's log: its health checks' state changes."""
        return (self._dir / "haproxy.log").read_text() if self._dir else ""

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
