"""The GitHub Actions workflows (.github/): actionlint, what they run, and that what they name exists.

actionlint (with shellcheck on every `run:` block) is built from Go modules
once by dev/lint-workflows.sh; `make lint` runs it too.
"""

from __future__ import annotations

import re
import shlex
import stat
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from dropship.config.flat_keys import TOP_LEVEL_KEYS
from dropship.config.sections import SECTIONS

ROOT = Path(__file__).resolve().parents[2]
GITHUB = ROOT / ".github"
WORKFLOWS = GITHUB / "workflows"
SETUP_ACTION = GITHUB / "actions" / "setup" / "action.yml"
PREVIEW_ENV_SCRIPT = ROOT / "ci" / "preview-env.sh"

# Every secret the workflows use, and what for (docs/ci.md lists the same).
SECRETS = {
    "PULUMI_ACCESS_TOKEN": "Pulumi Cloud backend",
    "PULUMI_CONFIG_PASSPHRASE": "passphrase secrets provider (self-managed backend)",
    "STATE_ACCESS_KEY_ID": "S3-compatible state bucket (self-managed backend)",
    "STATE_SECRET_ACCESS_KEY": "S3-compatible state bucket (self-managed backend)",
    "DIGITALOCEAN_TOKEN": "DigitalOcean provider",
    "CLOUDFLARE_API_TOKEN": "Cloudflare provider",
    "REGISTRY_PASSWORD": "example images job: push to the registry",
    "GITHUB_TOKEN": "preview comment on the pull request (automatic)",
}
# What every job that runs pulumi gets from repository secrets, under the same name.
PULUMI_ENV = ("PULUMI_ACCESS_TOKEN", "PULUMI_CONFIG_PASSPHRASE", "DIGITALOCEAN_TOKEN", "CLOUDFLARE_API_TOKEN")


@cache
def load(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict), path
    if True in document:  # YAML 1.1 reads the key `on` as true
        document["on"] = document.pop(True)
    return document


def workflow(name: str) -> dict[str, Any]:
    return load(WORKFLOWS / name)


def all_files() -> list[Path]:
    return [*sorted(WORKFLOWS.glob("*.yml")), SETUP_ACTION]


def steps(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(job id, job, step) of a workflow, or ("", {}, step) of a composite action."""
    if "runs" in document:
        for step in document["runs"]["steps"]:
            yield "", {}, step
    for job_id, job in document.get("jobs", {}).items():
        for step in job.get("steps", []):
            yield job_id, job, step


def all_steps() -> Iterator[tuple[Path, str, dict[str, Any], dict[str, Any]]]:
    for path in all_files():
        for job_id, job, step in steps(load(path)):
            yield path, job_id, job, step


def run_lines() -> Iterator[tuple[Path, list[str]]]:
    """Every shell command of the workflows, the setup action and ci/preview-env.sh, split into words."""
    for path, _, _, step in all_steps():
        for line in str(step.get("run", "")).splitlines():
            if line.strip() and not line.strip().startswith("#"):
                yield path, _as_root_removed(shlex.split(line))
    for line in PREVIEW_ENV_SCRIPT.read_text().splitlines():
        if line.strip().startswith("pulumi "):
            yield PREVIEW_ENV_SCRIPT, shlex.split(line.strip())


AS_ROOT = ["sudo", "-E", "env", "PATH=$PATH"]
"""How e2e-official.yml runs a command as root with the runner's PATH (the Pulumi CLI's)."""


def _as_root_removed(words: list[str]) -> list[str]:
    return words[len(AS_ROOT) :] if words[: len(AS_ROOT)] == AS_ROOT else words


def pulumi_action_steps(name: str) -> list[dict[str, Any]]:
    return [s for _, _, s in steps(workflow(name)) if str(s.get("uses", "")).startswith("pulumi/actions@")]


def runs_of(name: str, job: str) -> list[str]:
    return [str(s["run"]).strip() for s in workflow(name)["jobs"][job]["steps"] if "run" in s]


def pinned_pulumi() -> str:
    match = re.search(r"^pulumi==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M)
    assert match
    return match.group(1)


# --- actionlint ----------------------------------------------------------------------


def lint(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(ROOT / "dev" / "lint-workflows.sh"), *args], capture_output=True, text=True, timeout=900)


@pytest.mark.system  # actionlint is built with Go
def test_actionlint_passes_on_every_workflow() -> None:
    result = lint()
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(list(WORKFLOWS.glob('*.yml')))} workflow(s) clean" in result.stderr


@pytest.mark.system
def test_actionlint_and_shellcheck_catch_a_broken_workflow(tmp_path: Path) -> None:
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(
        "on:\n  pull_request:\n    types: [opend]\n"
        "jobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - run: echo $UNQUOTED\n"
        "      - uses: pulumi/actions@v6\n        with:\n          comand: preview\n"
    )
    result = lint(str(bad))
    assert result.returncode != 0
    assert 'invalid activity type "opend"' in result.stdout
    assert "SC2086" in result.stdout  # shellcheck on the run: block
    assert 'input "comand" is not defined in action "pulumi/actions@v6"' in result.stdout


# --- what runs when --------------------------------------------------------------------


def test_the_workflows() -> None:
    assert {p.name for p in WORKFLOWS.iterdir()} == {
        "staging.yml",
        "production.yml",
        "preview-env.yml",
        "images.yml",
        "e2e-official.yml",
    }


def test_a_pull_request_previews_its_own_stack_with_the_policy_pack_and_comments_the_diff_before_its_up() -> None:
    up = workflow("preview-env.yml")["jobs"]["up"]
    [preview] = pulumi_action_steps("preview-env.yml")
    assert preview["with"]["command"] == "preview"
    assert preview["with"]["stack-name"] == "pr-${{ github.event.pull_request.number }}"
    assert preview["with"]["comment-on-pr"] is True
    assert preview["with"]["policyPacks"] == "policy"
    assert up["permissions"]["pull-requests"] == "write"
    # Its stack made (or its config copied again) first, deployed after.
    order = [str(step.get("run") or step.get("uses")) for step in up["steps"]]
    assert (
        order.index('bash ci/preview-env.sh config "$PR_NUMBER"')
        < order.index(preview["uses"])
        < order.index('bash ci/preview-env.sh up "$PR_NUMBER"')
    )


def test_push_to_main_deploys_staging_with_the_policy_pack() -> None:
    assert workflow("staging.yml")["on"]["push"] == {"branches": ["main"]}
    assert runs_of("staging.yml", "up")[-1] == "pulumi up --stack staging --yes --policy-pack policy"


def test_release_tag_deploys_production_behind_an_approved_environment() -> None:
    production = workflow("production.yml")
    assert production["on"] == {"push": {"tags": ["v*"]}}
    up = production["jobs"]["up"]
    assert up["environment"] == {"name": "production"}
    assert up["env"]["RELEASE_TAG"] == "${{ github.ref_name }}"
    assert runs_of("production.yml", "up") == [
        'pulumi config set --stack production app.imageTag "$RELEASE_TAG"',
        "pulumi up --stack production --yes --policy-pack policy",
    ]


def test_pull_request_lifecycle_runs_the_preview_env_script() -> None:
    preview_env = workflow("preview-env.yml")
    assert preview_env["on"]["pull_request"]["types"] == ["opened", "synchronize", "reopened", "closed"]
    jobs = preview_env["jobs"]
    assert "github.event.action != 'closed'" in jobs["up"]["if"]
    assert runs_of("preview-env.yml", "up") == ['bash ci/preview-env.sh config "$PR_NUMBER"', 'bash ci/preview-env.sh up "$PR_NUMBER"']
    assert "github.event.action == 'closed'" in jobs["destroy"]["if"]
    assert runs_of("preview-env.yml", "destroy") == ['bash ci/preview-env.sh destroy "$PR_NUMBER"']
    assert preview_env["env"]["PR_NUMBER"] == "${{ github.event.pull_request.number }}"


def test_preview_env_script_uses_the_pulumi_lifecycle_commands() -> None:
    script = PREVIEW_ENV_SCRIPT.read_text()
    for command in (
        'pulumi stack select --stack "$1"',
        'pulumi stack init "$stack" --copy-config-from "$source"',
        'pulumi up --stack "$stack" --yes',
        'pulumi destroy --stack "$stack" --yes',
        'pulumi stack rm --stack "$stack" --yes',
    ):
        assert command in script
    assert "source=${PREVIEW_SOURCE_STACK:-previews}" in script
    assert script.splitlines()[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in script
    assert script.rstrip().splitlines()[-1] == 'main "$@"'


@pytest.mark.parametrize("name", ["staging.yml", "production.yml", "preview-env.yml"])
def test_the_example_images_job_feeds_app_image_tag(name: str) -> None:
    jobs = workflow(name)["jobs"]
    assert jobs["images"]["uses"] == "./.github/workflows/images.yml"
    assert jobs["images"]["if"].count("vars.BUILD_IMAGES == 'true'") == 1
    assert jobs["up"]["needs"] == "images"
    assert jobs["up"]["if"].startswith("${{ !failure() && !cancelled()") or jobs["up"]["if"].startswith("!failure() && !cancelled()")
    if name == "production.yml":
        # Production deploys the release tag, which is also the tag the images job pushes.
        assert jobs["images"]["with"]["tag"] == jobs["up"]["env"]["RELEASE_TAG"] == "${{ github.ref_name }}"
    elif name == "staging.yml":
        # Staging always deploys the commit's tag (an immutable one), built here or by the team's own build.
        assert jobs["up"]["env"]["IMAGE_TAG"] == "${{ needs.images.outputs.tag || github.sha }}"
        step = next(s for s in jobs["up"]["steps"] if "app.imageTag" in s.get("run", ""))
        assert "if" not in step
        assert step["run"] == 'pulumi config set --stack staging app.imageTag "$IMAGE_TAG"'
    else:
        assert jobs["up"]["env"]["IMAGE_TAG"] == "${{ needs.images.outputs.tag }}"
    if name == "preview-env.yml":
        assert 'pulumi config set --stack "$stack" app.imageTag "$IMAGE_TAG"' in PREVIEW_ENV_SCRIPT.read_text()
    # The images job pushes with the registry token of the caller's own environment.
    assert jobs["images"]["with"]["environment"] == ENVIRONMENT_OF[name]


def test_the_images_job_pushes_the_images_the_compose_file_runs() -> None:
    images = workflow("images.yml")
    assert images["on"]["workflow_call"]["inputs"]["tag"]["required"] is True
    build = images["jobs"]["build"]
    [step] = [s for s in build["steps"] if "dev/build-shop-images.sh" in str(s.get("run", ""))]
    assert step["env"]["TAG"] == "${{ inputs.tag }}"
    assert step["run"].endswith('bash dev/build-shop-images.sh "$TAG"')
    compose = (ROOT / "examples" / "shop" / "compose.yaml").read_text()
    assert "image: ${DROPSHIP_REGISTRY:-127.0.0.1:5000}/shop/api:${IMAGE_TAG" in compose
    staging = yaml.safe_load((ROOT / "Pulumi.staging.yaml").read_text())["config"]
    assert images["env"]["REGISTRY"] == staging["dropship:registry.server"]
    assert images["env"]["REGISTRY_USERNAME"] == staging["dropship:registry.username"]


# --- everything they name exists ---------------------------------------------------------


def named_stacks() -> set[str]:
    stacks = {str(s["with"]["stack-name"]) for s in pulumi_action_steps("preview-env.yml")} - {"pr-${{ github.event.pull_request.number }}"}
    for _, words in run_lines():
        for flag in ("--stack", "-s", "--copy-config-from"):
            stacks.update(words[i + 1] for i, w in enumerate(words[:-1]) if w == flag and not words[i + 1].startswith("$"))
    stacks.update(re.findall(r"PREVIEW_SOURCE_STACK:-([a-z0-9-]+)", PREVIEW_ENV_SCRIPT.read_text()))
    return stacks


def test_every_stack_they_name_has_a_stack_file() -> None:
    stacks = named_stacks()
    assert stacks == {"staging", "production", "previews"}
    for stack in stacks:
        assert (ROOT / f"Pulumi.{stack}.yaml").is_file(), stack


def test_every_script_they_run_exists_and_is_executable() -> None:
    scripts = [words[1] for _, words in run_lines() if words[0] == "bash"]
    assert scripts, "the workflows run no script"
    for script in scripts:
        path = ROOT / script
        assert path.is_file(), script
        assert path.stat().st_mode & stat.S_IXUSR, f"{script} is not executable"


def test_every_make_target_they_run_exists() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = [words[1] for _, words in run_lines() if words[0] == "make"]
    assert sorted(targets) == ["engine-info", "test-e2e", "venv"]
    for target in targets:
        assert re.search(rf"^{target}:", makefile, re.M), target


def test_the_official_plugin_job_runs_the_e2e_tier_as_ci_does_after_checking_the_plugin_is_official() -> None:
    job = workflow("e2e-official.yml")["jobs"]["e2e"]
    runs = [str(step.get("run", "")) for step in job["steps"]]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pulumi plugin install resource command \"$(sed -n 's/^pulumi-command==//p' requirements.txt)\"" in runs
    for script in ("dev/apt-deps.sh", "dev/docker-engine.sh"):
        assert f"bash {script}" in ci and any(f"bash {script}" in run for run in runs), script
    check = next(run for run in runs if "engine-info" in run)
    assert "grep -c '(official)' engine-info.txt)\" -eq 2" in check
    assert runs.index(check) < next(i for i, run in enumerate(runs) if "make test-e2e" in run)
    assert job["env"]["PULUMI_HOME"].startswith(job["env"]["DROPSHIP_CACHE"])


def test_every_policy_pack_they_name_exists() -> None:
    packs = {str(s["with"]["policyPacks"]) for s in pulumi_action_steps("preview-env.yml")}
    for _, words in run_lines():
        packs.update(words[i + 1] for i, w in enumerate(words[:-1]) if w == "--policy-pack" and not words[i + 1].startswith("$"))
    assert packs == {"policy"}
    assert (ROOT / "policy" / "PulumiPolicy.yaml").is_file()
    assert (ROOT / "policy" / "__main__.py").is_file()
    assert "POLICY_PACK=${POLICY_PACK-$root/policy}" in PREVIEW_ENV_SCRIPT.read_text()


def known_setting(key: str) -> bool:
    section, dot, rest = key.partition(".")
    if not dot:
        return key in TOP_LEVEL_KEYS
    model = SECTIONS.get(section)
    return model is not None and any(f.alias == rest for f in model.model_fields.values())


def test_every_setting_they_set_is_a_dropship_setting() -> None:
    keys = []
    for _, words in run_lines():
        if words[:3] in (["pulumi", "config", "set"], ["pulumi", "config", "rm"]):
            positional = [w for i, w in enumerate(words[3:], 3) if not w.startswith("-") and words[i - 1] not in ("--stack", "-s")]
            keys.append(positional[0])
    assert sorted(set(keys)) == ["app.imageTag", "environment"]
    assert all(known_setting(k) for k in keys), keys


def test_every_local_action_and_reusable_workflow_exists() -> None:
    local = {str(s["uses"]) for _, _, _, s in all_steps() if str(s.get("uses", "")).startswith("./")}
    local |= {str(j["uses"]) for p in WORKFLOWS.glob("*.yml") for j in load(p)["jobs"].values() if "uses" in j}
    assert local == {"./.github/actions/setup", "./.github/workflows/images.yml"}
    for path in local:
        assert (ROOT / path).exists(), path


# --- versions, pins, secrets, concurrency ------------------------------------------------


def test_pulumi_cli_version_equals_the_sdk_pin() -> None:
    versions = [s["with"]["pulumi-version"] for _, _, _, s in all_steps() if "pulumi-version" in s.get("with", {})]
    assert versions, "no pulumi-version"
    assert set(versions) == {pinned_pulumi()} == {"3.259.0"}
    # And every pulumi/actions step has one: none falls back to "the latest 3.x".
    assert all("pulumi-version" in s.get("with", {}) for _, _, _, s in all_steps() if str(s.get("uses", "")).startswith("pulumi/"))


def test_actions_are_pinned_by_commit_with_the_version_named_and_one_pin_per_action() -> None:
    """A tag can be moved to other code; a commit cannot. The comment says which release it is."""
    pins: dict[str, set[str]] = {}
    for path in all_files():
        for line in path.read_text().splitlines():
            match = re.search(r"\buses:\s*(\S+)(.*)$", line)
            if match is None or match[1].startswith("./"):
                continue
            assert re.fullmatch(r"[a-z0-9-]+/[a-z0-9-]+@[0-9a-f]{40}", match[1]), (path.name, line)
            assert re.fullmatch(r"\s+# v[0-9]+\.[0-9]+\.[0-9]+", match[2]), (path.name, line)
            pins.setdefault(match[1].split("@")[0], set()).add(match[1] + match[2])
    assert sorted(pins) == ["actions/checkout", "actions/setup-python", "docker/login-action", "pulumi/actions"]
    assert all(len(versions) == 1 for versions in pins.values()), pins


def test_every_job_that_runs_has_a_timeout() -> None:
    for path in WORKFLOWS.glob("*.yml"):
        for job_id, job in load(path)["jobs"].items():
            if "runs-on" in job:
                assert 1 <= int(job["timeout-minutes"]) <= 90, (path.name, job_id)


def secret_references(text: str) -> set[str]:
    return set(re.findall(r"secrets\.([A-Za-z_][A-Za-z0-9_]*)", text))


def test_every_secret_they_use_is_in_the_documented_list() -> None:
    used = set().union(*(secret_references(p.read_text()) for p in all_files()))
    assert used == set(SECRETS)


ENVIRONMENT_OF = {"staging.yml": "staging", "production.yml": "production", "preview-env.yml": "preview"}
"""The GitHub environment whose secrets each deploying workflow's jobs get (each has its own values)."""


def environment_name(job: dict[str, Any]) -> str | None:
    environment = job.get("environment")
    return str(environment["name"]) if isinstance(environment, dict) else environment


def test_jobs_that_run_pulumi_get_tokens_and_passphrase_from_their_environments_secrets() -> None:
    for name, expected in ENVIRONMENT_OF.items():
        document = workflow(name)
        for job_id, job in document["jobs"].items():
            if "steps" not in job:
                continue  # a call of the images workflow
            assert environment_name(job) == expected, (name, job_id)
            env = {**document.get("env", {}), **job.get("env", {})}
            for variable in PULUMI_ENV:
                assert env.get(variable) == f"${{{{ secrets.{variable} }}}}", (name, job_id, variable)
            assert env["PULUMI_BACKEND_URL"] == "${{ vars.PULUMI_BACKEND_URL }}"


def triggered_by_pull_requests(document: dict[str, Any]) -> bool:
    return bool({"pull_request", "pull_request_target"} & set(document["on"]))


def test_a_pull_requests_code_sees_no_staging_or_production_secret() -> None:
    """Every job a pull request starts gets secrets only from the environment `preview` (or none at all): the
    deploying environments' secrets exist only there, and GitHub gives a job only its environment's."""
    pull_request_workflows = [p.name for p in WORKFLOWS.glob("*.yml") if triggered_by_pull_requests(load(p))]
    assert sorted(pull_request_workflows) == ["e2e-official.yml", "preview-env.yml"]
    for name in pull_request_workflows:
        for job_id, job in workflow(name)["jobs"].items():
            if "uses" in job:  # a reusable workflow: it runs in the environment the call names, with no secret passed
                assert job["with"]["environment"] == "preview" and "secrets" not in job, (name, job_id)
                continue
            used = secret_references(yaml.safe_dump(job)) - {"GITHUB_TOKEN"}
            assert environment_name(job) in (("preview",) if used else (None, "preview")), (name, job_id, used)
    # The reusable images workflow takes its environment from the caller and secrets only from it.
    build = workflow("images.yml")["jobs"]["build"]
    assert build["environment"] == "${{ inputs.environment }}"
    assert "secrets" not in workflow("images.yml")["on"]["workflow_call"]
    for name, expected in ENVIRONMENT_OF.items():
        assert workflow(name)["jobs"]["images"]["with"]["environment"] == expected, name


def test_no_secret_reaches_a_shell_command() -> None:
    # Secrets travel in env: and with: only; no run: block mentions one, or a variable holding one, or traces.
    secret_variables = {
        variable
        for path in all_files()
        for scope in [load(path).get("env", {}), *(j.get("env", {}) for j in load(path).get("jobs", {}).values())]
        for variable, value in scope.items()
        if secret_references(str(value))
    }
    assert secret_variables >= set(PULUMI_ENV)
    for path, job_id, _, step in all_steps():
        run = str(step.get("run", ""))
        assert not secret_references(run), (path.name, job_id, run)
        for variable in secret_variables:
            assert not re.search(rf"\${{?{variable}\b", run), (path.name, job_id, variable)
        assert "set -x" not in run and "--show-secrets" not in run
    script = PREVIEW_ENV_SCRIPT.read_text()
    assert "--show-secrets" not in script and "set -x" not in script and "config get" not in script


def test_one_run_at_a_time_per_stack() -> None:
    expected = {
        "staging.yml": ("pulumi-staging", False),
        "production.yml": ("pulumi-production", False),
        "preview-env.yml": ("pulumi-pr-${{ github.event.pull_request.number }}", False),
    }
    for name, (group, cancel) in expected.items():
        assert workflow(name)["concurrency"] == {"group": group, "cancel-in-progress": cancel}, name


def test_pull_requests_from_forks_run_nothing_that_needs_secrets() -> None:
    same_repository = "github.event.pull_request.head.repo.full_name == github.repository"
    for job_id, job in workflow("preview-env.yml")["jobs"].items():
        assert same_repository in job["if"], job_id


def test_docs_list_every_secret_the_workflows_use() -> None:
    ci_doc = (ROOT / "docs" / "ci.md").read_text()
    assert [name for name in SECRETS if f"`{name}`" not in ci_doc] == []
