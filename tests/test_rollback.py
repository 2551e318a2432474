"""`dbtools rollback`: the newest verified prod backup back into prod, migrations first."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from dbtools import migrations, sync
from dbtools.config import load_settings
from dbtools.errors import SafetyError
from dbtools.snapshot import format as fmt
from dbtools.sync import provenance

from support.db import execute
from support.pipeline import (
    HEAD,
    OLD,
    migrate,
    prod_backups,
    seed_dev,
    seed_stale_prod,
    state,
    synced_state,
)
from support.project import REPO, Project


def _behind(project: Project) -> None:
    migrate(project.dev_url)
    migrate(project.prod_url, OLD)
    seed_dev(project.dev_url)
    seed_stale_prod(project.prod_url)


def _corrupt(snapshot: Path) -> None:
    victim = next(snapshot.glob("*BuilderProfile*.parquet"))
    victim.write_bytes(b"garbage" + victim.read_bytes()[7:])


def test_sync_then_rollback_restores_prod_exactly(project: Project) -> None:
    """(e) full-sync migrated prod and replaced its data; rollback undoes both exactly."""
    _behind(project)
    before = state(project.prod_url)
    dev_before = state(project.dev_url)
    assert project.invoke("full-sync", "--yes").exit_code == 0
    assert state(project.prod_url) != before
    assert state(project.prod_url) == synced_state(project.dev_url, before)
    result = project.invoke("rollback", "--yes", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["migrations_rolled_back"] == [HEAD]
    assert data["restored"] == str(prod_backups(project)[0])
    assert state(project.prod_url) == before
    # the rollback itself was preceded by a backup of prod as it was (synced)
    assert len(prod_backups(project)) == 2
    assert fmt.read_manifest(Path(data["backup"]["path"])).migrations[-1] == HEAD
    assert state(project.dev_url) == dev_before  # (g)


def test_rollback_human_output_says_how_to_undo_it(project: Project) -> None:
    _behind(project)
    assert project.invoke("full-sync", "--yes").exit_code == 0
    result = project.invoke("rollback", "--yes")
    assert result.exit_code == 0, result.output
    assert f"migrations rolled back first: {HEAD}" in result.output
    assert "to undo the rollback: dbtools restore" in result.output


def test_corrupt_newest_backup_refuses_and_names_the_next_good_one(project: Project) -> None:
    """(f) the last committed sync's backup is damaged: refused, naming the one that verifies."""
    _behind(project)
    migrate(project.prod_url)
    assert project.invoke("sync-data", "--yes").exit_code == 0
    execute(project.dev_url, "UPDATE \"User\" SET name = 'Changed' WHERE id = 'u1'")
    assert project.invoke("sync-data", "--yes").exit_code == 0
    older, newer = prod_backups(project)
    _corrupt(newer)
    before = state(project.prod_url)
    result = project.invoke("rollback", "--yes")
    assert result.exit_code == 3, result.output
    assert str(newer) in result.output
    assert f"the newest backup that verifies is {older}" in result.output
    assert state(project.prod_url) == before
    assert prod_backups(project) == [older, newer]  # no new backup either


def test_no_committed_sync_no_rollback(project: Project) -> None:
    """A backup alone (not recorded by a committed sync in prod's history) is no target."""
    _behind(project)
    sync.backup(load_settings(project.root))
    backups = prod_backups(project)
    before = state(project.prod_url)
    result = project.invoke("rollback", "--yes")
    assert result.exit_code == 3
    assert "records no committed sync-data, full-sync or restore" in result.output
    assert state(project.prod_url) == before
    assert prod_backups(project) == backups


def test_backup_with_migrations_prod_no_longer_has_is_refused(project: Project) -> None:
    migrate(project.dev_url)
    migrate(project.prod_url)
    seed_stale_prod(project.prod_url)
    seed_dev(project.dev_url)
    settings = load_settings(project.root)
    assert project.invoke("sync-data", "--yes").exit_code == 0  # its backup: taken at head
    sync.migrate_prod(settings, "rollback", ids=[HEAD])  # backs prod up first, as it must
    before = state(project.prod_url)
    result = project.invoke("rollback", "--yes")
    assert result.exit_code == 3, result.output
    assert f"migrations prod no longer has: {HEAD}" in result.output
    assert state(project.prod_url) == before


def test_migration_without_rollback_file_blocks_and_is_listed(project: Project) -> None:
    mig = project.root / "migrations"
    shutil.copytree(REPO / "migrations", mig)
    cfg = project.root / "setup.cfg"
    cfg.write_text(
        "\n".join(
            f"migrations_dir = {mig}" if line.startswith("migrations_dir") else line
            for line in cfg.read_text().splitlines()
        )
        + "\n"
    )
    migrate(project.dev_url)
    migrate(project.prod_url)
    seed_stale_prod(project.prod_url)
    seed_dev(project.dev_url)
    assert project.invoke("sync-data", "--yes").exit_code == 0
    (mig / "0004_note.sql").write_text(
        f'-- depends: {HEAD}\nALTER TABLE "User" ADD COLUMN note text;\n'
    )
    migrations.apply_all(project.prod_url, mig)
    before = state(project.prod_url)
    result = project.invoke("rollback", "--yes")
    assert result.exit_code == 3, result.output
    assert "0004_note has no rollback file" in result.output
    assert state(project.prod_url) == before


def test_restore_prod_backs_up_first_and_restores_exactly(project: Project) -> None:
    migrate(project.dev_url)
    migrate(project.prod_url)
    seed_stale_prod(project.prod_url)
    seed_dev(project.dev_url)
    settings = load_settings(project.root)
    original = state(project.prod_url)
    synced = sync.sync_data(settings)
    assert isinstance(synced, sync.SyncResult)
    first = synced.backup.path  # a backup of this prod, recorded in prod's history
    execute(project.prod_url, 'DELETE FROM "BuilderProfile"')  # prod changes after the backup
    execute(project.prod_url, "UPDATE \"User\" SET email = 'x@example.com' WHERE id = 'liam'")
    changed = state(project.prod_url)
    result = sync.restore_prod(settings, first)
    assert state(project.prod_url) == original
    assert result.backup.path != first
    # the backup taken before the restore holds prod as it was just before (no profiles)
    assert fmt.read_manifest(result.backup.path).tables["public.BuilderProfile"].rows == 0
    assert result.warnings == []
    assert changed != original


def _resign(path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    from support.archive import rewrite_manifest

    rewrite_manifest(path, edit)


def test_a_recorded_backup_replaced_by_another_valid_one_is_refused(project: Project) -> None:
    """Prod's history records each backup's manifest checksum: a consistent but different
    manifest under the recorded path (an edited reason, say) is not rollback's target."""
    _behind(project)
    assert project.invoke("full-sync", "--yes").exit_code == 0
    (backup,) = prod_backups(project)
    _resign(backup, lambda data: data.update(reason="edited later"))
    assert fmt.verify_dir(backup)[1] == []  # it verifies on its own
    before = state(project.prod_url)
    result = project.invoke("rollback", "--yes")
    assert result.exit_code == 3, result.output
    assert f"{backup} is not the backup prod's history recorded" in result.output
    assert state(project.prod_url) == before
    assert prod_backups(project) == [backup]  # refused before a backup was taken


def test_a_recorded_backup_of_another_database_is_refused(project: Project) -> None:
    """Where history holds no checksum (rows written before it did), the source identity in
    the manifest still decides: a backup of another database never reaches prod."""
    _behind(project)
    assert project.invoke("full-sync", "--yes").exit_code == 0
    (backup,) = prod_backups(project)
    execute(project.prod_url, "UPDATE _dbtools.history SET backup_sha256 = NULL")

    def foreign(data: dict[str, Any]) -> None:
        data["source"] = {**data["source"], "system_identifier": "1", "database": "elsewhere"}

    _resign(backup, foreign)
    before = state(project.prod_url)
    result = project.invoke("rollback", "--yes")
    assert result.exit_code == 3, result.output
    assert f"refusing to roll back to {backup.name}" in result.output
    assert state(project.prod_url) == before
    assert prod_backups(project) == [backup]


def test_a_backup_that_misses_what_the_load_replaces_is_refused(project: Project) -> None:
    """The check after the pre-write backup: a snapshot covering a schema the backup does not
    hold is refused by name (the load would replace data no backup has)."""
    _behind(project)
    migrate(project.prod_url)
    settings = load_settings(project.root)
    made = sync.backup(settings)
    wider = fmt.read_manifest(made.path)
    wider.schemas = [*wider.schemas, "app"]
    conn = psycopg2.connect(project.prod_url)
    try:
        with pytest.raises(SafetyError) as info:
            provenance.assert_backup_covers(conn, made, wider, "restore into prod")
    finally:
        conn.close()
    assert info.value.exit_code == 3
    assert "does not hold schema app, which the load would replace" in info.value.message
