"""Value types of the settings: each validator says what it expected."""

from __future__ import annotations

import base64
import ipaddress
import re
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field


def matches(pattern: str, expected: str) -> AfterValidator:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"expected {expected}")
        return value

    return AfterValidator(check)


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError:
        raise ValueError("expected a CIDR range such as 203.0.113.0/24 or 2001:db8::/32") from None


def _ipv4(value: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise ValueError("expected an IPv4 address such as 10.114.0.2") from None


def _public_key(value: str) -> str:
    if not re.fullmatch(r"(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+( .*)?", value.strip()):
        raise ValueError("expected an OpenSSH public key line such as 'ssh-ed25519 AAAA... deploy'")
    return value.strip()


def _host_key(value: str) -> str:
    parts = value.split()
    if len(parts) < 2 or not re.fullmatch(r"ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)", parts[0]):
        raise ValueError("expected the server's public host key such as 'ssh-ed25519 AAAA...' (ssh-keyscan -t ed25519 <host>)")
    try:
        base64.b64decode(parts[1], validate=True)
    except ValueError:
        raise ValueError("expected the server's public host key such as 'ssh-ed25519 AAAA...'; its key data is not base64") from None
    if parts[0] == "ssh-rsa":
        # pulumi-command pins a host key by offering only that key's algorithm, and for RSA it
        # offers only SHA-1 `ssh-rsa`, which OpenSSH 8.8 and later refuse: every connection would fail.
        raise ValueError(
            "an RSA host key cannot be pinned: pulumi-command offers only the ssh-rsa (SHA-1) signature for it, "
            "which OpenSSH 8.8+ refuses; pin the host's ed25519 key instead (ssh-keyscan -t ed25519 <host>)"
        )
    return value


def _private_key(value: str) -> str:
    if "PRIVATE KEY-----" not in value:
        raise ValueError("expected an OpenSSH private key (the whole file, '-----BEGIN ... PRIVATE KEY-----')")
    return value if value.endswith("\n") else value + "\n"


def _time_of_day(value: str) -> str:
    if not re.fullmatch(r"([01][0-9]|2[0-3]):[0-5][0-9]", value):
        raise ValueError("expected a time of day such as 04:30 (24-hour, HH:MM, on the host's clock: UTC on a droplet)")
    return value


def _https_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError("expected an https:// URL such as https://hooks.slack.com/services/T000/B000/XXXX")
    return _without_credentials(value)


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an http:// or https:// URL such as http://127.0.0.1:8080/health")
    return _without_credentials(value)


def _without_credentials(value: str) -> str:
    if "@" in urlsplit(value).netloc:
        # A URL is part of commands, outputs and logs, none of which may hold a secret.
        raise ValueError("expected a URL without 'user:password@': it would appear in commands and logs; use one that needs no login")
    return value


def _relative_file(value: str) -> str:
    path = Path(value)
    if path.is_absolute() or ".." in path.parts:
        raise ValueError("expected a path relative to the project directory, without '..'")
    return value


Slug = Annotated[str, matches(r"[a-z0-9][a-z0-9-]*", "a DigitalOcean slug such as nyc3 or s-1vcpu-1gb")]
RegionSlug = Annotated[str, matches(r"[a-z]{3}[0-9]", "a DigitalOcean region slug such as nyc3, fra1 or ams3")]
Hostname = Annotated[
    str,
    matches(
        r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}",
        "a lower-case DNS name such as app.example.com",
    ),
]
HostAddress = Annotated[str, matches(r"[A-Za-z0-9.:-]+", "a host name or IP address such as 127.0.0.1")]
IPv4 = Annotated[str, AfterValidator(_ipv4)]
MachineId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{0,128}$")]
ZoneId = Annotated[str, matches(r"[0-9a-f]{32}", "a 32-character Cloudflare zone id")]
DropletTag = Annotated[str, matches(r"[A-Za-z0-9:_-]{1,255}", "a tag of letters, digits, ':', '-', '_'")]
Cidr = Annotated[str, AfterValidator(_cidr)]
PublicKey = Annotated[str, AfterValidator(_public_key)]
PrivateKey = Annotated[str, AfterValidator(_private_key)]
HostKey = Annotated[str, AfterValidator(_host_key)]
TimeOfDay = Annotated[str, AfterValidator(_time_of_day)]
_CALENDAR_FIELD = r"(\*|[0-9]{1,4}([.][.][0-9]{1,4})?)(/[0-9]{1,3})?(,(\*|[0-9]{1,4}([.][.][0-9]{1,4})?)(/[0-9]{1,3})?)*"
CalendarSpec = Annotated[
    str,
    matches(
        rf"(minutely|hourly|daily|weekly|monthly)|((Mon|Tue|Wed|Thu|Fri|Sat|Sun)([.][.,](Mon|Tue|Wed|Thu|Fri|Sat|Sun))* )?"
        rf"({_CALENDAR_FIELD}-{_CALENDAR_FIELD}-{_CALENDAR_FIELD} )?{_CALENDAR_FIELD}:{_CALENDAR_FIELD}(:{_CALENDAR_FIELD})?( UTC)?",
        "a systemd calendar time such as daily, *-*-* 03:30:00 or Mon..Fri 02:00 (OnCalendar=, see systemd.time(7))",
    ),
]
BucketName = Annotated[str, matches(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", "an S3 bucket name such as shop-backups")]
UnixUser = Annotated[str, matches(r"[a-z_][a-z0-9_-]{0,31}", "a Unix user name such as deploy")]
AbsolutePath = Annotated[str, matches(r"/[A-Za-z0-9_./-]+", "an absolute path such as /srv/app")]
ProjectName = Annotated[str, matches(r"[a-z0-9][a-z0-9_-]{0,62}", "a compose project name such as shop")]
ServiceName = Annotated[str, matches(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", "a compose service name")]
ImageTag = Annotated[str, matches(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", "a Docker image tag such as v1.2.3")]
ENV_NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_]*"
EnvName = Annotated[str, matches(ENV_NAME_PATTERN, "an environment variable name such as DATABASE_URL")]
LogSize = Annotated[str, matches(r"[1-9][0-9]*[kmg]", "a size such as 10m")]
RegistryHost = Annotated[str, matches(r"[A-Za-z0-9.-]+(:[0-9]+)?", "a registry host such as registry.example.com")]


def _health_url(value: str) -> str:
    if value.startswith("/") and not value.startswith("//"):
        return value
    _without_credentials(value)
    try:
        return _http_url(value)
    except ValueError:
        raise ValueError("expected a path such as /api/health, or an http:// or https:// URL such as http://127.0.0.1/health") from None


HttpUrl = Annotated[str, AfterValidator(_http_url)]
HttpsUrl = Annotated[str, AfterValidator(_https_url)]
Email = Annotated[str, matches(r"[^@\s]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+", "an email address such as ops@example.com")]
HealthUrl = Annotated[str, AfterValidator(_health_url)]
ProjectFile = Annotated[str, AfterValidator(_relative_file)]
Port = Annotated[int, Field(ge=1, le=65535)]
