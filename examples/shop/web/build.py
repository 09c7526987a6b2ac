"""Builds the front end: web/src -> web/dist, assets renamed by content hash (cached for a year by
browsers, so a release never serves a stale script), index.html pointing at them.

Usage: python3 examples/shop/web/build.py   (tests/unit/test_shop.py checks dist is up to date)
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

WEB = Path(__file__).resolve().parent
SRC = WEB / "src"
DIST = WEB / "dist"


def build(src: Path = SRC, dist: Path = DIST) -> None:
    if dist.exists():
        shutil.rmtree(dist)
    (dist / "assets").mkdir(parents=True)
    index = (src / "index.html").read_text()
    for asset in sorted(p for p in src.iterdir() if p.suffix in (".js", ".css")):
        content = asset.read_bytes()
        hashed = f"{asset.stem}.{hashlib.sha256(content).hexdigest()[:12]}{asset.suffix}"
        (dist / "assets" / hashed).write_bytes(content)
        index = index.replace(f"/assets/{asset.name}", f"/assets/{hashed}")
    (dist / "index.html").write_text(index)


if __name__ == "__main__":
    build()
