"""The per-table content hash: the same on export and after a load, computed by the server.

An order-independent multiset hash: the row count plus the sum, as an exact numeric, of the
first 64 bits (signed) of md5 over each row's text form `ROW(cols...)::text`. Sums do not
depend on row order, so no ORDER BY (and no sort of a big table) is needed; nothing builds one
huge string, so PostgreSQL's 1 GB value limit and string_agg's memory never come into play.
The row text depends on the session's output settings (UTC, ISO dates, extra_float_digits=3,
hex bytea), which db.connect sets on every dbtools connection. docs/TYPES.md has the reasoning.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg2
import psycopg2.extensions

from dbtools import catalog
from dbtools.db import describe_error, quote_ident
from dbtools.errors import SnapshotError

VERSION = "v1"


def row_hash_expression(columns: Sequence[str]) -> str:
    """SQL for one row's signed 64-bit hash (bigint) over the named columns."""
    row = ", ".join(quote_ident(c) for c in columns)
    return f"('x' || left(md5(ROW({row})::text), 16))::bit(64)::bigint"


def format_hash(count: int, total: int) -> str:
    return f"{VERSION}:{count}:{total}"


def content_hash(
    conn: psycopg2.extensions.connection, table: catalog.Table, columns: list[str]
) -> str:
    """'v1:<rows>:<sum of row hashes>' of the table's current contents as this session sees them."""
    sql = (
        f"SELECT count(*), coalesce(sum({row_hash_expression(columns)}), 0)::text "
        f"FROM {table.qualified}"
    )
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            row = cur.fetchone()
    except psycopg2.Error as exc:
        raise SnapshotError(f"cannot hash {table.key}: {describe_error(exc)}") from None
    assert row is not None
    return format_hash(int(row[0]), int(row[1]))
