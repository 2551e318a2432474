"""Row-level comparison of one table across two snapshots, with DuckDB over their Parquet files.

The two sides are joined on the primary key (a FULL OUTER JOIN that DuckDB runs out of core,
so a table is never loaded into Python's memory); a row is updated when any compared column
IS DISTINCT FROM its counterpart (NULL-aware). Only columns stored the same way on both sides
are compared value by value: a column kept in PostgreSQL's text form on one side and native
on the other (a value that did not fit the native type) could differ in spelling while equal
in value, so such a table is reported as replaced whole rather than guessed at.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import math
import re
import uuid
from pathlib import Path
from typing import Any

from dbtools.changes.model import BY_KEY, REPLACED, SAMPLE_KEYS, TableChanges
from dbtools.db import quote_ident
from dbtools.snapshot import format as fmt
from dbtools.snapshot.encryption import table_secret
from dbtools.snapshot.query import lock_down, table_source

# The presence markers of the join (user columns are named c0, c1, ... there: no clash).
_IN_DEV = "__dbtools_in_dev"
_IN_PROD = "__dbtools_in_prod"


def _position(i: int) -> str:
    """The name of a table's i-th column in the comparison's views (names are by position)."""
    return f"c{i}"


def _shape(entry: fmt.TableEntry) -> dict[str, tuple[str, str]]:
    """column -> (Arrow type, encoding): how the column is stored in this snapshot."""
    return {c["name"]: (str(c.get("arrow_type")), str(c.get("encoding"))) for c in entry.columns}


def jsonable(value: Any) -> Any:
    """A key value as JSON shows it: bytea as PostgreSQL's `\\x` hex, the rest as text."""
    if isinstance(value, float) and not math.isfinite(value):
        # JSON has no NaN or Infinity (strict parsers refuse them): PostgreSQL's spelling
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(value).hex()
    if isinstance(value, (_dt.date, _dt.datetime, _dt.time)):
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, uuid.UUID, _dt.timedelta)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return str(value)


# With TableSources(positions=True), each row also carries where it is stored.
FILE = "__dbtools_file"
ROW = "__dbtools_row"


class TableSources:
    """The DuckDB views of both snapshots' tables, locked to exactly their files.

    positions=True adds each row's file and row number in it (FILE, ROW): what staging reads
    back (changes.staging) to pick a table's changed rows out of the Parquet files.
    """

    def __init__(
        self,
        con: Any,
        dev_dir: Path,
        dev: fmt.Manifest,
        prod_dir: Path,
        prod: fmt.Manifest,
        *,
        positions: bool = False,
    ):
        self.con = con
        self.positions = positions
        self.views: dict[tuple[str, str], str | None] = {}
        allowed: list[str] = []
        for side, directory, manifest in (("dev", dev_dir, dev), ("prod", prod_dir, prod)):
            for n, (key, entry) in enumerate(sorted(manifest.tables.items())):
                paths = fmt.table_files(directory, entry)
                if not paths:
                    self.views[(side, key)] = None
                    continue
                view = f"{side}_{n}"
                source = table_source(
                    con,
                    f"__dbtools_{side}_{n}",
                    paths,
                    positions=positions,
                    columns=[str(c["name"]) for c in entry.columns],
                    secret=table_secret(directory, manifest, entry),
                )
                # DuckDB matches names case-insensitively ("v" and "V" are one column to
                # it, the second read as "V_1"): the view names every column by position.
                cols = [_position(i) for i in range(len(entry.columns))]
                cols += [ROW, FILE] if positions else []
                names = ", ".join(quote_ident(c) for c in cols)
                aliased = f"SELECT * FROM ({source}) AS s({names})" if names else source
                con.execute(f"CREATE VIEW {quote_ident(view)} AS {aliased}")
                self.views[(side, key)] = view
                allowed += [str(p) for p in paths]
        lock_down(con, allowed)

    def view(self, side: str, key: str) -> str | None:
        return self.views.get((side, key))


def compare_table(
    sources: TableSources, key: str, dev: fmt.TableEntry, prod: fmt.TableEntry
) -> TableChanges:
    """Inserted, updated (and which columns), deleted and unchanged rows of one table."""
    out = TableChanges.between(key, BY_KEY, dev, prod)
    dev_shape, prod_shape = _shape(dev), _shape(prod)
    reason = _not_comparable(dev, prod, dev_shape, prod_shape)
    if reason:
        out.mode, out.note = REPLACED, reason
        out.inserted, out.deleted = dev.rows, prod.rows
        return out
    common = [c for c in dev_shape if c in prod_shape and c not in dev.primary_key]
    only_dev = [c for c in dev_shape if c not in prod_shape]
    only_prod = [c for c in prod_shape if c not in dev_shape]
    if only_dev or only_prod:
        parts = []
        if only_dev:
            parts.append("columns only in dev: " + ", ".join(only_dev))
        if only_prod:
            parts.append("columns only in prod: " + ", ".join(only_prod))
        out.note = "; ".join(parts) + " (compared on the columns both have)"
    # the views name columns by position (TableSources): each side's own positions
    d_at = {c: quote_ident(_position(i)) for i, c in enumerate(dev_shape)}
    p_at = {c: quote_ident(_position(i)) for i, c in enumerate(prod_shape)}
    dev_view, prod_view = sources.view("dev", key), sources.view("prod", key)
    if dev_view is None or prod_view is None:  # one side holds no rows at all
        out.inserted = dev.rows if prod_view is None else 0
        out.deleted = prod.rows if dev_view is None else 0
        only = dev_view or prod_view
        kind = "inserted" if dev_view else "deleted"
        at = d_at if dev_view else p_at
        if only:
            cols = [at[k] for k in out.key]
            out.samples[kind] = _keys(
                sources.con, f"FROM {quote_ident(only)}", out.key, cols, "true"
            )
        return out
    join, kinds, differs = _join(dev_view, prod_view, out.key, common, d_at, p_at, dev_shape)
    selects = [f"count(*) FILTER (WHERE {cond})" for cond in kinds.values()]
    both = f"d.{_IN_DEV} AND p.{_IN_PROD}"
    selects += [f"count(*) FILTER (WHERE {both} AND {cond})" for cond in differs.values()]
    row = sources.con.execute(f"SELECT {', '.join(selects)} {join}").fetchone()
    out.inserted, out.deleted, out.updated = int(row[0]), int(row[1]), int(row[2])
    out.changed_columns = {c: int(n) for c, n in zip(differs, row[3:], strict=True) if n}
    out.unchanged = dev.rows - out.inserted - out.updated
    for kind, cond in kinds.items():
        if getattr(out, kind):
            cols = [f"p.{p_at[k]}" if kind == "deleted" else f"d.{d_at[k]}" for k in out.key]
            out.samples[kind] = _keys(sources.con, join, out.key, cols, cond)
    return out


def _join(
    dev_view: str,
    prod_view: str,
    key: list[str],
    common: list[str],
    d_at: dict[str, str],
    p_at: dict[str, str],
    shape: dict[str, tuple[str, str]],
) -> tuple[str, dict[str, str], dict[str, str]]:
    """The FULL OUTER JOIN of the two sides on the key, the condition of each change kind,
    and each compared column's "differs" condition."""
    join = (
        f"FROM (SELECT *, true AS {_IN_DEV} FROM {quote_ident(dev_view)}) d "
        f"FULL OUTER JOIN (SELECT *, true AS {_IN_PROD} FROM {quote_ident(prod_view)}) p ON "
        # a float key is matched by its spelling: -0.0 = 0.0 to DuckDB, not to PostgreSQL
        + " AND ".join(
            f"CAST(d.{d_at[k]} AS VARCHAR) = CAST(p.{p_at[k]} AS VARCHAR)"
            if "float" in shape[k][0] or "double" in shape[k][0]  # lists of floats too
            else f"d.{d_at[k]} = p.{p_at[k]}"
            for k in key
        )
    )
    differs = {c: _differs(f"d.{d_at[c]}", f"p.{p_at[c]}", shape[c][0]) for c in common}
    kinds = {
        "inserted": f"p.{_IN_PROD} IS NULL",
        "deleted": f"d.{_IN_DEV} IS NULL",
        "updated": f"d.{_IN_DEV} AND p.{_IN_PROD} AND ("
        + (" OR ".join(differs.values()) or "false")
        + ")",
    }
    return join, kinds, differs


# A float type anywhere in an Arrow type's spelling: `double`, `list<element: float>`, ...
_FLOAT_IN_TYPE = re.compile(r"(?:^|[<:,]\s*)(?:halffloat|float|double)\s*(?:[>,]|$)")


def _differs(a: str, b: str, arrow_type: str) -> str:
    """NULL-aware "a differs from b". Floats, alone or inside lists, are compared by their
    spelling: -0.0 = 0.0 and NaN = NaN to DuckDB ([-0.0] = [0.0] too), but PostgreSQL keeps
    them apart, and an apply that skipped such a row would leave prod different from dev.
    (DuckDB spells a float the shortest way that reads back to it, and a list of them as
    `[-0.0, nan, NULL]`: equal spellings are equal values, bit for bit.)"""
    if _FLOAT_IN_TYPE.search(arrow_type):
        return f"CAST({a} AS VARCHAR) IS DISTINCT FROM CAST({b} AS VARCHAR)"
    return f"{a} IS DISTINCT FROM {b}"


def changed_rows(
    sources: TableSources, key: str, dev: fmt.TableEntry, prod: fmt.TableEntry
) -> dict[str, list[tuple[str, int]]] | None:
    """Where each inserted, updated (dev's files) and deleted (prod's files) row of a table is
    stored, and prod's version of each updated row ("before"): kind -> [(file, row number)],
    in file order; None when the rows cannot be matched
    by key (the table is then replaced whole). Needs TableSources(positions=True)."""
    assert sources.positions
    dev_shape, prod_shape = _shape(dev), _shape(prod)
    if _not_comparable(dev, prod, dev_shape, prod_shape) or set(dev_shape) != set(prod_shape):
        return None
    dev_view, prod_view = sources.view("dev", key), sources.view("prod", key)
    if dev_view is None or prod_view is None:
        return None
    d_at = {c: quote_ident(_position(i)) for i, c in enumerate(dev_shape)}
    p_at = {c: quote_ident(_position(i)) for i, c in enumerate(prod_shape)}
    common = [c for c in dev_shape if c not in dev.primary_key]
    join, kinds, _ = _join(
        dev_view, prod_view, list(dev.primary_key), common, d_at, p_at, dev_shape
    )
    out: dict[str, list[tuple[str, int]]] = {}
    # "before": prod's version of each updated row, which the apply will overwrite
    for kind, cond in [*kinds.items(), ("before", kinds["updated"])]:
        side = "p" if kind in ("deleted", "before") else "d"
        rows = sources.con.execute(
            f"SELECT {side}.{quote_ident(FILE)}, {side}.{quote_ident(ROW)} {join} WHERE {cond} "
            "ORDER BY 1, 2"
        ).fetchall()
        out[kind] = [(str(f), int(r)) for f, r in rows]
    return out


def _not_comparable(
    dev: fmt.TableEntry,
    prod: fmt.TableEntry,
    dev_shape: dict[str, tuple[str, str]],
    prod_shape: dict[str, tuple[str, str]],
) -> str:
    """Why the rows cannot be matched one by one ('' when they can)."""
    if not dev.primary_key:
        return "no primary key to match rows on: prod's rows are replaced by dev's"
    missing = [k for k in dev.primary_key if k not in dev_shape or k not in prod_shape]
    if missing:
        return f"key column {missing[0]!r} is not in both snapshots"
    if prod.primary_key and prod.primary_key != dev.primary_key:
        return "the primary key differs between dev and prod"
    for name, how in dev_shape.items():
        if name in prod_shape and prod_shape[name] != how:
            return (
                f"column {name!r} is stored as {how[0]} in dev and {prod_shape[name][0]} in "
                "prod (a value did not fit the native type): not compared row by row"
            )
    return ""


def _keys(
    con: Any, source: str, key: list[str], cols: list[str], cond: str
) -> list[dict[str, Any]]:
    """A few keys of the rows matching `cond` (key columns `cols` in SQL), smallest first."""
    rows = con.execute(
        f"SELECT {', '.join(cols)} {source} WHERE {cond} ORDER BY {', '.join(cols)} "
        f"LIMIT {SAMPLE_KEYS}"
    ).fetchall()
    return [{k: jsonable(v) for k, v in zip(key, r, strict=True)} for r in rows]
