"""backup.py's own logic: how it finds the service, makes the roles loadable, reads and judges a manifest, and
reads its environment file. Its work against a real Postgres (dump, drill, restore) is proven on the test hosts
(tests/e2e/test_shop.py, tests/e2e/test_swarm.py)."""

from __future__ import annotations

import os
from pathlib import Path

import backup
import pytest

from dropship.remote import commands

GLOBALS = """--
-- PostgreSQL database cluster dump
--

SET default_transaction_read_only = off;

CREATE ROLE reporting;
ALTER ROLE reporting WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN PASSWORD 'SCRAM-SHA-256$4096:abc';
CREATE ROLE shop;
ALTER ROLE shop WITH SUPERUSER INHERIT CREATEROLE CREATEDB LOGIN REPLICATION BYPASSRLS PASSWORD 'SCRAM-SHA-256$4096:def';
GRANT reporting TO shop;
"""
ODD_ROLE = 'CREATE ROLE "Odd ""Name""";'


def test_roles_for_the_drill_create_every_role_but_the_bootstrap_user_the_image_already_made() -> None:
    sql = backup.globals_for(GLOBALS + ODD_ROLE + "\n", bootstrap_user="shop", live=False)
    assert "CREATE ROLE shop;" not in sql
    assert "CREATE ROLE reporting;\n" in sql
    assert ODD_ROLE + "\n" in sql
    assert "ALTER ROLE shop WITH SUPERUSER" in sql  # harmless in a throwaway server
    assert "GRANT reporting TO shop;" in sql


def test_roles_for_the_live_server_create_only_missing_ones_and_keep_the_bootstrap_users_password() -> None:
    sql = backup.globals_for(GLOBALS, bootstrap_user="shop", live=True)
    assert "DO $dropship$ BEGIN CREATE ROLE reporting; EXCEPTION WHEN duplicate_object THEN NULL; END $dropship$;" in sql
    assert "ALTER ROLE reporting WITH NOSUPERUSER" in sql
    assert "ALTER ROLE shop " not in sql  # its password is the app's .env's, not the backup's
    assert "CREATE ROLE shop;" not in sql
    quoted = backup.globals_for(GLOBALS.replace("ROLE shop", 'ROLE "shop"'), bootstrap_user="shop", live=True)
    assert 'ROLE "shop"' not in quoted


def archive(tmp_path: Path, manifest: str, databases: str = "0\tshop\n1\tpostgres\n") -> backup.Archive:
    (tmp_path / "databases.tsv").write_text(databases)
    (tmp_path / "manifest.tsv").write_text(manifest)
    return backup.Archive(tmp_path)


def test_a_manifest_is_read_per_database_and_summed_up_for_the_journal(tmp_path: Path) -> None:
    found = archive(
        tmp_path,
        "shop\ttable\tpublic.alembic_version\t1\nshop\ttable\tpublic.orders\t2\nshop\trevision\talembic\t0002\n",
    )
    assert found.databases == [("shop", tmp_path / "0.dump"), ("postgres", tmp_path / "1.dump")]
    assert found.manifest_of("shop") == ["table\tpublic.alembic_version\t1", "table\tpublic.orders\t2", "revision\talembic\t0002"]
    assert found.manifest_of("postgres") == []
    assert backup.summary(found) == "shop: 2 tables, 3 rows, alembic 0002; postgres: no tables"
    backup.require_tables(found, backup.Service("shop", "db"))


def test_a_dump_without_any_table_is_refused_naming_the_databases(tmp_path: Path) -> None:
    with pytest.raises(backup.BackupError, match=r"holds no table in any database \(shop, postgres\)"):
        backup.require_tables(archive(tmp_path, ""), backup.Service("shop", "db"))


def test_manifest_lines_are_the_marked_ones_of_psqls_output() -> None:
    lines = ["psql:<stdin>:3: NOTICE: something", "dropship-manifest\ttable\tpublic.orders\t2", "dropship-dump-failed"]
    assert backup.manifest_lines(lines) == ["table\tpublic.orders\t2"]


def test_the_manifest_sql_counts_tables_outside_extensions_and_reads_each_frameworks_revision() -> None:
    sql = backup.MANIFEST_SQL
    assert "d.deptype = 'e'" in sql and "\\gexec" in sql
    for table, framework, _ in backup.MIGRATIONS:
        assert f"('{table}', $q$SELECT E'dropship-manifest\\trevision\\t{framework}\\t'" in sql
    # The dump and the manifest share one transaction: the snapshot pg_dump is given is that transaction's.
    session = backup.DUMP_SESSION
    assert session.index("BEGIN ISOLATION LEVEL REPEATABLE READ") < session.index("pg_export_snapshot") < session.index("--snapshot=")
    assert session.index("--snapshot=") < session.index(sql) < session.index("COMMIT;")


def test_create_database_quotes_the_name() -> None:
    assert backup.create_database_sql("it's") == (
        "SELECT format('CREATE DATABASE %I', 'it''s') WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'it''s') \\gexec\n"
    )


def test_the_environment_file_is_read_as_render_env_wrote_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    values = {"DROPSHIP_BACKUP_BUCKET": "shop-backups", "RCLONE_CONFIG_DROPSHIP_SECRET_ACCESS_KEY": 'it\'s $ecret\\n "q"'}
    env_dir = tmp_path / ".dropship" / "backup"
    env_dir.mkdir(parents=True)
    (env_dir / ".env").write_text(commands.render_env(values))
    for name in values:
        monkeypatch.delenv(name, raising=False)
    backup.load_environment(str(tmp_path))
    assert {name: os.environ[name] for name in values} == values


@pytest.fixture
def docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A docker whose `ps` lists a container only for the label set named by $FAKE_PS_LABEL."""
    log = tmp_path / "docker.log"
    script = tmp_path / "bin" / "docker"
    script.parent.mkdir()
    script.write_text(f'#!/bin/sh\nprintf \'%s\\n\' "$*" >>{log}\ncase "$*" in *"label=${{FAKE_PS_LABEL:-none}}"*) echo c0ffee ;; esac\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{script.parent}:{os.environ['PATH']}")
    return log


def test_the_service_is_found_by_composes_labels_then_as_a_swarm_stacks_task(docker: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    service = backup.Service("shop", "db")
    monkeypatch.setenv("FAKE_PS_LABEL", "com.docker.compose.service=db")
    assert backup.container_of(service) == "c0ffee"
    monkeypatch.setenv("FAKE_PS_LABEL", "com.docker.swarm.service.name=shop_db")
    assert backup.container_of(service) == "c0ffee"
    assert docker.read_text().splitlines()[-1] == (
        "ps --quiet --filter label=com.docker.stack.namespace=shop --filter label=com.docker.swarm.service.name=shop_db"
    )
    monkeypatch.setenv("FAKE_PS_LABEL", "none-at-all")
    with pytest.raises(backup.BackupError, match="service db of shop has no running container on "):
        backup.container_of(service)


def test_bad_usage_says_how(capsys: pytest.CaptureFixture[str]) -> None:
    assert backup.main(["backup", "/srv/shop", "shop"]) == 2
    assert backup.main(["list", "/srv/shop", "shop", "db", "extra"]) == 2
    assert "usage: backup.py backup|list|restore APP_DIR PROJECT SERVICE [NAME|latest]" in capsys.readouterr().err
