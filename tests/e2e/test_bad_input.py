"""Bad input through the real engine: a deployed local stack, then one bad configuration at a time.

Each case is run as `pulumi preview` and as `pulumi up`: both must exit non-zero with the
message that names the key, register no resource, change nothing in `pulumi stack export`
(decrypted: secrets are encrypted again, with a fresh nonce, at every checkpoint write; and
but the checkpoint's own write time) and show no secret value. The stack is deployed once
first, on a test host of its own, so that "nothing changed" means something: a mistyped setting of a running stack must not touch it, and no
remote command may run (the host counts SSH logins).

One temp project copy, cases in sequence; each case restores the good Pulumi.local.yaml
first and edits it like `pulumi config set` would (secret values through the engine).
"""

from __future__ import annotations

import difflib
import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from dev.harness import Project, TestHost

Record = Callable[[str, object], None]

SECRETS = {"env.APP_SECRET": "bad-input"}
CANARY = "canary-bad-input-5c1e"
KEY_TEXT = f"-----BEGIN OPENSSH PRIVATE KEY-----\n{CANARY}-key\n-----END OPENSSH PRIVATE KEY-----\n"

# (id, plain config changes (None removes the key), secret config changes, key, expected message)
CASES: list[tuple[str, dict[str, str | None], dict[str, str], str, str]] = [
    ("server-mode", {"server.mode": "vm"}, {}, "server.mode", "Input should be 'droplet' or 'existing'; got 'vm'"),
    (
        "droplet-mode-with-existing-host",
        {"server.mode": "droplet"},
        {},
        "existingHost.address",
        "only applies when server.mode is existing (it is droplet); remove it",
    ),
    (
        "droplet-key-in-existing-mode",
        {"droplet.region": "fra1"},
        {},
        "droplet.region",
        "only applies when server.mode is droplet (it is existing); remove it",
    ),
    (
        "dns-key-in-existing-mode",
        {"dns.zone": "example.com"},
        {},
        "dns.zone",
        "only applies when server.mode is droplet (it is existing); remove it",
    ),
    ("address-missing", {"existingHost.address": None}, {}, "existingHost.address", "required but not set"),
    (
        "address-bad",
        {"existingHost.address": "my host!"},
        {},
        "existingHost.address",
        "expected a host name or IP address such as 127.0.0.1; got 'my host!'",
    ),
    ("port-too-big", {"existingHost.port": "70000"}, {}, "existingHost.port", "Input should be less than or equal to 65535; got '70000'"),
    ("port-not-a-number", {"existingHost.port": "ssh"}, {}, "existingHost.port", "Input should be a valid integer"),
    ("admin-user-bad", {"existingHost.user": "Root!"}, {}, "existingHost.user", "expected a Unix user name such as deploy; got 'Root!'"),
    ("gone-not-boolean", {"existingHost.gone": "maybe"}, {}, "existingHost.gone", "Input should be a valid boolean"),
    (
        "existing-host-unknown-key",
        {"existingHost.colour": "blue"},
        {},
        "existingHost.colour",
        "unknown key; known keys of 'existingHost' are: existingHost.address",
    ),
    ("unknown-key", {"regoin": "fra1"}, {}, "regoin", "unknown key; dropship's keys are"),
    ("unknown-ssh-key", {"ssh.port": "22"}, {}, "ssh.port", "unknown key; known keys of 'ssh' are: ssh.publicKey"),
    ("environment-bad", {"environment": "prod"}, {}, "environment", "expected one of production, staging, preview, local; got 'prod'"),
    ("protect-bad", {"protect": "sometimes"}, {}, "protect", "expected true or false; got 'sometimes'"),
    (
        "public-key-bad",
        {"ssh.publicKey": "not a key"},
        {},
        "ssh.publicKey",
        "expected an OpenSSH public key line such as 'ssh-ed25519 AAAA... deploy'; got 'not a key'",
    ),
    ("public-key-missing", {"ssh.publicKey": None}, {}, "ssh.publicKey", "required but not set"),
    (
        "private-key-missing",
        {"ssh.privateKey": None},
        {},
        "ssh.privateKey",
        "missing secret; set it with: pulumi config set --secret -s local ssh.privateKey < ~/.ssh/dropship_deploy",
    ),
    (
        "private-key-not-a-key",
        {},
        {"ssh.privateKey": f"{CANARY}-hunter2"},
        "ssh.privateKey",
        "expected an OpenSSH private key (the whole file, '-----BEGIN ... PRIVATE KEY-----'); got a secret value (not shown)",
    ),
    (
        "private-key-in-plain-text",
        {"ssh.privateKey": KEY_TEXT},
        {},
        "ssh.privateKey",
        "stored in plain text; set it as a secret: pulumi config set --secret -s local ssh.privateKey < ~/.ssh/dropship_deploy",
    ),
    (
        "source-range-bad",
        {"ssh.sourceRanges": '["10.0.0.0/33"]'},
        {},
        "ssh.sourceRanges[0]",
        "expected a CIDR range such as 203.0.113.0/24 or 2001:db8::/32; got '10.0.0.0/33'",
    ),
    (
        "source-range-host-bits",
        {"ssh.sourceRanges": '["10.0.0.1/8"]'},
        {},
        "ssh.sourceRanges[0]",
        "expected a CIDR range such as 203.0.113.0/24 or 2001:db8::/32; got '10.0.0.1/8'",
    ),
    (
        "host-key-rsa",
        {"ssh.hostKey": "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 host"},
        {},
        "ssh.hostKey",
        "an RSA host key cannot be pinned: pulumi-command offers only the ssh-rsa (SHA-1) signature for it, which OpenSSH 8.8+ refuses",
    ),
    (
        "reboot-time-bad",
        {"upgrades.rebootTime": "4am"},
        {},
        "upgrades.rebootTime",
        "expected a time of day such as 04:30 (24-hour, HH:MM, on the host's clock: UTC on a droplet); got '4am'",
    ),
    ("dial-limit-zero", {"ssh.dialErrorLimit": "0"}, {}, "ssh.dialErrorLimit", "Input should be greater than or equal to 1; got '0'"),
    ("allow-world-bad", {"ssh.allowWorld": "yes please"}, {}, "ssh.allowWorld", "Input should be a valid boolean"),
    ("deploy-user-bad", {"deploy.user": "Root!"}, {}, "deploy.user", "expected a Unix user name such as deploy; got 'Root!'"),
    ("deploy-sudo-bad", {"deploy.sudo": "maybe"}, {}, "deploy.sudo", "Input should be a valid boolean"),
    ("docker-install-bad", {"docker.install": "snap"}, {}, "docker.install", "Input should be 'distro' or 'docker-apt'; got 'snap'"),
    ("log-size-bad", {"docker.logMaxSize": "lots"}, {}, "docker.logMaxSize", "expected a size such as 10m; got 'lots'"),
    ("log-files-zero", {"docker.logMaxFile": "0"}, {}, "docker.logMaxFile", "Input should be greater than or equal to 1; got '0'"),
    ("log-files-too-many", {"docker.logMaxFile": "101"}, {}, "docker.logMaxFile", "Input should be less than or equal to 100; got '101'"),
    ("app-name-bad", {"app.name": "My Shop"}, {}, "app.name", "expected a compose project name such as shop; got 'My Shop'"),
    (
        "app-directory-relative",
        {"app.directory": "srv/app"},
        {},
        "app.directory",
        "expected an absolute path such as /srv/app; got 'srv/app'",
    ),
    ("compose-file-missing", {"app.composeFiles": '["missing.yaml"]'}, {}, "app.composeFiles[0]", "expected an existing file relative to"),
    (
        "compose-file-absolute",
        {"app.composeFiles": '["/etc/passwd"]'},
        {},
        "app.composeFiles[0]",
        "expected a path relative to the project directory, without '..'; got '/etc/passwd'",
    ),
    (
        "compose-file-outside",
        {"app.composeFiles": '["../compose.yaml"]'},
        {},
        "app.composeFiles[0]",
        "expected a path relative to the project directory, without '..'; got '../compose.yaml'",
    ),
    ("compose-files-empty", {"app.composeFiles": "[]"}, {}, "app.composeFiles", "required: at least one compose file"),
    (
        "files-twice",
        {"app.files": '["examples/local/Caddyfile", "examples/local/./Caddyfile"]'},
        {},
        "app.files[1]",
        "'examples/local/./Caddyfile' is uploaded already by app.files[0]",
    ),
    (
        "files-overlap",
        {"app.files": '["examples/local/site", "examples/local/site/index.html"]'},
        {},
        "app.files[1]",
        "overlaps app.files[0]; list either the directory or the files in it",
    ),
    (
        "files-outside-the-compose-directory",
        {"app.files": '["Pulumi.yaml"]'},
        {},
        "app.files[0]",
        "'Pulumi.yaml' is outside examples/local/, the directory of the first compose file",
    ),
    (
        "files-directory-missing",
        {"app.files": '["examples/local/dist"]'},
        {},
        "app.files[0]",
        "expected an existing file or directory relative to",
    ),
    (
        "hostname-outside-the-zone",
        {
            "server.mode": "droplet",
            "existingHost.address": None,
            "existingHost.user": None,
            "droplet.region": "fra1",
            "droplet.size": "s-1vcpu-1gb",
            "dns.zone": "example.com",
            "dns.hostnames": '["shop.example.org"]',
            "ssh.sourceRanges": '["203.0.113.7/32"]',
        },
        {},
        "dns.hostnames[0]",
        "expected a name inside zone example.com; got 'shop.example.org'",
    ),
    (
        "volume-mount-path-relative",
        {"existingHost.volumeDevice": "/dev/disk/by-id/scsi-0DO_Volume_x", "existingHost.volumeMountPath": "mnt/data"},
        {},
        "existingHost.volumeMountPath",
        "expected an absolute path such as /srv/app; got 'mnt/data'",
    ),
    (
        "tls-mode-without-cloudflare",
        {"tls.mode": "cloudflare-origin"},
        {},
        "tls.mode",
        "cloudflare-origin needs server.mode droplet, whose DNS dropship keeps at Cloudflare",
    ),
    (
        "acme-ca-root-not-uploaded",
        {"tls.acmeCaRoot": "examples/local/images/web/Dockerfile"},
        {},
        "tls.acmeCaRoot",
        "'examples/local/images/web/Dockerfile' is not uploaded; add it (or its directory) to app.files",
    ),
    (
        "files-dotenv",
        {"app.files": '["examples/local/.env"]'},
        {},
        "app.files[0]",
        "'.env' is written from env.* secrets; do not upload one",
    ),
    ("image-tag-bad", {"app.imageTag": "v1 beta"}, {}, "app.imageTag", "expected a Docker image tag such as v1.2.3; got 'v1 beta'"),
    ("image-tag-missing", {"app.imageTag": None}, {}, "app.imageTag", "required but not set"),
    (
        "health-url-bad",
        {"app.healthUrl": "ftp://127.0.0.1/health"},
        {},
        "app.healthUrl",
        "expected a path such as /api/health, or an http:// or https:// URL such as http://127.0.0.1/health; got 'ftp://127.0.0.1/health'",
    ),
    (
        "health-timeout-negative",
        {"app.healthTimeout": "-5"},
        {},
        "app.healthTimeout",
        "Input should be greater than or equal to 1; got '-5'",
    ),
    ("keep-releases-too-many", {"app.keepReleases": "100"}, {}, "app.keepReleases", "Input should be less than or equal to 50; got '100'"),
    ("lock-timeout-words", {"app.lockTimeout": "soon"}, {}, "app.lockTimeout", "Input should be a valid integer"),
    ("lock-timeout-negative", {"app.lockTimeout": "-1"}, {}, "app.lockTimeout", "Input should be greater than or equal to 0; got '-1'"),
    (
        "rolling-service-bad",
        {"app.rollingServices": '["web 1"]'},
        {},
        "app.rollingServices[0]",
        "expected a compose service name; got 'web 1'",
    ),
    ("hooks-not-a-list", {"app.preDeploy": "alembic upgrade head"}, {}, "app.preDeploy", "Input should be a valid tuple"),
    ("urls-bad", {"app.urls": '["ftp://example.com/"]'}, {}, "app.urls[0]", "expected an http:// or https:// URL"),
    (
        "required-env-missing",
        {"app.requiredEnv": '["APP_SECRET", "STRIPE_KEY"]'},
        {},
        "env.STRIPE_KEY",
        "missing secret named in app.requiredEnv; set it with: pulumi config set --secret -s local env.STRIPE_KEY '<value>'",
    ),
    (
        "required-env-bad-name",
        {"app.requiredEnv": '["APP-SECRET"]'},
        {},
        "app.requiredEnv[0]",
        "expected an environment variable name such as DATABASE_URL; got 'APP-SECRET'",
    ),
    (
        "env-in-plain-text",
        {"env.LOG_LEVEL": "debug"},
        {},
        "env.LOG_LEVEL",
        "stored in plain text; .env values must be secrets: pulumi config set --secret -s local env.LOG_LEVEL '<value>'",
    ),
    (
        "env-bad-name",
        {},
        {"env.1BAD": f"{CANARY}-env"},
        "env.1BAD",
        "expected an environment variable name such as DATABASE_URL after 'env.'; got '1BAD'",
    ),
    (
        "registry-without-password",
        {"registry.server": "127.0.0.1:5000", "registry.username": "ci"},
        {},
        "registry.password",
        "missing secret; set it with: pulumi config set --secret -s local registry.password '<value>'",
    ),
    (
        "registry-password-in-plain-text",
        {"registry.server": "127.0.0.1:5000", "registry.username": "ci", "registry.password": f"{CANARY}-registry"},
        {},
        "registry.password",
        "stored in plain text; set it as a secret: pulumi config set --secret -s local registry.password '<value>'",
    ),
    (
        "registry-server-bad",
        {"registry.server": "https://registry.example.com/v2", "registry.username": "ci"},
        {"registry.password": f"{CANARY}-registry"},
        "registry.server",
        "expected a registry host such as registry.example.com; got 'https://registry.example.com/v2'",
    ),
    (
        "backups-unknown-database",
        {"backups.databases": '["nosuch"]'},
        {},
        "backups.databases[0]",
        "no service 'nosuch' in examples/local/compose.yaml (its services: ",
    ),
    (
        "backups-schedule-bad",
        {"backups.schedule": "every night"},
        {},
        "backups.schedule",
        "expected a systemd calendar time such as daily, *-*-* 03:30:00 or Mon..Fri 02:00 (OnCalendar=, see systemd.time(7)); got 'every night'",
    ),
    (
        "alerts-threshold-out-of-range",
        {"alerts.cpuPercent": "150"},
        {},
        "alerts.cpuPercent",
        "Input should be less than or equal to 100; got '150'",
    ),
    (
        "alerts-slack-not-https",
        {},
        {"alerts.slackWebhookUrl": f"http://hooks.slack.com/services/{CANARY}"},
        "alerts.slackWebhookUrl",
        "expected an https:// URL such as https://hooks.slack.com/services/T000/B000/XXXX; got a secret value (not shown)",
    ),
    # Settings that could damage the host (dropship/config/guardrails.py).
    (
        "app-directory-system",
        {"app.directory": "/srv/../etc"},
        {},
        "app.directory",
        "'/srv/../etc' is not a plain absolute path (it means '/etc'); write it without '..', '.' or '//'",
    ),
    (
        "deploy-user-is-the-admin",
        {"deploy.user": "root"},
        {},
        "deploy.user",
        "'root' is also the admin user dropship logs in as to set up the host: its authorized_keys would hold only the deploy key",
    ),
    (
        "volume-over-roots-home",
        {"existingHost.volumeMountPath": "/root"},
        {},
        "existingHost.volumeMountPath",
        "'/root' is a system directory or inside one: dropship owns this directory and empties it on `pulumi destroy`",
    ),
    (
        "app-directory-etc",
        {"app.directory": "/etc"},
        {},
        "app.directory",
        "'/etc' is a system directory or inside one: dropship owns this directory and empties it on `pulumi destroy`",
    ),
    (
        "deploy-user-system-account",
        {"deploy.user": "daemon"},
        {},
        "deploy.user",
        "'daemon' is a system account: the deploy key would log in as it; use a user of its own, such as deploy",
    ),
    (
        "volume-over-dockers-data",
        {"existingHost.volumeMountPath": "/var/lib/docker"},
        {},
        "existingHost.volumeMountPath",
        "'/var/lib/docker' is a system directory or inside one",
    ),
    (
        "rolling-service-twice",
        {"app.rollingServices": '["web", "web"]'},
        {},
        "app.rollingServices[1]",
        "'web' is listed already as app.rollingServices[0]; list each once",
    ),
    (
        "health-url-with-credentials",
        {"app.healthUrl": f"http://ops:{CANARY}@127.0.0.1/health"},
        {},
        "app.healthUrl",
        "expected a URL without 'user:password@': it would appear in commands and logs; use one that needs no login; "
        "got 'http://***@127.0.0.1/health'",
    ),
    (
        "upload-onto-dropships-releases",
        {"app.files": '["examples/local/Caddyfile", "examples/local/site", "examples/local/releases/notes.md"]'},
        {},
        "app.files[2]",
        "'releases/notes.md' would land on 'releases', which dropship keeps in the app's directory; rename it",
    ),
    (
        "registry-username-blank",
        {"registry.server": "127.0.0.1:5000", "registry.username": " "},
        {"registry.password": f"{CANARY}-registry"},
        "registry.username",
        "empty: a registry login needs registry.username and registry.password; or remove registry.*",
    ),
    (
        "many-problems-at-once",
        {"app.imageTag": "v1 beta", "existingHost.port": "0", "deploy.user": "Root!"},
        {},
        "existingHost.port",
        "Input should be greater than or equal to 1; got '0'",
    ),
]
ALL_AT_ONCE = "3 problem(s) in the configuration of stack 'local':"


def stack_state(project: Project) -> dict[str, Any]:
    """`pulumi stack export`, decrypted and without the time the checkpoint was written.

    Every checkpoint write encrypts the secrets again with a fresh nonce, a failed update's too,
    so the ciphertexts always differ; what they hold, and everything else, must not."""
    state: dict[str, Any] = json.loads(project.pulumi("stack", "export", "--show-secrets").stdout)
    state["deployment"]["manifest"].pop("time", None)
    return state


def state_diff(before: dict[str, Any], after: dict[str, Any]) -> str:
    lines = difflib.unified_diff(
        json.dumps(before, indent=1, sort_keys=True).splitlines(), json.dumps(after, indent=1, sort_keys=True).splitlines(), lineterm=""
    )
    return "\n".join(list(lines)[:80])


def registered(output: str) -> list[str]:
    """Lines of an update or preview that create, update, replace or delete a resource."""
    return re.findall(r"^ *[+~-]+ *\d+ (?:to )?(?:create|update|replace|delete|created|updated|replaced|deleted)\b.*$", output, re.M)


@pytest.fixture(scope="module")
def host(registry: None) -> Iterator[TestHost]:
    with TestHost.for_module(__name__).fresh() as test_host:
        yield test_host


@pytest.fixture(scope="module")
def deployed(host: TestHost, bin_dir: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Project, str, dict[str, Any], int]]:
    """The deployed stack: project, its good Pulumi.local.yaml, its state, and the host's SSH logins."""
    project = Project(tmp_path_factory.mktemp("bad-input"), bin_dir)
    # A file of the project that app.files could name (it does not here), whose place is dropship's own on the host.
    (project.dir / "examples" / "local" / "releases").mkdir()
    (project.dir / "examples" / "local" / "releases" / "notes.md").write_text("the app's release notes\n")
    project.init_local(host, {}, SECRETS)
    project.up()
    good = (project.dir / "Pulumi.local.yaml").read_text()
    yield project, good, stack_state(project), host.logins()
    (project.dir / "Pulumi.local.yaml").write_text(good)
    project.pulumi("destroy", "--yes", "--skip-preview", check=False)


def configure(project: Project, good: str, plain: dict[str, str | None], secret: dict[str, str]) -> None:
    document = yaml.safe_load(good)
    config: dict[str, Any] = document["config"]
    for key, value in plain.items():
        if value is None:
            config.pop(f"dropship:{key}", None)
        else:
            config[f"dropship:{key}"] = value
    (project.dir / "Pulumi.local.yaml").write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    for key, value in secret.items():
        project.set(key, value, secret=True)


def test_at_least_forty_cases() -> None:
    assert len(CASES) >= 40
    assert len({case[0] for case in CASES}) == len(CASES)


@pytest.mark.parametrize(("case", "plain", "secret", "key", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bad_configuration_is_refused_and_changes_nothing(
    deployed: tuple[Project, str, dict[str, Any], int],
    case: str,
    plain: dict[str, str | None],
    secret: dict[str, str],
    key: str,
    expected: str,
    record_property: Record,
) -> None:
    project, good, state, _ = deployed
    record_property("bad_input", key)
    configure(project, good, plain, secret)
    try:
        seconds = {}
        for operation in ("preview", "up"):
            started = time.monotonic()
            args = ("preview",) if operation == "preview" else ("up", "--yes", "--skip-preview")
            result = project.pulumi(*args, check=False)
            seconds[operation] = time.monotonic() - started
            output = result.stdout + result.stderr
            assert result.returncode != 0, f"{operation} accepted it:\n{output[-3000:]}"
            lines = [line.strip() for line in output.splitlines() if line.strip().startswith(f"- dropship:{key}: ")]
            assert any(expected in line for line in lines), f"{operation}: {expected!r} not in:\n{output[-3000:]}"
            if case == "many-problems-at-once":
                assert ALL_AT_ONCE in output
            assert registered(output) == [], operation
            assert CANARY not in output, f"{operation} shows a secret value"
        after = stack_state(project)
        assert after == state, state_diff(state, after)
        record_property("preview_seconds", round(seconds["preview"], 1))
        record_property("up_seconds", round(seconds["up"], 1))
    finally:
        (project.dir / "Pulumi.local.yaml").write_text(good)


def test_no_remote_command_ran_and_the_good_config_still_changes_nothing(
    deployed: tuple[Project, str, dict[str, Any], int], host: TestHost
) -> None:
    project, _, state, logins = deployed
    assert host.logins() == logins
    assert project.preview_steps() == {}
    after = stack_state(project)
    assert after == state, state_diff(state, after)
