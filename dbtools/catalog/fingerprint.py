"""The schema fingerprint: every object of the configured schemas as `kind name -> definition`,
its sha256, and the object-level diff of two of them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dbtools import db
from dbtools.catalog.model import BOOKKEEPING_TABLES
from dbtools.db import Conn

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
