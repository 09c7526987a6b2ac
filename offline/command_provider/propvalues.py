"""Pulumi property values as plain Python data, plus the diff the engine expects.

Resource properties travel over gRPC as ``google.protobuf.Struct`` values.  Special
values (secrets, assets, archives, ...) are objects carrying a signature key; an
unknown value (during preview) is a sentinel string.  This module keeps those
encodings as-is in plain dicts/lists, so that whatever the engine sends can be echoed
back unchanged (in particular, secret wrappers are never dropped).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format, struct_pb2

SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
ASSET_SIG = "c44067f5952c0a294b673a41bacd8c17"
ARCHIVE_SIG = "0def7320c3a5731c473e5ecbe6d01bc7"
RESOURCE_SIG = "5cf8f73096256a8f31e491e813e4eb8e"
OUTPUT_SIG = "d0e6a833031e9bbcd3f4e8bde6ca49a4"
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"

PropMap = dict[str, Any]


def from_struct(struct: struct_pb2.Struct | None) -> PropMap:
    """Convert a protobuf Struct to a dict (numbers become floats)."""
    if struct is None:
        return {}
    result = json_format.MessageToDict(struct)
    if not isinstance(result, dict):  # pragma: no cover - MessageToDict of a Struct
        raise TypeError("expected a struct")
    return result


def to_struct(props: Mapping[str, Any]) -> struct_pb2.Struct:
    """Convert a dict back into a protobuf Struct."""
    struct = struct_pb2.Struct()
    struct.update(_normalise(dict(props)))
    return struct


def _normalise(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): _normalise(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normalise(v) for v in value]
    raise TypeError(f"cannot encode {type(value).__name__} as a property value")


def _sig(value: Any) -> str | None:
    if isinstance(value, dict):
        sig = value.get(SIG_KEY)
        if isinstance(sig, str):
            return sig
    return None


def is_unknown(value: Any) -> bool:
    return isinstance(value, str) and value == UNKNOWN


def is_secret(value: Any) -> bool:
    return _sig(value) == SECRET_SIG


def is_asset(value: Any) -> bool:
    return _sig(value) == ASSET_SIG


def is_archive(value: Any) -> bool:
    return _sig(value) == ARCHIVE_SIG


def make_secret(value: Any) -> Any:
    if is_secret(value):
        return value
    return {SIG_KEY: SECRET_SIG, "value": value}


def unwrap_secret(value: Any) -> tuple[Any, bool]:
    """Strip secret wrappers at the top level; report whether there was one."""
    secret = False
    while is_secret(value):
        secret = True
        value = value.get("value")
    return value, secret


def reveal(value: Any) -> Any:
    """Deeply remove secret wrappers (and unwrap output values) to use the data."""
    sig = _sig(value)
    if sig == SECRET_SIG:
        return reveal(value.get("value"))
    if sig == OUTPUT_SIG:
        if "value" not in value:
            return UNKNOWN
        return reveal(value["value"])
    if sig is not None:
        return value
    if isinstance(value, dict):
        return {k: reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [reveal(v) for v in value]
    return value


def has_value(value: Any) -> bool:
    """Mirror of Go's ``PropertyValue.HasValue``: null and output-without-value are empty."""
    if value is None:
        return False
    if _sig(value) == OUTPUT_SIG:
        return "value" in value
    return True


def deep_equal(a: Any, b: Any) -> bool:
    """Equality of two property values, numbers compared as floats, secrets as leaves."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b)
    sig_a, sig_b = _sig(a), _sig(b)
    if sig_a != sig_b:
        return False
    if sig_a in (ASSET_SIG, ARCHIVE_SIG):
        return _asset_equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        keys = {k for k, v in a.items() if v is not None} | {k for k, v in b.items() if v is not None}
        return all(deep_equal(a.get(k), b.get(k)) for k in keys)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(deep_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _asset_equal(a: dict[str, Any], b: dict[str, Any]) -> bool:
    hash_a, hash_b = a.get("hash"), b.get("hash")
    if hash_a and hash_b and hash_a != hash_b:
        return False
    for key in ("path", "text", "uri"):
        if (a.get(key) or "") != (b.get(key) or ""):
            return False
    if "assets" in a or "assets" in b:
        assets_a, assets_b = a.get("assets") or {}, b.get("assets") or {}
        if set(assets_a) != set(assets_b):
            return False
        return all(deep_equal(assets_a[k], assets_b[k]) for k in assets_a)
    return True


# --- diff -------------------------------------------------------------------------

ADD = "ADD"
DELETE = "DELETE"
UPDATE = "UPDATE"


@dataclass(frozen=True)
class PathDiff:
    """One entry of a detailed diff: a property path and the kind of change."""

    path: str
    kind: str  # ADD, DELETE or UPDATE
    root: str


def _is_plain_dict(value: Any) -> bool:
    return isinstance(value, dict) and _sig(value) is None


def _key_path(parent: str, key: str) -> str:
    simple = key != "" and (key[0].isalpha() or key[0] in "_$") and all(ch.isalnum() or ch in "_$" for ch in key)
    if simple:
        return f"{parent}.{key}" if parent else key
    escaped = key.replace("\\", "\\\\").replace('"', '\\"')
    return f'{parent}["{escaped}"]'


def diff_maps(olds: Mapping[str, Any], news: Mapping[str, Any]) -> list[PathDiff]:
    """Detailed diff of two property maps, in the shape the Go SDK computes it.

    Null and missing values are equivalent.  Objects and arrays are descended into;
    anything else (including secrets, assets and unknowns) is compared as a leaf.
    """
    out: list[PathDiff] = []
    for key in sorted(set(olds) | set(news)):
        _diff_value(key, olds.get(key), news.get(key), key, out)
    return out


def _diff_value(path: str, old: Any, new: Any, root: str, out: list[PathDiff]) -> None:
    if not has_value(old) and not has_value(new):
        return
    if not has_value(old):
        out.append(PathDiff(path, ADD, root))
        return
    if not has_value(new):
        out.append(PathDiff(path, DELETE, root))
        return
    if _is_plain_dict(old) and _is_plain_dict(new):
        for key in sorted(set(old) | set(new)):
            _diff_value(_key_path(path, key), old.get(key), new.get(key), root, out)
        return
    if isinstance(old, list) and isinstance(new, list):
        for i in range(max(len(old), len(new))):
            sub = f"{path}[{i}]"
            if i >= len(old):
                out.append(PathDiff(sub, ADD, root))
            elif i >= len(new):
                out.append(PathDiff(sub, DELETE, root))
            else:
                _diff_value(sub, old[i], new[i], root, out)
        return
    if is_unknown(new) or not deep_equal(old, new):
        out.append(PathDiff(path, UPDATE, root))


# --- assets -----------------------------------------------------------------------


def asset_hash(asset: Mapping[str, Any]) -> str:
    """The engine-computed hash of an asset/archive, or a local stand-in if absent."""
    existing = asset.get("hash")
    if isinstance(existing, str) and existing:
        return existing
    digest = hashlib.sha256()
    text = asset.get("text")
    path = asset.get("path")
    if isinstance(text, str):
        digest.update(text.encode())
    elif isinstance(path, str) and os.path.isdir(path):
        for rel, full in _walk_files(path):
            digest.update(rel.encode() + b"\0")
            with open(full, "rb") as fh:
                digest.update(fh.read())
    elif isinstance(path, str) and os.path.exists(path):
        with open(path, "rb") as fh:
            digest.update(fh.read())
    else:
        digest.update(repr(sorted(asset.items())).encode())
    return digest.hexdigest()


def _walk_files(root: str) -> Iterator[tuple[str, str]]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            yield os.path.relpath(full, root), full
