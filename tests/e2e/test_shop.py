"""The shop (examples/shop), as `make up` deploys it: HTTPS for the stack's hostnames with certificates
from Pebble by HTTP-01, the API and the worker on Postgres and Redis, migrations before traffic, and
the data (rows and certificates) on the stack's volume, still there on a new host that gets it; then
backups: the host's timer uploads a backup of every database and the roles, each checked by a restore drill,
to S3-compatible storage (`rclone serve s3` on this machine's loopback) on its own and asks the heartbeat URL;
a failed upload and a dump that does not restore are loud and upload nothing; a new host without the volume
gets the rows back by the stack's `restore db` command, after a safety backup of what it held.

The tests run in file order and share this module's deployment.
"""

from __future__ import annotations

import json
import re
import shlex
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from dev.harness import Project, TestHost, pebble, wait_until
from dev.harness.ports import free_port
from dev.harness.receiver import PostReceiver
from dev.harness.s3 import S3Server, backup_members
from dev.harness.vegeta import Vegeta

HOSTNAMES = ("shop-e2e.test", "www.shop-e2e.test")
VOLUME = "dropship-e2e-shop-data"
DEVICE = f"/dev/disk/by-id/scsi-0DO_Volume_{VOLUME}"
S3_PORT, FAILURE_PORT = free_port(), free_port()
"""The S3 server's and the failure URL's ports on this machine's loopback, forwarded into the host."""
HOST = replace(TestHost.for_module(__name__, forward=(5000, S3_PORT, FAILURE_PORT)), volume=VOLUME)
BUCKET = "shop-backups"
BACKUP_UNIT = "dropship-backup-shop-db.service"
BACKUP_TIMER = "dropship-backup-shop-db.timer"
BACKUP_LINE = rf"dropship backup: service db -> dropship:{BUCKET}/shop/db/(\S+\.tar) \((\d+) bytes; (.*); restore drill passed\)"
"""What backup.py prints once a checked backup is uploaded: its name, size and what it holds."""
UP: dict[str, str] = {}  # the first `pulumi up`'s output
FAILED_BACKUP: dict[str, str] = {}  # the invocation of the backup whose upload failed


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    certificate: dict[str, Any]
    """The server's certificate, as ssl's getpeercert() gives it: verified against Pebble's root."""

    def json(self) -> Any:
        return json.loads(self.body)


def https(host: TestHost, name: str, path: str = "/", method: str = "GET", body: bytes = b"", wait: float = 60) -> Answer:
    """A request to `name` at the host's address, verified against Pebble's root for that name (no -k).
    Retries while Caddy is still obtaining the certificate."""
    deadline = time.monotonic() + wait
    while True:
        context = ssl.create_default_context(cadata=pebble.root())
        try:
            with (
                socket.create_connection((host.address, 443), timeout=10) as raw,
                context.wrap_socket(raw, server_hostname=name) as tls,
            ):
                request = f"{method} {path} HTTP/1.1\r\nHost: {name}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                tls.sendall(request.encode() + body)
                response = _read_all(tls)
                certificate = tls.getpeercert()
                assert certificate is not None
                return _answer(response, certificate)
        except (ssl.SSLError, ConnectionError) as error:
            if time.monotonic() > deadline:
                raise AssertionError(f"https://{name}{path} did not answer with a Pebble certificate: {error}") from error
            time.sleep(2)


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _answer(response: bytes, certificate: dict[str, Any]) -> Answer:
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if headers.get("transfer-encoding") == "chunked":
        body = _unchunk(body)
    return Answer(status=int(lines[0].split()[1]), headers=headers, body=body, certificate=certificate)


def _unchunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, body = out + body[:size], body[size + 2 :]
    return out


def serial(host: TestHost, name: str) -> str:
    return str(https(host, name).certificate["serialNumber"])


def orders(host: TestHost) -> list[str]:
    return [o["item"] for o in https(host, HOSTNAMES[0], "/api/orders").json()["orders"]]


def wait_for_orders(host: TestHost, items: list[str]) -> None:
    deadline = time.monotonic() + 30
    while orders(host) != items:
        assert time.monotonic() < deadline, f"the worker did not write {items}: {orders(host)}"
        time.sleep(1)


@pytest.fixture(scope="module")
def host(shop_registry: None) -> Iterator[TestHost]:
    HOST.stop()
    HOST.remove_volume()
    for name in HOSTNAMES:
        pebble.resolve(name, HOST.address)
    with HOST.fresh() as test_host:
        yield test_host
    HOST.remove_volume()


@pytest.fixture(scope="module")
def project(host: TestHost, bin_dir: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    project = Project(tmp_path_factory.mktemp("shop"), bin_dir, app="shop")
    settings = {
        "existingHost.hostnames": json.dumps(HOSTNAMES),
        "existingHost.volumeDevice": DEVICE,
        "existingHost.id": "first",
        "tls.acmeCa": pebble.directory(),
    }
    project.init_local(host, settings)
    yield project
    project.pulumi("destroy", "--yes", "--skip-preview", check=False)


def test_fresh_up_serves_every_hostname_over_https_with_a_certificate_from_pebble(project: Project, host: TestHost) -> None:
    UP["output"] = project.up().stdout
    assert project.outputs()["urls"] == [f"https://{name}" for name in HOSTNAMES]
    for name in HOSTNAMES:
        answer = https(host, name)
        assert answer.status == 200
        assert b"<h1>Shop</h1>" in answer.body
        assert ("DNS", name) in answer.certificate["subjectAltName"]
        issuer = dict(item for rdn in answer.certificate["issuer"] for item in rdn)
        assert issuer["commonName"].startswith("Pebble Intermediate CA"), issuer


def test_http_redirects_to_https(host: TestHost) -> None:
    with socket.create_connection((host.address, 80), timeout=10) as sock:
        sock.sendall(f"GET /api/health HTTP/1.1\r\nHost: {HOSTNAMES[0]}\r\nConnection: close\r\n\r\n".encode())
        head = _read_all(sock).split(b"\r\n\r\n")[0].decode().split("\r\n")
    assert head[0].split()[1] == "308"
    assert f"Location: https://{HOSTNAMES[0]}/api/health" in head


def test_health_checks_postgres_and_redis_after_the_migrations(host: TestHost) -> None:
    health = https(host, HOSTNAMES[0], "/api/health").json()
    assert health == {"status": "ok", "release": "v1", "postgres": "ok", "schema": "0001", "redis": "ok"}
    output = UP["output"]
    migrated = output.index("Running upgrade  -> 0001")
    assert output.index("pre-deploy hook: docker compose run --rm api python3 -m alembic upgrade head") < migrated
    assert migrated < output.index("dropship: release v1: starting")


def test_the_worker_writes_the_orders_the_api_queued(host: TestHost) -> None:
    for item in ("teapot", "kettle"):
        answer = https(host, HOSTNAMES[1], "/api/orders", method="POST", body=json.dumps({"item": item}).encode())
        assert answer.status == 202
    wait_for_orders(host, ["teapot", "kettle"])


def test_the_data_lives_on_the_volume(host: TestHost) -> None:
    real = host.run(f"readlink -f {DEVICE}").stdout.strip()
    assert host.run("findmnt -n -o SOURCE,FSTYPE /mnt/data").stdout.split() == [real, "ext4"]
    fstab = host.run("grep 'dropship data volume' /etc/fstab").stdout.splitlines()
    assert fstab[0].split()[:4] == [DEVICE, "/mnt/data", "ext4", "defaults,nofail,discard,noatime"]
    assert host.run("findmnt -n -o TARGET /var/lib/docker/volumes").stdout.strip() == "/var/lib/docker/volumes"
    for volume in ("shop_db-data", "shop_redis-data", "dropship-edge-data"):  # the last: the edge's certificates
        assert host.run(f"test -d /mnt/data/docker-volumes/{volume}/_data").returncode == 0, volume
    assert "/var/lib/docker/volumes" in host.run("systemctl show -p RequiresMountsFor docker.service").stdout


def test_a_release_under_https_load_fails_no_request_and_keeps_the_certificates(project: Project, host: TestHost, tmp_path: Path) -> None:
    before = {name: serial(host, name) for name in HOSTNAMES}
    project.set("app.imageTag", "v2")
    (tmp_path / "root.pem").write_text(pebble.root())
    urls = [f"https://{HOSTNAMES[0]}/", f"https://{HOSTNAMES[0]}/api/health"]
    with Vegeta(urls, host.address, tmp_path / "root.pem", rate=100) as load:
        project.up()
    print(f"\nacross the release (api and web switched by the edge, worker rolled), over HTTPS: {load}")
    assert load.report().sent >= 500
    assert load.report().failed == 0, load.report().errors
    assert https(host, HOSTNAMES[0], "/api/health").json()["release"] == "v2"
    assert {name: serial(host, name) for name in HOSTNAMES} == before
    assert orders(host) == ["teapot", "kettle"]


def test_rows_and_certificates_survive_a_new_host_that_gets_the_same_volume(project: Project, host: TestHost) -> None:
    before = {name: serial(host, name) for name in HOSTNAMES}
    host.stop()  # the droplet is destroyed; its volume is kept
    host.start()  # a new droplet at the same address, first boot again, the volume attached
    assert host.run("command -v docker", check=False).returncode != 0  # a fresh host: no Docker yet
    project.set("existingHost.id", "second")
    project.up()
    assert orders(host) == ["teapot", "kettle"]
    assert {name: serial(host, name) for name in HOSTNAMES} == before


def test_a_second_up_changes_nothing(project: Project) -> None:
    project.up()
    assert set(project.last_update_changes()) == {"same"}


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with S3Server(S3_PORT, tmp_path_factory.mktemp("s3"), buckets=(BUCKET,)) as server:
        yield server


@pytest.fixture(scope="module")
def failures() -> Iterator[PostReceiver]:
    with PostReceiver(FAILURE_PORT) as receiver:
        yield receiver


def dumps(s3: S3Server) -> list[Path]:
    return sorted((s3.root / BUCKET / "shop" / "db").glob("*.tar"))


def remote_command(line: str, host: TestHost) -> str:
    """The command of one of the stack's `commands` outputs, an `ssh deploy@<host> '<command>'` line."""
    ssh, destination, command = shlex.split(line)
    assert (ssh, destination) == ("ssh", f"deploy@{host.address}")
    return command


def backup_unit(host: TestHost) -> dict[str, str]:
    """The backup service's last invocation, its state and result, and the start jobs queued for it."""
    shown = host.run(f"systemctl show -p InvocationID -p ActiveState -p Result {BACKUP_UNIT}").stdout
    state = dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)
    state["jobs"] = host.run(f"systemctl list-jobs --no-legend {BACKUP_UNIT}").stdout.strip()
    return state


def wait_for_backup_run(host: TestHost, what: str, after: str = "", timeout: float = 90) -> dict[str, str]:
    """Waits until a run of the backup service other than the invocation `after` has ended; its state."""
    state: dict[str, str] = {}

    def ended() -> bool:
        state.update(backup_unit(host))
        return state["InvocationID"] not in ("", after) and state["ActiveState"] != "activating"

    wait_until(
        ended,
        f"{what}: a run of {BACKUP_UNIT} after invocation '{after}' to end",
        timeout,
        lambda: f"{state}\n" + host.run(f"systemctl list-timers --all; journalctl -u {BACKUP_UNIT} -o cat").stdout,
        interval=1,
    )
    return state


def hold_backups_still(host: TestHost) -> dict[str, str]:
    """Stops the backup timer and waits until its run in flight, if any, has ended: from then on only the
    test starts the service. The state of its last invocation."""
    host.run(f"systemctl stop {BACKUP_TIMER}")
    state: dict[str, str] = {}

    def idle() -> bool:
        state.update(backup_unit(host))
        return state["ActiveState"] != "activating" and not state["jobs"]

    wait_until(idle, "the backup the timer started to end", 90, lambda: str(state), interval=1)
    return state


def wait_for_journal(host: TestHost, invocation: str, pattern: str, timeout: float = 30) -> re.Match[str]:
    """The first match of `pattern` in the journal of one invocation of the backup service, once journald has it."""
    journal = [""]

    def match() -> re.Match[str] | None:
        journal[0] = host.run(f"journalctl _SYSTEMD_INVOCATION_ID={invocation} -o cat").stdout
        return re.search(pattern, journal[0])

    return wait_until(
        match, f"'{pattern}' in the journal of {BACKUP_UNIT}'s invocation {invocation}", timeout, lambda: journal[0], interval=1
    )


def test_the_backup_timer_uploads_a_dump_of_the_database_on_its_own(
    project: Project, host: TestHost, s3: S3Server, failures: PostReceiver
) -> None:
    """Waits for the timer (every 20 s) to run the backup service on its own, and judges that run."""
    project.set("backups.databases", '["db"]')
    project.set("backups.schedule", "*-*-* *:*:0/20")
    project.set("backups.bucket", BUCKET)
    project.set("backups.endpoint", s3.endpoint)
    project.set("backups.accessKeyId", s3.access_key_id)
    project.set("backups.secretAccessKey", s3.secret_access_key, secret=True)
    project.set("backups.failureUrl", failures.url())
    project.set("backups.heartbeatUrl", failures.url("/heartbeat"))
    output = project.up().stdout
    assert s3.secret_access_key not in output
    assert project.preview_steps() == {}
    run = wait_for_backup_run(host, "the timer's first backup")  # nobody but the timer starts the service
    assert run["Result"] == "success", host.run(f"journalctl _SYSTEMD_INVOCATION_ID={run['InvocationID']} -o cat").stdout
    line = wait_for_journal(host, run["InvocationID"], BACKUP_LINE)
    uploaded = line.group(1)
    assert line.group(3) == "postgres: no tables; shop: 2 tables, 3 rows, alembic 0001", line.group(0)
    # Every database (named in databases.tsv, one pg_dump each, custom format) and the roles, and the tables'
    # rows and migration revision read in the dump's own transaction.
    held = backup_members(s3.root / BUCKET / "shop" / "db" / uploaded)
    assert held["databases.tsv"] == b"0\tpostgres\n1\tshop\n"
    assert held["0.dump"].startswith(b"PGDMP") and held["1.dump"].startswith(b"PGDMP")
    assert b"CREATE ROLE shop;" in held["globals.sql"]
    assert held["manifest.tsv"].decode().splitlines() == [
        "shop\ttable\tpublic.alembic_version\t1",
        "shop\ttable\tpublic.orders\t2",
        "shop\trevision\talembic\t0001",
    ]
    assert "/heartbeat" in failures.asked  # after the good run
    assert host.run("docker ps --all --quiet --filter label=dropship.drill=true").stdout == ""  # the drill's server is gone
    assert host.run("stat -c '%a %U' /srv/shop/.dropship/backup/.env").stdout.split() == ["600", "deploy"]
    assert s3.secret_access_key not in host.run(f"systemctl cat {BACKUP_UNIT} {BACKUP_TIMER}").stdout
    assert s3.secret_access_key not in project.pulumi("stack", "export").stdout
    # The deploy user reads its journal, and lists the backups with the stack's one-line commands. The timer
    # goes on meanwhile: the journal names the latest uploads, each of which the listing that follows has.
    lines = project.outputs()["commands"]
    journal = host.ssh("deploy", remote_command(lines["last backup db"], host)).stdout
    named = [match.group(1) for match in re.finditer(BACKUP_LINE, journal)]
    assert named, journal
    listed = host.ssh("deploy", remote_command(lines["backups db"], host)).stdout.split()
    assert uploaded in listed
    assert set(named) <= set(listed), (named, listed)
    logs = host.ssh("deploy", f"timeout 5 {remote_command(lines['logs'], host)} 2>&1", check=False).stdout
    logs = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", logs)  # compose's terminal escapes
    for service in ("api", "db"):  # Postgres logs to stderr
        assert re.search(rf"^{service}-\d+ +\| ", logs, re.M), logs[-2000:]
    assert " v2 " in host.ssh("deploy", remote_command(lines["releases"], host)).stdout
    assert failures.received == []


def test_a_backup_whose_upload_fails_is_failed_in_the_journal_and_pings_the_failure_url(
    host: TestHost, s3: S3Server, failures: PostReceiver
) -> None:
    """Holds the timer still and judges the one run it starts by hand (its invocation), then starts the timer again."""
    before = hold_backups_still(host)
    s3.stop()
    try:
        started = host.run(f"systemctl start {BACKUP_UNIT}", check=False)
        assert started.returncode != 0
        run = backup_unit(host)
        assert run["InvocationID"] != before["InvocationID"], (before, run)
        assert (run["ActiveState"], run["Result"]) == ("failed", "exit-code"), run
        wait_for_journal(host, run["InvocationID"], r"dropship backup: upload of \S+ failed")
        assert [report for report in failures.received if report.startswith("backup of service db of shop failed on ")], failures.received
        FAILED_BACKUP["invocation"] = run["InvocationID"]
    finally:
        s3.start()
        host.run(f"systemctl start {BACKUP_TIMER}")


def psql(host: TestHost, sql: str) -> str:
    """SQL in the shop's live database, as its Postgres user."""
    db = host.run("docker ps --quiet --filter label=com.docker.compose.service=db").stdout.strip()
    return host.run(f"docker exec {db} psql -X -q -v ON_ERROR_STOP=1 -U shop -d shop -c {shlex.quote(sql)}").stdout


def test_a_dump_that_does_not_restore_fails_the_backup_uploads_nothing_and_pings_the_failure_url(
    host: TestHost, s3: S3Server, failures: PostReceiver
) -> None:
    """A check constraint whose function finds its table by the search path: pg_dump takes it, but a restore
    (which runs with an empty search path) cannot load its rows. The drill notices; the upload never happens."""
    hold_backups_still(host)
    before = dumps(s3)
    reports = len(failures.received)
    psql(
        host,
        "CREATE FUNCTION order_count() RETURNS bigint LANGUAGE sql STABLE AS 'SELECT count(*) FROM orders';\n"
        "CREATE TABLE order_marks (n bigint CHECK (n <= order_count()));\n"
        "INSERT INTO order_marks VALUES (1);\n",
    )
    try:
        started = host.run(f"systemctl start {BACKUP_UNIT}", check=False)
        assert started.returncode != 0
        run = backup_unit(host)
        assert (run["ActiveState"], run["Result"]) == ("failed", "exit-code"), run
        wait_for_journal(host, run["InvocationID"], r"dropship backup: the restore drill failed: pg_restore of database shop failed")
        assert dumps(s3) == before
        assert [r for r in failures.received[reports:] if "the restore drill failed" in r], failures.received
        assert host.run("docker ps --all --quiet --filter label=dropship.drill=true").stdout == ""
        FAILED_BACKUP["invocation"] = run["InvocationID"]
    finally:
        psql(host, "DROP TABLE order_marks; DROP FUNCTION order_count();\n")
        host.run(f"systemctl start {BACKUP_TIMER}")


def test_restore_brings_the_rows_back_on_a_new_host_without_the_volume(project: Project, host: TestHost, s3: S3Server) -> None:
    """Waits for the timer's next run after the failed one (the storage is back), then holds the timer still so
    that the dump restored is the latest."""
    assert orders(host) == ["teapot", "kettle"]
    run = wait_for_backup_run(host, "the timer's backup once the storage came back", after=FAILED_BACKUP["invocation"], timeout=60)
    assert run["Result"] == "success", run
    hold_backups_still(host)
    latest = dumps(s3)[-1]
    host.stop()  # the droplet is destroyed, and this time its volume too
    host.remove_volume()
    host.start()
    project.set("existingHost.id", "third")
    project.set("backups.schedule", "2099-01-01 03:00:00")  # no backup of the new, empty database before the restore
    project.up()
    assert orders(host) == []  # a new database: the migrations ran, no rows
    restored = host.ssh("deploy", remote_command(project.outputs()["commands"]["restore db"], host))
    assert f"dropship backup: restored {latest.name} into service db" in restored.stdout
    assert orders(host) == ["teapot", "kettle"]
    # What the new host held before (the migrations' empty table) was kept first, apart from the backups.
    (safety,) = (s3.root / BUCKET / "shop" / "db" / "before-restore").glob("*.tar")
    assert safety.name.endswith(f"-before-{latest.stem}.tar")
    assert "shop\ttable\tpublic.orders\t0" in backup_members(safety)["manifest.tsv"].decode().splitlines()
    assert latest.name in host.ssh("deploy", remote_command(project.outputs()["commands"]["backups db"], host)).stdout.split()
    assert https(host, HOSTNAMES[0], "/api/health").json()["postgres"] == "ok"


def test_turning_backups_off_removes_the_timers_and_their_keys(project: Project, host: TestHost) -> None:
    # The old host's step was deleted when the new host's was made, at the same address: it removed nothing there.
    assert host.run("systemctl is-enabled dropship-backup-shop-db.timer").stdout.strip() == "enabled"
    project.set("backups.databases", "[]")
    project.up()
    assert host.run("ls /etc/systemd/system").stdout.count("dropship-backup-") == 0
    assert host.run("test -e /srv/shop/.dropship/backup", check=False).returncode != 0
    assert project.preview_steps() == {}
