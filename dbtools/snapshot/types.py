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

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from dbtools import catalog

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


def plan_table(table: catalog.Table) -> list[ColumnPlan]:
    """Plans of the columns COPY moves (generated columns are computed by the server)."""
    return [column_plan(c) for c in table.copy_columns]


def is_fallible(plan: ColumnPlan) -> bool:
    """True when the reader may reject some values of this native plan (then use text)."""
    return plan.encoding == NATIVE and plan.base_type in FALLIBLE
