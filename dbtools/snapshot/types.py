"""The one PostgreSQL <-> Arrow type map of dbtools (docs/TYPES.md explains every row).

Data leaves PostgreSQL as CSV in the server's own text form (COPY ... FORMAT csv) and the Arrow
CSV reader converts each column to the Arrow type chosen here (`csv_type`); a few columns are
read as text and converted after the reader (`stored`: bytea's hex to bytes, array literals to
Arrow lists, enum labels to a dictionary). A column is "native" when an Arrow type holds every
value of the PostgreSQL type exactly, so analysts get real numbers, timestamps, lists and
categoricals; otherwise it is "text": PostgreSQL's own text form in a utf8 column, with the type
recorded in the manifest. Some native types hold most but not all values (±infinity or BC
timestamps, NaN in numeric(p,s), a multi-dimensional array); the exporter then falls back to
`text_plan` for that column, never wrapping, rounding or failing.
"""

from __future__ import annotations

import binascii
import itertools
import re
import struct
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
# Enums: the labels as a dictionary, in the enum's order (pandas gets an ordered categorical
# whose categories are all the labels, used or not). Polars and pyarrow read it as a
# dictionary too; DuckDB reads the strings.
ENUM_TYPE = pa.dictionary(pa.int32(), pa.string(), ordered=True)
# Arrow's canonical extension types where this pyarrow has them (18 and 19 on): uuid as 16
# bytes (Parquet's UUID type: DuckDB reads a UUID, pandas uuid.UUID objects), json and jsonb
# as their text tagged JSON (Parquet's JSON type). Without them the columns are plain strings.
UUID_TYPE: pa.DataType | None = pa.uuid() if hasattr(pa, "uuid") else None
JSON_TYPE: pa.DataType | None = pa.json_() if hasattr(pa, "json_") else None
# The child field of an array column's list type: the name Parquet's LIST layout uses, so
# the type read back from a file is the type the manifest records.
LIST_ELEMENT = "element"


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
        enum_labels=_enum_labels(column),
        ndims=column.ndims,
        is_domain=column.is_domain,
    )


def _enum_labels(column: catalog.Column) -> tuple[str, ...] | None:
    """The labels of an enum or enum-array column ((), not None, for an enum without any: the
    catalog finds no pg_enum row for it), else None."""
    if column.enum_labels is not None:
        return column.enum_labels
    return () if "e" in (column.typtype, column.elem_typtype) else None


def _decimal(typmod: int) -> pa.DataType | None:
    ps = numeric_precision_scale(typmod)
    if ps is not None:
        precision, scale = ps
        if 1 <= precision <= _MAX_DECIMAL128_PRECISION and 0 <= scale <= precision:
            return pa.decimal128(precision, scale)
    return None


def _element_type(column: catalog.Column) -> pa.DataType | None:
    """The Arrow type of an array's elements, when a list of it holds every array exactly
    (one dimension, lower bound 1: checked value by value on export); None: text form."""
    elem = column.elem_name
    # A true array type is named _<element>; int2vector and oidvector are arrays too, with
    # another text form ('1 2 3').
    if elem is None or not column.base_name.startswith("_"):
        return None
    if column.elem_typtype == "e":
        return pa.string()
    if column.elem_typtype != "b":  # a composite or range named like a built-in: its text
        return None
    if elem in _STRING_TYPES:
        return pa.string()
    if elem in _FIXED:
        return _FIXED[elem]
    if elem == "numeric":
        return _decimal(column.typmod)  # an array column's typmod is its elements'
    return None


def column_plan(column: catalog.Column) -> ColumnPlan:
    """The optimistic plan for one column: native wherever an Arrow type can be exact."""
    base = column.base_name
    if column.is_array:
        elem = _element_type(column)
        if elem is None:
            return text_plan(column)
        return _plan(column, pa.list_(pa.field(LIST_ELEMENT, elem)), NATIVE)
    if column.typtype == "e":
        return _plan(column, ENUM_TYPE, NATIVE)
    if column.typtype != "b":
        # Composites, ranges, multiranges: their text. Names are matched below without their
        # schema, and a user's `CREATE TYPE public.int4 AS (a int)` is no int4.
        return text_plan(column)
    if base == "uuid" and UUID_TYPE is not None:
        return _plan(column, UUID_TYPE, NATIVE)
    if base in ("json", "jsonb") and JSON_TYPE is not None:
        return _plan(column, JSON_TYPE, NATIVE)
    if base in _STRING_TYPES:
        return _plan(column, pa.string(), NATIVE)
    if base == "bytea":
        # COPY prints `\x` + hex; the exporter decodes it to the raw bytes (what an analyst
        # wants, and half the size in memory and on disk) and the load prints hex back.
        return _plan(column, pa.binary(), NATIVE)
    if base in _FIXED:
        return _plan(column, _FIXED[base], NATIVE)
    if base == "numeric":
        decimal = _decimal(column.typmod)
        if decimal is not None:
            return _plan(column, decimal, NATIVE)
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
    """bytea's COPY text (`\\x` + hex; NULL is null) -> the raw bytes, as a binary array.

    DoesNotFit for any other text (bytea_output = escape, or a type only named bytea)."""
    # (and an even number of digits: the fast path decodes all values' digits at once)
    if not (
        _every(pc.starts_with(arr, "\\x"))
        and _every(pc.equal(pc.bit_wise_and(pc.binary_length(arr), 1), 0))
    ):
        raise DoesNotFit("a value is not bytea's hex form")
    try:
        return _unhex(arr)
    except (binascii.Error, ValueError):
        raise DoesNotFit("a value is not bytea's hex form") from None


def _unhex(arr: pa.Array) -> pa.Array:
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


def is_list(plan: ColumnPlan) -> bool:
    """True when the file holds this (array) column as an Arrow list."""
    return plan.encoding == NATIVE and pa.types.is_list(plan.arrow_type)


def is_enum(plan: ColumnPlan) -> bool:
    """True when the file holds this (enum) column as a dictionary of its labels."""
    return plan.encoding == NATIVE and pa.types.is_dictionary(plan.arrow_type)


def is_uuid(typ: pa.DataType) -> bool:
    """True for Arrow's uuid extension type (16 bytes a value)."""
    return isinstance(typ, pa.BaseExtensionType) and typ.extension_name == "arrow.uuid"


def is_json(typ: pa.DataType) -> bool:
    """True for Arrow's json extension type (the text, tagged)."""
    return isinstance(typ, pa.BaseExtensionType) and typ.extension_name == "arrow.json"


def is_fallible(plan: ColumnPlan) -> bool:
    """True when some values of this native plan may not fit it (then use text): the
    reader rejects them, or `stored` does (DoesNotFit)."""
    return plan.encoding == NATIVE and (
        plan.base_type in FALLIBLE
        or is_list(plan)
        or is_enum(plan)
        or is_uuid(plan.arrow_type)
        or is_hex(plan)
    )


def csv_type(plan: ColumnPlan) -> pa.DataType:
    """The type the CSV reader gives the column: its stored type, or text that `stored`
    converts after the reader."""
    if (
        is_hex(plan)
        or is_list(plan)
        or is_enum(plan)
        or isinstance(plan.arrow_type, pa.BaseExtensionType)
    ):
        return pa.string()
    return plan.arrow_type


def converted(plan: ColumnPlan) -> bool:
    """True when `stored` has work to do for this column."""
    return csv_type(plan) != plan.arrow_type


class DoesNotFit(ValueError):
    """A value of the column has no exact form in the planned type: export it as text."""


def stored(plan: ColumnPlan, arr: pa.Array) -> pa.Array:
    """One column as the CSV reader gave it (csv_type) -> as the file stores it.

    DoesNotFit when a value has no exact form there (a multi-dimensional array, other bounds
    than [1:n], an element out of the element type's range, a label the enum lacks)."""
    if is_hex(plan):
        return bytes_from_hex(arr)
    if is_list(plan):
        return list_from_literal(arr, plan.arrow_type)
    if is_enum(plan):
        return enum_from_labels(arr, plan.enum_labels or ())
    if is_uuid(plan.arrow_type):
        return uuid_from_text(arr)
    if isinstance(plan.arrow_type, pa.BaseExtensionType):  # json: the text itself, tagged
        return pa.ExtensionArray.from_storage(plan.arrow_type, arr)
    return arr


_NIL_UUID = "00000000-0000-0000-0000-000000000000"


def uuid_from_text(arr: pa.Array) -> pa.Array:
    """uuid's text (`8-4-4-4-12` hex digits; NULL is null) -> Arrow's uuid type (16 bytes a
    value), one binascii call for the whole array. DoesNotFit for any other text."""
    if UUID_TYPE is None:  # pragma: no cover - planned only where pyarrow has the type
        raise DoesNotFit("this pyarrow has no uuid type")
    if not _every(pc.equal(pc.binary_length(arr), 36)):
        raise DoesNotFit("a value is not a uuid's 36 characters")
    digits = pc.replace_substring(pc.fill_null(arr, _NIL_UUID), "-", "")
    if not _every(pc.equal(pc.binary_length(digits), 32)):
        raise DoesNotFit("a value is not a uuid's 36 characters")
    try:
        raw = binascii.unhexlify(value_bytes(digits))
    except (binascii.Error, ValueError):
        raise DoesNotFit("a value is not a uuid's hex digits") from None
    validity = pc.is_valid(arr).buffers()[1] if arr.null_count else None
    storage = pa.Array.from_buffers(pa.binary(16), len(arr), [validity, pa.py_buffer(raw)])
    return pa.ExtensionArray.from_storage(UUID_TYPE, storage)


def text_of_uuid(arr: pa.Array, *, canonical: bool = False) -> pa.Array:
    """Arrow's uuid type -> its 32 hex digits (uuid input reads them without the dashes;
    NULL stays null), one binascii call for the whole array; `canonical`: PostgreSQL's
    `8-4-4-4-12` form."""
    storage = arr.storage
    n = len(storage)
    data = storage.buffers()[1]
    start = storage.offset * 16
    digits = binascii.hexlify(memoryview(data)[start : start + 16 * n]) if n else b""
    validity = pc.is_valid(storage).buffers()[1] if storage.null_count else None
    text = pa.Array.from_buffers(
        pa.string(), n, [validity, _offsets_of_32(n), pa.py_buffer(digits)]
    )
    if not canonical:
        return text
    groups = [pc.utf8_slice_codeunits(text, a, b) for a, b in _UUID_GROUPS]
    return pc.binary_join_element_wise(*groups, "-")


_offsets: pa.Buffer | None = None


def _offsets_of_32(n: int) -> pa.Buffer:
    """int32 offsets 0, 32, 64, ... (n + 1 of them): every uuid is 32 hex digits. Kept and
    grown for the largest batch seen (a race only computes it twice)."""
    global _offsets
    have = _offsets
    if have is None or have.size < 4 * (n + 1):
        size = max(n + 1, 2 * (have.size // 4) if have is not None else 8192)
        have = pa.array(range(0, 32 * size, 32), pa.int32()).buffers()[1]
        _offsets = have
    return have


_UUID_GROUPS = ((0, 8), (8, 12), (12, 16), (16, 20), (20, 32))


def enum_from_labels(arr: pa.Array, labels: tuple[str, ...]) -> pa.Array:
    """Enum labels (strings) -> a dictionary array whose dictionary is all the labels in order."""
    dictionary = pa.array(labels, pa.string())
    indices = pc.index_in(arr, value_set=dictionary)
    if indices.null_count != arr.null_count:
        raise DoesNotFit("a value is not a label of the enum")
    return pa.DictionaryArray.from_arrays(indices, dictionary, ordered=True)


# Array literals (array_out): elements are separated by commas; an element is bare (no quote,
# comma, brace, backslash or white space: PostgreSQL quotes every element holding one, and
# empty strings and "NULL") or quoted, with `\\` and `\"` the only escapes inside the quotes.
# No PostgreSQL text holds NUL, so NUL + a letter marks escapes and separators unambiguously.
# (escape, its mark, the character): `\\\\` is marked first, left to right, so that every pair
# stays aligned; each is replaced only where a scan found it (a pass costs as much either way).
_ESCAPES = (
    ("\\\\", "\x00b", "\\", re.compile(rb"\\\\")),
    ('\\"', "\x00q", '"', re.compile(rb'\\"')),
)
_SEPARATOR = "\x00s"
# One element (escapes already replaced, so a quoted one is `"[^"]*"`) and the comma after it.
_ELEMENT = r'("[^"]*"|[^",]*),'
_QUOTE = re.compile(b'"')
_BACKSLASH = re.compile(b"\\\\")
_NULL = re.compile(b"NULL")


def list_from_literal(arr: pa.Array, list_type: pa.DataType) -> pa.Array:
    """PostgreSQL array literals (string array, NULL is null) -> an Arrow list array.

    Vectorised over the whole array: strip the braces, replace the escapes by NUL marks, split
    at the commas; when a quoted element held a comma (a piece with one quote, or a quote
    elsewhere than around it), split again at only the commas a regex finds after whole
    elements. A bare `NULL` is a null element; a quoted element loses its quotes and gets its
    escaped characters back. The element texts are then cast to the element type strictly
    (no rounding, no wrap: an error). DoesNotFit for anything else: `[0:2]={...}` bounds,
    `{{...}}` dimensions, an element the cast refuses."""
    # (_every skips NULL arrays; each step drops what it no longer needs, as soon as it can:
    # a 50 MB array is a 50 MB value at every step)
    if not (
        _every(pc.starts_with(arr, "{"))
        and not _some(pc.starts_with(arr, "{{"))
        and _every(pc.ends_with(arr, "}"))
    ):
        raise DoesNotFit("an array has more than one dimension or other bounds than [1:n]")
    body = pc.utf8_slice_codeunits(arr, 1, -1)
    # '{}' splits into one empty element, the only bare empty one a literal can have.
    empty = pc.equal(body, "")
    escapes = [e for e in _ESCAPES if _has(body, e[3])] if _has(body, _BACKSLASH) else []
    for escape, mark, _, _ in escapes:
        body = pc.replace_substring(body, escape, mark)
    quotes = _has(body, _QUOTE)
    parts = pc.split_pattern(body, ",")
    if quotes and not _whole_elements(parts.flatten()):
        parts = pc.split_pattern(
            pc.utf8_slice_codeunits(
                pc.replace_substring_regex(
                    pc.binary_join_element_wise(body, ",", ""), _ELEMENT, "\\1" + _SEPARATOR
                ),
                0,
                -2,
            ),
            _SEPARATOR,
        )
    del body
    raw = parts.flatten()
    counts = pc.list_value_length(parts)
    del parts
    if pc.any(empty).as_py():
        raw = raw.filter(pc.not_equal(raw, ""))
        counts = pc.if_else(empty, 0, counts)
    counts = pc.fill_null(counts, 0)
    if (pc.sum(counts).as_py() or 0) != len(raw):
        raise DoesNotFit("an array literal did not split into its elements")
    null = pc.equal(raw, "NULL") if _has(raw, _NULL) else None
    # Whole elements: the only quotes left are those around quoted ones.
    values = pc.replace_substring(raw, '"', "") if quotes else raw
    del raw
    for _, mark, char, _ in escapes:
        values = pc.replace_substring(values, mark, char)
    if null is not None:
        values = pc.if_else(null, pa.scalar(None, pa.string()), values)
    try:
        elements = _elements(values, list_type.value_type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        # (the reason goes to the manifest: it names the type, never the value)
        raise DoesNotFit(f"an array element does not fit {list_type.value_type}") from None
    offsets = pa.concat_arrays(
        [pa.array([0], pa.int32()), pc.cumulative_sum(counts).cast(pa.int32())]
    )
    mask = pc.is_null(arr) if arr.null_count else None
    return pa.ListArray.from_arrays(offsets, elements, type=list_type, mask=mask)


def _whole_elements(pieces: pa.Array) -> bool:
    """Whether splitting at every comma left whole elements: each piece bare (no quote) or
    one quoted element. A quoted element holding a comma leaves a piece with one quote."""
    quotes = pc.count_substring(pieces, '"')
    whole = pc.or_(
        pc.equal(quotes, 0),
        pc.and_(
            pc.equal(quotes, 2),
            pc.and_(pc.starts_with(pieces, '"'), pc.ends_with(pieces, '"')),
        ),
    )
    return _every(whole)


def stored_as(column: dict[str, Any]) -> str:
    """How a manifest column (`ColumnPlan.as_manifest`) is stored, in a few words for people:
    `list<string>`, `categorical (4 labels)`, `uuid`, `json`, `decimal128(10, 2)`, or
    `text` with the reason of a fallback."""
    arrow = str(column.get("arrow_type", ""))
    if column.get("encoding") == TEXT:
        reason = column.get("fallback")
        return f"text ({reason})" if reason else "text"
    if arrow.startswith(f"list<{LIST_ELEMENT}: "):
        return "list<" + arrow[len(f"list<{LIST_ELEMENT}: ") :]
    if arrow.startswith("dictionary<"):
        labels = column.get("enum_labels") or []
        return f"categorical ({len(labels)} label{'' if len(labels) == 1 else 's'})"
    if arrow.startswith("extension<arrow.") and arrow.endswith(">"):
        return arrow[len("extension<arrow.") : -1]
    return arrow


def recorded_list_type(column: dict[str, Any]) -> pa.DataType | None:
    """The list type an array column of a manifest (`ColumnPlan.as_manifest`) would be stored
    as today, from what the manifest records; None when it would be text. For reading an
    older snapshot's array literals (`read_snapshot`) the way a new snapshot stores them."""
    elem = column.get("element_type")
    if not isinstance(elem, str) or not str(column.get("base_type", "")).startswith("_"):
        return None
    if column.get("enum_labels") is not None or elem in _STRING_TYPES:
        typ: pa.DataType | None = pa.string()
    elif elem in _FIXED:
        typ = _FIXED[elem]
    elif elem == "numeric" and isinstance(column.get("typmod"), int):
        typ = _decimal(column["typmod"])
    else:
        typ = None
    return None if typ is None else pa.list_(pa.field(LIST_ELEMENT, typ))


def _elements(values: pa.Array, typ: pa.DataType) -> pa.Array:
    """Element texts (PostgreSQL's output) -> the element type, refusing what is not exact."""
    if pa.types.is_string(typ):
        return values
    if pa.types.is_boolean(typ):
        true, false = pc.equal(values, "t"), pc.equal(values, "f")
        if (pc.sum(pc.or_(true, false)).as_py() or 0) != len(values) - values.null_count:
            raise pa.ArrowInvalid("a boolean element is neither t nor f")
        return true
    return values.cast(typ)  # strict: overflow, extra digits, zones and BC are errors


def _every(mask: pa.Array) -> bool:
    """Whether every non-null value of a boolean array is true: also for an array of only
    nulls, or none (a batch of NULL arrays or uuids fits; pc.all alone says null there)."""
    return bool(pc.all(mask, min_count=0).as_py())


def _some(mask: pa.Array) -> bool:
    """Whether any non-null value of a boolean array is true (False for only nulls)."""
    return bool(pc.any(mask, min_count=0).as_py())


def value_bytes(arr: pa.Array) -> memoryview:
    """The UTF-8 bytes of a string array's values, without a copy (the load's escaping scan
    uses it too)."""
    data = arr.buffers()[2]
    if data is None or not len(arr):
        return memoryview(b"")
    offsets = arr.buffers()[1]
    start = struct.unpack_from("=i", offsets, 4 * arr.offset)[0]
    end = struct.unpack_from("=i", offsets, 4 * (arr.offset + len(arr)))[0]
    return memoryview(data)[start:end]


def _has(arr: pa.Array, pattern: re.Pattern[bytes]) -> bool:
    """Whether a string array's bytes hold the pattern: one C-speed scan, no copy."""
    return pattern.search(value_bytes(arr)) is not None
