"""What the program loads before it knows which stack it is: the cloud providers' SDKs take seconds."""

from __future__ import annotations

import subprocess
import sys

from tests.unit.program import ROOT

CLOUD_SDKS = ("pulumi_digitalocean", "pulumi_cloudflare")


def loaded_after(statement: str) -> set[str]:
    script = f"import sys\n{statement}\nprint(' '.join(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(result.stdout.split())


def test_the_wiring_loads_no_cloud_sdk_until_a_droplet_stack_asks_for_one() -> None:
    loaded = loaded_after("import dropship.config, dropship.program")
    assert not loaded & set(CLOUD_SDKS)
    assert "pulumi_command" in loaded


def test_the_droplet_components_do_load_them() -> None:
    loaded = loaded_after("import components.server, components.dns")
    assert set(CLOUD_SDKS) <= loaded
