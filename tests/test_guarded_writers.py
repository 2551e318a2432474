"""Every public writer of the library is guarded (#11.1): called directly against prod, outside
the guard's write session, each refuses (SafetyError, exit 3) before it writes anything, so
prod's rows, schema and migrations are byte-identical and no backup was taken; inside the
session each one writes, and only after a verified backup of prod."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg2
import pytest

from dbtools import db, migrations, permit, schema_sync, sync
from dbtools.config import Settings, load_settings
from dbtools.errors import EXIT_SAFETY, SafetyError
from dbtools.snapshot import format as fmt
from dbtools.snapshot import restore
from dbtools.snapshot.create import create_snapshot

from support.pipeline import HEAD, OLD, migrate, prod_backups, seed_dev, seed_stale_prod, state
from support.project import Project

Writer = Callable[[Settings, Path], object]


def _load_on_prod(settings: Settings, path: Path) -> object:
    conn = db.connect(db.target(settings, "prod"), purpose="write", settings=settings)
    try:
        return restore.load_snapshot(conn, path, settings=settings)
    finally:
        conn.close()


# Every public function under dbtools/ that can write a database given prod's settings or a
# connection to it. (sync's pipelines are the guard's own users; migrations.apply_all takes a
# bare URL and is the test/demo preparer, never given settings.)
WRITERS: dict[str, Writer] = {
    "migrations.apply": lambda s, _p: migrations.apply(s, "prod"),
    "migrations.rollback": lambda s, _p: migrations.rollback(s, "prod"),
    "migrations.mark": lambda s, _p: migrations.mark(s, "prod"),
    "schema_sync.sync_schema": lambda s, _p: schema_sync.sync_schema(s),
    "restore.restore": lambda s, p: restore.restore(s, p, "prod"),
    "restore.load_snapshot": _load_on_prod,
}


@pytest.fixture
def behind(project: Project) -> tuple[Project, Path]:
    """prod one migration behind dev, with its own data; a snapshot of dev to load."""
    migrate(project.dev_url)
    migrate(project.prod_url, OLD)
    seed_dev(project.dev_url)
    seed_stale_prod(project.prod_url)
    settings = load_settings(project.root)
    return project, create_snapshot(settings, "dev").path


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_a_writer_called_outside_the_guard_refuses_and_prod_is_unchanged(
    behind: tuple[Project, Path], name: str
) -> None:
    project, snapshot = behind
    before = state(project.prod_url)
    with pytest.raises(SafetyError) as info:
        WRITERS[name](load_settings(project.root), snapshot)
    assert info.value.exit_code == EXIT_SAFETY
    assert "refusing to" in info.value.message and "nothing was changed" in info.value.message
    assert state(project.prod_url) == before
    assert prod_backups(project) == []


@pytest.mark.parametrize("name", ["migrations.apply", "migrations.mark", "schema_sync.sync_schema"])
def test_inside_the_guard_a_writer_writes_after_a_verified_backup(
    behind: tuple[Project, Path], name: str
) -> None:
    project, snapshot = behind
    settings = load_settings(project.root)
    with sync.guarded_prod_write(settings, what=f"test {name}", progress=None):
        WRITERS[name](settings, snapshot)
    (backup,) = prod_backups(project)
    assert fmt.verify_dir(backup)[1] == []
    # the backup is of prod as it was before the write: one migration behind
    assert fmt.read_manifest(backup).migrations[-1] == OLD
    conn = psycopg2.connect(project.prod_url)
    try:
        assert migrations.applied_ids(conn)[-1] == HEAD
    finally:
        conn.close()


def test_the_load_refuses_a_connection_to_another_database_than_its_permit(
    behind: tuple[Project, Path],
) -> None:
    """A permit names its database: a load on a connection that reached another one (dev,
    here) is refused, and dev is unchanged."""
    project, snapshot = behind
    settings = load_settings(project.root)
    before = state(project.dev_url)
    with sync.guarded_prod_write(settings, what="test", progress=None):
        conn = db.connect(db.target(settings, "dev"), purpose="write", settings=settings)
        try:
            with pytest.raises(SafetyError, match="not the prod database"):
                restore.load_snapshot(conn, snapshot, settings=settings)
        finally:
            conn.close()
    assert state(project.dev_url) == before
    assert permit.active() is None  # the session's permit ends with it
