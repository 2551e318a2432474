"""What `dbtools rollback` would do now, computed without writing anything to prod: the backup
it would restore, the history row it undoes, the migrations it would undo first, and per
table the rows prod holds now against the rows of the backup (with `rows=True`, inserted /
updated / deleted, from a fresh read-only snapshot of prod compared with the backup by
primary key). `rollback --dry-run` prints it; the real rollback prints it before its
question, and is then told which history row was confirmed (`rollback(expect=...)`)."""

from __future__ import annotations

import dataclasses
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.errors

from dbtools import catalog, db, safety
from dbtools.changes import NEW_TABLE, UNCHANGED, TableChanges
from dbtools.changes.duck import Comparison
from dbtools.changes.rows import compare_table
from dbtools.config import Settings, redact
from dbtools.db import Progress, execute, say
from dbtools.errors import ConfigError, LockBusy, VerificationFailed
from dbtools.snapshot import format as fmt
from dbtools.snapshot import store
from dbtools.sync.dryrun import SYNC_RUNNING, sync_lock_held
from dbtools.sync.refusals import refuse_unloadable
from dbtools.sync.session import open_dev
from dbtools.sync.undo import RollbackChoice, choose_rollback

# The reason recorded in the manifest of the throwaway snapshot `rows=True` compares with.
DRY_RUN_REASON = "rollback dry run"


@dataclass
class RestoreTable:
    """One table of a restore: its rows in prod now and in the snapshot to load; row by row
    when compared (None when not)."""

    table: str
    prod_rows: int | None  # None: prod has no such table now
    backup_rows: int | None  # None: the backup has no such table
    inserted: int | None = None
    updated: int | None = None
    deleted: int | None = None
    compared: str = ""  # how it was compared row by row (dbtools.changes' modes); "" if not
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class RollbackPlan:
    """What `dbtools rollback` would do now; as_dict() is what `rollback --dry-run --json`
    prints under "plan"."""

    prod_database: str
    backup: Path
    backup_created_at: str
    backup_reason: str
    history_id: int  # the history row the rollback undoes
    operation: str  # that row's operation (sync-data, full-sync, apply, restore)
    committed_at: str
    migrations_to_undo: list[str]  # newest first, as the rollback undoes them
    tables: list[RestoreTable]
    rows_compared: bool  # inserted/updated/deleted were computed
    problems: list[str] = field(default_factory=list)
    refusal: str = ""  # what would stop the real run now ("" if nothing would)
    exit_code: int = 0  # the real run's exit code for that refusal

    def as_dict(self) -> dict[str, Any]:
        return {
            "prod_database": self.prod_database,
            "backup": store.shown(self.backup),
            "backup_stamp": self.backup.name,
            "backup_created_at": self.backup_created_at,
            "backup_reason": self.backup_reason,
            "undoes": {
                "history_id": self.history_id,
                "operation": self.operation,
                "committed_at": self.committed_at,
            },
            "migrations_to_undo": self.migrations_to_undo,
            "tables": [t.as_dict() for t in self.tables],
            "rows_compared": self.rows_compared,
            "problems": self.problems,
            "refusal": self.refusal,
            "exit_code": self.exit_code,
        }


def rollback_plan(
    settings: Settings, *, rows: bool = False, progress: Progress = None
) -> RollbackPlan:
    """What `dbtools rollback` would restore now, refused as the real run refuses.

    The same rules as the real run, in its order, raising the same errors: prod's identity
    (expected name, not dev), a foreign key or default the load cannot keep, then the choice
    of prod's history (nothing to undo, a backup missing, not verifying, replaced, of another
    database, or taken with migrations prod no longer has; drift). A sync lock held by another
    run does not raise: the plan names it as the refusal the real run would meet (exit 3).

    Prod is only read, in read-only transactions: no lock but the ACCESS SHARE of reads, no
    history row. With rows=True, a snapshot of prod is taken (read-only, as `dbtools plan`
    takes one) into a private scratch directory of the archive, compared with the backup and
    deleted.
    """
    prod_t = db.target(settings, "prod")
    dev_conn, dev_id = open_dev(settings, required=False)
    try:
        # (purpose "lock": a pooler host is refused here as the real run refuses it)
        conn = db.connect(prod_t, purpose="lock", settings=settings)
        try:
            db.set_read_only(conn)
            timeout_ms = max(1, int(settings.lock_timeout_seconds * 1000))
            execute(conn, f"SET lock_timeout = '{timeout_ms}ms'")
            conn.commit()
            prod_id = db.identity(conn)
            if dev_conn is not None and dev_id is not None:
                safety.assert_writable(prod_t, prod_id, db.target(settings, "dev"), dev_id)
            else:
                safety.assert_name(prod_t, prod_id)
            refuse_unloadable(conn, settings)
            choice = choose_rollback(conn, settings, prod_id)
            tables, _ = catalog.read_tables(conn, settings.schemas, settings.excluded_tables)
            counts = catalog.row_counts(conn, tables)
            busy = sync_lock_held(conn)
        except psycopg2.errors.LockNotAvailable as exc:
            raise LockBusy(
                f"rollback: a lock was not granted within {settings.lock_timeout_seconds:g}s "
                f"({db.describe_error(exc)}); nothing was changed"
            ) from None
        finally:
            conn.rollback()
            conn.close()
    finally:
        if dev_conn is not None:
            dev_conn.close()
    by_row = _row_changes(settings, choice, progress) if rows else {}
    plan = RollbackPlan(
        prod_database=prod_id.database,
        backup=choice.path,
        backup_created_at=choice.manifest.created_at,
        backup_reason=choice.manifest.reason,
        history_id=choice.entry.id,
        operation=choice.entry.operation,
        committed_at=choice.entry.committed_at,
        migrations_to_undo=[m.id for m in choice.undo],
        tables=_tables(choice, counts, by_row),
        rows_compared=rows,
    )
    if busy:
        plan.refusal, plan.exit_code = SYNC_RUNNING, LockBusy.exit_code
        plan.problems.append(f"the real run would stop here: {SYNC_RUNNING}")
    return plan


def _tables(
    choice: RollbackChoice, counts: dict[str, int], by_row: dict[str, TableChanges]
) -> list[RestoreTable]:
    """Every table of prod now and of the backup; row by row where by_row has it."""
    undoing = bool(choice.undo)
    out: list[RestoreTable] = []
    for key in sorted(set(counts) | set(choice.manifest.tables)):
        entry = choice.manifest.tables.get(key)
        t = RestoreTable(key, counts.get(key), entry.rows if entry is not None else None)
        if entry is None:
            t.note = (
                "not in the backup: dropped by undoing the migrations"
                if undoing
                else "not in the backup"
            )
        elif key not in counts:
            t.note = "not in prod now: created again by undoing the migrations"
        change = by_row.get(key)
        if change is not None:
            t.inserted, t.updated, t.deleted = change.inserted, change.updated, change.deleted
            t.compared = change.mode
            if change.note and not t.note:
                t.note = _backup_words(change.note)
        elif entry is None and by_row:  # compared row by row: its rows go with it
            t.inserted, t.updated, t.deleted = 0, 0, t.prod_rows
        out.append(t)
    return out


def _backup_words(note: str) -> str:
    """A note of dbtools.changes (written for dev -> prod) said of the backup -> prod."""
    return re.sub(r"\bdev\b", "the backup", note)


def _row_changes(
    settings: Settings, choice: RollbackChoice, progress: Progress
) -> dict[str, TableChanges]:
    """Per table of the backup, what loading it into prod would insert, update and delete,
    from a fresh read-only snapshot of prod taken into a scratch directory and deleted."""
    from dbtools.snapshot.create import create_snapshot

    # A `.tmp-<stamp>-<pid>-` directory of the archive: prune removes it if this run dies.
    scratch = fmt.new_temp_dir(settings.snapshot_dir / "prod")
    try:
        say(progress, "rollback --dry-run: snapshot of prod (read-only) to compare with the backup")
        now = create_snapshot(
            dataclasses.replace(settings, snapshot_dir=scratch),
            "prod",
            progress=progress,
            reason=DRY_RUN_REASON,
        )
        return _compare(choice.path, choice.manifest, now.path, now.manifest)
    finally:
        fmt.remove_tree(scratch)


def _compare(
    backup_dir: Path, backup: fmt.Manifest, now_dir: Path, now: fmt.Manifest
) -> dict[str, TableChanges]:
    """The backup in the role of what is loaded ("dev" to dbtools.changes), prod now in the
    role of what it replaces: dbtools.changes' per-table comparison, table by table (its
    `compare` refuses two snapshots of one database, which these are)."""
    try:
        import duckdb
    except ImportError:  # a broken install: duckdb is a dependency of dbtools
        raise ConfigError("comparing snapshots needs DuckDB", hint="pip install duckdb") from None
    comparison = None
    out: dict[str, TableChanges] = {}
    try:
        comparison = Comparison(backup_dir, backup, now_dir, now)
        for key, b in sorted(backup.tables.items()):
            p = now.tables.get(key)
            if p is None:
                t = TableChanges.between(key, NEW_TABLE, b, None)
                t.inserted = b.rows
            elif b.content_hash == p.content_hash and b.columns == p.columns:
                t = TableChanges.between(key, UNCHANGED, b, p)
                t.unchanged = b.rows
            else:
                t = comparison.run(functools.partial(compare_table, key=key, dev=b, prod=p))
            out[key] = t
    except duckdb.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise VerificationFailed(
            f"comparing prod with the backup failed: {redact(first)}"
        ) from None
    finally:
        if comparison is not None:
            comparison.close()
    return out
