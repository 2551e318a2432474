"""One table's export -> load round trip between two databases (conftest's fixture `pair`),
for the type suites (test_types_roundtrip, test_types_adversarial)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import psycopg2.extensions
import pyarrow.parquet as pq

from dbtools import catalog, db
from dbtools.snapshot.export import export_table
from dbtools.snapshot.hashing import content_hash
from dbtools.snapshot.load import load_table

from support.db import create_database, drop_database


def connect(url: str) -> psycopg2.extensions.connection:
    conn = psycopg2.connect(url)
    with conn.cursor() as cur:
        cur.execute(db.SESSION_SQL)
    conn.commit()
    return conn


def two_databases() -> Iterator[
    tuple[psycopg2.extensions.connection, psycopg2.extensions.connection]
]:
    """A source and a target database (conftest's module-scoped fixture `pair`), dropped at
    the end."""
    tag = uuid.uuid4().hex[:8]
    names = [f"dbt_{tag}_src", f"dbt_{tag}_dst"]
    conns = [connect(create_database(n)) for n in names]
    try:
        yield conns[0], conns[1]
    finally:
        for c in conns:
            c.close()
        for n in names:
            drop_database(n)


def table_of(conn: psycopg2.extensions.connection, name: str) -> catalog.Table:
    tables, _ = catalog.read_tables(conn, ["public"])
    return next(t for t in tables if t.name == name)


def rows_text(conn: psycopg2.extensions.connection, name: str) -> list[str]:
    with conn.cursor() as cur:
        cur.execute(f"SELECT t::text FROM {db.quote_ident(name)} t ORDER BY 1")
        out = [r[0] for r in cur.fetchall()]
    conn.rollback()
    return out


def roundtrip(
    src: psycopg2.extensions.connection,
    dst: psycopg2.extensions.connection,
    name: str,
    dest: Path,
) -> tuple[list[str], list[str], dict[str, dict[str, object]]]:
    """Export `name` from src, load it into dst's empty copy; return both row texts + plans."""
    src.set_session(isolation_level="REPEATABLE READ")
    try:
        exp = export_table(src, table_of(src, name), dest)
    finally:
        src.rollback()
        src.set_session(isolation_level="READ COMMITTED")
    # The manifest describes the files: every file stores every column one way.
    for rel in exp.files:
        schema = pq.read_schema(dest / rel)
        for c in exp.columns:
            assert str(schema.field(c["name"]).type) == c["arrow_type"], (rel, c)
    target = table_of(dst, name)
    loaded = load_table(dst, target, dest, exp.files, exp.columns)
    assert loaded == exp.rows
    assert content_hash(dst, target, [c["name"] for c in exp.columns]) == exp.content_hash
    dst.commit()
    return rows_text(src, name), rows_text(dst, name), {c["name"]: c for c in exp.columns}


def create_both(
    src: psycopg2.extensions.connection, dst: psycopg2.extensions.connection, ddl: str
) -> None:
    for conn in (src, dst):
        with conn.cursor() as cur:
            cur.execute(ddl)
        conn.commit()
