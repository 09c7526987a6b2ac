"""command:local:Command, command:local:run, the plugin protocol calls, and pure helpers."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import empty_pb2
from pulumi.runtime.proto import provider_pb2

from .conftest import LOCAL_COMMAND, LOCAL_RUN_TOKEN, REPO, check, create, delete, props_of, rpc_error, secret, struct, update

import propvalues as pv  # isort: skip
import provider as plugin  # isort: skip
import sshclient  # isort: skip


def test_plugin_info_handshake_and_configure(provider: Any) -> None:
    assert provider.GetPluginInfo(empty_pb2.Empty()).version == "1.2.1"
    handshake = provider.Handshake(provider_pb2.ProviderHandshakeRequest(engine_address=""))
    assert handshake.accept_secrets is True
    configured = provider.Configure(provider_pb2.ConfigureRequest(acceptSecrets=True))
    assert configured.acceptSecrets is True and configured.supportsPreview is True


def test_local_command_lifecycle(provider: Any, tmp_path: Path) -> None:
    inputs, failures = check(
        provider,
        LOCAL_COMMAND,
        "local",
        {
            "create": 'cat; echo "$DROPSHIP_X" >&2',
            "update": 'echo "$PULUMI_COMMAND_STDOUT+"',
            "delete": f'echo "$PULUMI_COMMAND_STDOUT" > {tmp_path / "deleted"}',
            "stdin": secret("in"),
            "environment": {"DROPSHIP_X": "x"},
            "dir": str(tmp_path),
        },
    )
    assert failures == [] and inputs["addPreviousOutputInEnv"] is True
    _, state = create(provider, LOCAL_COMMAND, "local", inputs)
    assert (state["stdout"], state["stderr"]) == ("in", "x")
    assert state["stdin"] == secret("in")
    state = update(provider, LOCAL_COMMAND, "local", state, {**inputs, "triggers": [1]})
    assert state["stdout"] == "in+"
    delete(provider, LOCAL_COMMAND, "local", state)
    assert (tmp_path / "deleted").read_text() == "in+\n"


def test_local_command_failure_and_interpreter(provider: Any, tmp_path: Path) -> None:
    error = rpc_error(lambda: create(provider, LOCAL_COMMAND, "local", {"create": "echo boom >&2; exit 4"}))
    assert error.details() == 'exit status 4: running "echo boom >&2; exit 4":\nboom\n'
    _, state = create(provider, LOCAL_COMMAND, "local", {"create": "print(6*7)", "interpreter": ["python3", "-c"]})
    assert state["stdout"] == "42"
    _, state = create(provider, LOCAL_COMMAND, "local", {"create": "echo hi"}, preview=True)
    assert state["stdout"] == pv.UNKNOWN


def test_local_run_invoke(provider: Any) -> None:
    resp = provider.Invoke(provider_pb2.InvokeRequest(tok=LOCAL_RUN_TOKEN, args=struct({"command": "echo $((1+2))"})))
    assert props_of(getattr(resp, "return"))["stdout"] == "3"


def test_unknown_types_are_rejected(provider: Any) -> None:
    error = rpc_error(lambda: provider.Check(provider_pb2.CheckRequest(urn="urn:pulumi:s::p::command:remote:Nope::n", news=struct({}))))
    assert "unknown resource type 'command:remote:Nope'" in error.details()


def test_go_quote_matches_strconv_quote() -> None:
    assert plugin.go_quote('a "b"\n\tc\\') == '"a \\"b\\"\\n\\tc\\\\"'
    assert plugin.go_quote("\x00\x7fé€") == '"\\x00\\x7fé€"'
    assert plugin.go_quote("\u200b") == '"\\u200b"'


def test_diff_paths_follow_the_engine_format() -> None:
    diffs = pv.diff_maps(
        {"a": {"b": 1, "c d": 2}, "l": [1, 2], "s": secret("x"), "gone": 1, "n": None},
        {"a": {"b": 2, "c d": 2}, "l": [1], "s": secret("x"), "new": True},
    )
    assert [(d.path, d.kind) for d in diffs] == [
        ("a.b", pv.UPDATE),
        ("gone", pv.DELETE),
        ("l[1]", pv.DELETE),
        ("new", pv.ADD),
    ]
    assert pv.diff_maps({"s": secret("x")}, {"s": "x"})[0].path == "s"  # secretness change is a change


def test_line_splitter_stops_where_the_go_scanner_would_hang() -> None:
    lines: list[str] = []
    splitter = sshclient.LineSplitter(lines.append, "stdout")
    splitter.feed(b"a\r\n" + b"x" * 65535 + b"\n")
    assert lines == ["a", "x" * 65535]
    splitter.feed(b"y" * 65536)  # may still be the end of the output
    with pytest.raises(sshclient.LongLineError, match="line of 65536 bytes or more on stdout"):
        splitter.feed(b"\n")
    silent = sshclient.LineSplitter(None, "stderr")
    silent.feed(b"z" * 200000)  # a stream that is not logged is not scanned
    last: list[str] = []
    tail = sshclient.LineSplitter(last.append)
    tail.feed(b"w" * 65536)
    tail.close()
    assert last == []  # the Go scanner stops without logging it


def test_a_local_command_with_a_64_kib_line_fails_promptly(provider: Any, tmp_path: Path) -> None:
    """Without waiting for the command, which would have marked its end after 30 s."""
    done = tmp_path / "done"
    command = f"head -c 65536 /dev/zero | tr '\\0' x; echo; sleep 30; touch {done}"
    inputs, _ = check(provider, LOCAL_COMMAND, "long", {"create": command})
    error = rpc_error(lambda: create(provider, LOCAL_COMMAND, "long", inputs))
    assert not done.exists()
    assert "command output has a line of 65536 bytes or more on stdout" in error.details()
    inputs, _ = check(provider, LOCAL_COMMAND, "long", {"create": command, "logging": "stderr"})
    assert (
        len(create(provider, LOCAL_COMMAND, "long", {**inputs, "create": command.replace(f"; sleep 30; touch {done}", "")})[1]["stdout"])
        == 65536
    )


def test_launcher_honours_dropship_venv(tmp_path: Path) -> None:
    env = {**os.environ, "DROPSHIP_VENV": str(tmp_path / "no-venv")}
    result = subprocess.run([str(REPO / "offline/command_provider/pulumi-resource-command")], env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert "no Python at" in result.stderr and result.stdout == ""


def test_install_script_installs_into_the_plugin_cache(tmp_path: Path) -> None:
    home = tmp_path / "pulumi-home"
    partial = home / "plugins" / "resource-command-v1.2.1.partial"
    partial.parent.mkdir(parents=True)
    partial.write_text("")
    env = {**os.environ, "PULUMI_HOME": str(home)}
    env.pop("PULUMI_COMMAND_VERSION", None)
    subprocess.run(["bash", str(REPO / "offline/command_provider/install.sh")], env=env, check=True, capture_output=True)
    plugin_path = home / "plugins" / "resource-command-v1.2.1" / "pulumi-resource-command"
    assert os.access(plugin_path, os.X_OK)
    assert plugin_path.resolve() == (REPO / "offline/command_provider/pulumi-resource-command").resolve()
    assert not partial.exists()
    env["PULUMI_COMMAND_VERSION"] = "1.3.0"
    refused = subprocess.run(["bash", str(REPO / "offline/command_provider/install.sh")], env=env, capture_output=True, text=True)
    assert refused.returncode != 0 and "implements 1.2.1" in refused.stderr
