"""Parquet snapshots of a database: format, export, load, archive; `read_snapshot` for analysts."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from dbtools.config import Settings

__all__ = ["read_snapshot"]


def read_snapshot(
    path: str | Path, table: str, *, settings: Settings | None = None
) -> pd.DataFrame:
    """One table of a snapshot as a pandas DataFrame.

    `path` is a snapshot reference, as every command takes it: a snapshot directory,
    "prod/20250514T102112Z", "prod:latest" (the newest snapshot of prod that verifies), or a
    bare stamp only one side holds (a stamp both sides hold raises ConfigError, naming both).
    The archive is the one of `settings`, else of the project in the current directory.

    `table` is "schema.table" or a bare name. Integers and booleans with NULLs keep their
    type (pandas' nullable Int64/boolean rather than float), timestamps are datetime64,
    numeric columns are Decimal; types kept in PostgreSQL's text form (arrays, intervals, ...)
    stay strings, except numeric without a declared precision, which becomes Decimal.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dbtools.snapshot import format as fmt
    from dbtools.snapshot.archive import resolve_path

    directory = resolve_path(settings, str(path))
    entry = fmt.read_manifest(directory).table(table)
    # Checked: inside the snapshot, no symlink on the way (a crafted manifest reads nothing else).
    parts = [pq.read_table(p) for p in fmt.table_files(directory, entry)]
    data = pa.concat_tables(parts) if parts else pa.table({})
    nullable = {
        pa.int8(): pd.Int8Dtype(),
        pa.int16(): pd.Int16Dtype(),
        pa.int32(): pd.Int32Dtype(),
        pa.int64(): pd.Int64Dtype(),
        pa.bool_(): pd.BooleanDtype(),
    }
    frame = data.to_pandas(types_mapper=nullable.get)
    for col in entry.columns:
        name = col["name"]
        if col.get("encoding") == "text" and col.get("base_type") == "numeric" and name in frame:
            frame[name] = frame[name].map(lambda v: None if v is None else Decimal(v))
    return frame
