"""dropship's guardrails as Pulumi policies (pulumi-policy), checked on every preview and up.

Every rule finds the stack in the resource's URN (`urn:pulumi:<stack>::...`)
and the stack's environment like the program does: `dropship:environment`
if set, otherwise from the stack's name (`production`, `pr-<n>` = preview).
Stack settings come from the engine when it hands the pack the stack's
configuration (PULUMI_STACK/PULUMI_CONFIG), otherwise from
`Pulumi.<stack>.yaml` in the project directory (this directory's parent).

- production: droplets have backups and are protected; reserved IPs and
  volumes are protected; the firewall's SSH rule admits neither 0.0.0.0/0
  nor ::/0 unless the stack sets `dropship:ssh.allowWorld` true.
- preview (pr-<n>): droplets use the smallest size; DNS records are only
  `pr-<n>.<a staging hostname>`. Staging's hostnames are the policy config
  `stagingHostnames` if given (`--policy-pack-config`), otherwise
  `dropship:dns.hostnames` of Pulumi.staging.yaml.
- production (the whole stack): an uptime check, and CPU, memory and disk
  alerts on the droplet; every Postgres service of its compose files (by
  image, the official image's variables or its data directory) is in
  `dropship:backups.databases`.
- every stack: the remote command that runs write-env.sh has logging none;
  no setting that could damage the host (dropship/config/guardrails.py, the
  program's own rules): the app's directory and the volume's mount point
  below a safe root, a deploy user that is neither the admin user nor a
  system account.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from dropship.config import guardrails

NAMESPACE = "dropship"
SMALLEST_SIZE = "s-1vcpu-1gb"  # dropship.settings.SMALLEST_SIZE (a unit test keeps them equal)
PREVIEW_STACK = re.compile(r"^pr-([1-9][0-9]{0,8})$")
SSH_PORT = 22

DROPLET = "digitalocean:index/droplet:Droplet"
RESERVED_IP = "digitalocean:index/reservedIp:ReservedIp"
VOLUME = "digitalocean:index/volume:Volume"
FIREWALL = "digitalocean:index/firewall:Firewall"
DNS_RECORDS = frozenset({"cloudflare:index/dnsRecord:DnsRecord", "cloudflare:index/record:Record"})
COMMANDS = frozenset({"command:remote:Command", "command:local:Command"})
ENV_SCRIPT = "write-env.sh"
UPTIME_CHECK = "digitalocean:index/uptimeCheck:UptimeCheck"
MONITOR_ALERT = "digitalocean:index/monitorAlert:MonitorAlert"
DROPLET_METRICS = {
    "v1/insights/droplet/cpu": "CPU",
    "v1/insights/droplet/memory_utilization_percent": "memory",
    "v1/insights/droplet/disk_utilization_percent": "disk",
}


def stack_of(urn: str) -> str:
    """`urn:pulumi:<stack>::<project>::<type>::<name>` -> stack."""
    return urn.split("::", 1)[0].removeprefix("urn:pulumi:")


@dataclass(frozen=True)
class StackSettings:
    """Reads a stack's `dropship:*` settings: from the engine when it describes that stack, else from its file."""

    project_dir: Path

    def config(self, stack: str) -> Mapping[str, Any]:
        if os.environ.get("PULUMI_STACK") == stack and os.environ.get("PULUMI_CONFIG"):
            try:
                return dict(json.loads(os.environ["PULUMI_CONFIG"]))
            except (ValueError, TypeError):
                pass
        path = self.project_dir / f"Pulumi.{stack}.yaml"
        if not path.is_file():
            return {}
        document = yaml.safe_load(path.read_text()) or {}
        return dict(document.get("config") or {})

    def value(self, stack: str, key: str) -> Any:
        return self.config(stack).get(f"{NAMESPACE}:{key}")

    def environment(self, stack: str) -> str:
        given = self.value(stack, "environment")
        if isinstance(given, str) and given:
            return given
        if PREVIEW_STACK.match(stack):
            return "preview"
        return stack

    def flag(self, stack: str, key: str) -> bool:
        return str(self.value(stack, key)).lower() == "true"

    def strings(self, stack: str, key: str) -> list[str]:
        """A list setting, given as a list (the stack file) or as JSON (the engine's config)."""
        value = self.value(stack, key)
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                return []
        return [str(h) for h in value] if isinstance(value, list) else []

    def hostnames(self, stack: str) -> list[str]:
        return self.strings(stack, "dns.hostnames")


Check = Callable[[ResourceValidationArgs, StackSettings, str], list[str]]


def _policy(name: str, description: str, check: Check, settings: StackSettings, **extra: Any) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        stack = stack_of(args.urn)
        for message in check(args, settings, stack):
            report_violation(message, args.urn)

    return ResourceValidationPolicy(
        name=name, description=description, validate=validate, enforcement_level=EnforcementLevel.MANDATORY, **extra
    )


# --- production --------------------------------------------------------------


def production_droplet(args: ResourceValidationArgs, settings: StackSettings, stack: str) -> list[str]:
    if args.resource_type != DROPLET or settings.environment(stack) != "production":
        return []
    problems = []
    if args.props.get("backups") is not True:
        problems.append(f"droplet '{args.name}' of stack {stack} has no backups; set dropship:droplet.backups true")
    if not args.opts.protect:
        problems.append(f"droplet '{args.name}' of stack {stack} is not protected; remove dropship:protect false")
    return problems


def production_storage(args: ResourceValidationArgs, settings: StackSettings, stack: str) -> list[str]:
    if args.resource_type not in (RESERVED_IP, VOLUME) or settings.environment(stack) != "production":
        return []
    if args.opts.protect:
        return []
    kind = "reserved IP" if args.resource_type == RESERVED_IP else "volume"
    return [f"{kind} '{args.name}' of stack {stack} is not protected; remove dropship:protect false"]


def _covers(port_range: Any, port: int) -> bool:
    text = str(port_range or "").strip().lower()
    if text in ("", "all"):
        return True
    low, _, high = text.partition("-")
    try:
        return int(low) <= port <= int(high or low)
    except ValueError:
        return True  # unreadable: treat as covering, the safe side


def production_ssh(args: ResourceValidationArgs, settings: StackSettings, stack: str) -> list[str]:
    if args.resource_type != FIREWALL or settings.environment(stack) != "production":
        return []
    if settings.flag(stack, "ssh.allowWorld"):
        return []
    problems = []
    for rule in args.props.get("inboundRules") or []:
        if str(rule.get("protocol", "")).lower() != "tcp" or not _covers(rule.get("portRange"), SSH_PORT):
            continue
        world = guardrails.whole_internet(rule.get("sourceAddresses") or [])
        if world:
            problems.append(
                f"firewall '{args.name}' of stack {stack} admits SSH (port {SSH_PORT}) from {' and '.join(world)} (all of it); "
                f"narrow dropship:ssh.sourceRanges or set dropship:ssh.allowWorld true"
            )
    return problems


# --- preview stacks ----------------------------------------------------------


def preview_size(args: ResourceValidationArgs, settings: StackSettings, stack: str) -> list[str]:
    if args.resource_type != DROPLET or settings.environment(stack) != "preview":
        return []
    size = args.props.get("size")
    if size == SMALLEST_SIZE:
        return []
    return [f"droplet '{args.name}' of preview stack {stack} has size {size!r}; preview stacks use only {SMALLEST_SIZE}"]


def staging_hostnames(args: ResourceValidationArgs, settings: StackSettings) -> list[str]:
    configured = args.get_config().get("stagingHostnames")
    if configured:
        return [str(h) for h in configured]
    return settings.hostnames("staging")


def preview_hostnames(args: ResourceValidationArgs, settings: StackSettings, stack: str) -> list[str]:
    if args.resource_type not in DNS_RECORDS or settings.environment(stack) != "preview":
        return []
    name = str(args.props.get("name", "")).rstrip(".").lower()
    allowed = sorted(f"{stack}.{h.lower()}" for h in staging_hostnames(args, settings))
    if name in allowed:
        return []
    if not allowed:
        return [
            f"DNS record '{name}' of preview stack {stack}: staging's hostnames are unknown "
            "(no dropship:dns.hostnames in Pulumi.staging.yaml, no stagingHostnames policy config)"
        ]
    return [f"DNS record '{name}' of preview stack {stack} is not one of {', '.join(allowed)} (pr-<n>.<a staging hostname>)"]


def production_alerts(resources: Sequence[PolicyResource], settings: StackSettings) -> list[str]:
    droplets = [r for r in resources if r.resource_type == DROPLET]
    if not droplets or settings.environment(stack := stack_of(droplets[0].urn)) != "production":
        return []
    fix = "set alerts.emails (or alerts.slackWebhookUrl) and leave alerts.enabled unset"
    problems = []
    if not any(r.resource_type == UPTIME_CHECK for r in resources):
        problems.append(f"production stack {stack} has no uptime check; {fix}")
    watched = {r.props.get("type") for r in resources if r.resource_type == MONITOR_ALERT}
    missing = [label for metric, label in DROPLET_METRICS.items() if metric not in watched]
    if missing:
        problems.append(f"production stack {stack} has no {', '.join(missing)} alert on its droplet; {fix}")
    return problems


# --- every stack ---------------------------------------------------------------


def env_never_logged(args: ResourceValidationArgs, settings: StackSettings, stack: str) -> list[str]:
    if args.resource_type not in COMMANDS:
        return []
    scripts: Sequence[Any] = [args.props.get(k) for k in ("create", "update", "delete")]
    if not any(isinstance(s, str) and ENV_SCRIPT in s for s in scripts):
        return []
    logging = args.props.get("logging")
    if logging == "none":
        return []
    return [f"command '{args.name}' of stack {stack} writes the .env ({ENV_SCRIPT}) with logging {logging!r}; it must be 'none'"]


def host_settings(resources: Sequence[PolicyResource], settings: StackSettings) -> list[str]:
    """The program's guardrails, on the stack's configuration as given."""
    if not resources:
        return []
    stack = stack_of(resources[0].urn)
    existing = settings.value(stack, "server.mode") == "existing"
    admin = str(settings.value(stack, "existingHost.user") or "root") if existing else "root"
    found = [guardrails.deploy_user(str(settings.value(stack, "deploy.user") or "deploy"), admin)]
    for key in ("app.directory", "existingHost.volumeMountPath" if existing else "droplet.volumeMountPath"):
        path = settings.value(stack, key)
        if isinstance(path, str) and path:
            found.append(guardrails.host_directory(key, path))
    return [f"stack {stack}: {NAMESPACE}:{problem.key}: {problem.message}" for problem in found if problem is not None]


def production_backups(resources: Sequence[PolicyResource], settings: StackSettings) -> list[str]:
    """Production backs up every Postgres its compose files run (backups.databases)."""
    if not resources or settings.environment(stack := stack_of(resources[0].urn)) != "production":
        return []
    running: list[str] = []
    for path in settings.strings(stack, "app.composeFiles"):
        file = settings.project_dir / path
        try:
            document = yaml.safe_load(file.read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            return [f"production stack {stack}: cannot read {path} of dropship:app.composeFiles to find its databases: {error}"]
        running += [s for s in guardrails.postgres_services(document) if s not in running]
    backed_up = settings.strings(stack, "backups.databases")
    missing = [s for s in running if s not in backed_up]
    if not missing:
        return []
    wanted = json.dumps(backed_up + missing)
    return [
        f"production stack {stack} runs Postgres in service {', '.join(missing)} of its compose files without backups; "
        f"set dropship:backups.databases {wanted}"
    ]


def policies(project_dir: Path) -> list[ResourceValidationPolicy | StackValidationPolicy]:
    settings = StackSettings(project_dir)

    def alerts(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        for message in production_alerts(args.resources, settings):
            report_violation(message, None)

    def host(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        for message in host_settings(args.resources, settings):
            report_violation(message, None)

    def databases(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        for message in production_backups(args.resources, settings):
            report_violation(message, None)

    return [
        StackValidationPolicy(
            name="host-settings-safe",
            description="No setting that could damage a host: system directories, a root, admin or system deploy user.",
            validate=host,
            enforcement_level=EnforcementLevel.MANDATORY,
        ),
        StackValidationPolicy(
            name="production-databases-backed-up",
            description="Production backs up every Postgres service its compose files run (backups.databases).",
            validate=databases,
            enforcement_level=EnforcementLevel.MANDATORY,
        ),
        StackValidationPolicy(
            name="production-alerts",
            description="Production stacks watch their URLs (uptime checks) and their droplet's CPU, memory and disk.",
            validate=alerts,
            enforcement_level=EnforcementLevel.MANDATORY,
        ),
        _policy(
            "production-droplet-backups-and-protect",
            "Production droplets have backups and are protected from deletion.",
            production_droplet,
            settings,
        ),
        _policy(
            "production-storage-protected",
            "Production reserved IPs and volumes are protected from deletion.",
            production_storage,
            settings,
        ),
        _policy(
            "production-ssh-not-world",
            "Production's firewall does not admit SSH from 0.0.0.0/0 or ::/0 (unless dropship:ssh.allowWorld).",
            production_ssh,
            settings,
        ),
        _policy(
            "preview-smallest-size",
            f"Preview stacks (pr-<n>) use only the smallest droplet size, {SMALLEST_SIZE}.",
            preview_size,
            settings,
        ),
        _policy(
            "preview-hostnames-under-staging",
            "Preview stacks (pr-<n>) own only DNS names pr-<n>.<a staging hostname>.",
            preview_hostnames,
            settings,
            config_schema=PolicyConfigSchema(properties={"stagingHostnames": {"type": "array", "items": {"type": "string"}}}),
        ),
        _policy(
            "env-file-never-logged",
            "The command that writes the app's .env (write-env.sh) never logs: logging none.",
            env_never_logged,
            settings,
        ),
    ]
