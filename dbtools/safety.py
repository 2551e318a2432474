"""The safety rules, in one place, used by every command that writes.

- dev and prod must be two different databases, compared both by how the URLs spell them
  (host, port, name) and by what the servers say they are (system identifier + database oid),
  so two spellings of one database are caught;
- nothing writes to a database as prod unless its name is the expected prod name (and
  nothing is written at all while the project has not configured that name);
- nothing writes to dev as if it were prod: the prod side must never carry dev's name.
"""

from __future__ import annotations

import socket

import psycopg2.extensions

from dbtools import db
from dbtools.config import Settings
from dbtools.db import Identity, Target
from dbtools.errors import ConfigError, DbtoolsError, SafetyError


def _host_key(host: str) -> str:
    if host.startswith("/"):
        return "local-socket"
    if host in ("localhost", "::1") or host.startswith("127."):
        return "loopback"
    try:
        return socket.gethostbyname(host)
    except OSError:
        return host.lower()


def assert_distinct(dev: Target, dev_id: Identity, prod: Target, prod_id: Identity) -> None:
    d, p = dev.parts, prod.parts
    same_spelling = (_host_key(d.host), d.port, d.dbname) == (_host_key(p.host), p.port, p.dbname)
    same_server = (
        dev_id.system_identifier is not None
        and dev_id.system_identifier == prod_id.system_identifier
        and dev_id.database_oid == prod_id.database_oid
    )
    if same_spelling or same_server:
        raise SafetyError(
            f"dev and prod are the same database ({prod_id.database} on {p.host}:{p.port}); "
            "refusing to go on",
            hint="check DEV_DATABASE_URL / PROD_DATABASE_URL and the env files",
        )


def assert_name(t: Target, ident: Identity) -> None:
    """The database behind a target being written must carry the expected name, which the
    project must have configured: without one, nothing is written."""
    if not t.expected_name:
        raise ConfigError(
            f"refusing to write {t.env}: no expected {t.env} database name is configured",
            hint=f"set {t.env}_database in setup.cfg [dbtools] (or DBTOOLS_{t.env.upper()}"
            "_DATABASE) to the name of the database behind the URL",
        )
    if ident.database != t.expected_name:
        raise SafetyError(
            f"refusing to write {t.env}: the database is named {ident.database!r}, "
            f"expected {t.expected_name!r}",
            hint=f"fix the {t.env} URL, or set {t.env}_database in setup.cfg [dbtools]",
        )


def assert_writable(
    t: Target, ident: Identity, other: Target | None = None, other_id: Identity | None = None
) -> None:
    """Every rule that must hold before writing to t; other is the opposite side if known."""
    assert_name(t, ident)
    if other is not None and other_id is not None:
        if t.env == "prod":
            assert_distinct(other, other_id, t, ident)
        else:
            assert_distinct(t, ident, other, other_id)
        if t.env == "prod" and ident.database == other.expected_name:
            raise SafetyError(f"refusing to write prod: {ident.database!r} is the dev database")


def unidentified(env: str, exc: DbtoolsError) -> SafetyError:
    """The refusal when the side opposite env is configured but cannot be identified."""
    other_env = "dev" if env == "prod" else "prod"
    return SafetyError(
        f"refusing to write {env}: cannot check that it is not the {other_env} database, "
        f"because {other_env} cannot be identified: {exc.message}",
        hint=f"make {other_env} reachable, or remove its URL if this machine has none",
    )


def other_side(settings: Settings, env: str) -> tuple[Target, Identity] | None:
    """The opposite side's target and identity, None when its URL is not configured at all.

    A configured side that cannot be identified (unreachable, refused, malformed) is a
    SafetyError: the rule "dev and prod are two databases" can then not be checked, and a
    write must not go on as if it held.
    """
    other_env = "dev" if env == "prod" else "prod"
    if not settings.urls.get(other_env):
        return None
    try:
        other = db.target(settings, other_env)
        conn = db.connect(other, purpose="read", settings=settings)
    except DbtoolsError as exc:
        raise unidentified(env, exc) from None
    try:
        return other, db.identity(conn)
    finally:
        conn.close()


def approve_write(settings: Settings, t: Target, conn: psycopg2.extensions.connection) -> Identity:
    """Every rule that must hold before writing t through conn; the identity approved.

    Further connections of the same write must reach this identity
    (`db.assert_same_database`).
    """
    ident = db.identity(conn)
    other = other_side(settings, t.env)
    if other is None:
        assert_writable(t, ident)
    else:
        assert_writable(t, ident, other[0], other[1])
    return ident
