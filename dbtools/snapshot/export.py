"""One table -> Parquet, streamed: COPY ... TO STDOUT (csv) -> Arrow record batches -> zstd Parquet.

A thread runs the COPY into a pipe; the Arrow CSV reader converts it block by block with the
column types chosen by `types.plan_table`, and each batch goes straight to the ParquetWriter.
At most a few blocks of `batch_bytes` are in memory at any time, whatever the table's size.

Why CSV and not binary COPY: PostgreSQL's CSV keeps NULL (unquoted empty) apart from ''
(quoted empty) and prints every value in its exact text form, which the Arrow reader parses
exactly or rejects; docs/BENCHMARKS.md has the measurements that chose it.

A native column whose values do not all fit its Arrow type (±infinity, BC dates, NaN in
numeric(p,s), a multi-dimensional array) makes the reader or the conversion after it fail; the
table is then exported again, from scratch, with that column in text form, so a column is
stored one way in all of a table's files. The caller's transaction is REPEATABLE READ, so the
rerun sees the same rows.

The content hash is a second pass of the server over the rows. Given `hash_conn`, a second
connection inside the same snapshot, it runs there concurrently with the COPY, so the export
takes about max(COPY, hash) instead of their sum.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extensions
import pyarrow as pa

from dbtools import catalog, interrupt
from dbtools.db import describe_error, quote_ident
from dbtools.errors import SnapshotError
from dbtools.snapshot import hashing, types
from dbtools.snapshot.copy_stream import ColumnRejected, RowTooWide, stream
from dbtools.snapshot.encryption import TableKey
from dbtools.snapshot.parquet_files import NO_COLUMNS_FIELD, Dest, PartWriter, file_stem
from dbtools.snapshot.upload import RemoteBuild

# pyarrow's block_size is a 32-bit int; PostgreSQL's own limit (a 1 GB field) is lower.
_MAX_BLOCK = (1 << 31) - 1


@dataclass
class TableExport:
    table: str
    rows: int
    files: list[str]
    bytes: int
    columns: list[dict[str, Any]]
    content_hash: str
    fallbacks: list[str] = field(default_factory=list)
    key_salt: str = ""  # the files' key salt when encrypted (snapshot.encryption)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def copy_out_sql(
    table: catalog.Table, names: list[str], *, plain: bool = False, source: str | None = None
) -> str:
    """COPY of the columns; `plain` tables skip the executor's projection (about 12% faster).

    `source` is the FROM item of the SELECT form (hashing.source_sql: `ONLY t` for a table
    with inheritance children, so their rows are exported with the children alone).
    """
    cols = ", ".join(quote_ident(n) for n in names)
    if plain:
        # COPY t TO never includes child tables' rows.
        return f"COPY {table.qualified} ({cols}) TO STDOUT WITH (FORMAT csv)"
    return f"COPY (SELECT {cols} FROM {source or table.qualified}) TO STDOUT WITH (FORMAT csv)"


def _is_plain_table(conn: psycopg2.extensions.connection, table: catalog.Table) -> bool:
    """True for an ordinary table without inheritance children (partitioned ones need SELECT)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT c.relkind = 'r' AND NOT EXISTS "
            "(SELECT 1 FROM pg_inherits i WHERE i.inhparent = c.oid) "
            "FROM pg_class c WHERE c.oid = %s::regclass",
            (table.qualified,),
        )
        row = cur.fetchone()
    return bool(row and row[0])


def widest_csv_row(
    conn: psycopg2.extensions.connection, table: catalog.Table, names: list[str], source: str
) -> int:
    """The byte length of the table's longest row in COPY's CSV form (an upper bound).

    Each field is at most its text form, with every '"' doubled, two quotes and a separator.
    One scan of the table, made only when a row did not fit the reader's block.
    """
    parts = []
    for n in names:
        v = f"{quote_ident(n)}::text"
        parts.append(
            f"coalesce(2 * octet_length({v}) - octet_length(replace({v}, '\"', '')) + 3, 1)"
        )
    expr = " + ".join(parts) or "0"
    with conn.cursor() as cur:
        cur.execute(f"SELECT coalesce(max({expr}), 0) + 2 FROM {source}")
        row = cur.fetchone()
    return int(row[0]) if row else 0


_SNAPSHOT_SQL = "SELECT pg_current_snapshot()::text, current_setting('transaction_isolation')"


def _snapshot_of(conn: psycopg2.extensions.connection) -> tuple[str, str]:
    with conn.cursor() as cur:
        cur.execute(_SNAPSHOT_SQL)
        row = cur.fetchone()
    assert row is not None
    return str(row[0]), str(row[1])


def _check_same_snapshot(
    conn: psycopg2.extensions.connection,
    hash_conn: psycopg2.extensions.connection,
    table: catalog.Table,
) -> None:
    """Refuse a hash_conn that would hash other rows than the ones exported.

    Equal xmin:xmax:xip lists mean equal visibility; both must be REPEATABLE READ or stronger
    so that the snapshot holds for the whole export.
    """
    try:
        mine, theirs = _snapshot_of(conn), _snapshot_of(hash_conn)
    except psycopg2.Error as exc:
        raise SnapshotError(f"cannot export {table.key}: {describe_error(exc)}") from None
    if mine[1] == "read committed" or theirs[1] == "read committed" or mine[0] != theirs[0]:
        raise SnapshotError(
            f"cannot export {table.key}: the hash connection is not in the export's snapshot "
            "(both need REPEATABLE READ and SET TRANSACTION SNAPSHOT of the same export)"
        )


class _HashJob:
    """content_hash on its own connection and thread; psycopg2 releases the GIL while waiting."""

    def __init__(
        self, conn: psycopg2.extensions.connection, table: catalog.Table, names: list[str]
    ) -> None:
        self.conn = conn
        self.digest: str | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(table, names), name=f"dbtools-hash-{table.key}", daemon=True
        )
        self._thread.start()

    def _run(self, table: catalog.Table, names: list[str]) -> None:
        try:
            self.digest = hashing.content_hash(self.conn, table, names)
        except BaseException as exc:  # raised by result() in the caller's thread
            self.error = exc

    def result(self) -> str:
        self._thread.join()
        if self.error is not None:
            raise self.error
        assert self.digest is not None
        return self.digest

    def cancel(self) -> None:
        """Stop the hash query (the export failed); hash_conn's transaction is left aborted."""
        if self._thread.is_alive():
            with contextlib.suppress(psycopg2.Error):
                self.conn.cancel()
        self._thread.join()


def export_table(
    conn: psycopg2.extensions.connection,
    table: catalog.Table,
    dest_dir: Dest,
    *,
    batch_bytes: int = 4 << 20,
    max_file_rows: int | None = None,
    hash_conn: psycopg2.extensions.connection | None = None,
    on_first_batch: Callable[[], None] | None = None,
    sealing: TableKey | None = None,
) -> TableExport:
    """Write the table's rows to Parquet under dest_dir and hash them, in the caller's transaction.

    conn must already be inside the snapshot's REPEATABLE READ transaction; it is never
    committed or rolled back here. Files are `<stem>.parquet`, or, once a file would exceed
    max_file_rows, `<stem>/part-NNNNN.parquet` (`file_stem`). Only the table's own rows are
    read (an inheritance parent without its children's).

    hash_conn, when given, is a second connection whose REPEATABLE READ transaction imported
    the same snapshot (SET TRANSACTION SNAPSHOT); the content hash runs on it while the rows
    are copied. It is checked to see the same snapshot, never committed, and, if the export
    fails, its query is cancelled (its transaction then needs a rollback).

    on_first_batch is called once, in this thread, after the first batch was written while
    the COPY is still open (the `snapshot.export` fault-injection point).

    A table without columns has rows all the same: its file holds one column of Arrow type
    null named NO_COLUMNS_FIELD, one null per row, so that pyarrow and DuckDB count its rows;
    the manifest's column list is empty.

    sealing, when given, encrypts every file with its key (snapshot.encryption).
    """
    dest_dir = dest_dir if isinstance(dest_dir, RemoteBuild) else Path(dest_dir)
    plans = types.plan_table(table)
    names = [p.name for p in plans]
    by_name = {c.name: c for c in table.copy_columns}
    hasher: _HashJob | None = None
    if hash_conn is not None:
        _check_same_snapshot(conn, hash_conn, table)
        hasher = _HashJob(hash_conn, table, names)
    try:
        if not plans:
            digest = hasher.result() if hasher else hashing.content_hash(conn, table, names)
            rows = int(digest.split(":")[1])
            out = _write_no_columns(dest_dir, table, rows, max_file_rows, sealing)
            fallbacks: list[str] = []
        else:
            try:
                plain = _is_plain_table(conn, table)
                source = hashing.source_sql(conn, table)
            except psycopg2.Error as exc:
                interrupt.raise_if_received()
                raise SnapshotError(f"cannot export {table.key}: {describe_error(exc)}") from None
            rows, out, fallbacks = _export_rows(
                conn,
                table,
                dest_dir,
                plans,
                by_name,
                batch_bytes,
                max_file_rows,
                plain,
                source,
                on_first_batch,
                sealing,
            )
    except BaseException:
        if hasher is not None:
            hasher.cancel()
        raise
    digest = hasher.result() if hasher else hashing.content_hash(conn, table, names)
    expected_rows = int(digest.split(":")[1])
    if expected_rows != rows:
        raise SnapshotError(
            f"export of {table.key} wrote {rows} rows but the table holds {expected_rows}"
        )
    return TableExport(
        table=table.key,
        rows=rows,
        files=list(out.files),
        bytes=out.file_bytes(),
        columns=[p.as_manifest() for p in plans],
        content_hash=digest,
        fallbacks=fallbacks,
        key_salt=sealing.salt if sealing else "",
    )


_NO_COLUMNS_GROUP = 1 << 20


def _write_no_columns(
    dest_dir: Dest,
    table: catalog.Table,
    rows: int,
    max_file_rows: int | None,
    sealing: TableKey | None,
) -> PartWriter:
    """The file of a table without columns: `rows` nulls of type null (no data pages)."""
    lock = sealing.secret.encryption() if sealing else None
    try:
        out = PartWriter(dest_dir, file_stem(table), [], max_file_rows, encryption=lock)
    except OSError as exc:
        raise SnapshotError(f"cannot write the snapshot of {table.key}: {exc}") from None
    try:
        left = rows
        while left:
            n = min(left, _NO_COLUMNS_GROUP)
            out.write(pa.RecordBatch.from_arrays([pa.nulls(n)], names=[NO_COLUMNS_FIELD]))
            left -= n
        out.close()
    except BaseException:
        out.discard()
        raise
    return out


def _export_rows(
    conn: psycopg2.extensions.connection,
    table: catalog.Table,
    dest_dir: Dest,
    plans: list[types.ColumnPlan],
    by_name: dict[str, catalog.Column],
    batch_bytes: int,
    max_file_rows: int | None,
    plain: bool,
    source: str,
    on_first_batch: Callable[[], None] | None,
    sealing: TableKey | None,
) -> tuple[int, PartWriter, list[str]]:
    """COPY into Parquet, switching a rejected column to text and retrying; `plans` is updated.

    A row longer than the reader's block (a 50 MB bytea is 100 MB of hex) makes the reader
    fail; the table is then exported again with a block just wider than its widest row, so
    memory follows the largest row, never the table.
    """
    fallbacks: list[str] = []
    widened = False
    sql = copy_out_sql(table, [p.name for p in plans], plain=plain, source=source)
    lock = sealing.secret.encryption() if sealing else None
    for _attempt in range(len(plans) + 2):
        try:
            out = PartWriter(
                dest_dir, file_stem(table), plans, max_file_rows, wide=widened, encryption=lock
            )
        except OSError as exc:
            raise SnapshotError(f"cannot write the snapshot of {table.key}: {exc}") from None
        try:
            rows = stream(conn, table, plans, out, batch_bytes, sql, on_first_batch)
            out.close()
            break
        except ColumnRejected as exc:
            out.discard()
            plan = plans[exc.index] if exc.index < len(plans) else None
            if plan is None or not types.is_fallible(plan):
                raise SnapshotError(f"cannot export {table.key}: {exc}") from None
            reason = exc.reason or f"a value does not fit {plan.arrow_type}"
            plans[exc.index] = types.text_plan(by_name[plan.name], reason=reason)
            fallbacks.append(plan.name)
        except RowTooWide as exc:
            out.discard()
            if widened:
                raise SnapshotError(f"cannot export {table.key}: {exc}") from None
            widened = True
            try:
                widest = widest_csv_row(conn, table, [p.name for p in plans], source)
            except psycopg2.Error as err:
                interrupt.raise_if_received()
                raise SnapshotError(f"cannot export {table.key}: {describe_error(err)}") from None
            batch_bytes = max(batch_bytes, widest + (widest >> 4) + (64 << 10))
            if batch_bytes > _MAX_BLOCK:
                raise SnapshotError(
                    f"cannot export {table.key}: a row is {widest} bytes in CSV form, more than "
                    f"the {_MAX_BLOCK} bytes the Parquet writer's reader can take"
                ) from None
        except BaseException:
            out.discard()
            raise
    else:  # pragma: no cover - every retry turns one more column into text
        raise SnapshotError(f"cannot export {table.key}: type fallback did not converge")
    return rows, out, fallbacks
