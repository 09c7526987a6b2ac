"""Prepares a fresh server: waits for it, mounts its data volume (if any), installs Docker, turns on unattended
security upgrades, creates the deploy user, proves that user can log in and use
docker, then hardens sshd.

Every step but the check logs in as the admin user (root on a droplet), which keeps key-only logins after
hardening: a later change to any step's input (a setting, the deploy key, a new dropship version's script)
runs that step again on a hardened host. docs/day-two.md weighs this design."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_command import remote

from dropship.remote import commands
from dropship.remote.target import SshTarget


@dataclass(frozen=True, kw_only=True)
class DataVolume:
    device: str
    """Its block device, by a stable path."""
    mount_path: str
    attached: pulumi.Resource | None = None
    """The step that attaches it (a droplet's VolumeAttachment)."""


@dataclass(frozen=True, kw_only=True)
class HostBootstrapArgs:
    target: SshTarget
    deploy_user: str
    deploy_sudo: bool
    docker_install: str
    """`distro` or `docker-apt`."""
    log_max_size: str
    log_max_file: int
    reboot_time: str | None
    """When unattended upgrades may reboot the host (HH:MM); none: never."""
    public_key: str
    app_dir: str
    volume: DataVolume | None = None
    """Mounted before Docker is installed, so that Docker's named volumes live on it."""
    after: tuple[pulumi.Resource, ...] = ()
    """Steps the first step waits for (the Swarm size check)."""
    live_restore: bool = True
    """Docker's live-restore; off on a Swarm's servers, where Docker refuses it."""


class HostBootstrap(pulumi.ComponentResource):
    deploy_user_ready: remote.Command
    """Completes once the deploy user has logged in and reached docker."""
    ready: remote.Command
    """The last step: after it the host is ready for the app (no passwords; root only with its key)."""

    def __init__(self, name: str, args: HostBootstrapArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("dropship:index:HostBootstrap", name, None, opts)
        admin = args.target.admin()
        admin_user = args.target.admin_user
        sudo = args.target.admin_needs_sudo

        def step(
            step_name: str, script: commands.Script, connection: remote.ConnectionArgs, after: list[pulumi.Resource]
        ) -> remote.Command:
            return remote.Command(
                f"{name}-{step_name}",
                add_previous_output_in_env=False,
                connection=connection,
                create=script.command,
                stdin=script.stdin,
                triggers=[args.target.host_id],
                opts=args.target.options(self, after),
            )

        before_docker = step("wait", commands.wait_for_host(sudo=sudo), admin, list(args.after))
        if (volume := args.volume) is not None:
            attached = [volume.attached] if volume.attached is not None else []
            mount = commands.mount_volume(volume.device, volume.mount_path, sudo=sudo)
            before_docker = step("volume", mount, admin, [before_docker, *attached])
        docker = step(
            "docker",
            commands.install_docker(args.docker_install, args.log_max_size, args.log_max_file, live_restore=args.live_restore, sudo=sudo),
            admin,
            [before_docker],
        )
        upgrades_command = commands.enable_security_upgrades(args.docker_install, args.reboot_time, sudo=sudo)
        upgrades = step("security-upgrades", upgrades_command, admin, [docker])
        user = step(
            "deploy-user",
            commands.create_deploy_user(args.deploy_user, args.public_key, args.app_dir, args.deploy_sudo, sudo=sudo),
            admin,
            [upgrades],
        )
        self.deploy_user_ready = step("deploy-user-check", commands.check_deploy_user(), args.target.as_user(args.deploy_user), [user])
        self.ready = step("harden-ssh", commands.harden_ssh(args.deploy_user, admin_user, sudo=sudo), admin, [self.deploy_user_ready])
        self.register_outputs({})
