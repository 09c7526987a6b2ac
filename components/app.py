"""The compose app: its files on the host, one release deployed, removed on destroy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pulumi
from pulumi_command import remote

from dropship import uploads
from dropship.remote import commands
from dropship.remote.target import SshTarget


@dataclass(frozen=True, kw_only=True)
class Registry:
    server: str
    username: str
    password: pulumi.Input[str]
    """Secret: reaches the host on stdin only."""


@dataclass(frozen=True, kw_only=True)
class AppArgs:
    target: SshTarget
    user: str
    """The deploy user: owns the app's directory and runs docker."""
    project: str
    """The compose project name."""
    app_dir: str
    project_dir: Path
    """Where `compose_files` and `files` are, on this machine."""
    compose_files: tuple[str, ...]
    files: tuple[str, ...]
    image_tag: str
    hostnames: tuple[str, ...]
    """The stack's hostnames: compose sees them as DROPSHIP_HOSTNAMES."""
    data_dir: str | None
    """The data volume's mount path: compose sees it as DROPSHIP_DATA_DIR."""
    acme_ca: str | None
    acme_ca_root: str | None
    """Compose sees them as DROPSHIP_ACME_CA and DROPSHIP_ACME_CA_ROOT (a path on the host)."""
    tls_mode: str
    """`acme` or `cloudflare-origin`: compose sees it as DROPSHIP_TLS_MODE."""
    health_url: str | None
    health_timeout: int
    health_retries: int
    rolling_services: tuple[str, ...]
    pull_policy: str
    """`missing` or `always`: when a release pulls its images."""
    keep_releases: int
    lock_timeout: int
    hook_timeout: int
    pull_timeout: int
    pre_deploy: tuple[str, ...]
    post_deploy: tuple[str, ...]
    registry: Registry | None
    env_content: pulumi.Input[str]
    """Secret: a change redeploys, so that containers pick up the new .env."""
    env_file: pulumi.Resource | None
    """The step that writes the .env; none when the host is gone."""
    after: tuple[pulumi.Resource, ...] = ()
    host_gone: bool = False
    """existingHost.gone: register only the directory, kept out of any SSH (see below)."""
    replicas: int | None = None
    """A Swarm's: `docker stack deploy` with this many replicas of each rolling service; none: compose on one host."""
    routes: tuple[str, ...] = ()
    """edge.routes, each `PATH SERVICE:PORT [HEALTH_PATH]`: dropship's edge serves the app."""
    drain_seconds: int = 30
    edge_image: str = ""
    maintenance: bool = False
    limits: tuple[float, str] | None = None
    """A preview's (CPUs, memory) on each container; none: uncapped."""


class App(pulumi.ComponentResource):
    release: pulumi.Output[str]
    """The image tag of the release that serves, once it is deployed."""

    def __init__(self, name: str, args: AppArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("dropship:index:App", name, None, opts)
        connection = args.target.as_user(args.user)
        incoming = commands.upload_directory(args.app_dir)
        machine = pulumi.Output.from_input(args.target.host_id)

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
            # Both name the machine: when it is replaced, the old step's delete finds the new machine's
            # mark and removes nothing there (existing mode: the new machine is at the same address).
            create=machine.apply(lambda m: commands.claim_app_directory(args.app_dir, m)),
            delete=machine.apply(lambda m: commands.remove_app(args.app_dir, args.project, m)),
            triggers=[args.target.host_id],
            opts=directory_options,
        )
        if args.env_file is None:
            self.release = pulumi.Output.from_input(args.image_tag)
            self.register_outputs({})
            return

        uploaded: list[pulumi.Resource] = []
        contents: dict[str, bytes] = {}
        planned = uploads.plan(args.project_dir, args.compose_files, args.files)
        for upload in planned:
            contents.update(upload.files)
            uploaded.append(self._upload(name, upload, incoming, connection, args.target, directory))

        # The release's own code, under a directory named by its hash: a new dropship version
        # lands beside the old one (which release.py then removes) and changes the command.
        code = commands.host_code_directory(args.app_dir)
        for module in commands.HOST_CODE:
            uploaded.append(
                remote.CopyToRemote(
                    f"{name}-code-{module}",
                    connection=connection,
                    source=pulumi.FileAsset(str(commands.SCRIPTS / module)),
                    remote_path=f"{code}/{module}",
                    triggers=[args.target.host_id],
                    opts=args.target.options(self, [directory]),
                )
            )

        registry = args.registry
        release = remote.Command(
            f"{name}-release",
            add_previous_output_in_env=False,
            connection=connection,
            create=commands.deploy(
                app_dir=args.app_dir,
                project=args.project,
                image_tag=args.image_tag,
                compose_files=[u.host_path for u in planned[: len(args.compose_files)]],
                uploads=[u.host_path for u in planned[len(args.compose_files) :]],
                hostnames=args.hostnames,
                data_dir=args.data_dir,
                acme_ca=args.acme_ca,
                acme_ca_root=args.acme_ca_root,
                tls_mode=args.tls_mode,
                health_url=args.health_url,
                health_timeout=args.health_timeout,
                health_retries=args.health_retries,
                rolling_services=args.rolling_services,
                pull_policy=args.pull_policy,
                keep_releases=args.keep_releases,
                lock_timeout=args.lock_timeout,
                hook_timeout=args.hook_timeout,
                pull_timeout=args.pull_timeout,
                pre_deploy=args.pre_deploy,
                post_deploy=args.post_deploy,
                registry=registry.server if registry is not None else None,
                registry_user=registry.username if registry is not None else None,
                files_digest=commands.files_digest(contents),
                swarm_replicas=args.replicas,
                routes=args.routes,
                drain_seconds=args.drain_seconds,
                edge_image=args.edge_image,
                maintenance=args.maintenance,
                limits=args.limits,
            ),
            stdin=pulumi.Output.secret(registry.password) if registry is not None else None,
            triggers=[args.target.host_id, args.env_content],
            opts=pulumi.ResourceOptions.merge(
                args.target.options(self, [directory, args.env_file, *uploaded]),
                pulumi.ResourceOptions(additional_secret_outputs=["stdin"]),
            ),
        )
        self.release = release.create.apply(lambda _: args.image_tag)
        self.register_outputs({"release": self.release})

    def _upload(
        self,
        name: str,
        upload: uploads.Upload,
        incoming: str,
        connection: remote.ConnectionArgs,
        target: SshTarget,
        directory: pulumi.Resource,
    ) -> pulumi.Resource:
        """One file, or one directory: emptied on the host first whenever its content changes, so that
        a file deleted here is gone there too (copying only adds and overwrites)."""
        if not upload.is_directory:
            return remote.CopyToRemote(
                f"{name}-file-{upload.host_path}",
                connection=connection,
                source=pulumi.FileAsset(str(upload.source)),
                remote_path=f"{incoming}/{upload.host_path}",
                triggers=[target.host_id],
                opts=target.options(self, [directory]),
            )
        destination = f"{incoming}/{upload.host_path}"
        emptied = remote.Command(
            f"{name}-dir-{upload.host_path}-empty",
            add_previous_output_in_env=False,
            connection=connection,
            create=commands.empty_directory(destination),
            triggers=[target.host_id, upload.digest],
            opts=target.options(self, [directory]),
        )
        # A directory source without a trailing slash lands at <remote_path>/<its name>.
        return remote.CopyToRemote(
            f"{name}-dir-{upload.host_path}",
            connection=connection,
            source=pulumi.FileArchive(str(upload.source)),
            remote_path=str(PurePosixPath(destination).parent),
            triggers=[target.host_id, upload.digest],
            opts=target.options(self, [emptied]),
        )
