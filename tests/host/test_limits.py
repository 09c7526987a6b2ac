"""limits.py: a preview's caps on each service, as a compose override; a service's own smaller limit stays."""

from __future__ import annotations

import pytest
import yaml
from limits import memory_bytes, override
from release import parse

MIB = 1024**2


@pytest.mark.parametrize(
    ("value", "expected"), [("512m", 512 * MIB), ("2g", 2048 * MIB), ("1048576", MIB), (536870912, 512 * MIB), ("", None)]
)
def test_memory_values_as_compose_writes_them(value: object, expected: int | None) -> None:
    assert memory_bytes(value) == expected


def test_every_service_is_capped_in_both_of_composes_spellings() -> None:
    config = {"services": {"web": {"image": "web"}, "db": {"image": "postgres"}}}
    services = yaml.safe_load(override(config, cpus=1, memory="512m"))["services"]
    assert set(services) == {"web", "db"}
    for service in services.values():
        assert service == {"cpus": 1, "mem_limit": 512 * MIB, "deploy": {"resources": {"limits": {"cpus": "1", "memory": str(512 * MIB)}}}}


def test_a_services_own_smaller_limit_stays_and_a_larger_one_is_capped() -> None:
    config = {
        "services": {
            "small": {"cpus": 0.25, "mem_limit": "134217728"},
            "deployed": {"deploy": {"resources": {"limits": {"cpus": "0.5", "memory": 64 * MIB}}}},
            "big": {"cpus": 4, "mem_limit": str(8192 * MIB)},
        }
    }
    services = yaml.safe_load(override(config, cpus=1, memory="512m"))["services"]
    assert (services["small"]["cpus"], services["small"]["mem_limit"]) == (0.25, 128 * MIB)
    assert services["deployed"]["deploy"]["resources"]["limits"] == {"cpus": "0.5", "memory": str(64 * MIB)}
    assert (services["big"]["cpus"], services["big"]["mem_limit"]) == (1, 512 * MIB)


def test_a_service_name_that_yaml_would_read_otherwise_stays_a_name() -> None:
    services = yaml.safe_load(override({"services": {"yes": {}, "1.0": {}}}, cpus=0.5, memory="1g"))["services"]
    assert set(services) == {"yes", "1.0"}


def test_a_capped_release_lists_the_override_last_in_compose_file() -> None:

    base = ["--dir", "/srv/shop-pr-3", "--project", "shop-pr-3", "--tag", "v1", "--compose-file", "compose.yaml"]
    capped = parse([*base, "--route", "/* web:8080", "--cpus", "0.5", "--memory", "1g"])
    assert capped.environment("v1")["COMPOSE_FILE"] == "compose.yaml:dropship-edge.yaml:dropship-limits.yaml"
    assert parse(base).environment("v1")["COMPOSE_FILE"] == "compose.yaml"
