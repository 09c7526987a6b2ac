"""SSH side of the command provider: dialing with retries, running commands, SFTP copy.

Behaviour follows pulumi-command v1.2.1 (Go, golang.org/x/crypto/ssh + pkg/sftp):

* authentication methods in the Go order: private key, password, keyboard-interactive
  (answered with the password), then the SSH agent (``agentSocketPath`` or
  ``$SSH_AUTH_SOCK``); ``~/.ssh`` keys are never looked at;
* the host key is ignored unless ``hostKey`` is given (authorized_keys format); then
  only that key's type is offered as host key algorithm, and for an RSA key that is
  ``ssh-rsa`` (SHA-1) alone, which OpenSSH 8.8 and later refuse: such a dial fails,
  as with the Go plugin (``ssh.ClientConfig.HostKeyAlgorithms = [key.Type()]``);
* every dial error is retried with a 100 ms delay growing 1.5x up to 5 s, until
  ``dialErrorLimit`` retries have failed (``-1`` = forever);
* environment variables are sent with SSH ``env`` requests (server needs AcceptEnv);
* command errors read ``<exit error>: running "<cmd>":\\n<stdout and stderr>``;
* a logged output line of 65536 bytes or more followed by more output fails the
  command at once: the Go plugin scans logged output with a ``bufio.Scanner``
  (64 KiB buffer) and hangs on such a line (see ``LineSplitter``).
"""

from __future__ import annotations

import errno
import io
import os
import posixpath
import socket
import stat
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import paramiko
from paramiko.agent import AgentSSH
from paramiko.common import (
    MSG_CHANNEL_FAILURE,
    MSG_CHANNEL_REQUEST,
    MSG_CHANNEL_SUCCESS,
    cMSG_CHANNEL_REQUEST,
)
from paramiko.message import Message

LineSink = Callable[[str], None]
StatusSink = Callable[[str], None]

DIAL_ERROR_DEFAULT = 10
DIAL_DELAY = 0.1
DIAL_BACKOFF = 1.5
DIAL_MAX_DELAY = 5.0

# Exit statuses Go's ssh package derives from an exit-signal (128 + signal number).
_SIGNALS = {
    "ABRT": 6,
    "ALRM": 14,
    "FPE": 8,
    "HUP": 1,
    "ILL": 4,
    "INT": 2,
    "KILL": 9,
    "PIPE": 13,
    "QUIT": 3,
    "SEGV": 11,
    "TERM": 15,
}


class ProviderError(Exception):
    """An error whose message is shown to the user as the operation's error."""


class CancelledError(ProviderError):
    def __init__(self) -> None:
        super().__init__("context canceled")


@dataclass
class ConnectionSpec:
    host: str
    port: int = 22
    user: str = "root"
    password: str | None = None
    private_key: str | None = None
    private_key_password: str | None = None
    agent_socket_path: str | None = None
    dial_error_limit: int = DIAL_ERROR_DEFAULT
    per_dial_timeout: int = 15
    host_key: str | None = None
    proxy: ConnectionSpec | None = None

    @property
    def endpoint(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @classmethod
    def from_props(cls, props: Mapping[str, Any]) -> ConnectionSpec:
        """Build from revealed (secret-free, fully known) ``connection`` properties."""
        host = props.get("host")
        if not isinstance(host, str) or not host:
            raise ProviderError("connection: missing required property 'host'")

        def opt_str(key: str) -> str | None:
            value = props.get(key)
            return value if isinstance(value, str) else None

        def opt_int(key: str, default: int) -> int:
            value = props.get(key)
            if isinstance(value, bool) or not isinstance(value, int | float):
                return default
            return int(value)

        proxy_props = props.get("proxy")
        return cls(
            host=host,
            port=opt_int("port", 22),
            user=opt_str("user") or "root",
            password=opt_str("password"),
            private_key=opt_str("privateKey"),
            private_key_password=opt_str("privateKeyPassword"),
            agent_socket_path=opt_str("agentSocketPath"),
            dial_error_limit=opt_int("dialErrorLimit", DIAL_ERROR_DEFAULT),
            per_dial_timeout=opt_int("perDialTimeout", 15),
            host_key=opt_str("hostKey"),
            proxy=cls.from_props(proxy_props) if isinstance(proxy_props, Mapping) else None,
        )


# --- authentication material --------------------------------------------------------


def _parse_private_key(text: str, passphrase: str | None) -> paramiko.PKey:
    key_classes: list[type[paramiko.PKey]] = [
        paramiko.Ed25519Key,
        paramiko.ECDSAKey,
        paramiko.RSAKey,
    ]
    for key_class in key_classes:
        try:
            return key_class.from_private_key(io.StringIO(text), password=passphrase)
        except paramiko.PasswordRequiredException as exc:
            raise ProviderError("ssh: this private key is passphrase protected") from exc
        except (paramiko.SSHException, ValueError, TypeError, IndexError):
            continue
    # PKCS#8 ("BEGIN PRIVATE KEY", e.g. the tls provider's ed25519 private_key_pem) and
    # other PEM forms Go's ssh.ParsePrivateKey reads: convert to the OpenSSH format.
    converted = _pem_to_openssh(text, passphrase)
    if converted is not None:
        return _parse_private_key(converted, None)
    if passphrase is not None and ("ENCRYPTED" in text or "OPENSSH PRIVATE KEY" in text):
        raise ProviderError("x509: decryption password incorrect")
    raise ProviderError("ssh: no key found")


def _pem_to_openssh(text: str, passphrase: str | None) -> str | None:
    if "-----BEGIN OPENSSH PRIVATE KEY-----" in text:
        return None
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_private_key(text.encode(), password=passphrase.encode() if passphrase else None)
    except TypeError as exc:  # encrypted but no passphrase
        raise ProviderError("ssh: this private key is passphrase protected") from exc
    except ValueError:
        return None
    try:
        data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
    except (ValueError, TypeError):
        return None
    return data.decode()


class _AgentAtPath(AgentSSH):
    """An SSH agent client on an explicit socket path."""

    def __init__(self, path: str) -> None:
        super().__init__()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
        except OSError as exc:
            sock.close()
            reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
            raise ProviderError(f"dial unix {path}: connect: {reason}") from exc
        connect: Any = getattr(self, "_connect")  # noqa: B009 - private paramiko API
        connect(sock)


@dataclass
class _AuthMaterial:
    pkey: paramiko.PKey | None = None
    agent: AgentSSH | None = None
    agent_keys: list[paramiko.PKey] = field(default_factory=list)

    def close(self) -> None:
        agent: Any = self.agent
        if agent is not None:
            agent._close()


def _auth_material(spec: ConnectionSpec) -> _AuthMaterial:
    material = _AuthMaterial()
    if spec.private_key is not None:
        material.pkey = _parse_private_key(spec.private_key, spec.private_key_password)
    agent_path = spec.agent_socket_path
    if agent_path is None:
        agent_path = os.environ.get("SSH_AUTH_SOCK") or None
    if agent_path is not None:
        material.agent = _AgentAtPath(agent_path)
        material.agent_keys = list(material.agent.get_keys())
    return material


# --- dialing --------------------------------------------------------------------------


def _host_key_types(host_key: str) -> tuple[str, bytes]:
    parts = host_key.strip().split()
    if len(parts) < 2:
        raise ProviderError("ssh: no key found")
    import base64

    try:
        blob = base64.b64decode(parts[1], validate=True)
    except ValueError as exc:
        raise ProviderError(f"illegal base64 data in host key: {exc}") from exc
    return parts[0], blob


def _preferred_key_types(key_type: str) -> list[str]:
    """The host key algorithms offered for a pinned key: its type alone, as the Go plugin does.

    For an RSA key that is ``ssh-rsa`` (SHA-1 signatures) and not ``rsa-sha2-256/512``, so
    servers that refuse SHA-1 (OpenSSH 8.8 and later, by default) cannot agree on one.
    """
    return [key_type]


RSA_HOST_KEY_HINT = (
    "the pinned hostKey is an RSA key, for which pulumi-command v1.2.1 offers only the ssh-rsa (SHA-1) host key "
    "algorithm, and OpenSSH 8.8 and later refuse it; pin the host's ed25519 or ECDSA key instead"
)


def _negotiate_host_key_like_go(transport: paramiko.Transport) -> None:
    """Record the server's host key algorithms (for the error text) and stand in for ``ssh-rsa``.

    paramiko 5 has no ``ssh-rsa`` (SHA-1) host key algorithm.  When the Go plugin would
    offer it alone (an RSA key pinned) and the server accepts it, the Go plugin connects,
    so the stand-in verifies the same key with ``rsa-sha2-512/256`` if the server offers
    those (OpenSSH 7.2 to 8.7 offer both); when the server offers no ``ssh-rsa``, the
    negotiation fails as it does for the Go plugin.
    """
    hooked: Any = transport
    original = hooked._parse_kex_init

    def parse_kex_init(m: Message) -> Any:
        position = m.packet.tell()
        try:
            peer = list(hooked._really_parse_kex_init(m)["server_key_algo_list"])
        except Exception:  # malformed message: let paramiko report it
            peer = []
        m.packet.seek(position)
        hooked._dropship_peer_host_key_algorithms = peer
        if tuple(hooked._preferred_keys) == ("ssh-rsa",) and "ssh-rsa" in peer:
            sha2 = tuple(name for name in ("rsa-sha2-512", "rsa-sha2-256") if name in peer)
            if not sha2:
                raise ProviderError(
                    "ssh: handshake failed: the server offers only the ssh-rsa (SHA-1) host key algorithm, which "
                    "pulumi-command v1.2.1 would use for the pinned RSA key, but dropship's offline stand-in cannot "
                    "verify SHA-1 host key signatures; pin the host's ed25519 or ECDSA key instead"
                )
            hooked._preferred_keys = sha2
        return original(m)

    hooked._parse_kex_init = parse_kex_init


def _no_common_host_key_error(transport: paramiko.Transport, offered: list[str]) -> ProviderError:
    """Go's AlgorithmNegotiationError text, with the reason when the pinned key is RSA."""
    peer = getattr(transport, "_dropship_peer_host_key_algorithms", [])
    ours, theirs = " ".join(offered), " ".join(peer)
    text = f"ssh: handshake failed: ssh: no common algorithm for host key; we offered: [{ours}], peer offered: [{theirs}]"
    if offered == ["ssh-rsa"]:
        text += f" ({RSA_HOST_KEY_HINT})"
    return ProviderError(text)


def _socket_error_text(endpoint: str, exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return f"dial tcp {endpoint}: i/o timeout"
    if isinstance(exc, socket.gaierror):
        return f"dial tcp: lookup {endpoint.rsplit(':', 1)[0]}: {exc.strerror or exc}"
    if isinstance(exc, OSError) and exc.errno:
        return f"dial tcp {endpoint}: connect: {os.strerror(exc.errno).lower()}"
    return f"dial tcp {endpoint}: {exc}"


def _open_tcp(spec: ConnectionSpec) -> socket.socket:
    timeout = spec.per_dial_timeout if spec.per_dial_timeout > 0 else None
    try:
        sock = socket.create_connection((spec.host, spec.port), timeout=timeout)
    except OSError as exc:
        raise ProviderError(_socket_error_text(spec.endpoint, exc)) from exc
    sock.settimeout(None)
    return sock


def _authenticate(transport: paramiko.Transport, spec: ConnectionSpec, material: _AuthMaterial) -> None:
    user = spec.user
    attempted = ["none"]
    try:
        transport.auth_none(user)
        return
    except paramiko.BadAuthenticationType as exc:
        allowed = list(exc.allowed_types)
    except paramiko.AuthenticationException:
        allowed = ["publickey", "password", "keyboard-interactive"]

    def remaining(result: list[str] | None) -> bool:
        return transport.is_authenticated() and not result

    if material.pkey is not None and "publickey" in allowed:
        attempted.append("publickey")
        try:
            if remaining(transport.auth_publickey(user, material.pkey)):
                return
        except paramiko.AuthenticationException:
            pass
    if spec.password is not None:
        password = spec.password
        if "password" in allowed:
            attempted.append("password")
            try:
                if remaining(transport.auth_password(user, password, fallback=False)):
                    return
            except paramiko.AuthenticationException:
                pass
        if "keyboard-interactive" in allowed:
            attempted.append("keyboard-interactive")

            def answer(_title: str, _instructions: str, prompts: list[tuple[str, bool]]) -> list[str]:
                return [password for _ in prompts]

            try:
                if remaining(transport.auth_interactive(user, answer)):
                    return
            except paramiko.AuthenticationException:
                pass
    if material.agent_keys and "publickey" in allowed:
        if "publickey" not in attempted:
            attempted.append("publickey")
        for key in material.agent_keys:
            try:
                if remaining(transport.auth_publickey(user, key)):
                    return
            except paramiko.AuthenticationException:
                continue
    raise ProviderError(
        f"ssh: handshake failed: ssh: unable to authenticate, attempted methods [{' '.join(attempted)}], no supported methods remain"
    )


def _ssh_handshake(sock: Any, spec: ConnectionSpec, material: _AuthMaterial) -> paramiko.Transport:
    transport = paramiko.Transport(sock)
    _install_channel_hooks(transport)
    _negotiate_host_key_like_go(transport)
    expected: tuple[str, bytes] | None = None
    if spec.host_key:
        expected = _host_key_types(spec.host_key)
        # Set directly: paramiko's key_types setter refuses "ssh-rsa", which it no longer implements.
        hooked: Any = transport
        hooked._preferred_keys = tuple(_preferred_key_types(expected[0]))
    timeout = float(spec.per_dial_timeout) if spec.per_dial_timeout > 0 else None
    if timeout is not None:
        transport.banner_timeout = max(timeout, 15.0)
        transport.handshake_timeout = max(timeout, 15.0)
        transport.auth_timeout = max(timeout, 30.0)
    try:
        transport.start_client(timeout=timeout)
        if expected is not None:
            server_key = transport.get_remote_server_key()
            if server_key.asbytes() != expected[1]:
                raise ProviderError("ssh: handshake failed: ssh: host key mismatch")
        _authenticate(transport, spec, material)
    except ProviderError:
        transport.close()
        raise
    except paramiko.IncompatiblePeer as exc:
        transport.close()
        if "host key" in str(exc):
            raise _no_common_host_key_error(transport, list(getattr(transport, "_preferred_keys", ()))) from exc
        raise ProviderError(f"ssh: handshake failed: {exc}") from exc
    except (paramiko.SSHException, OSError, EOFError) as exc:
        transport.close()
        raise ProviderError(f"ssh: handshake failed: {exc or type(exc).__name__}") from exc
    return transport


def _retry(
    msg: str,
    max_attempts: int,
    fn: Callable[[], Any],
    status: StatusSink,
    cancel: threading.Event,
) -> Any:
    delay = DIAL_DELAY
    tries = 0
    while True:
        delay = min(delay, DIAL_MAX_DELAY)
        try:
            return fn()
        except ProviderError as exc:
            error: ProviderError = exc
        dials = tries + 1
        if max_attempts > -1 and dials > max_attempts:
            raise ProviderError(f"after {tries} failed attempts: {error}") from error
        limit = "inf" if max_attempts == -1 else str(max_attempts)
        status(f"{msg} {dials}/{limit} failed: retrying")
        if cancel.wait(delay):
            raise CancelledError()
        delay *= DIAL_BACKOFF
        tries += 1


class SSHConnection:
    """An authenticated SSH connection (possibly through a bastion)."""

    def __init__(self, transport: paramiko.Transport, proxy: paramiko.Transport | None) -> None:
        self.transport = transport
        self._proxy = proxy

    def close(self) -> None:
        self.transport.close()
        if self._proxy is not None:
            self._proxy.close()

    def __enter__(self) -> SSHConnection:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def dial(spec: ConnectionSpec, status: StatusSink, cancel: threading.Event) -> SSHConnection:
    material = _auth_material(spec)
    try:
        if spec.proxy is None:

            def direct() -> paramiko.Transport:
                return _ssh_handshake(_open_tcp(spec), spec, material)

            return SSHConnection(_retry("Dial", spec.dial_error_limit, direct, status, cancel), None)
        return _dial_via_proxy(spec, spec.proxy, material, status, cancel)
    finally:
        material.close()


def _dial_via_proxy(
    spec: ConnectionSpec,
    proxy: ConnectionSpec,
    material: _AuthMaterial,
    status: StatusSink,
    cancel: threading.Event,
) -> SSHConnection:
    try:
        proxy_material = _auth_material(proxy)
    except ProviderError as exc:
        raise ProviderError(f"proxy: {exc}") from exc
    try:

        def to_proxy() -> paramiko.Transport:
            return _ssh_handshake(_open_tcp(proxy), proxy, proxy_material)

        try:
            proxy_transport = _retry("Dial proxy", proxy.dial_error_limit, to_proxy, status, cancel)
        except ProviderError as exc:
            raise ProviderError(f"proxy: {exc}") from exc
    finally:
        proxy_material.close()

    def from_proxy() -> paramiko.Channel:
        try:
            return proxy_transport.open_channel("direct-tcpip", (spec.host, spec.port), ("127.0.0.1", 0))
        except (paramiko.SSHException, OSError) as exc:
            raise ProviderError(f"ssh: rejected: connect failed ({exc})") from exc

    try:
        channel = _retry("Dial from proxy", spec.dial_error_limit, from_proxy, status, cancel)

        def handshake() -> paramiko.Transport:
            return _ssh_handshake(channel, spec, material)

        transport = _retry("Dial", spec.dial_error_limit, handshake, status, cancel)
    except ProviderError as exc:
        proxy_transport.close()
        raise ProviderError(f"proxy: {exc}") from exc
    return SSHConnection(transport, proxy_transport)


# --- channel requests with replies, and exit signals ------------------------------------


def _install_channel_hooks(transport: paramiko.Transport) -> None:
    """Per-transport handlers: replies to our own ``env`` requests, and ``exit-signal``.

    paramiko sends ``env`` without asking for a reply and closes a channel whose request
    failed; Go's ``Session.Setenv`` asks for a reply and keeps the session usable, so
    that a rejected variable can be reported (or only warned about).  paramiko also
    ignores ``exit-signal``, which Go turns into an exit status of 128 + signal.
    """
    hooked: Any = transport
    table = dict(hooked._channel_handler_table)
    original_success = table[MSG_CHANNEL_SUCCESS]
    original_failure = table[MSG_CHANNEL_FAILURE]
    original_request = table[MSG_CHANNEL_REQUEST]

    def on_reply(ok: bool) -> Callable[[paramiko.Channel, Message], None]:
        original = original_success if ok else original_failure

        def handler(chan: paramiko.Channel, msg: Message) -> None:
            pending = getattr(chan, "_dropship_pending", None)
            if isinstance(pending, threading.Event):
                chan._dropship_reply = ok  # type: ignore[attr-defined]
                chan._dropship_pending = None  # type: ignore[attr-defined]
                pending.set()
                return
            original(chan, msg)

        return handler

    def on_request(chan: paramiko.Channel, msg: Message) -> None:
        position = msg.packet.tell()
        try:
            kind = msg.get_text()
            if kind == "exit-signal":
                msg.get_boolean()  # want_reply
                chan._dropship_exit_signal = msg.get_text()  # type: ignore[attr-defined]
                msg.get_boolean()  # core dumped
                chan._dropship_exit_message = msg.get_text()  # type: ignore[attr-defined]
                return
        except Exception:  # malformed message: let paramiko handle it
            pass
        msg.packet.seek(position)
        original_request(chan, msg)

    table[MSG_CHANNEL_SUCCESS] = on_reply(True)
    table[MSG_CHANNEL_FAILURE] = on_reply(False)
    table[MSG_CHANNEL_REQUEST] = on_request
    hooked._channel_handler_table = table


def _setenv(chan: paramiko.Channel, name: str, value: str) -> bool:
    """Send an ``env`` request wanting a reply; True if the server accepted it."""
    done = threading.Event()
    chan._dropship_pending = done  # type: ignore[attr-defined]
    chan._dropship_reply = False  # type: ignore[attr-defined]
    msg = Message()
    msg.add_byte(cMSG_CHANNEL_REQUEST)
    msg.add_int(chan.remote_chanid)
    msg.add_string("env")
    msg.add_boolean(True)
    msg.add_string(name)
    msg.add_string(value)
    transport: Any = chan.transport
    transport._send_user_message(msg)
    while not done.wait(0.05):
        if chan.closed or not transport.is_active():
            raise ProviderError("ssh: setenv failed: channel closed")
    return bool(chan._dropship_reply)  # type: ignore[attr-defined]


# --- running a command ------------------------------------------------------------------


@dataclass
class RunResult:
    stdout: str
    stderr: str
    combined: str
    error: str | None  # Go-style exit error text; None on success


# bufio.MaxScanTokenSize: the buffer of the bufio.Scanner through which the Go plugin
# (util.LogOutput, v1.2.1) logs the output of logged streams.
SCANNER_BUFFER = 64 * 1024


class LongLineError(ProviderError):
    """A logged output line on which the Go plugin hangs."""

    def __init__(self, stream: str) -> None:
        super().__init__(
            f"command output has a line of {SCANNER_BUFFER} bytes or more on {stream}: the official pulumi-command v1.2.1 "
            f"plugin hangs on such a line (it logs output through a bufio.Scanner, whose {SCANNER_BUFFER}-byte buffer must hold "
            "a whole line with its newline), so dropship's offline stand-in fails instead; fold or shorten the line, or leave "
            "that stream out of the command's logging"
        )
        self.stream = stream


class LineSplitter:
    """Feeds decoded output to a sink line by line, like the Go plugin's bufio.Scanner.

    The Go plugin copies logged output into an ``io.Pipe`` read by a ``bufio.Scanner``
    with a 64 KiB buffer.  Once a line has filled the buffer without a newline the
    scanner stops, and the next write into the pipe (the newline or anything after
    it) blocks forever: the command never finishes.  A line of 65535 bytes and its
    newline still fit; 65536 bytes at the very end of the output do too (the scanner
    stops but nothing more is written; that line is not logged).  ``feed`` raises
    LongLineError exactly where the Go plugin would hang.
    """

    def __init__(self, sink: LineSink | None, stream: str = "stdout") -> None:
        self._sink = sink
        self._stream = stream
        self._buf = b""

    def feed(self, data: bytes) -> None:
        if self._sink is None or not data:
            return
        self._buf += data
        while (end := self._buf.find(b"\n")) >= 0:
            line, self._buf = self._buf[:end], self._buf[end + 1 :]
            if len(line) >= SCANNER_BUFFER:
                raise LongLineError(self._stream)
            self._emit(line)
        if len(self._buf) > SCANNER_BUFFER:
            raise LongLineError(self._stream)

    def close(self) -> None:
        if self._sink is not None and self._buf and len(self._buf) < SCANNER_BUFFER:
            self._emit(self._buf)
        self._buf = b""

    def _emit(self, line: bytes) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        assert self._sink is not None
        self._sink(line.decode("utf-8", errors="replace"))


def decode_output(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def trim_newline(text: str) -> str:
    return text[:-1] if text.endswith("\n") else text


class SetenvError(ProviderError):
    def __init__(self, name: str) -> None:
        super().__init__(f'could not set environment variable "{name}": ssh: setenv failed')
        self.name = name


def run_command(
    conn: SSHConnection,
    command: str,
    environment: Mapping[str, str],
    optional_environment: Mapping[str, str],
    stdin: str | None,
    stdout_sink: LineSink | None,
    stderr_sink: LineSink | None,
    on_optional_env_rejected: Callable[[str], None],
) -> RunResult:
    """Run ``command`` in a new session; raises SetenvError for a rejected variable."""
    try:
        chan = conn.transport.open_session()
    except (paramiko.SSHException, OSError) as exc:
        raise ProviderError(str(exc) or "ssh: could not open session") from exc
    try:
        for name, value in environment.items():
            if not _setenv(chan, name, value):
                raise SetenvError(name)
        for name, value in optional_environment.items():
            if not _setenv(chan, name, value):
                on_optional_env_rejected(name)
        try:
            chan.exec_command(command)
        except paramiko.SSHException as exc:
            raise ProviderError(f"ssh: command {command} failed to start: {exc}") from exc

        def feed_stdin() -> None:
            try:
                if stdin:
                    chan.sendall(stdin.encode())
                chan.shutdown_write()
            except (OSError, paramiko.SSHException):
                pass

        writer = threading.Thread(target=feed_stdin, daemon=True)
        writer.start()

        out, err, both = bytearray(), bytearray(), bytearray()
        out_lines, err_lines = LineSplitter(stdout_sink, "stdout"), LineSplitter(stderr_sink, "stderr")
        while True:
            progressed = False
            if chan.recv_ready():
                data = chan.recv(65536)
                if data:
                    out += data
                    both += data
                    out_lines.feed(data)
                    progressed = True
            if chan.recv_stderr_ready():
                data = chan.recv_stderr(65536)
                if data:
                    err += data
                    both += data
                    err_lines.feed(data)
                    progressed = True
            if progressed:
                continue
            if (chan.exit_status_ready() and chan.eof_received) or chan.closed:
                if not chan.recv_ready() and not chan.recv_stderr_ready():
                    break
                continue
            time.sleep(0.01)
        # Wait for the close / exit status to settle.
        deadline = time.monotonic() + 5.0
        while not chan.exit_status_ready() and not chan.closed and time.monotonic() < deadline:
            time.sleep(0.01)
        out_lines.close()
        err_lines.close()
        writer.join(timeout=1.0)
        status = chan.exit_status if chan.exit_status_ready() else -1
        signal_name = getattr(chan, "_dropship_exit_signal", "")
        signal_msg = getattr(chan, "_dropship_exit_message", "")
    finally:
        chan.close()

    error: str | None = None
    if status != 0:
        if status == -1 and not signal_name:
            error = "wait: remote command exited without exit status or exit signal"
        else:
            if status == -1:
                status = 128 + _SIGNALS.get(signal_name, 0)
            error = f"Process exited with status {status}"
            if signal_name:
                error += f" from signal {signal_name}"
            if signal_msg:
                error += f". Reason was: {signal_msg}"
    return RunResult(
        stdout=decode_output(bytes(out)),
        stderr=decode_output(bytes(err)),
        combined=decode_output(bytes(both)),
        error=error,
    )


# --- SFTP copy -----------------------------------------------------------------------------


def _sftp_error(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno == errno.ENOENT:
        return "file does not exist"
    if isinstance(exc, OSError) and exc.errno == errno.EACCES:
        return "permission denied"
    text = str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    return f'sftp: "{text}"' if text else type(exc).__name__


def _remote_stat(sftp: paramiko.SFTPClient, path: str) -> paramiko.SFTPAttributes | None:
    try:
        return sftp.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise ProviderError(f"failed to stat remote path {path}: {_sftp_error(exc)}") from exc


def _is_dir(attrs: paramiko.SFTPAttributes | None) -> bool:
    return attrs is not None and attrs.st_mode is not None and stat.S_ISDIR(attrs.st_mode)


def _mkdir_all(sftp: paramiko.SFTPClient, path: str) -> None:
    """Like pkg/sftp's Client.MkdirAll."""
    if path in ("", "/", "."):
        return
    attrs = _remote_stat(sftp, path)
    if attrs is not None:
        if _is_dir(attrs):
            return
        raise ProviderError(f"mkdir {path}: not a directory")
    parent = posixpath.dirname(path.rstrip("/"))
    if parent and parent != path:
        _mkdir_all(sftp, parent)
    try:
        sftp.mkdir(path)
    except OSError as exc:
        if _is_dir(_remote_stat(sftp, path)):
            return
        raise ProviderError(f"failed to create remote directory {path}: {_sftp_error(exc)}") from exc


def _clean(path: str) -> str:
    cleaned = posixpath.normpath(path)
    return "/" + cleaned.lstrip("/") if path.startswith("/") else cleaned


def _copy_file(sftp: paramiko.SFTPClient, src: str, dst: str) -> None:
    try:
        remote = sftp.open(dst, "wb")
    except OSError as exc:
        raise ProviderError(f"failed to create remote file {dst}: {_sftp_error(exc)}") from exc
    try:
        with open(src, "rb") as local:
            while chunk := local.read(1 << 20):
                remote.write(chunk)
    except OSError as exc:
        raise ProviderError(f"failed to copy file {src} to remote path {dst}: {_sftp_error(exc)}") from exc
    finally:
        remote.close()


def _copy_dir(sftp: paramiko.SFTPClient, src: str, dst: str) -> None:
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()
        rel = os.path.relpath(dirpath, src)
        remote_dir = _clean(posixpath.join(dst, rel.replace(os.sep, "/"))) if rel != "." else dst
        attrs = _remote_stat(sftp, remote_dir)
        if attrs is None:
            _mkdir_all(sftp, remote_dir)
        elif not _is_dir(attrs):
            raise ProviderError(f"remote path {remote_dir} exists but is not a directory")
        for name in sorted(filenames):
            _copy_file(sftp, os.path.join(dirpath, name), _clean(posixpath.join(remote_dir, name)))


def copy_path(conn: SSHConnection, source_path: str, dest_path: str) -> None:
    """Copy a local file or directory like pulumi-command's CopyToRemote.

    source | dest exists as dir  | dest does not exist | dest exists as file
    dir    | dest/dir            | dest/dir            | error
    dir/   | dest/x for x in dir | dest/dir            | error
    file   | dest/file           | dest                | dest (overwritten)

    Missing parent directories of the destination are created (v1.2.1).
    """
    try:
        local_stat = os.stat(source_path)
    except OSError as exc:
        raise ProviderError(f"open {source_path}: {os.strerror(exc.errno or 0).lower()}") from exc
    with _sftp(conn) as sftp:
        dest = dest_path
        dest_attrs = _remote_stat(sftp, dest)
        if stat.S_ISDIR(local_stat.st_mode):
            if dest_attrs is None:
                _mkdir_all(sftp, dest)
            elif not _is_dir(dest_attrs):
                raise ProviderError(f"remote path {dest} exists but is not a directory")
            if not source_path.endswith("/"):
                dest = _clean(posixpath.join(dest, os.path.basename(source_path)))
                inner = _remote_stat(sftp, dest)
                if inner is not None and not _is_dir(inner):
                    raise ProviderError(f"remote path {dest} exists but is not a directory")
                if inner is None:
                    _mkdir_all(sftp, dest)
            _copy_dir(sftp, source_path, dest)
        else:
            if _is_dir(dest_attrs):
                dest = _clean(posixpath.join(dest, os.path.basename(source_path)))
            else:
                _mkdir_all(sftp, posixpath.dirname(dest))
            _copy_file(sftp, source_path, dest)


def copy_text(conn: SSHConnection, text: str, dest_path: str) -> None:
    """Write a StringAsset's text to the remote path, creating parent directories."""
    with _sftp(conn) as sftp:
        _mkdir_all(sftp, posixpath.dirname(dest_path))
        try:
            remote = sftp.open(dest_path, "wb")
        except OSError as exc:
            raise ProviderError(f"failed to create remote file {dest_path}: {_sftp_error(exc)}") from exc
        try:
            remote.write(text.encode())
        except OSError as exc:
            raise ProviderError(f"failed to write remote file {dest_path}: {_sftp_error(exc)}") from exc
        finally:
            remote.close()


class _sftp:  # noqa: N801 - used as a context manager like a function
    def __init__(self, conn: SSHConnection) -> None:
        self._conn = conn
        self._client: paramiko.SFTPClient | None = None

    def __enter__(self) -> paramiko.SFTPClient:
        try:
            client = paramiko.SFTPClient.from_transport(self._conn.transport)
        except (paramiko.SSHException, OSError) as exc:
            raise ProviderError(f"ssh: subsystem request failed: {exc}") from exc
        if client is None:
            raise ProviderError("ssh: subsystem request failed")
        self._client = client
        return client

    def __exit__(self, *_exc: object) -> None:
        if self._client is not None:
            self._client.close()
