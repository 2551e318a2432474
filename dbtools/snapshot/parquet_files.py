"""The Parquet files of one table: their names (file_stem), their schema, and the writer that
splits them into part files."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from dbtools import catalog
from dbtools.snapshot import types
from dbtools.snapshot.upload import HashingSink, RemoteBuild

# Where a table's files go: a local build directory, or a snapshot streamed into object
# storage (snapshot/upload.py), whose objects are written once and moved server-side.
Dest = Path | RemoteBuild

# Kept as they are in file names: ASCII letters and digits, '_' and '-', and non-ASCII
# printable characters (unicode names stay readable). Everything else is percent-encoded
# (its UTF-8 bytes), '.' and '%' included, so '<schema>.<table>' splits at one dot only.
_STEM_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_STEM_MAX_BYTES = 200  # file names are limited to 255 bytes; leave room for suffixes


def _stem_part(name: str) -> str:
    out = []
    for ch in name:
        if ch in _STEM_SAFE or (ord(ch) > 127 and ch.isprintable()):
            out.append(ch)
        else:
            out.append("".join(f"%{b:02X}" for b in ch.encode("utf-8")))
    return "".join(out)


def file_stem(table: catalog.Table) -> str:
    """'<schema>.<table>' as one safe file name: no separator, no dot but the one between
    the two parts, nothing hidden, and different tables never share a stem (the encoding is
    reversible; a stem too long for a file name is cut and made unique by a digest)."""
    stem = f"{_stem_part(table.schema)}.{_stem_part(table.name)}"
    if len(stem.encode("utf-8")) > _STEM_MAX_BYTES:
        digest = hashlib.sha256(f"{table.schema}\0{table.name}".encode()).hexdigest()[:16]
        cut = stem.encode("utf-8")[: _STEM_MAX_BYTES - 17].decode("utf-8", "ignore")
        stem = f"{cut}~{digest}"  # '~' is always encoded elsewhere: no clash with a full stem
    return stem


def parquet_schema(plans: list[types.ColumnPlan]) -> pa.Schema:
    """The file's schema; each field carries its PostgreSQL type for people reading the file.

    A table without columns gets one placeholder field of type null (export_table's doc)."""
    if not plans:
        return pa.schema([pa.field(NO_COLUMNS_FIELD, pa.null())])
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


def _variable_width(t: pa.DataType) -> bool:
    if isinstance(t, pa.BaseExtensionType):  # json: a string; uuid: 16 bytes
        t = t.storage_type
    return bool(
        pa.types.is_string(t)
        or pa.types.is_binary(t)
        or pa.types.is_list(t)
        or pa.types.is_dictionary(t)
    )


def _dictionary_column(p: types.ColumnPlan) -> str | None:
    """The Parquet column (leaf path) of an enum or enum-array column, else None."""
    if p.enum_labels is None:
        return None
    if types.is_list(p):
        return f"{p.name}.list.{types.LIST_ELEMENT}"  # Parquet's LIST layout
    return None if p.category == "A" else p.name


class PartWriter:
    """Parquet output of one table: one file, or part files once max_rows is exceeded."""

    def __init__(
        self,
        dest_dir: Dest,
        stem: str,
        plans: list[types.ColumnPlan],
        max_rows: int | None,
        *,
        wide: bool = False,
        encryption: Any = None,
    ) -> None:
        self.dest_dir = dest_dir
        self.wide = wide
        # pyarrow's FileEncryptionProperties (snapshot.encryption), or None: plaintext.
        self.encryption = encryption
        # Column statistics keep a copy of each page's min and max value: for a table with
        # rows wider than the reader's block that is two more copies of the widest value, so
        # there only fixed-width columns get statistics.
        self.statistics: bool | list[str] = (
            [p.name for p in plans if not _variable_width(p.arrow_type)] if wide else True
        )
        # Dictionary pages only for enums and enum arrays: on high-cardinality columns
        # Parquet builds a dictionary, gives up and writes plain pages anyway, costing ~30% of
        # the write time and a bigger file under zstd (docs/BENCHMARKS.md). An enum column
        # stored as an Arrow dictionary has its dictionary (all labels) written as is.
        self.dictionary_columns = [
            c for c in (_dictionary_column(p) for p in plans) if c is not None
        ]
        schema = parquet_schema(plans)
        self.stem = stem
        self.schema = schema
        self.max_rows = max_rows
        self.files: list[str] = [f"{stem}.parquet"]
        self.rows_in_file = 0
        self._sink: HashingSink | None = None
        self.writer: pq.ParquetWriter | None = self._open(self.files[0])

    def _open(self, rel: str) -> pq.ParquetWriter:
        where: str | HashingSink
        if isinstance(self.dest_dir, RemoteBuild):
            where = self._sink = self.dest_dir.open(rel)
        else:
            where = str(self.dest_dir / rel)
        return pq.ParquetWriter(
            where,
            self.schema,
            compression="zstd",
            write_statistics=self.statistics,
            use_dictionary=self.dictionary_columns,
            # Lists as Parquet's LIST layout names them (`<column>.list.element`), which is
            # also the list type read back (types.LIST_ELEMENT): the manifest's arrow_type.
            use_compliant_nested_type=True,
            encryption_properties=self.encryption,
        )

    def _close_writer(self) -> None:
        assert self.writer is not None
        self.writer.close()
        if self._sink is not None:  # pyarrow leaves a file object it was given open
            self._sink.close()
            self._sink = None

    def _rotate(self) -> None:
        self._close_writer()
        if len(self.files) == 1 and isinstance(self.dest_dir, RemoteBuild):
            first = f"{self.stem}/part-00000.parquet"
            self.dest_dir.move(self.files[0], first)
            self.files[0] = first
        elif len(self.files) == 1 and isinstance(self.dest_dir, Path):
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
            self._close_writer()
            self.writer = None

    def file_bytes(self) -> int:
        """The bytes of the files written (after close)."""
        if isinstance(self.dest_dir, RemoteBuild):
            return sum(self.dest_dir.size(f) for f in self.files)
        return sum((self.dest_dir / f).stat().st_size for f in self.files)

    def discard(self) -> None:
        with contextlib.suppress(Exception):
            self.close()
        if isinstance(self.dest_dir, RemoteBuild):
            for rel in self.files:
                self.dest_dir.delete(rel)
            return
        assert isinstance(self.dest_dir, Path)
        with contextlib.suppress(FileNotFoundError):
            (self.dest_dir / f"{self.stem}.parquet").unlink()
        shutil.rmtree(self.dest_dir / self.stem, ignore_errors=True)


NO_COLUMNS_FIELD = "_dbtools_no_columns"
