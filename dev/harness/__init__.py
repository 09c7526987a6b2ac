"""The harness the end-to-end tier (tests/e2e) and the drivers (dev/bench.py, dev/reliability.py) share.

The real Pulumi engine (`engine`), test hosts (`testhost`), copies of the project with a file
backend of their own (`project`), the local registry with the example images (`registry`),
free loopback addresses and ports (`ports`) and a steady stream of requests (`load`). Import it from the
repository root (tests/conftest.py and the drivers put the root on sys.path).
"""

from __future__ import annotations

from dev.harness import machine, pebble
from dev.harness.engine import DEV, PASSPHRASE, ROOT, engine_env, sh, toolchain_bin
from dev.harness.load import Load
from dev.harness.ports import free_address, free_port
from dev.harness.project import PROJECT_FILES, Project
from dev.harness.registry import REGISTRY, REGISTRY_LOG, build_images, build_shop_images, example_registry
from dev.harness.testhost import DEV_KEY, TestHost, host_name
from dev.harness.waiting import wait_until

__all__ = [
    "DEV",
    "DEV_KEY",
    "PASSPHRASE",
    "PROJECT_FILES",
    "REGISTRY",
    "REGISTRY_LOG",
    "ROOT",
    "Load",
    "Project",
    "TestHost",
    "build_images",
    "build_shop_images",
    "engine_env",
    "example_registry",
    "free_address",
    "free_port",
    "host_name",
    "machine",
    "pebble",
    "sh",
    "toolchain_bin",
    "wait_until",
]
