"""Rows done, read from the server: `pg_stat_progress_copy` (PostgreSQL 14+) reports every
running COPY's rows and bytes by backend pid, so the COPY loops need no counting of their own.

The reporter's ticker reads it on a connection of its own to the copying connection's
database (the same libpq parameters, the password included: it is never shown), opened when
the first table there starts and closed when none has run there for a few seconds, or when the
command ends. Each query is bounded (statement_timeout) and cancelled by a signal; any error
marks the database "broken" and progress there goes on showing times only.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from dbtools import interrupt

APPLICATION_NAME = "dbtools-progress"
CONNECT_TIMEOUT = "3"
STATEMENT_TIMEOUT = "2s"

_COPY_SQL = (
    "SELECT pid, tuples_processed, bytes_processed FROM pg_stat_progress_copy WHERE pid = ANY(%s)"
)
_ESTIMATE_SQL = (
    "SELECT c.reltuples::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = %s AND c.relname = %s"
)
_UNDEFINED_TABLE = "42P01"


@dataclass(eq=False)
class Server:
    """One database progress is read from."""

    params: dict[str, str] = field(repr=False)  # libpq keywords, password included
    conn: Any = None
    broken: bool = False  # could not connect or query: times only from here on
    copy_view: bool = True  # False before PostgreSQL 14
    idle_since: float | None = None

    def close(self) -> None:
        conn, self.conn, self.idle_since = self.conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


def identify(conn: Any) -> tuple[int, dict[str, str]]:
    """The copying connection's backend pid, and how to reach its database ourselves."""
    info = conn.info
    params = {k: str(v) for k, v in conn.get_dsn_parameters().items() if v not in (None, "")}
    params.pop("options", None)  # the copying session's own settings are not the poller's
    if info.password:
        params["password"] = info.password
    params["application_name"] = APPLICATION_NAME
    params["connect_timeout"] = CONNECT_TIMEOUT
    return int(info.backend_pid), params


def read(
    server: Server, pids: list[int], estimates: list[tuple[str, str]]
) -> tuple[dict[int, tuple[int, int]], dict[tuple[str, str], int | None]]:
    """(pid -> (rows, bytes) of its running COPY, (schema, name) -> pg_class.reltuples when
    positive). Raises on any error; the caller marks the server broken."""
    if server.conn is None:
        import psycopg2
        import psycopg2.extensions

        server.conn = psycopg2.connect(psycopg2.extensions.make_dsn(**server.params))
        server.conn.autocommit = True
        with server.conn.cursor() as cur:
            cur.execute(f"SET statement_timeout = '{STATEMENT_TIMEOUT}'")
    copies: dict[int, tuple[int, int]] = {}
    totals: dict[tuple[str, str], int | None] = {}
    with interrupt.cancel_on_signal(server.conn), server.conn.cursor() as cur:
        for schema_name in estimates:
            cur.execute(_ESTIMATE_SQL, schema_name)
            row = cur.fetchone()
            value = int(row[0]) if row is not None and row[0] is not None else 0
            totals[schema_name] = value if value > 0 else None  # -1: never analyzed
        if pids and server.copy_view:
            try:
                cur.execute(_COPY_SQL, (pids,))
            except Exception as exc:
                if getattr(exc, "pgcode", None) != _UNDEFINED_TABLE:
                    raise
                server.copy_view = False
                return copies, totals
            for pid, rows, done in cur.fetchall():
                copies[int(pid)] = (int(rows or 0), int(done or 0))
    return copies, totals
