"""Reads the stack's configuration from the Pulumi runtime, once."""

from __future__ import annotations

from pathlib import Path

import pulumi
from pulumi.runtime import config as runtime_config

from dropship.settings import NAMESPACE, Settings, SettingsError, load


def read_settings(project_dir: Path) -> Settings:
    """The stack's Settings, or a RunError that lists every problem (shown without a traceback)."""
    raw = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    secret = set(runtime_config.get_config_secret_keys_env()) | set(runtime_config._SECRET_KEYS.get())
    prefix = f"{NAMESPACE}:"
    secret_keys = frozenset(k.removeprefix(prefix) for k in secret if k.startswith(prefix))
    try:
        return load(pulumi.get_project(), pulumi.get_stack(), raw, secret_keys, project_dir)
    except SettingsError as err:
        raise pulumi.RunError(str(err)) from None
