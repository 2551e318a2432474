"""One COPY ... TO STDOUT (CSV) streamed through a gated pipe into Arrow's CSV reader and on
to a part writer, batch by batch; a rejected column or a row wider than the block is
reported for the exporter to retry."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import threading
from collections.abc import Callable
from typing import IO

import psycopg2
import psycopg2.extensions
import pyarrow as pa
import pyarrow.csv as pacsv

from dbtools import catalog, interrupt
from dbtools.db import describe_error
from dbtools.errors import SnapshotError
from dbtools.snapshot import types
from dbtools.snapshot.parquet_files import PartWriter

_CSV_COLUMN = re.compile(r"In CSV column #(\d+)")
# The Arrow CSV reader's error for a row longer than its block.
_STRADDLING = "straddling object straddles two block boundaries"
_PIPE_BYTES = 1 << 20
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


class RowTooWide(Exception):
    """A row is longer than the CSV reader's block: export again with a wider block."""


class ColumnRejected(Exception):
    """Column `index` holds a value its native plan cannot hold exactly: export it as text.

    `reason` says why when it is more than "a value does not fit <type>"."""

    def __init__(self, index: int, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.index = index
        self.reason = reason


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
        # bytea (hex), arrays (literals) and enums (labels) arrive as text and are converted
        # after the reader (_converted).
        column_types={p.name: types.csv_type(p) for p in plans},
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
        true_values=["t"],
        false_values=["f"],
    )
    return read, parse, convert


class _GatedPipe:
    """The pipe as the CSV reader sees it, reading at most READ_AHEAD blocks ahead of the
    batches consumed.

    Arrow's streaming CSV reader reads blocks ahead on its IO thread (about 20 measured,
    whatever use_threads says); while the Parquet writer is the slower side, those blocks
    pile up: 20 x the block size, which for rows of 5 MB was 300 MB. The gate bounds the
    reader's memory to a few blocks. A read that waited GATE_PATIENCE seconds without a
    batch going by proceeds anyway, so a reader that needs more blocks for one batch than
    we expect can never deadlock.
    """

    READ_AHEAD = 4
    GATE_PATIENCE = 2.0

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self._cond = threading.Condition()
        self._reads = 0
        self._consumed = 0
        self._open = False

    @property
    def closed(self) -> bool:
        return self.raw.closed

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        with self._cond:
            waited = 0.0
            while not self._open and self._reads - self._consumed >= self.READ_AHEAD:
                if waited >= self.GATE_PATIENCE:
                    break
                self._cond.wait(0.1)
                waited += 0.1
            self._reads += 1
        return self.raw.read(size)

    def consumed(self) -> None:
        with self._cond:
            self._consumed += 1
            self._cond.notify_all()

    def open_fully(self) -> None:
        """No more gating (the export ends): pending reads go through to the drained pipe."""
        with self._cond:
            self._open = True
            self._cond.notify_all()

    def close(self) -> None:  # the pipe is closed by stream, not by the reader
        pass


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


def stream(
    conn: psycopg2.extensions.connection,
    table: catalog.Table,
    plans: list[types.ColumnPlan],
    out: PartWriter,
    batch_bytes: int,
    sql: str,
    on_first_batch: Callable[[], None] | None = None,
) -> int:
    """Run one COPY into `out`; return the row count or raise ColumnRejected/RowTooWide/
    SnapshotError (Interrupted once a signal arrived)."""
    read_fd, write_fd = os.pipe()
    with contextlib.suppress(OSError):
        fcntl.fcntl(write_fd, _F_SETPIPE_SZ, _PIPE_BYTES)
    source = os.fdopen(read_fd, "rb")
    gate = _GatedPipe(source)
    sink = os.fdopen(write_fd, "wb", buffering=1 << 16)
    copy_errors: list[BaseException] = []
    producer = threading.Thread(
        target=_copy_into_pipe,
        args=(conn, sql, sink, copy_errors),
        name=f"dbtools-copy-out-{table.key}",
        daemon=True,
    )
    rows = 0
    failure: BaseException | None = None
    reader: pacsv.CSVStreamingReader | None = None
    with interrupt.cancel_on_signal(conn):  # a signal cancels the COPY: the pipe then ends
        producer.start()
        try:
            read, parse, convert = _csv_options(plans, batch_bytes)
            try:
                reader = pacsv.open_csv(
                    gate, read_options=read, parse_options=parse, convert_options=convert
                )
            except pa.ArrowInvalid as exc:
                if "Empty CSV" not in str(exc):
                    raise
            else:
                pool = pa.default_memory_pool()
                conversions = [(i, p) for i, p in enumerate(plans) if types.converted(p)]
                for batch in reader:
                    gate.consumed()
                    if conversions:
                        batch = _converted(batch, conversions)
                    out.write(batch)
                    rows += batch.num_rows
                    del batch
                    if out.wide:
                        # Rows of megabytes: hand the freed blocks back at once, or the
                        # allocator's caches hold tens of them (RSS varied 276-344 MB for
                        # 5 MB rows with the same data).
                        pool.release_unused()
                    if on_first_batch is not None:
                        on_first_batch()
                        on_first_batch = None
        except BaseException as exc:
            failure = exc
        finally:
            # The COPY must run to its end, or the connection is left mid-COPY and the
            # caller's transaction is lost: read and discard what is left before looking at
            # any error. (A signal cancels the COPY instead: then nothing is left to read.)
            # The reader's read-ahead is released only once the pipe is drained: opened
            # earlier, it would pile up the rest of the COPY in memory instead.
            reader = None
            with contextlib.suppress(OSError, ValueError):
                while source.read(_PIPE_BYTES):
                    pass
            gate.open_fully()
            producer.join()
            source.close()
    if copy_errors or failure is not None:
        interrupt.raise_if_received()
    if copy_errors:
        first = copy_errors[0]
        if isinstance(first, psycopg2.Error):
            raise SnapshotError(f"cannot export {table.key}: {describe_error(first)}") from None
        raise SnapshotError(f"cannot export {table.key}: {first}") from None
    if failure is not None:
        if isinstance(failure, pa.ArrowInvalid):
            if _STRADDLING in str(failure):
                raise RowTooWide(str(failure)) from None
            match = _CSV_COLUMN.search(str(failure))
            if match:
                raise ColumnRejected(int(match.group(1)), str(failure)) from None
            raise SnapshotError(f"cannot export {table.key}: {failure}") from None
        if isinstance(failure, OSError):
            raise SnapshotError(f"cannot write the snapshot of {table.key}: {failure}") from None
        raise failure
    return rows


def _converted(
    batch: pa.RecordBatch, conversions: list[tuple[int, types.ColumnPlan]]
) -> pa.RecordBatch:
    """The batch with its text-read columns in their stored form (types.stored): bytea's hex
    as bytes, array literals as lists, enum labels as a dictionary. A value without an exact
    stored form rejects its column (ColumnRejected: the table is exported again with that
    column as text, so no file holds the column both ways)."""
    columns = list(batch.columns)
    for i, plan in conversions:
        try:
            columns[i] = types.stored(plan, columns[i])
        except types.DoesNotFit as exc:
            raise ColumnRejected(i, f"column {plan.name}: {exc}", str(exc)) from None
    return pa.RecordBatch.from_arrays(columns, schema=_schema_of(batch, conversions))


def _schema_of(batch: pa.RecordBatch, conversions: list[tuple[int, types.ColumnPlan]]) -> pa.Schema:
    schema = batch.schema
    for i, plan in conversions:
        schema = schema.set(i, pa.field(plan.name, plan.arrow_type))
    return schema
