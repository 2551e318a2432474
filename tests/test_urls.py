"""Database names with URL-special characters reach exactly that database, for every command.

A database named `x#y` is written `x%23y` in a URL. yoyo once got the name un-escaped and
re-parsed it: '#' started a fragment and migrations went to the database `x`, with no
backup and no safety check. Here real databases carry `# ? % / @ space` and unicode in their
names, a decoy database carries the prefix before the '#', and every command must act on the
named database only.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from click.testing import CliRunner

from dbtools import db, migrations, safety
from dbtools.cli import main
from dbtools.config import load_settings
from dbtools.errors import SafetyError

from support.db import admin_execute, applied_migrations, db_url, drop_database, execute
from support.pgpeer import free_port
from support.project import REPO

MIGRATIONS = REPO / "migrations"
HEAD = migrations.migration_ids(MIGRATIONS)


def _create(name: str) -> str:
    admin_execute(f"CREATE DATABASE {db.quote_ident(name)}")
    return db_url(quote(name, safe=""))


class Odd:
    """A project whose dev and prod names hold URL-special characters, plus decoys."""

    def __init__(self, root: Path, tag: str) -> None:
        self.root = root
        self.decoy = f"dbt_{tag}"  # what a name cut at '#' or '?' becomes
        self.dev_name = f"dbt_{tag}#d?v%41 /@ü"
        self.prod_name = f"dbt_{tag}?p#r%2F/@ø d"
        self.names = [self.decoy, self.dev_name, self.prod_name]
        self.decoy_url = _create(self.decoy)
        self.dev_url = _create(self.dev_name)
        self.prod_url = _create(self.prod_name)
        (root / "setup.cfg").write_text(
            "[dbtools]\n"
            f"migrations_dir = {MIGRATIONS}\nchecks_dir = {REPO / 'checks'}\n"
            "lock_timeout_seconds = 3\n"
        )
        self.env = {
            "DEV_DATABASE_URL": self.dev_url,
            "PROD_DATABASE_URL": self.prod_url,
            "DBTOOLS_DEV_DATABASE": self.dev_name,
            "DBTOOLS_PROD_DATABASE": self.prod_name,
            "DBTOOLS_SNAPSHOT_DIR": str(root / "snapshots"),
        }

    def invoke(self, *args: str) -> tuple[int, str]:
        result = CliRunner().invoke(main, list(args), env=self.env, catch_exceptions=False)
        return result.exit_code, result.output

    def decoy_untouched(self) -> bool:
        rows = execute(self.decoy_url, "SELECT count(*) FROM pg_tables WHERE schemaname='public'")
        return rows == [(0,)]


@pytest.fixture
def odd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Odd]:
    root = tmp_path / "proj"
    root.mkdir()
    o = Odd(root, uuid.uuid4().hex[:8])
    for key, value in o.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(root)
    try:
        yield o
    finally:
        for name in o.names:
            drop_database(name)


def test_url_parts_decode_every_special_character(odd: Odd) -> None:
    t = db.Target("dev", odd.dev_url, odd.dev_name)
    assert t.parts.dbname == odd.dev_name
    conn = db.connect(t)
    try:
        assert db.identity(conn).database == odd.dev_name
    finally:
        conn.close()


@pytest.mark.slow
def test_migrate_apply_status_rollback_on_dev_and_prod_reach_the_named_databases(
    odd: Odd,
) -> None:
    code, out = odd.invoke("migrate", "apply", "--target", "dev")
    assert code == 0, out
    assert applied_migrations(odd.dev_url) == HEAD
    assert odd.decoy_untouched()

    code, out = odd.invoke("migrate", "status", "--target", "both", "--json")
    assert code == 0, out
    targets = json.loads(out)["targets"]
    assert targets["dev"]["database"] == odd.dev_name and targets["dev"]["pending"] == []
    assert targets["prod"]["database"] == odd.prod_name and targets["prod"]["applied"] == []

    code, out = odd.invoke("migrate", "rollback", "--target", "dev", "--yes")
    assert code == 0, out
    assert applied_migrations(odd.dev_url) == HEAD[:-1]

    code, out = odd.invoke("migrate", "apply", "--target", "prod", "--upto", HEAD[0], "--yes")
    assert code == 0, out
    assert applied_migrations(odd.prod_url) == HEAD[:1]
    code, out = odd.invoke("migrate", "rollback", "--target", "prod", "--yes")
    assert code == 0, out
    assert applied_migrations(odd.prod_url) == []
    assert odd.decoy_untouched()


@pytest.mark.slow
def test_sync_schema_and_verify_reach_the_named_databases(odd: Odd) -> None:
    migrations.apply_all(odd.dev_url, MIGRATIONS)
    code, out = odd.invoke("sync-schema", "--yes")
    assert code == 0, out
    assert applied_migrations(odd.prod_url) == HEAD
    assert odd.decoy_untouched()

    code, out = odd.invoke("verify", "--json")
    report = json.loads(out)
    assert report["sides"]["dev"]["identity"]["database"] == odd.dev_name
    assert report["sides"]["prod"]["identity"]["database"] == odd.prod_name
    assert report["distinct"] is True
    assert report["sides"]["dev"]["name_ok"] and report["sides"]["prod"]["name_ok"]


def test_a_session_reaching_another_database_than_approved_is_refused(odd: Odd) -> None:
    settings = load_settings()
    conn = db.connect(db.target(settings, "prod"))
    try:
        prod_identity = db.identity(conn)
    finally:
        conn.close()
    # The caller approved prod; a session on dev is another database: exit 3, nothing written.
    with pytest.raises(SafetyError, match=r"not .* that the safety rules approved") as info:
        migrations.apply(settings, "dev", expect=prod_identity)
    assert info.value.exit_code == 3
    assert applied_migrations(odd.dev_url) == []
    tables = execute(odd.dev_url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
    assert tables == [(0,)]  # not even yoyo's lock table


def test_an_unreachable_other_side_refuses_a_write(odd: Odd) -> None:
    odd.env["PROD_DATABASE_URL"] = f"postgresql://postgres@127.0.0.1:{free_port()}/x"
    code, out = odd.invoke("migrate", "apply", "--target", "dev")
    assert code == 3, out
    assert "cannot check that it is not the prod database" in out
    assert applied_migrations(odd.dev_url) == []

    settings = load_settings(environ={**odd.env})
    conn = db.connect(db.target(settings, "dev"))
    try:
        with pytest.raises(SafetyError, match="prod cannot be identified"):
            safety.approve_write(settings, db.target(settings, "dev"), conn)
    finally:
        conn.close()


def test_pg_dump_form_carries_no_password_and_reaches_the_database(odd: Odd) -> None:
    import subprocess

    url = odd.dev_url.replace("postgres@", "postgres:Pw%23x%40y@", 1)
    t = db.Target("dev", url, odd.dev_name)
    conninfo, env = db.subprocess_target(t, base={"PATH": "/usr/bin:/bin"})
    assert "Pw#x@y" not in conninfo and env["PGPASSWORD"] == "Pw#x@y"
    done = subprocess.run(
        ["psql", "-XAtc", "SELECT current_database()", "--dbname", conninfo],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == odd.dev_name


def test_a_snapshot_of_an_odd_name_carries_pg_dumps_schema_of_that_database(odd: Odd) -> None:
    """snapshot create runs pg_dump for schema.sql: it must reach the named database (not the
    decoy a cut name would reach, and not fall back to the catalog listing)."""
    execute(odd.dev_url, "CREATE TABLE only_in_dev (id int PRIMARY KEY)")
    execute(odd.decoy_url, "CREATE TABLE only_in_decoy (id int PRIMARY KEY)")
    code, out = odd.invoke("snapshot", "create", "--target", "dev", "--json")
    assert code == 0, out
    schema = (Path(json.loads(out)["path"]) / "schema.sql").read_text()
    assert "pg_dump could not be used" not in schema
    assert "CREATE TABLE public.only_in_dev" in schema
    assert "only_in_decoy" not in schema
