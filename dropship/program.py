"""The wiring: which components a stack has and what flows between them."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pulumi
from pulumi_command import remote

from components.app import App, AppArgs, Registry
from components.backups import Backups, BackupsArgs, BackupStorage
from components.env_file import EnvFile, EnvFileArgs
from components.host_bootstrap import DataVolume, HostBootstrap, HostBootstrapArgs
from components.swarm import Swarm, SwarmArgs, SwarmMember
from dropship.config import DropletServer, ExistingServer, Settings
from dropship.config.routes import routes
from dropship.config.sections import DnsSettings, DropletSettings, ExistingHostSettings
from dropship.remote import commands
from dropship.remote.commands import render_env
from dropship.remote.target import SshTarget

if TYPE_CHECKING:
    from components.alerts import Alerts
    from components.backup_bucket import BackupBucket

# The components of DigitalOcean and Cloudflare resources are imported where a droplet stack
# uses them: their SDKs take about 4 s to load, which every `up` and `preview` of an existing
# host's stack, and every refused configuration, would otherwise wait for.

SSH_PORT = 22
"""A droplet's sshd, and the port the firewall opens for it."""
DROPLET_ADMIN = "root"
"""The user DigitalOcean installs the droplet's SSH key for (dropship's own admin key)."""


@dataclass(frozen=True)
class _Node:
    """A Swarm's server after the first."""

    name: str
    target: SshTarget
    private_address: pulumi.Input[str]


@dataclass(frozen=True)
class _Host:
    target: SshTarget
    private_address: pulumi.Input[str] | None = None
    """The first server's address among a Swarm's servers."""
    nodes: tuple[_Node, ...] = ()
    """A Swarm's other servers."""
    size_check: pulumi.Resource | None = None
    """The step every other waits for: it refuses a Swarm's shrinking unless the settings allow it."""
    volume_attached: pulumi.Resource | None = None
    zone_id: pulumi.Output[str] | None = None
    """The Cloudflare zone, in droplet mode."""
    backup_bucket: BackupBucket | None = None
    """The Spaces bucket the stack made for its backups (a droplet's, when no bucket is named)."""


def build(settings: Settings, *, project_dir: Path) -> None:
    """Registers every resource of the stack and exports its outputs."""
    private_key = pulumi.Output.secret(settings.ssh.private_key)
    match settings.server:
        case DropletServer(droplet=droplet, dns=dns):
            host = _droplet(settings, droplet=droplet, dns=dns, private_key=private_key)
        case ExistingServer(existing_host=existing):
            host = _existing(settings, existing=existing, private_key=private_key)

    env_content = pulumi.Output.secret(render_env(settings.env))
    volume = settings.volume
    after: tuple[pulumi.Resource, ...] = ()
    env_file: EnvFile | None = None
    if settings.host_gone:
        pulumi.log.warn("existingHost.gone is set: nothing runs on the host; `pulumi destroy` forgets what was deployed there")
    else:
        bootstrap = _bootstrap(
            settings,
            "host",
            host.target,
            after=(host.size_check,) if host.size_check is not None else (),
            volume=None
            if volume is None
            else DataVolume(device=volume.device, mount_path=volume.mount_path, attached=host.volume_attached),
        )
        after = (bootstrap.ready,)
        if host.nodes:
            assert host.private_address is not None and host.size_check is not None
            members = [SwarmMember(name="host", target=host.target, private_address=host.private_address, ready=bootstrap.ready)]
            for node in host.nodes:
                node_ready = _bootstrap(settings, f"host-{node.name}", node.target, after=(host.size_check,)).ready
                members.append(SwarmMember(name=node.name, target=node.target, private_address=node.private_address, ready=node_ready))
            swarm = Swarm(
                "swarm",
                SwarmArgs(
                    members=tuple(members),
                    managers=settings.manager_count,
                    user=settings.deploy.user,
                    app_dir=settings.app_directory,
                    remove_nodes=settings.remove_nodes,
                    removal_setting=settings.removal_setting,
                ),
            )
            after = (swarm.formed,)
        if settings.tls.mode == "cloudflare-origin" and host.zone_id is not None:
            from components.origin_certificate import OriginCertificate, OriginCertificateArgs

            origin = OriginCertificate(
                "origin",
                OriginCertificateArgs(
                    target=host.target,
                    user=settings.deploy.user,
                    app_dir=settings.app_directory,
                    hostnames=settings.hostnames,
                    zone_id=host.zone_id,
                    after=after,
                ),
            )
            after = (origin.installed,)
        env_file = EnvFile(
            "env",
            EnvFileArgs(target=host.target, user=settings.deploy.user, app_dir=settings.app_directory, content=env_content, after=after),
        )

    app = settings.app
    registry = settings.registry
    release = App(
        "app",
        AppArgs(
            target=host.target,
            user=settings.deploy.user,
            project=app.name,
            app_dir=settings.app_directory,
            project_dir=project_dir,
            compose_files=app.compose_files,
            files=app.files,
            image_tag=app.image_tag,
            hostnames=settings.hostnames,
            data_dir=volume.mount_path if volume is not None else None,
            acme_ca=settings.tls.acme_ca,
            acme_ca_root=settings.acme_ca_root_on_host,
            tls_mode=settings.tls.mode,
            health_url=settings.health_url,
            health_timeout=app.health_timeout,
            health_retries=app.health_retries,
            rolling_services=app.rolling_services,
            pull_policy=app.pull_policy,
            keep_releases=app.keep_releases,
            lock_timeout=app.lock_timeout,
            hook_timeout=app.hook_timeout,
            pull_timeout=app.pull_timeout,
            pre_deploy=app.pre_deploy,
            post_deploy=app.post_deploy,
            registry=None
            if registry is None
            else Registry(server=registry.server, username=registry.username, password=pulumi.Output.secret(registry.password)),
            env_content=env_content,
            env_file=env_file,
            after=after,
            host_gone=settings.host_gone,
            replicas=settings.node_count if settings.swarm else None,
            routes=tuple(str(r) for r in routes(settings.edge)),
            drain_seconds=settings.edge.drain_seconds,
            edge_image=settings.edge.image,
            maintenance=settings.edge.maintenance,
            limits=None if settings.limits is None else (settings.limits.cpus, settings.limits.memory),
        ),
    ).release

    if settings.backups.databases:
        Backups(
            "backups",
            BackupsArgs(
                target=host.target,
                user=settings.deploy.user,
                app_dir=settings.app_directory,
                project=app.name,
                databases=settings.backups.databases,
                schedule=settings.backups.schedule,
                storage=_backup_storage(settings, host.backup_bucket),
                failure_url=settings.backups.failure_url,
                heartbeat_url=settings.backups.heartbeat_url,
                after=after,
                host_gone=settings.host_gone,
            ),
        )

    port_flag = f" -p {host.target.port}" if host.target.port != SSH_PORT else ""
    pulumi.export("urls", list(settings.urls))
    pulumi.export("sshCommand", pulumi.Output.concat("ssh", port_flag, f" {settings.deploy.user}@", host.target.address))
    pulumi.export("release", release)
    pulumi.export(
        "commands", _commands(settings, ssh=pulumi.Output.concat("ssh", port_flag, f" {settings.deploy.user}@", host.target.address))
    )
    pulumi.export("appDirectory", settings.app_directory)


def _bootstrap(
    settings: Settings, name: str, target: SshTarget, *, after: tuple[pulumi.Resource, ...], volume: DataVolume | None = None
) -> HostBootstrap:
    return HostBootstrap(
        name,
        HostBootstrapArgs(
            target=target,
            deploy_user=settings.deploy.user,
            deploy_sudo=settings.deploy.sudo,
            docker_install=settings.docker.install,
            log_max_size=settings.docker.log_max_size,
            log_max_file=settings.docker.log_max_file,
            reboot_time=settings.upgrades.reboot_time,
            public_key=settings.ssh.public_key,
            app_dir=settings.app_directory,
            volume=volume,
            after=after,
            live_restore=not settings.swarm,
        ),
    )


def _size_check(settings: Settings, target: SshTarget) -> remote.Command:
    """On the first server, before any other step: refuses fewer servers than its Swarm has, unless allowed."""
    script = commands.check_swarm_size(settings.node_count, settings.remove_nodes, settings.removal_setting, sudo=target.admin_needs_sudo)
    return remote.Command(
        "swarm-size",
        add_previous_output_in_env=False,
        connection=target.admin(),
        create=script.command,
        stdin=script.stdin,
        triggers=[target.host_id],
        opts=pulumi.ResourceOptions(deleted_with=target.host),
    )


def _droplet(settings: Settings, *, droplet: DropletSettings, dns: DnsSettings, private_key: pulumi.Output[str]) -> _Host:
    from components.backup_bucket import BackupBucket, BackupBucketArgs
    from components.dns import Dns, DnsArgs, web_source_ranges, zone_id
    from components.firewall import Firewall, FirewallArgs, SwarmPeers
    from components.load_balancer import LoadBalancer, LoadBalancerArgs
    from components.server import Node, Server, ServerArgs

    # A Swarm (droplet.count above 1) is reached through its load balancer; DNS points there.
    load_balancer = None
    if droplet.count > 1:
        load_balancer = LoadBalancer(
            "lb",
            LoadBalancerArgs(
                resource_name=settings.resource_name,
                region=droplet.region,
                droplet_tag=settings.stack_tag,
                source_ranges=web_source_ranges(proxied=True) if dns.proxied else None,
            ),
        )
    firewall = Firewall(
        "firewall",
        FirewallArgs(
            droplet_tag=settings.stack_tag,
            resource_name=settings.resource_name,
            ssh_port=SSH_PORT,
            ssh_source_ranges=settings.ssh.source_ranges,
            web_source_ranges=web_source_ranges(proxied=dns.proxied),
            swarm=None if load_balancer is None else SwarmPeers(load_balancer_id=load_balancer.id),
        ),
    )
    server = Server(
        "server",
        ServerArgs(
            resource_name=settings.resource_name,
            region=droplet.region,
            size=droplet.size,
            image=droplet.image,
            backups=droplet.backups,
            monitoring=droplet.monitoring,
            ipv6=droplet.ipv6,
            reserved_ip=droplet.reserved_ip,
            volume_size_gb=droplet.volume_size_gb,
            volume_name=settings.volume_name,
            tags=settings.tags,
            protect=settings.protect,
            count=droplet.count,
            after=(firewall.firewall,),
        ),
    )

    def droplet_target(node: Node, address: pulumi.Input[str] | None = None) -> SshTarget:
        return SshTarget(
            address=address if address is not None else node.ipv4,
            port=SSH_PORT,
            private_key=private_key,
            admin_user=DROPLET_ADMIN,
            admin_private_key=server.admin_private_key,
            dial_error_limit=settings.ssh.dial_error_limit,
            host_key=node.host_key,
            host=node.droplet,
            host_id=node.id,
        )

    target = droplet_target(server.nodes[0], server.ipv4)  # the reserved IP, if any
    size_check = _size_check(settings, target)
    zone = zone_id(zone_name=dns.zone, zone_id=dns.zone_id)
    Dns(
        "dns",
        DnsArgs(
            zone_id=zone,
            hostnames=dns.hostnames,
            ipv4=server.ipv4 if load_balancer is None else load_balancer.ip,
            ipv6=server.ipv6 if load_balancer is None else None,
            ttl=dns.ttl,
            proxied=dns.proxied,
            comment=f"managed by dropship, stack {settings.project}/{settings.stack}",
            after=(size_check,),
        ),
    )
    if load_balancer is None:
        pulumi.export("ipv4", server.ipv4)
        if server.ipv6 is not None:
            pulumi.export("ipv6", server.ipv6)
    else:
        pulumi.export("ipv4", load_balancer.ip)
        pulumi.export("nodes", [{"name": node.name, "ipv4": node.ipv4} for node in server.nodes])
    backup_bucket = None
    if settings.backups.databases and settings.backups.bucket is None:
        backup_bucket = BackupBucket(
            "backups",
            BackupBucketArgs(
                resource_name=settings.resource_name,
                region=droplet.region,
                retention_days=settings.backups.retention_days,
                protect=settings.protect,
            ),
        )
        pulumi.export("backupBucket", backup_bucket.bucket)
    if settings.alerts_on:
        pulumi.export("alertPolicies", _alerts(settings, droplet_id=server.id).policies)
    pulumi.export("hostKey", server.host_key)
    first, *others = server.nodes
    nodes = tuple(
        _Node(name=f"node-{number}", target=droplet_target(node), private_address=node.private_ipv4)
        for number, node in enumerate(others, start=2)
    )
    return _Host(
        target=target,
        private_address=first.private_ipv4 if nodes else None,
        nodes=nodes,
        size_check=size_check,
        volume_attached=server.volume_attachment,
        zone_id=zone,
        backup_bucket=backup_bucket,
    )


def _commands(settings: Settings, *, ssh: pulumi.Output[str]) -> pulumi.Output[dict[str, str]]:
    """One-line commands for what people look at: the app's logs, its releases, its backups."""
    app_dir, project = settings.app_directory, settings.app.name
    # The project by name alone: compose finds its containers by their labels, without the release's files.
    lines = {
        "logs": f"docker compose --project-name {shlex.quote(project)} logs --follow --tail 100",
        "releases": f"cat {app_dir}/releases.log",
    }
    for service in settings.backups.databases:
        backups = commands.backups("list", app_dir=app_dir, project=project, service=service)
        lines[f"backups {service}"] = backups
        lines[f"last backup {service}"] = f"journalctl --unit {commands.backup_unit(project, service)} --lines 20 --no-pager"
        lines[f"restore {service}"] = commands.backups("restore", app_dir=app_dir, project=project, service=service, name="latest")
    return ssh.apply(lambda prefix: {name: f"{prefix} {shlex.quote(line)}" for name, line in lines.items()})


def _backup_storage(settings: Settings, bucket: BackupBucket | None) -> BackupStorage:
    if bucket is not None:
        return BackupStorage(
            endpoint=bucket.endpoint, bucket=bucket.bucket, access_key_id=bucket.access_key_id, secret_access_key=bucket.secret_access_key
        )
    backups = settings.backups
    # The settings require all four with backups.bucket.
    assert backups.bucket and backups.endpoint and backups.access_key_id and backups.secret_access_key
    return BackupStorage(
        endpoint=backups.endpoint,
        bucket=backups.bucket,
        access_key_id=backups.access_key_id,
        secret_access_key=pulumi.Output.secret(backups.secret_access_key),
    )


def _alerts(settings: Settings, *, droplet_id: pulumi.Output[str]) -> Alerts:
    from components.alerts import Alerts, AlertsArgs, Slack

    alerts = settings.alerts
    slack = None
    if alerts.slack_webhook_url is not None and alerts.slack_channel is not None:
        slack = Slack(channel=alerts.slack_channel, url=pulumi.Output.secret(alerts.slack_webhook_url))
    return Alerts(
        "alerts",
        AlertsArgs(
            resource_name=settings.resource_name,
            urls=settings.urls,
            droplet_id=droplet_id,
            emails=alerts.emails,
            slack=slack,
            cpu_percent=alerts.cpu_percent,
            memory_percent=alerts.memory_percent,
            disk_percent=alerts.disk_percent,
            window=alerts.window,
            latency_ms=alerts.latency_ms,
            certificate_days=alerts.certificate_days,
        ),
    )


def _existing(settings: Settings, *, existing: ExistingHostSettings, private_key: pulumi.Output[str]) -> _Host:
    pulumi.export("ipv4", existing.address)
    if settings.ssh.host_key is not None:
        pulumi.export("hostKey", settings.ssh.host_key)
    elif settings.ssh.accept_any_host_key:
        pulumi.log.warn(
            f"dropship: ssh.acceptAnyHostKey: {existing.address}'s host key is not checked, so whoever answers there "
            "receives this stack's commands and .env; pin it with ssh.hostKey"
        )
    admin_key = private_key if existing.private_key is None else pulumi.Output.secret(existing.private_key)

    def server_target(address: str, port: int, host_key: str | None, host_id: str) -> SshTarget:
        return SshTarget(
            address=address,
            port=port,
            private_key=private_key,
            admin_user=existing.user,
            admin_private_key=admin_key,
            dial_error_limit=settings.ssh.dial_error_limit,
            host_key=host_key,
            host_id=host_id,
        )

    target = server_target(existing.address, existing.port, settings.ssh.host_key, existing.id)
    if settings.host_gone:
        return _Host(target=target)
    nodes = tuple(
        _Node(name=f"node-{number}", target=server_target(n.address, n.port, n.host_key, n.id), private_address=n.private_address)
        for number, n in enumerate(existing.nodes, start=2)
    )
    return _Host(target=target, private_address=existing.private_address, nodes=nodes, size_check=_size_check(settings, target))
