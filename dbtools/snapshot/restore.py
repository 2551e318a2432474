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

User triggers (not internal ones, not CONSTRAINT TRIGGERs) would rewrite what is restored (a
BEFORE trigger computing a column) or write elsewhere (AFTER and TRUNCATE triggers); they are
disabled one by one with ALTER TABLE ONLY ... DISABLE TRIGGER, which needs table ownership,
not superuser. On PostgreSQL 15 a partitioned table's trigger is cloned to each partition,
where each clone has its own state and ALTER TABLE without ONLY on the parent reaches every
clone; so each trigger of the tables and their partitions is set back to the state it had,
parents first, and the states are compared before commit.

Cycles of foreign keys cannot be satisfied table by table; their constraints are made
DEFERRABLE INITIALLY DEFERRED inside the transaction (ALTER CONSTRAINT needs table ownership,
not superuser), checked with SET CONSTRAINTS ... IMMEDIATE once every table is loaded, and
set back to NOT DEFERRABLE before commit, so the schema the transaction commits is the one it
found (the fingerprint is compared again to prove it).

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
from dbtools.db import Conn, Progress, quote_ident
from dbtools.errors import (
    DbtoolsError,
    LockBusy,
    SafetyError,
    SnapshotError,
    VerificationFailed,
)
from dbtools.snapshot import format as fmt


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


class SchemaMismatch(SafetyError):
    """The target's schema is not the snapshot's; the message names the objects that differ."""

    def __init__(self, message: str) -> None:
        super().__init__(message, hint="apply the same migrations to both sides first")


def _say(progress: Progress, text: str) -> None:
    if progress is not None:
        progress(text)


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


def _exec(conn: Conn, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall() if cur.description else []


def _check_schema(conn: Conn, manifest: fmt.Manifest, schemas: list[str], when: str) -> None:
    objects = catalog.schema_objects(conn, schemas)
    if catalog.fingerprint_of(objects) == manifest.schema_fingerprint:
        return
    lines = catalog.diff_objects(manifest.schema_objects, objects).lines("snapshot", "target")
    shown = "; ".join(lines[:20]) + (f"; ... {len(lines) - 20} more" if len(lines) > 20 else "")
    raise SchemaMismatch(
        f"the target's schema {when} differs from the snapshot's ({len(lines)} objects): {shown}"
    )


def lock_tables(
    conn: Conn, schemas: list[str], exclude: Iterable[str], mode: str, timeout: float
) -> list[str]:
    """Lock every table of the schemas (bookkeeping and excluded ones left out) in `mode`,
    waiting at most `timeout` seconds per table; LockBusy names the table that is held.

    Runs before any catalog read: reading column defaults (pg_get_expr) needs a lock on the
    table too, and without a lock timeout it would wait forever behind a held lock.
    """
    _exec(conn, f"SET LOCAL lock_timeout = '{max(1, int(timeout * 1000))}ms'")
    skip = catalog.normalize_table_names(exclude, schemas[0] if schemas else "public")
    rows = _exec(
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
            _exec(conn, f"LOCK TABLE {only}{db.qualified(schema, name)} IN {mode} MODE")
        except psycopg2.errors.LockNotAvailable:
            raise LockBusy(
                f"table {key} is locked by another connection (waited {timeout:g}s, "
                "lock_timeout_seconds); nothing was changed"
            ) from None
        locked.append(key)
    return locked


def _orphans(conn: Conn, temp: str, fk: catalog.ForeignKey, ref: catalog.Table) -> int:
    """Kept rows whose reference the loaded data cannot satisfy (MATCH SIMPLE semantics)."""
    not_null = " AND ".join(f"k.{quote_ident(c)} IS NOT NULL" for c in fk.columns)
    match = " AND ".join(
        f"r.{quote_ident(rc)} = k.{quote_ident(c)}"
        for c, rc in zip(fk.columns, fk.ref_columns, strict=True)
    )
    rows = _exec(
        conn,
        f"SELECT count(*) FROM {quote_ident(temp)} k WHERE {not_null} "
        f"AND NOT EXISTS (SELECT 1 FROM {ref.only} r WHERE {match})",
    )
    return int(rows[0][0])


def _constraint_ref(fk: catalog.ForeignKey) -> tuple[str, str]:
    """(quoted relation declaring the constraint, schema-qualified constraint name)."""
    schema, _, name = fk.declared_on.partition(".")
    return db.qualified(schema, name), f"{quote_ident(schema)}.{quote_ident(fk.name)}"


def _defer_cycles(conn: Conn, cyclic: list[catalog.ForeignKey]) -> list[catalog.ForeignKey]:
    """Make cyclic FKs deferred for this transaction; return those we altered."""
    altered = []
    for fk in cyclic:
        table, constraint = _constraint_ref(fk)
        if not fk.deferrable:
            # On a partitioned table the change reaches the partitions' clones of the key.
            _exec(
                conn,
                f"ALTER TABLE {table} ALTER CONSTRAINT {quote_ident(fk.name)} "
                "DEFERRABLE INITIALLY DEFERRED",
            )
            altered.append(fk)
        _exec(conn, f"SET CONSTRAINTS {constraint} DEFERRED")
    return altered


def _undefer(
    conn: Conn, cyclic: list[catalog.ForeignKey], altered: list[catalog.ForeignKey]
) -> None:
    # Fires every pending check now (cycles and the schema's own INITIALLY DEFERRED keys), so
    # a broken reference fails before commit, and no table is left with pending trigger
    # events, which would make the ALTER TABLEs below and in _resume_triggers fail.
    _exec(conn, "SET CONSTRAINTS ALL IMMEDIATE")
    for fk in altered:
        table, _ = _constraint_ref(fk)
        _exec(
            conn,
            f"ALTER TABLE {table} ALTER CONSTRAINT "
            f"{quote_ident(fk.name)} NOT DEFERRABLE INITIALLY IMMEDIATE",
        )


_TRIGGER_STATE_SQL = {
    "O": "ENABLE TRIGGER",
    "D": "DISABLE TRIGGER",
    "R": "ENABLE REPLICA TRIGGER",
    "A": "ENABLE ALWAYS TRIGGER",
}


def _set_trigger(conn: Conn, trigger: catalog.TriggerState, state: str) -> None:
    # ONLY: each partition's clone of a parent's trigger has a state of its own.
    _exec(
        conn,
        f"ALTER TABLE ONLY {trigger.qualified} {_TRIGGER_STATE_SQL[state]} "
        f"{quote_ident(trigger.name)}",
    )


def _suspend_triggers(conn: Conn, tables: list[catalog.Table]) -> list[catalog.TriggerState]:
    """Hold off the user triggers of the loaded tables and their partitions; return their
    states as found. A restore stores the rows as snapshotted: a BEFORE trigger would rewrite
    them (the hashes would differ), an AFTER or TRUNCATE trigger would write elsewhere.

    ALTER TABLE ... DISABLE TRIGGER needs table ownership, not superuser (unlike
    session_replication_role), and is part of the transaction: a rollback undoes it.
    Foreign keys and CONSTRAINT TRIGGERs (checks) stay on.
    """
    triggers = catalog.user_triggers(conn, tables)
    for trigger in triggers:  # parents first: a parent's change may reach its partitions
        if trigger.enabled != "D":
            _set_trigger(conn, trigger, "D")
    return triggers


def _resume_triggers(
    conn: Conn, tables: list[catalog.Table], found: list[catalog.TriggerState]
) -> None:
    """Set every trigger back to its own state, parents before partitions (so that a server
    where a parent's change reaches the partitions still ends with each partition's own
    state), and prove that every trigger's state is what it was."""
    for trigger in found:
        if trigger.enabled != "D" or trigger.level > 0:
            _set_trigger(conn, trigger, trigger.enabled)
    now = catalog.user_triggers(conn, tables)
    if now != found:
        changed = sorted(
            {f"{t.relation}.{t.name}={t.enabled}" for t in now}
            ^ {f"{t.relation}.{t.name}={t.enabled}" for t in found}
        )
        raise VerificationFailed(
            "the triggers' states could not be set back to what they were "
            f"({', '.join(changed[:10])}); nothing was changed"
        )


def _refresh_matviews(conn: Conn, tables: list[catalog.Table], progress: Progress) -> list[str]:
    """Refresh the populated materialized views that read the loaded tables, in dependency
    order, in the load's transaction; one created WITH NO DATA stays unpopulated."""
    refreshed = []
    for view in catalog.dependent_matviews(conn, tables):
        if not view.populated:
            continue
        _exec(conn, f"REFRESH MATERIALIZED VIEW {view.qualified}")
        refreshed.append(view.key)
        _say(progress, f"refreshed materialized view {view.key}")
    return refreshed


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
        _exec(conn, f"INSERT INTO {table.qualified} SELECT FROM generate_series(1, %s)", (rows,))
    return rows


def _setval(conn: Conn, seq: dict[str, Any]) -> None:
    schema, _, name = str(seq["name"]).partition(".")
    if seq.get("last_value") is None:
        return
    _exec(
        conn,
        "SELECT setval(%s::regclass, %s, %s)",
        (db.qualified(schema, name), int(seq["last_value"]), bool(seq["is_called"])),
    )


def _run_load(
    conn: Conn,
    path: Path,
    manifest: fmt.Manifest,
    settings: Settings,
    preserved: Iterable[str],
    before_commit: Callable[[Conn], None] | None,
    progress: Progress,
) -> LoadResult:
    from dbtools.snapshot import hashing, load

    schemas = list(manifest.schemas)
    lock_tables(
        conn, schemas, settings.excluded_tables, "ACCESS EXCLUSIVE", settings.lock_timeout_seconds
    )
    _say(progress, "locked the tables")
    # Under our locks nothing can change the tables' schema until we commit.
    cat = catalog.read_catalog(conn, schemas, settings.excluded_tables, sequence_values=False)
    _check_schema(conn, manifest, schemas, "before the load")
    # Again under the locks, for the snapshot's own schemas: the callers' check ran before
    # any lock, and only now can no foreign key or default of these tables change.
    refuse_outside_references(conn, schemas, settings.excluded_tables)
    excluded_now = set(cat.excluded)
    # Snapshots taken before tables without columns were exported do not list them; such a
    # table is left as it is rather than emptied.
    target_keys = {t.key for t in cat.tables if t.columns or t.key in manifest.tables}
    missing = sorted(target_keys - set(manifest.tables))
    if missing:
        raise SnapshotError(
            f"the snapshot holds no data for {', '.join(missing)} (excluded when it was taken); "
            "restoring would empty them"
        )
    keep = catalog.normalize_table_names(preserved, schemas[0]) & target_keys
    tables = [t for t in cat.tables if t.key in manifest.tables and t.key not in excluded_now]
    order, cyclic = catalog.load_order(tables, cat.foreign_keys)
    by_key = {t.key: t for t in tables}
    ordered = [by_key[k] for k in order]

    result: dict[str, dict[str, Any]] = {}
    before = catalog.row_counts(conn, ordered)
    temps: dict[str, str] = {}
    for n, key in enumerate(sorted(keep)):
        table = by_key[key]
        temps[key] = f"_dbtools_keep_{n}"
        cols = ", ".join(quote_ident(c.name) for c in table.copy_columns)
        _exec(
            conn,
            f"CREATE TEMP TABLE {quote_ident(temps[key])} ON COMMIT DROP AS "
            f"SELECT {cols} FROM {table.only}",
        )
    # Before the TRUNCATE: its own triggers must not fire either.
    triggers = _suspend_triggers(conn, ordered)
    if ordered:
        _exec(conn, "TRUNCATE " + ", ".join(t.only for t in ordered))
    _say(progress, f"cleared {len(ordered)} tables")
    altered = _defer_cycles(conn, cyclic)
    for table in ordered:
        entry = manifest.tables[table.key]
        if table.key in keep:
            for fk in cat.foreign_keys:
                if fk.table != table.key or fk.ref_table not in by_key:
                    continue
                if fk.ref_table == table.key:
                    continue  # kept rows come back together with the rows they reference
                if fk.declared_on != fk.table:
                    continue  # a partition's own key binds some rows only: the key checks it
                if order.index(fk.ref_table) > order.index(table.key):
                    continue  # loaded later (a cycle): the deferred check covers it
                lost = _orphans(conn, temps[table.key], fk, by_key[fk.ref_table])
                if lost:
                    raise VerificationFailed(
                        f"{lost} preserved rows of {table.key} reference rows of "
                        f"{fk.ref_table} that the snapshot does not have ({fk.name}); "
                        "they would be lost, so nothing was changed"
                    )
            cols = ", ".join(quote_ident(c.name) for c in table.copy_columns)
            override = (
                " OVERRIDING SYSTEM VALUE"
                if any(c.identity == "a" for c in table.copy_columns)
                else ""
            )
            target = f"{table.qualified} ({cols})" if cols else table.qualified
            _exec(
                conn,
                f"INSERT INTO {target}{override} "
                f"SELECT {cols} FROM {quote_ident(temps[table.key])}",
            )
            rows = before[table.key]
        else:
            if table.columns:
                rows = load.load_table(conn, table, path, list(entry.files), entry.columns)
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
            "preserved": table.key in keep,
        }
        _say(progress, f"loaded {table.key}: {rows} rows")
    _undefer(conn, cyclic, altered)
    _resume_triggers(conn, ordered, triggers)

    sequences = 0
    for key in order:
        if key in keep:
            continue  # kept rows keep the target's own sequence position
        for seq in manifest.tables[key].sequences:
            _setval(conn, seq)
            sequences += 1
    for seq in manifest.sequences:
        _setval(conn, seq)
        sequences += 1

    after = catalog.row_counts(conn, ordered)
    for table in ordered:
        expected = before[table.key] if table.key in keep else manifest.tables[table.key].rows
        if after[table.key] != expected:
            raise VerificationFailed(
                f"{table.key}: {after[table.key]} rows after the load, expected {expected}"
            )
        if table.key in keep:
            continue
        entry = manifest.tables[table.key]
        got = hashing.content_hash(conn, table, [c["name"] for c in entry.columns])
        if got != entry.content_hash:
            raise VerificationFailed(
                f"{table.key}: content hash after the load {got} differs from the snapshot's "
                f"{entry.content_hash}"
            )
    _say(progress, "row counts and content hashes match the snapshot")
    refreshed = _refresh_matviews(conn, ordered, progress)
    _check_schema(conn, manifest, schemas, "after the load")
    if before_commit is not None:
        before_commit(conn)
    return LoadResult(
        snapshot=path,
        tables=result,
        sequences=sequences,
        deferred_constraints=[f"{fk.declared_on}.{fk.name}" for fk in cyclic],
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
    _say(progress, f"snapshot {path} verified: {len(manifest.tables)} tables")
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
            _exec(conn, "BEGIN")
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
                _exec(conn, "COMMIT")
        except BaseException:
            if not in_transaction:
                with contextlib.suppress(psycopg2.Error):
                    _exec(conn, "ROLLBACK")
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
        _say(progress, f"restoring {snapshot} into {env} ({t.masked})")
        with permit.granted(permit.Permit(env, "restore", ident)):  # approved just above
            load = load_snapshot(conn, snapshot, settings=settings, progress=progress)
        return RestoreResult(snapshot, env, ident.database, load, [])
    finally:
        conn.close()


__all__ = [
    "LoadResult",
    "RestoreResult",
    "SchemaMismatch",
    "load_snapshot",
    "refuse_outside_references",
    "restore",
    "verified_manifest",
]
