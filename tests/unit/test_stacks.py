"""The program under Pulumi's mocks: exact inputs of every resource for staging, production and pr-42."""

from __future__ import annotations

import itertools
import json
import shlex
from pathlib import Path
from typing import Any

import pulumi
import pytest

from components.server import cloud_config
from dropship import keys
from dropship.remote import commands
from tests.unit.program import (
    CANARY,
    CLOUDFLARE_IPV4,
    CLOUDFLARE_IPV6,
    DROPLET_IPV4,
    DROPLET_IPV6,
    ORIGIN_CERTIFICATE,
    PRIVATE_KEY,
    RESERVED_IPV4,
    ROOT,
    ZONE_ID,
    RecordingMonitor,
    Run,
    run_program,
    stack_config,
    without_secrets,
)
from tests.unit.test_settings import STAGING_SECRETS

PUBLIC_KEY = stack_config("staging")["dropship:ssh.publicKey"]
ANYWHERE = ["0.0.0.0/0", "::/0"]
DROPLET_ID = "424242"


@pytest.fixture(scope="module")
def staging() -> Run:
    return run_program("staging", stack_config("staging"), STAGING_SECRETS)


@pytest.fixture(scope="module")
def production() -> Run:
    return run_program("production", stack_config("production"), STAGING_SECRETS)


@pytest.fixture(scope="module")
def preview() -> Run:
    return run_program("pr-42", stack_config("staging"), STAGING_SECRETS)


def connection(run: Run, user: str, host: str = DROPLET_IPV4) -> dict[str, object]:
    """A droplet's connection: root with the droplet's own key, anyone else with the deploy key; the host key pinned."""
    private_key = run.stashed("server-admin-key") if user == "root" else PRIVATE_KEY
    host_key = keys.public_key(run.stashed("server-host-key"))
    return {
        "host": host,
        "port": 22,
        "user": user,
        "privateKey": private_key,
        "hostKey": host_key,
        "dialErrorLimit": 60,
        "perDialTimeout": 15,
    }


def test_staging_droplet(staging: Run) -> None:
    admin_key = staging.stashed("server-admin-key")
    host_key = staging.stashed("server-host-key")
    assert staging.named("server-key").inputs == {
        "name": "dropship-staging",
        "publicKey": keys.public_key(admin_key, "dropship dropship-staging"),
    }
    droplet = staging.named("server-droplet")
    assert droplet.inputs == {
        "name": "dropship-staging",
        "region": "fra1",
        "size": "s-1vcpu-2gb",
        "image": "ubuntu-24-04-x64",
        "backups": False,
        "monitoring": True,
        "ipv6": True,
        "sshKeys": ["3b:16:bf:e4:8b:00:8b:b8:59:8c:a9:d3:f0:19:45:fa"],
        "tags": ["dropship", "dropship-staging"],
        "userData": cloud_config(host_key),
    }
    assert without_secrets(droplet.wire)["userData"] == "[secret]"
    assert droplet.protect is False
    assert staging.of_type("digitalocean:index/reservedIp:ReservedIp") == []
    assert staging.of_type("digitalocean:index/volume:Volume") == []


def test_staging_firewall_covers_the_stacks_tag_and_every_droplet_is_born_behind_it(staging: Run) -> None:
    # By the stack's tag, which each droplet has from its creation, and made before the droplets: none boots open.
    for droplet in staging.of_type("digitalocean:index/droplet:Droplet"):
        assert "dropship-staging" in droplet.inputs["tags"]
        assert any(dep.endswith("::firewall-firewall") for dep in droplet.depends_on), droplet.name
    assert staging.named("firewall-firewall").inputs == {
        "name": "dropship-staging",
        "tags": ["dropship-staging"],
        "inboundRules": [
            {"protocol": "tcp", "portRange": "22", "sourceAddresses": ANYWHERE},
            {"protocol": "tcp", "portRange": "80", "sourceAddresses": ANYWHERE},
            {"protocol": "tcp", "portRange": "443", "sourceAddresses": ANYWHERE},
            {"protocol": "icmp", "sourceAddresses": ANYWHERE},
        ],
        "outboundRules": [
            {"protocol": "tcp", "portRange": "1-65535", "destinationAddresses": ANYWHERE},
            {"protocol": "udp", "portRange": "1-65535", "destinationAddresses": ANYWHERE},
            {"protocol": "icmp", "destinationAddresses": ANYWHERE},
        ],
    }


def test_staging_dns(staging: Run) -> None:
    records = {r.name: r.inputs for r in staging.of_type("cloudflare:index/dnsRecord:DnsRecord")}
    common = {
        "zoneId": ZONE_ID,
        "name": "staging.example.com",
        "ttl": 1,
        "proxied": False,
        "comment": "managed by dropship, stack dropship/staging",
    }
    assert records == {
        "dns-staging.example.com-a": {**common, "type": "A", "content": DROPLET_IPV4},
        "dns-staging.example.com-aaaa": {**common, "type": "AAAA", "content": DROPLET_IPV6},
    }
    assert staging.invokes == [("cloudflare:index/getZone:getZone", {"filter": {"name": "example.com", "match": "all"}})]


def test_staging_bootstrap_commands_in_order(staging: Run) -> None:
    expected = {
        "host-wait": ("root", commands.wait_for_host()),
        "host-docker": ("root", commands.install_docker("docker-apt", "10m", 3)),
        "host-security-upgrades": ("root", commands.enable_security_upgrades("docker-apt", None)),
        "host-deploy-user": ("root", commands.create_deploy_user("deploy", PUBLIC_KEY, "/srv/shop", False)),
        "host-deploy-user-check": ("deploy", commands.check_deploy_user()),
        "host-harden-ssh": ("root", commands.harden_ssh("deploy", "root")),
    }
    for name, (user, script) in expected.items():
        command = staging.named(name)
        assert command.inputs == {
            "connection": connection(staging, user),
            "create": script.command,
            "stdin": script.stdin,
            "triggers": [DROPLET_ID],
            "addPreviousOutputInEnv": False,
        }, name
        assert command.deleted_with.endswith("::server-droplet")
    order = list(expected)
    for earlier, later in itertools.pairwise(order):
        assert any(dep.endswith(f"::{earlier}") for dep in staging.named(later).depends_on), f"{later} must wait for {earlier}"


def test_env_file_goes_through_stdin_only(staging: Run) -> None:
    env = staging.named("env-write")
    assert env.inputs == {
        "connection": connection(staging, "deploy"),
        "create": commands.write_env("/srv/shop"),  # writes /srv/shop/incoming/.env
        "stdin": f"DATABASE_URL='postgres://shop@db/shop'\nPOSTGRES_PASSWORD='{CANARY}-pg'\nSECRET_KEY='{CANARY}-sk'\n",
        "logging": "none",
        "triggers": [DROPLET_ID],
        "addPreviousOutputInEnv": False,
    }
    assert without_secrets(env.wire)["stdin"] == "[secret]"
    assert {"stdin", "stdout", "stderr"} <= set(env.additional_secret_outputs)
    assert any(dep.endswith("::host-harden-ssh") for dep in env.depends_on)


def test_app_uploads_and_release(staging: Run) -> None:
    shop = ROOT / "examples" / "shop"
    uploads = {r.name: r.inputs for r in staging.of_type("command:remote:CopyToRemote")}
    signature = "4dabf18193072939515e22adb298388d"  # Pulumi's signature key; its value says asset or archive
    assert uploads == {
        **{
            f"app-file-{name}": {
                "connection": connection(staging, "deploy"),
                "source": {signature: "c44067f5952c0a294b673a41bacd8c17", "path": str(shop / name)},
                "remotePath": f"/srv/shop/incoming/{name}",
                "triggers": [DROPLET_ID],
            }
            for name in ("compose.yaml", "Caddyfile")
        },
        "app-dir-web/dist": {
            "connection": connection(staging, "deploy"),
            "source": {signature: "0def7320c3a5731c473e5ecbe6d01bc7", "path": str(shop / "web" / "dist")},
            "remotePath": "/srv/shop/incoming/web",
            "triggers": [DROPLET_ID, uploads_digest(shop, "web/dist")],
        },
        **{
            f"app-code-{module}": {
                "connection": connection(staging, "deploy"),
                "source": {signature: "c44067f5952c0a294b673a41bacd8c17", "path": str(commands.SCRIPTS / module)},
                "remotePath": f"/srv/shop/.dropship/host-{commands.host_code_digest()}/{module}",
                "triggers": [DROPLET_ID],
            }
            for module in ("release.py", "rollout.py", "health.py", "stack.py", "edge.py", "routed.py", "limits.py")
        },
    }
    directory = staging.named("app-directory")
    assert directory.inputs["create"] == commands.claim_app_directory("/srv/shop", DROPLET_ID)
    assert directory.inputs["delete"] == commands.remove_app("/srv/shop", "shop", DROPLET_ID)
    release = staging.named("app-release")
    files = {
        p.relative_to(shop).as_posix(): p.read_bytes()
        for p in [shop / "compose.yaml", shop / "Caddyfile", *sorted((shop / "web" / "dist").rglob("*"))]
        if p.is_file()
    }
    assert release.inputs == {
        "connection": connection(staging, "deploy"),
        "create": commands.deploy(
            app_dir="/srv/shop",
            project="shop",
            image_tag="v1",
            compose_files=["compose.yaml"],
            health_url="https://staging.example.com/api/health",
            health_timeout=60,
            rolling_services=["worker"],
            pre_deploy=["docker compose run --rm api python3 -m alembic upgrade head"],
            registry="registry.example.com",
            registry_user="ci",
            files_digest=commands.files_digest(files),
            uploads=["Caddyfile", "web/dist"],
            hostnames=["staging.example.com"],
            routes=["/api/* api:8000 /api/health", "/* web:8080 /"],
            drain_seconds=30,
            edge_image="caddy:2.11.9-alpine",
        ),
        "stdin": f"{CANARY}-registry",
        "triggers": [DROPLET_ID, env_stdin(staging)],
        "addPreviousOutputInEnv": False,
    }
    assert without_secrets(release.wire)["stdin"] == "[secret]"
    for dep in ("app-directory", "env-write", "app-file-compose.yaml", "app-file-Caddyfile", "app-dir-web/dist"):
        assert any(d.endswith(f"::{dep}") for d in release.depends_on), dep


def uploads_digest(shop: Path, directory: str) -> str:
    return commands.files_digest({p.relative_to(shop).as_posix(): p.read_bytes() for p in (shop / directory).rglob("*") if p.is_file()})


def test_staging_has_no_volume_step(staging: Run) -> None:
    assert "host-volume" not in {r.name for r in staging.commands}
    assert "--data-dir" not in release_args(staging)


def test_production_mounts_its_volume_after_it_is_attached_and_before_docker(production: Run) -> None:
    volume = production.named("host-volume")
    assert volume.inputs == {
        "connection": connection(production, "root", RESERVED_IPV4),
        "create": commands.mount_volume("/dev/disk/by-id/scsi-0DO_Volume_dropship-production-data", "/mnt/data").command,
        "stdin": commands.script_text("mount-volume.sh"),
        "triggers": [DROPLET_ID],
        "addPreviousOutputInEnv": False,
    }
    assert {"host-wait", "server-data-attachment"} <= {d.rsplit("::", 1)[-1] for d in volume.depends_on}
    assert "host-volume" in {d.rsplit("::", 1)[-1] for d in production.named("host-docker").depends_on}


def test_production_release_gets_its_hostnames_data_directory_and_tls_mode(production: Run) -> None:
    assert from_flag(release_args(production), "--hostnames", 6) == [
        "--hostnames",
        "app.example.com www.example.com",
        "--data-dir",
        "/mnt/data",
        "--tls-mode",
        "cloudflare-origin",
    ]


def test_production_gets_an_origin_certificate_whose_key_stays_on_the_droplet(production: Run) -> None:
    key = production.named("origin-key")
    assert key.inputs == {
        "connection": connection(production, "deploy", RESERVED_IPV4),
        "create": commands.origin_key("/srv/shop", ["app.example.com", "www.example.com"]),
        "triggers": [DROPLET_ID],
        "addPreviousOutputInEnv": False,
    }
    assert "host-harden-ssh" in {d.rsplit("::", 1)[-1] for d in key.depends_on}
    assert production.named("origin-certificate").inputs == {
        "csr": "stdout of origin-key",
        "hostnames": ["app.example.com", "www.example.com"],
        "requestType": "origin-ecc",
        "requestedValidity": 5475,
    }
    assert production.named("origin-ssl-strict").inputs == {"zoneId": ZONE_ID, "settingId": "ssl", "value": "strict"}
    install = production.named("origin-install")
    assert install.inputs == {
        "connection": connection(production, "deploy", RESERVED_IPV4),
        "create": commands.install_origin_cert("/srv/shop"),
        "stdin": ORIGIN_CERTIFICATE,
        "triggers": [DROPLET_ID, ORIGIN_CERTIFICATE],
        "addPreviousOutputInEnv": False,
    }
    for later in ("env-write", "app-directory"):  # the release waits for both
        assert any(d.endswith("::origin-install") for d in production.named(later).depends_on), later


def test_staging_uses_acme_and_has_no_origin_certificate(staging: Run) -> None:
    assert staging.of_type("cloudflare:index/originCaCertificate:OriginCaCertificate") == []
    assert staging.of_type("cloudflare:index/zoneSetting:ZoneSetting") == []
    assert "--tls-mode" not in release_args(staging)


def test_preview_release_gets_its_derived_hostname(preview: Run) -> None:
    args = release_args(preview)
    assert args[args.index("--hostnames") + 1] == "pr-42.staging.example.com"


def test_a_preview_caps_each_container_and_staging_does_not(preview: Run, staging: Run) -> None:
    assert release_args(preview)[-4:] == ["--cpus", "1", "--memory", "512m"]
    assert "--cpus" not in release_args(staging) and "--memory" not in release_args(staging)


def from_flag(args: list[str], flag: str, count: int) -> list[str]:
    """`count` arguments of `args` from `flag` on."""
    start = args.index(flag)
    return args[start : start + count]


def release_args(run: Run) -> list[str]:
    """release.py's arguments in the release step's `python3 <host code>/release.py ARGS...`."""
    words = shlex.split(str(run.named("app-release").inputs["create"]))
    assert words[0] == "python3" and words[1].endswith(f"/.dropship/host-{commands.host_code_digest()}/release.py")
    return words[2:]


def env_stdin(run: Run) -> str:
    return str(run.named("env-write").inputs["stdin"])


def test_staging_outputs(staging: Run) -> None:
    assert staging.outputs == {
        "ipv4": DROPLET_IPV4,
        "ipv6": DROPLET_IPV6,
        "hostKey": keys.public_key(staging.stashed("server-host-key")),
        "urls": ["https://staging.example.com"],
        "sshCommand": f"ssh deploy@{DROPLET_IPV4}",
        "release": "v1",
        "appDirectory": "/srv/shop",
        "commands": {
            "logs": f"ssh deploy@{DROPLET_IPV4} 'docker compose --project-name shop logs --follow --tail 100'",
            "releases": f"ssh deploy@{DROPLET_IPV4} 'cat /srv/shop/releases.log'",
        },
    }
    assert staging.secret_outputs == set()


def test_production_is_protected_and_behind_a_reserved_ip(production: Run) -> None:
    droplet = production.named("server-droplet")
    assert droplet.inputs["size"] == "s-2vcpu-4gb"
    assert droplet.inputs["backups"] is True
    assert droplet.inputs["tags"] == ["dropship", "dropship-production"]
    assert droplet.protect is True
    reserved = production.named("server-ip")
    assert reserved.inputs == {"region": "fra1"}
    assert reserved.protect is True
    assert production.named("server-ip-assignment").inputs == {"ipAddress": RESERVED_IPV4, "dropletId": int(DROPLET_ID)}
    volume = production.named("server-data")
    assert volume.inputs == {
        "name": "dropship-production-data",
        "region": "fra1",
        "size": 50,
        "initialFilesystemType": "ext4",
        "description": "data of dropship-production, outlives the droplet",
    }
    assert volume.protect is True
    assert production.named("server-data-attachment").inputs == {"dropletId": int(DROPLET_ID), "volumeId": "server-data-id"}
    assert production.named("server-key").protect is False


def test_production_dns_is_proxied_to_the_reserved_ip(production: Run) -> None:
    records = {
        r.name: (r.inputs["type"], r.inputs["content"], r.inputs["proxied"])
        for r in production.of_type("cloudflare:index/dnsRecord:DnsRecord")
    }
    assert records == {
        "dns-app.example.com-a": ("A", RESERVED_IPV4, True),
        "dns-app.example.com-aaaa": ("AAAA", DROPLET_IPV6, True),
        "dns-www.example.com-a": ("A", RESERVED_IPV4, True),
        "dns-www.example.com-aaaa": ("AAAA", DROPLET_IPV6, True),
    }
    assert production.outputs["ipv4"] == RESERVED_IPV4
    assert production.outputs["urls"] == ["https://app.example.com", "https://www.example.com"]
    assert production.named("host-docker").inputs["connection"]["host"] == RESERVED_IPV4


def test_production_firewall_admits_web_only_from_cloudflare(production: Run) -> None:
    rules = production.named("firewall-firewall").inputs["inboundRules"]
    cloudflare = CLOUDFLARE_IPV4 + CLOUDFLARE_IPV6
    assert rules == [
        {"protocol": "tcp", "portRange": "22", "sourceAddresses": ["203.0.113.10/32", "198.51.100.0/28"]},
        {"protocol": "tcp", "portRange": "80", "sourceAddresses": cloudflare},
        {"protocol": "tcp", "portRange": "443", "sourceAddresses": cloudflare},
        {"protocol": "icmp", "sourceAddresses": ANYWHERE},
    ]


def test_preview_stack(preview: Run) -> None:
    droplet = preview.named("server-droplet")
    assert droplet.inputs["name"] == "dropship-pr-42"
    assert droplet.inputs["size"] == "s-1vcpu-1gb"
    assert droplet.inputs["backups"] is False
    assert droplet.inputs["tags"] == ["dropship", "dropship-pr-42"]
    assert not any(r.protect for r in preview.resources)
    names = {r.inputs["name"] for r in preview.of_type("cloudflare:index/dnsRecord:DnsRecord")}
    assert names == {"pr-42.staging.example.com"}
    assert preview.outputs["urls"] == ["https://pr-42.staging.example.com"]
    assert {r.inputs["comment"] for r in preview.of_type("cloudflare:index/dnsRecord:DnsRecord")} == {
        "managed by dropship, stack dropship/pr-42"
    }


def test_components_use_dropship_type_tokens(staging: Run) -> None:
    components = {r.type for r in staging.resources if r.type.startswith("dropship:")}
    assert components == {f"dropship:index:{n}" for n in ("Server", "Firewall", "Dns", "HostBootstrap", "EnvFile", "App")}


@pytest.mark.parametrize("stack", ["staging", "production", "pr-42"])
def test_no_secret_in_any_plain_input_or_output(stack: str) -> None:
    run = run_program(stack, stack_config("production" if stack == "production" else "staging"), STAGING_SECRETS)
    for resource in run.resources:
        plain = json.dumps(without_secrets(resource.wire))
        assert CANARY not in plain, f"{resource.name} has a secret in plain inputs"
        for key in ("create", "update", "delete"):
            assert CANARY not in str(resource.inputs.get(key, "")), f"{resource.name}.{key}"
    for name, value in run.outputs.items():
        if name not in run.secret_outputs:
            assert CANARY not in json.dumps(value), name


def test_bad_configuration_registers_nothing() -> None:
    config = {**stack_config("staging"), "dropship:droplet.region": "Frankfurt"}
    with pytest.raises(pulumi.RunError) as err:
        run_program("staging", config, STAGING_SECRETS)
    assert "dropship:droplet.region: expected a DigitalOcean region slug" in str(err.value)


def local_config(**changes: str) -> dict[str, str]:
    """Pulumi.local.yaml without its encrypted values (run_program gets the secrets)."""
    config = {k: v for k, v in stack_config("local").items() if not v.startswith('{"secure"')}
    config.update({f"dropship:{k}": v for k, v in changes.items()})
    return config


LOCAL_SECRETS = {
    "ssh.privateKey": PRIVATE_KEY,
    "env.DATABASE_URL": f"postgresql://shop:{CANARY}-pg@db/shop",
    "env.POSTGRES_PASSWORD": f"{CANARY}-pg",
    "env.SECRET_KEY": f"{CANARY}-sk",
}


def test_local_stack_runs_every_host_step() -> None:
    run = run_program("local", local_config(), LOCAL_SECRETS)
    names = {r.name for r in run.commands}
    assert {"host-docker", "host-security-upgrades", "host-harden-ssh", "env-write", "app-directory", "app-release"} <= names
    assert from_flag(release_args(run), "--hostnames", 6) == [
        "--hostnames",
        "shop.test www.shop.test",
        "--acme-ca",
        "https://192.0.2.1:14000/dir",
        "--acme-ca-root",
        "/srv/shop/local/acme-ca-root.pem",
    ]
    assert run.outputs["urls"] == ["https://shop.test", "https://www.shop.test"]


def test_existing_host_with_hostnames_a_volume_and_an_id() -> None:
    run = run_program(
        "local",
        local_config(
            **{
                "existingHost.hostnames": '["shop.test","www.shop.test"]',
                "existingHost.volumeDevice": "/dev/disk/by-id/scsi-0DO_Volume_shop-data",
                "existingHost.volumeMountPath": "/mnt/shop",
                "existingHost.id": "host-2",
            }
        ),
        LOCAL_SECRETS,
    )
    volume = run.named("host-volume")
    assert volume.inputs["create"] == commands.mount_volume("/dev/disk/by-id/scsi-0DO_Volume_shop-data", "/mnt/shop").command
    assert "host-wait" in {d.rsplit("::", 1)[-1] for d in volume.depends_on}
    assert all(r.inputs["triggers"][0] == "host-2" for r in run.commands)
    # A new id replaces every step; the old app directory's delete names the old machine (see remove-app.sh).
    assert run.named("app-directory").inputs["delete"] == commands.remove_app("/srv/shop", "shop", "host-2")
    assert from_flag(release_args(run), "--hostnames", 4) == ["--hostnames", "shop.test www.shop.test", "--data-dir", "/mnt/shop"]
    assert run.outputs["urls"] == ["https://shop.test", "https://www.shop.test"]


def test_host_gone_registers_only_the_retained_app_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    options: dict[str, tuple[bool, list[str]]] = {}
    register = RecordingMonitor.RegisterResource

    def spy(self: RecordingMonitor, request: Any) -> Any:
        options[request.name] = (request.retainOnDelete, list(request.ignoreChanges))
        return register(self, request)

    monkeypatch.setattr(RecordingMonitor, "RegisterResource", spy)
    normal = run_program("local", local_config(), LOCAL_SECRETS)
    assert options["app-directory"] == (False, [])
    gone = run_program("local", local_config(**{"existingHost.gone": "true"}), LOCAL_SECRETS)
    assert [(r.type, r.name) for r in gone.resources] == [("dropship:index:App", "app"), ("command:remote:Command", "app-directory")]
    # The same resource as before (same inputs, same URN), so that `pulumi up` changes nothing on it ...
    assert gone.named("app-directory").inputs["delete"] == normal.named("app-directory").inputs["delete"]
    assert gone.named("app-directory").parent == normal.named("app-directory").parent
    # ... and deleting it forgets it: no SSH to a host that is gone.
    assert options["app-directory"] == (True, ["*"])
    assert gone.outputs == normal.outputs
