"""Scheduled backups of the app's Postgres services: the script, its environment (secret, mode 600) and the
systemd timers that run it as the deploy user."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_command import remote

from dropship.remote import commands
from dropship.remote.target import SshTarget


@dataclass(frozen=True, kw_only=True)
class BackupStorage:
    endpoint: pulumi.Input[str]
    bucket: pulumi.Input[str]
    access_key_id: pulumi.Input[str]
    secret_access_key: pulumi.Output[str]
    """Secret."""


@dataclass(frozen=True, kw_only=True)
class BackupsArgs:
    target: SshTarget
    user: str
    app_dir: str
    project: str
    databases: tuple[str, ...]
    schedule: str
    storage: BackupStorage
    failure_url: str | None
    heartbeat_url: str | None
    after: tuple[pulumi.Resource, ...]
    host_gone: bool = False
    """existingHost.gone: only the timers' step is registered, so that destroying it runs nothing there."""


class Backups(pulumi.ComponentResource):
    timers: remote.Command
    """Installs the timers; done once every database has one."""

    def __init__(self, name: str, args: BackupsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("dropship:index:Backups", name, None, opts)
        target = args.target
        deploy = target.as_user(args.user)
        if args.host_gone:
            self.timers = self._timers(name, args, [])
            self.register_outputs({})
            return
        script = remote.CopyToRemote(
            f"{name}-script",
            connection=deploy,
            source=pulumi.FileAsset(str(commands.SCRIPTS / commands.BACKUP_SCRIPT)),
            remote_path=commands.backup_script(args.app_dir),
            triggers=[target.host_id],
            opts=target.options(self, list(args.after)),
        )
        storage = args.storage

        def render(values: list[str]) -> str:
            endpoint, bucket, access_key_id, secret_access_key = values
            environment = commands.backup_environment(
                endpoint=endpoint,
                bucket=bucket,
                access_key_id=access_key_id,
                secret_access_key=secret_access_key,
                failure_url=args.failure_url,
                heartbeat_url=args.heartbeat_url,
            )
            return commands.render_env(environment)

        content: pulumi.Output[str] = pulumi.Output.all(
            storage.endpoint, storage.bucket, storage.access_key_id, storage.secret_access_key
        ).apply(render)
        env = remote.Command(
            f"{name}-env",
            add_previous_output_in_env=False,
            connection=deploy,
            create=commands.write_backup_env(args.app_dir),
            stdin=content,  # secret: it holds the secret key
            logging=remote.Logging.NONE,
            triggers=[target.host_id],
            opts=pulumi.ResourceOptions.merge(
                target.options(self, list(args.after)),
                pulumi.ResourceOptions(additional_secret_outputs=["stdin", "stdout", "stderr"]),
            ),
        )
        self.timers = self._timers(name, args, [script, env])
        self.register_outputs({})

    def _timers(self, name: str, args: BackupsArgs, depends_on: list[pulumi.Resource]) -> remote.Command:
        target = args.target
        sudo = target.admin_needs_sudo
        machine = pulumi.Output.from_input(target.host_id)
        install = machine.apply(
            lambda m: commands.install_backups(args.app_dir, args.project, args.user, args.schedule, m, args.databases, sudo=sudo)
        )
        options = target.options(self, depends_on)
        if args.host_gone:
            # With the host gone: registered unchanged and retained on delete, as the app's directory is,
            # so that destroying it forgets it without SSH.
            options = pulumi.ResourceOptions.merge(options, pulumi.ResourceOptions(retain_on_delete=True, ignore_changes=["*"]))
        # Its delete removes the timers and the environment file: backups turned off, or `pulumi destroy`.
        return remote.Command(
            f"{name}-timers",
            add_previous_output_in_env=False,
            connection=target.admin(),
            create=install.apply(lambda i: i.command),
            stdin=install.apply(lambda i: i.stdin),
            delete=machine.apply(lambda m: commands.remove_backups(args.app_dir, args.project, m, sudo=sudo)),
            triggers=[target.host_id],
            opts=options,
        )
