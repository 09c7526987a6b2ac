"""The policy pack's rules (policy/dropship_rules.py), fed violating and compliant resource inputs.

The compliant inputs are the program's own: every resource that staging,
production and pr-42 register under Pulumi's mocks passes every rule. The
violating ones change one input each. The real engine runs the pack in
tests/e2e/test_preview_lifecycle.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from dropship.config import guardrails, sections, settings
from dropship.remote import commands
from policy import dropship_rules
from policy.dropship_rules import policies, stack_of
from tests.unit.program import ROOT, Registered, Run, run_program, stack_config
from tests.unit.test_settings import STAGING_SECRETS

DROPLET = "digitalocean:index/droplet:Droplet"
FIREWALL = "digitalocean:index/firewall:Firewall"
DNS_RECORD = "cloudflare:index/dnsRecord:DnsRecord"
COMMAND = "command:remote:Command"
RULES = {
    "production-droplet-backups-and-protect",
    "production-storage-protected",
    "production-ssh-not-world",
    "preview-smallest-size",
    "preview-hostnames-under-staging",
    "env-file-never-logged",
    "production-alerts",
    "host-settings-safe",
    "production-databases-backed-up",
}


@pytest.fixture(autouse=True)
def no_engine_config(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The rules prefer the engine's view of a stack's config; tests set it explicitly when they want it."""
    monkeypatch.delenv("PULUMI_STACK", raising=False)
    monkeypatch.delenv("PULUMI_CONFIG", raising=False)
    yield


def resource(
    type_: str, props: dict[str, Any], stack: str, name: str = "r", protect: bool = False, config: dict[str, Any] | None = None
) -> ResourceValidationArgs:
    options = PolicyResourceOptions(protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], None)
    urn = f"urn:pulumi:{stack}::dropship::{type_}::{name}"
    return ResourceValidationArgs(type_, props, urn, name, options, None, config)


def violations(args: ResourceValidationArgs, project_dir: Path = ROOT, only: str | None = None) -> dict[str, list[str]]:
    """policy name -> messages it reported for `args` (policies that report nothing are left out)."""
    found: dict[str, list[str]] = {}
    for policy in policies(project_dir):
        if (only and policy.name != only) or not isinstance(policy, ResourceValidationPolicy):
            continue

        def report(message: str, urn: str | None = None, policy: ResourceValidationPolicy = policy) -> None:
            assert urn == args.urn
            found.setdefault(policy.name, []).append(message)

        policy.validate(args, report)
    return found


def from_program(registered: Registered, stack: str) -> ResourceValidationArgs:
    return resource(registered.type, registered.inputs, stack, registered.name, registered.protect)


# --- the pack as a whole -----------------------------------------------------


def test_the_pack_has_every_rule_and_all_are_mandatory() -> None:
    pack = policies(ROOT)
    assert {p.name for p in pack} == RULES
    assert all(p.enforcement_level is not None and p.enforcement_level.value == "mandatory" for p in pack)


def test_pack_constants_match_the_settings_model() -> None:
    assert dropship_rules.SMALLEST_SIZE == sections.SMALLEST_SIZE
    assert dropship_rules.PREVIEW_STACK.pattern == settings.PREVIEW_STACK.pattern
    assert dropship_rules.ENV_SCRIPT in commands.write_env("/srv/app")


def test_stack_comes_from_the_urn() -> None:
    assert stack_of("urn:pulumi:pr-42::dropship::digitalocean:index/droplet:Droplet::server-droplet") == "pr-42"
    assert stack_of("urn:pulumi:production::dropship::dropship:index:Server$digitalocean:index/droplet:Droplet::d") == "production"


@pytest.mark.parametrize("stack, config_of", [("staging", "staging"), ("production", "production"), ("pr-42", "staging")])
def test_every_resource_the_program_registers_complies(stack: str, config_of: str) -> None:
    run: Run = run_program(stack, stack_config(config_of), STAGING_SECRETS)
    assert run.resources
    for registered in run.resources:
        assert violations(from_program(registered, stack)) == {}, registered.name


def test_production_without_protection_violates_for_droplet_reserved_ip_and_volume() -> None:
    config = {**stack_config("production"), "dropship:protect": "false"}
    run = run_program("production", config, STAGING_SECRETS)
    found = {r.name: violations(from_program(r, "production")) for r in run.resources}
    assert found["server-droplet"] == {
        "production-droplet-backups-and-protect": [
            "droplet 'server-droplet' of stack production is not protected; remove dropship:protect false"
        ]
    }
    assert found["server-ip"] == {
        "production-storage-protected": ["reserved IP 'server-ip' of stack production is not protected; remove dropship:protect false"]
    }
    assert found["server-data"] == {
        "production-storage-protected": ["volume 'server-data' of stack production is not protected; remove dropship:protect false"]
    }
    assert {name for name, v in found.items() if v} == {"server-droplet", "server-ip", "server-data"}


# --- production ----------------------------------------------------------------


def test_production_droplet_without_backups_violates() -> None:
    args = resource(DROPLET, {"size": "s-2vcpu-4gb", "backups": False}, "production", "server-droplet", protect=True)
    assert violations(args) == {
        "production-droplet-backups-and-protect": [
            "droplet 'server-droplet' of stack production has no backups; set dropship:droplet.backups true"
        ]
    }


def test_production_droplet_with_backups_and_protect_complies() -> None:
    args = resource(DROPLET, {"size": "s-2vcpu-4gb", "backups": True}, "production", protect=True)
    assert violations(args) == {}


def test_staging_droplet_needs_neither_backups_nor_protect() -> None:
    assert violations(resource(DROPLET, {"size": "s-1vcpu-2gb", "backups": False}, "staging")) == {}


def ssh_rule(*sources: str, port: str = "22") -> dict[str, Any]:
    return {"protocol": "tcp", "portRange": port, "sourceAddresses": list(sources)}


WEB_RULE = {"protocol": "tcp", "portRange": "443", "sourceAddresses": ["0.0.0.0/0", "::/0"]}


@pytest.mark.parametrize(
    "rule, world",
    [
        (ssh_rule("0.0.0.0/0"), "0.0.0.0/0"),
        (ssh_rule("203.0.113.10/32", "::/0"), "::/0"),
        (ssh_rule("0.0.0.0/0", "::/0", port="1-65535"), "0.0.0.0/0, ::/0"),
        (ssh_rule("0.0.0.0/0", port="20-30"), "0.0.0.0/0"),
        # Judged by the addresses covered, not by their spelling.
        (ssh_rule("0.0.0.0/1", "128.0.0.0/1"), "0.0.0.0/0"),
        (ssh_rule("203.0.113.10/32", "::/1", "8000::/1"), "::/0"),
    ],
)
def test_production_firewall_with_ssh_from_the_world_violates(rule: dict[str, Any], world: str) -> None:
    args = resource(FIREWALL, {"inboundRules": [rule, WEB_RULE]}, "production", "firewall-firewall")
    assert violations(args) == {
        "production-ssh-not-world": [
            f"firewall 'firewall-firewall' of stack production admits SSH (port 22) from {world.replace(', ', ' and ')} (all of it); "
            "narrow dropship:ssh.sourceRanges or set dropship:ssh.allowWorld true"
        ]
    }


def test_production_firewall_with_narrow_ssh_and_web_from_everywhere_complies() -> None:
    args = resource(FIREWALL, {"inboundRules": [ssh_rule("203.0.113.10/32"), WEB_RULE]}, "production")
    assert violations(args) == {}


def test_staging_firewall_may_admit_ssh_from_anywhere() -> None:
    assert violations(resource(FIREWALL, {"inboundRules": [ssh_rule("0.0.0.0/0", "::/0")]}, "staging")) == {}


def write_stack(project_dir: Path, stack: str, config: dict[str, Any]) -> None:
    (project_dir / f"Pulumi.{stack}.yaml").write_text(json.dumps({"config": config}))  # JSON is YAML


def test_production_may_admit_the_world_when_the_stack_file_allows_it(tmp_path: Path) -> None:
    write_stack(tmp_path, "production", {"dropship:ssh.allowWorld": True})
    args = resource(FIREWALL, {"inboundRules": [ssh_rule("0.0.0.0/0")]}, "production")
    assert violations(args, tmp_path) == {}


def test_the_engines_config_of_the_stack_wins_over_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_stack(tmp_path, "production", {"dropship:ssh.allowWorld": True})
    args = resource(FIREWALL, {"inboundRules": [ssh_rule("0.0.0.0/0")]}, "production")
    monkeypatch.setenv("PULUMI_STACK", "production")
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({"dropship:ssh.allowWorld": "false"}))
    assert list(violations(args, tmp_path)) == ["production-ssh-not-world"]
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({"dropship:ssh.allowWorld": "true"}))
    assert violations(args, tmp_path) == {}


def test_a_stack_with_environment_production_gets_productions_rules(tmp_path: Path) -> None:
    write_stack(tmp_path, "prod-eu", {"dropship:environment": "production"})
    args = resource(DROPLET, {"size": "s-2vcpu-4gb", "backups": True}, "prod-eu", "server-droplet")
    assert list(violations(args, tmp_path)) == ["production-droplet-backups-and-protect"]


# --- preview stacks --------------------------------------------------------------


@pytest.mark.parametrize("size", ["s-1vcpu-2gb", "s-2vcpu-4gb", "c-32"])
def test_preview_droplet_larger_than_the_smallest_violates(size: str) -> None:
    args = resource(DROPLET, {"size": size, "backups": False}, "pr-42", "server-droplet")
    assert violations(args) == {
        "preview-smallest-size": [f"droplet 'server-droplet' of preview stack pr-42 has size '{size}'; preview stacks use only s-1vcpu-1gb"]
    }


def test_preview_droplet_of_the_smallest_size_complies() -> None:
    assert violations(resource(DROPLET, {"size": "s-1vcpu-1gb"}, "pr-42")) == {}


def test_size_rule_spares_other_stacks() -> None:
    assert violations(resource(DROPLET, {"size": "s-1vcpu-2gb"}, "staging")) == {}


@pytest.mark.parametrize(
    "name",
    [
        "staging.example.com",  # staging's own record
        "app.example.com",  # production's
        "pr-43.staging.example.com",  # another preview's
        "pr-42.example.com",  # not under a staging hostname
        "x.pr-42.staging.example.com",
    ],
)
def test_preview_dns_record_outside_its_name_violates(name: str) -> None:
    args = resource(DNS_RECORD, {"name": name, "type": "A", "content": "203.0.113.50"}, "pr-42", "dns-a")
    assert violations(args) == {
        "preview-hostnames-under-staging": [
            f"DNS record '{name}' of preview stack pr-42 is not one of pr-42.staging.example.com (pr-<n>.<a staging hostname>)"
        ]
    }


def test_preview_dns_record_under_a_staging_hostname_complies() -> None:
    args = resource(DNS_RECORD, {"name": "pr-42.staging.example.com", "type": "AAAA"}, "pr-42")
    assert violations(args) == {}


def test_staging_hostnames_from_policy_config_override_the_stack_file() -> None:
    config = {"stagingHostnames": ["staging.shop.example", "beta.shop.example"]}
    ok = resource(DNS_RECORD, {"name": "pr-42.beta.shop.example"}, "pr-42", config=config)
    assert violations(ok) == {}
    bad = resource(DNS_RECORD, {"name": "pr-42.staging.example.com"}, "pr-42", config=config)
    assert violations(bad)["preview-hostnames-under-staging"] == [
        "DNS record 'pr-42.staging.example.com' of preview stack pr-42 is not one of "
        "pr-42.beta.shop.example, pr-42.staging.shop.example (pr-<n>.<a staging hostname>)"
    ]


def test_unknown_staging_hostnames_fail_closed(tmp_path: Path) -> None:
    args = resource(DNS_RECORD, {"name": "pr-42.staging.example.com"}, "pr-42")
    assert violations(args, tmp_path) == {
        "preview-hostnames-under-staging": [
            "DNS record 'pr-42.staging.example.com' of preview stack pr-42: staging's hostnames are unknown "
            "(no dropship:dns.hostnames in Pulumi.staging.yaml, no stagingHostnames policy config)"
        ]
    }


# --- the .env command -------------------------------------------------------------


@pytest.mark.parametrize("logging", [None, "stdout", "stderr", "stdoutAndStderr"])
@pytest.mark.parametrize("stack", ["local", "staging", "production", "pr-42"])
def test_env_command_that_may_log_violates(logging: str | None, stack: str) -> None:
    props: dict[str, Any] = {"create": commands.write_env("/srv/app"), "stdin": "SECRET=x\n"}
    if logging is not None:
        props["logging"] = logging
    args = resource(COMMAND, props, stack, "env-write")
    assert violations(args) == {
        "env-file-never-logged": [
            f"command 'env-write' of stack {stack} writes the .env (write-env.sh) with logging {logging!r}; it must be 'none'"
        ]
    }


def test_env_command_with_logging_none_complies() -> None:
    args = resource(COMMAND, {"create": commands.write_env("/srv/app"), "logging": "none"}, "local", "env-write")
    assert violations(args) == {}


def test_other_commands_may_log() -> None:
    args = resource(
        COMMAND, {"create": commands.check_deploy_user().command, "logging": "stdoutAndStderr"}, "local", "host-deploy-user-check"
    )
    assert violations(args) == {}


def stack_violations(run: Run, stack: str) -> list[str]:
    """What the stack policies report for every resource `run` registered."""
    options = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], None)
    resources = [
        PolicyResource(r.type, r.inputs, f"urn:pulumi:{stack}::dropship::{r.type}::{r.name}", r.name, options, None, None, [], {})
        for r in run.resources
    ]
    found: list[str] = []

    def report(message: str, urn: str | None = None) -> None:
        found.append(message)

    for policy in policies(ROOT):
        if isinstance(policy, StackValidationPolicy) and policy.validate is not None:
            policy.validate(StackValidationArgs(resources), report)
    return found


def test_production_must_watch_its_urls_and_its_droplet() -> None:
    assert stack_violations(run_program("production", stack_config("production"), STAGING_SECRETS), "production") == []
    config = {**stack_config("production"), "dropship:alerts.enabled": "false"}
    fix = "set alerts.emails (or alerts.slackWebhookUrl) and leave alerts.enabled unset"
    assert stack_violations(run_program("production", config, STAGING_SECRETS), "production") == [
        f"production stack production has no uptime check; {fix}",
        f"production stack production has no CPU, memory, disk alert on its droplet; {fix}",
    ]
    assert stack_violations(run_program("staging", stack_config("staging"), STAGING_SECRETS), "staging") == []


def test_a_setting_that_could_damage_the_host_violates_by_the_programs_own_rules(tmp_path: Path) -> None:
    """The engine hands the pack the stack's config: the program refuses these before registering anything,
    the pack refuses them too (for a program that would not)."""
    secrets = {k: v for k, v in STAGING_SECRETS.items() if not k.startswith("registry.")}
    run = run_program("local", stack_config("local"), secrets)
    assert stack_violations(run, "local") == []
    bad = {"dropship:app.directory": "/srv/../etc", "dropship:deploy.user": "root", "dropship:existingHost.volumeMountPath": "/root"}
    write_stack(tmp_path, "local", {**stack_config("local"), **bad})
    found: list[str] = []
    options = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], None)
    resources = [
        PolicyResource(r.type, r.inputs, f"urn:pulumi:local::dropship::{r.type}::{r.name}", r.name, options, None, None, [], {})
        for r in run.resources
    ]
    rule = next(p for p in policies(tmp_path) if p.name == "host-settings-safe")
    assert isinstance(rule, StackValidationPolicy) and rule.validate is not None

    def report(message: str, urn: str | None = None) -> None:
        found.append(message)

    rule.validate(StackValidationArgs(resources), report)
    assert [m.split(": ", 2)[1] for m in found] == [
        "dropship:deploy.user",
        "dropship:app.directory",
        "dropship:existingHost.volumeMountPath",
    ]
    assert "'/srv/../etc' is not a plain absolute path (it means '/etc')" in found[1]


def test_production_that_runs_postgres_without_backing_it_up_violates(tmp_path: Path) -> None:
    run = run_program("production", stack_config("production"), STAGING_SECRETS)
    assert stack_violations(run, "production") == []  # Pulumi.production.yaml backs up the shop's db
    (tmp_path / "compose.yaml").write_text((ROOT / "examples" / "shop" / "compose.yaml").read_text())
    (tmp_path / "more.yaml").write_text("services:\n  analytics:\n    image: postgis/postgis:17-3.5\n")
    config = {**stack_config("production"), "dropship:app.composeFiles": ["compose.yaml", "more.yaml"]}
    write_stack(tmp_path, "production", config)
    rule = next(p for p in policies(tmp_path) if p.name == "production-databases-backed-up")
    assert isinstance(rule, StackValidationPolicy) and rule.validate is not None
    found: list[str] = []
    options = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], None)
    resources = [
        PolicyResource(r.type, r.inputs, f"urn:pulumi:production::dropship::{r.type}::{r.name}", r.name, options, None, None, [], {})
        for r in run.resources
    ]

    def report(message: str, urn: str | None = None) -> None:
        found.append(message)

    rule.validate(StackValidationArgs(resources), report)
    assert found == [
        "production stack production runs Postgres in service analytics of its compose files without backups; "
        'set dropship:backups.databases ["db", "analytics"]'
    ]
    write_stack(tmp_path, "production", {**config, "dropship:backups.databases": []})
    found.clear()
    rule.validate(StackValidationArgs(resources), report)
    assert found == [
        "production stack production runs Postgres in service db, analytics of its compose files without backups; "
        'set dropship:backups.databases ["db", "analytics"]'
    ]


def test_postgres_is_found_by_image_variables_or_data_directory_and_nothing_else_is() -> None:
    compose = {
        "services": {
            "official": {"image": "postgres:17-alpine"},
            "mirrored": {"image": "registry.example.com/library/postgres@sha256:abc"},
            "timescale": {"image": "timescale/timescaledb:latest-pg17"},
            "built": {"build": ".", "environment": ["POSTGRES_PASSWORD=x", "TZ=UTC"]},
            "by_volume": {"image": "ours/db", "volumes": [{"type": "volume", "source": "d", "target": "/var/lib/postgresql/data"}]},
            "short_volume": {"image": "ours/db2", "volumes": ["pg:/var/lib/postgresql"]},
            "api": {"image": "shop/api", "environment": {"DATABASE_URL": "postgresql://db/shop"}, "volumes": ["./x:/app:ro"]},
            "redis": {"image": "redis:7"},
            "pgadmin": {"image": "dpage/pgadmin4"},
        }
    }
    assert guardrails.postgres_services(compose) == ["official", "mirrored", "timescale", "built", "by_volume", "short_volume"]
