"""The shop example: its built front end is the build of its sources, its compose file uses what dropship passes."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import yaml

from tests.unit.program import ROOT

SHOP = ROOT / "examples" / "shop"


def test_web_dist_is_the_build_of_web_src(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("shop_web_build", SHOP / "web" / "build.py")
    assert spec is not None and spec.loader is not None
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    build.build(SHOP / "web" / "src", tmp_path / "dist")
    built = {p.relative_to(tmp_path / "dist"): p.read_bytes() for p in (tmp_path / "dist").rglob("*") if p.is_file()}
    committed = {p.relative_to(SHOP / "web" / "dist"): p.read_bytes() for p in (SHOP / "web" / "dist").rglob("*") if p.is_file()}
    assert built == committed, "run: python3 examples/shop/web/build.py"


def test_every_stack_deploys_the_shop_with_its_front_end_and_migrations() -> None:
    for stack in ("local", "staging", "production"):
        config = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
        assert config["dropship:app.composeFiles"] == ["examples/shop/compose.yaml"], stack
        assert {"examples/shop/Caddyfile", "examples/shop/web/dist"} <= set(config["dropship:app.files"]), stack
        assert config["dropship:app.preDeploy"] == ["docker compose run --rm api python3 -m alembic upgrade head"], stack


def test_one_service_per_role_on_dockers_default_network() -> None:
    compose = yaml.safe_load((SHOP / "compose.yaml").read_text())
    assert set(compose["services"]) == {"web", "api", "worker", "db", "redis"}
    assert "networks" not in compose
    assert all("network_mode" not in s and "networks" not in s for s in compose["services"].values())
    # dropship's edge holds 80 and 443: no service publishes a port, and no certificate is the app's.
    assert all("ports" not in s for s in compose["services"].values())
    assert set(compose["volumes"]) == {"db-data", "redis-data"}


def test_every_stack_routes_the_api_and_the_front_end_through_dropships_edge() -> None:
    for stack in ("local", "staging", "production"):
        config = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
        assert config["dropship:edge.routes"] == ["/api/* api:8000 /api/health", "/* web:8080 /"], stack
        assert config["dropship:app.rollingServices"] == ["worker"], stack


def test_the_edge_runs_one_caddy_version_everywhere() -> None:
    """edge.image's default (droplets), the Caddy dev/caddy.sh builds (the test hosts' edge images) and the
    local stack's edge image name the same version."""
    from dropship.config.sections import EDGE_IMAGE

    match = re.search(r"^readonly CADDY_VERSION=v(\S+)", (ROOT / "dev" / "caddy.sh").read_text(), re.MULTILINE)
    assert match is not None
    local = yaml.safe_load((ROOT / "Pulumi.local.yaml").read_text())["config"]["dropship:edge.image"]
    assert (EDGE_IMAGE, local) == (f"caddy:{match[1]}-alpine", f"127.0.0.1:5000/shop/edge:{match[1]}")
