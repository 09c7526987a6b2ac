"""The settings model, one section per key prefix (`droplet.`, `dns.`, ...).

Each field's docstring is its documentation: docs/settings.md is generated from
this module (`python -m dropship.config.reference`).
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from dropship.config.types import (
    AbsolutePath,
    BucketName,
    CalendarSpec,
    Cidr,
    DropletTag,
    Email,
    EnvName,
    HealthUrl,
    HostAddress,
    HostKey,
    Hostname,
    HttpsUrl,
    HttpUrl,
    ImageTag,
    IPv4,
    LogSize,
    MachineId,
    Port,
    PrivateKey,
    ProjectFile,
    ProjectName,
    PublicKey,
    RegionSlug,
    RegistryHost,
    ServiceName,
    Slug,
    TimeOfDay,
    UnixUser,
    ZoneId,
)

SMALLEST_SIZE = "s-1vcpu-1gb"
UBUNTU_LTS_IMAGE = "ubuntu-24-04-x64"


class Section(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True, use_attribute_docstrings=True)


class DropletSettings(Section):
    region: RegionSlug
    """DigitalOcean region slug, e.g. fra1."""
    size: Slug
    """Droplet size slug, e.g. s-1vcpu-2gb."""
    image: Slug = UBUNTU_LTS_IMAGE
    """Droplet image slug."""
    backups: bool = False
    """DigitalOcean's weekly droplet backups."""
    monitoring: bool = True
    """DigitalOcean's metrics agent."""
    ipv6: bool = True
    """Give the droplet an IPv6 address (and AAAA records); cannot be turned off again."""
    reserved_ip: bool = False
    """Keep a reserved IP, so that DNS survives a droplet replacement."""
    volume_size_gb: Annotated[int, Field(ge=1, le=16384)] | None = None
    """Size in GB of a block-storage volume (ext4) for data that must outlive the droplet; none without it."""
    volume_mount_path: AbsolutePath = "/mnt/data"
    """Where the volume is mounted on the droplet (before Docker starts, so that Docker's named volumes live on it):
    a directory of its own below /srv, /opt, /mnt, /data or a user's home."""
    tags: tuple[DropletTag, ...] = ()
    """Extra droplet tags, beside `dropship` and `dropship-<stack>`."""
    count: Annotated[int, Field(ge=1, le=9)] = 1
    """Droplets of the stack. Above 1 they form a Docker Swarm behind a DigitalOcean load balancer
    (docs/swarm.md); a preview always has 1."""
    managers: Annotated[int, Field(ge=1, le=3)] | None = None
    """Swarm managers among the droplets: 1 or 3, the rest are workers. Default: 1 below 5 droplets, 3 from 5."""
    remove_nodes: bool = False
    """Let an `up` with a smaller `droplet.count` destroy the extra droplets (their containers move to the others)."""

    @property
    def manager_count(self) -> int:
        if self.managers is not None:
            return self.managers
        return 3 if self.count >= 5 else 1


class DnsSettings(Section):
    zone: Hostname | None = None
    """The Cloudflare zone by name (e.g. example.com), looked up at deploy time."""
    zone_id: ZoneId | None = None
    """The Cloudflare zone by id, instead of `dns.zone`."""
    hostnames: tuple[Hostname, ...] = ()
    """Names that get A (and AAAA) records pointing at the server."""
    proxied: bool = False
    """Proxy the records through Cloudflare; the firewall then admits HTTP(S) only from Cloudflare."""
    ttl: Annotated[int, Field(ge=1, le=86400)] = 1
    """Record TTL in seconds; 1 means automatic."""


class SwarmNodeSettings(Section):
    """One more server of an existing host's Swarm (an element of `existingHost.nodes`)."""

    address: HostAddress
    """Where dropship reaches it over SSH."""
    port: Port = 22
    private_address: IPv4
    """Its address on the network the servers share: the Swarm's traffic goes there."""
    id: MachineId = ""
    """As `existingHost.id`, for this server."""
    host_key: HostKey | None = None
    """Its SSH host key, pinned as `ssh.hostKey` pins the first server's."""


class ExistingHostSettings(Section):
    address: HostAddress
    """Host name or IP address of a server you already have."""
    port: Port = 22
    """Its SSH port."""
    user: UnixUser = "root"
    """The user dropship logs in as to bootstrap the host: root, or a user with passwordless sudo (`sudo -n`).
    It keeps key-only logins after hardening, so that later changes to the bootstrap can run again."""
    private_key: PrivateKey | None = None
    """That user's key, when it is not `ssh.privateKey` (the deploy key). Set it to the current key before
    rotating `ssh.*`: the bootstrap then installs the new deploy key as that user."""
    id: MachineId = ""
    """What identifies the machine at the address (its provider's instance id, say). Change it when the
    machine is replaced: every step runs again, as for a new droplet."""
    hostnames: tuple[Hostname, ...] = ()
    """Names whose DNS (yours to manage) points at the host; the app receives them as `DROPSHIP_HOSTNAMES`."""
    volume_device: AbsolutePath | None = None
    """A block device (ext4) for data that must outlive the host, e.g. /dev/disk/by-id/scsi-0DO_Volume_shop-data;
    none without one."""
    volume_mount_path: AbsolutePath = "/mnt/data"
    """Where `existingHost.volumeDevice` is mounted (before Docker starts, so that Docker's named volumes live on it):
    a directory of its own below /srv, /opt, /mnt, /data or a user's home."""
    private_address: IPv4 | None = None
    """This server's address on the network it shares with `existingHost.nodes`: the Swarm's advertise
    address. Required with `existingHost.nodes`."""
    nodes: tuple[SwarmNodeSettings, ...] = ()
    """More servers, each `{address, privateAddress, port, id, hostKey}`: with any, the servers form a Docker
    Swarm whose only manager is this one (docs/swarm.md). The admin user and key are `existingHost.user`
    and `existingHost.privateKey` on each."""
    remove_nodes: bool = False
    """Let an `up` with fewer `existingHost.nodes` take the others out of the Swarm."""
    gone: bool = False
    """The host is gone for good (deleted, or never coming back at this address). dropship then
    connects to it no more: the program registers no step on it but the app's directory, with
    `retainOnDelete`, so `pulumi destroy --run-program` (or `pulumi up`, then `pulumi destroy`)
    completes without SSH and forgets what was deployed there. Remove it to deploy to a new
    host at the address."""


class DropletServer(Section):
    """dropship creates the droplet, its firewall and DNS records."""

    mode: Literal["droplet"] = "droplet"
    droplet: DropletSettings
    dns: DnsSettings

    @property
    def hostnames(self) -> tuple[str, ...]:
        """The names the app answers to."""
        return self.dns.hostnames


class ExistingServer(Section):
    """dropship deploys to a server that already exists (no DigitalOcean or Cloudflare resource)."""

    mode: Literal["existing"]
    existing_host: ExistingHostSettings

    @property
    def hostnames(self) -> tuple[str, ...]:
        """The names the app answers to."""
        return self.existing_host.hostnames


Server = Annotated[DropletServer | ExistingServer, Field(discriminator="mode")]


class SshSettings(Section):
    public_key: PublicKey
    """The deploy key's public half, installed for the deploy user."""
    private_key: PrivateKey
    """The deploy key's private half: every step as the deploy user logs in with it (and an existing host's
    bootstrap too, unless `existingHost.privateKey` is set)."""
    source_ranges: tuple[Cidr, ...] = ()
    """CIDR ranges allowed to reach SSH through the cloud firewall (required for a droplet)."""
    allow_world: bool = False
    """Production refuses `ssh.sourceRanges` that together cover all of IPv4 or IPv6 (0.0.0.0/0 and ::/0, however
    spelled: 0.0.0.0/1 with 128.0.0.0/1 is the same) unless this is true."""
    dial_error_limit: Annotated[int, Field(ge=1, le=1000)] = 60
    """SSH connection attempts before a step fails (a booting droplet needs many)."""
    host_key: HostKey | None = None
    """An existing host's public host key to pin, e.g. 'ssh-ed25519 AAAA...' (Ed25519 or ECDSA; `ssh-keyscan -t
    ed25519 <host>` over a network you trust, or the host's /etc/ssh/ssh_host_ed25519_key.pub). Required on an
    existing host outside `local`, unless `ssh.acceptAnyHostKey`. A droplet's is made by dropship and always pinned."""
    accept_any_host_key: bool = False
    """An existing host without `ssh.hostKey`: accept whatever key answers at its address (a warning on every
    `up`: whoever answers there gets the `.env`). Only where pinning cannot be had."""


class DeploySettings(Section):
    user: UnixUser = "deploy"
    """The non-root user that owns the app and runs docker: not root, not the admin user (its keys would be
    replaced by the deploy key), not a system account (www-data, systemd-*, or any below uid 1000 on the host)."""
    sudo: bool = False
    """Give the deploy user passwordless sudo."""


class DockerSettings(Section):
    install: Literal["distro", "docker-apt"] = "distro"
    """`distro`: the distribution's docker.io and compose v2 packages; `docker-apt`: Docker's apt repository."""
    log_max_size: LogSize = "10m"
    """Docker's json-file log rotation: size of one file."""
    log_max_file: Annotated[int, Field(ge=1, le=100)] = 3
    """Docker's json-file log rotation: files kept per container."""


Percent = Annotated[int, Field(ge=1, le=100)]


class AlertsSettings(Section):
    enabled: bool | None = None
    """DigitalOcean uptime checks and droplet alerts; default: on in production, off elsewhere (never in a preview)."""
    emails: tuple[Email, ...] = ()
    """Who gets the alerts by email."""
    slack_webhook_url: HttpsUrl | None = None
    """A Slack incoming webhook that gets the alerts (with `alerts.slackChannel`)."""
    slack_channel: Annotated[str, Field(pattern=r"^#?[a-z0-9_-]{1,80}$")] | None = None
    """The Slack channel of `alerts.slackWebhookUrl`, e.g. #ops."""
    cpu_percent: Percent = 80
    """Alert when the droplet's CPU use stays above this (percent) for `alerts.window`."""
    memory_percent: Percent = 90
    """Alert when its memory use stays above this (percent)."""
    disk_percent: Percent = 85
    """Alert when its disk use stays above this (percent)."""
    window: Literal["5m", "10m", "30m", "1h"] = "5m"
    """How long a droplet metric must stay above its threshold."""
    latency_ms: Annotated[int, Field(ge=1, le=60000)] = 2000
    """Alert when a URL answers slower than this (milliseconds)."""
    certificate_days: Annotated[int, Field(ge=1, le=90)] = 14
    """Alert when a URL's certificate expires in fewer days than this."""


class BackupsSettings(Section):
    databases: tuple[ServiceName, ...] = ()
    """Postgres services of the compose files to back up: every database and the roles of each, checked by a
    restore drill before upload; none: no backups."""
    schedule: CalendarSpec = "daily"
    """When the host's systemd timer runs the backup: OnCalendar= syntax, on the host's clock (UTC on a droplet)."""
    retention_days: Annotated[int, Field(ge=1, le=3650)] = 30
    """Days a backup is kept (the Spaces bucket's lifecycle rule; your own bucket's rules are yours)."""
    bucket: BucketName | None = None
    """A bucket of yours to upload to; none: a droplet's stack creates a Spaces bucket and a key scoped to it."""
    endpoint: HttpUrl | None = None
    """The S3 endpoint of `backups.bucket`, e.g. https://fra1.digitaloceanspaces.com (http:// for a server on a
    private network)."""
    access_key_id: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    """An access key that may write to `backups.bucket`."""
    secret_access_key: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    """Its secret."""
    failure_url: HttpUrl | None = None
    """A URL the host asks (POST) when a backup fails, e.g. a healthchecks.io check's /fail URL (http:// for a
    server on a private network)."""
    heartbeat_url: HttpUrl | None = None
    """A URL the host asks (GET) after each good backup (dumped, restored in the drill, uploaded): a dead man's
    switch such as a healthchecks.io check, which alerts when backups stop arriving."""


class UpgradesSettings(Section):
    reboot_time: TimeOfDay | None = None
    """When the host reboots by itself after a security upgrade that needs it (a new kernel): a time of day
    such as 04:30 on the host's clock (UTC on a droplet). None: never; upgrades that need a reboot wait for you."""


class AppSettings(Section):
    name: ProjectName = "app"
    """The compose project name."""
    directory: AbsolutePath | None = None
    """The app's directory on the host; default `/srv/<app.name>`. A directory of its own below /srv, /opt, /mnt,
    /data or a user's home (dropship empties it on `pulumi destroy`), written without `..`; on an existing host, one
    that is empty or dropship's already."""
    compose_files: tuple[ProjectFile, ...]
    """Compose files, relative to the project directory. The first one's directory becomes the app's directory on the host."""
    files: tuple[ProjectFile, ...] = ()
    """Extra files or whole directories (a Caddyfile, `nginx/default.conf`, a built `web/dist`), relative to the
    project directory and inside the first compose file's directory; each keeps its path relative to that
    directory on the host, as compose sees it in the repository."""
    image_tag: ImageTag
    """The release: compose files reference it as `${IMAGE_TAG}`. An immutable tag (a version, a commit's SHA)
    unless `app.pullPolicy` is `always`."""
    pull_policy: Literal["missing", "always"] = "missing"
    """When a release pulls: `missing` (only images the host lacks; kept releases roll back without the
    registry) or `always` (every release, for a moving tag such as main or latest; a failed release rolls back
    to the images the previous one ran, by ID)."""
    health_url: HealthUrl | None = None
    """Checked from the host itself after `up`: a path such as /api/health, at the stack's first URL,
    or a URL such as http://127.0.0.1:8080/health. The stack's hostnames are asked of the edge on the
    host (127.0.0.1), its certificate unchecked."""
    health_timeout: Annotated[int, Field(ge=1, le=3600)] = 60
    """Seconds each step of a release has to become healthy: each routed or rolled service's new containers in
    turn, then the other services' healthchecks with `app.healthUrl`."""
    health_retries: Annotated[int, Field(ge=1, le=1000)] = 30
    """Requests to `app.healthUrl`, 2 s apart, before the release counts as unhealthy."""
    rolling_services: tuple[ServiceName, ...] = ()
    """Services rolled one at a time, in this order: new containers start beside the old ones and take over
    once healthy (zero downtime behind an edge proxy that finds them by service name). They may not publish
    a host port or set container_name."""
    keep_releases: Annotated[int, Field(ge=1, le=50)] = 3
    """Releases (and their images) kept on the host: rolling back to one needs no pull."""
    lock_timeout: Annotated[int, Field(ge=0, le=7200)] = 600
    """Seconds a deploy waits for another one on the same host before failing."""
    hook_timeout: Annotated[int, Field(ge=1, le=86400)] = 600
    """Seconds each pre- or post-deploy hook may run (a migration's): then it is stopped (its whole process group)
    and the release fails as that hook's failure would."""
    pull_timeout: Annotated[int, Field(ge=1, le=7200)] = 600
    """Seconds the registry login, and then the pull of the release's images, may each take: a registry that
    does not answer fails the release (the previous one still serves) and frees the deploy lock."""
    pre_deploy: tuple[str, ...] = ()
    """Commands run in the new release's directory before anything changes; a failure changes nothing."""
    post_deploy: tuple[str, ...] = ()
    """Commands run in the app directory once it is healthy (`docker compose run --rm api alembic upgrade head`); a failure rolls back."""
    required_env: tuple[EnvName, ...] = ()
    """Names that must be set as secrets under `env.*`."""
    urls: tuple[HttpUrl, ...] = ()
    """Public URLs reported as outputs; default `https://<hostname>` for each of `dns.hostnames`."""


class TlsSettings(Section):
    mode: Literal["acme", "cloudflare-origin"] = "acme"
    """`acme`: the edge gets certificates by ACME (Let's Encrypt, or `tls.acmeCa`). `cloudflare-origin`: for
    records proxied by Cloudflare (`dns.proxied`), an origin certificate from Cloudflare's origin CA for
    `dns.hostnames` (its key made on the server, never leaving it) and the zone's SSL mode set to strict;
    the app receives it as `DROPSHIP_TLS_MODE`, the files in `$DROPSHIP_TLS_DIR` (cert.pem, key.pem)."""
    acme_ca: HttpUrl | None = None
    """The ACME directory the app's edge gets certificates from; none: the edge's default (Let's Encrypt).
    The app receives it as `DROPSHIP_ACME_CA`."""
    acme_ca_root: ProjectFile | None = None
    """A file of `app.files` (or in one of its directories) with the root that the ACME server's own HTTPS
    is checked against, for a private CA such as Pebble. The app receives its path on the host as
    `DROPSHIP_ACME_CA_ROOT`."""


EDGE_IMAGE = "caddy:2.11.9-alpine"
"""dropship's edge on droplets: the official Caddy image, of the version the test hosts' edge is built at
(dev/caddy.sh). Not Debian's 2.6.2: built with Go 1.19, it closes HTTP/2 connections on a reload with
requests still unanswered (docs/edge.md)."""


class EdgeSettings(Section):
    routes: tuple[str, ...] = ()
    """Which service answers which path, a line each: `PATH SERVICE:PORT [HEALTH_PATH]`, e.g.
    `["/api/* api:8000 /api/health", "/* web:8080 /"]`. With any, dropship runs its own edge (Caddy, on 80
    and 443, TLS for the stack's hostnames) and switches each routed service's traffic to its new containers
    only once they are healthy and answer the health path (any connection without one); their host ports and
    container_name are dropped. Empty: the app brings its own proxy (docs/edge.md)."""
    drain_seconds: Annotated[int, Field(ge=0, le=3600)] = 30
    """Seconds the old containers of a routed service get to finish their requests in flight before they stop."""
    image: Annotated[str, Field(min_length=1, pattern=r"^[a-zA-Z0-9][a-zA-Z0-9._/:@-]*$")] = EDGE_IMAGE
    """The edge's image: Caddy, with `sh` and `wget` or `curl` (the official image, or one with its binary)."""
    maintenance: bool = False
    """Every route answers 503 with Retry-After and a maintenance page, the app still running."""


class PreviewSettings(Section):
    """Caps on every container of a preview stack (`pr-<n>`), so that one that runs away cannot starve the
    stacks it shares a host with (staging, other previews). Set beside staging's settings, which previews copy."""

    cpus: Annotated[float, Field(gt=0, le=64)] = 1.0
    """CPUs each container of a preview may use (compose's `cpus`)."""
    memory: Annotated[str, Field(pattern=r"^[1-9][0-9]{0,5}[mg]$")] = "512m"
    """Memory each container of a preview may use (compose's `mem_limit`), e.g. 512m or 2g; a container
    that needs more is killed by the kernel and restarted by its restart policy."""


class RegistrySettings(Section):
    server: RegistryHost
    """The image registry to log in to before pulling."""
    username: str
    """Its user name."""
    password: str
    """Its password or token."""


SERVER_VARIANTS: dict[str, type[DropletServer | ExistingServer]] = {
    get_args(variant.model_fields["mode"].annotation)[0]: variant for variant in get_args(get_args(Server)[0])
}
"""server.mode -> its variant of the discriminated union `Server`."""

MODE_OF_SECTION: dict[str, str] = {
    field.alias or name: mode for mode, variant in SERVER_VARIANTS.items() for name, field in variant.model_fields.items() if name != "mode"
}
"""Each server section (droplet, dns, existingHost) -> the server.mode it belongs to."""


def _section_model(annotation: object) -> type[Section]:
    if isinstance(annotation, type) and issubclass(annotation, Section):
        return annotation
    raise TypeError(f"a server variant's fields are sections; got {annotation!r}")


SERVER_SECTIONS: dict[str, type[Section]] = {
    field.alias or name: _section_model(field.annotation)
    for variant in SERVER_VARIANTS.values()
    for name, field in variant.model_fields.items()
    if name != "mode"
}
"""The sections of `Server`'s variants, by flat-key prefix."""

SECTIONS: dict[str, type[Section]] = {
    **SERVER_SECTIONS,
    "ssh": SshSettings,
    "deploy": DeploySettings,
    "docker": DockerSettings,
    "upgrades": UpgradesSettings,
    "alerts": AlertsSettings,
    "backups": BackupsSettings,
    "app": AppSettings,
    "registry": RegistrySettings,
    "tls": TlsSettings,
    "edge": EdgeSettings,
    "preview": PreviewSettings,
}
"""Every section but `server` (whose one key, `server.mode`, chooses the variant) and `env`."""

SECRET_KEYS = frozenset(
    {"ssh.privateKey", "existingHost.privateKey", "registry.password", "alerts.slackWebhookUrl", "backups.secretAccessKey"}
)
