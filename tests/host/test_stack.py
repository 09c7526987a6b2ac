"""stack.py: the shop's `docker compose config` as a stack file, and the hooks' compose file."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import stack

# As `docker compose config --format json` gives the shop (examples/shop/compose.yaml), trimmed.
SHOP: dict[str, Any] = {
    "name": "shop",
    "services": {
        "caddy": {
            "image": "127.0.0.1:5000/shop/caddy:trixie-2",
            "restart": "unless-stopped",
            "environment": {"SITE_ADDRESSES": "shop.test www.shop.test"},
            "ports": [
                {"mode": "ingress", "target": 80, "published": "80", "protocol": "tcp"},
                {"mode": "ingress", "target": 443, "published": "443", "protocol": "tcp"},
            ],
            "volumes": [
                {
                    "type": "bind",
                    "source": "/srv/shop/Caddyfile",
                    "target": "/etc/caddy/Caddyfile",
                    "read_only": True,
                    "bind": {"create_host_path": True},
                },
                {"type": "volume", "source": "caddy-data", "target": "/data", "volume": {}},
            ],
            "depends_on": {"api": {"condition": "service_started", "required": True}},
            "healthcheck": {"test": ["CMD", "curl", "-fsS", "http://127.0.0.1:2019/config/"], "interval": "5s", "start_interval": "1s"},
            "networks": {"default": None},
        },
        "api": {
            "image": "127.0.0.1:5000/shop/api:v2",
            "restart": "unless-stopped",
            "environment": {"DATABASE_URL": "postgresql://shop:secret@db/shop", "REDIS_URL": "redis://redis:6379/0"},
            "depends_on": {"db": {"condition": "service_healthy", "required": True}},
            "healthcheck": {"test": ["CMD", "curl", "-fsS", "http://127.0.0.1:8000/api/health"], "interval": "2s", "retries": 5},
            "networks": {"default": None},
        },
        "worker": {
            "image": "127.0.0.1:5000/shop/api:v2",
            "command": ["python3", "-m", "shop.worker"],
            "stop_grace_period": "15s",
            "entrypoint": None,
            "networks": {"default": None},
        },
        "db": {
            "image": "127.0.0.1:5000/shop/db:trixie-2",
            "restart": "unless-stopped",
            "volumes": [{"type": "volume", "source": "db-data", "target": "/var/lib/postgresql/data", "volume": {}}],
            "networks": {"default": None},
        },
        "once": {"image": "busybox", "restart": "no", "pull_policy": "always", "container_name": "once"},
    },
    "networks": {"default": {"name": "shop_default"}},
    "volumes": {"caddy-data": {"name": "shop_caddy-data"}, "db-data": {"name": "shop_db-data"}},
}

ON_DATA_NODE = {"constraints": ["node.labels.dropship.data == true"]}


def render(config: dict[str, Any] = SHOP, replicas: int = 3) -> dict[str, Any]:
    return stack.render(copy.deepcopy(config), replicas=replicas, rolling=["api", "worker"])


def test_a_rolling_service_runs_on_every_server_and_starts_each_new_task_first() -> None:
    api = render()["services"]["api"]
    assert api == {
        "image": "127.0.0.1:5000/shop/api:v2",
        "environment": {"DATABASE_URL": "postgresql://shop:secret@db/shop", "REDIS_URL": "redis://redis:6379/0"},
        "healthcheck": {"test": ["CMD", "curl", "-fsS", "http://127.0.0.1:8000/api/health"], "interval": "2s", "retries": 5},
        "deploy": {
            "endpoint_mode": "dnsrr",
            "replicas": 3,
            "update_config": {"parallelism": 1, "order": "start-first", "failure_action": "rollback", "monitor": "10s"},
            "rollback_config": {"parallelism": 1, "order": "start-first", "failure_action": "pause"},
            "restart_policy": {"condition": "any", "delay": "2s"},
        },
        "networks": ["default"],
    }
    assert render()["services"]["worker"]["command"] == ["python3", "-m", "shop.worker"]
    assert "entrypoint" not in render()["services"]["worker"]


def test_the_edge_runs_once_on_the_data_server_with_its_ports_on_that_server() -> None:
    caddy = render()["services"]["caddy"]
    assert caddy["ports"] == [
        {"target": 80, "published": 80, "protocol": "tcp", "mode": "host"},
        {"target": 443, "published": 443, "protocol": "tcp", "mode": "host"},
    ]
    assert caddy["volumes"] == [
        {"type": "bind", "target": "/etc/caddy/Caddyfile", "source": "/srv/shop/Caddyfile", "read_only": True},
        {"type": "volume", "target": "/data", "source": "caddy-data"},
    ]
    assert caddy["deploy"]["placement"] == ON_DATA_NODE
    assert caddy["deploy"]["replicas"] == 1
    assert caddy["deploy"]["update_config"]["order"] == "stop-first"  # one task holds the host's ports
    assert caddy["healthcheck"] == {"test": ["CMD", "curl", "-fsS", "http://127.0.0.1:2019/config/"], "interval": "5s"}
    assert "depends_on" not in caddy and "restart" not in caddy


def test_a_volume_pins_a_service_to_the_data_server_and_keeps_compose_s_name() -> None:
    rendered = render()
    assert rendered["services"]["db"]["deploy"]["placement"] == ON_DATA_NODE
    assert rendered["volumes"] == {"caddy-data": {}, "db-data": {}}  # the stack names them shop_<name>, as compose did
    assert rendered["networks"] == {"default": {"driver": "overlay", "attachable": True}}


def test_what_the_swarm_ignores_is_left_out_and_restart_no_becomes_its_policy() -> None:
    once = render()["services"]["once"]
    assert once == {
        "image": "busybox",
        "deploy": {
            "endpoint_mode": "dnsrr",
            "replicas": 1,
            "update_config": {"parallelism": 1, "order": "stop-first", "failure_action": "rollback", "monitor": "10s"},
            "rollback_config": {"parallelism": 1, "order": "stop-first", "failure_action": "pause"},
            "restart_policy": {"condition": "none"},
        },
        "networks": ["default"],
    }


def test_the_apps_own_deploy_settings_win() -> None:
    config = copy.deepcopy(SHOP)
    config["services"]["api"]["deploy"] = {"replicas": 5, "update_config": {"monitor": "30s"}, "endpoint_mode": "vip"}
    deploy = render(config)["services"]["api"]["deploy"]
    assert (deploy["replicas"], deploy["update_config"]["monitor"], deploy["update_config"]["order"], deploy["endpoint_mode"]) == (
        5,
        "30s",
        "start-first",
        "vip",
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"api": {"ports": [{"target": 8000, "published": "8000"}]}}, "service api is in app.rollingServices but publishes ports"),
        ({"db": {"deploy": {"replicas": 2}}}, "service db publishes ports or mounts volumes, so it runs once"),
        ({"caddy": {"ports": [{"target": 80}]}}, "port 80 has no published port"),
    ],
)
def test_what_cannot_run_on_a_swarm_is_refused_with_the_fix(change: dict[str, dict[str, Any]], message: str) -> None:
    config = copy.deepcopy(SHOP)
    for name, keys in change.items():
        config["services"][name].update(keys)
    with pytest.raises(stack.StackError, match=message):
        render(config)


def test_a_hook_runs_on_the_stacks_network_without_starting_dependencies() -> None:
    hooks = stack.hook_compose_file(copy.deepcopy(SHOP), project="shop")
    assert hooks["networks"] == {"default": {"name": "shop_default", "external": True}}
    assert "depends_on" not in hooks["services"]["api"]
    assert hooks["services"]["api"]["environment"]["DATABASE_URL"] == "postgresql://shop:secret@db/shop"
    assert hooks["name"] == "shop"


# The shop as it is now: its front end `web` (read-only files of the app) and `api` behind dropship's edge.
ROUTED: dict[str, Any] = copy.deepcopy(SHOP)
ROUTED["services"]["web"] = ROUTED["services"].pop("caddy")
ROUTED["services"]["web"]["volumes"] = [
    {"type": "bind", "source": "/srv/shop/web/dist", "target": "/srv/web", "read_only": True, "bind": {"create_host_path": True}}
]
ROUTED["services"]["api"]["ports"] = [{"mode": "ingress", "target": 8000, "published": "8000", "protocol": "tcp"}]


def render_routed() -> dict[str, Any]:
    edge = stack.EdgeService(image="caddy:2.11.9-alpine", routed=("api", "web"))
    return stack.render(copy.deepcopy(ROUTED), replicas=3, rolling=["worker"], edge=edge)


def test_with_routes_the_edge_is_a_service_of_the_stack_on_the_data_node_holding_80_and_443() -> None:
    rendered = render_routed()
    edge = rendered["services"]["dropship-edge"]
    assert edge["image"] == "caddy:2.11.9-alpine"
    assert edge["ports"] == [
        {"target": 80, "published": 80, "protocol": "tcp", "mode": "host"},
        {"target": 443, "published": 443, "protocol": "tcp", "mode": "host"},
    ]
    assert edge["deploy"]["placement"] == ON_DATA_NODE
    assert (edge["deploy"]["replicas"], edge["deploy"]["update_config"]["order"]) == (1, "stop-first")
    assert edge["networks"] == ["default"]
    # The one-server edge's volumes, by their own names: a stack grown into a Swarm keeps its certificates.
    assert {v["source"]: v["target"] for v in edge["volumes"]} == {"dropship-edge-config": "/etc/caddy", "dropship-edge-data": "/data"}
    assert rendered["volumes"]["dropship-edge-data"] == {"name": "dropship-edge-data"}
    # `docker stack deploy` interpolates `$`: the shell sees one.
    assert "$$DROPSHIP_EDGE_CADDYFILE" in edge["entrypoint"][2] and "admin 127.0.0.1:2019" in edge["environment"]["DROPSHIP_EDGE_CADDYFILE"]


def test_routed_services_publish_no_port_and_roll_start_first() -> None:
    services = render_routed()["services"]
    api, web = services["api"], services["web"]
    assert "ports" not in api and "ports" not in web
    assert (api["deploy"]["replicas"], api["deploy"]["update_config"]["order"]) == (3, "start-first")
    assert "placement" not in api["deploy"]
    # Pinned to the data node by its files, which it only reads: two of it can run for a moment.
    assert (web["deploy"]["replicas"], web["deploy"]["update_config"]["order"], web["deploy"]["placement"]) == (
        1,
        "start-first",
        ON_DATA_NODE,
    )
    # Not routed and with a volume of its own: stopped first, as before.
    assert services["db"]["deploy"]["update_config"]["order"] == "stop-first"


def test_an_app_service_named_like_the_edge_is_refused() -> None:
    config = copy.deepcopy(ROUTED)
    config["services"]["dropship-edge"] = {"image": "nginx"}
    with pytest.raises(stack.StackError, match="service named dropship-edge"):
        stack.render(config, replicas=3, rolling=[], edge=stack.EdgeService(image="caddy", routed=("api",)))
