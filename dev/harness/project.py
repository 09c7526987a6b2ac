"""Copies of the project in a temp dir with a file backend of their own: the developer's state is never touched."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from dev.harness.engine import ROOT, engine_env
from dev.harness.testhost import TestHost

PROJECT_FILES = ("Pulumi.yaml", "Pulumi.local.yaml", "__main__.py", "components", "dropship", "examples")
"""What `pulumi up -s local` needs of the repository."""

SMALL_APP = ROOT / "examples" / "local" / "stack.yaml"
"""The small example app's settings, in place of the shop's (see that file)."""
SMALL_APP_SECRET = "local-development-secret"
SHOP_KEYS = ("dropship:app.", "dropship:tls.", "dropship:env.", "dropship:edge.", "dropship:existingHost.hostnames")


class Project:
    """The program's files copied from `source` (or, with `source=None`, a directory that already holds them),
    the repository's venv, and the backend in `state` (default: `.pulumi-state` inside the copy)."""

    def __init__(
        self,
        workdir: Path,
        bin_dir: str,
        *,
        source: Path | None = ROOT,
        files: tuple[str, ...] = PROJECT_FILES,
        state: Path | None = None,
        app: str = "small",
    ) -> None:
        """`app`: "small" (examples/local, the default) or "shop" (examples/shop, as Pulumi.local.yaml has it)."""
        self.dir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        if source is not None:
            for name in files:
                path = source / name
                if path.is_dir():
                    shutil.copytree(path, workdir / name, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy2(path, workdir / name)
        self.app = app
        if app == "small" and source is not None:
            _use_small_app(workdir / "Pulumi.local.yaml")
        if not (workdir / "venv").exists():
            (workdir / "venv").symlink_to(ROOT / "venv")
        self.state = state or workdir / ".pulumi-state"
        self.state.mkdir(parents=True, exist_ok=True)
        self.env = engine_env(bin_dir, self.state)

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
        if self.app == "small":
            secrets = {"env.APP_SECRET": SMALL_APP_SECRET, **(secrets or {})}
        self.configure(host, settings, secrets)

    def configure(self, host: TestHost, settings: dict[str, str] | None = None, secrets: dict[str, str] | None = None) -> None:
        """Aims the selected stack at `host`, with extra settings and secrets (set on stdin)."""
        self.set("existingHost.address", host.address)
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


def _use_small_app(stack_file: Path) -> None:
    """Pulumi.local.yaml with the small app's settings in place of the shop's (comments are dropped)."""
    document = yaml.safe_load(stack_file.read_text())
    config = {k: v for k, v in document["config"].items() if not k.startswith(SHOP_KEYS)}
    config.update(yaml.safe_load(SMALL_APP.read_text()))
    document["config"] = config
    stack_file.write_text(yaml.safe_dump(document, sort_keys=False))
