"""sync-data: dev's data into prod in the guard's one transaction, checks before the commit."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.errors

from dbtools import catalog, changes, checks, db, faults, interrupt
from dbtools.config import Settings
from dbtools.db import Conn, Progress, execute, say
from dbtools.errors import SnapshotError, VerificationFailed
from dbtools.snapshot import format as fmt
from dbtools.snapshot import restore
from dbtools.snapshot.create import create_snapshot
from dbtools.snapshot.preflight import plan_load
from dbtools.sync import delta
from dbtools.sync.dryrun import preview
from dbtools.sync.refusals import assert_schemas_match, sync_data_refusals
from dbtools.sync.results import BackupResult, Preview, SyncResult, table_changes
from dbtools.sync.session import Guard, guarded_prod_write
from dbtools.sync.staging import stage_changes


def _short_apply(
    guard: Guard,
    dev_path: Path,
    made: BackupResult,
    rows: dict[str, dict[str, int]] | None,
) -> restore.LoadResult | str:
    """Stage dev's changes while prod goes on, then write them under a short write lock
    (sync.staging, sync.delta); a str says why the run must load in full instead (the lock
    is then held)."""
    settings, progress, conn = guard.settings, guard.progress, guard.conn
    dev = fmt.read_manifest(dev_path)
    backup = fmt.read_manifest(made.path)
    schemas = list(dev.schemas)
    cat = catalog.read_catalog(conn, schemas, settings.excluded_tables, sequence_values=False)
    plan = plan_load(cat, dev, settings.preserved_tables)
    say(progress, f"{guard.what}: staging dev's changed rows (prod is not locked)")
    # A row staging cannot copy (an unreadable file, a value prod's types refuse) is a
    # reason to load in full, which may not need it, not a failed run: the savepoint keeps
    # the guard's transaction usable.
    execute(conn, "SAVEPOINT dbtools_staging")
    try:
        staged = stage_changes(conn, plan, dev_path, dev, made.path, backup, progress)
    except (SnapshotError, psycopg2.Error) as exc:
        interrupt.raise_if_received()
        if isinstance(exc, psycopg2.errors.LockNotAvailable):
            raise
        detail = exc.message if isinstance(exc, SnapshotError) else db.describe_error(exc)
        staged = f"staging failed: {detail}"
    if isinstance(staged, str):
        execute(conn, "ROLLBACK TO SAVEPOINT dbtools_staging")  # nothing staged is kept
    execute(conn, "RELEASE SAVEPOINT dbtools_staging")
    if rows is not None and not isinstance(staged, str):
        for st in staged.tables:
            want = rows.get(st.table.key, {})
            got = {k: st.counts.get(k, 0) for k in ("inserted", "updated", "deleted")}
            if {k: want.get(k, 0) for k in got} != got:
                raise VerificationFailed(
                    f"{st.table.key}: the changes staged ({got}) are not the plan's ({want}); "
                    "nothing was changed",
                    hint="compute a new plan: dbtools plan --save",
                )
    faults.pause("apply.staged")
    guard.lock_writes()
    say(progress, f"{guard.what}: locked the tables against writes (reads go on)")
    if isinstance(staged, str):
        return staged
    execute(conn, "SAVEPOINT dbtools_short_apply")
    try:
        out = delta.apply_locked(
            conn, staged, plan, dev, backup, schemas, progress, guard.locked_at or 0.0
        )
    except (delta.Conflict, psycopg2.Error) as exc:
        interrupt.raise_if_received()
        if isinstance(exc, psycopg2.errors.LockNotAvailable):
            raise
        execute(conn, "ROLLBACK TO SAVEPOINT dbtools_short_apply")
        return str(exc) if isinstance(exc, delta.Conflict) else db.describe_error(exc)
    execute(conn, "RELEASE SAVEPOINT dbtools_short_apply")
    return restore.LoadResult(
        snapshot=dev_path,
        tables=out.tables,
        sequences=out.sequences,
        refreshed=out.refreshed,
        suspended_triggers=out.suspended_triggers,
    )


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
    its plan was computed from). `after_backup(path)` runs once prod's backup is taken: what
    it sees of prod is what the load replaces.

    A guard opened without locks (lock_at_start=False) takes the short path: changes staged
    while prod goes on, written under a short write lock (_short_apply); when that cannot be
    proven safe, the run takes a fresh backup under the lock and loads in full.

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
        dev_path = create_snapshot(
            settings, "dev", progress=progress, reason=f"for {guard.what}"
        ).path
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

    lock: dict[str, Any] = {"mode": "full", "reason": "the tables were locked from the start"}
    load: restore.LoadResult | str = "locked from the start"
    if not guard.locked:
        load = _short_apply(guard, dev_path, made, rows)
        if isinstance(load, str):
            lock["reason"] = load
            say(progress, f"{guard.what}: {load}: loading in full after a fresh backup")
            made = guard.renew_backup()  # under the lock: it holds what the load replaces
            if after_backup is not None:
                after_backup(made.path)
        else:
            lock = {"mode": "short"}
            before_commit(guard.conn)
    if isinstance(load, str):
        load = restore.load_snapshot(
            guard.conn,
            dev_path,
            settings=settings,
            preserved=settings.preserved_tables,
            before_commit=before_commit,
            progress=progress,
            in_transaction=True,
        )
    if rows is None and lock["mode"] == "full":
        say(progress, "sync-data: comparing dev's snapshot with prod's backup, row by row")
        rows = changes.compare(
            dev_path,
            made.path,
            preserved=changes.preserved_keys(settings),
            excluded=changes.excluded_keys(settings),
            verified=True,
        ).counts()
    for key, info in load.tables.items():
        if not info.get("preserved") and rows is not None:
            info.update(rows.get(key, {}))
    result = SyncResult(
        backup=made,
        dev_snapshot=dev_path,
        tables=table_changes(load),
        checks=reports[-1] if reports else None,
        lock=lock,
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
        settings,
        what="sync-data",
        progress=progress,
        precheck=precheck,
        transactional=True,
        lock_at_start=False,
    ) as guard:
        result, load = load_dev_into_prod(guard, checks_to_run)
        guard.commit(
            "sync-data", snapshot_loaded=result.dev_snapshot, tables=load.tables, lock=result.lock
        )
        result.lock["seconds"] = guard.lock_seconds
        return result
