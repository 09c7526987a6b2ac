"""command:remote:Command through the plugin's gRPC interface, against a real sshd."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from pulumi.runtime.proto import engine_pb2, provider_pb2

from .conftest import (
    REMOTE_COMMAND,
    FakeEngine,
    SSHServer,
    check,
    closed_port,
    create,
    delete,
    diff,
    props_of,
    rpc_error,
    secret,
    update,
    urn,
)

import propvalues as pv  # isort: skip


def checked(provider: Any, sshd: SSHServer, **inputs: Any) -> dict[str, Any]:
    """Inputs as the engine would pass them: the SDK's secret connection, then Check."""
    news = {"connection": secret(sshd.connection()), **inputs}
    result, failures = check(provider, REMOTE_COMMAND, "cmd", news)
    assert failures == []
    return result


def test_check_applies_the_schema_defaults_inside_the_secret_connection(provider: Any) -> None:
    inputs, failures = check(
        provider,
        REMOTE_COMMAND,
        "cmd",
        {"connection": secret({"host": "example.test", "proxy": {"host": "bastion.test"}}), "create": "true"},
    )
    assert failures == []
    assert pv.is_secret(inputs["connection"])
    assert inputs["connection"]["value"] == {
        "host": "example.test",
        "port": 22.0,
        "user": "root",
        "dialErrorLimit": 10.0,
        "perDialTimeout": 15.0,
        "proxy": {"host": "bastion.test", "port": 22.0, "user": "root", "dialErrorLimit": 10.0, "perDialTimeout": 15.0},
    }
    assert inputs["addPreviousOutputInEnv"] is True
    assert "logging" not in inputs  # like the real provider: unset means stdout and stderr


def test_check_reports_a_missing_host_and_keeps_unknowns(provider: Any) -> None:
    _, failures = check(provider, REMOTE_COMMAND, "cmd", {"connection": {"user": "x"}})
    assert [p for p, _ in failures] == ["connection.host"]
    inputs, failures = check(provider, REMOTE_COMMAND, "cmd", {"connection": pv.UNKNOWN, "create": pv.UNKNOWN})
    assert failures == []
    assert inputs["connection"] == pv.UNKNOWN
    assert inputs["create"] == pv.UNKNOWN


def test_create_runs_with_stdin_and_environment_and_keeps_secrets(provider: Any, sshd: SSHServer) -> None:
    inputs = checked(
        provider,
        sshd,
        create='cat; printf "%s" "$DROPSHIP_GREETING" >&2',
        stdin=secret("from stdin\n"),
        environment={"DROPSHIP_GREETING": "hello"},
    )
    resource_id, outs = create(provider, REMOTE_COMMAND, "cmd", inputs)
    assert resource_id.startswith("cmd") and len(resource_id) == len("cmd") + 8
    assert outs["stdout"] == "from stdin"  # one trailing newline trimmed
    assert outs["stderr"] == "hello"
    assert outs["stdin"] == secret("from stdin\n")
    assert pv.is_secret(outs["connection"])
    assert outs["environment"] == {"DROPSHIP_GREETING": "hello"}
    assert outs["addPreviousOutputInEnv"] is True


def test_create_without_a_create_command_runs_nothing(provider: Any, sshd: SSHServer) -> None:
    _, outs = create(provider, REMOTE_COMMAND, "cmd", checked(provider, sshd, delete="true"))
    assert outs["stdout"] == "" and outs["stderr"] == ""


def test_preview_runs_nothing_and_leaves_outputs_unknown(provider: Any, sshd: SSHServer, tmp_path: Path) -> None:
    marker = tmp_path / "created"
    inputs = checked(provider, sshd, create=f"touch {marker}", update=f"touch {marker}")
    _, outs = create(provider, REMOTE_COMMAND, "cmd", inputs, preview=True)
    assert outs["stdout"] == pv.UNKNOWN and outs["stderr"] == pv.UNKNOWN
    assert outs["create"] == f"touch {marker}"
    olds = {**inputs, "stdout": "old", "stderr": ""}
    outs = update(provider, REMOTE_COMMAND, "cmd", olds, {**inputs, "stdin": "x"}, preview=True)
    assert outs["stdout"] == pv.UNKNOWN
    assert not marker.exists()


def test_update_runs_update_with_the_previous_output_in_the_environment(provider: Any, sshd: SSHServer) -> None:
    inputs = checked(provider, sshd, create="echo first", update='echo "$PULUMI_COMMAND_STDOUT then second"')
    _, olds = create(provider, REMOTE_COMMAND, "cmd", inputs)
    assert olds["stdout"] == "first"
    news = {**inputs, "triggers": ["x"]}
    outs = update(provider, REMOTE_COMMAND, "cmd", olds, news)
    assert outs["stdout"] == "first then second"
    assert outs["triggers"] == ["x"]


def test_update_falls_back_to_create_and_honours_add_previous_output_in_env(provider: Any, sshd: SSHServer) -> None:
    inputs = checked(provider, sshd, create='echo "[$PULUMI_COMMAND_STDOUT]"', addPreviousOutputInEnv=False)
    olds = {**inputs, "stdout": "previous", "stderr": ""}
    outs = update(provider, REMOTE_COMMAND, "cmd", olds, {**inputs, "stdin": "changed"})
    assert outs["stdout"] == "[]"


def test_update_without_commands_keeps_the_old_outputs(provider: Any, sshd: SSHServer) -> None:
    inputs = checked(provider, sshd, delete="true")
    outs = update(provider, REMOTE_COMMAND, "cmd", {**inputs, "stdout": "kept", "stderr": "too"}, inputs)
    assert (outs["stdout"], outs["stderr"]) == ("kept", "too")


def test_delete_runs_delete_with_the_last_output(provider: Any, sshd: SSHServer, tmp_path: Path) -> None:
    target = tmp_path / "deleted"
    inputs = checked(provider, sshd, create="echo created", delete=f'echo "$PULUMI_COMMAND_STDOUT" > {target}')
    _, state = create(provider, REMOTE_COMMAND, "cmd", inputs)
    delete(provider, REMOTE_COMMAND, "cmd", state)
    assert target.read_text() == "created\n"


def test_delete_without_a_delete_command_does_nothing(provider: Any) -> None:
    # No connection attempt at all: the host does not exist.
    delete(provider, REMOTE_COMMAND, "cmd", {"connection": secret({"host": "nowhere.invalid"}), "create": "x"})


def test_a_failing_command_reports_the_command_and_its_output(provider: Any, sshd: SSHServer) -> None:
    command = 'echo "to stdout"; exit 3'
    error = rpc_error(lambda: create(provider, REMOTE_COMMAND, "cmd", checked(provider, sshd, create=command)))
    assert error.details() == 'Process exited with status 3: running "echo \\"to stdout\\"; exit 3":\nto stdout\n'


def test_a_command_killed_by_a_signal_reports_it(provider: Any, sshd: SSHServer) -> None:
    error = rpc_error(lambda: create(provider, REMOTE_COMMAND, "cmd", checked(provider, sshd, create="kill -TERM $$")))
    assert error.details().startswith('Process exited with status 143 from signal TERM: running "kill -TERM $$":')


def test_output_is_streamed_to_the_engine_as_status_lines(provider: Any, sshd: SSHServer, engine: FakeEngine) -> None:
    inputs = checked(provider, sshd, create="echo one; echo two >&2; printf three")
    create(provider, REMOTE_COMMAND, "logged", inputs)
    lines = engine.messages(urn=urn(REMOTE_COMMAND, "logged"), severity=engine_pb2.INFO, ephemeral=True)
    assert sorted(lines) == ["one", "three", "two"]


@pytest.mark.parametrize(
    ("logging", "expected"),
    [("none", []), ("stdout", ["out"]), ("stderr", ["err"]), ("stdoutAndStderr", ["err", "out"])],
)
def test_logging_selects_the_streams_sent_to_the_engine(
    provider: Any, sshd: SSHServer, engine: FakeEngine, logging: str, expected: list[str]
) -> None:
    name = f"log-{logging}"
    inputs = checked(provider, sshd, create="echo out; echo err >&2", logging=logging)
    _, outs = create(provider, REMOTE_COMMAND, name, inputs)
    assert (outs["stdout"], outs["stderr"]) == ("out", "err")  # outputs are captured regardless
    assert sorted(engine.messages(urn=urn(REMOTE_COMMAND, name))) == expected


def test_a_rejected_environment_variable_fails_with_the_real_message(provider: Any, sshd: SSHServer, engine: FakeEngine) -> None:
    inputs = checked(provider, sshd, create="true", environment={"NOT_ACCEPTED": "1"})
    error = rpc_error(lambda: create(provider, REMOTE_COMMAND, "env", inputs))
    assert error.details() == 'could not set environment variable "NOT_ACCEPTED": ssh: setenv failed'
    (logged,) = engine.messages(urn=urn(REMOTE_COMMAND, "env"), severity=engine_pb2.ERROR)
    assert logged.startswith("Unable to set 'NOT_ACCEPTED'. This only works if your SSH server is configured to accept")


def test_diff_replaces_on_trigger_changes_and_updates_otherwise(provider: Any, sshd: SSHServer) -> None:
    inputs = checked(provider, sshd, create="echo a", triggers=["v1"])
    olds = {**inputs, "stdout": "a", "stderr": ""}

    same = diff(provider, REMOTE_COMMAND, "cmd", olds, inputs)
    assert same.changes == provider_pb2.DiffResponse.DIFF_NONE

    changed = diff(provider, REMOTE_COMMAND, "cmd", olds, {**inputs, "create": "echo b"})
    assert changed.changes == provider_pb2.DiffResponse.DIFF_SOME
    assert list(changed.replaces) == []
    assert changed.detailedDiff["create"].kind == provider_pb2.PropertyDiff.UPDATE
    assert changed.deleteBeforeReplace is False

    triggered = diff(provider, REMOTE_COMMAND, "cmd", olds, {**inputs, "triggers": ["v2"]})
    assert list(triggered.replaces) == ["triggers[0]"]
    assert triggered.detailedDiff["triggers[0]"].kind == provider_pb2.PropertyDiff.UPDATE_REPLACE

    added = diff(provider, REMOTE_COMMAND, "cmd", olds, {**inputs, "triggers": ["v1", "w"]})
    assert list(added.replaces) == ["triggers[1]"]

    # The connection is compared by value, whatever the secret wrapping of its fields.
    reconnect = diff(provider, REMOTE_COMMAND, "cmd", olds, {**inputs, "connection": secret(sshd.connection(port=2300))})
    assert list(reconnect.diffs) == ["connection"] and list(reconnect.replaces) == []


def test_diff_treats_unknown_inputs_as_changes(provider: Any, sshd: SSHServer) -> None:
    inputs = checked(provider, sshd, create="echo a", triggers=["v1"])
    result = diff(provider, REMOTE_COMMAND, "cmd", {**inputs, "stdout": "a"}, {**inputs, "triggers": [pv.UNKNOWN]})
    assert list(result.replaces) == ["triggers[0]"]


def test_dial_errors_are_retried_up_to_the_limit(provider: Any, engine: FakeEngine) -> None:
    port = closed_port()
    news = {"connection": secret({"host": "127.0.0.1", "port": port, "dialErrorLimit": 2}), "create": "true"}
    inputs, _ = check(provider, REMOTE_COMMAND, "cmd", news)
    error = rpc_error(lambda: create(provider, REMOTE_COMMAND, "retry", inputs))
    assert error.details() == f"after 2 failed attempts: dial tcp 127.0.0.1:{port}: connect: connection refused"
    assert engine.messages(urn=urn(REMOTE_COMMAND, "retry"), ephemeral=True) == [
        "Dial 1/2 failed: retrying",
        "Dial 2/2 failed: retrying",
    ]


def test_authentication_failure_and_host_key_checks(provider: Any, sshd: SSHServer, tmp_path: Path) -> None:
    import subprocess

    other_key = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other_key)], check=True)
    wrong = {"connection": secret(sshd.connection(privateKey=other_key.read_text(), dialErrorLimit=0)), "create": "true"}
    inputs, _ = check(provider, REMOTE_COMMAND, "cmd", wrong)
    error = rpc_error(lambda: create(provider, REMOTE_COMMAND, "auth", inputs))
    assert error.details() == (
        "after 0 failed attempts: ssh: handshake failed: ssh: unable to authenticate, "
        "attempted methods [none publickey], no supported methods remain"
    )

    matching = {"connection": secret(sshd.connection(hostKey=sshd.host_public_key)), "create": "echo ok"}
    inputs, _ = check(provider, REMOTE_COMMAND, "cmd", matching)
    assert create(provider, REMOTE_COMMAND, "hostkey", inputs)[1]["stdout"] == "ok"

    other_host_key = Path(f"{other_key}.pub").read_text()
    mismatch = {"connection": secret(sshd.connection(hostKey=other_host_key, dialErrorLimit=0)), "create": "true"}
    inputs, _ = check(provider, REMOTE_COMMAND, "cmd", mismatch)
    error = rpc_error(lambda: create(provider, REMOTE_COMMAND, "hostkey", inputs))
    assert error.details() == "after 0 failed attempts: ssh: handshake failed: ssh: host key mismatch"


def test_a_pinned_rsa_host_key_fails_like_the_go_plugin(provider: Any, sshd: SSHServer) -> None:
    # The Go plugin offers only the pinned key's type, ssh-rsa (SHA-1) for an RSA key, which
    # OpenSSH 8.8 and later refuse. The sshd here has an RSA host key too, so without a pin it
    # connects, and with the RSA key pinned it cannot agree on a host key algorithm.
    pinned = {"connection": secret(sshd.connection(hostKey=sshd.host_rsa_public_key, dialErrorLimit=0)), "create": "echo ok"}
    inputs, _ = check(provider, REMOTE_COMMAND, "cmd", pinned)
    error = rpc_error(lambda: create(provider, REMOTE_COMMAND, "rsa", inputs)).details()
    assert error.startswith(
        "after 0 failed attempts: ssh: handshake failed: ssh: no common algorithm for host key; we offered: [ssh-rsa], peer offered: ["
    )
    offered_by_the_server = error.split("peer offered: [", 1)[1].split("]", 1)[0].split()
    assert "rsa-sha2-512" in offered_by_the_server and "ssh-rsa" not in offered_by_the_server
    assert "offers only the ssh-rsa (SHA-1) host key algorithm, and OpenSSH 8.8 and later refuse it" in error

    unpinned = {"connection": secret(sshd.connection()), "create": "echo ok"}
    inputs, _ = check(provider, REMOTE_COMMAND, "cmd", unpinned)
    assert create(provider, REMOTE_COMMAND, "rsa", inputs)[1]["stdout"] == "ok"


def x_line(length: int, newline: bool = True) -> str:
    """A shell snippet printing ``length`` bytes of x (and a newline)."""
    return f"head -c {length} /dev/zero | tr '\\0' x" + ("; echo" if newline else "")


def test_a_logged_line_of_64_kib_fails_promptly_where_the_go_plugin_hangs(provider: Any, sshd: SSHServer, tmp_path: Path) -> None:
    # 65535 bytes and the newline fit the Go plugin's 64 KiB bufio.Scanner buffer.
    inputs = checked(provider, sshd, create=f"{x_line(65535)}; echo after")
    assert create(provider, REMOTE_COMMAND, "long", inputs)[1]["stdout"] == "x" * 65535 + "\nafter"

    # One byte more hangs the Go plugin forever; the stand-in stops at once, without waiting for the command
    # (which would have marked its end after 30 s).
    done = tmp_path / "done"
    inputs = checked(provider, sshd, create=f"{x_line(65536)}; echo after; sleep 30; touch {done}")
    error = rpc_error(lambda: create(provider, REMOTE_COMMAND, "long", inputs)).details()
    assert not done.exists()
    assert error.startswith('running "head -c 65536 ')
    assert f'touch {done}": command output has a line of 65536 bytes or more on stdout: ' in error
    assert "the official pulumi-command v1.2.1 plugin hangs on such a line" in error

    # Stderr is logged too; a line ending the output exactly at 65536 bytes does not hang the Go plugin.
    inputs = checked(provider, sshd, create=f"({x_line(70000, newline=False)}) >&2; echo done")
    assert "on stderr" in rpc_error(lambda: create(provider, REMOTE_COMMAND, "long", inputs)).details()
    inputs = checked(provider, sshd, create=x_line(65536, newline=False))
    assert create(provider, REMOTE_COMMAND, "long", inputs)[1]["stdout"] == "x" * 65536


def test_a_long_line_in_a_stream_that_is_not_logged_is_fine(provider: Any, sshd: SSHServer) -> None:
    # The Go plugin only scans the logged streams.
    for logging, command in (("none", x_line(100000)), ("stderr", x_line(100000)), ("stdout", f"({x_line(100000)}) >&2")):
        inputs = checked(provider, sshd, create=command, logging=logging)
        outs = create(provider, REMOTE_COMMAND, "long", inputs)[1]
        assert len(outs["stdout"]) + len(outs["stderr"]) == 100000


def test_large_stdin_and_output_do_not_deadlock(provider: Any, sshd: SSHServer) -> None:
    payload = "".join(f"{i:08d} {uuid.uuid4()}\n" for i in range(20000))  # ~900 KB
    inputs = checked(provider, sshd, create="cat; cat /etc/hostname >&2", stdin=payload, logging="none")
    _, outs = create(provider, REMOTE_COMMAND, "big", inputs)
    assert outs["stdout"] == payload[:-1]


def test_read_returns_the_state_unchanged(provider: Any) -> None:
    state = {"connection": secret({"host": "h"}), "create": "x", "stdout": "o", "stderr": ""}
    resp = provider.Read(provider_pb2.ReadRequest(urn=urn(REMOTE_COMMAND, "cmd"), id="cmd1234", properties=pv.to_struct(state)))
    assert resp.id == "cmd1234"
    assert props_of(resp.properties) == state


def test_connects_through_a_proxy(provider: Any, sshd: SSHServer) -> None:
    bastion = {k: v for k, v in sshd.connection().items()}
    news = {"connection": secret(sshd.connection(proxy=bastion)), "create": "echo via bastion"}
    inputs, failures = check(provider, REMOTE_COMMAND, "cmd", news)
    assert failures == []
    assert create(provider, REMOTE_COMMAND, "proxied", inputs)[1]["stdout"] == "via bastion"


def test_authenticates_with_an_ssh_agent(provider: Any, sshd: SSHServer, tmp_path: Path) -> None:
    import subprocess

    socket_path = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(socket_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while not socket_path.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        key = tmp_path / "key"
        key.write_text(sshd.private_key)
        key.chmod(0o600)
        env = {"SSH_AUTH_SOCK": str(socket_path), "PATH": "/usr/bin:/bin"}
        subprocess.run(["ssh-add", "-q", str(key)], env=env, check=True, capture_output=True)
        connection = {k: v for k, v in sshd.connection(agentSocketPath=str(socket_path)).items() if k != "privateKey"}
        inputs, _ = check(provider, REMOTE_COMMAND, "cmd", {"connection": secret(connection), "create": "echo agent"})
        assert create(provider, REMOTE_COMMAND, "agent", inputs)[1]["stdout"] == "agent"
    finally:
        agent.terminate()
        agent.wait(timeout=10)


def test_private_keys_in_pkcs8_pem_are_accepted(provider: Any, sshd: SSHServer) -> None:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_ssh_private_key(sshd.private_key.encode(), password=None)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    assert pem.startswith("-----BEGIN PRIVATE KEY-----")
    inputs, _ = check(provider, REMOTE_COMMAND, "cmd", {"connection": secret(sshd.connection(privateKey=pem)), "create": "echo pem"})
    assert create(provider, REMOTE_COMMAND, "pem", inputs)[1]["stdout"] == "pem"


def test_a_passphrase_protected_key_needs_its_passphrase(provider: Any, sshd: SSHServer) -> None:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_ssh_private_key(sshd.private_key.encode(), password=None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.BestAvailableEncryption(b"pw")
    ).decode()
    without = {"connection": secret(sshd.connection(privateKey=encrypted)), "create": "true"}
    inputs, _ = check(provider, REMOTE_COMMAND, "cmd", without)
    assert rpc_error(lambda: create(provider, REMOTE_COMMAND, "enc", inputs)).details() == "ssh: this private key is passphrase protected"
    with_pw = {"connection": secret(sshd.connection(privateKey=encrypted, privateKeyPassword="pw")), "create": "echo unlocked"}
    inputs, _ = check(provider, REMOTE_COMMAND, "cmd", with_pw)
    assert create(provider, REMOTE_COMMAND, "enc", inputs)[1]["stdout"] == "unlocked"


def test_parallel_operations(provider: Any, sshd: SSHServer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    # Each command says when it ran (on the same clock): that they overlap shows they were not serialised,
    # however slow a loaded machine makes them.
    command = 'start=$(date +%s%N); sleep 1; echo "$DROPSHIP_N $start $(date +%s%N)"'
    inputs = checked(provider, sshd, create=command, logging="none")

    def run(n: int) -> tuple[str, int, int]:
        news = {**inputs, "environment": {"DROPSHIP_N": str(n)}}
        number, start, end = str(create(provider, REMOTE_COMMAND, f"p{n}", news)[1]["stdout"]).split()
        return number, int(start), int(end)

    with ThreadPoolExecutor(max_workers=8) as pool:
        ran = list(pool.map(run, range(8)))
    assert [number for number, _, _ in ran] == [str(n) for n in range(8)]
    overlapping = [(a, b) for a in ran for b in ran if a < b and a[1] < b[2] and b[1] < a[2]]
    assert overlapping, ran
