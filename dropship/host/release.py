"""Deploys one release of the compose app, health-gated, and restores the previous one when it fails.

Runs on the server as the deploy user: `python3 <app>/.dropship/host-<hash>/release.py --dir ...`
(standard library only; `pulumi up` uploads this directory under a content hash). Layout under DIR:

    incoming/         what `pulumi up` uploaded, each at its path: compose files, extra files, .env
    releases/ID/      one immutable snapshot per release (files + .env + TAG + SERVING.json, the
                      settings it served with: a rollback restores those)
    releases/current  -> the release that serves
    ./                the live copy compose runs from (a stable path: bind mounts never move)
    releases.log      one line per attempt: time, id, tag, outcome
    RELEASE           the tag that serves
    release.env       the variables compose saw (below), for running compose by hand

Compose and the hooks see IMAGE_TAG, COMPOSE_PROJECT_NAME, COMPOSE_FILE and the DROPSHIP_*
variables (README: "What the app receives"); each is empty when not set.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import pwd
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import limits
from edge import CONTAINER as EDGE_CONTAINER
from edge import STACKS, Edge, Route, Site
from health import check_url
from rollout import (
    DOCKER_TIMEOUT,
    PROJECT_LABEL,
    CommandError,
    Compose,
    NotReadyError,
    Run,
    TimedOutError,
    Waiter,
    bounded,
    rollout,
    run_docker,
)
from routed import OVERRIDE, Switch, override, probe
from stack import EDGE_SERVICE, EdgeService, StackError, hook_compose_file, render

MAX_LINE_BYTES = 16384
"""pulumi-command reads output line by line and hangs on a line of 64 KiB or more: hooks' lines are folded."""


IMAGES_FILE = "IMAGES.json"
"""In a release: each image reference it ran, with the ID of the image it ran (a rollback runs those IDs)."""
KEPT_REPOSITORY = "dropship-kept"
"""Tags of dropship's own on the images of kept releases (`dropship-kept/<project>:<release id>-<n>`), so that
`docker image prune` leaves them when a moving tag has gone on to another image."""
RELEASE_ONLY = frozenset({"TAG", "SERVING.json", ".env", "stack.json", "stack-first.json", "hooks-compose.json", IMAGES_FILE})
"""Files of a release's snapshot that are not the app's: the live copy has none of them (the rendered
stack files hold the .env's values, and stay in the snapshot, mode 600)."""


class ReleaseError(Exception):
    """Printed as dropship's message, and the release exits 1."""


def log(message: str) -> None:
    print(f"dropship: {message}", flush=True)


@dataclass(frozen=True, kw_only=True)
class Options:
    dir: Path
    project: str
    tag: str
    compose_files: tuple[str, ...]
    uploads: tuple[str, ...] = ()
    health_url: str | None = None
    health_timeout: float = 60
    health_retries: int = 30
    rolling: tuple[str, ...] = ()
    settle: float = 2
    pre_deploy: tuple[str, ...] = ()
    post_deploy: tuple[str, ...] = ()
    registry: str = ""
    registry_user: str = ""
    keep: int = 3
    pull: str = "missing"
    lock_timeout: float = 600
    hook_timeout: float = 600
    """Seconds each pre- or post-deploy hook may run (app.hookTimeout)."""
    pull_timeout: float = 600
    """Seconds the registry login and the pull of the release's images may take (app.pullTimeout)."""
    hostnames: str = ""
    data_dir: str = ""
    acme_ca: str = ""
    acme_ca_root: str = ""
    tls_mode: str = "acme"
    tls_dir: str = ""
    swarm_replicas: int = 0
    """Above 0: a Swarm's release (`docker stack deploy`), each rolling service with this many replicas."""
    routes: tuple[Route, ...] = ()
    """edge.routes: with any, dropship's edge serves the stack and switches its routed services."""
    drain_seconds: float = 30
    edge_image: str = ""
    maintenance: bool = False
    cpus: float = 0
    """Above 0 (with `memory`): a preview's caps on each container."""
    memory: str = ""

    @property
    def files(self) -> tuple[str, ...]:
        """The compose files, then dropship's overrides: the edge's when the stack is routed, a preview's caps."""
        return (
            *self.compose_files,
            *((OVERRIDE,) if self.routes and not self.swarm_replicas else ()),
            *((limits.OVERRIDE,) if self.capped else ()),
        )

    @property
    def capped(self) -> bool:
        return self.cpus > 0 and bool(self.memory)

    @property
    def routed(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.service for r in self.routes))

    def site(self, *, swarm: bool = False) -> Site:
        return Site(
            swarm=swarm,
            project=self.project,
            hostnames=tuple(self.hostnames.split()),
            routes=self.routes,
            tls_mode=self.tls_mode,
            acme_ca=self.acme_ca,
            acme_ca_root=bool(self.acme_ca_root),
            maintenance=self.maintenance,
        )

    def serving(self) -> dict[str, Any]:
        """The settings that shape how a release serves, kept in its snapshot (SERVING.json): a rollback
        restores the previous release with its own routes, rolling services and compose files, not the failed one's."""
        return {
            "compose_files": list(self.compose_files),
            "rolling": list(self.rolling),
            "routes": [str(route) for route in self.routes],
            "maintenance": self.maintenance,
            "drain_seconds": self.drain_seconds,
            "cpus": self.cpus,
            "memory": self.memory,
        }

    def serving_as(self, saved: Mapping[str, Any]) -> Options:
        """These options with a release's SERVING.json."""
        return replace(
            self,
            compose_files=tuple(saved["compose_files"]),
            rolling=tuple(saved["rolling"]),
            routes=tuple(Route.parse(line) for line in saved["routes"]),
            maintenance=bool(saved["maintenance"]),
            drain_seconds=float(saved["drain_seconds"]),
            cpus=float(saved["cpus"]),
            memory=str(saved["memory"]),
        )

    def environment(self, tag: str) -> dict[str, str]:
        return {
            "COMPOSE_PROJECT_NAME": self.project,
            "COMPOSE_FILE": ":".join(self.files),
            "IMAGE_TAG": tag,
            "DROPSHIP_HOSTNAMES": self.hostnames,
            "DROPSHIP_DATA_DIR": self.data_dir,
            "DROPSHIP_REGISTRY": self.registry,
            "DROPSHIP_ACME_CA": self.acme_ca,
            "DROPSHIP_ACME_CA_ROOT": self.acme_ca_root,
            "DROPSHIP_TLS_MODE": self.tls_mode,
            "DROPSHIP_TLS_DIR": self.tls_dir,
        }


def parse(argv: Sequence[str]) -> Options:
    parser = argparse.ArgumentParser(prog="release.py", description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--dir", type=Path, required=True)
    add("--project", required=True)
    add("--tag", required=True)
    add("--compose-file", action="append", dest="compose_files", required=True)
    add("--upload", action="append", dest="uploads", default=[])
    add("--health-url")
    add("--health-timeout", type=float, default=60)
    add("--health-retries", type=int, default=30)
    add("--rolling", action="append", default=[])
    add("--settle", type=float, default=2, help="seconds between a rolled service's new containers being healthy and its old ones stopping")
    add("--pre-deploy", action="append", default=[])
    add("--post-deploy", action="append", default=[])
    add("--registry", default="")
    add("--registry-user", default="", help="its password comes on stdin")
    add("--pull", default="missing", choices=["missing", "always"], help="compose pull's --policy (app.pullPolicy)")
    add("--keep", type=int, default=3)
    add("--lock-timeout", type=float, default=600)
    add("--hook-timeout", type=float, default=600, help="seconds each hook may run (app.hookTimeout)")
    add("--pull-timeout", type=float, default=600, help="seconds for the registry login and the pull (app.pullTimeout)")
    add("--files-digest", help="unused: changes the command when a file changes")
    add("--hostnames", default="")
    add("--data-dir", default="")
    add("--acme-ca", default="")
    add("--acme-ca-root", default="")
    add("--tls-mode", default="acme", choices=["acme", "cloudflare-origin"])
    add("--tls-dir", default="")
    add("--swarm-replicas", type=int, default=0)
    add("--route", action="append", dest="routes", type=_route, default=[], help="PATH SERVICE:PORT [HEALTH_PATH] (edge.routes)")
    add("--drain-seconds", type=float, default=30)
    add("--edge-image", default="")
    add("--maintenance", action="store_true")
    add("--cpus", type=float, default=0, help="a preview's caps on each container (preview.cpus)")
    add("--memory", default="", help="preview.memory, e.g. 512m")
    args = vars(parser.parse_args(argv))
    args.pop("files_digest")
    for name in ("compose_files", "uploads", "rolling", "pre_deploy", "post_deploy", "routes"):
        args[name] = tuple(args[name])
    return Options(**args)


def _route(line: str) -> Route:
    try:
        return Route.parse(line)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


class Lock:
    """The deploy lock: two `pulumi up`s against one host never interleave. Its holder is named in a file."""

    def __init__(self, directory: Path, timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = directory / ".deploy.lock"
        self.holder = directory / ".deploy.lock.holder"
        self.timeout = timeout
        self.clock = clock

    def __enter__(self) -> Lock:
        self.file = open(self.path, "a")  # held until __exit__
        if not self._try():
            log(f"waiting up to {self.timeout:g}s for the deploy lock, held by {self._holder()}")
            deadline = self.clock() + self.timeout
            while not self._try():
                if self.clock() >= deadline:
                    raise ReleaseError(
                        f"another deploy holds the lock of {self.path.parent}: {self._holder()}; gave up after {self.timeout:g}s"
                    )
                time.sleep(0.2)
        client = os.environ.get("SSH_CLIENT", "local").split(" ")[0]
        self.holder.write_text(f"{_user()} from {client}, pid {os.getpid()}, since {_utc(time.time())}\n")
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()

    def _try(self) -> bool:
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _holder(self) -> str:
        try:
            return self.holder.read_text().strip() or "unknown"
        except FileNotFoundError:
            return "unknown"


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _user() -> str:
    return pwd.getpwuid(os.getuid()).pw_name


@dataclass
class Releases:
    """The snapshots under DIR/releases and the live copy in DIR."""

    options: Options
    clock: Callable[[], float] = time.time

    @property
    def root(self) -> Path:
        return self.options.dir / "releases"

    def current(self) -> Path | None:
        link = self.root / "current"
        return link.resolve() if link.exists() else None

    def snapshot(self, release_id: str) -> Path:
        """What this release uploads, and nothing an earlier one left in incoming/."""
        release = self.root / release_id
        shutil.rmtree(release, ignore_errors=True)
        release.mkdir(mode=0o700, parents=True)
        incoming = self.options.dir / "incoming"
        for path in (*self.options.compose_files, *self.options.uploads, ".env"):
            source = incoming / path
            if not source.exists():
                continue
            (release / path).parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, release / path, symlinks=True)
            else:
                shutil.copy2(source, release / path)
        (release / "TAG").write_text(f"{self.options.tag}\n")
        (release / "SERVING.json").write_text(json.dumps(self.options.serving(), sort_keys=True) + "\n")
        return release

    def options_of(self, release: Path) -> Options:
        """The options a kept release served with (those of this one for a release made before SERVING.json)."""
        try:
            saved = json.loads((release / "SERVING.json").read_text())
        except FileNotFoundError:
            return replace(self.options, tag=self.tag_of(release))
        return replace(self.options.serving_as(saved), tag=self.tag_of(release))

    def make_live(self, release: Path, in_place: frozenset[str] | None = None) -> None:
        """Copies a release's files into the live directory and removes those the previous one had and
        this one has not (listed in .live-files). A changed file is written beside and renamed over the old
        one, so that a crash never leaves it half-written; but a file a running container bind-mounts on its
        own (`in_place`; None: every file) is rewritten in place, as such a mount keeps the inode it started
        with. Unchanged files are not touched. .env is replaced atomically and stays mode 600."""
        live = self.options.dir
        names = sorted(name for p in release.rglob("*") if p.is_file() and (name := str(p.relative_to(release))) not in RELEASE_ONLY)
        listing = live / ".live-files"
        before = set(listing.read_text().splitlines()) if listing.exists() else set()
        for name in sorted(before - set(names)):
            (live / name).unlink(missing_ok=True)
        for name in names:
            source, target = release / name, live / name
            content = source.read_bytes()
            if target.is_file() and not target.is_symlink() and target.read_bytes() == content:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if in_place is None or name in in_place:
                with open(target, "wb") as rewritten:
                    rewritten.write(content)
            else:
                _replace(source, target)
        fresh = live / ".live-files.new"
        fresh.write_text("".join(f"{name}\n" for name in names))
        os.replace(fresh, listing)
        env = release / ".env"
        if env.exists():
            fresh = live / ".env.new"
            fresh.unlink(missing_ok=True)
            fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as written:
                written.write(env.read_bytes())
            os.replace(fresh, live / ".env")

    def write_environment(self, environment: dict[str, str]) -> None:
        """release.env beside the live files: what compose saw, for `docker compose --env-file .env
        --env-file release.env ...` by hand on the host. Names, paths and URLs only: no secret."""
        path = self.options.dir / "release.env"
        path.write_text("".join(f"{name}='{value}'\n" for name, value in sorted(environment.items())))

    def write_containers(self, containers: dict[str, list[str]]) -> None:
        """The rolling services' containers of the release that serves: a rollback rolls those that differ."""
        (self.options.dir / ".live-containers").write_text(json.dumps(containers, sort_keys=True) + "\n")

    def live_containers(self) -> dict[str, list[str]]:
        try:
            return dict(json.loads((self.options.dir / ".live-containers").read_text()))
        except (FileNotFoundError, ValueError):
            return {}

    def tag_of(self, release: Path) -> str:
        return (release / "TAG").read_text().strip()

    def record(self, release_id: str, outcome: str) -> None:
        with open(self.options.dir / "releases.log", "a") as releases_log:
            releases_log.write(f"{_utc(self.clock())} {release_id} {self.options.tag} {outcome}\n")

    def discard(self, release_id: str, outcome: str) -> None:
        """A failed release leaves its line in the log but no snapshot: kept releases are good ones."""
        shutil.rmtree(self.root / release_id, ignore_errors=True)
        self.record(release_id, outcome)


HOOK_STOP_GRACE = 10.0
"""Seconds a hook that ran out of time has between SIGTERM and SIGKILL (its whole process group)."""


def run_hooks(kind: str, directory: Path, hooks: Sequence[str], env: dict[str, str], timeout: float = 600) -> None:
    for hook in hooks:
        log(f"{kind} hook: {hook}")
        # A session of its own: on timeout the hook's children (a `docker compose run`) go with it.
        with subprocess.Popen(
            ["bash", "-c", hook], cwd=directory, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
        ) as process:
            assert process.stdout is not None and process.stderr is not None
            deadline = time.monotonic() + timeout
            try:
                if not _fold_both(process.stdout, process.stderr, deadline):
                    raise subprocess.TimeoutExpired(hook, timeout)
                code = process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _stop_group(process)
                raise ReleaseError(f"{kind} hook did not finish in {timeout:g}s (app.hookTimeout) and was stopped: {hook}") from None
        if code != 0:
            raise ReleaseError(f"{kind} hook failed: {hook}")


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    for signal_number, grace in ((signal.SIGTERM, HOOK_STOP_GRACE), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal_number)
        try:
            process.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue


def _fold_both(stdout: IO[bytes], stderr: IO[bytes], deadline: float) -> bool:
    """Copies a hook's stdout and stderr to ours as they come, each in lines of at most MAX_LINE_BYTES,
    until both end (True) or the deadline passes (False)."""
    targets = {stdout.fileno(): sys.stdout.buffer, stderr.fileno(): sys.stderr.buffer}
    pending = dict.fromkeys(targets, b"")
    with selectors.DefaultSelector() as selector:
        for fd in targets:
            selector.register(fd, selectors.EVENT_READ)
        while selector.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            for key, _ in selector.select(left):
                fd = int(key.fd)
                chunk = os.read(fd, 65536)
                if not chunk:
                    selector.unregister(fd)
                buffer = pending[fd] + chunk
                *lines, pending[fd] = buffer.split(b"\n")
                if not chunk and pending[fd]:
                    lines, pending[fd] = [*lines, pending[fd]], b""
                for line in lines:
                    for start in range(0, max(len(line), 1), MAX_LINE_BYTES):
                        targets[fd].write(line[start : start + MAX_LINE_BYTES] + b"\n")
                while len(pending[fd]) >= MAX_LINE_BYTES:
                    targets[fd].write(pending[fd][:MAX_LINE_BYTES] + b"\n")
                    pending[fd] = pending[fd][MAX_LINE_BYTES:]
                targets[fd].flush()
    return True


def run_docker_input(args: Sequence[str], data: bytes) -> str:
    """A docker command line with `data` on its stdin; its stdout."""
    return run_docker(args, DOCKER_TIMEOUT, data)


@dataclass
class Deployer:
    options: Options
    run: Run = run_docker
    run_input: Callable[[Sequence[str], bytes], str] = run_docker_input
    fetch: Callable[[str, Sequence[str]], tuple[int, str]] = check_url
    probe: Callable[[str, int, str | None], str | None] = probe
    """Asks a routed container its route's health path at its own address (routed.probe)."""
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    releases: Releases = field(init=False)
    edge_container: str = field(init=False, default=EDGE_CONTAINER)
    """The edge's container: on a Swarm, the stack's dropship-edge task on this server."""

    def __post_init__(self) -> None:
        self.releases = Releases(self.options)

    def compose(self, directory: Path) -> Compose:
        return Compose(self.options.project, str(directory), self.options.files, run=self.run)

    @property
    def edge(self) -> Edge:
        return Edge(self.run, self.run_input, container=self.edge_container)

    def write_overrides(self, release: Path, release_id: str) -> None:
        """dropship's compose overrides in the release (the edge's, a preview's caps), from compose's own config
        of the app's files; the edge running when the stack is routed."""
        options = self.options
        try:
            base = Compose(options.project, str(release), options.compose_files, run=self.run)
            config = json.loads(base("config", "--format", "json"))
            if options.routes:
                (release / OVERRIDE).write_text(override(config, options.routes))
            if options.capped:
                (release / limits.OVERRIDE).write_text(limits.override(config, cpus=options.cpus, memory=options.memory))
        except (CommandError, NotReadyError) as failure:
            self.discard(release_id, "invalid")
            raise ReleaseError(f"release {options.tag}: {failure}; nothing was changed, the previous release still serves") from None

    def start_edge(self) -> None:
        """The host's edge running (after a Swarm's stack, whose edge held the ports, has gone)."""
        log(self.edge.ensure(self.options.edge_image))
        self.wait_for_edge()

    def wait_for_edge(self) -> None:
        deadline = self.clock() + 60
        while not self.edge.admin_ready():
            if self.clock() >= deadline:
                logs = self.run(["logs", "--tail", "20", self.edge_container])
                raise ReleaseError(f"dropship's edge does not answer on its admin API after 60s; its last log lines:\n{logs}")
            self.sleep(0.5)

    def enter_maintenance(self) -> None:
        """edge.maintenance before the hooks: a migration of this release sees no request (no write)."""
        self.copy_tls_to_edge()
        self.edge.publish(self.options.project, self.options.site().render({}))
        log("edge.maintenance: every route answers 503 from now on, before the pre-deploy hooks")

    def copy_tls_to_edge(self) -> None:
        """The stack's ACME CA root and origin certificate, where its site file names them in the edge."""
        options = self.options
        stack = f"{STACKS}/{options.project}"
        if options.acme_ca_root:
            self.edge.write(f"{stack}/acme-ca-root.pem", Path(options.acme_ca_root).read_bytes())
        if options.tls_mode == "cloudflare-origin" and options.tls_dir:
            for name in ("cert.pem", "key.pem"):
                self.edge.write(f"{stack}/tls/{name}", (Path(options.tls_dir) / name).read_bytes(), mode="600")

    def deploy(self, password: str) -> None:
        options = self.options
        os.environ.update(options.environment(options.tag))
        if options.tls_dir:
            os.makedirs(options.tls_dir, mode=0o700, exist_ok=True)
            os.chmod(options.tls_dir, 0o700)
        releases = self.releases
        previous = releases.current()
        # To the microsecond: names sort as the releases came, and the same tag twice within a second is two releases.
        now = time.time()
        release_id = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime(now))}.{int(now % 1 * 1e6):06d}Z-{options.tag}"
        release = releases.snapshot(release_id)
        replacing = f", replacing {releases.tag_of(previous)}" if previous else ""
        log(f"release {options.tag} ({release_id}){replacing}")
        with tempfile.TemporaryDirectory(prefix="dropship-docker-") as docker_config:
            if options.registry:
                # The password serves this deploy's pulls only: a private docker config, removed when
                # the deploy ends, so that no credential stays on the host.
                os.environ["DOCKER_CONFIG"] = docker_config
                self._login(password, release_id)
            if (options.routes or options.capped) and not options.swarm_replicas:
                self.write_overrides(release, release_id)
            log("pulling images that are not here yet" if options.pull == "missing" else "pulling every image (app.pullPolicy always)")
            try:
                self.compose(release)("pull", "--policy", options.pull, "--quiet", timeout=options.pull_timeout)
            except TimedOutError:
                self.discard(release_id, "pull-timed-out")
                raise ReleaseError(
                    f"release {options.tag}: pulling images did not finish in {options.pull_timeout:g}s (app.pullTimeout): "
                    "is the registry answering? The previous release still serves"
                ) from None
            except CommandError as error:
                self.discard(release_id, "pull-failed")
                raise ReleaseError(
                    f"release {options.tag}: pulling images failed; the previous release still serves\n{error.stderr.strip()}"
                ) from None
            if options.swarm_replicas:
                SwarmRelease(self, release_id, release, previous).deploy()
                return
            # Before the hooks: their `docker compose run` needs compose's own network, which the stack's has the name of.
            self.leave_swarm()
            if options.routes:
                self.start_edge()
                if options.maintenance:
                    self.enter_maintenance()
            try:
                run_hooks("pre-deploy", release, options.pre_deploy, dict(os.environ), options.hook_timeout)
            except ReleaseError as failure:
                self.discard(release_id, "pre-deploy-failed")
                raise ReleaseError(f"release {options.tag}: {failure}; nothing was changed, the previous release still serves") from None
            releases.make_live(release, self.file_mounts())
            releases.write_environment(options.environment(options.tag))
            log(f"release {options.tag}: starting")
            try:
                started = self.start((*options.routed, *options.rolling))
                run_hooks("post-deploy", options.dir, options.post_deploy, dict(os.environ), options.hook_timeout)
            except (ReleaseError, NotReadyError, CommandError) as failure:
                unused = self.unused_images(releases.root / release_id)
                releases.discard(release_id, "rolled-back")
                try:
                    self.roll_back(str(failure), previous)
                finally:
                    self.remove_images(unused)  # once the previous release's containers run again
            releases.write_containers(started)
        self.go_live(release_id)

    def go_live(self, release_id: str) -> None:
        options, releases = self.options, self.releases
        link = releases.root / "current.new"
        link.unlink(missing_ok=True)
        link.symlink_to(release_id)
        link.replace(releases.root / "current")
        releases.record(release_id, "live")
        (options.dir / "RELEASE").write_text(f"{options.tag}\n")
        if not options.swarm_replicas:  # a Swarm's servers each pull their own
            self.record_images(releases.root / release_id)
        self.prune()
        log(f"release {options.tag} is live")

    def leave_swarm(self) -> None:
        """A stack that ran on a Swarm and now runs on one server: its services go, compose starts it.
        Its volumes are compose's (same names), and stay."""
        if not _swarm_services(self.run, self.options.project):
            return
        log(f"the app ran on a Swarm: removing its stack {self.options.project} first (the app stops until compose starts it)")
        self.run(["stack", "rm", self.options.project])
        _wait_until_stack_gone(self.run, self.options.project, self.clock, self.sleep)

    def _login(self, password: str, release_id: str) -> None:
        options = self.options
        log(f"registry login: {options.registry_user}@{options.registry}")
        try:
            _, stderr, code = bounded(
                ["docker", "login", options.registry, "--username", options.registry_user, "--password-stdin"],
                options.pull_timeout,
                password.encode(),
            )
        except TimedOutError:
            self.discard(release_id, "login-timed-out")
            raise ReleaseError(
                f"release {options.tag}: the registry login to {options.registry} did not finish in {options.pull_timeout:g}s "
                "(app.pullTimeout): is the registry answering? The previous release still serves"
            ) from None
        if code != 0:
            self.discard(release_id, "login-failed")
            raise ReleaseError(
                f"release {options.tag}: registry login to {options.registry} failed; the previous release still serves\n"
                f"{stderr.decode(errors='replace').strip()}"
            )

    def start(self, roll: Sequence[str]) -> dict[str, list[str]]:
        """Rolls the services of `roll` in order, then brings up the rest, then checks everything is healthy.
        Each step has app.healthTimeout of its own: a service that boots slowly takes none of the next one's.
        Returns the rolling and routed services' containers (recorded once the release is live)."""
        options = self.options
        compose = self.compose(options.dir)

        def deadline() -> float:
            return self.clock() + options.health_timeout

        existing = compose.containers()
        waiter = Waiter(compose, clock=self.clock, sleep=self.sleep, unhealthy_final=not options.routes)
        waiter.restarts = {c: s.restarts for c, s in compose.inspect(existing).items()}
        switch = None
        if options.routes:
            self.copy_tls_to_edge()
            switch = Switch(compose, waiter, self.edge, options.site(), drain=options.drain_seconds, check=self.probe)
            for service in (s for s in roll if s in options.routed):
                switch.roll(service, deadline())
                log(f"switched {service}: the edge sends its requests to {', '.join(switch.upstreams[service])}")
        for service in (s for s in roll if s not in options.routed):
            if rollout(compose, waiter, service, deadline=deadline(), settle=options.settle):
                log(f"rolled {service}: new containers healthy, old ones stopped")
        compose("up", "--detach", "--remove-orphans")
        up_deadline = deadline()
        waiter.until_ready(compose.containers(), up_deadline)
        if switch is not None:
            switch.upstreams = {s: switch.names(compose.containers(s)) for s in options.routed}
            switch.publish()
        self.check_health_unless_maintenance(up_deadline)
        return {s: compose.containers(s) for s in (*options.rolling, *options.routed)}

    def check_health_unless_maintenance(self, deadline: float) -> None:
        options = self.options
        if options.health_url and options.maintenance and options.routes:
            log(f"edge.maintenance: every route answers 503, so {options.health_url} is not asked (each routed container answered its own)")
        elif options.health_url:
            self.check_health(deadline)

    def check_health(self, deadline: float) -> None:
        options = self.options
        url = options.health_url
        assert url is not None
        log(f"health check: {url} (up to {options.health_retries} tries, {options.health_timeout:g}s)")
        answer = ""
        for _ in range(options.health_retries):
            code, answer = self.fetch(url, options.hostnames.split())
            if 200 <= code < 300:
                log(f"healthy: {url} answered {code}")
                return
            if self.clock() >= deadline:
                break
            self.sleep(2)
        raise ReleaseError(f"{url} is not healthy: {answer}")

    def roll_back(self, reason: str, previous: Path | None) -> None:
        tag = self.options.tag
        if previous is None:
            raise ReleaseError(f"release {tag} failed: {reason}\nThere is no previous release to restore.")
        previous_tag = self.releases.tag_of(previous)
        log(f"release {tag} failed: {reason}")
        log(f"restoring release {previous_tag}")
        # The previous release with its own settings: its routes, rolling services and compose files.
        restore = replace(self, options=self.releases.options_of(previous))
        restore.edge_container = self.edge_container
        os.environ.update(restore.options.environment(previous_tag))
        self.releases.make_live(previous, self.file_mounts())
        self.releases.write_environment(restore.options.environment(previous_tag))
        self.restore_images(previous)
        # Back the way it went: a rolling service runs the previous release's containers still (its
        # own rollout failed, or was not reached) or it rolls back, without downtime either way.
        compose = restore.compose(self.options.dir)
        live = self.releases.live_containers()
        services = (*restore.options.routed, *restore.options.rolling)
        changed = [s for s in services if sorted(compose.containers(s)) != sorted(live.get(s, ["unknown"]))]
        try:
            self.releases.write_containers(restore.start(changed))
        except (ReleaseError, NotReadyError, CommandError) as failure:
            raise ReleaseError(f"release {tag} failed: {reason}\nRestoring {previous_tag} failed too: {failure}") from None
        raise ReleaseError(f"release {tag} failed and was rolled back: {reason}\nRelease {previous_tag} serves again.")

    def file_mounts(self) -> frozenset[str]:
        """The live files (relative to the app's directory) that the project's containers bind-mount one by one."""
        label = f"label={PROJECT_LABEL}={self.options.project}"
        containers = self.run(["ps", "--all", "--quiet", "--no-trunc", "--filter", label]).split()
        if not containers:
            return frozenset()
        live = self.options.dir.resolve()
        names = set()
        for info in json.loads(self.run(["inspect", *containers])):
            for mount in info.get("Mounts") or []:
                source = Path(str(mount.get("Source", "")))
                if mount.get("Type") == "bind" and source.is_relative_to(live):
                    names.add(str(source.relative_to(live)))
        return frozenset(names)

    def discard(self, release_id: str, outcome: str) -> None:
        """A release that failed before it started anything: its record, and the images only it pulled."""
        unused = self.unused_images(self.releases.root / release_id)
        self.releases.discard(release_id, outcome)
        self.remove_images(unused)

    def unused_images(self, failed: Path) -> list[str]:
        """The image references of a failed release that no kept release has."""
        if not failed.is_dir():
            return []
        kept = [release for release in self.release_directories() if release != failed][-self.options.keep :]
        keep = {image for release in kept for image in self._images(release)}
        return sorted(set(self._images(failed)) - keep)

    def remove_images(self, references: Sequence[str]) -> None:
        for reference in references:
            with contextlib.suppress(CommandError):  # never pulled, or still used by a container
                self.run(["image", "rm", reference])

    def image_id(self, reference: str) -> str:
        """The ID of the image `reference` names here; empty when there is none."""
        try:
            return self.run(["image", "inspect", "--format", "{{.Id}}", reference]).strip()
        except CommandError:
            return ""

    def record_images(self, release: Path) -> None:
        images = {reference: found for reference in self._images(release) if (found := self.image_id(reference))}
        (release / IMAGES_FILE).write_text(json.dumps(images, indent=1, sort_keys=True) + "\n")
        for n, image in enumerate(sorted(set(images.values()))):
            self.run(["tag", image, f"{KEPT_REPOSITORY}/{self.options.project}:{release.name}-{n}"])

    def restore_images(self, release: Path) -> None:
        """Points each image reference of `release` at the image it ran: a moving tag (app.pullPolicy always) may
        name the failed release's image by now."""
        try:
            images: dict[str, str] = json.loads((release / IMAGES_FILE).read_text())
        except (FileNotFoundError, ValueError):
            return  # recorded since dropship keeps them; an older release runs its tags
        for reference, image in sorted(images.items()):
            if self.image_id(reference) != image:
                log(f"{reference} names another image since release {self.releases.tag_of(release)}: back to {image[:19]}")
                self.run(["tag", image, reference])

    def release_directories(self) -> list[Path]:
        """The kept releases' snapshots, oldest first (their names begin with the time they were made)."""
        return sorted(p for p in self.releases.root.iterdir() if p.is_dir() and not p.is_symlink())

    def prune(self) -> None:
        """Keeps the newest `keep` releases and their images."""
        releases = self.release_directories()
        kept, pruned = releases[-self.options.keep :], releases[: -self.options.keep]
        if pruned:
            keep_images = {image for release in kept for image in self._images(release)}
            repository = f"{KEPT_REPOSITORY}/{self.options.project}"
            kept_tags = self.run(["image", "ls", "--format", "{{.Repository}}:{{.Tag}}", repository]).split()
            for release in pruned:
                mine = [t for t in kept_tags if t.partition(":")[2].startswith(f"{release.name}-")]
                if mine:
                    with contextlib.suppress(CommandError):
                        self.run(["image", "rm", *mine])
                unused = sorted(set(self._images(release)) - keep_images)
                if unused:
                    with contextlib.suppress(CommandError):  # still used by a container, or already gone
                        self.run(["image", "rm", *unused])
                shutil.rmtree(release)
        self.run(["image", "prune", "--force"])

    def _images(self, release: Path) -> list[str]:
        saved = os.environ.get("IMAGE_TAG", "")
        os.environ["IMAGE_TAG"] = self.releases.tag_of(release)
        try:
            return self.compose(release)("config", "--images").split()
        except CommandError:
            return []
        finally:
            os.environ["IMAGE_TAG"] = saved


STACK_LABEL = "com.docker.stack.namespace"


def _swarm_services(run: Callable[[Sequence[str]], str], project: str) -> list[str]:
    """The stack's services, when this server is a Swarm manager; none otherwise."""
    if run(["info", "--format", "{{.Swarm.ControlAvailable}}"]).strip() != "true":
        return []
    return run(["service", "ls", "--filter", f"label={STACK_LABEL}={project}", "--format", "{{.Name}}"]).split()


def _wait_until_stack_gone(
    run: Callable[[Sequence[str]], str], project: str, clock: Callable[[], float], sleep: Callable[[float], None]
) -> None:
    deadline = clock() + 120
    while (
        run(["ps", "--all", "--quiet", "--filter", f"label={STACK_LABEL}={project}"]).split()
        or run(["network", "ls", "--quiet", "--filter", f"label={STACK_LABEL}={project}"]).split()
    ):
        if clock() >= deadline:
            raise ReleaseError(f"the stack {project} did not go within 120s: see `docker stack ps {project}`")
        sleep(1)


UPDATE_FAILED = ("paused", "rollback_started", "rollback_paused", "rollback_completed")
"""Docker's UpdateStatus.State of a service whose update failed (and, with failure_action rollback, rolls back)."""


@dataclass
class SwarmRelease:
    """One release on a Swarm: the stack file rendered from compose's config, deployed with `docker stack
    deploy`, each service's update health-gated and rolled back by the Swarm when a new task fails; the
    release is then checked at app.healthUrl, and on failure the previous release's stack file is deployed."""

    deployer: Deployer
    release_id: str
    release: Path
    previous: Path | None

    STACK_FILE = "stack.json"
    HOOKS_FILE = "hooks-compose.json"

    @property
    def options(self) -> Options:
        return self.deployer.options

    def docker(self, *args: str) -> str:
        return self.deployer.run(list(args))

    def deploy(self) -> None:
        options, releases = self.options, self.deployer.releases
        try:
            config = json.loads(self.deployer.compose(self.release)("config", "--format", "json"))
            stack_file = render(config, replicas=options.swarm_replicas, rolling=options.rolling, edge=self.edge_service)
            hooks_file = hook_compose_file(config, project=options.project)
        except (StackError, CommandError) as failure:
            releases.discard(self.release_id, "invalid")
            raise ReleaseError(f"release {options.tag}: {failure}; nothing was changed, the previous release still serves") from None
        _write_private(self.release / self.HOOKS_FILE, hooks_file)
        # An app that ran with compose on the first server: compose stops it, the Swarm starts it.
        compose = self.deployer.compose(self.release)
        if compose.containers():
            log("the app ran with compose on this server: stopping it to start it on the Swarm (it is down meanwhile)")
            compose("down")
        if options.routes and self.deployer.edge.running_image() is not None:
            log("the stack's edge becomes a service of the Swarm: the one-server edge container goes (its certificates stay)")
            self.docker("rm", "--force", EDGE_CONTAINER)
        if options.pre_deploy and not self.docker("network", "ls", "--quiet", "--filter", f"name=^{options.project}_default$").split():
            self.first_services(stack_file)
        if options.routes and options.maintenance and self.edge_task():
            self.deployer.enter_maintenance()
        try:
            env = {**os.environ, "COMPOSE_FILE": str(self.release / self.HOOKS_FILE)}
            run_hooks("pre-deploy", self.release, options.pre_deploy, env, options.hook_timeout)
        except ReleaseError as failure:
            releases.discard(self.release_id, "pre-deploy-failed")
            raise ReleaseError(f"release {options.tag}: {failure}; nothing was changed, the previous release still serves") from None
        releases.make_live(self.release)
        releases.write_environment(options.environment(options.tag))
        # Rendered again from the live copy: bind mounts name its stable paths, as compose's do on one server.
        live = json.loads(self.deployer.compose(options.dir)("config", "--format", "json"))
        stack_file = render(live, replicas=options.swarm_replicas, rolling=options.rolling, edge=self.edge_service)
        _write_private(self.release / self.STACK_FILE, stack_file)
        log(f"release {options.tag}: deploying the stack {options.project} to the Swarm")
        try:
            self.deploy_stack(self.release / self.STACK_FILE)
            if options.routes:
                self.publish_site()
            self.deployer.check_health_unless_maintenance(self.deployer.clock() + options.health_timeout)
            run_hooks("post-deploy", options.dir, options.post_deploy, dict(os.environ), options.hook_timeout)
        except (ReleaseError, CommandError) as failure:
            releases.discard(self.release_id, "rolled-back")
            self.roll_back(str(failure))
        self.deployer.go_live(self.release_id)

    @property
    def edge_service(self) -> EdgeService | None:
        options = self.options
        return EdgeService(image=options.edge_image, routed=options.routed) if options.routes else None

    def publish_site(self, options: Options | None = None) -> None:
        """The stack's site in its edge (the dropship-edge task on this server): each route to its service's
        running tasks by Docker's DNS; those of `options` (a restored release's) or of this release."""
        options = options or self.options
        deployer = self.deployer
        deadline = deployer.clock() + 60
        while not self.edge_task():
            if deployer.clock() >= deadline:
                service = f"{options.project}_{EDGE_SERVICE}"
                raise ReleaseError(f"the Swarm started no task of {service} on this server in 60s: see `docker service ps {service}`")
            deployer.sleep(1)
        deployer.wait_for_edge()
        deployer.copy_tls_to_edge()
        deployer.edge.publish(options.project, options.site(swarm=True).render({}))
        log(f"the edge ({deployer.edge_container}) routes {', '.join(str(r) for r in options.routes)}")

    def edge_task(self) -> bool:
        """Whether the stack's dropship-edge has a task container on this server; the edge's commands go to it."""
        service = f"{self.options.project}_{EDGE_SERVICE}"
        names = self.docker("ps", "--filter", f"label=com.docker.swarm.service.name={service}", "--format", "{{.Names}}").split()
        if names:
            self.deployer.edge_container = names[0]
        return bool(names)

    def first_services(self, stack_file: dict[str, Any]) -> None:
        """The stack's first deploy with hooks: its services that do not roll (the data services, the edge) start
        first, so that the hooks (migrations) find them."""
        first = {**stack_file, "services": {n: s for n, s in stack_file["services"].items() if n not in self.options.rolling}}
        path = self.release / "stack-first.json"
        _write_private(path, first)
        log(f"first deploy: starting {', '.join(first['services'])} before the pre-deploy hooks")
        self.deploy_stack(path, prune=False)

    def deploy_stack(self, path: Path, *, prune: bool = True) -> None:
        project = self.options.project
        before = self.update_starts()
        args = ["stack", "deploy", "--compose-file", str(path), "--with-registry-auth", "--resolve-image", "changed"]
        self.docker(*args, *(["--prune"] if prune else []), project)
        self.wait_converged(before)

    def update_starts(self) -> dict[str, str]:
        """When each service's last update started: a service whose update starts anew is one this deploy changed."""
        return {name: (service.get("UpdateStatus") or {}).get("StartedAt", "") for name, service in self.services().items()}

    def services(self) -> dict[str, dict[str, Any]]:
        """The stack's services as `docker service inspect` gives them, by name."""
        names = _swarm_services(self.deployer.run, self.options.project)
        if not names:
            return {}
        return {s["Spec"]["Name"]: s for s in json.loads(self.docker("service", "inspect", *names))}

    def wait_converged(self, before: dict[str, str]) -> None:
        deadline = self.deployer.clock() + self.options.health_timeout
        while True:
            waiting = []
            for name, service in self.services().items():
                status = service.get("UpdateStatus") or {}
                changed = status.get("StartedAt", "") != before.get(name, "")
                state = status.get("State", "")
                if changed and state in UPDATE_FAILED:
                    raise ReleaseError(f"the Swarm rolled back service {name}: {status.get('Message', state)}")
                if changed and state not in ("", "completed"):
                    waiting.append(f"{name} ({state})")
                    continue
                desired = int(service["Spec"].get("Mode", {}).get("Replicated", {}).get("Replicas", 1))
                running = self.running_tasks(name)
                if running < desired:
                    waiting.append(f"{name} ({running}/{desired} running)")
            if not waiting:
                log("every service runs its tasks")
                return
            if self.deployer.clock() >= deadline:
                raise ReleaseError(f"not converged after {self.options.health_timeout:g}s: {', '.join(waiting)}")
            self.deployer.sleep(2)

    def running_tasks(self, name: str) -> int:
        """The service's tasks in state Running (healthy ones, when the service has a healthcheck)."""
        states = self.docker("service", "ps", name, "--filter", "desired-state=running", "--format", "{{.CurrentState}}").splitlines()
        return sum(state.startswith("Running") for state in states)

    def roll_back(self, reason: str) -> None:
        tag = self.options.tag
        previous = self.previous
        if previous is None or not (previous / self.STACK_FILE).exists():
            raise ReleaseError(f"release {tag} failed: {reason}\nThere is no previous release on the Swarm to restore.")
        previous_tag = self.deployer.releases.tag_of(previous)
        log(f"release {tag} failed: {reason}")
        log(f"restoring release {previous_tag}")
        restored = self.deployer.releases.options_of(previous)
        os.environ.update(restored.environment(previous_tag))
        self.deployer.releases.make_live(previous)
        self.deployer.releases.write_environment(restored.environment(previous_tag))
        try:
            self.deploy_stack(previous / self.STACK_FILE)
            if restored.routes:
                self.publish_site(restored)
        except (ReleaseError, CommandError) as failure:
            raise ReleaseError(f"release {tag} failed: {reason}\nRestoring {previous_tag} failed too: {failure}") from None
        raise ReleaseError(f"release {tag} failed and was rolled back: {reason}\nRelease {previous_tag} serves again.")


def _replace(source: Path, target: Path) -> None:
    """`source`'s content and mode at `target`, by a rename: readers see the old file or the new one, whole."""
    fresh = target.with_name(f".{target.name}.dropship-new")
    fresh.unlink(missing_ok=True)
    shutil.copy2(source, fresh)
    with open(fresh, "rb") as written:
        os.fsync(written.fileno())
    os.replace(fresh, target)


def _write_private(path: Path, content: dict[str, Any]) -> None:
    """Mode 600: the rendered files hold the .env's values."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as target:
        json.dump(content, target, indent=1, sort_keys=True)


def prune_code(here: Path) -> None:
    """Removes the host code of earlier dropship versions, beside this one."""
    for sibling in here.parent.glob("host-*"):
        if sibling != here and sibling.is_dir():
            shutil.rmtree(sibling, ignore_errors=True)


def main(argv: Sequence[str]) -> int:
    options = parse(argv)
    password = sys.stdin.read().strip() if options.registry else ""
    try:
        with Lock(options.dir, options.lock_timeout):
            (options.dir / "releases").mkdir(exist_ok=True)
            Deployer(options).deploy(password)
            prune_code(Path(__file__).resolve().parent)
    except ReleaseError as failure:
        for line in str(failure).splitlines():
            print(f"dropship: {line}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
