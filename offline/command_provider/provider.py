"""A Pulumi resource provider plugin compatible with pulumi-command v1.2.1.

It serves the ``command`` package (``command:remote:Command``,
``command:remote:CopyToRemote``, ``command:local:Command`` and the
``command:local:run`` function) over the provider gRPC protocol, so that the unchanged
``pulumi-command==1.2.1`` SDK works with the real Pulumi engine when the Go plugin
cannot be had.  The engine starts it as ``pulumi-resource-command [flags] <engine>``;
it prints the port it listens on, then serves until killed.

Semantics follow the Go provider (pulumi-go-provider ``infer``):

* Check applies the schema defaults: connection ``port`` 22, ``user`` root,
  ``dialErrorLimit`` 10, ``perDialTimeout`` 15 (also for ``proxy``), and
  ``addPreviousOutputInEnv`` true; ``logging`` has no default (unset = log both).
* Diff compares the old state's input properties with the new inputs; any change
  under ``triggers`` is a replacement, anything else an update.  ``deleteBeforeReplace``
  is *not* requested (the engine creates the replacement before deleting the old one,
  unless the program sets ``delete_before_replace``).
* Create/Update run nothing in preview; ``stdout``/``stderr`` are then unknown.
* Outputs echo the inputs exactly as received (secret wrappers kept), plus
  ``stdout``/``stderr``; ``connection`` is always secret.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import traceback
import warnings
from collections.abc import Iterator, Mapping
from concurrent import futures
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, NoReturn, TypeAlias

import grpc
from google.protobuf import empty_pb2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import propvalues as pv
import sshclient
from pulumi.runtime.proto import (
    engine_pb2,
    engine_pb2_grpc,
    plugin_pb2,
    provider_pb2,
    provider_pb2_grpc,
)

PLUGIN_VERSION = "1.2.1"
PACKAGE = "command"

REMOTE_COMMAND = "command:remote:Command"
COPY_TO_REMOTE = "command:remote:CopyToRemote"
LOCAL_COMMAND = "command:local:Command"
LOCAL_RUN = "command:local:run"

COMMON_INPUTS = ("triggers", "create", "update", "delete")
REMOTE_COMMAND_INPUTS = (
    *COMMON_INPUTS,
    "stdin",
    "logging",
    "connection",
    "environment",
    "addPreviousOutputInEnv",
)
COPY_TO_REMOTE_INPUTS = ("connection", "triggers", "source", "remotePath")
LOCAL_BASE_INPUTS = (
    "stdin",
    "logging",
    "interpreter",
    "dir",
    "environment",
    "assetPaths",
    "archivePaths",
    "addPreviousOutputInEnv",
)
LOCAL_COMMAND_INPUTS = (*COMMON_INPUTS, *LOCAL_BASE_INPUTS)
LOCAL_RUN_INPUTS = ("command", *LOCAL_BASE_INPUTS)

INPUTS_BY_TYPE: dict[str, tuple[str, ...]] = {
    REMOTE_COMMAND: REMOTE_COMMAND_INPUTS,
    COPY_TO_REMOTE: COPY_TO_REMOTE_INPUTS,
    LOCAL_COMMAND: LOCAL_COMMAND_INPUTS,
}

CONNECTION_DEFAULTS: dict[str, Any] = {
    "user": "root",
    "port": 22,
    "dialErrorLimit": 10,
    "perDialTimeout": 15,
}
LOGGING_VALUES = ("stdout", "stderr", "stdoutAndStderr", "none")
REPLACE_ON_CHANGES = ("triggers",)

PULUMI_COMMAND_STDOUT = "PULUMI_COMMAND_STDOUT"
PULUMI_COMMAND_STDERR = "PULUMI_COMMAND_STDERR"

SETENV_HINT = (
    "Unable to set '{key}'. This only works if your SSH server is configured to accept\n"
    "\tthese variables via AcceptEnv. Alternatively, if a Bash-like shell runs the command on the remote host, "
    "you could\n\tprefix the command itself with the variables in the form 'VAR=value command'"
)

Severity: TypeAlias = "engine_pb2.LogSeverity.ValueType"


# --- engine logging ---------------------------------------------------------------------


class EngineLogger:
    """Sends diagnostics to the engine's Log RPC (``ephemeral`` = status messages)."""

    def __init__(self, address: str | None) -> None:
        self._lock = threading.Lock()
        self._address = address
        self._stub: engine_pb2_grpc.EngineStub | None = None
        self._channel: grpc.Channel | None = None

    def set_address(self, address: str | None) -> None:
        with self._lock:
            if address and address != self._address:
                if self._channel is not None:
                    self._channel.close()
                self._address = address
                self._stub = None
                self._channel = None

    def _get_stub(self) -> engine_pb2_grpc.EngineStub | None:
        with self._lock:
            if self._stub is None and self._address:
                self._channel = grpc.insecure_channel(
                    self._address,
                    options=[("grpc.max_receive_message_length", 400 * 1024 * 1024)],
                )
                self._stub = engine_pb2_grpc.EngineStub(self._channel)
            return self._stub

    def log(self, severity: Severity, message: str, urn: str = "", ephemeral: bool = False) -> None:
        stub = self._get_stub()
        if stub is None:
            return
        with suppress(grpc.RpcError):
            stub.Log(
                engine_pb2.LogRequest(severity=severity, message=message, urn=urn, ephemeral=ephemeral),
                timeout=30,
            )


@dataclass
class OpContext:
    """What an operation needs: where to log, the resource, and the cancel flag."""

    logger: EngineLogger
    urn: str
    cancel: threading.Event

    def info_status(self, message: str) -> None:
        self.logger.log(engine_pb2.INFO, message, self.urn, ephemeral=True)

    def debug(self, message: str) -> None:
        self.logger.log(engine_pb2.DEBUG, message, self.urn)

    def warning(self, message: str) -> None:
        self.logger.log(engine_pb2.WARNING, message, self.urn)

    def error(self, message: str) -> None:
        self.logger.log(engine_pb2.ERROR, message, self.urn)


# --- helpers ----------------------------------------------------------------------------


def go_quote(text: str) -> str:
    """Go's ``%q`` / strconv.Quote for a string."""
    escapes = {
        "\a": "\\a",
        "\b": "\\b",
        "\f": "\\f",
        "\n": "\\n",
        "\r": "\\r",
        "\t": "\\t",
        "\v": "\\v",
        "\\": "\\\\",
        '"': '\\"',
    }
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in escapes:
            out.append(escapes[ch])
        elif ch == " " or (ch.isprintable() and code != 0x7F):
            out.append(ch)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def type_of(urn: str, explicit: str = "") -> str:
    if explicit:
        return explicit
    parts = urn.split("::")
    if len(parts) < 4:
        return ""
    return parts[2].split("$")[-1]


def name_of(urn: str, explicit: str = "") -> str:
    if explicit:
        return explicit
    return urn.split("::")[-1] if "::" in urn else urn


def unique_hex(prefix: str, length: int = 8) -> str:
    return prefix + secrets.token_hex((length + 1) // 2)[:length]


def opt_str(props: Mapping[str, Any], key: str) -> str | None:
    value = pv.reveal(props.get(key))
    return value if isinstance(value, str) else None


def opt_bool(props: Mapping[str, Any], key: str) -> bool | None:
    value = pv.reveal(props.get(key))
    return value if isinstance(value, bool) else None


def str_map(props: Mapping[str, Any], key: str) -> dict[str, str]:
    value = pv.reveal(props.get(key))
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items() if isinstance(v, str)}


def should_log(mode: str | None, stream: str) -> bool:
    if mode is None:
        return True
    return mode == stream or mode == "stdoutAndStderr"


def previous_output_env(props: Mapping[str, Any], state: Mapping[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    add = opt_bool(props, "addPreviousOutputInEnv")
    if add is None or add:
        stdout = opt_str(state, "stdout") or ""
        stderr = opt_str(state, "stderr") or ""
        if stdout:
            env[PULUMI_COMMAND_STDOUT] = stdout
        if stderr:
            env[PULUMI_COMMAND_STDERR] = stderr
    return env


def select_inputs(props: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: props[k] for k in keys if k in props and props[k] is not None}


def apply_connection_defaults(value: Any, failures: list[tuple[str, str]], path: str) -> Any:
    """Fill in connection defaults, keeping secret wrappers and unknowns where they are."""
    inner, secret = pv.unwrap_secret(value)
    if pv.is_unknown(inner) or not isinstance(inner, dict):
        if inner is None:
            failures.append((path, f"Missing required property '{path}'"))
        return value
    result = dict(inner)
    for key, default in CONNECTION_DEFAULTS.items():
        if result.get(key) is None:
            result[key] = default
    if result.get("host") is None:
        failures.append((f"{path}.host", f"Missing required property '{path}.host'"))
    proxy = result.get("proxy")
    if proxy is not None:
        result["proxy"] = apply_connection_defaults(proxy, failures, f"{path}.proxy")
    return pv.make_secret(result) if secret else result


def connection_spec(props: Mapping[str, Any]) -> sshclient.ConnectionSpec:
    connection = pv.reveal(props.get("connection"))
    if not isinstance(connection, Mapping):
        raise sshclient.ProviderError("missing required property 'connection'")
    return sshclient.ConnectionSpec.from_props(connection)


def with_secret_connection(props: dict[str, Any]) -> dict[str, Any]:
    if "connection" in props and props["connection"] is not None:
        props["connection"] = pv.make_secret(props["connection"])
    return props


# --- command execution ---------------------------------------------------------------------


def run_remote(ctx: OpContext, props: Mapping[str, Any], state: Mapping[str, Any], command: str) -> tuple[str, str]:
    """Run ``command`` like the Go provider's CommandOutputs.run; returns (stdout, stderr)."""
    spec = connection_spec(props)
    log_mode = opt_str(props, "logging")
    with sshclient.dial(spec, ctx.info_status, ctx.cancel) as conn:

        def rejected_optional(name: str) -> None:
            ctx.warning(SETENV_HINT.format(key=name))

        try:
            result = sshclient.run_command(
                conn,
                command,
                environment=str_map(props, "environment"),
                optional_environment=previous_output_env(props, state),
                stdin=opt_str(props, "stdin"),
                stdout_sink=ctx.info_status if should_log(log_mode, "stdout") else None,
                stderr_sink=ctx.info_status if should_log(log_mode, "stderr") else None,
                on_optional_env_rejected=rejected_optional,
            )
        except sshclient.SetenvError as exc:
            ctx.error(SETENV_HINT.format(key=exc.name))
            raise
        except sshclient.LongLineError as exc:
            raise sshclient.ProviderError(f"running {go_quote(command)}: {exc}") from exc
    if result.error is not None:
        raise sshclient.ProviderError(f"{result.error}: running {go_quote(command)}:\n{result.combined}")
    return sshclient.trim_newline(result.stdout), sshclient.trim_newline(result.stderr)


def run_local(ctx: OpContext, props: Mapping[str, Any], state: Mapping[str, Any], command: str) -> tuple[str, str]:
    """Run ``command`` like the Go provider's local run; returns (stdout, stderr)."""
    if props.get("assetPaths") is not None or props.get("archivePaths") is not None:
        raise sshclient.ProviderError("assetPaths and archivePaths are not supported by this command provider")
    interpreter = pv.reveal(props.get("interpreter"))
    args = [str(a) for a in interpreter] if isinstance(interpreter, list) and interpreter else ["/bin/sh", "-c"]
    args.append(command)
    cwd = opt_str(props, "dir") or os.getcwd()
    env = dict(os.environ)
    env.update(str_map(props, "environment"))
    env.update(previous_output_env(props, state))
    stdin = opt_str(props, "stdin")
    log_mode = opt_str(props, "logging")
    try:
        proc = subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except FileNotFoundError as exc:
        if not os.path.isdir(cwd):
            raise sshclient.ProviderError(f"chdir {cwd}: no such file or directory") from exc
        raise sshclient.ProviderError(f'exec: "{args[0]}": executable file not found in $PATH') from exc
    except OSError as exc:
        raise sshclient.ProviderError(str(exc)) from exc

    out, err, both = bytearray(), bytearray(), bytearray()
    lock = threading.Lock()
    long_lines: list[sshclient.LongLineError] = []

    def pump(stream: Any, buf: bytearray, lines: sshclient.LineSplitter) -> None:
        try:
            while chunk := stream.read1(65536):
                with lock:
                    buf.extend(chunk)
                    both.extend(chunk)
                lines.feed(chunk)
            lines.close()
        except sshclient.LongLineError as exc:  # where the Go plugin hangs: stop the command
            long_lines.append(exc)
            with suppress(OSError):
                proc.kill()
            while stream.read1(65536):  # children of the shell may still write
                pass

    def splitter(stream: str) -> sshclient.LineSplitter:
        return sshclient.LineSplitter(ctx.info_status if should_log(log_mode, stream) else None, stream)

    threads = [
        threading.Thread(target=pump, args=(proc.stdout, out, splitter("stdout")), daemon=True),
        threading.Thread(target=pump, args=(proc.stderr, err, splitter("stderr")), daemon=True),
    ]
    for thread in threads:
        thread.start()
    assert proc.stdin is not None
    try:
        if stdin:
            proc.stdin.write(stdin.encode())
        proc.stdin.close()
    except BrokenPipeError:
        pass
    for thread in threads:
        while thread.is_alive() and not long_lines:
            thread.join(0.05)
    if long_lines:
        # Fail at once: the shell is killed; children still holding its output are left to finish.
        with suppress(OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait(timeout=5)
        raise sshclient.ProviderError(f"running {go_quote(command)}: {long_lines[0]}")
    code = proc.wait()
    if code != 0:
        reason = f"exit status {code}" if code > 0 else f"signal: {signal.Signals(-code).name}"
        combined = sshclient.decode_output(bytes(both))
        raise sshclient.ProviderError(f"{reason}: running {go_quote(command)}:\n{combined}")
    return (
        sshclient.trim_newline(sshclient.decode_output(bytes(out))),
        sshclient.trim_newline(sshclient.decode_output(bytes(err))),
    )


# --- resources ------------------------------------------------------------------------------


def check_common(type_token: str, news: Mapping[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    inputs = select_inputs(news, INPUTS_BY_TYPE[type_token])
    failures: list[tuple[str, str]] = []
    if type_token in (REMOTE_COMMAND, COPY_TO_REMOTE):
        inputs["connection"] = apply_connection_defaults(inputs.get("connection"), failures, "connection")
        if inputs["connection"] is None:
            del inputs["connection"]
    if type_token in (REMOTE_COMMAND, LOCAL_COMMAND):
        if inputs.get("addPreviousOutputInEnv") is None:
            inputs["addPreviousOutputInEnv"] = True
        log_mode = pv.reveal(inputs.get("logging"))
        if isinstance(log_mode, str) and not pv.is_unknown(log_mode) and log_mode not in LOGGING_VALUES:
            allowed = ", ".join(LOGGING_VALUES)
            failures.append(("logging", f"{go_quote(log_mode)} is not a valid value; expected one of {allowed}"))
    if type_token == COPY_TO_REMOTE:
        failures.extend(check_copy_source(inputs))
    return inputs, failures


def check_copy_source(inputs: Mapping[str, Any]) -> list[tuple[str, str]]:
    failures: list[tuple[str, str]] = []
    if inputs.get("remotePath") is None:
        failures.append(("remotePath", "Missing required property 'remotePath'"))
    source, _ = pv.unwrap_secret(inputs.get("source"))
    if source is None:
        failures.append(("source", "Missing required property 'source'"))
        return failures
    if pv.is_unknown(source):
        return failures
    if pv.is_asset(source):
        if not isinstance(source.get("path"), str) and not isinstance(source.get("text"), str):
            failures.append(("asset", "asset must be a path-based file asset or a string asset"))
    elif pv.is_archive(source):
        if not isinstance(source.get("path"), str):
            failures.append(("archive", "archive must be a path to a file or directory"))
    else:
        failures.append(("asset", "either asset or archive must be set"))
    return failures


def preview_outputs(state: dict[str, Any]) -> dict[str, Any]:
    state["stdout"] = pv.UNKNOWN
    state["stderr"] = pv.UNKNOWN
    return state


class Resources:
    """The CRUD operations of the package's resources on plain property maps."""

    def create(self, ctx: OpContext, type_token: str, name: str, props: dict[str, Any], preview: bool) -> tuple[str, dict[str, Any]]:
        if type_token == COPY_TO_REMOTE:
            state = with_secret_connection(select_inputs(props, COPY_TO_REMOTE_INPUTS))
            if preview:
                return "", state
            self._copy(ctx, props)
            return unique_hex(""), state

        state = with_secret_connection(select_inputs(props, INPUTS_BY_TYPE[type_token]))
        resource_id = unique_hex(name)
        if preview:
            return resource_id, preview_outputs(state)
        command = opt_str(props, "create")
        stdout, stderr = "", ""
        if command is not None:
            stdout, stderr = self._run(ctx, type_token, props, {}, command)
        state["stdout"] = stdout
        state["stderr"] = stderr
        return resource_id, state

    def update(
        self,
        ctx: OpContext,
        type_token: str,
        olds: dict[str, Any],
        news: dict[str, Any],
        preview: bool,
    ) -> dict[str, Any]:
        if type_token == COPY_TO_REMOTE:
            state = with_secret_connection(select_inputs(news, COPY_TO_REMOTE_INPUTS))
            if preview:
                return state
            old_source, _ = pv.unwrap_secret(olds.get("source"))
            new_source, _ = pv.unwrap_secret(news.get("source"))
            changed_source = not (
                isinstance(old_source, dict) and isinstance(new_source, dict) and pv.asset_hash(old_source) == pv.asset_hash(new_source)
            )
            if changed_source or opt_str(olds, "remotePath") != opt_str(news, "remotePath"):
                self._copy(ctx, news)
            return state

        state = with_secret_connection(select_inputs(news, INPUTS_BY_TYPE[type_token]))
        state["stdout"] = olds.get("stdout", "")
        state["stderr"] = olds.get("stderr", "")
        if preview:
            return preview_outputs(state)
        update = opt_str(news, "update")
        command = update if update is not None else opt_str(news, "create")
        if command is not None:
            state["stdout"], state["stderr"] = self._run(ctx, type_token, news, olds, command)
        return state

    def delete(self, ctx: OpContext, type_token: str, props: dict[str, Any]) -> None:
        if type_token == COPY_TO_REMOTE:
            return
        command = opt_str(props, "delete")
        if command is None:
            return
        self._run(ctx, type_token, props, props, command)

    def _run(
        self,
        ctx: OpContext,
        type_token: str,
        props: Mapping[str, Any],
        state: Mapping[str, Any],
        command: str,
    ) -> tuple[str, str]:
        if type_token == LOCAL_COMMAND:
            return run_local(ctx, props, state, command)
        return run_remote(ctx, props, state, command)

    def _copy(self, ctx: OpContext, props: Mapping[str, Any]) -> None:
        spec = connection_spec(props)
        remote_path = opt_str(props, "remotePath")
        if remote_path is None:
            raise sshclient.ProviderError("missing required property 'remotePath'")
        source = pv.reveal(props.get("source"))
        if not isinstance(source, dict):
            raise sshclient.ProviderError("either asset or archive must be set")
        path = source.get("path")
        text = source.get("text")
        ctx.debug(f"Creating file: {spec.host}:{remote_path} from local file {path if path is not None else '<text>'}")
        with sshclient.dial(spec, ctx.info_status, ctx.cancel) as conn:
            if isinstance(path, str):
                sshclient.copy_path(conn, path, remote_path)
            elif isinstance(text, str):
                sshclient.copy_text(conn, text, remote_path)
            else:
                raise sshclient.ProviderError("asset must be a path-based file asset or a string asset")


# --- gRPC service ------------------------------------------------------------------------------


def _abort(context: grpc.ServicerContext, message: str, code: grpc.StatusCode = grpc.StatusCode.UNKNOWN) -> NoReturn:
    context.abort(code, message)
    raise AssertionError("unreachable")  # pragma: no cover


@contextmanager
def _errors_to_status(context: grpc.ServicerContext) -> Iterator[None]:
    try:
        yield
    except sshclient.ProviderError as exc:
        _abort(context, str(exc))
    except Exception:  # report unexpected failures with their traceback
        _abort(context, traceback.format_exc())


class CommandProvider(provider_pb2_grpc.ResourceProviderServicer):
    def __init__(self, engine_address: str | None) -> None:
        self.logger = EngineLogger(engine_address)
        self.cancel = threading.Event()
        self.resources = Resources()

    def _ctx(self, urn: str) -> OpContext:
        return OpContext(self.logger, urn, self.cancel)

    def _type(self, context: grpc.ServicerContext, urn: str, explicit: str = "") -> str:
        type_token = type_of(urn, explicit)
        if type_token not in INPUTS_BY_TYPE:
            _abort(context, f"unknown resource type '{type_token}'", grpc.StatusCode.INVALID_ARGUMENT)
        return type_token

    # -- plugin lifecycle

    def Handshake(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        self.logger.set_address(request.engine_address or None)
        return provider_pb2.ProviderHandshakeResponse(
            accept_secrets=True,
            accept_resources=False,
            accept_outputs=False,
            supports_autonaming_configuration=False,
        )

    def GetPluginInfo(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return plugin_pb2.PluginInfo(version=PLUGIN_VERSION)

    def GetSchema(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        import json

        schema = {"name": PACKAGE, "version": PLUGIN_VERSION, "resources": {}, "functions": {}}
        return provider_pb2.GetSchemaResponse(schema=json.dumps(schema))

    def CheckConfig(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return provider_pb2.CheckResponse(inputs=request.news)

    def DiffConfig(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return provider_pb2.DiffResponse(changes=provider_pb2.DiffResponse.DIFF_NONE)

    def Configure(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return provider_pb2.ConfigureResponse(
            acceptSecrets=True,
            supportsPreview=True,
            acceptResources=False,
            acceptOutputs=False,
        )

    def Attach(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        self.logger.set_address(request.address or None)
        return empty_pb2.Empty()

    def Cancel(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        self.cancel.set()
        return empty_pb2.Empty()

    # -- resources

    def Check(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        type_token = self._type(context, request.urn, request.type)
        with _errors_to_status(context):
            inputs, failures = check_common(type_token, pv.from_struct(request.news))
            return provider_pb2.CheckResponse(
                inputs=pv.to_struct(inputs),
                failures=[provider_pb2.CheckFailure(property=p, reason=r) for p, r in failures],
            )

    def Diff(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        type_token = self._type(context, request.urn, request.type)
        with _errors_to_status(context):
            keys = INPUTS_BY_TYPE[type_token]
            olds = pv.from_struct(request.olds)
            news = select_inputs(pv.from_struct(request.news), keys)
            old_inputs = select_inputs(olds, keys)
            for ignored in request.ignoreChanges:
                if ignored in keys:
                    if ignored in old_inputs:
                        news[ignored] = old_inputs[ignored]
                    else:
                        news.pop(ignored, None)
            return diff_response(pv.diff_maps(old_inputs, news))

    def Create(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        type_token = self._type(context, request.urn, request.type)
        with _errors_to_status(context):
            props = pv.from_struct(request.properties)
            resource_id, state = self.resources.create(
                self._ctx(request.urn), type_token, name_of(request.urn, request.name), props, request.preview
            )
            return provider_pb2.CreateResponse(id=resource_id, properties=pv.to_struct(state))

    def Update(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        type_token = self._type(context, request.urn, request.type)
        with _errors_to_status(context):
            state = self.resources.update(
                self._ctx(request.urn),
                type_token,
                pv.from_struct(request.olds),
                pv.from_struct(request.news),
                request.preview,
            )
            return provider_pb2.UpdateResponse(properties=pv.to_struct(state))

    def Delete(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        type_token = self._type(context, request.urn, request.type)
        with _errors_to_status(context):
            self.resources.delete(self._ctx(request.urn), type_token, pv.from_struct(request.properties))
            return empty_pb2.Empty()

    def Read(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        self._type(context, request.urn, request.type)
        return provider_pb2.ReadResponse(id=request.id, properties=request.properties, inputs=request.inputs)

    # -- functions

    def Invoke(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        if request.tok != LOCAL_RUN:
            _abort(context, f"unknown function '{request.tok}'", grpc.StatusCode.INVALID_ARGUMENT)
        with _errors_to_status(context):
            args = select_inputs(pv.from_struct(request.args), LOCAL_RUN_INPUTS)
            command = opt_str(args, "command")
            if command is None:
                return provider_pb2.InvokeResponse(
                    failures=[provider_pb2.CheckFailure(property="command", reason="Missing required property 'command'")]
                )
            if args.get("addPreviousOutputInEnv") is None:
                args["addPreviousOutputInEnv"] = True
            stdout, stderr = run_local(self._ctx(""), args, {}, command)
            result = {**args, "stdout": stdout, "stderr": stderr}
            return provider_pb2.InvokeResponse(**{"return": pv.to_struct(result)})


def diff_response(diffs: list[pv.PathDiff]) -> Any:
    kinds = provider_pb2.PropertyDiff
    replace_kind = {pv.ADD: kinds.ADD_REPLACE, pv.DELETE: kinds.DELETE_REPLACE, pv.UPDATE: kinds.UPDATE_REPLACE}
    plain_kind = {pv.ADD: kinds.ADD, pv.DELETE: kinds.DELETE, pv.UPDATE: kinds.UPDATE}
    detailed: dict[str, Any] = {}
    replaces: list[str] = []
    changed: list[str] = []
    for diff in diffs:
        replace = diff.root in REPLACE_ON_CHANGES
        kind = replace_kind[diff.kind] if replace else plain_kind[diff.kind]
        detailed[diff.path] = provider_pb2.PropertyDiff(kind=kind, inputDiff=False)
        changed.append(diff.path)
        if replace:
            replaces.append(diff.path)
    return provider_pb2.DiffResponse(
        changes=provider_pb2.DiffResponse.DIFF_SOME if diffs else provider_pb2.DiffResponse.DIFF_NONE,
        replaces=replaces,
        diffs=changed,
        detailedDiff=detailed,
        hasDetailedDiff=True,
        deleteBeforeReplace=False,
    )


# --- entry point ------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> str | None:
    parser = argparse.ArgumentParser(prog="pulumi-resource-command", add_help=True)
    parser.add_argument("--logtostderr", action="store_true")
    parser.add_argument("-v", dest="verbose", default=None)
    parser.add_argument("--logflow", action="store_true")
    parser.add_argument("--tracing", default=None)
    parser.add_argument("engine", nargs="?", default=None)
    args, _unknown = parser.parse_known_args(argv)
    engine = args.engine
    return engine if isinstance(engine, str) and engine else None


def serve(engine_address: str | None) -> None:
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=64),
        options=[
            ("grpc.max_receive_message_length", 400 * 1024 * 1024),
            ("grpc.max_send_message_length", 400 * 1024 * 1024),
        ],
    )
    provider = CommandProvider(engine_address)
    provider_pb2_grpc.add_ResourceProviderServicer_to_server(provider, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()

    stopped = threading.Event()

    def stop(_signum: int, _frame: object) -> None:
        provider.cancel.set()
        stopped.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    stopped.wait()
    server.stop(grace=1).wait()


def main(argv: list[str] | None = None) -> int:
    # stdout carries the port and stderr is shown by the engine: keep libraries quiet.
    warnings.simplefilter("ignore")
    logging.getLogger("paramiko").addHandler(logging.NullHandler())
    logging.getLogger("paramiko").propagate = False
    serve(parse_args(sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
