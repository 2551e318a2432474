"""The yoyo session: yoyo's backend on one database plus the guard connection that will hold
the run lock, both checked to reach the same database. Opening one writes nothing.

Every connection goes to the database of the target's parsed URL parts (`db.libpq_params`):
yoyo is handed a connection built from them, never a URL string to re-parse, and is checked
to reach the same database (system identifier + oid) as the connection the safety rules
approved before anything is written.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import psycopg2.extensions
from yoyo.backends.base import DatabaseBackend
from yoyo.backends.core.postgresql import PostgresqlBackend
from yoyo.connections import DatabaseURI

from dbtools import db
from dbtools.config import Settings
from dbtools.db import Conn
from dbtools.errors import ConnectionFailed
from dbtools.migrations.state import MIGRATION_TABLE, MigrationStatus, status_of


class _Backend(PostgresqlBackend):
    """yoyo's PostgreSQL backend on a connection built from dbtools' parsed URL parts.

    yoyo re-parses URL strings with urlsplit and hands the raw path to libpq: a database
    named `a#b` (or `a?b`, `a%2Fb`) then became another database. Here yoyo never sees a
    URL: its URI carries only the (decoded) name it uses in its own queries.
    """

    def __init__(self, params: dict[str, str], migration_table: str) -> None:
        self._params = params
        uri = DatabaseURI("postgresql", None, None, None, None, params["dbname"], {})
        super().__init__(uri, migration_table)

    def connect(self, dburi: DatabaseURI) -> Conn:
        conn = psycopg2.connect(psycopg2.extensions.make_dsn(**self._params))
        conn.autocommit = True  # as yoyo's own backend: it sends BEGIN/COMMIT itself
        self.schema = None
        return conn


def _backend(t: db.Target, settings: Settings | None) -> DatabaseBackend:
    """A yoyo backend connected to t; nothing written (yoyo's tables come later)."""
    params = db.libpq_params(t)
    params["connect_timeout"] = str(settings.connect_timeout_seconds if settings else 10)
    params["application_name"] = f"dbtools-migrate-{t.env}"
    try:
        return _Backend(params, MIGRATION_TABLE)
    except psycopg2.Error as exc:
        raise ConnectionFailed(
            f"cannot open {t.env} database {t.masked} for migrations: {db.describe_error(exc)}"
        ) from None


@dataclass
class Session:
    """An open yoyo backend on one database plus the guard connection holding the run lock."""

    target: db.Target
    backend: DatabaseBackend
    guard: Conn
    migrations_dir: Path
    database: str
    # Called before the first change: the guard's backup on prod, nothing elsewhere.
    ensure_backup: Callable[[], object] = lambda: None

    @property
    def conn(self) -> Conn:
        return self.backend.connection

    def status(self) -> MigrationStatus:
        return status_of(self.conn, self.migrations_dir, self.target.env, self.database)


@contextlib.contextmanager
def open_session(
    t: db.Target,
    migrations_dir: Path,
    settings: Settings | None = None,
    expect: db.Identity | None = None,
) -> Iterator[Session]:
    """A guard connection and a yoyo backend on t, both checked to be one database (and the
    database `expect` names, when the caller approved one already). Nothing is written."""
    allow_insecure = bool(settings and settings.allow_insecure)
    db.check_endpoint(t, "migrate", allow_insecure=allow_insecure)
    guard = db.connect(t, purpose="lock", settings=settings)
    try:
        ident = db.identity(guard)
        if expect is not None and not db.same_database(expect, ident):
            db.assert_same_database(t, expect, guard, "the migration lock connection")
        backend = _backend(t, settings)
        try:
            db.assert_same_database(t, ident, backend.connection, "yoyo's migration connection")
            timeout = settings.lock_timeout_seconds if settings else 10.0
            with backend.cursor() as cur:
                cur.execute(db.SESSION_SQL)
                # An ALTER queued behind an app's long transaction would make every query on
                # that table queue behind it: give up after the lock timeout instead.
                cur.execute(f"SET lock_timeout = '{int(timeout * 1000)}ms'")
            yield Session(t, backend, guard, Path(migrations_dir), ident.database)
        finally:
            with contextlib.suppress(psycopg2.Error):
                backend.connection.close()
    finally:
        guard.close()
