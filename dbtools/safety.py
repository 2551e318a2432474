"""The safety rules, in one place, used by every command that writes.

- dev and prod must be two different databases, compared both by how the URLs spell them
  (host, port, name) and by what the servers say they are (system identifier + database oid),
  so two spellings of one database are caught;
- nothing writes to a database as prod unless its name is the expected prod name;
- nothing writes to dev as if it were prod: the prod side must never carry dev's name.
"""

from __future__ import annotations

import socket

from dbtools.db import Identity, Target
from dbtools.errors import SafetyError


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
    """The database behind a target being written must carry the expected name."""
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
