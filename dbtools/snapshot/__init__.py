"""Parquet snapshots of a database: format, export, load, archive; `read_snapshot` for analysts."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    numeric columns are Decimal; one-dimensional arrays are lists (pandas' ArrowDtype of the
    list type: each value a Python list, NULL as <NA>, the `.list` accessor), enums are
    ordered categoricals whose categories are all the enum's labels in order; uuid and json
    are strings, as PostgreSQL prints them (the file stores uuid as 16 bytes). Types kept in
    PostgreSQL's text form (multi-dimensional arrays, intervals, ...) stay strings, except
    numeric without a declared precision, which becomes Decimal. Snapshots written before
    arrays and enums were stored natively read the same way.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dbtools.snapshot import encryption, types
    from dbtools.snapshot import format as fmt
    from dbtools.snapshot.archive import resolve_path

    directory = resolve_path(settings, str(path))
    manifest = fmt.read_manifest(directory)
    entry = manifest.table(table)
    # An encrypted snapshot is read with the key of DBTOOLS_ARCHIVE_KEY (or an old key).
    keys = encryption.decryption(directory, manifest, entry)
    # Checked: inside the snapshot, no symlink on the way (a crafted manifest reads nothing else).
    parts = [
        pq.read_table(p, decryption_properties=keys) for p in fmt.table_files(directory, entry)
    ]
    data = pa.concat_tables(parts) if parts else pa.table({})
    data = _as_lists(data, entry.columns, types)
    data = _plain_extensions(data, types)
    nullable = {
        pa.int8(): pd.Int8Dtype(),
        pa.int16(): pd.Int16Dtype(),
        pa.int32(): pd.Int32Dtype(),
        pa.int64(): pd.Int64Dtype(),
        pa.bool_(): pd.BooleanDtype(),
    }

    def dtype_of(t: pa.DataType) -> Any:
        if pa.types.is_list(t) or pa.types.is_large_list(t):
            return pd.ArrowDtype(t)
        return nullable.get(t)

    frame = data.to_pandas(types_mapper=dtype_of)
    for col in entry.columns:
        name = col["name"]
        if name not in frame:
            continue
        if col.get("encoding") == "text" and col.get("base_type") == "numeric":
            # (a NULL is None or, with pandas' string dtype, NaN: never Decimal('NaN'))
            frame[name] = frame[name].map(lambda v: Decimal(v) if isinstance(v, str) else None)
        labels = col.get("enum_labels")
        if labels is not None and col.get("element_type") is None:
            frame[name] = _categorical(frame[name], list(labels))
    return frame


def _as_lists(data: Any, columns: list[dict[str, Any]], types: Any) -> Any:
    """Array columns an older snapshot (or a text fallback) holds as literals, as lists where
    every value is a one-dimensional array of a list-stored element type; else unchanged."""
    import pyarrow as pa

    for col in columns:
        name = col["name"]
        if col.get("encoding") != "text" or name not in data.column_names:
            continue
        list_type = types.recorded_list_type(col)
        if list_type is None or not pa.types.is_string(data.schema.field(name).type):
            continue
        try:
            lists = types.list_from_literal(data.column(name).combine_chunks(), list_type)
        except types.DoesNotFit:
            continue
        data = data.set_column(data.schema.get_field_index(name), name, lists)
    return data


def _plain_extensions(data: Any, types: Any) -> Any:
    """uuid columns as their canonical text, json columns as their text: strings, as
    snapshots written before stored them and as pandas code compares them."""
    for i, field in enumerate(data.schema):
        if types.is_uuid(field.type):
            text = types.text_of_uuid(data.column(i).combine_chunks(), canonical=True)
            data = data.set_column(i, field.name, text)
        elif types.is_json(field.type):
            data = data.set_column(i, field.name, data.column(i).combine_chunks().storage)
    return data


def _categorical(series: Any, labels: list[str]) -> Any:
    """An enum column as an ordered categorical of all its labels (unless a value is not one:
    then the values stay as they are)."""
    import pandas as pd

    dtype = pd.CategoricalDtype(labels, ordered=True)
    if isinstance(series.dtype, pd.CategoricalDtype):
        if list(series.dtype.categories) == labels and series.dtype.ordered:
            return series
        values = series.astype(object)
    else:
        values = series
    present = values.dropna()
    if not present.isin(labels).all():
        return series
    return values.astype(dtype)
