"""The short-lock apply: dev's staged changes (sync.staging) written into prod under a lock
that stops writes only for the time the changes take, never reads.

Before this runs, prod's backup was taken while the application went on reading and writing,
and the changed rows were staged. Then, in the guard's one transaction:

1. every synced table is locked IN EXCLUSIVE MODE (writes wait, reads go on: they see the old
   rows until the commit), within lock_timeout_seconds;
2. the schema is still the snapshots' (fingerprint);
3. no row the apply overwrites or deletes changed since the backup: staging found each such
   row equal to its backup copy and recorded its version (ctid, xmin), and each is still that
   version (sync.staging.record_versions); no row the apply inserts exists already; a table
   replaced whole is unchanged altogether (exactly the row versions staging found equal to
   the backup); and no sequence the apply sets moved. So the backup holds
   every row value the apply destroys, and `rollback` can bring it back. Rows the application
   wrote meanwhile that the apply does not touch are kept, exactly as if they had been
   written just after the commit;
4. user triggers are held off; inserts and updates go in foreign-key order, then deletes in
   reverse order (one retry with deletes first, for a unique value that moves from a deleted
   row to a new one); each statement must touch exactly the staged number of rows, and a
   delete that would cascade into rows the apply does not own is refused, as is an update
   that would fire ON UPDATE CASCADE / SET NULL / SET DEFAULT into them; a rule on a table
   the apply writes refuses the short path (it may rewrite the writes; the full load's
   TRUNCATE and COPY ignore rules); deferred constraints are checked before the savepoint
   is released (SET CONSTRAINTS ALL IMMEDIATE), not at COMMIT;
5. every touched row is compared with its staged value (text forms, column by column), the
   deleted keys are gone, the sequences are set, materialized views refreshed.

Keys are matched as stored (sync.staging.on_key): a float key -0 is not the row keyed 0. A
table replaced whole is proven unchanged by its row versions, recorded by staging with row
hashes that sum to the backup's content hash: no snapshot xmin, so no dependence on other
transactions of the cluster. Sequences are set with ALTER SEQUENCE ... RESTART and setval
(post_load.set_sequence), which a rollback undoes; until the commit, nextval() on them waits,
as writes to the locked tables do, and reads go on.

Any doubt raises Conflict: the caller rolls the apply back to its savepoint, keeps the lock,
and loads in full after a fresh backup (the long path). A database error rolls back the whole
run as before.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.errors

from dbtools import db, faults
from dbtools.db import Conn, Progress, execute, quote_ident, say
from dbtools.snapshot import format as fmt
from dbtools.snapshot import post_load, suspend
from dbtools.snapshot.preflight import LoadPlan, check_schema
from dbtools.sync.staging import BY_KEY, REPLACE, StagedTable, Staging
from dbtools.sync.staging import on_key as _on_key


class Conflict(Exception):
    """The short path cannot prove the apply safe: load in full after a fresh backup."""


@dataclass
class DeltaResult:
    tables: dict[str, dict[str, Any]]  # key -> rows_before, rows_after, preserved, counts
    sequences: int
    refreshed: list[str]
    suspended_triggers: list[str]
    seconds: float  # from the lock to the end of the writes


def _one(conn: Conn, sql: str) -> tuple[Any, ...]:
    rows = execute(conn, sql)
    return tuple(rows[0])


def _matching(conn: Conn, st: StagedTable, stage: str) -> int:
    """Rows of the table whose key is one of the stage's."""
    (rows,) = _one(conn, f"SELECT count(*) FROM {st.table.only} t JOIN {stage} s ON {_on_key(st)}")
    return int(rows)


def _prove_untouched(conn: Conn, st: StagedTable) -> None:
    t = st.table
    if st.mode == REPLACE:  # exactly the row versions staging found equal to the backup
        assert st.versions is not None
        rows, same = _one(
            conn,
            f"SELECT count(*), count(v.__dbtools_ctid) FROM {t.only} t "
            f"LEFT JOIN {st.versions} v ON t.tableoid = v.__dbtools_rel "
            "AND t.ctid = v.__dbtools_ctid AND t.xmin::text = v.__dbtools_xmin",
        )
        if rows != st.prod_rows or same != rows:
            raise Conflict(f"{t.key} was written since the backup")
        return
    if st.versions is not None:  # each row still the version staging found equal to the backup
        (moved,) = _one(
            conn,
            f"SELECT count(*) FROM {st.versions} s LEFT JOIN {t.only} t ON {_on_key(st)} "
            "WHERE t.ctid IS DISTINCT FROM s.__dbtools_ctid "
            "OR t.xmin::text IS DISTINCT FROM s.__dbtools_xmin",
        )
        if moved:
            raise Conflict(
                f"{moved} rows of {t.key} that the apply changes changed since the backup"
            )
    stage = st.stages.get("inserted")
    if stage is not None and (rows := _matching(conn, st, stage)):
        raise Conflict(f"{rows} keys of {t.key} that the apply inserts exist already")


def _sequences(
    conn: Conn, plan: LoadPlan, dev: fmt.Manifest, backup: fmt.Manifest
) -> list[tuple[str, list[Any]]]:
    """The sequences whose value the apply sets (dev's differs from the backup's), refused
    when prod's moved since the backup: setting dev's value could hand out ids again."""
    skip = set(plan.keep)
    dev_v, old_v = dev.sequence_values(skip), backup.sequence_values(skip)
    out = []
    for name, value in sorted(dev_v.items()):
        if value == old_v.get(name) or value[0] is None:
            continue
        schema, _, seq = name.partition(".")
        qualified = db.qualified(schema, seq)
        # A no-op ALTER SEQUENCE takes the sequence's lock (nextval() waits until the commit,
        # once the calls under way have committed): what is read now cannot move before the
        # apply sets it, even through a table the lock does not hold.
        ((increment,),) = execute(
            conn, "SELECT seqincrement FROM pg_sequence WHERE seqrelid = %s::regclass", (qualified,)
        )
        execute(conn, f"ALTER SEQUENCE {qualified} INCREMENT BY {int(increment)}")
        now = list(_one(conn, f"SELECT last_value, is_called FROM {qualified}"))
        if now != old_v.get(name):
            raise Conflict(f"sequence {name} moved since the backup")
        out.append((name, value))
    return out


def _write(conn: Conn, st: StagedTable, kind: str) -> None:
    t, stage = st.table, st.stages.get(kind)
    cols = [quote_ident(c) for c in st.columns]
    if kind == "deleted":
        if st.mode == REPLACE:
            sql = f"DELETE FROM {t.only}"
        elif stage is None:
            return
        else:
            sql = f"DELETE FROM {t.only} t USING {stage} s WHERE {_on_key(st)}"
    elif stage is None:
        return
    elif kind == "inserted":
        identity = any(c.identity == "a" for c in t.columns)
        sql = (
            f"INSERT INTO {t.qualified} ({', '.join(cols)})"
            + (" OVERRIDING SYSTEM VALUE" if identity else "")
            + f" SELECT {', '.join(cols)} FROM {stage}"
        )
    else:
        # UPDATE can set a GENERATED ALWAYS identity column only to DEFAULT: such a column is
        # left out, and a row whose value dev changed cannot be written here
        always = {c.name for c in t.columns if c.identity == "a"} - set(st.key)
        kept = [quote_ident(n) for n in st.columns if n in always]
        if kept:
            differs = " OR ".join(f"t.{c} IS DISTINCT FROM s.{c}" for c in kept)
            (rows,) = _one(
                conn,
                f"SELECT count(*) FROM {t.only} t JOIN {stage} s ON {_on_key(st)} WHERE {differs}",
            )
            if rows:
                raise Conflict(f"{t.key}: {rows} rows change a GENERATED ALWAYS identity value")
        sets = [
            f"{c} = s.{c}"
            for c, n in zip(cols, st.columns, strict=True)
            if n not in st.key and n not in always
        ]
        if not sets:
            return
        sql = f"UPDATE {t.only} t SET {', '.join(sets)} FROM {stage} s WHERE {_on_key(st)}"
    with conn.cursor() as cur:
        cur.execute(sql)
        done = cur.rowcount
    if done != st.counts.get(kind, 0):
        raise Conflict(f"{t.key}: {done} rows {kind}, {st.counts.get(kind, 0)} staged")


def _no_cascade(conn: Conn, st: StagedTable, plan: LoadPlan) -> None:
    """Deleting these rows must not reach rows the apply does not own (ON DELETE CASCADE, SET
    NULL, SET DEFAULT): every row still referring to one is the application's own."""
    stage = st.stages.get("deleted")
    if stage is None and st.mode != REPLACE:
        return  # nothing deleted
    for fk in plan.foreign_keys:
        if fk.ref_table != st.table.key or fk.on_delete in ("NO ACTION", "RESTRICT"):
            continue
        schema, _, name = fk.table.partition(".")
        source = stage if stage is not None else f"{st.table.only}"
        on = " AND ".join(
            f"c.{quote_ident(a)} = s.{quote_ident(b)}"
            for a, b in zip(fk.columns, fk.ref_columns, strict=True)
        )
        (rows,) = _one(
            conn, f"SELECT count(*) FROM {db.qualified(schema, name)} c JOIN {source} s ON {on}"
        )
        if rows:
            raise Conflict(
                f"deleting from {st.table.key} would {fk.on_delete} into {rows} rows of {fk.table}"
            )


def _no_update_action(conn: Conn, st: StagedTable, plan: LoadPlan, staging: Staging) -> None:
    """Updating these rows must not reach rows the apply does not own (ON UPDATE CASCADE,
    SET NULL, SET DEFAULT, when a referenced value changes): every row referring to a value
    that changes is one the apply stages itself (verified after the writes, or deleted)."""
    stage = st.stages.get("updated")
    if stage is None:
        return
    staged = {s.table.key: s for s in staging.tables}
    for fk in plan.foreign_keys:
        if fk.ref_table != st.table.key or fk.on_update in ("NO ACTION", "RESTRICT"):
            continue
        changing = [c for c in fk.ref_columns if c not in st.key]
        if not changing:
            continue  # the apply never changes a key
        differs = " OR ".join(
            # a generated column (not staged) may change with any row the apply updates
            f"t.{quote_ident(c)}::text IS DISTINCT FROM s.{quote_ident(c)}::text"
            if c in st.columns
            else "true"
            for c in changing
        )
        old = ", ".join(f"t.{quote_ident(c)}" for c in fk.ref_columns)
        on = " AND ".join(
            f"c.{quote_ident(a)} = o.{quote_ident(b)}"
            for a, b in zip(fk.columns, fk.ref_columns, strict=True)
        )
        owned = ""
        child = staged.get(fk.table)
        if child is not None and child.mode == BY_KEY:
            owned = "".join(
                f" AND NOT EXISTS (SELECT FROM {x} x WHERE {_on_key(child, 'c', 'x')})"
                for kind, x in child.stages.items()
                if kind in ("inserted", "updated", "deleted")
            )
        schema, _, name = fk.table.partition(".")
        (rows,) = _one(
            conn,
            f"SELECT count(*) FROM {db.qualified(schema, name)} c JOIN ("
            f"SELECT {old} FROM {st.table.only} t JOIN {stage} s ON {_on_key(st)} "
            f"WHERE {differs}) o ON {on}{owned}",
        )
        if rows:
            raise Conflict(
                f"updating {st.table.key} would {fk.on_update} into {rows} rows of {fk.table}"
            )


def _writes(conn: Conn, staging: Staging, plan: LoadPlan, deletes_first: bool) -> None:
    order = staging.tables
    # a table replaced whole is emptied before anything goes in (its new rows are all dev's)
    emptied = [("deleted", st) for st in reversed(order) if st.mode == REPLACE]
    deletes = [("deleted", st) for st in reversed(order) if st.mode != REPLACE]
    writes = [(k, st) for k in ("inserted", "updated") for st in order]
    steps = [*deletes, *writes] if deletes_first else [*writes, *deletes]
    for kind, st in [*emptied, *steps]:
        if kind == "deleted":
            _no_cascade(conn, st, plan)
        elif kind == "updated":
            _no_update_action(conn, st, plan, staging)
        _write(conn, st, kind)


def _verify(conn: Conn, st: StagedTable, dev: fmt.Manifest) -> None:
    t = st.table
    if st.mode == REPLACE:
        from dbtools.snapshot import hashing

        entry = dev.tables[t.key]
        (rows,) = _one(conn, f"SELECT count(*) FROM {t.only}")
        got = hashing.content_hash(conn, t, st.columns)
        if rows != entry.rows or got != entry.content_hash:
            raise Conflict(f"{t.key} does not match the dev snapshot after the apply")
        return
    differs = " OR ".join(
        f"t.{quote_ident(c)}::text IS DISTINCT FROM s.{quote_ident(c)}::text" for c in st.columns
    )
    for kind in ("inserted", "updated"):
        stage = st.stages.get(kind)
        if stage is None:
            continue
        rows, wrong = _one(
            conn,
            f"SELECT count(*), count(*) FILTER (WHERE {differs}) "
            f"FROM {t.only} t JOIN {stage} s ON {_on_key(st)}",
        )
        if rows != st.counts[kind] or wrong:
            raise Conflict(f"{t.key}: {wrong} {kind} rows differ from dev's after the apply")
    stage = st.stages.get("deleted")
    if stage is not None and (rows := _matching(conn, st, stage)):
        raise Conflict(f"{t.key}: {rows} deleted rows are still there")


def _no_rules(conn: Conn, staging: Staging) -> None:
    """The apply's INSERT, UPDATE and DELETE statements must do what they say: a rule (CREATE
    RULE) on a table they write may rewrite them or write elsewhere. They write the staged
    tables only (a foreign-key action reaches no other: _no_cascade, _no_update_action). The
    full load is not rewritten (TRUNCATE and COPY ignore rules)."""
    rows = execute(
        conn,
        "SELECT r.ev_class::regclass::text, r.rulename FROM pg_rewrite r "
        "WHERE r.ev_class = ANY(%s::oid[]) AND r.rulename <> '_RETURN' ORDER BY 1, 2 LIMIT 1",
        ([st.table.oid for st in staging.tables],),
    )
    if rows:
        table, rule = rows[0]
        raise Conflict(f"rule {rule} on {table} may rewrite the apply's writes")


def _checked_now(conn: Conn) -> None:
    """Fire the checks of DEFERRABLE constraints the writes left pending: a violation would
    otherwise surface only at COMMIT, after the verification and outside the savepoint (the
    run failed instead of loading in full), and pending checks make the ALTER TABLEs that set
    the triggers back fail. The constraints stay immediate for the rest of the transaction."""
    execute(conn, "SET CONSTRAINTS ALL IMMEDIATE")


def apply_locked(
    conn: Conn,
    staging: Staging,
    plan: LoadPlan,
    dev: fmt.Manifest,
    backup: fmt.Manifest,
    schemas: list[str],
    progress: Progress,
    locked_at: float,
) -> DeltaResult:
    """Steps 2-5 of the module doc, on the guard's connection whose tables are locked."""
    check_schema(conn, dev, schemas, "before the apply")
    _no_rules(conn, staging)
    for st in staging.tables:
        _prove_untouched(conn, st)
    sequences = _sequences(conn, plan, dev, backup)
    say(progress, "no row the apply changes was written since the backup")
    tables = [st.table for st in staging.tables]
    triggers = suspend.suspend_triggers(conn, tables)
    execute(conn, "SAVEPOINT dbtools_delta_order")
    try:
        _writes(conn, staging, plan, deletes_first=False)
        _checked_now(conn)
    except psycopg2.errors.IntegrityError:
        execute(conn, "ROLLBACK TO SAVEPOINT dbtools_delta_order")
        try:
            _writes(conn, staging, plan, deletes_first=True)
            _checked_now(conn)
        except psycopg2.errors.IntegrityError as exc:
            raise Conflict(
                f"the changes conflict with a constraint ({db.describe_error(exc)})"
            ) from None
    execute(conn, "RELEASE SAVEPOINT dbtools_delta_order")
    faults.pause("load.table")
    suspend.resume_triggers(conn, tables, triggers)
    for st in staging.tables:
        _verify(conn, st, dev)
    for name, (last_value, is_called) in sequences:
        schema, _, seq = name.partition(".")
        post_load.set_sequence(conn, db.qualified(schema, seq), int(last_value), bool(is_called))
    refreshed = post_load.refresh_matviews(conn, tables, progress)
    check_schema(conn, dev, schemas, "after the apply")
    out: dict[str, dict[str, Any]] = {}
    for key in plan.order:
        entry = backup.tables.get(key)
        before = entry.rows if entry is not None else 0
        out[key] = {
            "rows_before": before,
            "rows_after": before,
            "preserved": key in plan.keep,
            "inserted": 0,
            "updated": 0,
            "deleted": 0,
        }
    for st in staging.tables:
        c = st.counts
        info = out[st.table.key]
        info.update(inserted=c.get("inserted", 0), updated=c.get("updated", 0))
        info["deleted"] = c.get("deleted", 0)
        info["rows_after"] = info["rows_before"] + info["inserted"] - info["deleted"]
    for key in plan.keep:
        for kind in ("inserted", "updated", "deleted"):
            out[key].pop(kind, None)
    return DeltaResult(
        tables=out,
        sequences=len(sequences),
        refreshed=refreshed,
        suspended_triggers=[f"{t.relation}.{t.name}" for t in triggers if t.enabled != "D"],
        seconds=time.monotonic() - locked_at,
    )


__all__ = ["BY_KEY", "Conflict", "DeltaResult", "apply_locked"]
