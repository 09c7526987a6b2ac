"""Settings validation: every bad input gets a message naming its key, the expectation and the given value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dropship.config import DropletServer, Environment, SettingsError, load
from dropship.config.routes import routes
from dropship.config.sections import SMALLEST_SIZE
from tests.unit.program import CANARY, PRIVATE_KEY, ROOT, stack_config

STAGING_SECRETS = {
    "ssh.privateKey": PRIVATE_KEY,
    "registry.password": f"{CANARY}-registry",
    "env.DATABASE_URL": "postgres://shop@db/shop",
    "env.POSTGRES_PASSWORD": f"{CANARY}-pg",
    "env.SECRET_KEY": f"{CANARY}-sk",
}


def config_of(stack: str, **changes: str | None) -> tuple[dict[str, str], frozenset[str]]:
    """The committed stack config plus its secrets; a change of None removes the key."""
    config = {k.removeprefix("dropship:"): v for k, v in stack_config(stack).items()}
    config.update(STAGING_SECRETS)
    secrets = set(STAGING_SECRETS)
    for key, value in changes.items():
        key = key.replace("__", ".")
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    return {f"dropship:{k}": v for k, v in config.items()}, frozenset(secrets & set(config))


def load_stack(stack: str, config: dict[str, str], secrets: frozenset[str], project_dir: Path = ROOT):
    return load("dropship", stack, config, secrets, project_dir)


def problems_of(stack: str, secrets_override: frozenset[str] | None = None, config_stack: str = "staging", **changes: str | None) -> str:
    config, secrets = config_of(config_stack, **changes)
    with pytest.raises(SettingsError) as err:
        load_stack(stack, config, secrets if secrets_override is None else secrets_override)
    return str(err.value)


def test_a_health_path_is_asked_at_the_stacks_first_url() -> None:
    assert load_stack("staging", *config_of("staging")).health_url == "https://staging.example.com/api/health"
    assert load_stack("pr-7", *config_of("staging")).health_url == "https://pr-7.staging.example.com/api/health"
    urls = load_stack("staging", *config_of("staging", app__urls='["https://shop.example.com/base/"]'))
    assert urls.health_url == "https://shop.example.com/api/health"
    whole = load_stack("staging", *config_of("staging", app__healthUrl="http://127.0.0.1:8000/ready"))
    assert whole.health_url == "http://127.0.0.1:8000/ready"


@pytest.mark.parametrize("tag", ["latest", "main", "Master", "edge"])
def test_a_moving_tag_is_refused_unless_every_release_pulls(tag: str) -> None:
    message = problems_of("staging", app__imageTag=tag)
    assert (
        f"dropship:app.imageTag: '{tag}' is a moving tag, and a release pulls only images the host lacks: the host would keep "
        "its first one. Deploy an immutable tag (a version, or the commit's SHA), or set app.pullPolicy always"
    ) in message
    settings = load_stack("staging", *config_of("staging", app__imageTag=tag, app__pullPolicy="always"))
    assert settings.app.pull_policy == "always"


def test_committed_stacks_are_valid() -> None:
    for stack in ("staging", "production"):
        settings = load_stack(stack, *config_of(stack))
        assert settings.environment is Environment(stack)
    assert load_stack("production", *config_of("production")).protect is True
    assert load_stack("staging", *config_of("staging")).protect is False


def test_preview_stack_derives_from_its_name() -> None:
    settings = load_stack("pr-42", *config_of("staging"))
    assert settings.environment is Environment.PREVIEW
    assert isinstance(settings.server, DropletServer)
    assert settings.server.droplet.size == SMALLEST_SIZE
    assert settings.server.droplet.backups is False
    assert settings.server.droplet.reserved_ip is False
    assert settings.server.droplet.volume_size_gb is None
    assert settings.server.dns.hostnames == ("pr-42.staging.example.com",)
    assert settings.protect is False


def test_preview_stack_copied_from_production_config_is_still_unprotected() -> None:
    settings = load_stack("pr-7", *config_of("production"))
    assert settings.protect is False
    assert isinstance(settings.server, DropletServer)
    assert settings.server.droplet.reserved_ip is False
    assert settings.server.dns.hostnames == ("pr-7.app.example.com", "pr-7.www.example.com")


def test_a_preview_on_stagings_existing_host_gets_a_project_directory_hostnames_and_urls_of_its_own() -> None:
    urls = '["https://shop.test/", "http://127.0.0.1:8080/"]'
    staging = load_stack("local", *config_of("local", app__urls=urls, registry__password=None))
    preview = load_stack("pr-3", *config_of("local", app__urls=urls, registry__password=None, ssh__hostKey=ED25519_HOST_KEY))
    assert (staging.app.name, staging.app_directory, staging.hostnames) == ("shop", "/srv/shop", ("shop.test", "www.shop.test"))
    assert (preview.app.name, preview.app_directory) == ("shop-pr-3", "/srv/shop-pr-3")
    assert preview.hostnames == ("pr-3.shop.test", "pr-3.www.shop.test")
    assert preview.urls == ("https://pr-3.shop.test/", "http://127.0.0.1:8080/")  # an address stays
    assert preview.server.existing_host.address == staging.server.existing_host.address  # type: ignore[union-attr]
    placed = load_stack(
        "pr-3", *config_of("local", app__directory="/srv/apps/shop/", registry__password=None, ssh__hostKey=ED25519_HOST_KEY)
    )
    assert placed.app_directory == "/srv/apps/shop-pr-3"


def test_a_preview_caps_each_container_and_other_stacks_do_not() -> None:
    limits = load_stack("pr-3", *config_of("staging")).limits
    assert limits is not None and (limits.cpus, limits.memory) == (1.0, "512m")
    assert load_stack("staging", *config_of("staging")).limits is None
    capped = load_stack("pr-3", *config_of("staging", preview__cpus="0.5", preview__memory="2g")).limits
    assert capped is not None and (capped.cpus, capped.memory) == (0.5, "2g")


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("preview.memory", "512", "preview.memory: String should match pattern"),
        ("preview.memory", "1.5g", "preview.memory: String should match pattern"),
        ("preview.cpus", "0", "preview.cpus: Input should be greater than 0"),
        ("preview.cpus", "many", "preview.cpus: Input should be a valid number"),
    ],
)
def test_bad_preview_caps_are_refused_with_the_key(key: str, value: str, expected: str) -> None:
    changes: dict[str, str | None] = {key.replace(".", "__"): value}
    assert expected in problems_of("pr-3", None, "staging", **changes)


RSA_HOST_KEY = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 host"
ED25519_HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILRTlJluG84RZ/ZWSRx+YejDu1TzAdF92pltCSO4IgY7"

BAD = [
    # (stack, changes, key, expected text)
    (
        "local",
        {"ssh.hostKey": RSA_HOST_KEY},
        "ssh.hostKey",
        "an RSA host key cannot be pinned: pulumi-command offers only the ssh-rsa (SHA-1) signature for it, which OpenSSH 8.8+ refuses; "
        "pin the host's ed25519 key instead (ssh-keyscan -t ed25519 <host>)",
    ),
    (
        "local",
        {"ssh.hostKey": "AAAAC3NzaC1lZDI1NTE5"},
        "ssh.hostKey",
        "expected the server's public host key such as 'ssh-ed25519 AAAA...'",
    ),
    ("local", {"ssh.hostKey": "ssh-ed25519 not*base64"}, "ssh.hostKey", "its key data is not base64"),
    (
        "staging",
        {"ssh.hostKey": ED25519_HOST_KEY},
        "ssh.hostKey",
        "only applies to an existing host: dropship makes a droplet's host key and pins it; remove it",
    ),
    ("staging", {"upgrades.rebootTime": "4am"}, "upgrades.rebootTime", "expected a time of day such as 04:30 (24-hour, HH:MM"),
    ("staging", {"upgrades.rebootTime": "24:00"}, "upgrades.rebootTime", "expected a time of day such as 04:30"),
    ("local", {"existingHost.privateKey": "not a key"}, "existingHost.privateKey", "expected an OpenSSH private key"),
    (
        "staging",
        {"droplet.region": "Frankfurt"},
        "droplet.region",
        "expected a DigitalOcean region slug such as nyc3, fra1 or ams3; got 'Frankfurt'",
    ),
    ("staging", {"droplet.size": "Big One"}, "droplet.size", "expected a DigitalOcean slug such as nyc3 or s-1vcpu-1gb; got 'Big One'"),
    ("staging", {"droplet.backups": "maybe"}, "droplet.backups", "Input should be a valid boolean"),
    ("staging", {"droplet.volumeSizeGb": "0"}, "droplet.volumeSizeGb", "greater than or equal to 1; got '0'"),
    ("staging", {"droplet.colour": "blue"}, "droplet.colour", "unknown key; known keys of 'droplet' are: droplet.region, droplet.size"),
    ("staging", {"droplet.region": None}, "droplet.region", "required but not set"),
    ("staging", {"dns.hostnames": '["app.other.org"]'}, "dns.hostnames[0]", "expected a name inside zone example.com; got 'app.other.org'"),
    (
        "staging",
        {"dns.hostnames": '["Bad_Host"]'},
        "dns.hostnames[0]",
        "expected a lower-case DNS name such as app.example.com; got 'Bad_Host'",
    ),
    ("staging", {"dns.hostnames": "[]"}, "dns.hostnames", "required: at least one hostname"),
    ("staging", {"dns.zone": None}, "dns.zone", "required: the Cloudflare zone name (or set dns.zoneId)"),
    ("staging", {"dns.ttl": "0"}, "dns.ttl", "greater than or equal to 1; got '0'"),
    ("staging", {"dns.proxied": "true", "dns.ttl": "300"}, "dns.ttl", "proxied records need ttl 1 (automatic); got 300"),
    ("staging", {"dns.zoneId": "xyz"}, "dns.zoneId", "expected a 32-character Cloudflare zone id; got 'xyz'"),
    ("staging", {"ssh.publicKey": "not a key"}, "ssh.publicKey", "expected an OpenSSH public key line"),
    (
        "staging",
        {"ssh.privateKey": None},
        "ssh.privateKey",
        "missing secret; set it with: pulumi config set --secret -s staging ssh.privateKey < ~/.ssh/dropship_deploy",
    ),
    (
        "staging",
        {"ssh.privateKey": "hunter2"},
        "ssh.privateKey",
        "expected an OpenSSH private key (the whole file, '-----BEGIN ... PRIVATE KEY-----'); got a secret value (not shown)",
    ),
    (
        "staging",
        {"ssh.sourceRanges": '["10.0.0.0/33"]'},
        "ssh.sourceRanges[0]",
        "expected a CIDR range such as 203.0.113.0/24 or 2001:db8::/32; got '10.0.0.0/33'",
    ),
    ("staging", {"ssh.sourceRanges": '["10.0.0.1/8"]'}, "ssh.sourceRanges[0]", "expected a CIDR range"),
    ("staging", {"ssh.sourceRanges": "[]"}, "ssh.sourceRanges", "required for a droplet: the CIDR ranges allowed to reach SSH"),
    (
        "production",
        {"ssh.sourceRanges": '["0.0.0.0/0"]'},
        "ssh.sourceRanges",
        "production refuses ranges that together cover 0.0.0.0/0 (the whole internet); narrow the ranges or set ssh.allowWorld true",
    ),
    # Judged by the addresses covered, not by the spelling.
    ("production", {"ssh.sourceRanges": '["0.0.0.0/1", "128.0.0.0/1"]'}, "ssh.sourceRanges", "together cover 0.0.0.0/0 (the whole"),
    ("production", {"ssh.sourceRanges": '["203.0.113.7/32", "::/1", "8000::/1"]'}, "ssh.sourceRanges", "together cover ::/0 (the whole"),
    # Settings that could damage the host (guardrails.py).
    ("staging", {"app.directory": "/etc"}, "app.directory", "'/etc' is a system directory or inside one: dropship owns this directory"),
    ("staging", {"app.directory": "/var/lib/docker/app"}, "app.directory", "use a directory of its own under /srv, /opt, /mnt"),
    ("staging", {"app.directory": "/srv/../etc"}, "app.directory", "'/srv/../etc' is not a plain absolute path (it means '/etc')"),
    ("staging", {"app.directory": "/srv/./shop"}, "app.directory", "is not a plain absolute path (it means '/srv/shop')"),
    ("staging", {"app.directory": "/srv/"}, "app.directory", "'/srv' is /srv itself"),
    ("staging", {"app.directory": "/srv"}, "app.directory", "'/srv' is /srv itself, which other software shares: use a directory"),
    ("staging", {"app.directory": "/home/deploy"}, "app.directory", "'/home/deploy' is a user's home (its .ssh and files)"),
    ("staging", {"app.directory": "/home/deploy/.ssh/app"}, "app.directory", "is inside a user's .ssh: its keys would be replaced"),
    ("local", {"existingHost.volumeMountPath": "/root"}, "existingHost.volumeMountPath", "'/root' is a system directory"),
    ("staging", {"droplet.volumeMountPath": "/mnt"}, "droplet.volumeMountPath", "'/mnt' is /mnt itself"),
    ("staging", {"deploy.user": "root"}, "deploy.user", "'root' is also the admin user dropship logs in as to set up the host"),
    ("local", {"deploy.user": "root"}, "deploy.user", "the admin key would be locked out; use a user of its own, such as deploy"),
    ("local", {"existingHost.user": "debian", "deploy.user": "debian"}, "deploy.user", "'debian' is also the admin user"),
    ("staging", {"deploy.user": "www-data"}, "deploy.user", "'www-data' is a system account: the deploy key would log in as it"),
    ("staging", {"deploy.user": "systemd-network"}, "deploy.user", "is a system account"),
    ("staging", {"app.rollingServices": '["worker", "worker"]'}, "app.rollingServices[1]", "'worker' is listed already as app."),
    ("staging", {"registry.username": ""}, "registry.username", "empty: a registry login needs registry.username and registry.password"),
    (
        "staging",
        {"app.healthUrl": "http://ops:hunter2@127.0.0.1/health"},
        "app.healthUrl",
        "expected a URL without 'user:password@': it would appear in commands and logs",
    ),
    ("staging", {"ssh.dialErrorLimit": "0"}, "ssh.dialErrorLimit", "greater than or equal to 1"),
    ("staging", {"deploy.user": "Root!"}, "deploy.user", "expected a Unix user name such as deploy; got 'Root!'"),
    ("staging", {"docker.install": "snap"}, "docker.install", "Input should be 'distro' or 'docker-apt'; got 'snap'"),
    ("staging", {"docker.logMaxSize": "lots"}, "docker.logMaxSize", "expected a size such as 10m; got 'lots'"),
    ("staging", {"app.composeFiles": '["missing.yaml"]'}, "app.composeFiles[0]", "expected an existing file relative to"),
    (
        "staging",
        {"app.composeFiles": '["/etc/passwd"]'},
        "app.composeFiles[0]",
        "expected a path relative to the project directory, without '..'; got '/etc/passwd'",
    ),
    ("staging", {"app.composeFiles": "[]"}, "app.composeFiles", "required: at least one compose file"),
    ("staging", {"app.imageTag": "v1 beta"}, "app.imageTag", "expected a Docker image tag such as v1.2.3; got 'v1 beta'"),
    ("staging", {"app.imageTag": None}, "app.imageTag", "required but not set"),
    (
        "staging",
        {"app.healthUrl": "ftp://example.com/"},
        "app.healthUrl",
        "expected a path such as /api/health, or an http:// or https:// URL such as http://127.0.0.1/health; got 'ftp://example.com/'",
    ),
    ("staging", {"app.healthTimeout": "-5"}, "app.healthTimeout", "greater than or equal to 1; got '-5'"),
    ("staging", {"app.healthRetries": "0"}, "app.healthRetries", "greater than or equal to 1; got '0'"),
    ("staging", {"app.keepReleases": "100"}, "app.keepReleases", "less than or equal to 50; got '100'"),
    ("staging", {"app.lockTimeout": "soon"}, "app.lockTimeout", "Input should be a valid integer"),
    ("staging", {"app.hookTimeout": "0"}, "app.hookTimeout", "greater than or equal to 1; got '0'"),
    ("staging", {"app.pullTimeout": "forever"}, "app.pullTimeout", "Input should be a valid integer"),
    ("staging", {"app.rollingServices": '["web 1"]'}, "app.rollingServices[0]", "expected a compose service name; got 'web 1'"),
    (
        "staging",
        {"app.files": '["examples/shop/Caddyfile", "examples/shop/./Caddyfile"]'},
        "app.files[1]",
        "is uploaded already by app.files[0]",
    ),
    ("staging", {"app.files": '["README.md"]'}, "app.files[0]", "is outside examples/shop/, the directory of the first compose file"),
    ("staging", {"app.files": '["examples/shop/web/missing"]'}, "app.files[0]", "expected an existing file or directory relative to"),
    ("staging", {"app.files": '["examples/shop"]'}, "app.files[0]", "is the app's directory itself"),
    ("staging", {"app.files": '["examples/shop/.env"]'}, "app.files[0]", "'.env' is written from env.* secrets; do not upload one"),
    ("local", {"app.files": '["examples/shop/web", "examples/shop/web/dist"]'}, "app.files[1]", "overlaps app.files[0]"),
    (
        "local",
        {"tls.acmeCaRoot": "examples/shop/Caddyfile", "app.files": '["examples/shop/web/dist"]'},
        "tls.acmeCaRoot",
        "is not uploaded; add it (or its directory) to app.files",
    ),
    ("local", {"tls.acmeCaRoot": "examples/shop/local/missing.pem"}, "tls.acmeCaRoot", "expected an existing file relative to"),
    (
        "local",
        {"existingHost.hostnames": None},
        "app.healthUrl",
        "a path (/api/health) needs the stack's URL: set existingHost.hostnames or app.urls, or give a whole URL",
    ),
    ("local", {"app.healthUrl": "//shop.test/api"}, "app.healthUrl", "expected a path such as /api/health, or an http:// or https://"),
    (
        "local",
        {"existingHost.volumeMountPath": "mnt/data"},
        "existingHost.volumeMountPath",
        "expected an absolute path such as /srv/app; got 'mnt/data'",
    ),
    (
        "local",
        {"existingHost.hostnames": '["Shop_Test"]'},
        "existingHost.hostnames[0]",
        "expected a lower-case DNS name such as app.example.com",
    ),
    (
        "staging",
        {"app.requiredEnv": '["STRIPE_KEY"]'},
        "env.STRIPE_KEY",
        "missing secret named in app.requiredEnv; set it with: pulumi config set --secret -s staging env.STRIPE_KEY '<value>'",
    ),
    (
        "staging",
        {"env.LOG_LEVEL": "debug"},
        "env.LOG_LEVEL",
        "stored in plain text; .env values must be secrets: pulumi config set --secret -s staging env.LOG_LEVEL '<value>'",
    ),
    ("staging", {"env.1BAD": "x"}, "env.1BAD", "expected an environment variable name such as DATABASE_URL after 'env.'; got '1BAD'"),
    (
        "staging",
        {"registry.password": None},
        "registry.password",
        "missing secret; set it with: pulumi config set --secret -s staging registry.password '<value>'",
    ),
    ("staging", {"regoin": "fra1"}, "regoin", "unknown key; dropship's keys are"),
    ("staging", {"environment": "prod"}, "environment", "expected one of production, staging, preview, local; got 'prod'"),
    ("staging", {"protect": "sometimes"}, "protect", "expected true or false; got 'sometimes'"),
    ("staging", {"server.mode": "vm"}, "server.mode", "Input should be 'droplet' or 'existing'; got 'vm'"),
    (
        "staging",
        {"server.mode": "existing", "existingHost.address": "127.0.0.1"},
        "droplet.region",
        "only applies when server.mode is droplet (it is existing); remove it",
    ),
    (
        "staging",
        {"existingHost.address": "127.0.0.1"},
        "existingHost.address",
        "only applies when server.mode is existing (it is droplet); remove it",
    ),
]


@pytest.mark.parametrize(("stack", "changes", "key", "expected"), BAD, ids=[f"{b[2]}-{i}" for i, b in enumerate(BAD)])
def test_bad_configuration_is_reported_with_key_and_fix(stack: str, changes: dict[str, str | None], key: str, expected: str) -> None:
    config, secrets = config_of(stack, **{k.replace(".", "__"): v for k, v in changes.items()})
    secrets = secrets | {k for k in changes if k.startswith("env.") and k != "env.LOG_LEVEL"}
    with pytest.raises(SettingsError) as err:
        load_stack(stack, config, secrets)
    lines = [line for line in str(err.value).splitlines() if line.startswith(f"  - dropship:{key}: ")]
    assert lines, f"no problem reported for {key}:\n{err.value}"
    assert any(expected in line for line in lines), f"{expected!r} not in:\n{err.value}"


def test_unknown_stack_name_needs_an_environment() -> None:
    message = problems_of("qa")
    assert (
        "dropship:environment: stack 'qa' is not production, staging, local or pr-<number>; set it with: pulumi config set -s qa environment staging"
        in message
    )


def test_secret_stored_in_plain_text_is_refused() -> None:
    message = problems_of("staging", secrets_override=frozenset(STAGING_SECRETS) - {"ssh.privateKey"})
    assert (
        "dropship:ssh.privateKey: stored in plain text; set it as a secret: pulumi config set --secret -s staging ssh.privateKey < ~/.ssh/dropship_deploy"
        in message
    )


def test_existing_host_mode_needs_its_address() -> None:
    config, secrets = config_of("staging", server__mode="existing")
    config = {k: v for k, v in config.items() if not k.startswith(("dropship:droplet.", "dropship:dns."))}
    with pytest.raises(SettingsError) as err:
        load_stack("staging", config, secrets)
    assert "dropship:existingHost.address: required but not set" in str(err.value)


def test_existing_host_port_is_bounded() -> None:
    config, secrets = config_of("staging", server__mode="existing")
    config = {k: v for k, v in config.items() if not k.startswith(("dropship:droplet.", "dropship:dns."))}
    config.update({"dropship:existingHost.address": "127.0.0.1", "dropship:existingHost.port": "70000"})
    with pytest.raises(SettingsError) as err:
        load_stack("staging", config, secrets)
    assert "dropship:existingHost.port: Input should be less than or equal to 65535; got '70000'" in str(err.value)


def test_existing_host_gone_is_a_boolean() -> None:
    config, secrets = config_of("staging", server__mode="existing")
    config = {k: v for k, v in config.items() if not k.startswith(("dropship:droplet.", "dropship:dns."))}
    config.update({"dropship:existingHost.address": "127.0.0.1", "dropship:existingHost.gone": "maybe"})
    config["dropship:app.healthUrl"] = "http://127.0.0.1:8000/api/health"
    with pytest.raises(SettingsError) as err:
        load_stack("staging", config, secrets)
    assert "dropship:existingHost.gone: Input should be a valid boolean" in str(err.value)
    config["dropship:existingHost.gone"] = "true"
    assert load_stack("staging", config, secrets).host_gone is True


def test_all_problems_are_reported_together() -> None:
    message = problems_of("staging", droplet__region="Frankfurt", app__imageTag="v1 beta", ssh__privateKey=None, regoin="x")
    assert message.startswith("4 problem(s) in the configuration of stack 'staging':")
    for key in ("droplet.region", "app.imageTag", "ssh.privateKey", "regoin"):
        assert f"dropship:{key}:" in message


def test_secret_values_never_appear_in_messages() -> None:
    message = problems_of("staging", ssh__privateKey=f"{CANARY}-not-a-key", registry__username=None, droplet__region="x")
    assert "dropship:ssh.privateKey:" in message
    assert CANARY not in message


def test_an_ed25519_host_key_is_pinned_as_given() -> None:
    config, secrets = config_of("local", ssh__hostKey=ED25519_HOST_KEY + " host-comment", registry__password=None)
    assert load_stack("local", config, secrets).ssh.host_key == ED25519_HOST_KEY + " host-comment"


def test_a_reboot_time_is_kept_and_the_default_is_never() -> None:
    config, secrets = config_of("staging")
    assert load_stack("staging", config, secrets).upgrades.reboot_time is None
    config, secrets = config_of("staging", upgrades__rebootTime="04:30")
    assert load_stack("staging", config, secrets).upgrades.reboot_time == "04:30"


def test_error_keys_use_one_index_style() -> None:
    """Model errors (pydantic's locations) and the semantic checks both index lists as key[i]."""
    message = problems_of(
        "staging",
        dns__hostnames='["staging.example.com", "x.other.org"]',
        ssh__sourceRanges='["10.0.0.0/8", "10.0.0.0/33"]',
        app__composeFiles='["examples/shop/compose.yaml", "missing.yaml"]',
    )
    keys = [line.split(": ", 1)[0].removeprefix("  - dropship:") for line in message.splitlines()[1:]]
    assert sorted(keys) == ["app.composeFiles[1]", "dns.hostnames[1]", "ssh.sourceRanges[1]"], message


def test_a_mode_switch_reports_the_other_modes_keys_and_the_missing_ones_together() -> None:
    """The local stack's config with server.mode droplet: its existingHost.* keys and the droplet's required keys."""
    config = {**stack_config("local"), "dropship:server.mode": "droplet", "dropship:ssh.privateKey": PRIVATE_KEY}
    with pytest.raises(SettingsError) as err:
        load_stack("local", config, frozenset({"ssh.privateKey", "env.APP_SECRET"}))
    message = str(err.value)
    for key in ("existingHost.address", "existingHost.user"):
        assert f"dropship:{key}: only applies when server.mode is existing (it is droplet); remove it" in message
    assert "dropship:droplet.region: required but not set" in message
    assert "dropship:droplet.size: required but not set" in message


@pytest.mark.parametrize(
    ("port", "host"),
    [("8000", None), ("80:80", "80"), ("127.0.0.1:8000:8000", "8000"), ("127.0.0.1::8000", None), ("53:53/udp", "53"),
     ({"target": 80, "published": 8080}, "8080"), ({"target": 80}, None), (8000, None)],
)  # fmt: skip
def test_which_compose_ports_bind_a_host_port(port: object, host: str | None) -> None:
    from dropship.config.routes import host_port

    assert host_port(port) == host


def test_a_rolling_service_that_publishes_a_port_or_names_its_container_is_refused(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(
        "services:\n"
        "  caddy: {image: caddy, ports: ['80:80', '443:443']}\n"
        "  api: {image: api}\n"
        "  worker: {image: api, container_name: shop-worker}\n"
    )
    config, secrets = config_of(
        "staging",
        app__composeFiles='["compose.yaml"]',
        app__files="[]",
        app__rollingServices='["api", "caddy", "worker", "web"]',
        edge__routes="[]",
    )
    with pytest.raises(SettingsError) as err:
        load_stack("staging", config, secrets, project_dir=tmp_path)
    assert str(err.value).splitlines()[1:] == [
        "  - dropship:app.rollingServices[1]: service caddy publishes host port 80: its old and new containers cannot both bind it "
        "during a rollout; let the edge proxy reach it by service name and remove the port",
        "  - dropship:app.rollingServices[2]: service worker sets container_name: compose cannot start a second container of that "
        "name; remove it",
        "  - dropship:app.rollingServices[3]: no service 'web' in compose.yaml",
    ]


EDGE_COMPOSE = (
    "services:\n"
    "  nginx: {image: nginx, ports: ['80:80']}\n"
    "  app: {image: app, ports: ['8000:8000'], container_name: app}\n"
    "  proxy: {image: haproxy, ports: ['443:443']}\n"
    "  db: {image: postgres}\n"
)


def test_edge_routes_that_are_malformed_name_no_service_repeat_a_path_or_leave_80_or_443_to_another_service_are_refused(
    tmp_path: Path,
) -> None:
    (tmp_path / "compose.yaml").write_text(EDGE_COMPOSE)
    routes = [
        "/* nginx:80",
        "/api/* app:http",
        "/api/* app:8000",
        "/* app:8000",
        "/admin/* admin:9000",
        "nginx 80",
        "/v1/* app:8000 health",
    ]
    config, secrets = config_of(
        "staging", app__composeFiles='["compose.yaml"]', app__files="[]", app__rollingServices="[]", edge__routes=json.dumps(routes)
    )
    with pytest.raises(SettingsError) as err:
        load_stack("staging", config, secrets, project_dir=tmp_path)
    assert str(err.value).splitlines()[1:] == [
        "  - dropship:edge.routes[1]: the port of app must be a number from 1 to 65535, the port its container listens on; got 'http'",
        "  - dropship:edge.routes[3]: edge.routes[0] routes /* already; give each path one service, or remove one",
        "  - dropship:edge.routes[4]: no service 'admin' in compose.yaml (its services: app, db, nginx, proxy); route one of those",
        "  - dropship:edge.routes[5]: expected 'PATH SERVICE:PORT [HEALTH_PATH]' such as '/api/* api:8000 /api/health'; got 'nginx 80'",
        "  - dropship:edge.routes[6]: the health path must start with / (e.g. /health); got 'health'",
        "  - dropship:edge.routes: service proxy publishes host port 443, which dropship's edge serves: route it (e.g. '/* proxy:443') "
        "or remove that port from its compose file",
    ]


def test_routed_services_may_publish_ports_and_name_containers_the_edge_drops_them(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(EDGE_COMPOSE.replace("ports: ['443:443']", "ports: ['8443:443']"))
    routes = ["/api/* app:8000 /api/health", "/* nginx:80"]
    config, secrets = config_of(
        "staging", app__composeFiles='["compose.yaml"]', app__files="[]", app__rollingServices='["app"]', edge__routes=json.dumps(routes)
    )
    settings = load_stack("staging", config, secrets, project_dir=tmp_path)
    assert settings.edge.routes == tuple(routes)
    assert (settings.edge.drain_seconds, settings.edge.image, settings.edge.maintenance) == (30, "caddy:2.11.9-alpine", False)


def test_edge_routes_drive_a_swarms_edge_too(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("services:\n  nginx: {image: nginx, ports: ['80:80']}\n  db: {image: postgres}\n")
    config, secrets = config_of(
        "staging",
        app__composeFiles='["compose.yaml"]',
        app__files="[]",
        app__rollingServices="[]",
        droplet__count="3",
        edge__routes='["/* nginx:80"]',
    )
    settings = load_stack("staging", config, secrets, project_dir=tmp_path)
    assert settings.swarm and [str(r) for r in routes(settings.edge)] == ["/* nginx:80"]


def test_a_urls_credentials_are_refused_and_never_echoed() -> None:
    for key, shown in (("app.healthUrl", True), ("backups.failureUrl", True), ("alerts.slackWebhookUrl", False)):
        config, secrets = config_of("staging", **{key.replace(".", "__"): "https://ops:hunter2@example.com/check"})
        with pytest.raises(SettingsError) as err:
            load_stack("staging", config, secrets)
        problems = str(err.value)
        assert f"dropship:{key}: expected a URL without 'user:password@'" in problems, problems
        assert "hunter2" not in problems
        assert ("got 'https://***@example.com/check'" in problems) is shown, problems


def test_an_upload_that_would_land_on_one_of_dropships_own_names_in_the_app_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "compose.yaml").write_text("services:\n  api: {image: api}\n")
    for name in ("tls/cert.pem", "releases/notes.md", "release.env", ".dropship/x", "config/app.ini"):
        (tmp_path / "deploy" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "deploy" / name).write_text("x\n")
    files = ["deploy/tls", "deploy/releases/notes.md", "deploy/release.env", "deploy/.dropship", "deploy/config/app.ini"]
    config, secrets = config_of(
        "staging",
        app__composeFiles='["deploy/compose.yaml"]',
        app__files=json.dumps(files),
        app__rollingServices="[]",
        app__preDeploy="[]",
        edge__routes="[]",
        backups__databases="[]",
    )
    with pytest.raises(SettingsError) as err:
        load_stack("staging", config, secrets, project_dir=tmp_path)
    assert [line.split(": ", 1)[0] for line in str(err.value).splitlines()[1:]] == [f"  - dropship:app.files[{i}]" for i in range(4)], str(
        err.value
    )
    assert "'release.env' would land on 'release.env', which dropship keeps in the app's directory; rename it" in str(err.value)


def test_each_committed_stack_has_a_deploy_key_of_its_own() -> None:
    keys = {stack: stack_config(stack)["dropship:ssh.publicKey"] for stack in ("local", "staging", "production", "previews")}
    assert len(set(keys.values())) == len(keys), keys


def test_the_preview_template_is_stagings_settings_with_a_key_and_secrets_of_its_own() -> None:
    """Previews copy Pulumi.previews.yaml, not staging's stack: its secrets are encrypted with the previews'
    passphrase. Its settings follow staging's."""
    own = {"dropship:environment", "dropship:ssh.publicKey"}
    template, staging = stack_config("previews"), stack_config("staging")
    assert {k: v for k, v in template.items() if k not in own} == {k: v for k, v in staging.items() if k not in own}
    assert template["dropship:environment"] == "preview"
    config, secrets = config_of("previews", environment=None)
    settings = load_stack("pr-42", config, secrets)
    assert settings.environment is Environment.PREVIEW
    assert isinstance(settings.server, DropletServer) and settings.server.hostnames == ("pr-42.staging.example.com",)


def test_an_existing_host_outside_local_needs_its_host_key_pinned_or_an_explicit_opt_out() -> None:
    config, secrets = config_of("local", environment="staging", registry__password=None)
    with pytest.raises(SettingsError) as err:
        load_stack("local", config, secrets)
    assert "dropship:ssh.hostKey: required on an existing host outside local; pin it: its /etc/ssh/ssh_host_ed25519_key.pub" in str(
        err.value
    )
    assert "`ssh-keyscan -t ed25519 127.0.0.2`" in str(err.value)
    # A preview copied from such a stack, each node of its Swarm too.
    nodes = json.dumps([{"address": "127.0.0.72", "privateAddress": "10.77.0.3"}])
    config, secrets = config_of("local", existingHost__nodes=nodes, existingHost__privateAddress="10.77.0.2", registry__password=None)
    with pytest.raises(SettingsError) as err:
        load_stack("pr-3", config, secrets)
    assert [line.split(": ")[0] for line in str(err.value).splitlines()[1:]] == [
        "  - dropship:ssh.hostKey",
        "  - dropship:existingHost.nodes[0].hostKey",
    ]
    # Pinned, or the opt-out: fine; local itself: fine.
    common = {"environment": "staging", "registry__password": None}
    assert load_stack("staging", *config_of("local", ssh__hostKey=ED25519_HOST_KEY, **common)).ssh.host_key == ED25519_HOST_KEY
    assert load_stack("staging", *config_of("local", ssh__acceptAnyHostKey="true", **common)).ssh.accept_any_host_key
    assert load_stack("local", *config_of("local", registry__password=None)).ssh.host_key is None
    both = problems_of("local", config_stack="local", ssh__hostKey=ED25519_HOST_KEY, ssh__acceptAnyHostKey="true", registry__password=None)
    assert "dropship:ssh.acceptAnyHostKey: ssh.hostKey is pinned already; remove ssh.acceptAnyHostKey" in both
