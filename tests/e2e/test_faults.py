"""Faults against the real engine and a real test host, each followed by a plain `pulumi up` that converges with nothing lost.

Own test hosts at addresses of their own (the deployment the tests share, in file order,
and a throwaway one), and the app's images pulled through a TCP relay on a free port of
this machine's loopback (forwarded into the hosts) to the shared registry on 127.0.0.1:5000: stopping the relay makes "the
registry" unreachable for this test host only, without touching the registry that other
test runs use, and starting it again is the recovery (no configuration changes between the
failed `up` and the one that converges).

Every test records what it did (pytest's record_property) for dev/reliability.py.
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from dev.harness import REGISTRY, Project, TestHost, free_port, sh, wait_until

Record = Callable[[str, object], None]

RELAY_PORT = free_port()
SECRETS = {
    "env.APP_SECRET": "faults",
    "env.REGISTRY": f"127.0.0.1:{RELAY_PORT}",
}
DIAL_ERROR_LIMIT = 3
APP_DIR = "/srv/example"
DATA_FILE = "/data/survivor.txt"
DATA = "written before the faults"
WEB = "$(docker ps -q --filter label=com.docker.compose.service=web)"
"""The web service's container, whatever its number (a release rolls it)."""


class Relay:
    """A TCP relay 127.0.0.1:port -> target; stop() refuses new connections and cuts the open ones."""

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.port, self.target = port, target
        self.server: socket.socket | None = None
        self.connections: list[socket.socket] = []
        self.lock = threading.Lock()

    def start(self) -> None:
        self.server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self.server,), daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown(socket.SHUT_RDWR)  # wakes accept()
            self.server.close()
            self.server = None
        with self.lock:
            for connection in self.connections:
                connection.close()
            self.connections.clear()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self.lock:
                self.connections += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def serving(host: TestHost | None = None) -> dict[str, str]:
    """The app's health through the edge proxy of `host` (default: this module's main host)."""
    with urllib.request.urlopen((host or MAIN_HOST).url("/health"), timeout=5) as response:
        assert response.status == 200
        return dict(json.loads(response.read()))


def wait_serving(timeout: float) -> float:
    """Seconds until the app answers 200 through the edge proxy."""
    start = time.monotonic()
    errors: list[str] = []

    def answers() -> bool:
        try:
            serving()
            return True
        except (OSError, http.client.HTTPException) as error:
            errors[:] = [repr(error)]
            return False

    wait_until(answers, f"the app to answer 200 at {MAIN_HOST.url('/health')}", timeout, lambda: f"last error: {errors}")
    return time.monotonic() - start


def new_project(path: Path, host: TestHost, bin_dir: str) -> Project:
    project = Project(path, bin_dir)
    project.init_local(host, {"ssh.dialErrorLimit": str(DIAL_ERROR_LIMIT)}, SECRETS)
    return project


def timed_up(project: Project, *extra: str, check: bool = True) -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.monotonic()
    result = project.pulumi("up", "--yes", "--skip-preview", *extra, check=check)
    return result, time.monotonic() - start


def output_of(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def data_in_volume(host: TestHost) -> str:
    return host.run(f"docker exec {WEB} cat {DATA_FILE}").stdout.strip()


def descendants(table: dict[int, tuple[int, str]], pid: int) -> list[int]:
    children = [child for child, (parent, _) in table.items() if parent == pid]
    return children + [d for child in children for d in descendants(table, child)]


def cut_ssh_during_docker_install(
    project: Project, host: TestHost, phase: str, kill_install: bool
) -> tuple[subprocess.CompletedProcess[str], str, float]:
    """Starts a fresh `pulumi up`, waits until dpkg runs `phase` under install-docker.sh, then kills
    that command's sshd session (the connection drops), and with kill_install its processes too
    (as a reboot or the OOM killer would). Returns the failed up, what dpkg was doing, and when."""
    start = time.monotonic()
    up = subprocess.Popen(
        ["pulumi", "up", "--yes", "--skip-preview", "--non-interactive"],
        cwd=project.dir,
        env=project.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    caught = ""
    try:
        while not caught and up.poll() is None and time.monotonic() - start < 600:
            table = host.processes()
            for pid, (parent, args) in table.items():
                if not (args.startswith("bash -c") and "install-docker.sh" in args):
                    continue
                below = descendants(table, pid)
                dpkg = [table[p][1] for p in below if table[p][1].startswith("/usr/bin/dpkg ") and phase in table[p][1]]
                if not dpkg:
                    continue
                sessions = []
                while parent in table and table[parent][1].startswith("sshd-session"):
                    sessions.append(parent)
                    parent = table[parent][0]
                assert sessions, f"no sshd session above the install: {table}"
                victims = sessions + ([pid, *below] if kill_install else [])
                host.run(f"kill -KILL {' '.join(map(str, victims))}", check=False)
                caught = dpkg[0]
                break
            else:
                time.sleep(0.2)
        out, _ = up.communicate(timeout=600)
    finally:
        if up.poll() is None:
            up.kill()
            up.communicate()
    assert caught, f"dpkg {phase} never ran under install-docker.sh:\n{out[-3000:]}"
    return subprocess.CompletedProcess(up.args, up.returncode, out, ""), caught, time.monotonic() - start


MAIN_HOST = TestHost.for_module(__name__, forward=(5000, RELAY_PORT))
THROWAWAY_HOST = TestHost.for_module(__name__, "2", forward=(5000, RELAY_PORT))


@pytest.fixture(scope="module")
def relay(registry: None) -> Iterator[Relay]:
    for test_host in (MAIN_HOST, THROWAWAY_HOST):  # a clean slate: no host of an earlier run is left
        test_host.stop()
    registry_host, registry_port = REGISTRY.rsplit(":", 1)
    relay = Relay(RELAY_PORT, (registry_host, int(registry_port)))
    relay.start()
    yield relay
    relay.stop()


@pytest.fixture(scope="module")
def host(relay: Relay) -> Iterator[TestHost]:
    with MAIN_HOST.fresh() as test_host:
        yield test_host


@pytest.fixture(scope="module")
def project(host: TestHost, bin_dir: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    project = new_project(tmp_path_factory.mktemp("faults"), host, bin_dir)
    yield project
    project.pulumi("destroy", "--yes", "--skip-preview", check=False)


def test_install_killed_mid_dpkg_by_a_cut_then_up_finishes_it(relay: Relay, bin_dir: str, tmp_path: Path, record_property: Record) -> None:
    """The harsh cut: the connection and the install's own processes die while dpkg configures
    the packages (a reboot, the OOM killer). apt then refuses to run until `dpkg --configure -a`;
    install-docker.sh finishes the interrupted run first. A throwaway host, gone afterwards."""
    record_property("fault", "SSH cut in the Docker install, install killed")
    throwaway = THROWAWAY_HOST
    throwaway.stop()
    throwaway.start()
    try:
        project = new_project(tmp_path / "project", throwaway, bin_dir)
        failed, _, failed_after = cut_ssh_during_docker_install(project, throwaway, "--configure", kill_install=True)
        assert failed.returncode != 0
        assert "host-docker" in failed.stdout
        audit = throwaway.run("dpkg --audit", check=False).stdout
        assert "unpacked but not yet configured" in audit or "half configured" in audit, audit
        converged, seconds = timed_up(project)
        assert "finishing an interrupted package installation (dpkg --configure -a)" in converged.stdout
        assert throwaway.run("dpkg --audit").stdout.strip() == ""
        assert serving(throwaway)["release"] == "v1"
        assert project.preview_steps() == {}
        record_property("outcome", f"up failed ({failed_after:.0f} s); dpkg left half-configured")
        record_property("converged_in", round(seconds, 1))
        record_property("kept", "dpkg finished, app serves")
        project.pulumi("destroy", "--yes", "--skip-preview")
    finally:
        throwaway.stop()


DOCKER_INSTALL = "bash -c . /dev/stdin install-docker.sh"
"""How dropship's Docker step shows in the host's process table."""


def docker_install_steps(table: dict[int, tuple[int, str]]) -> list[int]:
    return [pid for pid, (_, args) in table.items() if args.startswith(DOCKER_INSTALL)]


def docker_install_waits_for_the_lists_lock(host: TestHost) -> bool:
    """Dropship's Docker step is in its pause between two tries of `apt-get update` (after the first failed)."""
    table = host.processes()
    steps = docker_install_steps(table)
    return any(parent in steps and args == "sleep 3" for parent, args in table.values())


def docker_install_waits_for_dpkg(host: TestHost) -> bool:
    """Dropship's Docker step runs `apt-get install`, paused in apt's own wait for dpkg's lock (DPkg::Lock::Timeout):
    before it takes that lock, apt sleeps only there."""
    table = host.processes()
    installs = [
        pid
        for step in docker_install_steps(table)
        for pid in descendants(table, step)
        if "apt-get" in table[pid][1] and " install " in table[pid][1]
    ]
    return any(host.asleep(pid) for pid in installs)


def test_apt_busy_at_first_boot_then_a_fresh_up_waits_for_it(relay: Relay, bin_dir: str, tmp_path: Path, record_property: Record) -> None:
    """A new droplet's first minutes: apt-daily holds the package lists lock, then unattended-upgrades
    holds dpkg's (the test host's first-boot unit). `apt-get update` fails at once on a held lists lock
    whatever DPkg::Lock::Timeout says; the Docker install waits for both locks. The unit holds each lock
    until the test has seen dropship's install wait for it (its process table), then lets go."""
    record_property("fault", "apt busy at first boot")
    busy = replace(THROWAWAY_HOST, apt_busy="held")
    busy.stop()
    busy.start()

    def first_boot_journal() -> str:
        return busy.run("journalctl -u testhost-first-boot-apt -o cat --no-pager").stdout

    try:
        wait_until(
            lambda: "holding /var/lib/apt/lists/lock" in first_boot_journal(),
            "the first-boot unit to hold apt's lists lock",
            60,
            first_boot_journal,
        )
        plain = busy.run("apt-get -o DPkg::Lock::Timeout=5 update", check=False)
        assert plain.returncode != 0 and "Could not get lock /var/lib/apt/lists/lock" in plain.stderr, plain.stderr
        project = new_project(tmp_path / "project", busy, bin_dir)
        up: dict[str, tuple[subprocess.CompletedProcess[str], float]] = {}
        thread = threading.Thread(target=lambda: up.setdefault("result", timed_up(project, check=False)), daemon=True)
        thread.start()

        def up_output() -> str:
            return output_of(up["result"][0])[-6000:] if "result" in up else "(`pulumi up` still runs)"

        def while_up_runs(seen: Callable[[TestHost], bool], what: str) -> None:
            wait_until(lambda: seen(busy) or "result" in up, what, 600, up_output)
            assert "result" not in up, up_output()

        while_up_runs(docker_install_waits_for_the_lists_lock, "dropship's Docker step to wait for the lists lock")
        busy.release_apt_lock("lists")
        wait_until(
            lambda: "holding /var/lib/dpkg/lock-frontend" in first_boot_journal(),
            "the first-boot unit to hold dpkg's locks",
            300,
            first_boot_journal,
        )
        while_up_runs(docker_install_waits_for_dpkg, "dropship's apt-get install to wait for dpkg's lock")
        busy.release_apt_lock("dpkg")
        thread.join(timeout=1200)
        converged, seconds = up["result"]
        assert converged.returncode == 0, up_output()
        install = "\n".join(line for line in converged.stdout.splitlines() if "host-docker" in line or "host-wait" in line)
        assert "waiting for apt's package lists lock (held by process" in install, install[-6000:]
        assert "Could not get lock /var/lib/dpkg/lock-frontend" in install, install[-6000:]  # apt's own wait (DPkg::Lock::Timeout)
        assert "apt is idle" in first_boot_journal()
        assert serving(busy)["release"] == "v1"
        record_property("outcome", "first up waited for apt's lists lock, then dpkg's")
        record_property("converged_in", round(seconds, 1))
        record_property("kept", "fresh host deployed")
        project.pulumi("destroy", "--yes", "--skip-preview")
    finally:
        busy.stop()


def test_ssh_cut_during_docker_install_then_up_converges(project: Project, host: TestHost, record_property: Record) -> None:
    """The connection drops while dpkg unpacks Docker; the remote install lives on by itself
    (no terminal, no SIGHUP). `pulumi up` fails; the next one waits for apt's lock if it has to."""
    record_property("fault", "SSH cut in the Docker install")
    failed, _, failed_after = cut_ssh_during_docker_install(project, host, "--unpack", kill_install=False)
    assert failed.returncode != 0
    assert "host-docker" in failed.stdout and "remote command exited without exit status" in failed.stdout
    _, seconds = timed_up(project)
    assert host.run("dpkg --audit").stdout.strip() == ""
    assert "Docker Compose version" in host.run("docker compose version").stdout
    assert serving()["release"] == "v1"
    assert project.preview_steps() == {}
    record_property("outcome", f"up failed ({failed_after:.0f} s): no exit status")
    record_property("converged_in", round(seconds, 1))
    record_property("kept", "dpkg clean, app serves")


def test_named_volume_survives_a_release(project: Project, host: TestHost, record_property: Record) -> None:
    record_property("check", "data in a named volume")
    host.run(f"docker exec {WEB} sh -c 'echo {DATA} > {DATA_FILE}'")
    project.set("app.imageTag", "v2")
    project.up()
    assert serving()["release"] == "v2"
    assert data_in_volume(host) == DATA


def test_sshd_down_when_up_starts_fails_clearly_then_up_converges(project: Project, host: TestHost, record_property: Record) -> None:
    record_property("fault", "sshd down when `up` starts")
    host.run("systemctl stop ssh")
    try:
        project.set("app.imageTag", "v1")
        failed, failed_after = timed_up(project, check=False)
    finally:
        host.run("systemctl start ssh")
    assert failed.returncode != 0
    # On a droplet the kernel refuses the connection; through the test host's forwarder (pasta) the TCP
    # connection is accepted and then closed, so the SSH handshake fails instead. Either way: N dials, then a clear stop.
    refused = f"after {DIAL_ERROR_LIMIT} failed attempts: dial tcp {host.address}:22: connect: connection refused"
    closed = f"after {DIAL_ERROR_LIMIT} failed attempts: ssh: handshake failed"
    assert refused in output_of(failed) or closed in output_of(failed), output_of(failed)[-3000:]
    assert serving()["release"] == "v2"  # nothing changed on the host
    _, seconds = timed_up(project)
    assert serving()["release"] == "v1"
    assert data_in_volume(host) == DATA
    record_property("outcome", f"up failed ({failed_after:.0f} s): {DIAL_ERROR_LIMIT} dials failed")
    record_property("converged_in", round(seconds, 1))
    record_property("kept", "old release served; data kept")


def test_host_restart_brings_the_app_back_with_its_data(project: Project, host: TestHost, record_property: Record) -> None:
    """`docker restart` of the test host: systemd ignores SIGTERM, so it is killed after 10 s, like a power cut."""
    record_property("fault", "test host restarted (killed)")
    sh("docker", "restart", host.name)
    host.start()  # the new network namespace gets its connection, as a droplet's network comes back
    came_back = wait_serving(timeout=180)
    assert serving()["release"] == "v1"
    assert data_in_volume(host) == DATA
    # By service: a rolled service's container has a new number after each release.
    states = host.run("""docker ps --all --format '{{.Label "com.docker.compose.service"}} {{.State}}'""").stdout.split("\n")
    assert sorted(s for s in states if s) == ["edge running", "web running"]
    _, seconds = timed_up(project)
    assert set(project.last_update_changes()) == {"same"}
    record_property("outcome", f"app back by itself {came_back:.0f} s after boot")
    record_property("converged_in", round(seconds, 1))
    record_property("kept", "no change; data kept")


def test_registry_unreachable_during_a_release_keeps_the_previous_one(
    project: Project, host: TestHost, relay: Relay, record_property: Record
) -> None:
    record_property("fault", "registry unreachable in a release")
    # A release whose images this host has never pulled.
    host.run(f"docker image rm 127.0.0.1:{RELAY_PORT}/dropship-example/web:v2")
    relay.stop()
    try:
        project.set("app.imageTag", "v2")
        failed, failed_after = timed_up(project, check=False)
    finally:
        relay.start()
    assert failed.returncode != 0
    message = "release v2: pulling images failed; the previous release still serves"
    assert message in output_of(failed), output_of(failed)[-3000:]
    assert serving()["release"] == "v1"
    assert host.run(f"readlink {APP_DIR}/releases/current").stdout.strip().endswith("-v1")
    assert data_in_volume(host) == DATA
    _, seconds = timed_up(project)
    assert serving()["release"] == "v2"
    assert data_in_volume(host) == DATA
    record_property("outcome", f"up failed ({failed_after:.0f} s): pull failed")
    record_property("converged_in", round(seconds, 1))
    record_property("kept", "old release served; data kept")


def test_destroy_after_the_host_is_gone(project: Project, host: TestHost, tmp_path: Path, record_property: Record) -> None:
    """A plain `pulumi destroy` cannot reach the host to stop the app; `existingHost.gone` says the
    host went with it, and `pulumi destroy --run-program` (or `pulumi up`, then `pulumi destroy`)
    completes without SSH. Then a new host at the address: a plain `pulumi up` deploys it all again."""
    record_property("fault", "`pulumi destroy`, host gone")
    host.stop()
    state = tmp_path / "state.json"
    project.pulumi("stack", "export", "--file", str(state))
    started = time.monotonic()
    plain = project.pulumi("destroy", "--yes", "--skip-preview", check=False)
    assert plain.returncode != 0
    assert f"after {DIAL_ERROR_LIMIT} failed attempts: dial tcp {host.address}:22" in output_of(plain)
    # Steps with nothing to undo are gone from the state; the app, which could not be stopped, is not.
    assert "app-directory" in names(project)

    project.set("existingHost.gone", "true")
    destroyed = project.pulumi("destroy", "--yes", "--skip-preview", "--run-program")
    assert "existingHost.gone is set" in destroyed.stdout
    assert resources(project) == []
    destroy_seconds = time.monotonic() - started

    # The other way: `pulumi up` forgets the host's steps, then a plain `pulumi destroy`.
    project.pulumi("stack", "import", "--file", str(state))
    forgotten = project.up()
    assert "existingHost.gone is set" in forgotten.stdout
    assert names(project) == ["app", "app-directory", "dropship-local"]
    project.pulumi("destroy", "--yes", "--skip-preview")
    assert resources(project) == []

    # A new host at the same address: remove the setting, and a plain `pulumi up` converges.
    project.pulumi("config", "rm", "existingHost.gone")
    host.start()
    _, seconds = timed_up(project)
    assert serving()["release"] == "v2"
    assert project.preview_steps() == {}
    record_property("outcome", f"completes with existingHost.gone ({destroy_seconds:.0f} s)")
    record_property("converged_in", round(seconds, 1))
    record_property("kept", "new host deployed")


def resources(project: Project) -> list[str]:
    deployment = json.loads(project.pulumi("stack", "export").stdout)["deployment"]
    return [r["urn"] for r in deployment.get("resources", [])]


def names(project: Project) -> list[str]:
    """Names of the stack's resources, its providers left out."""
    return sorted(urn.rsplit("::", 1)[-1] for urn in resources(project) if "::pulumi:providers:" not in urn)
