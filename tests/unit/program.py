"""Runs __main__.py under Pulumi's mocks and records every resource, invoke and output."""

from __future__ import annotations

import json
import runpy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import settings as runtime_settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

ROOT = Path(__file__).resolve().parents[2]
MAIN = ROOT / "__main__.py"
SECRET_SIG = "4dabf18193072939515e22adb298388d"
ZONE_ID = "0123456789abcdef0123456789abcdef"
DROPLET_IPV4 = "203.0.113.50"
DROPLET_IPV6 = "2001:db8::50"
LOAD_BALANCER_IPV4 = "203.0.113.80"
RESERVED_IPV4 = "198.51.100.77"
CLOUDFLARE_IPV4 = ["173.245.48.0/20", "103.21.244.0/22"]
CLOUDFLARE_IPV6 = ["2400:cb00::/32"]
CANARY = "canary-9f3b2c"
PRIVATE_KEY = f"-----BEGIN OPENSSH PRIVATE KEY-----\n{CANARY}-private-key\n-----END OPENSSH PRIVATE KEY-----\n"


@dataclass
class Registered:
    type: str
    name: str
    parent: str
    inputs: dict[str, Any]
    """Plain values, secrets unwrapped."""
    wire: dict[str, Any]
    """As sent to the engine: secret values still wrapped."""
    protect: bool
    deleted_with: str
    depends_on: list[str]
    additional_secret_outputs: list[str]
    ignore_changes: list[str] = field(default_factory=list)
    retain_on_delete: bool = False


@dataclass
class Run:
    resources: list[Registered] = field(default_factory=list)
    invokes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)
    stack: str = ""

    def stashed(self, name: str) -> Any:
        """The value the stack's state keeps for the Stash `name` (its first input)."""
        return _unwrap(STASHED[(self.stack, name)])

    def of_type(self, type_: str) -> list[Registered]:
        return [r for r in self.resources if r.type == type_]

    def named(self, name: str) -> Registered:
        matches = [r for r in self.resources if r.name == name]
        assert len(matches) == 1, f"{name}: {[r.name for r in self.resources]}"
        return matches[0]

    @property
    def commands(self) -> list[Registered]:
        return self.of_type("command:remote:Command")


STASHED: dict[tuple[str, str], Any] = {}
"""What the engine's state would keep of each stack's Stash resources: their first input."""


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self, run: Run, stack: str) -> None:
        self.run = run
        self.stack = stack

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        state = dict(args.inputs)
        if args.typ == "digitalocean:index/droplet:Droplet":
            # A Swarm's other droplets (server-node-<n>) get addresses and ids of their own.
            number = int(args.name.rsplit("-", 1)[1]) if args.name.startswith("server-node-") else 1
            state.update(
                ipv4Address=DROPLET_IPV4 if number == 1 else f"203.0.113.{10 + number}",
                ipv4AddressPrivate=f"10.114.0.{number + 1}",
                ipv6Address=DROPLET_IPV6,
                urn=f"do:droplet:{args.name}",
            )
            return str(424241 + number), state
        if args.typ == "digitalocean:index/loadBalancer:LoadBalancer":
            state["ip"] = LOAD_BALANCER_IPV4
        if args.typ == "digitalocean:index/sshKey:SshKey":
            state["fingerprint"] = "3b:16:bf:e4:8b:00:8b:b8:59:8c:a9:d3:f0:19:45:fa"
        if args.typ == "digitalocean:index/reservedIp:ReservedIp":
            state["ipAddress"] = RESERVED_IPV4
        if args.typ == "digitalocean:index/spacesKey:SpacesKey":
            state.update(accessKey="DO00SPACESKEY", secretKey=f"{CANARY}-spaces-secret")
        if args.typ == "pulumi:index:Stash":
            state["output"] = STASHED.setdefault((self.stack, args.name), state["input"])
        if args.typ == "command:remote:Command":
            state["stdout"] = f"stdout of {args.name}"
            if args.name == "swarm-init":
                state["stdout"] = json.dumps({role: f"SWMTKN-1-{role}-{CANARY}" for role in ("manager", "worker")})
        if args.typ == "cloudflare:index/originCaCertificate:OriginCaCertificate":
            state["certificate"] = ORIGIN_CERTIFICATE
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        self.run.invokes.append((args.token, dict(args.args)))
        if args.token == "cloudflare:index/getZone:getZone":
            return {"id": ZONE_ID, "name": args.args["filter"]["name"]}, []
        if args.token == "cloudflare:index/getIpRanges:getIpRanges":
            return {"ipv4Cidrs": CLOUDFLARE_IPV4, "ipv6Cidrs": CLOUDFLARE_IPV6}, []
        raise AssertionError(f"unexpected invoke {args.token}")


ORIGIN_CERTIFICATE = "-----BEGIN CERTIFICATE-----\norigin\n-----END CERTIFICATE-----\n"


class RecordingMonitor(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: RecordingMocks) -> None:
        super().__init__(mocks)
        self.run = mocks.run

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (gRPC method name)
        if request.type != "pulumi:pulumi:Stack":
            self.run.resources.append(
                Registered(
                    type=request.type,
                    name=request.name,
                    parent=request.parent,
                    inputs=json.loads(json.dumps(_unwrap(json_format.MessageToDict(request.object)))),
                    wire=json_format.MessageToDict(request.object),
                    protect=request.protect,
                    deleted_with=request.deletedWith,
                    depends_on=list(request.dependencies),
                    additional_secret_outputs=list(request.additionalSecretOutputs),
                    ignore_changes=list(request.ignoreChanges),
                    retain_on_delete=request.retainOnDelete,
                )
            )
        return super().RegisterResource(request)


def _unwrap(value: Any) -> Any:
    if isinstance(value, dict):
        if value.get(SECRET_SIG) == "1b47061264138c4ac30d75fd1eb44270":
            return _unwrap(value.get("value"))
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


def without_secrets(value: Any) -> Any:
    """The wire value with every secret replaced by a marker: what may be shown in plain text."""
    if isinstance(value, dict):
        if value.get(SECRET_SIG) == "1b47061264138c4ac30d75fd1eb44270":
            return "[secret]"
        return {k: without_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_secrets(v) for v in value]
    return value


def stack_config(stack: str) -> dict[str, str]:
    """A committed Pulumi.<stack>.yaml as the engine hands it to the program: every value a string."""
    data = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    return {k: _as_config_string(v) for k, v in data.items()}


def _as_config_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def run_program(
    stack: str,
    config: dict[str, str],
    secrets: dict[str, str] | None = None,
    *,
    preview: bool = False,
    project_dir: Path = ROOT,
) -> Run:
    """Runs the program once for `stack`; `secrets` are set as secret config (keys without namespace)."""
    run = Run(stack=stack)
    mocks = RecordingMocks(run, stack)
    runtime_settings.ROOT.set(None)
    pulumi.runtime.set_mocks(mocks, project="dropship", stack=stack, preview=preview, monitor=RecordingMonitor(mocks))
    all_config = dict(config)
    all_config.update({f"dropship:{k}": v for k, v in (secrets or {}).items()})
    pulumi.runtime.set_all_config(all_config, [f"dropship:{k}" for k in (secrets or {})])
    runtime_settings.SETTINGS.rpc_manager.clear()
    runtime_settings.SETTINGS.outputs.clear()

    def program() -> None:
        runpy.run_path(str(project_dir / "__main__.py"), run_name="__main__")

    _sync_await(run_pulumi_func(program))
    root = runtime_settings.get_root_resource()
    assert root is not None
    for name, value in root.outputs.items():  # type: ignore[attr-defined]
        output = pulumi.Output.from_input(value)
        run.outputs[name] = _sync_await(output.future())
        if _sync_await(output.is_secret()):
            run.secret_outputs.add(name)
    return run
