"""The preserved tables of a load: their current rows kept aside before the TRUNCATE and put
back in their turn of the load order, refused (VerificationFailed) when a kept row references
a row the snapshot does not have.

The rows wait in temporary tables dropped at commit (ON COMMIT DROP), inside the load's one
transaction: a rollback leaves the preserved tables as they were.
"""

from __future__ import annotations

from dbtools import catalog
from dbtools.db import Conn, execute, quote_ident
from dbtools.errors import VerificationFailed
from dbtools.snapshot.preflight import LoadPlan


def keep_aside(conn: Conn, plan: LoadPlan) -> dict[str, str]:
    """Copy every preserved table's rows into a temporary table; return its name by table key."""
    temps: dict[str, str] = {}
    for n, key in enumerate(sorted(plan.keep)):
        table = plan.by_key[key]
        temps[key] = f"_dbtools_keep_{n}"
        cols = ", ".join(quote_ident(c.name) for c in table.copy_columns)
        execute(
            conn,
            f"CREATE TEMP TABLE {quote_ident(temps[key])} ON COMMIT DROP AS "
            f"SELECT {cols} FROM {table.only}",
        )
    return temps


def _orphans(conn: Conn, temp: str, fk: catalog.ForeignKey, ref: catalog.Table) -> int:
    """Kept rows whose reference the loaded data cannot satisfy (MATCH SIMPLE semantics)."""
    not_null = " AND ".join(f"k.{quote_ident(c)} IS NOT NULL" for c in fk.columns)
    match = " AND ".join(
        f"r.{quote_ident(rc)} = k.{quote_ident(c)}"
        for c, rc in zip(fk.columns, fk.ref_columns, strict=True)
    )
    rows = execute(
        conn,
        f"SELECT count(*) FROM {quote_ident(temp)} k WHERE {not_null} "
        f"AND NOT EXISTS (SELECT 1 FROM {ref.only} r WHERE {match})",
    )
    return int(rows[0][0])


def put_back(conn: Conn, plan: LoadPlan, table: catalog.Table, temp: str) -> None:
    """Insert a preserved table's kept rows (from `temp`) once the tables they reference are
    loaded; refuse when one of them references a row the snapshot does not have."""
    for fk in plan.foreign_keys:
        if fk.table != table.key or fk.ref_table not in plan.by_key:
            continue
        if fk.ref_table == table.key:
            continue  # kept rows come back together with the rows they reference
        if fk.declared_on != fk.table:
            continue  # a partition's own key binds some rows only: the key checks it
        if plan.order.index(fk.ref_table) > plan.order.index(table.key):
            continue  # loaded later (a cycle): the deferred check covers it
        lost = _orphans(conn, temp, fk, plan.by_key[fk.ref_table])
        if lost:
            raise VerificationFailed(
                f"{lost} preserved rows of {table.key} reference rows of "
                f"{fk.ref_table} that the snapshot does not have ({fk.name}); "
                "they would be lost, so nothing was changed"
            )
    cols = ", ".join(quote_ident(c.name) for c in table.copy_columns)
    override = (
        " OVERRIDING SYSTEM VALUE" if any(c.identity == "a" for c in table.copy_columns) else ""
    )
    target = f"{table.qualified} ({cols})" if cols else table.qualified
    execute(conn, f"INSERT INTO {target}{override} SELECT {cols} FROM {quote_ident(temp)}")
