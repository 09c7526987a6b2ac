"""A preview's caps (`preview.cpus`, `preview.memory`): the compose override that puts them on every service.

A service's own smaller limit stays. Both of compose's spellings are written (`cpus`/`mem_limit` and
`deploy.resources.limits`), with the same value: compose refuses a service whose two differ.
Standard library only: it runs on the server beside release.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

OVERRIDE = "dropship-limits.yaml"
UNITS = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def memory_bytes(value: object) -> int | None:
    """Bytes of a compose memory value (`512m`, `1g`, or a number of bytes as `compose config` writes it)."""
    if value in (None, "", 0):
        return None
    match = re.fullmatch(r"(\d+)\s*([bkmg]?)b?", str(value).strip().lower())
    if match is None:
        return None
    return int(match[1]) * UNITS[match[2] or "b"]


def override(config: Mapping[str, Any], *, cpus: float, memory: str) -> str:
    """The override of every service in `docker compose config --format json`: at most `cpus` and `memory`."""
    cap = memory_bytes(memory)
    assert cap is not None, memory
    lines = ["# dropship: a preview's caps on each container (preview.cpus, preview.memory); rendered by each release", "services:"]
    for name, service in sorted((config.get("services") or {}).items()):
        limits = ((service.get("deploy") or {}).get("resources") or {}).get("limits") or {}
        own_cpus = [float(c) for c in (service.get("cpus"), limits.get("cpus")) if c not in (None, "", 0, "0")]
        own_memory = [m for m in (memory_bytes(service.get("mem_limit")), memory_bytes(limits.get("memory"))) if m]
        service_cpus = min([cpus, *own_cpus])
        service_memory = min([cap, *own_memory])
        lines += [
            f"  {json.dumps(name)}:",
            f"    cpus: {service_cpus:g}",
            f"    mem_limit: {service_memory}",
            "    deploy:",
            "      resources:",
            "        limits:",
            f'          cpus: "{service_cpus:g}"',
            f'          memory: "{service_memory}"',
        ]
    return "\n".join(lines) + "\n"
