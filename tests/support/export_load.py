"""One table out of a database into Parquet and back in, through dbtools' own export and
load, with the loaded content's hash checked against the export's."""

from __future__ import annotations

from pathlib import Path

import psycopg2.extensions

from dbtools import catalog, db
from dbtools.snapshot.export import TableExport, export_table
from dbtools.snapshot.hashing import content_hash
from dbtools.snapshot.load import load_table


def connect(url: str) -> psycopg2.extensions.connection:
    return db.connect(db.Target(env="dev", url=url, expected_name=""), purpose="copy")


def table_of(conn: psycopg2.extensions.connection, key: str) -> catalog.Table:
    return catalog.read_catalog(conn, ["public"]).table(key)


def export(url: str, key: str, dest: Path, **kwargs: object) -> TableExport:
    conn = connect(url)
    try:
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        return export_table(conn, table_of(conn, key), dest, **kwargs)  # type: ignore[arg-type]
    finally:
        conn.close()


def load(url: str, key: str, dest: Path, exp: TableExport, *, freeze: bool = False) -> int:
    conn = connect(url)
    try:
        table = table_of(conn, key)
        if freeze:
            with conn.cursor() as cur:
                cur.execute(f"TRUNCATE {table.qualified}")
        rows = load_table(conn, table, dest, exp.files, exp.columns, freeze=freeze)
        assert content_hash(conn, table, [c["name"] for c in exp.columns]) == exp.content_hash
        conn.commit()
        return rows
    finally:
        conn.close()
