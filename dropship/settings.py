"""The stack's settings: read once from Pulumi config, typed and validated.

Every key lives in the `dropship` namespace as a flat dotted name, so CI can
set one value with a plain `pulumi config set app.imageTag v2`. Each section
below is one prefix (`droplet.`, `dns.`, ...). All problems are collected and
reported together, each with its key, what was expected and what was given,
before any resource is registered.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
)
from pydantic.alias_generators import to_camel

NAMESPACE = "dropship"
SMALLEST_SIZE = "s-1vcpu-1gb"
UBUNTU_LTS_IMAGE = "ubuntu-24-04-x64"
PREVIEW_STACK = re.compile(r"^pr-([1-9][0-9]{0,8})$")


class Environment(StrEnum):
    PRODUCTION = "production"
    STAGING = "staging"
    PREVIEW = "preview"
    LOCAL = "local"


# --- field validators: each says what it expected -------------------------


def _matches(pattern: str, expected: str) -> AfterValidator:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"expected {expected}")
        return value

    return AfterValidator(check)


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError:
        raise ValueError("expected a CIDR range such as 203.0.113.0/24 or 2001:db8::/32") from None


def _public_key(value: str) -> str:
    if not re.fullmatch(r"(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+( .*)?", value.strip()):
        raise ValueError("expected an OpenSSH public key line such as 'ssh-ed25519 AAAA... deploy'")
    return value.strip()


def _private_key(value: str) -> str:
    if "PRIVATE KEY-----" not in value:
        raise ValueError("expected an OpenSSH private key (the whole file, '-----BEGIN ... PRIVATE KEY-----')")
    return value if value.endswith("\n") else value + "\n"


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an http:// or https:// URL such as http://127.0.0.1:8080/health")
    return value


def _relative_file(value: str) -> str:
    path = Path(value)
    if path.is_absolute() or ".." in path.parts:
        raise ValueError("expected a path relative to the project directory, without '..'")
    return value


Slug = Annotated[str, _matches(r"[a-z0-9][a-z0-9-]*", "a DigitalOcean slug such as nyc3 or s-1vcpu-1gb")]
RegionSlug = Annotated[str, _matches(r"[a-z]{3}[0-9]", "a DigitalOcean region slug such as nyc3, fra1 or ams3")]
Hostname = Annotated[
    str,
    _matches(
        r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}",
        "a lower-case DNS name such as app.example.com",
    ),
]
Cidr = Annotated[str, AfterValidator(_cidr)]
UnixUser = Annotated[str, _matches(r"[a-z_][a-z0-9_-]{0,31}", "a Unix user name such as deploy")]
ImageTag = Annotated[str, _matches(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", "a Docker image tag such as v1.2.3")]
EnvName = Annotated[str, _matches(r"[A-Za-z_][A-Za-z0-9_]*", "an environment variable name such as DATABASE_URL")]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
ProjectFile = Annotated[str, AfterValidator(_relative_file)]
Port = Annotated[int, Field(ge=1, le=65535)]


class Section(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class ServerSettings(Section):
    mode: Literal["droplet", "existing"] = "droplet"
    """`droplet` creates a DigitalOcean droplet; `existing` deploys to `existingHost.*`."""


class DropletSettings(Section):
    region: RegionSlug
    size: Slug
    image: Slug = UBUNTU_LTS_IMAGE
    backups: bool = False
    monitoring: bool = True
    ipv6: bool = True
    reserved_ip: bool = False
    """Keep a reserved IP so DNS survives a droplet replacement."""
    volume_size_gb: Annotated[int, Field(ge=1, le=16384)] | None = None
    """Block-storage volume for data that must outlive the droplet."""
    volume_mount_path: Annotated[str, _matches(r"/[A-Za-z0-9_./-]+", "an absolute path such as /mnt/data")] = "/mnt/data"
    tags: tuple[Annotated[str, _matches(r"[A-Za-z0-9:_-]{1,255}", "a tag of letters, digits, ':', '-', '_'")], ...] = ()


class ExistingHostSettings(Section):
    address: Annotated[str, _matches(r"[A-Za-z0-9.:-]+", "a host name or IP address such as 127.0.0.1")]
    port: Port = 22
    user: UnixUser = "root"
    """The user dropship logs in as to bootstrap the host (root on a fresh server)."""
    gone: bool = False
    """The host is gone for good (deleted, or never coming back at this address). dropship then
    connects to it no more: the program registers no step on it but the app's directory, with
    `retainOnDelete`, so `pulumi destroy --run-program` (or `pulumi up`, then `pulumi destroy`)
    completes without SSH and forgets what was deployed there. Remove it to deploy to a new
    host at the address."""


class DnsSettings(Section):
    zone: Hostname | None = None
    """The Cloudflare zone by name (e.g. example.com), looked up at deploy time."""
    zone_id: Annotated[str, _matches(r"[0-9a-f]{32}", "a 32-character Cloudflare zone id")] | None = None
    hostnames: tuple[Hostname, ...] = ()
    proxied: bool = False
    ttl: Annotated[int, Field(ge=1, le=86400)] = 1
    """Seconds; 1 means automatic."""


class SshSettings(Section):
    public_key: Annotated[str, AfterValidator(_public_key)]
    """The deploy key's public half: installed for the initial user (droplet) and the deploy user."""
    private_key: Annotated[str, AfterValidator(_private_key)]
    """Secret. The deploy key's private half, used by every remote command."""
    source_ranges: tuple[Cidr, ...] = ()
    """CIDR ranges allowed to reach the SSH port through the cloud firewall."""
    allow_world: bool = False
    """Production refuses 0.0.0.0/0 and ::/0 in sourceRanges unless this is true."""
    dial_error_limit: Annotated[int, Field(ge=1, le=1000)] = 60
    host_key: str | None = None


class DeploySettings(Section):
    user: UnixUser = "deploy"
    sudo: bool = False


class DockerSettings(Section):
    install: Literal["distro", "docker-apt"] = "distro"
    """`distro`: the distribution's docker.io and compose v2 packages; `docker-apt`: Docker's apt repository."""
    log_max_size: Annotated[str, _matches(r"[1-9][0-9]*[kmg]", "a size such as 10m")] = "10m"
    log_max_file: Annotated[int, Field(ge=1, le=100)] = 3
    daemon_no_bridge: bool = False
    """Start the engine with no bridge network and no iptables rules (test hosts that share the machine's network)."""


class AppSettings(Section):
    name: Annotated[str, _matches(r"[a-z0-9][a-z0-9_-]{0,62}", "a compose project name such as shop")] = "app"
    directory: Annotated[str, _matches(r"/[A-Za-z0-9_./-]+", "an absolute path such as /srv/app")] | None = None
    compose_files: tuple[ProjectFile, ...]
    files: tuple[ProjectFile, ...] = ()
    """Extra files placed beside the compose files (Caddyfile, ...)."""
    image_tag: ImageTag
    """The release: compose files reference it as ${IMAGE_TAG}."""
    health_url: HttpUrl | None = None
    """Checked from the host itself after `up`, e.g. http://127.0.0.1:8080/health."""
    health_timeout: Annotated[int, Field(ge=1, le=3600)] = 60
    """Seconds a release has to become healthy (all its services, and healthUrl)."""
    health_retries: Annotated[int, Field(ge=1, le=1000)] = 30
    """Requests to healthUrl, 2 s apart, before the release counts as unhealthy."""
    rolling_services: tuple[Annotated[str, _matches(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", "a compose service name")], ...] = ()
    """Services recreated one at a time, each healthy before the next (zero downtime behind the edge proxy)."""
    keep_releases: Annotated[int, Field(ge=1, le=50)] = 3
    """Releases (and their images) kept on the host: rolling back to one needs no pull."""
    lock_timeout: Annotated[int, Field(ge=0, le=7200)] = 600
    """Seconds a deploy waits for another one on the same host before failing."""
    pre_deploy: tuple[str, ...] = ()
    post_deploy: tuple[str, ...] = ()
    required_env: tuple[EnvName, ...] = ()
    """Names that must be set as secrets under env.*"""
    urls: tuple[HttpUrl, ...] = ()
    """Public URLs reported as outputs; default https://<hostname> for each dns.hostnames."""


class RegistrySettings(Section):
    server: Annotated[str, _matches(r"[A-Za-z0-9.-]+(:[0-9]+)?", "a registry host such as registry.example.com")]
    username: str
    password: str
    """Secret."""


SECRET_KEYS = frozenset({"ssh.privateKey", "registry.password"})

SECTIONS: dict[str, type[Section]] = {
    "server": ServerSettings,
    "droplet": DropletSettings,
    "existingHost": ExistingHostSettings,
    "dns": DnsSettings,
    "ssh": SshSettings,
    "deploy": DeploySettings,
    "docker": DockerSettings,
    "app": AppSettings,
    "registry": RegistrySettings,
}
TOP_LEVEL_KEYS = frozenset({"environment", "protect"})


@dataclass(frozen=True)
class Settings:
    project: str
    stack: str
    environment: Environment
    server: ServerSettings
    droplet: DropletSettings | None
    existing_host: ExistingHostSettings | None
    dns: DnsSettings | None
    ssh: SshSettings
    deploy: DeploySettings
    docker: DockerSettings
    app: AppSettings
    registry: RegistrySettings | None
    env: Mapping[str, str] = field(repr=False)  # secret values: never print
    protect: bool

    @property
    def uses_droplet(self) -> bool:
        return self.server.mode == "droplet"

    @property
    def host_gone(self) -> bool:
        """existingHost.gone: nothing may connect to the host any more."""
        return self.existing_host is not None and self.existing_host.gone

    @property
    def app_directory(self) -> str:
        return self.app.directory or f"/srv/{self.app.name}"

    @property
    def urls(self) -> tuple[str, ...]:
        if self.app.urls:
            return self.app.urls
        return tuple(f"https://{h}" for h in (self.dns.hostnames if self.dns else ()))

    @property
    def tags(self) -> tuple[str, ...]:
        base = (NAMESPACE, f"{NAMESPACE}-{self.stack}")
        return base + tuple(t for t in (self.droplet.tags if self.droplet else ()) if t not in base)


@dataclass(frozen=True)
class Problem:
    key: str
    message: str

    def __str__(self) -> str:
        return f"{NAMESPACE}:{self.key}: {self.message}"


class SettingsError(Exception):
    def __init__(self, stack: str, problems: list[Problem]) -> None:
        self.problems = problems
        lines = [f"{len(problems)} problem(s) in the configuration of stack '{stack}':"]
        lines += [f"  - {p}" for p in problems]
        super().__init__("\n".join(lines))


def _given(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _parse_value(raw: Any) -> Any:
    """Config values arrive as strings; lists and objects as JSON."""
    if raw in ("true", "false"):
        return raw == "true"
    if isinstance(raw, str) and raw[:1] in ("[", "{"):
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw
    return raw


def _set_secret_hint(stack: str, key: str, placeholder: str) -> str:
    return f"pulumi config set --secret -s {stack} {key} {placeholder}"


def _secret_fix(stack: str, key: str) -> str:
    if key == "ssh.privateKey":
        return f"pulumi config set --secret -s {stack} {key} < ~/.ssh/dropship_deploy"
    return _set_secret_hint(stack, key, "'<value>'")


def _environment_of(stack: str, given: Any, problems: list[Problem]) -> Environment:
    if given is not None:
        try:
            return Environment(given)
        except ValueError:
            problems.append(Problem("environment", f"expected one of production, staging, preview, local; got {_given(given)}"))
            return Environment.STAGING
    if PREVIEW_STACK.match(stack):
        return Environment.PREVIEW
    try:
        return Environment(stack)
    except ValueError:
        problems.append(
            Problem(
                "environment",
                f"stack '{stack}' is not production, staging, local or pr-<number>; "
                f"set it with: pulumi config set -s {stack} environment staging",
            )
        )
        return Environment.STAGING


S = TypeVar("S", bound=Section)


def _section(name: str, model: type[S], values: dict[str, Any], stack: str, problems: list[Problem]) -> S | None:
    try:
        return model.model_validate(values)
    except ValidationError as err:
        for e in err.errors():
            key = ".".join([name, *(str(p) for p in e["loc"])])
            if e["type"] == "missing" and key in SECRET_KEYS:
                problems.append(Problem(key, f"missing secret; set it with: {_secret_fix(stack, key)}"))
            elif e["type"] == "missing":
                problems.append(Problem(key, "required but not set"))
            elif e["type"] == "extra_forbidden":
                known = ", ".join(f"{name}.{f.alias}" for f in model.model_fields.values())
                problems.append(Problem(key, f"unknown key; known keys of '{name}' are: {known}"))
            else:
                msg = e["msg"].removeprefix("Value error, ")
                given = "a secret value (not shown)" if key in SECRET_KEYS else _given(e["input"])
                problems.append(Problem(key, f"{msg}; got {given}"))
        return None


def load(
    project: str,
    stack: str,
    config: Mapping[str, Any],
    secret_keys: frozenset[str],
    project_dir: Path,
) -> Settings:
    """Builds Settings from the raw `dropship:*` config, or raises SettingsError naming every problem."""
    problems: list[Problem] = []
    sections: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    env: dict[str, str] = {}
    top: dict[str, Any] = {}

    for full_key, raw in sorted(config.items()):
        namespace, _, key = full_key.partition(":")
        if namespace != NAMESPACE:
            continue
        value = _parse_value(raw)
        section, dot, rest = key.partition(".")
        if section == "env" and dot:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rest):
                problems.append(
                    Problem(key, f"expected an environment variable name such as DATABASE_URL after 'env.'; got {_given(rest)}")
                )
            elif key not in secret_keys:
                problems.append(Problem(key, f"stored in plain text; .env values must be secrets: {_secret_fix(stack, key)}"))
            else:
                env[rest] = str(raw)
        elif section in SECTIONS and dot and "." not in rest:
            if key in SECRET_KEYS and key not in secret_keys:
                problems.append(Problem(key, f"stored in plain text; set it as a secret: {_secret_fix(stack, key)}"))
            sections[section][rest] = value
        elif key in TOP_LEVEL_KEYS:
            top[key] = value
        else:
            known = ", ".join(sorted([*(f"{s}.*" for s in SECTIONS), "env.*", *TOP_LEVEL_KEYS]))
            problems.append(Problem(key, f"unknown key; dropship's keys are {known}"))

    environment = _environment_of(stack, top.get("environment"), problems)
    protect_default = environment is Environment.PRODUCTION
    protect = top.get("protect", protect_default)
    if not isinstance(protect, bool):
        protect = {"true": True, "false": False}.get(str(protect).lower())
        if protect is None:
            problems.append(Problem("protect", f"expected true or false; got {_given(top['protect'])}"))
            protect = protect_default

    server = _section("server", ServerSettings, sections["server"], stack, problems) or ServerSettings()
    uses_droplet = server.mode == "droplet"
    unused = ("existingHost",) if uses_droplet else ("droplet", "dns")
    for name in unused:
        for rest in sections[name]:
            problems.append(
                Problem(
                    f"{name}.{rest}",
                    f"only applies when server.mode is {'existing' if uses_droplet else 'droplet'} (it is {server.mode}); remove it",
                )
            )

    parsed: dict[str, Any] = {}
    for name, model in SECTIONS.items():
        if name == "server" or name in unused:
            continue
        if name == "registry" and not sections[name]:
            parsed[name] = None
            continue
        parsed[name] = _section(name, model, sections[name], stack, problems)

    if environment is Environment.PREVIEW and parsed.get("droplet") and parsed.get("dns"):
        parsed["droplet"], parsed["dns"] = _derive_preview(stack, parsed["droplet"], parsed["dns"])
        protect = False

    _check_semantics(stack, environment, parsed, env, project_dir, problems)
    if problems:
        raise SettingsError(stack, problems)

    return Settings(
        project=project,
        stack=stack,
        environment=environment,
        server=server,
        droplet=parsed.get("droplet"),
        existing_host=parsed.get("existingHost"),
        dns=parsed.get("dns"),
        ssh=parsed["ssh"],
        deploy=parsed["deploy"],
        docker=parsed["docker"],
        app=parsed["app"],
        registry=parsed["registry"],
        env=env,
        protect=bool(protect),
    )


def _derive_preview(stack: str, droplet: DropletSettings, dns: DnsSettings) -> tuple[DropletSettings, DnsSettings]:
    """A pr-<n> stack copies staging's config; everything that must differ derives from its name."""
    droplet = droplet.model_copy(update={"size": SMALLEST_SIZE, "backups": False, "reserved_ip": False, "volume_size_gb": None})
    hostnames = tuple(h if h.startswith(f"{stack}.") else f"{stack}.{h}" for h in dns.hostnames)
    return droplet, dns.model_copy(update={"hostnames": hostnames})


def _check_semantics(
    stack: str,
    environment: Environment,
    parsed: dict[str, Any],
    env: Mapping[str, str],
    project_dir: Path,
    problems: list[Problem],
) -> None:
    dns: DnsSettings | None = parsed.get("dns")
    if dns is not None:
        if not dns.zone and not dns.zone_id:
            problems.append(Problem("dns.zone", "required: the Cloudflare zone name (or set dns.zoneId)"))
        if not dns.hostnames:
            problems.append(Problem("dns.hostnames", 'required: at least one hostname such as ["app.example.com"]'))
        if dns.zone:
            for i, host in enumerate(dns.hostnames):
                if host != dns.zone and not host.endswith("." + dns.zone):
                    problems.append(Problem(f"dns.hostnames[{i}]", f"expected a name inside zone {dns.zone}; got {_given(host)}"))
        if dns.proxied and dns.ttl != 1:
            problems.append(Problem("dns.ttl", f"proxied records need ttl 1 (automatic); got {dns.ttl}"))

    ssh: SshSettings | None = parsed.get("ssh")
    if ssh is not None and "droplet" in parsed:
        if not ssh.source_ranges:
            problems.append(
                Problem("ssh.sourceRanges", 'required for a droplet: the CIDR ranges allowed to reach SSH, e.g. ["203.0.113.7/32"]')
            )
        world = [r for r in ssh.source_ranges if r in ("0.0.0.0/0", "::/0")]
        if world and environment is Environment.PRODUCTION and not ssh.allow_world:
            problems.append(
                Problem("ssh.sourceRanges", f"production refuses {', '.join(world)}; narrow the ranges or set ssh.allowWorld true")
            )

    app: AppSettings | None = parsed.get("app")
    if app is not None:
        for kind, names in (("composeFiles", app.compose_files), ("files", app.files)):
            for i, name in enumerate(names):
                if not (project_dir / name).is_file():
                    problems.append(Problem(f"app.{kind}[{i}]", f"expected an existing file relative to {project_dir}; got {_given(name)}"))
        if not app.compose_files:
            problems.append(Problem("app.composeFiles", 'required: at least one compose file such as ["compose.yaml"]'))
        basenames = [Path(n).name for n in (*app.compose_files, *app.files)]
        for dup in sorted({b for b in basenames if basenames.count(b) > 1}):
            problems.append(Problem("app.files", f"two files share the name {dup}; they would overwrite each other on the host"))
        if ".env" in basenames:
            problems.append(Problem("app.files", "'.env' is written from env.* secrets; do not upload one"))
        for name in app.required_env:
            if name not in env:
                key = f"env.{name}"
                problems.append(Problem(key, f"missing secret named in app.requiredEnv; set it with: {_secret_fix(stack, key)}"))
