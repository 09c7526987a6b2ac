"""`make flake-hunt`: the timing-sensitive end-to-end modules, N times each, on a clean clone; prints a table.

A test that fails by chance fails some runs of an unchanged tree and not others. This clones the
checkout's HEAD into a temporary directory (what is not committed is not hunted), gets the clone's
Docker engine, venv and Pulumi engine as CI does (`dev/docker-engine.sh`, `make venv toolchain`,
sharing DROPSHIP_CACHE), then runs each module alone with pytest N times in a row, as its own
session, and reads each run's JUnit XML report.

The table has a row per module: runs, failed runs, minutes per run, and the first lines of each
failure (test name and message). Nothing is retried: every run counts. Exits non-zero when a run failed.

    python dev/flake_hunt.py [--runs N] [--keep] [MODULE ...]

MODULE is a name under tests/e2e without `test_` and `.py` (`shop`, `day_two`), optionally with its own
number of runs (`shop:5`); the default is DEFAULT_MODULES. Environment: FLAKE_RUNS (default 3) and FLAKE_MODULES (space-separated),
as make passes them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODULES = ("shop", "day_two", "faults", "releases", "swarm")
FAILURE_LINES = 3


@dataclass
class Failure:
    run: int
    test: str
    lines: list[str]


@dataclass
class Module:
    name: str
    wanted: int
    runs: int = 0
    seconds: list[float] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)

    @property
    def failed_runs(self) -> int:
        return len({f.run for f in self.failures})


def failures_in(report: Path, run: int) -> list[Failure]:
    """The failed and errored test cases of one run's JUnit XML report, with their messages' first lines."""
    found = []
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        for child in case:
            if child.tag in ("failure", "error"):
                text = (child.get("message") or "") + "\n" + (child.text or "")
                lines = [line.strip() for line in text.splitlines() if line.strip()][:FAILURE_LINES]
                found.append(Failure(run, f"{case.get('name')} ({child.tag})", lines))
    return found


def clone(into: Path) -> str:
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain"], check=True, capture_output=True, text=True).stdout
    if dirty:
        print(f"flake-hunt: the checkout has uncommitted changes; hunting the commit {head[:12]} without them", flush=True)
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(into)], check=True)
    print(f"flake-hunt: {head[:12]} cloned to {into}", flush=True)
    subprocess.run(["bash", "dev/docker-engine.sh"], cwd=into, check=True)  # as .ci/run: the outer engine, if none runs
    subprocess.run(["make", "--no-print-directory", "venv", "toolchain"], cwd=into, check=True)
    return head


def hunt(checkout: Path, module: Module, reports: Path) -> None:
    runs = module.wanted
    path = f"tests/e2e/test_{module.name}.py"
    if not (checkout / path).is_file():
        raise SystemExit(f"flake-hunt: no module {path}")
    for run in range(1, runs + 1):
        report = reports / f"{module.name}-{run}.xml"
        started = time.monotonic()
        print(f"flake-hunt: {module.name} run {run}/{runs} ({time.strftime('%H:%M:%S')})", flush=True)
        result = subprocess.run(
            [
                str(checkout / "venv/bin/python"),
                "-m",
                "pytest",
                path,
                "-p",
                "no:cacheprovider",
                "-q",
                "-o",
                "junit_family=xunit1",
                f"--junitxml={report}",
            ],
            cwd=checkout,
        )
        module.seconds.append(time.monotonic() - started)
        module.runs += 1
        found = failures_in(report, run) if report.exists() else []
        if result.returncode != 0 and not found:
            found = [Failure(run, "(the session)", [f"pytest exited {result.returncode} without a failed test in its report"])]
        module.failures.extend(found)


def table(modules: list[Module]) -> str:
    rows = [["module", "runs", "failed runs", "min/run", "failures (run: test: first lines)"]]
    for m in modules:
        per_run = f"{sum(m.seconds) / 60 / max(m.runs, 1):.1f}"
        first = [f"{f.run}: {f.test}: " + " / ".join(line.replace("|", "\\|") for line in f.lines) for f in m.failures] or ["-"]
        rows.append([m.name, str(m.runs), str(m.failed_runs), per_run, first[0]])
        rows.extend(["", "", "", "", more] for more in first[1:])
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for index, row in enumerate(rows):
        lines.append("| " + " | ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[4]]) + " |")
        if index == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|---|")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", default=os.environ.get("FLAKE_MODULES", "").split() or list(DEFAULT_MODULES))
    parser.add_argument("--runs", type=int, default=int(os.environ.get("FLAKE_RUNS", "3")))
    parser.add_argument("--keep", action="store_true", help="keep the clone and the reports")
    args = parser.parse_args()
    if args.runs < 1:
        raise SystemExit("flake-hunt: --runs (FLAKE_RUNS) must be at least 1")
    work = Path(tempfile.mkdtemp(prefix="dropship-flake-hunt-"))
    head = "(not cloned)"
    modules = []
    for spec in args.modules:
        name, _, count = spec.partition(":")
        if count and not count.isdigit():
            raise SystemExit(f"flake-hunt: '{spec}': a module's runs are a number, as in shop:5")
        modules.append(Module(name.removeprefix("test_").removesuffix(".py"), int(count) if count else args.runs))
    try:
        checkout = work / "clone"
        head = clone(checkout)
        reports = work / "reports"
        reports.mkdir()
        for module in modules:
            hunt(checkout, module, reports)
    finally:
        print(f"\nflake-hunt of {head[:12]} on {os.uname().nodename}, {os.cpu_count()} cores:\n" + table(modules), flush=True)
        if args.keep:
            print(f"flake-hunt: clone and reports kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if any(m.failures for m in modules) else 0


if __name__ == "__main__":
    sys.exit(main())
