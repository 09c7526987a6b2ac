"""Which resources change when one setting changes: a remote step reruns exactly when its own inputs change."""

from __future__ import annotations

import json

import pytest

from dropship.remote import commands
from tests.unit.program import CANARY, Run, run_program, stack_config
from tests.unit.test_settings import STAGING_SECRETS


def inputs_by_name(run: Run) -> dict[str, str]:
    """Each resource's inputs as the engine compares them: without those it is told to ignore."""
    return {r.name: json.dumps({k: v for k, v in r.inputs.items() if k not in r.ignore_changes}, sort_keys=True) for r in run.resources}


def changed(before: Run, after: Run) -> set[str]:
    a, b = inputs_by_name(before), inputs_by_name(after)
    assert a.keys() == b.keys()
    return {name for name in a if a[name] != b[name]}


def staging(**config: str) -> Run:
    secrets = dict(STAGING_SECRETS)
    plain = dict(stack_config("staging"))
    for key, value in config.items():
        if key.startswith("env."):
            secrets[key] = value
        else:
            plain[f"dropship:{key}"] = value
    return run_program("staging", plain, secrets)


def test_same_config_same_inputs() -> None:
    assert changed(staging(), staging()) == set()


def test_new_image_tag_touches_only_the_release() -> None:
    assert changed(staging(), staging(**{"app.imageTag": "v2"})) == {"app-release"}


def test_changed_secret_touches_only_env_and_release() -> None:
    before, after = staging(), staging(**{"env.SECRET_KEY": f"{CANARY}-rotated"})
    assert changed(before, after) == {"env-write", "app-release"}
    # The release reruns through its triggers, which is what restarts the app's containers.
    assert before.named("app-release").inputs["create"] == after.named("app-release").inputs["create"]
    assert before.named("app-release").inputs["triggers"] != after.named("app-release").inputs["triggers"]


def test_docker_setting_touches_only_the_docker_step() -> None:
    assert changed(staging(), staging(**{"docker.logMaxFile": "5"})) == {"host-docker"}


def test_health_url_touches_only_the_release() -> None:
    assert changed(staging(), staging(**{"app.healthUrl": "http://127.0.0.1:8000/ready"})) == {"app-release"}


def test_new_release_code_uploads_itself_beside_the_old_and_reruns_only_the_release(monkeypatch: pytest.MonkeyPatch) -> None:
    before = staging()
    monkeypatch.setattr(commands, "host_code_digest", lambda: "0123456789abcdef")  # as a new dropship version's would be
    after = staging()
    assert changed(before, after) == {"app-release", *(f"app-code-{module}" for module in commands.HOST_CODE)}
    assert after.named("app-code-release.py").inputs["remotePath"] == "/srv/shop/.dropship/host-0123456789abcdef/release.py"
    assert after.named("app-release").inputs["create"].startswith("python3 /srv/shop/.dropship/host-0123456789abcdef/release.py ")


def test_a_new_version_of_one_bootstrap_script_reruns_only_its_step(monkeypatch: pytest.MonkeyPatch) -> None:
    before = staging()
    original = commands.script_text
    monkeypatch.setattr(commands, "script_text", lambda name: original(name) + ("# changed\n" if name == "install-docker.sh" else ""))
    after = staging()
    assert changed(before, after) == {"host-docker"}
    assert before.named("host-docker").inputs["create"] == after.named("host-docker").inputs["create"]


def test_bootstrap_steps_are_short_lines_that_hold_no_script() -> None:
    run = staging()
    for command in run.commands:
        if command.name.startswith("host-"):
            assert len(command.inputs["create"]) < 300, command.name
            assert "main " not in command.inputs["create"] and "set -eu" in command.inputs["stdin"], command.name
