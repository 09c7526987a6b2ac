"""dropship's edge (edge.routes) on a real test host, under load over HTTPS: no request reaches a container
before it is healthy. The app is examples/local's web service in a compose file written for a plain server
(compose.edge.yaml publishes its port and has no proxy); dropship runs Caddy on 80 and 443 with a
certificate from Pebble, and switches each release's traffic itself. The tests run in file order."""

from __future__ import annotations

import http.client
import json
import re
import shutil
import socket
import ssl
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from dev.harness import Project, TestHost, build_images, pebble
from dev.harness.project import ROOT
from dev.harness.vegeta import LoadReport, Vegeta

HOST = TestHost.for_module(__name__)
HOSTNAME = "edge.test"
APP_DIR = "/srv/example"
EDGE_IMAGE = "127.0.0.1:5000/dropship-example/edge:v1"
"""The Caddy of edge.image's default (dev/caddy.sh), on busybox."""
RATE = 100
"""The small app's busybox httpd forks per request and listens with a backlog of 9: at 500 a second over
HTTPS on this machine's two cores it times out with or without a release (measured: p50 3 s). What the edge
does at 500 a second is the shop's to show (make bench)."""
HEALTH_TIMEOUT = 45
ROUTES = ["/* web:8080 /cgi-bin/health"]


@pytest.fixture(scope="module")
def root_ca(registry: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Pebble, the local ACME CA (stopped again if this started it), and its root in a file."""
    started = pebble.start()
    path = tmp_path_factory.mktemp("pebble") / "root.pem"
    path.write_text(pebble.root())
    yield path
    if started:
        pebble.stop()


@pytest.fixture(scope="module")
def host(root_ca: Path) -> Iterator[TestHost]:
    pebble.resolve(HOSTNAME, HOST.address)
    with HOST.fresh() as test_host:
        yield test_host


@pytest.fixture(scope="module")
def project(host: TestHost, root_ca: Path, bin_dir: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    for tag in ("v3-unhealthy", "v4-crash", "v5-slow"):
        build_images(tag)
    project = Project(tmp_path_factory.mktemp("edge"), bin_dir)
    # The root Pebble's own HTTPS is signed by (the edge checks its ACME server with it), not the root of the
    # certificates Pebble issues (`root_ca`, what clients check the edge with).
    shutil.copy(ROOT / "examples/shop/local/acme-ca-root.pem", project.dir / "examples/local/acme-ca-root.pem")
    project.init_local(
        host,
        {
            "app.composeFiles": json.dumps(["examples/local/compose.edge.yaml"]),
            "app.files": json.dumps(["examples/local/acme-ca-root.pem"]),
            "app.rollingServices": "[]",
            "app.healthUrl": "/cgi-bin/health",
            "app.healthTimeout": str(HEALTH_TIMEOUT),
            "app.urls": json.dumps([f"https://{HOSTNAME}/"]),
            "existingHost.hostnames": json.dumps([HOSTNAME]),
            "tls.acmeCa": pebble.directory(),
            "tls.acmeCaRoot": "examples/local/acme-ca-root.pem",
            "edge.routes": json.dumps(ROUTES),
            "edge.image": EDGE_IMAGE,
            "edge.drainSeconds": "10",
        },
    )
    project.up()
    yield project
    project.pulumi("destroy", "--yes", "--skip-preview", check=False)


def https(host: TestHost, root_ca: Path, path: str, hostname: str = HOSTNAME) -> tuple[int, dict[str, str], str]:
    """GET `path` of a stack's hostname at the host's address, the certificate verified against Pebble's root."""
    context = ssl.create_default_context(cafile=str(root_ca))
    connection = http.client.HTTPSConnection(hostname, 443, timeout=10, context=context)
    connection.sock = context.wrap_socket(socket.create_connection((host.address, 443), 10), server_hostname=hostname)
    return _answer(connection, path, hostname)


def _plain_http(host: TestHost, path: str) -> tuple[int, dict[str, str], str]:
    return _answer(http.client.HTTPConnection(host.address, 80, timeout=10), path)


def _answer(connection: http.client.HTTPConnection, path: str, hostname: str = HOSTNAME) -> tuple[int, dict[str, str], str]:
    try:
        connection.request("GET", path, headers={"Host": hostname})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode(errors="replace")
    finally:
        connection.close()


def serving(host: TestHost, root_ca: Path, hostname: str = HOSTNAME) -> str:
    status, _, body = https(host, root_ca, "/cgi-bin/health", hostname)
    assert status == 200, body
    return str(json.loads(body)["release"])


def release_under_load(project: Project, host: TestHost, root_ca: Path, tag: str, *, check: bool = True) -> tuple[str, LoadReport]:
    """`pulumi up` of `tag` while vegeta sends RATE requests a second over HTTPS; (its output, the report)."""
    project.set("app.imageTag", tag)
    with Vegeta(f"https://{HOSTNAME}/", host.address, root_ca, rate=RATE) as load:
        result = project.pulumi("up", "--yes", "--skip-preview", "--color", "never", check=check)
    report = load.report()
    print(f"\nrelease {tag} at {RATE}/s over HTTPS: {report}")
    return result.stdout + result.stderr, report


def test_the_edge_serves_https_from_pebble_and_the_app_publishes_no_port(project: Project, host: TestHost, root_ca: Path) -> None:
    assert serving(host, root_ca) == "v1"
    status, headers, _ = _plain_http(host, "/cgi-bin/health")
    assert status in (301, 308), headers
    assert headers["Location"].startswith(f"https://{HOSTNAME}/")
    edge = host.ssh("deploy", "docker inspect --format '{{.Config.Image}} {{.State.Status}}' dropship-edge").stdout.split()
    assert edge == [EDGE_IMAGE, "running"]
    ports = host.ssh("deploy", "docker ps --filter label=com.docker.compose.project=example --format '{{.Names}} {{.Ports}}'").stdout
    assert re.fullmatch(r"example-web-\d+ *\n", ports), ports  # its "8080:8080" dropped: no port published
    # The admin API is the edge's own: an app container reaches the edge's 443, not its 2019.
    web = ports.split()[0]
    reach = host.ssh("deploy", f"docker exec {web} wget -q -T 3 -O - http://dropship-edge:2019/config/ 2>&1; echo rc=$?").stdout
    assert "rc=0" not in reach, reach


def test_a_release_switches_with_no_failed_request(project: Project, host: TestHost, root_ca: Path) -> None:
    output, report = release_under_load(project, host, root_ca, "v2")
    assert "switched web: the edge sends its requests to example-web-" in output
    assert serving(host, root_ca) == "v2"
    assert report.sent >= 5 * RATE, str(report)
    assert report.failed == 0, report.errors


def test_a_release_that_crashes_at_start_is_never_served(project: Project, host: TestHost, root_ca: Path) -> None:
    output, report = release_under_load(project, host, root_ca, "v4-crash", check=False)
    assert "release v4-crash failed and was rolled back" in output, output[-3000:]
    assert "exit code 3" in output
    assert serving(host, root_ca) == "v2"
    assert report.failed == 0, report.errors


def test_a_release_that_runs_but_answers_503_is_rolled_back_at_the_timeout_and_never_served(
    project: Project, host: TestHost, root_ca: Path
) -> None:
    output, report = release_under_load(project, host, root_ca, "v3-unhealthy", check=False)
    assert "release v3-unhealthy failed and was rolled back" in output, output[-3000:]
    assert re.search(r"not healthy in time: web \w{12} running/unhealthy; last health check: .*503", output), output[-3000:]
    assert serving(host, root_ca) == "v2"
    assert report.failed == 0, report.errors
    assert report.sent >= HEALTH_TIMEOUT * RATE * 0.9, str(report)


def test_a_release_that_boots_for_25_seconds_goes_live(project: Project, host: TestHost, root_ca: Path) -> None:
    output, report = release_under_load(project, host, root_ca, "v5-slow")
    assert "release v5-slow is live" in output
    assert serving(host, root_ca) == "v5-slow"
    assert report.failed == 0, report.errors


def test_a_route_added_changes_the_edge_with_no_failed_request(project: Project, host: TestHost, root_ca: Path) -> None:
    project.set("edge.routes", json.dumps(["/about/* web:8080 /cgi-bin/health", *ROUTES]))
    with Vegeta(f"https://{HOSTNAME}/", host.address, root_ca, rate=RATE) as load:
        project.up()
    report = load.report()
    print(f"\na route added at {RATE}/s over HTTPS: {report}")
    assert report.failed == 0, report.errors
    site = host.ssh("deploy", "docker exec dropship-edge cat /etc/caddy/sites/example.caddy").stdout
    assert "handle /about/* {" in site, site


def test_maintenance_answers_503_with_retry_after_and_the_app_keeps_running(project: Project, host: TestHost, root_ca: Path) -> None:
    project.set("edge.maintenance", "true")
    project.up()
    status, headers, body = https(host, root_ca, "/cgi-bin/health")
    assert (status, headers.get("Retry-After")) == (503, "30"), (status, headers, body)
    assert host.ssh("deploy", "docker ps --quiet --filter label=com.docker.compose.service=web").stdout.strip()
    project.set("edge.maintenance", "false")
    project.up()
    assert serving(host, root_ca) == "v5-slow"


def test_a_release_in_maintenance_runs_its_migration_behind_the_503(project: Project, host: TestHost, root_ca: Path) -> None:
    """edge.maintenance set with a release: the edge answers 503 before the pre-deploy hook (a migration that
    must see no write) runs; the hook records what a client got from the edge meanwhile."""
    seen = "curl -sk -o /dev/null -w %{http_code} --resolve edge.test:443:127.0.0.1 https://edge.test/cgi-bin/health > seen-by-hook"
    project.set("app.preDeploy", json.dumps([seen]))
    project.set("edge.maintenance", "true")
    project.set("app.imageTag", "v2")
    output = project.up().stdout
    assert output.index("every route answers 503 from now on") < output.index("pre-deploy hook: curl"), output[-3000:]
    assert host.ssh("deploy", f"cat {APP_DIR}/releases/current/seen-by-hook").stdout == "503"
    assert https(host, root_ca, "/cgi-bin/health")[0] == 503
    project.set("app.preDeploy", "[]")
    project.set("edge.maintenance", "false")
    project.set("app.imageTag", "v5-slow")
    project.up()
    assert serving(host, root_ca) == "v5-slow"


def test_a_second_up_with_no_change_runs_nothing(project: Project) -> None:
    assert project.preview_steps() == {}


# --- several stacks on one host: `local` as staging, and two previews of it (pr-1, pr-2) -------------------

PREVIEWS = ("pr-1", "pr-2")
SHARE_RATE = 50
"""Per stack loaded at once (two or three streams on this machine's two cores)."""
MIN_LOAD_SECONDS = 10


def preview_hostname(stack: str) -> str:
    return f"{stack}.{HOSTNAME}"


@pytest.fixture(scope="module")
def previews(project: Project, host: TestHost) -> Iterator[tuple[str, ...]]:
    """pr-1 and pr-2 made from the local stack's configuration, as ci/preview-env.sh makes them from staging's."""
    for stack in PREVIEWS:
        pebble.resolve(preview_hostname(stack), host.address)
        project.pulumi("stack", "init", stack, "--copy-config-from", "local")
        # A preview is not `local`: its existing host's key is pinned, as staging's would be.
        project.pulumi("config", "set", "--stack", stack, "ssh.hostKey", host.host_key())
    project.pulumi("stack", "select", "local")
    yield PREVIEWS
    for stack in PREVIEWS:
        project.pulumi("destroy", "--yes", "--skip-preview", "--stack", stack, check=False)
    project.pulumi("stack", "select", "local")


class Loads:
    """Vegeta at SHARE_RATE on each of these stacks' hostnames at once; a report per hostname."""

    def __init__(self, host: TestHost, root_ca: Path, hostnames: Sequence[str]) -> None:
        self.loads = {name: Vegeta(f"https://{name}/", host.address, root_ca, rate=SHARE_RATE) for name in hostnames}
        self.reports: dict[str, LoadReport] = {}

    def __enter__(self) -> Loads:
        for load in self.loads.values():
            load.__enter__()
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        # A quick change (a destroy takes seconds) is followed by load until MIN_LOAD_SECONDS have passed:
        # what is sent after it counts too.
        time.sleep(max(0.0, self.started + MIN_LOAD_SECONDS - time.monotonic()))
        for load in self.loads.values():
            load.__exit__(None, None, None)
        self.reports = {name: load.report() for name, load in self.loads.items()}

    def assert_none_failed(self, what: str) -> None:
        for name, report in self.reports.items():
            print(f"\n{what}: {name} at {SHARE_RATE}/s over HTTPS: {report}")
            assert report.sent >= (MIN_LOAD_SECONDS - 1) * SHARE_RATE, (name, str(report))
            assert report.failed == 0, (name, report.errors)


def up(project: Project, stack: str, *settings: tuple[str, str], check: bool = True) -> str:
    for key, value in settings:
        project.pulumi("config", "set", "--stack", stack, key, value)
    result = project.pulumi("up", "--yes", "--skip-preview", "--color", "never", "--stack", stack, check=check)
    return result.stdout + result.stderr


def caps(host: TestHost, project_name: str) -> set[tuple[int, int]]:
    """(NanoCpus, Memory) of each running container of a compose project."""
    ids = host.ssh("deploy", f"docker ps --quiet --filter label=com.docker.compose.project={project_name}").stdout.split()
    assert ids, f"no container of {project_name}"
    lines = host.ssh("deploy", f"docker inspect --format '{{{{.HostConfig.NanoCpus}}}} {{{{.HostConfig.Memory}}}}' {' '.join(ids)}").stdout
    return {(int(cpus), int(memory)) for cpus, memory in (line.split() for line in lines.splitlines())}


def test_previews_share_the_host_capped_while_the_staging_stack_serves(
    project: Project, host: TestHost, root_ca: Path, previews: tuple[str, ...]
) -> None:
    first, second = previews
    with Loads(host, root_ca, [HOSTNAME]) as loads:
        output = up(project, first, ("app.imageTag", "v2"))
    loads.assert_none_failed(f"{first} deployed beside it")
    assert f"/srv/example-{first}" in output
    with Loads(host, root_ca, [HOSTNAME, preview_hostname(first)]) as loads:
        up(project, second, ("app.imageTag", "v1"))
    loads.assert_none_failed(f"{second} deployed beside them")
    # Each hostname routes to its own stack's app, with a certificate of its own.
    assert [serving(host, root_ca, name) for name in (HOSTNAME, *map(preview_hostname, previews))] == ["v5-slow", "v2", "v1"]
    # A preview's containers are capped (preview.cpus 1, preview.memory 512m); the staging stack's are not.
    for stack in previews:
        assert caps(host, f"example-{stack}") == {(10**9, 512 * 1024**2)}
    assert caps(host, "example") == {(0, 0)}


def test_a_previews_failed_release_leaves_the_other_stacks_serving(
    project: Project, host: TestHost, root_ca: Path, previews: tuple[str, ...]
) -> None:
    first, second = previews
    with Loads(host, root_ca, [HOSTNAME, preview_hostname(second)]) as loads:
        output = up(project, first, ("app.imageTag", "v3-unhealthy"), ("app.healthTimeout", "15"), check=False)
    loads.assert_none_failed(f"{first}'s release v3-unhealthy")
    assert "release v3-unhealthy failed and was rolled back" in output, output[-3000:]
    assert [serving(host, root_ca, name) for name in (HOSTNAME, *map(preview_hostname, previews))] == ["v5-slow", "v2", "v1"]


def test_destroying_a_preview_leaves_the_others_containers_routes_and_certificates(
    project: Project, host: TestHost, root_ca: Path, previews: tuple[str, ...]
) -> None:
    first, second = previews
    certificates = "docker exec dropship-edge find /data/caddy/certificates -name '*.crt'"
    before = set(host.ssh("deploy", certificates).stdout.split())
    with Loads(host, root_ca, [HOSTNAME, preview_hostname(second)]) as loads:
        project.pulumi("destroy", "--yes", "--skip-preview", "--stack", first)
    loads.assert_none_failed(f"{first} destroyed")
    sites = host.ssh("deploy", "docker exec dropship-edge ls /etc/caddy/sites").stdout.split()
    assert sites == ["example-pr-2.caddy", "example.caddy"], sites
    assert not host.ssh("deploy", f"docker ps --all --quiet --filter label=com.docker.compose.project=example-{first}").stdout.strip()
    assert {name for name in before if f"/{HOSTNAME}/" in name or f"/{preview_hostname(second)}/" in name} <= set(
        host.ssh("deploy", certificates).stdout.split()
    )
    assert [serving(host, root_ca, name) for name in (HOSTNAME, preview_hostname(second))] == ["v5-slow", "v1"]
    project.pulumi("destroy", "--yes", "--skip-preview", "--stack", second)
    assert serving(host, root_ca) == "v5-slow"


def test_destroy_removes_the_stacks_site_from_the_edge(project: Project, host: TestHost) -> None:
    project.pulumi("destroy", "--yes", "--skip-preview")
    sites = host.ssh("deploy", "docker exec dropship-edge ls /etc/caddy/sites").stdout.split()
    assert "example.caddy" not in sites
    assert host.ssh("deploy", "docker inspect --format '{{.State.Status}}' dropship-edge").stdout.strip() == "running"
