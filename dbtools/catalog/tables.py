"""Reading the synced tables, their columns, keys, sequences and row counts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from dbtools.catalog.model import (
    BOOKKEEPING_TABLES,
    Catalog,
    Column,
    ForeignKey,
    SequenceInfo,
    Table,
    normalize_table_names,
)
from dbtools.db import Conn


def _types(conn: Conn) -> dict[int, tuple[str, str, str, int, int, int, str]]:
    """oid -> (typname, typtype, typcategory, typbasetype, typelem, typtypmod, nspname)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT t.oid, t.typname, t.typtype, t.typcategory, t.typbasetype, t.typelem, "
            "t.typtypmod, n.nspname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace"
        )
        return {r[0]: tuple(r[1:]) for r in cur.fetchall()}


def _enum_labels(conn: Conn) -> dict[int, tuple[str, ...]]:
    with conn.cursor() as cur:
        cur.execute("SELECT enumtypid, enumlabel FROM pg_enum ORDER BY enumtypid, enumsortorder")
        out: dict[int, list[str]] = {}
        for oid, label in cur.fetchall():
            out.setdefault(oid, []).append(label)
    return {k: tuple(v) for k, v in out.items()}


def _resolve_domain(types: dict[int, Any], oid: int) -> tuple[int, int]:
    """Follow domains down to their base type; return (base oid, innermost domain typmod)."""
    typmod = -1
    seen = 0
    while types[oid][1] == "d" and seen < 32:
        if types[oid][5] != -1 and typmod == -1:
            typmod = types[oid][5]
        oid = types[oid][3]
        seen += 1
    return oid, typmod


# The tables of the schemas that dbtools loads: partition roots and plain tables (partitions
# are folded into their root). read_tables and synced_table_keys both select with it.
_TABLES_WHERE = "c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname = ANY(%s)"


def _synced(schema: str, name: str, excluded_keys: set[str]) -> str:
    """Whether a table is "synced", "excluded" (in excluded_tables) or "bookkeeping"."""
    if name in BOOKKEEPING_TABLES:
        return "bookkeeping"
    return "excluded" if f"{schema}.{name}" in excluded_keys else "synced"


def synced_table_keys(
    conn: Conn, schemas: Sequence[str], exclude: Iterable[str] = ()
) -> tuple[list[str], list[str]]:
    """The keys of the tables read_tables lists and of those it skips as excluded, read from
    pg_class alone: reading column defaults (read_tables) waits for a lock on each table, so
    a check that must not wait behind a held lock asks this instead."""
    excluded_keys = normalize_table_names(exclude, schemas[0] if schemas else "public")
    with conn.cursor() as cur:
        cur.execute(
            "SELECT n.nspname, c.relname FROM pg_class c "
            f"JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {_TABLES_WHERE}",
            (list(schemas),),
        )
        rows = cur.fetchall()
    kinds = [(f"{nsp}.{rel}", _synced(nsp, rel, excluded_keys)) for nsp, rel in rows]
    return (
        sorted(k for k, kind in kinds if kind == "synced"),
        sorted(k for k, kind in kinds if kind == "excluded"),
    )


def read_tables(
    conn: Conn, schemas: Sequence[str], exclude: Iterable[str] = ()
) -> tuple[list[Table], list[str]]:
    """User tables of the schemas (partitions folded into their parent), and what was excluded."""
    excluded_keys = normalize_table_names(exclude, schemas[0] if schemas else "public")
    types = _types(conn)
    labels = _enum_labels(conn)
    with conn.cursor() as cur:
        cur.execute(
            f"""
            SELECT c.oid, n.nspname, c.relname, c.relkind = 'p', a.attnum, a.attname,
                   a.atttypid, a.atttypmod, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                   pg_get_expr(d.adbin, d.adrelid), a.attgenerated <> '', a.attidentity,
                   a.attndims
            FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            -- LEFT: a table without columns is a table too (its row count is its content).
            LEFT JOIN pg_attribute a
                   ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
            LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
            WHERE {_TABLES_WHERE}
            ORDER BY n.nspname, c.relname, a.attnum
            """,
            (list(schemas),),
        )
        rows = cur.fetchall()
        cur.execute(
            """
            SELECT c.conrelid, array_agg(a.attname ORDER BY k.ord)
            FROM pg_constraint c
            CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)
            JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
            WHERE c.contype = 'p'
            GROUP BY c.conrelid
            """
        )
        pks = {r[0]: tuple(r[1]) for r in cur.fetchall()}
    by_table: dict[tuple[int, str, str, bool], list[Column]] = {}
    for row in rows:
        oid, nsp, rel, part = row[:4]
        num, name, typid, typmod, fmt, notnull, default, gen, ident, nd = row[4:]
        cols = by_table.setdefault((oid, nsp, rel, part), [])
        if num is None:
            continue  # zero-column table
        base_oid, dom_typmod = _resolve_domain(types, typid)
        base = types[base_oid]
        elem_name = elem_typtype = None
        enum = None
        if base[2] == "A" and base[4]:
            elem_oid, _ = _resolve_domain(types, base[4])
            elem_name, elem_typtype = types[elem_oid][0], types[elem_oid][1]
            enum = labels.get(elem_oid)
        elif base[1] == "e":
            enum = labels.get(base_oid)
        col = Column(
            name=name,
            position=num,
            type_name=fmt,
            type_oid=typid,
            typmod=typmod if typmod != -1 else dom_typmod,
            base_name=base[0],
            base_oid=base_oid,
            typtype=base[1],
            category=base[2],
            elem_name=elem_name,
            elem_typtype=elem_typtype,
            enum_labels=enum,
            not_null=notnull,
            default=default,
            generated=gen,
            identity=ident,
            ndims=nd,
            is_domain=types[typid][1] == "d",
        )
        cols.append(col)
    tables: list[Table] = []
    skipped: list[str] = []
    for (oid, nsp, rel, part), cols in by_table.items():
        kind = _synced(nsp, rel, excluded_keys)
        if kind == "excluded":
            skipped.append(f"{nsp}.{rel}")
        if kind != "synced":
            continue
        tables.append(Table(nsp, rel, oid, tuple(cols), pks.get(oid, ()), part))
    tables.sort(key=lambda t: t.key)
    return tables, sorted(skipped)


_FK_ACTIONS = {
    "a": "NO ACTION",
    "r": "RESTRICT",
    "c": "CASCADE",
    "n": "SET NULL",
    "d": "SET DEFAULT",
}

# Foreign keys with both ends mapped to their partition roots (a partition is loaded through
# its root, so a key declared on a partition, or pointing at one, orders the roots). Keys
# cloned from a partitioned parent (conparentid <> 0) are the parent's key again.
_FK_SQL = """
    SELECT c.conname, rn.nspname || '.' || r.relname, tn.nspname || '.' || t.relname,
           ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, o)
                 JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n
                 ORDER BY k.o),
           ARRAY(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY k(n, o)
                 JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n
                 ORDER BY k.o),
           c.confdeltype, c.confupdtype, c.condeferrable, pg_get_constraintdef(c.oid),
           sn.nspname || '.' || s.relname
    FROM pg_constraint c
    JOIN pg_class s ON s.oid = c.conrelid JOIN pg_namespace sn ON sn.oid = s.relnamespace
    JOIN pg_class r ON r.oid = coalesce(pg_partition_root(c.conrelid), c.conrelid)
    JOIN pg_namespace rn ON rn.oid = r.relnamespace
    JOIN pg_class t ON t.oid = coalesce(pg_partition_root(c.confrelid), c.confrelid)
    JOIN pg_namespace tn ON tn.oid = t.relnamespace
    WHERE c.contype = 'f' AND c.conparentid = 0 AND {where}
    ORDER BY 2, 1, 10
"""


def _foreign_keys(conn: Conn, where: str, params: Any) -> list[ForeignKey]:
    with conn.cursor() as cur:
        cur.execute(_FK_SQL.format(where=where), params)
        return [
            ForeignKey(
                name=r[0],
                table=r[1],
                ref_table=r[2],
                columns=tuple(r[3]),
                ref_columns=tuple(r[4]),
                on_delete=_FK_ACTIONS[r[5]],
                on_update=_FK_ACTIONS[r[6]],
                deferrable=r[7],
                definition=r[8],
                owner=r[9],
            )
            for r in cur.fetchall()
        ]


def read_foreign_keys(conn: Conn, schemas: Sequence[str]) -> list[ForeignKey]:
    """Foreign keys whose referencing table (its partition root) lies in the schemas."""
    return _foreign_keys(conn, "rn.nspname = ANY(%s)", (list(schemas),))


def read_sequences(
    conn: Conn, schemas: Sequence[str], *, values: bool = True
) -> list[SequenceInfo]:
    """Sequences of the schemas with the column owning them and, optionally, their state."""
    with conn.cursor() as cur:
        cur.execute(
            """
            SELECT n.nspname, s.relname,
                   (SELECT tn.nspname || '.' || t.relname || '.' || a.attname
                    FROM pg_depend d JOIN pg_class t ON t.oid = d.refobjid
                    JOIN pg_namespace tn ON tn.oid = t.relnamespace
                    JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
                    WHERE d.objid = s.oid AND d.classid = 'pg_class'::regclass
                      AND d.deptype IN ('a', 'i') LIMIT 1)
            FROM pg_class s JOIN pg_namespace n ON n.oid = s.relnamespace
            WHERE s.relkind = 'S' AND n.nspname = ANY(%s)
            ORDER BY 1, 2
            """,
            (list(schemas),),
        )
        seqs = [SequenceInfo(r[0], r[1], r[2]) for r in cur.fetchall()]
        if not values:
            return seqs
        out = []
        for s in seqs:
            cur.execute(f"SELECT last_value, is_called FROM {s.qualified}")
            row = cur.fetchone()
            assert row is not None
            out.append(SequenceInfo(s.schema, s.name, s.owned_by, int(row[0]), bool(row[1])))
        return out


def read_catalog(
    conn: Conn, schemas: Sequence[str], exclude: Iterable[str] = (), *, sequence_values: bool = True
) -> Catalog:
    tables, excluded = read_tables(conn, schemas, exclude)
    keys = {t.key for t in tables}
    fks = [f for f in read_foreign_keys(conn, schemas) if f.table in keys]
    return Catalog(tables, fks, read_sequences(conn, schemas, values=sequence_values), excluded)


def row_counts(conn: Conn, tables: Iterable[Table]) -> dict[str, int]:
    """Rows of each table itself (not of its inheritance children; a partitioned table's
    partitions are its own rows)."""
    out = {}
    with conn.cursor() as cur:
        for t in tables:
            cur.execute(f"SELECT count(*) FROM {t.only}")
            row = cur.fetchone()
            out[t.key] = int(row[0]) if row else 0
    return out
