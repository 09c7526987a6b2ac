"""The restructuring changed no resource: a stack deployed by the code before it previews clean with the code after it.

The code before the restructuring (BEFORE, extracted from git with `git archive`) deploys the
`local` stack (that tree's own Pulumi.local.yaml, aimed at this module's test host and ports)
into a file backend of this module's own. Then a copy of the current tree runs
`pulumi preview --json --diff` against the same backend and stack: no create, no delete, no
replace, and no update except the ones listed in EXPECTED_UPDATES, each with its reason and
checked exactly (the old and the new inputs differ only where the listed script's text
changed). Then the current tree's `pulumi up` applies just those, and a preview after it is
empty.

Needs the repository's history (CI's `git clone` has it; a shallow clone does not).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import tarfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest

from dev.harness import ROOT, AppPorts, Project, TestHost

BEFORE = "f820ef84f7059447d5fe913b6e7630e5efc2b4c1"
"""f820ef8, the last commit before the restructuring into dev/, examples/, offline/,
dropship/host/, dropship/remote/, dropship/config/ and tests/unit/ (its scripts lived in
dropship/scripts/, the local stack's app in example/)."""


@dataclass(frozen=True)
class ExpectedUpdate:
    resource: str
    """The resource's name (the last part of its URN)."""
    script: str
    """The remote script (base name) whose text changed; the resource runs it."""
    reason: str


EXPECTED_UPDATES = (
    ExpectedUpdate(
        "app-release",
        "deploy.sh",
        "deploy.sh now folds hook output lines longer than 64 KiB; the script text is the release command's `create`,"
        " so that a changed script runs the release again",
    ),
)
PORTS = AppPorts.allocate()
SECRETS = {"env.APP_SECRET": "refactor-preserves-state", **PORTS.secrets()}


def serving() -> str:
    with urllib.request.urlopen(PORTS.health_url, timeout=5) as response:
        return str(json.loads(response.read())["release"])


def extract_before(target: Path) -> None:
    """BEFORE's tree in `target`, or a clear failure when this clone does not have it."""
    if subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{BEFORE}^{{commit}}"], capture_output=True).returncode != 0:
        pytest.fail(
            f"commit {BEFORE} (the code before the restructuring) is not in the repository at {ROOT}: "
            "this test needs the history; a shallow clone lacks it (git fetch --unshallow, or clone without --depth)"
        )
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", BEFORE], capture_output=True, check=True).stdout
    target.mkdir(parents=True)
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")


def scripts(tree: Path) -> dict[str, str]:
    """The remote scripts of a tree's `dropship` package: base name -> text (wherever the tree keeps them)."""
    found = {path.name: path.read_text() for path in (tree / "dropship").rglob("*.sh")}
    assert len(found) >= 9, sorted(found)
    return found


@pytest.fixture(scope="module")
def host(registry: None) -> Iterator[TestHost]:
    """This module's own test host, removed afterwards with its Docker volume."""
    with TestHost.for_module(__name__).fresh() as test_host:
        yield test_host


@pytest.fixture(scope="module")
def projects(host: TestHost, bin_dir: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Project, Project]]:
    """(before, after): BEFORE's tree, deployed, and a copy of the current tree; one backend, one stack."""
    workdir = tmp_path_factory.mktemp("refactor")
    state = workdir / "state"
    extract_before(workdir / "before")
    before = Project(workdir / "before", bin_dir, source=None, state=state)
    before.init_local(host, {"app.healthUrl": PORTS.health_url}, SECRETS)
    before.up()
    assert serving() == "v1"
    after = Project(workdir / "after", bin_dir, state=state)
    after.pulumi("stack", "select", "local")
    after.configure(host, {"app.healthUrl": PORTS.health_url}, SECRETS)
    yield before, after
    after.pulumi("destroy", "--yes", "--skip-preview", check=False)


def test_the_trees_differ_as_the_restructuring_did(projects: tuple[Project, Project]) -> None:
    before, after = projects
    assert (before.dir / "example" / "compose.yaml").exists() and not (before.dir / "examples").exists()
    assert (after.dir / "examples" / "local" / "compose.yaml").exists() and not (after.dir / "example").exists()
    old, new = scripts(before.dir), scripts(after.dir)
    assert set(old) == set(new)
    assert {name for name in old if old[name] != new[name]} == {u.script for u in EXPECTED_UPDATES}


def test_preview_from_the_current_tree_creates_deletes_and_replaces_nothing(projects: tuple[Project, Project]) -> None:
    before, after = projects
    deployed = json.loads(after.pulumi("stack", "export").stdout)["deployment"]["resources"]
    result = after.pulumi("preview", "--json", "--diff", "--show-sames")
    steps: list[dict[str, Any]] = json.loads(result.stdout)["steps"]
    by_name = {step["urn"].rsplit("::", 1)[-1]: step for step in steps}
    assert len(by_name) == len(steps)
    # Every deployed resource has its step, and there is no other (nothing created, nothing deleted);
    # the engine shows no step for the default provider: its use is checked per step below.
    assert sorted(step["urn"] for step in steps) == sorted(r["urn"] for r in deployed if not r["type"].startswith("pulumi:providers:"))
    assert len(steps) >= 15, [s["urn"] for s in steps]
    changed = {name: step["op"] for name, step in by_name.items() if step["op"] != "same"}
    assert changed == {u.resource: "update" for u in EXPECTED_UPDATES}, json.dumps(
        {n: by_name[n].get("detailedDiff") or by_name[n].get("diffReasons") for n in changed}, indent=1
    )[:6000]

    # Same resources in the same places: type, parent, provider, options, and the order the engine
    # creates and deletes them in (the transitive dependencies; the direct ones may be fewer).
    old_graph = {step["urn"]: set(step["oldState"].get("dependencies", [])) for step in steps}
    new_graph = {step["urn"]: set(step["newState"].get("dependencies", [])) for step in steps}
    for name, step in by_name.items():
        old, new = step["oldState"], step["newState"]
        for key in sorted((set(old) | set(new)) - UNCOMPARED):
            assert old.get(key) == new.get(key), (name, key, old.get(key), new.get(key))
        assert closure(old_graph, step["urn"]) == closure(new_graph, step["urn"]), name

    # Same inputs, but for the uploads' local paths (the project copy's; same content hash) and the expected updates.
    old_scripts, new_scripts = scripts(before.dir), scripts(after.dir)
    expected = {u.resource: u for u in EXPECTED_UPDATES}
    for name, step in by_name.items():
        old_inputs, new_inputs = dict(step["oldState"].get("inputs", {})), dict(step["newState"].get("inputs", {}))
        assert set(old_inputs) == set(new_inputs), name
        if step["newState"]["type"] == "command:remote:CopyToRemote":
            old_source, new_source = old_inputs.pop("source"), new_inputs.pop("source")
            assert old_source["hash"] == new_source["hash"], name
            assert Path(old_source["path"]).name == Path(new_source["path"]).name == name.removeprefix("app-file-")
            assert {k: v for k, v in old_source.items() if k != "path"} == {k: v for k, v in new_source.items() if k != "path"}, name
        if name in expected:
            update = expected[name]
            assert step.get("diffReasons") == ["create"], (update, step.get("diffReasons"))
            old_create, new_create = old_inputs.pop("create"), new_inputs.pop("create")
            old_text, new_text = shlex.quote(old_scripts[update.script]), shlex.quote(new_scripts[update.script])
            assert old_create.count(old_text) == 1, update
            assert old_create != new_create, update
            assert old_create.replace(old_text, new_text) == new_create, update
        assert old_inputs == new_inputs, name


UNCOMPARED = {"inputs", "outputs", "id", "created", "modified", "sourcePosition", "stackTrace", "dependencies"}
"""State fields compared otherwise (inputs, dependencies), or that only say where and when (not what)."""


def closure(graph: dict[str, set[str]], urn: str) -> set[str]:
    found: set[str] = set()
    pending = list(graph.get(urn, ()))
    while pending:
        dependency = pending.pop()
        if dependency not in found:
            found.add(dependency)
            pending += graph.get(dependency, ())
    return found


def test_up_from_the_current_tree_applies_only_the_expected_updates(projects: tuple[Project, Project], host: TestHost) -> None:
    _, after = projects
    after.up()
    changes = after.last_update_changes()
    assert changes.get("update") == len(EXPECTED_UPDATES), changes
    assert set(changes) == {"same", "update"}, changes
    assert serving() == "v1"
    assert after.preview_steps() == {}
    log = host.run("tail -2 /srv/example/releases.log").stdout.splitlines()
    assert [line.split()[-1] for line in log] == ["live", "live"]
