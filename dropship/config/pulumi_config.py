"""Reads the stack's configuration from the Pulumi runtime, once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config

from dropship.config.errors import NAMESPACE, SettingsError
from dropship.config.flat_keys import load
from dropship.config.settings import Settings


def read_settings(project_dir: Path) -> Settings:
    """The stack's Settings, or a RunError that lists every problem (shown without a traceback)."""
    raw, secret = _stack_config()
    prefix = f"{NAMESPACE}:"
    secret_keys = frozenset(k.removeprefix(prefix) for k in secret if k.startswith(prefix))
    try:
        return load(pulumi.get_project(), pulumi.get_stack(), raw, secret_keys, project_dir)
    except SettingsError as err:
        raise pulumi.RunError(str(err)) from None


def _stack_config() -> tuple[dict[str, Any], set[str]]:
    """Every config value of the stack, and which keys are secret.

    `pulumi.Config` reads one known key at a time; dropship needs them all, to refuse
    unknown keys. The runtime holds them in `CONFIG` (set by the language host, or by
    `set_mocks` in tests) or in the PULUMI_CONFIG environment of older language hosts.
    """
    config = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    env_secret = set(runtime_config.get_config_secret_keys_env())
    return config, {k for k in config if k in env_secret or runtime_config.is_config_secret(k)}
