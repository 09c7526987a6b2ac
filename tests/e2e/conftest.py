"""Fixtures of the end-to-end tier: every test in tests/e2e is marked e2e."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import TestHost, example_registry, toolchain_bin


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def bin_dir() -> str:
    return toolchain_bin()


@pytest.fixture(scope="session")
def registry() -> Iterator[None]:
    """The local registry with the example images v1 and v2, for the whole session."""
    with example_registry():
        yield


@pytest.fixture(scope="module")
def host(registry: None) -> Iterator[TestHost]:
    """A fresh test host for one test module, removed afterwards with its Docker volume."""
    with TestHost("dropship-e2e", 2223).fresh() as test_host:
        yield test_host
