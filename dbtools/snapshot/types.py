"""The one PostgreSQL <-> Arrow type map of dbtools (docs/TYPES.md explains every row).

Data leaves PostgreSQL as CSV in the server's own text form (COPY ... FORMAT csv) and the Arrow
CSV reader converts each column to the Arrow type chosen here. A column is "native" when an
Arrow type holds every value of the PostgreSQL type exactly, so analysts get real numbers and
timestamps; otherwise it is "text": PostgreSQL's own text form in a utf8 column, with the type
recorded in the manifest. Some native types hold most but not all values (±infinity or BC
timestamps, NaN in numeric(p,s)); the exporter then falls back to `text_plan` for that column,
never wrapping, rounding or failing.
"""

from __future__ import annotations

import binascii
import itertools
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from dbtools import catalog
from dbtools.errors import SnapshotError

NATIVE = "native"
TEXT = "text"

# Types whose text form already is the value an analyst wants: a utf8 column is exact.
_STRING_TYPES = frozenset(
    {"text", "varchar", "bpchar", "char", "name", "uuid", "json", "jsonb", "citext", "xml"}
)
_FIXED: dict[str, pa.DataType] = {
    "int2": pa.int16(),
    "int4": pa.int32(),
    "int8": pa.int64(),
    "float4": pa.float32(),
    "float8": pa.float64(),
    "bool": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
    # The session runs in UTC, so the text carries +00 and the instant is kept exactly.
    "timestamptz": pa.timestamp("us", tz="UTC"),
}
# Native types whose range is narrower than PostgreSQL's: a value outside it is a
# conversion error in the CSV reader, which triggers the per-column text fallback.
FALLIBLE = frozenset({"date", "timestamp", "timestamptz", "numeric"})
_MAX_DECIMAL128_PRECISION = 38


def numeric_precision_scale(typmod: int) -> tuple[int, int] | None:
    """(precision, scale) of a numeric typmod, or None for unconstrained numeric."""
    if typmod < 4:
        return None
    raw = typmod - 4
    precision = (raw >> 16) & 0xFFFF
    # PostgreSQL 15 stores the scale as an 11-bit signed number (negative scales allowed).
    scale = ((raw & 0x7FF) ^ 1024) - 1024
    return precision, scale


@dataclass(frozen=True)
class ColumnPlan:
    """How one column travels: its Arrow type and whether that type carries the value."""

    name: str
    pg_type: str
    arrow_type: pa.DataType
    encoding: str
    base_type: str = ""
    typmod: int = -1
    category: str = ""
    elem_type: str | None = None
    enum_labels: tuple[str, ...] | None = None
    ndims: int = 0
    is_domain: bool = False
    fallback: str | None = None  # why a native plan was replaced by text, when it was

    def as_manifest(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "pg_type": self.pg_type,
            "arrow_type": str(self.arrow_type),
            "encoding": self.encoding,
            "base_type": self.base_type,
            "typmod": self.typmod,
            "array_dims": self.ndims,
        }
        if self.category == "A":
            out["element_type"] = self.elem_type
        if self.enum_labels is not None:
            out["enum_labels"] = list(self.enum_labels)
        if self.is_domain:
            out["domain"] = True
        if self.fallback:
            out["fallback"] = self.fallback
        return out


def _plan(column: catalog.Column, arrow_type: pa.DataType, encoding: str) -> ColumnPlan:
    return ColumnPlan(
        name=column.name,
        pg_type=column.type_name,
        arrow_type=arrow_type,
        encoding=encoding,
        base_type=column.base_name,
        typmod=column.typmod,
        category=column.category,
        elem_type=column.elem_name,
        enum_labels=column.enum_labels,
        ndims=column.ndims,
        is_domain=column.is_domain,
    )


def column_plan(column: catalog.Column) -> ColumnPlan:
    """The optimistic plan for one column: native wherever an Arrow type can be exact."""
    base = column.base_name
    if column.is_array:
        return text_plan(column)
    if column.typtype == "e" or base in _STRING_TYPES:
        return _plan(column, pa.string(), NATIVE)
    if base == "bytea":
        # COPY prints `\x` + hex; the exporter decodes it to the raw bytes (what an analyst
        # wants, and half the size in memory and on disk) and the load prints hex back.
        return _plan(column, pa.binary(), NATIVE)
    if base in _FIXED:
        return _plan(column, _FIXED[base], NATIVE)
    if base == "numeric":
        ps = numeric_precision_scale(column.typmod)
        if ps is not None:
            precision, scale = ps
            if 1 <= precision <= _MAX_DECIMAL128_PRECISION and 0 <= scale <= precision:
                return _plan(column, pa.decimal128(precision, scale), NATIVE)
    return text_plan(column)


def text_plan(column: catalog.Column, reason: str | None = None) -> ColumnPlan:
    """PostgreSQL's own text form in a utf8 column: exact for every type."""
    plan = _plan(column, pa.string(), TEXT)
    if reason:
        return ColumnPlan(**{**plan.__dict__, "fallback": reason})
    return plan


# Types PostgreSQL prints but never reads back ("cannot accept a value of type ..."): the
# server's own expression trees and extended statistics. A snapshot could export them, no
# load could ever use them, so they are refused before anything is written.
REFUSED: dict[str, str] = {
    name: "PostgreSQL cannot read this type back from its text form"
    for name in (
        "pg_node_tree",
        "pg_ndistinct",
        "pg_dependencies",
        "pg_mcv_list",
        "pg_brin_bloom_summary",
        "pg_brin_minmax_multi_summary",
    )
}


def refusals(table: catalog.Table) -> list[str]:
    """One line per column whose values cannot be carried exactly (empty when all can)."""
    out = []
    for c in table.copy_columns:
        for name in (c.base_name, c.elem_name):
            if name in REFUSED:
                out.append(f"{table.key}.{c.name} ({c.type_name}): {REFUSED[name]}")
    return out


def plan_table(table: catalog.Table) -> list[ColumnPlan]:
    """Plans of the columns COPY moves (generated columns are computed by the server).

    SnapshotError, before anything is read or written, for a column in REFUSED."""
    problems = refusals(table)
    if problems:
        raise SnapshotError(
            f"cannot snapshot {problems[0]}"
            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
            + "; see docs/TYPES.md"
        )
    return [column_plan(c) for c in table.copy_columns]


def is_hex(plan: ColumnPlan) -> bool:
    """True when COPY prints this column as bytea's hex text and the file holds the bytes."""
    return plan.encoding == NATIVE and pa.types.is_binary(plan.arrow_type)


def _rebased(arr: pa.Array) -> tuple[pa.Array, memoryview, pa.Buffer | None]:
    """A string or binary array's parts without a copy of its values: offsets (int32, from 0), the
    bytes of its values, and a validity bitmap starting at its first element."""
    offsets = pa.Array.from_buffers(
        pa.int32(), len(arr) + 1, [None, arr.buffers()[1]], offset=arr.offset
    )
    start, end = offsets[0].as_py(), offsets[-1].as_py()
    data = arr.buffers()[2]
    view = memoryview(data)[start:end] if data is not None else memoryview(b"")
    validity = pc.is_valid(arr).buffers()[1] if arr.null_count else None
    return pc.subtract(offsets, pa.scalar(start, pa.int32())), view, validity


# Up to this many values, bytes_from_hex decodes value by value from the hex text itself
# (no copy of the text: what matters when a batch is one 50 MB value); above it, rows are
# small and one Arrow kernel plus one binascii call beats a Python loop.
_FEW_VALUES = 64


def bytes_from_hex(arr: pa.Array) -> pa.Array:
    """bytea's COPY text (`\\x` + hex; NULL is null) -> the raw bytes, as a binary array."""
    if len(arr) > _FEW_VALUES:
        arr = pc.utf8_slice_codeunits(arr, 2)  # hex is ASCII: code units are bytes
        offsets, view, validity = _rebased(arr)
        raw = binascii.unhexlify(view)
        half = pc.shift_right(offsets, pa.scalar(1, pa.int32()))
        return pa.Array.from_buffers(
            pa.binary(), len(arr), [validity, half.buffers()[1], pa.py_buffer(raw)]
        )
    offsets, view, validity = _rebased(arr)
    bounds = offsets.to_pylist()
    pieces: list[bytes] = []
    ends, size = [0], 0
    for start, end in itertools.pairwise(bounds):
        if end > start:  # NULL is empty; every value has the two-byte prefix
            piece = binascii.unhexlify(view[start + 2 : end])
            pieces.append(piece)
            size += len(piece)
        ends.append(size)
    return pa.Array.from_buffers(
        pa.binary(),
        len(arr),
        [validity, pa.array(ends, pa.int32()).buffers()[1], pa.py_buffer(b"".join(pieces))],
    )


def hex_from_bytes(arr: pa.Array) -> pa.Array:
    """Raw bytes -> bytea's hex digits as a string array (no `\\x` prefix; NULL stays
    null), one binascii call for the whole array."""
    if not pa.types.is_binary(arr.type):
        arr = arr.cast(pa.binary())
    offsets, view, validity = _rebased(arr)
    digits = binascii.hexlify(view)
    double = pc.shift_left(offsets, pa.scalar(1, pa.int32()))
    return pa.Array.from_buffers(
        pa.string(), len(arr), [validity, double.buffers()[1], pa.py_buffer(digits)]
    )


def is_fallible(plan: ColumnPlan) -> bool:
    """True when the reader may reject some values of this native plan (then use text)."""
    return plan.encoding == NATIVE and plan.base_type in FALLIBLE
