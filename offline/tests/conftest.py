"""Fixtures for the command provider tests: a throwaway sshd, a fake engine, the plugin.

* ``sshd``: a real OpenSSH server on 127.0.0.1:2299 (``sshd -D -e`` as a child
  process) with temporary ed25519 and RSA host keys, accepting a temporary client key
  for the current user.  Debian's ``openssh-server`` is installed with apt when
  ``/usr/sbin/sshd`` is missing and we are root; otherwise the tests are skipped.
* ``engine``: an in-process stand-in for the engine's ``Engine`` gRPC service that
  records every ``Log`` request.
* ``provider``: the plugin started through its launcher, exactly as the engine starts
  it (engine address as the argument, port read from stdout), and a client stub.

Every test using ``sshd`` is marked ``system`` (it needs programs beyond the venv).
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2

REPO = Path(__file__).resolve().parents[2]
PROVIDER_DIR = REPO / "offline" / "command_provider"
LAUNCHER = PROVIDER_DIR / "pulumi-resource-command"
SSHD = Path("/usr/sbin/sshd")
SSH_PORT = 2299

sys.path.append(str(PROVIDER_DIR))

from pulumi.runtime.proto import engine_pb2_grpc, provider_pb2_grpc  # noqa: E402


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests of this folder that start the throwaway sshd as ``system``."""
    here = Path(__file__).resolve().parent
    for item in items:
        if "sshd" in getattr(item, "fixturenames", ()) and here in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.system)


def _ensure_sshd() -> None:
    if SSHD.exists() and shutil.which("ssh-keygen"):
        return
    if os.geteuid() != 0:
        pytest.skip("openssh-server is not installed and we are not root to apt-get it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "openssh-server", "openssh-client"],
        check=True,
        env=env,
        capture_output=True,
    )


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class SSHServer:
    port: int
    user: str
    private_key: str
    host_public_key: str
    host_rsa_public_key: str
    root: Path

    def connection(self, **overrides: Any) -> dict[str, Any]:
        conn: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": self.port,
            "user": self.user,
            "privateKey": self.private_key,
        }
        conn.update(overrides)
        return conn


@pytest.fixture(scope="session")
def sshd() -> Iterator[SSHServer]:
    _ensure_sshd()
    if _port_open(SSH_PORT):
        pytest.fail(f"port {SSH_PORT} is already in use; cannot start the test sshd")
    root = Path(tempfile.mkdtemp(prefix="dropship-sshd-"))
    os.chmod(root, 0o755)
    host_key = root / "ssh_host_ed25519_key"
    rsa_host_key = root / "ssh_host_rsa_key"
    client_key = root / "client_ed25519"
    for key in (host_key, client_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", str(rsa_host_key)], check=True)
    authorized = root / "authorized_keys"
    authorized.write_text(Path(f"{client_key}.pub").read_text())
    authorized.chmod(0o600)
    user = getpass.getuser()
    config = root / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {SSH_PORT}",
                "ListenAddress 127.0.0.1",
                f"HostKey {host_key}",
                f"HostKey {rsa_host_key}",
                f"PidFile {root / 'sshd.pid'}",
                f"AuthorizedKeysFile {authorized}",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin prohibit-password",
                f"AllowUsers {user}",
                "StrictModes no",
                "UsePAM no",
                "AcceptEnv DROPSHIP_* PULUMI_COMMAND_*",
                "Subsystem sftp internal-sftp",
                "LogLevel ERROR",
                "",
            ]
        )
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    log = open(root / "sshd.log", "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while not _port_open(SSH_PORT):
            if proc.poll() is not None:
                pytest.fail(f"sshd exited with {proc.returncode}: {(root / 'sshd.log').read_text()}")
            if time.monotonic() > deadline:
                pytest.fail("sshd did not start listening within 15 s")
            time.sleep(0.05)
        yield SSHServer(
            port=SSH_PORT,
            user=user,
            private_key=client_key.read_text(),
            host_public_key=Path(f"{host_key}.pub").read_text().strip(),
            host_rsa_public_key=Path(f"{rsa_host_key}.pub").read_text().strip(),
            root=root,
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class FakeEngine(engine_pb2_grpc.EngineServicer):
    """Records the Log requests a provider sends to the engine."""

    address: str = ""
    logs: list[Any] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def Log(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        with self.lock:
            self.logs.append(request)
        return empty_pb2.Empty()

    def clear(self) -> None:
        with self.lock:
            self.logs.clear()

    def messages(self, urn: str | None = None, severity: int | None = None, ephemeral: bool | None = None) -> list[str]:
        with self.lock:
            return [
                r.message
                for r in self.logs
                if (urn is None or r.urn == urn)
                and (severity is None or r.severity == severity)
                and (ephemeral is None or r.ephemeral == ephemeral)
            ]


@pytest.fixture(scope="session")
def engine() -> Iterator[FakeEngine]:
    fake = FakeEngine()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    engine_pb2_grpc.add_EngineServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    fake.address = f"127.0.0.1:{port}"
    try:
        yield fake
    finally:
        server.stop(grace=None)


@dataclass
class ProviderProcess:
    proc: subprocess.Popen[bytes]
    stub: provider_pb2_grpc.ResourceProviderStub
    channel: grpc.Channel


@pytest.fixture(scope="session")
def provider_process(engine: FakeEngine) -> Iterator[ProviderProcess]:
    proc = subprocess.Popen(
        [str(LAUNCHER), engine.address],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
        # The environment running the tests; no ambient SSH agent (it would be used).
        env={**{k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}, "DROPSHIP_VENV": sys.prefix},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()
        if not line.isdigit():
            stderr = proc.stderr.read().decode() if proc.stderr else ""
            pytest.fail(f"provider did not print its port: {line!r} {stderr}")
        channel = grpc.insecure_channel(f"127.0.0.1:{line}")
        grpc.channel_ready_future(channel).result(timeout=10)
        yield ProviderProcess(proc, provider_pb2_grpc.ResourceProviderStub(channel), channel)
        channel.close()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def provider(provider_process: ProviderProcess, engine: FakeEngine) -> provider_pb2_grpc.ResourceProviderStub:
    engine.clear()
    return provider_process.stub


# --- helpers for the tests ------------------------------------------------------------

import propvalues as pv  # noqa: E402
from pulumi.runtime.proto import provider_pb2  # noqa: E402

REMOTE_COMMAND = "command:remote:Command"
COPY_TO_REMOTE = "command:remote:CopyToRemote"
LOCAL_COMMAND = "command:local:Command"
LOCAL_RUN_TOKEN = "command:local:run"


_RESERVED: list[socket.socket] = []


def closed_port() -> int:
    """A local TCP port nothing listens on (connections are refused). Its socket stays bound, never listening,
    for the session: no other process can take the port in the meantime."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    _RESERVED.append(sock)
    return int(sock.getsockname()[1])


def urn(type_token: str, name: str) -> str:
    return f"urn:pulumi:test::dropship::{type_token}::{name}"


def secret(value: Any) -> dict[str, Any]:
    return pv.make_secret(value)


def struct(props: dict[str, Any]) -> Any:
    return pv.to_struct(props)


def props_of(message: Any) -> dict[str, Any]:
    return pv.from_struct(message)


def check(stub: Any, type_token: str, name: str, news: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    resp = stub.Check(provider_pb2.CheckRequest(urn=urn(type_token, name), news=struct(news), olds=struct({})))
    return props_of(resp.inputs), [(f.property, f.reason) for f in resp.failures]


def create(stub: Any, type_token: str, name: str, props: dict[str, Any], preview: bool = False) -> tuple[str, dict[str, Any]]:
    resp = stub.Create(provider_pb2.CreateRequest(urn=urn(type_token, name), properties=struct(props), preview=preview))
    return resp.id, props_of(resp.properties)


def update(stub: Any, type_token: str, name: str, olds: dict[str, Any], news: dict[str, Any], preview: bool = False) -> dict[str, Any]:
    resp = stub.Update(
        provider_pb2.UpdateRequest(
            urn=urn(type_token, name), id="id", olds=struct(olds), news=struct(news), old_inputs=struct(olds), preview=preview
        )
    )
    return props_of(resp.properties)


def delete(stub: Any, type_token: str, name: str, props: dict[str, Any]) -> None:
    stub.Delete(provider_pb2.DeleteRequest(urn=urn(type_token, name), id="id", properties=struct(props)))


def diff(stub: Any, type_token: str, name: str, olds: dict[str, Any], news: dict[str, Any]) -> Any:
    return stub.Diff(provider_pb2.DiffRequest(urn=urn(type_token, name), id="id", olds=struct(olds), news=struct(news)))


def rpc_error(call: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value
