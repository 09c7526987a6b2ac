"""`make reliability`: bad input, faults and secret leaks against the real engine; prints a table.

Runs the three end-to-end modules below with pytest (each has its own test hosts, at
loopback addresses of their own, dev.harness, so it runs beside `make up` and the other
e2e tests), then summarises what every test recorded with pytest's
record_property (read back from a JUnit XML report): the cases tried, the faults
survived, the leaks found, with times. Extra arguments go to pytest (e.g. `-k faults`).
Exits non-zero when a test failed.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES = {
    "bad input": "tests/e2e/test_bad_input.py",
    "faults": "tests/e2e/test_faults.py",
    "secrets": "tests/e2e/test_secrets_and_hardening.py",
}


@dataclass
class Case:
    module: str
    name: str
    seconds: float
    passed: bool
    properties: dict[str, str] = field(default_factory=dict)

    def get(self, key: str, default: str = "") -> str:
        return self.properties.get(key, default)


def read_report(path: Path) -> list[Case]:
    cases = []
    for element in ElementTree.parse(path).getroot().iter("testcase"):
        module = element.get("classname", "").rsplit(".", 1)[-1]
        failed = any(child.tag in ("failure", "error") for child in element)
        skipped = any(child.tag == "skipped" for child in element)
        if skipped:
            continue
        properties = {p.get("name", ""): p.get("value", "") for p in element.iter("property")}
        cases.append(Case(module, element.get("name", ""), float(element.get("time", "0")), not failed, properties))
    return cases


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s" if seconds >= 60 else f"{seconds:.0f}s"


def table(rows: Iterable[Iterable[str]], indent: str = "  ") -> list[str]:
    cells = [list(r) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    return [indent + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in cells]


def summary(cases: list[Case], wall: float) -> str:
    bad = [c for c in cases if c.module == "test_bad_input" and "bad_input" in c.properties]
    faults = [c for c in cases if c.module == "test_faults" and "fault" in c.properties]
    checks = [c for c in cases if "check" in c.properties]
    hardening = [c for c in cases if "hardening" in c.properties]
    searches = [
        c
        for c in cases
        if c.module == "test_secrets_and_hardening" and ("leaks" in c.properties or any(k.startswith("leaks: ") for k in c.properties))
    ]
    places: list[tuple[str, int]] = []
    for case in searches:
        if "leaks" in case.properties:
            places.append(
                (case.get("search") + (f" ({case.get('expected')} expected)" if case.get("expected") else ""), int(case.get("leaks")))
            )
        places += [(k.removeprefix("leaks: "), int(v)) for k, v in case.properties.items() if k.startswith("leaks: ")]
    leaks = sum(n for _, n in places)
    module_time = {
        m: sum(c.seconds for c in cases if c.module == m) for m in ("test_bad_input", "test_faults", "test_secrets_and_hardening")
    }
    bad_ok = sum(c.passed for c in bad)
    preview = sum(float(c.get("preview_seconds", "0")) for c in bad)
    up = sum(float(c.get("up_seconds", "0")) for c in bad)

    lines = ["dropship reliability: the real Pulumi engine against local Debian 13 test hosts", ""]
    lines += table(
        [
            ("", "tried", "result", "time"),
            (
                "bad input (`pulumi preview` + `pulumi up`)",
                f"{len(bad)} cases",
                f"{bad_ok} refused with their message, state unchanged, 0 resources registered",
                minutes(module_time["test_bad_input"]),
            ),
            (
                "faults, then a plain `pulumi up`",
                f"{len(faults)} faults",
                f"{sum(c.passed for c in faults)} survived, converged with nothing lost",
                minutes(module_time["test_faults"]),
            ),
            (
                "secret canaries searched",
                f"{len(places)} places",
                f"{leaks} leaks found",
                minutes(module_time["test_secrets_and_hardening"]),
            ),
            ("hardening checked on the host", f"{len(hardening)} checks", f"{sum(c.passed for c in hardening)} hold", ""),
        ]
    )
    if bad:
        lines += [
            "",
            f"bad input: {len(bad)} cases in {minutes(preview + up)} of engine time "
            f"(preview {preview / len(bad):.1f} s, up {up / len(bad):.1f} s a case)",
        ]
        lines += [f"  FAILED {c.name}" for c in bad if not c.passed]
    if faults:
        lines += ["", "faults"]
        rows = [("fault", "the run it hit", "plain `up`", "after it")]
        rows += [
            (
                c.get("fault") + ("" if c.passed else "  FAILED"),
                c.get("outcome", "(failed before it was recorded)"),
                f"{float(c.get('converged_in', '0')):.0f} s" if c.get("converged_in") else "-",
                c.get("kept"),
            )
            for c in faults
        ]
        rows += [(c.get("check") + ("" if c.passed else "  FAILED"), "kept by releases, failed releases, restart", "", "") for c in checks]
        lines += table(rows)
    if places:
        lines += ["", "secret leaks (canaries: env values, a changed env value, the registry password, the deploy key; plain and base64)"]
        lines += table([("place searched", "leaks"), *((p, str(n)) for p, n in places)])
    if hardening:
        lines += ["", "hardening"]
        lines += table([(c.get("hardening"), "ok" if c.passed else "FAILED") for c in hardening])
    failed = [c for c in cases if not c.passed]
    lines += ["", f"{len(cases)} tests, {len(failed)} failed, {minutes(wall)} in all"]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as workdir:
        report = Path(workdir) / "report.xml"
        started = time.monotonic()
        command = [
            sys.executable,
            "-m",
            "pytest",
            *MODULES.values(),
            "-p",
            "no:cacheprovider",
            "-q",
            "-o",
            "junit_family=xunit1",
            f"--junitxml={report}",
            *argv,
        ]
        code = subprocess.call(command, cwd=ROOT)
        wall = time.monotonic() - started
        if not report.exists():
            print("reliability: pytest wrote no report", file=sys.stderr)
            return code or 1
        cases = read_report(report)
    print()
    print(summary(cases, wall))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
