"""dropship's edge: one Caddy per host (the container `dropship-edge`) on ports 80 and 443, in front of the
routed services of every stack on that host (`edge.routes`).

Each stack has one site file in the edge (`/etc/caddy/sites/<project>.caddy`, in the edge's config volume)
naming its hostnames, its TLS and, per route, the containers that serve it by container name (Docker's DNS on
the `dropship-edge` network finds them again after a restart or a reboot). A release writes that file and
reloads Caddy, which is graceful: requests in flight finish on the containers they started on. Containers
being drained stay in a block of their own that only the edge's loopback can reach, so that Caddy keeps
counting their requests in flight (its admin API's /reverse_proxy/upstreams) until they have none.

The admin API listens on the edge container's own loopback: release.py reaches it with `docker exec`, and no
app container can. Standard library only: it runs on the server beside release.py.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from rollout import CommandError

CONTAINER = "dropship-edge"
NETWORK = "dropship-edge"
CONFIG_VOLUME = "dropship-edge-config"
DATA_VOLUME = "dropship-edge-data"
"""Certificates and the ACME account: a named volume, so on the data volume when the host has one."""
SITES = "/etc/caddy/sites"
STACKS = "/etc/caddy/stacks"
"""Per stack: the ACME CA's root and the origin certificate, copied in by the release."""
MAIN = "/etc/caddy/dropship.caddy"
DRAIN_PORT = 2020

MAIN_CADDYFILE = f"""\
# dropship's edge: written when the edge container starts; each stack's site is a file of {SITES}.
{{
	admin 127.0.0.1:2019
	# A reload waits this long for requests in flight on the old configuration.
	grace_period 60s
}}
import {SITES}/*.caddy
"""

START_SCRIPT = (
    f'mkdir -p {SITES} {STACKS} && printf %s "$DROPSHIP_EDGE_CADDYFILE" > {MAIN} && exec caddy run --config {MAIN} --adapter caddyfile'
)
"""The edge container's command (`sh -c`): its main Caddyfile from its environment, then Caddy."""
ENVIRONMENT = {"DROPSHIP_EDGE_CADDYFILE": MAIN_CADDYFILE, "XDG_DATA_HOME": "/data", "XDG_CONFIG_HOME": "/config"}
"""The edge container's environment; its volumes: CONFIG_VOLUME at /etc/caddy, DATA_VOLUME at /data."""
LABEL = "dropship.edge"

ROUTE = re.compile(r"^(?P<path>/\S*)\s+(?P<service>[a-zA-Z0-9][a-zA-Z0-9_.-]*):(?P<port>\S+)(?:\s+(?P<health>/\S*))?$")

Run = Callable[[Sequence[str]], str]
"""Runs a docker command line (without `docker`) and returns its stdout."""
RunInput = Callable[[Sequence[str], bytes], str]
"""The same with bytes on stdin."""


class RouteError(ValueError):
    pass


@dataclass(frozen=True)
class Route:
    """One line of `edge.routes`: `PATH SERVICE:PORT [HEALTH_PATH]`, e.g. `/api/* api:8000 /api/health`."""

    path: str
    service: str
    port: int
    health: str | None = None

    @classmethod
    def parse(cls, line: str) -> Route:
        match = ROUTE.fullmatch(line.strip())
        if match is None:
            raise RouteError(f"expected 'PATH SERVICE:PORT [HEALTH_PATH]' such as '/api/* api:8000 /api/health'; got {line!r}")
        port = match["port"]
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise RouteError(f"the port of service {match['service']} must be a number from 1 to 65535; got {port!r}")
        return cls(path=match["path"], service=match["service"], port=int(port), health=match["health"])

    def __str__(self) -> str:
        return f"{self.path} {self.service}:{self.port}" + (f" {self.health}" if self.health else "")


@dataclass(frozen=True, kw_only=True)
class Site:
    """A stack's part of the edge."""

    project: str
    hostnames: tuple[str, ...]
    routes: tuple[Route, ...]
    tls_mode: str = "acme"
    acme_ca: str = ""
    acme_ca_root: bool = False
    """Whether the stack's ACME CA root was copied in (STACKS/<project>/acme-ca-root.pem)."""
    maintenance: bool = False
    swarm: bool = False
    """A Swarm's edge: each route's upstreams are its service's running tasks, by Docker's DNS (the Swarm
    starts them only once healthy); `upstreams` is not used."""

    @property
    def stack_dir(self) -> str:
        return f"{STACKS}/{self.project}"

    def render(self, upstreams: Mapping[str, Sequence[str]], draining: Sequence[str] = ()) -> str:
        """The site file: `upstreams` maps a service to the containers that take its requests; `draining`
        names the containers (with their ports) whose requests in flight Caddy keeps counting."""
        address = ", ".join(self.hostnames) if self.hostnames else "http://"
        lines = [f"# dropship: the stack {self.project}; written by each release, do not edit", f"{address} {{"]
        if self.hostnames:
            lines += self._tls()
        if self.maintenance:
            lines += [
                "\thandle {",
                '\t\theader Retry-After "30"',
                '\t\theader Cache-Control "no-store"',
                '\t\trespond "Down for maintenance: back in a moment." 503',
                "\t}",
            ]
        else:
            for route in sorted(self.routes, key=lambda r: (r.path == "/*", -len(r.path))):
                matcher = "" if route.path == "/*" else f" {route.path}"
                targets = " ".join(f"{c}:{route.port}" for c in upstreams.get(route.service, ()))
                lines.append(f"\thandle{matcher} {{")
                if self.swarm:
                    lines += [
                        "\t\treverse_proxy {",
                        f"\t\t\tdynamic a {route.service} {route.port} {{",
                        "\t\t\t\trefresh 1s",
                        "\t\t\t}",
                        "\t\t\tlb_policy round_robin",
                        "\t\t\tlb_try_duration 5s",
                        "\t\t\tlb_try_interval 100ms",
                        "\t\t\tfail_duration 5s",
                        # A task that just went stays in the DNS answer for up to a refresh: fail its dial fast.
                        "\t\t\ttransport http {",
                        "\t\t\t\tdial_timeout 1s",
                        "\t\t\t}",
                        "\t\t}",
                    ]
                elif targets:
                    lines += [
                        f"\t\treverse_proxy {targets} {{",
                        "\t\t\tlb_policy round_robin",
                        "\t\t\tlb_try_duration 5s",
                        "\t\t\ttransport http {",
                        "\t\t\t\tdial_timeout 2s",
                        "\t\t\t}",
                        "\t\t}",
                    ]
                else:
                    lines.append(f'\t\trespond "{route.service} has no container yet" 502')
                lines.append("\t}")
        lines.append("}")
        if draining:
            lines += [
                f"http://{self.project}.drain.dropship:{DRAIN_PORT} {{",
                "\tbind 127.0.0.1",
                f"\treverse_proxy {' '.join(draining)}",
                "}",
            ]
        return "\n".join(lines) + "\n"

    def _tls(self) -> list[str]:
        if self.tls_mode == "cloudflare-origin":
            return [f"\ttls {self.stack_dir}/tls/cert.pem {self.stack_dir}/tls/key.pem"]
        options = []
        if self.acme_ca:
            options.append(f"\t\tca {self.acme_ca}")
        if self.acme_ca_root:
            options.append(f"\t\tca_root {self.stack_dir}/acme-ca-root.pem")
        return ["\ttls {", *options, "\t}"] if options else []


@dataclass
class Edge:
    """The edge container, driven with docker commands."""

    run: Run
    run_input: RunInput
    container: str = CONTAINER
    """The edge's container: `dropship-edge`, or a Swarm's task of the stack's service dropship-edge."""

    def running_image(self) -> str | None:
        """The image the edge container was started from, or None without one."""
        names = self.run(["ps", "--all", "--filter", f"name=^{CONTAINER}$", "--format", "{{.Names}}"]).split()
        if not names:
            return None
        info = json.loads(self.run(["inspect", CONTAINER]))[0]
        return str(info["Config"]["Image"]) if info["State"]["Status"] == "running" else ""

    def ensure(self, image: str) -> str:
        """Starts the edge when it does not run this image; says what it did."""
        if not self.run(["network", "ls", "--quiet", "--filter", f"name=^{NETWORK}$"]).split():
            try:
                self.run(["network", "create", "--label", f"{LABEL}=true", NETWORK])
            except CommandError as error:  # another stack's release on this host made it meanwhile
                if "already exists" not in error.stderr:
                    raise
        running = self.running_image()
        if running == image:
            return "the edge runs"
        if running is not None:
            self.run(["rm", "--force", CONTAINER])
        try:
            self._start(image)
        except CommandError as error:
            # Another stack's release on this host started it meanwhile (its name is taken): fine if from this image.
            if "is already in use" not in error.stderr or self.running_image() != image:
                raise
            return "the edge runs"
        return f"the edge started from {image}" if running is None else f"the edge restarted from {image} (was {running or 'stopped'})"

    def _start(self, image: str) -> None:
        environment = [arg for name, value in ENVIRONMENT.items() for arg in ("--env", f"{name}={value}")]
        self.run(
            [
                "run", "--detach", "--name", CONTAINER, "--restart", "unless-stopped",
                "--network", NETWORK, "--publish", "80:80", "--publish", "443:443",
                "--volume", f"{CONFIG_VOLUME}:/etc/caddy", "--volume", f"{DATA_VOLUME}:/data", *environment,
                "--label", f"{LABEL}=true", "--entrypoint", "/bin/sh", image, "-c", START_SCRIPT,
            ]
        )  # fmt: skip

    def admin_ready(self) -> bool:
        try:
            self.admin("/config/")
        except CommandError:  # not yet, or not at all: the caller has a deadline
            return False
        return True

    def admin(self, path: str) -> str:
        """GET of the admin API, with the image's wget (Alpine's, busybox's) or curl (Debian's)."""
        fetch = 'if command -v wget >/dev/null; then exec wget -q -O - "$0"; else exec curl -fsS "$0"; fi'
        return self.run(["exec", self.container, "sh", "-c", fetch, f"http://127.0.0.1:2019{path}"])

    def write(self, path: str, content: bytes, mode: str = "644") -> None:
        """Writes a file inside the edge atomically (a reload never reads half a file)."""
        quoted = shlex.quote(path)
        directory = shlex.quote(path.rsplit("/", 1)[0])
        script = f"mkdir -p {directory} && umask 077 && cat > {quoted}.new && chmod {mode} {quoted}.new && mv {quoted}.new {quoted}"
        self.run_input(["exec", "--interactive", self.container, "sh", "-c", script], content)

    def remove(self, path: str) -> None:
        self.run(["exec", self.container, "rm", "-rf", path])

    def reload(self) -> None:
        self.run(["exec", self.container, "caddy", "reload", "--config", MAIN, "--adapter", "caddyfile"])

    def publish(self, project: str, site: str) -> None:
        """A stack's site file written whole, then Caddy reloaded (gracefully)."""
        self.write(site_path(project), site.encode())
        self.reload()

    def in_flight(self, addresses: Sequence[str]) -> int:
        """Requests in flight to these upstreams (`container:port`), as Caddy counts them."""
        counts = {u["address"]: int(u.get("num_requests", 0)) for u in json.loads(self.admin("/reverse_proxy/upstreams") or "[]")}
        return sum(counts.get(a, 0) for a in addresses)


def site_path(project: str) -> str:
    return f"{SITES}/{project}.caddy"
