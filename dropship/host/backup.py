"""Backs up, lists and restores one Postgres service of the app, as the deploy user, to an S3-compatible bucket
through rclone (standard library only). The systemd timer runs `backup`; people run `list` and `restore`.

    python3 backup.py backup APP_DIR PROJECT SERVICE
    python3 backup.py list APP_DIR PROJECT SERVICE
    python3 backup.py restore APP_DIR PROJECT SERVICE [NAME|latest]

A backup is one tar file, `<UTC time>.tar`, holding the server's roles (`globals.sql`, pg_dumpall
--globals-only), one custom-format `pg_dump` per database (`<n>.dump`, named in `databases.tsv`) and
`manifest.tsv`: each database's tables with their row counts and its migration revision, read in the
transaction whose snapshot the dump was taken from. Before it is uploaded, a restore drill loads it into a
throwaway container of the service's own image (no network) and reads the same manifest there: a backup
that holds no table, or does not restore to the same rows, fails.

`restore` first uploads a safety backup of what the service holds now (under `before-restore/`), then loads
the roles and each database in one transaction.

The bucket, its key and the URLs come from the environment (the timer's EnvironmentFile, mode 600):
rclone's RCLONE_CONFIG_DROPSHIP_* for the remote `dropship:`, DROPSHIP_BACKUP_BUCKET, and optionally
DROPSHIP_BACKUP_FAILURE_URL (POSTed when a backup fails) and DROPSHIP_BACKUP_HEARTBEAT_URL (asked after each
good backup: a dead man's switch that notices when backups stop). The service's container is found by
compose's labels, or by a Swarm stack's.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

DRILL_TIMEOUT = 180.0
"""Seconds the throwaway Postgres has to accept connections."""
SAFETY_PREFIX = "before-restore/"
MARK = "dropship-manifest"
DUMP_FAILED = "dropship-dump-failed"

MIGRATIONS = (
    ("alembic_version", "alembic", "SELECT string_agg(version_num, ',' ORDER BY version_num) FROM alembic_version"),
    ("django_migrations", "django", "SELECT app || '.' || name FROM django_migrations ORDER BY id DESC LIMIT 1"),
    ("schema_migrations", "schema_migrations", "SELECT version::text FROM schema_migrations ORDER BY version DESC LIMIT 1"),
    (
        "flyway_schema_history",
        "flyway",
        "SELECT version FROM flyway_schema_history WHERE success AND version IS NOT NULL ORDER BY installed_rank DESC LIMIT 1",
    ),
    (
        "_prisma_migrations",
        "prisma",
        "SELECT migration_name FROM _prisma_migrations WHERE finished_at IS NOT NULL ORDER BY finished_at DESC LIMIT 1",
    ),
    ("knex_migrations", "knex", "SELECT name FROM knex_migrations ORDER BY id DESC LIMIT 1"),
)
"""The migration tables of the frameworks users run, and how each says its revision."""

# Rows of every table (not those of extensions: CREATE EXTENSION makes them) and the migration revision, as
# `dropship-manifest <TAB> kind <TAB> name <TAB> value` lines.
MANIFEST_SQL = (
    r"""
SELECT format('SELECT %L || count(*) FROM %I.%I', E'dropship-manifest\ttable\t' || n.nspname || '.' || c.relname || E'\t',
              n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
  AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY n.nspname, c.relname \gexec
SELECT m.q FROM (VALUES
"""
    + ",\n".join(
        f"  ('{table}', $q$SELECT E'dropship-manifest\\trevision\\t{framework}\\t' || coalesce(({query}), '')$q$)"
        for table, framework, query in MIGRATIONS
    )
    + "\n) AS m(t, q) WHERE to_regclass(m.t) IS NOT NULL \\gexec\n"
)

# One session: the dump is taken from this transaction's snapshot (pg_dump --snapshot), and the manifest
# is read in the same transaction, so both see the same rows. The dump goes to stdout, the manifest to
# stderr (its lines marked), psql's own messages too.
DUMP_SESSION = (
    "\\set ON_ERROR_STOP 1\n"
    "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;\n"
    "SELECT pg_export_snapshot() AS dropship_snapshot \\gset\n"
    "\\setenv DROPSHIP_SNAPSHOT :dropship_snapshot\n"
    '\\! pg_dump --snapshot="$DROPSHIP_SNAPSHOT" --format=custom --username="$DROPSHIP_PGUSER" --dbname="$DROPSHIP_DATABASE" '
    f"|| echo {DUMP_FAILED} >&2\n"
    "\\o /dev/stderr\n"
    f"{MANIFEST_SQL}"
    "\\o\n"
    "COMMIT;\n"
)

PSQL = 'exec psql -X -q -A -t --username="$DROPSHIP_PGUSER" --dbname="$DROPSHIP_DATABASE" "$@"'


class BackupError(Exception):
    """What went wrong, said for the journal."""


@dataclass(frozen=True)
class Service:
    project: str
    name: str

    def prefix(self, bucket: str) -> str:
        return f"dropship:{bucket}/{self.project}/{self.name}/"


def run(args: Sequence[str], *, what: str, stdin: bytes | Path | None = None, env: dict[str, str] | None = None) -> str:
    """ARGS' stdout; a BackupError saying WHAT failed, with its stderr. STDIN: bytes, or a file streamed in."""
    with contextlib.ExitStack() as stack:
        if isinstance(stdin, Path):
            result = subprocess.run(list(args), stdin=stack.enter_context(stdin.open("rb")), capture_output=True, env=env)
        else:
            result = subprocess.run(list(args), input=stdin, capture_output=True, env=env)
    if result.returncode != 0:
        detail = result.stderr.decode(errors="replace").strip()
        raise BackupError(f"{what} failed (exit {result.returncode}){': ' + detail if detail else ''}")
    return result.stdout.decode(errors="replace")


def container_of(service: Service) -> str:
    """The service's running container: by compose's labels, else as a task of the Swarm stack of that name."""
    for labels in (
        (f"com.docker.compose.project={service.project}", f"com.docker.compose.service={service.name}"),
        (f"com.docker.stack.namespace={service.project}", f"com.docker.swarm.service.name={service.project}_{service.name}"),
    ):
        filters = [arg for label in labels for arg in ("--filter", f"label={label}")]
        ids = run(["docker", "ps", "--quiet", *filters], what="docker ps").split()
        if ids:
            return ids[0]
    raise BackupError(f"service {service.name} of {service.project} has no running container on {socket.gethostname()}")


class Postgres:
    """psql, pg_dump and pg_restore in a container, over its socket, as its POSTGRES_USER."""

    def __init__(self, container: str, user: str | None = None) -> None:
        self.container = container
        self.user = user or run(
            ["docker", "exec", container, "sh", "-c", 'printf %s "${POSTGRES_USER:-postgres}"'], what="reading POSTGRES_USER"
        )

    def _exec(self, database: str, script: str, *args: str) -> list[str]:
        return [
            "docker", "exec", "--interactive",
            "--env", f"DROPSHIP_PGUSER={self.user}", "--env", f"DROPSHIP_DATABASE={database}",
            self.container, "sh", "-c", script, "sh", *args,
        ]  # fmt: skip

    def psql(self, database: str, sql: str, *, what: str, single_transaction: bool = False) -> str:
        flags = ["-v", "ON_ERROR_STOP=1", "--file=-", *(["--single-transaction"] if single_transaction else [])]
        return run(self._exec(database, PSQL, *flags), what=what, stdin=sql.encode())

    def databases(self) -> list[str]:
        sql = "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname;"
        return self.psql("postgres", sql, what="listing the databases").splitlines()

    def default_database(self) -> str:
        return run(
            ["docker", "exec", self.container, "sh", "-c", 'printf %s "${POSTGRES_DB:-${POSTGRES_USER:-postgres}}"'],
            what="reading POSTGRES_DB",
        )

    def globals(self) -> str:
        script = 'exec pg_dumpall --globals-only --username="$DROPSHIP_PGUSER"'
        return run(self._exec("postgres", script), what="pg_dumpall --globals-only (the roles)")

    def dump(self, database: str, into: Path) -> list[str]:
        """Dumps DATABASE into the file INTO; the manifest lines read in the dump's own transaction."""
        with into.open("wb") as out:
            result = subprocess.run(self._exec(database, PSQL), input=DUMP_SESSION.encode(), stdout=out, stderr=subprocess.PIPE)
        lines = result.stderr.decode(errors="replace").splitlines()
        messages = [line for line in lines if not line.startswith(MARK + "\t") and line != DUMP_FAILED]
        if result.returncode != 0 or DUMP_FAILED in lines:
            raise BackupError(f"pg_dump of database {database} failed: {' '.join(messages) or f'exit {result.returncode}'}")
        if into.stat().st_size == 0:
            raise BackupError(f"pg_dump of database {database} wrote nothing")
        return manifest_lines(lines)

    def manifest(self, database: str) -> list[str]:
        return manifest_lines(self.psql(database, MANIFEST_SQL, what=f"reading the tables of database {database}").splitlines())

    def restore(self, database: str, dump: Path, *, drill: bool, owners: bool = True) -> None:
        """The drill recreates each database; a real restore loads into the live one in one transaction."""
        if drill:
            flags = "--create --clean --if-exists --exit-on-error --dbname=template1"
        else:
            self.psql("postgres", create_database_sql(database), what=f"creating database {database}")
            flags = '--single-transaction --clean --if-exists --exit-on-error --dbname="$DROPSHIP_DATABASE"'
        if not owners:
            flags += " --no-owner"
        script = f'exec pg_restore {flags} --username="$DROPSHIP_PGUSER"'
        run(self._exec(database, script), what=f"pg_restore of database {database}", stdin=dump)


def manifest_lines(lines: Sequence[str]) -> list[str]:
    return [line.removeprefix(MARK + "\t") for line in lines if line.startswith(MARK + "\t")]


def create_database_sql(database: str) -> str:
    literal = "'" + database.replace("'", "''") + "'"
    return f"SELECT format('CREATE DATABASE %I', {literal}) WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = {literal}) \\gexec\n"


def quoted_role(name: str) -> set[str]:
    """How pg_dumpall may spell a role's name: bare, or quoted as an identifier."""
    return {name, '"' + name.replace('"', '""') + '"'}


CREATE_ROLE = re.compile(r"^CREATE ROLE (.+);$")


def globals_for(sql: str, *, bootstrap_user: str, live: bool) -> str:
    """pg_dumpall's roles made loadable into a server that already has its bootstrap user (POSTGRES_USER):
    into the drill, without creating that user again; into the live server, creating only the roles it lacks
    and leaving the bootstrap user's password (the app's .env has it) as it is."""
    names = quoted_role(bootstrap_user)
    out = []
    for line in sql.splitlines():
        created = CREATE_ROLE.match(line)
        if created and created.group(1) in names:
            continue
        if created and live:
            line = f"DO $dropship$ BEGIN {line} EXCEPTION WHEN duplicate_object THEN NULL; END $dropship$;"
        if live and any(line.startswith(f"ALTER ROLE {name} ") for name in names):
            continue
        out.append(line)
    return "\n".join(out) + "\n"


@dataclass(frozen=True)
class Archive:
    """An unpacked backup: the roles, each database's dump, and the manifest."""

    directory: Path

    @property
    def databases(self) -> list[tuple[str, Path]]:
        rows = (self.directory / "databases.tsv").read_text().splitlines()
        return [(name, self.directory / f"{index}.dump") for index, name in (row.split("\t", 1) for row in rows)]

    @property
    def globals(self) -> str:
        return (self.directory / "globals.sql").read_text()

    @property
    def manifest(self) -> list[str]:
        return (self.directory / "manifest.tsv").read_text().splitlines()

    def manifest_of(self, database: str) -> list[str]:
        return [line.split("\t", 1)[1] for line in self.manifest if line.split("\t", 1)[0] == database]


def take(postgres: Postgres, directory: Path) -> Archive:
    """Dumps the roles and every database of POSTGRES into DIRECTORY."""
    (directory / "globals.sql").write_text(postgres.globals())
    names, manifest = [], []
    for index, database in enumerate(postgres.databases()):
        lines = postgres.dump(database, directory / f"{index}.dump")
        names.append(f"{index}\t{database}")
        manifest += [f"{database}\t{line}" for line in lines]
    (directory / "databases.tsv").write_text("".join(f"{row}\n" for row in names))
    (directory / "manifest.tsv").write_text("".join(f"{row}\n" for row in manifest))
    return Archive(directory)


def summary(archive: Archive) -> str:
    """`shop: 3 tables, 12 rows, alembic 0002; postgres: no tables`"""
    parts = []
    for database, _ in archive.databases:
        rows = [line.split("\t") for line in archive.manifest_of(database)]
        tables = [r for r in rows if r[0] == "table"]
        revisions = [f"{r[1]} {r[2] or '(none)'}" for r in rows if r[0] == "revision"]
        counted = f"{len(tables)} tables, {sum(int(r[2]) for r in tables)} rows" if tables else "no tables"
        parts.append(f"{database}: " + ", ".join([counted, *revisions]))
    return "; ".join(parts)


def require_tables(archive: Archive, service: Service) -> None:
    if not any(line.split("\t")[1] == "table" for line in archive.manifest):
        names = ", ".join(name for name, _ in archive.databases)
        raise BackupError(
            f"the dump of service {service.name} holds no table in any database ({names}): an empty backup is not kept; "
            "is backups.databases naming the service the app writes to?"
        )


@contextlib.contextmanager
def drill_server(image: str, user: str, service: Service) -> Iterator[Postgres]:
    """A throwaway Postgres of IMAGE, without a network, removed with its volumes afterwards."""
    name = f"dropship-drill-{service.project}-{service.name}-{os.getpid()}"
    env = {**os.environ, "POSTGRES_PASSWORD": secrets.token_hex(16)}  # never on a command line
    run(
        ["docker", "run", "--detach", "--rm", "--name", name, "--network", "none", "--label", "dropship.drill=true",
         "--env", f"POSTGRES_USER={user}", "--env", "POSTGRES_PASSWORD", image],
        what="starting the restore drill's Postgres", env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + DRILL_TIMEOUT
        while True:
            # The image's first start initialises the database over its socket only; TCP means it is done.
            ready = subprocess.run(
                ["docker", "exec", name, "pg_isready", "--quiet", "--host=127.0.0.1", f"--username={user}"], capture_output=True
            )
            if ready.returncode == 0:
                break
            state = subprocess.run(["docker", "inspect", "--format", "{{.State.Running}}", name], capture_output=True, text=True)
            if state.stdout.strip() != "true":
                logs = subprocess.run(["docker", "logs", "--tail", "20", name], capture_output=True, text=True)
                raise BackupError(f"the restore drill's Postgres stopped: {(logs.stdout + logs.stderr).strip()}")
            if time.monotonic() > deadline:
                raise BackupError(f"the restore drill's Postgres did not accept connections within {DRILL_TIMEOUT:.0f} s")
            time.sleep(0.5)
        yield Postgres(name, user)
    finally:
        subprocess.run(["docker", "rm", "--force", "--volumes", name], capture_output=True)


def drill(archive: Archive, source: Postgres, service: Service) -> None:
    """Restores ARCHIVE into a throwaway server of the source's image; the same tables, rows and revisions."""
    image = run(["docker", "inspect", "--format", "{{.Image}}", source.container], what="docker inspect").strip()
    with drill_server(image, source.user, service) as scratch:
        scratch.psql("postgres", globals_for(archive.globals, bootstrap_user=source.user, live=False), what="the drill's roles")
        for database, dump in archive.databases:
            try:
                scratch.restore(database, dump, drill=True)
            except BackupError as error:
                raise BackupError(f"the restore drill failed: {error}") from None
            found, expected = scratch.manifest(database), archive.manifest_of(database)
            if found != expected:
                differ = sorted(set(found) ^ set(expected))
                raise BackupError(
                    f"the restore drill of database {database} does not hold what was dumped: "
                    + "; ".join(f"{'restored' if line in found else 'dumped'} {line}" for line in differ[:10]).replace("\t", " ")
                )


def pack(archive: Archive, into: Path) -> None:
    with tarfile.open(into, "w") as tar:
        for path in sorted(archive.directory.iterdir()):
            tar.add(path, arcname=path.name)


def unpack(archive: Path, into: Path) -> Archive:
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(into, filter="data")
        else:  # a Python without extraction filters (before 3.11.4): dropship's own archive, plain files only
            tar.extractall(into, members=[m for m in tar.getmembers() if m.isfile() and "/" not in m.name])
    return Archive(into)


def stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def bucket() -> str:
    value = os.environ.get("DROPSHIP_BACKUP_BUCKET", "")
    if not value:
        raise BackupError("DROPSHIP_BACKUP_BUCKET is not set")
    return value


def upload(path: Path, destination: str) -> None:
    run(["rclone", "copyto", "--s3-no-check-bucket", str(path), destination], what=f"upload of {destination.rsplit('/', 1)[-1]}")


def make_backup(service: Service, work: Path, *, destination: str, checked: bool) -> tuple[Archive, int]:
    """Takes, checks (CHECKED: not empty, restore drill) and uploads one backup; the archive and its size."""
    postgres = Postgres(container_of(service))
    archive = take(postgres, work / "archive")
    if checked:
        require_tables(archive, service)
        drill(archive, postgres, service)
    packed = work / "backup.tar"
    pack(archive, packed)
    upload(packed, destination)
    return archive, packed.stat().st_size


def backup(service: Service) -> None:
    destination = service.prefix(bucket()) + f"{stamp()}.tar"
    with tempfile.TemporaryDirectory(prefix="dropship-backup-") as work:
        (Path(work) / "archive").mkdir()
        archive, size = make_backup(service, Path(work), destination=destination, checked=True)
        held = summary(archive)
    print(f"dropship backup: service {service.name} -> {destination} ({size} bytes; {held}; restore drill passed)")
    heartbeat = os.environ.get("DROPSHIP_BACKUP_HEARTBEAT_URL", "")
    if heartbeat:
        try:
            urllib.request.urlopen(heartbeat, timeout=15).close()
        except OSError as error:
            print(f"dropship backup: the backup is good, but its heartbeat URL did not answer: {error}", file=sys.stderr)


def names(service: Service) -> list[str]:
    result = subprocess.run(["rclone", "lsf", "--files-only", service.prefix(bucket())], capture_output=True, text=True)
    # rclone exits 3 for a directory that does not exist: storage with directories, before the first backup.
    if result.returncode not in (0, 3):
        raise BackupError(
            f"cannot list the backups of service {service.name} in {service.prefix(bucket())} (rclone exited {result.returncode}): "
            + result.stderr.strip()
        )
    return sorted(name for name in result.stdout.split() if name.endswith((".tar", ".dump")))


def restore(service: Service, name: str) -> None:
    if name == "latest":
        found = names(service)
        if not found:
            raise BackupError(f"no backup of service {service.name} in {service.prefix(bucket())}")
        name = found[-1]
    with tempfile.TemporaryDirectory(prefix="dropship-restore-") as work:
        download = Path(work) / name
        run(["rclone", "copyto", service.prefix(bucket()) + name, str(download)], what=f"download of {name}")
        # What the service holds now, kept before anything is overwritten (empty or not).
        (Path(work) / "archive").mkdir()
        safety = service.prefix(bucket()) + f"{SAFETY_PREFIX}{stamp()}-before-{name.rsplit('.', 1)[0]}.tar"
        make_backup(service, Path(work), destination=safety, checked=False)
        print(f"dropship backup: what service {service.name} held before the restore -> {safety}")
        postgres = Postgres(container_of(service))
        if name.endswith(".dump"):  # made before backups held every database and the roles: one database, no roles
            postgres.restore(postgres.default_database(), download, drill=False, owners=False)
        else:
            archive = unpack(download, Path(work) / "restored")
            roles = globals_for(archive.globals, bootstrap_user=postgres.user, live=True)
            postgres.psql("postgres", roles, what="restoring the roles", single_transaction=True)
            for database, dump in archive.databases:
                postgres.restore(database, dump, drill=False)
    print(f"dropship backup: restored {name} into service {service.name}")


def report_failure(message: str) -> None:
    url = os.environ.get("DROPSHIP_BACKUP_FAILURE_URL", "")
    if not url:
        return
    try:
        urllib.request.urlopen(urllib.request.Request(url, data=message.encode(), method="POST"), timeout=15).close()
    except OSError:
        print("dropship backup: could not report the failure to its URL", file=sys.stderr)


def load_environment(app_dir: str) -> None:
    """Run by hand (not by its timer): the same environment file the timer's service reads."""
    path = Path(app_dir) / ".dropship" / "backup" / ".env"
    if os.environ.get("DROPSHIP_BACKUP_BUCKET") or not os.access(path, os.R_OK):
        return
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#"):
            os.environ.setdefault(key.strip(), unquote(value.strip()))


def unquote(value: str) -> str:
    """commands.render_env's values: in single quotes (literal), or in double quotes with compose's escapes."""
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1]
    if len(value) >= 2 and value[0] == value[-1] == '"':
        escapes = {"\\\\": "\\", '\\"': '"', "\\n": "\n", "$$": "$"}
        return re.sub(r'\\\\|\\"|\\n|\$\$', lambda m: escapes[m.group(0)], value[1:-1])
    return value


USAGE = "usage: backup.py backup|list|restore APP_DIR PROJECT SERVICE [NAME|latest]"


def main(argv: Sequence[str]) -> int:
    if len(argv) < 4 or argv[0] not in ("backup", "list", "restore") or (len(argv) > 4 and argv[0] != "restore") or len(argv) > 5:
        print(f"dropship backup: {USAGE}", file=sys.stderr)
        return 2
    verb, app_dir, project, name = argv[:4]
    service = Service(project, name)
    load_environment(app_dir)
    try:
        if verb == "backup":
            backup(service)
        elif verb == "list":
            for found in names(service):
                print(found)
        else:
            restore(service, argv[4] if len(argv) > 4 else "latest")
    except (BackupError, OSError, subprocess.SubprocessError, tarfile.TarError) as error:
        print(f"dropship backup: {error}", file=sys.stderr)
        if verb == "backup":
            report_failure(
                f"backup of service {name} of {project} failed on {socket.gethostname()}: {error}; see: journalctl -u 'dropship-backup-*'"
            )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
