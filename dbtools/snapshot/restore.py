"""Loading a snapshot into a database: all of it in one transaction, or nothing.

`load_snapshot` is the one load used by `dbtools restore` and by sync-data:
verify the snapshot -> same schema as the target (else SafetyError with the object diff) ->
lock every table (waiting at most lock_timeout_seconds) -> refuse (SafetyError) when a table
that is not loaded has a foreign key into one that is (TRUNCATE would fail) or a loaded
table's default draws from a sequence no snapshot sets (`refuse_outside_references`, which
every caller also runs before it locks anything) -> keep preserved
tables' rows aside -> hold off user triggers -> TRUNCATE the table set -> COPY in foreign-key
order -> put preserved rows back -> fire the deferred checks -> set every trigger back to its
own state -> set sequences -> re-count and re-hash every table against the manifest ->
refresh the materialized views that read the loaded tables -> the caller's before_commit
checks -> COMMIT. Any failure rolls back: the target keeps its data.

Every statement names a table's own rows (`Table.only`: ONLY, except for a partitioned
table, whose rows are its partitions'): inheritance children are tables of their own.

The steps live in sibling modules: `preflight` (the schema comparison and the plan of tables),
`preserve` (preserved tables' rows kept aside and put back), `suspend` (user triggers held off
and set back, foreign-key cycles deferred), `post_load` (sequences, counts and hashes,
materialized views); `steps` holds the statement and progress helpers they share.

The transaction is driven with explicit BEGIN/COMMIT on an autocommit connection: catalog
helpers call `conn.rollback()` when not in autocommit mode, which psycopg2 turns into a no-op
in autocommit mode, so no helper can end the load half-way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extensions

from dbtools import catalog, db, faults, permit, safety
from dbtools.config import Settings
from dbtools.db import Conn, Progress, execute, say
from dbtools.errors import (
    DbtoolsError,
    LockBusy,
    SafetyError,
    SnapshotError,
    VerificationFailed,
)
from dbtools.progress import phase, table_task
from dbtools.snapshot import encryption, post_load, preserve, suspend
from dbtools.snapshot import format as fmt
from dbtools.snapshot.preflight import check_schema, plan_load


@dataclass
class LoadResult:
    snapshot: Path
    tables: dict[str, dict[str, Any]]  # key -> rows_before, rows_after, preserved
    sequences: int = 0
    deferred_constraints: list[str] = field(default_factory=list)
    # Materialized views refreshed in the load's transaction, in the order they were refreshed.
    refreshed: list[str] = field(default_factory=list)
    # User triggers held off during the load ("schema.table.trigger"), then set back.
    suspended_triggers: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(int(t["rows_after"]) for t in self.tables.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "snapshot": str(self.snapshot),
            "tables": self.tables,
            "rows": self.rows,
            "sequences": self.sequences,
            "deferred_constraints": self.deferred_constraints,
            "refreshed": self.refreshed,
            "suspended_triggers": self.suspended_triggers,
        }


@dataclass
class RestoreResult:
    path: Path
    env: str
    database: str
    load: LoadResult
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "env": self.env,
            "database": self.database,
            "tables": len(self.load.tables),
            "rows": self.load.rows,
            "load": self.load.as_dict(),
            "warnings": self.warnings,
        }


def verified_manifest(path: Path) -> fmt.Manifest:
    """The manifest of a snapshot that passes every check, or SnapshotError listing problems."""
    manifest, problems = fmt.verify_dir(path)
    if problems or manifest is None:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise SnapshotError(
            f"snapshot {path} does not verify: {problems[0]}{more}",
            hint="`dbtools snapshot verify PATH` lists every problem; "
            "`dbtools snapshot list` shows which snapshots verify",
        )
    return manifest


def lock_tables(
    conn: Conn, schemas: list[str], exclude: Iterable[str], mode: str, timeout: float
) -> list[str]:
    """Lock every table of the schemas (bookkeeping and excluded ones left out) in `mode`,
    waiting at most `timeout` seconds per table; LockBusy names the table that is held.

    Runs before any catalog read: reading column defaults (pg_get_expr) needs a lock on the
    table too, and without a lock timeout it would wait forever behind a held lock.
    """
    execute(conn, f"SET LOCAL lock_timeout = '{max(1, int(timeout * 1000))}ms'")
    skip = catalog.normalize_table_names(exclude, schemas[0] if schemas else "public")
    rows = execute(
        conn,
        "SELECT n.nspname, c.relname, c.relkind FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname = ANY(%s) "
        "ORDER BY 1, 2",
        (list(schemas),),
    )
    locked = []
    for schema, name, kind in rows:
        key = f"{schema}.{name}"
        if name in catalog.BOOKKEEPING_TABLES or key in skip:
            continue
        # An inheritance parent is locked alone (ONLY): its children are listed on their own
        # when synced, and an excluded child (or one in another schema) is none of ours to
        # hold. A partitioned table is locked with its partitions, which receive its rows.
        only = "" if kind == "p" else "ONLY "
        try:
            execute(conn, f"LOCK TABLE {only}{db.qualified(schema, name)} IN {mode} MODE")
        except psycopg2.errors.LockNotAvailable:
            raise LockBusy(
                f"table {key} is locked by another connection (waited {timeout:g}s, "
                "lock_timeout_seconds); nothing was changed"
            ) from None
        locked.append(key)
    return locked


def refuse_outside_references(conn: Conn, schemas: Sequence[str], excluded: Iterable[str]) -> None:
    """SafetyError (exit 3), one line, when something outside the tables a load empties ties
    to them (catalog.outside_dependencies): a table that is not loaded references one that is
    (TRUNCATE would be refused, CASCADE would empty a table nobody asked to empty), or a
    loaded table's default draws from a sequence no snapshot sets. Callers run it before
    they lock or write anything; the load runs it again under its locks."""
    found = catalog.outside_dependencies(conn, schemas, excluded)
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise SafetyError(
            f"{found[0].line}{more}; nothing was changed",
            hint="`dbtools verify` lists every one",
        )


def _insert_empty_rows(conn: Conn, table: catalog.Table, rows: int) -> int:
    """A table without columns: its content is its row count."""
    if rows:
        execute(conn, f"INSERT INTO {table.qualified} SELECT FROM generate_series(1, %s)", (rows,))
    return rows


def _run_load(
    conn: Conn,
    path: Path,
    manifest: fmt.Manifest,
    settings: Settings,
    preserved: Iterable[str],
    before_commit: Callable[[Conn], None] | None,
    progress: Progress,
) -> LoadResult:
    from dbtools.snapshot import load

    schemas = list(manifest.schemas)
    lock_tables(
        conn, schemas, settings.excluded_tables, "ACCESS EXCLUSIVE", settings.lock_timeout_seconds
    )
    say(progress, "locked the tables")
    # Under our locks nothing can change the tables' schema until we commit.
    cat = catalog.read_catalog(conn, schemas, settings.excluded_tables, sequence_values=False)
    check_schema(conn, manifest, schemas, "before the load")
    # Again under the locks, for the snapshot's own schemas: the callers' check ran before
    # any lock, and only now can no foreign key or default of these tables change.
    refuse_outside_references(conn, schemas, settings.excluded_tables)
    plan = plan_load(cat, manifest, preserved)
    ordered = plan.tables

    result: dict[str, dict[str, Any]] = {}
    before = catalog.row_counts(conn, ordered)
    temps = preserve.keep_aside(conn, plan)
    # Before the TRUNCATE: its own triggers must not fire either.
    triggers = suspend.suspend_triggers(conn, ordered)
    if ordered:
        execute(conn, "TRUNCATE " + ", ".join(t.only for t in ordered))
    say(progress, f"cleared {len(ordered)} tables")
    altered = suspend.defer_cycles(conn, plan.cyclic)
    with phase(progress, f"loading {path.name}", len(ordered)):
        for table in ordered:
            entry = manifest.tables[table.key]
            kept = table.key in plan.keep
            with table_task(
                progress, "loading", table.key, conn=conn, total=None if kept else entry.rows
            ) as task:
                if kept:
                    preserve.put_back(conn, plan, table, temps[table.key])
                    rows = before[table.key]
                else:
                    if table.columns:
                        secret = encryption.table_secret(path, manifest, entry)
                        rows = load.load_table(
                            conn, table, path, list(entry.files), entry.columns, secret=secret
                        )
                    else:
                        rows = _insert_empty_rows(conn, table, entry.rows)
                    if rows != entry.rows:
                        raise VerificationFailed(
                            f"{table.key}: loaded {rows} rows, the snapshot has {entry.rows}"
                        )
                faults.pause("load.table")
                result[table.key] = {
                    "rows_before": before[table.key],
                    "rows_after": rows,
                    "preserved": kept,
                }
                task.done(f"loaded {table.key}: {rows:,} rows")
    suspend.undefer(conn, plan.cyclic, altered)
    suspend.resume_triggers(conn, ordered, triggers)

    sequences = post_load.set_sequences(conn, plan, manifest)
    post_load.verify_loaded(conn, plan, manifest, before)
    say(progress, "row counts and content hashes match the snapshot")
    refreshed = post_load.refresh_matviews(conn, ordered, progress)
    check_schema(conn, manifest, schemas, "after the load")
    if before_commit is not None:
        before_commit(conn)
    return LoadResult(
        snapshot=path,
        tables=result,
        sequences=sequences,
        deferred_constraints=[f"{fk.declared_on}.{fk.name}" for fk in plan.cyclic],
        refreshed=refreshed,
        suspended_triggers=[f"{t.relation}.{t.name}" for t in triggers if t.enabled != "D"],
    )


def load_snapshot(
    conn: Conn,
    snapshot_path: Path,
    *,
    settings: Settings,
    preserved: Iterable[str] = (),
    before_commit: Callable[[Conn], None] | None = None,
    progress: Progress = None,
    in_transaction: bool = False,
) -> LoadResult:
    """Replace the contents of conn's tables by the snapshot's, in one transaction (module doc).

    preserved: table keys or bare names whose current rows are kept (their snapshot rows are
    ignored). Anything uncommitted on conn is rolled back first: the load is its own transaction.

    in_transaction: the caller already opened the transaction (explicit BEGIN on an autocommit
    connection, as the sync guard does) and will COMMIT or ROLLBACK it; the load then runs
    inside it and never ends it, so the caller can write more before its one commit.
    """
    # A connection could reach any database: the load writes only the one a write session
    # approved (the guard's on prod, restore()'s on dev), whoever calls it.
    permit.require("load a snapshot", db.identity(conn), env=None)
    path = Path(snapshot_path)
    manifest = verified_manifest(path)
    say(progress, f"snapshot {path} verified: {len(manifest.tables)} tables")
    if in_transaction and not (
        conn.autocommit
        and conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_INTRANS
    ):
        raise DbtoolsError("load_snapshot(in_transaction=True) needs an open explicit BEGIN")
    was_autocommit = conn.autocommit
    if not in_transaction:
        if not was_autocommit:
            conn.rollback()
        conn.autocommit = True
    try:
        if not in_transaction:
            execute(conn, "BEGIN")
        try:
            lock_tables(
                conn,
                list(manifest.schemas),
                settings.excluded_tables,
                "ACCESS EXCLUSIVE",
                settings.lock_timeout_seconds,
            )
            faults.pause("load.locked")
            result = _run_load(conn, path, manifest, settings, preserved, before_commit, progress)
            if not in_transaction:
                execute(conn, "COMMIT")
        except BaseException:
            if not in_transaction:
                with contextlib.suppress(psycopg2.Error):
                    execute(conn, "ROLLBACK")
            raise
    except DbtoolsError:
        raise
    except psycopg2.errors.LockNotAvailable as exc:
        raise LockBusy(
            f"a lock was not granted within {settings.lock_timeout_seconds:g}s: "
            f"{db.describe_error(exc)}; nothing was changed"
        ) from None
    except psycopg2.Error as exc:
        raise VerificationFailed(
            f"the load failed and was rolled back, nothing was changed: {db.describe_error(exc)}"
        ) from None
    except OSError as exc:
        raise SnapshotError(
            f"cannot read the snapshot ({exc.filename or path}: {exc.strerror or exc}); "
            "the load was rolled back"
        ) from None
    finally:
        if not in_transaction:
            with contextlib.suppress(psycopg2.Error):
                conn.autocommit = was_autocommit
    return result


def restore(
    settings: Settings, path: Path, env: str, *, progress: Progress = None
) -> RestoreResult:
    """`dbtools restore --target dev`: load a snapshot into dev after the safety rules allow
    writing it (dev takes no backup). Prod is refused here: its restore is sync.restore_prod.
    """
    from dbtools.snapshot.archive import resolve_path

    if env == "prod":
        # Into prod a restore is a pipeline of its own (sync.restore_prod): the guard's lock,
        # a verified backup, the load in its transaction and prod's history row.
        raise SafetyError(
            "refusing to restore into prod outside its guarded pipeline; nothing was changed",
            hint="use `dbtools restore PATH --target prod` or dbtools.sync.restore_prod",
        )
    snapshot = resolve_path(settings, str(path), env)
    t = db.target(settings, env)
    conn = db.connect(t, purpose="write", settings=settings)
    try:
        # An opposite side that is configured but cannot be identified refuses the write:
        # "dev and prod are two databases" must be checked, never skipped (safety module).
        ident = safety.approve_write(settings, t, conn)
        # Before the load's ACCESS EXCLUSIVE locks: they stop even the application's reads (and
        # may wait lock_timeout_seconds for them), only for the load to refuse under them.
        refuse_outside_references(conn, settings.schemas, settings.excluded_tables)
        say(progress, f"restoring {snapshot} into {env} ({t.masked})")
        with permit.granted(permit.Permit(env, "restore", ident)):  # approved just above
            load = load_snapshot(conn, snapshot, settings=settings, progress=progress)
        return RestoreResult(snapshot, env, ident.database, load, [])
    finally:
        conn.close()


__all__ = [
    "LoadResult",
    "RestoreResult",
    "load_snapshot",
    "refuse_outside_references",
    "restore",
    "verified_manifest",
]
