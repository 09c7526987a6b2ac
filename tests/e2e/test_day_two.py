"""Day two on a hardened host: every later change to a bootstrap input runs its step again and converges.

One test host, hardened by the first `up` (root: key only; passwords off). Then, one `up` each:
a new dropship version's bootstrap script (the first `up` ran the one before it), `docker.logMaxFile`,
`deploy.sudo` on and off, `upgrades.rebootTime` with Docker's repository, and a rotated deploy key. Before each, `pulumi preview` names exactly
the steps that will run; after each, it names none. And the Docker daemon is down for seconds under
load through the edge: no container restarts, and nothing fails once the daemon is back. The tests run in file order.
"""

from __future__ import annotations

import json
import shlex
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.server import cloud_config
from dev.harness import Project, TestHost, sh
from dev.harness.testhost import DEV_KEY
from dev.harness.vegeta import Vegeta
from dropship import keys

HOST = TestHost.for_module(__name__)
WEB = "$(docker ps -q --filter label=com.docker.compose.service=web)"
INSTALL_DOCKER = Path("dropship/host/install-docker.sh")
LIVE_RESTORE = 'config["live-restore"] = True'
"""What the new version of install-docker.sh sets in daemon.json (the previous one did not: `pass`)."""
HARDEN_SSH = Path("dropship/host/harden-ssh.sh")


def daemon_json(host: TestHost) -> dict[str, object]:
    return dict(json.loads(host.run("cat /etc/docker/daemon.json").stdout))


def containers(host: TestHost) -> dict[str, str]:
    """Every container on the host: id -> when it last started."""
    out = host.run("docker ps -aq | xargs -r docker inspect --format '{{.Id}} {{.State.StartedAt}}'").stdout
    return dict(line.split(" ", 1) for line in out.splitlines())


def converges(project: Project, expected: set[str]) -> None:
    """`pulumi up` runs exactly the `expected` steps; a second one would change nothing."""
    assert set(project.preview_steps()) == expected
    project.up()
    assert project.preview_steps() == {}


@pytest.fixture(scope="module")
def host(registry: None) -> Iterator[TestHost]:
    with HOST.fresh() as test_host:
        yield test_host


@pytest.fixture(scope="module")
def project(host: TestHost, bin_dir: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    project = Project(tmp_path_factory.mktemp("day-two"), bin_dir)
    # Pinned from the start, as a droplet's is: every connection of every up below checks it.
    project.init_local(host, settings={"ssh.hostKey": host.host_key()})
    yield project
    project.pulumi("destroy", "--yes", "--skip-preview", check=False)


def test_first_up_with_the_previous_versions_script_hardens_the_host(project: Project, host: TestHost) -> None:
    script = project.dir / INSTALL_DOCKER
    current = script.read_text()
    assert LIVE_RESTORE in current
    script.write_text(current.replace(LIVE_RESTORE, "pass"))  # as dropship's previous version had it
    project.up()
    assert "live-restore" not in daemon_json(host)
    effective = dict(line.split(" ", 1) for line in host.run("sshd -T").stdout.splitlines() if " " in line)
    assert (effective["permitrootlogin"], effective["passwordauthentication"]) == ("without-password", "no")
    script.write_text(current)


def test_the_new_versions_script_runs_again_on_the_hardened_host(project: Project, host: TestHost) -> None:
    before = containers(host)
    converges(project, {"host-docker"})
    assert daemon_json(host)["live-restore"] is True
    assert containers(host) == before  # the daemon restarted for its new daemon.json; the containers did not


def test_docker_down_for_seconds_under_load_restarts_no_container_and_fails_nothing_once_it_is_back(
    host: TestHost,
) -> None:
    """Load from a client on the host's network, as a droplet's IPv4 clients come (the kernel's NAT to the
    edge), and from this machine through pasta (which arrives on the host's loopback, where Docker's
    userland proxy takes it, as it takes a droplet's IPv6 clients).

    The daemon is down for 5 s, as a slow restart on a busy droplet or an upgrade of Docker's package
    keeps it (a quiet `systemctl restart docker` here takes about 1 s and hid what follows). The containers
    live through it (live-restore). While it is down, so is Docker's DNS, which the example's edge asks
    for the web containers every second: requests fail or wait then, and the held ones are let go at once
    when it is back. Counts across the outage are printed; from 5 s after it, nothing may fail."""
    before = containers(host)
    address = host.network_address()
    on_network = Vegeta(f"http://{address}/health", address, rate=100, netns=f"/run/netns/{host.name}")
    through_proxy = Vegeta(f"http://{host.address}/health", host.address, rate=100)
    with on_network, through_proxy:
        time.sleep(3)
        started = time.time()
        host.run("systemctl stop docker docker.socket && sleep 5 && systemctl start docker")
        answered = host.run("timeout 60 sh -c 'until docker info >/dev/null 2>&1; do sleep 0.2; done'", check=False)
        assert answered.returncode == 0, "dockerd did not answer `docker info` within 60 s of `systemctl start docker`"
        back = time.time()
        time.sleep(15)
        ended = time.time()
    print(f"\nthe Docker daemon was down for {back - started:.1f} s")
    print(f"from the host's network, across the outage: {on_network.report(until=back + 5)}")
    print(f"through Docker's userland proxy, across the outage: {through_proxy.report(until=back + 5)}")
    after = [load.report(since=back + 5, until=ended - 1) for load in (on_network, through_proxy)]
    print(f"from the host's network, from 5 s after the daemon was back: {after[0]}")
    print(f"through Docker's userland proxy, from 5 s after: {after[1]}")
    assert containers(host) == before
    assert [report.sent >= 800 for report in after] == [True, True]
    assert [report.failed for report in after] == [0, 0]


def test_a_new_log_rotation_setting_runs_the_docker_step_again_and_keys_set_by_hand_stay(project: Project, host: TestHost) -> None:
    # Someone's own key, and an option of the json-file driver dropship does not set.
    by_hand = {**daemon_json(host), "max-concurrent-downloads": 5}
    by_hand["log-opts"] = {**by_hand["log-opts"], "compress": "true"}  # type: ignore[dict-item]
    host.run(f"printf '%s\\n' {shlex.quote(json.dumps(by_hand))} > /etc/docker/daemon.json")
    project.set("docker.logMaxFile", "5")
    converges(project, {"host-docker"})
    config = daemon_json(host)
    assert config["log-opts"] == {"max-size": "10m", "max-file": "5", "compress": "true"}
    assert (config["max-concurrent-downloads"], config["live-restore"]) == (5, True)
    assert host.run("docker info --format '{{.LiveRestoreEnabled}}'").stdout.strip() == "true"


def test_a_password_setting_above_the_hosts_include_is_overridden_by_the_next_hardening(project: Project, host: TestHost) -> None:
    """An image (or a hand) whose sshd_config sets PasswordAuthentication yes before it includes the drop-ins:
    sshd keeps the first value it reads, so that setting would win over any drop-in it includes after."""

    def effective(key: str) -> str:
        return host.run(f"sshd -T | awk '$1 == \"{key}\" {{ print $2 }}'").stdout.strip()

    original = host.run("cat /etc/ssh/sshd_config").stdout
    without_ours = "".join(line + "\n" for line in original.splitlines() if "00-dropship.conf" not in line)
    by_hand = "PasswordAuthentication yes\nKbdInteractiveAuthentication yes\nInclude /etc/ssh/sshd_config.d/*.conf\n" + without_ours
    host.run(f"printf '%s' {shlex.quote(by_hand)} > /etc/ssh/sshd_config && systemctl reload ssh")
    assert effective("passwordauthentication") == "yes"  # as the host is now, before dropship runs again
    script = project.dir / HARDEN_SSH
    script.write_text(script.read_text() + "# a new dropship version\n")
    converges(project, {"host-harden-ssh"})
    assert (effective("passwordauthentication"), effective("kbdinteractiveauthentication")) == ("no", "no")
    assert host.run("head -n 1 /etc/ssh/sshd_config").stdout.strip() == "Include /etc/ssh/sshd_config.d/00-dropship.conf"
    refused = host.ssh(
        "deploy", "true", False, "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password,keyboard-interactive"
    )
    assert refused.returncode == 255 and "Permission denied (publickey)" in refused.stderr, refused.stderr


def test_deploy_sudo_on_and_off_again(project: Project, host: TestHost) -> None:
    def deploy_sudo() -> bool:
        return host.run("runuser -u deploy -- sudo -n true", check=False).returncode == 0

    assert not deploy_sudo()
    project.set("deploy.sudo", "true")
    converges(project, {"host-deploy-user"})
    assert deploy_sudo()
    project.set("deploy.sudo", "false")
    converges(project, {"host-deploy-user"})
    assert not deploy_sudo()


def test_a_reboot_time_and_dockers_own_repository_reach_unattended_upgrades(project: Project, host: TestHost) -> None:
    # docker.install docker-apt keeps the engine this host has (it works), and adds Docker's origin.
    project.set("docker.install", "docker-apt")
    project.set("upgrades.rebootTime", "04:30")
    converges(project, {"host-docker", "host-security-upgrades"})
    config = host.run("apt-config dump Unattended-Upgrade").stdout
    assert 'Unattended-Upgrade::Automatic-Reboot "true";' in config
    assert 'Unattended-Upgrade::Automatic-Reboot-Time "04:30";' in config
    # What unattended-upgrades itself will allow, ${distro_codename} expanded:
    allowed = host.run("unattended-upgrade --dry-run --debug 2>&1 | grep -m1 'Allowed origins are'").stdout
    codename = host.run(". /etc/os-release && echo $VERSION_CODENAME").stdout.strip()
    assert f"origin=Docker,codename={codename},label=Docker CE" in allowed, allowed
    assert "label=Debian-Security" in allowed, allowed  # the distribution's own, still there


def test_a_rotated_deploy_key_is_installed_by_the_admin_and_used_from_then_on(project: Project, host: TestHost) -> None:
    new_key = keys.new_private_key()
    new_public = keys.public_key(new_key, "rotated")
    project.set("existingHost.privateKey", DEV_KEY.read_text(), secret=True)  # root keeps the key it has
    project.set("ssh.publicKey", new_public)
    project.set("ssh.privateKey", new_key, secret=True)
    steps = set(project.preview_steps())
    # The deploy user's key is installed as root; every step as the deploy user logs in anew.
    assert {"host-deploy-user", "host-deploy-user-check", "env-write", "app-release"} <= steps
    assert not steps & {"host-wait", "host-docker", "host-security-upgrades", "host-harden-ssh"}
    converges(project, steps)
    assert host.run("cat /home/deploy/.ssh/authorized_keys").stdout.strip() == new_public
    with urllib.request.urlopen(host.url("/health"), timeout=10) as answer:
        assert answer.status == 200


def test_a_first_boot_installs_the_host_key_dropship_made_and_a_changed_key_stops_the_next_up(
    project: Project, host: TestHost, tmp_path: Path
) -> None:
    """A droplet's user data, run by cloud-init (Debian's, from a NoCloud seed) as on its first boot. The
    host's key then differs from the stack's pin, which must stop the next `up` before anything runs."""
    private_key = keys.new_private_key()
    (tmp_path / "user-data").write_text(cloud_config(private_key))
    (tmp_path / "meta-data").write_text("instance-id: dropship-day-two\n")
    (tmp_path / "datasource.cfg").write_text("datasource_list: [NoCloud, None]\n")
    host.run("DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=120 cloud-init >/dev/null")
    host.run("cloud-init clean && mkdir -p /var/lib/cloud/seed/nocloud /etc/cloud/cloud.cfg.d")
    for name, target in (("user-data", "/var/lib/cloud/seed/nocloud/"), ("meta-data", "/var/lib/cloud/seed/nocloud/")):
        sh("docker", "cp", str(tmp_path / name), f"{host.name}:{target}{name}")
    sh("docker", "cp", str(tmp_path / "datasource.cfg"), f"{host.name}:/etc/cloud/cloud.cfg.d/99-dropship-test.cfg")
    # Its two first-boot stages: the local one finds the seed, the network one runs cc_ssh.
    host.run("cloud-init init --local >/dev/null 2>&1 && cloud-init init >/dev/null 2>&1 && systemctl restart ssh")
    status = host.run("cloud-init status --long", check=False).stdout
    assert "DataSourceNoCloud" in status and "errors: []" in status and "recoverable_errors: {}" in status, status
    assert host.run("ls /etc/ssh/ssh_host_*_key").stdout.split() == ["/etc/ssh/ssh_host_ed25519_key"]
    scanned = sh("ssh-keyscan", "-t", "ed25519", host.address).stdout.split()
    assert " ".join(scanned[1:3]) == keys.public_key(private_key)

    project.set("app.imageTag", "v2")
    failed = project.pulumi("up", "--yes", "--skip-preview", "--color", "never", check=False)
    assert failed.returncode != 0
    assert "ssh: host key mismatch" in failed.stdout, failed.stdout[-3000:]
    with urllib.request.urlopen(host.url("/health"), timeout=10) as answer:
        assert json.loads(answer.read())["release"] == "v1"  # nothing ran
