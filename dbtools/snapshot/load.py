"""Parquet -> one table, streamed: record batches -> CSV -> COPY ... FROM STDIN, in the caller's
transaction (never committed or rolled back here).

A thread reads Parquet batches and renders them as CSV (Arrow's writer quotes every string, so
'' becomes "" and NULL an unquoted empty field, as PostgreSQL's CSV expects) into a small
bounded queue; psycopg2 sends the queue's blocks to the server. Native columns are printed in
forms PostgreSQL reads back to the identical value (shortest round-trip floats, exact decimals,
ISO timestamps with 'Z' for timestamptz); text columns are PostgreSQL's own text form.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extensions
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from dbtools import catalog
from dbtools.db import describe_error, quote_ident
from dbtools.errors import SnapshotError

_BATCH_ROWS = 8_192
_QUEUE_BLOCKS = 4
_COPY_CHUNK = 1 << 20
_DONE = object()


def copy_in_sql(table: catalog.Table, names: list[str], *, freeze: bool) -> str:
    cols = ", ".join(quote_ident(n) for n in names)
    options = "FORMAT csv, FREEZE" if freeze else "FORMAT csv"
    return f"COPY {table.qualified} ({cols}) FROM STDIN WITH ({options})"


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


def _batches(dest_dir: Path, files: list[str], names: list[str]) -> Iterator[pa.RecordBatch]:
    for rel in files:
        path = dest_dir / rel
        try:
            pf = pq.ParquetFile(str(path), pre_buffer=False)
        except FileNotFoundError:
            raise SnapshotError(f"snapshot file {rel} is missing") from None
        except (OSError, pa.ArrowException) as exc:
            raise SnapshotError(f"snapshot file {rel} is not readable Parquet: {exc}") from None
        have = set(pf.schema_arrow.names)
        lacking = [n for n in names if n not in have]
        if lacking:
            raise SnapshotError(f"snapshot file {rel} lacks column(s) {', '.join(lacking)}")
        try:
            yield from pf.iter_batches(batch_size=_BATCH_ROWS, columns=names, use_threads=True)
        except (OSError, pa.ArrowException) as exc:
            raise SnapshotError(f"snapshot file {rel} is corrupt: {exc}") from None


class _CsvSource:
    """File-like object for copy_expert: CSV blocks produced by a thread, bounded in memory."""

    def __init__(self, dest_dir: Path, files: list[str], names: list[str]) -> None:
        self.rows = 0
        self.error: BaseException | None = None
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=_QUEUE_BLOCKS)
        self._stop = threading.Event()
        self._finished = False
        self._thread = threading.Thread(
            target=self._produce, args=(dest_dir, files, names), daemon=True
        )
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, dest_dir: Path, files: list[str], names: list[str]) -> None:
        options = pacsv.WriteOptions(include_header=False, quoting_style="needed")
        try:
            for batch in _batches(dest_dir, files, names):
                if not batch.num_rows:
                    continue
                sink = pa.BufferOutputStream()
                pacsv.write_csv(batch, sink, options)
                self.rows += batch.num_rows
                if not self._put(sink.getvalue().to_pybytes()):
                    return
        except BaseException as exc:
            self.error = exc
        finally:
            self._put(_DONE)

    def read(self, size: int = _COPY_CHUNK) -> bytes:
        # psycopg2 sends whatever read() returns, so a whole CSV block goes out in one call
        # instead of being sliced (and copied) to `size`.
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
        block: bytes = item
        return block

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
) -> int:
    """COPY the snapshot files' rows into `table`; return the number of rows loaded.

    `columns` is the manifest's column list (TableExport.columns); only those columns are
    copied. freeze=True is legal only when the table was created or truncated earlier in the
    same transaction. Any failure raises SnapshotError and leaves the transaction for the
    caller to roll back.
    """
    dest_dir = Path(dest_dir)
    names = [str(c["name"]) for c in columns]
    _check_columns(table, names)
    source = _CsvSource(dest_dir, files, names)
    server_rows = -1
    try:
        with conn.cursor() as cur:
            cur.copy_expert(copy_in_sql(table, names, freeze=freeze), source, size=_COPY_CHUNK)
            server_rows = cur.rowcount
    except SnapshotError:
        raise
    except psycopg2.Error as exc:
        if source.error is not None:
            raise _as_snapshot_error(table, source.error) from None
        raise SnapshotError(f"cannot load {table.key}: {describe_error(exc)}") from None
    except Exception as exc:
        raise _as_snapshot_error(table, source.error or exc) from None
    finally:
        source.close()
    if source.error is not None:
        raise _as_snapshot_error(table, source.error)
    if server_rows >= 0 and server_rows != source.rows:
        raise SnapshotError(
            f"cannot load {table.key}: sent {source.rows} rows but the server stored {server_rows}"
        )
    return source.rows


def _as_snapshot_error(table: catalog.Table, exc: BaseException) -> SnapshotError:
    if isinstance(exc, SnapshotError):
        return SnapshotError(f"cannot load {table.key}: {exc.message}")
    return SnapshotError(f"cannot load {table.key}: {exc}")
