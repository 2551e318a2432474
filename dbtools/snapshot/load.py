"""Parquet -> one table, streamed: record batches -> COPY text format -> COPY ... FROM STDIN, in
the caller's transaction (never committed or rolled back here).

A thread reads Parquet batches and renders each one with Arrow compute kernels in PostgreSQL's
text COPY format (tab between fields, newline after rows, NULL as backslash-N, backslash
escapes) into a small bounded queue; psycopg2 sends the queue's blocks to the server. The
server parses this format faster than CSV (docs/BENCHMARKS.md). Native columns are printed in
forms PostgreSQL reads back to the identical value (shortest round-trip floats, exact decimals,
ISO timestamps, '+00' for timestamptz); text columns are PostgreSQL's own text form.
"""

from __future__ import annotations

import contextlib
import queue
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extensions
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dbtools import catalog, interrupt
from dbtools.db import describe_error, quote_ident
from dbtools.errors import SnapshotError
from dbtools.snapshot import types
from dbtools.snapshot.encryption import TableSecret

_BATCH_ROWS = 8_192
_BATCH_BYTES = 8 << 20
_SEND_BYTES = 8 << 20
_QUEUE_BLOCKS = 2
_COPY_CHUNK = 1 << 20
_DONE = object()
# The text format's escapes; the backslash goes first so later escapes are not doubled.
_ESCAPES = (("\\", "\\\\"), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"))
_NULL = "\\N"
_NEEDS_ESCAPE = re.compile(rb"[\\\t\n\r]")
_ESCAPE_SCANS = tuple(
    (re.compile(re.escape(plain.encode())).search, plain, escaped) for plain, escaped in _ESCAPES
)
_QUOTE = re.compile(b'"')
_BACKSLASH = re.compile(rb"\\")
_NUL = re.compile(b"\x00")
# A null array element while the elements are joined; no PostgreSQL text holds NUL.
_NULL_ELEMENT = "\x00"


def copy_in_sql(table: catalog.Table, names: list[str], *, freeze: bool) -> str:
    cols = f" ({', '.join(quote_ident(n) for n in names)})" if names else ""
    options = " WITH (FREEZE)" if freeze else ""
    return f"COPY {table.qualified}{cols} FROM STDIN{options}"


def _needs_escape(arr: pa.Array) -> bool:
    # One C-speed scan of the bytes instead of four substring searches per column.
    return _NEEDS_ESCAPE.search(types.value_bytes(arr)) is not None


def _text_field(col: pa.Array) -> pa.Array:
    """One column as COPY text fields: never null (NULL is \\N), escapes applied."""
    if isinstance(col, pa.ExtensionArray):
        # uuid: hex digits, nothing to escape; json (any other): its text, as a string
        col = types.text_of_uuid(col) if types.is_uuid(col.type) else col.storage
    typ = col.type
    if pa.types.is_binary(typ) or pa.types.is_large_binary(typ):
        # bytea's bytes, printed as its hex input form; '\\x' is the text format's escape
        # of the backslash, and hex digits need no other escape.
        col = pc.binary_join_element_wise("\\\\x", types.hex_from_bytes(col), "")
    elif pa.types.is_list(typ) or pa.types.is_large_list(typ):
        col = _array_literal(col, copy_escapes=True)
    else:
        col = _plain(col)
        # Strings and enum labels may hold what the format escapes; numbers, dates and
        # timestamps never do.
        if _may_need_escape(typ) and _needs_escape(col):
            col = _escaped(col)
    if col.null_count:
        col = pc.fill_null(col, _NULL)
    return col


def _escaped(col: pa.Array) -> pa.Array:
    """The text format's escapes applied; each replacement runs only when its character is
    there (a pass over a column costs about as much whether it finds anything or not)."""
    data = types.value_bytes(col)
    present = [(plain, escaped) for found, plain, escaped in _ESCAPE_SCANS if found(data)]
    for plain, escaped in present:
        col = pc.replace_substring(col, plain, escaped)
    return col


def _may_need_escape(typ: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(typ) or pa.types.is_large_string(typ) or pa.types.is_dictionary(typ)
    )


def _plain(col: pa.Array) -> pa.Array:
    """Each value in the text form PostgreSQL reads back to the same value (before COPY's
    escapes); NULL stays null. A string array."""
    if isinstance(col, pa.ExtensionArray):
        return types.text_of_uuid(col) if types.is_uuid(col.type) else _plain(col.storage)
    typ = col.type
    if pa.types.is_dictionary(typ):  # enums: the labels
        return _plain(col.cast(typ.value_type))
    if pa.types.is_string(typ):
        return col
    if pa.types.is_large_string(typ):
        return col.cast(pa.string())
    if pa.types.is_binary(typ) or pa.types.is_large_binary(typ):
        return pc.binary_join_element_wise("\\x", types.hex_from_bytes(col), "")
    if pa.types.is_list(typ) or pa.types.is_large_list(typ):
        return _array_literal(col, copy_escapes=False)
    if pa.types.is_timestamp(typ) and typ.tz is not None:
        # The values are UTC instants whatever the zone; formatting them without the zone
        # database is ~14x faster than Arrow's zoned cast (1.15 s per million values).
        naive = col.view(pa.timestamp(typ.unit)).cast(pa.string())
        return pc.binary_join_element_wise(naive, "+00", "")
    # Arrow's shortest round-trip floats ('nan', 'inf', '-0'), exact decimals, ISO dates
    # and timestamps and 'true'/'false' are all read back by PostgreSQL to the same value.
    return col.cast(pa.string())


def _array_literal(col: pa.Array, *, copy_escapes: bool) -> pa.Array:
    """A list array as PostgreSQL array literals: `{"a","b \\"c\\"",NULL}`; a NULL list stays null.

    Every element is quoted (quotes and backslashes escaped by a backslash), which array
    input reads the same for every element type: no element is ever mistaken for NULL or cut
    at a comma, brace or white space, and '' stays an empty string. A null element is a bare
    NULL. The elements of all rows are rendered at once, then each row is joined with `","`
    between its elements and `{"` `"}` around them; an empty array is `{}`.

    copy_escapes: the literals as COPY text fields, the format's escapes applied to the
    elements (the only place a literal can hold a character the format escapes), which saves
    a pass over the joined literals."""
    values = _plain(col.flatten())  # the rows' own elements (a NULL row has none)
    data = types.value_bytes(values)
    if _NUL.search(data):
        raise SnapshotError("an array element holds a NUL character, which PostgreSQL refuses")
    backslash = "\\\\" if copy_escapes else "\\"  # the literal's escape, as COPY sends it
    if _BACKSLASH.search(data):
        values = pc.replace_substring(values, "\\", backslash + backslash)
    if _QUOTE.search(data):
        values = pc.replace_substring(values, '"', backslash + '"')
    if copy_escapes:
        for found, plain, escaped in _ESCAPE_SCANS[1:]:  # the backslash is done
            if found(data):
                values = pc.replace_substring(values, plain, escaped)
    null_elements = values.null_count
    if null_elements:
        values = pc.fill_null(values, _NULL_ELEMENT)
    large = pa.types.is_large_list(col.type)
    width = pa.int64() if large else pa.int32()
    lengths = pc.list_value_length(col)  # null for a NULL row
    filled = pc.fill_null(lengths, 0)
    offsets = pa.concat_arrays([pa.array([0], width), pc.cumulative_sum(filled).cast(width)])
    mask = pc.is_null(col) if col.null_count else None
    maker = pa.LargeListArray if large else pa.ListArray
    rows = maker.from_arrays(offsets, values, mask=mask)
    out = pc.binary_join_element_wise('{"', pc.binary_join(rows, '","'), '"}', "")
    if null_elements:
        out = pc.replace_substring(out, f'"{_NULL_ELEMENT}"', "NULL")
    empty = pc.equal(lengths, 0)  # null for a NULL row, which if_else keeps null
    if pc.any(empty).as_py():
        out = pc.if_else(empty, pa.scalar("{}"), out)
    return out


def text_block(batch: pa.RecordBatch) -> bytes:
    """The batch's rows in PostgreSQL's text COPY format, each row ending in a newline."""
    return _lead_rows(batch)[1:].tobytes() + b"\n" if batch.num_rows else b""


def _lead_rows(batch: pa.RecordBatch) -> memoryview:
    """The rows each *preceded* by a newline ('\\nrow1\\nrow2'), as a view of one Arrow buffer.

    The newline goes on the first field, which is usually narrow, so the only full copy of
    the batch is the final join: a 100 MB value costs one copy here, not three. The stream
    of blocks is the COPY text with its first byte dropped and one newline added at the end
    (_TextSource does both).
    """
    if not batch.num_columns:  # a table without columns: one empty line per row
        return memoryview(b"\n" * batch.num_rows)
    fields = [_text_field(col) for col in batch.columns]
    fields[0] = pc.binary_join_element_wise("\n", fields[0], "")
    rows = pc.binary_join_element_wise(*fields, "\t") if len(fields) > 1 else fields[0]
    return types.value_bytes(rows)


def _check_columns(table: catalog.Table, names: list[str]) -> None:
    present = {c.name: c for c in table.columns}
    missing = [n for n in names if n not in present]
    if missing:
        raise SnapshotError(
            f"cannot load {table.key}: the snapshot has column(s) "
            f"{', '.join(missing)} that the target table lacks"
        )
    generated = [n for n in names if present[n].generated]
    if generated:
        raise SnapshotError(
            f"cannot load {table.key}: column(s) {', '.join(generated)} are generated in the "
            "target and cannot be loaded"
        )
    if len(set(names)) != len(names):
        raise SnapshotError(f"cannot load {table.key}: the manifest names a column twice")


def _batches(
    dest_dir: Path, files: list[str], names: list[str], secret: TableSecret | None = None
) -> Iterator[pa.RecordBatch]:
    decryption = secret.decryption() if secret else None
    for rel in files:
        path = dest_dir / rel
        try:
            pf = pq.ParquetFile(str(path), pre_buffer=False, decryption_properties=decryption)
        except FileNotFoundError:
            raise SnapshotError(f"snapshot file {rel} is missing") from None
        except (OSError, pa.ArrowException) as exc:
            raise SnapshotError(f"snapshot file {rel} is not readable Parquet: {exc}") from None
        have = set(pf.schema_arrow.names)
        lacking = [n for n in names if n not in have]
        if lacking:
            raise SnapshotError(f"snapshot file {rel} lacks column(s) {', '.join(lacking)}")
        try:
            for group in range(pf.metadata.num_row_groups):
                # One decoding thread: the server's parsing is the bottleneck, and per-thread
                # allocator caches raised peak memory by ~50 MB for no measurable speed.
                yield from pf.iter_batches(
                    batch_size=_batch_rows(pf.metadata.row_group(group)),
                    row_groups=[group],
                    columns=names,
                    use_threads=False,
                )
        except (OSError, pa.ArrowException) as exc:
            raise SnapshotError(f"snapshot file {rel} is corrupt: {exc}") from None


def _batch_rows(group: pq.RowGroupMetaData) -> int:
    """Rows per batch: _BATCH_ROWS, fewer when rows are wide, so a batch stays near
    _BATCH_BYTES whatever the row size (1,000 rows of 5 MB are never one 5 GB batch)."""
    if group.num_rows <= 0 or group.total_byte_size <= 0:
        return _BATCH_ROWS
    per_row = group.total_byte_size / group.num_rows
    return max(1, min(_BATCH_ROWS, int(_BATCH_BYTES // per_row)))


class _TextSource:
    """File-like object for copy_expert: COPY text blocks made by a thread, bounded in memory."""

    def __init__(self, batches: Iterator[pa.RecordBatch]) -> None:
        self.rows = 0
        self.error: BaseException | None = None
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=_QUEUE_BLOCKS)
        self._stop = threading.Event()
        self._finished = False
        self._pending: memoryview | None = None
        self._thread = threading.Thread(target=self._produce, args=(batches,), daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, batches: Iterator[pa.RecordBatch]) -> None:
        try:
            for batch in batches:
                if not batch.num_rows:
                    continue
                rows, block = batch.num_rows, _lead_rows(batch)
                del batch  # released before the queue wait, so at most the queue's blocks live
                if not self.rows:
                    block = block[1:]  # the first row has no row before it
                self.rows += rows
                # (an empty block, one row of one empty field, is ended by what follows;
                # read() returning b"" would end the COPY)
                if len(block) and not self._put(block):
                    return
            if self.rows and not self._put(memoryview(b"\n")):  # the last row's end
                return
        except BaseException as exc:
            self.error = exc
        finally:
            self._put(_DONE)

    def read(self, size: int = _COPY_CHUNK) -> bytes:
        # Blocks are views of Arrow buffers; each goes out as bytes of at most _SEND_BYTES,
        # because libpq copies what it is given into its own buffer: a 100 MB piece would
        # cost another 100 MB there.
        if self._pending is None:
            if self._finished:
                return b""
            item = self._queue.get()
            if item is _DONE:
                self._finished = True
                if self.error is not None:
                    # psycopg2 ends the COPY with an error when read() raises: nothing partial
                    # is ever committed.
                    raise SnapshotError(str(self.error))
                return b""
            self._pending = item
        piece = bytes(self._pending[:_SEND_BYTES])
        rest = self._pending[_SEND_BYTES:]
        self._pending = rest if len(rest) else None
        return piece

    def readline(self, size: int = -1) -> bytes:  # psycopg2's file protocol; COPY never calls it
        return self.read(size)

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
        self._thread.join()


def load_table(
    conn: psycopg2.extensions.connection,
    table: catalog.Table,
    dest_dir: Path,
    files: list[str],
    columns: list[dict[str, Any]],
    *,
    freeze: bool = False,
    secret: TableSecret | None = None,
) -> int:
    """COPY the snapshot files' rows into `table`; return the number of rows loaded.
    `secret` decrypts the files of an encrypted snapshot (encryption.table_secret).

    `columns` is the manifest's column list (TableExport.columns); only those columns are
    copied. freeze=True is legal only when the table was created or truncated earlier in the
    same transaction. Any failure raises SnapshotError and leaves the transaction for the
    caller to roll back.
    """
    names = [str(c["name"]) for c in columns]
    _check_columns(table, names)
    sql = copy_in_sql(table, names, freeze=freeze)
    return copy_batches(conn, sql, table.key, _batches(Path(dest_dir), files, names, secret))


def copy_batches(
    conn: psycopg2.extensions.connection,
    sql: str,
    label: str,
    batches: Iterator[pa.RecordBatch],
) -> int:
    """Stream record batches through `sql` (a COPY ... FROM STDIN whose columns are the
    batches' columns, in order); return the rows sent, which the server must have stored.
    `label` names the table in errors."""
    source = _TextSource(batches)
    server_rows = -1
    try:
        # A signal cancels the COPY (the main thread may be inside libpq's send); the
        # interruption, not the failed COPY, is then what the caller hears.
        with interrupt.cancel_on_signal(conn), conn.cursor() as cur:
            cur.copy_expert(sql, source, size=_COPY_CHUNK)
            server_rows = cur.rowcount
    except SnapshotError:
        interrupt.raise_if_received()
        raise
    except psycopg2.Error as exc:
        interrupt.raise_if_received()
        if source.error is not None:
            raise _as_snapshot_error(label, source.error) from None
        raise SnapshotError(f"cannot load {label}: {describe_error(exc)}") from None
    except Exception as exc:
        interrupt.raise_if_received()
        raise _as_snapshot_error(label, source.error or exc) from None
    finally:
        source.close()
    if source.error is not None:
        raise _as_snapshot_error(label, source.error)
    if server_rows >= 0 and server_rows != source.rows:
        raise SnapshotError(
            f"cannot load {label}: sent {source.rows} rows but the server stored {server_rows}"
        )
    return source.rows


def _as_snapshot_error(label: str, exc: BaseException) -> SnapshotError:
    if isinstance(exc, SnapshotError):
        return SnapshotError(f"cannot load {label}: {exc.message}")
    return SnapshotError(f"cannot load {label}: {exc}")
