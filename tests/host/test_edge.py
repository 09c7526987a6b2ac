"""edge.py and routed.py: the edge's site files, the compose override, and the switch against a fake docker."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from edge import Edge, Route, RouteError, Site
from rollout import CommandError, Compose, NotReadyError, Waiter
from routed import Switch, override

from tests.host.fake_docker import HEALTHY, RUNNING, STARTING, Clock, Container, FakeDocker

API = Route(path="/api/*", service="api", port=8000, health="/api/health")
WEB = Route(path="/*", service="web", port=8080)


@pytest.mark.parametrize(
    ("line", "route"),
    [("/api/* api:8000 /api/health", API), ("/* web:8080", WEB), ("  /* web:8080  ", WEB)],
)
def test_a_route_line_parses_and_prints_back(line: str, route: Route) -> None:
    assert Route.parse(line) == route
    assert Route.parse(str(route)) == route


@pytest.mark.parametrize(
    ("line", "message"), [("/* web:http", "must be a number"), ("web:8080", "expected 'PATH"), ("/* web:0", "1 to 65535")]
)
def test_a_bad_route_line_says_why(line: str, message: str) -> None:
    with pytest.raises(RouteError, match=message):
        Route.parse(line)


def site(**changes: object) -> Site:
    fields: dict[str, object] = {"project": "shop", "hostnames": ("shop.test", "www.shop.test"), "routes": (WEB, API)}
    return Site(**{**fields, **changes})  # type: ignore[arg-type]


def test_a_site_routes_the_longest_path_first_and_the_catch_all_last_by_container_name() -> None:
    text = site().render({"api": ["shop-api-2", "shop-api-3"], "web": ["shop-web-1"]})
    assert text.index("handle /api/* {") < text.index("\thandle {")
    assert "reverse_proxy shop-api-2:8000 shop-api-3:8000 {" in text
    assert "reverse_proxy shop-web-1:8080 {" in text
    assert text.splitlines()[1] == "shop.test, www.shop.test {"
    assert "drain" not in text


def test_a_service_without_containers_answers_502_rather_than_guessing() -> None:
    assert 'respond "web has no container yet" 502' in site().render({"api": ["shop-api-2"]})


def test_tls_by_the_stacks_acme_ca_with_its_root_or_by_the_origin_certificate() -> None:
    acme = site(acme_ca="https://192.0.2.1:14000/dir", acme_ca_root=True).render({})
    assert "\ttls {\n\t\tca https://192.0.2.1:14000/dir\n\t\tca_root /etc/caddy/stacks/shop/acme-ca-root.pem\n\t}" in acme
    assert "tls" not in site().render({}).split("{", 1)[1].split("handle")[0]
    origin = site(tls_mode="cloudflare-origin").render({})
    assert "\ttls /etc/caddy/stacks/shop/tls/cert.pem /etc/caddy/stacks/shop/tls/key.pem" in origin


def test_a_stack_without_hostnames_serves_plain_http_on_any_name() -> None:
    assert site(hostnames=()).render({}).splitlines()[1] == "http:// {"


def test_maintenance_answers_every_route_503_with_retry_after() -> None:
    text = site(maintenance=True).render({"api": ["shop-api-2"], "web": ["shop-web-1"]})
    assert 'header Retry-After "30"' in text
    assert "503" in text
    assert "reverse_proxy" not in text


def test_draining_containers_stay_where_only_the_edges_loopback_reaches_them() -> None:
    text = site().render({"api": ["shop-api-3"]}, draining=["shop-api-2:8000"])
    assert "http://shop.drain.dropship:2020 {\n\tbind 127.0.0.1\n\treverse_proxy shop-api-2:8000\n}" in text


def test_the_override_drops_host_ports_and_names_and_adds_the_edge_network_beside_the_services_own() -> None:
    config = {
        "services": {
            "web": {"ports": [{"target": 80, "published": "80"}], "container_name": "web", "networks": {"default": None}},
            "api": {"networks": {"back": {"aliases": ["x"]}}},
            "db": {"ports": [{"target": 5432, "published": "5432"}]},
        }
    }
    text = override(config, [Route("/*", "web", 80), Route("/api/*", "api", 8000), Route("/v1/*", "api", 8000)])
    assert text.splitlines()[1:] == [
        "services:",
        '  "web":',
        "    ports: !reset []",
        "    container_name: !reset null",
        "    networks:",
        '      "default": {}',
        '      "dropship-edge": {}',
        '  "api":',
        "    networks:",
        '      "back": {}',
        '      "dropship-edge": {}',
        "networks:",
        "  dropship-edge:",
        "    name: dropship-edge",
        "    external: true",
    ]


def test_the_override_refuses_a_route_to_a_service_compose_does_not_define() -> None:
    with pytest.raises(NotReadyError, match=r"edge\.routes names service web"):
        override({"services": {"api": {}}}, [WEB])


class FakeEdge(Edge):
    """Records the site files written and what Caddy counts in flight for each upstream."""

    def __init__(self, in_flight: Sequence[int] = (0,)) -> None:
        super().__init__(run=lambda args: "", run_input=lambda args, data: "")
        self.sites: list[str] = []
        self.counts = list(in_flight)

    def write(self, path: str, content: bytes, mode: str = "644") -> None:
        self.sites.append(content.decode())

    def reload(self) -> None:
        self.sites.append("reload")

    def in_flight(self, addresses: Sequence[str]) -> int:
        return self.counts.pop(0) if len(self.counts) > 1 else self.counts[0]


def switch(docker: FakeDocker, edge: FakeEdge, answers: dict[str, list[str | None]], drain: float = 10) -> tuple[Switch, Clock]:
    """`answers`: per container address, what its route's health path says at each probe (None: it answers)."""
    clock = Clock()
    compose = Compose("shop", "/srv/shop", ["compose.yaml", "dropship-edge.yaml"], run=docker)
    waiter = Waiter(compose, clock=clock, sleep=clock.sleep, unhealthy_final=False)

    def check(address: str, port: int, path: str | None) -> str | None:
        said = answers[address]
        return said.pop(0) if len(said) > 1 else said[0]

    return Switch(compose, waiter, edge, site(routes=(API,)), drain=drain, check=check), clock


def api(id: str, *steps: tuple[str, str | None, int, int], address: str = "172.30.0.9", logs: str = "") -> Container:
    return Container(id, "api", list(steps), address=address, logs=logs)


def test_the_edge_learns_the_new_containers_only_once_healthy_and_answering_then_drains_the_old() -> None:
    docker = FakeDocker(running=[api("api-1", HEALTHY)], starts={"api": [api("api-2", STARTING, HEALTHY, address="172.30.0.3")]})
    edge = FakeEdge(in_flight=(2, 1, 0))
    answers: dict[str, list[str | None]] = {"172.30.0.3": ["GET /api/health answered 503", None]}
    sw, clock = switch(docker, edge, answers)
    assert sw.upstreams == {"api": ["shop-api-1"]}
    sw.roll("api", deadline=60)
    assert "compose up --detach --no-recreate --scale api=2 api" in docker.verbs()
    first = edge.sites[0]
    assert "reverse_proxy shop-api-2:8000 {" in first and "reverse_proxy shop-api-1:8000\n" in first  # new serving, old draining
    assert docker.verbs()[-2:] == ["stop api-1", "rm --force api-1"]
    assert edge.sites[-2:][1] == "reload" and "drain" not in edge.sites[-2]
    assert [c.id for c in docker.running] == ["api-2"]
    assert clock.now == pytest.approx(0.5 + 0.5 + 0.4)  # starting, then 503 once, then two polls of requests in flight


def test_draining_is_bounded_by_drain_seconds() -> None:
    docker = FakeDocker(running=[api("api-1", HEALTHY)], starts={"api": [api("api-2", HEALTHY)]})
    sw, clock = switch(docker, FakeEdge(in_flight=(1,)), {"172.30.0.9": [None]}, drain=3)
    sw.roll("api", deadline=60)
    assert clock.now == pytest.approx(3)
    assert [c.id for c in docker.running] == ["api-2"]


def test_a_new_container_that_crashes_fails_at_once_and_the_edge_never_knew_it() -> None:
    crashing = api("api-2abcdef12345", STARTING, ("exited", None, 3, 0), logs="Traceback: boom\n")
    docker = FakeDocker(running=[api("api-1", HEALTHY)], starts={"api": [crashing]})
    edge = FakeEdge()
    sw, clock = switch(docker, edge, {"172.30.0.9": [None]})
    with pytest.raises(NotReadyError, match=r"(?s)service api: container api-2abcdef1 exited with exit code 3.*Traceback: boom"):
        sw.roll("api", deadline=60)
    assert edge.sites == []
    assert [c.id for c in docker.running] == ["api-1"]
    assert clock.now < 10


def test_unhealthy_is_not_final_behind_the_edge_a_slow_boot_inside_the_timeout_goes_live() -> None:
    slow = api("api-2", *([("running", "unhealthy", 0, 0)] * 40), HEALTHY)
    docker = FakeDocker(running=[api("api-1", HEALTHY)], starts={"api": [slow]})
    sw, clock = switch(docker, FakeEdge(), {"172.30.0.9": [None]})
    sw.roll("api", deadline=60)
    assert [c.id for c in docker.running] == ["api-2"]
    assert clock.now == pytest.approx(20)


def test_a_container_that_stays_unhealthy_fails_at_the_deadline_with_its_last_health_check() -> None:
    sick = Container("api-2abcdef12345", "api", [("running", "unhealthy", 0, 0)], health_output="HTTP 503: database down")
    docker = FakeDocker(running=[api("api-1", HEALTHY)], starts={"api": [sick]})
    edge = FakeEdge()
    sw, clock = switch(docker, edge, {"172.30.0.9": [None]})
    with pytest.raises(
        NotReadyError, match="not healthy in time: api api-2abcdef1 running/unhealthy; last health check: HTTP 503: database down"
    ):
        sw.roll("api", deadline=30)
    assert clock.now == pytest.approx(30)
    assert edge.sites == []
    assert [c.id for c in docker.running] == ["api-1"]


def test_a_container_healthy_to_docker_but_not_answering_its_route_is_never_switched_to() -> None:
    docker = FakeDocker(running=[api("api-1", HEALTHY)], starts={"api": [api("api-2abcdef12345", RUNNING)]})
    edge = FakeEdge()
    sw, _ = switch(docker, edge, {"172.30.0.9": ["GET /api/health answered 500: oops"]})
    with pytest.raises(NotReadyError, match=r"container api-2abcdef1 does not answer its route /api/\* api:8000 /api/health: .*500: oops"):
        sw.roll("api", deadline=20)
    assert edge.sites == []


def test_the_first_release_starts_the_service_and_points_the_edge_at_it() -> None:
    docker = FakeDocker(starts={"api": [api("api-1", HEALTHY)]})
    edge = FakeEdge()
    sw, _ = switch(docker, edge, {"172.30.0.9": [None]})
    sw.roll("api", deadline=20)
    assert "compose up --detach --no-recreate api" in docker.verbs()
    assert edge.sites == [site(routes=(API,)).render({"api": ["shop-api-1"]}), "reload"]


class RacingDocker:
    """docker as another stack's release leaves it: the edge's name taken between our look and our `run`."""

    def __init__(self, image_of_the_winner: str) -> None:
        self.started = False
        self.image = image_of_the_winner

    def __call__(self, args: Sequence[str], timeout: float = 600) -> str:
        match list(args):
            case ["network", "ls", *_]:
                return ""
            case ["network", "create", *_]:
                raise CommandError(["docker", *args], 1, "Error response from daemon: network with name dropship-edge already exists")
            case ["ps", *_]:
                return "dropship-edge\n" if self.started else ""
            case ["inspect", _]:
                return f'[{{"Config": {{"Image": "{self.image}"}}, "State": {{"Status": "running"}}}}]'
            case ["run", *_]:
                self.started = True
                raise CommandError(
                    ["docker", *args],
                    125,
                    'docker: Error response from daemon: Conflict. The container name "/dropship-edge" is already in use',
                )
        raise AssertionError(f"unexpected docker {args}")


def test_two_stacks_releasing_at_once_share_the_edge_the_first_one_started() -> None:
    docker = RacingDocker("caddy:2.11.9-alpine")
    assert Edge(docker, lambda args, data: "").ensure("caddy:2.11.9-alpine") == "the edge runs"


def test_an_edge_of_another_image_started_meanwhile_is_an_error() -> None:
    with pytest.raises(CommandError, match="already in use"):
        Edge(RacingDocker("caddy:2.7"), lambda args, data: "").ensure("caddy:2.11.9-alpine")


def test_a_swarms_site_routes_to_each_services_running_tasks_by_dns() -> None:
    rendered = Site(project="shop", hostnames=("shop.test",), routes=(API, WEB), swarm=True).render({})
    assert "\t\treverse_proxy {\n\t\t\tdynamic a api 8000 {\n\t\t\t\trefresh 1s\n\t\t\t}" in rendered
    assert "dynamic a web 8080" in rendered
    assert rendered.index("handle /api/* {") < rendered.index("dynamic a api") < rendered.index("\thandle {")
