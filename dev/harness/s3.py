"""S3-compatible storage for the backups' tests: `rclone serve s3` (dev/rclone.sh) over a directory, on this
machine's loopback; a test host reaches it at 127.0.0.1:<port> when the port is one of its forwards."""

from __future__ import annotations

import secrets
import socket
import subprocess
import tarfile
import time
from pathlib import Path
from types import TracebackType

from dev.harness.engine import go_tool


class S3Server:
    """`with S3Server(port, root, buckets) as s3:` serves `root` (each directory a bucket, `buckets` made first)
    with a fresh key pair."""

    def __init__(self, port: int, root: Path, buckets: tuple[str, ...] = ()) -> None:
        self.port = port
        self.root = root
        self.buckets = buckets
        self.access_key_id = "dropship-e2e"
        self.secret_access_key = secrets.token_hex(16)
        self._proc: subprocess.Popen[bytes] | None = None
        self._rclone = ""

    @property
    def endpoint(self) -> str:
        """As a test host reaches it (its forwarded 127.0.0.1 port)."""
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> S3Server:
        self._rclone = go_tool("rclone")
        for bucket in ("", *self.buckets):
            (self.root / bucket).mkdir(parents=True, exist_ok=True)
        self.start()
        return self

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [
                self._rclone,
                "serve",
                "s3",
                "--addr",
                f"127.0.0.1:{self.port}",
                "--auth-key",
                f"{self.access_key_id},{self.secret_access_key}",
                str(self.root),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"rclone serve s3 did not listen on 127.0.0.1:{self.port}")

    def stop(self) -> None:
        """Makes the storage unreachable (uploads then fail), until start()."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
        self._proc = None

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


def backup_members(path: Path) -> dict[str, bytes]:
    """The files of one of dropship's backups (a tar file): globals.sql, databases.tsv, manifest.tsv, <n>.dump."""
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
