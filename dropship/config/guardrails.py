"""Settings that could damage a host, refused before anything is registered: each with its key, why, and the fix.

Plain values in, problems out, so that the policy pack (policy/dropship_rules.py) judges a stack's raw
configuration by the same rules as the program.
"""

from __future__ import annotations

import ipaddress
import posixpath
from collections.abc import Iterable, Mapping
from typing import Any

from dropship.config.errors import Problem, flat_key

SAFE_ROOTS = ("/srv", "/opt", "/mnt", "/data", "/home")
"""The directories under which dropship may own one (the app's, a volume's mount point): nothing of the
system lives there. Under /home, only below a user's home: the home itself holds that user's `.ssh`."""

SYSTEM_USERS = frozenset(
    {
        "root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp", "proxy", "www-data",
        "backup", "list", "irc", "gnats", "nobody", "messagebus", "sshd", "syslog", "polkitd", "docker",
    }
)  # fmt: skip
"""Debian's accounts of the base system (base-passwd), and those of sshd, systemd and docker:
a deploy user among them would hand the deploy key a system account."""

HOST_NAMES = frozenset(
    {
        ".dropship", ".dropship-machine", "incoming", "releases", "tls", "release.env", "RELEASE", "releases.log",
        ".live-files", ".live-containers", ".deploy.lock", ".deploy.lock.holder", ".env.new",
        "dropship-edge.yaml", "dropship-limits.yaml",
    }
)  # fmt: skip
"""What dropship keeps in the app's directory beside the app's files (dropship/host/release.py's layout)."""


def host_directory(key: str, path: str) -> Problem | None:
    """A directory dropship will own, fill and empty on `pulumi destroy`: below a safe root, normalised."""
    normal = posixpath.normpath(path)
    if normal != (path.rstrip("/") or "/") or path.startswith("//"):
        return Problem(key, f"{path!r} is not a plain absolute path (it means {normal!r}); write it without '..', '.' or '//'")
    path = normal
    parts = normal.split("/")[1:]
    root = "/" + parts[0]
    if root not in SAFE_ROOTS:
        return Problem(
            key,
            f"{path!r} is a system directory or inside one: dropship owns this directory and empties it on `pulumi destroy`; "
            f"use a directory of its own under {', '.join(SAFE_ROOTS)}, such as /srv/app",
        )
    if ".ssh" in parts:
        return Problem(key, f"{path!r} is inside a user's .ssh: its keys would be replaced; use a directory such as /srv/app")
    depth = 3 if root == "/home" else 2
    if len(parts) < depth:
        what = "a user's home (its .ssh and files)" if root == "/home" else f"{root} itself, which other software shares"
        example = f"{normal}/app" if root == "/home" else f"{root}/app"
        return Problem(key, f"{path!r} is {what}: use a directory of its own below it, such as {example}")
    return None


def deploy_user(user: str, admin_user: str) -> Problem | None:
    """The deploy user's authorized_keys is replaced by the deploy key: never root's, the admin's or a system account's."""
    if user == admin_user:
        return Problem(
            "deploy.user",
            f"{user!r} is also the admin user dropship logs in as to set up the host: its authorized_keys would hold "
            "only the deploy key, and the admin key would be locked out; use a user of its own, such as deploy",
        )
    if user in SYSTEM_USERS or user.startswith(("systemd-", "_")):
        return Problem(
            "deploy.user",
            f"{user!r} is a system account: the deploy key would log in as it; use a user of its own, such as deploy",
        )
    return None


def whole_internet(ranges: Iterable[str]) -> list[str]:
    """The address families these CIDR ranges cover entirely, however they are spelled (0.0.0.0/1 and
    128.0.0.0/1 are 0.0.0.0/0)."""
    networks = [ipaddress.ip_network(r, strict=False) for r in ranges]
    v4 = [n for n in networks if isinstance(n, ipaddress.IPv4Network)]
    v6 = [n for n in networks if isinstance(n, ipaddress.IPv6Network)]
    covered = []
    if ipaddress.IPv4Network("0.0.0.0/0") in ipaddress.collapse_addresses(v4):
        covered.append("0.0.0.0/0")
    if ipaddress.IPv6Network("::/0") in ipaddress.collapse_addresses(v6):
        covered.append("::/0")
    return covered


def upload_name(key: str, host_path: str) -> Problem | None:
    """An upload whose place in the app's directory is one of dropship's own."""
    first = host_path.split("/", 1)[0]
    if first in HOST_NAMES:
        return Problem(
            key,
            f"{host_path!r} would land on {first!r}, which dropship keeps in the app's directory; rename it or move it into a directory",
        )
    return None


def repeated(key: str, names: Iterable[str]) -> list[Problem]:
    """A name listed twice."""
    parts = key.split(".")
    seen: dict[str, int] = {}
    problems = []
    for i, name in enumerate(names):
        if name in seen:
            problems.append(Problem(flat_key(*parts, i), f"{name!r} is listed already as {flat_key(*parts, seen[name])}; list each once"))
        seen.setdefault(name, i)
    return problems


POSTGRES_ENVIRONMENT = frozenset({"POSTGRES_PASSWORD", "POSTGRES_USER", "POSTGRES_DB", "POSTGRES_PASSWORD_FILE"})


def postgres_services(compose: Mapping[str, Any]) -> list[str]:
    """The services of a compose file that run Postgres: by their image's name (postgres, postgis, timescaledb),
    the official image's variables, or a volume at Postgres' data directory; built images count too."""
    found = []
    for name, service in (compose.get("services") or {}).items():
        if not isinstance(service, Mapping):
            continue
        image = str(service.get("image") or "").rsplit("/", 1)[-1].lower()
        environment = service.get("environment") or {}
        keys = set(environment) if isinstance(environment, Mapping) else {str(e).split("=", 1)[0] for e in environment}
        targets = [
            str(v.get("target", "")) if isinstance(v, Mapping) else str(v).split(":")[1] if str(v).count(":") >= 1 else str(v)
            for v in service.get("volumes") or []
        ]
        if (
            any(word in image for word in ("postgres", "postgis", "timescale"))
            or keys & POSTGRES_ENVIRONMENT
            or any(t.startswith("/var/lib/postgresql") for t in targets)
        ):
            found.append(str(name))
    return found
