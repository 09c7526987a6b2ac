"""The compose app: its files on the host, one release deployed, removed on destroy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pulumi
from pulumi_command import remote

from dropship import commands
from dropship.remote import SshTarget
from dropship.settings import AppSettings, RegistrySettings


@dataclass(frozen=True)
class AppArgs:
    target: SshTarget
    user: str
    app: AppSettings
    app_dir: str
    project_dir: Path
    registry: RegistrySettings | None
    env_content: pulumi.Output[str]
    """Secret: a change redeploys, so that containers pick up the new .env."""
    env_file: pulumi.Resource | None
    after: tuple[pulumi.Resource, ...] = ()
    host_gone: bool = False
    """existingHost.gone: register only the directory, kept out of any SSH (see below)."""


class App(pulumi.ComponentResource):
    release: remote.Command

    def __init__(self, name: str, args: AppArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("dropship:index:App", name, None, opts)
        connection = args.target.as_user(args.user)
        app = args.app
        incoming = commands.upload_directory(args.app_dir)

        # Owns the app's lifetime on the host: its delete stops the containers.
        directory_options = args.target.options(self, list(args.after))
        if args.host_gone:
            # The only step with a delete command. With the host gone it is registered unchanged
            # (ignore every input) and retained on delete: destroying it forgets it, no SSH. The
            # other steps are not registered; deleting them runs nothing (they have no delete command).
            directory_options = pulumi.ResourceOptions.merge(
                directory_options, pulumi.ResourceOptions(retain_on_delete=True, ignore_changes=["*"])
            )
        directory = remote.Command(
            f"{name}-directory",
            add_previous_output_in_env=False,
            connection=connection,
            create=f"mkdir -p {incoming}",
            delete=commands.remove_app(args.app_dir, app.name),
            triggers=[args.target.host_id],
            opts=directory_options,
        )
        if args.host_gone:
            self.register_outputs({})
            return
        assert args.env_file is not None
        uploads: list[pulumi.Resource] = []
        contents: dict[str, bytes] = {}
        for relative in (*app.compose_files, *app.files):
            source = args.project_dir / relative
            contents[source.name] = source.read_bytes()
            uploads.append(
                remote.CopyToRemote(
                    f"{name}-file-{source.name}",
                    connection=connection,
                    source=pulumi.FileAsset(str(source)),
                    remote_path=f"{incoming}/{source.name}",
                    triggers=[args.target.host_id],
                    opts=args.target.options(self, [directory]),
                )
            )

        self.release = remote.Command(
            f"{name}-release",
            add_previous_output_in_env=False,
            connection=connection,
            create=commands.deploy(
                app_dir=args.app_dir,
                project=app.name,
                image_tag=app.image_tag,
                compose_files=[Path(f).name for f in app.compose_files],
                health_url=app.health_url,
                health_timeout=app.health_timeout,
                health_retries=app.health_retries,
                rolling_services=app.rolling_services,
                keep_releases=app.keep_releases,
                lock_timeout=app.lock_timeout,
                pre_deploy=app.pre_deploy,
                post_deploy=app.post_deploy,
                registry=args.registry.server if args.registry else None,
                registry_user=args.registry.username if args.registry else None,
                files_digest=commands.files_digest(contents),
            ),
            stdin=pulumi.Output.secret(args.registry.password) if args.registry else None,
            triggers=[args.target.host_id, args.env_content],
            opts=pulumi.ResourceOptions.merge(
                args.target.options(self, [directory, args.env_file, *uploads]),
                pulumi.ResourceOptions(additional_secret_outputs=["stdin"]),
            ),
        )
        self.register_outputs({"release": app.image_tag})
