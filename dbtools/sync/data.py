"""sync-data: dev's data into prod in the guard's one transaction, checks before the commit."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from dbtools import changes, checks
from dbtools.config import Settings
from dbtools.db import Conn, Progress, say
from dbtools.errors import (
    VerificationFailed,
)
from dbtools.snapshot import restore
from dbtools.snapshot.create import create_snapshot
from dbtools.sync.dryrun import preview
from dbtools.sync.refusals import assert_schemas_match, sync_data_refusals
from dbtools.sync.results import Preview, SyncResult, table_changes
from dbtools.sync.session import Guard, guarded_prod_write


def load_dev_into_prod(
    guard: Guard,
    checks_to_run: list[checks.Check],
    *,
    dev_snapshot: Path | None = None,
    after_backup: Callable[[Path], None] | None = None,
    rows: dict[str, dict[str, int]] | None = None,
) -> tuple[SyncResult, Any]:
    """Back up, snapshot dev, load it into the guard's transaction, run checks_to_run (loaded
    before the guard, so that a bad checks file costs neither a lock nor a backup).

    `dev_snapshot`: load this snapshot instead of taking one (`dbtools apply` loads the one
    its plan was computed from). `after_backup(path)` runs once prod's backup is taken, under
    the locks the load keeps: what it sees of prod is what the load replaces.

    Each table's inserted/updated/deleted rows (`rows`, from a plan, or else the two
    snapshots compared by primary key) go into the result and prod's history row.
    """
    settings, progress = guard.settings, guard.progress
    assert_schemas_match(guard.conn, guard.dev_conn, settings)
    made = guard.ensure_backup()
    if after_backup is not None:
        after_backup(made.path)
    if dev_snapshot is None:
        say(progress, "sync-data: snapshot of dev")
        dev_path = create_snapshot(settings, "dev", progress=progress).path
    else:
        dev_path = dev_snapshot
    # Taken with the same `schemas` / `excluded_tables` settings as the backup: the load
    # replaces nothing the backup does not hold.
    reports: list[checks.CheckReport] = []

    def before_commit(conn: Conn) -> None:
        say(progress, "sync-data: running the checks before commit")
        report = checks.run_checks(
            conn, settings, dev_conn=guard.dev_conn, env="prod", checks=checks_to_run
        )
        reports.append(report)
        if not report.ok:
            raise VerificationFailed(
                f"{report.summary()}; the load was rolled back, prod is unchanged",
                hint=f"fix the data in dev, then rerun; backup taken: {made.path}",
            )

    load = restore.load_snapshot(
        guard.conn,
        dev_path,
        settings=settings,
        preserved=settings.preserved_tables,
        before_commit=before_commit,
        progress=progress,
        in_transaction=True,
    )
    if rows is None:
        say(progress, "sync-data: comparing dev's snapshot with prod's backup, row by row")
        rows = changes.compare(
            dev_path,
            made.path,
            preserved=changes.preserved_keys(settings),
            excluded=changes.excluded_keys(settings),
            verified=True,
        ).counts()
    for key, info in load.tables.items():
        if not info.get("preserved"):
            info.update(rows.get(key, {}))
    result = SyncResult(
        backup=made,
        dev_snapshot=dev_path,
        tables=table_changes(load),
        checks=reports[-1] if reports else None,
    )
    return result, load


def sync_data(
    settings: Settings, *, dry_run: bool = False, progress: Progress = None
) -> SyncResult | Preview:
    """The seed's copy-dev-to-prod: backup prod, snapshot dev, load it into prod atomically.

    Refuses (nothing written, no backup) on drift or unless the schemas match. The tables are
    held IN EXCLUSIVE MODE from before the backup to the commit (see guarded_prod_write), and
    the load, the checks and the history row commit in that one transaction; a failed check
    rolls everything back. With dry_run, returns the Preview and writes nothing.
    """
    if dry_run:
        return preview(settings, "sync-data")

    def precheck(prod: Conn, dev: Conn | None) -> None:
        sync_data_refusals(prod, dev, settings)

    checks_to_run = checks.load_checks(settings)
    with guarded_prod_write(
        settings, what="sync-data", progress=progress, precheck=precheck, transactional=True
    ) as guard:
        result, load = load_dev_into_prod(guard, checks_to_run)
        guard.commit("sync-data", snapshot_loaded=result.dev_snapshot, tables=load.tables)
        return result
