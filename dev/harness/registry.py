"""The outer Docker engine and the local registry (127.0.0.1:5000) with the example images."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager

from dev.harness.engine import DEV, cache_dir, sh

REGISTRY = "127.0.0.1:5000"
"""Where dev/registry.sh serves (shared with `make up`; images are only ever added to it)."""
REGISTRY_LOG = cache_dir() / "registry" / "registry.log"
USERS = cache_dir() / "registry" / "users.lock"
"""Every session using the registry holds a shared lock on this file, so that the one that
started it stops it only when no other session (another pytest run, dev/bench.py) still uses it."""


def build_images(tag: str) -> None:
    """Builds examples/local's images as `tag` and pushes them to the local registry."""
    sh("bash", str(DEV / "build-images.sh"), tag)


def build_shop_images(tag: str) -> None:
    """Builds examples/shop's images (the API as `tag`) and pushes them to the local registry."""
    sh("bash", str(DEV / "build-shop-images.sh"), tag)


@contextmanager
def example_registry(tags: tuple[str, ...] = ("v1", "v2")) -> Iterator[None]:
    """The outer Docker engine and the local registry with the example images; the registry stops
    again if this started it and no other session uses it any more."""
    sh("bash", str(DEV / "docker-engine.sh"))
    USERS.parent.mkdir(parents=True, exist_ok=True)
    with USERS.open("a") as users:
        fcntl.flock(users, fcntl.LOCK_SH)
        started = sh("bash", str(DEV / "registry.sh"), "status", check=False).returncode != 0
        if started:
            sh("bash", str(DEV / "registry.sh"), "start")
        try:
            for tag in tags:
                build_images(tag)
            yield
        finally:
            if started:
                try:
                    fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)  # no other session holds it
                except BlockingIOError:
                    pass
                else:
                    sh("bash", str(DEV / "registry.sh"), "stop", check=False)
