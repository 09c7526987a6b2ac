"""Fixtures of the end-to-end tier: every test in tests/e2e is marked e2e.

The session shares only the engine (`bin_dir`) and the local registry with the example
images (`registry`). Each module owns its deployment: its own test host (a module-scoped
`host` fixture with a name derived from the module and a loopback address of its own,
dev.harness),
its own project copy and backend, so any module runs alone (`pytest tests/e2e/test_x.py`,
`pytest -k name`) or beside the others.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dev.harness import build_shop_images, example_registry, machine, pebble, toolchain_bin


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session", autouse=True)
def machine_network_untouched() -> Iterator[None]:
    """Before and after the tier: this machine's namespace has only its own interfaces, unchanged."""
    before = machine.network()
    assert machine.foreign_links(before) == [], f"a container network is already on this machine: {before}"
    yield
    after = machine.network()
    assert after == before, f"the e2e tier changed this machine's network:\nbefore: {before}\nafter:  {after}"


@pytest.fixture(scope="session")
def bin_dir() -> str:
    return toolchain_bin()


@pytest.fixture(scope="session")
def registry() -> Iterator[None]:
    """The local registry with the example images v1 and v2, for the whole session."""
    with example_registry():
        yield


@pytest.fixture(scope="session")
def shop_registry(registry: None) -> Iterator[None]:
    """The shop's images in the local registry (the API as v1 and v2), and Pebble, the local ACME CA
    (stopped again if this started it)."""
    for tag in ("v1", "v2"):
        build_shop_images(tag)
    started = pebble.start()
    yield
    if started:
        pebble.stop()
