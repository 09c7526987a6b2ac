"""The shop on a Docker Swarm of three test hosts: their namespaces joined by a private network (a bridge in a
namespace of the suite's own, as droplets share a region's VPC), HAProxy on this machine's loopback standing in
for DigitalOcean's load balancer (TCP 80 and 443 to every server, health-checked on 443).

One server first, with rows in its database; then three (`existingHost.nodes`): the stack grows in place into a
Swarm, the data services and the edge on the first server, the API and the worker on all three. A release
under load through the load balancer; a backup of the database (a task of the stack) and a restore; a worker
server that dies; going back to one server, refused until
`existingHost.removeNodes` allows it, and nothing lost. The tests run in file order and share the deployment.
"""

from __future__ import annotations

import http.client
import json
import shlex
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from dev.harness import Project, TestHost, host_name, pebble, sh, wait_until
from dev.harness.lan import PrivateNetwork
from dev.harness.load_balancer import LoadBalancer
from dev.harness.ports import free_address, free_port
from dev.harness.s3 import S3Server, backup_members
from dev.harness.vegeta import Vegeta

HOSTNAMES = ("swarm-e2e.test",)
NAME = HOSTNAMES[0]
S3_PORT = free_port()
"""The backups' storage on this machine's loopback, reached from the first server (where the timers run)."""
HOSTS = [TestHost(host_name(__name__, str(n)), free_address(), (5000, S3_PORT) if n == 1 else (5000,)) for n in (1, 2, 3)]
BUCKET = "swarm-backups"
BACKUP_UNIT = "dropship-backup-shop-db.service"
LAN = ("dropship-e2e-swarm-lan", "10.77.0.0/24")
SWARM_PY = "/srv/shop/.dropship/swarm.py"


class _NamedHttps(http.client.HTTPSConnection):
    """HTTPS to `name` at `address` (SNI and Host are the name), verified against Pebble's root."""

    def __init__(self, address: str, name: str) -> None:
        super().__init__(name, 443, context=ssl.create_default_context(cadata=pebble.root()), timeout=10)
        self.address = address

    def connect(self) -> None:
        self.sock = self._context.wrap_socket(socket.create_connection((self.address, 443), timeout=10), server_hostname=self.host)  # type: ignore[attr-defined]


def request(address: str, path: str, method: str = "GET", body: dict[str, Any] | None = None, wait: float = 90) -> tuple[int, Any]:
    """(status, JSON) of one request through `address`; retried while nothing answers (a certificate on its way)."""
    deadline = time.monotonic() + wait
    while True:
        connection = _NamedHttps(address, NAME)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            connection.request(method, path, body=payload, headers={"Content-Type": "application/json"} if payload else {})
            answer = connection.getresponse()
            data = answer.read()
            if answer.status < 500:
                return answer.status, json.loads(data) if data.startswith((b"{", b"[")) else data
            error: object = f"{answer.status} {data[:200]!r}"
        except (OSError, ssl.SSLError, http.client.HTTPException) as failure:
            error = failure
        finally:
            connection.close()
        if time.monotonic() > deadline:
            raise AssertionError(f"https://{NAME}{path} via {address}: {error}")
        time.sleep(2)


def orders(address: str) -> list[str]:
    return [o["item"] for o in request(address, "/api/orders")[1]["orders"]]


def wait_for_orders(address: str, items: list[str]) -> None:
    deadline = time.monotonic() + 60
    while orders(address) != items:
        assert time.monotonic() < deadline, f"the worker did not write {items}: {orders(address)}"
        time.sleep(1)


def tasks(host: TestHost, service: str) -> dict[str, str]:
    """The service's running tasks: task name -> the test host it runs on (a host's hostname is its name)."""
    template = "{{.Name}} {{.Node}} {{.CurrentState}}"
    out = host.run(f"docker service ps shop_{service} --filter desired-state=running --format '{template}'").stdout
    running = (line.split() for line in out.splitlines())
    return {fields[0]: fields[1] for fields in running if fields[2] == "Running"}


@pytest.fixture(scope="module")
def lan() -> Iterator[PrivateNetwork]:
    with PrivateNetwork(*LAN) as network:
        yield network


@pytest.fixture(scope="module")
def hosts(shop_registry: None, lan: PrivateNetwork) -> Iterator[list[TestHost]]:
    with ExitStack() as stack:
        started = [stack.enter_context(host.fresh()) for host in HOSTS]
        for host in started:
            lan.attach(host.name)
        yield started


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with S3Server(S3_PORT, tmp_path_factory.mktemp("s3"), buckets=(BUCKET,)) as server:
        yield server


@pytest.fixture(scope="module")
def lb(hosts: list[TestHost]) -> Iterator[LoadBalancer]:
    with LoadBalancer([host.address for host in hosts]) as balancer:
        yield balancer


@pytest.fixture(scope="module")
def project(hosts: list[TestHost], lan: PrivateNetwork, bin_dir: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    project = Project(tmp_path_factory.mktemp("swarm"), bin_dir, app="shop")
    first = hosts[0]
    project.init_local(
        first,
        {
            "existingHost.hostnames": json.dumps(HOSTNAMES),
            "existingHost.id": "swarm-1",
            "existingHost.privateAddress": lan.addresses[first.name],
            "tls.acmeCa": pebble.directory(),
        },
    )
    yield project
    project.pulumi("destroy", "--yes", "--skip-preview", check=False)


def nodes_setting(hosts: list[TestHost], lan: PrivateNetwork) -> str:
    return json.dumps([{"address": h.address, "privateAddress": lan.addresses[h.name], "id": h.name} for h in hosts[1:]])


def test_one_server_serves_the_shop_through_the_load_balancer(project: Project, hosts: list[TestHost], lb: LoadBalancer) -> None:
    # One droplet has no load balancer: DNS points at the droplet, and HTTP-01 comes there.
    pebble.resolve(NAME, hosts[0].address)
    project.up()
    assert request(lb.address, "/api/health")[0] == 200  # retried while the certificate is on its way; the POSTs are not
    for item in ("teapot", "kettle"):
        assert request(lb.address, "/api/orders", "POST", {"item": item}, wait=0)[0] == 202
    wait_for_orders(lb.address, ["teapot", "kettle"])


def test_three_servers_grow_the_stack_in_place_into_a_swarm(
    project: Project, hosts: list[TestHost], lan: PrivateNetwork, lb: LoadBalancer
) -> None:
    first = hosts[0]
    pebble.resolve(NAME, lb.address)  # a Swarm's DNS points at its load balancer
    project.set("existingHost.nodes", nodes_setting(hosts, lan))
    steps = project.preview_steps()
    assert {"swarm-init", "swarm-node-2-join", "swarm-node-3-join", "swarm-members"} <= set(steps)
    # The first server keeps its bootstrap but Docker's live-restore, which Docker refuses in swarm mode.
    assert steps["app-release"] == "update" and steps["host-docker"] == "update"
    assert not {"host-wait", "host-deploy-user", "host-harden-ssh", "host-security-upgrades"} & set(steps)
    output = project.up().stdout
    assert "stopping it to start it on the Swarm" in output
    ready = first.run("docker node ls --format '{{.Status}} {{.ManagerStatus}}'").stdout.splitlines()
    assert sorted(ready) == ["Ready ", "Ready ", "Ready Leader"]
    assert all("live-restore" not in h.run("cat /etc/docker/daemon.json").stdout for h in hosts)
    # dropship's edge became a service of the stack, on the data server with its certificates; so did web (its files are there).
    for service in ("dropship-edge", "web", "db", "redis"):
        assert set(tasks(first, service).values()) == {first.name}, service
    assert set(tasks(first, "api").values()) == {h.name for h in hosts}
    assert orders(lb.address) == ["teapot", "kettle"]  # the data stayed on the first server's volume
    health = request(lb.address, "/api/health")[1]
    assert (health["release"], health["postgres"], health["redis"]) == ("v1", "ok", "ok")
    assert project.preview_steps() == {}


def test_a_release_under_load_through_the_load_balancer_fails_no_request(
    project: Project, hosts: list[TestHost], lb: LoadBalancer, tmp_path: Path
) -> None:
    (tmp_path / "root.pem").write_text(pebble.root())
    project.set("app.imageTag", "v2")
    with Vegeta([f"https://{NAME}/", f"https://{NAME}/api/health"], lb.address, tmp_path / "root.pem", rate=50) as load:
        output = project.up().stdout
    print(f"\nacross the Swarm's release (api, web and worker rolled, one task at a time, new first): {load}")
    assert "pre-deploy hook: docker compose run --rm api python3 -m alembic upgrade head" in output
    assert load.report().sent >= 300
    assert load.report().failed == 0, f"{load.report().errors}\nthe load balancer's checks:\n{lb.log()[-3000:]}"
    assert request(lb.address, "/api/health")[1]["release"] == "v2"
    images = hosts[0].run("docker service inspect shop_api --format '{{.Spec.TaskTemplate.ContainerSpec.Image}}'").stdout
    assert ":v2" in images
    assert orders(lb.address) == ["teapot", "kettle"]


def test_a_backup_and_a_restore_on_the_swarm(project: Project, hosts: list[TestHost], lb: LoadBalancer, s3: S3Server) -> None:
    """The database is a task of the stack on the data server: the backup finds it by the stack's labels, and the
    stack's `restore db` command brings back rows deleted after it."""
    first = hosts[0]
    project.set("backups.databases", '["db"]')
    project.set("backups.schedule", "2099-01-01 03:00:00")  # this test starts the backup itself
    project.set("backups.bucket", BUCKET)
    project.set("backups.endpoint", s3.endpoint)
    project.set("backups.accessKeyId", s3.access_key_id)
    project.set("backups.secretAccessKey", s3.secret_access_key, secret=True)
    project.up()
    backed = first.run(f"systemctl start {BACKUP_UNIT}", check=False)
    assert backed.returncode == 0, first.run(f"journalctl -u {BACKUP_UNIT} -o cat").stdout
    (backup,) = (s3.root / BUCKET / "shop" / "db").glob("*.tar")
    manifest = backup_members(backup)["manifest.tsv"].decode().splitlines()
    assert "shop\ttable\tpublic.orders\t2" in manifest and "shop\trevision\talembic\t0001" in manifest, manifest
    db = first.run("docker ps --quiet --filter label=com.docker.swarm.service.name=shop_db").stdout.strip()
    first.run(f"docker exec {db} psql -X -q -U shop -d shop -c 'DELETE FROM orders'")
    assert orders(lb.address) == []
    ssh, destination, command = shlex.split(project.outputs()["commands"]["restore db"])
    assert (ssh, destination) == ("ssh", f"deploy@{first.address}")
    restored = first.ssh("deploy", command)
    assert f"dropship backup: restored {backup.name} into service db" in restored.stdout
    assert orders(lb.address) == ["teapot", "kettle"]
    assert project.preview_steps() == {}


def test_a_worker_server_that_dies_leaves_the_app_serving(
    hosts: list[TestHost], lan: PrivateNetwork, lb: LoadBalancer, tmp_path: Path
) -> None:
    first, dying = hosts[0], hosts[2]
    (tmp_path / "root.pem").write_text(pebble.root())
    with Vegeta(f"https://{NAME}/api/health", lb.address, tmp_path / "root.pem", rate=20) as load:
        time.sleep(2)
        died = time.time()
        lan.detach(dying.name)  # its network is gone, and so are its processes
        sh("docker", "pause", dying.name)
        deadline = time.monotonic() + 90
        while dying.name in tasks(first, "api").values():
            assert time.monotonic() < deadline, (
                "the Swarm did not move the dead server's tasks within 90 s: " + first.run("docker service ps shop_api").stdout
            )
            time.sleep(2)
        moved = time.time()
        wait_until(
            lambda: len(api := tasks(first, "api")) == 3 and dying.name not in api.values(),
            "three running tasks of shop_api, none on the dead server",
            120,
            lambda: first.run("docker service ps shop_api --no-trunc").stdout,
            interval=2,
        )
        replaced = time.time()
        time.sleep(5)  # the load goes on across the replaced task's first seconds
    print(f"\nthe Swarm moved the dead server's tasks after {moved - died:.0f} s and ran their replacement after {replaced - died:.0f} s")
    print(f"while it was noticed: {load.report(until=moved)}")
    print(f"after: {load.report(since=moved)}")
    assert load.report(since=moved).sent >= 20 * (replaced + 5 - moved) * 0.5
    assert load.report(since=moved).failed == 0, load.report(since=moved).errors
    assert orders(lb.address) == ["teapot", "kettle"]
    sh("docker", "unpause", dying.name)
    lan.reattach(dying.name)


def test_going_back_to_one_server_is_refused_until_the_setting_allows_it(project: Project, hosts: list[TestHost], lb: LoadBalancer) -> None:
    first = hosts[0]
    releases = first.run("cat /srv/shop/releases.log").stdout
    project.set("existingHost.nodes", "[]")
    refused = project.pulumi("up", "--yes", "--skip-preview", check=False)
    assert refused.returncode != 0
    assert "set existingHost.removeNodes: true to take the others out" in refused.stdout
    assert first.run("cat /srv/shop/releases.log").stdout == releases  # no release ran
    assert len(first.run("docker node ls -q").stdout.split()) == 3
    project.set("existingHost.removeNodes", "true")
    project.up()
    assert first.run("docker info --format '{{.Swarm.LocalNodeState}}'").stdout.strip() == "inactive"
    assert '"live-restore": true' in first.run("cat /etc/docker/daemon.json").stdout
    for host in hosts[1:]:
        assert host.run("docker info --format '{{.Swarm.LocalNodeState}}'").stdout.strip() == "inactive"
    assert orders(lb.address) == ["teapot", "kettle"]
    assert request(lb.address, "/api/health")[1]["release"] == "v2"
    assert project.preview_steps() == {}
