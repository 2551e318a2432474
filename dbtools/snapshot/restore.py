"""Loading a snapshot into a database: all of it in one transaction, or nothing.

`load_snapshot` is the one load used by `dbtools restore` and by sync-data:
verify the snapshot -> same schema as the target (else SafetyError with the object diff) ->
lock every table (waiting at most lock_timeout_seconds) -> keep preserved tables' rows aside
-> TRUNCATE the table set -> COPY in foreign-key order -> put preserved rows back -> set
sequences -> re-count and re-hash every table against the manifest -> the caller's
before_commit checks -> COMMIT. Any failure rolls back: the target keeps its data.

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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extensions

from dbtools import catalog, db, safety
from dbtools.config import Settings, redact
from dbtools.db import Conn, Progress, quote_ident
from dbtools.errors import (
    ConnectionFailed,
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
    """The target's schema is not the snapshot's; `diff` holds the object-level lines."""

    def __init__(self, message: str, diff: list[str]) -> None:
        super().__init__(message, hint="apply the same migrations to both sides first")
        self.diff = diff


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
        f"the target's schema {when} differs from the snapshot's ({len(lines)} objects): {shown}",
        lines,
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
        "SELECT n.nspname, c.relname FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname = ANY(%s) "
        "ORDER BY 1, 2",
        (list(schemas),),
    )
    locked = []
    for schema, name in rows:
        key = f"{schema}.{name}"
        if name in catalog.BOOKKEEPING_TABLES or key in skip:
            continue
        try:
            _exec(conn, f"LOCK TABLE {db.qualified(schema, name)} IN {mode} MODE")
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
        f"AND NOT EXISTS (SELECT 1 FROM {ref.qualified} r WHERE {match})",
    )
    return int(rows[0][0])


def _defer_cycles(conn: Conn, cyclic: list[catalog.ForeignKey]) -> list[catalog.ForeignKey]:
    """Make cyclic FKs deferred for this transaction; return those we altered."""
    altered = []
    for fk in cyclic:
        schema, _, name = fk.table.partition(".")
        table = db.qualified(schema, name)
        if not fk.deferrable:
            _exec(
                conn,
                f"ALTER TABLE {table} ALTER CONSTRAINT {quote_ident(fk.name)} "
                "DEFERRABLE INITIALLY DEFERRED",
            )
            altered.append(fk)
        _exec(conn, f"SET CONSTRAINTS {quote_ident(schema)}.{quote_ident(fk.name)} DEFERRED")
    return altered


def _undefer(
    conn: Conn, cyclic: list[catalog.ForeignKey], altered: list[catalog.ForeignKey]
) -> None:
    for fk in cyclic:
        schema = fk.table.partition(".")[0]
        # Fires the pending checks now, so a broken reference fails before commit.
        _exec(conn, f"SET CONSTRAINTS {quote_ident(schema)}.{quote_ident(fk.name)} IMMEDIATE")
    for fk in altered:
        schema, _, name = fk.table.partition(".")
        _exec(
            conn,
            f"ALTER TABLE {db.qualified(schema, name)} ALTER CONSTRAINT "
            f"{quote_ident(fk.name)} NOT DEFERRABLE INITIALLY IMMEDIATE",
        )


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
    excluded_now = set(cat.excluded)
    target_keys = {t.key for t in cat.tables}
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
            f"SELECT {cols} FROM {table.qualified}",
        )
    if ordered:
        _exec(conn, "TRUNCATE " + ", ".join(t.qualified for t in ordered))
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
            _exec(
                conn,
                f"INSERT INTO {table.qualified} ({cols}){override} "
                f"SELECT {cols} FROM {quote_ident(temps[table.key])}",
            )
            rows = before[table.key]
        else:
            rows = load.load_table(conn, table, path, list(entry.files), entry.columns)
            if rows != entry.rows:
                raise VerificationFailed(
                    f"{table.key}: loaded {rows} rows, the snapshot has {entry.rows}"
                )
        result[table.key] = {
            "rows_before": before[table.key],
            "rows_after": rows,
            "preserved": table.key in keep,
        }
        _say(progress, f"loaded {table.key}: {rows} rows")
    _undefer(conn, cyclic, altered)

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
    _check_schema(conn, manifest, schemas, "after the load")
    _say(progress, "row counts and content hashes match the snapshot")
    if before_commit is not None:
        before_commit(conn)
    return LoadResult(
        snapshot=path,
        tables=result,
        sequences=sequences,
        deferred_constraints=[f"{fk.table}.{fk.name}" for fk in cyclic],
    )


def load_snapshot(
    conn: Conn,
    snapshot_path: Path,
    *,
    settings: Settings,
    preserved: Iterable[str] = (),
    before_commit: Callable[[Conn], None] | None = None,
    progress: Progress = None,
) -> LoadResult:
    """Replace the contents of conn's tables by the snapshot's, in one transaction (module doc).

    preserved: table keys or bare names whose current rows are kept (their snapshot rows are
    ignored). Anything uncommitted on conn is rolled back first: the load is its own transaction.
    """
    path = Path(snapshot_path)
    manifest = verified_manifest(path)
    _say(progress, f"snapshot {path} verified: {len(manifest.tables)} tables")
    was_autocommit = conn.autocommit
    if not was_autocommit:
        conn.rollback()
    conn.autocommit = True
    try:
        _exec(conn, "BEGIN")
        try:
            result = _run_load(conn, path, manifest, settings, preserved, before_commit, progress)
            _exec(conn, "COMMIT")
        except BaseException:
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
        with contextlib.suppress(psycopg2.Error):
            conn.autocommit = was_autocommit
    return result


def _other_side(settings: Settings, env: str) -> tuple[db.Target, db.Identity] | None:
    """The opposite side's identity when its URL is configured and it answers."""
    other = "prod" if env == "dev" else "dev"
    if not settings.urls.get(other):
        return None
    try:
        t = db.target(settings, other)
        conn = db.connect(t, purpose="read", settings=settings)
    except (ConnectionFailed, DbtoolsError):
        return None
    try:
        return t, db.identity(conn)
    finally:
        conn.close()


def restore(
    settings: Settings, path: Path, env: str, *, progress: Progress = None
) -> RestoreResult:
    """`dbtools restore`: load a snapshot into env after the safety rules allow writing it.

    It takes no backup of its own: the sync pipelines wrap it with one.
    """
    from dbtools.snapshot.archive import resolve_path

    snapshot = resolve_path(settings, str(path), env)
    t = db.target(settings, env)
    conn = db.connect(t, purpose="write", settings=settings)
    warnings: list[str] = []
    try:
        ident = db.identity(conn)
        other = _other_side(settings, env)
        if other is None:
            safety.assert_writable(t, ident)
            warnings.append(
                f"the {'prod' if env == 'dev' else 'dev'} database could not be checked "
                "for being a different database"
            )
        else:
            safety.assert_writable(t, ident, other[0], other[1])
        _say(progress, f"restoring {snapshot} into {env} ({t.masked})")
        load = load_snapshot(conn, snapshot, settings=settings, progress=progress)
        return RestoreResult(snapshot, env, ident.database, load, [redact(w) for w in warnings])
    finally:
        conn.close()


__all__ = [
    "LoadResult",
    "RestoreResult",
    "SchemaMismatch",
    "load_snapshot",
    "restore",
    "verified_manifest",
]
