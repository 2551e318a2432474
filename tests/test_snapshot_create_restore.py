"""snapshot create -> restore: identical contents, sequences, preserved rows, all or nothing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from dbtools import db, migrations
from dbtools.errors import VerificationFailed
from dbtools.snapshot import format as fmt
from dbtools.snapshot import read_snapshot
from dbtools.snapshot.create import create_snapshot
from dbtools.snapshot.query import query_snapshot
from dbtools.snapshot.restore import load_snapshot

from support.db import execute, granted
from support.project import REPO, Project
from support.snapshot import TABLES, only_snapshot, settings_for, setup_schema, table_digests


@pytest.fixture
def synced(project: Project) -> Project:
    """dev with data, prod with the same schema and other data."""
    setup_schema(project.dev_url)
    setup_schema(project.prod_url, data=False)
    execute(
        project.prod_url,
        "INSERT INTO \"User\" (id, email) VALUES ('p1', 'liam@buildappswith.ai');"
        "INSERT INTO \"Account\" VALUES ('prod-acc', 'p1', 'github');",
    )
    return project


def _create(project: Project, env: str = "dev") -> Path:
    result = project.invoke("snapshot", "create", "--target", env, "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["ok"] is True
    return Path(payload["path"])


def test_snapshot_then_restore_gives_identical_tables(synced: Project) -> None:
    path = _create(synced)
    assert path.parent == synced.snapshot_dir / "dev"
    assert fmt.is_stamp(path.name)
    result = synced.invoke(
        "restore", str(path), "--target", "prod", "--allow-other-source", "--yes", "--json"
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["path"] == str(path.resolve())
    # Prod is written only after a fresh backup of it: that backup holds prod's old rows.
    backup = Path(payload["backup"]["path"])
    assert backup.parent == synced.snapshot_dir / "prod"
    assert fmt.read_manifest(backup).table("User").rows == 1
    assert table_digests(synced.prod_url) == table_digests(synced.dev_url)
    # Sequences follow the data: the next serial and identity values continue after the rows.
    assert execute(synced.prod_url, "SELECT nextval('\"Counter_n_seq\"')") == [(26,)]
    assert execute(synced.prod_url, 'INSERT INTO "Ticket" (note) VALUES (1) RETURNING id') == [(4,)]
    # The temporarily deferred FK of the cycle is back to what the schema says.
    rows = execute(
        synced.prod_url,
        "SELECT condeferrable FROM pg_constraint "
        "WHERE conname = 'BuilderProfile_featuredAppId_fkey'",
    )
    assert rows == [(False,)]


def test_manifest_describes_the_database(synced: Project) -> None:
    execute(synced.dev_url, "CREATE TABLE _yoyo_migration (migration_id text)")
    with (synced.root / "setup.cfg").open("a") as fh:
        fh.write("excluded_tables = Ticket\n")
    path = _create(synced)
    manifest = fmt.read_manifest(path)
    assert sorted(t.name for t in manifest.tables.values()) == sorted(set(TABLES) - {"Ticket"})
    assert manifest.excluded_tables == ["public.Ticket"]
    assert manifest.bookkeeping_tables == ["public._yoyo_migration"]
    assert manifest.env == "dev" and manifest.database == synced.dev_name
    assert "postgres@" not in (path / fmt.MANIFEST).read_text()
    user = manifest.table("User")
    assert user.rows == 4
    types = {c["name"]: c for c in user.columns}
    assert types["roles"]["pg_type"] == '"UserRole"[]'
    assert types["roles"]["enum_labels"] == ["CLIENT", "BUILDER", "ADMIN"]
    assert types["createdAt"]["pg_type"] == "timestamp(3) without time zone"
    for rel, checksum in user.files.items():
        assert fmt.sha256_file(path / rel) == checksum
    counter = manifest.table("Counter")
    assert [s["last_value"] for s in counter.sequences] == [25]
    assert "doubled" not in {c["name"] for c in counter.columns}
    assert 'CREATE TABLE public."User"' in (path / fmt.SCHEMA_SQL).read_text()
    assert manifest.schema_objects and manifest.schema_fingerprint.startswith("sha256:")
    assert not [p for p in (synced.snapshot_dir / "dev").iterdir() if p.name.startswith(".")]


def test_backup_writes_prod_snapshot(synced: Project) -> None:
    result = synced.invoke("backup", "--json")
    assert result.exit_code == 0, result.output
    path = Path(json.loads(result.output)["path"])
    assert path.parent == synced.snapshot_dir / "prod"
    assert fmt.read_manifest(path).table("User").rows == 1


def test_preserved_rows_survive_the_load(synced: Project) -> None:
    path = _create(synced)
    # prod's login must survive; its user must exist in the snapshot, so give dev a p1 too.
    execute(synced.dev_url, "INSERT INTO \"User\" (id, email) VALUES ('p1', 'x@example.com')")
    path = _create(synced)
    settings = settings_for(synced.root)
    conn = db.connect(db.target(settings, "prod"), purpose="write", settings=settings)
    try:
        with granted(conn):
            result = load_snapshot(conn, path, settings=settings, preserved=["Account"])
    finally:
        conn.close()
    assert result.tables["public.Account"]["preserved"] is True
    assert execute(synced.prod_url, 'SELECT id FROM "Account"') == [("prod-acc",)]
    assert execute(synced.prod_url, 'SELECT count(*) FROM "User"') == [(5,)]


def test_preserved_rows_without_parent_refuse_and_keep_target(synced: Project) -> None:
    path = _create(synced)  # dev has no user p1, prod's Account row references it
    before = table_digests(synced.prod_url)
    settings = settings_for(synced.root)
    conn = db.connect(db.target(settings, "prod"), purpose="write", settings=settings)
    try:
        with (
            granted(conn),
            pytest.raises(VerificationFailed, match=r"1 preserved rows of public.Account"),
        ):
            load_snapshot(conn, path, settings=settings, preserved=["public.Account"])
    finally:
        conn.close()
    assert table_digests(synced.prod_url) == before


def test_failing_before_commit_rolls_everything_back(synced: Project) -> None:
    path = _create(synced)
    before = table_digests(synced.prod_url)
    settings = settings_for(synced.root)
    seen: list[int] = []

    def check(conn: object) -> None:
        with conn.cursor() as cur:  # type: ignore[attr-defined]
            cur.execute('SELECT count(*) FROM "User"')
            seen.append(cur.fetchone()[0])
        raise VerificationFailed("marketplace check failed")

    conn = db.connect(db.target(settings, "prod"), purpose="write", settings=settings)
    try:
        with granted(conn), pytest.raises(VerificationFailed, match="marketplace check failed"):
            load_snapshot(conn, path, settings=settings, before_commit=check)
    finally:
        conn.close()
    assert seen == [4]  # the check saw the loaded data ...
    assert table_digests(synced.prod_url) == before  # ... and none of it was committed


def test_restore_without_yes_and_without_terminal_refuses(synced: Project) -> None:
    path = _create(synced)
    before = table_digests(synced.prod_url)
    result = synced.invoke("restore", str(path), "--target", "prod", "--allow-other-source")
    assert result.exit_code == 4
    assert "--yes" in result.output
    assert table_digests(synced.prod_url) == before


def test_restore_refuses_a_database_with_the_wrong_name(synced: Project) -> None:
    path = _create(synced)
    env = {**synced.env, "PROD_DATABASE_URL": synced.dev_url}
    from click.testing import CliRunner

    from dbtools.cli import main

    result = CliRunner().invoke(
        main, ["restore", str(path), "--target", "prod", "--allow-other-source", "--yes"], env=env
    )
    assert result.exit_code == 3
    assert "refusing" in result.output


def test_read_snapshot_and_query_for_analysts(synced: Project) -> None:
    path = _create(synced)
    frame = read_snapshot(path, "BuilderProfile")
    assert len(frame) == 3
    assert str(frame["adhd_focus"].dtype) == "boolean"
    users = read_snapshot(path, "public.User")
    assert str(users["createdAt"].dtype).startswith("datetime64")
    counter = read_snapshot(path, "Counter")
    assert str(counter["n"].dtype) == "Int32"
    from decimal import Decimal

    rates = dict(zip(frame["id"], frame["hourlyRate"], strict=True))
    assert rates["b1"] == Decimal("125.50")
    out = query_snapshot(path, 'SELECT count(*) AS n FROM "User" WHERE "isDemo"')
    assert out.columns == ["n"] and out.rows == [[1]]
    result = synced.invoke(
        "snapshot", "query", str(path), 'SELECT id, logo FROM "App" ORDER BY id', "--json"
    )
    assert result.exit_code == 0, result.output
    # bytea is the bytes in the file and PostgreSQL's \x form on screen and in JSON
    assert json.loads(result.output)["rows"] == [["a1", "\\xdeadbeef00"], ["a2", None]]
    assert read_snapshot(path, "App")["logo"].tolist() == [b"\xde\xad\xbe\xef\x00", None]


def test_empty_schema_is_a_valid_empty_snapshot(project: Project) -> None:
    settings = settings_for(project.root)
    result = create_snapshot(settings, "dev")
    assert result.tables == 0 and result.verified
    assert result.notes == ["no tables in schemas public"]
    assert only_snapshot(project.snapshot_dir, "dev") == result.path


def test_demo_data_round_trip_into_an_empty_migrated_database(project: Project) -> None:
    """The issue's definition of done: per-table md5 of the ordered row text is equal."""
    sys.path.insert(0, str(REPO / "scripts"))
    import seed_demo

    for url in (project.dev_url, project.prod_url):
        migrations.apply_all(url, REPO / "migrations")
    seed_demo.seed(project.dev_url)
    names = [
        r[0]
        for r in execute(
            project.dev_url,
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename NOT LIKE '%%yoyo%%' AND tablename NOT LIKE '_dbtools%%'",
        )
    ]
    assert len(names) >= 20
    path = _create(project)
    manifest = fmt.read_manifest(path)
    assert manifest.migrations == migrations.migration_ids(REPO / "migrations")
    assert "public._yoyo_migration" in manifest.bookkeeping_tables
    result = project.invoke(
        "restore", str(path), "--target", "prod", "--allow-other-source", "--yes"
    )
    assert result.exit_code == 0, result.output
    dev, prod = table_digests(project.dev_url, names), table_digests(project.prod_url, names)
    assert dev == prod
    assert dev["BuilderProfile"][0] == 18


def test_restore_into_dev_from_a_prod_backup(synced: Project) -> None:
    backup = synced.invoke("backup", "--json")
    assert backup.exit_code == 0, backup.output
    stamp = Path(json.loads(backup.output)["path"]).name
    result = synced.invoke("restore", stamp, "--target", "dev", "--yes", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["env"] == "dev" and payload["load"]["tables"]["public.User"]["rows_before"] == 4
    assert table_digests(synced.dev_url) == table_digests(synced.prod_url)


def test_restore_into_dev_refuses_when_prod_cannot_be_identified(synced: Project) -> None:
    """Restoring dev with prod's URL set but prod down used to warn and write anyway: the
    rule "dev and prod are two databases" was skipped. It is a refusal now, nothing written."""
    from support.pgpeer import free_port

    path = _create(synced)
    execute(synced.dev_url, 'DELETE FROM "Ticket"')
    before = table_digests(synced.dev_url)
    synced.env["PROD_DATABASE_URL"] = f"postgresql://postgres@127.0.0.1:{free_port()}/x"
    result = synced.invoke("restore", str(path), "--target", "dev", "--yes")
    assert result.exit_code == 3, result.output
    assert "cannot check that it is not the prod database" in result.output
    assert table_digests(synced.dev_url) == before
