"""The end-to-end tier's machinery: the real Pulumi engine, a test host, the local registry."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tools"
PASSPHRASE = "dropship-local-development"
DEV_KEY = ROOT / "local" / "dev_ed25519"
PROJECT_FILES = ("Pulumi.yaml", "Pulumi.local.yaml", "__main__.py", "components", "dropship", "example")


def sh(*args: str, env: dict[str, str] | None = None, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args[:3])} ... failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


@contextmanager
def example_registry(tags: tuple[str, ...] = ("v1", "v2")) -> Iterator[None]:
    """The outer Docker engine and the local registry with the example images; the registry stops again if this started it."""
    sh("bash", str(TOOLS / "docker-engine.sh"))
    started = sh("bash", str(TOOLS / "registry.sh"), "status", check=False).returncode != 0
    if started:
        sh("bash", str(TOOLS / "registry.sh"), "start")
    try:
        for tag in tags:
            sh("bash", str(TOOLS / "build-images.sh"), tag)
        yield
    finally:
        if started:
            sh("bash", str(TOOLS / "registry.sh"), "stop", check=False)


def toolchain_bin() -> str:
    out = sh("bash", str(TOOLS / "toolchain.sh"), timeout=3600).stdout.strip().splitlines()
    return out[-1]


@dataclass
class TestHost:
    __test__ = False  # a helper, not a test class

    name: str
    port: int

    def __post_init__(self) -> None:
        DEV_KEY.chmod(0o600)  # a git checkout leaves it world-readable, which ssh refuses

    def env(self) -> dict[str, str]:
        return {**os.environ, "TESTHOST_NAME": self.name, "TESTHOST_PORT": str(self.port), "TESTHOST_KEY": str(DEV_KEY)}

    def start(self) -> None:
        sh("bash", str(TOOLS / "testhost.sh"), "start", env=self.env())

    @contextmanager
    def fresh(self) -> Iterator[TestHost]:
        """A new host for the block (any old one of this name is removed first), removed afterwards with its volume."""
        self.stop()
        self.start()
        try:
            yield self
        finally:
            self.stop()

    def stop(self) -> None:
        sh("bash", str(TOOLS / "testhost.sh"), "stop", env=self.env(), check=False)

    def run(self, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A command inside the host, as root, without SSH (so that it is not counted as a login)."""
        return sh("docker", "exec", self.name, "bash", "-c", command, check=check)

    def ssh(self, user: str, command: str, check: bool = True, *extra: str) -> subprocess.CompletedProcess[str]:
        return sh(
            "ssh", "-i", str(DEV_KEY), "-p", str(self.port),
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
            "-o", "LogLevel=ERROR", *extra, f"{user}@127.0.0.1", command,
            check=check,
        )  # fmt: skip

    def logins(self) -> int:
        """SSH logins accepted so far: every remote command of pulumi-command is one."""
        out = self.run("journalctl -u ssh --no-pager -o cat | grep -c 'Accepted publickey' || true").stdout
        return int(out.strip() or 0)


class Project:
    """A copy of the project in a temp dir with its own file backend: the developer's state is never touched."""

    def __init__(self, workdir: Path, bin_dir: str) -> None:
        self.dir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        for name in PROJECT_FILES:
            source = ROOT / name
            if source.is_dir():
                shutil.copytree(source, workdir / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(source, workdir / name)
        (workdir / "venv").symlink_to(ROOT / "venv")
        state = workdir / ".pulumi-state"
        state.mkdir()
        cache = Path(os.environ.get("DROPSHIP_CACHE", Path.home() / ".cache" / "dropship"))
        self.env = {
            **os.environ,
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "PULUMI_HOME": os.environ.get("PULUMI_HOME", str(cache / "pulumi-home")),
            "PULUMI_BACKEND_URL": f"file://{state}",
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            "NO_COLOR": "1",
        }

    def pulumi(self, *args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["pulumi", *args, "--non-interactive"], cwd=self.dir, env=self.env, capture_output=True, text=True, input=stdin, timeout=1200
        )
        if check and result.returncode != 0:
            raise AssertionError(f"pulumi {' '.join(args)} failed ({result.returncode}):\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}")
        return result

    def init_local(self, host: TestHost, settings: dict[str, str] | None = None, secrets: dict[str, str] | None = None) -> None:
        """The `local` stack of this copy, aimed at `host`, with extra settings and secrets (set on stdin)."""
        self.pulumi("stack", "init", "local")
        self.set("existingHost.port", str(host.port))
        for key, value in (settings or {}).items():
            self.set(key, value)
        for key, value in (secrets or {}).items():
            self.set(key, value, secret=True)

    def set(self, key: str, value: str, secret: bool = False) -> None:
        args = ["config", "set", *(["--secret"] if secret else []), key]
        self.pulumi(*args, stdin=value)

    def up(self) -> subprocess.CompletedProcess[str]:
        return self.pulumi("up", "--yes", "--skip-preview", "--color", "never")

    def preview_steps(self) -> dict[str, str]:
        """resource name -> operation of a `pulumi preview`, for resources that would change."""
        result = self.pulumi("preview", "--json")
        steps: list[dict[str, Any]] = json.loads(result.stdout).get("steps", [])
        return {s["urn"].rsplit("::", 1)[-1]: s["op"] for s in steps if s["op"] != "same"}

    def last_update_changes(self) -> dict[str, int]:
        history = json.loads(self.pulumi("stack", "history", "--json").stdout)
        return dict(history[0].get("resourceChanges", {}))

    def outputs(self) -> dict[str, Any]:
        return dict(json.loads(self.pulumi("stack", "output", "--json").stdout))
