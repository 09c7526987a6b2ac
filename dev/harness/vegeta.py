"""A constant-rate stream of HTTPS requests from vegeta (dev/vegeta.sh), reported by time window."""

from __future__ import annotations

import json
import math
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

from dev.harness.engine import go_tool, sh


@dataclass(frozen=True)
class LoadReport:
    sent: int
    failed: int
    """Responses outside 2xx/3xx and transport errors (refused, reset, timed out, TLS)."""
    p50_ms: float
    p99_ms: float
    errors: tuple[str, ...]
    """The first few distinct error strings."""

    def __str__(self) -> str:
        errors = f" {list(self.errors)}" if self.errors else ""
        return f"sent {self.sent}, failed {self.failed}, p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms{errors}"


@dataclass(frozen=True)
class _Result:
    at: float  # when the request started, time.time() seconds
    latency_ms: float
    ok: bool
    error: str


class Vegeta:
    """`with Vegeta("https://shop.test/", "127.0.0.5", root_ca) as load:` GETs the URL (or the URLs, in
    turn, of one site) `rate` times a second until the block ends, dialling `connect` (an address, or
    address:port) in place of the URLs' host, which only names the site: TLS SNI and the Host header.
    Then `load.report(since, until)`. Plain http:// URLs take no `root_ca`."""

    def __init__(
        self,
        urls: str | Sequence[str],
        connect: str,
        root_ca: Path | str | None = None,
        rate: int = 500,
        timeout: float = 5.0,
        netns: str | None = None,
    ) -> None:
        """`netns`: a network namespace (a path such as /run/netns/NAME) to send from instead of this machine's."""
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        sites = {urlsplit(url).netloc for url in self.urls}
        parts = urlsplit(self.urls[0])
        if parts.scheme not in ("http", "https") or not parts.hostname or len(sites) != 1:
            raise ValueError(f"not http(s) URLs of one site: {self.urls}")
        if (parts.scheme == "https") != (root_ca is not None):
            raise ValueError("https URLs need the root CA to verify the site with, and http URLs take none")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if ":" not in connect:
            connect = f"{connect}:{port}"
        self.args = [
            f"-rate={rate}/1s",
            "-duration=0",  # until SIGINT
            f"-connect-to={parts.hostname}:{port}:{connect}",
            *([f"-root-certs={root_ca}"] if root_ca is not None else []),
            f"-timeout={timeout}s",
            "-keepalive=true",
            "-workers=10",
            # enough to hold the rate even when every request hangs until the timeout, twice over: the
            # pacer never waits for a worker, so no burst of its own follows a stall of the app
            f"-max-workers={int(2 * rate * timeout)}",
            "-redirects=-1",  # a 3xx succeeds, unfollowed
            "-max-body=0",
        ]
        self.timeout = timeout
        self.netns = netns
        self.results: list[_Result] = []
        self._bin = ""
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Vegeta:
        self._bin = go_tool("vegeta", timeout=1800)
        self._dir = Path(tempfile.mkdtemp(prefix="dropship-vegeta-"))
        (self._dir / "targets").write_text("".join(f"GET {url}\n\n" for url in self.urls))
        with (self._dir / "stderr").open("wb") as stderr:
            self._proc = subprocess.Popen(
                [
                    *(["nsenter", f"--net={self.netns}"] if self.netns else []),
                    self._bin,
                    "attack",
                    *self.args,
                    f"-targets={self._dir / 'targets'}",
                    f"-output={self._dir / 'results.bin'}",
                ],
                stdin=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,  # a Ctrl-C in the terminal is ours to pass on, once
            )
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        assert self._proc is not None and self._dir is not None
        try:
            if self._proc.poll() is None:
                self._proc.send_signal(signal.SIGINT)  # stops sending; requests in flight finish
            try:
                code = self._proc.wait(timeout=self.timeout + 10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
                raise
            if code != 0:
                raise AssertionError(f"vegeta attack failed ({code}): {(self._dir / 'stderr').read_text()[-2000:]}")
            out = sh(self._bin, "encode", "-to=json", str(self._dir / "results.bin")).stdout
            self.results = [_parse(line) for line in out.splitlines() if line]
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)

    def report(self, since: float | None = None, until: float | None = None) -> LoadReport:
        """The requests started in [since, until) (time.time() seconds; None: unbounded)."""
        window = [r for r in self.results if (since is None or r.at >= since) and (until is None or r.at < until)]
        latencies = sorted(r.latency_ms for r in window)
        errors = tuple(dict.fromkeys(r.error for r in window if not r.ok))[:5]
        return LoadReport(
            sent=len(window),
            failed=sum(not r.ok for r in window),
            p50_ms=_percentile(latencies, 0.50),
            p99_ms=_percentile(latencies, 0.99),
            errors=errors,
        )

    def __str__(self) -> str:
        return str(self.report())


def _parse(line: str) -> _Result:
    r = json.loads(line)
    error = r["error"] or ("" if 200 <= r["code"] < 400 else f"HTTP {r['code']}")
    return _Result(
        at=datetime.fromisoformat(r["timestamp"]).timestamp(),
        latency_ms=r["latency"] / 1e6,
        ok=not error,
        error=error,
    )


def _percentile(sorted_values: list[float], q: float) -> float:
    """Nearest rank; 0.0 for no values."""
    if not sorted_values:
        return 0.0
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]
