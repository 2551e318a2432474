"""`dbtools rollback`: the newest verified prod backup back into prod, migrations first."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from test_sync_data import HEAD, OLD, migrate, prod_backups, seed_dev, seed_stale_prod, state

from dbtools import migrations, sync
from dbtools.config import load_settings
from dbtools.snapshot import format as fmt

from conftest import REPO, Project, execute


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
    """(f)"""
    _behind(project)
    settings = load_settings(project.root)
    older = sync.backup(settings).path
    newer = sync.backup(settings).path
    assert older != newer
    _corrupt(newer)
    before = state(project.prod_url)
    result = project.invoke("rollback", "--yes")
    assert result.exit_code == 3, result.output
    assert str(newer) in result.output
    assert f"the newest backup that verifies is {older}" in result.output
    assert state(project.prod_url) == before
    assert prod_backups(project) == sorted([older, newer])  # no new backup either


def test_no_backup_at_all(project: Project) -> None:
    _behind(project)
    result = project.invoke("rollback", "--yes")
    assert result.exit_code == 1
    assert "no verified prod backup" in result.output


def test_backup_with_migrations_prod_no_longer_has_is_refused(project: Project) -> None:
    migrate(project.dev_url)
    migrate(project.prod_url)
    seed_stale_prod(project.prod_url)
    settings = load_settings(project.root)
    sync.backup(settings)  # taken at head
    migrations.rollback(settings, "prod", ids=[HEAD])
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
    settings = load_settings(project.root)
    sync.backup(settings)
    (mig / "0004_note.sql").write_text(
        f'-- depends: {HEAD}\nALTER TABLE "User" ADD COLUMN note text;\n'
    )
    migrations.apply_all(project.prod_url, mig)
    before = state(project.prod_url)
    result = project.invoke("rollback", "--yes")
    assert result.exit_code == 3, result.output
    assert "no rollback file: 0004_note" in result.output
    assert state(project.prod_url) == before


def test_restore_prod_backs_up_first_and_restores_exactly(project: Project) -> None:
    migrate(project.dev_url)
    migrate(project.prod_url)
    seed_stale_prod(project.prod_url)
    settings = load_settings(project.root)
    first = sync.backup(settings).path
    original = state(project.prod_url)
    execute(project.prod_url, 'DELETE FROM "BuilderProfile"')  # prod changes after the backup
    execute(project.prod_url, "UPDATE \"User\" SET email = 'x@example.com'")
    changed = state(project.prod_url)
    result = sync.restore_prod(settings, first)
    assert state(project.prod_url) == original
    assert result.backup.path != first
    # the backup taken before the restore holds prod as it was just before (no profiles)
    assert fmt.read_manifest(result.backup.path).tables["public.BuilderProfile"].rows == 0
    assert changed != original
