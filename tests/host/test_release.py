"""release.py's orchestration against a fake docker and a fake health URL: every branch, fast.

The release's files are real (a temporary app directory); hooks run in a real bash.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import release
from release import Deployer, Lock, Options, ReleaseError, prune_code, run_hooks
from rollout import DOCKER_TIMEOUT

from dev.harness.waiting import wait_until
from tests.host.fake_docker import HEALTHY, STARTING, Clock, Container, FakeDocker

COMPOSE = "services:\n  api:\n    image: api:${IMAGE_TAG}\n"


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """release.py exports its variables into its own environment: keep them out of the test process's."""
    monkeypatch.setattr(os, "environ", dict(os.environ))


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    incoming = tmp_path / "srv" / "shop" / "incoming"
    incoming.mkdir(parents=True)
    (incoming / "compose.yaml").write_text(COMPOSE)
    (incoming / ".env").write_text("SECRET_KEY='s1'\n")
    (tmp_path / "srv" / "shop" / "releases").mkdir()
    return tmp_path / "srv" / "shop"


class Fetch:
    """app.healthUrl's answers, one per request; the last one repeats."""

    def __init__(self, *answers: tuple[int, str]) -> None:
        self.answers = list(answers) or [(200, "HTTP 200: ok")]
        self.asked: list[tuple[str, tuple[str, ...]]] = []

    def __call__(self, url: str, hostnames: Sequence[str]) -> tuple[int, str]:
        self.asked.append((url, tuple(hostnames)))
        return self.answers[min(len(self.asked) - 1, len(self.answers) - 1)]


def deployer(app_dir: Path, docker: FakeDocker, fetch: Fetch | None = None, **options: object) -> tuple[Deployer, Clock]:
    values: dict[str, object] = {"dir": app_dir, "project": "shop", "tag": "v2", "compose_files": ("compose.yaml",)}
    values.update(options)
    clock = Clock()
    return Deployer(Options(**values), run=docker, fetch=fetch or Fetch(), clock=clock, sleep=clock.sleep), clock  # type: ignore[arg-type]


def deploy(app_dir: Path, docker: FakeDocker, fetch: Fetch | None = None, **options: object) -> Clock:
    release, clock = deployer(app_dir, docker, fetch, **options)
    release.deploy(password="")
    return clock


def outcomes(app_dir: Path) -> list[tuple[str, str]]:
    return [(line.split()[2], line.split()[3]) for line in (app_dir / "releases.log").read_text().splitlines()]


def serving(app_dir: Path) -> str:
    return (app_dir / "releases" / "current" / "TAG").read_text().strip()


@pytest.fixture
def v1(app_dir: Path) -> Iterator[FakeDocker]:
    """v1 deployed and serving: api (rolling) and worker, labelled with their release."""
    docker = FakeDocker(
        starts={"api": [Container("api-v1", "api", [HEALTHY], tag="v1")], "worker": [Container("worker-v1", "worker", [HEALTHY])]},
    )
    deploy(app_dir, docker, tag="v1", rolling=("api", "worker"))
    docker.calls.clear()
    yield docker


def test_a_first_release_starts_everything_and_becomes_current(app_dir: Path) -> None:
    docker = FakeDocker(starts={"api": [Container("api1", "api", [STARTING, HEALTHY])]})
    fetch = Fetch((502, "HTTP 502: "), (200, "HTTP 200: ok"))
    deploy(app_dir, docker, fetch, health_url="https://shop.test/api/health", hostnames="shop.test www.shop.test", rolling=("api",))
    assert serving(app_dir) == "v2"
    assert (app_dir / "RELEASE").read_text() == "v2\n"
    assert outcomes(app_dir) == [("v2", "live")]
    assert "compose up --detach --remove-orphans" in docker.verbs()
    assert not any("--scale" in v for v in docker.verbs())  # nothing to roll yet
    assert fetch.asked == [("https://shop.test/api/health", ("shop.test", "www.shop.test"))] * 2
    assert (app_dir / "compose.yaml").read_text() == COMPOSE
    assert (app_dir / ".env").stat().st_mode & 0o777 == 0o600


def test_rolling_services_roll_in_the_order_given_before_the_rest_comes_up(app_dir: Path, v1: FakeDocker) -> None:
    v1.running.append(Container("worker-v1b", "worker", [HEALTHY], tag="v1"))
    v1.starts = {
        "worker": [Container("worker-v2", "worker", [HEALTHY], tag="v2")],
        "api": [Container("api-v2", "api", [STARTING, HEALTHY], tag="v2")],
    }
    deploy(app_dir, v1, rolling=("api", "worker"))
    scaled = [v for v in v1.verbs() if "--scale" in v]
    assert scaled == [
        "compose up --detach --no-recreate --scale api=2 api",
        "compose up --detach --no-recreate --scale worker=4 worker",
    ]
    verbs = v1.verbs()
    assert verbs.index("rm --force api-v1") < verbs.index(scaled[1]) < verbs.index("compose up --detach --remove-orphans")
    assert serving(app_dir) == "v2"


def test_each_rolled_service_has_the_health_timeout_of_its_own(app_dir: Path, v1: FakeDocker) -> None:
    """api healthy after ~40 s and worker after ~30 s, app.healthTimeout 60: both inside it, the release goes live
    (a slow service does not use up the next one's time)."""
    v1.starts = {
        "api": [Container("api-v2", "api", [STARTING] * 80 + [HEALTHY], tag="v2")],
        "worker": [Container("worker-v2", "worker", [STARTING] * 60 + [HEALTHY], tag="v2")],
    }
    release, clock = deployer(app_dir, v1, rolling=("api", "worker"), health_timeout=60)
    release.deploy(password="")
    assert clock.now > 60  # longer than one timeout in all
    assert serving(app_dir) == "v2"


def test_a_crashing_container_fails_the_release_in_seconds_and_the_previous_one_serves_again(app_dir: Path, v1: FakeDocker) -> None:
    crash = Container("api-v2-crash", "api", [STARTING, ("exited", None, 3, 0)], tag="v2", logs="Traceback\nKeyError: 'DATABASE_URL'\n")
    v1.starts = {"api": [crash]}
    release, clock = deployer(app_dir, v1, rolling=("api",), health_timeout=120)
    with pytest.raises(ReleaseError) as failure:
        release.deploy(password="")
    assert str(failure.value) == (
        "release v2 failed and was rolled back: service api: container api-v2-crash exited with exit code 3; "
        "its last 20 log lines:\nTraceback\nKeyError: 'DATABASE_URL'\nRelease v1 serves again."
    )
    assert clock.now < 10  # not the 120 s health timeout
    assert serving(app_dir) == "v1"
    assert (app_dir / "RELEASE").read_text() == "v1\n"
    assert outcomes(app_dir)[-1] == ("v2", "rolled-back")
    assert [p.name.endswith("-v2") for p in (app_dir / "releases").iterdir() if p.name != "current"] == [False]
    assert [c.id for c in v1.running] == ["api-v1", "worker-v1"]  # the old api never stopped
    assert os.environ["IMAGE_TAG"] == "v1"
    assert "IMAGE_TAG='v1'\n" in (app_dir / "release.env").read_text()


def test_an_unhealthy_url_after_up_rolls_back_and_rolling_back_rolls_too(app_dir: Path, v1: FakeDocker) -> None:
    v1.starts = {"api": [Container("api-v2", "api", [HEALTHY], tag="v2"), Container("api-v1b", "api", [HEALTHY], tag="v1")]}
    fetch = Fetch(*[(503, 'HTTP 503: {"error": "db down"}')] * 3, (200, "HTTP 200: ok"))
    with pytest.raises(ReleaseError) as failure:
        deploy(app_dir, v1, fetch, rolling=("api",), health_url="http://127.0.0.1/health", health_retries=3)
    assert str(failure.value) == (
        'release v2 failed and was rolled back: http://127.0.0.1/health is not healthy: HTTP 503: {"error": "db down"}\n'
        "Release v1 serves again."
    )
    assert len(fetch.asked) == 4  # three tries of v2, then v1 answered
    assert [v for v in v1.verbs() if "--scale" in v] == ["compose up --detach --no-recreate --scale api=2 api"] * 2
    assert [c.id for c in v1.running] == ["worker-v1", "api-v1b"]


def test_a_failing_restore_says_both_failures(app_dir: Path, v1: FakeDocker) -> None:
    v1.starts = {"api": [Container("api-v2", "api", [HEALTHY], tag="v2"), Container("api-v1b", "api", [HEALTHY], tag="v1")]}
    with pytest.raises(ReleaseError) as failure:
        deploy(app_dir, v1, Fetch((500, "HTTP 500: broken")), rolling=("api",), health_url="http://127.0.0.1/", health_retries=1)
    assert str(failure.value) == (
        "release v2 failed: http://127.0.0.1/ is not healthy: HTTP 500: broken\n"
        "Restoring v1 failed too: http://127.0.0.1/ is not healthy: HTTP 500: broken"
    )


def test_a_first_release_that_fails_says_there_is_nothing_to_restore(app_dir: Path) -> None:
    docker = FakeDocker(starts={"api": [Container("api1", "api", [("restarting", None, 1, 1)], logs="no config\n")]})
    with pytest.raises(ReleaseError) as failure:
        deploy(app_dir, docker)
    assert str(failure.value) == (
        "release v2 failed: service api: container api1 restarted with exit code 1; its last 20 log lines:\nno config\n"
        "There is no previous release to restore."
    )
    assert not (app_dir / "releases" / "current").exists()


def test_restarts_from_before_the_release_are_not_a_failure(app_dir: Path, v1: FakeDocker) -> None:
    v1.running[1] = Container("worker-v1", "worker", [("running", None, 0, 4)])  # restarted 4 times last week
    v1.starts = {"api": [Container("api-v2", "api", [HEALTHY], tag="v2")]}
    deploy(app_dir, v1, rolling=("api",))
    assert serving(app_dir) == "v2"


def test_a_failed_pull_changes_nothing(app_dir: Path, v1: FakeDocker) -> None:
    v1.fail = {"pull": "manifest for api:v2 not found"}
    with pytest.raises(ReleaseError) as failure:
        deploy(app_dir, v1)
    assert str(failure.value) == "release v2: pulling images failed; the previous release still serves\nmanifest for api:v2 not found"
    assert serving(app_dir) == "v1"
    assert outcomes(app_dir)[-1] == ("v2", "pull-failed")
    assert not any(v.startswith("compose up") for v in v1.verbs())


def test_a_failing_pre_deploy_hook_changes_nothing(app_dir: Path, v1: FakeDocker) -> None:
    (app_dir / "incoming" / "compose.yaml").write_text(COMPOSE + "# v2\n")
    with pytest.raises(ReleaseError) as failure:
        deploy(app_dir, v1, pre_deploy=("echo migrating; exit 3",))
    assert (
        str(failure.value)
        == "release v2: pre-deploy hook failed: echo migrating; exit 3; nothing was changed, the previous release still serves"
    )
    assert (app_dir / "compose.yaml").read_text() == COMPOSE  # the live directory still has v1's
    assert outcomes(app_dir)[-1] == ("v2", "pre-deploy-failed")


def test_pre_deploy_hooks_run_in_the_new_release_with_its_env_and_tag(app_dir: Path) -> None:
    hook = 'printf "%s %s %s\\n" "$PWD" "$IMAGE_TAG" "$(cat .env)" > ../../hook'
    deploy(app_dir, FakeDocker(), pre_deploy=(hook,), hostnames="shop.test")
    where, tag, env = (app_dir / "hook").read_text().split()
    assert Path(where).parent == app_dir / "releases" and where.endswith("-v2")
    assert (tag, env) == ("v2", "SECRET_KEY='s1'")


def test_a_failing_post_deploy_hook_rolls_back(app_dir: Path, v1: FakeDocker) -> None:
    v1.starts = {"api": [Container("api-v2", "api", [HEALTHY], tag="v2"), Container("api-v1b", "api", [HEALTHY], tag="v1")]}
    with pytest.raises(
        ReleaseError, match=r"release v2 failed and was rolled back: post-deploy hook failed: exit 4\nRelease v1 serves again."
    ):
        deploy(app_dir, v1, rolling=("api",), post_deploy=("exit 4",))
    assert serving(app_dir) == "v1"
    assert [c.id for c in v1.running] == ["worker-v1", "api-v1b"]  # api rolled back to v1 (v2 was never live); worker untouched


def test_compose_and_hooks_see_the_stacks_variables(app_dir: Path) -> None:
    names = "COMPOSE_FILE|COMPOSE_PROJECT_NAME|IMAGE_TAG|DROPSHIP_(HOSTNAMES|DATA_DIR|REGISTRY|ACME_CA|ACME_CA_ROOT|TLS_MODE|TLS_DIR)"
    hook = f'env | grep -E "^({names})=" | sort > ../../seen'
    deploy(
        app_dir,
        FakeDocker(),
        pre_deploy=(hook,),
        hostnames="a.example.com b.example.com",
        data_dir="/mnt/data",
        tls_dir=str(app_dir / "tls"),
    )
    assert (app_dir / "seen").read_text().splitlines() == [
        "COMPOSE_FILE=compose.yaml",
        "COMPOSE_PROJECT_NAME=shop",
        "DROPSHIP_ACME_CA=",
        "DROPSHIP_ACME_CA_ROOT=",
        "DROPSHIP_DATA_DIR=/mnt/data",
        "DROPSHIP_HOSTNAMES=a.example.com b.example.com",
        "DROPSHIP_REGISTRY=",
        f"DROPSHIP_TLS_DIR={app_dir}/tls",
        "DROPSHIP_TLS_MODE=acme",
        "IMAGE_TAG=v2",
    ]
    assert (app_dir / "tls").stat().st_mode & 0o777 == 0o700
    assert "DROPSHIP_HOSTNAMES='a.example.com b.example.com'\n" in (app_dir / "release.env").read_text()


def test_old_releases_and_their_images_are_pruned(app_dir: Path) -> None:
    docker = FakeDocker(images={f"v{n}": [f"api:v{n}", "db:17"] for n in range(1, 5)})
    for n in range(1, 5):
        deploy(app_dir, docker, tag=f"v{n}", keep=2)
    kept = sorted(p.name.rsplit("-", 1)[1] for p in (app_dir / "releases").iterdir() if p.name != "current")
    assert kept == ["v3", "v4"]
    assert [v for v in docker.verbs() if v.startswith("image rm")] == ["image rm api:v1", "image rm api:v2"]
    assert docker.verbs()[-1] == "image prune --force"


def test_changed_live_files_are_replaced_whole_and_files_gone_from_the_upload_go(app_dir: Path) -> None:
    incoming = app_dir / "incoming"
    (incoming / "site").mkdir()
    (incoming / "site" / "index.html").write_text("v1\n")
    (incoming / "site" / "same.html").write_text("same\n")
    (incoming / "site" / "old.html").write_text("old\n")
    (incoming / "stale.conf").write_text("x\n")
    deploy(app_dir, FakeDocker(), tag="v1", uploads=("site", "stale.conf"))
    inodes = {name: (app_dir / "site" / name).stat().st_ino for name in ("index.html", "same.html")}
    (incoming / "site" / "old.html").unlink()
    (incoming / "site" / "index.html").write_text("v2\n")
    deploy(app_dir, FakeDocker(), uploads=("site",))
    assert (app_dir / "site" / "index.html").read_text() == "v2\n"
    # A new file renamed over the old one (a directory's bind mount sees it); an unchanged one is not touched.
    assert (app_dir / "site" / "index.html").stat().st_ino != inodes["index.html"]
    assert (app_dir / "site" / "same.html").stat().st_ino == inodes["same.html"]
    assert sorted(p.name for p in (app_dir / "site").iterdir()) == ["index.html", "same.html"]  # nothing left beside
    assert not (app_dir / "stale.conf").exists()


def test_a_file_a_container_bind_mounts_on_its_own_is_rewritten_in_place(app_dir: Path) -> None:
    incoming = app_dir / "incoming"
    (incoming / "Caddyfile").write_text(":80 {\n}\n")
    deploy(app_dir, FakeDocker(), tag="v1", uploads=("Caddyfile",))
    inode = (app_dir / "Caddyfile").stat().st_ino
    (incoming / "Caddyfile").write_text(":80 {\n  respond ok\n}\n")
    proxy = Container("proxy1", "proxy", [HEALTHY], mounts=(str(app_dir / "Caddyfile"),))
    deploy(app_dir, FakeDocker(running=[proxy]), uploads=("Caddyfile",))
    assert (app_dir / "Caddyfile").read_text() == ":80 {\n  respond ok\n}\n"
    assert (app_dir / "Caddyfile").stat().st_ino == inode  # such a mount keeps the inode it started with


def test_a_held_lock_names_its_holder_and_gives_up(app_dir: Path) -> None:
    (app_dir / ".deploy.lock.holder").write_text("ci from 203.0.113.9, pid 1, since 2026-12-01T08:00:00Z\n")
    with open(app_dir / ".deploy.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(ReleaseError) as failure, Lock(app_dir, timeout=0.3):
            pass
    assert str(failure.value) == (
        f"another deploy holds the lock of {app_dir}: ci from 203.0.113.9, pid 1, since 2026-12-01T08:00:00Z; gave up after 0.3s"
    )
    with Lock(app_dir, timeout=0.3):
        assert f", pid {os.getpid()}, since " in (app_dir / ".deploy.lock.holder").read_text()


def test_earlier_host_code_beside_this_one_is_removed(tmp_path: Path) -> None:
    for name in ("host-aaaa", "host-bbbb", "keep-me"):
        (tmp_path / name).mkdir()
    prune_code(tmp_path / "host-bbbb")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["host-bbbb", "keep-me"]


def test_a_failure_rolling_the_second_service_rolls_back_only_the_first(app_dir: Path, v1: FakeDocker) -> None:
    v1.starts = {
        "api": [Container("api-v2", "api", [HEALTHY], tag="v2"), Container("api-v1b", "api", [HEALTHY])],
        "worker": [Container("worker-v2", "worker", [("exited", None, 1, 0)], tag="v2", logs="bad\n")],
    }
    with pytest.raises(ReleaseError, match="rolled back: service worker: container worker-v2 exited with exit code 1"):
        deploy(app_dir, v1, rolling=("api", "worker"))
    scaled = [v for v in v1.verbs() if "--scale" in v]
    assert scaled == [
        "compose up --detach --no-recreate --scale api=2 api",
        "compose up --detach --no-recreate --scale worker=2 worker",
        "compose up --detach --no-recreate --scale api=2 api",
    ]
    assert sorted(c.id for c in v1.running) == ["api-v1b", "worker-v1"]


def test_the_health_check_stops_at_the_timeout_before_its_retries_run_out(app_dir: Path) -> None:
    fetch = Fetch((503, "HTTP 503: starting"))
    with pytest.raises(ReleaseError, match="is not healthy: HTTP 503: starting"):
        deploy(app_dir, FakeDocker(), fetch, health_url="http://127.0.0.1/health", health_timeout=5, health_retries=30)
    assert len(fetch.asked) == 4  # at 0, 2, 4 and 6 s: then the 5 s were up


def test_a_lock_released_while_waiting_is_taken(app_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    held = open(app_dir / ".deploy.lock", "a")  # noqa: SIM115 (released by the timer)
    fcntl.flock(held, fcntl.LOCK_EX)
    threading.Timer(0.3, held.close).start()
    with Lock(app_dir, timeout=10):
        assert "waiting up to 10s for the deploy lock, held by unknown" in capsys.readouterr().out


def test_pruning_survives_a_release_whose_compose_files_no_longer_parse(app_dir: Path) -> None:
    docker = FakeDocker(images={"v1": ["api:v1"], "v2": ["api:v2"]})
    deploy(app_dir, docker, tag="v1", keep=1)
    docker.fail = {"config": "services.api.image: invalid reference format"}
    deploy(app_dir, docker, tag="v2", keep=1)
    assert [p.name.rsplit("-", 1)[1] for p in (app_dir / "releases").iterdir() if p.name != "current"] == ["v2"]
    assert not any(v.startswith("image rm") for v in docker.verbs())  # what it used is unknown: kept


def test_a_hook_that_writes_a_long_unfinished_line_and_floods_stderr_does_not_stall(
    app_dir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    hook = "python3 -c \"import sys; sys.stdout.write('o' * 70000); sys.stdout.flush(); sys.stderr.write(('e' * 99 + chr(10)) * 3000)\""
    run_hooks("pre-deploy", app_dir, [hook], dict(os.environ))
    out, err = capfd.readouterr()
    assert out.splitlines()[1:] == ["o" * 16384] * 4 + ["o" * (70000 - 4 * 16384)]
    assert err.splitlines() == ["e" * 99] * 3000


def test_a_rollback_rolls_a_service_changed_by_hand_since_the_last_release(app_dir: Path, v1: FakeDocker) -> None:
    # `docker compose up -d` by hand replaced api's container since v1 went live: it is not v1's any more.
    v1.running[0] = Container("api-by-hand", "api", [HEALTHY], tag="v0")
    v1.starts = {"api": [Container("api-v2", "api", [("exited", None, 3, 0)], tag="v2"), Container("api-v1b", "api", [HEALTHY])]}
    with pytest.raises(ReleaseError, match="rolled back: service api: container api-v2 exited with exit code 3"):
        deploy(app_dir, v1, rolling=("api", "worker"))
    assert [v for v in v1.verbs() if "--scale" in v] == ["compose up --detach --no-recreate --scale api=2 api"] * 2
    assert sorted(c.id for c in v1.running) == ["api-v1b", "worker-v1"]


def test_a_hook_that_runs_past_app_hook_timeout_is_stopped_with_its_children_and_fails_the_release(
    app_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The hook and its child (a `docker compose run`, say) ignore SIGTERM: the whole group gets SIGKILL after the grace.
    monkeypatch.setattr(release, "HOOK_STOP_GRACE", 1.0)
    hook = "trap '' TERM; sh -c 'trap \"\" TERM; echo $$ > child.new; mv child.new child; exec sleep 300' & until [ -e child ]; do sleep 0.05; done; wait"
    started = time.monotonic()
    with pytest.raises(ReleaseError) as failure:
        run_hooks("pre-deploy", app_dir, [hook], dict(os.environ), timeout=5)
    assert str(failure.value) == f"pre-deploy hook did not finish in 5s (app.hookTimeout) and was stopped: {hook}"
    assert time.monotonic() - started < 5 + 1 + 5
    child = Path("/proc", (app_dir / "child").read_text().strip())
    # SIGKILL reaches another process asynchronously: gone (or a zombie) within moments, not at once.
    wait_until(lambda: not child.exists() or child.joinpath("stat").read_text().split()[2] == "Z", "the hook's child to die", 10)


def test_a_hook_past_its_bound_fails_the_release_and_frees_the_lock(app_dir: Path, v1: FakeDocker) -> None:
    with pytest.raises(ReleaseError, match=r"pre-deploy hook did not finish in 1s \(app.hookTimeout\) and was stopped: sleep 30; nothing"):
        deploy(app_dir, v1, pre_deploy=("sleep 30",), hook_timeout=1)
    assert outcomes(app_dir)[-1] == ("v2", "pre-deploy-failed")
    assert serving(app_dir) == "v1"
    with Lock(app_dir, timeout=0):
        pass


def test_a_registry_that_does_not_answer_fails_the_pull_at_app_pull_timeout(app_dir: Path, v1: FakeDocker) -> None:
    v1.hang = {"pull"}
    with pytest.raises(ReleaseError) as failure:
        deploy(app_dir, v1, pull_timeout=45)
    assert str(failure.value) == (
        "release v2: pulling images did not finish in 45s (app.pullTimeout): is the registry answering? The previous release still serves"
    )
    assert v1.timeouts["compose pull --policy missing --quiet"] == 45
    assert outcomes(app_dir)[-1] == ("v2", "pull-timed-out")
    assert serving(app_dir) == "v1"
    assert not any(v.startswith("compose up") for v in v1.verbs())
    with Lock(app_dir, timeout=0):
        pass


def test_every_other_docker_call_has_the_default_bound(app_dir: Path, v1: FakeDocker) -> None:
    v1.starts = {"api": [Container("api-v2", "api", [HEALTHY], tag="v2")]}
    deploy(app_dir, v1, rolling=("api",))
    assert {verb: bound for verb, bound in v1.timeouts.items() if bound != DOCKER_TIMEOUT} == {}
    assert DOCKER_TIMEOUT == 600


def moving(app_dir: Path) -> FakeDocker:
    """`main`, a moving tag (app.pullPolicy always), deployed and serving, its image sha256:good."""
    docker = FakeDocker(
        starts={"api": [Container("api-good", "api", [HEALTHY], tag="main")]},
        images={"main": ["api:main"]},
        pulled={"api:main": "sha256:good"},
    )
    deploy(app_dir, docker, tag="main", pull="always", rolling=("api",))
    return docker


def test_each_release_records_the_images_it_ran_and_keeps_them_under_a_tag_of_its_own(app_dir: Path) -> None:
    docker = moving(app_dir)
    current = (app_dir / "releases" / "current").resolve()
    assert json.loads((current / "IMAGES.json").read_text()) == {"api:main": "sha256:good"}
    assert docker.image_ids[f"dropship-kept/shop:{current.name}-0"] == "sha256:good"
    assert not (app_dir / "IMAGES.json").exists()  # the release's record, not a live file


def test_a_rollback_runs_the_images_the_previous_release_ran_though_its_tag_has_moved(app_dir: Path) -> None:
    docker = moving(app_dir)
    docker.pulled = {"api:main": "sha256:bad"}  # the registry's main is a broken build now
    docker.starts = {"api": [Container("api-bad", "api", [("exited", None, 3, 0)], tag="main"), Container("api-back", "api", [HEALTHY])]}
    docker.calls.clear()
    with pytest.raises(ReleaseError, match="rolled back: service api: container api-bad exited with exit code 3"):
        deploy(app_dir, docker, tag="main", pull="always", rolling=("api",))
    assert docker.image_ids["api:main"] == "sha256:good"
    verbs = docker.verbs()
    # Before the rollback's `up`, which would otherwise recreate api from main's broken image.
    assert verbs.index("tag sha256:good api:main") < max(i for i, v in enumerate(verbs) if v.startswith("compose up"))
    assert [c.id for c in docker.running] == ["api-good"]


def test_a_rollback_leaves_a_tag_that_still_names_its_image(app_dir: Path) -> None:
    docker = moving(app_dir)
    docker.starts = {"api": [Container("api-bad", "api", [("exited", None, 3, 0)], tag="main"), Container("api-back", "api", [HEALTHY])]}
    docker.calls.clear()
    with pytest.raises(ReleaseError, match="rolled back"):
        deploy(app_dir, docker, tag="main", pull="always", rolling=("api",))
    assert not any(v.startswith("tag ") and v.endswith(" api:main") for v in docker.verbs())


def test_pruned_releases_lose_their_kept_tags(app_dir: Path) -> None:
    docker = moving(app_dir)
    for build in ("b2", "b3", "b4"):
        docker.pulled = {"api:main": f"sha256:{build}"}
        docker.starts = {"api": [Container(f"api-{build}", "api", [HEALTHY], tag="main")]}
        deploy(app_dir, docker, tag="main", pull="always", rolling=("api",), keep=2)
    kept = sorted(v for r, v in docker.image_ids.items() if r.startswith("dropship-kept/"))
    assert kept == ["sha256:b3", "sha256:b4"]


def test_a_failed_release_leaves_no_image_only_it_pulled(app_dir: Path) -> None:
    docker = FakeDocker(starts={"api": [Container("api-v1", "api", [HEALTHY], tag="v1")]}, images={"v1": ["api:v1", "redis:7"]})
    deploy(app_dir, docker, tag="v1", rolling=("api",))
    docker.images["v2"] = ["api:v2", "redis:7", "search:2"]
    docker.starts = {"api": [Container("api-v2", "api", [("exited", None, 3, 0)], tag="v2")]}
    docker.calls.clear()
    with pytest.raises(ReleaseError, match="rolled back"):
        deploy(app_dir, docker, tag="v2", rolling=("api",))
    verbs = docker.verbs()
    assert [v for v in verbs if v.startswith("image rm")] == ["image rm api:v2", "image rm search:2"]
    assert verbs.index("image rm api:v2") > max(i for i, v in enumerate(verbs) if v.startswith("compose up"))
    docker.calls.clear()
    with pytest.raises(ReleaseError, match="pulling images failed"):
        docker.fail = {"pull": "manifest unknown"}
        deploy(app_dir, docker, tag="v2", rolling=("api",))
    assert [v for v in docker.verbs() if v.startswith("image rm")] == ["image rm api:v2", "image rm search:2"]


def test_pull_policy_always_pulls_every_image(app_dir: Path) -> None:
    docker = FakeDocker()
    deploy(app_dir, docker, tag="main", pull="always")
    assert "compose pull --policy always --quiet" in docker.verbs()
    deploy(app_dir, docker, tag="v3")
    assert docker.verbs().count("compose pull --policy missing --quiet") == 1


class RoutedDocker(FakeDocker):
    """The same with dropship's edge running: compose's config of the app, the edge's admin API and reload, and
    each site file the release writes into the edge."""

    sites: list[str]

    def __call__(self, args: Sequence[str], timeout: float = 600) -> str:
        match list(args):
            case ["compose", *_, "config", "--format", "json"]:
                return '{"services": {"api": {"ports": [{"target": 8000, "published": "8000"}]}}}'
            case ["network", "ls", *_]:
                return "edge-network\n"
            case ["ps", "--all", "--filter", "name=^dropship-edge$", *_]:
                return "dropship-edge\n"
            case ["inspect", "dropship-edge"]:
                return '[{"Config": {"Image": "caddy:2.11.9-alpine"}, "State": {"Status": "running"}}]'
            case ["exec", "dropship-edge", *_]:
                return "[]"
        return super().__call__(args)

    def run_input(self, args: Sequence[str], data: bytes) -> str:
        self.sites.append(data.decode())
        return ""


def test_a_rollback_on_one_server_restores_the_previous_releases_routes_not_the_failed_ones(app_dir: Path) -> None:
    from edge import Route

    docker = RoutedDocker(starts={"api": [Container("api-v1", "api", [HEALTHY], tag="v1")]})
    docker.sites = []
    v1 = (Route.parse("/* api:8000 /health"),)
    v2 = (Route.parse("/admin/* api:8000"), *v1)

    def release(tag: str, routes: tuple[Route, ...], fetch: Fetch | None = None) -> None:
        options = Options(
            dir=app_dir,
            project="shop",
            tag=tag,
            compose_files=("compose.yaml",),
            routes=routes,
            edge_image="caddy:2.11.9-alpine",
            health_url="http://127.0.0.1/",
            health_retries=2,
        )
        clock = Clock()
        probe = lambda address, port, path: None  # noqa: E731 (every container answers its route)
        Deployer(
            options, run=docker, run_input=docker.run_input, fetch=fetch or Fetch(), probe=probe, clock=clock, sleep=clock.sleep
        ).deploy(password="")

    release("v1", v1)
    v1_site = docker.sites[-1]
    docker.starts = {"api": [Container("api-v2", "api", [HEALTHY], tag="v2"), Container("api-v1b", "api", [HEALTHY], tag="v1")]}
    with pytest.raises(ReleaseError, match="rolled back"):
        release("v2", v2, Fetch((503, "HTTP 503: down"), (503, "HTTP 503: down"), (200, "HTTP 200: ok")))
    assert any("handle /admin/*" in site for site in docker.sites)  # v2 was switched to, then failed its health URL
    assert docker.sites[-1] == v1_site.replace("shop-api-v1", "shop-api-v1b")  # v1's routes again, to v1's new container
    assert serving(app_dir) == "v1"
