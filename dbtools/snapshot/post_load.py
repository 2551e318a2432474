"""What a load does once every table's rows are in, before its commit: set the sequences the
snapshot records, prove every table against the manifest (row count, and content hash for the
tables the snapshot filled), and refresh the materialized views that read the loaded tables.
Any failure raises, and the load's transaction rolls back.
"""

from __future__ import annotations

from typing import Any

from dbtools import catalog, db
from dbtools.db import Conn, Progress, execute, say
from dbtools.errors import VerificationFailed
from dbtools.snapshot import format as fmt
from dbtools.snapshot.preflight import LoadPlan


def set_sequence(conn: Conn, qualified: str, last_value: int, is_called: bool) -> None:
    """Set a sequence so that a rollback sets it back. setval() alone is not transactional (a
    failed or rolled-back load would leave prod's sequence moved); ALTER SEQUENCE ... RESTART
    gives the sequence new storage in this (sub)transaction, which a rollback discards along
    with what setval() then writes into it. RESTART WITH n leaves is_called false, setval
    sets it. ALTER SEQUENCE holds off nextval() on the sequence until the commit (the load's
    tables are locked against writes anyway); reads of the sequence go on."""
    execute(conn, f"ALTER SEQUENCE {qualified} RESTART WITH {int(last_value)}")
    if is_called:
        execute(conn, "SELECT setval(%s::regclass, %s, true)", (qualified, int(last_value)))


def _setval(conn: Conn, seq: dict[str, Any]) -> None:
    schema, _, name = str(seq["name"]).partition(".")
    if seq.get("last_value") is None:
        return
    set_sequence(conn, db.qualified(schema, name), int(seq["last_value"]), bool(seq["is_called"]))


def set_sequences(conn: Conn, plan: LoadPlan, manifest: fmt.Manifest) -> int:
    """Set the loaded tables' sequences and the snapshot's other sequences; return how many."""
    sequences = 0
    for key in plan.order:
        if key in plan.keep:
            continue  # kept rows keep the target's own sequence position
        for seq in manifest.tables[key].sequences:
            _setval(conn, seq)
            sequences += 1
    for seq in manifest.sequences:
        _setval(conn, seq)
        sequences += 1
    return sequences


def verify_loaded(
    conn: Conn, plan: LoadPlan, manifest: fmt.Manifest, before: dict[str, int]
) -> None:
    """Re-count every loaded table (a preserved one must have its rows from `before`) and
    re-hash every table the snapshot filled; VerificationFailed names the first that differs."""
    from dbtools.snapshot import hashing

    after = catalog.row_counts(conn, plan.tables)
    for table in plan.tables:
        keep = table.key in plan.keep
        expected = before[table.key] if keep else manifest.tables[table.key].rows
        if after[table.key] != expected:
            raise VerificationFailed(
                f"{table.key}: {after[table.key]} rows after the load, expected {expected}"
            )
        if keep:
            continue
        entry = manifest.tables[table.key]
        got = hashing.content_hash(conn, table, [c["name"] for c in entry.columns])
        if got != entry.content_hash:
            raise VerificationFailed(
                f"{table.key}: content hash after the load {got} differs from the snapshot's "
                f"{entry.content_hash}"
            )


def refresh_matviews(conn: Conn, tables: list[catalog.Table], progress: Progress) -> list[str]:
    """Refresh the populated materialized views that read the loaded tables, in dependency
    order, in the load's transaction; one created WITH NO DATA stays unpopulated."""
    refreshed = []
    for view in catalog.dependent_matviews(conn, tables):
        if not view.populated:
            continue
        execute(conn, f"REFRESH MATERIALIZED VIEW {view.qualified}")
        refreshed.append(view.key)
        say(progress, f"refreshed materialized view {view.key}")
    return refreshed
