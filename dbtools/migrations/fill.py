"""`migrate test --data`: generated rows in every table, and what a migration did to them.

`fill` inserts a few rows into every empty table of the scratch database, parents before
children: each column gets a value of its type made from the row number (text, numbers,
booleans, dates and timestamps, uuid, json, bytea, enums, one-dimensional arrays of those),
a foreign key takes the referenced table's existing values, and a column with a default,
identity or generation expression is left to it. A table whose constraints refuse the rows
(a CHECK, a type it cannot make) is left empty and named: the test then checks less, and
says so.

`digest` reads, per table, the row count and, per column, an order-independent digest of
its values (a sum of hashes of their text forms), so that a table rewritten by a migration
(new physical order) still compares equal when its values are the same. `lost` compares two
digests: rows or column values that are gone, leaving out what the migration means to
change (the tables and columns it drops, and tables it writes with UPDATE / DELETE / INSERT /
TRUNCATE, read from its statements with pglast).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
from pglast import ast, parse_sql
from pglast.enums import AlterTableType, ObjectType
from pglast.parser import ParseError

from dbtools import catalog, db
from dbtools.db import Conn, quote_ident

ROWS = 20

# per base type, a value made from the row number g (an SQL expression)
_BY_TYPE = {
    "int2": "(g % 30000)::int2",
    "int4": "g::int4",
    "int8": "g::int8",
    "numeric": "(g / 4.0)",
    "float4": "(g / 4.0)::float4",
    "float8": "(g / 4.0)::float8",
    "bool": "(g % 2 = 0)",
    "text": "('v' || g)",
    "varchar": "('v' || g)",
    "bpchar": "('v' || g)",
    "citext": "('v' || g)",
    "name": "('v' || g)",
    "date": "(date '2024-01-01' + g)",
    "timestamp": "(timestamp '2024-01-01' + g * interval '1 hour')",
    "timestamptz": "(timestamptz '2024-01-01 00:00+00' + g * interval '1 hour')",
    "time": "(time '00:00' + g * interval '1 minute')",
    "interval": "(g * interval '1 minute')",
    "uuid": "md5(g::text)::uuid",
    "json": "json_build_object('g', g)",
    "jsonb": "jsonb_build_object('g', g)",
    "bytea": "decode(md5(g::text), 'hex')",
}


@dataclass
class Filled:
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows inserted
    skipped: dict[str, str] = field(default_factory=dict)  # table -> why it stays empty


def _value(col: catalog.Column, fk: catalog.ForeignKey | None) -> str | None:
    """An SQL expression for row g, None for "leave it to its default", "" for no value."""
    if col.generated or col.identity or col.default is not None:
        return None
    if fk is not None:
        ref = ".".join(quote_ident(p) for p in fk.ref_table.split(".", 1))
        rc = quote_ident(fk.ref_columns[fk.columns.index(col.name)])
        return (
            f"(SELECT {rc} FROM {ref} WHERE {rc} IS NOT NULL ORDER BY {rc} "
            f"OFFSET (g - 1) % GREATEST(1, (SELECT count(*) FROM {ref})) LIMIT 1)"
        )
    if col.category == "E":
        return f"(enum_range(NULL::{col.type_name}))[1 + g % {len(col.enum_labels or ('x',))}]"
    if col.category == "A" and col.ndims <= 1:
        elem = _BY_TYPE.get(col.elem_name or "")
        if elem is None and col.elem_typtype == "e":
            elem = f"(enum_range(NULL::{col.type_name.removesuffix('[]')}))[1]"
        return f"ARRAY[{elem}]::{col.type_name}" if elem else ""
    expr = _BY_TYPE.get(col.base_name)
    if expr is None:
        return ""
    if col.base_name in ("varchar", "bpchar") and col.typmod > 4:
        expr = f"left({expr}, {col.typmod - 4})"
    if col.base_name == "numeric" and col.typmod > 4:
        precision, scale = (col.typmod - 4) >> 16, (col.typmod - 4) & 0xFFFF
        expr = f"round(({expr}) % {10 ** max(precision - scale - 1, 0)}, {scale})"
    return f"({expr})::{col.type_name}"


def _insert(table: catalog.Table, fks: list[catalog.ForeignKey]) -> str:
    """The INSERT of ROWS generated rows, or a reason it cannot be made."""
    by_col = {c: fk for fk in fks if fk.table == table.key for c in fk.columns}
    names, values = [], []
    for col in table.columns:
        fk = by_col.get(col.name)
        if fk is not None and (len(fk.columns) > 1 or fk.ref_table == table.key):
            expr: str | None = ""  # a composite or self reference: NULL if it may be
        else:
            expr = _value(col, fk)
        if expr is None:
            continue
        if expr == "":
            if col.not_null:
                raise ValueError(f"no value for column {col.name} ({col.type_name})")
            continue
        names.append(quote_ident(col.name))
        values.append(expr)
    cols = f" ({', '.join(names)})" if names else ""
    select = ", ".join(values) if values else ""
    return f"INSERT INTO {table.qualified}{cols} SELECT {select} FROM generate_series(1, {ROWS}) g"


def fill(conn: Conn, schemas: list[str], only: set[str]) -> Filled:
    """Generated rows in the empty tables among `only` (module doc); conn in autocommit."""
    cat = catalog.read_catalog(conn, schemas, sequence_values=False)
    order, _ = catalog.load_order(cat.tables, cat.foreign_keys)
    by_key = {t.key: t for t in cat.tables}
    counts = catalog.row_counts(conn, cat.tables)
    out = Filled()
    for key in order:
        table = by_key[key]
        if key not in only or counts.get(key):
            continue
        try:
            sql = _insert(table, cat.foreign_keys)
        except ValueError as exc:
            out.skipped[key] = str(exc)
            continue
        try:
            with db.savepoint(conn, "dbtools_fill"), conn.cursor() as cur:
                cur.execute(sql)
                out.rows[key] = cur.rowcount
        except psycopg2.Error as exc:
            out.skipped[key] = db.describe_error(exc)
    return out


Digest = dict[str, tuple[int, dict[str, tuple[str, str]]]]  # table -> (rows, col -> (type, sum))


def digest(conn: Conn, schemas: list[str]) -> Digest:
    out: Digest = {}
    tables, _ = catalog.read_tables(conn, schemas)
    for table in tables:
        texts = [f"coalesce({quote_ident(c.name)}::text, '<null>')" for c in table.columns]
        sums = [f"coalesce(sum(hashtextextended({t}, 0)), 0)" for t in texts]
        row = db.execute(
            conn, f"SELECT count(*){''.join(', ' + s for s in sums)} FROM {table.only} t"
        )[0]
        cols = {c.name: (c.type_name, str(v)) for c, v in zip(table.columns, row[1:], strict=True)}
        out[table.key] = (int(row[0]), cols)
    return out


@dataclass
class Intent:
    """What a migration file means to change: nothing else may lose a row or a value."""

    tables: set[str] = field(default_factory=set)  # dropped or written: rows may change
    columns: set[tuple[str, str]] = field(default_factory=set)  # (table, column) dropped/altered


def _key(rel: ast.RangeVar) -> str:
    return f"{rel.schemaname or 'public'}.{rel.relname}"


def intent(path: Path) -> Intent:
    out = Intent()
    try:
        statements = parse_sql(path.read_text(encoding="utf-8"))
    except (ParseError, UnicodeDecodeError, OSError):
        return out
    for raw in statements:
        stmt = raw.stmt
        if isinstance(stmt, (ast.UpdateStmt, ast.DeleteStmt, ast.InsertStmt)) and stmt.relation:
            out.tables.add(_key(stmt.relation))
        elif isinstance(stmt, ast.TruncateStmt):
            out.tables.update(_key(r) for r in stmt.relations or ())
        elif isinstance(stmt, ast.DropStmt) and stmt.removeType == ObjectType.OBJECT_TABLE:
            for obj in stmt.objects or ():
                parts = [str(getattr(p, "sval", p)) for p in obj]
                out.tables.add(".".join(parts) if len(parts) > 1 else f"public.{parts[0]}")
        elif isinstance(stmt, ast.AlterTableStmt) and stmt.relation is not None:
            table = _key(stmt.relation)
            for cmd in stmt.cmds or ():
                if (
                    cmd.subtype
                    in (
                        AlterTableType.AT_DropColumn,
                        AlterTableType.AT_AlterColumnType,
                    )
                    and cmd.name
                ):
                    out.columns.add((table, str(cmd.name)))
    return out


def lost(before: Digest, after: Digest, meant: Intent) -> list[str]:
    """Rows or values in `before` that `after` no longer has, outside what is meant."""
    out = []
    for key, (rows, cols) in before.items():
        if key not in after or key in meant.tables:
            continue
        now_rows, now_cols = after[key]
        if now_rows != rows:
            out.append(f"{key}: {rows} rows before, {now_rows} after")
            continue
        for name, (kind, value) in cols.items():
            if (key, name) in meant.columns or name not in now_cols:
                continue
            if now_cols[name] != (kind, value) and now_cols[name][0] == kind:
                out.append(f"{key}.{name}: values changed")
    return out
