"""The per-table content hash: the same on export and after a load, computed by the server.

An order-independent multiset hash: the row count plus the sum, as an exact numeric, of the
first 64 bits (signed) of md5 over each row's text form `ROW(cols...)::text`. Sums do not
depend on row order, so no ORDER BY (and no sort of a big table) is needed; nothing builds one
huge string, so PostgreSQL's 1 GB value limit and string_agg's memory never come into play.
The row text depends on the session's output settings (UTC, ISO dates, extra_float_digits=3,
hex bytea), which db.connect sets on every dbtools connection. docs/TYPES.md has the reasoning.

Every read of a table's rows goes through `source_sql`: an inheritance parent is read ONLY,
so a child's rows are counted once, with the child (partitioned tables are read whole: their
rows live in their partitions, which the catalog folds into the parent).
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg2
import psycopg2.extensions

from dbtools import catalog, interrupt
from dbtools.db import describe_error, quote_ident
from dbtools.errors import SnapshotError

VERSION = "v1"


def row_hash_expression(columns: Sequence[str]) -> str:
    """SQL for one row's signed 64-bit hash (bigint) over the named columns."""
    row = ", ".join(quote_ident(c) for c in columns)
    return f"('x' || left(md5(ROW({row})::text), 16))::bit(64)::bigint"


def format_hash(count: int, total: int) -> str:
    return f"{VERSION}:{count}:{total}"


def is_partitioned(conn: psycopg2.extensions.connection, table: catalog.Table) -> bool:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT c.relkind = 'p' FROM pg_class c WHERE c.oid = %s::regclass",
            (table.qualified,),
        )
        row = cur.fetchone()
    return bool(row and row[0])


def source_sql(conn: psycopg2.extensions.connection, table: catalog.Table) -> str:
    """The FROM item that reads this table's own rows: `ONLY t` unless t is partitioned."""
    if is_partitioned(conn, table):
        return table.qualified
    return f"ONLY {table.qualified}"


def hashed_columns(table: catalog.Table, columns: Sequence[str]) -> list[str]:
    """The copied columns, then the table's stored generated columns (hashed, never copied).

    A generated value is data the reader of the table sees; hashing it on both sides proves
    the target regenerated the same values. Callers pass the copied columns only (the
    manifest's list), so export and load agree without the manifest naming them.
    """
    names = list(columns)
    names += [c.name for c in table.columns if c.generated and c.name not in names]
    return names


def content_hash(
    conn: psycopg2.extensions.connection, table: catalog.Table, columns: list[str]
) -> str:
    """'v1:<rows>:<sum of row hashes>' of the table's current contents as this session sees them.

    `columns` are the copied columns; generated ones are added (`hashed_columns`). A table
    without columns hashes its row count alone (every row's text is `()`).
    """
    try:
        with interrupt.cancel_on_signal(conn):
            names = hashed_columns(table, columns)
            total = f"sum({row_hash_expression(names)})" if names else "0"
            sql = f"SELECT count(*), coalesce({total}, 0)::text FROM {source_sql(conn, table)}"
            with conn.cursor() as cur:
                cur.execute(sql)
                row = cur.fetchone()
    except psycopg2.Error as exc:
        interrupt.raise_if_received()
        raise SnapshotError(f"cannot hash {table.key}: {describe_error(exc)}") from None
    assert row is not None
    return format_hash(int(row[0]), int(row[1]))
