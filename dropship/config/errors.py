"""Configuration problems: each names its key, what was expected and what was given."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

NAMESPACE = "dropship"


@dataclass(frozen=True)
class Problem:
    key: str
    """The flat key, e.g. `ssh.sourceRanges[0]`."""
    message: str

    def __str__(self) -> str:
        return f"{NAMESPACE}:{self.key}: {self.message}"


class SettingsError(Exception):
    """Every problem of a stack's configuration, reported together."""

    def __init__(self, stack: str, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        lines = [f"{len(self.problems)} problem(s) in the configuration of stack '{stack}':"]
        lines += [f"  - {p}" for p in self.problems]
        super().__init__("\n".join(lines))


def flat_key(*parts: str | int) -> str:
    """`("app", "composeFiles", 0)` -> `app.composeFiles[0]`: the one index style of error keys."""
    key = ""
    for part in parts:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else part)
    return key


def given(value: Any) -> str:
    """The value as given, shortened, with a URL's credentials (`user:password@`) masked."""
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    text = re.sub(r"(://)[^/@\s'\"]+@", r"\1***@", text)
    return text if len(text) <= 80 else text[:77] + "..."


def set_secret_command(stack: str, key: str) -> str:
    """How to set a secret, as users would type it."""
    if key == "ssh.privateKey":
        return f"pulumi config set --secret -s {stack} {key} < ~/.ssh/dropship_deploy"
    return f"pulumi config set --secret -s {stack} {key} '<value>'"
