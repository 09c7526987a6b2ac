"""Reads the stack's flat `dropship:<section>.<key>` config into Settings.

Every key lives in the `dropship` namespace as a flat dotted name, so that CI
can set one value with a plain `pulumi config set app.imageTag v2`. Values
arrive as strings (lists and objects as JSON). All problems are collected and
reported together, before any resource is registered.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import yaml
from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from dropship import uploads
from dropship.config import guardrails
from dropship.config.errors import NAMESPACE, Problem, SettingsError, flat_key, given, set_secret_command
from dropship.config.routes import check_edge, host_port, routes
from dropship.config.sections import (
    MODE_OF_SECTION,
    SECRET_KEYS,
    SECTIONS,
    SERVER_SECTIONS,
    SERVER_VARIANTS,
    SMALLEST_SIZE,
    AlertsSettings,
    AppSettings,
    BackupsSettings,
    DeploySettings,
    DockerSettings,
    DropletServer,
    DropletSettings,
    EdgeSettings,
    ExistingHostSettings,
    ExistingServer,
    PreviewSettings,
    RegistrySettings,
    Section,
    Server,
    SshSettings,
    TlsSettings,
    UpgradesSettings,
)
from dropship.config.settings import PREVIEW_STACK, Environment, Settings
from dropship.config.types import ENV_NAME_PATTERN

TOP_LEVEL_KEYS = frozenset({"environment", "protect"})
SERVER_MODE_KEY = "server.mode"
MAX_EXTRA_NODES = 8
"""A Swarm has at most 9 servers, as `droplet.count`."""
ENV_NAME = re.compile(ENV_NAME_PATTERN)

_SERVER = TypeAdapter(Server)


def load(project: str, stack: str, config: Mapping[str, Any], secret_keys: frozenset[str], project_dir: Path) -> Settings:
    """Settings from the raw `dropship:*` config, or SettingsError naming every problem."""
    problems: list[Problem] = []
    sections: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    env: dict[str, str] = {}
    top: dict[str, Any] = {}
    mode: Any = "droplet"

    for full_key, raw in sorted(config.items()):
        namespace, _, key = full_key.partition(":")
        if namespace != NAMESPACE:
            continue
        value = _parse_value(raw)
        section, dot, rest = key.partition(".")
        if section == "env" and dot:
            if not ENV_NAME.fullmatch(rest):
                problems.append(Problem(key, f"expected an environment variable name such as DATABASE_URL after 'env.'; got {given(rest)}"))
            elif key not in secret_keys:
                problems.append(Problem(key, f"stored in plain text; .env values must be secrets: {set_secret_command(stack, key)}"))
            else:
                env[rest] = str(raw)
        elif key == SERVER_MODE_KEY:
            mode = value
        elif section == "server" and dot:
            problems.append(Problem(key, f"unknown key; known keys of 'server' are: {SERVER_MODE_KEY}"))
        elif section in SECTIONS and dot and "." not in rest:
            if key in SECRET_KEYS and key not in secret_keys:
                problems.append(Problem(key, f"stored in plain text; set it as a secret: {set_secret_command(stack, key)}"))
            sections[section][rest] = value
        elif key in TOP_LEVEL_KEYS:
            top[key] = value
        else:
            known = ", ".join(sorted([SERVER_MODE_KEY, *(f"{s}.*" for s in SECTIONS), "env.*", *TOP_LEVEL_KEYS]))
            problems.append(Problem(key, f"unknown key; dropship's keys are {known}"))

    environment = _environment_of(stack, top.get("environment"), problems)
    protect = _protect(top, environment, problems)
    server = _server(mode, sections, stack, problems)
    ssh = _section("ssh", SshSettings, sections["ssh"], stack, problems)
    deploy = _section("deploy", DeploySettings, sections["deploy"], stack, problems)
    docker = _section("docker", DockerSettings, sections["docker"], stack, problems)
    upgrades = _section("upgrades", UpgradesSettings, sections["upgrades"], stack, problems)
    alerts = _section("alerts", AlertsSettings, sections["alerts"], stack, problems)
    backups = _section("backups", BackupsSettings, sections["backups"], stack, problems)
    app = _section("app", AppSettings, sections["app"], stack, problems)
    registry = _section("registry", RegistrySettings, sections["registry"], stack, problems) if sections["registry"] else None
    tls = _section("tls", TlsSettings, sections["tls"], stack, problems)
    edge = _section("edge", EdgeSettings, sections["edge"], stack, problems)
    preview = _section("preview", PreviewSettings, sections["preview"], stack, problems)

    if environment is Environment.PREVIEW and server is not None:
        source_hostnames = server.hostnames
        server = _derive_preview(stack, server)
        if app is not None:
            app = _derive_preview_app(stack, app, server, source_hostnames)
        protect = False

    _check_server(environment, server, ssh, problems)
    _check_host_safety(server, deploy, app, registry, problems)
    if alerts is not None and server is not None:
        _check_alerts(environment, alerts, server, problems)
    if tls is not None:
        _check_tls(tls, server, problems)
    if app is not None:
        _check_app(stack, app, env, project_dir, problems, {r.service for r in routes(edge)} if edge else set())
        if tls is not None and tls.acme_ca_root is not None:
            _check_uploaded("tls.acmeCaRoot", tls.acme_ca_root, app, project_dir, problems)
        if backups is not None and server is not None:
            _check_backups(backups, app, server, project_dir, problems)
        if app.health_url is not None and app.health_url.startswith("/") and server is not None:
            _check_health_path(app, server, problems)
        if edge is not None and all((project_dir / name).is_file() for name in app.compose_files):
            check_edge(edge, app, _compose_services(app, project_dir, [] if app.rolling_services else problems), problems)
    if (
        problems
        or server is None
        or ssh is None
        or deploy is None
        or docker is None
        or upgrades is None
        or alerts is None
        or backups is None
        or app is None
        or tls is None
        or edge is None
        or preview is None
    ):
        raise SettingsError(stack, problems)

    return Settings(
        project=project,
        stack=stack,
        environment=environment,
        server=server,
        ssh=ssh,
        deploy=deploy,
        docker=docker,
        upgrades=upgrades,
        alerts=alerts,
        backups=backups,
        app=app,
        registry=registry,
        tls=tls,
        edge=edge,
        preview=preview,
        env=env,
        protect=protect,
    )


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


def _environment_of(stack: str, value: Any, problems: list[Problem]) -> Environment:
    if value is not None:
        try:
            return Environment(value)
        except ValueError:
            problems.append(Problem("environment", f"expected one of production, staging, preview, local; got {given(value)}"))
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


def _protect(top: Mapping[str, Any], environment: Environment, problems: list[Problem]) -> bool:
    default = environment is Environment.PRODUCTION
    value = top.get("protect", default)
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "false"):
        return str(value).lower() == "true"
    problems.append(Problem("protect", f"expected true or false; got {given(value)}"))
    return default


S = TypeVar("S", bound=Section)


def _section(name: str, model: type[S], values: Mapping[str, Any], stack: str, problems: list[Problem]) -> S | None:
    try:
        return model.model_validate(values)
    except ValidationError as err:
        problems.extend(_problem(name, model, e, stack) for e in err.errors())
        return None


def _problem(name: str, model: type[Section], error: ErrorDetails, stack: str) -> Problem:
    key = flat_key(name, *error["loc"])
    if error["type"] == "missing" and key in SECRET_KEYS:
        return Problem(key, f"missing secret; set it with: {set_secret_command(stack, key)}")
    if error["type"] == "missing":
        return Problem(key, "required but not set")
    if error["type"] == "extra_forbidden":
        known = ", ".join(f"{name}.{f.alias}" for f in model.model_fields.values())
        return Problem(key, f"unknown key; known keys of '{name}' are: {known}")
    message = error["msg"].removeprefix("Value error, ")
    value = "a secret value (not shown)" if key in SECRET_KEYS else given(error["input"])
    return Problem(key, f"{message}; got {value}")


def _server(
    mode: Any, sections: Mapping[str, dict[str, Any]], stack: str, problems: list[Problem]
) -> DropletServer | ExistingServer | None:
    """The server variant `server.mode` chooses, from its own sections; another mode's keys are refused."""
    if mode not in SERVER_VARIANTS:
        expected = " or ".join(f"'{m}'" for m in SERVER_VARIANTS)
        problems.append(Problem(SERVER_MODE_KEY, f"Input should be {expected}; got {given(mode)}"))
        return None
    values: dict[str, Any] = {"mode": mode}
    complete = True
    for name, model in SERVER_SECTIONS.items():
        owner = MODE_OF_SECTION[name]
        if owner == mode:
            values[name] = _section(name, model, sections[name], stack, problems)
            complete = complete and values[name] is not None
        elif sections[name]:
            complete = False
            problems.extend(
                Problem(f"{name}.{rest}", f"only applies when server.mode is {owner} (it is {mode}); remove it") for rest in sections[name]
            )
    return _SERVER.validate_python(values) if complete else None


def _derive_preview(stack: str, server: DropletServer | ExistingServer) -> DropletServer | ExistingServer:
    """A pr-<n> stack copies staging's config; everything that must differ derives from its name: its hostnames
    (`pr-<n>.<staging's>`), and a droplet of its own, the smallest. On an existing host, which it shares with
    staging, the host stays."""
    hostnames = tuple(_preview_hostname(stack, h) for h in server.hostnames)
    match server:
        case DropletServer(droplet=droplet, dns=dns):
            droplet = droplet.model_copy(
                update={"size": SMALLEST_SIZE, "backups": False, "reserved_ip": False, "volume_size_gb": None, "count": 1, "managers": None}
            )
            return server.model_copy(update={"droplet": droplet, "dns": dns.model_copy(update={"hostnames": hostnames})})
        case ExistingServer(existing_host=host):
            return server.model_copy(update={"existing_host": host.model_copy(update={"hostnames": hostnames})})


def _derive_preview_app(
    stack: str, app: AppSettings, server: DropletServer | ExistingServer, source_hostnames: tuple[str, ...]
) -> AppSettings:
    """A preview's URLs at its own hostnames; on a host it shares, a compose project and directory of its own."""
    urls = tuple(_preview_url(stack, url, source_hostnames) for url in app.urls)
    update: dict[str, Any] = {"urls": urls}
    if isinstance(server, ExistingServer):
        update["name"] = f"{app.name}-{stack}"
        if app.directory is not None:
            update["directory"] = f"{app.directory.rstrip('/')}-{stack}"
    return app.model_copy(update=update)


def _preview_hostname(stack: str, hostname: str) -> str:
    return hostname if hostname.startswith(f"{stack}.") else f"{stack}.{hostname}"


def _preview_url(stack: str, url: str, source_hostnames: tuple[str, ...]) -> str:
    """`url` at the preview's hostname when it names one of the source stack's."""
    parts = urlsplit(url)
    if parts.hostname not in source_hostnames:
        return url
    netloc = _preview_hostname(stack, parts.netloc)
    return urlunsplit(parts._replace(netloc=netloc))


def _check_server(
    environment: Environment, server: DropletServer | ExistingServer | None, ssh: SshSettings | None, problems: list[Problem]
) -> None:
    match server:
        case DropletServer(dns=dns, droplet=droplet):
            _check_swarm(droplet, problems)
            if not dns.zone and not dns.zone_id:
                problems.append(Problem("dns.zone", "required: the Cloudflare zone name (or set dns.zoneId)"))
            if not dns.hostnames:
                problems.append(Problem("dns.hostnames", 'required: at least one hostname such as ["app.example.com"]'))
            if dns.zone:
                for i, host in enumerate(dns.hostnames):
                    if host != dns.zone and not host.endswith("." + dns.zone):
                        problems.append(
                            Problem(flat_key("dns", "hostnames", i), f"expected a name inside zone {dns.zone}; got {given(host)}")
                        )
            if dns.proxied and dns.ttl != 1:
                problems.append(Problem("dns.ttl", f"proxied records need ttl 1 (automatic); got {dns.ttl}"))
            if ssh is not None:
                _check_ssh_ranges(environment, ssh, problems)
                message = "only applies to an existing host: dropship makes a droplet's host key and pins it; remove it"
                if ssh.host_key is not None:
                    problems.append(Problem("ssh.hostKey", message))
                if ssh.accept_any_host_key:
                    problems.append(Problem("ssh.acceptAnyHostKey", message))
        case ExistingServer(existing_host=host):
            _check_existing_nodes(host, problems)
            if ssh is not None:
                _check_host_keys(environment, host, ssh, problems)
        case None:
            pass


def _check_host_safety(
    server: DropletServer | ExistingServer | None,
    deploy: DeploySettings | None,
    app: AppSettings | None,
    registry: RegistrySettings | None,
    problems: list[Problem],
) -> None:
    """Settings that could damage the host (guardrails.py)."""
    found: list[Problem | None] = []
    match server:
        case DropletServer(droplet=droplet):
            found.append(guardrails.host_directory("droplet.volumeMountPath", droplet.volume_mount_path))
            admin = "root"
        case ExistingServer(existing_host=host):
            found.append(guardrails.host_directory("existingHost.volumeMountPath", host.volume_mount_path))
            admin = host.user
        case _:
            admin = "root"
    if deploy is not None:
        found.append(guardrails.deploy_user(deploy.user, admin))
    if app is not None:
        if app.directory is not None:
            found.append(guardrails.host_directory("app.directory", app.directory))
        problems.extend(guardrails.repeated("app.rollingServices", app.rolling_services))
    if registry is not None:
        for key, value in (("registry.username", registry.username), ("registry.password", registry.password)):
            if not value.strip():
                found.append(Problem(key, "empty: a registry login needs registry.username and registry.password; or remove registry.*"))
    problems.extend(p for p in found if p is not None)


def _check_swarm(droplet: DropletSettings, problems: list[Problem]) -> None:
    if droplet.managers is not None and droplet.managers not in (1, 3):
        problems.append(Problem("droplet.managers", f"expected 1 or 3 (a Swarm needs a majority of its managers); got {droplet.managers}"))
    elif droplet.manager_count > droplet.count:
        problems.append(
            Problem(
                "droplet.managers",
                f"{droplet.manager_count} managers need droplet.count {droplet.manager_count} or more; it is {droplet.count}",
            )
        )
    if droplet.count > 1 and droplet.reserved_ip:
        problems.append(
            Problem("droplet.reservedIp", "a Swarm's address is its load balancer's (droplet.count is above 1); remove droplet.reservedIp")
        )


def _check_host_keys(environment: Environment, host: ExistingHostSettings, ssh: SshSettings, problems: list[Problem]) -> None:
    """Outside `local`, every server's host key is pinned: an unpinned one would give the .env to whoever answers."""
    if ssh.accept_any_host_key and ssh.host_key is not None:
        problems.append(Problem("ssh.acceptAnyHostKey", "ssh.hostKey is pinned already; remove ssh.acceptAnyHostKey"))
    if environment is Environment.LOCAL or ssh.accept_any_host_key or host.gone:
        return
    fix = (
        "pin it: its /etc/ssh/ssh_host_ed25519_key.pub, or `ssh-keyscan -t ed25519 {address}` over a network you trust "
        "(or set ssh.acceptAnyHostKey true, warned on every up)"
    )
    if ssh.host_key is None:
        problems.append(Problem("ssh.hostKey", f"required on an existing host outside local; {fix.format(address=host.address)}"))
    for i, node in enumerate(host.nodes):
        if node.host_key is None:
            key = f"{flat_key('existingHost', 'nodes', i)}.hostKey"
            problems.append(Problem(key, f"required on an existing host outside local; {fix.format(address=node.address)}"))


def _check_existing_nodes(host: ExistingHostSettings, problems: list[Problem]) -> None:
    if not host.nodes:
        return
    if host.private_address is None:
        problems.append(
            Problem("existingHost.privateAddress", "required with existingHost.nodes: this server's address on the network they share")
        )
    if len(host.nodes) > MAX_EXTRA_NODES:
        problems.append(Problem("existingHost.nodes", f"at most {MAX_EXTRA_NODES} more servers (a Swarm of 9); got {len(host.nodes)}"))
    if host.gone:
        problems.append(Problem("existingHost.gone", "a gone host cannot lead a Swarm: remove existingHost.nodes first"))
    seen = {(host.address, host.port): "existingHost.address"}
    private = {host.private_address: "existingHost.privateAddress"}
    for i, node in enumerate(host.nodes):
        key = flat_key("existingHost", "nodes", i)
        if (node.address, node.port) in seen:
            problems.append(Problem(f"{key}.address", f"{node.address}:{node.port} is already {seen[(node.address, node.port)]}"))
        seen[(node.address, node.port)] = f"{key}.address"
        if node.private_address in private:
            problems.append(Problem(f"{key}.privateAddress", f"{node.private_address} is already {private[node.private_address]}"))
        private[node.private_address] = f"{key}.privateAddress"


def _check_alerts(
    environment: Environment, alerts: AlertsSettings, server: DropletServer | ExistingServer, problems: list[Problem]
) -> None:
    if alerts.enabled and isinstance(server, ExistingServer):
        problems.append(Problem("alerts.enabled", "alerts are DigitalOcean's: they need server.mode droplet; remove it"))
    on = alerts.enabled if alerts.enabled is not None else environment is Environment.PRODUCTION
    needed = on and isinstance(server, DropletServer) and environment is not Environment.PREVIEW
    if needed and not alerts.emails and alerts.slack_webhook_url is None:
        problems.append(
            Problem("alerts.emails", 'alerts need a recipient: set alerts.emails (e.g. ["ops@example.com"]) or alerts.slackWebhookUrl')
        )
    if (alerts.slack_webhook_url is None) != (alerts.slack_channel is None):
        missing = "alerts.slackChannel" if alerts.slack_channel is None else "alerts.slackWebhookUrl"
        problems.append(Problem(missing, "Slack alerts need both alerts.slackWebhookUrl and alerts.slackChannel"))


def _check_tls(tls: TlsSettings, server: DropletServer | ExistingServer | None, problems: list[Problem]) -> None:
    if tls.mode != "cloudflare-origin":
        return
    match server:
        case DropletServer(dns=dns) if not dns.proxied:
            problems.append(
                Problem("tls.mode", "cloudflare-origin needs dns.proxied true: only Cloudflare's proxy trusts an origin certificate")
            )
        case ExistingServer():
            problems.append(Problem("tls.mode", "cloudflare-origin needs server.mode droplet, whose DNS dropship keeps at Cloudflare"))
        case _:
            pass
    if tls.acme_ca is not None or tls.acme_ca_root is not None:
        problems.append(Problem("tls.acmeCa", "only applies when tls.mode is acme (it is cloudflare-origin); remove it"))


def _check_health_path(app: AppSettings, server: DropletServer | ExistingServer, problems: list[Problem]) -> None:
    if not app.urls and not server.hostnames:
        problems.append(
            Problem(
                "app.healthUrl",
                f"a path ({app.health_url}) needs the stack's URL: set existingHost.hostnames or app.urls, or give a whole URL",
            )
        )


def _check_ssh_ranges(environment: Environment, ssh: SshSettings, problems: list[Problem]) -> None:
    if not ssh.source_ranges:
        problems.append(
            Problem("ssh.sourceRanges", 'required for a droplet: the CIDR ranges allowed to reach SSH, e.g. ["203.0.113.7/32"]')
        )
    world = guardrails.whole_internet(ssh.source_ranges)
    if world and environment is Environment.PRODUCTION and not ssh.allow_world:
        problems.append(
            Problem(
                "ssh.sourceRanges",
                f"production refuses ranges that together cover {' and '.join(world)} (the whole internet); "
                "narrow the ranges or set ssh.allowWorld true",
            )
        )


MOVING_TAGS = frozenset(
    {"latest", "main", "master", "trunk", "head", "develop", "dev", "edge", "nightly", "stable", "staging", "production", "prod"}
)
"""Tags that name a branch or a channel: the image behind them changes."""


def _check_app(stack: str, app: AppSettings, env: Mapping[str, str], project_dir: Path, problems: list[Problem], routed: set[str]) -> None:
    if app.pull_policy == "missing" and app.image_tag.lower() in MOVING_TAGS:
        problems.append(
            Problem(
                "app.imageTag",
                f"{given(app.image_tag)} is a moving tag, and a release pulls only images the host lacks: the host would keep "
                "its first one. Deploy an immutable tag (a version, or the commit's SHA), or set app.pullPolicy always",
            )
        )
    missing = set()  # reported already: no further problems for these
    for i, name in enumerate(app.compose_files):
        if not (project_dir / name).is_file():
            missing.add(name)
            problems.append(
                Problem(flat_key("app", "composeFiles", i), f"expected an existing file relative to {project_dir}; got {given(name)}")
            )
    for i, name in enumerate(app.files):
        if Path(name).name == ".env":
            missing.add(name)
            problems.append(Problem(flat_key("app", "files", i), "'.env' is written from env.* secrets; do not upload one"))
        elif not (project_dir / name).exists():
            missing.add(name)
            problems.append(
                Problem(flat_key("app", "files", i), f"expected an existing file or directory relative to {project_dir}; got {given(name)}")
            )
    for name in app.required_env:
        if name not in env:
            key = f"env.{name}"
            problems.append(Problem(key, f"missing secret named in app.requiredEnv; set it with: {set_secret_command(stack, key)}"))
    if not app.compose_files:
        problems.append(Problem("app.composeFiles", 'required: at least one compose file such as ["compose.yaml"]'))
    else:
        _check_host_paths(app, missing, problems)
        if not missing & set(app.compose_files):
            _check_rolling_services(app, project_dir, problems, routed)


def _compose_services(app: AppSettings, project_dir: Path, problems: list[Problem]) -> dict[str, list[dict[str, Any]]] | None:
    """Each service of the compose files -> its definitions (one per file that has it); None if a file is not YAML."""
    services: dict[str, list[dict[str, Any]]] = {}
    for i, name in enumerate(app.compose_files):
        try:
            document = yaml.safe_load((project_dir / name).read_text()) or {}
        except yaml.YAMLError as error:
            problems.append(Problem(flat_key("app", "composeFiles", i), f"not valid YAML: {error}".splitlines()[0]))
            return None
        for service, definition in (document.get("services") or {}).items():
            services.setdefault(str(service), []).append(definition or {})
    return services


def _check_backups(
    backups: BackupsSettings, app: AppSettings, server: DropletServer | ExistingServer, project_dir: Path, problems: list[Problem]
) -> None:
    if not backups.databases:
        return
    services = _compose_services(app, project_dir, problems)
    for i, service in enumerate(backups.databases):
        if services is not None and service not in services:
            known = ", ".join(sorted(services)) or "none"
            problems.append(
                Problem(
                    flat_key("backups", "databases", i),
                    f"no service {given(service)} in {', '.join(app.compose_files)} (its services: {known})",
                )
            )
    if backups.bucket is None and isinstance(server, ExistingServer):
        problems.append(
            Problem(
                "backups.bucket",
                "required on an existing host: name an S3-compatible bucket (dropship creates a Spaces bucket only for a droplet)",
            )
        )
    if backups.bucket is not None:
        for key, value in (
            ("backups.endpoint", backups.endpoint),
            ("backups.accessKeyId", backups.access_key_id),
            ("backups.secretAccessKey", backups.secret_access_key),
        ):
            if value is None:
                problems.append(Problem(key, "required with backups.bucket: the bucket's S3 endpoint and a key that may write to it"))


def _check_rolling_services(app: AppSettings, project_dir: Path, problems: list[Problem], routed: set[str]) -> None:
    """A rolled service runs two containers side by side for a moment: no fixed host port, no fixed name
    (a routed one's are dropped by the edge's override)."""
    if not set(app.rolling_services) - routed:
        return
    services = _compose_services(app, project_dir, problems)
    if services is None:
        return
    for i, service in enumerate(app.rolling_services):
        key = flat_key("app", "rollingServices", i)
        definitions = services.get(service)
        if definitions is None:
            problems.append(Problem(key, f"no service {given(service)} in {', '.join(app.compose_files)}"))
            continue
        if service in routed:
            continue
        published = [p for d in definitions for p in d.get("ports") or () if host_port(p) is not None]
        if published:
            problems.append(
                Problem(
                    key,
                    f"service {service} publishes host port {host_port(published[0])}: its old and new containers cannot both "
                    "bind it during a rollout; let the edge proxy reach it by service name and remove the port",
                )
            )
        if any("container_name" in d for d in definitions):
            problems.append(
                Problem(key, f"service {service} sets container_name: compose cannot start a second container of that name; remove it")
            )


def _check_uploaded(key: str, entry: str, app: AppSettings, project_dir: Path, problems: list[Problem]) -> None:
    """`entry` must be a file that app.files brings to the host (listed, or inside a listed directory)."""
    if not (project_dir / entry).is_file():
        problems.append(Problem(key, f"expected an existing file relative to {project_dir}; got {given(entry)}"))
        return
    target = os.path.normpath(entry)
    if not any(target == os.path.normpath(f) or _inside(target, os.path.normpath(f)) for f in app.files):
        problems.append(Problem(key, f"{given(entry)} is not uploaded; add it (or its directory) to app.files"))


def _inside(path: str, directory: str) -> bool:
    """`path` is below `directory` (both normalised, relative)."""
    return path.startswith(directory + "/")


def _check_host_paths(app: AppSettings, missing: set[str], problems: list[Problem]) -> None:
    """Every upload keeps its path relative to the compose project directory: inside it, each path once."""
    root = uploads.compose_root(app.compose_files)
    placed: list[tuple[str, str]] = []  # (host path, key)
    for kind, names in (("composeFiles", app.compose_files), ("files", app.files)):
        for i, name in enumerate(names):
            if name in missing:
                continue
            key = flat_key("app", kind, i)
            target = uploads.host_path(name, root)
            if target is None:
                problems.append(
                    Problem(
                        key,
                        f"{given(name)} is outside {root}/, the directory of the first compose file, which becomes "
                        f"the app's directory on the host; move it under {root}/",
                    )
                )
            elif target == ".":
                problems.append(Problem(key, f"{given(name)} is the app's directory itself; list the files or directories in it"))
            elif (reserved := guardrails.upload_name(key, target)) is not None:
                problems.append(reserved)
            else:
                for other, other_key in placed:
                    if target == other:
                        problems.append(Problem(key, f"{given(name)} is uploaded already by {other_key}"))
                    elif _inside(target, other) or _inside(other, target):
                        problems.append(Problem(key, f"{given(name)} overlaps {other_key}; list either the directory or the files in it"))
                placed.append((target, key))
