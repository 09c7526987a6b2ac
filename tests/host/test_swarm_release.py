"""release.py on a Swarm (--swarm-replicas) against a fake docker that keeps a stack's services: the order of a
first deploy with hooks, the hooks' compose file, a rollback by the Swarm, and a stack moved from compose."""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from release import Deployer, Options, ReleaseError

from tests.host.fake_docker import Clock
from tests.host.test_release import Fetch, outcomes, serving

CONFIG = {
    "name": "shop",
    "services": {
        "api": {"image": "api:{tag}", "environment": {"SECRET_KEY": "s1"}, "depends_on": {"db": {"condition": "service_healthy"}}},
        "db": {"image": "db", "volumes": [{"type": "volume", "source": "db-data", "target": "/data"}]},
    },
    "networks": {"default": {"name": "shop_default"}},
    "volumes": {"db-data": {"name": "shop_db-data"}},
}


@dataclass
class FakeSwarm:
    """A manager's docker: compose config renders CONFIG for the IMAGE_TAG, stack deploy records the file and
    makes its services (each update `completed`, or `rollback_completed` for the tags in `rolls_back`)."""

    compose_containers: list[str] = field(default_factory=list)
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    rolls_back: set[str] = field(default_factory=set)
    deployed: list[dict[str, Any]] = field(default_factory=list)
    calls: list[list[str]] = field(default_factory=list)
    updates: int = 0

    def __call__(self, args: Sequence[str], timeout: float = 600) -> str:
        args = list(args)
        self.calls.append(args)
        if args[0] == "compose":
            verb = args[args.index("--project-directory") + 2 :]
            while verb[0] == "--file":
                verb = verb[2:]
            match verb:
                case ["config", "--format", "json"]:
                    return json.dumps(CONFIG).replace("{tag}", os.environ["IMAGE_TAG"])
                case ["down"]:
                    self.compose_containers = []
                    return ""
                case ["pull", *_]:
                    return ""
            raise AssertionError(f"unexpected compose {verb}")
        match args:
            case ["info", *_]:
                return "true\n"
            case ["ps", "--all", "--quiet", "--no-trunc", "--filter", "label=com.docker.compose.project=shop", *_]:
                return "".join(f"{c}\n" for c in self.compose_containers)
            case ["network", "ls", *_]:
                return "net1\n" if self.services else ""
            case ["stack", "deploy", "--compose-file", path, *_]:
                stack = json.loads(Path(path).read_text())
                self.deployed.append({"file": Path(path).name, "services": sorted(stack["services"]), "stack": stack})
                for name, service in stack["services"].items():
                    spec = {"image": service["image"], "replicas": service["deploy"]["replicas"]}
                    current = self.services.get(f"shop_{name}")
                    if current is not None and current["spec"] == spec:
                        continue
                    self.updates += 1
                    tag = service["image"].partition(":")[2]
                    state = "rollback_completed" if tag in self.rolls_back and current is not None else "completed"
                    status = {"State": state, "StartedAt": f"t{self.updates}", "Message": "update rolled back due to failure"}
                    self.services[f"shop_{name}"] = {"spec": spec if state == "completed" else current["spec"], "status": status}  # type: ignore[index]
                if "--prune" in args:
                    for name in [n for n in self.services if n.removeprefix("shop_") not in stack["services"]]:
                        del self.services[name]
                return ""
            case ["service", "ls", *_]:
                return "".join(f"{name}\n" for name in self.services)
            case ["service", "inspect", *names]:
                return json.dumps(
                    [
                        {
                            "Spec": {"Name": n, "Mode": {"Replicated": {"Replicas": self.services[n]["spec"]["replicas"]}}},
                            "UpdateStatus": self.services[n]["status"],
                        }
                        for n in names
                    ]
                )
            case ["service", "ps", name, *_]:
                return "Running 3 seconds ago\n" * self.services[name]["spec"]["replicas"]
            case ["image", *_]:
                return ""
        raise AssertionError(f"unexpected docker {args}")

    def run_input(self, args: Sequence[str], data: bytes) -> str:
        raise AssertionError(f"unexpected docker {list(args)} with input")


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "environ", dict(os.environ))


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    incoming = tmp_path / "srv" / "shop" / "incoming"
    incoming.mkdir(parents=True)
    (incoming / "compose.yaml").write_text("services: {}\n")  # what compose renders is the fake's CONFIG
    (incoming / ".env").write_text("SECRET_KEY='s1'\n")
    (tmp_path / "srv" / "shop" / "releases").mkdir()
    return tmp_path / "srv" / "shop"


def deploy(
    app_dir: Path,
    docker: FakeSwarm,
    tag: str,
    hooks: tuple[str, ...] = (),
    fetch: Fetch | None = None,
    health_url: str | None = None,
    **options: Any,
) -> None:
    """`options`: more of release.py's Options."""
    release = Options(
        dir=app_dir,
        project="shop",
        tag=tag,
        compose_files=("compose.yaml",),
        rolling=("api",),
        swarm_replicas=3,
        pre_deploy=hooks,
        health_url=health_url,
        health_retries=2,
        **options,
    )
    clock = Clock()
    deployer = Deployer(release, run=docker, run_input=docker.run_input, fetch=fetch or Fetch(), clock=clock, sleep=clock.sleep)
    deployer.deploy(password="")


def test_a_first_deploy_starts_the_data_services_then_runs_the_hooks_on_the_stacks_network_then_the_rest(
    app_dir: Path, tmp_path: Path
) -> None:
    docker = FakeSwarm()
    seen = tmp_path / "hook-saw"
    deploy(app_dir, docker, "v1", hooks=(f'cat "$COMPOSE_FILE" > {seen}',))
    assert [(d["file"], d["services"]) for d in docker.deployed] == [("stack-first.json", ["db"]), ("stack.json", ["api", "db"])]
    hook_file = json.loads(seen.read_text())
    assert hook_file["networks"] == {"default": {"name": "shop_default", "external": True}}
    assert "depends_on" not in hook_file["services"]["api"]
    api = docker.deployed[-1]["stack"]["services"]["api"]
    assert (api["deploy"]["replicas"], api["deploy"]["update_config"]["order"]) == (3, "start-first")
    assert outcomes(app_dir) == [("v1", "live")] and serving(app_dir) == "v1"
    release = app_dir / "releases" / "current"
    for name in ("stack.json", "hooks-compose.json"):
        assert stat.S_IMODE((release / name).stat().st_mode) == 0o600, name
        assert not (app_dir / name).exists(), name  # the live copy holds no rendered secret


def test_a_service_the_swarm_rolled_back_fails_the_release_and_the_previous_stack_is_deployed_again(app_dir: Path) -> None:
    docker = FakeSwarm()
    deploy(app_dir, docker, "v1")
    docker.rolls_back = {"v2"}
    with pytest.raises(ReleaseError) as failure:
        deploy(app_dir, docker, "v2")
    assert "release v2 failed and was rolled back: the Swarm rolled back service shop_api: update rolled back due to failure" in str(
        failure.value
    )
    assert docker.deployed[-1]["stack"]["services"]["api"]["image"] == "api:v1"
    assert outcomes(app_dir) == [("v1", "live"), ("v2", "rolled-back")] and serving(app_dir) == "v1"


def test_an_unhealthy_release_redeploys_the_previous_stack(app_dir: Path) -> None:
    docker = FakeSwarm()
    deploy(app_dir, docker, "v1")
    with pytest.raises(ReleaseError, match=re.escape("https://shop.test/ is not healthy: HTTP 503: down")):
        deploy(app_dir, docker, "v2", fetch=Fetch((503, "HTTP 503: down")), health_url="https://shop.test/")
    assert docker.services["shop_api"]["spec"]["image"] == "api:v1"
    assert serving(app_dir) == "v1"


def test_an_app_that_ran_with_compose_is_stopped_before_the_stack_starts(app_dir: Path) -> None:
    docker = FakeSwarm(compose_containers=["api-1", "db-1"])
    deploy(app_dir, docker, "v1")
    down = next(i for i, call in enumerate(docker.calls) if call[0] == "compose" and call[-1] == "down")
    first_stack = next(i for i, call in enumerate(docker.calls) if call[:2] == ["stack", "deploy"])
    assert down < first_stack


@dataclass
class FakeSwarmWithEdge(FakeSwarm):
    """The same with the stack's dropship-edge: its task container here once the service exists. Each site
    written to the edge is recorded with what the hooks had written to `hooks_log` by then."""

    hooks_log: Path | None = None
    sites: list[tuple[list[str], str]] = field(default_factory=list)

    def __call__(self, args: Sequence[str], timeout: float = 600) -> str:
        match list(args):
            case ["ps", "--all", "--filter", "name=^dropship-edge$", *_]:
                return ""  # no one-server edge container
            case ["ps", "--filter", "label=com.docker.swarm.service.name=shop_dropship-edge", *_]:
                return "shop_dropship-edge.1.abc\n" if "shop_dropship-edge" in self.services else ""
            case ["exec", "shop_dropship-edge.1.abc", "caddy", "reload", *_]:
                return ""
            case ["exec", "shop_dropship-edge.1.abc", "sh", "-c", _, url] if url.startswith("http://127.0.0.1:2019/"):
                return "{}"
        return super().__call__(args)

    def run_input(self, args: Sequence[str], data: bytes) -> str:
        assert list(args[:3]) == ["exec", "--interactive", "shop_dropship-edge.1.abc"], args
        assert self.hooks_log is not None
        self.sites.append((self.hooks_log.read_text().split() if self.hooks_log.exists() else [], data.decode()))
        return ""


def test_maintenance_on_a_swarm_answers_503_before_the_hooks_and_skips_the_health_url(app_dir: Path, tmp_path: Path) -> None:
    from edge import Route

    hooks_log = tmp_path / "hooks-ran"
    docker = FakeSwarmWithEdge(hooks_log=hooks_log)
    fetch = Fetch((503, "HTTP 503: Down for maintenance"))
    for tag, maintenance in (("v1", False), ("v2", True)):
        deploy(
            app_dir,
            docker,
            tag,
            hooks=(f"echo {tag} >> {hooks_log}",),
            fetch=fetch,
            health_url="https://shop.test/" if maintenance else None,
            hostnames="shop.test",
            routes=(Route.parse("/* api:8000 /health"),),
            edge_image="caddy:2.11.9-alpine",
            maintenance=maintenance,
        )
    # v1: its site once its stack ran. v2: the maintenance site before v2's hook, and again after its stack.
    assert [(hooks, "503" in site) for hooks, site in docker.sites] == [(["v1"], False), (["v1"], True), (["v1", "v2"], True)]
    assert fetch.asked == []  # every route answers 503: the health URL is not asked
    assert serving(app_dir) == "v2"


def test_a_rollback_restores_the_previous_releases_routes_not_the_failed_ones(app_dir: Path, tmp_path: Path) -> None:
    from edge import Route

    docker = FakeSwarmWithEdge(hooks_log=tmp_path / "hooks-ran")
    v1 = (Route.parse("/* api:8000 /health"),)
    v2 = (Route.parse("/admin/* api:8000"), *v1)
    deploy(app_dir, docker, "v1", hostnames="shop.test", routes=v1, edge_image="caddy:2.11.9-alpine")
    with pytest.raises(ReleaseError, match="rolled back"):
        unhealthy = Fetch((503, "HTTP 503: down"))
        deploy(
            app_dir,
            docker,
            "v2",
            fetch=unhealthy,
            health_url="https://shop.test/",
            hostnames="shop.test",
            routes=v2,
            edge_image="caddy:2.11.9-alpine",
        )
    v1_site, v2_site, restored = (site for _, site in docker.sites)
    assert "handle /admin/*" in v2_site and "handle /admin/*" not in v1_site
    assert restored == v1_site  # v1's site again, without v2's route
    assert serving(app_dir) == "v1"
    assert not (app_dir / "SERVING.json").exists()
