"""Issue #9 (pipelines): every promise of the prod pipelines holds under slips and races.

- a backup of the wrong database is refused, and a snapshot of another database is never
  restored into prod by accident (#9.1);
- an application write committed during a sync is never lost (#9.2);
- rollback undoes the last COMMITTED sync, whatever failed or was refused since (#9.11);
- a restore touches only what its own backup covers (#9.12);
- every command agrees on drift, and a dry run exits as the real run would (#9.14).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import psycopg2
import pytest

import dbtools
from dbtools import history, sync
from dbtools.config import load_settings

from support.db import execute
from support.pipeline import (
    HEAD,
    INSERT_USER,
    OLD,
    migrate,
    prod_backups,
    seed_dev,
    seed_stale_prod,
    state,
)
from support.project import REPO, Project


def _at_head(project: Project) -> None:
    migrate(project.dev_url)
    migrate(project.prod_url)
    seed_dev(project.dev_url)
    seed_stale_prod(project.prod_url)


def _behind(project: Project) -> None:
    migrate(project.dev_url)
    migrate(project.prod_url, OLD)
    seed_dev(project.dev_url)
    seed_stale_prod(project.prod_url)


def _history(url: str) -> list[tuple[str, str]]:
    conn = psycopg2.connect(url)
    try:
        return [(e.operation, e.backup_stamp or "") for e in history.entries(conn)]
    finally:
        conn.close()


# --- #9.1 the wrong database ---------------------------------------------------------------


def test_backup_of_dev_posing_as_prod_is_refused(project: Project) -> None:
    _at_head(project)
    project.env["PROD_DATABASE_URL"] = project.dev_url
    result = project.invoke("backup")
    assert result.exit_code == 3, result.output
    assert "refusing" in result.output
    assert prod_backups(project) == []
    assert not (project.snapshot_dir / "dev").exists()


def test_a_dev_snapshot_needs_allow_other_source_to_go_into_prod(project: Project) -> None:
    _at_head(project)
    made = project.invoke("snapshot", "create", "--target", "dev", "--json")
    assert made.exit_code == 0, made.output
    dev_snap = json.loads(made.output)["path"]
    before = state(project.prod_url)
    refused = project.invoke("restore", dev_snap, "--target", "prod", "--yes")
    assert refused.exit_code == 3, refused.output
    assert "source is unknown" in refused.output or "not of this prod" in refused.output
    assert "--allow-other-source" in refused.output
    assert state(project.prod_url) == before
    assert prod_backups(project) == []  # refused before the backup
    done = project.invoke("restore", dev_snap, "--target", "prod", "--yes", "--allow-other-source")
    assert done.exit_code == 0, done.output
    assert "--allow-other-source" in done.stderr  # it says what it did
    assert state(project.prod_url)["tables"]["User"] == state(project.dev_url)["tables"]["User"]


def test_a_manual_backup_of_unknown_source_is_refused_by_restore(project: Project) -> None:
    """A backup not recorded in prod's history, whose manifest names no source."""
    _at_head(project)
    made = sync.backup(load_settings(project.root))
    # As a manifest written before dbtools recorded the source looks.
    manifest = dbtools.snapshot.format.read_manifest(made.path)
    assert manifest.source is not None
    manifest.source = None
    dbtools.snapshot.format.write_manifest(made.path, manifest)
    result = project.invoke("restore", str(made.path), "--target", "prod", "--yes")
    assert result.exit_code == 3, result.output
    assert "source is unknown" in result.output


# --- #9.2 no committed write is lost ---------------------------------------------------------


class Writer:
    """The application: inserts Users in autocommit, one by one, noting each committed id."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.committed: list[str] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        conn = psycopg2.connect(self.url)
        conn.autocommit = True
        try:
            n = 0
            while not self.stop.is_set():
                n += 1
                uid = f"app-{n}"
                with conn.cursor() as cur:
                    cur.execute(INSERT_USER, (uid, "App", f"{uid}@example.com", False, "{CLIENT}"))
                self.committed.append(uid)
        except BaseException as exc:  # surfaced by the test
            self.error = exc
        finally:
            conn.close()

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=60)


def _user_ids_in_backup(path: Path) -> set[str]:
    frame = dbtools.read_snapshot(path, "User")
    return {str(x) for x in frame["id"]}


@pytest.mark.slow
@pytest.mark.parametrize("command", ["sync-data", "full-sync"])
def test_writes_committed_during_a_sync_are_in_the_backup_or_waited(
    project: Project, command: str
) -> None:
    if command == "sync-data":
        _at_head(project)
    else:
        _behind(project)
    with Writer(project.prod_url) as writer:
        result = project.invoke(command, "--yes", "--json")
    assert writer.error is None, writer.error
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    backup = Path(data["path"])
    in_backup = _user_ids_in_backup(backup)
    after = {r[0] for r in execute(project.prod_url, 'SELECT id FROM "User"')}
    lost = [u for u in writer.committed if u not in in_backup and u not in after]
    assert lost == [], f"{len(lost)} of {len(writer.committed)} committed writes lost"
    # the app really wrote before the backup and kept writing after the commit
    assert any(u in in_backup for u in writer.committed)
    assert any(u in after for u in writer.committed)


# --- #9.11 rollback undoes the last COMMITTED sync -------------------------------------------


def test_a_failed_sync_does_not_become_the_rollback_target(project: Project) -> None:
    _at_head(project)
    before = state(project.prod_url)
    assert project.invoke("sync-data", "--yes").exit_code == 0
    (committed_backup,) = prod_backups(project)
    # the next sync fails its checks: rolled back, but it took a backup of the synced state
    execute(project.dev_url, INSERT_USER, ("ai", "Old", "liam@buildappswith.ai", False, "{CLIENT}"))
    failed = project.invoke("sync-data", "--yes")
    assert failed.exit_code == 1, failed.output
    assert len(prod_backups(project)) == 2
    settings = load_settings(project.root)
    assert sync.rollback_target(settings) == committed_backup
    result = project.invoke("rollback", "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["restored"] == str(committed_backup)
    assert state(project.prod_url) == before
    ops = [op for op, _ in _history(project.prod_url)]
    assert ops == ["rollback", "sync-data"]
    assert sync.rollback_target(settings) is None


def test_prune_keeps_the_backup_prods_history_will_roll_back_to(project: Project) -> None:
    """The archive alone would keep the newest backup (the failed run's) as rollback's
    target; prod's history names the older one, and prune must keep that."""
    _at_head(project)
    before = state(project.prod_url)
    assert project.invoke("sync-data", "--yes").exit_code == 0
    (committed_backup,) = prod_backups(project)
    execute(project.dev_url, INSERT_USER, ("ai", "Old", "liam@buildappswith.ai", False, "{CLIENT}"))
    assert project.invoke("sync-data", "--yes").exit_code == 1
    cfg = project.root / "setup.cfg"
    cfg.write_text(cfg.read_text() + "retention_days = 0\nkeep_min = 0\n")
    dry = project.invoke("snapshot", "prune", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert f"keep {committed_backup} (rollback's target, as prod's history records it" in dry.output
    pruned = project.invoke("snapshot", "prune", "--yes")
    assert pruned.exit_code == 0, pruned.output
    assert committed_backup.is_dir()
    result = project.invoke("rollback", "--yes")
    assert result.exit_code == 0, result.output
    assert state(project.prod_url) == before


def test_history_is_outside_the_schema_fingerprint(project: Project) -> None:
    _at_head(project)
    assert project.invoke("sync-data", "--yes").exit_code == 0
    assert _history(project.prod_url)[0][0] == "sync-data"
    assert state(project.prod_url)["fingerprint"] == state(project.dev_url)["fingerprint"]
    assert project.invoke("sync-data", "--yes").exit_code == 0  # schemas still match


@pytest.mark.parametrize("why", ["busy", "drift", "mismatch"])
def test_refused_sync_takes_no_backup(project: Project, why: str) -> None:
    _at_head(project)
    if why == "mismatch":
        execute(project.prod_url, 'ALTER TABLE "App" ADD COLUMN extra int')
    if why == "drift":
        mig = project.root / "migrations"
        import shutil

        shutil.copytree(REPO / "migrations", mig)
        cfg = project.root / "setup.cfg"
        cfg.write_text(cfg.read_text().replace(str(REPO / "migrations"), str(mig)))
        with (mig / f"{HEAD}.sql").open("a") as fh:
            fh.write("\n-- edited after it was applied\n")
    before = state(project.prod_url)
    holder = psycopg2.connect(project.prod_url)
    try:
        if why == "busy":
            with holder.cursor() as cur:  # an application transaction that has written
                cur.execute('LOCK TABLE "App" IN ROW EXCLUSIVE MODE')
        result = project.invoke("sync-data", "--yes")
    finally:
        holder.rollback()
        holder.close()
    expected = {"busy": 3, "drift": 1, "mismatch": 3}[why]
    assert result.exit_code == expected, result.output
    if why == "drift":
        assert HEAD in result.output and "changed since they were applied" in result.output
    assert prod_backups(project) == []
    assert state(project.prod_url) == before


# --- #9.12 a restore touches only what its backup covers ---------------------------------------


def test_restore_of_a_snapshot_with_more_schemas_is_refused(project: Project) -> None:
    _at_head(project)
    execute(project.prod_url, "CREATE SCHEMA extra; CREATE TABLE extra.t (id int primary key)")
    execute(project.prod_url, "INSERT INTO extra.t VALUES (1), (2)")
    cfg = project.root / "setup.cfg"
    plain = cfg.read_text()
    cfg.write_text(plain + "schemas = public, extra\n")
    wide = sync.backup(load_settings(project.root)).path
    cfg.write_text(plain)
    execute(project.prod_url, "INSERT INTO extra.t VALUES (3)")
    before = state(project.prod_url)
    result = project.invoke(
        "restore", str(wide), "--target", "prod", "--yes", "--allow-other-source"
    )
    assert result.exit_code == 3, result.output
    assert "schema extra" in result.output
    assert execute(project.prod_url, "SELECT count(*) FROM extra.t") == [(3,)]
    assert state(project.prod_url) == before
    assert prod_backups(project) == [wide]


# --- #9.14 every command agrees, and a dry run exits as the real run -------------------------


def _drift(project: Project) -> None:
    import shutil

    mig = project.root / "migrations"
    shutil.copytree(REPO / "migrations", mig)
    cfg = project.root / "setup.cfg"
    cfg.write_text(cfg.read_text().replace(str(REPO / "migrations"), str(mig)))
    with (mig / f"{OLD}.sql").open("a") as fh:
        fh.write("\n-- edited after it was applied\n")


@pytest.mark.parametrize("command", ["sync-data", "full-sync", "rollback"])
def test_drift_refuses_every_pipeline(project: Project, command: str) -> None:
    _at_head(project)
    _drift(project)
    before = state(project.prod_url)
    result = project.invoke(command, "--yes")
    assert result.exit_code == 1, result.output
    assert OLD in result.output and "changed" in result.output
    assert state(project.prod_url) == before
    assert prod_backups(project) == []


@pytest.mark.parametrize(
    "setup, command, code",
    [
        ("drift", "full-sync", 1),
        ("drift", "sync-data", 1),
        ("prod_ahead", "full-sync", 3),
        ("behind", "sync-data", 3),
    ],
)
def test_dry_run_exits_as_the_real_run(
    project: Project, setup: str, command: str, code: int
) -> None:
    if setup == "behind":
        _behind(project)
    else:
        _at_head(project)
    if setup == "drift":
        _drift(project)
    if setup == "prod_ahead":
        from dbtools import migrations

        migrations.rollback(load_settings(project.root), "dev", ids=[HEAD])
    before = state(project.prod_url)
    dry = project.invoke(command, "--dry-run")
    real = project.invoke(command, "--yes")
    assert real.exit_code == code, real.output
    assert dry.exit_code == code, dry.output
    assert "the real run would stop here" in dry.output
    assert state(project.prod_url) == before
    assert prod_backups(project) == []


# --- #9.6 rollback and full-sync are one transaction: refuse what cannot run in one ----------


def _own_migrations(project: Project, extra_sql: str, rollback_sql: str | None) -> Path:
    import shutil

    mig = project.root / "migrations"
    shutil.copytree(REPO / "migrations", mig)
    cfg = project.root / "setup.cfg"
    cfg.write_text(cfg.read_text().replace(str(REPO / "migrations"), str(mig)))
    (mig / "0004_extra.sql").write_text(f"-- depends: {HEAD}\n{extra_sql}\n")
    if rollback_sql is not None:
        (mig / "0004_extra.rollback.sql").write_text(rollback_sql)
    return mig


def test_full_sync_refuses_a_non_transactional_migration_up_front(project: Project) -> None:
    mig = _own_migrations(
        project,
        '-- transactional: false\nCREATE INDEX CONCURRENTLY "App_extra_idx" ON "App" (title);',
        'DROP INDEX CONCURRENTLY "App_extra_idx";\n',
    )
    from dbtools import migrations

    migrations.apply_all(project.dev_url, mig)
    migrate(project.prod_url)
    seed_dev(project.dev_url)
    seed_stale_prod(project.prod_url)
    before = state(project.prod_url)
    result = project.invoke("full-sync", "--yes")
    assert result.exit_code == 3, result.output
    assert "0004_extra" in result.output and "transactional: false" in result.output
    assert state(project.prod_url) == before
    assert prod_backups(project) == []


def test_rollback_refuses_an_empty_rollback_file_up_front(project: Project) -> None:
    _own_migrations(project, 'ALTER TABLE "User" ADD COLUMN note text;', "-- nothing yet\n")
    migrate(project.dev_url)  # the project's own dir is the repo's plus 0004
    from dbtools import migrations

    mig = project.root / "migrations"
    migrations.apply_all(project.dev_url, mig)
    migrations.apply_all(project.prod_url, mig, upto=HEAD)
    seed_dev(project.dev_url)
    seed_stale_prod(project.prod_url)
    assert project.invoke("full-sync", "--yes").exit_code == 0  # applies 0004 on prod
    synced = state(project.prod_url)
    backups = prod_backups(project)
    result = project.invoke("rollback", "--yes")
    assert result.exit_code == 3, result.output
    assert "0004_extra" in result.output and "no statements" in result.output
    assert state(project.prod_url) == synced  # not half done: nothing done
    assert prod_backups(project) == backups


def test_rollback_across_a_migration_that_dropped_a_table(project: Project) -> None:
    """The undone migration recreates the table inside the transaction; the load refills it."""
    create = (
        'CREATE TABLE "CapabilityRequirement" (\n    "id" TEXT NOT NULL,\n'
        '    "capabilityId" TEXT NOT NULL,\n    "description" TEXT NOT NULL,\n'
        '    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,\n'
        '    CONSTRAINT "CapabilityRequirement_pkey" PRIMARY KEY ("id")\n);\n'
        'ALTER TABLE "CapabilityRequirement" ADD CONSTRAINT '
        '"CapabilityRequirement_capabilityId_fkey" FOREIGN KEY ("capabilityId") '
        'REFERENCES "AICapability"("id") ON DELETE CASCADE ON UPDATE CASCADE;\n'
    )
    # the drop is meant: said in the file, or the data-loss check refuses it (exit 3)
    drop = (
        '-- dbtools: allow drop-table "CapabilityRequirement": the test drops it on purpose\n'
        'DROP TABLE "CapabilityRequirement";'
    )
    mig = _own_migrations(project, drop, create)
    from dbtools import migrations

    migrations.apply_all(project.dev_url, mig)
    migrations.apply_all(project.prod_url, mig, upto=HEAD)
    seed_dev(project.dev_url)
    seed_stale_prod(project.prod_url)
    execute(
        project.prod_url,
        'INSERT INTO "AICapability" (id, name, domain, description, "updatedAt") '
        "VALUES ('cap', 'Cap', 'd', 'x', now())",
    )
    execute(
        project.prod_url,
        'INSERT INTO "CapabilityRequirement" (id, "capabilityId", '
        "description) VALUES ('r1', 'cap', 'kept by the backup')",
    )
    before = state(project.prod_url)
    assert project.invoke("full-sync", "--yes").exit_code == 0
    result = project.invoke("rollback", "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["migrations_rolled_back"] == ["0004_extra"]
    assert state(project.prod_url) == before


@pytest.mark.parametrize("command", ["sync-data", "full-sync"])
def test_dry_run_reports_a_busy_table_as_the_real_run(project: Project, command: str) -> None:
    _at_head(project)
    before = state(project.prod_url)
    holder = psycopg2.connect(project.prod_url)
    try:
        with holder.cursor() as cur:  # an application transaction that has written
            cur.execute('LOCK TABLE "App" IN ROW EXCLUSIVE MODE')
        dry = project.invoke(command, "--dry-run")
        real = project.invoke(command, "--yes")
    finally:
        holder.rollback()
        holder.close()
    assert real.exit_code == 3, real.output
    assert dry.exit_code == 3, dry.output
    assert "public.App is locked" in dry.output and "public.App is locked" in real.output
    assert state(project.prod_url) == before
    assert prod_backups(project) == []
