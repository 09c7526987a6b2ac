"""`make bench`: times `pulumi up` of the local stack on a warm machine and counts remote commands, then
drives a constant HTTPS load at the shop through dropship's edge across releases (good, crashing, answering
503, booting slowly), a change of the edge's routes, and plain compose's `up -d`.

Prints numbers; asserts nothing. Uses its own test host (at an address of its own,
dev.harness) and state, so it neither needs nor disturbs what `make up` deployed.
Run from the repository root: `venv/bin/python dev/bench.py` (or `make bench`).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dev.harness import DEV, Project, TestHost, build_shop_images, example_registry, free_address, pebble, sh, toolchain_bin
from dev.harness.vegeta import LoadReport, Vegeta


def timed(label: str, host: TestHost, action: object) -> tuple[str, float, int]:
    logins = host.logins()
    start = time.monotonic()
    action()  # type: ignore[operator]
    return label, time.monotonic() - start, host.logins() - logins


def measure() -> list[tuple[str, float, int]]:
    rows = []
    host = TestHost("dropship-bench", free_address())
    sh("bash", str(DEV / "testhost.sh"), "build", env=host.env())  # the image once, outside the timing
    started = time.monotonic()
    with host.fresh(), tempfile.TemporaryDirectory() as workdir:
        # A new test host (warm image cache): removing any old one, `docker create`, first boot, until root's SSH login works.
        rows.append(("new test host ready for SSH (first boot, cloud-init)", time.monotonic() - started, host.logins()))
        project = Project(Path(workdir), toolchain_bin())
        project.init_local(host)
        rows.append(timed("fresh up (new host: Docker install, user, hardening, app)", host, project.up))
        rows.append(timed("no-op up", host, project.up))
        project.set("app.imageTag", "v2")
        rows.append(timed("release up (v1 -> v2)", host, project.up))
        project.pulumi("destroy", "--yes", "--skip-preview")
    return rows


T = TypeVar("T")
SHOP_HOSTNAME = "bench-shop.test"
RATE = 500
REST = 10.0


BAD_RELEASES = (
    ("v3-broken", "a release that crashes at start (rolled back)"),
    ("v4-unhealthy", "a release that runs but answers 503 (rolled back at the timeout)"),
)
HEALTH_TIMEOUT = 45


def shop_under_load() -> tuple[list[tuple[str, LoadReport]], list[str]]:
    """The shop over HTTPS at RATE requests a second through dropship's edge (its page from web, its API's
    health from gunicorn, Postgres and Redis), window by window: releases good, crashing, answering 503 and
    booting for 25 s, a route added, and a plain `docker compose up -d` as the seeds do it."""
    for tag in ("v1", "v2", "v5-slow", *(tag for tag, _ in BAD_RELEASES)):
        build_shop_images(tag)
    started_pebble = pebble.start()
    host = TestHost("dropship-bench-shop", free_address())
    pebble.resolve(SHOP_HOSTNAME, host.address)
    windows: list[tuple[str, float, float]] = []
    outcomes: list[str] = []

    def window(label: str, action: Callable[[], T]) -> tuple[T, float]:
        """Runs the action in a window of its own; its result and its seconds."""
        begin = time.time()
        result = action()
        end = time.time()
        windows.append((label, begin, end))
        return result, end - begin

    try:
        with host.fresh(), tempfile.TemporaryDirectory() as workdir:
            project = Project(Path(workdir), toolchain_bin(), app="shop")
            settings = {
                "existingHost.hostnames": json.dumps([SHOP_HOSTNAME]),
                "tls.acmeCa": pebble.directory(),
                "app.healthTimeout": str(HEALTH_TIMEOUT),
            }
            project.init_local(host, settings)
            project.up()
            root = Path(workdir) / "pebble-root.pem"
            root.write_text(pebble.root())
            urls = [f"https://{SHOP_HOSTNAME}/", f"https://{SHOP_HOSTNAME}/api/health"]

            def release(tag: str) -> Callable[[], str]:
                def up() -> str:
                    project.set("app.imageTag", tag)
                    result = project.pulumi("up", "--yes", "--skip-preview", check=False)
                    if result.returncode == 0:
                        return "went live"
                    lines = (result.stdout + result.stderr).splitlines()
                    said = [line.strip() for line in lines if "release " in line and "failed" in line]
                    return f"failed ({said[-1] if said else 'see pulumi up'})"

                return up

            with Vegeta(urls, host.address, root, rate=RATE) as load:
                window("at rest", lambda: time.sleep(REST))
                outcome, seconds = window("dropship release v1 -> v2 (api, web switched; worker rolled)", release("v2"))
                outcomes.append(f"v2 {outcome} in {seconds:.1f} s")
                for tag, label in BAD_RELEASES:
                    outcome, seconds = window(label, release(tag))
                    outcomes.append(f"{tag} {outcome} in {seconds:.1f} s")
                outcome, seconds = window("a release that boots for 25 s (goes live)", release("v5-slow"))
                outcomes.append(f"v5-slow {outcome} in {seconds:.1f} s")
                routes = ["/about/* web:8080 /", "/api/* api:8000 /api/health", "/* web:8080 /"]
                project.set("edge.routes", json.dumps(routes))
                window("the edge's configuration changed (a route added)", project.up)
                window("at rest", lambda: time.sleep(REST))
                # What the seeds do: a new tag and plain `docker compose up -d`, on the host.
                window("plain `docker compose up -d` (v5-slow -> v2), and 5 s after", lambda: compose_up(host, "v2"))
            outcomes.append(f"the stack output release says {project.outputs()['release']} (before the plain compose up)")
            project.pulumi("destroy", "--yes", "--skip-preview", check=False)
    finally:
        if started_pebble:
            pebble.stop()
    return [(label, load.report(begin, end)) for label, begin, end in windows], outcomes


def compose_up(host: TestHost, tag: str) -> None:
    host.ssh("deploy", f"cd /srv/shop && IMAGE_TAG={tag} docker compose --env-file .env --env-file release.env up -d --quiet-pull 2>&1")
    time.sleep(5)


def main() -> None:
    with example_registry():
        rows = measure()
        load_rows, outcomes = shop_under_load()
    targets = ("< 15 s", "< 180 s", "< 15 s, 0 commands", "< 30 s")
    print(f"\n{'case':58} {'seconds':>8} {'remote commands':>16}   target")
    for (label, seconds, commands), target in zip(rows, targets, strict=True):
        print(f"{label:58} {seconds:8.1f} {commands:16d}   {target}")
    print(f"\nthe shop over HTTPS through dropship's edge at {RATE} requests/s (vegeta; its page and /api/health in turn)")
    print("target: 0 failed in every window of dropship's")
    print(f"{'window':58} {'sent':>7} {'failed':>7} {'p50 ms':>8} {'p99 ms':>8}")
    for label, report in load_rows:
        print(f"{label:58} {report.sent:7d} {report.failed:7d} {report.p50_ms:8.1f} {report.p99_ms:8.1f}")
        for error in report.errors:
            print(f"{'':58}   {error}")
    print("\n`pulumi up`: " + "; ".join(outcomes))


if __name__ == "__main__":
    main()
