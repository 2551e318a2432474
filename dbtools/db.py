"""Connections (psycopg2): session settings, server identity, Neon pooler and SSL rules, locks.

Every connection runs in UTC with ISO dates and shortest-exact floats, so the text form of a
value is the same whichever machine reads it. Errors from the driver are turned into
dbtools errors whose text has been through `config.redact`.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import psycopg2
import psycopg2.extensions

from dbtools.config import Settings, UrlParts, mask_url, parse_url, redact
from dbtools.errors import ConfigError, ConnectionFailed, LockBusy, SafetyError

Conn = psycopg2.extensions.connection
# The progress callback the CLI passes down; library code never prints.
Progress = Callable[[str], None] | None


def say(progress: Progress, text: str) -> None:
    """One progress line, when the caller asked for progress."""
    if progress is not None:
        progress(text)


def execute(
    conn: psycopg2.extensions.connection, sql: str, params: Any = None
) -> list[tuple[Any, ...]]:
    """Run one statement on conn; its rows, or [] for a statement that returns none."""
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall() if cur.description else []


# Session settings that make text output deterministic: the snapshot format depends on them.
SESSION_SQL = (
    "SET TIME ZONE 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; "
    "SET extra_float_digits = 3; SET bytea_output = 'hex'; SET client_encoding = 'UTF8'"
)
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", ""}
SECURE_SSLMODES = {"require", "verify-ca", "verify-full"}
# Purposes that need a real session: PgBouncer in transaction mode breaks them.
SESSION_PURPOSES = {"migrate", "copy", "lock", "write"}


@dataclass(frozen=True)
class Target:
    """One side of the sync: which environment, where, and the name it is expected to have."""

    env: str
    url: str
    expected_name: str

    @property
    def masked(self) -> str:
        return mask_url(self.url)

    @property
    def parts(self) -> UrlParts:
        return parse_url(self.url)

    @property
    def is_pooler(self) -> bool:
        return any("-pooler" in h for h in self.parts.hosts)

    @property
    def is_local(self) -> bool:
        return all(
            h in LOCAL_HOSTS or h.startswith("127.") or h.startswith("/")
            for h in (self.parts.hosts or ("",))
        )


def libpq_params(t: Target, *, password: bool = True) -> dict[str, str]:
    """libpq keyword parameters for t, built from its parsed parts (never a re-spelled URL)."""
    return t.parts.libpq(password=password)


def subprocess_target(t: Target, base: dict[str, str] | None = None) -> tuple[str, dict[str, str]]:
    """How a libpq program (pg_dump, psql) reaches t: a conninfo string without the password
    for `--dbname`, and an environment carrying it as PGPASSWORD (argv is readable by every
    local user; the environment is not)."""
    import os

    parts = t.parts
    env = dict(os.environ if base is None else base)
    if parts.password is not None:
        env["PGPASSWORD"] = parts.password
    return parts.conninfo(password=False), env


def target(settings: Settings, env: str) -> Target:
    if env not in ("dev", "prod"):
        raise ConfigError(f"unknown target {env!r}: expected dev or prod")
    return Target(env=env, url=settings.url(env), expected_name=settings.expected_names[env])


def check_endpoint(t: Target, purpose: str, *, allow_insecure: bool = False) -> list[str]:
    """Apply the Neon rules; return warnings, raise SafetyError where the rule refuses."""
    warnings: list[str] = []
    parts = t.parts
    if t.is_pooler:
        direct = parts.host.replace("-pooler", "")
        msg = (
            f"{t.env} URL points at a connection pooler ({parts.host}); PgBouncer in transaction "
            f"mode breaks migrations, COPY and locks. Use the direct host {direct}"
        )
        if purpose in SESSION_PURPOSES:
            raise SafetyError(msg, hint=f"replace {parts.host} by {direct} in the {t.env} URL")
        warnings.append(msg)
    sslmode = parts.params.get("sslmode", "")
    if not t.is_local and sslmode not in SECURE_SSLMODES and not allow_insecure:
        raise SafetyError(
            f"{t.env} database {parts.host} is remote but its URL lacks sslmode=require; "
            "add ?sslmode=require (Neon needs it) or pass --allow-insecure",
        )
    return warnings


def connect(
    t: Target,
    *,
    purpose: str = "read",
    settings: Settings | None = None,
    autocommit: bool = False,
) -> psycopg2.extensions.connection:
    """Open a connection with dbtools' session settings, or raise a redacted dbtools error."""
    check_endpoint(t, purpose, allow_insecure=bool(settings and settings.allow_insecure))
    timeout = settings.connect_timeout_seconds if settings else 10
    params = libpq_params(t)
    params["connect_timeout"] = str(timeout)
    params["application_name"] = f"dbtools-{t.env}"
    try:
        conn = psycopg2.connect(psycopg2.extensions.make_dsn(**params))
    except psycopg2.Error as exc:
        raise ConnectionFailed(
            f"cannot connect to {t.env} database {t.masked}: {_first_line(exc)}",
            hint=f"check {'DEV' if t.env == 'dev' else 'PROD'}_DATABASE_URL (Neon needs "
            "?sslmode=require); `dbtools verify` shows both sides",
        ) from None
    except Exception as exc:  # malformed option strings surface as ProgrammingError-like
        raise ConfigError(f"cannot use {t.env} URL {t.masked}: {_first_line(exc)}") from None
    try:
        with conn.cursor() as cur:
            cur.execute(SESSION_SQL)
        conn.commit()
        conn.autocommit = autocommit
    except psycopg2.Error as exc:
        conn.close()
        raise ConnectionFailed(f"{t.env} database {t.masked}: {_first_line(exc)}") from None
    return conn


def set_read_only(conn: psycopg2.extensions.connection) -> None:
    """Make every later transaction of conn read-only: dev is never written by a sync."""
    with conn.cursor() as cur:
        cur.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
    if not conn.autocommit:
        conn.commit()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return redact(text[0] if text else type(exc).__name__)


def describe_error(exc: BaseException) -> str:
    """A one-line, redacted description of a driver error for messages."""
    return _first_line(exc)


@dataclass(frozen=True)
class Identity:
    """Who a server and database really are, independent of how the URL spells them."""

    database: str
    server_version: str
    server_version_num: int
    system_identifier: str | None
    database_oid: int
    ssl: bool
    user: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def identity(conn: psycopg2.extensions.connection) -> Identity:
    with read_only_use(conn), conn.cursor() as cur:
        cur.execute(
            "SELECT current_database(), current_setting('server_version'), "
            "current_setting('server_version_num')::int, "
            "(SELECT oid FROM pg_database WHERE datname = current_database()), current_user, "
            "coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)"
        )
        row = cur.fetchone()
        assert row is not None
        system_id: str | None = None
        # pg_control_system() can be revoked on managed services; identity then rests on
        # host, port and name alone.
        # Inside an open transaction (also an explicit BEGIN on an autocommit connection) a
        # refused call would abort it: hence the savepoint.
        try:
            with savepoint(conn, "dbtools_ident"):
                cur.execute("SELECT system_identifier::text FROM pg_control_system()")
                got = cur.fetchone()
            system_id = got[0] if got else None
        except psycopg2.Error:
            pass
    return Identity(
        database=row[0],
        server_version=row[1],
        server_version_num=row[2],
        system_identifier=system_id,
        database_oid=row[3],
        user=row[4],
        ssl=bool(row[5]),
    )


def same_database(a: Identity, b: Identity) -> bool:
    """Whether two identities are one database: server (system identifier) and database oid;
    where the server hides its identifier, the database name and oid have to do."""
    if a.system_identifier != b.system_identifier:
        return False
    return a.database_oid == b.database_oid and a.database == b.database


def assert_same_database(
    t: Target, approved: Identity, conn: psycopg2.extensions.connection, what: str
) -> None:
    """A further connection of a command must reach the database the safety rules approved."""
    got = identity(conn)
    if not same_database(approved, got):
        raise SafetyError(
            f"{what} on the {t.env} side reached database {got.database!r} "
            f"(oid {got.database_oid}), not {approved.database!r} (oid "
            f"{approved.database_oid}) that the safety rules approved; nothing was written",
            hint=f"check how the {t.env} URL spells the database name ({t.masked})",
        )


def was_idle(conn: psycopg2.extensions.connection) -> bool:
    """True when no transaction is open: a reader may then end the one it starts itself."""
    return conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE


@contextlib.contextmanager
def savepoint(conn: psycopg2.extensions.connection, name: str) -> Iterator[None]:
    """Undo only this block if the server refuses it, and re-raise: the caller's transaction
    stays usable (a refused statement would otherwise abort all of it). Outside a transaction
    (autocommit and idle) a failed statement aborts nothing, so no savepoint is taken.

    For statements the server may refuse without anything being wrong: a function revoked on
    a managed service, a bookkeeping table a database never got.
    """
    inside = not was_idle(conn) or not conn.autocommit
    if not inside:
        yield
        return
    with conn.cursor() as cur:
        cur.execute(f"SAVEPOINT {name}")
    try:
        yield
    except psycopg2.Error:
        with conn.cursor() as cur:
            cur.execute(f"ROLLBACK TO SAVEPOINT {name}")
            cur.execute(f"RELEASE SAVEPOINT {name}")
        raise
    with conn.cursor() as cur:
        cur.execute(f"RELEASE SAVEPOINT {name}")


@contextlib.contextmanager
def read_only_use(conn: psycopg2.extensions.connection) -> Iterator[None]:
    """Read on conn, then end the transaction only if the read opened it.

    Catalog readers are called both on idle connections and inside a caller's open transaction
    (a snapshot's view, a load about to commit); rolling back the latter would undo its work.
    """
    idle = was_idle(conn)
    try:
        yield
    finally:
        if idle and not conn.autocommit and not was_idle(conn):
            conn.rollback()


def _lock_key(name: str) -> int:
    digest = hashlib.sha256(f"dbtools:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextlib.contextmanager
def advisory_lock(conn: psycopg2.extensions.connection, name: str, what: str) -> Iterator[None]:
    """Hold a session-level advisory lock, or raise LockBusy at once if another run has it.

    Session-level locks die with the connection, so a killed run never leaves a stale lock.
    """
    key = _lock_key(name)
    with conn.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(%s)", (key,))
        row = cur.fetchone()
        got = bool(row and row[0])
    if not conn.autocommit:
        conn.commit()
    if not got:
        raise LockBusy(
            f"another dbtools {what} is running against this database; "
            "wait for it to finish (its lock is released when it ends, even if killed)"
        )
    try:
        yield
    finally:
        with contextlib.suppress(psycopg2.Error), conn.cursor() as cur:
            if not conn.autocommit:
                conn.rollback()
            cur.execute("SELECT pg_advisory_unlock(%s)", (key,))
            if not conn.autocommit:
                conn.commit()


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, table: str) -> str:
    return f"{quote_ident(schema)}.{quote_ident(table)}"
