"""Waiting for an event with a deadline: the one way the tests wait for something another process does."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T | None], what: str, timeout: float, detail: Callable[[], str] | None = None, interval: float = 0.5
) -> T:
    """Calls `condition` until it returns something true, and returns that. After `timeout` seconds it
    fails naming `what` it waited for, with `detail()` (the state that tells why) when given."""
    deadline = time.monotonic() + timeout
    while True:
        if result := condition():
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"waited {timeout:.0f} s for {what}, in vain" + (f":\n{detail()}" if detail else ""))
        time.sleep(interval)
