"""The stack's settings as the program uses them: parsed once, typed, frozen."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import urljoin

from dropship import uploads
from dropship.config.errors import NAMESPACE
from dropship.config.sections import (
    AlertsSettings,
    AppSettings,
    BackupsSettings,
    DeploySettings,
    DockerSettings,
    DropletServer,
    EdgeSettings,
    ExistingServer,
    PreviewSettings,
    RegistrySettings,
    SshSettings,
    TlsSettings,
    UpgradesSettings,
)

PREVIEW_STACK = re.compile(r"^pr-([1-9][0-9]{0,8})$")


class Environment(StrEnum):
    PRODUCTION = "production"
    STAGING = "staging"
    PREVIEW = "preview"
    LOCAL = "local"


DO_VOLUME_DEVICE = "/dev/disk/by-id/scsi-0DO_Volume_{name}"
"""Where a DigitalOcean volume appears on its droplet."""


@dataclass(frozen=True)
class Volume:
    device: str
    mount_path: str


@dataclass(frozen=True)
class Settings:
    project: str
    stack: str
    environment: Environment
    server: DropletServer | ExistingServer
    ssh: SshSettings
    deploy: DeploySettings
    docker: DockerSettings
    upgrades: UpgradesSettings
    alerts: AlertsSettings
    backups: BackupsSettings
    app: AppSettings
    registry: RegistrySettings | None
    tls: TlsSettings
    edge: EdgeSettings
    preview: PreviewSettings
    env: Mapping[str, str] = field(repr=False)  # secret values: never print
    protect: bool

    @property
    def resource_name(self) -> str:
        """The name DigitalOcean shows, e.g. dropship-staging."""
        return f"{self.project}-{self.stack}"

    @property
    def host_gone(self) -> bool:
        """existingHost.gone: nothing may connect to the host any more."""
        match self.server:
            case ExistingServer(existing_host=host):
                return host.gone
            case DropletServer():
                return False

    @property
    def app_directory(self) -> str:
        return self.app.directory or f"/srv/{self.app.name}"

    @property
    def hostnames(self) -> tuple[str, ...]:
        """The names the app answers to: `dns.hostnames`, or `existingHost.hostnames`."""
        return self.server.hostnames

    @property
    def urls(self) -> tuple[str, ...]:
        return self.app.urls or tuple(f"https://{h}" for h in self.hostnames)

    @property
    def health_url(self) -> str | None:
        """app.healthUrl, a path joined to the stack's first URL."""
        url = self.app.health_url
        if url is None or not url.startswith("/"):
            return url
        return urljoin(self.urls[0], url) if self.urls else None

    @property
    def volume(self) -> Volume | None:
        """The data volume, when the stack has one."""
        match self.server:
            case DropletServer(droplet=droplet):
                if droplet.volume_size_gb is None:
                    return None
                return Volume(device=DO_VOLUME_DEVICE.format(name=self.volume_name), mount_path=droplet.volume_mount_path)
            case ExistingServer(existing_host=host):
                if host.volume_device is None:
                    return None
                return Volume(device=host.volume_device, mount_path=host.volume_mount_path)

    @property
    def acme_ca_root_on_host(self) -> str | None:
        """Where tls.acmeCaRoot is on the host: in the app's directory, at its path relative to the compose project."""
        if self.tls.acme_ca_root is None:
            return None
        relative = uploads.host_path(self.tls.acme_ca_root, uploads.compose_root(self.app.compose_files))
        return f"{self.app_directory}/{relative}"

    @property
    def limits(self) -> PreviewSettings | None:
        """The caps on each of the app's containers: a preview's (`preview.*`); none elsewhere."""
        return self.preview if self.environment is Environment.PREVIEW else None

    @property
    def alerts_on(self) -> bool:
        """Uptime checks and droplet alerts: a droplet's, on by default in production, never in a preview."""
        if not isinstance(self.server, DropletServer) or self.environment is Environment.PREVIEW:
            return False
        return self.alerts.enabled if self.alerts.enabled is not None else self.environment is Environment.PRODUCTION

    @property
    def volume_name(self) -> str:
        """The DigitalOcean volume's name."""
        return f"{self.resource_name}-data"

    @property
    def stack_tag(self) -> str:
        """The droplet tag of this stack alone: a Swarm's firewall and load balancer find its droplets by it."""
        return f"{NAMESPACE}-{self.stack}"

    @property
    def node_count(self) -> int:
        """The stack's servers: above 1 they form a Docker Swarm."""
        match self.server:
            case DropletServer(droplet=droplet):
                return droplet.count
            case ExistingServer(existing_host=host):
                return 1 + len(host.nodes)

    @property
    def swarm(self) -> bool:
        return self.node_count > 1

    @property
    def manager_count(self) -> int:
        """Swarm managers: the first servers; the rest are workers."""
        match self.server:
            case DropletServer(droplet=droplet):
                return droplet.manager_count
            case ExistingServer():
                return 1

    @property
    def removal_setting(self) -> str:
        """The key of `remove_nodes`, named when a Swarm's shrinking is refused."""
        return "droplet.removeNodes" if isinstance(self.server, DropletServer) else "existingHost.removeNodes"

    @property
    def remove_nodes(self) -> bool:
        """Whether an `up` may take servers out of the Swarm."""
        match self.server:
            case DropletServer(droplet=droplet):
                return droplet.remove_nodes
            case ExistingServer(existing_host=host):
                return host.remove_nodes

    @property
    def tags(self) -> tuple[str, ...]:
        """Droplet tags: dropship's own first, then `droplet.tags`."""
        base = (NAMESPACE, self.stack_tag)
        match self.server:
            case DropletServer(droplet=droplet):
                return base + tuple(t for t in droplet.tags if t not in base)
            case ExistingServer():
                return base
