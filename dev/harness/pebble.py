"""Pebble, the local ACME CA (dev/pebble.sh), as the e2e tier uses it."""

from __future__ import annotations

import os

from dev.harness.engine import DEV, sh

ACME_PORT = 14000


def gateway() -> str:
    """The address a test host reaches this machine's loopback at: the gateway its namespace copies from
    this machine, which pasta maps to the host's loopback (as a droplet reaches a public ACME server)."""
    return sh("ip", "-4", "route", "show", "default").stdout.split()[2]


def directory() -> str:
    """Pebble's ACME directory, as a test host's containers reach it."""
    return f"https://{gateway()}:{ACME_PORT}/dir"


def start() -> bool:
    """Starts Pebble unless it runs already; says whether it started it."""
    if sh("bash", str(DEV / "pebble.sh"), "status", check=False).returncode == 0:
        return False
    sh("bash", str(DEV / "pebble.sh"), "start", env={**os.environ, "PEBBLE_ADDRESSES": gateway()})
    return True


def stop() -> None:
    sh("bash", str(DEV / "pebble.sh"), "stop")


def resolve(name: str, address: str) -> None:
    """Pebble's DNS answers `address` for `name`: where its HTTP-01 validation connects."""
    sh("bash", str(DEV / "pebble.sh"), "resolve", name, address)


def root() -> str:
    """The root certificate (PEM) that signs what this Pebble issues."""
    return sh("bash", str(DEV / "pebble.sh"), "root").stdout
