"""dropship: a Docker Compose app on one server. This file only wires components."""

from pathlib import Path

import pulumi

from components.app import App, AppArgs
from components.dns import Dns, DnsArgs, web_source_ranges, zone_id
from components.env_file import EnvFile, EnvFileArgs
from components.firewall import Firewall, FirewallArgs
from components.host_bootstrap import HostBootstrap, HostBootstrapArgs
from components.server import Server, ServerArgs
from dropship.commands import render_env
from dropship.remote import SshTarget
from dropship.stack_config import read_settings

settings = read_settings(Path(__file__).parent)
private_key = pulumi.Output.secret(settings.ssh.private_key)
resource_name = f"{settings.project}-{settings.stack}"

if settings.droplet and settings.dns:
    server = Server(
        "server",
        ServerArgs(settings.droplet, settings.ssh.public_key, resource_name, settings.tags, settings.protect),
    )
    Firewall(
        "firewall",
        FirewallArgs(server.droplet.id, resource_name, 22, settings.ssh.source_ranges, web_source_ranges(settings.dns.proxied)),
    )
    Dns(
        "dns",
        DnsArgs(
            zone_id(settings.dns.zone, settings.dns.zone_id),
            settings.dns.hostnames,
            server.ipv4,
            server.ipv6,
            settings.dns.ttl,
            settings.dns.proxied,
            f"managed by dropship, stack {settings.project}/{settings.stack}",
        ),
    )
    target = SshTarget(
        server.ipv4, 22, private_key, settings.ssh.dial_error_limit, settings.ssh.host_key, server.droplet, server.droplet.id
    )
    admin_user = "root"
    pulumi.export("ipv4", server.ipv4)
    if server.ipv6 is not None:
        pulumi.export("ipv6", server.ipv6)
else:
    host = settings.existing_host
    assert host is not None
    target = SshTarget(host.address, host.port, private_key, settings.ssh.dial_error_limit, settings.ssh.host_key)
    admin_user = host.user
    pulumi.export("ipv4", host.address)

env_content = pulumi.Output.secret(render_env(settings.env))
host_steps: tuple[pulumi.Resource, ...] = ()
env_file = None
if settings.host_gone:
    pulumi.log.warn("existingHost.gone is set: nothing runs on the host; `pulumi destroy` forgets what was deployed there")
else:
    bootstrap = HostBootstrap(
        "host",
        HostBootstrapArgs(target, admin_user, settings.deploy, settings.docker, settings.ssh.public_key, settings.app_directory),
    )
    host_steps = (bootstrap,)
    env_file = EnvFile(
        "env",
        EnvFileArgs(target, settings.deploy.user, settings.app_directory, env_content, after=host_steps),
    )
App(
    "app",
    AppArgs(
        target,
        settings.deploy.user,
        settings.app,
        settings.app_directory,
        Path(__file__).parent,
        settings.registry,
        env_content,
        env_file,
        after=host_steps,
        host_gone=settings.host_gone,
    ),
)

port_flag = f" -p {target.port}" if target.port != 22 else ""
pulumi.export("urls", list(settings.urls))
pulumi.export("sshCommand", pulumi.Output.concat("ssh", port_flag, f" {settings.deploy.user}@", target.address))
pulumi.export("release", settings.app.image_tag)
pulumi.export("appDirectory", settings.app_directory)
