"""The stack's settings as the program uses them: parsed once, typed, frozen."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from dropship.config.errors import NAMESPACE
from dropship.config.sections import (
    AppSettings,
    DeploySettings,
    DockerSettings,
    DropletServer,
    ExistingServer,
    RegistrySettings,
    SshSettings,
)

PREVIEW_STACK = re.compile(r"^pr-([1-9][0-9]{0,8})$")


class Environment(StrEnum):
    PRODUCTION = "production"
    STAGING = "staging"
    PREVIEW = "preview"
    LOCAL = "local"


@dataclass(frozen=True)
class Settings:
    project: str
    stack: str
    environment: Environment
    server: DropletServer | ExistingServer
    ssh: SshSettings
    deploy: DeploySettings
    docker: DockerSettings
    app: AppSettings
    registry: RegistrySettings | None
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
    def urls(self) -> tuple[str, ...]:
        if self.app.urls:
            return self.app.urls
        match self.server:
            case DropletServer(dns=dns):
                return tuple(f"https://{h}" for h in dns.hostnames)
            case ExistingServer():
                return ()

    @property
    def tags(self) -> tuple[str, ...]:
        """Droplet tags: dropship's own first, then `droplet.tags`."""
        base = (NAMESPACE, f"{NAMESPACE}-{self.stack}")
        match self.server:
            case DropletServer(droplet=droplet):
                return base + tuple(t for t in droplet.tags if t not in base)
            case ExistingServer():
                return base
