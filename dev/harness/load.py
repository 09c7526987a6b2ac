"""A steady stream of requests (through the edge proxy), counting the ones that fail."""

from __future__ import annotations

import http.client
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from types import TracebackType


class Load:
    """`with Load(url, rate=50) as load:` sends `rate` GETs a second until the block ends."""

    def __init__(self, url: str, rate: float = 50.0, timeout: float = 10.0) -> None:
        """`timeout`: a request not answered by then fails; above the edge's own retry budget (5 s), so that
        what fails is a request the app did not serve, not one the edge was still trying to place."""
        self.url = url
        self.timeout = timeout
        self.interval = 1.0 / rate
        self.ok = 0
        self.failures: Counter[str] = Counter()
        self.seconds = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    @property
    def sent(self) -> int:
        return self.ok + self.failed

    def _run(self) -> None:
        start = time.monotonic()
        next_at = start
        while not self._stop.is_set():
            try:
                with urllib.request.urlopen(self.url, timeout=self.timeout) as response:
                    response.read()
                    self.ok += 1
            except urllib.error.HTTPError as err:
                self.failures[f"HTTP {err.code}"] += 1
            except (OSError, http.client.HTTPException) as err:  # a refused or reset connection, a cut-off answer
                self.failures[type(err).__name__ + ": " + str(getattr(err, "reason", err))[:60]] += 1
            next_at += self.interval
            time.sleep(max(0.0, next_at - time.monotonic()))
        self.seconds = time.monotonic() - start

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()

    def __str__(self) -> str:
        rate = self.sent / self.seconds if self.seconds else 0.0
        return f"{self.sent} requests in {self.seconds:.1f}s ({rate:.0f}/s), {self.failed} failed {dict(self.failures)}"
