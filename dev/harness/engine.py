"""The real Pulumi engine: where it comes from, and the one environment every run of it gets."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEV = ROOT / "dev"
PASSPHRASE = "dropship-local-development"
"""The `local` stack's documented development passphrase (Pulumi.local.yaml's secrets)."""


def sh(*args: str, env: dict[str, str] | None = None, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args[:3])} ... failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def go_tool(name: str, timeout: float = 3600) -> str:
    """The path of a tool dev/<name>.sh builds from Go modules (once; the first build can take minutes)."""
    return sh("bash", str(DEV / f"{name}.sh"), "path", timeout=timeout).stdout.strip().splitlines()[-1]


TOOLCHAIN = ROOT / "offline" / "toolchain.sh"
"""Prints the engine's bin directory (building the offline engine once when there is no official one)."""


def toolchain_bin() -> str:
    """The directory with `pulumi`, the Python language host and the command provider."""
    out = sh("bash", str(TOOLCHAIN), timeout=3600).stdout.strip().splitlines()
    return out[-1]


def cache_dir() -> Path:
    return Path(os.environ.get("DROPSHIP_CACHE", Path.home() / ".cache" / "dropship"))


def engine_env(bin_dir: str, state_dir: Path, passphrase: str = PASSPHRASE) -> dict[str, str]:
    """The environment of every engine run: the toolchain first on PATH, the shared PULUMI_HOME
    (plugins installed once), a file backend in `state_dir`, the passphrase secrets provider,
    no update check, no plugin downloads, no colour."""
    return {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "PULUMI_HOME": os.environ.get("PULUMI_HOME", str(cache_dir() / "pulumi-home")),
        "PULUMI_BACKEND_URL": f"file://{state_dir}",
        "PULUMI_CONFIG_PASSPHRASE": passphrase,
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "NO_COLOR": "1",
    }
