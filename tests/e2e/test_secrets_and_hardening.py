"""Secret hygiene and host hardening with the real engine on a real test host of this module's own.

Canary secrets (env.* values and a registry password, fresh every run) go through a full
`up`, a release, a secret change and `destroy`. Then every place a secret could leak is
searched, in plain text and base64: the engine's whole output, `pulumi stack export`
(without --show-secrets), `pulumi stack output --json`, the stack's history, config and
backend files, the host's journal, its process list sampled during every operation, shell
histories, and every file on the host and in this machine's /tmp. The canaries may appear
only in the app's .env files (incoming/.env, releases/*/.env, the live .env; mode 600,
owned by deploy), in the records Docker keeps of the running containers' environment
(root-only), and encrypted in the state. The tests run in file order.

Every test records what it found (pytest's record_property) for dev/reliability.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from dev.harness import DEV_KEY, REGISTRY, Project, TestHost, sh, wait_until

Record = Callable[[str, object], None]

APP_DIR = "/srv/example"
HOST = TestHost.for_module(__name__)
TOKEN = f"canary-{secrets.token_hex(5)}"
STARTED = time.time()
APP_SECRET_1 = f"{TOKEN}-app-one"
APP_SECRET_2 = f"{TOKEN}-app-two"
DB_PASSWORD = f"{TOKEN}-db 'quoted' $HOME"
REGISTRY_USER = "ci"
REGISTRY_PASSWORD = f"{TOKEN}-registry"
SECRETS = {
    "env.APP_SECRET": APP_SECRET_1,
    "env.DB_PASSWORD": DB_PASSWORD,
    "registry.password": REGISTRY_PASSWORD,
}
# The deploy key's private half: a secret too (never on the host, never in plain state). Its
# first lines are the same in every ed25519 key file; the fourth holds the private seed.
KEY_LINE = DEV_KEY.read_text().splitlines()[4]
# Where the canaries belong: the app's .env files, and what Docker keeps of its containers' environment.
EXPECTED = {
    "the app's .env files": re.compile(rf"^{APP_DIR}/(incoming/|releases/[^/]+/)?\.env$"),
    "Docker's record of a container's environment (root only)": re.compile(
        r"^(/var/lib/docker/containers/[0-9a-f]{64}/config\.v2\.json"
        r"|/run/containerd/io\.containerd\.runtime\.v2\.task/moby/[0-9a-f]{64}/config\.json"
        r"|/var/lib/containerd/io\.containerd\.metadata\.v1\.bolt/meta\.db"
        # A `docker exec` (a healthcheck's, say) hands runc its process, environment included, in a
        # file of root's (0600) that lives only while the exec starts.
        r"|/tmp/runc-process\d+"
        # dockerd rewrites a container's config.v2.json (after each health check, say) through a
        # temporary file of root's (0600) beside it, renamed over it at once.
        r"|/var/lib/docker/containers/[0-9a-f]{64}/\.tmp-config\.v2\.json\d+)$"
    ),
}
TRANSIENT = re.compile(r"^(/tmp/runc-process\d+|/var/lib/docker/containers/[0-9a-f]{64}/\.tmp-config\.v2\.json\d+)$")


def base64_forms(value: str) -> list[str]:
    """Substrings that any base64 encoding of a text containing `value` contains, at each of the 3 alignments."""
    forms = []
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + value.encode()).decode()
        forms.append(encoded[(8 * offset + 5) // 6 : -4])
    return forms


def needles() -> dict[str, str]:
    """needle -> what it stands for."""
    found: dict[str, str] = {}
    for label, value in (
        ("APP_SECRET", APP_SECRET_1),
        ("APP_SECRET (changed)", APP_SECRET_2),
        ("DB_PASSWORD", DB_PASSWORD),
        ("registry password", REGISTRY_PASSWORD),
        ("registry login", f"{REGISTRY_USER}:{REGISTRY_PASSWORD}"),
    ):
        found[value] = label
        for form in base64_forms(value):
            found[form] = f"{label} (base64)"
    found[TOKEN] = "canary"
    for form in base64_forms(TOKEN):
        found[form] = "canary (base64)"
    found[KEY_LINE] = "deploy key"
    return found


def hits(text: str) -> list[str]:
    return sorted({label for needle, label in needles().items() if needle in text})


class Evidence:
    """Everything the tests saw: the engine's output, exports, and process lists sampled on the host and here."""

    def __init__(self, host: TestHost) -> None:
        self.host = host
        self.engine: list[str] = []
        self.exports: list[str] = []
        self.outputs: list[str] = []
        self.decrypted: list[str] = []
        """`pulumi stack export --show-secrets`: where the canaries must be (not searched)."""
        self.host_ps: set[str] = set()
        self.local_ps: set[str] = set()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.3):
            host = subprocess.run(
                ["docker", "exec", self.host.name, "ps", "-eo", "user:16,args", "ww"], capture_output=True, text=True, check=False
            )
            local = subprocess.run(["ps", "-eo", "args", "ww"], capture_output=True, text=True, check=False)
            self.host_ps.update(host.stdout.splitlines())
            self.local_ps.update(local.stdout.splitlines())
            self.samples += 1

    def __enter__(self) -> Evidence:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def run(project: Project, evidence: Evidence, *args: str) -> subprocess.CompletedProcess[str]:
    result = project.pulumi(*args)
    evidence.engine.append(result.stdout + result.stderr)
    return result


def up(project: Project, evidence: Evidence) -> None:
    run(project, evidence, "preview", "--diff")
    run(project, evidence, "up", "--yes", "--skip-preview", "--diff")
    evidence.exports.append(run(project, evidence, "stack", "export").stdout)
    evidence.outputs.append(run(project, evidence, "stack", "output", "--json").stdout)
    evidence.decrypted.append(project.pulumi("stack", "export", "--show-secrets").stdout)


def health() -> dict[str, str]:
    with urllib.request.urlopen(HOST.url("/health"), timeout=5) as response:
        return dict(json.loads(response.read()))


def files_on_host(host: TestHost) -> dict[str, list[str]]:
    """Every file on the host holding a needle -> what it holds."""
    subprocess.run(
        ["docker", "exec", "-i", host.name, "sh", "-c", "cat > /dev/shm/needles"], input="\n".join(needles()) + "\n", text=True, check=True
    )
    listing = host.run(
        "grep -rlaF -f /dev/shm/needles $(ls -d /* | grep -vxE '/(proc|sys|dev)') 2>/dev/null; rm -f /dev/shm/needles", check=False
    ).stdout.splitlines()
    found = {}
    for path in listing:
        content = host.run(f"cat {path!r} | base64 -w0", check=False).stdout
        found[path] = hits(base64.b64decode(content).decode("latin-1"))
    return found


def unexpected(found: dict[str, list[str]]) -> dict[str, list[str]]:
    return {path: labels for path, labels in found.items() if not any(p.match(path) for p in EXPECTED.values())}


@pytest.fixture(scope="module")
def host(registry: None) -> Iterator[TestHost]:
    with HOST.fresh() as test_host:
        yield test_host


@pytest.fixture(scope="module")
def evidence(host: TestHost) -> Iterator[Evidence]:
    with Evidence(host) as evidence:
        yield evidence


@pytest.fixture(scope="module")
def project(host: TestHost, evidence: Evidence, bin_dir: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    project = Project(tmp_path_factory.mktemp("secrets"), bin_dir)
    run(project, evidence, "stack", "init", "local")
    project.set("existingHost.address", host.address)
    project.set("app.requiredEnv", '["APP_SECRET", "DB_PASSWORD"]')
    project.set("registry.server", REGISTRY)
    project.set("registry.username", REGISTRY_USER)
    for key, value in SECRETS.items():
        project.set(key, value, secret=True)  # on stdin: never on a command line here either
    yield project
    project.pulumi("destroy", "--yes", "--skip-preview", check=False)


def test_full_up_with_canary_secrets(project: Project, evidence: Evidence) -> None:
    up(project, evidence)
    answer = health()
    assert answer["release"] == "v1"
    assert answer["secret_sha256"] == hashlib.sha256(APP_SECRET_1.encode()).hexdigest()


def test_release_with_canary_secrets(project: Project, evidence: Evidence) -> None:
    project.set("app.imageTag", "v2")
    up(project, evidence)
    assert health()["release"] == "v2"


def test_secret_change(project: Project, evidence: Evidence) -> None:
    project.set("env.APP_SECRET", APP_SECRET_2, secret=True)
    up(project, evidence)
    assert health()["secret_sha256"] == hashlib.sha256(APP_SECRET_2.encode()).hexdigest()


# --- hardening, checked on the host ---------------------------------------------------------


def test_sshd_effective_settings_refuse_passwords_and_root_but_with_its_key(host: TestHost, record_property: Record) -> None:
    record_property("hardening", "sshd (`sshd -T`): no passwords, keys only, root only with its key")
    effective = dict(line.split(" ", 1) for line in host.run("sshd -T").stdout.splitlines() if " " in line)
    assert effective["permitrootlogin"] == "without-password"  # sshd -T's name for prohibit-password
    assert effective["passwordauthentication"] == "no"
    assert effective["kbdinteractiveauthentication"] == "no"
    assert effective["pubkeyauthentication"] == "yes"
    # Refused logins are tried last (test_password_logins_are_refused_for_root_and_deploy): sshd's
    # PerSourcePenalties then shuts 127.0.0.1 out for a while, `pulumi up` included.


def test_env_files_are_600_and_owned_by_deploy(host: TestHost, record_property: Record) -> None:
    listing = host.run(f"find {APP_DIR} -name .env -printf '%p %u %g %m\\n'").stdout.splitlines()
    record_property("hardening", f".env files ({len(listing)}: incoming, every kept release, live): mode 600, deploy:deploy")
    paths = [line.split()[0] for line in listing]
    assert f"{APP_DIR}/.env" in paths and f"{APP_DIR}/incoming/.env" in paths
    assert sum(1 for p in paths if "/releases/" in p) >= 3
    assert all(line.split()[1:] == ["deploy", "deploy", "600"] for line in listing), listing
    assert host.run(f"stat -c '%U %G %a' {APP_DIR} {APP_DIR}/releases").stdout.split("\n")[0] == "deploy deploy 750"


def test_deploy_user_has_docker_but_no_sudo_unless_configured(host: TestHost, record_property: Record) -> None:
    record_property("hardening", "deploy user: groups deploy, docker; sudo only with deploy.sudo")

    assert host.run("id -nG deploy").stdout.split() == ["deploy", "docker"]
    refused = host.ssh("deploy", "sudo -n true", False)
    assert (refused.returncode, "a password is required" in refused.stderr) == (1, True), refused
    assert host.run("ls /etc/sudoers.d/dropship-deploy", check=False).returncode != 0
    # deploy.sudo on and off again by `pulumi up` on a hardened host: test_day_two.


def test_docker_log_rotation_is_in_effect(host: TestHost, record_property: Record) -> None:
    record_property("hardening", "Docker log rotation: json-file, max-size 10m, max-file 3 on every app container")
    assert host.run("docker info --format '{{.LoggingDriver}}'").stdout.strip() == "json-file"
    containers = host.run("docker ps --format '{{.Names}}'").stdout.split()
    assert sorted(name.rsplit("-", 1)[0] for name in containers) == ["example-edge", "example-web"]
    for name in containers:
        config = json.loads(host.run(f"docker inspect --format '{{{{json .HostConfig.LogConfig}}}}' {name}").stdout)
        assert config == {"Type": "json-file", "Config": {"max-file": "3", "max-size": "10m"}}, name


def test_unattended_security_upgrades_are_on(host: TestHost, record_property: Record) -> None:
    record_property("hardening", "unattended security upgrades: installed, APT::Periodic on, security origin, timers enabled")
    assert host.run("dpkg-query -W -f '${Status}' unattended-upgrades").stdout == "install ok installed"
    dump = host.run("apt-config dump").stdout
    assert 'APT::Periodic::Update-Package-Lists "1";' in dump
    assert 'APT::Periodic::Unattended-Upgrade "1";' in dump
    assert re.search(r'Unattended-Upgrade::Origins-Pattern:: ".*label=Debian-Security";', dump), dump
    for timer in ("apt-daily.timer", "apt-daily-upgrade.timer"):
        assert host.run(f"systemctl is-enabled {timer}").stdout.strip() == "enabled"
        assert host.run(f"systemctl is-active {timer}").stdout.strip() == "active"


def test_registry_password_is_not_kept_on_the_host(host: TestHost, record_property: Record) -> None:
    record_property("hardening", "no registry credential left on the host after a deploy (docker login in a throwaway config)")
    assert host.run("ls /home/deploy/.docker/config.json /root/.docker/config.json", check=False).returncode != 0


METADATA = "169.254.169.254"
USER_DATA_URL = f"http://{METADATA}/metadata/v1/user-data"
GUARD_RULE = f"-d {METADATA}/32 -j REJECT"


@contextmanager
def metadata_service(host: TestHost) -> Iterator[str]:
    """A droplet's metadata address inside the test host: a network namespace of its own behind a veth
    (the host at 169.254.169.1, the service at .254), answering user data over HTTP as DigitalOcean's does."""
    user_data = f"#cloud-config user data {secrets.token_hex(4)}"
    host.run(
        "set -e; ip netns add dsmeta; ip link add dsmeta0 type veth peer name dsmeta1; ip link set dsmeta1 netns dsmeta;"
        " ip addr add 169.254.169.1/24 dev dsmeta0; ip link set dsmeta0 up;"
        f" ip -n dsmeta addr add {METADATA}/24 dev dsmeta1; ip -n dsmeta link set dsmeta1 up; ip -n dsmeta link set lo up;"
        f" mkdir -p /run/dsmeta/metadata/v1; echo '{user_data}' >/run/dsmeta/metadata/v1/user-data;"
        " systemd-run --quiet --unit dsmeta-http -p NetworkNamespacePath=/run/netns/dsmeta"
        " python3 -m http.server --bind 0.0.0.0 --directory /run/dsmeta 80"
    )
    try:
        wait_until(
            lambda: host.run(f"curl -fsS -m 2 {USER_DATA_URL}", check=False).returncode == 0,
            "the metadata stand-in to answer the host",
            30,
            lambda: host.run("systemctl status dsmeta-http --no-pager", check=False).stdout,
        )
        yield user_data
    finally:
        host.run("systemctl stop dsmeta-http; ip link del dsmeta0; ip netns del dsmeta; rm -rf /run/dsmeta", check=False)


def from_a_container(host: TestHost, url: str) -> subprocess.CompletedProcess[str]:
    """`url` fetched by a new container of the app's web image on the app's own network (no app secret in it)."""
    web = host.run("docker ps --filter label=com.docker.compose.service=web --format '{{.Names}}'").stdout.split()[0]
    image = host.run(f"docker inspect --format '{{{{.Config.Image}}}}' {web}").stdout.strip()
    network = host.run(
        f"docker inspect --format '{{{{range $n, $_ := .NetworkSettings.Networks}}}}{{{{$n}}}} {{{{end}}}}' {web}"
    ).stdout.split()[0]
    name = f"dropship-metadata-probe-{secrets.token_hex(3)}"
    try:
        return host.run(
            # Bounded from outside: the image's busybox 1.35 wget crashes on a refused connection when given -T.
            f"timeout 60 docker run --rm --name {name} --network {network} --ulimit core=0 {image} wget -q -O- {url}",
            check=False,
        )
    finally:
        host.run(f"docker rm -f {name}", check=False)


def test_containers_cannot_read_the_droplets_user_data(host: TestHost, record_property: Record) -> None:
    record_property("hardening", f"containers cannot reach {METADATA} (the droplet's user data); the host can")
    chain = "DOCKER-USER"
    with metadata_service(host) as user_data:
        assert host.run(f"curl -fsS -m 5 {USER_DATA_URL}").stdout.strip() == user_data  # the host's own agents still can
        refused = from_a_container(host, USER_DATA_URL)
        assert (refused.returncode, user_data in refused.stdout) == (1, False), refused
        assert "refused" in refused.stderr, refused  # REJECT: at once, not a timeout

        # The control: without dropship's rule the same container reads it, so the refusal above is the rule's.
        host.run(f"iptables -D {chain} {GUARD_RULE}")
        opened = from_a_container(host, USER_DATA_URL)
        assert (opened.returncode, opened.stdout.strip()) == (0, user_data), opened

        # The guard is part of docker.service: a restart of the engine (which rewrites its chains) brings the rule back.
        host.run("systemctl restart docker")
        wait_until(lambda: host.run("docker info", check=False).returncode == 0, "the engine after its restart", 60)
        assert host.run(f"iptables -C {chain} {GUARD_RULE}", check=False).returncode == 0, host.run(f"iptables -S {chain}").stdout
        again = from_a_container(host, USER_DATA_URL)
        assert (again.returncode, user_data in again.stdout) == (1, False), again


# --- where the canaries are ------------------------------------------------------------------


def test_on_the_host_canaries_are_only_in_env_files_and_docker_records(host: TestHost, record_property: Record) -> None:
    found = files_on_host(host)
    record_property("search", "host files while the app runs (grep -r /, plain and base64)")
    env_files = [p for p in found if EXPECTED["the app's .env files"].match(p)]
    record_property("expected", f"{len(env_files)} .env files, {len(found) - len(env_files) - len(unexpected(found))} Docker records")
    record_property("leaks", len(unexpected(found)))
    assert unexpected(found) == {}, json.dumps(unexpected(found), indent=1)
    assert f"{APP_DIR}/.env" in env_files  # the search finds what is there
    for path in found:
        if TRANSIENT.match(path) and host.run(f"test -e {path}", check=False).returncode != 0:
            continue
        if not EXPECTED["the app's .env files"].match(path):
            assert host.run(f"stat -c '%U' {path}").stdout.strip() == "root", path
            assert host.run(f"su -s /bin/sh deploy -c 'cat {path}'", check=False).returncode != 0, f"{path} is readable by deploy"


def test_destroy_leaves_no_canary_on_the_host_but_in_dockers_records(
    project: Project, host: TestHost, evidence: Evidence, record_property: Record
) -> None:
    run(project, evidence, "destroy", "--yes", "--skip-preview")
    evidence.exports.append(run(project, evidence, "stack", "export").stdout)
    found = files_on_host(host)
    record_property("search", "host files after `pulumi destroy`")
    # containerd's metadata database keeps the removed containers' specs in freed pages (root only).
    record_property("expected", f"{len(found) - len(unexpected(found))} Docker records")
    record_property("leaks", len(unexpected(found)))
    assert unexpected(found) == {}, found
    assert not [p for p in found if EXPECTED["the app's .env files"].match(p)]
    for path in found:
        assert host.run(f"su -s /bin/sh deploy -c 'cat {path}'", check=False).returncode != 0, f"{path} is readable by deploy"


def still_there(path: str) -> str:
    """A file's text, or nothing when it went between the listing and the read (other programs' /tmp files come and go)."""
    try:
        return Path(path).read_text(errors="replace")
    except (FileNotFoundError, IsADirectoryError):
        return ""


def test_no_canary_anywhere_else(project: Project, host: TestHost, evidence: Evidence, record_property: Record) -> None:
    histories = host.run(
        "ls /root/.bash_history /home/*/.bash_history 2>/dev/null; cat /root/.*history /home/*/.*history 2>/dev/null", check=False
    )
    backend = [p for p in (project.dir / ".pulumi-state").rglob("*") if p.is_file()] + [project.dir / "Pulumi.local.yaml"]
    tmp_files = sh("find", "/tmp", "-xdev", "-type", "f", "-newermt", f"@{STARTED:.0f}", "-size", "-20M", check=False).stdout.split("\n")
    places = {
        f"engine output ({len(evidence.engine)} pulumi commands)": "\n".join(evidence.engine),
        f"`pulumi stack export` ({len(evidence.exports)})": "\n".join(evidence.exports),
        "`pulumi stack output --json`": "\n".join(evidence.outputs),
        "`pulumi stack history --json`, `pulumi config`": project.pulumi("stack", "history", "--json").stdout
        + project.pulumi("config", "--json").stdout,
        f"state backend and stack config files ({len(backend)})": "\n".join(p.read_text(errors="replace") for p in backend),
        "host journal (journalctl -o json)": host.run("journalctl --no-pager -o json").stdout,
        f"host process list ({evidence.samples} samples)": "\n".join(evidence.host_ps),
        f"this machine's process list ({evidence.samples} samples)": "\n".join(evidence.local_ps),
        "shell histories on the host": histories.stdout,
        f"this machine's /tmp (files written during the run: {len(tmp_files)})": "\n".join(still_there(f) for f in tmp_files if f),
    }
    # The searches looked at something: the deploys' logins and their commands were seen.
    assert "Accepted publickey for deploy" in places["host journal (journalctl -o json)"]
    assert any("release.py --dir /srv/example" in line for line in evidence.host_ps)
    leaks = {place: hits(text) for place, text in places.items() if hits(text)}
    for place in places:
        record_property(f"leaks: {place}", len(leaks.get(place, [])))
    assert leaks == {}, leaks
    # The searches would find them: the state held them, encrypted.
    assert all(value in evidence.decrypted[-1] for value in (APP_SECRET_2, f"{TOKEN}-db", REGISTRY_PASSWORD))
    assert '"ciphertext"' in evidence.exports[-2]


def test_password_logins_are_refused_for_root_and_deploy(host: TestHost, record_property: Record) -> None:
    record_property("hardening", "root logs in with its key only; password logins refused for root and deploy (tried over SSH)")
    assert host.ssh("root", "true", False).returncode == 0  # the admin's key: bootstrap steps can run again
    for user in ("root", "deploy"):
        password = host.ssh(
            user, "true", False, "-o", "PreferredAuthentications=password,keyboard-interactive", "-o", "PubkeyAuthentication=no"
        )
        assert password.returncode == 255 and "Permission denied (publickey)" in password.stderr, (user, password.stderr)
