"""Builders of the remote commands: plain strings, no I/O but reading dropship/host.

The bootstrap steps are shellcheck-clean scripts in `dropship/host/`. Each runs as a short
`bash -c '. /dev/stdin' <name> <args...>` with the script's text on stdin (`Script`), so that
a failure shows that line and the script's own messages, never the script; a change to the
script (stdin) or to an argument (the command) makes pulumi-command run the step again.
The other steps run as `bash -c '<script>' <name> <args...>`. The release is Python
(`HOST_CODE`), uploaded under a content-hashed directory, so its command is a short
`python3 <that directory>/release.py <args...>` that changes with the code too. Values are
passed as quoted arguments, never templated into code; secrets never pass through here:
they travel on stdin.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "host"


LIBRARIES = {"install-docker.sh": ("apt.sh",), "enable-security-upgrades.sh": ("apt.sh",), "install-backups.sh": ("apt.sh",)}
"""Function libraries in dropship/host whose text goes before a script's own."""


@cache
def script_text(name: str) -> str:
    return "".join((SCRIPTS / part).read_text() for part in (*LIBRARIES.get(name, ()), name))


SOURCE_STDIN = ". /dev/stdin"


@dataclass(frozen=True)
class Script:
    """A step's command line and the script it runs, to send on stdin."""

    command: str
    stdin: str


def script_on_stdin(name: str, *args: str, as_root_via_sudo: bool = False) -> Script:
    """dropship/host/<name> sourced from stdin, as `<name>` ($0) with `args`: bash reads a sourced file
    whole before it runs any of it, so nothing the script runs can read the script instead of its input."""
    command = shlex.join(["bash", "-c", SOURCE_STDIN, name, *args])
    return Script(command=f"sudo -n {command}" if as_root_via_sudo else command, stdin=script_text(name))


def run_script(name: str, *args: str, as_root_via_sudo: bool = False) -> str:
    """The command line that runs dropship/host/<name> with the given arguments."""
    words = ["bash", "-c", script_text(name), name, *args]
    command = shlex.join(words)
    return f"sudo -n {command}" if as_root_via_sudo else command


def wait_for_host(*, sudo: bool = False) -> Script:
    return script_on_stdin("wait-for-host.sh", as_root_via_sudo=sudo)


def install_docker(source: str, log_max_size: str, log_max_file: int, *, live_restore: bool = True, sudo: bool = False) -> Script:
    """`live_restore` off for a Swarm's servers: Docker refuses it in swarm mode."""
    args = (source, log_max_size, str(log_max_file), *(() if live_restore else ("false",)))
    return script_on_stdin("install-docker.sh", *args, as_root_via_sudo=sudo)


def enable_security_upgrades(docker_install: str, reboot_time: str | None, *, sudo: bool = False) -> Script:
    return script_on_stdin("enable-security-upgrades.sh", docker_install, reboot_time or "never", as_root_via_sudo=sudo)


def create_deploy_user(user: str, public_key: str, app_dir: str, allow_sudo: bool, *, sudo: bool = False) -> Script:
    return script_on_stdin("create-deploy-user.sh", user, public_key, app_dir, _flag(allow_sudo), as_root_via_sudo=sudo)


def check_deploy_user() -> Script:
    return script_on_stdin("check-deploy-user.sh")


def harden_ssh(deploy_user: str, admin_user: str, *, sudo: bool = False) -> Script:
    return script_on_stdin("harden-ssh.sh", deploy_user, admin_user, as_root_via_sudo=sudo)


def mount_volume(device: str, mount_path: str, *, sudo: bool = False) -> Script:
    return script_on_stdin("mount-volume.sh", device, mount_path, as_root_via_sudo=sudo)


def tls_directory(app_dir: str) -> str:
    """Where the app's own certificate and key are (tls.mode cloudflare-origin); deploy.sh gets it as
    --tls-dir and passes it to compose as DROPSHIP_TLS_DIR."""
    return f"{app_dir}/tls"


def origin_key(app_dir: str, hostnames: Iterable[str]) -> str:
    return run_script("origin-key.sh", tls_directory(app_dir), *hostnames)


def install_origin_cert(app_dir: str) -> str:
    return run_script("install-origin-cert.sh", tls_directory(app_dir))


def upload_directory(app_dir: str) -> str:
    """Where `pulumi up` places the app's files and .env; deploy.sh snapshots them into a release."""
    return f"{app_dir}/incoming"


def write_env(app_dir: str) -> str:
    return run_script("write-env.sh", upload_directory(app_dir))


MACHINE_MARK = ".dropship-machine"
"""In the app's directory: the id of the machine that deployed it (the droplet's, or existingHost.id)."""


def claim_app_directory(app_dir: str, machine: str) -> str:
    """The app's directories, marked as this machine's."""
    mark = shlex.quote(f"{app_dir}/{MACHINE_MARK}")
    return f"mkdir -p {shlex.quote(upload_directory(app_dir))} && printf '%s\\n' {shlex.quote(machine)} > {mark}"


def remove_app(app_dir: str, project: str, machine: str = "") -> str:
    return run_script("remove-app.sh", app_dir, project, machine)


def deploy(
    *,
    app_dir: str,
    project: str,
    image_tag: str,
    compose_files: Iterable[str],
    health_url: str | None = None,
    health_timeout: int = 60,
    health_retries: int = 30,
    rolling_services: Iterable[str] = (),
    pull_policy: str = "missing",
    keep_releases: int = 3,
    lock_timeout: int = 600,
    hook_timeout: int = 600,
    pull_timeout: int = 600,
    pre_deploy: Iterable[str] = (),
    post_deploy: Iterable[str] = (),
    registry: str | None = None,
    registry_user: str | None = None,
    files_digest: str = "",
    uploads: Iterable[str] = (),
    hostnames: Iterable[str] = (),
    data_dir: str | None = None,
    acme_ca: str | None = None,
    acme_ca_root: str | None = None,
    tls_mode: str = "acme",
    swarm_replicas: int | None = None,
    routes: Iterable[str] = (),
    drain_seconds: int = 30,
    edge_image: str = "",
    maintenance: bool = False,
    limits: tuple[float, str] | None = None,
) -> str:
    """The short call of release.py in the uploaded host code (`host_code_directory`).

    `uploads`: the host paths of the uploaded files and directories besides the compose files;
    `hostnames`, `data_dir`, `acme_ca` and `acme_ca_root` reach compose as DROPSHIP_HOSTNAMES,
    DROPSHIP_DATA_DIR, DROPSHIP_ACME_CA and DROPSHIP_ACME_CA_ROOT."""
    args = ["--dir", app_dir, "--tls-dir", tls_directory(app_dir), "--project", project, "--tag", image_tag]
    for name in compose_files:
        args += ["--compose-file", name]
    for path in uploads:
        args += ["--upload", path]
    if health_url:
        args += ["--health-url", health_url]
    args += ["--health-timeout", str(health_timeout), "--health-retries", str(health_retries)]
    for service in rolling_services:
        args += ["--rolling", service]
    if pull_policy != "missing":
        args += ["--pull", pull_policy]
    args += ["--keep", str(keep_releases), "--lock-timeout", str(lock_timeout)]
    # Only when set: a stack that keeps the defaults keeps its command, and releases nothing new.
    if hook_timeout != 600:
        args += ["--hook-timeout", str(hook_timeout)]
    if pull_timeout != 600:
        args += ["--pull-timeout", str(pull_timeout)]
    for hook in pre_deploy:
        args += ["--pre-deploy", hook]
    for hook in post_deploy:
        args += ["--post-deploy", hook]
    if registry:
        args += ["--registry", registry, "--registry-user", registry_user or ""]
    if files_digest:
        args += ["--files-digest", files_digest]
    names = " ".join(hostnames)
    if names:
        args += ["--hostnames", names]
    if data_dir:
        args += ["--data-dir", data_dir]
    if acme_ca:
        args += ["--acme-ca", acme_ca]
    if acme_ca_root:
        args += ["--acme-ca-root", acme_ca_root]
    if tls_mode != "acme":
        args += ["--tls-mode", tls_mode]
    if swarm_replicas is not None:
        args += ["--swarm-replicas", str(swarm_replicas)]
    routes = list(routes)
    for route in routes:
        args += ["--route", route]
    if routes:
        args += ["--drain-seconds", str(drain_seconds), "--edge-image", edge_image]
        if maintenance:
            args.append("--maintenance")
    if limits is not None:
        args += ["--cpus", f"{limits[0]:g}", "--memory", limits[1]]
    return shlex.join(["python3", f"{host_code_directory(app_dir)}/release.py", *args])


BACKUP_SCRIPT = "backup.py"
"""In dropship/host: backs up, lists and restores the app's Postgres services (uploaded as it is)."""


def backup_script(app_dir: str) -> str:
    """Where the host keeps the backup script: the timer's, and people's, to back up, list and restore."""
    return f"{app_dir}/.dropship/{BACKUP_SCRIPT}"


def backups(verb: str, *, app_dir: str, project: str, service: str, name: str | None = None) -> str:
    """`backup`, `list` or `restore [NAME|latest]` of one database service, as the deploy user runs it."""
    return shlex.join(["python3", backup_script(app_dir), verb, app_dir, project, service, *([name] if name else [])])


def backup_unit(project: str, service: str) -> str:
    """The systemd service that backs up one database (install-backups.sh names it the same way)."""
    return f"dropship-backup-{project}-{service}.service"


def backup_env_directory(app_dir: str) -> str:
    """Where the backup service's environment file (`.env`, mode 600, the deploy user's) is."""
    return f"{app_dir}/.dropship/backup"


def write_backup_env(app_dir: str) -> str:
    return run_script("write-env.sh", backup_env_directory(app_dir))


def backup_environment(
    *, endpoint: str, bucket: str, access_key_id: str, secret_access_key: str, failure_url: str | None, heartbeat_url: str | None
) -> dict[str, str]:
    """The backup service's environment: rclone's remote `dropship:` (S3), where to upload, and the URLs told of each run."""
    env = {
        "RCLONE_CONFIG_DROPSHIP_TYPE": "s3",
        "RCLONE_CONFIG_DROPSHIP_PROVIDER": "DigitalOcean" if endpoint.endswith(".digitaloceanspaces.com") else "Other",
        "RCLONE_CONFIG_DROPSHIP_ENDPOINT": endpoint,
        "RCLONE_CONFIG_DROPSHIP_ACCESS_KEY_ID": access_key_id,
        "RCLONE_CONFIG_DROPSHIP_SECRET_ACCESS_KEY": secret_access_key,
        "DROPSHIP_BACKUP_BUCKET": bucket,
    }
    if failure_url:
        env["DROPSHIP_BACKUP_FAILURE_URL"] = failure_url
    if heartbeat_url:
        env["DROPSHIP_BACKUP_HEARTBEAT_URL"] = heartbeat_url
    return env


def install_backups(
    app_dir: str, project: str, user: str, schedule: str, machine: str, services: Iterable[str], *, sudo: bool = False
) -> Script:
    return script_on_stdin("install-backups.sh", "install", app_dir, project, user, schedule, machine, *services, as_root_via_sudo=sudo)


def remove_backups(app_dir: str, project: str, machine: str, *, sudo: bool = False) -> str:
    """The delete of install_backups' step. It runs with the step's stdin, which holds the same script."""
    return script_on_stdin("install-backups.sh", "remove", app_dir, project, machine, as_root_via_sudo=sudo).command


def check_swarm_size(servers: int, allow_removal: bool, setting: str, *, sudo: bool = False) -> Script:
    """The first server refuses an `up` that lists fewer servers than its Swarm has, unless `setting` allows it."""
    return script_on_stdin("check-swarm-size.sh", str(servers), _flag(allow_removal), setting, as_root_via_sudo=sudo)


def swarm_code_path(app_dir: str) -> str:
    """swarm.py on every server of a Swarm. A stable path: a new version of the file must not change the
    steps' commands, since running `init` or `join` again as a replacement would leave the Swarm first."""
    return f"{app_dir}/.dropship/swarm.py"


def swarm(app_dir: str, verb: str, *args: str) -> str:
    return shlex.join(["python3", swarm_code_path(app_dir), verb, *args])


def swarm_converge(app_dir: str, *, data: str, nodes: Iterable[str], remove_nodes: bool, setting: str) -> str:
    node_args = [arg for node in nodes for arg in ("--node", node)]
    return swarm(app_dir, "converge", "--data", data, *node_args, *(["--remove-nodes"] if remove_nodes else []), "--setting", setting)


HOST_CODE = ("release.py", "rollout.py", "health.py", "stack.py", "edge.py", "routed.py", "limits.py")
"""The release's Python modules in dropship/host, uploaded to the server as they are."""


@cache
def host_code_digest() -> str:
    """Short sha256 of the host code: its directory on the server is named by it, so that a new
    dropship version lands beside the old one and changes the release command."""
    return files_digest({name: (SCRIPTS / name).read_bytes() for name in HOST_CODE})[:16]


def host_code_directory(app_dir: str) -> str:
    return f"{app_dir}/.dropship/host-{host_code_digest()}"


def empty_directory(path: str) -> str:
    """An upload directory made empty (and present), for a fresh copy of a local directory."""
    return f"rm -rf {shlex.quote(path)} && mkdir -p {shlex.quote(path)}"


def files_digest(files: Mapping[str, bytes]) -> str:
    """sha256 over the uploaded files' names and contents, in name order."""
    digest = hashlib.sha256()
    for name in sorted(files):
        content = files[name]
        digest.update(f"{name}\0{len(content)}\0".encode())
        digest.update(content)
    return digest.hexdigest()


def render_env(env: Mapping[str, str]) -> str:
    """The .env file: one KEY=value per line, quoted so that compose reads every value literally.

    Single quotes are literal in compose's env files; a value holding a single
    quote or a newline is double-quoted with compose's escapes instead.
    """
    lines = []
    for name in sorted(env):
        value = env[name]
        if "'" not in value and "\n" not in value:
            lines.append(f"{name}='{value}'")
        else:
            escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$").replace("\n", "\\n")
            lines.append(f'{name}="{escaped}"')
    return "".join(line + "\n" for line in lines)


def _flag(value: bool) -> str:
    return "true" if value else "false"
