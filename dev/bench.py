"""`make bench`: times `pulumi up` of the local stack on a warm machine and counts remote commands.

Prints numbers; asserts nothing. Uses its own test host (at an address of its own,
dev.harness) and state, so it neither needs nor disturbs what `make up` deployed.
Run from the repository root: `venv/bin/python dev/bench.py` (or `make bench`).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dev.harness import DEV, Load, Project, TestHost, example_registry, free_address, sh, toolchain_bin


def timed(label: str, host: TestHost, action: object) -> tuple[str, float, int]:
    logins = host.logins()
    start = time.monotonic()
    action()  # type: ignore[operator]
    return label, time.monotonic() - start, host.logins() - logins


def measure() -> tuple[list[tuple[str, float, int]], Load, Load]:
    rows = []
    host = TestHost("dropship-bench", free_address())
    sh("bash", str(DEV / "testhost.sh"), "build", env=host.env())  # the image once, outside the timing
    started = time.monotonic()
    with host.fresh(), tempfile.TemporaryDirectory() as workdir:
        # A new test host (warm image cache): removing any old one, `docker create`, first boot, until root's SSH login works.
        rows.append(("new test host ready for SSH (first boot, cloud-init)", time.monotonic() - started, host.logins()))
        url = host.url("/health")
        project = Project(Path(workdir), toolchain_bin())
        project.init_local(host)
        rows.append(timed("fresh up (new host: Docker install, user, hardening, app)", host, project.up))
        rows.append(timed("no-op up", host, project.up))
        project.set("app.imageTag", "v2")
        with Load(url, rate=50) as dropship_load:
            rows.append(timed("release up (v1 -> v2)", host, project.up))
        # What the seeds do: plain `docker compose up -d` with a new tag, on the host.
        with Load(url, rate=50) as compose_load:
            host.ssh("deploy", "cd /srv/example && IMAGE_TAG=v1 docker compose up -d --quiet-pull 2>&1")
            time.sleep(5)
        project.pulumi("destroy", "--yes", "--skip-preview")
    return rows, dropship_load, compose_load


def main() -> None:
    with example_registry():
        rows, dropship_load, compose_load = measure()
    targets = ("< 15 s", "< 180 s", "< 15 s, 0 commands", "< 30 s")
    print(f"\n{'case':58} {'seconds':>8} {'remote commands':>16}   target")
    for (label, seconds, commands), target in zip(rows, targets, strict=True):
        print(f"{label:58} {seconds:8.1f} {commands:16d}   {target}")
    print("\nrequests through the edge proxy at 50/s across a release (target: 0 failed for dropship)")
    print(f"  dropship release (rolling, health-gated): {dropship_load}")
    print(f"  plain `docker compose up -d`:             {compose_load}")


if __name__ == "__main__":
    main()
