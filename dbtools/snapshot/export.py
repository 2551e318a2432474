"""One table -> Parquet, streamed: COPY ... TO STDOUT (csv) -> Arrow record batches -> zstd Parquet.

A thread runs the COPY into a pipe; the Arrow CSV reader converts it block by block with the
column types chosen by `types.plan_table`, and each batch goes straight to the ParquetWriter.
At most a few blocks of `batch_bytes` are in memory at any time, whatever the table's size.

Why CSV and not binary COPY: PostgreSQL's CSV keeps NULL (unquoted empty) apart from ''
(quoted empty) and prints every value in its exact text form, which the Arrow reader parses
exactly or rejects; docs/BENCHMARKS.md has the measurements that chose it.

A native column whose values do not all fit its Arrow type (±infinity, BC dates, NaN in
numeric(p,s)) makes the reader fail; the table is then exported again with that column in
text form. The caller's transaction is REPEATABLE READ, so the rerun sees the same rows.

The content hash is a second pass of the server over the rows. Given `hash_conn`, a second
connection inside the same snapshot, it runs there concurrently with the COPY, so the export
takes about max(COPY, hash) instead of their sum.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import psycopg2
import psycopg2.extensions
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from dbtools import catalog
from dbtools.db import describe_error, quote_ident
from dbtools.errors import SnapshotError
from dbtools.snapshot import hashing, types

_CSV_COLUMN = re.compile(r"In CSV column #(\d+)")
_PIPE_BYTES = 1 << 20
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


@dataclass
class TableExport:
    table: str
    rows: int
    files: list[str]
    bytes: int
    columns: list[dict[str, Any]]
    content_hash: str
    fallbacks: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _ColumnRejected(Exception):
    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index


def file_stem(table: catalog.Table) -> str:
    """'<schema>.<table>' made safe as one file name ('/' and '%' percent-encoded)."""
    return table.key.replace("%", "%25").replace("/", "%2F").replace("\0", "%00")


def parquet_schema(plans: list[types.ColumnPlan]) -> pa.Schema:
    """The file's schema; each field carries its PostgreSQL type for people reading the file."""
    return pa.schema(
        [
            pa.field(
                p.name,
                p.arrow_type,
                metadata={"pg_type": p.pg_type, "encoding": p.encoding},
            )
            for p in plans
        ]
    )


def copy_out_sql(table: catalog.Table, names: list[str], *, plain: bool = False) -> str:
    """COPY of the columns; `plain` tables skip the executor's projection (about 12% faster)."""
    cols = ", ".join(quote_ident(n) for n in names)
    if plain:
        return f"COPY {table.qualified} ({cols}) TO STDOUT WITH (FORMAT csv)"
    return f"COPY (SELECT {cols} FROM {table.qualified}) TO STDOUT WITH (FORMAT csv)"


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


def _csv_options(
    plans: list[types.ColumnPlan], batch_bytes: int
) -> tuple[pacsv.ReadOptions, pacsv.ParseOptions, pacsv.ConvertOptions]:
    # PostgreSQL's CSV: NULL is an unquoted empty field and '' is "". A one-column NULL row is
    # an empty line, so empty lines must not be skipped.
    # One parsing thread: on export the server's COPY already keeps a core busy, and the
    # threaded reader's read-ahead raised peak memory without making the export faster.
    read = pacsv.ReadOptions(
        column_names=[p.name for p in plans], block_size=batch_bytes, use_threads=False
    )
    parse = pacsv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False)
    convert = pacsv.ConvertOptions(
        column_types={p.name: p.arrow_type for p in plans},
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
        true_values=["t"],
        false_values=["f"],
    )
    return read, parse, convert


class _PartWriter:
    """Parquet output of one table: one file, or part files once max_rows is exceeded."""

    def __init__(
        self,
        dest_dir: Path,
        stem: str,
        plans: list[types.ColumnPlan],
        max_rows: int | None,
    ) -> None:
        self.dest_dir = dest_dir
        # Dictionary pages only for enums: on high-cardinality columns Parquet builds a
        # dictionary, gives up and writes plain pages anyway, costing ~30% of the write time
        # and a bigger file under zstd (docs/BENCHMARKS.md).
        self.dictionary_columns = [
            p.name for p in plans if p.enum_labels is not None and p.category != "A"
        ]
        schema = parquet_schema(plans)
        self.stem = stem
        self.schema = schema
        self.max_rows = max_rows
        self.files: list[str] = [f"{stem}.parquet"]
        self.rows_in_file = 0
        self.writer: pq.ParquetWriter | None = self._open(self.files[0])

    def _open(self, rel: str) -> pq.ParquetWriter:
        return pq.ParquetWriter(
            str(self.dest_dir / rel),
            self.schema,
            compression="zstd",
            write_statistics=True,
            use_dictionary=self.dictionary_columns,
        )

    def _rotate(self) -> None:
        assert self.writer is not None
        self.writer.close()
        if len(self.files) == 1:
            (self.dest_dir / self.stem).mkdir()
            first = f"{self.stem}/part-00000.parquet"
            os.replace(self.dest_dir / self.files[0], self.dest_dir / first)
            self.files[0] = first
        rel = f"{self.stem}/part-{len(self.files):05d}.parquet"
        self.files.append(rel)
        self.writer = self._open(rel)
        self.rows_in_file = 0

    def write(self, batch: pa.RecordBatch) -> None:
        while batch.num_rows:
            take = batch.num_rows
            if self.max_rows:
                if self.rows_in_file >= self.max_rows:
                    self._rotate()
                take = min(take, self.max_rows - self.rows_in_file)
            assert self.writer is not None
            self.writer.write_batch(batch.slice(0, take))
            self.rows_in_file += take
            batch = batch.slice(take)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def discard(self) -> None:
        with contextlib.suppress(Exception):
            self.close()
        with contextlib.suppress(FileNotFoundError):
            (self.dest_dir / f"{self.stem}.parquet").unlink()
        shutil.rmtree(self.dest_dir / self.stem, ignore_errors=True)


def _copy_into_pipe(
    conn: psycopg2.extensions.connection, sql: str, out: IO[bytes], errors: list[BaseException]
) -> None:
    try:
        with conn.cursor() as cur:
            cur.copy_expert(sql, out, size=_PIPE_BYTES)
    except BaseException as exc:  # handed to the reading thread, which raises it
        errors.append(exc)
    finally:
        with contextlib.suppress(OSError):
            out.close()


def _stream(
    conn: psycopg2.extensions.connection,
    table: catalog.Table,
    plans: list[types.ColumnPlan],
    out: _PartWriter,
    batch_bytes: int,
    plain: bool,
) -> int:
    """Run one COPY into `out`; return the row count or raise _ColumnRejected/SnapshotError."""
    read_fd, write_fd = os.pipe()
    with contextlib.suppress(OSError):
        fcntl.fcntl(write_fd, _F_SETPIPE_SZ, _PIPE_BYTES)
    source = os.fdopen(read_fd, "rb")
    sink = os.fdopen(write_fd, "wb", buffering=1 << 16)
    copy_errors: list[BaseException] = []
    producer = threading.Thread(
        target=_copy_into_pipe,
        args=(conn, copy_out_sql(table, [p.name for p in plans], plain=plain), sink, copy_errors),
        name=f"dbtools-copy-out-{table.key}",
        daemon=True,
    )
    producer.start()
    rows = 0
    failure: BaseException | None = None
    try:
        read, parse, convert = _csv_options(plans, batch_bytes)
        try:
            reader = pacsv.open_csv(
                source, read_options=read, parse_options=parse, convert_options=convert
            )
        except pa.ArrowInvalid as exc:
            if "Empty CSV" not in str(exc):
                raise
        else:
            for batch in reader:
                out.write(batch)
                rows += batch.num_rows
    except BaseException as exc:
        failure = exc
    finally:
        # The COPY must run to its end, or the connection is left mid-COPY and the caller's
        # transaction is lost: read and discard what is left before looking at any error.
        with contextlib.suppress(OSError, ValueError):
            while source.read(_PIPE_BYTES):
                pass
        producer.join()
        source.close()
    if copy_errors:
        first = copy_errors[0]
        if isinstance(first, psycopg2.Error):
            raise SnapshotError(f"cannot export {table.key}: {describe_error(first)}") from None
        raise SnapshotError(f"cannot export {table.key}: {first}") from None
    if failure is not None:
        if isinstance(failure, pa.ArrowInvalid):
            match = _CSV_COLUMN.search(str(failure))
            if match:
                raise _ColumnRejected(int(match.group(1)), str(failure)) from None
            raise SnapshotError(f"cannot export {table.key}: {failure}") from None
        if isinstance(failure, OSError):
            raise SnapshotError(f"cannot write the snapshot of {table.key}: {failure}") from None
        raise failure
    return rows


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
    dest_dir: Path,
    *,
    batch_bytes: int = 4 << 20,
    max_file_rows: int | None = None,
    hash_conn: psycopg2.extensions.connection | None = None,
) -> TableExport:
    """Write the table's rows to Parquet under dest_dir and hash them, in the caller's transaction.

    conn must already be inside the snapshot's REPEATABLE READ transaction; it is never
    committed or rolled back here. Files are `<schema>.<table>.parquet`, or, once a file would
    exceed max_file_rows, `<schema>.<table>/part-NNNNN.parquet`.

    hash_conn, when given, is a second connection whose REPEATABLE READ transaction imported
    the same snapshot (SET TRANSACTION SNAPSHOT); the content hash runs on it while the rows
    are copied. It is checked to see the same snapshot, never committed, and, if the export
    fails, its query is cancelled (its transaction then needs a rollback).
    """
    dest_dir = Path(dest_dir)
    plans = types.plan_table(table)
    names = [p.name for p in plans]
    by_name = {c.name: c for c in table.copy_columns}
    hasher: _HashJob | None = None
    if hash_conn is not None:
        _check_same_snapshot(conn, hash_conn, table)
        hasher = _HashJob(hash_conn, table, names)
    try:
        try:
            plain = _is_plain_table(conn, table)
        except psycopg2.Error as exc:
            raise SnapshotError(f"cannot export {table.key}: {describe_error(exc)}") from None
        rows, out, fallbacks = _export_rows(
            conn, table, dest_dir, plans, by_name, batch_bytes, max_file_rows, plain
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
        bytes=sum((dest_dir / f).stat().st_size for f in out.files),
        columns=[p.as_manifest() for p in plans],
        content_hash=digest,
        fallbacks=fallbacks,
    )


def _export_rows(
    conn: psycopg2.extensions.connection,
    table: catalog.Table,
    dest_dir: Path,
    plans: list[types.ColumnPlan],
    by_name: dict[str, catalog.Column],
    batch_bytes: int,
    max_file_rows: int | None,
    plain: bool,
) -> tuple[int, _PartWriter, list[str]]:
    """COPY into Parquet, switching a rejected column to text and retrying; `plans` is updated."""
    fallbacks: list[str] = []
    for _attempt in range(len(plans) + 1):
        try:
            out = _PartWriter(dest_dir, file_stem(table), plans, max_file_rows)
        except OSError as exc:
            raise SnapshotError(f"cannot write the snapshot of {table.key}: {exc}") from None
        try:
            rows = _stream(conn, table, plans, out, batch_bytes, plain)
            out.close()
            break
        except _ColumnRejected as exc:
            out.discard()
            plan = plans[exc.index] if exc.index < len(plans) else None
            if plan is None or not types.is_fallible(plan):
                raise SnapshotError(f"cannot export {table.key}: {exc}") from None
            reason = f"a value does not fit {plan.arrow_type}"
            plans[exc.index] = types.text_plan(by_name[plan.name], reason=reason)
            fallbacks.append(plan.name)
        except BaseException:
            out.discard()
            raise
    else:  # pragma: no cover - every retry turns one more column into text
        raise SnapshotError(f"cannot export {table.key}: type fallback did not converge")
    return rows, out, fallbacks
