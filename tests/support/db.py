"""The test server and its databases: URLs, create/drop, execute, what a database holds.

The server is DBTOOLS_PG_URL (default postgresql://postgres@127.0.0.1:5432/postgres); `make
test` starts the machine's local server first if it is down (scripts/ensure_pg.py).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import psycopg2.extensions

SERVER_URL = os.environ.get("DBTOOLS_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def db_url(name: str, server_url: str = SERVER_URL) -> str:
    """The server URL pointed at another database."""
    parts = urlsplit(server_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))


def admin_execute(sql: str) -> None:
    conn = psycopg2.connect(SERVER_URL)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def create_database(name: str) -> str:
    admin_execute(f'CREATE DATABASE "{name}"')
    return db_url(name)


def drop_database(name: str) -> None:
    admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def execute(url: str, sql: str, params: object = None) -> list[tuple]:
    """Run SQL on a database in its own committed transaction; return rows if any."""
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def schema_objects(url: str, schemas: tuple[str, ...] = ("public",)) -> dict[str, str]:
    """The schema of a database as catalog sees it: "kind name" -> definition."""
    from dbtools import catalog

    conn = psycopg2.connect(url)
    try:
        return catalog.schema_objects(conn, list(schemas))
    finally:
        conn.close()


def fingerprint(url: str) -> str:
    from dbtools import catalog

    return catalog.fingerprint_of(schema_objects(url))


def applied_migrations(url: str) -> list[str]:
    from dbtools import migrations

    conn = psycopg2.connect(url)
    try:
        return migrations.applied_ids(conn)
    finally:
        conn.close()


def digests(url: str) -> dict[str, tuple[int, str]]:
    """Row count and md5 of the ordered row text of every table, partition and populated
    materialized view outside the system schemas; a table's own rows only (ONLY)."""
    rels = execute(
        url,
        "SELECT n.nspname, c.relname, c.relkind FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p', 'm') AND c.relispopulated "
        "AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') ORDER BY 1, 2",
    )
    out = {}
    for schema, name, kind in rels:
        ref = f'"{schema}"."{name}"'
        only = "" if kind in ("p", "m") else "ONLY "
        row = execute(
            url,
            f"SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) "
            f"FROM {only}{ref} t",
        )[0]
        out[f"{schema}.{name}"] = (int(row[0]), str(row[1]))
    return out


@contextlib.contextmanager
def granted(conn: psycopg2.extensions.connection) -> Iterator[None]:
    """A write permit for conn's database, for tests of the load's own mechanics; the
    pipelines run the same load under the guard's permit (dbtools.permit)."""
    from dbtools import db, permit

    with permit.granted(permit.Permit("prod", "a test of the load", db.identity(conn))):
        yield


def no_writer_running(timeout: float = 60.0) -> None:
    """Reuse proves a row older than the previous snapshot by its xid preceding the oldest
    transaction running anywhere on the server then (dbtools.xid): a writing transaction of
    another test run on the same server makes every newer row count as changed. Wait until
    none runs, so that what this test asserts does not depend on its neighbours."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        busy = execute(
            SERVER_URL,
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()",
        )[0][0]
        if not busy:
            return
        time.sleep(0.2)
