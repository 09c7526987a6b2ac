"""Pebble, the local ACME CA (dev/pebble.sh), as the e2e tier uses it."""

from __future__ import annotations

from dev.harness.engine import DEV, sh


def directory() -> str:
    """Pebble's ACME directory, as a test host's containers reach it (at their gateway, which pasta maps
    to this machine's loopback, as a droplet reaches a public ACME server)."""
    return sh("bash", str(DEV / "pebble.sh"), "directory").stdout.strip()


def start() -> bool:
    """Starts Pebble unless it runs already; says whether it started it."""
    if sh("bash", str(DEV / "pebble.sh"), "status", check=False).returncode == 0:
        return False
    sh("bash", str(DEV / "pebble.sh"), "start")
    return True


def stop() -> None:
    sh("bash", str(DEV / "pebble.sh"), "stop")


def resolve(name: str, address: str) -> None:
    """Pebble's DNS answers `address` for `name`: where its HTTP-01 validation connects."""
    sh("bash", str(DEV / "pebble.sh"), "resolve", name, address)


def root() -> str:
    """The root certificate (PEM) that signs what this Pebble issues."""
    return sh("bash", str(DEV / "pebble.sh"), "root").stdout
