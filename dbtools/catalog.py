"""Introspection of a live database: tables, columns, keys, FKs, sequences, enums.

Also the two derived facts the rest of dbtools leans on: the foreign-key load order (parents
before children, cycles named) and the schema fingerprint, a hash over a canonical,
object-by-object description of the schema whose diff names what differs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dbtools import db
from dbtools.db import Conn, qualified

# Bookkeeping tables of yoyo and of dbtools itself: never data, never part of the fingerprint.
BOOKKEEPING_TABLES = frozenset(
    {"_yoyo_migration", "_yoyo_log", "_yoyo_version", "yoyo_lock", "_dbtools_migration_checksum"}
)


@dataclass(frozen=True)
class Column:
    name: str
    position: int
    type_name: str  # format_type(): what DDL says, e.g. numeric(10,2), "UserRole"[]
    type_oid: int
    typmod: int  # effective typmod (a domain's own typmod when the column has none)
    base_name: str  # typname after resolving domains, e.g. int4, numeric, _text, UserRole
    base_oid: int
    typtype: str  # of the base type: b base, e enum, c composite, r range, m multirange
    category: str  # pg_type.typcategory of the base type (A array, E enum, N numeric, ...)
    elem_name: str | None  # arrays: the element's base typname
    elem_typtype: str | None
    enum_labels: tuple[str, ...] | None  # enums and arrays of enums
    not_null: bool
    default: str | None
    generated: bool  # GENERATED ALWAYS AS (...) STORED: never copied
    identity: str  # '' | 'a' (ALWAYS) | 'd' (BY DEFAULT)
    ndims: int
    is_domain: bool

    @property
    def is_array(self) -> bool:
        return self.category == "A"


@dataclass(frozen=True)
class Table:
    schema: str
    name: str
    oid: int
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def qualified(self) -> str:
        return qualified(self.schema, self.name)

    @property
    def copy_columns(self) -> tuple[Column, ...]:
        """Columns that take part in COPY: generated columns are computed by the server."""
        return tuple(c for c in self.columns if not c.generated)


@dataclass(frozen=True)
class ForeignKey:
    name: str
    table: str  # key "schema.name"
    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]
    on_delete: str
    on_update: str
    deferrable: bool
    definition: str


@dataclass(frozen=True)
class SequenceInfo:
    schema: str
    name: str
    owned_by: str | None  # "schema.table.column"
    last_value: int | None = None
    is_called: bool = False

    @property
    def key(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def qualified(self) -> str:
        return qualified(self.schema, self.name)


@dataclass
class Catalog:
    tables: list[Table]
    foreign_keys: list[ForeignKey]
    sequences: list[SequenceInfo]
    excluded: list[str] = field(default_factory=list)

    def table(self, key: str) -> Table:
        for t in self.tables:
            if t.key == key:
                return t
        raise KeyError(key)


def normalize_table_names(names: Iterable[str], default_schema: str) -> set[str]:
    """Configured table names, bare or schema-qualified, as "schema.table" keys."""
    return {n if "." in n else f"{default_schema}.{n}" for n in names}


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


def read_tables(
    conn: Conn, schemas: Sequence[str], exclude: Iterable[str] = ()
) -> tuple[list[Table], list[str]]:
    """User tables of the schemas (partitions folded into their parent), and what was excluded."""
    excluded_keys = normalize_table_names(exclude, schemas[0] if schemas else "public")
    types = _types(conn)
    labels = _enum_labels(conn)
    with conn.cursor() as cur:
        cur.execute(
            """
            SELECT c.oid, n.nspname, c.relname, a.attnum, a.attname, a.atttypid, a.atttypmod,
                   format_type(a.atttypid, a.atttypmod), a.attnotnull,
                   pg_get_expr(d.adbin, d.adrelid), a.attgenerated <> '', a.attidentity,
                   a.attndims
            FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
            LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
            WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname = ANY(%s)
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
    by_table: dict[tuple[int, str, str], list[Column]] = {}
    for oid, nsp, rel, num, name, typid, typmod, fmt, notnull, default, gen, ident, nd in rows:
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
        by_table.setdefault((oid, nsp, rel), []).append(col)
    tables: list[Table] = []
    skipped: list[str] = []
    for (oid, nsp, rel), cols in by_table.items():
        key = f"{nsp}.{rel}"
        if rel in BOOKKEEPING_TABLES:
            continue
        if key in excluded_keys:
            skipped.append(key)
            continue
        tables.append(Table(nsp, rel, oid, tuple(cols), pks.get(oid, ())))
    tables.sort(key=lambda t: t.key)
    return tables, sorted(skipped)


def read_foreign_keys(conn: Conn, schemas: Sequence[str]) -> list[ForeignKey]:
    actions = {
        "a": "NO ACTION",
        "r": "RESTRICT",
        "c": "CASCADE",
        "n": "SET NULL",
        "d": "SET DEFAULT",
    }
    with conn.cursor() as cur:
        cur.execute(
            """
            SELECT c.conname, sn.nspname || '.' || s.relname, tn.nspname || '.' || t.relname,
                   ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, o)
                         JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n
                         ORDER BY k.o),
                   ARRAY(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY k(n, o)
                         JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n
                         ORDER BY k.o),
                   c.confdeltype, c.confupdtype, c.condeferrable, pg_get_constraintdef(c.oid)
            FROM pg_constraint c
            JOIN pg_class s ON s.oid = c.conrelid JOIN pg_namespace sn ON sn.oid = s.relnamespace
            JOIN pg_class t ON t.oid = c.confrelid JOIN pg_namespace tn ON tn.oid = t.relnamespace
            WHERE c.contype = 'f' AND sn.nspname = ANY(%s) AND c.conparentid = 0
            ORDER BY 2, 1
            """,
            (list(schemas),),
        )
        return [
            ForeignKey(
                name=r[0],
                table=r[1],
                ref_table=r[2],
                columns=tuple(r[3]),
                ref_columns=tuple(r[4]),
                on_delete=actions[r[5]],
                on_update=actions[r[6]],
                deferrable=r[7],
                definition=r[8],
            )
            for r in cur.fetchall()
        ]


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


def load_order(
    tables: Sequence[Table], fks: Sequence[ForeignKey]
) -> tuple[list[str], list[ForeignKey]]:
    """Table keys with every referenced table before its referrers, and the FKs in cycles.

    Self-references need nothing special: the RI triggers of one COPY statement fire at its
    end, when every row of the table is present. FKs between tables of a cycle cannot be
    satisfied by any order; they are returned so the loader can defer them.
    """
    keys = [t.key for t in tables]
    deps: dict[str, set[str]] = {k: set() for k in keys}
    for fk in fks:
        if fk.table in deps and fk.ref_table in deps and fk.table != fk.ref_table:
            deps[fk.table].add(fk.ref_table)
    components = _strongly_connected(keys, deps)
    comp_of = {k: i for i, comp in enumerate(components) for k in comp}
    cyclic = [
        fk
        for fk in fks
        if fk.table != fk.ref_table
        and fk.table in comp_of
        and fk.ref_table in comp_of
        and comp_of[fk.table] == comp_of[fk.ref_table]
    ]
    # Tarjan yields components in reverse topological order of the condensation: dependencies
    # (parents) first, which is the load order we need.
    order = [k for comp in components for k in sorted(comp)]
    return order, cyclic


def _strongly_connected(nodes: Sequence[str], deps: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result: list[list[str]] = []
    counter = 0

    for root in sorted(nodes):
        if root in index:
            continue
        # Iterative Tarjan: real schemas can be deep enough to hit Python's recursion limit.
        work: list[tuple[str, list[str]]] = [(root, sorted(deps[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, todo = work[-1]
            if todo:
                nxt = todo.pop(0)
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(deps[nxt])))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    comp.append(member)
                    if member == node:
                        break
                result.append(comp)
    return result


# --- schema fingerprint --------------------------------------------------------------------

_SCHEMA_OBJECTS_SQL = {
    "column": """
        SELECT n.nspname || '.' || c.relname || '.' || a.attname,
               format_type(a.atttypid, a.atttypmod)
               || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
               || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '')
               || CASE WHEN a.attidentity <> '' THEN ' IDENTITY ' || a.attidentity::text ELSE '' END
               || CASE WHEN a.attgenerated <> '' THEN ' GENERATED' ELSE '' END
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
        WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY(%(s)s)
          AND NOT (c.relname = ANY(%(skip)s))""",
    "table": """
        SELECT n.nspname || '.' || c.relname,
               CASE c.relkind WHEN 'p' THEN 'partitioned table' ELSE 'table' END
               || CASE WHEN c.relrowsecurity THEN ' with row security' ELSE '' END
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY(%(s)s)
          AND NOT (c.relname = ANY(%(skip)s))""",
    "constraint": """
        SELECT n.nspname || '.' || c.relname || '.' || k.conname, pg_get_constraintdef(k.oid)
        FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = ANY(%(s)s) AND NOT (c.relname = ANY(%(skip)s))""",
    "index": """
        SELECT n.nspname || '.' || i.relname, pg_get_indexdef(i.oid)
        FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
        JOIN pg_class c ON c.oid = x.indrelid JOIN pg_namespace n ON n.oid = i.relnamespace
        WHERE n.nspname = ANY(%(s)s) AND NOT (c.relname = ANY(%(skip)s))""",
    "enum": """
        SELECT n.nspname || '.' || t.typname, string_agg(e.enumlabel, ', ' ORDER BY e.enumsortorder)
        FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        JOIN pg_enum e ON e.enumtypid = t.oid
        WHERE n.nspname = ANY(%(s)s) GROUP BY 1""",
    "domain": """
        SELECT n.nspname || '.' || t.typname,
               format_type(t.typbasetype, t.typtypmod)
               || CASE WHEN t.typnotnull THEN ' NOT NULL' ELSE '' END
               || coalesce(' DEFAULT ' || t.typdefault, '')
               || coalesce((SELECT ' ' || string_agg(pg_get_constraintdef(k.oid), ' '
                                                     ORDER BY k.conname)
                            FROM pg_constraint k WHERE k.contypid = t.oid), '')
        FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE t.typtype = 'd' AND n.nspname = ANY(%(s)s)""",
    "sequence": """
        SELECT s.schemaname || '.' || s.sequencename,
               s.data_type::text || ' start ' || s.start_value || ' min ' || s.min_value
               || ' max ' || s.max_value || ' increment ' || s.increment_by
               || CASE WHEN s.cycle THEN ' cycle' ELSE '' END
        FROM pg_sequences s WHERE s.schemaname = ANY(%(s)s)""",
    "view": """
        SELECT n.nspname || '.' || c.relname,
               CASE c.relkind WHEN 'm' THEN 'materialized ' ELSE '' END || pg_get_viewdef(c.oid)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('v', 'm') AND n.nspname = ANY(%(s)s)""",
    "trigger": """
        SELECT n.nspname || '.' || c.relname || '.' || tg.tgname, pg_get_triggerdef(tg.oid)
        FROM pg_trigger tg JOIN pg_class c ON c.oid = tg.tgrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE NOT tg.tgisinternal AND n.nspname = ANY(%(s)s)
          AND NOT (c.relname = ANY(%(skip)s))""",
    "function": """
        SELECT n.nspname || '.' || p.proname
               || '(' || pg_get_function_identity_arguments(p.oid) || ')',
               md5(pg_get_functiondef(p.oid))
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        LEFT JOIN pg_depend d ON d.objid = p.oid AND d.deptype = 'e'
        WHERE n.nspname = ANY(%(s)s) AND p.prokind IN ('f', 'p') AND d.objid IS NULL""",
}


def schema_objects(conn: Conn, schemas: Sequence[str]) -> dict[str, str]:
    """Every schema object as "kind name" -> canonical definition (yoyo/dbtools tables left out)."""
    out: dict[str, str] = {}
    params = {"s": list(schemas), "skip": sorted(BOOKKEEPING_TABLES)}
    with db.read_only_use(conn), conn.cursor() as cur:
        for kind, sql in _SCHEMA_OBJECTS_SQL.items():
            cur.execute(sql, params)
            for name, definition in cur.fetchall():
                if kind == "sequence" and any(
                    name.endswith(f".{b}_id_seq") for b in BOOKKEEPING_TABLES
                ):
                    continue
                out[f"{kind} {name}"] = definition
    return dict(sorted(out.items()))


def fingerprint_of(objects: dict[str, str]) -> str:
    canonical = json.dumps(objects, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def fingerprint(conn: Conn, schemas: Sequence[str]) -> str:
    return fingerprint_of(schema_objects(conn, schemas))


@dataclass(frozen=True)
class SchemaDiff:
    only_left: list[str]
    only_right: list[str]
    changed: list[tuple[str, str, str]]  # (object, left definition, right definition)

    @property
    def empty(self) -> bool:
        return not (self.only_left or self.only_right or self.changed)

    def lines(self, left: str = "dev", right: str = "prod") -> list[str]:
        out = [f"only in {left}: {o}" for o in self.only_left]
        out += [f"only in {right}: {o}" for o in self.only_right]
        out += [f"differs: {o}: {left} {a!r} vs {right} {b!r}" for o, a, b in self.changed]
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "only_left": self.only_left,
            "only_right": self.only_right,
            "changed": [{"object": o, "left": a, "right": b} for o, a, b in self.changed],
        }


def diff_objects(left: dict[str, str], right: dict[str, str]) -> SchemaDiff:
    return SchemaDiff(
        only_left=sorted(set(left) - set(right)),
        only_right=sorted(set(right) - set(left)),
        changed=[
            (k, left[k], right[k]) for k in sorted(set(left) & set(right)) if left[k] != right[k]
        ],
    )


def row_counts(conn: Conn, tables: Iterable[Table]) -> dict[str, int]:
    out = {}
    with conn.cursor() as cur:
        for t in tables:
            cur.execute(f"SELECT count(*) FROM {t.qualified}")
            row = cur.fetchone()
            out[t.key] = int(row[0]) if row else 0
    return out
